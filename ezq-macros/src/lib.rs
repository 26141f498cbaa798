//! Procedural macros of ezq: `#[worker]` and `pipeline!`. Use them through
//! the `ezq` crate (`ezq::worker`, `ezq::pipeline`); this crate is an
//! implementation detail and always comes in the same release as `ezq`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod errors;
mod pipeline;
mod worker;

use proc_macro::TokenStream;

/// Declares a function as a worker that [`pipeline!`] can run.
///
/// The function stays an ordinary function (call it directly in tests);
/// beside it, `#[worker]` declares a hidden type of the same name that
/// tells `pipeline!` the worker's queues and arguments.
///
/// # Forms
///
/// **A loop worker** takes its queues and loops by itself. Parameters
/// written `Inbox<T>` read a queue of `T`; `Outbox<T>` write one. Their
/// order among themselves is the order of the queues in the pipeline's
/// slots. Every other parameter is an *extra argument*, given in the
/// pipeline as `worker(arg, ..)` and cloned for each replica.
///
/// ```
/// use ezq::{worker, Inbox, Outbox};
///
/// #[worker]
/// fn scale(inbox: Inbox<f64>, outbox: Outbox<f64>, factor: f64) {
///     for msg in inbox {
///         outbox.put(msg.data * factor);
///     }
/// }
/// ```
///
/// A worker with no `Inbox` is a source (`() -> numbers -> q`); one with no
/// `Outbox` is a sink (`q -> printer`).
///
/// **A worker may fail by returning `Result<(), E>`** (`E: Display`): an
/// `Err` ends that replica and is reported by the pipeline's `join`, like a
/// panic.
///
/// ```
/// use ezq::{worker, Inbox};
///
/// #[worker]
/// fn check(inbox: Inbox<u64>) -> Result<(), String> {
///     for msg in inbox {
///         if msg.data > 100 {
///             return Err(format!("{} is too large", msg.data));
///         }
///     }
///     Ok(())
/// }
/// ```
///
/// **A map worker** takes no queues: `fn(T, args..) -> U`. Placed as
/// `a -> square -> b`, it is called once per message of `a`, and its result
/// goes to `b` with the message's `kind` and `order`. If it returns
/// `Result<U, E>`, `Ok` values are sent and the first `Err` is reported as
/// the worker's failure.
///
/// ```
/// use ezq::worker;
///
/// #[worker]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// #[worker]
/// fn parse(text: String) -> Result<u64, std::num::ParseIntError> {
///     text.parse()
/// }
/// ```
///
/// # Equivalent code
///
/// `#[worker] fn scale(inbox: Inbox<f64>, outbox: Outbox<f64>, factor: f64)`
/// adds, beside the function, what `pipeline!` needs to run it: the
/// equivalent of
///
/// ```
/// # use ezq::{Graph, Inbox, Outbox};
/// # fn scale(inbox: Inbox<f64>, outbox: Outbox<f64>, factor: f64) {}
/// # let mut graph = Graph::new();
/// # let (input, output) = (graph.queue::<f64>("in"), graph.queue::<f64>("out"));
/// # let (replicas, factor) = (2, 2.5);
/// graph.add("scale", replicas, (input,), (output,), move |(inbox,), (outbox,)| {
///     scale(inbox, outbox, factor)
/// });
/// ```
///
/// # Errors
///
/// `#[worker]` takes no arguments, and rejects what cannot run as a worker
/// thread: an `async fn`, an `unsafe fn`, a method (`self`), a generic
/// function, an `impl Trait` parameter, and a function with neither queues
/// nor a return value.
///
/// An extra argument may borrow (`table: &HashMap<K, V>`, `seen:
/// &AtomicU64`, `items: &[T]`): such a worker runs in a scoped pipeline
/// (`pipeline! { scope = s; .. }` inside `std::thread::scope`), which joins
/// its threads before the borrowed data goes away. Used in a pipeline
/// outside a scope, it is a compile error on its arguments that says so
/// (share the data through an `Arc` there; `&'static` is fine anywhere). A queue must be spelled `Inbox<T>` / `Outbox<T>`
/// (any path ending so), not through a type alias.
#[proc_macro_attribute]
pub fn worker(args: TokenStream, item: TokenStream) -> TokenStream {
    worker::worker(args.into(), item.into()).into()
}

/// Declares a worker graph, starts it, and returns its handle.
///
/// ```
/// use ezq::{pipeline, worker, Inbox, Msg, Outbox};
///
/// #[worker]
/// fn collatz(read_q: Inbox<u64>, write_q: Outbox<(u64, u64)>) {
///     for msg in read_q {
///         let n = msg.data;
///         let next = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
///         write_q.put_msg(Msg::new((n, next)).order(msg.order));
///     }
/// }
///
/// #[worker]
/// fn printer(write_q: Inbox<(u64, u64)>) {
///     for msg in ezq::sortiter(write_q) {
///         println!("{:?}", msg.data);
///     }
/// }
///
/// let p = pipeline! {
///     read_q -> collatz * 2 -> write_q -> printer;
/// };
/// for i in 0..40u64 {
///     p.read_q.put_msg(Msg::new(i).order(i));
/// }
/// p.join().unwrap();
/// ```
///
/// # Grammar
///
/// ```text
/// pipeline := ( "cluster" "=" EXPR ";" | "scope" "=" EXPR ";" )* chain+
/// chain    := slot ( "->" worker "->" slot )* [ "->" worker ] ";"
/// slot     := queue | "(" queue ( "," queue )* ")" | "()"
/// queue    := NAME [ "[" option ( "," option )* "]" ]
/// option   := EXPR | "unbounded" | "batch" EXPR | "by" EXPR | "broadcast" | "redis"
/// worker   := PATH [ "(" EXPR ( "," EXPR )* ")" ] [ "[" "stack" EXPR "]" ] [ "*" EXPR ]
/// ```
///
/// - A chain alternates queue slots and workers, and begins with a slot:
///   `()` for a source worker, which reads no queue. A chain may end on a
///   worker that writes no queue (a sink worker).
/// - A slot lists a worker's input (before it) or output (after it) queues,
///   in the order of the worker's `Inbox` / `Outbox` parameters.
/// - Queues are shared by name across chains, so any acyclic graph can be
///   written: fan-out (a worker with several outputs), fan-in (several
///   producers of one queue), and several workers consuming one queue
///   (they share its messages).
/// - `worker(args..)` passes extra arguments, cloned for each replica.
/// - `worker * EXPR` runs EXPR replicas (a `usize`, evaluated once, when
///   the pipeline is built; 0 panics there). The expression ends at the next
///   `->` or `;`.
/// - `worker[stack BYTES]` (before `* EXPR`) sets the stack size of the
///   worker's threads (a `usize`). Without it a worker gets Rust's default,
///   grown by itself for messages over 4 KiB.
/// - Without options, a queue that workers read is batched adaptively
///   (see [`Graph::queue`](../ezq/struct.Graph.html#method.queue)): blocks
///   grow while its readers are busy, leave with what they hold when a
///   reader runs out of messages, and never keep a waiting reader waiting
///   more than about a quarter of a millisecond.
/// - `queue[batch N]` moves the queue's messages N at a time (see
///   [`Graph::batched_queue`](../ezq/struct.Graph.html#method.batched_queue));
///   it combines with a capacity: `queue[4096, batch 256]`. `batch 1`
///   turns batching off.
/// - `queue[by KEY]` routes the queue by key: each message goes to one
///   replica of the queue's reader, the one that the hash of
///   `KEY(&message)` picks, so a stateful reader (a merger of counts, a
///   per-user session, a deduplicator) can run as `reader * N`, each
///   replica seeing every message of its keys; the same key goes to the
///   same replica for the queue's life. KEY is a function or a closure
///   `fn(&T) -> K` with `K: Hash`, and the key may borrow from the message
///   (`fn word(e: &(String, u64)) -> &str`); a closure names its
///   parameter's type (`|e: &Event| e.user`). See
///   [`Graph::keyed_queue`](../ezq/struct.Graph.html#method.keyed_queue).
/// - `queue[broadcast]` sends every message to every replica of the queue's
///   reader, each its own copy (the message type must be `Clone`): a stream
///   of configuration updates. Its statistics count copies: a message put
///   counts once per replica. See
///   [`Graph::broadcast_queue`](../ezq/struct.Graph.html#method.broadcast_queue).
/// - A routed queue (`by` or `broadcast`) needs exactly one reader worker,
///   with any number of replicas; END reaches every replica. It combines
///   with a capacity (each replica's channel holds that many messages) and
///   with `batch N` (a keyed block is split by key as it leaves):
///   `words[by word, batch 256]`. A replica that fails loses only what was
///   routed to it, which `join` counts as dropped; the others go on.
/// - `queue[redis]` (feature `redis`) keeps the queue on a Redis server, so
///   that processes on several machines share it: the same pipeline then
///   runs as several processes, each running the workers its cluster names
///   (see [`ezq::cluster`](../ezq/cluster/index.html)). Its message type must be
///   serde-serializable. It combines with a capacity and a block size:
///   `queue[redis, 4096, batch 512]` (256 messages at a time unless given).
/// - `scope = EXPR;`, first in the pipeline, starts its workers on threads
///   of a `std::thread::Scope` (EXPR is the `&Scope`): they may then borrow
///   from the caller's stack (`lookup(&table)`), the pipeline is an
///   `ezq::ScopedPipeline` that cannot leave the scope, and everything is
///   joined before the scope returns, with the same failure reporting.
///
///   ```
///   use std::collections::HashMap;
///   use ezq::{pipeline, worker, Inbox, Outbox};
///
///   #[worker]
///   fn lookup(names: Inbox<String>, ids: Outbox<u32>, table: &HashMap<String, u32>) {
///       for msg in names {
///           ids.put(table[&msg.data]);
///       }
///   }
///
///   let table = HashMap::from([("one".to_string(), 1), ("two".to_string(), 2)]);
///   let total: u32 = std::thread::scope(|s| {
///       let p = pipeline! { scope = s; names -> lookup(&table) * 2 -> ids; };
///       p.names.feed(["one", "two", "two"].map(String::from));
///       let total = p.ids.iter().map(|m| m.data).sum();
///       p.join().unwrap();
///       total
///   });
///   assert_eq!(total, 5);
///   ```
/// - `cluster = EXPR;`, first in the pipeline, names the
///   `ezq::cluster::Cluster` of its Redis-backed queues; without it, they
///   connect as the environment says (`EZQ_REDIS_URL`, `EZQ_JOB`,
///   `EZQ_WORKERS`).
/// - `queue[N]` bounds the queue at N messages; `queue[unbounded]` lifts
///   the bound. Without one, sources and queues between workers hold
///   [`DEFAULT_CAPACITY`](../ezq/graph/constant.DEFAULT_CAPACITY.html)
///   messages, and at most
///   [`DEFAULT_QUEUE_BYTES`](../ezq/graph/constant.DEFAULT_QUEUE_BYTES.html)
///   of them: a fast stage waits for a slow one instead of filling memory.
///   Sinks are always unbounded, so the pipeline never waits for its
///   caller.
///
/// # The handle
///
/// `pipeline!` returns an [`ezq::Pipeline`](../ezq/struct.Pipeline.html)
/// that derefs to one field per end of the graph:
///
/// - a **source** (a queue no worker produces) is an `ezq::Source<T>`:
///   `put`, `put_msg`, `end`;
/// - a **sink** (a queue no worker consumes) is an `ezq::Sink<T>`: `iter`,
///   `recv`, which end once every producer of the queue has finished.
///
/// `join()` ends every source, waits for every worker and returns every
/// failure (worker, replica, panic message or error) and every message
/// lost (queue, count, reason): `Ok(())` means every message a queue
/// accepted was taken, handed to the caller, or discarded on purpose.
/// Dropping the handle does the same and panics with the failures and
/// losses, as `std::thread::scope` does, unless the thread is already
/// panicking.
///
/// # Semantics
///
/// - END propagates by itself: a queue ends when every producer of it is
///   done (each replica returned or failed; for a source, `end` or the
///   handle's `join`/drop).
/// - A panicking worker ends its outputs like a returning one. A worker
///   whose every consumer is gone stops at its next `put`, quietly: the
///   failure reported is the root cause, not the cascade, and what it
///   could not deliver or left unread is counted as dropped.
/// - A worker reading two inboxes one after the other can deadlock once the
///   second one's producer waits on a full queue; read them together with
///   [`Inbox::merge`](../ezq/struct.Inbox.html#method.merge).
///
/// # Compile-time checks
///
/// Each mistake is one error, on the user's token, that says what to
/// change:
///
/// - a name that is not a worker: a function without `#[worker]` (the
///   error says to add it), or any other item;
/// - the wrong number of queues in a slot, or of extra arguments, for a
///   worker: "`double` reads 1 queue, 2 given";
/// - a queue whose uses disagree on its type: the error names the queue,
///   the two workers and the two types;
/// - a route (`by`, `broadcast`) on a sink, on a queue with several reader
///   workers or on a Redis-backed queue (not supported yet), a key function
///   that does not take the queue's messages or whose key is not `Hash`, a
///   broadcast of a type that is not `Clone`;
/// - a Redis-backed queue of a type that serde cannot carry;
/// - a cycle (END could never propagate), a literal replica count or
///   capacity of 0, a queue listed twice in one slot, a capacity given
///   twice or on a sink, an empty pipeline, and syntax errors.
///
/// All the mistakes of a pipeline are reported in one build, and nothing
/// that follows from them; of one worker's wrong counts, the first is
/// reported. A name that is not in scope at all is reported by rustc as an
/// "unresolved import": `pipeline!` imports each worker's name.
///
/// # Equivalent code
///
/// `pipeline! { in_q -> summer * 4 -> out_q; }` expands to this use of
/// [`ezq::Graph`](../ezq/struct.Graph.html) (plus a small struct that names
/// the handle's fields):
///
/// ```
/// # use ezq::{Graph, Inbox, Outbox};
/// # fn summer(inbox: Inbox<u64>, outbox: Outbox<u64>) { outbox.put(inbox.map(|m| m.data).sum::<u64>()); }
/// let mut graph = Graph::new();
/// let in_q = graph.queue::<u64>("in_q");
/// let out_q = graph.queue::<u64>("out_q");
/// graph.add("summer", 4, (in_q,), (out_q,), |(i,), (o,)| summer(i, o));
/// let p = graph.start(|ends| (ends.source(in_q), ends.sink(out_q)));
/// p.0.put(1);
/// p.0.end();
/// assert_eq!(p.1.iter().map(|m| m.data).sum::<u64>(), 1);
/// p.join().unwrap();
/// ```
#[proc_macro]
pub fn pipeline(input: TokenStream) -> TokenStream {
    pipeline::pipeline(input.into()).into()
}
