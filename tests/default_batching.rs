//! Attacks on queues batched by default: writers on a default source, two
//! threads feeding one source while another reads a full sink, the slack of
//! a default queue for a slow producer, and join_timeout after a cancel
//! while a put waits for room.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::within;
use ezq::graph::Capacity;
use ezq::{Graph, Inbox, Outbox, pipeline, worker};

static SEEN: AtomicBool = AtomicBool::new(false);

#[worker]
fn mark(x: u64) -> u64 {
    SEEN.store(true, Ordering::SeqCst);
    x
}

#[worker]
fn pass(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        out.put_msg(msg);
    }
}

/// A writer on a default source: its message must reach the idle worker
/// while the caller waits on something other than the pipeline's sinks.
#[test]
fn a_writer_on_a_default_source_sends_without_being_dropped() {
    within(10, || {
        let p = pipeline! { numbers -> mark -> out; };
        let w = p.numbers.writer();
        w.put(1);
        let t0 = Instant::now();
        while !SEEN.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(2) {
            thread::sleep(Duration::from_millis(5));
        }
        let seen = SEEN.load(Ordering::SeqCst);
        drop(w);
        p.numbers.end();
        let _ = p.out.iter().count();
        p.join().unwrap();
        assert!(
            seen,
            "the worker never saw a message put 2 s earlier into an idle pipeline"
        );
    });
}

/// Another thread ends a default source while this thread keeps a writer
/// open and reads the sink.
#[test]
fn an_open_writer_does_not_hold_back_another_threads_end() {
    let n = within(10, || {
        let p = pipeline! { numbers -> pass -> out; };
        let w = p.numbers.writer();
        w.put(1);
        thread::scope(|s| {
            s.spawn(|| p.numbers.end());
        });
        let n = p.out.iter().count();
        drop(w);
        p.join().unwrap();
        n
    });
    assert_eq!(n, 1);
}

/// Two threads put into one default source; the first then reads a
/// bounded sink: its flush of the source block waits for the lock that
/// the second holds while waiting for room.
#[test]
fn two_threads_feeding_one_source_while_one_reads_a_full_sink_do_not_deadlock() {
    const N: u64 = 100_000;
    let got = within(20, || {
        let mut g = Graph::new();
        let numbers = g.queue::<u64>("numbers");
        let out = g.queue_with::<u64>("out", Capacity::Bounded(2));
        g.add(
            "pass",
            1,
            (numbers,),
            (out,),
            |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                for m in i {
                    o.put_msg(m);
                }
            },
        );
        let p = g.start(|c| (c.source(numbers), c.sink(out)));
        p.0.put(0);
        let got = thread::scope(|s| {
            s.spawn(|| {
                for i in 1..N {
                    p.0.put(i);
                }
            });
            thread::sleep(Duration::from_millis(100));
            let mut got = 0;
            while got < N {
                p.1.recv().expect("not ended");
                got += 1;
            }
            got
        });
        p.0.end();
        p.join().unwrap();
        got
    });
    assert_eq!(got, N);
}

#[test]
fn one_thread_feeding_a_source_while_another_reads_a_full_sink() {
    const N: u64 = 100_000;
    let got = within(20, || {
        let mut g = Graph::new();
        let numbers = g.queue::<u64>("numbers");
        let out = g.queue_with::<u64>("out", Capacity::Bounded(2));
        g.add(
            "pass",
            1,
            (numbers,),
            (out,),
            |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                for m in i {
                    o.put_msg(m);
                }
            },
        );
        let p = g.start(|c| (c.source(numbers), c.sink(out)));
        let got = thread::scope(|s| {
            s.spawn(|| {
                for i in 0..N {
                    p.0.put(i);
                }
            });
            thread::sleep(Duration::from_millis(100));
            let mut got = 0;
            while got < N {
                p.1.recv().expect("not ended");
                got += 1;
            }
            got
        });
        p.0.end();
        p.join().unwrap();
        got
    });
    assert_eq!(got, N);
}

static B_READ: AtomicUsize = AtomicUsize::new(0);

#[worker]
fn a_then_b(a: Inbox<u64>, b: Inbox<u64>, out: Outbox<u64>) {
    let mut n = 0;
    for m in a {
        n += m.data;
    }
    for m in b {
        B_READ.fetch_add(1, Ordering::SeqCst);
        n += m.data;
    }
    out.put(n);
}

/// A default source (capacity 1024) fed slowly holds far fewer than 1024
/// messages: each flusher-sent block of one message takes one of 16 slots.
#[test]
fn a_slow_producer_keeps_the_slack_of_a_default_queue() {
    within(20, || {
        let p = pipeline! { (a, b) -> a_then_b -> out; };
        for i in 0..200u64 {
            p.b.put(i);
            thread::sleep(Duration::from_millis(1));
        }
        for q in p.stats().queues {
            eprintln!(
                "{} put={} taken={} hw={} cap={:?}",
                q.name, q.put, q.taken, q.high_water, q.capacity
            );
        }
        eprintln!("b read so far {}", B_READ.load(Ordering::SeqCst));
        p.a.put(1);
        p.a.end();
        p.b.end();
        let _ = p.out.iter().count();
        p.join().unwrap();
    });
}

/// After a cancel, `join_timeout(200 ms)` waits for a source put blocked
/// on a full queue whose reader computes: `end_by` takes the block's lock.
#[test]
fn join_timeout_after_a_cancel_keeps_its_deadline_while_a_put_waits() {
    let took = within(30, || {
        let mut g = Graph::new();
        let numbers = g.queue::<u64>("numbers");
        let out = g.queue::<u64>("out");
        g.add(
            "slow",
            1,
            (numbers,),
            (out,),
            |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                for m in i {
                    thread::sleep(Duration::from_secs(3));
                    o.put_msg(m);
                }
            },
        );
        let mut p = g.start(|c| (std::sync::Mutex::new(Some(c.source(numbers))), c.sink(out)));
        let src = p.0.lock().unwrap().take().unwrap();
        let feeder = thread::spawn(move || {
            for i in 0..5000u64 {
                if src.try_put(i).is_err() {
                    break;
                }
            }
        });
        thread::sleep(Duration::from_millis(300));
        p.cancel();
        let t0 = Instant::now();
        let _ = p.join_timeout(Duration::from_millis(200));
        let took = t0.elapsed();
        let _ = p.join();
        feeder.join().unwrap();
        took
    });
    assert!(
        took < Duration::from_secs(1),
        "join_timeout(200 ms) took {took:?}"
    );
}
