//! ezq's first promise, tried as an adversarial user would: a message that a
//! queue accepted is taken by a worker, handed to the caller, or counted as
//! dropped in the error that `join` returns. Each test here reproduces a way
//! that promise was once broken (a loss with `Ok`, a hang, an abort), and
//! each is bounded in time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

mod common;

use common::within;
use ezq::graph::Capacity;
use ezq::{DropReason, Graph, Inbox, Msg, Outbox, Queue, pipeline, worker};

// ---------------------------------------------------------------------------
// `end` racing `try_put` from many threads
// ---------------------------------------------------------------------------

#[worker]
fn pass(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        out.put_msg(msg);
    }
}

/// Eight threads `try_put` into a source while another thread ends it:
/// every put that returned `Ok` arrives, and `join` is `Ok`.
fn race_end_against_puts(batch: Option<usize>, rounds: usize) {
    for round in 0..rounds {
        let (accepted, delivered) = within(30, move || {
            let mut g = Graph::new();
            let numbers = match batch {
                Some(b) => g.batched_queue::<u64>("numbers", Capacity::Default, b),
                None => g.queue::<u64>("numbers"),
            };
            let out = g.queue::<u64>("out");
            g.add("pass", 2, (numbers,), (out,), |(i,), (o,)| pass(i, o));
            let p = g.start(|c| (c.source(numbers), c.sink(out)));
            let accepted = AtomicU64::new(0);
            let start = Barrier::new(9);
            thread::scope(|s| {
                for t in 0..8u64 {
                    let (p, accepted, start) = (&p, &accepted, &start);
                    s.spawn(move || {
                        start.wait();
                        for i in 0.. {
                            if p.0.try_put(t * 1_000_000 + i).is_err() {
                                break;
                            }
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
                start.wait();
                thread::sleep(Duration::from_micros(200 + 50 * round as u64));
                p.0.end();
            });
            let delivered = p.1.iter().count() as u64;
            p.join().expect("nothing was lost");
            (accepted.into_inner(), delivered)
        });
        assert_eq!(
            accepted, delivered,
            "round {round}: accepted puts were lost"
        );
    }
}

#[test]
fn a_put_racing_end_is_delivered_or_refused() {
    race_end_against_puts(None, 20);
}

#[test]
fn a_batched_put_racing_end_is_delivered_or_refused() {
    race_end_against_puts(Some(64), 20);
}

// ---------------------------------------------------------------------------
// Consumers that quit early
// ---------------------------------------------------------------------------

#[worker]
fn split(inbox: Inbox<u64>, x: Outbox<u64>, y: Outbox<u64>) {
    for msg in inbox {
        x.put(msg.data);
        y.put(msg.data);
    }
}

#[worker]
fn quits(inbox: Inbox<u64>) {
    drop(inbox);
}

#[worker]
fn takes_three_then_discards(mut inbox: Inbox<u64>) {
    for _ in 0..3 {
        inbox.recv();
    }
    inbox.discard_rest();
}

#[test]
fn a_reader_that_returns_early_is_reported_with_what_was_lost() {
    let (delivered, err) = within(30, || {
        let p = pipeline! {
            a -> split -> (x, y);
            x -> quits;
            y -> pass -> out;
        };
        for i in 0..10_000u64 {
            p.a.put(i);
        }
        p.a.end();
        let delivered = p.out.iter().count() as u64;
        (delivered, p.join().expect_err("messages were lost"))
    });
    assert!(delivered < 10_000);
    assert!(err.failures().is_empty(), "nobody failed: {err}");
    let x = err
        .drops()
        .iter()
        .find(|d| d.queue == "x")
        .expect("x lost messages");
    assert!(
        matches!(&x.reason, DropReason::ReaderReturned { worker, .. } if worker == "quits"),
        "{err}"
    );
    // `split` stopped when `x` had no reader: what it held back is counted too.
    let a = err
        .drops()
        .iter()
        .find(|d| d.queue == "a")
        .expect("a lost messages");
    assert!(
        matches!(&a.reason, DropReason::ReaderStopped { worker, .. } if worker == "split"),
        "{err}"
    );
    // Every message is accounted for: `split` stopped at its first put
    // that failed, and the message it held then is the one `x` lost on
    // the way; the others were delivered through `y`, or left in `a`.
    assert_eq!(delivered + a.count + 1, 10_000, "{err}");
    let text = err.to_string();
    assert!(text.contains("queue `x` dropped"), "{text}");
    assert!(text.contains("`quits`"), "{text}");
}

#[test]
fn a_reader_that_discards_the_rest_on_purpose_is_not_an_error() {
    let (delivered, discarded) = within(30, || {
        let p = pipeline! {
            a -> split -> (x, y);
            x -> takes_three_then_discards;
            y -> pass -> out;
        };
        for i in 0..10_000u64 {
            p.a.put(i);
        }
        p.a.end();
        let delivered = p.out.iter().count();
        let monitor = p.monitor();
        p.join().expect("discarding on purpose loses nothing");
        let stats = monitor.stats();
        let x = stats.queues.iter().find(|q| q.name == "x").expect("x");
        assert_eq!(x.dropped, 0);
        (delivered, x.discarded)
    });
    // `split` went on: `y` got everything.
    assert_eq!(delivered, 10_000);
    assert_eq!(discarded, 10_000 - 3);
}

#[worker]
fn breaks_after_one(inbox: Inbox<u64>) {
    if let Some(msg) = inbox.into_iter().next() {
        assert_eq!(msg.data, 0);
    }
}

#[test]
fn a_batched_reader_that_breaks_after_one_message_counts_the_rest() {
    let err = within(30, || {
        let p = pipeline! { numbers[batch 64] -> breaks_after_one; };
        for i in 0..64u64 {
            p.numbers.put(i);
        }
        p.numbers.end();
        p.join().expect_err("63 messages were lost")
    });
    assert_eq!(err.dropped(), 63, "{err}");
    assert_eq!(err.drops()[0].queue, "numbers");
}

// ---------------------------------------------------------------------------
// Cancel while a worker holds a message
// ---------------------------------------------------------------------------

#[worker]
fn holds_until_cancelled(inbox: Inbox<u64>, out: Outbox<u64>, holding: Arc<AtomicBool>) {
    for msg in inbox {
        holding.store(true, Ordering::SeqCst);
        while !ezq::is_cancelled() {
            thread::sleep(Duration::from_millis(1));
        }
        out.put_msg(msg);
    }
}

#[test]
fn a_message_held_when_the_pipeline_is_cancelled_is_counted() {
    let err = within(30, || {
        let holding = Arc::new(AtomicBool::new(false));
        let p = pipeline! { numbers -> holds_until_cancelled(holding.clone()) -> out; };
        p.numbers.put(7);
        while !holding.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        p.cancel();
        p.join().expect_err("cancelled")
    });
    assert!(err.is_cancelled());
    assert_eq!(err.dropped(), 1, "{err}");
    assert_eq!(err.drops()[0].queue, "out");
    assert!(err.to_string().contains("1 message was dropped"), "{err}");
}

// ---------------------------------------------------------------------------
// Hangs
// ---------------------------------------------------------------------------

#[test]
fn a_queue_of_one_slot_ends_with_producers_racing_the_end() {
    for _ in 0..40 {
        let (accepted, consumed) = within(30, || {
            let q = Queue::<u64>::bounded(1);
            let accepted = Arc::new(AtomicU64::new(0));
            let consumers: Vec<_> = (0..3)
                .map(|_| {
                    let q = q.clone();
                    thread::spawn(move || q.iter().count() as u64)
                })
                .collect();
            let producers: Vec<_> = (0..4)
                .map(|_| {
                    let (q, accepted) = (q.clone(), Arc::clone(&accepted));
                    thread::spawn(move || {
                        for i in 0..200 {
                            if q.try_put(i).is_err() {
                                break;
                            }
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            thread::sleep(Duration::from_micros(100));
            ezq::endq(&q);
            for p in producers {
                p.join().unwrap();
            }
            let consumed: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
            (accepted.load(Ordering::Relaxed), consumed)
        });
        assert_eq!(accepted, consumed);
    }
}

#[test]
fn a_queue_that_is_both_source_and_sink_ends() {
    let got = within(10, || {
        let mut g = Graph::new();
        let q = g.queue::<u64>("q");
        let p = g.start(|c| (c.source(q), c.sink(q)));
        p.0.put(1);
        p.0.end();
        let got = (p.1.recv(), p.1.recv(), p.1.recv());
        p.join().expect("nothing lost");
        got
    });
    assert_eq!(got.0.map(|m| m.data), Some(1));
    assert!(got.1.is_none() && got.2.is_none());
}

// ---------------------------------------------------------------------------
// Aborts
// ---------------------------------------------------------------------------

/// A message of `N` bytes, all of them in the value itself.
#[derive(Clone)]
struct Big<const N: usize>([u8; N]);

#[worker]
fn first_byte(big: Big<{ 256 * 1024 }>) -> u8 {
    big.0[0] ^ big.0[256 * 1024 - 1]
}

/// Runs `f` on a thread with a large stack. The caller's side of a
/// pipeline of large messages needs one: a debug build copies a value on
/// the stack at every call it passes through, so handling 256 KiB values
/// takes more than the 2 MiB a test thread has, whatever the channel.
fn on_a_large_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        thread::Builder::new()
            .stack_size(64 * 1024 * 1024)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap()
    })
}

#[test]
fn a_message_of_256_kib_does_not_overflow_a_workers_stack() {
    let total = within(60, || {
        on_a_large_stack(|| {
            let p = pipeline! { bigs -> first_byte * 2 -> bytes; };
            for i in 0..64u8 {
                let mut big = Big([0; 256 * 1024]);
                big.0[0] = i;
                p.bigs.put(Msg::new(big).order(u64::from(i)));
            }
            p.bigs.end();
            let total: u64 = p.bytes.iter().map(|m| u64::from(m.data)).sum();
            p.join().expect("no worker failed");
            total
        })
    });
    assert_eq!(total, (0..64).sum());
}

#[test]
fn the_default_capacity_of_a_queue_of_large_messages_is_bounded_in_bytes() {
    let stats = within(30, || {
        on_a_large_stack(|| {
            let p = pipeline! { bigs -> first_byte -> bytes; };
            let stats = p.stats();
            p.bigs.end();
            p.join().unwrap();
            stats
        })
    });
    let bigs = &stats.queues[0];
    // 16 MiB of 256 KiB messages (plus a word): 63 of them, not 1,024.
    assert_eq!(bigs.capacity, Some(63));
    assert_eq!(stats.queues[1].capacity, None, "a sink stays unbounded");
}

/// A message whose drop panics.
struct Grenade(u64);

impl Drop for Grenade {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("grenade {} went off", self.0);
        }
    }
}

#[worker]
fn stuck(inbox: Inbox<Grenade>) {
    for msg in inbox {
        std::mem::forget(msg.data);
        while !ezq::is_cancelled() {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_message_whose_drop_panics_left_by_cancel_does_not_escape_join() {
    let err = within(30, || {
        let p = pipeline! { grenades -> stuck; };
        for i in 0..4 {
            p.grenades.put(Grenade(i));
        }
        thread::sleep(Duration::from_millis(20));
        p.cancel();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.join()))
            .expect("join does not panic")
            .expect_err("cancelled")
    });
    assert!(err.is_cancelled());
    assert_eq!(err.dropped(), 3, "{err}");
    // The panic is the failure of the worker whose queue it was.
    assert_eq!(err.failures().len(), 1, "{err}");
    assert!(err.to_string().contains("grenade 1 went off"), "{err}");
}

/// Panics; returns `()` as far as the types go (`!` is not a worker result).
fn fail(message: &str) {
    panic!("{message}");
}

/// A message whose drop always panics, even during unwinding.
struct Bomb(#[allow(dead_code)] u64);

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb went off");
    }
}

/// The reader panics with bombs left in its queue: dropping them on its
/// unwinding thread would abort the process. They are left aside and
/// dropped as the pipeline finishes, where the panic becomes a failure.
#[test]
fn messages_whose_drop_panics_left_by_a_panicking_reader_do_not_abort() {
    let err = within(10, || {
        let mut g = Graph::new();
        let q = g.queue_with::<Bomb>("q", Capacity::Bounded(100));
        g.add("w", 1, (q,), (), |(mut inbox,): (Inbox<Bomb>,), ()| {
            std::mem::forget(inbox.recv());
            fail("worker panics");
        });
        let p = g.start(|c| c.source(q));
        for i in 0..10 {
            p.put(Bomb(i));
        }
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.join()))
            .expect("join does not panic")
            .expect_err("the worker failed")
    });
    assert_eq!(err.dropped(), 9, "{err}");
    let text = err.to_string();
    assert!(text.contains("worker panics"), "{text}");
    assert!(text.contains("bomb went off"), "{text}");
}
