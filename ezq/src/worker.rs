//! Worker threads: [`run`], [`Worker`], failures ([`Error`]) and [`num_cpus`].

use std::any::Any;
use std::fmt;
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};

use crate::Queue;

/// What a worker function may return: `()`, or `Result<(), E>` with an
/// error that displays. An `Err` is reported like a panic.
#[diagnostic::on_unimplemented(
    message = "a worker returns `()` or `Result<(), E>`, not `{Self}`",
    label = "this worker returns `{Self}`",
    note = "send results through an `Outbox`, or write a map worker `fn(T) -> U` that takes no queues"
)]
pub trait WorkerResult {
    /// `Err` with the error's text if the worker failed.
    fn into_result(self) -> Result<(), String>;
}

impl WorkerResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> WorkerResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

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
    /// given to [`run_named`] (`"worker"` for [`run`]).
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

/// One or more workers failed: each panicked or returned `Err`. No failure
/// is ever swallowed: [`Worker::join`], [`endq_and_wait`] and a pipeline's
/// `join` all report every one.
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
    dropped: u64,
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
    /// and never taken: lost with the workers that failed or were
    /// cancelled. Always 0 for workers started by hand.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Gathers failures into an error; `Ok` if there were none.
    pub(crate) fn check(failures: Vec<Failure>) -> Result<(), Error> {
        Error::pipeline(failures, false, 0)
    }

    /// A pipeline's outcome: `Ok` if nothing failed and it was not cancelled.
    pub(crate) fn pipeline(
        failures: Vec<Failure>,
        cancelled: bool,
        dropped: u64,
    ) -> Result<(), Error> {
        if failures.is_empty() && !cancelled {
            Ok(())
        } else {
            Err(Error {
                failures,
                cancelled,
                dropped,
            })
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cancelled {
            write!(
                f,
                "the pipeline was cancelled; {} messages were dropped",
                self.dropped
            )?;
            if self.failures.is_empty() {
                return Ok(());
            }
            f.write_str("\n")?;
        }
        match self.failures.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} workers failed", many.len())?;
                for failure in many {
                    write!(f, "\n  {failure}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

/// The panic payload a worker unwinds with when every consumer of its
/// output is gone: it stops instead of working on for nothing. It is the
/// consequence of another failure (or of consumers that returned early),
/// never a failure of its own.
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

/// Spawns a named thread running `body`.
pub(crate) fn spawn_thread(
    name: String,
    body: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> JoinHandle<Result<(), String>> {
    thread::Builder::new()
        .name(name)
        .spawn(body)
        .expect("ezq: the operating system refused to start a worker thread")
}

/// A handle to one worker thread, started by [`run`] or [`run_named`].
///
/// [`join`](Worker::join) waits for it and reports a panic or an `Err` as an
/// [`Error`]. Dropping a `Worker` also waits for it and then re-raises its
/// panic (or panics with its error), unless the dropping thread is itself
/// already panicking: a failure is never lost.
#[must_use = "dropping a Worker waits for it to finish"]
pub struct Worker {
    name: String,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl Worker {
    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the worker's function has returned (or panicked).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the worker to finish; `Err` if it panicked or returned `Err`.
    pub fn join(mut self) -> Result<(), Error> {
        let outcome = self.wait();
        Error::check(failure(&self.name, None, &outcome).into_iter().collect())
    }

    fn wait(&mut self) -> Outcome {
        match self.handle.take() {
            Some(handle) => handle.join(),
            None => Ok(Ok(())),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.handle.is_none() {
            return;
        }
        let outcome = self.wait();
        if thread::panicking() {
            return;
        }
        match outcome {
            Err(payload) if !payload.is::<Stopped>() => std::panic::resume_unwind(payload),
            Ok(Err(msg)) => panic!("worker `{}` returned an error: {msg}", self.name),
            _ => {}
        }
    }
}

/// Runs `f` on a new worker thread (Python ezq's `run`).
///
/// `f` may return `()` or `Result<(), E>`; see [`WorkerResult`]. Workers are
/// threads: anything `Send` can be moved into them, no pickling involved.
///
/// ```
/// let q = ezq::Queue::new();
/// let w = {
///     let q = q.clone();
///     ezq::run(move || ezq::put_msg(&q, 42u64))
/// };
/// w.join().unwrap();
/// assert_eq!(ezq::iter_q(&q).next().unwrap().data, 42);
/// ```
pub fn run<R: WorkerResult>(f: impl FnOnce() -> R + Send + 'static) -> Worker {
    run_named("worker", f)
}

/// Like [`run`], with a name that errors and the thread carry.
pub fn run_named<R: WorkerResult>(
    name: impl Into<String>,
    f: impl FnOnce() -> R + Send + 'static,
) -> Worker {
    let name = name.into();
    Worker {
        handle: Some(spawn_thread(name.clone(), move || f().into_result())),
        name,
    }
}

/// Ends `q`, then waits for every worker (Python ezq's `endq_and_wait`).
///
/// All workers are joined even when some fail; the error lists every
/// failure. One END stops every consumer of `q`, however many.
///
/// Workers that put into a *bounded* queue that nobody reads while this
/// waits will wait forever: read such a queue first, or make it unbounded.
pub fn endq_and_wait<T>(
    q: &Queue<T>,
    workers: impl IntoIterator<Item = Worker>,
) -> Result<(), Error> {
    q.end();
    let failures = workers
        .into_iter()
        .filter_map(|mut w| {
            let outcome = w.wait();
            failure(&w.name, None, &outcome)
        })
        .collect();
    Error::check(failures)
}

/// The number of CPUs this process may use (Python ezq's `NUM_CPUS`): it
/// respects CPU affinity and cgroup quotas, and is at least 1.
///
/// ```
/// assert!(ezq::num_cpus() >= 1);
/// ```
pub fn num_cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| thread::available_parallelism().map_or(1, usize::from))
}
