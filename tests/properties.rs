//! Property tests over random worker graphs built at run time with
//! `ezq::Graph`: fan-in, fan-out, replicas, small and batched queues.
//!
//! Without a fault, every message put into the sources arrives exactly once
//! at the sinks. With a fault injected (a panic or an `Err` at a chosen
//! message of a chosen replica), `join` reports exactly that failure, no
//! thread is left running, and every message is accounted for: delivered,
//! dropped (put into a queue and never taken), or lost with the replica
//! that failed while holding it.
//!
//! Routed queues (`Graph::keyed_queue`, `Graph::broadcast_queue`) over
//! random inputs, replica counts, block sizes and capacities: a keyed
//! queue's replicas count exactly what one thread counts, each key on one
//! replica; a broadcast gives every replica every message; END reaches
//! every replica; and with a replica that panics, every copy put is taken
//! or counted as dropped in `join`'s error.
//!
//! `EZQ_SOAK=<cases>` runs that many cases per property instead of 500.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::within;
use ezq::graph::{Capacity, QueueRef};
use ezq::stats::QueueStats;
use ezq::{Cause, Either, Graph, Inbox, Msg, Outbox};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per property: 500, or `EZQ_SOAK`.
fn cases() -> u32 {
    std::env::var("EZQ_SOAK")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(500)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        // No regression files in the repository.
        failure_persistence: None,
        ..Config::default()
    })
}

// ---------------------------------------------------------------------------
// The random graphs
// ---------------------------------------------------------------------------

const MAX_WORKERS: usize = 6;
const MAX_SOURCES: usize = 2;
const MAX_QUEUES: usize = MAX_SOURCES + 2 * MAX_WORKERS;
const MAX_MESSAGES: u64 = 5000;

/// A worker as drawn, before it is wired to queues.
#[derive(Clone, Debug)]
struct RawWorker {
    inputs: usize,
    outputs: usize,
    replicas: usize,
    /// Which readable queues to read (modulo their number).
    in_picks: [usize; 2],
    /// For each output: an existing queue to write too (modulo the number
    /// of queues it may write), or a new queue.
    out_picks: [Option<usize>; 2],
}

/// A queue as drawn.
#[derive(Clone, Debug)]
struct RawQueue {
    capacity: usize,
    block: Option<usize>,
    /// For a sink: leave it unbounded (the default) rather than bounded.
    sink_default: bool,
}

#[derive(Clone, Debug)]
struct QueueSpec {
    /// `None`: `Capacity::Default`.
    capacity: Option<usize>,
    block: Option<usize>,
}

#[derive(Clone, Debug)]
struct WorkerSpec {
    replicas: usize,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

/// A worker graph: queues `0..sources` are the sources, `sinks` the queues
/// no worker reads. Workers are in topological order: every producer of a
/// queue comes before every consumer of it.
#[derive(Clone)]
struct Plan {
    queues: Vec<QueueSpec>,
    sources: usize,
    sinks: Vec<usize>,
    workers: Vec<WorkerSpec>,
    messages: u64,
    /// Salts the routing of messages to sources and to outputs.
    salt: u64,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Plan {{ {} messages, salt {:#x}",
            self.messages, self.salt
        )?;
        for (i, q) in self.queues.iter().enumerate() {
            let role = if i < self.sources {
                "source"
            } else if self.sinks.contains(&i) {
                "sink"
            } else {
                "queue"
            };
            writeln!(
                f,
                "  q{i} ({role}): capacity {:?}, block {:?}",
                q.capacity, q.block
            )?;
        }
        for (i, w) in self.workers.iter().enumerate() {
            writeln!(
                f,
                "  w{i} x{}: {:?} -> {:?}",
                w.replicas, w.inputs, w.outputs
            )?;
        }
        write!(f, "}}")
    }
}

/// Wires the drawn workers into an acyclic graph.
///
/// Worker `i` reads 1-2 queues that already carry messages (a source or
/// the output of an earlier worker; several workers may read one queue),
/// taking any source that nobody reads yet first, so that every source is
/// read. It writes 1-2 queues: new ones, or queues that earlier workers
/// write and nobody reads yet (several producers per queue). Since a queue
/// only gets producers until its first consumer, the graph has no cycle,
/// every queue that is read is a source or produced, and a queue no worker
/// reads in the end is a sink, read by the test.
fn wire(
    sources: usize,
    raw_workers: &[RawWorker],
    raw_queues: &[RawQueue],
    messages: u64,
    salt: u64,
) -> Plan {
    let mut produced = vec![false; sources];
    let mut read = vec![false; sources];
    let mut workers = Vec::new();
    for (w, raw) in raw_workers.iter().enumerate() {
        let readable: Vec<usize> = (0..produced.len())
            .filter(|&q| q < sources || produced[q])
            .collect();
        let unread_sources: Vec<usize> = (0..sources).filter(|&q| !read[q]).collect();
        let last = w + 1 == raw_workers.len();
        let want = if last {
            raw.inputs.max(unread_sources.len())
        } else {
            raw.inputs
        };
        let mut inputs: Vec<usize> = unread_sources.into_iter().take(want).collect();
        for pick in raw.in_picks {
            if inputs.len() >= want {
                break;
            }
            let q = readable[pick % readable.len()];
            if !inputs.contains(&q) {
                inputs.push(q);
            }
        }
        for &q in &inputs {
            read[q] = true;
        }
        let writable: Vec<usize> = (sources..produced.len())
            .filter(|&q| produced[q] && !read[q])
            .collect();
        let mut outputs = Vec::new();
        for pick in raw.out_picks.iter().take(raw.outputs) {
            let existing = pick
                .filter(|_| !writable.is_empty())
                .map(|p| writable[p % writable.len()])
                .filter(|q| !outputs.contains(q));
            let q = existing.unwrap_or_else(|| {
                produced.push(false);
                read.push(false);
                produced.len() - 1
            });
            produced[q] = true;
            outputs.push(q);
        }
        workers.push(WorkerSpec {
            replicas: raw.replicas,
            inputs,
            outputs,
        });
    }
    let sinks: Vec<usize> = (sources..produced.len()).filter(|&q| !read[q]).collect();
    let queues = (0..produced.len())
        .map(|q| {
            let raw = &raw_queues[q];
            let sink = sinks.contains(&q);
            QueueSpec {
                capacity: (!(sink && raw.sink_default)).then_some(raw.capacity),
                block: raw.block,
            }
        })
        .collect();
    Plan {
        queues,
        sources,
        sinks,
        workers,
        messages,
        salt,
    }
}

fn raw_worker() -> impl Strategy<Value = RawWorker> {
    (
        1..=2usize,
        1..=2usize,
        1..=4usize,
        any::<[usize; 2]>(),
        any::<[Option<usize>; 2]>(),
    )
        .prop_map(
            |(inputs, outputs, replicas, in_picks, out_picks)| RawWorker {
                inputs,
                outputs,
                replicas,
                in_picks,
                out_picks,
            },
        )
}

fn raw_queue() -> impl Strategy<Value = RawQueue> {
    (1..=64usize, prop::option::of(1..=32usize), any::<bool>()).prop_map(
        |(capacity, block, sink_default)| RawQueue {
            capacity,
            block,
            sink_default,
        },
    )
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        1..=MAX_SOURCES,
        prop::collection::vec(raw_worker(), 1..=MAX_WORKERS),
        prop::collection::vec(raw_queue(), MAX_QUEUES),
        0..=MAX_MESSAGES,
        any::<u64>(),
    )
        .prop_map(|(sources, workers, queues, messages, salt)| {
            wire(sources, &workers, &queues, messages, salt)
        })
}

/// A bijective mix of the bits, so that consecutive values spread out.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Which of `n` ways a message goes, for the router `router`.
fn route(value: u64, salt: u64, router: u64, n: usize) -> usize {
    (mix(value ^ salt ^ mix(router.wrapping_add(1))) % n as u64) as usize
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// Every injected panic message starts with this; the panic hook keeps
/// them off the test output.
const INJECTED: &str = "injected fault";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKind {
    Panic,
    Error,
    /// The replica returns, with the message in hand, leaving its inbox
    /// unread.
    ReturnEarly,
}

/// A fault as drawn: worker and replica modulo the plan's.
#[derive(Clone, Copy, Debug)]
struct RawFault {
    worker: usize,
    replica: usize,
    index: u64,
    kind: FaultKind,
}

fn raw_fault() -> impl Strategy<Value = RawFault> {
    (
        any::<usize>(),
        any::<usize>(),
        // Mostly early, where it fires; sometimes anywhere, often too late.
        prop_oneof![3 => 0..64u64, 1 => 0..=MAX_MESSAGES],
        prop_oneof![
            Just(FaultKind::Panic),
            Just(FaultKind::Error),
            Just(FaultKind::ReturnEarly)
        ],
    )
        .prop_map(|(worker, replica, index, kind)| RawFault {
            worker,
            replica,
            index,
            kind,
        })
}

/// A fault resolved against a plan.
#[derive(Clone, Copy, Debug)]
struct Fault {
    worker: usize,
    /// The replica number claimed by the closure (not the library's).
    replica: usize,
    /// Fires when the replica takes its message of this index (from 0).
    index: u64,
    kind: FaultKind,
}

impl Fault {
    fn resolve(raw: RawFault, plan: &Plan) -> Fault {
        let worker = raw.worker % plan.workers.len();
        Fault {
            worker,
            replica: raw.replica % plan.workers[worker].replicas,
            index: raw.index,
            kind: raw.kind,
        }
    }

    fn text(&self) -> String {
        format!(
            "{INJECTED} in w{} (claimed replica {}) at message {}",
            self.worker, self.replica, self.index
        )
    }
}

/// Keeps the injected panics (expected, hundreds of them) off stderr;
/// every other panic is printed as usual.
fn quiet_injected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = (payload.downcast_ref::<String>().map(String::as_str))
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if !message.is_some_and(|m| m.starts_with(INJECTED)) {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------
// Running a plan
// ---------------------------------------------------------------------------

/// What one worker's replicas share with the test.
struct WorkerState {
    index: usize,
    salt: u64,
    next_replica: AtomicUsize,
    /// Per claimed replica: messages taken, and messages handed to an
    /// outbox (counted before the `put`, which may stop the replica).
    taken: Vec<AtomicU64>,
    forwarded: Vec<AtomicU64>,
    /// Per claimed replica: the library's replica number, from the
    /// thread's name (`name#replica`), if it has that form.
    library_replica: Vec<Mutex<Option<usize>>>,
    fault: Option<Fault>,
    fired: AtomicBool,
    fired_at: Mutex<Option<Instant>>,
}

impl WorkerState {
    fn new(index: usize, replicas: usize, salt: u64, fault: Option<Fault>) -> Self {
        WorkerState {
            index,
            salt,
            next_replica: AtomicUsize::new(0),
            taken: (0..replicas).map(|_| AtomicU64::new(0)).collect(),
            forwarded: (0..replicas).map(|_| AtomicU64::new(0)).collect(),
            library_replica: (0..replicas).map(|_| Mutex::new(None)).collect(),
            fault: fault.filter(|f| f.worker == index),
            fired: AtomicBool::new(false),
            fired_at: Mutex::new(None),
        }
    }

    /// A replica's body: forwards each message to one output, and fails
    /// as told.
    fn run(
        &self,
        messages: impl Iterator<Item = Msg<u64>>,
        outputs: &[&Outbox<u64>],
    ) -> Result<(), String> {
        let replica = self.next_replica.fetch_add(1, Ordering::SeqCst);
        assert!(
            replica < self.taken.len(),
            "w{}: the closure was called more often than there are replicas",
            self.index
        );
        let from_name = thread::current()
            .name()
            .and_then(|n| n.rsplit_once('#'))
            .and_then(|(_, r)| r.parse().ok());
        *self.library_replica[replica].lock().unwrap() = from_name;
        for msg in messages {
            let index = self.taken[replica].fetch_add(1, Ordering::SeqCst);
            let fault = self
                .fault
                .filter(|f| f.replica == replica && f.index == index);
            if let Some(fault) = fault {
                self.fired.store(true, Ordering::SeqCst);
                *self.fired_at.lock().unwrap() = Some(Instant::now());
                match fault.kind {
                    FaultKind::Panic => panic!("{}", fault.text()),
                    FaultKind::Error => return Err(fault.text()),
                    FaultKind::ReturnEarly => return Ok(()),
                }
            }
            let out = route(msg.data, self.salt, self.index as u64, outputs.len());
            self.forwarded[replica].fetch_add(1, Ordering::SeqCst);
            outputs[out].put_msg(msg);
        }
        Ok(())
    }
}

fn either(msg: Either<Msg<u64>, Msg<u64>>) -> Msg<u64> {
    match msg {
        Either::Left(m) | Either::Right(m) => m,
    }
}

/// What a run of a plan gave.
struct Run {
    /// Every message read from the sinks, in no particular order.
    delivered: Vec<u64>,
    /// Messages the sources accepted.
    accepted: u64,
    result: Result<(), ezq::Error>,
    states: Vec<Arc<WorkerState>>,
    /// When `join` returned.
    joined_at: Instant,
}

/// How the test thread feeds the sources.
#[derive(Clone, Copy, Debug, Default)]
struct Feeding {
    /// Cancel the pipeline after this many puts.
    cancel_after: Option<u64>,
    /// Feed from this many threads with `try_put`, while this thread ends
    /// the sources after this many microseconds.
    racing: Option<(usize, u64)>,
}

fn run_plan(plan: &Plan, fault: Option<Fault>) -> Result<Run, String> {
    run_plan_fed(plan, fault, Feeding::default())
}

fn run_plan_fed(plan: &Plan, fault: Option<Fault>, feeding: Feeding) -> Result<Run, String> {
    let mut g = Graph::new();
    let queues: Vec<QueueRef<u64>> = (plan.queues.iter().enumerate())
        .map(|(i, q)| {
            let name = format!("q{i}");
            let capacity = q.capacity.map_or(Capacity::Default, Capacity::Bounded);
            match q.block {
                Some(block) => g.batched_queue(&name, capacity, block),
                None => g.queue_with(&name, capacity),
            }
        })
        .collect();
    let mut states = Vec::new();
    for (i, w) in plan.workers.iter().enumerate() {
        let state = Arc::new(WorkerState::new(i, w.replicas, plan.salt, fault));
        states.push(Arc::clone(&state));
        let name = format!("w{i}");
        let (n, s) = (w.replicas, state);
        let q = |k: usize| queues[k];
        match (w.inputs.as_slice(), w.outputs.as_slice()) {
            (&[a], &[x]) => g.add(
                &name,
                n,
                (q(a),),
                (q(x),),
                move |(i,): (Inbox<u64>,), (x,): (Outbox<u64>,)| s.run(i, &[&x]),
            ),
            (&[a], &[x, y]) => g.add(
                &name,
                n,
                (q(a),),
                (q(x), q(y)),
                move |(i,): (Inbox<u64>,), (x, y): (Outbox<u64>, Outbox<u64>)| s.run(i, &[&x, &y]),
            ),
            (&[a, b], &[x]) => g.add(
                &name,
                n,
                (q(a), q(b)),
                (q(x),),
                move |(i, j): (Inbox<u64>, Inbox<u64>), (x,): (Outbox<u64>,)| {
                    s.run(i.merge(j).map(either), &[&x])
                },
            ),
            (&[a, b], &[x, y]) => g.add(
                &name,
                n,
                (q(a), q(b)),
                (q(x), q(y)),
                move |(i, j): (Inbox<u64>, Inbox<u64>), (x, y): (Outbox<u64>, Outbox<u64>)| {
                    s.run(i.merge(j).map(either), &[&x, &y])
                },
            ),
            shape => unreachable!("no worker has the shape {shape:?}"),
        };
    }
    let mut p = g.start(|c| {
        let sources: Vec<_> = (0..plan.sources).map(|q| c.source(queues[q])).collect();
        let sinks: Vec<_> = plan.sinks.iter().map(|&q| c.sink(queues[q])).collect();
        (sources, sinks)
    });
    let monitor = p.monitor();
    // The sinks are read as the messages come (some are bounded), while
    // this thread feeds the sources.
    let accepted = AtomicU64::new(0);
    let delivered = thread::scope(|scope| {
        let readers: Vec<_> = (p.1.iter())
            .map(|sink| scope.spawn(move || sink.iter().map(|m| m.data).collect::<Vec<u64>>()))
            .collect();
        match feeding.racing {
            None => {
                for value in 0..plan.messages {
                    if feeding.cancel_after == Some(value) {
                        p.cancel();
                    }
                    let source = route(value, plan.salt, u64::MAX, plan.sources);
                    p.0[source].put(value);
                }
                if feeding.cancel_after == Some(plan.messages) {
                    p.cancel();
                }
                accepted.store(plan.messages, Ordering::SeqCst);
            }
            Some((feeders, end_after_us)) => {
                let (sources, accepted) = (&p.0, &accepted);
                for f in 0..feeders {
                    scope.spawn(move || {
                        let values = (0..plan.messages).filter(|v| *v as usize % feeders == f);
                        for value in values {
                            let source = route(value, plan.salt, u64::MAX, plan.sources);
                            if sources[source].try_put(value).is_err() {
                                break;
                            }
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
                thread::sleep(Duration::from_micros(end_after_us));
            }
        }
        // One after the other, as `join` does: ending a source must not
        // wait for readers that have failed or stopped.
        for source in &p.0 {
            source.end();
        }
        (readers.into_iter())
            .flat_map(|r| r.join().expect("a sink reader panicked"))
            .collect::<Vec<u64>>()
    });
    let accepted = accepted.into_inner();
    let result = match p.join_timeout(Duration::from_secs(10)) {
        Ok(result) => result,
        Err(timed_out) => return Err(format!("join did not return within 10 s: {timed_out}")),
    };
    let joined_at = Instant::now();
    if !p.is_finished() || !monitor.is_finished() {
        return Err("join returned with workers still running".into());
    }
    // Every thread was joined: the drop has nothing left to wait for.
    drop(p);
    Ok(Run {
        delivered,
        accepted,
        result,
        states,
        joined_at,
    })
}

// ---------------------------------------------------------------------------
// Totals, printed at the end of each property
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Totals {
    cases: AtomicU64,
    faults: AtomicU64,
    fired: AtomicU64,
    messages: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    batched_queues: AtomicU64,
    queues: AtomicU64,
    workers: AtomicU64,
    replicas: AtomicU64,
}

impl Totals {
    fn count_plan(&self, plan: &Plan) {
        self.cases.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(plan.messages, Ordering::Relaxed);
        let batched = plan.queues.iter().filter(|q| q.block.is_some()).count();
        (self.batched_queues).fetch_add(batched as u64, Ordering::Relaxed);
        (self.queues).fetch_add(plan.queues.len() as u64, Ordering::Relaxed);
        (self.workers).fetch_add(plan.workers.len() as u64, Ordering::Relaxed);
        let replicas: usize = plan.workers.iter().map(|w| w.replicas).sum();
        self.replicas.fetch_add(replicas as u64, Ordering::Relaxed);
    }

    fn count_route_plan(&self, plan: &RoutePlan) {
        self.cases.fetch_add(1, Ordering::Relaxed);
        (self.messages).fetch_add(plan.keys.len() as u64, Ordering::Relaxed);
        let queues = 2 + u64::from(plan.forwarders.is_some());
        self.queues.fetch_add(queues, Ordering::Relaxed);
        (self.batched_queues).fetch_add(u64::from(plan.block.is_some()), Ordering::Relaxed);
        let workers = 1 + u64::from(plan.forwarders.is_some());
        self.workers.fetch_add(workers, Ordering::Relaxed);
        let replicas = plan.replicas + plan.forwarders.unwrap_or(0);
        self.replicas.fetch_add(replicas as u64, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn print(&self, property: &str, elapsed: Duration) {
        let g = Self::get;
        let _ = writeln!(
            std::io::stderr(),
            "{property}: {} cases ({} workers, {} replicas, {} queues of which {} batched), \
             {} faults injected, {} fired, {} messages checked \
             ({} delivered, {} dropped, {} lost with the failed replica), {:.1} s",
            g(&self.cases),
            g(&self.workers),
            g(&self.replicas),
            g(&self.queues),
            g(&self.batched_queues),
            g(&self.faults),
            g(&self.fired),
            g(&self.messages),
            g(&self.delivered),
            g(&self.dropped),
            g(&self.lost),
            elapsed.as_secs_f64(),
        );
    }
}

fn finish(property: &str, totals: &Totals, start: Instant, result: Result<(), impl fmt::Display>) {
    totals.print(property, start.elapsed());
    if let Err(e) = result {
        panic!("{property}: {e}");
    }
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// Without a fault: the multiset of messages at the sinks is the multiset
/// put into the sources, and `join` returns `Ok`.
fn check_no_fault(plan: &Plan) -> Result<u64, String> {
    let run = run_plan(plan, None)?;
    if let Err(e) = &run.result {
        return Err(format!("join failed without a fault: {e}"));
    }
    let mut delivered = run.delivered;
    delivered.sort_unstable();
    if delivered.iter().copied().ne(0..plan.messages) {
        let mut missing = 0;
        let mut duplicated = 0;
        let mut counts = vec![0u32; plan.messages as usize];
        for &v in &delivered {
            counts[v as usize] += 1;
        }
        for &c in &counts {
            missing += u64::from(c == 0);
            duplicated += u64::from(c > 1);
        }
        return Err(format!(
            "{} messages put, {} delivered: {missing} missing, {duplicated} delivered more than once",
            plan.messages,
            delivered.len()
        ));
    }
    Ok(delivered.len() as u64)
}

#[test]
fn every_message_arrives_exactly_once() {
    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let counted = Arc::clone(&totals);
    let result = runner().run(&plan(), move |plan| {
        counted.count_plan(&plan);
        let delivered = within(30, move || check_no_fault(&plan)).map_err(TestCaseError::fail)?;
        counted.delivered.fetch_add(delivered, Ordering::Relaxed);
        Ok(())
    });
    finish("every_message_arrives_exactly_once", &totals, start, result);
}

/// What a fault case found, for the totals.
struct FaultOutcome {
    fired: bool,
    delivered: u64,
    dropped: u64,
    lost: u64,
}

fn check_fault(plan: &Plan, fault: Fault) -> Result<FaultOutcome, String> {
    let run = run_plan(plan, Some(fault))?;
    let state = &run.states[fault.worker];
    let fired = state.fired.load(Ordering::SeqCst);
    // Every message at most once, and only messages that were put.
    let mut delivered = run.delivered.clone();
    delivered.sort_unstable();
    if let Some(w) = delivered.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("message {} delivered more than once", w[0]));
    }
    if let Some(&v) = delivered.iter().find(|&&v| v >= plan.messages) {
        return Err(format!("message {v} delivered but never put"));
    }
    // Replicas that did not fail forward every message they take (a `put`
    // that stops a replica counts as forwarded: the message is then in
    // `dropped`).
    for s in &run.states {
        for r in 0..s.taken.len() {
            let failed = fired && s.index == fault.worker && r == fault.replica;
            let (taken, forwarded) = (
                s.taken[r].load(Ordering::SeqCst),
                s.forwarded[r].load(Ordering::SeqCst),
            );
            if !failed && taken != forwarded {
                return Err(format!(
                    "w{} replica {r} took {taken} and forwarded {forwarded}",
                    s.index
                ));
            }
        }
    }
    if !fired {
        // The chosen message never came: a run without a fault.
        if let Err(e) = &run.result {
            return Err(format!("the fault did not fire, yet join failed: {e}"));
        }
        if delivered.iter().copied().ne(0..plan.messages) {
            return Err(format!(
                "the fault did not fire, yet {} of {} messages were delivered",
                delivered.len(),
                plan.messages
            ));
        }
        return Ok(FaultOutcome {
            fired,
            delivered: delivered.len() as u64,
            dropped: 0,
            lost: 0,
        });
    }
    if fault.kind == FaultKind::ReturnEarly {
        return check_returned_early(&run, &delivered);
    }
    let error = match run.result {
        Ok(()) => {
            return Err(format!(
                "the fault fired ({}), yet join returned Ok",
                fault.text()
            ));
        }
        Err(e) => e,
    };
    let fired_at = state.fired_at.lock().unwrap().expect("fired");
    let took = run.joined_at - fired_at;
    if took > Duration::from_secs(10) {
        return Err(format!("join returned {took:?} after the fault"));
    }
    if error.is_cancelled() {
        return Err(format!("nobody cancelled, yet: {error}"));
    }
    let [failure] = error.failures() else {
        return Err(format!(
            "{} failures instead of exactly the injected one: {error}",
            error.failures().len()
        ));
    };
    let name = format!("w{}", fault.worker);
    if failure.worker != name {
        return Err(format!(
            "the failure names `{}`, not `{name}`: {error}",
            failure.worker
        ));
    }
    let expected = match fault.kind {
        FaultKind::Panic => Cause::Panicked(fault.text()),
        FaultKind::Error => Cause::Returned(fault.text()),
        FaultKind::ReturnEarly => unreachable!("checked above"),
    };
    if failure.cause != expected {
        return Err(format!("cause {:?}, expected {expected:?}", failure.cause));
    }
    let library_replica = *state.library_replica[fault.replica].lock().unwrap();
    if let Some(r) = library_replica.filter(|&r| failure.replica != Some(r)) {
        return Err(format!(
            "the failure names replica {:?}, but the failed thread was replica {r}",
            failure.replica
        ));
    }
    let lost = state.taken[fault.replica].load(Ordering::SeqCst)
        - state.forwarded[fault.replica].load(Ordering::SeqCst);
    let accounted = delivered.len() as u64 + error.dropped() + lost;
    if accounted != plan.messages {
        return Err(format!(
            "{} messages put, but {} delivered + {} dropped + {lost} lost with the failed replica \
             = {accounted} ({error})",
            plan.messages,
            delivered.len(),
            error.dropped(),
        ));
    }
    Ok(FaultOutcome {
        fired,
        delivered: delivered.len() as u64,
        dropped: error.dropped(),
        lost,
    })
}

/// Messages taken by a replica and not forwarded: a replica that failed
/// or returned held them, and a cancel can leave one with each replica.
fn held_by_replicas(run: &Run) -> u64 {
    (run.states.iter())
        .flat_map(|s| s.taken.iter().zip(&s.forwarded))
        .map(|(t, f)| t.load(Ordering::SeqCst) - f.load(Ordering::SeqCst))
        .sum()
}

/// The account of a run: every message put is delivered, dropped (and in
/// the error), or was held by a replica when it stopped.
fn check_account(run: &Run, delivered: &[u64], dropped: u64) -> Result<(), String> {
    let held = held_by_replicas(run);
    let accounted = delivered.len() as u64 + dropped + held;
    if accounted != run.accepted {
        return Err(format!(
            "{} messages accepted, but {} delivered + {dropped} dropped + {held} held by \
             replicas that stopped = {accounted} ({:?})",
            run.accepted,
            delivered.len(),
            run.result
        ));
    }
    Ok(())
}

/// A replica returned early, holding one message: no failure, and every
/// message it left behind is dropped and reported, or another replica took
/// it and `join` is `Ok`.
fn check_returned_early(run: &Run, delivered: &[u64]) -> Result<FaultOutcome, String> {
    let dropped = match &run.result {
        Ok(()) => 0,
        Err(error) => {
            if !error.failures().is_empty() || error.is_cancelled() {
                return Err(format!("a replica returned early, yet: {error}"));
            }
            if error.dropped() == 0 {
                return Err(format!("join failed with nothing dropped: {error}"));
            }
            error.dropped()
        }
    };
    check_account(run, delivered, dropped)?;
    Ok(FaultOutcome {
        fired: true,
        delivered: delivered.len() as u64,
        dropped,
        lost: held_by_replicas(run),
    })
}

#[test]
fn injected_faults_are_reported_and_every_message_is_accounted_for() {
    quiet_injected_panics();
    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let counted = Arc::clone(&totals);
    let strategy = (plan(), raw_fault()).prop_map(|(plan, raw)| {
        let fault = Fault::resolve(raw, &plan);
        (plan, fault)
    });
    let result = runner().run(&strategy, move |(plan, fault)| {
        counted.count_plan(&plan);
        counted.faults.fetch_add(1, Ordering::Relaxed);
        let outcome = within(30, move || check_fault(&plan, fault)).map_err(TestCaseError::fail)?;
        counted
            .fired
            .fetch_add(u64::from(outcome.fired), Ordering::Relaxed);
        counted
            .delivered
            .fetch_add(outcome.delivered, Ordering::Relaxed);
        counted
            .dropped
            .fetch_add(outcome.dropped, Ordering::Relaxed);
        counted.lost.fetch_add(outcome.lost, Ordering::Relaxed);
        Ok(())
    });
    finish(
        "injected_faults_are_reported_and_every_message_is_accounted_for",
        &totals,
        start,
        result,
    );
}

/// A cancel after a random number of puts: `join` says so, and every
/// message is delivered, dropped, or was held by a replica.
fn check_cancel(plan: &Plan, after: u64) -> Result<(u64, u64), String> {
    let feeding = Feeding {
        cancel_after: Some(after),
        racing: None,
    };
    let run = run_plan_fed(plan, None, feeding)?;
    let error = match &run.result {
        Ok(()) => return Err("cancelled, yet join returned Ok".into()),
        Err(e) => e,
    };
    if !error.is_cancelled() || !error.failures().is_empty() {
        return Err(format!("a cancel, and only a cancel, expected: {error}"));
    }
    check_account(&run, &run.delivered, error.dropped())?;
    Ok((run.delivered.len() as u64, error.dropped()))
}

#[test]
fn a_cancel_at_any_point_accounts_for_every_message() {
    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let counted = Arc::clone(&totals);
    let strategy = (plan(), any::<u64>()).prop_map(|(plan, at)| {
        let after = at % (plan.messages + 1);
        (plan, after)
    });
    let result = runner().run(&strategy, move |(plan, after)| {
        counted.count_plan(&plan);
        let (delivered, dropped) =
            within(30, move || check_cancel(&plan, after)).map_err(TestCaseError::fail)?;
        counted.delivered.fetch_add(delivered, Ordering::Relaxed);
        counted.dropped.fetch_add(dropped, Ordering::Relaxed);
        Ok(())
    });
    finish(
        "a_cancel_at_any_point_accounts_for_every_message",
        &totals,
        start,
        result,
    );
}

/// Sources fed from several threads with `try_put` while this thread ends
/// them: exactly the accepted messages arrive, each once, and `join` is
/// `Ok`.
fn check_racing_end(plan: &Plan, feeders: usize, end_after_us: u64) -> Result<u64, String> {
    let feeding = Feeding {
        cancel_after: None,
        racing: Some((feeders, end_after_us)),
    };
    let run = run_plan_fed(plan, None, feeding)?;
    if let Err(e) = &run.result {
        return Err(format!("join failed with ends racing puts: {e}"));
    }
    let mut delivered = run.delivered.clone();
    delivered.sort_unstable();
    if let Some(w) = delivered.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("message {} delivered more than once", w[0]));
    }
    if delivered.len() as u64 != run.accepted {
        return Err(format!(
            "{} puts accepted, {} delivered",
            run.accepted,
            delivered.len()
        ));
    }
    Ok(run.accepted)
}

#[test]
fn ends_racing_puts_from_many_threads_lose_nothing() {
    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let counted = Arc::clone(&totals);
    let strategy = (plan(), 2..=4usize, 0..2_000u64);
    let result = runner().run(&strategy, move |(plan, feeders, end_after_us)| {
        counted.count_plan(&plan);
        let delivered = within(30, move || check_racing_end(&plan, feeders, end_after_us))
            .map_err(TestCaseError::fail)?;
        counted.delivered.fetch_add(delivered, Ordering::Relaxed);
        Ok(())
    });
    finish(
        "ends_racing_puts_from_many_threads_lose_nothing",
        &totals,
        start,
        result,
    );
}

// ---------------------------------------------------------------------------
// Routed queues
// ---------------------------------------------------------------------------

/// A routed queue read by `replicas` replicas of a counting worker: each
/// counts the messages of each key it sees and, at END, sends its counts.
#[derive(Clone, Debug)]
struct RoutePlan {
    broadcast: bool,
    replicas: usize,
    /// Fed by this many replicas of a forwarding worker, so that the queue
    /// ends as its producers go; else fed by the caller, ending explicitly.
    forwarders: Option<usize>,
    block: Option<usize>,
    capacity: Option<usize>,
    /// The key of each message; the message is `key << 32 | index`.
    keys: Vec<u32>,
    /// Fed through a `SourceWriter` rather than `Source::put` (whose
    /// batched block the pipeline's flusher may send in parts).
    through_writer: bool,
}

fn route_plan() -> impl Strategy<Value = RoutePlan> {
    (
        any::<bool>(),
        1..=4usize,
        prop::option::of(1..=2usize),
        prop::option::of(1..=32usize),
        prop::option::of(1..=64usize),
        // Few keys, so that each replica sees several; sometimes many.
        prop_oneof![
            3 => prop::collection::vec(0..20u32, 0..2000),
            1 => prop::collection::vec(any::<u32>(), 0..2000),
        ],
        any::<bool>(),
    )
        .prop_map(
            |(broadcast, replicas, forwarders, block, capacity, keys, through_writer)| RoutePlan {
                broadcast,
                replicas,
                forwarders,
                block,
                capacity,
                keys,
                through_writer,
            },
        )
}

fn key_of(message: &u64) -> u32 {
    (message >> 32) as u32
}

/// What a run of a route plan gave.
struct RouteRun {
    /// What each replica that reached END sent: (replica, key counts).
    counts: Vec<(usize, HashMap<u32, u64>)>,
    /// Messages each replica took (counted before it could fail).
    taken: Vec<u64>,
    fired: bool,
    result: Result<(), ezq::Error>,
    /// The routed queue's statistics, and the forwarders' input's.
    routed: QueueStats,
    input: Option<QueueStats>,
}

/// Runs a route plan; `fault` makes replica `.0` panic at its message of
/// index `.1`.
fn run_routes(plan: &RoutePlan, fault: Option<(usize, u64)>) -> Result<RouteRun, String> {
    let mut g = Graph::new();
    let capacity = plan.capacity.map_or(Capacity::Default, Capacity::Bounded);
    let routed = match plan.broadcast {
        true => g.broadcast_queue::<u64>("routed", capacity, plan.block),
        false => g.keyed_queue("routed", capacity, plan.block, key_of),
    };
    let input = plan.forwarders.map(|forwarders| {
        let input = g.queue::<u64>("input");
        g.add(
            "forward",
            forwarders,
            (input,),
            (routed,),
            |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                for msg in i {
                    o.put_msg(msg);
                }
            },
        );
        input
    });
    let out = g.queue::<(usize, HashMap<u32, u64>)>("out");
    let next = Arc::new(AtomicUsize::new(0));
    let taken: Arc<Vec<AtomicU64>> =
        Arc::new((0..plan.replicas).map(|_| AtomicU64::new(0)).collect());
    let fired = Arc::new(AtomicBool::new(false));
    let (state, fired_flag) = ((Arc::clone(&next), Arc::clone(&taken)), Arc::clone(&fired));
    g.add(
        "count",
        plan.replicas,
        (routed,),
        (out,),
        move |(i,): (Inbox<u64>,), (o,): (Outbox<(usize, HashMap<u32, u64>)>,)| {
            let replica = state.0.fetch_add(1, Ordering::SeqCst);
            let mut counts = HashMap::new();
            for msg in i {
                let index = state.1[replica].fetch_add(1, Ordering::SeqCst);
                if fault == Some((replica, index)) {
                    fired_flag.store(true, Ordering::SeqCst);
                    panic!("{INJECTED} in count replica {replica} at message {index}");
                }
                *counts.entry(key_of(&msg.data)).or_insert(0) += 1;
            }
            o.put((replica, counts));
        },
    );
    let mut p = g.start(|c| (c.source(input.unwrap_or(routed)), c.sink(out)));
    let monitor = p.monitor();
    let messages = (plan.keys.iter().enumerate()).map(|(i, &key)| u64::from(key) << 32 | i as u64);
    if plan.through_writer {
        let writer = p.0.writer();
        messages.for_each(|m| writer.put(m));
    } else {
        messages.for_each(|m| p.0.put(m));
    }
    p.0.end();
    let counts = p.1.iter().map(|m| m.data).collect();
    let result = match p.join_timeout(Duration::from_secs(10)) {
        Ok(result) => result,
        Err(timed_out) => return Err(format!("join did not return within 10 s: {timed_out}")),
    };
    drop(p);
    let stats = monitor.stats();
    let named = |name: &str| stats.queues.iter().find(|q| q.name == name).cloned();
    Ok(RouteRun {
        counts,
        taken: taken.iter().map(|t| t.load(Ordering::SeqCst)).collect(),
        fired: fired.load(Ordering::SeqCst),
        result,
        routed: named("routed").expect("the routed queue"),
        input: named("input"),
    })
}

/// Copies of each message that the routed queue counts.
fn copies(plan: &RoutePlan) -> u64 {
    if plan.broadcast {
        plan.replicas as u64
    } else {
        1
    }
}

/// Without a fault: END reaches every replica (each sends its counts), a
/// keyed queue gives each key to one replica, whose count is the count of
/// a single thread, and a broadcast gives every replica every message.
fn check_routes(plan: &RoutePlan) -> Result<(), String> {
    let run = run_routes(plan, None)?;
    if let Err(e) = &run.result {
        return Err(format!("join failed without a fault: {e}"));
    }
    if run.counts.len() != plan.replicas {
        return Err(format!(
            "{} of {} replicas sent their counts: END did not reach every replica",
            run.counts.len(),
            plan.replicas
        ));
    }
    let mut expected: HashMap<u32, u64> = HashMap::new();
    for &key in &plan.keys {
        *expected.entry(key).or_insert(0) += 1;
    }
    if plan.broadcast {
        for (replica, counts) in &run.counts {
            if *counts != expected {
                return Err(format!("replica {replica} did not see every message once"));
            }
        }
    } else {
        let mut merged: HashMap<u32, u64> = HashMap::new();
        for (replica, counts) in &run.counts {
            for (&key, &n) in counts {
                if merged.insert(key, n).is_some() {
                    return Err(format!(
                        "key {key} reached two replicas (one of them {replica})"
                    ));
                }
            }
        }
        if merged != expected {
            return Err("the replicas' counts differ from a single thread's".into());
        }
    }
    let n = plan.keys.len() as u64 * copies(plan);
    let q = &run.routed;
    if (q.put, q.taken, q.dropped, q.discarded) != (n, n, 0, 0) {
        return Err(format!(
            "the routed queue's account is {q:?}, for {n} copies"
        ));
    }
    Ok(())
}

#[test]
fn routed_queues_deliver_by_key_or_to_every_replica() {
    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let counted = Arc::clone(&totals);
    let result = runner().run(&route_plan(), move |plan| {
        counted.count_route_plan(&plan);
        let n = plan.keys.len() as u64 * copies(&plan);
        within(30, move || check_routes(&plan)).map_err(TestCaseError::fail)?;
        counted.delivered.fetch_add(n, Ordering::Relaxed);
        Ok(())
    });
    finish(
        "routed_queues_deliver_by_key_or_to_every_replica",
        &totals,
        start,
        result,
    );
}

/// With a replica that panics: `join` reports exactly that failure, and
/// every copy put is taken by a replica or counted as dropped.
fn check_route_fault(plan: &RoutePlan, fault: (usize, u64)) -> Result<FaultOutcome, String> {
    let run = run_routes(plan, Some(fault))?;
    let taken: u64 = run.taken.iter().sum();
    let copies = copies(plan);
    let n = plan.keys.len() as u64 * copies;
    if !run.fired {
        if let Err(e) = &run.result {
            return Err(format!("the fault did not fire, yet join failed: {e}"));
        }
        if taken != n {
            return Err(format!(
                "the fault did not fire, yet {taken} of {n} copies were taken"
            ));
        }
        return Ok(FaultOutcome {
            fired: false,
            delivered: taken,
            dropped: 0,
            lost: 0,
        });
    }
    let error = match run.result {
        Ok(()) => return Err("the fault fired, yet join returned Ok".into()),
        Err(e) => e,
    };
    let [failure] = error.failures() else {
        return Err(format!("not exactly the injected failure: {error}"));
    };
    if failure.worker != "count" || error.is_cancelled() {
        return Err(format!("not exactly the injected failure: {error}"));
    }
    // A forwarder that lost every reader dropped its input's rest, each
    // message of it `copies` copies never made.
    let input_dropped = run.input.as_ref().map_or(0, |q| q.dropped);
    let accounted = taken + run.routed.dropped + copies * input_dropped;
    if accounted != n || error.dropped() != run.routed.dropped + input_dropped {
        return Err(format!(
            "{n} copies put: {taken} taken + {} dropped + {copies} x {input_dropped} dropped before \
             the route = {accounted}; join says {} dropped ({error})",
            run.routed.dropped,
            error.dropped()
        ));
    }
    Ok(FaultOutcome {
        fired: true,
        delivered: taken,
        dropped: error.dropped(),
        lost: 0,
    })
}

#[test]
fn a_failing_replica_of_a_routed_queue_accounts_for_every_message() {
    quiet_injected_panics();
    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let counted = Arc::clone(&totals);
    let strategy = (
        route_plan(),
        any::<usize>(),
        prop_oneof![3 => 0..64u64, 1 => 0..2000u64],
    )
        .prop_map(|(plan, replica, index)| {
            let fault = (replica % plan.replicas, index);
            (plan, fault)
        });
    let result = runner().run(&strategy, move |(plan, fault)| {
        counted.count_route_plan(&plan);
        counted.faults.fetch_add(1, Ordering::Relaxed);
        let outcome =
            within(30, move || check_route_fault(&plan, fault)).map_err(TestCaseError::fail)?;
        counted
            .delivered
            .fetch_add(outcome.delivered, Ordering::Relaxed);
        counted
            .dropped
            .fetch_add(outcome.dropped, Ordering::Relaxed);
        (counted.fired).fetch_add(u64::from(outcome.fired), Ordering::Relaxed);
        Ok(())
    });
    finish(
        "a_failing_replica_of_a_routed_queue_accounts_for_every_message",
        &totals,
        start,
        result,
    );
}

// ---------------------------------------------------------------------------
// The generator itself
// ---------------------------------------------------------------------------

/// The generated graphs are well formed: acyclic (producers before
/// consumers), every source read, every queue read is produced or a
/// source, shapes within 1-2 inputs and outputs, and every shape and
/// feature turns up.
#[test]
fn the_generator_makes_well_formed_graphs_of_every_shape() {
    let mut runner = runner();
    let mut shapes = [[0u32; 2]; 2];
    let (mut shared_reads, mut shared_writes, mut two_sources) = (0, 0, 0);
    let strategy = plan();
    for _ in 0..2000 {
        let plan = strategy.new_tree(&mut runner).expect("a plan").current();
        assert!((1..=MAX_SOURCES).contains(&plan.sources));
        assert!((1..=MAX_WORKERS).contains(&plan.workers.len()));
        two_sources += u32::from(plan.sources == 2);
        let mut readers = vec![0; plan.queues.len()];
        let mut writers = vec![0; plan.queues.len()];
        for (i, w) in plan.workers.iter().enumerate() {
            assert!((1..=2).contains(&w.inputs.len()), "{plan:?}");
            assert!((1..=2).contains(&w.outputs.len()), "{plan:?}");
            assert!((1..=4).contains(&w.replicas));
            shapes[w.inputs.len() - 1][w.outputs.len() - 1] += 1;
            for &q in &w.inputs {
                assert!(
                    q < plan.sources || writers[q] > 0,
                    "w{i} reads q{q}, which nothing produces yet: {plan:?}"
                );
                readers[q] += 1;
            }
            for &q in &w.outputs {
                assert!(q >= plan.sources, "w{i} writes a source: {plan:?}");
                assert_eq!(readers[q], 0, "w{i} writes q{q} after it is read: {plan:?}");
                writers[q] += 1;
            }
            assert!(w.inputs.iter().all(|q| !w.outputs.contains(q)));
        }
        for q in 0..plan.queues.len() {
            if q < plan.sources {
                assert!(readers[q] > 0, "source q{q} is never read: {plan:?}");
            } else {
                assert!(writers[q] > 0, "q{q} is never produced: {plan:?}");
                assert_eq!(readers[q] == 0, plan.sinks.contains(&q), "{plan:?}");
            }
            shared_reads += u32::from(readers[q] > 1);
            shared_writes += u32::from(writers[q] > 1);
            if let Some(c) = plan.queues[q].capacity {
                assert!((1..=64).contains(&c));
            }
        }
        assert!(!plan.sinks.is_empty());
    }
    assert!(shapes.iter().flatten().all(|&n| n > 0), "{shapes:?}");
    assert!(shared_reads > 0 && shared_writes > 0 && two_sources > 0);
}
