//! What can go wrong, and how it is reported: [`Error`], with each
//! [`Failure`] of a worker and the messages [`Dropped`] by each queue.

use std::any::Any;
use std::fmt;
use std::thread;

/// How one worker failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The worker panicked with this message.
    Panicked(String),
    /// The worker returned `Err` with this text.
    Returned(String),
}

/// One failed worker: its name, its replica number when it ran in a
/// pipeline, and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The worker's name: its function's name in a pipeline, or the name
    /// given to [`run_named`](crate::run_named) (`"worker"` for [`run`](crate::run)).
    pub worker: String,
    /// Which replica of the worker failed, counting from 0 (`None` for a
    /// worker started by hand).
    pub replica: Option<usize>,
    /// What went wrong.
    pub cause: Cause,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker `{}`", self.worker)?;
        if let Some(replica) = self.replica {
            write!(f, " (replica {replica})")?;
        }
        match &self.cause {
            Cause::Panicked(msg) => write!(f, " panicked: {msg}"),
            Cause::Returned(msg) => write!(f, " returned an error: {msg}"),
        }
    }
}

/// What went wrong: workers that failed (each panicked or returned `Err`),
/// a pipeline that was cancelled, and messages that were lost. No failure
/// is ever swallowed: [`Worker::join`](crate::Worker::join),
/// [`endq_and_wait`](crate::endq_and_wait) and a pipeline's `join` report
/// every one, and a pipeline's `join` returns `Ok(())` only if every
/// message its queues accepted was taken by a worker, handed to the caller
/// through a sink, or discarded on purpose.
///
/// ```
/// let paper = 0;
/// let w = ezq::run_named("printer", move || {
///     if paper == 0 {
///         panic!("out of paper");
///     }
/// });
/// let err = w.join().unwrap_err();
/// assert_eq!(err.to_string(), "worker `printer` panicked: out of paper");
/// assert_eq!(err.failures()[0].worker, "printer");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    failures: Vec<Failure>,
    cancelled: bool,
    drops: Vec<Dropped>,
}

impl Error {
    /// Every failure, in the order the workers were joined.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Whether the pipeline was [cancelled](crate::Pipeline::cancel).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// How many messages were put into a pipeline's queues (sinks aside)
    /// and never taken, in all: lost with the workers that failed, left
    /// early or were cancelled. Always 0 for workers started by hand.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|d| d.count).sum()
    }

    /// The messages lost, queue by queue, with the reason.
    pub fn drops(&self) -> &[Dropped] {
        &self.drops
    }

    /// Gathers failures into an error; `Ok` if there were none.
    pub(crate) fn check(failures: Vec<Failure>) -> Result<(), Error> {
        Error::pipeline(failures, false, Vec::new())
    }

    /// A pipeline's outcome: `Ok` if nothing failed, nothing was lost and
    /// it was not cancelled.
    pub(crate) fn pipeline(
        failures: Vec<Failure>,
        cancelled: bool,
        drops: Vec<Dropped>,
    ) -> Result<(), Error> {
        if failures.is_empty() && !cancelled && drops.is_empty() {
            Ok(())
        } else {
            Err(Error {
                failures,
                cancelled,
                drops,
            })
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        if self.cancelled {
            let dropped = self.dropped();
            let verb = if dropped == 1 { "was" } else { "were" };
            lines.push(format!(
                "the pipeline was cancelled; {} {verb} dropped",
                messages(dropped)
            ));
        }
        match self.failures.as_slice() {
            [] => {}
            [one] => lines.push(one.to_string()),
            many => {
                let mut text = format!("{} workers failed", many.len());
                for failure in many {
                    text.push_str(&format!("\n  {failure}"));
                }
                lines.push(text);
            }
        }
        if !self.cancelled {
            lines.extend(self.drops.iter().map(Dropped::to_string));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// "1 message", "2 messages".
pub(crate) fn messages(n: u64) -> String {
    match n {
        1 => "1 message".to_owned(),
        n => format!("{n} messages"),
    }
}

/// Messages one queue lost: put, and never taken nor discarded on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The queue's name.
    pub queue: String,
    /// How many messages it lost.
    pub count: u64,
    /// Why.
    pub reason: DropReason,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queue `{}` dropped {}: {}",
            self.queue,
            messages(self.count),
            self.reason
        )
    }
}

/// Why a queue lost messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The pipeline was [cancelled](crate::Pipeline::cancel).
    Cancelled,
    /// A reader of the queue failed (its failure is in the error too).
    ReaderFailed {
        /// The worker.
        worker: String,
        /// Its replica.
        replica: usize,
    },
    /// A reader of the queue was stopped because every reader of one of
    /// its own outputs was gone: the cause is further down the graph.
    ReaderStopped {
        /// The worker.
        worker: String,
        /// Its replica.
        replica: usize,
    },
    /// A reader of the queue returned before the queue's END without
    /// [discarding](crate::Inbox::discard_rest) the rest.
    ReaderReturned {
        /// The worker.
        worker: String,
        /// Its replica.
        replica: usize,
    },
    /// The queue's readers were gone before its producers were done (a
    /// producer's last messages, or messages of a reader that was never
    /// started).
    NoReader,
    /// Workers failed on each of them as often as the cluster allows
    /// (`Cluster::max_failures`, feature `redis`):
    /// they are in the job's dead-letter stream.
    DeadLettered,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Cancelled => f.write_str("the pipeline was cancelled"),
            DropReason::ReaderFailed { worker, replica } => {
                write!(f, "its reader `{worker}` (replica {replica}) failed")
            }
            DropReason::ReaderStopped { worker, replica } => write!(
                f,
                "its reader `{worker}` (replica {replica}) stopped: the readers of its output were gone"
            ),
            DropReason::ReaderReturned { worker, replica } => write!(
                f,
                "its reader `{worker}` (replica {replica}) returned before the queue's END (call `Inbox::discard_rest` to stop early on purpose)"
            ),
            DropReason::NoReader => {
                f.write_str("its readers were gone before its producers were done")
            }
            DropReason::DeadLettered => f.write_str(
                "workers failed on each of them too often: they are in the job's dead-letter stream",
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The panic payload a worker unwinds with when every consumer of its
/// output is gone: it stops instead of working on for nothing. It is the
/// consequence of another failure (or of consumers that returned early),
/// never a failure of its own; what it could not deliver is counted as
/// dropped.
pub(crate) struct Stopped;

/// Stops the current worker quietly; see [`Stopped`].
pub(crate) fn stop_worker() -> ! {
    std::panic::resume_unwind(Box::new(Stopped))
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_owned()
    }
}

/// What a worker thread ends with: its own verdict, or a panic.
pub(crate) type Outcome = thread::Result<Result<(), String>>;

/// Turns a finished worker's outcome into a failure, if it was one.
pub(crate) fn failure(worker: &str, replica: Option<usize>, outcome: &Outcome) -> Option<Failure> {
    let cause = match outcome {
        Ok(Ok(())) => return None,
        Err(payload) if payload.is::<Stopped>() => return None,
        Ok(Err(msg)) => Cause::Returned(msg.clone()),
        Err(payload) => Cause::Panicked(panic_message(payload.as_ref())),
    };
    Some(Failure {
        worker: worker.to_owned(),
        replica,
        cause,
    })
}
