//! A real Redis Cluster for the tests: `redis-server --cluster-enabled yes`
//! processes on free loopback ports, joined by `redis-cli --cluster create`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{RedisServer, free_port};

/// Masters and one replica each, killed when dropped.
pub struct RedisCluster {
    /// `None` where a test killed the node.
    pub nodes: Vec<Option<RedisServer>>,
    dirs: Vec<PathBuf>,
}

/// How long a master may be silent before its replica takes over: short,
/// so that failover tests are quick.
const NODE_TIMEOUT_MS: u32 = 1000;

/// The `redis-cli` binary: beside `redis-server`, or on `PATH`.
fn redis_cli() -> PathBuf {
    let server = super::redis_server_binary();
    let beside = server.with_file_name("redis-cli");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("redis-cli")
    }
}

impl RedisCluster {
    /// Starts `masters` masters with one replica each and waits until the
    /// cluster says `cluster_state:ok` on every node.
    pub fn start(masters: usize) -> RedisCluster {
        RedisCluster::start_with_node_timeout(masters, NODE_TIMEOUT_MS)
    }

    /// [`start`](Self::start), with masters failed over after `node_timeout_ms` of silence.
    pub fn start_with_node_timeout(masters: usize, node_timeout_ms: u32) -> RedisCluster {
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..masters * 2 {
            let port = free_port();
            let bus_port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("cached-api-cluster-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a directory for the node");
            let dir_arg = dir.to_str().expect("a UTF-8 temp dir").to_owned();
            let node = RedisServer::start_with(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus_port.to_string(),
                    "--cluster-node-timeout",
                    &node_timeout_ms.to_string(),
                    // A replica takes over however long ago it last heard
                    // from its master: the tests kill masters on purpose.
                    "--cluster-replica-validity-factor",
                    "0",
                    // Masters that are up keep serving their slots while
                    // another master's are uncovered, as production
                    // clusters are configured (the default refuses every
                    // command until the failover).
                    "--cluster-require-full-coverage",
                    "no",
                    "--dir",
                    &dir_arg,
                ],
            );
            nodes.push(Some(node));
            dirs.push(dir);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .flatten()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new(redis_cli())
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|error| {
                panic!("could not run redis-cli (apt-get install -y redis-tools): {error}")
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes, dirs };
        cluster.wait_until_ok();
        cluster.wait_for_replicas();
        cluster
    }

    /// Waits until every master's replica has finished its first sync:
    /// until then a master does not count it, and invalidations, which wait
    /// for a replica, are refused.
    fn wait_for_replicas(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in self.nodes.iter().flatten() {
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut node.connection())
                    .expect("INFO replication");
                let replica = info.contains("role:slave");
                if (replica && info.contains("master_link_status:up"))
                    || (!replica && info.contains("state=online"))
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "a replica did not finish its first sync: {info}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// `redis://` URLs of the nodes that are up.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().flatten().map(RedisServer::url).collect()
    }

    /// The one-URL form a service's environment uses:
    /// `redis+cluster://host1:port1,host2:port2,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .urls()
            .iter()
            .map(|url| {
                url.trim_start_matches("redis://")
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Waits until every node that is up reports `cluster_state:ok` and
    /// agrees that every slot is served. No event announces it: the nodes
    /// gossip, so the test asks them.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self.nodes.iter().flatten().all(|node| {
                let info: Option<String> = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.connection())
                    .ok();
                info.is_some_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a node that is up serves `slot` as its master, as every
    /// live node sees it: after a master was killed, until its replica was
    /// promoted and the others learned it.
    pub fn wait_for_live_master(&self, slot: u16) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let masters: Vec<Option<usize>> = self
                .nodes
                .iter()
                .flatten()
                .map(|node| self.master_port_seen_by(node, slot))
                .map(|port| port.and_then(|port| self.live_index_of_port(port)))
                .collect();
            if let Some(Some(first)) = masters.first()
                && masters.iter().all(|master| *master == Some(*first))
            {
                self.wait_until_ok();
                return *first;
            }
            assert!(
                Instant::now() < deadline,
                "no replica took slot {slot} over"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn master_port_seen_by(&self, node: &RedisServer, slot: u16) -> Option<u16> {
        slot_masters(node)?
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| port)
    }

    fn live_index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.as_ref().is_some_and(|node| node.port() == port))
    }

    /// The index of the node that serves `slot` as a master now.
    pub fn master_of(&self, slot: u16) -> usize {
        let port = self
            .master_port_seen_by(self.any_node(), slot)
            .expect("every slot is served");
        self.index_of_port(port)
    }

    /// The slot ranges node `index` serves as a master.
    pub fn slots_of(&self, index: usize) -> Vec<(u16, u16)> {
        let port = self.nodes[index].as_ref().expect("up").port();
        slot_masters(self.any_node())
            .expect("CLUSTER SLOTS")
            .into_iter()
            .filter(|(_, _, master)| *master == port)
            .map(|(start, end, _)| (start, end))
            .collect()
    }

    fn any_node(&self) -> &RedisServer {
        self.nodes.iter().flatten().next().expect("a node is up")
    }

    /// Whether node `index` is up and a master.
    pub fn master_of_index(&self, index: usize) -> bool {
        let Some(node) = &self.nodes[index] else {
            return false;
        };
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query(&mut node.connection())
            .expect("ROLE");
        matches!(role.first(), Some(redis::Value::BulkString(role)) if role == b"master")
    }

    pub fn index_of_port(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|node| node.as_ref().is_some_and(|node| node.port() == port))
            .expect("a node on that port")
    }

    /// The index of the node that replicates the master `master`.
    pub fn replica_of(&self, master: usize) -> usize {
        let port = i64::from(self.nodes[master].as_ref().expect("up").port());
        self.nodes
            .iter()
            .position(|node| {
                node.as_ref().is_some_and(|node| {
                    let role: Vec<redis::Value> = redis::cmd("ROLE")
                        .query(&mut node.connection())
                        .expect("ROLE");
                    matches!(&role[..], [redis::Value::BulkString(role), _, redis::Value::Int(of), ..] if role == b"slave" && *of == port)
                })
            })
            .expect("every master has a replica")
    }

    /// Waits until node `replica` has every write its master `master` took
    /// until now: their replication offsets, which no event announces.
    pub fn wait_replicated(&self, master: usize, replica: usize) {
        let offset = |index: usize, field: &str| -> i64 {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut self.nodes[index].as_ref().expect("up").connection())
                .expect("INFO replication");
            info.lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|offset| offset.trim().parse().ok())
                .unwrap_or_else(|| panic!("{field} in {info}"))
        };
        let wanted = offset(master, "master_repl_offset:");
        let deadline = Instant::now() + Duration::from_secs(30);
        while offset(replica, "slave_repl_offset:") < wanted {
            assert!(Instant::now() < deadline, "the replica did not catch up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The cluster id of node `index`.
    pub fn node_id(&self, index: usize) -> String {
        let node = self.nodes[index].as_ref().expect("the node is up");
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut node.connection())
            .expect("CLUSTER MYID")
    }

    /// The slot of `key`, as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let node = self.nodes.iter().flatten().next().expect("a node is up");
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut node.connection())
            .expect("CLUSTER KEYSLOT")
    }

    /// Moves `slot` from its master to the master `to`, keys and all, the
    /// way `redis-cli --cluster reshard` does: IMPORTING, MIGRATING, MIGRATE
    /// in batches, then NODE on every master.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.master_of(slot);
        assert_ne!(from, to, "the slot is already there");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let connection = |index: usize| self.nodes[index].as_ref().expect("up").connection();
        let setslot = |index: usize, state: &str, id: &str| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .query(&mut connection(index))
                .unwrap_or_else(|error| panic!("CLUSTER SETSLOT {state}: {error}"));
        };
        setslot(to, "IMPORTING", &from_id);
        setslot(from, "MIGRATING", &to_id);
        let to_port = self.nodes[to].as_ref().expect("up").port();
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut connection(from))
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to_port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut connection(from))
                .expect("MIGRATE");
        }
        setslot(to, "NODE", &to_id);
        setslot(from, "NODE", &to_id);
        // The other masters learn it now rather than by gossip; replicas
        // refuse SETSLOT and follow their masters.
        for (index, node) in self.nodes.iter().enumerate() {
            if index != from && index != to && node.is_some() {
                let _: redis::RedisResult<()> = redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to_id)
                    .query(&mut connection(index));
            }
        }
    }
}

/// Each slot range and the port of its master, as `node` sees them
/// (`CLUSTER SLOTS`: start, end, the master, then its replicas).
fn slot_masters(node: &RedisServer) -> Option<Vec<(u16, u16, u16)>> {
    let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut node.connection())
        .ok()?;
    ranges
        .into_iter()
        .map(|range| match &range[..] {
            [
                redis::Value::Int(start),
                redis::Value::Int(end),
                redis::Value::Array(master),
                ..,
            ] => match master.get(1) {
                Some(redis::Value::Int(port)) => Some((
                    u16::try_from(*start).ok()?,
                    u16::try_from(*end).ok()?,
                    u16::try_from(*port).ok()?,
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
