//! The hand-wired [`Queue`] and the free functions Python ezq users know:
//! [`put_msg`], [`iter_msg`], [`endq`] and [`iter_q`]. It stands on the
//! transport layer like a pipeline's queues, with the same END protocol.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Msg;
use crate::transport::{self, Ending, Gate, Item, Rx, Tx};

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
/// [`Ended`] with the message. A put that races with `endq` on another
/// thread either lands before the END (it returned) or is refused: no
/// message is lost between the two.
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
    tx: Tx<T>,
    rx: Rx<T>,
    state: Arc<EndState>,
}

/// Where a queue's END stands; shared by its clones.
#[derive(Default)]
struct EndState {
    gate: Gate,
    /// Ended by `iter_q`, which never waits: the END goes in as soon as
    /// no put is inside the gate and there is room, placed by whichever
    /// consumer comes next, so no consumer can miss it.
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
        Self::with_capacity(None)
    }

    /// A queue holding at most `capacity` messages: `put` waits while it is
    /// full. A capacity of 0 counts as 1: the END must fit in the queue to
    /// reach every consumer.
    pub fn bounded(capacity: usize) -> Self {
        Self::with_capacity(Some(capacity.max(1)))
    }

    fn with_capacity(capacity: Option<usize>) -> Self {
        let (tx, rx) = transport::channel(capacity, Ending::Explicit);
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
    #[inline]
    pub fn put(&self, msg: impl Into<Msg<T>>) {
        if let Err(Ended(_)) = self.try_put(msg) {
            panic!("ezq: put on a queue that was already ended (endq); nothing would ever read it");
        }
    }

    /// Like [`put`](Queue::put), but hands the message back if the queue was
    /// already ended.
    #[inline]
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Ended<T>> {
        let msg = msg.into();
        let Some(_inside) = self.state.gate.enter() else {
            return Err(Ended(msg));
        };
        // The queue holds a receiver of its own, so the send cannot fail.
        let _ = self.tx.send(Item::Msg(msg));
        Ok(())
    }

    /// Ends the queue for every consumer; see [`endq`].
    pub fn end(&self) {
        self.state.gate.close();
        self.state.gate.send_end(&self.tx, None, || {});
    }

    /// The next item while an END is pending: it goes in as soon as no
    /// put is inside the gate and there is room. A put inside may be one
    /// the closed gate is turning away, which sends nothing, so this never
    /// waits long without looking again.
    #[cold]
    fn next_with_end_pending(&self) -> Item<T> {
        loop {
            self.place_pending_end();
            let soon = Instant::now() + Duration::from_millis(1);
            if let Some(item) = self.rx.recv_deadline(soon) {
                return item;
            }
        }
    }

    /// Puts a pending END (see [`EndState::pending`]) if that needs no wait.
    #[inline]
    fn place_pending_end(&self) {
        // A plain load first: an END is almost never pending.
        if self.state.pending.load(Ordering::Acquire) && self.state.gate.try_send_end(&self.tx) {
            self.state.pending.store(false, Ordering::Release);
        }
    }

    /// Whether the queue was ended.
    pub fn is_ended(&self) -> bool {
        self.state.gate.is_closed()
    }

    /// Number of messages waiting in the queue (a snapshot: other threads
    /// may change it at once).
    pub fn len(&self) -> usize {
        // The END stays in an ended queue; it is not a message.
        let end_queued = self.state.gate.end_sent();
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
            block: Vec::new().into_iter(),
            done: false,
        }
    }

    /// Ends the queue and iterates over what it holds; see [`iter_q`].
    pub fn drain(&self) -> Iter<'_, T> {
        if self.state.gate.close() {
            // Never waits: the END goes in once no put is inside and a
            // slot is free.
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
    block: std::vec::IntoIter<Msg<T>>,
    done: bool,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = Msg<T>;

    fn next(&mut self) -> Option<Msg<T>> {
        loop {
            if let Some(msg) = self.block.next() {
                return Some(msg);
            }
            if self.done {
                return None;
            }
            let item = if self.queue.state.pending.load(Ordering::Acquire) {
                self.queue.next_with_end_pending()
            } else {
                self.queue.rx.recv()
            };
            match item {
                Item::Msg(msg) => return Some(msg),
                Item::Batch(block) => self.block = block.into_iter(),
                // The transport put it back for the other consumers: one
                // END ends the queue for all of them.
                Item::End => self.done = true,
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
