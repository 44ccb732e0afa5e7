//! How many replicas an invalidation waits for at each master: the
//! setting, and what this process knows of the masters' replicas.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ReplicaAcks;
use crate::key::SLOTS;

/// How long what was read of the masters' replicas is trusted before an
/// invalidation reads it again. Shorter after a write came up short (see
/// [`Replicas::reread`]).
const REREAD: Duration = Duration::from_secs(10);

pub(super) struct Replicas {
    acks: ReplicaAcks,
    cluster: bool,
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// When the replicas were last read; `None` before the first read and
    /// after a write came up short.
    read_at: Option<Instant>,
    /// One node: the most replicas seen connected to it, since a replica
    /// that is cut off is exactly the one not to forget.
    node: u32,
    /// A cluster: each master's replicas, as the cluster lists them, and
    /// a slot it serves, to route its `WAIT` by.
    masters: Vec<Master>,
    /// A cluster: which of `masters` serves each slot (`u16::MAX`: none).
    slot_masters: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Master {
    pub(super) slot: u16,
    pub(super) replicas: u32,
}

impl Replicas {
    pub(super) fn new(acks: ReplicaAcks, cluster: bool) -> Replicas {
        Replicas {
            acks,
            cluster,
            known: Mutex::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an invalidation must read the replicas before it writes:
    /// they are needed and what was read is missing or old. A cluster's
    /// masters are needed whatever the count, to wait at each of them
    /// after a function's generation.
    pub(super) fn stale(&self) -> bool {
        let needed = match self.acks {
            ReplicaAcks::Off => false,
            ReplicaAcks::Auto => true,
            ReplicaAcks::AtLeast(_) => self.cluster,
        };
        needed
            && self
                .known()
                .read_at
                .is_none_or(|read_at| read_at.elapsed() >= REREAD)
    }

    /// The command whose reply [`learn`](Self::learn) reads.
    pub(super) fn command(&self) -> redis::Cmd {
        let mut cmd = redis::cmd(if self.cluster { "CLUSTER" } else { "INFO" });
        cmd.arg(if self.cluster { "NODES" } else { "replication" });
        cmd
    }

    /// Learns the replicas from the reply to [`command`](Self::command).
    pub(super) fn learn(&self, reply: &str) {
        let mut known = self.known();
        if self.cluster {
            let (masters, slot_masters) = cluster_masters(reply);
            known.masters = masters;
            known.slot_masters = slot_masters;
        } else {
            known.node = known.node.max(connected_replicas(reply));
        }
        known.read_at = Some(Instant::now());
    }

    /// A server that refuses to say: on one node, what was seen before
    /// holds (nothing, at first: most single nodes have no replica).
    pub(super) fn unknown_on_node(&self) {
        self.known().read_at = Some(Instant::now());
    }

    /// A write came up short, or failed: the masters may have changed
    /// (a failover), so the next invalidation reads them again.
    pub(super) fn reread(&self) {
        self.known().read_at = None;
    }

    /// How many replicas a write at `slot` waits for.
    pub(super) fn wanted(&self, slot: u16) -> u32 {
        // Only `Auto` depends on what was read.
        let replicas = match self.acks {
            ReplicaAcks::Auto => self.replicas_at(slot),
            ReplicaAcks::Off | ReplicaAcks::AtLeast(_) => 0,
        };
        self.wanted_of(replicas)
    }

    /// The replicas known of the master that serves `slot`.
    fn replicas_at(&self, slot: u16) -> u32 {
        let known = self.known();
        if !self.cluster {
            return known.node;
        }
        known
            .slot_masters
            .get(usize::from(slot))
            .and_then(|&master| known.masters.get(usize::from(master)))
            .map_or(0, |master| master.replicas)
    }

    /// How many replicas a write waits for at a master that has `replicas`.
    fn wanted_of(&self, replicas: u32) -> u32 {
        match self.acks {
            ReplicaAcks::Off => 0,
            ReplicaAcks::AtLeast(count) => count,
            ReplicaAcks::Auto => replicas.min(1),
        }
    }

    /// Each master of a cluster, by a slot it serves, with the replicas a
    /// write there waits for; none that waits for nothing.
    pub(super) fn masters(&self) -> Vec<Master> {
        self.known()
            .masters
            .iter()
            .map(|master| Master {
                slot: master.slot,
                replicas: self.wanted_of(master.replicas),
            })
            .filter(|master| master.replicas > 0)
            .collect()
    }
}

/// `connected_slaves` of an `INFO replication` reply.
fn connected_replicas(info: &str) -> u32 {
    info.lines()
        .find_map(|line| line.strip_prefix("connected_slaves:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// The masters of a `CLUSTER NODES` reply that serve slots, each with the
/// replicas listed for it (whatever their state: one that is down or cut
/// off is still the master's replica) and its first slot; and which of
/// them serves each slot.
fn cluster_masters(nodes: &str) -> (Vec<Master>, Vec<u16>) {
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|line| line.split_whitespace().collect())
        .filter(|fields: &Vec<&str>| fields.len() >= 8)
        .collect();
    let mut masters = Vec::new();
    let mut slot_masters = vec![u16::MAX; SLOTS];
    for fields in &lines {
        let (id, flags) = (fields[0], fields[2]);
        if !flags.split(',').any(|flag| flag == "master") {
            continue;
        }
        let ranges: Vec<(u16, u16)> = fields[8..].iter().filter_map(|s| slot_range(s)).collect();
        let Some(&(first, _)) = ranges.first() else {
            continue;
        };
        let index = u16::try_from(masters.len()).unwrap_or(u16::MAX);
        for (start, end) in ranges {
            for slot in start..=end {
                if let Some(at) = slot_masters.get_mut(usize::from(slot)) {
                    *at = index;
                }
            }
        }
        let replicas = lines
            .iter()
            .filter(|replica| replica[3] == id)
            .filter(|replica| replica[2].split(',').any(|flag| flag == "slave"))
            .count();
        masters.push(Master {
            slot: first,
            replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
        });
    }
    (masters, slot_masters)
}

/// `5461-10922` or `42`; `None` for a slot being moved (`[42->-id]`).
fn slot_range(text: &str) -> Option<(u16, u16)> {
    let (start, end) = text.split_once('-').unwrap_or((text, text));
    let (start, end) = (start.parse().ok()?, end.parse().ok()?);
    (start <= end && usize::from(end) < SLOTS).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three masters; the replica of the second is down (`fail`) and still
    /// its replica; the third has none.
    const NODES: &str = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 1700000000000 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master - 0 1700000000000 3 connected 10923-16383 [16000->-a1]
d4 127.0.0.1:7004@17004 slave a1 0 1700000000000 1 connected
e5 127.0.0.1:7005@17005 slave,fail b2 1700000000000 1700000000000 2 disconnected
f6 127.0.0.1:7006@17006 master,fail - 1700000000000 1700000000000 0 disconnected
";

    fn learned(acks: ReplicaAcks) -> Replicas {
        let replicas = Replicas::new(acks, true);
        replicas.learn(NODES);
        replicas
    }

    #[test]
    fn a_cluster_master_counts_its_replicas_whatever_their_state() {
        let replicas = learned(ReplicaAcks::Auto);
        assert_eq!(replicas.wanted(0), 1);
        assert_eq!(replicas.wanted(5461), 1, "its replica is down, and counts");
        assert_eq!(replicas.wanted(16383), 0, "no replica, nothing to wait for");
        assert_eq!(
            replicas.masters(),
            [
                Master {
                    slot: 0,
                    replicas: 1
                },
                Master {
                    slot: 5461,
                    replicas: 1
                }
            ]
        );
        assert!(!replicas.stale());
        replicas.reread();
        assert!(replicas.stale(), "a short write has it read again");
    }

    #[test]
    fn a_count_is_asked_of_every_master_and_off_of_none() {
        let replicas = learned(ReplicaAcks::AtLeast(2));
        assert_eq!(replicas.wanted(16383), 2);
        assert_eq!(replicas.masters().len(), 3);
        let off = learned(ReplicaAcks::Off);
        assert_eq!(off.wanted(0), 0);
        assert!(off.masters().is_empty());
        assert!(!Replicas::new(ReplicaAcks::Off, true).stale());
    }

    #[test]
    fn a_node_remembers_the_most_replicas_it_saw_connected() {
        let replicas = Replicas::new(ReplicaAcks::Auto, false);
        assert!(replicas.stale());
        assert_eq!(replicas.wanted(0), 0);
        replicas.learn("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n");
        assert_eq!(replicas.wanted(0), 1);
        replicas.learn("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n");
        assert_eq!(
            replicas.wanted(0),
            1,
            "a replica cut off is still waited for"
        );
        assert!(!Replicas::new(ReplicaAcks::AtLeast(1), false).stale());
    }
}
