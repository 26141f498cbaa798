//! The hand-wired [`Queue`] and the free functions Python ezq users know:
//! [`put_msg`], [`iter_msg`], [`endq`] and [`iter_q`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::Msg;

/// What travels through every ezq channel: a message, or the END of the
/// stream. END is in-band so that it queues behind the messages sent before
/// it. The enum adds one word to `Msg<T>`: [`Kind`](crate::Kind) leaves no
/// invalid bit pattern to hide the variant in, on purpose.
pub(crate) enum Item<T> {
    Msg(Msg<T>),
    End,
    /// Several messages at once, on a batched pipeline queue. Boxed, so
    /// that the item stays one word over a message even when the message
    /// is smaller than a `Vec`.
    #[allow(clippy::box_collection)]
    Batch(Box<Vec<Msg<T>>>),
}

/// A multi-producer, multi-consumer queue of [`Msg<T>`]; clones share one queue.
///
/// `Queue::new()` is unbounded, as in Python ezq; [`Queue::bounded`] makes
/// `put` wait while the queue is full, so a fast producer cannot run ahead
/// of its consumers without limit.
///
/// # END
/// [`endq`] (or [`Queue::end`]) ends the queue once, for every consumer:
/// each consumer's iterator yields the messages queued before the END and
/// then stops. Ending twice is harmless. Putting a message after the end is
/// a bug in the program: [`put_msg`] panics, [`Queue::try_put`] returns
/// [`Ended`] with the message. (A put that races with `endq` on another
/// thread may land either side of the END; order the two if that matters.)
///
/// ```
/// use ezq::Queue;
///
/// let q = Queue::new();
/// ezq::put_msg(&q, 1u64);
/// ezq::put_msg(&q, 2u64);
/// assert_eq!(q.len(), 2);
/// let all: Vec<u64> = ezq::iter_q(&q).map(|m| m.data).collect();
/// assert_eq!(all, [1, 2]);
/// ```
pub struct Queue<T> {
    tx: Sender<Item<T>>,
    rx: Receiver<Item<T>>,
    state: Arc<EndState>,
}

/// Where a queue's END stands; shared by its clones.
#[derive(Default)]
struct EndState {
    ended: AtomicBool,
    /// Ended by `iter_q` while full: the END goes in as soon as any
    /// consumer frees a slot, so no consumer can lose it.
    pending: AtomicBool,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.tx.capacity())
            .field("ended", &self.is_ended())
            .finish()
    }
}

/// The error of [`Queue::try_put`]: the queue was already ended. Carries the
/// message back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended<T>(pub Msg<T>);

impl<T> fmt::Display for Ended<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the queue was already ended")
    }
}

impl<T: fmt::Debug> std::error::Error for Ended<T> {}

impl<T> Queue<T> {
    /// An unbounded queue.
    pub fn new() -> Self {
        Self::from_channel(crossbeam_channel::unbounded())
    }

    /// A queue holding at most `capacity` messages: `put` waits while it is
    /// full. A capacity of 0 counts as 1: the END must fit in the queue to
    /// reach every consumer.
    pub fn bounded(capacity: usize) -> Self {
        Self::from_channel(crossbeam_channel::bounded(capacity.max(1)))
    }

    fn from_channel((tx, rx): (Sender<Item<T>>, Receiver<Item<T>>)) -> Self {
        Queue {
            tx,
            rx,
            state: Arc::default(),
        }
    }

    /// Puts a message (or plain data) on the queue, waiting while a bounded
    /// queue is full.
    ///
    /// # Panics
    /// If the queue was ended: nothing can read a message put after END.
    pub fn put(&self, msg: impl Into<Msg<T>>) {
        if let Err(Ended(_)) = self.try_put(msg) {
            panic!("ezq: put on a queue that was already ended (endq); nothing would ever read it");
        }
    }

    /// Like [`put`](Queue::put), but hands the message back if the queue was
    /// already ended.
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Ended<T>> {
        let msg = msg.into();
        if self.is_ended() {
            return Err(Ended(msg));
        }
        // The queue holds a receiver of its own, so the channel never disconnects.
        let _ = self.tx.send(Item::Msg(msg));
        Ok(())
    }

    /// Ends the queue for every consumer; see [`endq`].
    pub fn end(&self) {
        if !self.state.ended.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Item::End);
        }
    }

    /// Puts a pending END (see [`EndState::pending`]) if there is room.
    fn place_pending_end(&self) {
        // A plain load first: the swap would write the shared line on every
        // message, and an END is almost never pending.
        if self.state.pending.load(Ordering::Acquire)
            && self.state.pending.swap(false, Ordering::AcqRel)
        {
            if let Err(TrySendError::Full(_)) = self.tx.try_send(Item::End) {
                self.state.pending.store(true, Ordering::Release);
            }
        }
    }

    /// Whether the queue was ended.
    pub fn is_ended(&self) -> bool {
        self.state.ended.load(Ordering::Acquire)
    }

    /// Number of messages waiting in the queue (a snapshot: other threads
    /// may change it at once).
    pub fn len(&self) -> usize {
        // The END marker stays in an ended queue; it is not a message.
        let end_queued = self.is_ended() && !self.state.pending.load(Ordering::Acquire);
        self.rx.len().saturating_sub(usize::from(end_queued))
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over the messages until the queue is ended; see [`iter_msg`].
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            queue: self,
            done: false,
        }
    }

    /// Ends the queue and iterates over what it holds; see [`iter_q`].
    pub fn drain(&self) -> Iter<'_, T> {
        if !self.state.ended.swap(true, Ordering::AcqRel) {
            // Never waits: on a full queue the END goes in once a slot frees.
            self.state.pending.store(true, Ordering::Release);
            self.place_pending_end();
        }
        self.iter()
    }
}

/// The iterator of [`iter_msg`] and [`iter_q`]: yields messages until the
/// queue's END, which it never yields.
pub struct Iter<'a, T> {
    queue: &'a Queue<T>,
    done: bool,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = Msg<T>;

    fn next(&mut self) -> Option<Msg<T>> {
        if self.done {
            return None;
        }
        // With an END pending the queue is full, so this recv cannot wait.
        self.queue.place_pending_end();
        let item = self.queue.rx.recv().ok()?;
        match item {
            Item::Msg(msg) => Some(msg),
            Item::Batch(_) => unreachable!("a hand-made queue carries no blocks"),
            Item::End => {
                self.done = true;
                // Put the END back for the other consumers: one END ends
                // the queue for all of them. Taking it freed a slot, so this
                // only fails if another thread put after the end.
                let _ = self.queue.tx.try_send(Item::End);
                None
            }
        }
    }
}

/// Puts a message, or plain data, on a queue (Python ezq's `put_msg`).
///
/// # Panics
/// If the queue was already ended.
///
/// ```
/// use ezq::{Msg, Queue};
///
/// let q = Queue::new();
/// ezq::put_msg(&q, 7u64); // plain data: default kind, order 0
/// ezq::put_msg(&q, Msg::new(8u64).kind("ODD").order(1));
/// let msgs: Vec<Msg<u64>> = ezq::iter_q(&q).collect();
/// assert_eq!(msgs[1].kind, "ODD");
/// ```
pub fn put_msg<T>(q: &Queue<T>, msg: impl Into<Msg<T>>) {
    q.put(msg);
}

/// Iterates over a queue's messages, waiting for more, until the queue is
/// ended (Python ezq's `iter_msg`). The END itself is never yielded.
///
/// ```
/// let q = ezq::Queue::new();
/// let w = {
///     let q = q.clone();
///     ezq::run(move || assert_eq!(ezq::iter_msg(&q).count(), 3))
/// };
/// for i in 0..3u64 {
///     ezq::put_msg(&q, i);
/// }
/// ezq::endq_and_wait(&q, [w]).unwrap();
/// ```
pub fn iter_msg<T>(q: &Queue<T>) -> Iter<'_, T> {
    q.iter()
}

/// Ends a queue: every consumer stops after the messages queued before the
/// END (Python ezq's `endq`). Ending an ended queue does nothing.
///
/// On a full bounded queue this waits for a free slot.
pub fn endq<T>(q: &Queue<T>) {
    q.end();
}

/// Ends a queue, then iterates over the messages it holds (Python ezq's
/// `iter_q`). Never waits for messages that are not yet there, so on an
/// empty queue it returns at once; it does not wait for a full bounded
/// queue either.
///
/// ```
/// let q = ezq::Queue::<u64>::new();
/// assert_eq!(ezq::iter_q(&q).count(), 0);
/// ```
pub fn iter_q<T>(q: &Queue<T>) -> Iter<'_, T> {
    q.drain()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_adds_at_most_a_word_to_its_message() {
        assert_eq!(std::mem::size_of::<Item<u64>>(), 32);
        assert_eq!(
            std::mem::size_of::<Item<(u64, u64)>>(),
            std::mem::size_of::<Msg<(u64, u64)>>() + 8
        );
    }

    #[test]
    fn end_is_sticky_and_idempotent() {
        let q = Queue::<u8>::new();
        q.put(1);
        q.end();
        q.end();
        assert_eq!(q.len(), 1);
        assert_eq!(q.iter().count(), 1);
        assert_eq!(q.iter().count(), 0);
        assert_eq!(q.iter().count(), 0);
    }

    #[test]
    fn try_put_after_end_returns_the_message() {
        let q = Queue::new();
        q.end();
        assert_eq!(q.try_put(5u8), Err(Ended(Msg::new(5))));
    }

    #[test]
    fn drain_of_full_bounded_queue_does_not_wait() {
        let q = Queue::bounded(2);
        q.put(1u8);
        q.put(2u8);
        assert_eq!(q.drain().map(|m| m.data).collect::<Vec<_>>(), [1, 2]);
        assert!(q.is_ended());
    }

    #[test]
    fn an_end_pending_on_a_full_queue_is_not_lost() {
        let q = Queue::bounded(2);
        q.put(1u8);
        q.put(2u8);
        let _ = q.drain(); // ended, but no room for the END yet
        assert_eq!(q.len(), 2);
        let other = q.clone();
        let reader = std::thread::spawn(move || other.iter().count());
        assert_eq!(reader.join().unwrap(), 2);
        assert_eq!(q.iter().count(), 0);
    }
}
