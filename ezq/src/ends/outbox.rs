//! [`Outbox`]: the writing end of a queue as a worker sees it.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use super::Disconnected;
use crate::Msg;
use crate::batch::{BlockTarget, Flush, LocalBlock, SharedBlock, WaitingReaders};
use crate::control::Replica;
use crate::error::stop_worker;
use crate::stats::{COUNTING, LocalCount, QueueCounters, timed};
use crate::transport::{Item, SendError, Tx};

/// The writing end of a queue, as a worker sees it.
///
/// When every reader of the queue is gone (they returned, or failed), or
/// the pipeline was cancelled, a `put` stops the worker: it unwinds
/// quietly and ends its own outputs. It is not reported as a failure of its
/// own, but nothing is lost silently: the message it could not put, and
/// what it left unread, are counted as dropped in the error that
/// [`Pipeline::join`](crate::Pipeline::join) returns, with the reason. If
/// the readers discarded the queue on purpose
/// ([`Inbox::discard_rest`](crate::Inbox::discard_rest)), puts succeed and
/// what they put is counted as discarded.
///
/// Into a batched queue, `put` collects messages and sends them a block at
/// a time: when the block is full, when the worker waits for input, and
/// when the outbox is dropped (the worker returns), so no message waits
/// while its worker does. A queue between workers is batched by default
/// (see [`ADAPTIVE_BLOCK`](crate::graph::ADAPTIVE_BLOCK)): there a block
/// also leaves when a reader runs out of messages, and when a reader waits
/// for it while the worker computes (the pipeline's flusher sends it).
///
/// An outbox belongs to its worker's thread: that thread's waits flush its
/// block, so it is not `Send`. (Clones share one block.)
pub struct Outbox<T> {
    tx: Tx<T>,
    /// Shared by clones; `Rc` keeps the outbox on the thread that flushes it.
    batch: Option<Block<T>>,
    queue: Arc<QueueCounters>,
    ctx: Arc<Replica>,
    put: Cell<u64>,
}

/// An [`Outbox`] still to be opened on its worker's thread: what
/// [`Outputs::parts`](crate::graph::Outputs::parts) makes on the thread that
/// starts the pipeline.
pub struct OutboxParts<T> {
    tx: Tx<T>,
    block: Option<usize>,
    waiting: Option<Arc<WaitingReaders>>,
    queue: Arc<QueueCounters>,
    ctx: Arc<Replica>,
}

/// An outbox's block: its own thread's alone (`batch N`), or one that the
/// pipeline's flusher may send too (a queue batched by default).
enum Block<T> {
    Local(Rc<LocalBlock<T>>),
    Shared(Arc<SharedBlock<T>>),
}

impl<T> Clone for Block<T> {
    fn clone(&self) -> Self {
        match self {
            Block::Local(block) => Block::Local(Rc::clone(block)),
            Block::Shared(block) => Block::Shared(Arc::clone(block)),
        }
    }
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
        tx: Tx<T>,
        block: Option<usize>,
        waiting: Option<Arc<WaitingReaders>>,
        queue: Arc<QueueCounters>,
        ctx: Arc<Replica>,
    ) -> Self {
        OutboxParts {
            tx,
            block,
            waiting,
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
            waiting,
            queue,
            ctx,
        } = parts;
        let batch = block.map(|n| {
            let target = BlockTarget::new(tx.clone(), n, Arc::clone(&queue));
            match waiting {
                None => Block::Local(LocalBlock::new(target)),
                Some(waiting) => Block::Shared(SharedBlock::new(
                    target.adaptive(Some(waiting)),
                    &ctx.control.blocks,
                )),
            }
        });
        Outbox {
            tx,
            batch,
            queue,
            ctx,
            put: Cell::new(0),
        }
    }

    /// Sends data (or a message) downstream, waiting while the queue is
    /// full. Stops the worker if the queue takes no more messages (see
    /// [`Outbox`]); the message is then counted as dropped.
    #[inline(always)]
    pub fn put(&self, msg: impl Into<Msg<T>>) {
        if self.send(msg.into()).is_err() {
            self.queue.add_lost(1);
            stop_worker();
        }
    }

    /// Sends a message downstream; the same as [`put`](Outbox::put).
    #[inline(always)]
    pub fn put_msg(&self, msg: Msg<T>) {
        self.put(msg);
    }

    /// Like [`put`](Outbox::put), but returns the message if every reader
    /// is gone (or the pipeline was cancelled) instead of stopping the
    /// worker. A message handed back is the worker's again: it is not
    /// counted as put. On a batched queue (the default between workers), a
    /// message may wait in the outbox's block when the readers go: the put
    /// that finds them gone hands back its own message, and what waited
    /// with it is counted as dropped.
    #[inline(always)]
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Disconnected<T>> {
        self.send(msg.into())
    }

    /// Sends `msg`; if it cannot be delivered, hands it back uncounted.
    /// (The rest of a block that could not be delivered is lost, and
    /// counted so.)
    // The message goes into its block (or channel slot) before anything
    // that may call out: kept live across a call, it went through the
    // stack, and reloading it stalled every put.
    #[inline(always)]
    fn send(&self, msg: Msg<T>) -> Result<(), Disconnected<T>> {
        if self.ctx.control.is_cancelled() {
            return Err(Disconnected(msg));
        }
        let item = match &self.batch {
            None => {
                self.count();
                Item::Msg(msg)
            }
            // A batched queue counts its messages as their block leaves.
            Some(Block::Local(batch)) => match batch.push(msg) {
                None => return Ok(()),
                Some(block) => Item::Batch(Box::new(block)),
            },
            // Sent holding the block: no flush can overtake it.
            Some(Block::Shared(batch)) => {
                return batch
                    .push(msg, |item| self.send_item(item))
                    .unwrap_or(Ok(()));
            }
        };
        self.send_item(item)
    }

    /// Sends an item, waiting while the queue is full.
    #[inline(always)]
    fn send_item(&self, item: Item<T>) -> Result<(), Disconnected<T>> {
        let sent = match self.tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(SendError::Full(item)) => timed(&self.ctx.counters, || self.tx.send(item)),
            Err(SendError::Gone(item)) => Err(item),
        };
        sent.or_else(|item| self.undelivered(item))
    }

    /// Every reader is gone: fine if they discarded the queue on purpose;
    /// otherwise the item's last message goes back, uncounted, and the
    /// rest of a block is lost.
    #[cold]
    fn undelivered(&self, item: Item<T>) -> Result<(), Disconnected<T>> {
        if self.queue.is_discarding() {
            return Ok(());
        }
        let n = item.messages();
        match &self.batch {
            Some(_) => self.queue.put_back(n),
            None => self.uncount(),
        }
        self.queue.add_lost(n - 1);
        Err(Disconnected(
            item.into_last_msg().expect("an outbox sends messages"),
        ))
    }

    #[inline]
    fn count(&self) {
        if !COUNTING {
            return;
        }
        let n = self.put.get() + 1;
        if n >= LocalCount::EVERY {
            self.flush_count(n);
        } else {
            self.put.set(n);
        }
    }

    /// Takes back the count of a message handed back to the worker.
    fn uncount(&self) {
        match self.put.get() {
            0 => self.queue.put_back(1),
            n => self.put.set(n - 1),
        }
    }

    fn flush_count(&self, n: u64) {
        self.put.set(0);
        self.queue.add_put(n, self.tx.len(), 1);
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        match &self.batch {
            Some(Block::Local(batch)) => batch.flush(),
            Some(Block::Shared(batch)) => batch.flush(),
            None => {}
        }
        self.queue.add_put(self.put.get(), self.tx.len(), 1);
    }
}
