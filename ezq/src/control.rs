//! What a running pipeline shares with its worker threads: cancellation
//! and the reorder window.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::batch::FlushList;
use crate::stats::ReplicaCounters;
use crate::sync::Padded;

/// How far ahead of the oldest order a reorder buffer still waits for, the
/// pipeline's sources may run by default; see [`Graph::window`](crate::Graph::window).
pub const DEFAULT_WINDOW: u64 = 16 * 1024;

/// State of one running pipeline, shared by all its threads and ends.
pub(crate) struct Control {
    cancelled: AtomicBool,
    /// The reorder window: sources wait before putting a message whose
    /// order is `window` or more ahead of `low`, the next order a
    /// [`sortiter`](crate::sortiter) in the pipeline waits for.
    window: u64,
    /// Written by the reorder buffer as it moves: on a line of its own,
    /// away from the flags that every message reads.
    low: Padded<AtomicU64>,
    /// Set once a `sortiter` runs inside the pipeline: only then do
    /// sources wait for it.
    window_used: AtomicBool,
    /// Set when the window stopped moving for a while (the stream has gaps
    /// that the reorder buffer waits for until the end): sources stop
    /// waiting, so a gap can never hang the pipeline.
    window_stalled: AtomicBool,
    /// The shared blocks of the pipeline's sources and outboxes, which its
    /// flusher sends when they wait too long.
    pub(crate) blocks: Arc<FlushList>,
}

/// How long a source waits for the reorder window to move before it gives
/// up on the window for good.
const STALL: Duration = Duration::from_millis(50);

impl Control {
    pub(crate) fn new(window: u64) -> Arc<Self> {
        Arc::new(Control {
            cancelled: AtomicBool::new(false),
            window,
            low: Padded(AtomicU64::new(0)),
            window_used: AtomicBool::new(false),
            window_stalled: AtomicBool::new(false),
            blocks: FlushList::new(),
        })
    }

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Whether a reorder buffer bounds the sources: one runs in the
    /// pipeline, and the window has not stalled.
    #[inline]
    pub(crate) fn window_in_use(&self) -> bool {
        self.window_used.load(Ordering::Relaxed) && !self.window_stalled.load(Ordering::Relaxed)
    }

    /// Where a source may put `order` without waiting: `None` if it may
    /// put anything.
    #[inline]
    pub(crate) fn window_limit(&self) -> Option<u64> {
        if !self.window_in_use() {
            return None;
        }
        Some(self.low.load(Ordering::Acquire).saturating_add(self.window))
    }

    /// Waits until `order` fits in the window (or the window stalls, or the
    /// pipeline is cancelled).
    pub(crate) fn wait_for_window(&self, order: u64) {
        let mut last = self.low.load(Ordering::Acquire);
        let mut since = Instant::now();
        let mut pause = Duration::from_micros(10);
        while let Some(limit) = self.window_limit() {
            if order < limit || self.is_cancelled() {
                return;
            }
            let low = self.low.load(Ordering::Acquire);
            if low != last {
                (last, since) = (low, Instant::now());
            } else if since.elapsed() > STALL {
                self.window_stalled.store(true, Ordering::Release);
                return;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    fn publish_low(&self, low: u64) {
        self.low.store(low, Ordering::Release);
        self.window_used.store(true, Ordering::Relaxed);
    }
}

/// What the ports of one worker replica share (its pipeline and its
/// counters); opaque, handed to [`Inputs::open`](crate::graph::Inputs::open) and
/// [`Outputs::open`](crate::graph::Outputs::open).
pub struct Replica {
    pub(crate) control: Arc<Control>,
    pub(crate) counters: Arc<ReplicaCounters>,
}

thread_local! {
    /// The pipeline whose worker this thread is running, if any.
    static CURRENT: RefCell<Option<Arc<Control>>> = const { RefCell::new(None) };
}

/// Runs `body` as a worker of the pipeline `control`.
pub(crate) fn enter<R>(control: Arc<Control>, body: impl FnOnce() -> R) -> R {
    CURRENT.with(|c| *c.borrow_mut() = Some(control));
    body()
}

/// Whether the pipeline this worker runs in was cancelled
/// ([`Pipeline::cancel`](crate::Pipeline::cancel)). A long-running worker
/// checks it now and then and returns early; outside a pipeline it is
/// always `false`.
///
/// ```
/// use ezq::{pipeline, worker, Outbox};
///
/// #[worker]
/// fn forever(out: Outbox<u64>) {
///     let mut i = 0;
///     while !ezq::is_cancelled() {
///         out.put(i);
///         i += 1;
///     }
/// }
///
/// let p = pipeline! { () -> forever -> numbers; };
/// assert_eq!(p.numbers.iter().take(10).count(), 10);
/// p.cancel();
/// assert!(p.join().unwrap_err().is_cancelled());
/// ```
pub fn is_cancelled() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|c| c.is_cancelled()))
}

/// Tells the pipeline this thread works in that its reorder buffer now
/// waits for `low`. Called by `sortiter` every so often.
pub(crate) fn publish_low(low: u64) {
    CURRENT.with(|c| {
        if let Some(control) = c.borrow().as_ref() {
            control.publish_low(low);
        }
    });
}
