//! Settings of a [`Cache`](crate::Cache): defaults, environment, builder.

use std::fmt;
use std::time::Duration;

use crate::{Clock, Error};

/// Environment variable naming the Redis server (`redis://`, `rediss://`) or
/// cluster (`redis+cluster://host1:port1,host2:port2`); unset means the
/// embedded store.
pub const ENV_REDIS_URL: &str = "CACHED_API_REDIS_URL";
/// Environment variable naming a PEM file of the certificate authority that
/// signed the server's TLS certificate, when it is not a system root.
pub const ENV_REDIS_CA_FILE: &str = "CACHED_API_REDIS_CA_FILE";
/// Environment variable overriding the key prefix.
pub const ENV_PREFIX: &str = "CACHED_API_PREFIX";
/// Environment variable overriding the TTL of functions that name none.
pub const ENV_DEFAULT_TTL: &str = "CACHED_API_DEFAULT_TTL";
/// Environment variable that, set to `1`, `true`, `yes` or `on` (any case),
/// turns every cached call into a plain call; `0`, `false`, `no` and `off`
/// leave caching on, and any other value is a configuration error.
pub const ENV_DISABLED: &str = "CACHED_API_DISABLED";
/// Environment variable setting [`ReplicaAcks`]: `auto` (the default),
/// `off`, or a count of replicas (`0` is `off`).
pub const ENV_REPLICA_ACKS: &str = "CACHED_API_REPLICA_ACKS";

/// How many replicas must acknowledge an invalidation before it returns
/// `Ok`.
///
/// Redis replicates asynchronously: a write its master acknowledged is
/// lost if the master fails before a replica has it, and the promoted
/// replica would still hold the generation the invalidation replaced, so
/// every process would serve the entries it dropped. An invalidation
/// (a user's, a function's, an entry's) therefore sends `WAIT` with its
/// write, in the same round trip, bounded by the op timeout; when fewer
/// replicas acknowledge it than asked, it returns `Err` and is retried in
/// the background like any failed invalidation. Cached calls never wait.
///
/// ```
/// use cached_api::{Cache, config::ReplicaAcks};
///
/// let cache = Cache::builder().replica_acks(ReplicaAcks::AtLeast(2)).build()?;
/// # Ok::<(), cached_api::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaAcks {
    /// One replica, on a master that has any; none on a master without.
    /// On a cluster a master's replicas are those the cluster lists for it
    /// (`CLUSTER NODES`), including replicas that are down or cut off:
    /// those are the dangerous ones. On a single node they are the most
    /// this process has seen connected to it (`INFO replication`); a
    /// replica that was never connected while this process ran is not
    /// waited for, so name a count if the server has replicas.
    #[default]
    Auto,
    /// None: `Ok` as soon as the master has the write.
    Off,
    /// At least this many, on every master, whatever it lists.
    AtLeast(u32),
}

impl std::str::FromStr for ReplicaAcks {
    type Err = Error;

    fn from_str(value: &str) -> Result<ReplicaAcks, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ReplicaAcks::Auto),
            "off" | "0" => Ok(ReplicaAcks::Off),
            count => match count.parse() {
                Ok(count) => Ok(ReplicaAcks::AtLeast(count)),
                Err(_) => Err(Error::Config {
                    what: ENV_REPLICA_ACKS,
                    detail: format!(
                        "{value:?} is not a replica count: write auto (one replica where the master has any), off, or a number such as 1"
                    ),
                }),
            },
        }
    }
}

/// Everything a [`Cache`](crate::Cache) is built from.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) redis: Option<RedisTarget>,
    pub(crate) redis_ca: Option<Pem>,
    pub(crate) prefix: String,
    pub(crate) default_ttl: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) pool_size: usize,
    pub(crate) memory_max_bytes: u64,
    pub(crate) l1_max_bytes: u64,
    pub(crate) max_value_size: usize,
    pub(crate) clock: Clock,
    pub(crate) disabled: bool,
    pub(crate) replica_acks: ReplicaAcks,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis: None,
            redis_ca: None,
            prefix: "cached_api".to_owned(),
            default_ttl: Duration::from_secs(60),
            op_timeout: Duration::from_millis(250),
            breaker_cooldown: Duration::from_secs(1),
            pool_size: 8,
            memory_max_bytes: 256 << 20,
            l1_max_bytes: 64 << 20,
            max_value_size: 1 << 20,
            clock: Clock::default(),
            disabled: false,
            replica_acks: ReplicaAcks::Auto,
        }
    }
}

impl Config {
    pub(crate) fn from_env() -> Result<Config, Error> {
        let mut config = Config::default();
        if let Some(url) = env(ENV_REDIS_URL) {
            config.redis = Some(RedisTarget::Url(url));
        }
        if let Some(path) = env(ENV_REDIS_CA_FILE) {
            let pem = std::fs::read(&path).map_err(|error| Error::Config {
                what: ENV_REDIS_CA_FILE,
                detail: format!("{path:?} could not be read ({error}); name a PEM file"),
            })?;
            config.redis_ca = Some(Pem(pem));
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
        if let Some(value) = env(ENV_DISABLED) {
            config.disabled = switch(&value).ok_or_else(|| Error::Config {
                what: ENV_DISABLED,
                detail: format!(
                    "{value:?} is not a switch: write 1, true, yes or on to turn caching off, or 0, false, no or off (or leave it unset) to keep it on"
                ),
            })?;
        }
        if let Some(acks) = env(ENV_REPLICA_ACKS) {
            config.replica_acks = acks.parse()?;
        }
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
        if self.default_ttl < Duration::from_millis(1) {
            return Err(Error::Config {
                what: "default_ttl",
                detail: "must be at least 1 ms, the unit of Redis' expiry".to_owned(),
            });
        }
        if self.op_timeout > MAX_OP_TIMEOUT {
            return Err(Error::Config {
                what: "op_timeout",
                detail: format!(
                    "is {:?}, and at most {MAX_OP_TIMEOUT:?}: a stalled Redis holds each call this long before it fails open",
                    self.op_timeout
                ),
            });
        }
        for (what, value) in [
            ("memory_max_bytes", self.memory_max_bytes),
            ("l1_max_bytes", self.l1_max_bytes),
            ("max_value_size", self.max_value_size as u64),
        ] {
            if value == 0 {
                return Err(Error::Config {
                    what,
                    detail: "must be at least 1 byte: with 0 nothing is ever kept".to_owned(),
                });
            }
        }
        if self.default_ttl > cached_api_duration::MAX {
            return Err(Error::Config {
                what: "default_ttl",
                detail: "is too long: at most 100 years".to_owned(),
            });
        }
        if self.redis_ca.is_some() && !cfg!(feature = "tls") {
            return Err(Error::Config {
                what: "redis_ca",
                detail: "a CA certificate is for TLS: enable the `tls` feature of cached-api"
                    .to_owned(),
            });
        }
        if self.replica_acks == ReplicaAcks::AtLeast(0) {
            return Err(Error::Config {
                what: "replica_acks",
                detail: "AtLeast(0) waits for nothing: write ReplicaAcks::Off".to_owned(),
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

/// The longest [`CacheBuilder::op_timeout`]: a Redis that stops answering
/// holds each call this long before it fails open.
pub const MAX_OP_TIMEOUT: Duration = Duration::from_secs(60);

/// The usual spellings of a switch, in any case; `None` for anything else,
/// which a kill switch must not read as either.
fn switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
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
    /// Set when both a node URL and cluster nodes were given: which one
    /// was meant cannot be guessed.
    two_stores: bool,
}

impl CacheBuilder {
    /// Stores entries on the Redis server at `url` instead of in this process:
    /// `redis://[user:password@]host:port/db`, `rediss://…` for TLS (feature
    /// `tls`), or `redis+cluster://[user:password@]host1:port1,host2:port2`
    /// (`rediss+cluster://` for TLS) for a Redis Cluster.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.two_stores |= matches!(self.config.redis, Some(RedisTarget::Cluster(_)));
        self.config.redis = Some(RedisTarget::Url(url.into()));
        self
    }

    /// Stores entries on the Redis Cluster that these nodes belong to
    /// (`redis://[user:password@]host:port` each; a few are enough, the
    /// client discovers the rest).
    pub fn redis_cluster<I>(mut self, nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let nodes = nodes.into_iter().map(Into::into).collect();
        self.two_stores |= matches!(self.config.redis, Some(RedisTarget::Url(_)));
        self.config.redis = Some(RedisTarget::Cluster(nodes));
        self
    }

    /// Trusts the certificate authority in `pem` for Redis over TLS, instead
    /// of the system's roots: for a server whose certificate a private CA
    /// signed. The environment's form is a file, `CACHED_API_REDIS_CA_FILE`.
    pub fn redis_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.config.redis_ca = Some(Pem(pem.into()));
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
    /// 250 ms, at most [`MAX_OP_TIMEOUT`]); re-establishing a broken
    /// connection may take as long again.
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

    /// Most memory the embedded store's entries take (default 256 MiB):
    /// each is charged its key, its bytes, its decoded copy and moka's own
    /// records, so that the process's resident growth stays near this; the
    /// least useful entries go first when it is full.
    pub fn memory_max_bytes(mut self, bytes: u64) -> Self {
        self.config.memory_max_bytes = bytes;
        self
    }

    /// Most memory the in-process tier's values take for functions with
    /// `l1` (default 64 MiB), charged as the embedded store charges them;
    /// the least useful go first.
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.config.l1_max_bytes = bytes;
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

    /// How many replicas acknowledge an invalidation before it returns `Ok`
    /// (default [`ReplicaAcks::Auto`]: one, where the master has any).
    pub fn replica_acks(mut self, acks: ReplicaAcks) -> Self {
        self.config.replica_acks = acks;
        self
    }

    /// With `true`, cached functions run every time; invalidations still reach the store.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.config.disabled = disabled;
        self
    }
}

impl CacheBuilder {
    /// The configuration, if every setting can work.
    pub(crate) fn checked(self) -> Result<Config, Error> {
        if self.two_stores {
            return Err(Error::Config {
                what: "redis_url",
                detail: "and redis_cluster were both given: name one store, a node's URL or the cluster's nodes".to_owned(),
            });
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

impl CacheBuilder {
    /// A builder that starts from `config` (read from the environment).
    pub(crate) fn starting_from(config: Config) -> CacheBuilder {
        CacheBuilder {
            config,
            two_stores: false,
        }
    }
}

/// Where the Redis store is, as configured. Its `Debug` form hides passwords.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum RedisTarget {
    /// One URL: a node, or a cluster by its `redis+cluster://` scheme.
    Url(String),
    /// Node URLs of one cluster.
    Cluster(Vec<String>),
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Url(url) => f.debug_tuple("Url").field(&redact(url)).finish(),
            RedisTarget::Cluster(nodes) => f
                .debug_tuple("Cluster")
                .field(&nodes.iter().map(|url| redact(url)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// A certificate in PEM form; its `Debug` form says only how long it is.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Pem(pub(crate) Vec<u8>);

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pem({} bytes)", self.0.len())
    }
}

/// `text` (a client library's message about `url`) without `url`'s password.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    match password_span(url) {
        Some(span) if !span.is_empty() => text.replace(&url[span], "***"),
        _ => text.to_owned(),
    }
}

/// `url` with the password of its user part, if any, replaced by `***`, so
/// that it can appear in errors and logs.
pub(crate) fn redact(url: &str) -> String {
    match password_span(url) {
        Some(span) => format!("{}***{}", &url[..span.start], &url[span.end..]),
        None => url.to_owned(),
    }
}

/// Where the password of `url`'s user part is: between the first `:` of
/// the user part and the last `@` of the authority.
fn password_span(url: &str) -> Option<std::ops::Range<usize>> {
    let authority_start = url.find("://").map_or(0, |at| at + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |at| authority_start + at);
    let authority = &url[authority_start..authority_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some(authority_start + colon + 1..authority_start + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let refused = |builder: CacheBuilder| builder.checked().unwrap_err().to_string();
        let cases = [
            (
                CacheBuilder::default().memory_max_bytes(0),
                "memory_max_bytes",
            ),
            (CacheBuilder::default().l1_max_bytes(0), "l1_max_bytes"),
            (CacheBuilder::default().max_value_size(0), "max_value_size"),
            (
                CacheBuilder::default().op_timeout(Duration::MAX),
                "op_timeout",
            ),
            (
                CacheBuilder::default().default_ttl(Duration::from_nanos(1)),
                "default_ttl",
            ),
            (
                CacheBuilder::default()
                    .redis_url("redis://a:1")
                    .redis_cluster(["redis://b:2"]),
                "redis_cluster",
            ),
            (
                CacheBuilder::default()
                    .redis_cluster(["redis://b:2"])
                    .redis_url("redis://a:1"),
                "redis_cluster",
            ),
            (
                CacheBuilder::default().replica_acks(ReplicaAcks::AtLeast(0)),
                "ReplicaAcks::Off",
            ),
        ];
        for (builder, what) in cases {
            let error = refused(builder);
            assert!(error.contains(what), "{error}");
        }
        let fine = CacheBuilder::default()
            .redis_url("redis://a:1")
            .redis_url("redis://a:2")
            .op_timeout(MAX_OP_TIMEOUT)
            .default_ttl(Duration::from_millis(1))
            .max_value_size(1);
        assert!(fine.checked().is_ok());
    }

    #[test]
    fn replica_acks_are_read_as_written() {
        let read = |value: &str| value.parse::<ReplicaAcks>().ok();
        assert_eq!(read("auto"), Some(ReplicaAcks::Auto));
        assert_eq!(read(" Off "), Some(ReplicaAcks::Off));
        assert_eq!(read("0"), Some(ReplicaAcks::Off));
        assert_eq!(read("2"), Some(ReplicaAcks::AtLeast(2)));
        let error = "one".parse::<ReplicaAcks>().unwrap_err().to_string();
        assert!(
            error.contains(ENV_REPLICA_ACKS) && error.contains("auto"),
            "{error}"
        );
    }

    #[test]
    fn a_switch_takes_the_usual_spellings_and_nothing_else() {
        for on in ["1", "true", "TRUE", "Yes", "on", " On "] {
            assert_eq!(switch(on), Some(true), "{on}");
        }
        for off in ["0", "false", "No", "OFF"] {
            assert_eq!(switch(off), Some(false), "{off}");
        }
        for neither in ["maybe", "2", "disabled", "y", "enable"] {
            assert_eq!(switch(neither), None, "{neither}");
        }
    }

    #[test]
    fn passwords_are_redacted_wherever_a_url_is_shown() {
        assert_eq!(
            redact("redis://app:s3cret@cache:6379/0"),
            "redis://app:***@cache:6379/0"
        );
        assert_eq!(redact("rediss://:s3cret@cache"), "rediss://:***@cache");
        assert_eq!(
            redact("redis+cluster://u:p@w:rd@h1:1,h2:2/?x=y"),
            "redis+cluster://u:***@h1:1,h2:2/?x=y"
        );
        assert_eq!(redact("redis://cache:6379/"), "redis://cache:6379/");
        assert_eq!(redact("redis://user@cache"), "redis://user@cache");
        let url = "redis://app:s3cret@cache:6379/0";
        assert_eq!(
            scrub("auth as app:s3cret failed", url),
            "auth as app:*** failed"
        );
        let builder = CacheBuilder::default()
            .redis_url("redis://app:s3cret@cache:6379")
            .redis_cluster(["redis://app:hunter2@h1:1"])
            .redis_ca_pem(b"-----BEGIN CERTIFICATE-----".to_vec());
        let debug = format!("{builder:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("BEGIN"),
            "{debug}"
        );
    }
}
