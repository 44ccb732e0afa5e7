//! Reads of single entries that start while many others are out, gathered
//! and sent together as `MGET`s in one round trip.
//!
//! Every read through redis-rs's multiplexed connection costs the client
//! about as much as decoding a 1 kB value (a channel message, a reply
//! future, a parse), whatever it reads. When many calls read at once, the
//! first to wait spawns a task that lets the other ready calls run, then
//! sends what they all asked for and hands each its own value. With few
//! reads out, waiting for others would only delay this one: it goes alone.
//!
//! The sending task belongs to no call, so a call that is dropped, or kept
//! and never polled again, holds no other call up. If the task itself is
//! dropped before it sends (its runtime shuts down, while calls on another
//! runtime share the cache), the reads it gathered go alone.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use redis::RedisError;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;

use super::command::gathered_read;

/// From how many reads out at once (this one counted) a read is gathered.
/// Measured on a 2-core machine, loopback Redis, 1 kB values, gathering
/// every read against sending each alone: 2 tasks lost 18–30 % throughput
/// (the wait for others who are not there), 4 about 12 %, 16 were even, 64
/// gained about 30 %. With the line here, 4 and 8 tasks never gather (each
/// spends part of its call decoding, so not all are out at once).
pub(super) const GATHER_FROM: usize = 8;

/// Keys per `MGET` of a gathering: a larger one is sent as several in one
/// pipeline, so that no single command holds the server long.
pub(super) const KEYS_PER_MGET: usize = 64;

/// What one read brings back: the entry's bytes, if it exists.
pub(super) type Reply = Result<Option<Vec<u8>>, RedisError>;

/// The reads of one connection: how many are out, and those waiting to be
/// sent.
#[derive(Default)]
pub(super) struct Gathering {
    waiting: Mutex<Vec<Waiter>>,
    out: AtomicUsize,
}

struct Waiter {
    key: Box<str>,
    reply: oneshot::Sender<Reply>,
}

impl Gathering {
    /// Counts a read as out until the returned guard is dropped.
    pub(super) fn start(&self) -> Out<'_> {
        let before = self.out.fetch_add(1, Relaxed);
        Out {
            out: &self.out,
            crowded: before + 1 >= GATHER_FROM,
        }
    }

    /// Adds a read of `key` to the next gathering, and spawns the task that
    /// sends it on `connection` if this read is its first; `None` outside a
    /// Tokio runtime, where no task can be spawned.
    pub(super) fn join(
        self: &Arc<Self>,
        key: &str,
        connection: MultiplexedConnection,
    ) -> Option<oneshot::Receiver<Reply>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (lead, answer) = self.wait(key);
        if let Some(lead) = lead {
            runtime.spawn(lead.send(connection));
        }
        Some(answer)
    }

    /// Adds a read of `key`; the duty to send its gathering if it is the
    /// first.
    fn wait(self: &Arc<Self>, key: &str) -> (Option<Lead>, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.push(Waiter {
            key: key.into(),
            reply,
        });
        let lead = (waiting.len() == 1).then(|| Lead {
            gathering: Arc::clone(self),
            sent: false,
        });
        (lead, answer)
    }

    /// The reads gathered until now; later ones start the next gathering.
    fn take(&self) -> Batch {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        Batch {
            waiters: std::mem::take(&mut *waiting),
        }
    }
}

/// The duty to send one gathering. Dropped before it took the gathering
/// (its task dropped unpolled), it lets the gathered reads go alone, so
/// that none waits for a task that will not run.
struct Lead {
    gathering: Arc<Gathering>,
    sent: bool,
}

impl Lead {
    async fn send(mut self, mut connection: MultiplexedConnection) {
        // The calls that are ready run first, and their reads join.
        tokio::task::yield_now().await;
        let batch = self.take();
        let pipeline = gathered_read(batch.keys());
        let values: Result<Vec<Vec<Option<Vec<u8>>>>, RedisError> =
            pipeline.query_async(&mut connection).await;
        batch.answer(values.map(|values| values.into_iter().flatten().collect()));
    }

    /// The reads gathered until now; later ones start the next gathering.
    fn take(&mut self) -> Batch {
        self.sent = true;
        self.gathering.take()
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if !self.sent {
            drop(self.gathering.take());
        }
    }
}

/// A read counted as out.
pub(super) struct Out<'a> {
    out: &'a AtomicUsize,
    crowded: bool,
}

impl Out<'_> {
    /// Whether enough reads were out when this one started for it to be
    /// gathered.
    pub(super) fn crowded(&self) -> bool {
        self.crowded
    }
}

impl Drop for Out<'_> {
    fn drop(&mut self) {
        self.out.fetch_sub(1, Relaxed);
    }
}

/// Gathered reads, to send and answer; dropped unanswered, they go alone.
struct Batch {
    waiters: Vec<Waiter>,
}

impl Batch {
    /// The keys, in the order [`answer`](Self::answer) takes their values.
    fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.waiters.iter().map(|waiter| &*waiter.key)
    }

    /// Hands each read its value, or every read the error.
    fn answer(self, values: Result<Vec<Option<Vec<u8>>>, RedisError>) {
        match values {
            Ok(values) => {
                for (waiter, value) in self.waiters.into_iter().zip(values) {
                    let _ = waiter.reply.send(Ok(value));
                }
            }
            Err(error) => {
                for waiter in self.waiters {
                    let _ = waiter.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    #[test]
    fn reads_are_gathered_once_enough_are_out() {
        let gathering = Gathering::default();
        let alone: Vec<_> = (1..GATHER_FROM).map(|_| gathering.start()).collect();
        assert!(alone.iter().all(|out| !out.crowded()));
        assert!(gathering.start().crowded());
        drop(alone);
        assert!(!gathering.start().crowded(), "the others are back");
    }

    #[test]
    fn each_gathered_read_gets_its_own_value() {
        let gathering = Arc::new(Gathering::default());
        let (lead, mut a) = gathering.wait("a");
        let (none, mut b) = gathering.wait("b");
        assert!(none.is_none(), "one lead per gathering");
        let batch = lead.unwrap().take();
        assert_eq!(batch.keys().collect::<Vec<_>>(), ["a", "b"]);
        let (next, _) = gathering.wait("c");
        assert!(next.is_some(), "a read after the take starts anew");
        batch.answer(Ok(vec![Some(b"1".to_vec()), None]));
        assert_eq!(a.try_recv().unwrap().unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.try_recv().unwrap().unwrap(), None);
    }

    #[test]
    fn a_failed_gathering_fails_every_read() {
        let gathering = Arc::new(Gathering::default());
        let (lead, mut a) = gathering.wait("a");
        let (_, mut b) = gathering.wait("b");
        let error = RedisError::from((redis::ErrorKind::Io, "gone"));
        lead.unwrap().take().answer(Err(error));
        assert!(a.try_recv().unwrap().is_err());
        assert!(b.try_recv().unwrap().is_err());
    }

    #[test]
    fn reads_whose_task_never_ran_are_let_go() {
        let gathering = Arc::new(Gathering::default());
        let (lead, mut a) = gathering.wait("a");
        let (_, mut b) = gathering.wait("b");
        drop(lead);
        for answer in [&mut a, &mut b] {
            assert!(
                matches!(answer.try_recv(), Err(TryRecvError::Closed)),
                "the read goes alone rather than wait"
            );
        }
        let (lead, _) = gathering.wait("c");
        assert!(
            lead.is_some(),
            "the next read starts a gathering of its own"
        );
    }

    #[test]
    fn a_lead_that_sent_leaves_the_next_gathering_alone() {
        let gathering = Arc::new(Gathering::default());
        let (lead, _) = gathering.wait("a");
        let mut lead = lead.unwrap();
        let batch = lead.take();
        let (next, mut b) = gathering.wait("b");
        drop(lead);
        assert!(
            matches!(b.try_recv(), Err(TryRecvError::Empty)),
            "the read of the next gathering still waits for its own task"
        );
        assert_eq!(next.unwrap().take().keys().collect::<Vec<_>>(), ["b"]);
        drop(batch);
    }
}
