//! The transport layer: how an item crosses from a queue's producers to its
//! readers. The rest of the runtime sees only [`Tx`], [`Rx`], [`Item`],
//! [`select`] and the END protocol of [`end`]; each way of moving items is a
//! flavor of its own: [`local`], an in-process channel; [`routed`], a
//! local channel per replica of the reader, with producers that choose
//! among them (by key, or all of them); and (feature `redis`) [`redis`], a
//! Redis stream shared by processes.
//!
//! To add a flavor: write `transport/<name>.rs` with the same operations as
//! `local.rs`, add a variant to [`Tx`] and [`Rx`] and an arm to each match
//! below, and a constructor beside [`channel`]. Inboxes, outboxes, sources,
//! sinks, batching and statistics do not change.

mod end;
mod local;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod routed;

use std::time::{Duration, Instant};

pub(crate) use end::Gate;
pub use routed::KeyFn;
pub(crate) use routed::Route;

use crate::Msg;

/// What travels through a queue: a message, a block of messages (on a
/// batched queue), or the END of the stream. END is in-band so that it
/// queues behind the messages sent before it.
///
/// The enum adds one word to `Msg<T>`: [`Kind`](crate::Kind) leaves no
/// invalid bit pattern to hide the variant in, on purpose.
pub(crate) enum Item<T> {
    Msg(Msg<T>),
    /// Boxed, so that the item stays one word over a message even when the
    /// message is smaller than a `Vec`.
    #[allow(clippy::box_collection)]
    Batch(Box<Vec<Msg<T>>>),
    End,
}

impl<T> Item<T> {
    /// The message to hand back from an item that could not be sent: for a
    /// block, its last message, the one whose `put` sent the block.
    pub(crate) fn into_last_msg(self) -> Option<Msg<T>> {
        match self {
            Item::Msg(msg) => Some(msg),
            Item::Batch(block) => block.into_iter().last(),
            Item::End => None,
        }
    }

    /// How many messages the item carries.
    pub(crate) fn messages(&self) -> u64 {
        match self {
            Item::Msg(_) => 1,
            Item::Batch(block) => block.len() as u64,
            Item::End => 0,
        }
    }
}

/// How a queue's readers learn that it has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its producers go away (a pipeline's workers return): the readers
    /// see END once every [`Tx`] is dropped.
    ProducersGone,
    /// Someone ends it explicitly (a source, a hand-made queue) by sending
    /// one [`Item::End`] through the queue's [`Gate`]. The END is sticky:
    /// a reader that takes it puts it back for the others.
    Explicit,
}

/// Why a send did not go through; the item comes back.
pub(crate) enum SendError<T> {
    /// The queue is full (`try_send`) or stayed full until the deadline.
    Full(Item<T>),
    /// Every reader is gone.
    Gone(Item<T>),
}

/// The producing end of a queue; clones share the queue.
pub(crate) enum Tx<T> {
    Local(local::Tx<T>),
    Routed(routed::Tx<T>),
    #[cfg(feature = "redis")]
    Redis(redis::Tx<T>),
}

/// The reading end of a queue; clones share the queue (each item goes to
/// one reader). A routed queue has one per replica of its reader, each a
/// local channel of its own.
pub(crate) enum Rx<T> {
    Local(local::Rx<T>),
    #[cfg(feature = "redis")]
    Redis(redis::Rx<T>),
}

/// A queue holding at most `capacity` items (`None`: no limit; at least 1).
pub(crate) fn channel<T>(capacity: Option<usize>, ending: Ending) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = local::channel(capacity, ending);
    (Tx::Local(tx), Rx::Local(rx))
}

/// A routed queue for `readers` replicas (at least one), each with a
/// channel of `capacity` items: its producing end, the reading end of
/// each replica, and the count of messages routed to each (for the
/// queue's account per channel).
pub(crate) fn routed_channel<T>(
    route: Route<T>,
    readers: usize,
    capacity: Option<usize>,
    part: usize,
    ending: Ending,
) -> (
    Tx<T>,
    Vec<Rx<T>>,
    Vec<std::sync::Arc<std::sync::atomic::AtomicU64>>,
) {
    let (tx, rxs) = routed::channel(route, readers, capacity, part, ending);
    let counts = tx.routed();
    (
        Tx::Routed(tx),
        rxs.into_iter().map(Rx::Local).collect(),
        counts,
    )
}

/// Both ends of a Redis-backed queue.
#[cfg(feature = "redis")]
pub(crate) fn redis_channel<T>(stream: &std::sync::Arc<redis::Stream<T>>) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = redis::channel(stream);
    (Tx::Redis(tx), Rx::Redis(rx))
}

/// This thread runs a pipeline's worker: on a Redis-backed queue, what it
/// puts is written with the acknowledgement of what it took.
#[inline]
pub(crate) fn worker_thread() {
    #[cfg(feature = "redis")]
    redis::worker_thread();
}

/// This thread is about to wait: what it holds for other processes goes.
#[inline]
pub(crate) fn flush_thread() {
    #[cfg(feature = "redis")]
    redis::flush_thread();
}

/// How a worker thread finished, for what it holds of remote queues.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum ThreadEnd<'a> {
    /// It returned: the message it was handling was handled.
    Returned,
    /// It failed (panicked or returned `Err`) with this error.
    Failed(&'a str),
    /// It stopped before handling the message it held (its readers were
    /// gone, or the pipeline was cancelled).
    Stopped,
}

/// A worker thread finishes: on Redis-backed queues, the message it was
/// handling is done, goes back, or counts a failure (see [`redis`]), and
/// its part of the queues it produced ends.
#[inline]
pub(crate) fn thread_done(_how: ThreadEnd) {
    #[cfg(feature = "redis")]
    redis::thread_done(match _how {
        ThreadEnd::Returned => redis::Outcome::Done,
        ThreadEnd::Failed(error) => redis::Outcome::Failed(error),
        ThreadEnd::Stopped => redis::Outcome::GaveBack,
    });
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        match self {
            Tx::Local(tx) => Tx::Local(tx.clone()),
            Tx::Routed(tx) => Tx::Routed(tx.clone()),
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => Tx::Redis(tx.clone()),
        }
    }
}

impl<T> Clone for Rx<T> {
    fn clone(&self) -> Self {
        match self {
            Rx::Local(rx) => Rx::Local(rx.clone()),
            #[cfg(feature = "redis")]
            Rx::Redis(rx) => Rx::Redis(rx.clone()),
        }
    }
}

impl<T> Tx<T> {
    /// Sends without waiting.
    #[inline(always)]
    pub(crate) fn try_send(&self, item: Item<T>) -> Result<(), SendError<T>> {
        match self {
            Tx::Local(tx) => tx.try_send(item),
            Tx::Routed(tx) => tx.try_send(item),
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => tx.try_send(item),
        }
    }

    /// Sends, waiting while the queue is full; `Err` with the item if every
    /// reader is gone.
    #[inline(always)]
    pub(crate) fn send(&self, item: Item<T>) -> Result<(), Item<T>> {
        match self {
            Tx::Local(tx) => tx.send(item),
            Tx::Routed(tx) => tx.send(item),
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => tx.send(item),
        }
    }

    /// Sends, waiting while the queue is full until `deadline`.
    #[inline(always)]
    pub(crate) fn send_deadline(
        &self,
        item: Item<T>,
        deadline: Instant,
    ) -> Result<(), SendError<T>> {
        match self {
            Tx::Local(tx) => tx.send_deadline(item, deadline),
            Tx::Routed(tx) => tx.send_deadline(item, deadline),
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => tx.send_deadline(item, deadline),
        }
    }

    /// Items waiting in the queue (a snapshot).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Tx::Local(tx) => tx.len(),
            Tx::Routed(tx) => tx.len(),
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => tx.len(),
        }
    }

    /// The most items the queue holds; `None` if unbounded.
    pub(crate) fn capacity(&self) -> Option<usize> {
        match self {
            Tx::Local(tx) => tx.capacity(),
            Tx::Routed(tx) => tx.capacity(),
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => tx.capacity(),
        }
    }

    /// Whether the queue's messages live outside this process.
    pub(crate) fn is_remote(&self) -> bool {
        match self {
            Tx::Local(_) | Tx::Routed(_) => false,
            #[cfg(feature = "redis")]
            Tx::Redis(_) => true,
        }
    }

    /// Makes the queue's producers stop waiting for room once `stop` says
    /// so (a remote queue is not emptied by this process's cancel).
    pub(crate) fn stop_when(&self, _stop: Box<dyn Fn() -> bool + Send + Sync>) {
        match self {
            Tx::Local(_) | Tx::Routed(_) => {}
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => tx.stop_when(_stop),
        }
    }

    /// Counts this process as a producer of the queue from now on (a
    /// Redis-backed queue's readers then wait for its END); nothing for a
    /// local queue.
    pub(crate) fn register_producer(&self) {
        match self {
            Tx::Local(_) | Tx::Routed(_) => {}
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => tx.register(),
        }
    }

    /// For a queue whose messages live outside this process: the count of
    /// messages this process sent to the dead letters from it.
    pub(crate) fn dead_letters(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        match self {
            Tx::Local(_) | Tx::Routed(_) => None,
            #[cfg(feature = "redis")]
            Tx::Redis(tx) => Some(tx.dead_lettered()),
        }
    }
}

impl<T> Rx<T> {
    /// The next item if one is waiting. Once the queue has ended this
    /// returns [`Item::End`], every time.
    #[inline]
    pub(crate) fn try_recv(&self) -> Option<Item<T>> {
        match self {
            Rx::Local(rx) => rx.try_recv(),
            #[cfg(feature = "redis")]
            Rx::Redis(rx) => rx.try_recv(),
        }
    }

    /// The next item, waiting for one; [`Item::End`] once the queue has
    /// ended, every time.
    pub(crate) fn recv(&self) -> Item<T> {
        match self {
            Rx::Local(rx) => rx.recv(),
            #[cfg(feature = "redis")]
            Rx::Redis(rx) => rx.recv(),
        }
    }

    /// Like [`recv`](Rx::recv), waiting at most until `deadline`: `None` if
    /// nothing came by then.
    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Option<Item<T>> {
        match self {
            Rx::Local(rx) => rx.recv_deadline(deadline),
            #[cfg(feature = "redis")]
            Rx::Redis(rx) => rx.recv_deadline(deadline),
        }
    }

    /// Items waiting in the queue (a snapshot).
    pub(crate) fn len(&self) -> usize {
        match self {
            Rx::Local(rx) => rx.len(),
            #[cfg(feature = "redis")]
            Rx::Redis(rx) => rx.len(),
        }
    }

    /// Whether the queue's messages live outside this process: a reader
    /// that leaves does not drain them (they wait for other readers).
    pub(crate) fn is_remote(&self) -> bool {
        match self {
            Rx::Local(_) => false,
            #[cfg(feature = "redis")]
            Rx::Redis(_) => true,
        }
    }

    /// A reader discards the rest of the queue on purpose: on a remote
    /// queue, for every process (what is put from now on is dropped).
    pub(crate) fn discard(&self) {
        match self {
            Rx::Local(_) => {}
            #[cfg(feature = "redis")]
            Rx::Redis(rx) => rx.discard(),
        }
    }

    /// This thread's reader of the queue is gone.
    pub(crate) fn close(&self) {
        match self {
            Rx::Local(_) => {}
            #[cfg(feature = "redis")]
            Rx::Redis(rx) => rx.close(),
        }
    }
}

/// Which of two queues [`select`] took from.
pub(crate) enum Selected<A, B> {
    Left(Item<A>),
    Right(Item<B>),
}

/// Waits until either queue has an item (or has ended) and takes it.
pub(crate) fn select<A, B>(left: &Rx<A>, right: &Rx<B>) -> Selected<A, B> {
    match (left, right) {
        (Rx::Local(l), Rx::Local(r)) => local::select(l, r),
        #[allow(unreachable_patterns)]
        _ => poll_select(left, right),
    }
}

/// [`select`] over queues of different flavors: looks at each in turn,
/// waiting on each a little.
#[allow(dead_code)]
fn poll_select<A, B>(left: &Rx<A>, right: &Rx<B>) -> Selected<A, B> {
    let slice = Duration::from_millis(5);
    loop {
        if let Some(item) = left.recv_deadline(Instant::now() + slice) {
            return Selected::Left(item);
        }
        if let Some(item) = right.recv_deadline(Instant::now() + slice) {
            return Selected::Right(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_adds_at_most_a_word_to_its_message() {
        assert_eq!(size_of::<Item<u64>>(), 32);
        assert_eq!(
            size_of::<Item<(u64, u64)>>(),
            size_of::<Msg<(u64, u64)>>() + 8
        );
    }

    #[test]
    fn readers_see_end_when_every_producer_is_gone() {
        let (tx, rx) = channel::<u8>(Some(2), Ending::ProducersGone);
        tx.send(Item::Msg(Msg::new(1))).ok();
        drop(tx);
        assert!(matches!(rx.recv(), Item::Msg(_)));
        assert!(matches!(rx.recv(), Item::End));
        assert!(matches!(rx.try_recv(), Some(Item::End)));
    }

    #[test]
    fn an_explicit_end_is_sticky_for_every_reader() {
        let (tx, rx) = channel::<u8>(Some(1), Ending::Explicit);
        let other = rx.clone();
        tx.send(Item::End).ok();
        assert!(matches!(rx.recv(), Item::End));
        assert!(matches!(other.recv(), Item::End));
        assert!(matches!(rx.try_recv(), Some(Item::End)));
    }
}
