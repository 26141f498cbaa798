//! Worker threads: [`run`], [`Worker`], [`endq_and_wait`] and [`num_cpus`].

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock, mpsc};
use std::thread::{self, JoinHandle};

use crate::Queue;
use crate::error::{Error, Outcome, Stopped, failure};

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

/// Spawns a named thread running `body`, with `stack` bytes of stack if
/// given (Rust's default otherwise).
pub(crate) fn spawn_thread(
    name: String,
    stack: Option<usize>,
    body: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> JoinHandle<Result<(), String>> {
    let builder = thread::Builder::new().name(name);
    let builder = match stack {
        Some(bytes) => builder.stack_size(bytes),
        None => builder,
    };
    builder
        .spawn(body)
        .expect("ezq: the operating system refused to start a worker thread")
}

/// A pipeline's worker thread, to join: one of its own, or one of a
/// [`std::thread::Scope`], which the scope joins and whose outcome comes
/// back through a channel.
pub(crate) enum ThreadHandle {
    Own(JoinHandle<Result<(), String>>),
    Scoped(Mutex<ScopedOutcome>),
}

/// What a scoped thread sends as it ends, once received.
pub(crate) struct ScopedOutcome {
    rx: mpsc::Receiver<Outcome>,
    outcome: Option<Outcome>,
}

impl ThreadHandle {
    /// Whether the thread has finished.
    pub(crate) fn is_finished(&self) -> bool {
        match self {
            ThreadHandle::Own(handle) => handle.is_finished(),
            ThreadHandle::Scoped(scoped) => {
                let mut scoped = crate::sync::lock(scoped);
                if scoped.outcome.is_none() {
                    scoped.outcome = scoped.rx.try_recv().ok();
                }
                scoped.outcome.is_some()
            }
        }
    }

    /// Waits for the thread and returns how it ended.
    pub(crate) fn join(self) -> Outcome {
        match self {
            ThreadHandle::Own(handle) => handle.join(),
            ThreadHandle::Scoped(scoped) => {
                let scoped = scoped.into_inner().unwrap_or_else(|e| e.into_inner());
                match scoped.outcome {
                    Some(outcome) => outcome,
                    // The thread sends before it ends, even when it panicked.
                    None => scoped.rx.recv().unwrap_or_else(|_| Ok(Ok(()))),
                }
            }
        }
    }
}

/// Spawns a named thread of `scope` running `body`, as [`spawn_thread`]
/// does; its outcome (a panic too) comes back through the handle, and the
/// scope joins it.
pub(crate) fn spawn_scoped<'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    name: String,
    stack: Option<usize>,
    body: impl FnOnce() -> Result<(), String> + Send + 'scope,
) -> ThreadHandle {
    let (tx, rx) = mpsc::channel();
    let builder = thread::Builder::new().name(name);
    let builder = match stack {
        Some(bytes) => builder.stack_size(bytes),
        None => builder,
    };
    builder
        .spawn_scoped(scope, move || {
            let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(body)));
        })
        .expect("ezq: the operating system refused to start a worker thread");
    ThreadHandle::Scoped(Mutex::new(ScopedOutcome { rx, outcome: None }))
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
        handle: Some(spawn_thread(name.clone(), None, move || f().into_result())),
        name,
    }
}

/// Like [`run_named`], on a thread with `stack_size` bytes of stack: for a
/// worker that handles large values (a `Queue` of 1 MiB messages passes
/// each through a few stack frames) or recurses deeply.
///
/// ```
/// let w = ezq::run_with_stack("deep", 16 * 1024 * 1024, || {
///     let big = [7u8; 4 * 1024 * 1024];
///     assert_eq!(big[big.len() - 1], 7);
/// });
/// w.join().unwrap();
/// ```
pub fn run_with_stack<R: WorkerResult>(
    name: impl Into<String>,
    stack_size: usize,
    f: impl FnOnce() -> R + Send + 'static,
) -> Worker {
    let name = name.into();
    Worker {
        handle: Some(spawn_thread(name.clone(), Some(stack_size), move || {
            f().into_result()
        })),
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
