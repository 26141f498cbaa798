//! Throughput, memory and latency of ezq against hand-written
//! crossbeam-channel code: `cargo bench --bench pipeline`.
//!
//! Every variant of a (topology, N, W) cell runs in the same process,
//! round-robin, several times; the whole matrix runs so in two processes,
//! one after the other, and the table shows the worse of their medians: a
//! bounded channel runs at one of two speeds, and which one a process gets
//! is luck, so a figure that one lucky process met is not reported. Peak memory comes
//! from one run of each variant in a child process (this binary, re-run with
//! `child TOPOLOGY VARIANT N W`), which prints its own `VmHWM`.
//!
//! Other modes (arguments starting with `--`, such as the `--bench` that
//! cargo passes, are ignored):
//!
//! - `quick`: N = 10^5 only, one repetition, a smoke test of every path.
//! - `reps=K`: exactly K repetitions instead of as many as fit the budget.
//! - `latency`: only the latency and held-back sections.
//! - `cell TOPOLOGY N W [reps=K]`: one cell, hand-written `Msg` against
//!   `pipeline!` only.
//! - `python-compare N`: the `sum` topology at N messages with
//!   `num_cpus()` workers, for `benches/compare-python.sh`.
//! - `child TOPOLOGY VARIANT N W`: one run, then `vmhwm_kib=..` on stdout.
//! - `matrix [quick] [reps=K] [budget=SECONDS]`: one process's share of the
//!   matrix, every measurement on stdout, for the parent.
//! - `keyed [quick]`: only the keyed-merge section (wordfreq-like counting,
//!   one merger against a keyed queue's `merge * W`), which the full run
//!   prints after the sortiter figures.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use ezq::{Inbox, Msg, Outbox, Queue, pipeline, worker};

/// The capacity of every hand-made queue (and ezq's default).
const CAP: usize = 1024;

/// The largest reorder buffer a collatz printer saw in this process.
static MAX_PARKED: AtomicUsize = AtomicUsize::new(0);

fn note_parked(parked: usize) {
    MAX_PARKED.fetch_max(parked, AtomicOrdering::Relaxed);
}

// ---------------------------------------------------------------------------
// The variants.
// ---------------------------------------------------------------------------

/// Runs one topology once with `n` messages and `w` workers; returns a
/// checksum that the caller checks (and panics itself on a wrong result).
type RunFn = fn(n: u64, w: usize) -> u64;

/// One way of writing both topologies.
struct Variant {
    name: &'static str,
    /// The hand-written variant that sends the same message type: the
    /// table's ratio column divides by it.
    baseline: Option<&'static str>,
    sum: RunFn,
    collatz: RunFn,
}

/// Every variant runs in every cell of the matrix, in the memory children
/// and in `python-compare`. The batched ones: `crossbeam-batch` sends
/// blocks by hand; `pipeline-batch` feeds a batched `pipeline!` through
/// `Source::put` (a lock per message, usable from any thread);
/// `pipeline-writer` through a `SourceWriter` (one thread, no lock).
const VARIANTS: &[Variant] = &[
    Variant {
        name: "crossbeam-bare",
        baseline: None,
        sum: sum_crossbeam_bare,
        collatz: collatz_crossbeam_bare,
    },
    Variant {
        name: "crossbeam-msg",
        baseline: Some("crossbeam-bare"),
        sum: sum_crossbeam_msg,
        collatz: collatz_crossbeam_msg,
    },
    Variant {
        name: "runtime-api",
        baseline: Some("crossbeam-msg"),
        sum: sum_runtime_api,
        collatz: collatz_runtime_api,
    },
    Variant {
        name: "pipeline",
        baseline: Some("crossbeam-msg"),
        sum: sum_pipeline,
        collatz: collatz_pipeline,
    },
    Variant {
        name: "crossbeam-batch",
        baseline: Some("crossbeam-msg"),
        sum: sum_crossbeam_batch,
        collatz: collatz_crossbeam_batch,
    },
    Variant {
        name: "pipeline-batch",
        baseline: Some("crossbeam-batch"),
        sum: sum_pipeline_batch,
        collatz: collatz_pipeline_batch,
    },
    Variant {
        name: "pipeline-writer",
        baseline: Some("crossbeam-batch"),
        sum: sum_pipeline_writer,
        collatz: collatz_pipeline_writer,
    },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Topology {
    Sum,
    Collatz,
}

impl Topology {
    const ALL: [Topology; 2] = [Topology::Sum, Topology::Collatz];

    fn name(self) -> &'static str {
        match self {
            Topology::Sum => "sum",
            Topology::Collatz => "collatz",
        }
    }

    fn parse(s: &str) -> Option<Topology> {
        Topology::ALL.into_iter().find(|t| t.name() == s)
    }

    fn run_fn(self, v: &Variant) -> RunFn {
        match self {
            Topology::Sum => v.sum,
            Topology::Collatz => v.collatz,
        }
    }

    /// Runs the variant once, checks its result, returns the elapsed time.
    fn run(self, v: &Variant, n: u64, w: usize) -> Duration {
        let start = Instant::now();
        let got = (self.run_fn(v))(black_box(n), w);
        let elapsed = start.elapsed();
        let want = self.expected(n);
        assert_eq!(
            got,
            want,
            "{} {} N={n} W={w}: wrong checksum",
            self.name(),
            v.name
        );
        elapsed
    }

    fn expected(self, n: u64) -> u64 {
        match self {
            Topology::Sum => n * n.saturating_sub(1) / 2,
            Topology::Collatz => (0..n).fold(0, |h, i| mix(h, i, i, collatz_step(i))),
        }
    }
}

fn collatz_step(n: u64) -> u64 {
    if n % 2 == 0 { n / 2 } else { 3 * n + 1 }
}

/// An order-dependent fold of one collatz result into the checksum.
fn mix(h: u64, order: u64, n: u64, next: u64) -> u64 {
    (h.rotate_left(5) ^ order ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ next.rotate_left(32))
        .wrapping_mul(0x0000_0100_0000_01B3)
}

fn kind_of(i: u64) -> &'static str {
    if i % 2 == 0 { "EVEN" } else { "ODD" }
}

// --- hand-written reorder buffer (the crossbeam variants' `sortiter`) ------

/// A heap entry ordered by `order` alone.
struct Keyed<T> {
    order: u64,
    item: T,
}

impl<T> PartialEq for Keyed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl<T> Eq for Keyed<T> {}

impl<T> PartialOrd for Keyed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Keyed<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order.cmp(&other.order)
    }
}

/// Releases items in order 0, 1, 2, ...; parks early ones in a min-heap.
struct Reorder<T> {
    next: u64,
    heap: BinaryHeap<Reverse<Keyed<T>>>,
    max_parked: usize,
}

impl<T> Reorder<T> {
    fn new() -> Self {
        Reorder {
            next: 0,
            heap: BinaryHeap::new(),
            max_parked: 0,
        }
    }

    fn push(&mut self, order: u64, item: T, mut emit: impl FnMut(u64, T)) {
        if order != self.next {
            self.heap.push(Reverse(Keyed { order, item }));
            self.max_parked = self.max_parked.max(self.heap.len());
            return;
        }
        emit(order, item);
        self.next += 1;
        while self
            .heap
            .peek()
            .is_some_and(|Reverse(k)| k.order == self.next)
        {
            let Some(Reverse(k)) = self.heap.pop() else {
                unreachable!()
            };
            emit(k.order, k.item);
            self.next += 1;
        }
    }

    /// The number of items released; every item must have been released.
    fn finish(self) -> u64 {
        assert!(self.heap.is_empty(), "reorder buffer left with a gap");
        note_parked(self.max_parked);
        self.next
    }
}

// --- 1. crossbeam-bare ------------------------------------------------------

fn sum_crossbeam_bare(n: u64, w: usize) -> u64 {
    let (tx, rx) = bounded::<u64>(CAP);
    let (out_tx, out_rx) = bounded::<u64>(CAP);
    let workers: Vec<_> = (0..w)
        .map(|_| {
            let (rx, out_tx) = (rx.clone(), out_tx.clone());
            thread::spawn(move || {
                let mut total = 0u64;
                for x in rx {
                    total += x;
                }
                out_tx.send(total).unwrap();
            })
        })
        .collect();
    drop((rx, out_tx));
    for i in 0..n {
        tx.send(i).unwrap();
    }
    drop(tx);
    let total = out_rx.iter().sum();
    for t in workers {
        t.join().unwrap();
    }
    total
}

fn collatz_crossbeam_bare(n: u64, w: usize) -> u64 {
    // In: (order, n); the kind is n's parity. Out: (order, n, next).
    let (tx, rx) = bounded::<(u64, u64)>(CAP);
    let (out_tx, out_rx) = bounded::<(u64, u64, u64)>(CAP);
    let workers: Vec<_> = (0..w)
        .map(|_| {
            let (rx, out_tx) = (rx.clone(), out_tx.clone());
            thread::spawn(move || {
                for (order, n) in rx {
                    let next = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
                    out_tx.send((order, n, next)).unwrap();
                }
            })
        })
        .collect();
    drop((rx, out_tx));
    let printer = thread::spawn(move || {
        let mut reorder = Reorder::new();
        let mut h = 0;
        for (order, n, next) in out_rx {
            reorder.push(order, (n, next), |o, (n, next)| h = mix(h, o, n, next));
        }
        assert_eq!(reorder.finish(), n);
        h
    });
    for i in 0..n {
        tx.send((i, i)).unwrap();
    }
    drop(tx);
    for t in workers {
        t.join().unwrap();
    }
    printer.join().unwrap()
}

// --- 2. crossbeam-msg -------------------------------------------------------

fn sum_crossbeam_msg(n: u64, w: usize) -> u64 {
    let (tx, rx) = bounded::<Msg<u64>>(CAP);
    let (out_tx, out_rx) = bounded::<Msg<u64>>(CAP);
    let workers: Vec<_> = (0..w)
        .map(|_| {
            let (rx, out_tx) = (rx.clone(), out_tx.clone());
            thread::spawn(move || {
                let mut total = 0u64;
                for msg in rx {
                    total += msg.data;
                }
                out_tx.send(Msg::new(total)).unwrap();
            })
        })
        .collect();
    drop((rx, out_tx));
    for i in 0..n {
        tx.send(Msg::new(i)).unwrap();
    }
    drop(tx);
    let total = out_rx.iter().map(|msg| msg.data).sum();
    for t in workers {
        t.join().unwrap();
    }
    total
}

fn collatz_crossbeam_msg(n: u64, w: usize) -> u64 {
    let (tx, rx) = bounded::<Msg<u64>>(CAP);
    let (out_tx, out_rx) = bounded::<Msg<(u64, u64)>>(CAP);
    let workers: Vec<_> = (0..w)
        .map(|_| {
            let (rx, out_tx): (Receiver<Msg<u64>>, Sender<_>) = (rx.clone(), out_tx.clone());
            thread::spawn(move || {
                for msg in rx {
                    let n = msg.data;
                    if msg.kind == "EVEN" {
                        out_tx.send(Msg::new((n, n / 2)).order(msg.order)).unwrap();
                    } else if msg.kind == "ODD" {
                        out_tx
                            .send(Msg::new((n, 3 * n + 1)).order(msg.order))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    drop((rx, out_tx));
    let printer = thread::spawn(move || {
        let mut reorder = Reorder::new();
        let mut h = 0;
        for msg in out_rx {
            reorder.push(msg.order, msg, |o, msg| {
                h = mix(h, o, msg.data.0, msg.data.1);
            });
        }
        assert_eq!(reorder.finish(), n);
        h
    });
    for i in 0..n {
        tx.send(Msg::new(i).kind(kind_of(i)).order(i)).unwrap();
    }
    drop(tx);
    for t in workers {
        t.join().unwrap();
    }
    printer.join().unwrap()
}

// --- 3. runtime-api ---------------------------------------------------------

fn sum_runtime_api(n: u64, w: usize) -> u64 {
    let in_q = Queue::bounded(CAP);
    let out_q = Queue::bounded(CAP);
    let workers: Vec<ezq::Worker> = (0..w)
        .map(|_| {
            let (in_q, out_q) = (in_q.clone(), out_q.clone());
            ezq::run(move || {
                let mut total = 0u64;
                for msg in ezq::iter_msg(&in_q) {
                    total += msg.data;
                }
                ezq::put_msg(&out_q, total);
            })
        })
        .collect();
    for i in 0..n {
        ezq::put_msg(&in_q, i);
    }
    ezq::endq_and_wait(&in_q, workers).expect("a summer failed");
    ezq::iter_q(&out_q).map(|msg| msg.data).sum()
}

fn collatz_runtime_api(n: u64, w: usize) -> u64 {
    let read_q = Queue::bounded(CAP);
    let write_q = Queue::<(u64, u64)>::bounded(CAP);
    let result_q = Queue::new();
    let readers: Vec<ezq::Worker> = (0..w)
        .map(|_| {
            let (read_q, write_q) = (read_q.clone(), write_q.clone());
            ezq::run_named("collatz", move || {
                for msg in ezq::iter_msg(&read_q) {
                    let n: u64 = msg.data;
                    if msg.kind == "EVEN" {
                        ezq::put_msg(&write_q, Msg::new((n, n / 2)).order(msg.order));
                    } else if msg.kind == "ODD" {
                        ezq::put_msg(&write_q, Msg::new((n, 3 * n + 1)).order(msg.order));
                    }
                }
            })
        })
        .collect();
    let printer = {
        let (write_q, result_q) = (write_q.clone(), result_q.clone());
        ezq::run_named("printer", move || {
            let mut h = 0;
            let mut count = 0;
            let mut max_parked = 0;
            let mut sorted = ezq::sortiter(ezq::iter_msg(&write_q));
            while let Some(msg) = sorted.next() {
                max_parked = max_parked.max(sorted.parked());
                h = mix(h, msg.order, msg.data.0, msg.data.1);
                count += 1;
            }
            note_parked(max_parked);
            assert_eq!(count, n);
            ezq::put_msg(&result_q, h);
        })
    };
    for i in 0..n {
        ezq::put_msg(&read_q, Msg::new(i).kind(kind_of(i)).order(i));
    }
    ezq::endq_and_wait(&read_q, readers).expect("a collatz worker failed");
    ezq::endq_and_wait(&write_q, [printer]).expect("the printer failed");
    let result = ezq::iter_q(&result_q).next();
    result.expect("the printer put no checksum").data
}

// --- 4. pipeline ------------------------------------------------------------

#[worker]
fn summer(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    let mut total = 0;
    for msg in inbox {
        total += msg.data;
    }
    outbox.put(total);
}

#[worker]
fn collatz(read_q: Inbox<u64>, write_q: Outbox<(u64, u64)>) {
    for msg in read_q {
        let n = msg.data;
        if msg.kind == "EVEN" {
            write_q.put_msg(Msg::new((n, n / 2)).order(msg.order));
        } else if msg.kind == "ODD" {
            write_q.put_msg(Msg::new((n, 3 * n + 1)).order(msg.order));
        }
    }
}

#[worker]
fn printer(write_q: Inbox<(u64, u64)>, result_q: Outbox<(u64, u64)>) {
    let (mut h, mut count, mut max_parked) = (0, 0, 0);
    let mut sorted = ezq::sortiter(write_q);
    while let Some(msg) = sorted.next() {
        max_parked = max_parked.max(sorted.parked());
        h = mix(h, msg.order, msg.data.0, msg.data.1);
        count += 1;
    }
    note_parked(max_parked);
    result_q.put((h, count));
}

fn sum_pipeline(n: u64, w: usize) -> u64 {
    let p = pipeline! {
        in_q -> summer * w -> out_q;
    };
    for i in 0..n {
        p.in_q.put(i);
    }
    p.in_q.end();
    let total = p.out_q.iter().map(|msg| msg.data).sum();
    p.join().expect("a summer failed");
    total
}

fn collatz_pipeline(n: u64, w: usize) -> u64 {
    let p = pipeline! {
        read_q -> collatz * w -> write_q -> printer -> result_q;
    };
    for i in 0..n {
        p.read_q.put_msg(Msg::new(i).kind(kind_of(i)).order(i));
    }
    p.read_q.end();
    let result = p.result_q.recv().expect("the printer put no checksum");
    p.join().expect("a worker failed");
    let (h, count) = result.data;
    assert_eq!(count, n);
    h
}

// --- 5. crossbeam-batch: hand-batched, blocks of `Msg` ------------------------

/// Messages per block in both batched variants.
const BLOCK: usize = 1024;

/// Blocks a hand-batched queue holds: the same room as ezq's batched queue
/// gets by default. (With room for one block, both sides take turns
/// waiting, and either version runs several times slower.)
const BLOCK_SLOTS: usize = ezq::graph::DEFAULT_BLOCKS;

/// A hand-written batching sender: collects messages, sends full blocks.
struct BlockSender<T> {
    tx: Sender<Vec<T>>,
    block: Vec<T>,
}

impl<T> BlockSender<T> {
    fn new(tx: Sender<Vec<T>>) -> Self {
        BlockSender {
            tx,
            block: Vec::with_capacity(BLOCK),
        }
    }

    fn send(&mut self, item: T) {
        self.block.push(item);
        if self.block.len() == BLOCK {
            let full = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
            self.tx.send(full).unwrap();
        }
    }

    fn finish(self) {
        if !self.block.is_empty() {
            self.tx.send(self.block).unwrap();
        }
    }
}

fn sum_crossbeam_batch(n: u64, w: usize) -> u64 {
    let (tx, rx) = bounded::<Vec<Msg<u64>>>(BLOCK_SLOTS);
    let (out_tx, out_rx) = bounded::<Msg<u64>>(CAP);
    let workers: Vec<_> = (0..w)
        .map(|_| {
            let (rx, out_tx) = (rx.clone(), out_tx.clone());
            thread::spawn(move || {
                let mut total = 0u64;
                for block in rx {
                    for msg in block {
                        total += msg.data;
                    }
                }
                out_tx.send(Msg::new(total)).unwrap();
            })
        })
        .collect();
    drop((rx, out_tx));
    let mut sender = BlockSender::new(tx);
    for i in 0..n {
        sender.send(Msg::new(i));
    }
    sender.finish();
    let total = out_rx.iter().map(|msg| msg.data).sum();
    for t in workers {
        t.join().unwrap();
    }
    total
}

fn collatz_crossbeam_batch(n: u64, w: usize) -> u64 {
    let (tx, rx) = bounded::<Vec<Msg<u64>>>(BLOCK_SLOTS);
    let (out_tx, out_rx) = bounded::<Vec<Msg<(u64, u64)>>>(BLOCK_SLOTS);
    let workers: Vec<_> = (0..w)
        .map(|_| {
            let (rx, out_tx) = (rx.clone(), out_tx.clone());
            thread::spawn(move || {
                let mut out = BlockSender::new(out_tx);
                for block in rx {
                    for msg in block {
                        let n = msg.data;
                        if msg.kind == "EVEN" {
                            out.send(Msg::new((n, n / 2)).order(msg.order));
                        } else if msg.kind == "ODD" {
                            out.send(Msg::new((n, 3 * n + 1)).order(msg.order));
                        }
                    }
                }
                out.finish();
            })
        })
        .collect();
    drop((rx, out_tx));
    let printer = thread::spawn(move || {
        let mut reorder = Reorder::new();
        let mut h = 0;
        for block in out_rx {
            for msg in block {
                reorder.push(msg.order, msg, |o, msg| {
                    h = mix(h, o, msg.data.0, msg.data.1);
                });
            }
        }
        assert_eq!(reorder.finish(), n);
        h
    });
    let mut sender = BlockSender::new(tx);
    for i in 0..n {
        sender.send(Msg::new(i).kind(kind_of(i)).order(i));
    }
    sender.finish();
    for t in workers {
        t.join().unwrap();
    }
    printer.join().unwrap()
}

// --- 6, 7. pipeline-batch, pipeline-writer: `pipeline!` with batched queues,
// fed through `Source::put` or through a `SourceWriter` -----------------------

fn sum_pipeline_batch(n: u64, w: usize) -> u64 {
    sum_batched(n, w, false)
}

fn sum_pipeline_writer(n: u64, w: usize) -> u64 {
    sum_batched(n, w, true)
}

fn sum_batched(n: u64, w: usize, through_writer: bool) -> u64 {
    let p = pipeline! {
        in_q[batch BLOCK] -> summer * w -> out_q;
    };
    if through_writer {
        let writer = p.in_q.writer();
        for i in 0..n {
            writer.put(i);
        }
    } else {
        for i in 0..n {
            p.in_q.put(i);
        }
    }
    p.in_q.end();
    let total = p.out_q.iter().map(|msg| msg.data).sum();
    p.join().expect("a summer failed");
    total
}

fn collatz_pipeline_batch(n: u64, w: usize) -> u64 {
    collatz_batched(n, w, false)
}

fn collatz_pipeline_writer(n: u64, w: usize) -> u64 {
    collatz_batched(n, w, true)
}

fn collatz_batched(n: u64, w: usize, through_writer: bool) -> u64 {
    let p = pipeline! {
        read_q[batch BLOCK] -> collatz * w -> write_q[batch BLOCK] -> printer -> result_q;
    };
    let msg = |i| Msg::new(i).kind(kind_of(i)).order(i);
    if through_writer {
        let writer = p.read_q.writer();
        for i in 0..n {
            writer.put_msg(msg(i));
        }
    } else {
        for i in 0..n {
            p.read_q.put_msg(msg(i));
        }
    }
    p.read_q.end();
    let result = p.result_q.recv().expect("the printer put no checksum");
    p.join().expect("a worker failed");
    let (h, count) = result.data;
    assert_eq!(count, n);
    h
}

// ---------------------------------------------------------------------------
// Latency: one message through source -> a -> q1 -> b -> q2 -> c -> sink.
// ---------------------------------------------------------------------------

#[worker]
fn stage_a(x: u64) -> u64 {
    x + 1
}

#[worker]
fn stage_b(x: u64) -> u64 {
    x + 1
}

#[worker]
fn stage_c(x: u64) -> u64 {
    x + 1
}

/// The hand-written 3-stage pipeline: the source and the sink.
struct HandChain {
    src: Option<Sender<u64>>,
    sink: Receiver<u64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl HandChain {
    fn new() -> Self {
        let (src, mut rx) = bounded::<u64>(CAP);
        let mut threads = Vec::new();
        for _ in 0..3 {
            let (tx, next_rx) = bounded::<u64>(CAP);
            let stage_rx = std::mem::replace(&mut rx, next_rx);
            threads.push(thread::spawn(move || {
                for x in stage_rx {
                    tx.send(x + 1).unwrap();
                }
            }));
        }
        HandChain {
            src: Some(src),
            sink: rx,
            threads,
        }
    }

    fn round_trip(&self, x: u64) -> u64 {
        self.src.as_ref().unwrap().send(x).unwrap();
        self.sink.recv().unwrap()
    }

    fn join(mut self) {
        drop(self.src.take());
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

// --- held back: a message put while its reader is busy, by a producer that
// then computes (no wait on the pipeline flushes its block) -------------

/// Rounds of the held-back measurement.
static HELD_ROUNDS: AtomicUsize = AtomicUsize::new(0);

/// Each round: puts two messages stamped with the time since `base`, then
/// computes for 2 ms without touching the pipeline.
#[worker]
fn put_pair_then_compute(out: Outbox<u64>, base: Instant) {
    for _ in 0..HELD_ROUNDS.load(AtomicOrdering::Relaxed) {
        let now = base.elapsed().as_nanos() as u64;
        out.put(now);
        out.put(now);
        let until = Instant::now() + Duration::from_millis(2);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
}

/// Busy for 500 us with the first message of each pair, so that the
/// second waits in its producer's block; reports how long the second
/// waited after this reader was free again.
#[worker]
fn held_back(inbox: Inbox<u64>, out: Outbox<u64>, base: Instant) {
    let mut first = true;
    let mut free_at = 0;
    for msg in inbox {
        if first {
            let until = Instant::now() + Duration::from_micros(500);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            free_at = base.elapsed().as_nanos() as u64;
        } else {
            let now = base.elapsed().as_nanos() as u64;
            out.put(now.saturating_sub(free_at.max(msg.data)));
        }
        first = !first;
    }
}

/// Prints how long a message waited for its block while its producer
/// computed and its reader was free: the flusher's bound, measured.
fn held_back_section(quick: bool) {
    let rounds = if quick { 50 } else { 500 };
    HELD_ROUNDS.store(rounds, AtomicOrdering::Relaxed);
    let base = Instant::now();
    let p = pipeline! { () -> put_pair_then_compute(base) -> pairs -> held_back(base) -> waits; };
    let mut waits: Vec<Duration> = p
        .waits
        .iter()
        .map(|m| Duration::from_nanos(m.data))
        .collect();
    p.join().expect("held-back pipeline failed");
    assert_eq!(waits.len(), rounds);
    waits.sort();
    println!(
        "held back: {rounds} messages put while their reader was busy, by a producer that then computed 2 ms; wait after the reader was free, us: p50 {:.1}, p99 {:.1}, max {:.1}",
        percentile(&waits, 0.50).as_secs_f64() * 1e6,
        percentile(&waits, 0.99).as_secs_f64() * 1e6,
        waits.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
    );
    println!();
}

/// Warm-up round trips before a block is timed.
const WARM_UP: u64 = 100;

/// Times `rounds` round trips through a fresh hand-written chain, the only
/// one alive while it runs.
fn latency_block_hand(rounds: u64, pause: Duration, out: &mut Vec<Duration>) {
    let hand = HandChain::new();
    for i in 0..WARM_UP + rounds {
        if !pause.is_zero() {
            thread::sleep(pause);
        }
        let start = Instant::now();
        let y = hand.round_trip(i);
        let elapsed = start.elapsed();
        assert_eq!(y, i + 3);
        if i >= WARM_UP {
            out.push(elapsed);
        }
    }
    hand.join();
}

/// The same through a fresh `pipeline!` of three map workers.
fn latency_block_pipeline(rounds: u64, pause: Duration, out: &mut Vec<Duration>) {
    let p = pipeline! {
        src -> stage_a -> q1 -> stage_b -> q2 -> stage_c -> sink;
    };
    latency_rounds(&p.src, &p.sink, rounds, pause, out);
    p.join().expect("a stage failed");
}

/// The same chain with every queue batched by 1024: a lone message must
/// not wait for its block to fill.
fn latency_block_pipeline_batch(rounds: u64, pause: Duration, out: &mut Vec<Duration>) {
    let p = pipeline! {
        src[batch BLOCK] -> stage_a -> q1[batch BLOCK] -> stage_b -> q2[batch BLOCK] -> stage_c -> sink[batch BLOCK];
    };
    latency_rounds(&p.src, &p.sink, rounds, pause, out);
    p.join().expect("a stage failed");
}

fn latency_rounds(
    src: &ezq::Source<u64>,
    sink: &ezq::Sink<u64>,
    rounds: u64,
    pause: Duration,
    out: &mut Vec<Duration>,
) {
    let p = (src, sink);
    for i in 0..WARM_UP + rounds {
        if !pause.is_zero() {
            thread::sleep(pause);
        }
        let start = Instant::now();
        p.0.put(i);
        let y = p.1.recv().map(|m| m.data);
        let elapsed = start.elapsed();
        assert_eq!(y, Some(i + 3));
        if i >= WARM_UP {
            out.push(elapsed);
        }
    }
}

struct Latency {
    label: String,
    crossbeam: Vec<Duration>,
    pipeline: Vec<Duration>,
    pipeline_batch: Vec<Duration>,
}

/// `rounds` round trips for each chain, in 10 blocks that alternate between
/// them; only one chain exists at a time, so no other thread competes.
fn measure_latency(rounds: u64, pause: Duration) -> Latency {
    let (mut crossbeam, mut piped, mut batched) = (Vec::new(), Vec::new(), Vec::new());
    let blocks = 10;
    for block in 0..blocks {
        if block % 2 == 0 {
            latency_block_hand(rounds / blocks, pause, &mut crossbeam);
            latency_block_pipeline(rounds / blocks, pause, &mut piped);
            latency_block_pipeline_batch(rounds / blocks, pause, &mut batched);
        } else {
            latency_block_pipeline_batch(rounds / blocks, pause, &mut batched);
            latency_block_pipeline(rounds / blocks, pause, &mut piped);
            latency_block_hand(rounds / blocks, pause, &mut crossbeam);
        }
    }
    let label = if pause.is_zero() {
        "back to back".to_owned()
    } else {
        format!("after {} us idle", pause.as_micros())
    };
    Latency {
        label,
        crossbeam,
        pipeline: piped,
        pipeline_batch: batched,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

// ---------------------------------------------------------------------------
// sortiter: 10^6 messages shuffled within windows of 1,000.
// ---------------------------------------------------------------------------

/// splitmix64: a small deterministic PRNG.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn shuffled_messages(n: u64, window: u64) -> Vec<Msg<u64>> {
    let mut rng = SplitMix(0x5EED);
    let mut orders: Vec<u64> = (0..n).collect();
    for block in orders.chunks_mut(window as usize) {
        for i in (1..block.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            block.swap(i, j);
        }
    }
    orders
        .into_iter()
        .map(|o| Msg::new(o * 3).order(o))
        .collect()
}

/// Consumes the input through `ezq::sortiter`, checking the output order.
fn run_sortiter(input: Vec<Msg<u64>>) -> u64 {
    let n = input.len() as u64;
    let mut expected = 0;
    for msg in ezq::sortiter(input) {
        assert_eq!(msg.order, expected, "sortiter out of order");
        assert_eq!(msg.data, expected * 3);
        expected += 1;
    }
    assert_eq!(expected, n);
    expected
}

/// The same through the hand-written heap of the crossbeam variants.
fn run_hand_reorder(input: Vec<Msg<u64>>) -> u64 {
    let n = input.len() as u64;
    let mut expected = 0;
    let mut reorder = Reorder::new();
    for msg in input {
        reorder.push(msg.order, msg, |o, msg| {
            assert_eq!(o, expected, "reorder out of order");
            assert_eq!(msg.data, expected * 3);
            expected += 1;
        });
    }
    assert_eq!(reorder.finish(), n);
    expected
}

// ---------------------------------------------------------------------------
// Keyed merge: wordfreq-like counting, one merger against `merge * W`
// behind a keyed queue.
// ---------------------------------------------------------------------------

/// Distinct words of the keyed-merge section: enough that the mergers'
/// maps do not fit a core's cache, as a real vocabulary does not.
const VOCABULARY: u64 = 200_000;

/// The word of the `i`th count and its count: a skewed draw (the square
/// of a uniform one), as words are.
fn word_count(i: u64) -> (u64, u64) {
    let r = mix(0, i, i, 0);
    let u = (r >> 40) as f64 / (1u64 << 24) as f64;
    ((u * u * VOCABULARY as f64) as u64, 1 + (r & 3))
}

fn word_id(count: &(u64, u64)) -> u64 {
    count.0
}

/// Work that takes `rounds` dependent multiply-adds: what a stateful
/// reader heavier than a counter (a session builder, a deduplicator)
/// spends per message.
fn busy(rounds: u32, seed: u64) -> u64 {
    (0..rounds).fold(seed, |x, i| {
        black_box(x)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(i))
    })
}

/// Adds up the counts of the words it sees, spending `rounds` of extra
/// work per count; sends a checksum of its totals (which adds up across
/// mergers whose words do not overlap).
#[worker]
fn count_words(counts: Inbox<(u64, u64)>, totals: Outbox<u64>, rounds: u32) {
    let mut total: HashMap<u64, u64> = HashMap::new();
    let mut extra = 0u64;
    for msg in counts {
        *total.entry(msg.data.0).or_insert(0) += msg.data.1;
        extra ^= busy(rounds, msg.data.0);
    }
    black_box(extra);
    totals.put(word_checksum(&total));
}

/// A checksum of word totals that adds up over disjoint parts.
fn word_checksum(total: &HashMap<u64, u64>) -> u64 {
    let sum = total
        .iter()
        .map(|(w, n)| w.wrapping_mul(0x9E37_79B9) ^ n.rotate_left(17));
    sum.fold(0u64, u64::wrapping_add)
}

/// `n` counts through one merger (`w == 0`) or through a keyed queue to
/// `count_words * w`, fed through a writer; returns the checksum.
fn keyed_merge(n: u64, w: usize, rounds: u32) -> u64 {
    let feed = |source: &ezq::Source<(u64, u64)>| {
        let writer = source.writer();
        for i in 0..n {
            writer.put(word_count(i));
        }
    };
    let (p, sum) = if w == 0 {
        let p = pipeline! { counts[batch 256] -> count_words(rounds) -> totals; };
        feed(&p.counts);
        p.counts.end();
        let sum = p.totals.iter().map(|m| m.data).fold(0, u64::wrapping_add);
        (p.join(), sum)
    } else {
        let p = pipeline! { counts[by word_id, batch 256] -> count_words(rounds) * w -> totals; };
        feed(&p.counts);
        p.counts.end();
        let sum = p.totals.iter().map(|m| m.data).fold(0, u64::wrapping_add);
        (p.join(), sum)
    };
    p.expect("a merger failed");
    sum
}

/// Prints the keyed-merge section: ns per count of one merger and of
/// `merge * W` behind a keyed queue, interleaved, for a merger that only
/// counts and for one that does more per count.
fn keyed_section(quick: bool) {
    let n: u64 = if quick { 100_000 } else { 2_000_000 };
    let reps = if quick { 1 } else { 7 };
    let expected = {
        let mut total: HashMap<u64, u64> = HashMap::new();
        for i in 0..n {
            let (w, c) = word_count(i);
            *total.entry(w).or_insert(0) += c;
        }
        word_checksum(&total)
    };
    // (name, mergers, rounds of extra work per count)
    let cases: [(&str, usize, u32); 6] = [
        ("counting, 1 merger", 0, 0),
        ("counting, keyed * 2", 2, 0),
        ("counting, keyed * 4", 4, 0),
        ("heavier, 1 merger", 0, 64),
        ("heavier, keyed * 2", 2, 64),
        ("heavier, keyed * 4", 4, 64),
    ];
    let mut times = vec![Vec::new(); cases.len()];
    for rep in 0..reps {
        for k in 0..cases.len() {
            let i = (k + rep) % cases.len();
            let (name, w, rounds) = cases[i];
            let start = Instant::now();
            let sum = keyed_merge(black_box(n), w, rounds);
            times[i].push(start.elapsed().as_nanos() as f64 / n as f64);
            assert_eq!(sum, expected, "{name}: wrong totals");
        }
    }
    println!(
        "keyed merge: {} (word id, count) pairs over {VOCABULARY} distinct words, fed through a writer into a queue batched by 256, added up in a HashMap per merger (\"heavier\": plus 64 dependent multiply-adds per count), totals checked; median of {reps}, interleaved",
        fmt_n(n)
    );
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let (lo, hi) = min_max(&times[i]);
        let ns = median(&times[i]);
        let one = median(&times[i - i % 3]);
        println!(
            "{name:<26} {ns:>6.1} ns/count ({lo:.1}..{hi:.1})  {:>5.2}x the speed of 1 merger",
            one / ns
        );
    }
    println!();
}

// ---------------------------------------------------------------------------
// The envelope: one value type against another through one channel hop.
// ---------------------------------------------------------------------------

/// One producer thread sends `0..n` through a bounded(CAP) channel to one
/// consumer that sums them; returns the sum.
fn hop<T: Send + 'static>(n: u64, wrap: fn(u64) -> T, unwrap: fn(&T) -> u64) -> u64 {
    let (tx, rx) = bounded::<T>(CAP);
    let consumer = thread::spawn(move || rx.iter().map(|x| unwrap(&x)).sum::<u64>());
    for i in 0..n {
        tx.send(wrap(i)).unwrap();
    }
    drop(tx);
    consumer.join().unwrap()
}

/// The same hop through ezq's runtime-API queue.
fn hop_queue(n: u64) -> u64 {
    let q = Queue::bounded(CAP);
    let consumer = {
        let q = q.clone();
        ezq::run(move || {
            let total: u64 = ezq::iter_msg(&q).map(|m| m.data).sum();
            black_box(total);
        })
    };
    for i in 0..n {
        ezq::put_msg(&q, i);
    }
    ezq::endq_and_wait(&q, [consumer]).expect("the consumer failed");
    n * (n - 1) / 2
}

/// How ezq's `Msg<u64>` was laid out before its kind became one aligned
/// word: 7 bytes and a one-byte enum tag, which left a niche. Kept here to
/// show what that layout cost.
#[derive(Clone, Copy)]
#[allow(dead_code)] // Only `data` is read; the rest travels along.
struct ByteTagMsg {
    data: u64,
    kind: ByteTagKind,
    order: u64,
}

#[derive(Clone, Copy)]
#[allow(dead_code)]
struct ByteTagKind {
    bytes: [u8; 7],
    tag: ByteTag,
}

#[derive(Clone, Copy)]
#[repr(u8)]
enum ByteTag {
    Len0,
    #[allow(dead_code)]
    Interned = 8,
}

/// The same hop through a `pipeline!` queue with no options: fed through
/// `Source::put` from this thread, read by one worker that sums.
fn hop_pipeline(n: u64) -> u64 {
    let p = pipeline! { numbers -> summer -> sums; };
    for i in 0..n {
        p.numbers.put(i);
    }
    p.numbers.end();
    let total = p.sums.iter().map(|m| m.data).sum();
    p.join().expect("the summer failed");
    total
}

type HopCase = (&'static str, fn(u64) -> u64);

const HOP_CASES: &[HopCase] = &[
    ("u64, crossbeam", |n| hop(n, |i| i, |x| *x)),
    ("Msg<u64>, crossbeam", |n| {
        hop(n, Msg::new, |m: &Msg<u64>| m.data)
    }),
    ("Msg<u64>, ezq::Queue", hop_queue),
    ("Msg<u64>, pipeline! queue", hop_pipeline),
    ("byte-tag Msg, crossbeam", |n| {
        let wrap = |i| ByteTagMsg {
            data: i,
            kind: ByteTagKind {
                bytes: [0; 7],
                tag: ByteTag::Len0,
            },
            order: 0,
        };
        hop(n, wrap, |m| m.data)
    }),
];

/// Prints the envelope section: ns per message of each case, interleaved.
fn envelope(quick: bool) {
    let n: u64 = if quick { 100_000 } else { 5_000_000 };
    let reps = if quick { 1 } else { 7 };
    let mut times = vec![Vec::new(); HOP_CASES.len()];
    for rep in 0..reps {
        for k in 0..HOP_CASES.len() {
            let i = (k + rep) % HOP_CASES.len();
            let start = Instant::now();
            let sum = (HOP_CASES[i].1)(n);
            times[i].push(start.elapsed().as_nanos() as f64 / n as f64);
            assert_eq!(sum, n * (n - 1) / 2, "{} lost messages", HOP_CASES[i].0);
        }
    }
    println!(
        "envelope: {} values, one producer thread -> bounded({CAP}) -> one consumer thread summing them; median of {reps}, interleaved",
        fmt_n(n)
    );
    let base = median(&times[0]);
    for (i, (name, _)) in HOP_CASES.iter().enumerate() {
        let (lo, hi) = min_max(&times[i]);
        let ns = median(&times[i]);
        println!(
            "{name:<26} {ns:>6.1} ns/msg ({lo:.1}..{hi:.1})  {:>5.2}x u64",
            ns / base
        );
    }
    println!();
}

// ---------------------------------------------------------------------------
// Memory: one run of a variant in a child process.
// ---------------------------------------------------------------------------

fn vmhwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn find_variant(name: &str) -> &'static Variant {
    VARIANTS
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no variant named `{name}`"))
}

/// The child's side: one run, then its own peak RSS.
fn child(args: &[String]) {
    let [topology, variant, n, w] = args else {
        panic!("usage: child TOPOLOGY VARIANT N W");
    };
    let topology = Topology::parse(topology).expect("topology: sum or collatz");
    let variant = find_variant(variant);
    let (n, w) = (n.parse().expect("N"), w.parse().expect("W"));
    let elapsed = topology.run(variant, n, w);
    println!(
        "vmhwm_kib={} ns={} max_parked={}",
        vmhwm_kib().expect("VmHWM in /proc/self/status"),
        elapsed.as_nanos(),
        MAX_PARKED.load(AtomicOrdering::Relaxed)
    );
}

struct ChildReport {
    vmhwm_kib: u64,
    max_parked: usize,
}

/// The parent's side: re-runs this binary as a child and reads its report.
fn run_child(topology: Topology, variant: &Variant, n: u64, w: usize) -> ChildReport {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let out = Command::new(exe)
        .args([
            "child",
            topology.name(),
            variant.name,
            &n.to_string(),
            &w.to_string(),
        ])
        .output()
        .expect("could not start the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {} {} N={n} W={w} failed: {}\n{stdout}{}",
        topology.name(),
        variant.name,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| -> u64 {
        stdout
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("child printed no {key}: {stdout}"))
    };
    ChildReport {
        vmhwm_kib: field("vmhwm_kib"),
        max_parked: field("max_parked") as usize,
    }
}

// ---------------------------------------------------------------------------
// The driver.
// ---------------------------------------------------------------------------

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// One (topology, N, W) cell of the matrix.
struct Cell {
    topology: Topology,
    n: u64,
    w: usize,
    /// ns per message of each repetition, per variant (indexed like
    /// VARIANTS), in the process that runs the matrix.
    ns: Vec<Vec<f64>>,
    /// The same, from each matrix process, in the parent that merges them.
    processes: Vec<Vec<Vec<f64>>>,
    memory: Vec<Option<ChildReport>>,
    /// How long the cell's last repetition took, all variants together.
    last_rep: Duration,
}

fn cells(quick: bool) -> Vec<Cell> {
    let sizes: &[u64] = if quick {
        &[100_000]
    } else {
        &[1_000_000, 10_000_000]
    };
    let mut cells = Vec::new();
    for topology in Topology::ALL {
        for &n in sizes {
            for w in [1, 2, 4] {
                cells.push(Cell {
                    topology,
                    n,
                    w,
                    ns: vec![Vec::new(); VARIANTS.len()],
                    processes: Vec::new(),
                    memory: (0..VARIANTS.len()).map(|_| None).collect(),
                    last_rep: Duration::ZERO,
                });
            }
        }
    }
    cells
}

fn fmt_n(n: u64) -> String {
    match n {
        1_000_000 => "10^6".into(),
        10_000_000 => "10^7".into(),
        100_000 => "10^5".into(),
        n => n.to_string(),
    }
}

fn print_table(cells: &[Cell]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>5} {:>2}  {:<15} {:>8} {:>17} {:>8} {:>7}  {:<15} {:>8} {:>9}",
        "topology",
        "N",
        "W",
        "variant",
        "ns/msg",
        "(min..max)",
        "Mmsg/s",
        "ratio",
        "ratio vs",
        "peak MiB",
        "max heap"
    );
    for cell in cells {
        // Each figure is the worse of the matrix processes' medians: a
        // bounded channel runs at one of two speeds, and which one a
        // process gets is luck; the worse one is what a user can count on.
        let worst = |of: &dyn Fn(&[Vec<f64>]) -> f64| {
            (cell.processes.iter())
                .map(|p| of(p))
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let medians: Vec<f64> = (0..VARIANTS.len())
            .map(|i| worst(&|p: &[Vec<f64>]| median(&p[i])))
            .collect();
        for (i, v) in VARIANTS.iter().enumerate() {
            let all: Vec<f64> = (cell.processes.iter())
                .flat_map(|p| p[i].iter().copied())
                .collect();
            let (lo, hi) = min_max(&all);
            let ratio = v.baseline.map(|b| {
                let j = VARIANTS.iter().position(|x| x.name == b).expect("baseline");
                // The median of the per-repetition ratios: each pair ran
                // back to back, so it shares the machine's noise.
                let paired = |p: &[Vec<f64>]| {
                    let r: Vec<f64> = (p[i].iter().zip(&p[j])).map(|(a, b)| a / b).collect();
                    median(&r)
                };
                (worst(&paired), b)
            });
            let (ratio, vs) = match ratio {
                Some((r, b)) => (format!("{r:.2}x"), b),
                None => ("-".to_owned(), ""),
            };
            let (mem, heap) = match &cell.memory[i] {
                Some(m) => (
                    format!("{:.1}", m.vmhwm_kib as f64 / 1024.0),
                    if cell.topology == Topology::Collatz {
                        m.max_parked.to_string()
                    } else {
                        "-".to_owned()
                    },
                ),
                None => ("?".to_owned(), "?".to_owned()),
            };
            let _ = writeln!(
                out,
                "{:<8} {:>5} {:>2}  {:<15} {:>8.1} {:>17} {:>8.2} {:>7}  {:<15} {:>8} {:>9}",
                cell.topology.name(),
                fmt_n(cell.n),
                cell.w,
                v.name,
                medians[i],
                format!("({lo:.1}..{hi:.1})"),
                1e3 / medians[i],
                ratio,
                vs,
                mem,
                heap
            );
        }
        out.push('\n');
    }
    print!("{out}");
}

/// Repetitions of the throughput matrix stop once another would end after
/// this much time from the start (the memory children, the latency and the
/// sortiter figures take about one more repetition's time after it).
const MATRIX_BUDGET: Duration = Duration::from_secs(380);
/// ... but never past this, whatever the minimum says.
const MATRIX_HARD_LIMIT: Duration = Duration::from_secs(450);
const MIN_REPS: usize = 3;
const MAX_REPS: usize = 9;

/// One repetition: every variant of every cell, round-robin within the cell,
/// the first variant rotated by `rep`.
fn run_repetition(cells: &mut [Cell], rep: usize) {
    for cell in cells {
        let start = Instant::now();
        for k in 0..VARIANTS.len() {
            let i = (k + rep) % VARIANTS.len();
            let elapsed = cell.topology.run(&VARIANTS[i], cell.n, cell.w);
            cell.ns[i].push(elapsed.as_nanos() as f64 / cell.n as f64);
        }
        cell.last_rep = start.elapsed();
    }
}

/// How many processes run the throughput matrix, one after the other.
const MATRIX_PROCESSES: usize = 2;

/// Runs the throughput matrix in this process, repetition after
/// repetition, within `budget`; returns its cells, the repetitions run and
/// whether the matrix had to be cut down.
fn run_matrix(
    quick: bool,
    fixed_reps: Option<usize>,
    budget: Duration,
) -> (Vec<Cell>, usize, bool) {
    let wall = Instant::now();
    let mut cells = cells(quick);
    let mut reduced = false;
    let mut reps = 0;
    loop {
        run_repetition(&mut cells, reps);
        reps += 1;
        let per_rep: Duration = cells.iter().map(|c| c.last_rep).sum();
        eprintln!(
            "[bench] repetition {reps} took {:.0} s; {:.0} s since start",
            per_rep.as_secs_f64(),
            wall.elapsed().as_secs_f64()
        );
        if reps == 1 && !quick && per_rep * MIN_REPS as u32 > budget {
            // The whole matrix does not fit: keep N = 10^7 for W = 2 only.
            cells.retain(|c| c.n < 10_000_000 || c.w == 2);
            reduced = true;
        }
        let per_rep: Duration = cells.iter().map(|c| c.last_rep).sum();
        let next_end = wall.elapsed() + per_rep;
        let done = match fixed_reps {
            Some(k) => reps >= k,
            None => {
                reps >= MAX_REPS
                    || (reps >= MIN_REPS && next_end > budget)
                    || next_end
                        > budget
                            .mul_f64(MATRIX_HARD_LIMIT.as_secs_f64() / MATRIX_BUDGET.as_secs_f64())
            }
        };
        if done {
            return (cells, reps, reduced);
        }
    }
}

/// A matrix process's side: runs the matrix and prints every measurement,
/// a line per (cell, variant), for the parent.
fn matrix_child(args: &[String]) {
    let quick = args.iter().any(|a| a == "quick");
    let reps = args
        .iter()
        .find_map(|a| a.strip_prefix("reps=")?.parse().ok());
    let budget = args
        .iter()
        .find_map(|a| a.strip_prefix("budget=")?.parse().ok())
        .map_or(MATRIX_BUDGET, Duration::from_secs_f64);
    let (cells, reps, reduced) = run_matrix(quick, reps, budget);
    println!("reps={reps} reduced={reduced}");
    for cell in &cells {
        for (i, v) in VARIANTS.iter().enumerate() {
            let ns: Vec<String> = cell.ns[i].iter().map(|x| format!("{x:.3}")).collect();
            let t = cell.topology.name();
            println!("cell {t} {} {} {} {}", cell.n, cell.w, v.name, ns.join(","));
        }
    }
}

/// The parent's side: runs the matrix in `MATRIX_PROCESSES` processes and
/// keeps, for each cell, every process's measurements.
fn run_matrix_processes(quick: bool, fixed_reps: Option<usize>) -> (Vec<Cell>, usize, bool) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let budget = MATRIX_BUDGET.as_secs_f64() / MATRIX_PROCESSES as f64;
    let mut cells = cells(quick);
    let (mut reps, mut reduced) = (usize::MAX, false);
    for process in 0..MATRIX_PROCESSES {
        eprintln!(
            "[bench] matrix process {} of {MATRIX_PROCESSES}",
            process + 1
        );
        let mut args = vec!["matrix".to_owned(), format!("budget={budget}")];
        args.extend(quick.then(|| "quick".to_owned()));
        args.extend(fixed_reps.map(|k| format!("reps={k}")));
        let out = Command::new(&exe)
            .args(&args)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("could not start a matrix process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a matrix process failed: {}\n{stdout}",
            out.status
        );
        let mut found: Vec<(Topology, u64, usize, usize, Vec<f64>)> = Vec::new();
        for line in stdout.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [r, d] if r.starts_with("reps=") => {
                    let r: usize = r["reps=".len()..].parse().expect("reps");
                    reps = reps.min(r);
                    reduced |= *d == "reduced=true";
                }
                ["cell", t, n, w, v, ns] => found.push((
                    Topology::parse(t).expect("a topology"),
                    n.parse().expect("N"),
                    w.parse().expect("W"),
                    VARIANTS
                        .iter()
                        .position(|x| x.name == *v)
                        .expect("a variant"),
                    ns.split(',').map(|x| x.parse().expect("ns")).collect(),
                )),
                _ => {}
            }
        }
        for cell in &mut cells {
            let mut ns = vec![Vec::new(); VARIANTS.len()];
            for (t, n, w, i, values) in &found {
                if (*t, *n, *w) == (cell.topology, cell.n, cell.w) {
                    ns[*i] = values.clone();
                }
            }
            cell.processes.push(ns);
        }
    }
    // A cell one process left out (the matrix cut down) is left out.
    cells.retain(|c| c.processes.iter().all(|p| p.iter().all(|v| !v.is_empty())));
    (cells, reps, reduced)
}

/// Prints the latency section: `rounds` round trips per chain, back to
/// back and after idleness.
fn latency_section(rounds: u64) {
    println!(
        "latency: one message through source -> a -> q1 -> b -> q2 -> c -> sink (3 map stages, +1 each), put, wait at the sink, repeat;"
    );
    println!(
        "{rounds} round trips per variant in 10 alternating blocks, only one chain alive at a time"
    );
    println!(
        "{:<20} {:<18} {:>10} {:>10} {:>10}",
        "when", "variant", "p50 us", "p99 us", "max us"
    );
    for pause in [Duration::ZERO, Duration::from_micros(200)] {
        let lat = measure_latency(rounds, pause);
        for (name, mut samples) in [
            ("crossbeam (hand)", lat.crossbeam),
            ("pipeline", lat.pipeline),
            ("pipeline-batch", lat.pipeline_batch),
        ] {
            samples.sort();
            println!(
                "{:<20} {:<18} {:>10.1} {:>10.1} {:>10.1}",
                lat.label,
                name,
                percentile(&samples, 0.50).as_secs_f64() * 1e6,
                percentile(&samples, 0.99).as_secs_f64() * 1e6,
                samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
            );
        }
    }
}

fn full_bench(quick: bool, fixed_reps: Option<usize>) {
    let wall = Instant::now();
    let (mut cells, reps, reduced) = run_matrix_processes(quick, fixed_reps);
    for cell in &mut cells {
        for (i, v) in VARIANTS.iter().enumerate() {
            cell.memory[i] = Some(run_child(cell.topology, v, cell.n, cell.w));
        }
    }
    eprintln!(
        "[bench] memory children done at {:.0} s",
        wall.elapsed().as_secs_f64()
    );

    let cpus = ezq::num_cpus();
    println!("ezq pipeline benchmark (benches/pipeline.rs)");
    println!(
        "cpus: {cpus}; queue capacity {CAP}; the matrix runs in {MATRIX_PROCESSES} processes, one after the other, each {reps}+ repetition(s) (as many as fit its time budget, {MIN_REPS}..{MAX_REPS}); variants round-robin within each cell, first variant rotated per repetition"
    );
    if quick {
        println!("QUICK MODE: N = 10^5 only, a smoke test; the numbers mean little");
    } else if reduced {
        println!(
            "N = 10^6 for W = 1, 2, 4; N = 10^7 for W = 2 ONLY: the first repetition showed that the whole matrix does not fit 10 minutes"
        );
    } else {
        println!("N = 10^6 and 10^7, each for W = 1, 2, 4 (the whole matrix)");
    }
    println!(
        "ns/msg, Mmsg/s: the WORSE of the processes' medians over repetitions (min..max of all runs in brackets); each run timed from the first thread spawn to the last join, result checked"
    );
    println!(
        "ratio: the worse of the processes' medians of per-repetition ratios to the hand-written crossbeam variant sending the same message type (`ratio vs`)"
    );
    println!(
        "peak MiB: VmHWM of one run of that variant alone in a child process; max heap: the largest reorder buffer in that run (collatz)"
    );
    println!();
    print_table(&cells);

    // Latency.
    latency_section(if quick { 1_000 } else { 10_000 });
    eprintln!(
        "[bench] latency done at {:.0} s",
        wall.elapsed().as_secs_f64()
    );
    println!();
    held_back_section(quick);

    // sortiter.
    let n = if quick { 100_000 } else { 1_000_000 };
    let shuffled = shuffled_messages(n, 1_000);
    let in_order: Vec<Msg<u64>> = (0..n).map(|o| Msg::new(o * 3).order(o)).collect();
    type SortCase<'a> = (&'a str, &'a [Msg<u64>], fn(Vec<Msg<u64>>) -> u64);
    let cases: [SortCase; 3] = [
        ("ezq::sortiter, shuffled", &shuffled, run_sortiter),
        ("hand heap, shuffled", &shuffled, run_hand_reorder),
        ("ezq::sortiter, in order", &in_order, run_sortiter),
    ];
    let sort_reps = 7;
    let mut times = vec![Vec::new(); cases.len()];
    for rep in 0..sort_reps {
        for k in 0..cases.len() {
            let i = (k + rep) % cases.len();
            let (_, input, f) = cases[i];
            let input = input.to_vec();
            let start = Instant::now();
            black_box(f(black_box(input)));
            times[i].push(start.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    println!(
        "sortiter: {} messages, orders shuffled within consecutive windows of 1,000 (splitmix64 Fisher-Yates), output checked in order; median of {sort_reps}, interleaved",
        fmt_n(n)
    );
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let (lo, hi) = min_max(&times[i]);
        println!(
            "{name:<26} {:>6.1} ns/msg ({lo:.1}..{hi:.1})",
            median(&times[i])
        );
    }
    println!();
    keyed_section(quick);
    envelope(quick);
    println!("total wall time: {:.1} s", wall.elapsed().as_secs_f64());
}

/// `python-compare N`: the sum topology at N with num_cpus() workers.
fn python_compare(args: &[String]) {
    let n: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .expect("usage: python-compare N");
    let w = ezq::num_cpus();
    let reps = 9;
    let mut ns = vec![Vec::new(); VARIANTS.len()];
    for rep in 0..reps {
        for k in 0..VARIANTS.len() {
            let i = (k + rep) % VARIANTS.len();
            let elapsed = Topology::Sum.run(&VARIANTS[i], n, w);
            ns[i].push(elapsed.as_secs_f64());
        }
    }
    for (i, v) in VARIANTS.iter().enumerate() {
        let secs = median(&ns[i]);
        println!(
            "rust_sum variant={} n={n} workers={w} seconds={secs:.6} rate={:.0}",
            v.name,
            n as f64 / secs
        );
    }
}

/// `cell TOPOLOGY N W [reps=K]`: one cell of the matrix, the hand-written
/// `Msg` version and `pipeline!` only, interleaved; medians in ns/msg.
fn one_cell(args: &[String]) {
    let usage = "usage: cell sum|collatz N W [reps=K]";
    let topology = args.first().and_then(|a| Topology::parse(a)).expect(usage);
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).expect(usage);
    let w: usize = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let reps = (args.iter())
        .find_map(|a| a.strip_prefix("reps=")?.parse().ok())
        .unwrap_or(7);
    let variants = [find_variant("crossbeam-msg"), find_variant("pipeline")];
    let mut ns = vec![Vec::new(); variants.len()];
    for rep in 0..reps {
        for k in 0..variants.len() {
            let i = (k + rep) % variants.len();
            let elapsed = topology.run(variants[i], n, w);
            ns[i].push(elapsed.as_nanos() as f64 / n as f64);
        }
    }
    for (v, ns) in variants.iter().zip(&ns) {
        let (lo, hi) = min_max(ns);
        println!(
            "{} {} W={w} {:<14} {:>6.1} ns/msg ({lo:.1}..{hi:.1})",
            topology.name(),
            fmt_n(n),
            v.name,
            median(ns)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("child") => child(&args[1..]),
        Some("matrix") => matrix_child(&args[1..]),
        Some("python-compare") => python_compare(&args[1..]),
        Some("cell") => one_cell(&args[1..]),
        Some("latency") => {
            latency_section(10_000);
            held_back_section(false);
        }
        Some("keyed") => keyed_section(args.iter().any(|a| a == "quick")),
        _ => {
            let quick = args.iter().any(|a| a == "quick");
            let reps = args
                .iter()
                .find_map(|a| a.strip_prefix("reps=")?.parse().ok())
                .or(quick.then_some(1));
            full_bench(quick, reps);
        }
    }
}
