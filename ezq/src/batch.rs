//! Batching: messages put one at a time that leave a block at a time,
//! when the block is full or when the thread that put them is about to
//! wait, and the registry of each thread's unsent blocks that makes the
//! second happen ([`flush_unsent`]).
//!
//! A [`SharedBlock`] is a source's: any thread may put into it, flush it or
//! end its source, so every put takes a lock; a [`Flusher`] thread sends
//! one that waits too long (its producer may wait on something outside the
//! pipeline). A [`LocalBlock`] belongs to
//! one thread (an outbox's, a source writer's) and takes none; on this
//! project's benchmark machine that lock was most of the cost of a put.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::{self, Rc};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
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
            Unsent::Shared(batch) => batch.upgrade().filter(|b| wanted(&**b)).map(|b| b.flush()),
            Unsent::Local(batch) => batch.upgrade().filter(|b| wanted(&**b)).map(|b| b.flush()),
        };
    }
}

/// Remembers that this thread has an unsent batch in `batch`.
pub(crate) fn remember_unsent(batch: Unsent) {
    UNSENT.with(|u| {
        let mut unsent = u.borrow_mut();
        unsent.retain(|b| !b.is_gone());
        unsent.push(batch);
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
    /// waits itself.
    fn flush_if_stale(&self, seen: &mut (u64, bool));
}

impl<T: Send> Stale for SharedBlock<T> {
    fn flush_if_stale(&self, seen: &mut (u64, bool)) {
        let Ok(mut unsent) = self.unsent.try_lock() else {
            // A put or a flush is at it right now: it is not stale.
            *seen = (u64::MAX, false);
            return;
        };
        let sent = self.sent.load(Ordering::Relaxed);
        let waiting = !unsent.is_empty();
        if waiting && *seen == (sent, true) {
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
                }
                // Full: its readers are behind; look again next time.
                Ok(Err(rest)) => *unsent = rest,
            }
            return;
        }
        *seen = (sent, waiting);
    }
}

/// How often the [`Flusher`] looks: a message put into a batched source
/// waits at most about two of these for its block to leave.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(1);

/// A thread that sends the blocks of batched sources that have waited,
/// unsent, for a while: their producer may be waiting on something outside
/// the pipeline (a reply, a socket), which flushes nothing.
pub(crate) struct Flusher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start(blocks: Vec<Weak<dyn Stale>>) -> Flusher {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!blocks.is_empty()).then(|| {
            let stop = Arc::clone(&stop);
            let body = move || {
                let mut seen = vec![(u64::MAX, false); blocks.len()];
                while !stop.load(Ordering::Acquire) {
                    thread::park_timeout(FLUSH_EVERY);
                    let mut alive = false;
                    for (block, seen) in blocks.iter().zip(&mut seen) {
                        if let Some(block) = block.upgrade() {
                            block.flush_if_stale(seen);
                            alive = true;
                        }
                    }
                    // A pipeline that was leaked, not joined: its sources
                    // are gone, and so is this thread's work.
                    if !alive {
                        break;
                    }
                }
            };
            thread::Builder::new()
                .name("ezq-flusher".into())
                .spawn(body)
                .expect("ezq: the operating system refused to start a thread")
        });
        Flusher { stop, thread }
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a block goes, and the counters it adds to.
pub(crate) struct BlockTarget<T> {
    tx: Tx<T>,
    block: usize,
    queue: Arc<QueueCounters>,
}

impl<T> Clone for BlockTarget<T> {
    fn clone(&self) -> Self {
        BlockTarget {
            tx: self.tx.clone(),
            block: self.block,
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<T> BlockTarget<T> {
    pub(crate) fn new(tx: Tx<T>, block: usize, queue: Arc<QueueCounters>) -> Self {
        BlockTarget {
            tx,
            block: block.max(1),
            queue,
        }
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
            Err(SendError::Gone(item)) => {
                self.queue.put_back(item.messages());
                if !self.queue.is_discarding() {
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

/// The block of a batched source, which any thread may put into.
pub(crate) struct SharedBlock<T> {
    target: BlockTarget<T>,
    unsent: Mutex<Vec<Msg<T>>>,
    /// The thread that last put here (see [`thread_number`]),
    /// which flushes this block before it waits.
    owner: AtomicU64,
    /// Blocks sent so far: the [`Flusher`] tells a block that has waited
    /// since its last look from a new one.
    sent: AtomicU64,
}

impl<T: Send + 'static> SharedBlock<T> {
    pub(crate) fn new(target: BlockTarget<T>) -> Arc<Self> {
        Arc::new(SharedBlock {
            target,
            unsent: Mutex::new(Vec::new()),
            owner: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }

    /// Adds a message; if that fills the block, sends it with `send`, still
    /// holding the block, so that no later block of this source (a flush,
    /// the [`Flusher`]) can overtake it.
    pub(crate) fn push<R>(
        self: &Arc<Self>,
        msg: Msg<T>,
        send: impl FnOnce(Vec<Msg<T>>) -> R,
    ) -> Option<R> {
        let me = thread_number();
        if self.owner.load(Ordering::Relaxed) != me {
            self.owner.store(me, Ordering::Relaxed);
            let weak: Weak<dyn Flush + Send + Sync> = Arc::<Self>::downgrade(self);
            remember_unsent(Unsent::Shared(weak));
        }
        let mut unsent = lock(&self.unsent);
        let full = self.target.push(&mut unsent, msg)?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Some(send(full))
    }

    /// Takes out what waits for the block to fill, unsent (after a
    /// cancel); returns how many messages that was.
    pub(crate) fn take_unsent(&self) -> u64 {
        std::mem::take(&mut *lock(&self.unsent)).len() as u64
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
