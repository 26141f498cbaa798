//! Statistics of a running pipeline: [`Stats`], [`QueueStats`] and
//! [`WorkerStats`], read through [`Pipeline::stats`](crate::Pipeline::stats)
//! or a [`Monitor`]. Every count the runtime keeps is kept here, and so is
//! each queue's account, which [`Pipeline::join`](crate::Pipeline::join)
//! settles: what was put was taken, discarded on purpose, or dropped.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

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
    /// Messages left unread on purpose, once the pipeline has finished: a
    /// reader called [`Inbox::discard_rest`](crate::Inbox::discard_rest).
    pub discarded: u64,
    /// Messages lost, once the pipeline has finished: put and never taken,
    /// because the pipeline was cancelled or a reader went away before the
    /// END. [`Pipeline::join`](crate::Pipeline::join) reports the same
    /// numbers in its [`Error`](crate::Error).
    pub dropped: u64,
    /// The most messages seen waiting in it at once (sampled).
    pub high_water: usize,
    /// How many messages it holds at most; `None` if unbounded.
    pub capacity: Option<usize>,
    /// The workers that read it, each named once; empty for a sink, which
    /// the pipeline's caller reads.
    pub readers: Vec<String>,
}

impl QueueStats {
    /// Messages put and not taken, discarded or dropped: those waiting in
    /// the queue (0 once the pipeline has finished).
    pub fn len(&self) -> u64 {
        (self.put)
            .saturating_sub(self.taken)
            .saturating_sub(self.discarded)
            .saturating_sub(self.dropped)
    }

    /// Whether no message is waiting.
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
            "{:<20} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10}",
            "queue", "put", "taken", "waiting", "discarded", "dropped", "high"
        )?;
        for q in &self.queues {
            writeln!(
                f,
                "{:<20} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10}",
                q.name,
                q.put,
                q.taken,
                q.len(),
                q.discarded,
                q.dropped,
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

/// One queue, as the pipeline's statistics see it.
pub(crate) struct QueueInfo {
    pub(crate) name: String,
    pub(crate) capacity: Option<usize>,
    /// The workers reading the queue; none for a sink.
    pub(crate) readers: Vec<String>,
    pub(crate) counters: Arc<QueueCounters>,
    /// For a queue whose messages live outside this process (on Redis):
    /// how many this process sent to the dead letters.
    pub(crate) remote: Option<Arc<AtomicU64>>,
}

impl QueueInfo {
    pub(crate) fn is_sink(&self) -> bool {
        self.readers.is_empty()
    }

    fn stats(&self) -> QueueStats {
        let counters = &self.counters;
        QueueStats {
            name: self.name.clone(),
            put: counters.put.load(Ordering::Relaxed),
            taken: counters.taken.load(Ordering::Relaxed),
            discarded: counters.discarded.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            high_water: counters.high_water.load(Ordering::Relaxed),
            capacity: self.capacity,
            readers: self.readers.clone(),
        }
    }
}

/// A handle on a pipeline's statistics that can go to another thread (a
/// progress display, a metrics exporter) and outlive the pipeline: from
/// [`Pipeline::monitor`](crate::Pipeline::monitor).
#[derive(Clone)]
pub struct Monitor {
    queues: Arc<[QueueInfo]>,
    replicas: Arc<[Arc<ReplicaCounters>]>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("queues", &self.queues.len())
            .field("workers", &self.replicas.len())
            .finish()
    }
}

impl Monitor {
    pub(crate) fn new(queues: Vec<QueueInfo>, replicas: Vec<Arc<ReplicaCounters>>) -> Self {
        Monitor {
            queues: queues.into(),
            replicas: replicas.into(),
        }
    }

    /// Counters of every queue and every worker replica, now.
    pub fn stats(&self) -> Stats {
        Stats {
            queues: (self.queues.iter()).map(QueueInfo::stats).collect(),
            workers: self.replicas.iter().map(|r| r.snapshot()).collect(),
        }
    }

    /// Whether every worker replica has finished.
    pub fn is_finished(&self) -> bool {
        self.replicas.iter().all(|r| r.is_finished())
    }

    /// The queues, in declaration order.
    pub(crate) fn queues(&self) -> &[QueueInfo] {
        &self.queues
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

/// The shared counters of one queue, on cache lines of their own: written
/// as messages are put and taken, apart from what every reader reads for
/// every message. Every end of the queue counts here, and
/// [`Pipeline::join`](crate::Pipeline::join) settles the account from
/// here: what was put is taken, discarded on purpose, or dropped.
///
/// A broadcast queue's account counts copies: each message put is one
/// copy per replica of its reader, each taken, discarded or dropped on its
/// own. The ends count messages, and the counters multiply (`copies`).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct QueueCounters {
    /// Copies counted per message put (1 but for a broadcast queue);
    /// written once, before any end exists.
    copies: u64,
    pub(crate) put: AtomicU64,
    pub(crate) taken: AtomicU64,
    pub(crate) high_water: AtomicUsize,
    /// Messages a producer could not deliver (its readers were gone, the
    /// pipeline cancelled) and did not get back: never counted as put.
    lost: AtomicU64,
    /// Settled when the pipeline finishes.
    pub(crate) discarded: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// A reader discarded the rest of the queue on purpose
    /// ([`Inbox::discard_rest`](crate::Inbox::discard_rest)).
    discarding: AtomicBool,
    /// Readers that went away before the queue's END: (worker, replica).
    left_early: Mutex<Vec<(Arc<str>, usize)>>,
    /// A routed queue's account per replica's channel (empty for any
    /// other queue): a replica that discards the rest of its own channel
    /// says nothing of another's.
    channels: Box<[ChannelAccount]>,
}

/// The account of one channel of a routed queue, the one its replica
/// reads.
struct ChannelAccount {
    /// Messages (copies, for a broadcast) the producers routed to the
    /// channel and did not get back: the transport counts them.
    routed: Arc<AtomicU64>,
    taken: AtomicU64,
    /// Its replica discarded the rest on purpose.
    discarding: AtomicBool,
}

impl QueueCounters {
    pub(crate) fn new() -> Arc<Self> {
        Self::with_copies(1)
    }

    /// The counters of a queue that counts `copies` per message put (a
    /// broadcast queue: one per replica of its reader).
    pub(crate) fn with_copies(copies: u64) -> Arc<Self> {
        Arc::new(QueueCounters {
            copies,
            ..QueueCounters::default()
        })
    }

    /// The counters of a routed queue that counts `copies` per message put
    /// and keeps an account per channel: `routed` counts, for each, what
    /// the producers routed there.
    pub(crate) fn routed(copies: u64, routed: Vec<Arc<AtomicU64>>) -> Arc<Self> {
        let channels = (routed.into_iter())
            .map(|routed| ChannelAccount {
                routed,
                taken: AtomicU64::new(0),
                discarding: AtomicBool::new(false),
            })
            .collect();
        Arc::new(QueueCounters {
            copies,
            channels,
            ..QueueCounters::default()
        })
    }

    /// The queue's identity: no two live queues share it.
    pub(crate) fn id(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// Counts `n` messages put, and samples how many wait: `items` in the
    /// queue, of `block` messages each.
    #[inline]
    pub(crate) fn add_put(&self, n: u64, items: usize, block: usize) {
        if COUNTING && n > 0 {
            self.put.fetch_add(n * self.copies, Ordering::Relaxed);
            self.high_water.fetch_max(items * block, Ordering::Relaxed);
        }
    }

    /// Takes back the count of `n` messages put and then handed back to
    /// their producer (a `try_put` that failed).
    pub(crate) fn put_back(&self, n: u64) {
        if COUNTING {
            self.put.fetch_sub(n * self.copies, Ordering::Relaxed);
        }
    }

    /// Counts `n` messages that a producer could not deliver and did not
    /// get back.
    pub(crate) fn add_lost(&self, n: u64) {
        self.lost.fetch_add(n * self.copies, Ordering::Relaxed);
    }

    /// Counts `n` messages taken.
    #[inline]
    pub(crate) fn add_taken(&self, n: u64) {
        if COUNTING && n > 0 {
            self.taken.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts `n` messages taken by `replica` of the reader: on a routed
    /// queue, from that replica's own channel.
    pub(crate) fn add_taken_by(&self, replica: usize, n: u64) {
        self.add_taken(n);
        if let Some(channel) = self.channel(replica) {
            channel.taken.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn channel(&self, replica: usize) -> Option<&ChannelAccount> {
        (!self.channels.is_empty()).then(|| &self.channels[replica % self.channels.len()])
    }

    /// Replica `replica` of a reader discards the rest of the queue on
    /// purpose: all of it, or on a routed queue, the rest of its own
    /// channel (the queue counts as discarding once every channel is).
    pub(crate) fn discard_by(&self, replica: usize) {
        if let Some(channel) = self.channel(replica) {
            channel.discarding.store(true, Ordering::Release);
            let all = (self.channels.iter()).all(|c| c.discarding.load(Ordering::Acquire));
            if !all {
                return;
            }
        }
        self.discarding.store(true, Ordering::Release);
    }

    pub(crate) fn is_discarding(&self) -> bool {
        self.discarding.load(Ordering::Acquire)
    }

    /// A reader went away before the queue's END.
    pub(crate) fn reader_left(&self, worker: &Arc<str>, replica: usize) {
        lock(&self.left_early).push((Arc::clone(worker), replica));
    }

    /// The readers that went away before the END.
    pub(crate) fn left_early(&self) -> Vec<(Arc<str>, usize)> {
        lock(&self.left_early).clone()
    }

    /// Settles the account of a queue whose messages live outside this
    /// process: what was put is the server's, what was taken and not
    /// processed went back to it; dropped are the messages this process
    /// could not deliver and those it sent to the dead letters.
    pub(crate) fn settle_remote(&self, dead_lettered: u64) -> u64 {
        let dropped = self.lost.load(Ordering::Relaxed) + dead_lettered;
        self.dropped.store(dropped, Ordering::Relaxed);
        dropped
    }

    /// Settles the account of a queue whose producers and readers have all
    /// finished: what was put and not taken was discarded on purpose or
    /// dropped (for a sink, it is the caller's to read or not), and what
    /// could not be delivered was dropped. Returns the number dropped.
    pub(crate) fn settle(&self, sink: bool) -> u64 {
        let unread =
            (self.put.load(Ordering::Relaxed)).saturating_sub(self.taken.load(Ordering::Relaxed));
        let lost = self.lost.load(Ordering::Relaxed);
        let (discarded, dropped) = match (sink, self.is_discarding()) {
            (true, _) => (0, lost),
            // Every reader (every replica's channel) discards: so does
            // every put after that, which no channel took.
            (false, true) => (unread, lost),
            // A routed queue: what a discarding replica left unread in its
            // own channel is discarded; the rest unread (in another
            // channel, or put and never routed: a send that panicked) is
            // dropped.
            (false, false) if !self.channels.is_empty() => {
                let discarded = (self.channels.iter())
                    .filter(|c| c.discarding.load(Ordering::Acquire))
                    .map(|c| {
                        let routed = c.routed.load(Ordering::Relaxed);
                        routed.saturating_sub(c.taken.load(Ordering::Relaxed))
                    })
                    .sum::<u64>()
                    .min(unread);
                (discarded, unread - discarded + lost)
            }
            (false, false) => (0, unread + lost),
        };
        self.discarded.store(discarded, Ordering::Relaxed);
        self.dropped.store(dropped, Ordering::Relaxed);
        dropped
    }
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

    pub(crate) fn add_processed(&self, n: u64) {
        if COUNTING && n > 0 {
            self.processed.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_wait(&self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.waiting_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        *lock(&self.finished) = Some(Instant::now());
    }

    pub(crate) fn is_finished(&self) -> bool {
        lock(&self.finished).is_some()
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        let finished = *lock(&self.finished);
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
