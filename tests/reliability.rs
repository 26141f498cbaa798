//! Reliability under stress: consumers that die under a blocked producer,
//! a caller that panics while feeding, sources ended with some of their
//! readers gone, and ten million messages through queues of capacity 1
//! (about a minute in a debug build, half that in release).

use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::within;
use ezq::graph::Capacity;
use ezq::stats::Monitor;
use ezq::{Cause, Graph, Inbox, Msg, Outbox, pipeline, worker};

/// The text of a panic payload.
fn payload_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    (payload.downcast_ref::<String>().map(String::as_str))
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

// ---------------------------------------------------------------------------
// A consumer that dies under a blocked producer
// ---------------------------------------------------------------------------

/// Panics with `message`; returns `()` as far as the types go, so that a
/// worker closure ending in it is still a worker (`!` is not a
/// `WorkerResult`).
fn die(message: &str) {
    panic!("{message}");
}

/// Counts a producer's puts: begun, and returned.
#[derive(Default)]
struct Puts {
    begun: AtomicU64,
    done: AtomicU64,
}

impl Puts {
    /// Waits until the producer has been inside one `put` for `steady`
    /// without it returning: it is blocked on a full queue.
    fn wait_until_blocked(&self, steady: Duration) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut since = Instant::now();
        let mut last = (0, 0);
        loop {
            let now = (
                self.begun.load(Ordering::SeqCst),
                self.done.load(Ordering::SeqCst),
            );
            if now != last || now.0 != now.1 + 1 {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= steady {
                return;
            }
            assert!(Instant::now() < deadline, "the producer never blocked");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// `producer -> full -> consumer`: the producer puts forever into a queue
/// of `capacity` (batched by `block` if any); the consumer takes one
/// message, waits until the producer is blocked on the full queue, then
/// panics.
fn consumer_dies_under_a_blocked_worker(capacity: usize, block: Option<usize>) {
    let puts = Arc::new(Puts::default());
    let (err, stats) = within(20, {
        let puts = Arc::clone(&puts);
        move || {
            let mut g = Graph::new();
            let full = match block {
                Some(block) => g.batched_queue::<u64>("full", Capacity::Bounded(capacity), block),
                None => g.queue_with::<u64>("full", Capacity::Bounded(capacity)),
            };
            let producer_puts = Arc::clone(&puts);
            g.add(
                "producer",
                1,
                (),
                (full,),
                move |(), (out,): (Outbox<u64>,)| {
                    for i in 0.. {
                        producer_puts.begun.fetch_add(1, Ordering::SeqCst);
                        out.put(i);
                        producer_puts.done.fetch_add(1, Ordering::SeqCst);
                    }
                },
            );
            let consumer_puts = Arc::clone(&puts);
            g.add(
                "consumer",
                1,
                (full,),
                (),
                move |(mut inbox,): (Inbox<u64>,), ()| {
                    inbox.recv().expect("a first message");
                    consumer_puts.wait_until_blocked(Duration::from_millis(100));
                    die("consumer died");
                },
            );
            let mut p = g.start(|_| ());
            let result = p
                .join_timeout(Duration::from_secs(10))
                .expect("the producer is released and stops");
            assert!(p.is_finished());
            let stats = p.stats();
            (result.unwrap_err(), stats)
        }
    });
    assert_eq!(err.failures().len(), 1, "only the consumer fails: {err}");
    let failure = &err.failures()[0];
    assert_eq!(failure.worker, "consumer");
    assert_eq!(failure.replica, Some(0));
    assert_eq!(failure.cause, Cause::Panicked("consumer died".into()));
    assert!(!err.is_cancelled());
    // Every message the producer put, the one it was blocked on included,
    // except the one the consumer took.
    let begun = puts.begun.load(Ordering::SeqCst);
    assert_eq!(
        puts.done.load(Ordering::SeqCst) + 1,
        begun,
        "the blocked put never returned: the producer stopped in it"
    );
    assert_eq!(err.dropped(), begun - 1, "{err}");
    let producer = stats.workers.iter().find(|w| w.name == "producer").unwrap();
    assert!(producer.finished);
    assert!(
        producer.waiting >= Duration::from_millis(100),
        "the producer waited on the full queue: {stats}"
    );
}

#[test]
fn a_consumer_that_dies_releases_its_blocked_producer() {
    consumer_dies_under_a_blocked_worker(1, None);
}

#[test]
fn a_consumer_that_dies_releases_its_blocked_producer_on_a_batched_queue() {
    consumer_dies_under_a_blocked_worker(8, Some(4));
}

#[test]
fn a_consumer_that_dies_releases_the_caller_blocked_on_a_source() {
    let puts = Arc::new(Puts::default());
    let err = within(20, {
        let puts = Arc::clone(&puts);
        move || {
            let mut g = Graph::new();
            let feed = g.queue_with::<u64>("feed", Capacity::Bounded(1));
            let consumer_puts = Arc::clone(&puts);
            g.add(
                "consumer",
                1,
                (feed,),
                (),
                move |(mut inbox,): (Inbox<u64>,), ()| {
                    inbox.recv().expect("a first message");
                    consumer_puts.wait_until_blocked(Duration::from_millis(100));
                    die("consumer died");
                },
            );
            let p = g.start(|c| c.source(feed));
            let put = |i| {
                puts.begun.fetch_add(1, Ordering::SeqCst);
                p.put(i);
                puts.done.fetch_add(1, Ordering::SeqCst);
            };
            // Blocks on the full source until the consumer dies.
            let mut i = 0;
            while !p.is_finished() {
                put(i);
                i += 1;
            }
            // Then every put is dropped at once.
            let started = Instant::now();
            for j in 0..1000 {
                put(i + j);
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "puts into a source without readers do not wait"
            );
            p.join().unwrap_err()
        }
    });
    assert_eq!(err.failures().len(), 1, "{err}");
    assert_eq!(err.failures()[0].worker, "consumer");
    assert_eq!(
        err.failures()[0].cause,
        Cause::Panicked("consumer died".into())
    );
    // Everything put but the one message the consumer took.
    let put = puts.done.load(Ordering::SeqCst);
    assert_eq!(put, puts.begun.load(Ordering::SeqCst));
    assert_eq!(err.dropped(), put - 1, "{err}");
}

// ---------------------------------------------------------------------------
// Ending a source some of whose readers are gone
// ---------------------------------------------------------------------------

/// `a -> gone * 2` and `(a, b) -> joiner -> out`, both sources of
/// capacity one. Both replicas of `gone` end at once without reading `a`
/// (they panic if `fail`, else they return `Ok`). `join` then ends `a`, then `b`.
/// Ending `a` must send an END to `joiner` only: one END per reader replica
/// counted at the start (3) would leave the third waiting for room that
/// nobody makes, since `joiner` still holds its inbox of `a` while it waits
/// for `b`, which would then never be ended.
fn join_with_readers_gone(fail: bool) -> Result<(), ezq::Error> {
    within(10, move || {
        let mut g = Graph::new();
        let a = g.queue_with::<u64>("a", Capacity::Bounded(1));
        let b = g.queue_with::<u64>("b", Capacity::Bounded(1));
        let out = g.queue::<u64>("out");
        g.add(
            "gone",
            2,
            (a,),
            (),
            move |(_inbox,): (Inbox<u64>,), ()| -> Result<(), String> {
                if fail {
                    die("gone at once");
                }
                Ok(())
            },
        );
        g.add(
            "joiner",
            1,
            (a, b),
            (out,),
            |(a, b): (Inbox<u64>, Inbox<u64>), (out,): (Outbox<u64>,)| {
                for msg in a.merge(b) {
                    match msg {
                        ezq::Either::Left(m) | ezq::Either::Right(m) => out.put_msg(m),
                    }
                }
            },
        );
        let p = g.start(|c| (c.source(a), c.source(b), c.sink(out)));
        while !(p.stats().workers.iter())
            .filter(|w| w.name == "gone")
            .all(|w| w.finished)
        {
            thread::sleep(Duration::from_millis(1));
        }
        p.0.put(1);
        p.1.put(2);
        p.join()
    })
}

#[test]
fn ending_a_source_whose_readers_died_does_not_hang() {
    let err = join_with_readers_gone(true).unwrap_err();
    assert_eq!(err.failures().len(), 2, "{err}");
    assert!(err.failures().iter().all(|f| f.worker == "gone"));
}

#[test]
fn ending_a_source_whose_readers_returned_early_does_not_hang() {
    join_with_readers_gone(false).unwrap();
}

// ---------------------------------------------------------------------------
// The caller panics while feeding
// ---------------------------------------------------------------------------

/// What the readers of the fed source saw.
#[derive(Default)]
struct Seen {
    messages: AtomicU64,
    /// Replicas whose inbox ended with END, not with a cancel.
    ends: AtomicU64,
    cancelled: AtomicBool,
}

/// Feeds `src -> reader * 2` (the readers slow, the source of capacity 2),
/// and panics at message `panic_at` while the pipeline is alive. If
/// `reader_fails_at` is set, a reader also returns `Err` at that message.
fn panic_while_feeding(
    panic_at: u64,
    reader_fails_at: Option<u64>,
) -> (Box<dyn std::any::Any + Send>, Arc<Seen>, Monitor) {
    let seen = Arc::new(Seen::default());
    let monitor = Arc::new(Mutex::new(None));
    let payload = within(20, {
        let (seen, monitor) = (Arc::clone(&seen), Arc::clone(&monitor));
        move || {
            panic::catch_unwind(AssertUnwindSafe(|| {
                let mut g = Graph::new();
                let src = g.queue_with::<u64>("src", Capacity::Bounded(2));
                let reader_seen = Arc::clone(&seen);
                g.add(
                    "reader",
                    2,
                    (src,),
                    (),
                    move |(inbox,): (Inbox<u64>,), ()| -> Result<(), String> {
                        for msg in inbox {
                            if Some(msg.data) == reader_fails_at {
                                return Err(format!("reader gave up at {}", msg.data));
                            }
                            reader_seen.messages.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_micros(200));
                        }
                        if ezq::is_cancelled() {
                            reader_seen.cancelled.store(true, Ordering::SeqCst);
                        } else {
                            reader_seen.ends.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(())
                    },
                );
                let p = g.start(|c| c.source(src));
                *monitor.lock().unwrap() = Some(p.monitor());
                for i in 0..10_000u64 {
                    p.put(i);
                    if i == panic_at {
                        panic!("the feeder gave up at {i}");
                    }
                }
                unreachable!("the feeder panics first");
            }))
            .expect_err("the original panic continues")
        }
    });
    let monitor = monitor
        .lock()
        .unwrap()
        .take()
        .expect("the pipeline started");
    (payload, seen, monitor)
}

#[test]
fn a_panic_while_feeding_ends_the_sources_and_keeps_its_payload() {
    let (payload, seen, monitor) = panic_while_feeding(499, None);
    assert_eq!(
        payload_text(payload.as_ref()),
        Some("the feeder gave up at 499"),
        "the caught payload is the original one"
    );
    assert!(monitor.is_finished(), "every worker was joined");
    assert_eq!(
        seen.messages.load(Ordering::SeqCst),
        500,
        "everything put before the panic was read"
    );
    assert_eq!(seen.ends.load(Ordering::SeqCst), 2, "both readers saw END");
    assert!(!seen.cancelled.load(Ordering::SeqCst));
    let stats = monitor.stats();
    assert_eq!((stats.queues[0].put, stats.queues[0].taken), (500, 500));
}

#[test]
fn a_panic_while_feeding_a_failed_pipeline_is_not_a_double_panic() {
    // A reader fails first: the drop of the pipeline during the unwind
    // must not panic with that failure (a panic during a panic aborts).
    let (payload, seen, monitor) = panic_while_feeding(499, Some(100));
    assert_eq!(
        payload_text(payload.as_ref()),
        Some("the feeder gave up at 499"),
        "the caught payload is the original one, not the reader's failure"
    );
    assert!(monitor.is_finished());
    assert_eq!(
        seen.ends.load(Ordering::SeqCst),
        1,
        "the other reader saw END"
    );
    assert!(!seen.cancelled.load(Ordering::SeqCst));
    let stats = monitor.stats();
    let reader_processed: u64 = stats.workers.iter().map(|w| w.processed).sum();
    assert_eq!(stats.queues[0].put, 500);
    assert_eq!(
        seen.messages.load(Ordering::SeqCst) + 1,
        reader_processed,
        "the failed reader took message 100 and stopped"
    );
}

// ---------------------------------------------------------------------------
// Collatz, with every queue of capacity 1
// ---------------------------------------------------------------------------

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

static PRINTED: AtomicU64 = AtomicU64::new(0);

/// Takes the results in order and checks each one and their number.
#[worker]
fn printer(write_q: Inbox<(u64, u64)>, n: u64) -> Result<(), String> {
    let mut count = 0u64;
    for msg in ezq::sortiter(write_q) {
        let (i, next) = msg.data;
        let expected = if i % 2 == 0 { i / 2 } else { 3 * i + 1 };
        if msg.order != count || i != count || next != expected {
            return Err(format!(
                "result {count}: order {}, {:?}",
                msg.order, msg.data
            ));
        }
        count += 1;
    }
    PRINTED.store(count, Ordering::SeqCst);
    if count == n {
        Ok(())
    } else {
        Err(format!("{count} results for {n} numbers"))
    }
}

#[test]
fn collatz_with_queues_of_capacity_one() {
    let n: u64 = 10_000_000;
    let started = Instant::now();
    within(600, move || {
        let p = pipeline! {
            read_q[1] -> collatz * 2 -> write_q[1] -> printer(n);
        };
        for i in 0..n {
            let kind = if i % 2 == 0 { "EVEN" } else { "ODD" };
            p.read_q.put_msg(Msg::new(i).kind(kind).order(i));
        }
        p.join().expect("collatz and the printer succeed");
    });
    assert_eq!(PRINTED.load(Ordering::SeqCst), n);
    let _ = writeln!(
        std::io::stderr(),
        "collatz_with_queues_of_capacity_one: {n} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
