//! Pipelines across processes and machines (feature `redis`): queues on
//! Redis Streams.
//!
//! The same workers and the same `pipeline!` run as several processes, on
//! one machine or several: mark the queues between them `[redis]`, tell
//! each process which workers it runs, and start as many processes as
//! the job needs, in any order.
//!
//! ```no_run
//! use ezq::cluster::Cluster;
//! use ezq::{pipeline, worker, Inbox, Outbox};
//!
//! #[worker]
//! fn square(inbox: Inbox<u64>, out: Outbox<u64>) {
//!     for msg in inbox {
//!         out.put_msg(msg.map(|x| x * x));
//!     }
//! }
//!
//! // EZQ_REDIS_URL names the server, EZQ_JOB the job, EZQ_WORKERS what runs here.
//! let cluster = Cluster::from_env("squares").expect("a Redis server");
//! let p = pipeline! {
//!     cluster = cluster;
//!     numbers[redis] -> square * 4 -> squares[redis];
//! };
//! p.numbers.feed(0..1000u64); // only in the process that feeds
//! p.join().expect("nothing lost");
//! ```
//!
//! # What is guaranteed
//!
//! - **Nothing is lost when a process dies.** A worker acknowledges the
//!   messages it took only when it asks for more, in one atomic step with
//!   what it put while handling them. Messages a dead process held are
//!   taken over by a live consumer of the same queue once they have been
//!   idle for [`Cluster::claim_after`]; a producer that dies before its END
//!   stops holding its queues open when its [lease](Cluster::lease) runs
//!   out.
//! - **Effectively once between Redis-backed queues** for a worker that
//!   puts while it handles a message (a map, a filter, collatz): if it dies
//!   before its commit, neither its acknowledgements nor its results were
//!   written, and the message is handled again; if it was only slow and
//!   another consumer took its messages over, its commit skips them and
//!   their results. A worker whose output queue is local, or a sink read
//!   by the caller, gets **at least once**: a process that dies after it
//!   handed a message on and before its commit hands it on again.
//! - **A stateful worker** (one that sums, or emits at END) keeps its
//!   state in its process: its inputs are acknowledged as it reads on, so
//!   if it dies, what it had gathered dies with it. Run such a worker where
//!   a failure of its process fails the job, or make its output
//!   recomputable.
//! - **A message that keeps failing** (a worker panics or returns `Err`
//!   while handling it) goes back to its queue with its failures counted;
//!   after [`Cluster::max_failures`] it goes to the job's dead-letter
//!   stream ([`Cluster::dead_letters`]) with the last error, and `join` of
//!   the process that set it aside counts it as dropped
//!   ([`DropReason::DeadLettered`](crate::DropReason::DeadLettered)). A
//!   message that kills its process (an abort, an out-of-memory kill) is
//!   caught too: an entry taken over from a dead consumer is handed out
//!   alone, its attempts counted on the server, and after `max_failures`
//!   attempts it goes to the dead letters instead of killing the next
//!   process.
//! - **Slow is not dead.** A consumer commits what it has handled once it
//!   has held it for a quarter of [`Cluster::claim_after`], and restarts
//!   the idle time of what it still holds, so `claim_after` only has to
//!   exceed the time a worker spends on one message.
//! - **Bounded.** A Redis-backed queue holds its capacity of entries not
//!   yet acknowledged; producers wait while it is full (a cancel or a
//!   deadline ends the wait). Sinks are unbounded unless given a capacity,
//!   as local ones are. Acknowledged entries are trimmed, by whole stream
//!   nodes. [`Cluster::remove_job`] removes a finished job's keys.
//! - **The queue is the job's.** What a reader that returns early leaves
//!   (and what it took and did not get to) stays on the server for the
//!   queue's other readers, in this process or another, now or later: it
//!   is not dropped, and `join` says `Ok`. `Inbox::discard_rest` discards
//!   the rest for every process: what is put into the queue from then on
//!   is dropped, on purpose.
//! - **The server may restart** (with its append-only file on): every
//!   operation reconnects and retries for up to
//!   [`Cluster::give_up_after`] (30 s), then the worker fails with an
//!   error that names the server; no operation waits for ever.
//! - **Types are checked.** A queue's message type (its Rust name) is
//!   stored beside it; a process whose type differs refuses to start.
//!
//! # When a queue ends
//!
//! Each process that produces a Redis-backed queue registers as one of
//! its producers: a process running one of its producing workers, when the
//! pipeline starts; a process feeding it as a source, at its first put
//! (or its `end`). The queue ends for its readers once at least one
//! producer registered and every producer has ended or let its lease run
//! out, and no message is left unacknowledged. The queue is then over for
//! good: a producer that registers later (a feeder started too late, or a
//! second run of a finished job under the same name) is refused at its
//! first put, loudly, rather than feeding nobody. So start every feeding
//! process before the first one ends, and give each run of a job its own
//! name (`EZQ_JOB`) or remove the finished job's keys first
//! ([`Cluster::remove_job`]). A process that neither puts into a source nor
//! ends it is not one of its producers.
//!
//! # Servers
//!
//! Redis 7.0 or later (or a server speaking its protocol, such as Valkey):
//! ezq uses `XAUTOCLAIM`, `SET .. NX GET` and Lua scripts. Run it with its
//! append-only file on (`--appendonly yes`) so that a restart keeps the
//! job's queues; `appendfsync always` loses no acknowledged write even if
//! the server crashes, `everysec` (Redis's default) may lose the last
//! second or two.
//!
//! # Keys
//!
//! A job's keys all begin with `ezq:{JOB}:` (one hash slot): the stream
//! `ezq:{JOB}:q:NAME` per queue, beside it `:producers`, `:ended` and
//! `:type`, plus `ezq:{JOB}:dead` (dead letters) and `ezq:{JOB}:seq`
//! (commit numbers, so a retried commit is never applied twice).

pub use crate::transport::redis::cluster::{Cluster, ClusterError, DeadLetter};

/// The message type of a Redis-backed queue: any type serde can carry
/// (`Serialize + DeserializeOwned`), encoded with postcard.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot travel on a Redis-backed queue: it is not serde-serializable",
    label = "this `[redis]` queue carries `{Self}`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for `{Self}`, or make the queue local"
)]
pub trait Message: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Message for T {}
