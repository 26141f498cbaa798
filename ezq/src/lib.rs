//! # ezq: worker graphs made easy
//!
//! Functions become workers, typed queues wire them together, and the
//! compiler checks the whole topology before anything runs. ezq is the Rust
//! port of Python's `ezq` ("simple wrappers for multiprocessing"), on
//! threads and bounded channels.
//!
//! This page teaches the crate in order: the runtime API that Python ezq
//! users know, worker graphs with [`worker`] and [`pipeline!`], what happens
//! when something fails, batching, routing between replicas, and
//! statistics.
//!
//! ## 1. The runtime API, by hand
//!
//! Python ezq's functions are all here, under the same names. A [`Queue`]
//! carries [`Msg`]s (`data`, `kind`, `order`); [`run`] starts a worker
//! thread; [`endq_and_wait`] ends a queue (one END stops every consumer)
//! and joins the workers, reporting any that panicked.
//!
//! ```
//! use ezq::{Msg, Queue};
//!
//! fn worker(in_q: Queue<u64>, out_q: Queue<u64>) {
//!     let mut count = 0;
//!     for msg in ezq::iter_msg(&in_q) {
//!         count += msg.data;
//!     }
//!     ezq::put_msg(&out_q, Msg::new(count));
//! }
//!
//! let in_q = Queue::new();
//! let out_q = Queue::new();
//! let workers: Vec<ezq::Worker> = (0..ezq::num_cpus())
//!     .map(|_| {
//!         let (i, o) = (in_q.clone(), out_q.clone());
//!         ezq::run(move || worker(i, o))
//!     })
//!     .collect();
//! for i in 0..1000u64 {
//!     ezq::put_msg(&in_q, i);
//! }
//! ezq::endq_and_wait(&in_q, workers).expect("a worker failed");
//! let result: u64 = ezq::iter_q(&out_q).map(|msg| msg.data).sum();
//! assert_eq!(result, (0..1000).sum());
//! ```
//!
//! | Python ezq | ezq |
//! |---|---|
//! | `ezq.Msg(kind, data, order)` | [`Msg::new(data).kind(k).order(n)`](Msg) |
//! | `ezq.Queue()` | [`Queue::new()`], [`Queue::bounded(n)`](Queue::bounded) |
//! | `ezq.put_msg(q, ...)` | [`put_msg(&q, msg)`](put_msg) |
//! | `ezq.iter_msg(q)` | [`iter_msg(&q)`](iter_msg) |
//! | `ezq.iter_q(q)` | [`iter_q(&q)`](iter_q) |
//! | `ezq.endq(q)` | [`endq(&q)`](endq) |
//! | `ezq.endq_and_wait(q, workers)` | [`endq_and_wait(&q, workers)`](endq_and_wait) |
//! | `ezq.sortiter(it)` | [`sortiter(it)`](sortiter), [`sortiter_from`] |
//! | `ezq.run(f, *args)` | [`run(closure)`](run), [`run_named`] |
//! | `ezq.NUM_CPUS` | [`num_cpus()`](num_cpus) |
//! | `ezq.map(f, items)` (3.x) | [`map(f, items)`](map()) |
//!
//! ## 2. Worker graphs: `#[worker]` and `pipeline!`
//!
//! A [`worker`] is an ordinary function that takes [`Inbox`]es and
//! [`Outbox`]es; [`pipeline!`] wires workers and queues, starts them, and
//! returns a [`Pipeline`] with a [`Source`] for each queue it reads from the
//! caller and a [`Sink`] for each queue it hands back. END propagates by
//! itself, and a wiring mistake (types, arity, cycles) is a compile error.
//!
//! ```
//! use ezq::{pipeline, worker, Inbox, Outbox};
//!
//! #[worker]
//! fn summer(inbox: Inbox<u64>, outbox: Outbox<u64>) {
//!     let mut total = 0;
//!     for msg in inbox {
//!         total += msg.data;
//!     }
//!     outbox.put(total);
//! }
//!
//! let p = pipeline! {
//!     in_q -> summer * ezq::num_cpus() -> out_q;
//! };
//! for i in 0..1000u64 {
//!     p.in_q.put(i);
//! }
//! p.in_q.end();
//! let result: u64 = p.out_q.iter().map(|msg| msg.data).sum();
//! p.join().expect("a worker failed");
//! assert_eq!(result, (0..1000).sum());
//! ```
//!
//! Map workers (`fn(T) -> U`), extra arguments, fan-in, fan-out and queue
//! capacities are described with [`pipeline!`]. Workers whose extra
//! arguments borrow from the caller's stack (`lookup(&table)`) run in a
//! scoped pipeline, `pipeline! { scope = s; .. }` inside
//! [`std::thread::scope`], a [`ScopedPipeline`] joined before the scope
//! returns; [`map_scoped`] is [`map`]'s borrowing form. The same graph can be built
//! at run time with [`Graph`], which is what `pipeline!` expands to.
//!
//! ## 3. Failures
//!
//! - A worker that panics or returns `Err` is reported by [`Worker::join`],
//!   [`endq_and_wait`] and [`Pipeline::join`] as an [`Error`] that names the
//!   worker (and replica) and carries the message. Nothing is swallowed.
//! - In a pipeline, a failed worker ends its outputs like one that returns,
//!   so the stages after it finish; a worker whose readers are all gone
//!   stops at its next `put`, quietly: the failure reported is the cause.
//! - Dropping a [`Worker`] or a [`Pipeline`] waits for it and panics with
//!   its failures, unless the thread is already panicking.
//! - [`Pipeline::cancel`] stops a pipeline promptly; [`Error::dropped`]
//!   counts what it left unread. [`Pipeline::join_timeout`] and
//!   [`Inbox::recv_timeout`] wait with a limit; [`is_cancelled`] lets a
//!   long-running worker notice a cancel.
//!
//! ## 4. Batching
//!
//! A channel hand-off costs more than most per-message work, so a queue
//! that workers read is batched by default: its messages travel in blocks
//! while workers still put and read them one by one. A block leaves when
//! it is full ([`ADAPTIVE_BLOCK`](graph::ADAPTIVE_BLOCK) messages), with
//! whatever it holds when a reader runs out of messages (the reader sends
//! it before it waits; so blocks shrink to a message or a few while the
//! readers keep up), at once when a reader waits with nothing queued,
//! when its producer is about to wait
//! for input, at END, and within about a quarter of a millisecond of a
//! reader starting to wait for it: the pipeline's flusher sends it then,
//! even while its producer computes or waits on something outside the
//! pipeline. While every reader is busy, a block fills (a slow producer's
//! messages still travel 64 at a time, and the queue's capacity of 1,024
//! messages holds). No option is
//! needed; `q[64]` (a capacity of its own, kept to the message) and
//! `q[batch 1]` turn it off, and sinks, which the caller reads, are not
//! batched.
//!
//! `q[batch 256]` in [`pipeline!`] (or [`Graph::batched_queue`]) fixes the
//! block size instead: a worker's block then leaves only when full, when
//! the worker waits for input and at END (its `put` takes no lock), so an
//! idle pipeline never holds a message back but a busy worker may. By
//! default a batched queue has room for [`DEFAULT_BLOCKS`](graph::DEFAULT_BLOCKS) blocks.
//!
//! A source can be fed from any thread, so its `put` into a batched queue
//! takes a lock per message; to feed it from one thread without that lock,
//! put through a [`SourceWriter`] ([`Source::writer`]).
//!
//! ```
//! use ezq::{pipeline, worker};
//!
//! #[worker]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let p = pipeline! { numbers[batch 256] -> square * 2 -> squares[batch 256]; };
//! for i in 0..10_000u64 {
//!     p.numbers.put(i);
//! }
//! p.numbers.end();
//! assert_eq!(p.squares.iter().count(), 10_000);
//! ```
//!
//! ## 5. Routing between replicas
//!
//! The replicas of `w * 4` share their input queue: each message goes to
//! whichever replica is free, which serves stateless workers. A stateful
//! reader routes its queue instead. `q[by KEY]` ([`Graph::keyed_queue`])
//! sends each message to the replica that its key picks, so each replica
//! sees every message of its keys: a merger of counts, a per-user session
//! builder or a deduplicator runs as several replicas. `q[broadcast]`
//! ([`Graph::broadcast_queue`]) sends every replica a copy of each message,
//! as a stream of configuration updates needs. A routed queue has one
//! reader worker (the compiler checks it), a channel per replica, and END
//! reaches every replica.
//!
//! ```
//! use std::collections::HashMap;
//! use ezq::{pipeline, worker, Inbox, Outbox};
//!
//! fn word(count: &(String, u64)) -> &str {
//!     &count.0
//! }
//!
//! #[worker]
//! fn merge(counts: Inbox<(String, u64)>, totals: Outbox<(String, u64)>) {
//!     let mut total = HashMap::new();
//!     for msg in counts {
//!         *total.entry(msg.data.0).or_insert(0) += msg.data.1;
//!     }
//!     // Every count of these words came here: the totals are final.
//!     for entry in total {
//!         totals.put(entry);
//!     }
//! }
//!
//! let p = pipeline! { counts[by word, batch 64] -> merge * 4 -> totals; };
//! p.counts.feed(["a", "b", "a"].map(|w| (w.to_owned(), 1)));
//! let mut totals: Vec<_> = p.totals.iter().map(|m| m.data).collect();
//! totals.sort();
//! assert_eq!(totals, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
//! ```
//!
//! ## 6. Statistics
//!
//! [`Pipeline::stats`] (or a [`Monitor`](stats::Monitor) on another thread) counts, for each
//! queue, the messages put and taken, its high-water mark, its capacity
//! and the workers reading it, and for each worker replica the messages
//! processed and the time spent busy and waiting. Counting is local to each
//! worker and shared every 256 messages, so it is always on (the benchmark
//! measures no cost above its noise). With the `progress` feature,
//! `Progress` draws it live on a terminal, a line per worker with its input
//! queues' fill; with the `tracing` feature, each worker
//! replica runs in a `tracing` span. [`Pipeline::dot`] and
//! [`Pipeline::mermaid`] draw the graph.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate self as ezq;

// The layers, from the bottom: a module uses only those above it (a
// test, tests/architecture.rs, checks it).

// Padded, lock, thread_number.
mod sync;
// Msg, Kind.
mod msg;
// How items cross a queue; the END protocol.
mod transport;
// Pipelines across processes: queues on Redis Streams.
#[cfg(feature = "redis")]
pub mod cluster;
// Error, Failure, Dropped.
mod error;
// What is counted, and the account of each queue.
pub mod stats;
// Blocks, and each thread's unsent blocks.
mod batch;
// Cancellation, the reorder window, a replica's context.
mod control;
// Inbox, Outbox, Source, SourceWriter, Sink.
mod ends;
// The hand-wired Queue.
mod queue;
// run, Worker, endq_and_wait.
mod worker;
// sortiter.
mod sort;
// The ordered parallel map.
mod map;
// tracing spans.
mod trace;
// A running graph.
mod pipeline;
// The graph builder and its plumbing.
pub mod graph;

#[cfg(feature = "progress")]
mod progress;

#[doc(hidden)]
pub mod __private;

/// The crate's README, whose example runs as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

// What users type every day: Python ezq's names, messages, workers and
// pipelines. The graph builder's plumbing is in `graph`, the statistics
// in `stats`.
pub use control::is_cancelled;
pub use ends::Disconnected;
pub use ends::inbox::{Either, Inbox, Merge, RecvTimeout};
pub use ends::outbox::Outbox;
pub use ends::sink::{Sink, SinkIter};
pub use ends::source::Source;
pub use ends::writer::SourceWriter;
pub use error::{Cause, DropReason, Dropped, Error, Failure};
pub use ezq_macros::{pipeline, worker};
pub use graph::Graph;
pub use map::{Map, map, map_scoped, map_with_window};
pub use msg::{Kind, Msg};
pub use pipeline::{Pipeline, ScopedPipeline, TimedOut};
#[cfg(feature = "progress")]
pub use progress::Progress;
pub use queue::{Ended, Iter, Queue, endq, iter_msg, iter_q, put_msg};
pub use sort::{REORDER_RING, SortIter, sortiter, sortiter_from};
pub use worker::{Worker, WorkerResult, endq_and_wait, num_cpus, run, run_named, run_with_stack};
