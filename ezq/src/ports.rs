//! The ends of a pipeline's queues: a worker reads an [`Inbox`] and writes an
//! [`Outbox`]; the pipeline handle feeds each [`Source`] and reads each [`Sink`].

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError, TrySendError};

use crate::Msg;
use crate::SourceWriter;
use crate::block::{BlockTarget, LocalBlock, SharedBlock};
use crate::control::{self, Control, Flush, Replica};
use crate::queue::Item;
use crate::stats::{COUNTING, LocalCount, Padded, QueueCounters, timed};
use crate::worker::stop_worker;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves a valid Vec behind.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every end of one pipeline queue shares.
pub(crate) struct QueueShared<T> {
    /// Written as messages are put and taken: apart from what every reader
    /// reads for every message.
    pub(crate) counters: Padded<QueueCounters>,
    /// Messages a reader took in a block but did not get to: they wait
    /// here for the queue's other readers.
    stash: Mutex<Vec<Msg<T>>>,
    has_stash: Padded<AtomicBool>,
    /// Inboxes that have neither seen an END nor gone away, and the ENDs
    /// taken so far: a source ends by sending ENDs until every such inbox
    /// has one coming, and no more, so that readers that died or returned
    /// early cannot leave it waiting on a full queue.
    awaiting_end: AtomicUsize,
    ends_taken: AtomicUsize,
}

impl<T> QueueShared<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(QueueShared {
            counters: Padded::default(),
            stash: Mutex::new(Vec::new()),
            has_stash: Padded::default(),
            awaiting_end: AtomicUsize::new(0),
            ends_taken: AtomicUsize::new(0),
        })
    }

    /// The queue's identity: no two live queues share it.
    pub(crate) fn id(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    fn stash(&self, rest: impl Iterator<Item = Msg<T>>) {
        let mut stash = lock(&self.stash);
        stash.extend(rest);
        // Taken from the end: reversed, they come out in their own order.
        stash.reverse();
        self.has_stash.store(!stash.is_empty(), Ordering::Release);
    }

    #[inline]
    fn unstash(&self) -> Option<Msg<T>> {
        if !self.has_stash.load(Ordering::Acquire) {
            return None;
        }
        let mut stash = lock(&self.stash);
        let msg = stash.pop();
        self.has_stash.store(!stash.is_empty(), Ordering::Release);
        msg
    }
}

/// Sends `item`, timing the wait if the queue is full. `Err` if every
/// reader is gone.
fn send<T>(tx: &Sender<Item<T>>, item: Item<T>, replica: &Replica) -> Result<(), Item<T>> {
    match tx.try_send(item) {
        Ok(()) => Ok(()),
        Err(TrySendError::Disconnected(item)) => Err(item),
        Err(TrySendError::Full(item)) => {
            timed(&replica.counters, || tx.send(item)).map_err(|e| e.into_inner())
        }
    }
}

/// The message to hand back from an item that failed to send: for a
/// block, its last message, the one whose `put` sent the block.
pub(crate) fn first_msg<T>(item: Item<T>) -> Option<Msg<T>> {
    match item {
        Item::Msg(msg) => Some(msg),
        Item::Batch(block) => block.into_iter().last(),
        Item::End => None,
    }
}

/// The reading end of a queue, as a worker sees it: an iterator over the
/// messages that ends at the queue's END.
///
/// END comes by itself: a queue ends when every producer of it is done, so
/// `for msg in inbox { ... }` is the whole loop of a worker. It also ends
/// when the pipeline is [cancelled](crate::Pipeline::cancel).
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
    rx: Receiver<Item<T>>,
    block: std::vec::IntoIter<Msg<T>>,
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
    pub(crate) fn new(
        rx: Receiver<Item<T>>,
        queue: Arc<QueueShared<T>>,
        ctx: Arc<Replica>,
    ) -> Self {
        queue.awaiting_end.fetch_add(1, Ordering::AcqRel);
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
                Ok(item) => Some(item),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    control::flush_unsent();
                    timed(&self.ctx.counters, || self.rx.recv()).ok()
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
            control::flush_unsent();
            let item = match self.rx.recv_deadline(deadline) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => return Err(RecvTimeout::Timeout),
                Err(RecvTimeoutError::Disconnected) => None,
            };
            if let Some(msg) = self.accept(item) {
                return Ok(msg);
            }
        }
    }

    /// A message already taken from the channel, if any; `None` also when
    /// the pipeline was cancelled (which ends the inbox).
    #[inline]
    fn buffered(&mut self) -> Option<Msg<T>> {
        let msg = match self.block.next() {
            Some(msg) => msg,
            None => {
                if self.ctx.control.is_cancelled() {
                    self.stop_reading();
                    return None;
                }
                // Even after the END: what other readers put back.
                self.queue.unstash()?
            }
        };
        self.count();
        Some(msg)
    }

    /// Takes in what the channel gave; `Some` if it yields a message now.
    fn accept(&mut self, item: Option<Item<T>>) -> Option<Msg<T>> {
        match item {
            Some(Item::Msg(msg)) => {
                self.count();
                Some(msg)
            }
            Some(Item::Batch(block)) => {
                self.block = block.into_iter();
                self.buffered()
            }
            Some(Item::End) => {
                self.queue.ends_taken.fetch_add(1, Ordering::AcqRel);
                self.stop_reading();
                self.buffered()
            }
            None => {
                self.stop_reading();
                self.buffered()
            }
        }
    }

    /// The queue has ended for this inbox: it needs no END any more.
    fn stop_reading(&mut self) {
        if !self.done {
            self.done = true;
            self.queue.awaiting_end.fetch_sub(1, Ordering::AcqRel);
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
        self.ctx.counters.processed.fetch_add(n, Ordering::Relaxed);
        self.queue.counters.taken.fetch_add(n, Ordering::Relaxed);
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

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        self.stop_reading();
        let rest = std::mem::take(&mut self.block);
        if rest.len() > 0 {
            self.queue.stash(rest);
        }
        self.flush_count();
    }
}

impl<T> Iterator for Inbox<T> {
    type Item = Msg<T>;

    // A message of the block in hand, inline in the worker's loop; the
    // rest (the next block, the END, a cancel) out of line.
    #[inline(always)]
    fn next(&mut self) -> Option<Msg<T>> {
        if let Some(msg) = self.block.next() {
            self.count();
            return Some(msg);
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
            control::flush_unsent();
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

/// The error of [`Outbox::try_put`], [`Source::try_put`] and
/// [`SourceWriter::try_put`](crate::SourceWriter::try_put): every reader of
/// the queue is gone, the pipeline was cancelled, or the source was ended.
/// Carries the message back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected<T>(pub Msg<T>);

impl<T> fmt::Display for Disconnected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every reader of the queue is gone")
    }
}

impl<T: fmt::Debug> std::error::Error for Disconnected<T> {}

/// The writing end of a queue, as a worker sees it.
///
/// When every reader of the queue is gone (they returned, or failed), or
/// the pipeline was cancelled, a `put` stops the worker: it unwinds
/// quietly, ends its own outputs, and is not reported as a failure, since
/// the failure that matters is the one that took the readers away.
///
/// Into a batched queue, `put` collects messages and sends them a block at
/// a time: when the block is full, when the worker waits for input, and
/// when the outbox is dropped (the worker returns), so no message waits
/// while its worker does.
///
/// An outbox belongs to its worker's thread: that thread's waits flush its
/// block, so it is not `Send`, and a batched `put` takes no lock. (Clones
/// share one block.)
pub struct Outbox<T> {
    tx: Sender<Item<T>>,
    /// Shared by clones; `Rc` keeps the outbox on the thread that flushes it.
    batch: Option<Rc<LocalBlock<T>>>,
    queue: Arc<QueueShared<T>>,
    ctx: Arc<Replica>,
    put: Cell<u64>,
}

/// An [`Outbox`] still to be opened on its worker's thread: what
/// [`Outputs::parts`](crate::Outputs::parts) makes on the thread that
/// starts the pipeline.
pub struct OutboxParts<T> {
    tx: Sender<Item<T>>,
    block: Option<usize>,
    queue: Arc<QueueShared<T>>,
    ctx: Arc<Replica>,
}

impl<T> fmt::Debug for OutboxParts<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxParts")
            .field("block", &self.block)
            .finish()
    }
}

impl<T: Send + 'static> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            tx: self.tx.clone(),
            batch: self.batch.clone(),
            queue: Arc::clone(&self.queue),
            ctx: Arc::clone(&self.ctx),
            put: Cell::new(0),
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

impl<T: Send + 'static> OutboxParts<T> {
    pub(crate) fn new(
        tx: Sender<Item<T>>,
        block: Option<usize>,
        queue: Arc<QueueShared<T>>,
        ctx: Arc<Replica>,
    ) -> Self {
        OutboxParts {
            tx,
            block,
            queue,
            ctx,
        }
    }
}

impl<T: Send + 'static> Outbox<T> {
    /// Opens the outbox on the current thread, which is the one that
    /// flushes its block before it waits.
    pub(crate) fn open(parts: OutboxParts<T>) -> Self {
        let OutboxParts {
            tx,
            block,
            queue,
            ctx,
        } = parts;
        let batch = block
            .map(|n| LocalBlock::new(BlockTarget::new(tx.clone(), n, Arc::clone(&queue), false)));
        Outbox {
            tx,
            batch,
            queue,
            ctx,
            put: Cell::new(0),
        }
    }

    /// Sends data (or a message) downstream, waiting while the queue is full.
    #[inline(always)]
    pub fn put(&self, msg: impl Into<Msg<T>>) {
        if self.try_put(msg).is_err() {
            stop_worker();
        }
    }

    /// Sends a message downstream; the same as [`put`](Outbox::put).
    #[inline(always)]
    pub fn put_msg(&self, msg: Msg<T>) {
        self.put(msg);
    }

    /// Like [`put`](Outbox::put), but returns the message if every reader
    /// is gone (or the pipeline was cancelled) instead of stopping the worker.
    // The message goes into its block (or channel slot) before anything
    // that may call out: kept live across a call, it went through the
    // stack, and reloading it stalled every put.
    #[inline(always)]
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Disconnected<T>> {
        if self.ctx.control.is_cancelled() {
            return Err(Disconnected(msg.into()));
        }
        let item = match &self.batch {
            None => Item::Msg(msg.into()),
            Some(batch) => match batch.push(msg.into()) {
                None => {
                    self.count();
                    return Ok(());
                }
                Some(block) => Item::Batch(Box::new(block)),
            },
        };
        self.count();
        send(&self.tx, item, &self.ctx)
            .map_err(|item| Disconnected(first_msg(item).expect("an outbox sends messages")))
    }

    #[inline]
    fn count(&self) {
        if !COUNTING {
            return;
        }
        let n = self.put.get() + 1;
        if n >= 256 {
            self.flush_count(n);
        } else {
            self.put.set(n);
        }
    }

    fn flush_count(&self, n: u64) {
        self.put.set(0);
        let counters = &self.queue.counters;
        counters.put.fetch_add(n, Ordering::Relaxed);
        let waiting = self.tx.len() * self.batch.as_ref().map_or(1, |b| b.size());
        counters.high_water.fetch_max(waiting, Ordering::Relaxed);
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        if let Some(batch) = &self.batch {
            batch.flush();
        }
        self.queue
            .counters
            .put
            .fetch_add(self.put.get(), Ordering::Relaxed);
    }
}

/// What a pipeline shares between a source handle and its own shutdown.
pub(crate) struct SourceEnd<T> {
    tx: Sender<Item<T>>,
    batch: Option<Arc<SharedBlock<T>>>,
    queue: Arc<QueueShared<T>>,
    control: Arc<Control>,
    ended: AtomicBool,
    /// ENDs sent so far (see [`QueueShared::awaiting_end`]).
    ends_sent: AtomicUsize,
    /// Orders below this fit in the reorder window without a look at it.
    window_ok_below: AtomicU64,
    /// The thread that put first (see [`control::thread_number`]), and the
    /// puts it has not added to the queue's counter yet: it counts with a
    /// plain load and store, where a shared add per message (a locked
    /// instruction) measurably slowed every put. Other threads add
    /// directly.
    owner: AtomicU64,
    owner_pending: AtomicU64,
    /// Live [`SourceWriter`](crate::SourceWriter)s, and the END they hold
    /// back.
    writers: Mutex<Writers>,
}

/// The threads with a live writer on a source (one entry per writer), and
/// the thread that ended the source while writers on other threads were
/// still open: the END then waits for them, since what they put must
/// arrive before it.
#[derive(Default)]
struct Writers {
    threads: Vec<u64>,
    ended_by: Option<u64>,
}

impl Writers {
    fn others_than(&self, thread: u64) -> bool {
        self.threads.iter().any(|&t| t != thread)
    }
}

impl<T: Send + 'static> SourceEnd<T> {
    pub(crate) fn new(
        tx: Sender<Item<T>>,
        batch: Option<Arc<SharedBlock<T>>>,
        queue: Arc<QueueShared<T>>,
        control: Arc<Control>,
    ) -> Arc<Self> {
        Arc::new(SourceEnd {
            tx,
            batch,
            queue,
            control,
            ended: AtomicBool::new(false),
            ends_sent: AtomicUsize::new(0),
            window_ok_below: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            owner_pending: AtomicU64::new(0),
            writers: Mutex::default(),
        })
    }

    pub(crate) fn tx(&self) -> &Sender<Item<T>> {
        &self.tx
    }

    pub(crate) fn batch(&self) -> Option<&SharedBlock<T>> {
        self.batch.as_deref()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.control.is_cancelled()
    }

    /// A writer opens on the current thread.
    pub(crate) fn writer_opened(&self, thread: u64) {
        lock(&self.writers).threads.push(thread);
    }

    /// A writer on `thread` has flushed and closed: if it held back the
    /// END, and was the last to, the END goes now.
    pub(crate) fn writer_closed(&self, thread: u64) {
        let mut writers = lock(&self.writers);
        if let Some(i) = writers.threads.iter().position(|&t| t == thread) {
            writers.threads.swap_remove(i);
        }
        let release = match writers.ended_by {
            Some(ender) => !writers.others_than(ender),
            None => false,
        };
        if release {
            writers.ended_by = None;
            drop(writers);
            self.send_ends(None);
        }
    }

    /// Ends the source for its user: unless writers on other threads are
    /// still open (the last of them sends the END as it closes), the END
    /// goes now.
    pub(crate) fn end(&self) {
        if !self.close() {
            self.send_ends(None);
        }
    }

    /// Ends the source as the pipeline finishes, waiting for room in the
    /// queue until `deadline` (forever if `None`); false if not every END
    /// fit by then. Nothing can borrow the source any more, so a writer
    /// still counted open was leaked: its END goes now too.
    pub(crate) fn end_by(&self, deadline: Option<Instant>) -> bool {
        self.close();
        lock(&self.writers).ended_by = None;
        self.send_ends(deadline)
    }

    /// Marks the source ended and sends what this thread holds for it
    /// (once); true if open writers on other threads hold the END back.
    fn close(&self) -> bool {
        let me = control::thread_number();
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.flush_for_wait();
            // No more puts: what the owner counted is final.
            let pending = self.owner_pending.swap(0, Ordering::Relaxed);
            self.queue
                .counters
                .put
                .fetch_add(pending, Ordering::Relaxed);
            let mut writers = lock(&self.writers);
            if writers.others_than(me) {
                writers.ended_by = Some(me);
            }
        }
        lock(&self.writers).ended_by.is_some()
    }

    /// Sends ENDs until every reader has one coming; see
    /// [`end_by`](Self::end_by).
    fn send_ends(&self, deadline: Option<Instant>) -> bool {
        while self.ends_needed() > 0 {
            // A reader may go away while this waits for room: look again
            // every few milliseconds.
            let slice = Instant::now() + Duration::from_millis(5);
            let until = deadline.map_or(slice, |d| d.min(slice));
            match self.tx.send_deadline(Item::End, until) {
                Ok(()) => {
                    self.ends_sent.fetch_add(1, Ordering::AcqRel);
                }
                // Every reader is gone: nobody needs an END.
                Err(e) if e.is_disconnected() => return true,
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => return false,
                Err(_) => {}
            }
        }
        true
    }

    /// Readers still waiting for an END that is not in the queue yet.
    fn ends_needed(&self) -> usize {
        let queue = &self.queue;
        let in_queue = (self.ends_sent.load(Ordering::Acquire))
            .saturating_sub(queue.ends_taken.load(Ordering::Acquire));
        queue
            .awaiting_end
            .load(Ordering::Acquire)
            .saturating_sub(in_queue)
    }

    /// Wakes readers waiting on an empty queue after a cancel, without
    /// ever waiting itself.
    pub(crate) fn nudge(&self) {
        for _ in 0..self.ends_needed() {
            if self.tx.try_send(Item::End).is_err() {
                break;
            }
            self.ends_sent.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn flush(&self) {
        if let Some(batch) = &self.batch {
            batch.flush();
        }
    }

    /// Sends the source's block, and what this thread's writers hold for
    /// it: before its END, or before waiting for the reorder window.
    pub(crate) fn flush_for_wait(&self) {
        self.flush();
        control::flush_unsent_into(self.queue.id());
    }

    /// Counts one message put; a batched source counts as blocks leave.
    #[inline]
    pub(crate) fn count_unbatched(&self) {
        if !COUNTING {
            return;
        }
        let me = control::thread_number();
        let owner = self.owner.load(Ordering::Relaxed);
        let owned = owner == me
            || (owner == 0
                && (self.owner)
                    .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok());
        let counters = &self.queue.counters;
        // After the end (a `try_put` too many), nobody would add it later.
        if !owned || self.ended.load(Ordering::Relaxed) {
            counters.put.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Only this thread writes `owner_pending` until the source ends.
        let pending = self.owner_pending.load(Ordering::Relaxed) + 1;
        if pending < LocalCount::EVERY {
            self.owner_pending.store(pending, Ordering::Relaxed);
            return;
        }
        self.owner_pending.store(0, Ordering::Relaxed);
        counters.put.fetch_add(pending, Ordering::Relaxed);
        let block = self.batch.as_ref().map_or(1, |b| b.target().size());
        counters
            .high_water
            .fetch_max(self.tx.len() * block, Ordering::Relaxed);
    }

    /// Whether `order` may go without a look at the reorder window.
    #[inline]
    pub(crate) fn fits_window(&self, order: u64) -> bool {
        order < self.window_ok_below.load(Ordering::Relaxed) || !self.control.window_in_use()
    }

    /// Waits while `order` is too far ahead of the pipeline's reorder
    /// buffer, calling `flush` first: the workers must see what is
    /// buffered to move the window.
    #[inline]
    pub(crate) fn wait_for_window(&self, order: u64, flush: impl FnOnce()) {
        if self.fits_window(order) {
            return;
        }
        match self.control.window_limit() {
            // No reorder buffer (yet).
            None => {}
            Some(limit) if order < limit => self.window_ok_below.store(limit, Ordering::Relaxed),
            Some(_) => {
                flush();
                self.control.wait_for_window(order);
            }
        }
    }
}

/// A queue that the pipeline's caller feeds: a field of the pipeline handle
/// for each queue that no worker produces.
///
/// [`end`](Source::end) ends it for every worker reading it; the pipeline's
/// `join` (and its drop) end every source that is still open.
///
/// Into a batched queue, messages are sent a block at a time: when the
/// block is full, when the thread that put them reads a [`Sink`] or waits
/// for an inbox, at [`flush`](Source::flush) and at the end. Any thread
/// may put, flush or end, so each `put` into a batched queue takes a lock;
/// a [`writer`](Source::writer) feeds it from one thread without one.
pub struct Source<T> {
    shared: Arc<SourceEnd<T>>,
}

impl<T> fmt::Debug for Source<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("len", &self.shared.tx.len())
            .field("ended", &self.shared.ended.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: Send + 'static> Source<T> {
    pub(crate) fn new(shared: Arc<SourceEnd<T>>) -> Self {
        Source { shared }
    }

    /// Sends data (or a message) into the pipeline, waiting while the queue
    /// is full, or while the message's order is too far ahead of a reorder
    /// buffer in the pipeline (see [`Graph::window`](crate::Graph::window)).
    /// If every worker reading it has failed, or the pipeline was
    /// cancelled, the message is dropped (and counted): `join` reports why.
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
    /// reading the queue is gone, the pipeline was cancelled, or the source
    /// was ended.
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Disconnected<T>> {
        let shared = &self.shared;
        let msg = msg.into();
        if self.is_ended() {
            return Err(Disconnected(msg));
        }
        if shared.control.is_cancelled() {
            shared.count_unbatched();
            return Err(Disconnected(msg));
        }
        shared.wait_for_window(msg.order, || shared.flush_for_wait());
        // Counted even if it is not delivered: it is then a dropped message.
        let item = match &shared.batch {
            None => {
                shared.count_unbatched();
                Item::Msg(msg)
            }
            Some(batch) => match batch.push(msg) {
                None => return Ok(()),
                Some(block) => Item::Batch(Box::new(block)),
            },
        };
        shared
            .tx
            .send(item)
            .map_err(|e| Disconnected(first_msg(e.into_inner()).expect("a source sends messages")))
    }

    /// A handle that feeds this source from the current thread without a
    /// lock per message; see [`SourceWriter`].
    pub fn writer(&self) -> SourceWriter<'_, T> {
        SourceWriter::new(self, &self.shared)
    }

    /// Sends the messages put into a batched source that wait for their
    /// block to fill (not those of its [writers](Source::writer): each
    /// sends its own).
    pub fn flush(&self) {
        self.shared.flush();
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
    block: Mutex<std::vec::IntoIter<Msg<T>>>,
    queue: Arc<QueueShared<T>>,
}

impl<T> fmt::Debug for Sink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink").field("len", &self.rx.len()).finish()
    }
}

impl<T> Sink<T> {
    pub(crate) fn new(rx: Receiver<Item<T>>, queue: Arc<QueueShared<T>>) -> Self {
        Sink {
            rx,
            block: Mutex::new(Vec::new().into_iter()),
            queue,
        }
    }

    /// The next message, waiting for one; `None` once every producer of the
    /// queue has finished and the queue is empty.
    pub fn recv(&self) -> Option<Msg<T>> {
        self.next_msg(|rx| match rx.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                // This thread may hold batched source messages that the
                // pipeline needs in order to produce what it waits for.
                control::flush_unsent();
                rx.recv().ok()
            }
        })
    }

    /// The next message if one is waiting, without waiting.
    pub fn try_recv(&self) -> Option<Msg<T>> {
        self.next_msg(|rx| rx.try_recv().ok())
    }

    fn next_msg(
        &self,
        mut take: impl FnMut(&Receiver<Item<T>>) -> Option<Item<T>>,
    ) -> Option<Msg<T>> {
        let mut block = lock(&self.block);
        loop {
            if let Some(msg) = block.next() {
                self.count();
                return Some(msg);
            }
            match take(&self.rx)? {
                Item::Msg(msg) => {
                    self.count();
                    return Some(msg);
                }
                Item::Batch(b) => *block = b.into_iter(),
                Item::End => return None,
            }
        }
    }

    fn count(&self) {
        if COUNTING {
            self.queue.counters.taken.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Iterates over the messages until every producer has finished.
    pub fn iter(&self) -> SinkIter<'_, T> {
        SinkIter { sink: self }
    }

    /// Number of messages waiting to be read (a block of a batched queue
    /// counts as one until it is read).
    pub fn len(&self) -> usize {
        self.rx.len() + lock(&self.block).len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
