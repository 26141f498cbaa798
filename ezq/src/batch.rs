//! Batching: messages put one at a time that leave a block at a time,
//! when the block is full or when the thread that put them is about to
//! wait, and the registry of each thread's unsent blocks that makes the
//! second happen ([`flush_unsent`]).
//!
//! A [`SharedBlock`] is a source's, or an outbox's on a queue batched by
//! default: any thread may put into it, flush it or end its source, so
//! every put takes a lock; a [`Flusher`] thread sends one that waits too
//! long (its producer may be computing, or waiting on something outside the
//! pipeline). A [`LocalBlock`] belongs to one thread (an outbox's on a
//! queue batched with `batch N`, a source writer's) and takes none; on this
//! project's benchmark machine that lock was most of the cost of a put.
//!
//! Adaptive batching (every local queue between workers, with no option
//! given): a block is sent when it is full; a reader of the queue that
//! runs out of messages sends what the producers' blocks hold before it
//! waits, and a producer that puts while a reader waits and nothing is
//! queued sends its block at once, often one message (once per block, or
//! every time if every reader waits: [`WaitingReaders`]). So blocks grow while
//! the readers are busy and shrink to what a waiting reader finds.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::{self, Rc};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use crate::stats::QueueCounters;
use crate::sync::{lock, thread_number};
use crate::transport::{Item, SendError, Tx};
use crate::{Kind, Msg};

thread_local! {
    /// Blocks this thread put messages into and has not sent yet.
    static UNSENT: RefCell<Vec<Unsent>> = const { RefCell::new(Vec::new()) };
}

/// A batch of messages not yet sent.
pub(crate) trait Flush {
    fn flush(&self);
    /// Flushes unless another thread holds the batch or the queue is
    /// full: this thread is about to wait, and the holder, or the readers,
    /// may be waiting for what this thread's wait makes. What is left, the
    /// flusher sends.
    fn flush_if_free(&self) {
        self.flush();
    }
    /// The queue it goes to (see `QueueCounters::id`).
    fn queue_id(&self) -> usize;
}

/// A batch this thread has put messages into, which it flushes before it
/// waits.
pub(crate) enum Unsent {
    /// A batch that any thread may put into (a batched source's).
    Shared(Weak<dyn Flush + Send + Sync>),
    /// A batch that only this thread puts into (an outbox's, a
    /// [`SourceWriter`](crate::SourceWriter)'s).
    Local(rc::Weak<dyn Flush>),
}

impl Unsent {
    /// Whether both name the same batch.
    fn same(&self, other: &Unsent) -> bool {
        match (self, other) {
            (Unsent::Shared(a), Unsent::Shared(b)) => Weak::ptr_eq(a, b),
            (Unsent::Local(a), Unsent::Local(b)) => rc::Weak::ptr_eq(a, b),
            _ => false,
        }
    }

    fn is_gone(&self) -> bool {
        match self {
            Unsent::Shared(batch) => batch.strong_count() == 0,
            Unsent::Local(batch) => batch.strong_count() == 0,
        }
    }

    /// Flushes the batch if it goes to `queue` (any queue if `None`).
    fn flush(&self, queue: Option<usize>) {
        let wanted = |b: &dyn Flush| queue.is_none_or(|q| b.queue_id() == q);
        match self {
            Unsent::Shared(batch) => (batch.upgrade())
                .filter(|b| wanted(&**b))
                .map(|b| b.flush_if_free()),
            Unsent::Local(batch) => batch.upgrade().filter(|b| wanted(&**b)).map(|b| b.flush()),
        };
    }
}

/// Remembers that this thread has an unsent batch in `batch`.
pub(crate) fn remember_unsent(batch: Unsent) {
    UNSENT.with(|u| {
        let mut unsent = u.borrow_mut();
        unsent.retain(|b| !b.is_gone());
        // Threads that take turns putting into one source would each add
        // it again at every turn.
        if !unsent.iter().any(|b| b.same(&batch)) {
            unsent.push(batch);
        }
    });
}

/// Sends every batch this thread has put but not sent: the thread is about
/// to wait, and no message may be held back while it does.
pub(crate) fn flush_unsent() {
    flush_unsent_to(None);
    crate::transport::flush_thread();
}

/// Sends the batches this thread has put into `queue` but not sent: the
/// queue is about to end, or its reorder window waits for them. (Not the
/// other queues' batches: sending those could wait on a full queue whose
/// reader waits for this one.)
pub(crate) fn flush_unsent_into(queue: usize) {
    flush_unsent_to(Some(queue));
}

fn flush_unsent_to(queue: Option<usize>) {
    // During thread teardown the registry may be gone, and with it
    // every writer that was in it.
    let _ = UNSENT.try_with(|u| {
        // A flush only sends on a channel: it never comes back here.
        for batch in u.borrow().iter() {
            batch.flush(queue);
        }
    });
}

/// A block that can be looked at now and then, to send it if it has waited
/// too long (see [`Flusher`]).
pub(crate) trait Stale: Send + Sync {
    /// Sends what waits if it already waited, unsent, at the last look
    /// (`seen`: the blocks sent then, and whether one was waiting); never
    /// waits itself. Returns whether messages still wait (or it could not
    /// look).
    fn flush_if_stale(&self, seen: &mut (u64, bool)) -> bool;
}

impl<T: Send> Stale for SharedBlock<T> {
    fn flush_if_stale(&self, seen: &mut (u64, bool)) -> bool {
        let Ok(mut unsent) = self.unsent.try_lock() else {
            // A put or a flush is at it right now: it is not stale.
            *seen = (u64::MAX, false);
            return true;
        };
        let sent = self.sent.load(Ordering::Relaxed);
        let waiting = !unsent.is_empty();
        let due = match self.target.readers.as_deref() {
            // A queue batched by default: sent for a reader that waits (at
            // once). While every reader is busy, the block goes on filling:
            // a reader that runs out of messages sends it itself, and a
            // slow producer's messages travel in full blocks, so that the
            // queue's capacity still holds as many messages.
            Some(readers) => readers.any_waits(),
            // Waited unsent since the last look.
            None => *seen == (sent, true),
        };
        if waiting && due {
            let rest = std::mem::take(&mut *unsent);
            // A routed queue runs the user's code here (a key function, a
            // broadcast's `Clone`): a panic in it must neither kill this
            // thread nor lose the block uncounted. The block was counted as
            // put before the send, and is never taken: `join` settles it as
            // dropped.
            let sent_now =
                panic::catch_unwind(AssertUnwindSafe(|| self.target.try_send_rest(rest)));
            match sent_now {
                Ok(Ok(())) | Err(_) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    *seen = (sent + 1, false);
                    return false;
                }
                // Full: its readers are behind; look again next time.
                Ok(Err(rest)) => *unsent = rest,
            }
            return true;
        }
        *seen = (sent, waiting);
        waiting
    }
}

/// How often the [`Flusher`] looks: a message of a fixed-batch source waits
/// at most about two of these for its block to leave; one of a queue
/// batched by default, about one once a reader waits for it.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_micros(250);

/// Looks in a row that find every block empty before the [`Flusher`]
/// sleeps until a producer starts a block.
const IDLE_LOOKS: u32 = 8;

/// A block the [`Flusher`] looks after, and what it saw at its last look.
type Watched = (Weak<dyn Stale>, (u64, bool));

/// The shared blocks of one running pipeline, which its [`Flusher`] looks
/// after. Each block registers as it is made (a source's at start, an
/// outbox's when its worker opens it); the thread starts with the first.
#[derive(Default)]
pub(crate) struct FlushList {
    blocks: Mutex<Vec<Watched>>,
    /// The flusher found nothing to send for a while and sleeps until a
    /// producer starts a block ([`block_started`](Self::block_started)).
    asleep: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl FlushList {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Looks after `block` from now on; starts the flusher if it is the
    /// first.
    fn register(self: &Arc<Self>, block: Weak<dyn Stale>) {
        lock(&self.blocks).push((block, (u64::MAX, false)));
        let mut handle = lock(&self.handle);
        if self.thread.get().is_none() && !self.stop.load(Ordering::Acquire) {
            let list = Arc::clone(self);
            let spawned = thread::Builder::new()
                .name("ezq-flusher".into())
                .spawn(move || {
                    // Known before the first look: a wake may come at once.
                    let _ = list.thread.set(thread::current());
                    list.run();
                })
                .expect("ezq: the operating system refused to start a thread");
            let _ = self.thread.set(spawned.thread().clone());
            *handle = Some(spawned);
        }
    }

    /// A producer put the first message into an empty block: wakes the
    /// flusher if it sleeps. Called holding the block's lock, which the
    /// flusher takes too before it sleeps, so one of them sees the other.
    #[inline]
    fn block_started(&self) {
        if self.asleep.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        self.asleep.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// One look at every block; returns whether messages still wait.
    fn look(&self) -> bool {
        let mut waiting = false;
        lock(&self.blocks).retain_mut(|(block, seen)| match block.upgrade() {
            Some(block) => {
                waiting |= block.flush_if_stale(seen);
                true
            }
            None => false,
        });
        waiting
    }

    fn run(&self) {
        let mut idle = 0;
        while !self.stop.load(Ordering::Acquire) {
            thread::park_timeout(FLUSH_EVERY);
            idle = if self.look() { 0 } else { idle + 1 };
            if idle < IDLE_LOOKS {
                continue;
            }
            // Nothing waited for a while: sleep until a producer starts a
            // block. One more look after saying so, under the blocks'
            // locks: a block started before the producer could see it.
            self.asleep.store(true, Ordering::SeqCst);
            if self.look() {
                self.asleep.store(false, Ordering::SeqCst);
                continue;
            }
            while self.asleep.load(Ordering::SeqCst) && !self.stop.load(Ordering::Acquire) {
                thread::park();
            }
            idle = 0;
        }
    }
}

/// The thread that sends blocks that waited, unsent, for a while (about
/// two [`FLUSH_EVERY`]; on a queue batched by default, once a reader waits
/// for them): their producer may be computing, or waiting on something
/// outside the pipeline (a reply, a socket), which flushes nothing. It
/// sleeps while every block is empty.
pub(crate) struct Flusher {
    list: Arc<FlushList>,
}

impl Flusher {
    pub(crate) fn new(list: Arc<FlushList>) -> Flusher {
        Flusher { list }
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        self.list.stop.store(true, Ordering::Release);
        let handle = lock(&self.list.handle).take();
        if let Some(handle) = handle {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The readers of a queue batched by default, and its producers' blocks.
///
/// A reader about to wait with nothing to read first sends what the
/// producers' blocks hold (those no other thread holds right now), so an
/// idle reader takes a partial block instead of waiting for it to fill.
/// A producer that starts a block while a reader waits, or puts while
/// every reader waits, with nothing in the queue, sends its block at once.
#[derive(Default)]
pub(crate) struct WaitingReaders {
    /// Readers waiting now.
    waiting: AtomicUsize,
    /// Readers open on the queue.
    open: AtomicUsize,
    producers: Mutex<Vec<Weak<dyn Flush + Send + Sync>>>,
}

/// Polls before a reader says it waits: a producer that keeps up fills a
/// block meanwhile, which is cheaper to hand over than one message.
const SPINS: u32 = 10;

impl WaitingReaders {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Whether a reader waits.
    #[inline]
    fn any_waits(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Whether every reader waits.
    #[inline]
    fn all_wait(&self) -> bool {
        let waiting = self.waiting.load(Ordering::Relaxed);
        waiting > 0 && waiting >= self.open.load(Ordering::Relaxed)
    }

    /// A reader opens on the queue.
    pub(crate) fn reader_opened(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
    }

    /// A reader closes.
    pub(crate) fn reader_closed(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    /// A producer's block, which waiting readers send.
    fn add_producer(&self, block: Weak<dyn Flush + Send + Sync>) {
        let mut producers = lock(&self.producers);
        producers.retain(|b| b.strong_count() > 0);
        producers.push(block);
    }

    /// Waits with `wait`, counted as a waiting reader meanwhile, after
    /// sending what the producers' blocks hold.
    pub(crate) fn wait<R>(&self, wait: impl FnOnce() -> R) -> R {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        // Counted as waiting first: a producer that puts after this look
        // sees it (under its block's lock, which the look takes too).
        self.flush_producers();
        wait()
    }

    /// Sends what the producers' blocks hold, those no other thread holds.
    fn flush_producers(&self) {
        let producers: Vec<_> = lock(&self.producers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for block in producers {
            block.flush_if_free();
        }
    }

    /// Polls with `poll` a few times, backing off, then waits with `wait`,
    /// counted as a waiting reader.
    pub(crate) fn poll_then_wait<R>(
        &self,
        mut poll: impl FnMut() -> Option<R>,
        wait: impl FnOnce() -> R,
    ) -> R {
        for step in 0..SPINS {
            if let Some(found) = poll() {
                return found;
            }
            if step < 6 {
                for _ in 0..1 << step {
                    std::hint::spin_loop();
                }
            } else {
                // Before giving the core away, which may take long: what
                // the producers hold may be all there is.
                self.flush_producers();
                if let Some(found) = poll() {
                    return found;
                }
                thread::yield_now();
            }
        }
        self.wait(wait)
    }
}

/// Where a block goes, and the counters it adds to.
pub(crate) struct BlockTarget<T> {
    tx: Tx<T>,
    block: usize,
    queue: Arc<QueueCounters>,
    /// On a queue batched by default, its waiting readers: a block leaves
    /// early for them.
    readers: Option<Arc<WaitingReaders>>,
}

impl<T> Clone for BlockTarget<T> {
    fn clone(&self) -> Self {
        BlockTarget {
            tx: self.tx.clone(),
            block: self.block,
            queue: Arc::clone(&self.queue),
            readers: self.readers.clone(),
        }
    }
}

impl<T> BlockTarget<T> {
    pub(crate) fn new(tx: Tx<T>, block: usize, queue: Arc<QueueCounters>) -> Self {
        BlockTarget {
            tx,
            block: block.max(1),
            queue,
            readers: None,
        }
    }

    /// The same target, on a queue batched by default: a block also leaves
    /// when one of `readers` waits.
    pub(crate) fn adaptive(mut self, readers: Option<Arc<WaitingReaders>>) -> Self {
        self.readers = readers;
        self
    }

    /// Readers wait with nothing to read: what `unsent` holds leaves now,
    /// counted as put (a single message as itself, its block's memory kept
    /// for the next). That is when every reader waits (none would come
    /// for it), or when a reader waits and this message starts the block:
    /// once per block, so that a producer feeding more readers than there
    /// are cores does not wake them one message at a time.
    #[inline]
    fn leave_early(&self, unsent: &mut Vec<Msg<T>>) -> Option<Item<T>> {
        let readers = self.readers.as_deref()?;
        let wanted = match unsent.len() {
            0 => false,
            1 => readers.any_waits(),
            _ => readers.all_wait(),
        };
        if !wanted || self.tx.len() > 0 {
            return None;
        }
        self.count(unsent.len());
        Some(match unsent.len() {
            1 => Item::Msg(unsent.pop()?),
            _ => Item::Batch(Box::new(std::mem::take(unsent))),
        })
    }

    /// The queue's identity, to flush only the blocks bound for it.
    pub(crate) fn queue_id(&self) -> usize {
        self.queue.id()
    }

    /// Adds `msg` to `unsent`; returns the block if this filled it, now
    /// counted as put.
    #[inline(always)]
    fn push(&self, unsent: &mut Vec<Msg<T>>, msg: Msg<T>) -> Option<Vec<Msg<T>>> {
        // With no call on the common path, the message can go from
        // registers straight to its slot: a call in between (to make room)
        // sent it through the stack, and its reload stalled every put.
        if unsent.len() < unsent.capacity() {
            unsent.push(msg);
        } else {
            let Msg { data, kind, order } = msg;
            push_making_room(unsent, self.block, data, kind, order);
        }
        if unsent.len() < self.block {
            return None;
        }
        let full = std::mem::take(unsent);
        self.count(full.len());
        Some(full)
    }

    /// The queue's `put` count grows as blocks leave, so that putting one
    /// message touches no shared counter.
    fn count(&self, n: usize) {
        (self.queue).add_put(n as u64, self.tx.len(), self.block);
    }

    /// Sends what is left of a block if there is room now; gives back
    /// what the queue had no room for (a keyed queue may take part of a
    /// block). Counted as put before it is sent, so that a send that
    /// panics (in a routed queue's key function or `Clone`) leaves it in
    /// the account, put and never taken; what comes back is taken back.
    fn try_send_rest(&self, rest: Vec<Msg<T>>) -> Result<(), Vec<Msg<T>>> {
        self.count(rest.len());
        match self.tx.try_send(Item::Batch(Box::new(rest))) {
            Ok(()) => Ok(()),
            Err(SendError::Full(Item::Batch(block))) => {
                self.queue.put_back(block.len() as u64);
                Err(*block)
            }
            Err(SendError::Full(_)) => Ok(()),
            // Put and never taken: discarded if its readers discarded the
            // queue on purpose, else lost.
            Err(SendError::Gone(item)) => {
                if !self.queue.is_discarding() {
                    self.queue.put_back(item.messages());
                    self.queue.add_lost(item.messages());
                }
                Ok(())
            }
        }
    }

    /// Counts and sends what is left of a block, waiting for room. If
    /// every reader is gone, the messages are dropped and counted so,
    /// unless the readers discarded the queue on purpose.
    ///
    /// While the thread unwinds (an outbox or writer dropped by a failing
    /// worker), a panic in the send (a routed queue's key function or
    /// `Clone`) would abort the process: it is caught, and the block,
    /// counted as put and never taken, is settled as dropped.
    fn send_rest(&self, rest: Vec<Msg<T>>) {
        if !rest.is_empty() {
            self.count(rest.len());
            let send = || self.tx.send(Item::Batch(Box::new(rest)));
            let sent = match thread::panicking() {
                false => send(),
                true => match panic::catch_unwind(AssertUnwindSafe(send)) {
                    Ok(sent) => sent,
                    Err(_) => return,
                },
            };
            if let Err(item) = sent {
                if !self.queue.is_discarding() {
                    self.queue.put_back(item.messages());
                    self.queue.add_lost(item.messages());
                }
            }
        }
    }
}

#[cold]
#[inline(never)]
fn push_making_room<T>(unsent: &mut Vec<Msg<T>>, block: usize, data: T, kind: Kind, order: u64) {
    unsent.reserve_exact(block);
    unsent.push(Msg { data, kind, order });
}

/// The block of a batched source, which any thread may put into, or of an
/// outbox on a queue batched by default, which the [`Flusher`] may send.
pub(crate) struct SharedBlock<T> {
    target: BlockTarget<T>,
    unsent: Mutex<Vec<Msg<T>>>,
    /// The pipeline's blocks: woken when this one starts filling.
    flusher: Arc<FlushList>,
    /// The thread that last put here (see [`thread_number`]),
    /// which flushes this block before it waits.
    owner: AtomicU64,
    /// Blocks sent so far: the [`Flusher`] tells a block that has waited
    /// since its last look from a new one.
    sent: AtomicU64,
}

impl<T: Send + 'static> SharedBlock<T> {
    /// A block that `flusher`'s thread looks after.
    pub(crate) fn new(target: BlockTarget<T>, flusher: &Arc<FlushList>) -> Arc<Self> {
        let block = Arc::new(SharedBlock {
            target,
            unsent: Mutex::new(Vec::new()),
            flusher: Arc::clone(flusher),
            owner: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        let weak: Weak<dyn Stale> = Arc::<Self>::downgrade(&block);
        flusher.register(weak);
        if let Some(readers) = &block.target.readers {
            let weak: Weak<dyn Flush + Send + Sync> = Arc::<Self>::downgrade(&block);
            readers.add_producer(weak);
        }
        block
    }

    /// Adds a message; if that fills the block (or a reader waits, on a
    /// queue batched by default), sends it with `send`, still holding the
    /// block, so that no later block of this producer (a flush, the
    /// [`Flusher`]) can overtake it.
    #[inline]
    pub(crate) fn push<R>(
        self: &Arc<Self>,
        msg: Msg<T>,
        send: impl FnOnce(Item<T>) -> R,
    ) -> Option<R> {
        let me = thread_number();
        if self.owner.load(Ordering::Relaxed) != me {
            self.owner.store(me, Ordering::Relaxed);
            let weak: Weak<dyn Flush + Send + Sync> = Arc::<Self>::downgrade(self);
            remember_unsent(Unsent::Shared(weak));
        }
        let mut unsent = lock(&self.unsent);
        let item = match self.target.push(&mut unsent, msg) {
            Some(full) => Item::Batch(Box::new(full)),
            None => match self.target.leave_early(&mut unsent) {
                Some(item) => item,
                None => {
                    // The message stays: the flusher must know (not
                    // before: a message that left at once needs no wake).
                    if unsent.len() == 1 {
                        self.flusher.block_started();
                    }
                    return None;
                }
            },
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        Some(send(item))
    }

    /// Takes out what waits for the block to fill, unsent (after a
    /// cancel); returns how many messages that was, or `None` if a put
    /// holds the block now (it may wait for room: look again later).
    pub(crate) fn try_take_unsent(&self) -> Option<u64> {
        let mut unsent = self.unsent.try_lock().ok()?;
        Some(std::mem::take(&mut *unsent).len() as u64)
    }

    /// Whether the block belongs to a queue batched by default.
    pub(crate) fn is_adaptive(&self) -> bool {
        self.target.readers.is_some()
    }

    /// Where its blocks go: a [`LocalBlock`] beside it sends to the same
    /// queue.
    pub(crate) fn target(&self) -> &BlockTarget<T> {
        &self.target
    }
}

impl<T> Flush for SharedBlock<T> {
    /// Sends what waits, holding the lock until it is in the queue: a
    /// flush from any thread (a wait, [`Source::flush`](crate::Source::flush))
    /// then cannot land behind the END, which the source sends only after
    /// its own flush, under the same lock.
    fn flush(&self) {
        let mut unsent = lock(&self.unsent);
        let rest = std::mem::take(&mut *unsent);
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.target.send_rest(rest);
        drop(unsent);
    }

    fn queue_id(&self) -> usize {
        self.target.queue_id()
    }

    fn flush_if_free(&self) {
        let Ok(mut unsent) = self.unsent.try_lock() else {
            return;
        };
        if unsent.is_empty() {
            return;
        }
        let rest = std::mem::take(&mut *unsent);
        match self.target.try_send_rest(rest) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(rest) => *unsent = rest,
        }
    }
}

/// The block of a producer that only this thread puts into: an outbox, or
/// a [`SourceWriter`](crate::SourceWriter). This thread's waits flush it.
pub(crate) struct LocalBlock<T> {
    target: BlockTarget<T>,
    unsent: RefCell<Vec<Msg<T>>>,
}

impl<T: 'static> LocalBlock<T> {
    /// A block for the current thread, which flushes it before it waits.
    pub(crate) fn new(target: BlockTarget<T>) -> Rc<Self> {
        let block = Rc::new(LocalBlock {
            target,
            unsent: RefCell::new(Vec::new()),
        });
        let weak: rc::Weak<dyn Flush> = Rc::<Self>::downgrade(&block);
        remember_unsent(Unsent::Local(weak));
        block
    }
}

impl<T> LocalBlock<T> {
    /// Adds a message; returns a full block to send, if this filled one.
    #[inline(always)]
    pub(crate) fn push(&self, msg: Msg<T>) -> Option<Vec<Msg<T>>> {
        self.target.push(&mut self.unsent.borrow_mut(), msg)
    }

    /// Messages waiting for their block to fill.
    pub(crate) fn len(&self) -> usize {
        self.unsent.borrow().len()
    }
}

impl<T> Flush for LocalBlock<T> {
    fn flush(&self) {
        let rest = std::mem::take(&mut *self.unsent.borrow_mut());
        self.target.send_rest(rest);
    }

    fn queue_id(&self) -> usize {
        self.target.queue_id()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::transport::{self, Ending, Rx};

    /// A shared block of 8 messages on a fresh queue of 16 items.
    fn block(
        waiting: Option<Arc<WaitingReaders>>,
        list: &Arc<FlushList>,
    ) -> (Arc<SharedBlock<u64>>, Tx<u64>, Rx<u64>) {
        let (tx, rx) = transport::channel(Some(16), Ending::Explicit);
        let target = BlockTarget::new(tx.clone(), 8, QueueCounters::new()).adaptive(waiting);
        (SharedBlock::new(target, list), tx, rx)
    }

    fn put(block: &Arc<SharedBlock<u64>>, tx: &Tx<u64>, x: u64) {
        if let Some(sent) = block.push(Msg::new(x), |item| tx.try_send(item)) {
            assert!(sent.is_ok(), "the queue has room");
        }
    }

    fn data(item: Option<Item<u64>>) -> Vec<u64> {
        match item {
            Some(Item::Msg(msg)) => vec![msg.data],
            Some(Item::Batch(block)) => block.iter().map(|m| m.data).collect(),
            Some(Item::End) => panic!("no END was sent"),
            None => Vec::new(),
        }
    }

    #[test]
    fn without_a_waiting_reader_a_block_leaves_when_full() {
        let list = FlushList::new();
        let mut flusher = Flusher::new(Arc::clone(&list));
        let (block, tx, rx) = block(Some(WaitingReaders::new()), &list);
        for x in 0..7 {
            put(&block, &tx, x);
        }
        assert!(rx.try_recv().is_none(), "7 of 8: the block waits");
        put(&block, &tx, 7);
        assert_eq!(data(rx.try_recv()), (0..8).collect::<Vec<_>>());
        flusher.stop();
    }

    #[test]
    fn a_waiting_reader_with_nothing_to_read_gets_what_the_block_holds() {
        let list = FlushList::new();
        let mut flusher = Flusher::new(Arc::clone(&list));
        let waiting = WaitingReaders::new();
        let (block, tx, rx) = block(Some(Arc::clone(&waiting)), &list);
        waiting.waiting.fetch_add(1, Ordering::SeqCst);
        put(&block, &tx, 1);
        assert!(
            matches!(rx.try_recv(), Some(Item::Msg(m)) if m.data == 1),
            "a lone message leaves as itself at once"
        );
        put(&block, &tx, 2);
        put(&block, &tx, 3);
        assert_eq!(
            data(rx.try_recv()),
            [2],
            "the queue was empty at 2, not at 3"
        );
        put(&block, &tx, 4);
        assert_eq!(
            data(rx.try_recv()),
            [3, 4],
            "what waited leaves with the next"
        );
        waiting.waiting.fetch_sub(1, Ordering::SeqCst);
        put(&block, &tx, 5);
        assert!(rx.try_recv().is_none(), "no reader waits: the block fills");
        flusher.stop();
    }

    #[test]
    fn a_block_waits_while_one_reader_is_busy_and_the_waiting_one_takes_it() {
        let list = FlushList::new();
        let mut flusher = Flusher::new(Arc::clone(&list));
        let readers = WaitingReaders::new();
        let (block, tx, rx) = block(Some(Arc::clone(&readers)), &list);
        readers.reader_opened();
        readers.reader_opened();
        readers.waiting.fetch_add(1, Ordering::SeqCst);
        put(&block, &tx, 1);
        put(&block, &tx, 2);
        put(&block, &tx, 3);
        assert_eq!(
            data(rx.try_recv()),
            [1],
            "a reader waits: a new block leaves"
        );
        assert!(
            rx.try_recv().is_none(),
            "the queue held 1 meanwhile, and the other reader is busy: it will come"
        );
        readers.waiting.fetch_sub(1, Ordering::SeqCst);
        // A reader about to wait sends what the block holds, then waits.
        let item = readers.wait(|| rx.try_recv());
        assert_eq!(data(item), [2, 3]);
        assert_eq!(
            readers.waiting.load(Ordering::SeqCst),
            0,
            "no longer waiting"
        );
        flusher.stop();
    }

    #[test]
    fn a_thread_remembers_a_block_once_however_often_it_takes_it_back() {
        let list = FlushList::new();
        let mut flusher = Flusher::new(Arc::clone(&list));
        let (block, tx, _rx) = block(None, &list);
        let before = UNSENT.with(|u| u.borrow().len());
        for x in 0..3 {
            put(&block, &tx, x);
            // Another thread put since: the next put here takes it back.
            block.owner.store(u64::MAX, Ordering::Relaxed);
        }
        assert_eq!(UNSENT.with(|u| u.borrow().len()), before + 1);
        flusher.stop();
    }

    #[test]
    fn the_flusher_sends_a_default_queues_block_only_for_a_waiting_reader() {
        let list = FlushList::new();
        let mut flusher = Flusher::new(Arc::clone(&list));
        let readers = WaitingReaders::new();
        let (block, tx, rx) = block(Some(Arc::clone(&readers)), &list);
        readers.reader_opened();
        put(&block, &tx, 1);
        thread::sleep(Duration::from_millis(20));
        assert!(
            rx.try_recv().is_none(),
            "its reader is busy: the block fills"
        );
        readers.waiting.fetch_add(1, Ordering::SeqCst);
        let item = rx.recv_deadline(Instant::now() + Duration::from_secs(5));
        assert_eq!(data(item), [1], "sent for the reader that waits");
        flusher.stop();
    }

    #[test]
    fn the_flusher_sends_a_block_that_waits_even_after_it_slept() {
        let list = FlushList::new();
        let mut flusher = Flusher::new(Arc::clone(&list));
        let (block, tx, rx) = block(None, &list);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !list.asleep.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "an idle flusher sleeps");
            thread::sleep(Duration::from_millis(1));
        }
        for round in 0..3 {
            put(&block, &tx, round);
            let item = rx.recv_deadline(Instant::now() + Duration::from_secs(5));
            assert_eq!(data(item), [round], "the flusher woke and sent it");
            thread::sleep(Duration::from_millis(10));
        }
        flusher.stop();
    }
}
