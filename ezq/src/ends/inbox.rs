//! [`Inbox`]: the reading end of a queue as a worker sees it, and
//! [`Merge`], which reads two inboxes together.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::QueueShared;
use crate::Msg;
use crate::batch;
use crate::control::Replica;
use crate::stats::{LocalCount, timed};
use crate::transport::{Item, Rx, Selected, select};

/// The reading end of a queue, as a worker sees it: an iterator over the
/// messages that ends at the queue's END.
///
/// END comes by itself: a queue ends when every producer of it is done, so
/// `for msg in inbox { ... }` is the whole loop of a worker. It also ends
/// when the pipeline is [cancelled](crate::Pipeline::cancel).
///
/// # Stopping early
/// A worker that returns (or `break`s, or fails) before its inbox ended
/// leaves the rest of the queue unread: [`Pipeline::join`](crate::Pipeline::join)
/// counts it as dropped and says which reader left. A worker that means to
/// stop early says so with [`discard_rest`](Inbox::discard_rest): the rest
/// of the queue is then discarded on purpose, counted apart, and not an
/// error.
///
/// # Reading several inboxes
/// Reading one inbox to its end and then the next can deadlock: while the
/// worker waits on the first, the second one's producer may fill its queue
/// and wait too, and if that producer also feeds the first queue, nothing
/// moves. Read several inboxes as their messages come with
/// [`Inbox::merge`].
///
/// # Batched queues
/// From a batched queue, an inbox takes a block of messages at a time and
/// yields them one by one. If it is dropped before yielding them all (a
/// `break` out of the loop), the rest goes back to the queue for its other
/// readers.
pub struct Inbox<T> {
    rx: Rx<T>,
    block: std::vec::IntoIter<Msg<T>>,
    /// The queue has ended for this inbox (END, cancel, or discard).
    done: bool,
    queue: Arc<QueueShared<T>>,
    ctx: Arc<Replica>,
    taken: LocalCount,
}

impl<T> fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("len", &self.rx.len())
            .field("done", &self.done)
            .finish()
    }
}

/// Why [`Inbox::recv_timeout`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeout {
    /// No message came in time; the queue may still bring more.
    Timeout,
    /// The queue has ended.
    Ended,
}

impl fmt::Display for RecvTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeout::Timeout => "no message arrived in time",
            RecvTimeout::Ended => "the queue has ended",
        })
    }
}

impl std::error::Error for RecvTimeout {}

impl<T> Inbox<T> {
    pub(crate) fn new(rx: Rx<T>, queue: Arc<QueueShared<T>>, ctx: Arc<Replica>) -> Self {
        queue.reader_opened();
        Inbox {
            rx,
            block: Vec::new().into_iter(),
            done: false,
            queue,
            ctx,
            taken: LocalCount::default(),
        }
    }

    /// The next message, waiting for one; `None` once the queue has ended.
    pub fn recv(&mut self) -> Option<Msg<T>> {
        loop {
            if let Some(msg) = self.buffered() {
                return Some(msg);
            }
            if self.done {
                return None;
            }
            let item = match self.rx.try_recv() {
                Some(item) => item,
                None => {
                    // About to wait: nothing this thread put may wait too.
                    batch::flush_unsent();
                    // Two paths, not one helper: a frame more on the local
                    // path costs a debug build copies of a large message.
                    if self.rx.is_remote() {
                        timed(&self.ctx.counters, || self.wait_remote())
                    } else if let Some(waiting) = &self.queue.waiting {
                        let rx = &self.rx;
                        let wait = || waiting.poll_then_wait(|| rx.try_recv(), || rx.recv());
                        timed(&self.ctx.counters, wait)
                    } else {
                        timed(&self.ctx.counters, || self.rx.recv())
                    }
                }
            };
            if let Some(msg) = self.accept(item) {
                return Some(msg);
            }
        }
    }

    /// The next message, waiting at most `timeout` for one.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Msg<T>, RecvTimeout> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(msg) = self.buffered() {
                return Ok(msg);
            }
            if self.done {
                return Err(RecvTimeout::Ended);
            }
            batch::flush_unsent();
            let wait = || self.rx.recv_deadline(deadline);
            let item = match &self.queue.waiting {
                // Only a reader with nothing to read sends partial blocks.
                Some(waiting) => self.rx.try_recv().or_else(|| waiting.wait(wait)),
                None => wait(),
            };
            let Some(item) = item else {
                return Err(RecvTimeout::Timeout);
            };
            if let Some(msg) = self.accept(item) {
                return Ok(msg);
            }
        }
    }

    /// Waits for the next item of a remote queue (on Redis), which this
    /// process's cancel does not end: the wait looks for one now and then.
    fn wait_remote(&self) -> Item<T> {
        loop {
            if self.ctx.control.is_cancelled() {
                return Item::End;
            }
            let deadline = Instant::now() + Duration::from_millis(100);
            if let Some(item) = self.rx.recv_deadline(deadline) {
                return item;
            }
        }
    }

    /// Stops reading and discards the rest of the queue on purpose: what
    /// this inbox holds, and what its producers put from now on that no
    /// other reader of the queue takes. The choice is the queue's: what
    /// another replica leaves unread after this is discarded too (but on a
    /// routed queue, `q[by KEY]` or `q[broadcast]`, where each replica
    /// reads a channel of its own, the choice is this replica's: it
    /// discards the rest of its own channel, and what another replica
    /// leaves unread is still dropped). Discarded messages are counted
    /// apart ([`QueueStats::discarded`](crate::stats::QueueStats::discarded))
    /// and are not an error; the producers go on as if the queue were
    /// read (their puts succeed).
    ///
    /// ```
    /// use ezq::{pipeline, worker, Inbox, Outbox};
    ///
    /// #[worker]
    /// fn first_three(inbox: Inbox<u64>, out: Outbox<u64>) {
    ///     let mut inbox = inbox;
    ///     for _ in 0..3 {
    ///         if let Some(msg) = inbox.recv() {
    ///             out.put_msg(msg);
    ///         }
    ///     }
    ///     inbox.discard_rest();
    /// }
    ///
    /// let p = pipeline! { numbers -> first_three -> firsts; };
    /// for i in 0..100u64 {
    ///     p.numbers.put(i);
    /// }
    /// p.numbers.end();
    /// assert_eq!(p.firsts.iter().count(), 3);
    /// let monitor = p.monitor();
    /// p.join().expect("nothing was lost: the rest was discarded on purpose");
    /// assert_eq!(monitor.stats().queues[0].discarded, 97);
    /// ```
    pub fn discard_rest(mut self) {
        self.queue.counters.discard_by(self.ctx.counters.replica);
        self.rx.discard();
        self.done = true;
    }

    /// A message already taken from the queue, if any; `None` also when
    /// the pipeline was cancelled (which ends the inbox).
    #[inline]
    pub(crate) fn buffered(&mut self) -> Option<Msg<T>> {
        // A cancel ends the inbox at once, even with a block in hand: the
        // rest of it is dropped, and counted so, as the queue's is.
        if self.ctx.control.is_cancelled() {
            self.done = true;
            return None;
        }
        let msg = match self.block.next() {
            Some(msg) => msg,
            // Even after the END: what other readers put back.
            None => self.queue.unstash()?,
        };
        self.count();
        Some(msg)
    }

    /// Takes in what the queue gave; `Some` if it yields a message now.
    fn accept(&mut self, item: Item<T>) -> Option<Msg<T>> {
        match item {
            Item::Msg(msg) => {
                self.count();
                Some(msg)
            }
            Item::Batch(block) => {
                self.block = block.into_iter();
                self.buffered()
            }
            Item::End => {
                self.done = true;
                self.buffered()
            }
        }
    }

    #[inline]
    fn count(&mut self) {
        if self.taken.bump() {
            self.flush_count();
        }
    }

    fn flush_count(&mut self) {
        let n = self.taken.take();
        self.ctx.counters.add_processed(n);
        (self.queue.counters).add_taken_by(self.ctx.counters.replica, n);
    }

    /// Reads this inbox and `other` together, each message as it comes,
    /// until both have ended.
    ///
    /// ```
    /// use ezq::{pipeline, worker, Either, Inbox, Outbox};
    ///
    /// #[worker]
    /// fn join_counts(words: Inbox<String>, numbers: Inbox<u64>, out: Outbox<(usize, usize)>) {
    ///     let (mut w, mut n) = (0, 0);
    ///     for msg in words.merge(numbers) {
    ///         match msg {
    ///             Either::Left(_) => w += 1,
    ///             Either::Right(_) => n += 1,
    ///         }
    ///     }
    ///     out.put((w, n));
    /// }
    ///
    /// let p = pipeline! { (words, numbers) -> join_counts -> counts; };
    /// p.words.put("a".to_string());
    /// p.numbers.put(1);
    /// p.numbers.put(2);
    /// p.words.end();
    /// p.numbers.end();
    /// assert_eq!(p.counts.iter().next().unwrap().data, (1, 2));
    /// ```
    pub fn merge<U>(self, other: Inbox<U>) -> Merge<T, U> {
        Merge {
            left: self,
            right: other,
            right_first: false,
        }
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        if !self.done {
            let counters = &self.ctx.counters;
            (self.queue.counters).reader_left(&counters.name, counters.replica);
        }
        let rest = std::mem::take(&mut self.block);
        if rest.len() > 0 {
            self.queue.stash(rest);
        }
        self.flush_count();
        self.queue.reader_closed(&self.rx);
    }
}

impl<T> Iterator for Inbox<T> {
    type Item = Msg<T>;

    // A message of the block in hand, inline in the worker's loop; the
    // rest (the next block, the END, a cancel) out of line.
    #[inline(always)]
    fn next(&mut self) -> Option<Msg<T>> {
        if !self.ctx.control.is_cancelled() {
            if let Some(msg) = self.block.next() {
                self.count();
                return Some(msg);
            }
        }
        self.recv()
    }
}

/// One of two things: what [`Merge`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either<A, B> {
    /// From the first inbox.
    Left(A),
    /// From the second inbox.
    Right(B),
}

/// The iterator of [`Inbox::merge`].
#[derive(Debug)]
pub struct Merge<T, U> {
    left: Inbox<T>,
    right: Inbox<U>,
    /// Which inbox a look tries first: they take turns, so that a busy
    /// one cannot starve the other.
    right_first: bool,
}

impl<T, U> Iterator for Merge<T, U> {
    type Item = Either<Msg<T>, Msg<U>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(msg) = self.left.buffered() {
                return Some(Either::Left(msg));
            }
            if let Some(msg) = self.right.buffered() {
                return Some(Either::Right(msg));
            }
            match (self.left.done, self.right.done) {
                (true, true) => return None,
                (false, true) => return self.left.recv().map(Either::Left),
                (true, false) => return self.right.recv().map(Either::Right),
                (false, false) => {}
            }
            batch::flush_unsent();
            // Waiting on both: each queue's producers learn of it (only
            // once neither has anything to read).
            let both = || select(&self.left.rx, &self.right.rx);
            self.right_first = !self.right_first;
            let left = || self.left.rx.try_recv().map(Selected::Left);
            let right = || self.right.rx.try_recv().map(Selected::Right);
            let ready = match self.right_first {
                true => right().or_else(left),
                false => left().or_else(right),
            };
            let waiting = (&self.left.queue.waiting, &self.right.queue.waiting);
            let selected = match (ready, waiting) {
                (Some(ready), _) => ready,
                (None, (Some(left), Some(right))) => left.wait(|| right.wait(both)),
                (None, (Some(left), None)) => left.wait(both),
                (None, (None, Some(right))) => right.wait(both),
                (None, (None, None)) => both(),
            };
            match selected {
                Selected::Left(item) => {
                    if let Some(msg) = self.left.accept(item) {
                        return Some(Either::Left(msg));
                    }
                }
                Selected::Right(item) => {
                    if let Some(msg) = self.right.accept(item) {
                        return Some(Either::Right(msg));
                    }
                }
            }
        }
    }
}
