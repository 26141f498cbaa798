//! The runtime worker graph that `pipeline!` expands to, also usable directly
//! for topologies known only at run time: [`Graph`], [`Pipeline`].

use std::any::Any;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub use crate::control::{DEFAULT_WINDOW, Replica};
pub use crate::ends::outbox::OutboxParts;
pub use crate::transport::KeyFn;

use crate::batch::{BlockTarget, FlushList, SharedBlock, WaitingReaders};
use crate::control::{self, Control};
use crate::ends::inbox::Inbox;
use crate::ends::outbox::Outbox;
use crate::ends::sink::Sink;
use crate::ends::source::{Source, SourceControl, SourceEnd};
use crate::ends::{Leftovers, QueueShared};
use crate::error::{Stopped, panic_message};
use crate::pipeline::{Pipeline, Running, ScopedPipeline};
use crate::stats::{QueueCounters, QueueInfo, ReplicaCounters};
use crate::trace;
use crate::transport::{self, Ending, Item, Route, Rx, ThreadEnd, Tx};
use crate::worker::{ThreadHandle, WorkerResult, spawn_scoped, spawn_thread};

/// The capacity of queues between workers and of sources when none is
/// given: large enough that channel hand-offs stay cheap, small enough that
/// a fast stage cannot run far ahead of a slow one. Large messages get
/// fewer slots: see [`DEFAULT_QUEUE_BYTES`].
pub const DEFAULT_CAPACITY: usize = 1024;

/// The most bytes of messages a queue of the default capacity holds: a
/// queue of messages larger than `DEFAULT_QUEUE_BYTES / DEFAULT_CAPACITY`
/// (16 KiB) holds fewer than [`DEFAULT_CAPACITY`] of them, and at least one.
/// The size counted is the message's own (`size_of`), what a queue's slot
/// holds; memory a message owns elsewhere (a `Vec`'s buffer) is not.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// The stack of a worker thread whose messages are small: Rust's default.
const BASE_STACK: usize = 2 * 1024 * 1024;

/// A message larger than this gets its worker a larger stack.
const LARGE_MESSAGE: usize = 4 * 1024;

/// How many copies of its largest message a worker's stack has room for
/// by default, on top of [`BASE_STACK`]: a message moves through a few
/// stack frames on its way into and out of a queue, and an unoptimized
/// build keeps a copy in each (one per transport flavor in the frames that
/// choose one: 64 sufficed with one flavor, not with two).
const MESSAGES_ON_STACK: usize = 96;

/// The fewest blocks a batched queue holds when its capacity is the
/// default. With room for one block only, producer and consumer take turns
/// waiting for each other and every block costs two thread wake-ups: on
/// this project's benchmark machine that made batching 5-10x slower than
/// with room for a few blocks.
pub const DEFAULT_BLOCKS: usize = 4;

/// The most messages in a block of a queue batched by default (a local
/// queue between workers, or from a source to workers, given no `batch`,
/// no route and no capacity of its own): its blocks leave when full, with
/// whatever they hold when a reader runs out of messages (the reader sends
/// them) or as soon as a reader waits with nothing queued (once per
/// block; every time while every reader waits), or when the pipeline's
/// flusher finds a reader waiting for them (it looks every quarter of a
/// millisecond). Fewer if the queue holds few messages: a quarter of them,
/// and no batching below two.
pub const ADAPTIVE_BLOCK: usize = 64;

/// Messages larger than this are not batched by default: a block would
/// copy them once more, and saves little on a hand-off of large messages.
pub const ADAPTIVE_MAX_MESSAGE: usize = 256;

/// The block size of a queue batched by default that holds at most
/// `messages` messages of `size` bytes; `None`: not batched.
fn adaptive_block(messages: Option<usize>, size: usize) -> Option<usize> {
    if size > ADAPTIVE_MAX_MESSAGE {
        return None;
    }
    let block = messages.map_or(ADAPTIVE_BLOCK, |n| (n / DEFAULT_BLOCKS).min(ADAPTIVE_BLOCK));
    (block >= 2).then_some(block)
}

/// What `[redis]` queues and `cluster = ..` need: ezq's `redis` feature.
#[cfg(not(feature = "redis"))]
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "Redis-backed queues need ezq's `redis` feature",
    label = "needs the `redis` feature",
    note = "in Cargo.toml: ezq = {{ version = \"0.1\", features = [\"redis\"] }}"
)]
pub trait NeedsRedisFeature {}

/// The fewest blocks a Redis-backed queue holds when its capacity is the
/// default: a round trip to the server costs more than a channel hand-off,
/// so readers need more in reach to keep busy.
#[cfg(feature = "redis")]
const REDIS_BLOCKS: usize = 16;

/// The message type of a broadcast queue: what can be copied for each
/// replica of its reader (any `Clone + Send` type).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be broadcast: each replica gets its own copy of every message, so it must implement `Clone`",
    label = "this `[broadcast]` queue carries `{Self}`",
    note = "derive or implement `Clone` for `{Self}` (an `Arc` shares one value between the replicas), or route the queue `by` a key"
)]
pub trait BroadcastMessage: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> BroadcastMessage for T {}

/// How many messages a queue may hold before its producers wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// [`DEFAULT_CAPACITY`] for sources and queues between workers (for a
    /// batched queue, at least [`DEFAULT_BLOCKS`] blocks), and no more
    /// than [`DEFAULT_QUEUE_BYTES`] of messages; unbounded for sinks, which
    /// the caller may read at leisure.
    Default,
    /// At most this many messages (0 counts as 1: END must fit).
    Bounded(usize),
    /// No limit.
    Unbounded,
}

impl Capacity {
    /// The most messages a queue holds; `None` if unbounded. `block` is
    /// the block size of a batched queue, `size` the size of a message.
    fn messages(self, sink: bool, block: Option<usize>, size: usize) -> Option<usize> {
        match self {
            Capacity::Default if sink => None,
            Capacity::Default => {
                let count = DEFAULT_CAPACITY.max(DEFAULT_BLOCKS * block.unwrap_or(1));
                let fits = DEFAULT_QUEUE_BYTES / size.max(1);
                Some(count.min(fits.max(block.unwrap_or(1))))
            }
            Capacity::Bounded(n) => Some(n),
            Capacity::Unbounded => None,
        }
    }
}

/// Settings of a worker just added to a [`Graph`]: what
/// [`Graph::add`] returns.
///
/// ```
/// use ezq::{Graph, Inbox, Outbox};
///
/// let mut g = Graph::new();
/// let input = g.queue::<u64>("input");
/// let output = g.queue::<u64>("output");
/// g.add("deep", 1, (input,), (output,), |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
///     for msg in i {
///         o.put_msg(msg);
///     }
/// })
/// .stack_size(8 * 1024 * 1024);
/// let p = g.start(|c| (c.source(input), c.sink(output)));
/// p.0.put(1);
/// p.0.end();
/// assert_eq!(p.1.iter().count(), 1);
/// ```
pub struct WorkerSettings<'a, 'env> {
    worker: &'a mut WorkerNode<'env>,
}

impl fmt::Debug for WorkerSettings<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSettings")
            .field("name", &self.worker.name)
            .field("stack", &self.worker.stack)
            .finish()
    }
}

impl WorkerSettings<'_, '_> {
    /// Sets the stack size of the worker's threads, in bytes, for a worker
    /// that recurses deeply or keeps large values on its stack.
    pub fn stack_size(self, bytes: usize) -> Self {
        self.worker.stack = Some(bytes);
        self
    }
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

/// Both ends of one queue's channel and what its ends share, type-erased
/// in the graph's table.
struct Channel<T> {
    tx: Tx<T>,
    /// The reading end that every replica of its readers shares; for a
    /// routed queue, one per replica of its reader.
    readers: Vec<Reader<T>>,
    counters: Arc<QueueCounters>,
    /// Messages per block of a worker's outbox, for a batched queue.
    block: Option<usize>,
    /// Messages per block of a source (on a Redis-backed queue, a source's
    /// puts are batched and a worker's are not: its session batches them).
    source_block: Option<usize>,
    /// A queue batched by default: its readers say when they wait, and its
    /// outboxes' blocks are shared, for the flusher to send.
    waiting: Option<Arc<WaitingReaders>>,
}

/// One reading end of a queue, and what the inboxes on it share.
struct Reader<T> {
    rx: Rx<T>,
    shared: Arc<QueueShared<T>>,
}

impl<T> Reader<T> {
    fn new(
        rx: Rx<T>,
        counters: &Arc<QueueCounters>,
        waiting: Option<&Arc<WaitingReaders>>,
    ) -> Self {
        let shared = QueueShared::new(Arc::clone(counters), waiting.cloned());
        Reader { rx, shared }
    }
}

impl<T> Channel<T> {
    /// The reading end of `replica`: its own on a routed queue, the shared
    /// one otherwise.
    fn reader(&self, replica: usize) -> &Reader<T> {
        &self.readers[replica % self.readers.len()]
    }
}

impl<T: Send + 'static> Channel<T> {
    /// A source's block, if the queue is batched: it counts its messages
    /// as they leave.
    fn source_block(&self, flusher: &Arc<FlushList>) -> Option<Arc<SharedBlock<T>>> {
        self.source_block.map(|block| {
            let queue = Arc::clone(&self.counters);
            let target = BlockTarget::new(self.tx.clone(), block, queue);
            SharedBlock::new(target.adaptive(self.waiting.clone()), flusher)
        })
    }
}

/// The graph's channels while it starts, indexed like its queues.
pub struct Channels {
    channels: Vec<Box<dyn Any + Send>>,
    sources: Vec<Option<Arc<dyn Any + Send + Sync>>>,
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
            .and_then(|s| s.downcast_ref::<Arc<SourceEnd<T>>>())
            .expect("a pipeline source is a queue that no worker produces");
        Source::new(Arc::clone(shared))
    }

    /// The handle's end of a sink queue (one that no worker consumes).
    pub fn sink<T: Send + 'static>(&self, queue: QueueRef<T>) -> Sink<T> {
        let channel = self.channel(queue);
        Sink::new(channel.reader(0).rx.clone(), Arc::clone(&channel.counters))
    }
}

/// Tuples of [`QueueRef`]s that a worker reads: they open into [`Inbox`]es.
pub trait Inputs {
    /// The tuple of inboxes.
    type Open: Send;
    /// The queues' indices in the graph.
    fn indices(&self) -> Vec<usize>;
    /// The size of the largest message these queues carry.
    fn largest_message(&self) -> usize;
    /// One replica's inboxes.
    fn open(&self, channels: &Channels, replica: &Arc<Replica>) -> Self::Open;
}

/// Tuples of [`QueueRef`]s that a worker writes: they open into [`Outbox`]es.
///
/// An outbox belongs to its worker's thread (it flushes its block when that
/// thread waits), so it opens there, from parts made beforehand.
pub trait Outputs {
    /// The tuple of outboxes.
    type Open;
    /// What the outboxes open from, on the worker's thread.
    type Parts: Send;
    /// The queues' indices in the graph.
    fn indices(&self) -> Vec<usize>;
    /// The size of the largest message these queues carry.
    fn largest_message(&self) -> usize;
    /// One replica's outboxes, to open on its thread.
    fn parts(&self, channels: &Channels, replica: &Arc<Replica>) -> Self::Parts;
    /// Opens the outboxes on the current thread.
    fn open(parts: Self::Parts) -> Self::Open;
}

macro_rules! port_tuples {
    ($(($($t:ident $v:ident),*))*) => {$(
        impl<$($t: Send + 'static),*> Inputs for ($(QueueRef<$t>,)*) {
            type Open = ($(Inbox<$t>,)*);
            fn indices(&self) -> Vec<usize> {
                let ($($v,)*) = self;
                vec![$($v.index),*]
            }
            fn largest_message(&self) -> usize {
                0 $(.max(size_of::<Item<$t>>()))*
            }
            #[allow(unused_variables, clippy::unused_unit)]
            fn open(&self, channels: &Channels, replica: &Arc<Replica>) -> Self::Open {
                let ($($v,)*) = self;
                ($({
                    let r = channels.channel(*$v).reader(replica.counters.replica);
                    Inbox::new(r.rx.clone(), Arc::clone(&r.shared), Arc::clone(replica))
                },)*)
            }
        }
        impl<$($t: Send + 'static),*> Outputs for ($(QueueRef<$t>,)*) {
            type Open = ($(Outbox<$t>,)*);
            type Parts = ($(OutboxParts<$t>,)*);
            fn indices(&self) -> Vec<usize> {
                let ($($v,)*) = self;
                vec![$($v.index),*]
            }
            fn largest_message(&self) -> usize {
                0 $(.max(size_of::<Item<$t>>()))*
            }
            #[allow(unused_variables, clippy::unused_unit)]
            fn parts(&self, channels: &Channels, replica: &Arc<Replica>) -> Self::Parts {
                let ($($v,)*) = self;
                ($({
                    let c = channels.channel(*$v);
                    OutboxParts::new(c.tx.clone(), c.block, c.waiting.clone(), Arc::clone(&c.counters), Arc::clone(replica))
                },)*)
            }
            #[allow(clippy::unused_unit)]
            fn open(parts: Self::Parts) -> Self::Open {
                let ($($v,)*) = parts;
                ($(Outbox::open($v),)*)
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

/// What a queue's channel is made from, at start.
struct ChannelSpec<'a> {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    name: &'a str,
    /// The most messages it holds, if bounded.
    messages: Option<usize>,
    block: Option<usize>,
    /// Batched by default ([`ADAPTIVE_BLOCK`]), no block size given.
    adaptive: bool,
    ending: Ending,
    /// For a routed queue: its typed [`Route`], and the replicas of its
    /// reader, one channel each.
    route: Option<&'a (dyn Any + Send + Sync)>,
    readers: usize,
    #[cfg(feature = "redis")]
    cluster: Option<&'a crate::cluster::Cluster>,
}

type MakeChannel = fn(&ChannelSpec) -> Result<Box<dyn Any + Send>, String>;
type MakeSource =
    fn(&(dyn Any + Send), &Arc<Control>) -> (Arc<dyn Any + Send + Sync>, Arc<dyn SourceControl>);
type MakeEnd = fn(&(dyn Any + Send)) -> Arc<QueueCounters>;
type DeadLetters = fn(&(dyn Any + Send)) -> Option<Arc<AtomicU64>>;
type PrepareRemote = fn(&(dyn Any + Send), Box<dyn Fn() -> bool + Send + Sync>, bool);
type MakeLeftovers = fn(&(dyn Any + Send)) -> Vec<Arc<dyn Leftovers>>;
type Body<'env> = Box<dyn FnOnce() -> Result<(), String> + Send + 'env>;
type OpenReplica<'env> = Box<dyn Fn(&Channels, &Arc<Replica>) -> Body<'env> + 'env>;

struct QueueNode {
    name: String,
    /// Its messages live on the cluster's Redis server.
    redis: bool,
    capacity: Capacity,
    block: Option<usize>,
    /// Batched by default: a local queue given no block size and no route.
    adaptive: bool,
    /// The size of one message.
    size: usize,
    make: MakeChannel,
    make_source: MakeSource,
    counters: MakeEnd,
    leftovers: MakeLeftovers,
    dead_letters: DeadLetters,
    prepare_remote: PrepareRemote,
    /// How a routed queue chooses the replicas of its reader.
    route: Option<RouteNode>,
}

/// The route of a routed queue: its typed [`Route`], and its name in the
/// pictures.
struct RouteNode {
    route: Box<dyn Any + Send + Sync>,
    label: &'static str,
}

struct WorkerNode<'env> {
    name: String,
    replicas: usize,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// The stack size of its threads, if not Rust's default.
    stack: Option<usize>,
    open: OpenReplica<'env>,
}

impl QueueNode {
    /// The most messages the queue holds; `None` if unbounded.
    fn messages(&self, sink: bool) -> Option<usize> {
        match self.capacity {
            #[cfg(feature = "redis")]
            Capacity::Default if self.redis && !sink => {
                Some(DEFAULT_CAPACITY.max(REDIS_BLOCKS * self.block.unwrap_or(1)))
            }
            capacity => capacity.messages(sink, self.block, self.size),
        }
    }
}

impl WorkerNode<'_> {
    /// The worker's name, with its replica count if more than one.
    fn label(&self) -> String {
        match self.replicas {
            1 => self.name.clone(),
            n => format!("{} ×{n}", self.name),
        }
    }
}

fn make_channel<T: Send + 'static>(spec: &ChannelSpec) -> Result<Box<dyn Any + Send>, String> {
    let messages = spec.messages;
    let adaptive = spec.adaptive && spec.route.is_none();
    let block = match adaptive {
        true => adaptive_block(messages, size_of::<Item<T>>()),
        false => spec.block,
    };
    let waiting = (adaptive && block.is_some()).then(WaitingReaders::new);
    // A batched queue holds blocks: its capacity in messages, in blocks.
    let slots = messages.map(|n| (n / block.unwrap_or(1).max(1)).max(1));
    let route = (spec.route).and_then(|r| r.downcast_ref::<Route<T>>());
    let (tx, rxs, counters) = match route {
        None => {
            let (tx, rx) = transport::channel(slots, spec.ending);
            (tx, vec![rx], QueueCounters::new())
        }
        Some(route) => {
            // A keyed block leaves split in one part per replica: a
            // channel holds parts, about `block / readers` messages each,
            // and a part that holds more (keys are skewed) leaves cut in
            // items of at most that many, so that a channel never holds
            // more than `messages`.
            let part = match route {
                Route::Keyed(_) => (block.unwrap_or(1) / spec.readers.max(1)).max(1),
                Route::Broadcast(_) => block.unwrap_or(1).max(1),
            };
            let slots = messages.map(|n| (n / part).max(1));
            let (tx, rxs, routed) =
                transport::routed_channel(route.clone(), spec.readers, slots, part, spec.ending);
            // Accounted per replica's channel.
            let counters = QueueCounters::routed(route.copies(spec.readers), routed);
            (tx, rxs, counters)
        }
    };
    Ok(Box::new(Channel::<T> {
        tx,
        readers: rxs
            .into_iter()
            .map(|rx| Reader::new(rx, &counters, waiting.as_ref()))
            .collect(),
        counters,
        block,
        source_block: block,
        waiting,
    }))
}

/// A Redis-backed queue's channel: its stream, checked for its type.
#[cfg(feature = "redis")]
fn make_redis_channel<T>(spec: &ChannelSpec) -> Result<Box<dyn Any + Send>, String>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    use crate::transport::redis::{Codec, DEFAULT_BLOCK, Stream};
    let cluster = spec
        .cluster
        .expect("a graph with a Redis-backed queue has a cluster");
    let block = spec.block.unwrap_or(DEFAULT_BLOCK);
    let capacity = spec.messages.unwrap_or(usize::MAX);
    let stream = Stream::new(
        &cluster.shared,
        spec.name,
        Codec::<T>::postcard(),
        capacity,
        block,
    );
    stream.prepare()?;
    let (tx, rx) = transport::redis_channel(&stream);
    let counters = QueueCounters::new();
    Ok(Box::new(Channel::<T> {
        tx,
        readers: vec![Reader::new(rx, &counters, None)],
        counters,
        block: None,
        source_block: Some(block),
        waiting: None,
    }))
}

fn channel_of<T: 'static>(channel: &(dyn Any + Send)) -> &Channel<T> {
    channel
        .downcast_ref()
        .expect("a queue's channel has the queue's type")
}

/// A source's shared state, both typed (for the handle) and as an object
/// the pipeline ends and cancels.
fn make_source<T: Send + 'static>(
    channel: &(dyn Any + Send),
    control: &Arc<Control>,
) -> (Arc<dyn Any + Send + Sync>, Arc<dyn SourceControl>) {
    let c = channel_of::<T>(channel);
    let shared = SourceEnd::new(
        c.tx.clone(),
        c.source_block(&control.blocks),
        Arc::clone(&c.counters),
        Arc::clone(control),
    );
    (Arc::new(Arc::clone(&shared)), shared)
}

fn counters_of<T: Send + 'static>(channel: &(dyn Any + Send)) -> Arc<QueueCounters> {
    Arc::clone(&channel_of::<T>(channel).counters)
}

/// For a queue whose messages live outside this process: the count of
/// those it sent to the dead letters.
fn dead_letters_of<T: Send + 'static>(channel: &(dyn Any + Send)) -> Option<Arc<AtomicU64>> {
    channel_of::<T>(channel).tx.dead_letters()
}

/// Readies a remote queue's producer side: it stops waiting for room once
/// `stop` says so, and counts as a producer of the queue at once if
/// `register` (a worker here produces it: its readers wait for its END).
fn prepare_remote_of<T: Send + 'static>(
    channel: &(dyn Any + Send),
    stop: Box<dyn Fn() -> bool + Send + Sync>,
    register: bool,
) {
    let tx = &channel_of::<T>(channel).tx;
    tx.stop_when(stop);
    if register {
        tx.register_producer();
    }
}

fn leftovers_of<T: Send + 'static>(channel: &(dyn Any + Send)) -> Vec<Arc<dyn Leftovers>> {
    let readers = &channel_of::<T>(channel).readers;
    (readers.iter())
        .map(|r| Arc::clone(&r.shared) as Arc<dyn Leftovers>)
        .collect()
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
pub struct Graph<'env> {
    queues: Vec<QueueNode>,
    workers: Vec<WorkerNode<'env>>,
    window: u64,
    #[cfg(feature = "redis")]
    cluster: Option<crate::cluster::Cluster>,
}

impl Default for Graph<'_> {
    fn default() -> Self {
        Graph {
            queues: Vec::new(),
            workers: Vec::new(),
            window: DEFAULT_WINDOW,
            #[cfg(feature = "redis")]
            cluster: None,
        }
    }
}

impl fmt::Debug for Graph<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dot())
    }
}

impl<'env> Graph<'env> {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// Adds a queue with the [default capacity](Capacity::Default).
    ///
    /// Between workers (and from a source to workers), such a queue is
    /// batched adaptively: a producer's messages leave in blocks of up to
    /// [`ADAPTIVE_BLOCK`] while the readers are busy, with whatever they
    /// hold when a reader runs out of messages, and within about a quarter
    /// of a millisecond of a reader starting to wait for them (the
    /// pipeline's flusher sends the block, whatever its producer is doing). A queue with a capacity of
    /// its own ([`Capacity::Bounded`]) holds exactly that many messages and
    /// is not batched; [`batched_queue`](Graph::batched_queue) with a block
    /// of 1 is never batched.
    pub fn queue<T: Send + 'static>(&mut self, name: &str) -> QueueRef<T> {
        self.queue_with(name, Capacity::Default)
    }

    /// Adds a queue with the given capacity.
    pub fn queue_with<T: Send + 'static>(&mut self, name: &str, capacity: Capacity) -> QueueRef<T> {
        self.add_queue(name, capacity, None)
    }

    /// Adds a batched queue: its producers send messages `block` at a
    /// time (a block is sent when full, when its producer waits for input,
    /// and at the end), and its consumers still see them one by one.
    /// Batching divides the cost of a channel hand-off by the block size;
    /// the capacity still counts messages, and the queue holds
    /// `capacity / block` blocks (at least one). Leave room for several
    /// blocks: [`Capacity::Default`] gives at least [`DEFAULT_BLOCKS`].
    /// A `block` of 1 (or 0) turns batching off: each message is sent as
    /// it is put.
    pub fn batched_queue<T: Send + 'static>(
        &mut self,
        name: &str,
        capacity: Capacity,
        block: usize,
    ) -> QueueRef<T> {
        let queue = self.add_queue(name, capacity, (block > 1).then_some(block));
        // A block of one: sent as it is put, not batched at all.
        self.queues[queue.index].adaptive = false;
        queue
    }

    /// Adds a keyed queue: each message goes to one replica of the
    /// queue's reader, the one that the hash of `key(&message)` picks, so
    /// that a stateful reader (a merger of counts, a per-user session, a
    /// deduplicator) can run as several replicas, each seeing every
    /// message of its keys. The same key goes to the same replica for the
    /// queue's life; END reaches every replica.
    ///
    /// The queue needs exactly one reader worker (with any number of
    /// replicas); [`start`](Graph::start) panics otherwise. It is one
    /// channel per replica, each of `capacity` messages. With `block`,
    /// the queue is batched ([`batched_queue`](Graph::batched_queue)): a
    /// block is split by key as it leaves, each replica getting its part
    /// in hand-offs of about `block / replicas` messages (a whole block
    /// of one key leaves in several), so that each replica's channel
    /// holds at most `capacity` messages, however the keys fall; a
    /// producer holds up to `block` more in the block it fills. A replica that fails loses only what was sent to
    /// it: `join` counts it as dropped, and the other replicas go on.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use ezq::graph::Capacity;
    /// use ezq::{Graph, Inbox, Outbox};
    ///
    /// fn word(entry: &(String, u64)) -> &str {
    ///     &entry.0
    /// }
    ///
    /// let mut g = Graph::new();
    /// let words = g.keyed_queue("words", Capacity::Default, Some(64), word);
    /// let totals = g.queue::<(String, u64)>("totals");
    /// g.add("merge", 3, (words,), (totals,), |(i,): (Inbox<(String, u64)>,), (o,): (Outbox<(String, u64)>,)| {
    ///     // Every count of a word comes to this replica: its total is final.
    ///     let mut counts = HashMap::new();
    ///     for msg in i {
    ///         *counts.entry(msg.data.0).or_insert(0) += msg.data.1;
    ///     }
    ///     for entry in counts {
    ///         o.put(entry);
    ///     }
    /// });
    /// let p = g.start(|c| (c.source(words), c.sink(totals)));
    /// for w in ["a", "b", "a", "c", "a"] {
    ///     p.0.put((w.to_owned(), 1));
    /// }
    /// p.0.end();
    /// let mut totals: Vec<_> = p.1.iter().map(|m| m.data).collect();
    /// totals.sort();
    /// assert_eq!(totals, [("a".into(), 3), ("b".into(), 1), ("c".into(), 1)]);
    /// p.join().unwrap();
    /// ```
    pub fn keyed_queue<T, F>(
        &mut self,
        name: &str,
        capacity: Capacity,
        block: Option<usize>,
        key: F,
    ) -> QueueRef<T>
    where
        T: Send + 'static,
        F: for<'a> KeyFn<'a, T>,
    {
        let queue = self.add_queue(name, capacity, block.map(|b| b.max(1)));
        self.route(queue, Route::keyed(key));
        queue
    }

    /// Adds a broadcast queue: every message goes to every replica of the
    /// queue's reader, each replica getting its own copy (`T: Clone`), as
    /// a stream of configuration updates must. END reaches every replica.
    ///
    /// The queue needs exactly one reader worker (with any number of
    /// replicas); [`start`](Graph::start) panics otherwise. It is one
    /// channel per replica, each of `capacity` messages, and a `put`
    /// waits for room in every one of them. With `block`, the queue is
    /// batched, every replica getting a copy of each block.
    ///
    /// Its account counts copies: a message put into a queue read by `R`
    /// replicas counts `R` in [`QueueStats::put`](crate::stats::QueueStats::put),
    /// and each copy is taken, discarded or dropped on its own (a copy for
    /// a replica that failed is dropped, and `join` says so).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ezq::graph::Capacity;
    /// use ezq::{Graph, Inbox, Outbox};
    ///
    /// let mut g = Graph::new();
    /// let config = g.broadcast_queue::<Arc<str>>("config", Capacity::Default, None);
    /// let seen = g.queue::<usize>("seen");
    /// g.add("serve", 4, (config,), (seen,), |(i,): (Inbox<Arc<str>>,), (o,): (Outbox<usize>,)| {
    ///     o.put(i.count());
    /// });
    /// let p = g.start(|c| (c.source(config), c.sink(seen)));
    /// p.0.put(Arc::from("verbose = true"));
    /// p.0.put(Arc::from("verbose = false"));
    /// p.0.end();
    /// // Each of the 4 replicas saw both updates.
    /// assert_eq!(p.1.iter().map(|m| m.data).collect::<Vec<_>>(), [2, 2, 2, 2]);
    /// let monitor = p.monitor();
    /// p.join().unwrap();
    /// assert_eq!(monitor.stats().queues[0].put, 8);
    /// ```
    pub fn broadcast_queue<T>(
        &mut self,
        name: &str,
        capacity: Capacity,
        block: Option<usize>,
    ) -> QueueRef<T>
    where
        T: Clone + Send + 'static,
    {
        let queue = self.add_queue(name, capacity, block.map(|b| b.max(1)));
        self.route(queue, Route::broadcast());
        queue
    }

    /// Routes a queue already added by a key of its messages, as
    /// [`keyed_queue`](Graph::keyed_queue) does. (`pipeline!` routes a
    /// queue once its workers are added, so that the queue's type is known
    /// from them when the key function is checked.) A Redis-backed queue
    /// cannot be routed yet: [`start`](Graph::start) refuses it.
    pub fn route_by_key<T, F>(&mut self, queue: QueueRef<T>, key: F)
    where
        T: Send + 'static,
        F: for<'a> KeyFn<'a, T>,
    {
        self.route(queue, Route::keyed(key));
    }

    /// Routes a queue already added to every replica of its reader, as
    /// [`broadcast_queue`](Graph::broadcast_queue) does. A Redis-backed
    /// queue cannot be routed yet: [`start`](Graph::start) refuses it.
    pub fn route_to_all<T: BroadcastMessage>(&mut self, queue: QueueRef<T>) {
        self.route(queue, Route::broadcast());
    }

    /// Routes a queue between the replicas of its reader.
    pub(crate) fn route<T: Send + 'static>(&mut self, queue: QueueRef<T>, route: Route<T>) {
        self.queues[queue.index].adaptive = false;
        self.queues[queue.index].route = Some(RouteNode {
            label: route.label(),
            route: Box::new(route),
        });
    }

    /// Sets the reorder window ([`DEFAULT_WINDOW`] unless set): while a
    /// [`sortiter`](crate::sortiter) inside the pipeline waits for order
    /// `k`, the pipeline's sources wait before putting a message of order
    /// `k + window` or more. This bounds the reorder buffer, and with it
    /// the memory, whatever the input length. If the buffer stops moving
    /// for 50 ms (the orders have gaps it waits for), the sources stop
    /// waiting for good, so a gap can slow a pipeline but never hang it.
    pub fn window(&mut self, window: u64) -> &mut Self {
        self.window = window.max(1);
        self
    }

    /// Adds a queue on the Redis server of the graph's
    /// [cluster](Graph::cluster) (feature `redis`): a queue that processes
    /// on several machines share, so that the graph can run as several
    /// processes, each running its part. Its messages travel encoded with
    /// serde (postcard), with their kind and order; its producers put, and
    /// its readers take, `block` messages at a time (`None`: 256). Its
    /// capacity counts the entries on the server not yet acknowledged:
    /// [`Capacity::Default`] gives room for 16 blocks (4,096 messages in
    /// blocks of 256), and none for a sink, as for a local queue.
    ///
    /// What is guaranteed across processes is described in
    /// [`ezq::cluster`](crate::cluster).
    #[cfg(feature = "redis")]
    pub fn redis_queue<T: crate::cluster::Message>(
        &mut self,
        name: &str,
        capacity: Capacity,
        block: Option<usize>,
    ) -> QueueRef<T> {
        let block = block
            .unwrap_or(crate::transport::redis::DEFAULT_BLOCK)
            .max(1);
        let capacity = match capacity {
            Capacity::Default => Capacity::Bounded(DEFAULT_CAPACITY.max(REDIS_BLOCKS * block)),
            other => other,
        };
        let queue = self.add_queue::<T>(name, capacity, Some(block));
        let node = self.queues.last_mut().expect("just added");
        node.redis = true;
        node.adaptive = false;
        node.make = make_redis_channel::<T>;
        queue
    }

    /// Sets where the graph's Redis-backed queues live and which of its
    /// workers run in this process (feature `redis`). A graph with a
    /// Redis-backed queue and no cluster takes it from the environment
    /// when it starts ([`Cluster::from_env`](crate::cluster::Cluster::from_env),
    /// the job named after the program).
    #[cfg(feature = "redis")]
    pub fn cluster(&mut self, cluster: crate::cluster::Cluster) -> &mut Self {
        self.cluster = Some(cluster);
        self
    }

    /// Without the `redis` feature: a compile error that says to enable it.
    #[cfg(not(feature = "redis"))]
    #[doc(hidden)]
    pub fn redis_queue<T: NeedsRedisFeature>(
        &mut self,
        _name: &str,
        _capacity: Capacity,
        _block: Option<usize>,
    ) -> QueueRef<T> {
        unreachable!("no type implements NeedsRedisFeature")
    }

    /// Without the `redis` feature: a compile error that says to enable it.
    #[cfg(not(feature = "redis"))]
    #[doc(hidden)]
    pub fn cluster<C: NeedsRedisFeature>(&mut self, _cluster: C) -> &mut Self {
        self
    }

    fn add_queue<T: Send + 'static>(
        &mut self,
        name: &str,
        capacity: Capacity,
        block: Option<usize>,
    ) -> QueueRef<T> {
        self.queues.push(QueueNode {
            name: name.to_owned(),
            redis: false,
            capacity,
            block,
            // A capacity given in messages is kept to the message.
            adaptive: block.is_none() && !matches!(capacity, Capacity::Bounded(_)),
            size: size_of::<Item<T>>(),
            make: make_channel::<T>,
            make_source: make_source::<T>,
            counters: counters_of::<T>,
            leftovers: leftovers_of::<T>,
            dead_letters: dead_letters_of::<T>,
            prepare_remote: prepare_remote_of::<T>,
            route: None,
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
    /// Its threads get Rust's default stack (2 MiB), plus room for 96
    /// copies of its largest message when its messages are large (over
    /// 4 KiB), so that a large message cannot overflow the stack on its way
    /// through a queue; [`WorkerSettings::stack_size`] sets it.
    ///
    /// # Panics
    /// If `replicas` is 0: such a worker would never read its inputs.
    pub fn add<I, O, R>(
        &mut self,
        name: &str,
        replicas: usize,
        inputs: I,
        outputs: O,
        f: impl Fn(I::Open, O::Open) -> R + Send + Sync + 'env,
    ) -> WorkerSettings<'_, 'env>
    where
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
        let largest = inputs.largest_message().max(outputs.largest_message());
        let stack = (largest > LARGE_MESSAGE).then(|| BASE_STACK + MESSAGES_ON_STACK * largest);
        self.workers.push(WorkerNode {
            name: name.to_owned(),
            replicas,
            inputs: ins,
            outputs: outs,
            stack,
            open: Box::new(move |channels, replica| {
                let (i, o) = (
                    inputs.open(channels, replica),
                    outputs.parts(channels, replica),
                );
                let f = Arc::clone(&f);
                Box::new(move || f(i, O::open(o)).into_result())
            }),
        });
        let worker = self.workers.last_mut().expect("just added");
        WorkerSettings { worker }
    }

    /// Graphviz DOT text of the graph: workers as ellipses (with their
    /// replica counts), queues as boxes, and the edge from a routed queue
    /// to its reader labelled with its route (`by key`, `broadcast`).
    pub fn dot(&self) -> String {
        let mut dot = String::from("digraph pipeline {\n    rankdir=LR;\n");
        for (i, q) in self.queues.iter().enumerate() {
            let _ = writeln!(dot, "    q{i} [label=\"{}\", shape=box];", q.name);
        }
        for (i, w) in self.workers.iter().enumerate() {
            let _ = writeln!(dot, "    w{i} [label=\"{}\"];", w.label());
            for &q in &w.inputs {
                match &self.queues[q].route {
                    Some(r) => writeln!(dot, "    q{q} -> w{i} [label=\"{}\"];", r.label),
                    None => writeln!(dot, "    q{q} -> w{i};"),
                }
                .ok();
            }
            for q in &w.outputs {
                let _ = writeln!(dot, "    w{i} -> q{q};");
            }
        }
        dot.push_str("}\n");
        dot
    }

    /// Mermaid text of the graph (a `flowchart`), for a README or a doc
    /// page that draws it: workers as rounded boxes, queues as boxes, and
    /// the edge from a routed queue to its reader labelled with its route.
    pub fn mermaid(&self) -> String {
        let mut text = String::from("flowchart LR\n");
        for (i, q) in self.queues.iter().enumerate() {
            let _ = writeln!(text, "    q{i}[\"{}\"]", q.name);
        }
        for (i, w) in self.workers.iter().enumerate() {
            let _ = writeln!(text, "    w{i}([\"{}\"])", w.label());
            for &q in &w.inputs {
                match &self.queues[q].route {
                    Some(r) => writeln!(text, "    q{q} -- \"{}\" --> w{i}", r.label),
                    None => writeln!(text, "    q{q} --> w{i}"),
                }
                .ok();
            }
            for q in &w.outputs {
                let _ = writeln!(text, "    w{i} --> q{q}");
            }
        }
        text
    }

    /// Starts the graph's workers on threads of `scope` and returns the
    /// running pipeline: its workers may borrow what outlives the scope
    /// (extra arguments such as `&HashMap<K, V>`, `&AtomicU64`, a slice),
    /// and the scope joins every one of them before it returns. Otherwise
    /// as [`start`](Graph::start).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use ezq::{Graph, Inbox, Outbox};
    ///
    /// let table: HashMap<&str, u32> = HashMap::from([("one", 1), ("two", 2)]);
    /// let found: u32 = std::thread::scope(|s| {
    ///     let mut g = Graph::new();
    ///     let (names, ids) = (g.queue::<&'static str>("names"), g.queue::<u32>("ids"));
    ///     let table = &table;
    ///     g.add("lookup", 2, (names,), (ids,), move |(i,): (Inbox<&str>,), (o,): (Outbox<u32>,)| {
    ///         for msg in i {
    ///             o.put(table[msg.data]);
    ///         }
    ///     });
    ///     let p = g.start_in(s, |c| (c.source(names), c.sink(ids)));
    ///     p.0.feed(["one", "two", "two"]);
    ///     let found = p.1.iter().map(|m| m.data).sum();
    ///     p.join().unwrap();
    ///     found
    /// });
    /// assert_eq!(found, 5);
    /// ```
    ///
    /// # Panics
    /// As [`start`](Graph::start).
    pub fn start_in<'scope, Q>(
        self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        handle: impl FnOnce(&Channels) -> Q,
    ) -> ScopedPipeline<'scope, Q>
    where
        'env: 'scope,
    {
        ScopedPipeline::new(self.start_with(
            |name, stack, body| spawn_scoped(scope, name, stack, body),
            handle,
        ))
    }

    /// What [`start`](Graph::start) and [`start_in`](Graph::start_in) share:
    /// starts every worker with `spawn`.
    fn start_with<Q>(
        mut self,
        mut spawn: impl FnMut(String, Option<usize>, Body<'env>) -> ThreadHandle,
        handle: impl FnOnce(&Channels) -> Q,
    ) -> Pipeline<Q> {
        let diagrams = [self.dot(), self.mermaid()];
        let control = Control::new(self.window);
        let mut readers = vec![Vec::new(); self.queues.len()];
        let mut produced = vec![false; self.queues.len()];
        for w in &self.workers {
            for &q in &w.inputs {
                if !readers[q].contains(&w.name) {
                    readers[q].push(w.name.clone());
                }
            }
            for &q in &w.outputs {
                produced[q] = true;
            }
        }
        let replicas = self.check_routes();
        let here = self.placement();
        let channels: Vec<_> = (self.queues.iter().enumerate())
            .map(|(i, q)| {
                // A queue no worker produces is a source: its caller ends it.
                let ending = match produced[i] {
                    true => Ending::ProducersGone,
                    false => Ending::Explicit,
                };
                let spec = ChannelSpec {
                    name: &q.name,
                    messages: q.messages(readers[i].is_empty()),
                    block: q.block,
                    // A sink's reader is the caller, whose `len` and
                    // `try_recv` see messages one by one.
                    adaptive: q.adaptive && !readers[i].is_empty(),
                    ending,
                    route: q.route.as_ref().map(|r| &*r.route),
                    readers: replicas[i],
                    #[cfg(feature = "redis")]
                    cluster: self.cluster.as_ref(),
                };
                (q.make)(&spec).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        // A Redis-backed queue's readers wait for the END of every process
        // that produces it here: it registers before any reader can look.
        // Its producers stop waiting for room when the pipeline is cancelled
        // (its readers, elsewhere, are not).
        for (i, q) in self.queues.iter().enumerate().filter(|(_, q)| q.redis) {
            let local_producer =
                (self.workers.iter()).any(|w| here(&w.name) && w.outputs.contains(&i));
            let control = Arc::clone(&control);
            let stop = Box::new(move || control.is_cancelled());
            (q.prepare_remote)(channels[i].as_ref(), stop, local_producer);
        }
        let mut source_controls = Vec::new();
        let sources = (self.queues.iter().enumerate())
            .map(|(i, q)| {
                (!produced[i]).then(|| {
                    let (typed, control_end) = (q.make_source)(channels[i].as_ref(), &control);
                    source_controls.push(control_end);
                    typed
                })
            })
            .collect();
        // A queue's last reader may leave messages aside as it unwinds:
        // the pipeline drops them, named by the queue's first reader.
        let leftovers = (self.queues.iter().zip(&readers).enumerate())
            .filter_map(|(i, (q, names))| Some((names.first()?, q, i)))
            .flat_map(|(reader, q, i)| {
                let ends = (q.leftovers)(channels[i].as_ref());
                ends.into_iter().map(|end| (reader.clone(), end))
            })
            .collect();
        let queue_ends = (self.queues.iter().zip(readers).enumerate())
            .map(|(i, (q, readers))| QueueInfo {
                name: q.name.clone(),
                // A routed queue has a channel of that capacity per replica.
                capacity: q.messages(readers.is_empty()).map(|n| n * replicas[i]),
                readers,
                counters: (q.counters)(channels[i].as_ref()),
                remote: (q.dead_letters)(channels[i].as_ref()),
            })
            .collect();
        let channels = Channels { channels, sources };
        // The caller's ends first: if picking them panics, no thread has
        // started yet to wait for an END that would never come.
        let queues = handle(&channels);
        let mut threads = Vec::new();
        let workers = std::mem::take(&mut self.workers);
        let spawned = panic::catch_unwind(AssertUnwindSafe(|| {
            for w in workers.iter().filter(|w| here(&w.name)) {
                let name: Arc<str> = Arc::from(w.name.as_str());
                for replica in 0..w.replicas {
                    let counters = Arc::new(ReplicaCounters::new(Arc::clone(&name), replica));
                    let ctx = Arc::new(Replica {
                        control: Arc::clone(&control),
                        counters: Arc::clone(&counters),
                    });
                    let body = (w.open)(&channels, &ctx);
                    let thread_control = Arc::clone(&control);
                    let cancel = Arc::clone(&control);
                    let finished = Arc::clone(&counters);
                    let thread_body: Body<'env> = Box::new(move || {
                        let _finished = Finished(finished);
                        transport::worker_thread();
                        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                            control::enter(thread_control, || trace::replica(&ctx.counters, body))
                        }));
                        let failure = match &outcome {
                            Err(payload) if !payload.is::<Stopped>() => {
                                Some(panic_message(payload.as_ref()))
                            }
                            Ok(Err(error)) => Some(error.clone()),
                            _ => None,
                        };
                        transport::thread_done(match (&outcome, &failure) {
                            (_, Some(error)) => ThreadEnd::Failed(error),
                            (Err(_), None) => ThreadEnd::Stopped,
                            _ if cancel.is_cancelled() => ThreadEnd::Stopped,
                            _ => ThreadEnd::Returned,
                        });
                        outcome.unwrap_or_else(|payload| panic::resume_unwind(payload))
                    });
                    let handle = spawn(format!("{name}#{replica}"), w.stack, thread_body);
                    threads.push(Running { counters, handle });
                }
            }
        }));
        let pipeline = Pipeline::new(
            queues,
            threads,
            source_controls,
            queue_ends,
            leftovers,
            control,
            diagrams,
        );
        if let Err(payload) = spawned {
            // A thread could not start: stop those that did (in a scope,
            // the scope would wait for them) before the panic goes on.
            pipeline.cancel();
            let _ = pipeline.join();
            panic::resume_unwind(payload);
        }
        pipeline
    }

    /// Checks that every routed queue has one reader worker; returns how
    /// many replicas read each queue through a channel of its own (its
    /// reader's replicas for a routed queue, 1 for any other).
    ///
    /// # Panics
    /// If a routed queue has no reader worker, or several, or is
    /// Redis-backed.
    fn check_routes(&self) -> Vec<usize> {
        let mut problems = Vec::new();
        let replicas = (self.queues.iter().enumerate())
            .map(|(i, q)| {
                let Some(route) = &q.route else {
                    return 1;
                };
                if q.redis {
                    problems.push(format!(
                        "ezq: the queue `{}` is routed {} but Redis-backed: routing is not supported on Redis-backed queues yet",
                        q.name, route.label
                    ));
                    return 1;
                }
                let readers: Vec<&WorkerNode> =
                    self.workers.iter().filter(|w| w.inputs.contains(&i)).collect();
                match readers.as_slice() {
                    [reader] => reader.replicas,
                    [] => {
                        problems.push(format!(
                            "ezq: the queue `{}` is routed {} but no worker reads it: a route chooses among the replicas of the queue's one reader worker, and a sink has none",
                            q.name, route.label
                        ));
                        1
                    }
                    [..] => {
                        let names: Vec<String> =
                            readers.iter().map(|w| format!("`{}`", w.name)).collect();
                        problems.push(format!(
                            "ezq: the queue `{}` is routed {} but {} workers read it ({}): a routed queue needs exactly one reader worker, with as many replicas as it likes",
                            q.name,
                            route.label,
                            readers.len(),
                            names.join(", ")
                        ));
                        1
                    }
                }
            })
            .collect();
        if !problems.is_empty() {
            panic!("{}", problems.join("\n"));
        }
        replicas
    }

    /// Which workers run in this process: all of them, unless the graph's
    /// cluster says otherwise. Connects the cluster from the environment
    /// if the graph needs one and has none, and checks that every queue
    /// between a worker here and one elsewhere is Redis-backed.
    #[cfg(feature = "redis")]
    fn placement(&mut self) -> impl Fn(&str) -> bool + use<> {
        if self.cluster.is_none() && self.queues.iter().any(|q| q.redis) {
            let program = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "ezq".to_owned());
            let cluster =
                crate::cluster::Cluster::from_env(&program).unwrap_or_else(|e| panic!("{e}"));
            self.cluster = Some(cluster);
        }
        let cluster = self.cluster.clone();
        let here = move |name: &str| cluster.as_ref().is_none_or(|c| c.runs_here(name));
        let mut problems = Vec::new();
        for (i, q) in self.queues.iter().enumerate().filter(|(_, q)| !q.redis) {
            let touching: Vec<&WorkerNode> = (self.workers.iter())
                .filter(|w| w.inputs.contains(&i) || w.outputs.contains(&i))
                .collect();
            let is_end = !self.workers.iter().any(|w| w.outputs.contains(&i))
                || !self.workers.iter().any(|w| w.inputs.contains(&i));
            let (near, far): (Vec<&WorkerNode>, Vec<&WorkerNode>) =
                touching.into_iter().partition(|w| here(&w.name));
            if let Some(far) = far.first() {
                let near = match (near.first(), is_end) {
                    (Some(w), _) => format!("`{}`, which runs here,", w.name),
                    (None, true) => "this process (its caller)".to_owned(),
                    (None, false) => continue,
                };
                problems.push(format!(
                    "ezq: the local queue `{}` joins {near} and `{}`, which runs elsewhere: mark it `{}[redis]` (or `Graph::redis_queue`)",
                    q.name, far.name, q.name
                ));
            }
        }
        if !problems.is_empty() {
            panic!("{}", problems.join("\n"));
        }
        here
    }

    #[cfg(not(feature = "redis"))]
    fn placement(&mut self) -> impl Fn(&str) -> bool + use<> {
        |_| true
    }
}

impl Graph<'static> {
    /// Starts every worker and returns the running pipeline. `handle` picks
    /// the caller's ends out of the graph's queues ([`Channels::source`],
    /// [`Channels::sink`]); the [`Pipeline`] derefs to what it returns.
    ///
    /// Once this returns, the graph holds no queue ends of its own, so a
    /// queue ends as soon as every one of its producers is done.
    ///
    /// Workers that borrow from the caller's stack start with
    /// [`start_in`](Graph::start_in), in a scope.
    ///
    /// # Panics
    /// If a routed queue ([`keyed_queue`](Graph::keyed_queue),
    /// [`broadcast_queue`](Graph::broadcast_queue)) has no reader worker or
    /// several, or is Redis-backed. If the graph has Redis-backed queues
    /// and its cluster cannot be reached, a queue on the server carries
    /// another message type, or a local queue joins a worker that runs
    /// here to one that runs elsewhere (see `Graph::cluster`, feature
    /// `redis`).
    pub fn start<Q>(self, handle: impl FnOnce(&Channels) -> Q) -> Pipeline<Q> {
        self.start_with(
            |name, stack, body| ThreadHandle::Own(spawn_thread(name, stack, body)),
            handle,
        )
    }
}

/// Records when a worker replica ends, however it ends.
struct Finished(Arc<ReplicaCounters>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finish();
    }
}
