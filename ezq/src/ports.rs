//! The ends of a pipeline's queues: a worker reads an [`Inbox`] and writes an
//! [`Outbox`]; the pipeline handle feeds each [`Source`] and reads each [`Sink`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender};

use crate::Msg;
use crate::queue::Item;
use crate::worker::stop_worker;

/// The reading end of a queue, as a worker sees it: an iterator over the
/// messages that ends at the queue's END.
///
/// END comes by itself: a queue ends when every producer of it is done, so
/// `for msg in inbox { ... }` is the whole loop of a worker.
///
/// # Reading several inboxes
/// Reading one inbox to its end and then the next can deadlock: while the
/// worker waits on the first, the second one's producer may fill its queue
/// and wait too, and if that producer also feeds the first queue, nothing
/// moves. Read several inboxes as their messages come with
/// [`Inbox::merge`].
pub struct Inbox<T> {
    rx: Receiver<Item<T>>,
    done: bool,
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
    pub(crate) fn new(rx: Receiver<Item<T>>) -> Self {
        Inbox { rx, done: false }
    }

    /// The next message, waiting for one; `None` once the queue has ended.
    pub fn recv(&mut self) -> Option<Msg<T>> {
        if self.done {
            return None;
        }
        let item = self.rx.recv().ok();
        self.accept(item)
    }

    /// The next message, waiting at most `timeout` for one.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Msg<T>, RecvTimeout> {
        if self.done {
            return Err(RecvTimeout::Ended);
        }
        match self.rx.recv_timeout(timeout) {
            Err(RecvTimeoutError::Timeout) => Err(RecvTimeout::Timeout),
            Err(RecvTimeoutError::Disconnected) => self.accept(None).ok_or(RecvTimeout::Ended),
            Ok(item) => self.accept(Some(item)).ok_or(RecvTimeout::Ended),
        }
    }

    fn accept(&mut self, item: Option<Item<T>>) -> Option<Msg<T>> {
        match item {
            Some(Item::Msg(msg)) => Some(msg),
            Some(Item::End) | None => {
                self.done = true;
                None
            }
        }
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
        }
    }
}

impl<T> Iterator for Inbox<T> {
    type Item = Msg<T>;

    fn next(&mut self) -> Option<Msg<T>> {
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
}

impl<T, U> Iterator for Merge<T, U> {
    type Item = Either<Msg<T>, Msg<U>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match (self.left.done, self.right.done) {
                (true, true) => return None,
                (false, true) => return self.left.recv().map(Either::Left),
                (true, false) => return self.right.recv().map(Either::Right),
                (false, false) => {}
            }
            let mut select = Select::new();
            let left = select.recv(&self.left.rx);
            select.recv(&self.right.rx);
            let op = select.select();
            if op.index() == left {
                let item = op.recv(&self.left.rx).ok();
                if let Some(msg) = self.left.accept(item) {
                    return Some(Either::Left(msg));
                }
            } else {
                let item = op.recv(&self.right.rx).ok();
                if let Some(msg) = self.right.accept(item) {
                    return Some(Either::Right(msg));
                }
            }
        }
    }
}

/// The writing end of a queue, as a worker sees it.
///
/// When every reader of the queue is gone (they returned, or failed), a
/// `put` stops the worker: it unwinds quietly, ends its own outputs, and is
/// not reported as a failure, since the failure that matters is the one
/// that took the readers away.
pub struct Outbox<T> {
    tx: Sender<Item<T>>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            tx: self.tx.clone(),
        }
    }
}

impl<T> fmt::Debug for Outbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("len", &self.tx.len())
            .finish()
    }
}

/// The error of [`Outbox::try_put`] and [`Source::try_put`]: every reader of
/// the queue is gone. Carries the message back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected<T>(pub Msg<T>);

impl<T> fmt::Display for Disconnected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every reader of the queue is gone")
    }
}

impl<T: fmt::Debug> std::error::Error for Disconnected<T> {}

impl<T> Outbox<T> {
    pub(crate) fn new(tx: Sender<Item<T>>) -> Self {
        Outbox { tx }
    }

    /// Sends data (or a message) downstream, waiting while the queue is full.
    pub fn put(&self, msg: impl Into<Msg<T>>) {
        if self.try_put(msg).is_err() {
            stop_worker();
        }
    }

    /// Sends a message downstream; the same as [`put`](Outbox::put).
    pub fn put_msg(&self, msg: Msg<T>) {
        self.put(msg);
    }

    /// Like [`put`](Outbox::put), but returns the message if every reader
    /// is gone instead of stopping the worker.
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Disconnected<T>> {
        self.tx
            .send(Item::Msg(msg.into()))
            .map_err(|e| match e.into_inner() {
                Item::Msg(msg) => Disconnected(msg),
                Item::End => unreachable!("an outbox never sends END"),
            })
    }
}

/// What a pipeline shares between a source handle and its own shutdown.
pub(crate) struct SourceEnd<T> {
    tx: Sender<Item<T>>,
    ended: AtomicBool,
    /// One END per consumer replica: each stops at its first.
    readers: usize,
}

impl<T> SourceEnd<T> {
    pub(crate) fn new(tx: Sender<Item<T>>, readers: usize) -> Arc<Self> {
        Arc::new(SourceEnd {
            tx,
            ended: AtomicBool::new(false),
            readers,
        })
    }

    pub(crate) fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            for _ in 0..self.readers {
                if self.tx.send(Item::End).is_err() {
                    break;
                }
            }
        }
    }
}

/// A queue that the pipeline's caller feeds: a field of the pipeline handle
/// for each queue that no worker produces.
///
/// [`end`](Source::end) ends it for every worker reading it; the pipeline's
/// `join` (and its drop) end every source that is still open.
pub struct Source<T> {
    shared: Arc<SourceEnd<T>>,
}

impl<T> fmt::Debug for Source<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("len", &self.shared.tx.len())
            .field("ended", &self.is_ended())
            .finish()
    }
}

impl<T> Source<T> {
    pub(crate) fn new(shared: Arc<SourceEnd<T>>) -> Self {
        Source { shared }
    }

    /// Sends data (or a message) into the pipeline, waiting while the queue
    /// is full. If every worker reading it has failed, the message is
    /// dropped: the pipeline's `join` reports the failure.
    ///
    /// # Panics
    /// If the source was ended.
    pub fn put(&self, msg: impl Into<Msg<T>>) {
        assert!(
            !self.is_ended(),
            "ezq: put on a pipeline source that was already ended; nothing would ever read it"
        );
        let _ = self.try_put(msg);
    }

    /// Sends a message into the pipeline; the same as [`put`](Source::put).
    pub fn put_msg(&self, msg: Msg<T>) {
        self.put(msg);
    }

    /// Like [`put`](Source::put), but returns the message if every worker
    /// reading the queue is gone.
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Disconnected<T>> {
        self.shared
            .tx
            .send(Item::Msg(msg.into()))
            .map_err(|e| match e.into_inner() {
                Item::Msg(msg) => Disconnected(msg),
                Item::End => unreachable!("put sends no END"),
            })
    }

    /// Ends the queue: the workers reading it stop after the messages sent
    /// before. Ending twice does nothing.
    pub fn end(&self) {
        self.shared.end();
    }

    /// Whether [`end`](Source::end) was called.
    pub fn is_ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }
}

/// A queue that the pipeline's caller reads: a field of the pipeline handle
/// for each queue that no worker consumes.
///
/// [`iter`](Sink::iter) yields messages as they come and ends when every
/// worker producing the queue has finished. Sinks are unbounded, so a
/// pipeline never waits for its caller to read them.
pub struct Sink<T> {
    rx: Receiver<Item<T>>,
}

impl<T> fmt::Debug for Sink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink").field("len", &self.rx.len()).finish()
    }
}

impl<T> Sink<T> {
    pub(crate) fn new(rx: Receiver<Item<T>>) -> Self {
        Sink { rx }
    }

    /// The next message, waiting for one; `None` once every producer of the
    /// queue has finished and the queue is empty.
    pub fn recv(&self) -> Option<Msg<T>> {
        match self.rx.recv() {
            Ok(Item::Msg(msg)) => Some(msg),
            Ok(Item::End) | Err(_) => None,
        }
    }

    /// The next message if one is waiting, without waiting.
    pub fn try_recv(&self) -> Option<Msg<T>> {
        match self.rx.try_recv() {
            Ok(Item::Msg(msg)) => Some(msg),
            _ => None,
        }
    }

    /// Iterates over the messages until every producer has finished.
    pub fn iter(&self) -> SinkIter<'_, T> {
        SinkIter { sink: self }
    }

    /// Number of messages waiting to be read.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<'a, T> IntoIterator for &'a Sink<T> {
    type Item = Msg<T>;
    type IntoIter = SinkIter<'a, T>;

    fn into_iter(self) -> SinkIter<'a, T> {
        self.iter()
    }
}

/// The iterator of [`Sink::iter`].
#[derive(Debug)]
pub struct SinkIter<'a, T> {
    sink: &'a Sink<T>,
}

impl<T> Iterator for SinkIter<'_, T> {
    type Item = Msg<T>;

    fn next(&mut self) -> Option<Msg<T>> {
        self.sink.recv()
    }
}
