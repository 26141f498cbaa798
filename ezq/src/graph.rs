//! The runtime worker graph that `pipeline!` expands to, also usable directly
//! for topologies known only at run time: [`Graph`], [`Pipeline`].

use std::any::Any;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};

use crate::ports::{Inbox, Outbox, Sink, Source, SourceEnd};
use crate::queue::Item;
use crate::worker::{Error, WorkerResult, failure, spawn_thread};

/// The capacity of queues between workers and of sources when none is
/// given: large enough that channel hand-offs stay cheap, small enough that
/// a fast stage cannot run far ahead of a slow one.
pub const DEFAULT_CAPACITY: usize = 1024;

/// How many messages a queue may hold before its producers wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// [`DEFAULT_CAPACITY`] for sources and queues between workers;
    /// unbounded for sinks, which the caller may read at leisure.
    Default,
    /// At most this many messages (0 counts as 1: END must fit).
    Bounded(usize),
    /// No limit.
    Unbounded,
}

/// A typed reference to one queue of a [`Graph`], to wire it to workers.
pub struct QueueRef<T> {
    index: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for QueueRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for QueueRef<T> {}

impl<T> fmt::Debug for QueueRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueRef({})", self.index)
    }
}

/// Both ends of one queue's channel, type-erased in the graph's table.
struct Channel<T> {
    tx: Sender<Item<T>>,
    rx: Receiver<Item<T>>,
}

/// The graph's channels while it starts, indexed like its queues.
pub struct Channels {
    channels: Vec<Box<dyn Any + Send>>,
    sources: Vec<Option<(Box<dyn Any + Send + Sync>, Ender)>>,
}

impl Channels {
    fn channel<T: 'static>(&self, queue: QueueRef<T>) -> &Channel<T> {
        self.channels[queue.index]
            .downcast_ref()
            .expect("a QueueRef's type is the type its queue was made with")
    }

    /// The handle's end of a source queue (one that no worker produces).
    ///
    /// # Panics
    /// If a worker produces the queue.
    pub fn source<T: Send + 'static>(&self, queue: QueueRef<T>) -> Source<T> {
        let shared = self.sources[queue.index]
            .as_ref()
            .and_then(|(s, _)| s.downcast_ref::<Arc<SourceEnd<T>>>())
            .expect("a pipeline source is a queue that no worker produces");
        Source::new(Arc::clone(shared))
    }

    /// The handle's end of a sink queue (one that no worker consumes).
    pub fn sink<T: Send + 'static>(&self, queue: QueueRef<T>) -> Sink<T> {
        Sink::new(self.channel(queue).rx.clone())
    }
}

/// Tuples of [`QueueRef`]s that a worker reads: they open into [`Inbox`]es.
pub trait Inputs {
    /// The tuple of inboxes.
    type Open: Send;
    /// The queues' indices in the graph.
    fn indices(&self) -> Vec<usize>;
    /// One replica's inboxes.
    fn open(&self, channels: &Channels) -> Self::Open;
}

/// Tuples of [`QueueRef`]s that a worker writes: they open into [`Outbox`]es.
pub trait Outputs {
    /// The tuple of outboxes.
    type Open: Send;
    /// The queues' indices in the graph.
    fn indices(&self) -> Vec<usize>;
    /// One replica's outboxes.
    fn open(&self, channels: &Channels) -> Self::Open;
}

macro_rules! port_tuples {
    ($(($($t:ident $v:ident),*))*) => {$(
        impl<$($t: Send + 'static),*> Inputs for ($(QueueRef<$t>,)*) {
            type Open = ($(Inbox<$t>,)*);
            fn indices(&self) -> Vec<usize> {
                let ($($v,)*) = self;
                vec![$($v.index),*]
            }
            #[allow(unused_variables, clippy::unused_unit)]
            fn open(&self, channels: &Channels) -> Self::Open {
                let ($($v,)*) = self;
                ($(Inbox::new(channels.channel(*$v).rx.clone()),)*)
            }
        }
        impl<$($t: Send + 'static),*> Outputs for ($(QueueRef<$t>,)*) {
            type Open = ($(Outbox<$t>,)*);
            fn indices(&self) -> Vec<usize> {
                let ($($v,)*) = self;
                vec![$($v.index),*]
            }
            #[allow(unused_variables, clippy::unused_unit)]
            fn open(&self, channels: &Channels) -> Self::Open {
                let ($($v,)*) = self;
                ($(Outbox::new(channels.channel(*$v).tx.clone()),)*)
            }
        }
    )*};
}

port_tuples! {
    ()
    (A a)
    (A a, B b)
    (A a, B b, C c)
    (A a, B b, C c, D d)
    (A a, B b, C c, D d, E e)
    (A a, B b, C c, D d, E e, F f)
    (A a, B b, C c, D d, E e, F f, G g)
    (A a, B b, C c, D d, E e, F f, G g, H h)
}

type MakeChannel = fn(Capacity, bool) -> Box<dyn Any + Send>;
type MakeSource = fn(&(dyn Any + Send), usize) -> (Box<dyn Any + Send + Sync>, Ender);
type Ender = Box<dyn Fn() + Send + Sync>;
type Body = Box<dyn FnOnce() -> Result<(), String> + Send>;
type OpenReplica = Box<dyn Fn(&Channels) -> Body>;

struct QueueNode {
    name: String,
    capacity: Capacity,
    make: MakeChannel,
    make_source: MakeSource,
}

struct WorkerNode {
    name: String,
    replicas: usize,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    open: OpenReplica,
}

fn make_channel<T: Send + 'static>(capacity: Capacity, sink: bool) -> Box<dyn Any + Send> {
    let (tx, rx) = match capacity {
        Capacity::Default if sink => crossbeam_channel::unbounded(),
        Capacity::Default => crossbeam_channel::bounded(DEFAULT_CAPACITY),
        Capacity::Bounded(n) => crossbeam_channel::bounded(n.max(1)),
        Capacity::Unbounded => crossbeam_channel::unbounded(),
    };
    Box::new(Channel::<T> { tx, rx })
}

/// A source's shared state, both typed (for the handle) and as a closure
/// that ends it (for the pipeline's shutdown).
fn make_source<T: Send + 'static>(
    channel: &(dyn Any + Send),
    readers: usize,
) -> (Box<dyn Any + Send + Sync>, Ender) {
    let channel = channel
        .downcast_ref::<Channel<T>>()
        .expect("a queue's channel has the queue's type");
    let shared = SourceEnd::new(channel.tx.clone(), readers);
    let ender = Arc::clone(&shared);
    (Box::new(shared), Box::new(move || ender.end()))
}

/// A worker graph under construction: queues, and workers wired to them.
///
/// This is what `pipeline!` expands to, and it serves topologies that are
/// only known at run time. Nothing runs until [`start`](Graph::start).
///
/// ```
/// use ezq::{Graph, Inbox, Outbox};
///
/// let mut g = Graph::new();
/// let numbers = g.queue::<u64>("numbers");
/// let doubled = g.queue::<u64>("doubled");
/// g.add("double", 2, (numbers,), (doubled,), |(inbox,): (Inbox<u64>,), (out,): (Outbox<u64>,)| {
///     for msg in inbox {
///         out.put(msg.data * 2);
///     }
/// });
/// let p = g.start(|c| (c.source(numbers), c.sink(doubled)));
/// for i in 0..10 {
///     p.0.put(i);
/// }
/// p.0.end();
/// let total: u64 = p.1.iter().map(|m| m.data).sum();
/// assert_eq!(total, 90);
/// p.join().unwrap();
/// ```
#[derive(Default)]
pub struct Graph {
    queues: Vec<QueueNode>,
    workers: Vec<WorkerNode>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dot())
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// Adds a queue with the [default capacity](Capacity::Default).
    pub fn queue<T: Send + 'static>(&mut self, name: &str) -> QueueRef<T> {
        self.queue_with(name, Capacity::Default)
    }

    /// Adds a queue with the given capacity.
    pub fn queue_with<T: Send + 'static>(&mut self, name: &str, capacity: Capacity) -> QueueRef<T> {
        self.queues.push(QueueNode {
            name: name.to_owned(),
            capacity,
            make: make_channel::<T>,
            make_source: make_source::<T>,
        });
        QueueRef {
            index: self.queues.len() - 1,
            _type: PhantomData,
        }
    }

    /// Adds a worker: `replicas` threads, each calling `f` with its own
    /// inboxes (one per queue in `inputs`) and outboxes (one per queue in
    /// `outputs`). `f` may return `()` or `Result<(), E>`.
    ///
    /// # Panics
    /// If `replicas` is 0: such a worker would never read its inputs.
    pub fn add<I, O, R>(
        &mut self,
        name: &str,
        replicas: usize,
        inputs: I,
        outputs: O,
        f: impl Fn(I::Open, O::Open) -> R + Send + Sync + 'static,
    ) where
        I: Inputs + 'static,
        O: Outputs + 'static,
        R: WorkerResult,
    {
        assert!(
            replicas > 0,
            "ezq: worker `{name}` needs at least 1 replica, but its replica count is 0"
        );
        let f = Arc::new(f);
        let (ins, outs) = (inputs.indices(), outputs.indices());
        self.workers.push(WorkerNode {
            name: name.to_owned(),
            replicas,
            inputs: ins,
            outputs: outs,
            open: Box::new(move |channels| {
                let (i, o, f) = (
                    inputs.open(channels),
                    outputs.open(channels),
                    Arc::clone(&f),
                );
                Box::new(move || f(i, o).into_result())
            }),
        });
    }

    /// Graphviz DOT text of the graph: workers as ellipses (with their
    /// replica counts), queues as boxes.
    pub fn dot(&self) -> String {
        let mut dot = String::from("digraph pipeline {\n    rankdir=LR;\n");
        for (i, q) in self.queues.iter().enumerate() {
            let _ = writeln!(dot, "    q{i} [label=\"{}\", shape=box];", q.name);
        }
        for (i, w) in self.workers.iter().enumerate() {
            let label = match w.replicas {
                1 => w.name.clone(),
                n => format!("{} ×{n}", w.name),
            };
            let _ = writeln!(dot, "    w{i} [label=\"{label}\"];");
            for q in &w.inputs {
                let _ = writeln!(dot, "    q{q} -> w{i};");
            }
            for q in &w.outputs {
                let _ = writeln!(dot, "    w{i} -> q{q};");
            }
        }
        dot.push_str("}\n");
        dot
    }

    /// Starts every worker and returns the running pipeline. `handle` picks
    /// the caller's ends out of the graph's queues ([`Channels::source`],
    /// [`Channels::sink`]); the [`Pipeline`] derefs to what it returns.
    ///
    /// Once this returns, the graph holds no queue ends of its own, so a
    /// queue ends as soon as every one of its producers is done.
    pub fn start<Q>(self, handle: impl FnOnce(&Channels) -> Q) -> Pipeline<Q> {
        let dot = self.dot();
        let mut readers = vec![0; self.queues.len()];
        let mut produced = vec![false; self.queues.len()];
        for w in &self.workers {
            for &q in &w.inputs {
                readers[q] += w.replicas;
            }
            for &q in &w.outputs {
                produced[q] = true;
            }
        }
        let channels: Vec<_> = (self.queues.iter().zip(&readers))
            .map(|(q, &n)| (q.make)(q.capacity, n == 0))
            .collect();
        let sources = (self.queues.iter().enumerate())
            .map(|(i, q)| (!produced[i]).then(|| (q.make_source)(channels[i].as_ref(), readers[i])))
            .collect();
        let channels = Channels { channels, sources };
        let mut threads = Vec::new();
        for w in &self.workers {
            let name: Arc<str> = Arc::from(w.name.as_str());
            for replica in 0..w.replicas {
                let body = (w.open)(&channels);
                let handle = spawn_thread(format!("{name}#{replica}"), body);
                threads.push(Running {
                    name: Arc::clone(&name),
                    replica,
                    handle,
                });
            }
        }
        let queues = handle(&channels);
        let enders = (channels.sources.into_iter().flatten())
            .map(|(_, ender)| ender)
            .collect();
        Pipeline {
            queues,
            threads,
            enders,
            dot,
        }
    }
}

struct Running {
    name: Arc<str>,
    replica: usize,
    handle: JoinHandle<Result<(), String>>,
}

/// A running worker graph, returned by [`Graph::start`] and by `pipeline!`.
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
    enders: Vec<Ender>,
    dot: String,
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
            .field("workers", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl<Q> Pipeline<Q> {
    /// Ends every source, waits for every worker, and returns every failure
    /// (worker, replica, panic message or error).
    pub fn join(mut self) -> Result<(), Error> {
        self.finish()
    }

    /// Graphviz DOT text of the pipeline's graph.
    pub fn dot(&self) -> &str {
        &self.dot
    }

    /// Whether every worker has finished.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.handle.is_finished())
    }

    fn finish(&mut self) -> Result<(), Error> {
        for end in self.enders.drain(..) {
            end();
        }
        let failures = (self.threads.drain(..))
            .filter_map(|t| failure(&t.name, Some(t.replica), &t.handle.join()))
            .collect();
        Error::check(failures)
    }
}

impl<Q> Drop for Pipeline<Q> {
    fn drop(&mut self) {
        let result = self.finish();
        if let Err(error) = result {
            if !thread::panicking() {
                panic!("{error}");
            }
        }
    }
}
