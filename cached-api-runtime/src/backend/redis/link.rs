//! Connections to Redis: one node, or a cluster through redis-rs's cluster
//! client, which follows `MOVED`/`ASK` and failovers itself. Async callers
//! share one multiplexed connection, opened on first use inside their
//! runtime; sync callers take one from a small pool.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig, ClusterConnection};
use redis::{Client, Cmd, Connection, ConnectionLike, FromRedisValue, RedisResult};

use crate::Error;
use crate::config::{Config, RedisTarget, redact, scrub};

#[expect(
    clippy::large_enum_variant,
    reason = "one per cache, behind its Arc: boxing would add a hop to every call"
)]
pub(super) enum Link {
    Node {
        client: Client,
        multiplexed: OnceLock<ConnectionManager>,
        pool: Pool<Connection>,
    },
    Cluster {
        client: ClusterClient,
        multiplexed: OnceLock<redis::cluster_async::ClusterConnection>,
        pool: Pool<ClusterConnection>,
    },
}

impl Link {
    /// Checks the configuration; connects nothing yet.
    pub(super) fn new(target: &RedisTarget, config: &Config) -> Result<Link, Error> {
        match target {
            RedisTarget::Cluster(nodes) => Link::cluster(nodes, config),
            RedisTarget::Url(url) => match cluster_nodes(url).transpose()? {
                Some(nodes) => Link::cluster(&nodes, config),
                None => Link::node(url, config),
            },
        }
    }

    fn node(url: &str, config: &Config) -> Result<Link, Error> {
        check_scheme(url)?;
        #[cfg(feature = "tls")]
        let client = match certificates(config) {
            Some(certificates) => Client::build_with_tls(url, certificates),
            None => Client::open(url),
        };
        #[cfg(not(feature = "tls"))]
        let client = Client::open(url);
        Ok(Link::Node {
            client: client.map_err(|error| invalid_url(&[url.to_owned()], &error))?,
            multiplexed: OnceLock::new(),
            pool: Pool::new(config.pool_size),
        })
    }

    fn cluster(nodes: &[String], config: &Config) -> Result<Link, Error> {
        if nodes.is_empty() {
            return Err(Error::Config {
                what: "redis_cluster",
                detail: "names no node; give at least one, e.g. redis://host:port".to_owned(),
            });
        }
        for url in nodes {
            check_scheme(url)?;
        }
        let builder = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(config.op_timeout)
            .response_timeout(config.op_timeout)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
            .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1);
        #[cfg(feature = "tls")]
        let builder = match certificates(config) {
            Some(certificates) => builder.certs(certificates),
            None => builder,
        };
        Ok(Link::Cluster {
            client: builder
                .build()
                .map_err(|error| invalid_url(nodes, &error))?,
            multiplexed: OnceLock::new(),
            pool: Pool::new(config.pool_size),
        })
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Link::Cluster { .. })
    }

    /// Runs `cmd` on the shared async connection. The connection enforces
    /// the op timeout on each reply, and again on a reconnection: no timer
    /// of ours on the hot path.
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        op_timeout: Duration,
    ) -> RedisResult<T> {
        match self {
            Link::Node {
                client,
                multiplexed,
                ..
            } => {
                let mut connection = match multiplexed.get() {
                    Some(connection) => connection.clone(),
                    None => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(op_timeout))
                            .set_response_timeout(Some(op_timeout))
                            .set_number_of_retries(0)
                            .set_max_delay(op_timeout);
                        let manager =
                            ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                        multiplexed.get_or_init(|| manager).clone()
                    }
                };
                cmd.query_async(&mut connection).await
            }
            Link::Cluster {
                client,
                multiplexed,
                ..
            } => {
                let mut connection = multiplexed
                    .get_or_init(|| {
                        let config = ClusterConfig::new()
                            .set_connection_timeout(op_timeout)
                            .set_response_timeout(op_timeout);
                        client.get_pending_async_connection_with_config(config)
                    })
                    .clone();
                cmd.query_async(&mut connection).await
            }
        }
    }

    /// Runs `cmd` on a pooled sync connection.
    pub(super) fn query_blocking<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        op_timeout: Duration,
    ) -> RedisResult<T> {
        match self {
            Link::Node { client, pool, .. } => pool.query(cmd, || {
                let connection = client.get_connection_with_timeout(op_timeout)?;
                connection.set_read_timeout(Some(op_timeout))?;
                connection.set_write_timeout(Some(op_timeout))?;
                Ok(connection)
            }),
            Link::Cluster { client, pool, .. } => pool.query(cmd, || {
                let config = ClusterConfig::new()
                    .set_connection_timeout(op_timeout)
                    .set_response_timeout(op_timeout);
                client.get_connection_with_config(config)
            }),
        }
    }
}

/// How often the cluster client retries a command (after `MOVED`, `ASK`, or
/// a connection error that makes it refresh its slot map) before the call
/// fails open: enough to follow a resharding or, most of the time, a
/// promoted replica (in the failover test, 2 retries let ~200 calls fail
/// open on a `MOVED` the client had no retry left to follow, 4 retries ~90),
/// few enough that a dead master costs a bounded wait: at most about
/// (retries + 1) × (op timeout + 100 ms).
const CLUSTER_RETRIES: u32 = 3;

/// The wait before such a retry, at least and at most, in milliseconds.
/// The client's default waits at least 1.28 s, and while it waits to
/// refresh its slot map after a master died, it holds back the commands for
/// every other master too: they time out, and a caching call that could
/// have hit fails open.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (10, 100);

/// Idle sync connections, kept up to a size.
pub(super) struct Pool<C> {
    idle: Mutex<Vec<C>>,
    size: usize,
}

impl<C: ConnectionLike> Pool<C> {
    fn new(size: usize) -> Pool<C> {
        Pool {
            idle: Mutex::new(Vec::with_capacity(size)),
            size,
        }
    }

    fn query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        open: impl FnOnce() -> RedisResult<C>,
    ) -> RedisResult<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => open()?,
        };
        // A connection that failed may hold half a reply: it is dropped, not
        // pooled. One the server dropped means the idle ones were dropped too
        // (a restart): they go as well, so that a retry opens a fresh one.
        let reply = cmd.query(&mut connection).inspect_err(|error| {
            if error.is_connection_dropped() {
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
        })?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.size {
            idle.push(connection);
        }
        Ok(reply)
    }
}

/// The node URLs of a `redis+cluster://` (or `rediss+cluster://`) URL, each
/// with the URL's user part; `None` for any other URL.
fn cluster_nodes(url: &str) -> Option<Result<Vec<String>, Error>> {
    let (scheme, rest) = url.split_once("://")?;
    let node_scheme = match scheme {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return None,
    };
    let (authority, suffix) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("{node_scheme}://{user}{host}{suffix}"))
        .collect();
    if nodes.is_empty() {
        return Some(Err(Error::Config {
            what: "redis_url",
            detail: format!(
                "{} names no node; write redis+cluster://host1:port1,host2:port2",
                redact(url)
            ),
        }));
    }
    Some(Ok(nodes))
}

fn check_scheme(url: &str) -> Result<(), Error> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    match scheme {
        "redis" | "redis+unix" | "unix" => Ok(()),
        "rediss" if cfg!(feature = "tls") => Ok(()),
        "rediss" => Err(Error::Config {
            what: "redis_url",
            detail: format!(
                "{} asks for TLS: enable the `tls` feature of cached-api",
                redact(url)
            ),
        }),
        _ => Err(Error::Config {
            what: "redis_url",
            detail: format!(
                "{} is not a Redis URL; expected redis://host:port/db, rediss://… (TLS) or redis+cluster://host1:port1,host2:port2",
                redact(url)
            ),
        }),
    }
}

fn invalid_url(urls: &[String], error: &redis::RedisError) -> Error {
    let shown: Vec<String> = urls.iter().map(|url| redact(url)).collect();
    let reason = urls
        .iter()
        .fold(error.to_string(), |reason, url| scrub(&reason, url));
    Error::Config {
        what: "redis_url",
        detail: format!(
            "{} could not be used ({reason}); expected redis://host:port/db",
            shown.join(", "),
        ),
    }
}

/// The private CA to trust, if the configuration names one (`validate`
/// refuses one without the `tls` feature).
#[cfg(feature = "tls")]
fn certificates(config: &Config) -> Option<redis::TlsCertificates> {
    let ca = config.redis_ca.as_ref()?;
    Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.0.clone()),
    })
}
