//! # ezq: worker graphs made easy
//!
//! Functions become workers, typed queues wire them together, and the
//! compiler checks the whole topology before anything runs. ezq is the Rust
//! port of Python's `ezq` ("simple wrappers for multiprocessing"), on
//! threads and crossbeam channels.
//!
//! ## Worker graphs: `#[worker]` and `pipeline!`
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
//! END propagates by itself (a queue ends when all its producers are done),
//! queues between workers are bounded, every worker is joined when the
//! pipeline is joined or dropped, and a worker's panic or `Err` is reported,
//! never swallowed. See [`pipeline!`] for the language and [`worker`] for the
//! forms a worker may take.
//!
//! ## The runtime API, by hand
//!
//! Python ezq's functions are all here, under the same names:
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
//! ## Failures
//!
//! A worker that panics or returns `Err` is reported by [`Worker::join`],
//! [`endq_and_wait`] and [`Pipeline::join`] as an [`Error`] naming the
//! worker (and replica) with the panic message. Dropping a [`Worker`] or a
//! [`Pipeline`] waits for it and panics with its failure, unless the thread
//! is already panicking.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate self as ezq;

mod control;
mod graph;
mod map;
mod msg;
mod pipeline;
mod ports;
mod queue;
mod sort;
mod stats;
mod trace;
mod worker;

#[cfg(feature = "progress")]
mod progress;

#[doc(hidden)]
pub mod __private;

pub use control::{DEFAULT_WINDOW, Replica, is_cancelled};
pub use ezq_macros::{pipeline, worker};
pub use graph::{Capacity, Channels, DEFAULT_CAPACITY, Graph, Inputs, Outputs, QueueRef};
pub use map::{Map, map, map_with_window};
pub use msg::{Kind, Msg};
pub use pipeline::{Monitor, Pipeline, TimedOut};
pub use ports::{Disconnected, Either, Inbox, Merge, Outbox, RecvTimeout, Sink, SinkIter, Source};
#[cfg(feature = "progress")]
pub use progress::Progress;
pub use queue::{Ended, Iter, Queue, endq, iter_msg, iter_q, put_msg};
pub use sort::{SortIter, sortiter, sortiter_from};
pub use stats::{QueueStats, Stats, WorkerStats};
pub use worker::{
    Cause, Error, Failure, Worker, WorkerResult, endq_and_wait, num_cpus, run, run_named,
};
