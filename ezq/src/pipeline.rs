//! A running worker graph: [`Pipeline`], with join, cancel, timeouts and
//! statistics.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::control::Control;
use crate::ports::{QueueShared, SourceEnd};
use crate::stats::{QueueCounters, QueueStats, ReplicaCounters, Stats};
use crate::worker::{Error, failure};

/// A source as the pipeline sees it, whatever its message type.
pub(crate) trait SourceControl: Send + Sync {
    /// Ends the source, waiting for room in its queue until `deadline`;
    /// false if the END did not all fit by then.
    fn end_by(&self, deadline: Option<Instant>) -> bool;
    /// Wakes its readers after a cancel, never waiting.
    fn nudge(&self);
}

impl<T: Send + 'static> SourceControl for SourceEnd<T> {
    fn end_by(&self, deadline: Option<Instant>) -> bool {
        SourceEnd::end_by(self, deadline)
    }

    fn nudge(&self) {
        SourceEnd::nudge(self);
    }
}

/// A queue's counters, whatever its message type.
pub(crate) trait QueueEnd: Send + Sync {
    fn counters(&self) -> &QueueCounters;
}

impl<T: Send> QueueEnd for QueueShared<T> {
    fn counters(&self) -> &QueueCounters {
        &self.counters
    }
}

/// One queue, as the pipeline's statistics see it.
pub(crate) struct QueueInfo {
    pub(crate) name: String,
    pub(crate) capacity: Option<usize>,
    /// The workers reading the queue; none for a sink.
    pub(crate) readers: Vec<String>,
    pub(crate) end: Arc<dyn QueueEnd>,
}

impl QueueInfo {
    fn is_sink(&self) -> bool {
        self.readers.is_empty()
    }

    fn stats(&self) -> QueueStats {
        let counters = self.end.counters();
        QueueStats {
            name: self.name.clone(),
            put: counters.put.load(Ordering::Relaxed),
            taken: counters.taken.load(Ordering::Relaxed),
            high_water: counters.high_water.load(Ordering::Relaxed),
            capacity: self.capacity,
            readers: self.readers.clone(),
        }
    }
}

/// One worker replica's thread.
pub(crate) struct Running {
    pub(crate) counters: Arc<ReplicaCounters>,
    pub(crate) handle: JoinHandle<Result<(), String>>,
}

/// A running worker graph, returned by `pipeline!` and by
/// [`Graph::start`](crate::Graph::start).
///
/// It derefs to its queues, so `p.in_q.put(x)` reaches the source `in_q`
/// and `p.out_q.iter()` the sink `out_q`.
///
/// [`join`](Pipeline::join) ends every source, waits for every worker and
/// reports every failure. Dropping the pipeline does the same and then, if
/// a worker failed, panics with the failures, as `std::thread::scope` does
/// (unless the dropping thread is already panicking).
#[must_use = "dropping a Pipeline ends its sources and waits for its workers"]
pub struct Pipeline<Q> {
    queues: Q,
    threads: Vec<Running>,
    sources: Vec<Arc<dyn SourceControl>>,
    monitor: Monitor,
    control: Arc<Control>,
    /// The graph as DOT and as Mermaid text.
    diagrams: [String; 2],
}

/// A handle on a pipeline's statistics that can go to another thread (a
/// progress display, a metrics exporter) and outlive the pipeline: from
/// [`Pipeline::monitor`].
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

    /// Messages put into the queues (sinks aside) and never taken.
    fn unread(&self) -> u64 {
        (self.queues.iter())
            .filter(|q| !q.is_sink())
            .map(|q| q.stats().len())
            .sum()
    }
}

impl<Q> Deref for Pipeline<Q> {
    type Target = Q;

    fn deref(&self) -> &Q {
        &self.queues
    }
}

impl<Q> fmt::Debug for Pipeline<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("workers", &self.monitor.replicas.len())
            .field("running", &self.threads.len())
            .field("cancelled", &self.control.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// The error of [`Pipeline::join_timeout`]: some workers were still running
/// when the time was up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    /// The workers still running, as (name, replica).
    pub running: Vec<(String, usize)>,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} workers still running:", self.running.len())?;
        for (name, replica) in &self.running {
            write!(f, " `{name}` (replica {replica})")?;
        }
        Ok(())
    }
}

impl std::error::Error for TimedOut {}

impl<Q> Pipeline<Q> {
    pub(crate) fn new(
        queues: Q,
        threads: Vec<Running>,
        sources: Vec<Arc<dyn SourceControl>>,
        queue_ends: Vec<QueueInfo>,
        control: Arc<Control>,
        diagrams: [String; 2],
    ) -> Self {
        let monitor = Monitor {
            queues: queue_ends.into(),
            replicas: threads.iter().map(|t| Arc::clone(&t.counters)).collect(),
        };
        Pipeline {
            queues,
            threads,
            sources,
            monitor,
            control,
            diagrams,
        }
    }

    /// Ends every source, waits for every worker, and returns every failure
    /// (worker, replica, panic message or error). After
    /// [`cancel`](Pipeline::cancel), the error also says so and counts
    /// the messages dropped.
    pub fn join(mut self) -> Result<(), Error> {
        match self.finish(None) {
            Ok(result) => result,
            Err(_) => unreachable!("a join without deadline waits for every worker"),
        }
    }

    /// Like [`join`](Pipeline::join), but waits at most `timeout`. If some
    /// workers are still running then, returns which ones; the pipeline
    /// stays usable (to [`cancel`](Pipeline::cancel), or to wait again).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Result<(), Error>, TimedOut> {
        self.finish(Some(Instant::now() + timeout))
    }

    /// Stops the pipeline promptly: every inbox ends at its next message,
    /// every `put` of a worker stops it, producers waiting on full queues are
    /// released, and sources drop what is put into them. Messages still in
    /// the queues are dropped and counted in the error that
    /// [`join`](Pipeline::join) returns. Long-running workers can check
    /// [`is_cancelled`](crate::is_cancelled).
    pub fn cancel(&self) {
        self.control.cancel();
        for source in &self.sources {
            source.nudge();
        }
    }

    /// Graphviz DOT text of the pipeline's graph.
    pub fn dot(&self) -> &str {
        &self.diagrams[0]
    }

    /// Mermaid text of the pipeline's graph (a `flowchart`).
    pub fn mermaid(&self) -> &str {
        &self.diagrams[1]
    }

    /// Whether every worker has finished.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.handle.is_finished())
    }

    /// Counters of every queue and every worker replica, now; see [`Stats`].
    pub fn stats(&self) -> Stats {
        self.monitor.stats()
    }

    /// A handle on the statistics for another thread; see [`Monitor`].
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// Ends the sources and joins the threads, until `deadline` if any.
    fn finish(&mut self, deadline: Option<Instant>) -> Result<Result<(), Error>, TimedOut> {
        self.sources.retain(|source| !source.end_by(deadline));
        let mut failures = Vec::new();
        let mut pause = Duration::from_micros(100);
        loop {
            let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.threads)
                .into_iter()
                .partition(|t| deadline.is_none() || t.handle.is_finished());
            for t in done {
                let c = &t.counters;
                failures.extend(failure(&c.name, Some(c.replica), &t.handle.join()));
            }
            self.threads = running;
            if self.threads.is_empty() && self.sources.is_empty() {
                break;
            }
            match deadline {
                Some(deadline) if Instant::now() >= deadline => {
                    return Err(TimedOut {
                        running: (self.threads.iter())
                            .map(|t| (t.counters.name.to_string(), t.counters.replica))
                            .collect(),
                    });
                }
                _ => {
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                    self.sources.retain(|source| !source.end_by(deadline));
                }
            }
        }
        Ok(Error::pipeline(
            failures,
            self.control.is_cancelled(),
            self.monitor.unread(),
        ))
    }
}

impl<Q> Drop for Pipeline<Q> {
    fn drop(&mut self) {
        if let Ok(Err(error)) = self.finish(None) {
            if !error.failures().is_empty() && !thread::panicking() {
                panic!("{error}");
            }
        }
    }
}
