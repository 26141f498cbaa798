//! [`Source`]: a queue that the pipeline's caller feeds, and [`SourceEnd`],
//! what the source handle shares with the pipeline that ends and cancels it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::Disconnected;
use crate::Msg;
use crate::batch::{self, Flush, SharedBlock};
use crate::control::Control;
use crate::stats::{COUNTING, LocalCount, QueueCounters};
use crate::sync::{lock, thread_number};
use crate::transport::{Gate, Item, Tx};

/// A source as the pipeline sees it, whatever its message type.
pub(crate) trait SourceControl: Send + Sync {
    /// Ends the source, waiting for room in its queue until `deadline`;
    /// false if the END did not fit by then.
    fn end_by(&self, deadline: Option<Instant>) -> bool;
    /// Takes no more messages and wakes its readers after a cancel, never
    /// waiting.
    fn nudge(&self);
}

/// What a pipeline shares between a source handle and its own shutdown.
pub(crate) struct SourceEnd<T> {
    tx: Tx<T>,
    batch: Option<Arc<SharedBlock<T>>>,
    queue: Arc<QueueCounters>,
    control: Arc<Control>,
    /// Admits puts until the source ends or the pipeline is cancelled,
    /// then sends the END behind the last message it admitted.
    gate: Gate,
    /// [`Source::end`] was called (or the pipeline ended the source).
    ended: AtomicBool,
    /// Orders below this fit in the reorder window without a look at it.
    window_ok_below: AtomicU64,
    /// The thread that put first (see [`thread_number`]), and the puts it
    /// has not added to the queue's counter yet: it counts with a plain
    /// load and store, where a shared add per message (a locked
    /// instruction) measurably slowed every put. Other threads add
    /// directly.
    owner: AtomicU64,
    owner_pending: AtomicU64,
    /// Live [`SourceWriter`](crate::SourceWriter)s, and the END they hold
    /// back.
    writers: Mutex<Writers>,
    /// A remote queue (on Redis) whose readers do not yet count this
    /// pipeline as one of its producers: the first put registers it, before
    /// anything is accepted.
    unregistered: AtomicBool,
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
        tx: Tx<T>,
        batch: Option<Arc<SharedBlock<T>>>,
        queue: Arc<QueueCounters>,
        control: Arc<Control>,
    ) -> Arc<Self> {
        Arc::new(SourceEnd {
            batch,
            queue,
            control,
            gate: Gate::default(),
            ended: AtomicBool::new(false),
            window_ok_below: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            owner_pending: AtomicU64::new(0),
            writers: Mutex::default(),
            unregistered: AtomicBool::new(tx.is_remote()),
            tx,
        })
    }

    /// Counts this pipeline as a producer of a remote queue, once: a put
    /// that this fails for (the queue's job already finished) is refused
    /// loudly, before anything is accepted.
    #[cold]
    #[inline(never)]
    fn register(&self) {
        self.tx.register_producer();
        self.unregistered.store(false, Ordering::Release);
    }

    /// Registers as a producer of a remote queue now, if not yet (a writer
    /// opens: it puts without passing through [`try_put`](Self::try_put)).
    pub(crate) fn register_if_needed(&self) {
        if self.unregistered.load(Ordering::Acquire) {
            self.register();
        }
    }

    pub(crate) fn batch(&self) -> Option<&SharedBlock<T>> {
        self.batch.as_deref()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.control.is_cancelled()
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Puts one message, unless the source takes no more (ended, or the
    /// pipeline cancelled): then the message comes back, not counted.
    #[inline(always)]
    pub(crate) fn try_put(&self, msg: Msg<T>) -> Result<(), Disconnected<T>> {
        let Some(_inside) = self.gate.enter() else {
            return Err(Disconnected(msg));
        };
        if self.control.is_cancelled() {
            return Err(Disconnected(msg));
        }
        if self.unregistered.load(Ordering::Relaxed) {
            self.register();
        }
        self.wait_for_window(msg.order, || self.flush_for_wait());
        let sent = match &self.batch {
            None => {
                self.count_unbatched();
                self.tx.send(Item::Msg(msg))
            }
            Some(batch) => batch.push(msg, |item| self.tx.send(item)).unwrap_or(Ok(())),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(item) => self.undelivered(item),
        }
    }

    /// Sends a full block of a [`SourceWriter`](crate::SourceWriter).
    pub(crate) fn send_block(&self, full: Vec<Msg<T>>) -> Result<(), Disconnected<T>> {
        (self.tx)
            .send(Item::Batch(Box::new(full)))
            .or_else(|item| self.undelivered(item))
    }

    /// Every reader is gone: fine if they discarded the queue on purpose;
    /// otherwise the item's last message goes back to the caller, and the
    /// rest of a block is lost.
    #[cold]
    fn undelivered(&self, item: Item<T>) -> Result<(), Disconnected<T>> {
        if self.queue.is_discarding() {
            return Ok(());
        }
        let n = item.messages();
        self.queue.put_back(n);
        self.queue.add_lost(n - 1);
        Err(Disconnected(
            item.into_last_msg().expect("a source sends messages"),
        ))
    }

    /// Counts a message that a `put` could not deliver: it is lost.
    pub(crate) fn count_lost(&self) {
        self.queue.add_lost(1);
    }

    /// A writer opens on `thread`.
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
            self.send_end(None);
        }
    }

    /// Ends the source for its user: unless writers on other threads are
    /// still open (the last of them sends the END as it closes), the END
    /// goes now, behind every message a put was admitted for.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
        // Ended by its user: this process is one of the queue's producers
        // even if it put nothing.
        self.tx.register_producer();
        if !self.close() {
            self.send_end(None);
        }
    }

    /// Ends the source as the pipeline finishes, waiting for room in the
    /// queue until `deadline` (forever if `None`); false if the END did not
    /// fit by then. Nothing can borrow the source any more, so a writer
    /// still counted open was leaked: its END goes now too.
    pub(crate) fn end_by(&self, deadline: Option<Instant>) -> bool {
        self.ended.store(true, Ordering::Release);
        self.close();
        lock(&self.writers).ended_by = None;
        let sent = self.send_end(deadline);
        // After a cancel the END may have gone without waiting for the
        // puts (see `nudge`); they are over now. What waits in the
        // source's block will never be sent: it is lost, and counted.
        self.add_owner_count();
        if let (true, Some(batch)) = (self.control.is_cancelled(), &self.batch) {
            match batch.try_take_unsent() {
                Some(unsent) => self.queue.add_lost(unsent),
                // A put holds the block, waiting for room that the
                // cancelled readers free as they leave: not done yet.
                None => return false,
            }
        }
        sent
    }

    /// Closes the gate and sends what this thread's writers hold (once);
    /// true if open writers on other threads hold the END back.
    fn close(&self) -> bool {
        let me = thread_number();
        if self.gate.close() {
            batch::flush_unsent_into(self.queue.id());
            let mut writers = lock(&self.writers);
            if writers.others_than(me) {
                writers.ended_by = Some(me);
            }
        }
        lock(&self.writers).ended_by.is_some()
    }

    /// Sends the END once no put is inside the gate: first the source's
    /// own block, and what the first putter counted (both final now).
    fn send_end(&self, deadline: Option<Instant>) -> bool {
        self.gate.send_end(&self.tx, deadline, || {
            self.flush();
            self.add_owner_count();
        })
    }

    /// Adds what the first putter counted and has not added yet: once no
    /// put is inside the gate, it is final.
    fn add_owner_count(&self) {
        let pending = self.owner_pending.swap(0, Ordering::Relaxed);
        self.queue.add_put(pending, self.tx.len(), 1);
    }

    /// Takes no more messages and wakes readers waiting on an empty queue
    /// after a cancel, without ever waiting itself.
    pub(crate) fn nudge(&self) {
        self.gate.close();
        self.gate.force_end(&self.tx);
    }

    pub(crate) fn flush(&self) {
        if let Some(batch) = &self.batch {
            batch.flush();
        }
    }

    /// Sends the source's block, and what this thread's writers hold for
    /// it: before waiting for the reorder window.
    pub(crate) fn flush_for_wait(&self) {
        self.flush();
        batch::flush_unsent_into(self.queue.id());
    }

    /// Counts one message put; a batched source counts as blocks leave.
    #[inline]
    pub(crate) fn count_unbatched(&self) {
        if !COUNTING {
            return;
        }
        let me = thread_number();
        let owner = self.owner.load(Ordering::Relaxed);
        let owned = owner == me
            || (owner == 0
                && (self.owner)
                    .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok());
        if !owned {
            self.queue.add_put(1, self.tx.len(), 1);
            return;
        }
        // Only this thread writes `owner_pending` until the END is sent,
        // which adds what it holds.
        let pending = self.owner_pending.load(Ordering::Relaxed) + 1;
        if pending < LocalCount::EVERY {
            self.owner_pending.store(pending, Ordering::Relaxed);
            return;
        }
        self.owner_pending.store(0, Ordering::Relaxed);
        self.queue.add_put(pending, self.tx.len(), 1);
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

impl<T: Send + 'static> SourceControl for SourceEnd<T> {
    fn end_by(&self, deadline: Option<Instant>) -> bool {
        SourceEnd::end_by(self, deadline)
    }

    fn nudge(&self) {
        SourceEnd::nudge(self);
    }
}

/// A queue that the pipeline's caller feeds: a field of the pipeline handle
/// for each queue that no worker produces.
///
/// [`end`](Source::end) ends it for every worker reading it; the pipeline's
/// `join` (and its drop) end every source that is still open. Any thread
/// may put and any thread may end: a put that returned (a `try_put` that
/// returned `Ok`) always lands before the END, and one that comes after the
/// end is refused, so a put racing an end never loses its message.
///
/// Into a batched queue, messages are sent a block at a time: when the
/// block is full, when the thread that put them reads a [`Sink`](crate::Sink)
/// or waits for an inbox, at [`flush`](Source::flush), at the end, and when
/// it has waited about half a millisecond (the thread that put them may be waiting on
/// something outside the pipeline; on a queue batched by default, when a
/// reader waits for it). Any thread may put, flush or end, so
/// each `put` into a batched queue takes a lock; a
/// [`writer`](Source::writer) feeds it from one thread without one.
pub struct Source<T> {
    pub(crate) shared: Arc<SourceEnd<T>>,
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
    /// If every worker reading it is gone, or the pipeline was cancelled,
    /// the message is dropped and counted: `join` reports it and why.
    ///
    /// Large messages: in an unoptimized build a `put` copies the message
    /// through several stack frames of the calling thread, so a message of
    /// tens of KiB can overflow a default 2 MiB stack (an abort). Put them
    /// from a thread with a larger stack, or `Box` them.
    ///
    /// # Panics
    /// If the source was ended.
    #[inline(always)]
    pub fn put(&self, msg: impl Into<Msg<T>>) {
        if self.shared.try_put(msg.into()).is_err() {
            assert!(
                !self.is_ended(),
                "ezq: put on a pipeline source that was already ended; nothing would ever read it"
            );
            self.shared.count_lost();
        }
    }

    /// Sends a message into the pipeline; the same as [`put`](Source::put).
    pub fn put_msg(&self, msg: Msg<T>) {
        self.put(msg);
    }

    /// Like [`put`](Source::put), but returns the message if every worker
    /// reading the queue is gone, the pipeline was cancelled, or the source
    /// was ended. `Ok` means the message was accepted: it will be read, or
    /// counted in the error that `join` returns.
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Disconnected<T>> {
        self.shared.try_put(msg.into())
    }

    /// Puts every item of `items`, then ends the source: the one call that
    /// feeds a pipeline whose sinks the caller then reads (forgetting the
    /// [`end`](Source::end) would leave them waiting).
    ///
    /// ```
    /// use ezq::{pipeline, worker};
    ///
    /// #[worker]
    /// fn double(x: u64) -> u64 {
    ///     x * 2
    /// }
    ///
    /// let p = pipeline! { numbers -> double -> doubled; };
    /// p.numbers.feed(0..100u64);
    /// assert_eq!(p.doubled.iter().map(|m| m.data).sum::<u64>(), 9900);
    /// ```
    ///
    /// # Panics
    /// If the source was already ended.
    pub fn feed<I>(&self, items: I)
    where
        I: IntoIterator,
        I::Item: Into<Msg<T>>,
    {
        for item in items {
            self.put(item);
        }
        self.end();
    }

    /// Sends the messages put into a batched source that wait for their
    /// block to fill (not those of its [writers](Source::writer): each
    /// sends its own).
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// Ends the queue: the workers reading it stop after the messages sent
    /// before. Ending twice does nothing. Waits while a put on another
    /// thread is still sending (it waits for room in the queue).
    pub fn end(&self) {
        self.shared.end();
    }

    /// Whether [`end`](Source::end) was called.
    pub fn is_ended(&self) -> bool {
        self.shared.is_ended()
    }
}
