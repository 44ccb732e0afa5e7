//! Connections to Redis: one node, or a cluster through redis-rs's cluster
//! client, which follows `MOVED`/`ASK` and failovers itself. Async callers
//! share one multiplexed connection, opened on first use inside their
//! runtime; sync callers take one from a small pool. On one node, a second
//! connection, in RESP3, reads what Redis then tracks for this process.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwapOption;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterConfig, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Arg, AsyncConnectionConfig, Client, Cmd, Connection, ConnectionLike, FromRedisValue, Pipeline,
    ProtocolVersion, PushInfo, PushKind, RedisResult, Value,
};

use super::command::get_cmd;
use super::gather::Gathering;
use super::tracking::TrackedKeys;
use crate::Error;
use crate::config::{Config, RedisTarget, redact, scrub};
use crate::key::is_function_generation;

#[expect(
    clippy::large_enum_variant,
    reason = "one per cache, behind its Arc: boxing would add a hop to every call"
)]
pub(super) enum Link {
    Node {
        client: Client,
        multiplexed: OnceLock<ConnectionManager>,
        pool: Pool<Connection>,
        tracked: TrackedConnection,
    },
    Cluster {
        client: ClusterClient,
        multiplexed: ClusterShared,
        pool: Pool<ClusterConnection>,
        tracked: TrackedCluster,
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
        let client = client.map_err(|error| invalid_url(&[url.to_owned()], &error))?;
        Ok(Link::Node {
            tracked: TrackedConnection::new(&client, config.op_timeout)
                .map_err(|error| invalid_url(&[url.to_owned()], &error))?,
            client,
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
        let builder = || {
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
            builder
        };
        let keys = Arc::new(TrackedKeys::new(is_function_generation));
        let tracked = builder().use_protocol(ProtocolVersion::RESP3).push_sender({
            let keys = Arc::downgrade(&keys);
            move |push: PushInfo| {
                if let Some(keys) = keys.upgrade() {
                    apply_push(&keys, push);
                }
                Ok::<(), ()>(())
            }
        });
        Ok(Link::Cluster {
            client: builder()
                .build()
                .map_err(|error| invalid_url(nodes, &error))?,
            multiplexed: ClusterShared::default(),
            pool: Pool::new(config.pool_size),
            tracked: TrackedCluster {
                client: tracked
                    .build()
                    .map_err(|error| invalid_url(nodes, &error))?,
                connection: ClusterShared::default(),
                keys,
                op_timeout: config.op_timeout,
                available: AtomicBool::new(true),
            },
        })
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Link::Cluster { .. })
    }

    /// The connection whose reads Redis tracks, while the server allows it.
    pub(super) fn tracked(&self) -> Option<Tracked<'_>> {
        match self {
            Link::Node { tracked, .. } if tracked.is_available() => Some(Tracked::Node(tracked)),
            Link::Cluster { tracked, .. } if tracked.available.load(Relaxed) => {
                Some(Tracked::Cluster(tracked))
            }
            _ => None,
        }
    }

    /// Runs `cmd` on the shared async connection. The connection enforces
    /// the op timeout on each reply, and again on a reconnection: no timer
    /// of ours on the hot path.
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        op_timeout: Duration,
    ) -> RedisResult<T> {
        match self.shared(op_timeout)? {
            Shared::Node(mut connection) => cmd.query_async(&mut connection).await,
            Shared::Cluster(mut connection) => cmd.query_async(&mut connection).await,
        }
    }

    /// Runs `cmd`, which has no key, at the master that serves `slot`.
    pub(super) async fn query_at<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        slot: u16,
        op_timeout: Duration,
    ) -> RedisResult<T> {
        match self.shared(op_timeout)? {
            Shared::Node(mut connection) => cmd.query_async(&mut connection).await,
            Shared::Cluster(mut connection) => {
                let reply = connection
                    .route_command(cmd.clone(), at_master(slot))
                    .await?;
                T::from_redis_value(reply).map_err(Into::into)
            }
        }
    }

    /// Runs the write `cmd`, which touches `slot`, then `wait` (a `WAIT`)
    /// on the same connection in one round trip: `WAIT` counts the
    /// replicas that have every write this connection sent. Its reply.
    pub(super) async fn query_replicated(
        &self,
        cmd: &Cmd,
        slot: u16,
        wait: &Cmd,
        op_timeout: Duration,
    ) -> RedisResult<i64> {
        let mut pipeline = redis::pipe();
        pipeline.add_command(cmd.clone()).add_command(wait.clone());
        let replies: Vec<Value> = match self.shared(op_timeout)? {
            Shared::Node(mut connection) => pipeline.query_async(&mut connection).await?,
            Shared::Cluster(mut connection) => {
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                connection.route_pipeline(pipeline, 0, 2, route).await?
            }
        };
        replies.into_iter().nth(1).map_or(Ok(0), |acked| {
            i64::from_redis_value(acked).map_err(Into::into)
        })
    }

    /// The shared async connection, opened on first use.
    fn shared(&self, op_timeout: Duration) -> RedisResult<Shared> {
        Ok(match self {
            Link::Node {
                client,
                multiplexed,
                ..
            } => Shared::Node(match multiplexed.get() {
                Some(connection) => connection.clone(),
                None => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(op_timeout))
                        .set_response_timeout(Some(op_timeout))
                        .set_number_of_retries(0)
                        .set_max_delay(op_timeout);
                    let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                    multiplexed.get_or_init(|| manager).clone()
                }
            }),
            Link::Cluster {
                client,
                multiplexed,
                ..
            } => Shared::Cluster(multiplexed.get(client, op_timeout)),
        })
    }

    /// Runs `cmd` on a pooled sync connection.
    pub(super) fn query_blocking<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        op_timeout: Duration,
    ) -> RedisResult<T> {
        match self {
            Link::Node { client, pool, .. } => {
                pool.with(|| open_node(client, op_timeout), |c| cmd.query(c))
            }
            Link::Cluster { client, pool, .. } => {
                pool.with(|| open_cluster(client, op_timeout), |c| cmd.query(c))
            }
        }
    }

    /// [`query_at`](Self::query_at) on a pooled sync connection.
    pub(super) fn query_at_blocking<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        slot: u16,
        op_timeout: Duration,
    ) -> RedisResult<T> {
        match self {
            Link::Node { .. } => self.query_blocking(cmd, op_timeout),
            Link::Cluster { client, pool, .. } => pool.with(
                || open_cluster(client, op_timeout),
                |c| T::from_redis_value(c.route_command(cmd, at_master(slot))?).map_err(Into::into),
            ),
        }
    }

    /// Runs the writes `cmds` as pipelines, [`WRITES_PER_PIPELINE`] each,
    /// on one pooled sync connection, then each of `waits` (`WAIT`s) at the
    /// master of its slot on the same connection: their replies. On one
    /// node, writes and waits go in one round trip.
    pub(super) fn query_all_blocking(
        &self,
        cmds: &[Cmd],
        waits: &[(u16, Cmd)],
        op_timeout: Duration,
    ) -> RedisResult<Vec<i64>> {
        match self {
            Link::Node { client, pool, .. } => {
                let mut pipeline = redis::pipe();
                for cmd in cmds {
                    pipeline.add_command(cmd.clone()).ignore();
                }
                for (_, wait) in waits {
                    pipeline.add_command(wait.clone());
                }
                pool.with(|| open_node(client, op_timeout), |c| pipeline.query(c))
            }
            Link::Cluster { client, pool, .. } => pool.with(
                || open_cluster(client, op_timeout),
                |c| {
                    for chunk in cmds.chunks(WRITES_PER_PIPELINE) {
                        let mut pipeline = redis::cluster::cluster_pipe();
                        for cmd in chunk {
                            pipeline.add_command(cmd.clone()).ignore();
                        }
                        pipeline.query::<()>(c)?;
                    }
                    waits
                        .iter()
                        .map(|(slot, wait)| {
                            i64::from_redis_value(c.route_command(wait, at_master(*slot))?)
                                .map_err(Into::into)
                        })
                        .collect()
                },
            ),
        }
    }
}

/// Writes sent at once by [`Link::query_all_blocking`]: few enough that
/// the commands of one pipeline keep no server busy long.
const WRITES_PER_PIPELINE: usize = 1024;

/// A cluster connection shared by async callers, opened on first use in
/// the caller's runtime. Its driver is a task of that runtime: when the
/// runtime shuts down (a test's, a CLI command's) the connection can send
/// nothing more, so a task of the same runtime marks it dead as it is
/// dropped with the others, and the next caller opens one in its own.
#[derive(Default)]
pub(super) struct ClusterShared {
    current: ArcSwapOption<LiveCluster>,
}

struct LiveCluster {
    connection: redis::cluster_async::ClusterConnection,
    alive: Arc<AtomicBool>,
}

/// Marks a connection dead when the runtime that drives it drops its tasks.
struct RuntimeGone(Arc<AtomicBool>);

impl Drop for RuntimeGone {
    fn drop(&mut self) {
        self.0.store(false, Relaxed);
    }
}

impl ClusterShared {
    fn get(
        &self,
        client: &ClusterClient,
        op_timeout: Duration,
    ) -> redis::cluster_async::ClusterConnection {
        if let Some(live) = &*self.current.load()
            && live.alive.load(Relaxed)
        {
            return live.connection.clone();
        }
        let connection =
            client.get_pending_async_connection_with_config(cluster_config(op_timeout));
        let alive = Arc::new(AtomicBool::new(true));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let gone = RuntimeGone(alive.clone());
            runtime.spawn(async move {
                let _gone = gone;
                std::future::pending::<()>().await;
            });
        }
        self.current.store(Some(Arc::new(LiveCluster {
            connection: connection.clone(),
            alive,
        })));
        connection
    }
}

/// The shared async connection of a [`Link`].
enum Shared {
    Node(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

fn at_master(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )))
}

fn open_cluster(client: &ClusterClient, op_timeout: Duration) -> RedisResult<ClusterConnection> {
    client.get_connection_with_config(cluster_config(op_timeout))
}

fn open_node(client: &Client, op_timeout: Duration) -> RedisResult<Connection> {
    let connection = client.get_connection_with_timeout(op_timeout)?;
    connection.set_read_timeout(Some(op_timeout))?;
    connection.set_write_timeout(Some(op_timeout))?;
    Ok(connection)
}

#[derive(Clone, Copy)]
pub(super) enum Tracked<'a> {
    Node(&'a TrackedConnection),
    Cluster(&'a TrackedCluster),
}

impl Tracked<'_> {
    pub(super) fn keys(&self) -> &TrackedKeys {
        match self {
            Tracked::Node(node) => &node.keys,
            Tracked::Cluster(cluster) => &cluster.keys,
        }
    }

    pub(super) fn is_available(&self) -> bool {
        match self {
            Tracked::Node(node) => node.is_available(),
            Tracked::Cluster(cluster) => cluster.available.load(Relaxed),
        }
    }

    /// Whether a push is applied before any reply read after it, so that a
    /// reply proves what was known before it is still current. On one node
    /// it is; redis-rs's cluster client forwards pushes through a channel.
    pub(super) fn ordered(&self) -> bool {
        matches!(self, Tracked::Node(_))
    }

    /// Reads the entry at `key`, on one node gathered with reads that start
    /// meanwhile when many are out (see [`gather`](super::gather)).
    pub(super) async fn get(&self, key: &str) -> RedisResult<Option<Vec<u8>>> {
        match self {
            Tracked::Node(node) => node.get(key).await,
            Tracked::Cluster(_) => self.query(&Request::Cmd(&get_cmd(key))).await,
        }
    }

    /// Runs `request`, a command or a pipeline. On a cluster, tracking is
    /// switched on first on whichever node connection the request takes
    /// (idempotent), since the client opens node connections itself.
    pub(super) async fn query<T: FromRedisValue>(&self, request: &Request<'_>) -> RedisResult<T> {
        match self {
            Tracked::Node(node) => node.query(request).await,
            // Boxed: the cluster client's future is large, and would
            // otherwise be part of every cached call's future on one node.
            Tracked::Cluster(cluster) => Box::pin(cluster.query(request)).await,
        }
    }
}

/// What a tracked connection is asked to run: a command, or a pipeline of
/// keys in one slot (which the cluster connection routes by).
pub(super) enum Request<'a> {
    Cmd(&'a Cmd),
    Pipeline(&'a Pipeline, u16),
}

/// A RESP3 cluster connection whose node connections get `CLIENT TRACKING
/// ON OPTIN` with each tracked read. Pushes reach [`TrackedKeys`] through
/// the client's channel, so they are not ordered with replies: reads that
/// must be exact read their generations every time, and the tracked values
/// serve the in-process tier, whose bound is the push's delivery.
pub(super) struct TrackedCluster {
    client: ClusterClient,
    connection: ClusterShared,
    keys: Arc<TrackedKeys>,
    op_timeout: Duration,
    /// Cleared for good when the servers refuse RESP3 or tracking.
    available: AtomicBool,
}

impl TrackedCluster {
    async fn query<T: FromRedisValue>(&self, request: &Request<'_>) -> RedisResult<T> {
        let mut connection = self.connection.get(&self.client, self.op_timeout);
        let result = match request {
            Request::Cmd(cmd) => cmd.query_async(&mut connection).await,
            Request::Pipeline(pipeline, slot) => {
                // CLIENT TRACKING first, on the node of the slot: keyless
                // CLIENT commands would otherwise be routed by their first
                // argument, so the pipeline is routed by hand, and its
                // replies picked (the GETs') by hand.
                let mut tracked = redis::pipe();
                tracked.cmd("CLIENT").arg("TRACKING").arg("ON").arg("OPTIN");
                let mut gets = Vec::new();
                for cmd in pipeline.cmd_iter() {
                    gets.push(matches!(cmd.args_iter().next(), Some(Arg::Simple(b"GET"))));
                    tracked.add_command(cmd.clone());
                }
                let route =
                    SingleNodeRoutingInfo::SpecificNode(Route::new(*slot, SlotAddr::Master));
                match connection
                    .route_pipeline(tracked, 1, gets.len(), route)
                    .await
                {
                    Ok(replies) => {
                        let replies = replies
                            .into_iter()
                            .zip(gets)
                            .filter_map(|(reply, get)| get.then_some(reply))
                            .collect();
                        T::from_redis_value(Value::Array(replies)).map_err(Into::into)
                    }
                    Err(error) => Err(error),
                }
            }
        };
        if let Err(error) = &result {
            if refuses_tracking(error) && self.available.swap(false, Relaxed) {
                report_refusal(error);
            }
            // A node connection may have gone, and its pushes with it.
            self.keys.forget_all();
        }
        result
    }
}

/// Whether `error` says the server refuses tracking (or RESP3), rather
/// than being away or refusing this client altogether (which the store
/// reports once).
fn refuses_tracking(error: &redis::RedisError) -> bool {
    let other = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.kind() == redis::ErrorKind::AuthenticationFailed
        || error.code() == Some("WRONGPASS");
    !other
}

fn report_refusal(error: &redis::RedisError) {
    tracing::warn!(
        %error,
        "redis refuses client-side tracking (RESP3 `CLIENT TRACKING`): per-user entries are read with their generation on every hit, and the in-process tier stays empty"
    );
}

/// A RESP3 connection with `CLIENT TRACKING ON OPTIN`: Redis tracks the
/// keys it reads right after `CLIENT CACHING YES` and pushes their names on
/// it when they change. The pushes are handled inline by the connection's
/// reader, before any reply that follows them: so when a reply on this
/// connection is handled, every change Redis made before answering it has
/// reached [`TrackedKeys`].
pub(super) struct TrackedConnection {
    client: Client,
    keys: Arc<TrackedKeys>,
    current: ArcSwapOption<Live>,
    connecting: tokio::sync::Mutex<()>,
    op_timeout: Duration,
    /// Cleared for good when the server refuses RESP3 or tracking.
    available: AtomicBool,
    gathering: Arc<Gathering>,
}

/// An open tracked connection, and whether it still is: its reader clears
/// the flag when it ends, as does a request that finds it broken.
struct Live {
    connection: MultiplexedConnection,
    alive: Arc<AtomicBool>,
}

impl TrackedConnection {
    fn new(client: &Client, op_timeout: Duration) -> RedisResult<TrackedConnection> {
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        Ok(TrackedConnection {
            client: Client::open(info.set_redis_settings(settings))?,
            keys: Arc::new(TrackedKeys::new(is_function_generation)),
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            op_timeout,
            available: AtomicBool::new(true),
            gathering: Arc::default(),
        })
    }

    fn is_available(&self) -> bool {
        self.available.load(Relaxed)
    }

    /// Runs `request` on the connection, opening one first if there is none;
    /// a connection that failed is replaced by the next request.
    async fn query<T: FromRedisValue>(&self, request: &Request<'_>) -> RedisResult<T> {
        let (mut connection, id) = match self.current() {
            Some(current) => current,
            // Boxed: connecting is rare, and its future would otherwise
            // be part of every cached call's (5.5 KB instead of 3.5 KB).
            None => Box::pin(self.connect()).await?,
        };
        let result = match request {
            Request::Cmd(cmd) => cmd.query_async(&mut connection).await,
            Request::Pipeline(pipeline, _) => pipeline.query_async(&mut connection).await,
        };
        self.judge(id, &result);
        result
    }

    /// Reads the entry at `key`: alone while few reads are out, else with
    /// the others that are ready, all in one round trip.
    async fn get(&self, key: &str) -> RedisResult<Option<Vec<u8>>> {
        let out = self.gathering.start();
        if out.crowded()
            && let Some((connection, id)) = self.current()
            && let Some(answer) = self.gathering.join(key, connection)
            && let Ok(reply) = answer.await
        {
            self.judge(id, &reply);
            return reply;
        }
        self.query(&Request::Cmd(&get_cmd(key))).await
    }

    /// The live connection, and its identity, without a lock or a shared
    /// counter to write: this runs on every hit.
    fn current(&self) -> Option<(MultiplexedConnection, usize)> {
        let current = self.current.load();
        let live = current.as_ref().filter(|live| live.alive.load(Relaxed))?;
        Some((live.connection.clone(), Arc::as_ptr(live) as usize))
    }

    /// What a request on the connection `id` brought: an error that says
    /// the connection is broken, or timed out, fails it.
    fn judge<T>(&self, id: usize, result: &RedisResult<T>) {
        if let Err(error) = result
            && (error.is_unrecoverable_error() || error.is_timeout())
        {
            self.failed(id);
        }
    }

    /// The connection `id` failed: the next request opens another, and
    /// nothing it tracked is known any more, since its pushes may stop.
    fn failed(&self, id: usize) {
        let current = self.current.load();
        if let Some(live) = current.as_ref()
            && Arc::as_ptr(live) as usize == id
            && live.alive.swap(false, Relaxed)
        {
            self.keys.forget_all();
        }
    }

    async fn connect(&self) -> RedisResult<(MultiplexedConnection, usize)> {
        let _opening = self.connecting.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let alive = Arc::new(AtomicBool::new(true));
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_push_sender({
                let keys = Arc::downgrade(&self.keys);
                let alive = alive.clone();
                move |push: PushInfo| {
                    if push.kind == PushKind::Disconnection {
                        alive.store(false, Relaxed);
                    }
                    if let Some(keys) = keys.upgrade() {
                        apply_push(&keys, push);
                    }
                    Ok::<(), ()>(())
                }
            });
        let connection = async {
            let mut connection = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let mut tracking = redis::cmd("CLIENT");
            tracking.arg("TRACKING").arg("ON").arg("OPTIN");
            tracking.query_async::<()>(&mut connection).await?;
            Ok(connection)
        };
        let connection = connection.await.inspect_err(|error: &redis::RedisError| {
            if refuses_tracking(error) && self.available.swap(false, Relaxed) {
                report_refusal(error);
            }
        })?;
        let live = Arc::new(Live {
            connection: connection.clone(),
            alive,
        });
        let id = Arc::as_ptr(&live) as usize;
        self.current.store(Some(live));
        Ok((connection, id))
    }
}

/// Applies what Redis pushed: keys that changed, all keys (after a flush,
/// the server sends nil), or the end of the connection.
fn apply_push(keys: &TrackedKeys, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(changed)) => {
                for key in changed {
                    match key {
                        Value::BulkString(key) => match std::str::from_utf8(key) {
                            Ok(key) => keys.forget(key),
                            Err(_) => keys.forget_all(),
                        },
                        _ => keys.forget_all(),
                    }
                }
            }
            _ => keys.forget_all(),
        },
        PushKind::Disconnection => keys.forget_all(),
        _ => {}
    }
}

/// The op timeout on connecting and on each reply, for every cluster connection.
fn cluster_config(op_timeout: Duration) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(op_timeout)
        .set_response_timeout(op_timeout)
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

    /// Runs `run` on an idle connection, or one `open` opens, and keeps
    /// it for the next if it still works.
    fn with<T>(
        &self,
        open: impl FnOnce() -> RedisResult<C>,
        run: impl FnOnce(&mut C) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => open()?,
        };
        let reply = run(&mut connection).inspect_err(|error| {
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
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if matches!(scheme, "redis" | "rediss") && authority.contains(',') {
        return Err(Error::Config {
            what: "redis_url",
            detail: format!(
                "{} names several hosts, and a node URL names one; for a cluster, write {scheme}+cluster://host1:port1,host2:port2",
                redact(url)
            ),
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_url_with_several_hosts_points_to_the_cluster_scheme() {
        let error = check_scheme("redis://h1:7000,h2:7001")
            .unwrap_err()
            .to_string();
        assert!(error.contains("redis+cluster://host1:port1"), "{error}");
        let error = check_scheme("rediss://u:secret@h1:1,h2:2/0")
            .unwrap_err()
            .to_string();
        assert!(error.contains("rediss+cluster://"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        assert!(check_scheme("redis://h1:7000/0?name=a,b").is_ok());
    }
}
