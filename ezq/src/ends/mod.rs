//! The ends of a pipeline's queues, one file each: a worker reads an
//! [`Inbox`](inbox::Inbox) and writes an [`Outbox`](outbox::Outbox); the
//! pipeline's caller feeds a [`Source`](source::Source) (or its
//! [`SourceWriter`](writer::SourceWriter)) and reads a [`Sink`](sink::Sink).
//! They move items through the [transport](crate::transport), batch through
//! [`batch`](crate::batch) and count in [`stats`](crate::stats).

pub(crate) mod inbox;
pub(crate) mod outbox;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod writer;

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::Msg;
use crate::batch::WaitingReaders;
use crate::stats::QueueCounters;
use crate::sync::{Padded, lock};
use crate::transport::{Item, Rx};

/// What every reading end of one queue shares: its counters, and the
/// messages a reader took in a block but did not get to.
pub(crate) struct QueueShared<T> {
    pub(crate) counters: Arc<QueueCounters>,
    /// Messages a reader took in a block but did not get to: they wait
    /// here for the queue's other readers.
    stash: Mutex<Vec<Msg<T>>>,
    has_stash: Padded<AtomicBool>,
    /// Inboxes open on the queue: the last to close drops what is left.
    readers: AtomicUsize,
    /// On a queue batched by default, where its readers say that they wait.
    pub(crate) waiting: Option<Arc<WaitingReaders>>,
}

impl<T> QueueShared<T> {
    pub(crate) fn new(
        counters: Arc<QueueCounters>,
        waiting: Option<Arc<WaitingReaders>>,
    ) -> Arc<Self> {
        Arc::new(QueueShared {
            counters,
            stash: Mutex::new(Vec::new()),
            has_stash: Padded::default(),
            readers: AtomicUsize::new(0),
            waiting,
        })
    }

    /// An inbox opens on the queue.
    fn reader_opened(&self) {
        self.readers.fetch_add(1, Ordering::AcqRel);
        if let Some(waiting) = &self.waiting {
            waiting.reader_opened();
        }
    }

    /// An inbox closes. The last one drops what is left in the queue (it
    /// was counted as put and never taken: the account shows it dropped),
    /// here rather than wherever the queue's memory is freed, which may be
    /// the caller's `join`. A message whose drop panics makes this reader
    /// panic (once everything is dropped), so the panic is reported as this
    /// worker's failure. A reader that is already unwinding cannot run a
    /// drop that may panic (that would abort the process): it moves what is
    /// left aside, and the pipeline drops it as it finishes
    /// ([`Leftovers`]).
    fn reader_closed(&self, rx: &Rx<T>) {
        if let Some(waiting) = &self.waiting {
            waiting.reader_closed();
        }
        rx.close();
        // A remote queue's messages wait on the server for other readers.
        if self.readers.fetch_sub(1, Ordering::AcqRel) != 1 || rx.is_remote() {
            return;
        }
        if std::thread::panicking() {
            let mut stash = lock(&self.stash);
            while let Some(item) = rx.try_recv() {
                match item {
                    Item::End => break,
                    Item::Msg(msg) => stash.push(msg),
                    Item::Batch(block) => stash.extend(*block),
                }
            }
            return;
        }
        let mut first_panic: Option<Box<dyn Any + Send>> = None;
        let mut drop_safely = |value: Box<dyn FnOnce()>| {
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(value)) {
                first_panic.get_or_insert(payload);
            }
        };
        let stash = std::mem::take(&mut *lock(&self.stash));
        // Kept reversed (see `stash`): dropped in their own order.
        for msg in stash.into_iter().rev() {
            drop_safely(Box::new(move || drop(msg)));
        }
        while let Some(item) = rx.try_recv() {
            match item {
                Item::End => break,
                Item::Msg(msg) => drop_safely(Box::new(move || drop(msg))),
                Item::Batch(block) => {
                    for msg in *block {
                        drop_safely(Box::new(move || drop(msg)));
                    }
                }
            }
        }
        if let Some(payload) = first_panic {
            panic::resume_unwind(payload);
        }
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

/// What a queue's last reader left aside as it unwound; the pipeline drops
/// it once every worker has finished, where a panicking drop can be caught
/// and reported.
pub(crate) trait Leftovers: Send + Sync {
    /// Drops what was left aside; the first drop's panic message, if one
    /// panicked.
    fn drop_leftovers(&self) -> Option<String>;
}

impl<T: Send> Leftovers for QueueShared<T> {
    fn drop_leftovers(&self) -> Option<String> {
        let left = std::mem::take(&mut *lock(&self.stash));
        let mut first = None;
        for msg in left {
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(msg))) {
                first.get_or_insert_with(|| crate::error::panic_message(payload.as_ref()));
            }
        }
        first
    }
}

/// The error of [`Outbox::try_put`](crate::Outbox::try_put),
/// [`Source::try_put`](crate::Source::try_put) and
/// [`SourceWriter::try_put`](crate::SourceWriter::try_put): every reader of
/// the queue is gone, the pipeline was cancelled, or the source was ended.
/// Carries the message back: it was not accepted, and the caller decides
/// what becomes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected<T>(pub Msg<T>);

impl<T> fmt::Display for Disconnected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the queue takes no more messages: its readers are gone, the pipeline was cancelled, or the source was ended")
    }
}

impl<T: fmt::Debug> std::error::Error for Disconnected<T> {}
