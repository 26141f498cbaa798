//! [`SourceWriter`]: a handle that feeds a pipeline source from one thread,
//! without a lock per message.

use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use super::Disconnected;
use super::source::{Source, SourceEnd};
use crate::Msg;
use crate::batch::{Flush, LocalBlock};
use crate::sync::thread_number;

/// Feeds a [`Source`] from the current thread: from
/// [`Source::writer`].
///
/// Into a batched queue, [`Source::put`] takes a lock per message, so that
/// any thread may put and any thread may flush or end the source. A writer
/// belongs to the thread that opened it (it is neither `Send` nor `Sync`)
/// and collects its block without a lock: on the benchmark in this
/// project's README, that fed a batched source two to four times faster.
/// Into a queue that is not batched, a writer puts as [`Source::put`]
/// does.
///
/// Its block leaves when it is full, when this thread waits on the
/// pipeline (reads a [`Sink`](crate::Sink), waits for the reorder window),
/// at [`flush`](SourceWriter::flush), when the source is ended on this
/// thread, and when the writer is dropped. Unlike [`Source::put`]'s block,
/// it is not sent by time: only its own thread can reach it, so a thread
/// that waits on something outside the pipeline (a reply, a socket) calls
/// [`flush`](SourceWriter::flush) first. The messages of one writer keep
/// their order; messages put through the source itself, or through other
/// writers, may come before or after them.
///
/// If another thread ends the source while a writer is open, the END waits
/// until the writer is dropped, so that what it put arrives first. (Putting
/// through the writer after that still panics, as [`Source::put`] does.)
/// So drop a writer before its thread waits for results that need the
/// END, as one drops a channel's sender: a thread that keeps its writer
/// open while it reads the pipeline's sinks, after another thread ended
/// the source, waits for itself. The pipeline's `join` and drop send the
/// END regardless, so a leaked writer (`mem::forget`) cannot hold them up.
///
/// ```
/// use ezq::{pipeline, worker};
///
/// #[worker]
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// let p = pipeline! { numbers[batch 256] -> double -> doubled; };
/// let writer = p.numbers.writer();
/// for i in 0..10_000u64 {
///     writer.put(i);
/// }
/// p.numbers.end();
/// let total: u64 = p.doubled.iter().map(|m| m.data).sum();
/// assert_eq!(total, 2 * (0..10_000).sum::<u64>());
/// ```
pub struct SourceWriter<'a, T: Send + 'static> {
    source: &'a Source<T>,
    end: Arc<SourceEnd<T>>,
    /// `None` if the queue is not batched.
    local: Option<Rc<LocalBlock<T>>>,
    thread: u64,
}

impl<T: Send + 'static> fmt::Debug for SourceWriter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unsent = self.local.as_ref().map_or(0, |l| l.len());
        f.debug_struct("SourceWriter")
            .field("unsent", &unsent)
            .finish()
    }
}

impl<T: Send + 'static> Source<T> {
    /// A handle that feeds this source from the current thread without a
    /// lock per message; see [`SourceWriter`].
    pub fn writer(&self) -> SourceWriter<'_, T> {
        SourceWriter::new(self, &self.shared)
    }
}

impl<'a, T: Send + 'static> SourceWriter<'a, T> {
    fn new(source: &'a Source<T>, end: &Arc<SourceEnd<T>>) -> Self {
        end.register_if_needed();
        let thread = thread_number();
        // On a queue batched by default, the writer puts as the source
        // does: its block must stay in reach of the pipeline's flusher.
        let local = end.batch().filter(|b| !b.is_adaptive()).map(|shared| {
            end.writer_opened(thread);
            // Sends where the source's own block goes, counted the same.
            LocalBlock::new(shared.target().clone())
        });
        SourceWriter {
            source,
            end: Arc::clone(end),
            local,
            thread,
        }
    }

    /// Sends data (or a message) into the pipeline, as
    /// [`Source::put`] does.
    ///
    /// # Panics
    /// If the source was ended.
    #[inline(always)]
    pub fn put(&self, msg: impl Into<Msg<T>>) {
        if self.put_checked(msg.into(), true).is_err() {
            self.put_failed();
        }
    }

    /// Sends a message into the pipeline; the same as [`put`](SourceWriter::put).
    #[inline(always)]
    pub fn put_msg(&self, msg: Msg<T>) {
        self.put(msg);
    }

    /// Like [`put`](SourceWriter::put), but returns the message if every
    /// worker reading the queue is gone, the pipeline was cancelled, or
    /// the source was ended.
    #[inline(always)]
    pub fn try_put(&self, msg: impl Into<Msg<T>>) -> Result<(), Disconnected<T>> {
        self.put_checked(msg.into(), false)
    }

    // Every check is a load; anything else happens out of line, so that
    // the common path is the message going from registers straight into
    // its slot in the block. (With a call on the way, the message went
    // through the stack, and reloading it stalled every put.)
    #[inline(always)]
    fn put_checked(&self, msg: Msg<T>, panic_if_ended: bool) -> Result<(), Disconnected<T>> {
        match &self.local {
            Some(local)
                if self.end.fits_window(msg.order)
                    && !self.end.is_cancelled()
                    && !self.source.is_ended() =>
            {
                self.push(local, msg)
            }
            _ => self.put_slowly(msg, panic_if_ended),
        }
    }

    #[inline(always)]
    fn push(&self, local: &LocalBlock<T>, msg: Msg<T>) -> Result<(), Disconnected<T>> {
        match local.push(msg) {
            None => Ok(()),
            Some(full) => self.send(full),
        }
    }

    #[inline(never)]
    fn send(&self, full: Vec<Msg<T>>) -> Result<(), Disconnected<T>> {
        self.end.send_block(full)
    }

    #[cold]
    #[inline(never)]
    fn put_slowly(&self, msg: Msg<T>, panic_if_ended: bool) -> Result<(), Disconnected<T>> {
        if self.source.is_ended() {
            assert!(
                !panic_if_ended,
                "ezq: put on a pipeline source that was already ended; nothing would ever read it"
            );
            return Err(Disconnected(msg));
        }
        let Some(local) = &self.local else {
            return self.end.try_put(msg);
        };
        if self.end.is_cancelled() {
            return Err(Disconnected(msg));
        }
        self.end
            .wait_for_window(msg.order, || self.end.flush_for_wait());
        self.push(local, msg)
    }

    /// A `put` (not a `try_put`) that could not deliver: the message is
    /// dropped, and counted, as [`Source::put`] does.
    #[cold]
    #[inline(never)]
    fn put_failed(&self) {
        assert!(
            !self.source.is_ended(),
            "ezq: put on a pipeline source that was already ended; nothing would ever read it"
        );
        self.end.count_lost();
    }

    /// Sends the messages that wait for their block to fill.
    pub fn flush(&self) {
        if let Some(local) = &self.local {
            local.flush();
        }
    }
}

impl<T: Send + 'static> Drop for SourceWriter<'_, T> {
    fn drop(&mut self) {
        if let Some(local) = &self.local {
            local.flush();
            self.end.writer_closed(self.thread);
        }
    }
}
