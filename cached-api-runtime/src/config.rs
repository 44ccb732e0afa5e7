//! Settings of a [`Cache`](crate::Cache): defaults, environment, builder.

use std::time::Duration;

use crate::{Clock, Error};

/// Environment variable naming the Redis server; unset means the embedded store.
pub const ENV_REDIS_URL: &str = "CACHED_API_REDIS_URL";
/// Environment variable overriding the key prefix.
pub const ENV_PREFIX: &str = "CACHED_API_PREFIX";
/// Environment variable overriding the TTL of functions that name none.
pub const ENV_DEFAULT_TTL: &str = "CACHED_API_DEFAULT_TTL";
/// Environment variable that, set to `1`, turns every cached call into a plain call.
pub const ENV_DISABLED: &str = "CACHED_API_DISABLED";

/// Everything a [`Cache`](crate::Cache) is built from.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) redis_url: Option<String>,
    pub(crate) prefix: String,
    pub(crate) default_ttl: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) pool_size: usize,
    pub(crate) memory_capacity: u64,
    pub(crate) max_value_size: usize,
    pub(crate) clock: Clock,
    pub(crate) disabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis_url: None,
            prefix: "cached_api".to_owned(),
            default_ttl: Duration::from_secs(60),
            op_timeout: Duration::from_millis(250),
            breaker_cooldown: Duration::from_secs(1),
            pool_size: 8,
            memory_capacity: 100_000,
            max_value_size: 1 << 20,
            clock: Clock::default(),
            disabled: false,
        }
    }
}

impl Config {
    pub(crate) fn from_env() -> Result<Config, Error> {
        let mut config = Config::default();
        if let Some(url) = env(ENV_REDIS_URL) {
            config.redis_url = Some(url);
        }
        if let Some(prefix) = env(ENV_PREFIX) {
            config.prefix = prefix;
        }
        if let Some(ttl) = env(ENV_DEFAULT_TTL) {
            config.default_ttl =
                cached_api_duration::parse(&ttl).map_err(|error| Error::Config {
                    what: ENV_DEFAULT_TTL,
                    detail: error.to_string(),
                })?;
        }
        config.disabled = env(ENV_DISABLED).is_some_and(|v| v == "1" || v == "true");
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(Error::Config {
                what: "prefix",
                detail: format!(
                    "{:?} must be non-empty and free of '{{' and '}}', which Redis reads as hash tags",
                    self.prefix
                ),
            });
        }
        for (what, value) in [
            ("default_ttl", self.default_ttl),
            ("op_timeout", self.op_timeout),
            ("breaker_cooldown", self.breaker_cooldown),
        ] {
            if value.is_zero() {
                return Err(Error::Config {
                    what,
                    detail: "must be greater than zero".to_owned(),
                });
            }
        }
        if self.default_ttl > cached_api_duration::MAX {
            return Err(Error::Config {
                what: "default_ttl",
                detail: "is too long: at most 100 years".to_owned(),
            });
        }
        if self.pool_size == 0 {
            return Err(Error::Config {
                what: "pool_size",
                detail: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Builds a [`Cache`](crate::Cache); every setting starts at its default.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CacheBuilder {
    pub(crate) config: Config,
}

impl CacheBuilder {
    /// Stores entries on the Redis server at `url` (`redis://host:port/db`)
    /// instead of in this process.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = Some(url.into());
        self
    }

    /// First segment of every key (default `cached_api`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// TTL of functions whose attribute names none (default 60 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }

    /// Longest wait for a Redis reply before the call fails open (default
    /// 250 ms); re-establishing a broken connection may take as long again.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.config.op_timeout = timeout;
        self
    }

    /// How long calls skip Redis after it failed
    /// several times in a row, before one call probes it again (default 1 s).
    pub fn breaker_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.breaker_cooldown = cooldown;
        self
    }

    /// Most idle connections kept for sync functions (default 8).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.config.pool_size = size;
        self
    }

    /// Most entries of the embedded store (default 100,000).
    pub fn memory_capacity(mut self, entries: u64) -> Self {
        self.config.memory_capacity = entries;
        self
    }

    /// Largest encoded value stored (default 1 MiB). A larger value is
    /// returned to its caller but not stored, and counted as `oversized`.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.config.max_value_size = bytes;
        self
    }

    /// The clock the embedded store checks TTLs against; tests pass one
    /// they [`advance`](crate::Clock::advance). Redis keeps its own time.
    pub fn clock(mut self, clock: crate::Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// With `true`, cached functions run every time; invalidations still reach the store.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.config.disabled = disabled;
        self
    }
}

impl From<Config> for CacheBuilder {
    fn from(config: Config) -> CacheBuilder {
        CacheBuilder { config }
    }
}
