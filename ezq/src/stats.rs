//! Statistics of a running pipeline: [`Stats`], [`QueueStats`], [`WorkerStats`].

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A snapshot of a pipeline's queues and workers, from
/// [`Pipeline::stats`](crate::Pipeline::stats).
///
/// Counters are kept per worker and added to these totals every 256
/// messages and when a worker ends, so while the pipeline runs they may lag
/// by that much; after the pipeline has finished they are exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// One entry per queue, in declaration order.
    pub queues: Vec<QueueStats>,
    /// One entry per worker replica.
    pub workers: Vec<WorkerStats>,
}

/// One queue's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// Messages put on the queue.
    pub put: u64,
    /// Messages taken from it.
    pub taken: u64,
    /// The most messages seen waiting in it at once (sampled).
    pub high_water: usize,
    /// How many messages it holds at most; `None` if unbounded.
    pub capacity: Option<usize>,
    /// The workers that read it, each named once; empty for a sink, which
    /// the pipeline's caller reads.
    pub readers: Vec<String>,
}

impl QueueStats {
    /// Messages put and not taken (waiting, or never to be taken once the
    /// pipeline has finished).
    pub fn len(&self) -> u64 {
        self.put.saturating_sub(self.taken)
    }

    /// Whether every message put was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One worker replica's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// The worker's name.
    pub name: String,
    /// The replica, counting from 0.
    pub replica: usize,
    /// Messages it took from its inboxes.
    pub processed: u64,
    /// Time it spent working: its lifetime so far, less `waiting`.
    pub busy: Duration,
    /// Time it spent waiting for input or for room in a full queue.
    pub waiting: Duration,
    /// Whether it has returned (or failed).
    pub finished: bool,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<20} {:>12} {:>12} {:>10} {:>10}",
            "queue", "put", "taken", "waiting", "high"
        )?;
        for q in &self.queues {
            writeln!(
                f,
                "{:<20} {:>12} {:>12} {:>10} {:>10}",
                q.name,
                q.put,
                q.taken,
                q.len(),
                q.high_water
            )?;
        }
        writeln!(
            f,
            "{:<20} {:>12} {:>12} {:>10} {:>10}",
            "worker", "processed", "busy", "waiting", "busy %"
        )?;
        for w in &self.workers {
            let total = (w.busy + w.waiting).as_secs_f64();
            let share = if total > 0.0 {
                100.0 * w.busy.as_secs_f64() / total
            } else {
                0.0
            };
            writeln!(
                f,
                "{:<20} {:>12} {:>11.3}s {:>9.3}s {:>9.0}%",
                format!("{}#{}", w.name, w.replica),
                w.processed,
                w.busy.as_secs_f64(),
                w.waiting.as_secs_f64(),
                share
            )?;
        }
        Ok(())
    }
}

/// Whether the statistics are kept: always, but for a build with
/// `--cfg ezq_no_stats`, which exists only to measure what they cost
/// (`benches/stats-cost.sh`).
pub(crate) const COUNTING: bool = !cfg!(ezq_no_stats);

/// Runs `wait` (a call that may block), adding the time it took to the
/// replica's waiting time.
#[inline]
pub(crate) fn timed<R>(counters: &ReplicaCounters, wait: impl FnOnce() -> R) -> R {
    if !COUNTING {
        return wait();
    }
    let start = Instant::now();
    let result = wait();
    counters.add_wait(start.elapsed());
    result
}

/// A value on a cache line of its own, so that threads writing it do not
/// slow down threads reading its neighbours (128 bytes: the prefetcher of
/// recent x86 cores pulls lines in pairs).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The shared counters of one queue.
#[derive(Default)]
pub(crate) struct QueueCounters {
    pub(crate) put: AtomicU64,
    pub(crate) taken: AtomicU64,
    pub(crate) high_water: AtomicUsize,
}

/// The shared counters of one worker replica.
pub(crate) struct ReplicaCounters {
    pub(crate) name: Arc<str>,
    pub(crate) replica: usize,
    pub(crate) processed: AtomicU64,
    pub(crate) waiting_ns: AtomicU64,
    started: Instant,
    finished: Mutex<Option<Instant>>,
}

impl ReplicaCounters {
    pub(crate) fn new(name: Arc<str>, replica: usize) -> Self {
        ReplicaCounters {
            name,
            replica,
            processed: AtomicU64::new(0),
            waiting_ns: AtomicU64::new(0),
            started: Instant::now(),
            finished: Mutex::new(None),
        }
    }

    pub(crate) fn add_wait(&self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.waiting_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        let finished = *self.finished.lock().unwrap_or_else(|e| e.into_inner());
        let lifetime = finished.unwrap_or_else(Instant::now) - self.started;
        let waiting = Duration::from_nanos(self.waiting_ns.load(Ordering::Relaxed)).min(lifetime);
        WorkerStats {
            name: self.name.to_string(),
            replica: self.replica,
            processed: self.processed.load(Ordering::Relaxed),
            busy: lifetime - waiting,
            waiting,
            finished: finished.is_some(),
        }
    }
}

/// A count kept locally and added to a shared counter now and then, so
/// that counting costs no shared write per message.
#[derive(Default)]
pub(crate) struct LocalCount {
    pending: u64,
}

impl LocalCount {
    /// How many local counts make a flush.
    pub(crate) const EVERY: u64 = 256;

    /// Counts one; true when it is time to flush.
    #[inline]
    pub(crate) fn bump(&mut self) -> bool {
        if !COUNTING {
            return false;
        }
        self.pending += 1;
        self.pending >= Self::EVERY
    }

    /// What was counted since the last take.
    pub(crate) fn take(&mut self) -> u64 {
        std::mem::take(&mut self.pending)
    }
}
