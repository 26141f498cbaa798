//! A running worker graph: [`Pipeline`], with join, cancel, timeouts and
//! statistics.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::batch::Flusher;
use crate::control::Control;
use crate::ends::Leftovers;
use crate::ends::source::SourceControl;
use crate::error::{Cause, DropReason, Dropped, Error, Failure, Outcome, Stopped, failure};
use crate::stats::{Monitor, QueueInfo, ReplicaCounters, Stats};
use crate::worker::ThreadHandle;

/// One worker replica's thread.
pub(crate) struct Running {
    pub(crate) counters: Arc<ReplicaCounters>,
    pub(crate) handle: ThreadHandle,
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
    /// The replicas joined so far, and their failures.
    ended: Vec<Ended>,
    failures: Vec<Failure>,
    /// The outcome, once every worker has finished: what `join` returns,
    /// however many times it is asked.
    settled: Option<Result<(), Error>>,
    /// Threads that finish sending the END of a source that did not fit
    /// before a `join_timeout`'s deadline, so that the pipeline goes on
    /// ending while its caller reads the sinks.
    enders: Vec<JoinHandle<()>>,
    sources: Vec<Arc<dyn SourceControl>>,
    /// Sends the blocks of batched sources that wait too long.
    flusher: Flusher,
    /// What each queue's last reader left aside as it unwound, with the
    /// reader's name.
    leftovers: Vec<(String, Arc<dyn Leftovers>)>,
    monitor: Monitor,
    control: Arc<Control>,
    /// The graph as DOT and as Mermaid text.
    diagrams: [String; 2],
}

/// Settles every queue's account once every worker has finished: what
/// each queue lost, and why.
fn settle(monitor: &Monitor, ended: &[Ended], cancelled: bool) -> Vec<Dropped> {
    let mut drops = Vec::new();
    for q in monitor.queues() {
        let (count, dead) = match &q.remote {
            Some(dead) => {
                let dead = dead.load(std::sync::atomic::Ordering::Relaxed);
                (q.counters.settle_remote(dead), dead)
            }
            None => (q.counters.settle(q.is_sink()), 0),
        };
        if count == 0 {
            continue;
        }
        let reason = if dead == count {
            DropReason::DeadLettered
        } else if cancelled {
            DropReason::Cancelled
        } else {
            why_dropped(&q.counters.left_early(), ended)
        };
        drops.push(Dropped {
            queue: q.name.clone(),
            count,
            reason,
        });
    }
    drops
}

/// How a worker replica ended.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ending {
    Failed,
    Stopped,
    Returned,
}

/// One finished worker replica.
struct Ended {
    name: Arc<str>,
    replica: usize,
    how: Ending,
}

/// Why a queue lost messages, from the readers that left it before its
/// END: a failure first, then a reader stopped from downstream, then one
/// that returned.
fn why_dropped(left: &[(Arc<str>, usize)], ended: &[Ended]) -> DropReason {
    let how = |(name, replica): &(Arc<str>, usize)| {
        let e = ended
            .iter()
            .find(|e| e.name == *name && e.replica == *replica);
        (
            e.map_or(Ending::Returned, |e| e.how),
            name.to_string(),
            *replica,
        )
    };
    match left.iter().map(how).min() {
        None => DropReason::NoReader,
        Some((Ending::Failed, worker, replica)) => DropReason::ReaderFailed { worker, replica },
        Some((Ending::Stopped, worker, replica)) => DropReason::ReaderStopped { worker, replica },
        Some((Ending::Returned, worker, replica)) => DropReason::ReaderReturned { worker, replica },
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
            .field("workers", &self.monitor.stats().workers.len())
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
        match self.running.len() {
            1 => f.write_str("1 worker still running:")?,
            n => write!(f, "{n} workers still running:")?,
        }
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
        leftovers: Vec<(String, Arc<dyn Leftovers>)>,
        control: Arc<Control>,
        diagrams: [String; 2],
    ) -> Self {
        let replicas = threads.iter().map(|t| Arc::clone(&t.counters)).collect();
        let monitor = Monitor::new(queue_ends, replicas);
        let flusher = Flusher::new(Arc::clone(&control.blocks));
        Pipeline {
            queues,
            threads,
            ended: Vec::new(),
            failures: Vec::new(),
            settled: None,
            enders: Vec::new(),
            sources,
            flusher,
            leftovers,
            monitor,
            control,
            diagrams,
        }
    }

    /// Ends every source, waits for every worker, and returns every failure
    /// (worker, replica, panic message or error) and every message lost
    /// (queue, count, reason). `Ok(())` means nothing was lost: every
    /// message a queue accepted was taken by a worker, handed to the
    /// caller through a sink, or [discarded on purpose](crate::Inbox::discard_rest).
    /// After [`cancel`](Pipeline::cancel), the error also says so and
    /// counts the messages dropped.
    pub fn join(mut self) -> Result<(), Error> {
        match self.finish(None) {
            Ok(result) => result,
            Err(_) => unreachable!("a join without deadline waits for every worker"),
        }
    }

    /// Like [`join`](Pipeline::join), but waits at most `timeout`. If some
    /// workers are still running then, returns which ones; the pipeline
    /// stays usable (to [`cancel`](Pipeline::cancel), to read its sinks,
    /// or to wait again). A source whose END did not fit in its queue by
    /// then is ended on a thread of its own, so the sinks still end.
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
        if let Some(outcome) = &self.settled {
            return Ok(outcome.clone());
        }
        self.sources.retain(|source| !source.end_by(deadline));
        let mut pause = Duration::from_micros(100);
        loop {
            let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.threads)
                .into_iter()
                .partition(|t| deadline.is_none() || t.handle.is_finished());
            for t in done {
                let c = &t.counters;
                let outcome: Outcome = t.handle.join();
                let how = match &outcome {
                    Err(payload) if payload.is::<Stopped>() => Ending::Stopped,
                    Ok(Ok(())) => Ending::Returned,
                    _ => Ending::Failed,
                };
                self.failures
                    .extend(failure(&c.name, Some(c.replica), &outcome));
                self.ended.push(Ended {
                    name: Arc::clone(&c.name),
                    replica: c.replica,
                    how,
                });
            }
            self.threads = running;
            self.enders.retain(|ender| !ender.is_finished());
            if self.threads.is_empty() && self.sources.is_empty() && self.enders.is_empty() {
                break;
            }
            match deadline {
                Some(deadline) if Instant::now() >= deadline => {
                    for source in self.sources.drain(..) {
                        let ender = thread::Builder::new().name("ezq-end".into());
                        (self.enders).extend(ender.spawn(move || _ = source.end_by(None)).ok());
                    }
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
        self.flusher.stop();
        for (reader, left) in &self.leftovers {
            if let Some(message) = left.drop_leftovers() {
                self.failures.push(Failure {
                    worker: reader.clone(),
                    replica: None,
                    cause: Cause::Panicked(format!("dropping a message it left unread: {message}")),
                });
            }
        }
        let cancelled = self.control.is_cancelled();
        let drops = settle(&self.monitor, &self.ended, cancelled);
        let outcome = Error::pipeline(std::mem::take(&mut self.failures), cancelled, drops);
        self.settled = Some(outcome.clone());
        Ok(outcome)
    }
}

impl<Q> Drop for Pipeline<Q> {
    fn drop(&mut self) {
        if self.settled.is_some() {
            return;
        }
        if let Ok(Err(error)) = self.finish(None) {
            let lost = error.dropped() > 0 && !error.is_cancelled();
            if (!error.failures().is_empty() || lost) && !thread::panicking() {
                panic!("{error}");
            }
        }
    }
}

/// A pipeline started in a scope ([`Graph::start_in`](crate::Graph::start_in),
/// or `pipeline! { scope = s; .. }`): a [`Pipeline`] whose workers may
/// borrow from the caller's stack. It derefs to the pipeline (not mutably:
/// the pipeline cannot be swapped out of it), and cannot leave its scope: the scope joins its workers as it ends, and they end
/// only once the pipeline's sources end, which its `join` or drop does.
///
/// ```compile_fail
/// use ezq::{pipeline, worker, Inbox, Outbox};
///
/// #[worker]
/// fn double(i: Inbox<u64>, o: Outbox<u64>) {
///     for msg in i {
///         o.put(msg.data * 2);
///     }
/// }
///
/// // The scope would wait for workers that wait for the pipeline's END.
/// let p = std::thread::scope(|s| pipeline! { scope = s; numbers -> double -> doubled; });
/// ```
#[must_use = "dropping a pipeline ends its sources and waits for its workers"]
pub struct ScopedPipeline<'scope, Q> {
    pipeline: Pipeline<Q>,
    _scope: PhantomData<&'scope ()>,
}

impl<Q> ScopedPipeline<'_, Q> {
    pub(crate) fn new(pipeline: Pipeline<Q>) -> Self {
        ScopedPipeline {
            pipeline,
            _scope: PhantomData,
        }
    }

    /// Ends the sources, waits for every worker and reports, as
    /// [`Pipeline::join`] does.
    pub fn join(self) -> Result<(), Error> {
        self.pipeline.join()
    }

    /// Waits at most `timeout`, as [`Pipeline::join_timeout`] does.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Result<(), Error>, TimedOut> {
        self.pipeline.join_timeout(timeout)
    }
}

impl<Q> Deref for ScopedPipeline<'_, Q> {
    type Target = Pipeline<Q>;

    fn deref(&self) -> &Pipeline<Q> {
        &self.pipeline
    }
}

impl<Q> fmt::Debug for ScopedPipeline<'_, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ScopedPipeline")
            .field(&self.pipeline)
            .finish()
    }
}
