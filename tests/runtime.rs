//! Behaviour tests of the runtime API: `Queue`, END, `iter_q`, workers and
//! their failures, `sortiter`, `map`, `Msg` and `num_cpus`, through the
//! public API only.
//!
//! Every test that a bug could make hang runs its body on a thread and
//! waits for it with a timeout, so it fails with a message instead.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use ezq::{Cause, Msg, Queue};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `body` on a thread and returns its result; fails the test if it
/// takes longer than [`TIMEOUT`], and re-raises its panic if it panicked.
fn within<T: Send + 'static>(what: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(value) => {
            handle.join().expect("the body already returned");
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => unreachable!("the body returned without sending its result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {TIMEOUT:?} (a hang?)")
        }
    }
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(not a string)".to_owned()
    }
}

/// A small deterministic PRNG (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// An iterator adapter that counts how many items were pulled from it.
struct Counting<I> {
    inner: I,
    pulled: Arc<AtomicU64>,
}

impl<I: Iterator> Iterator for Counting<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.pulled.fetch_add(1, Ordering::SeqCst);
        Some(item)
    }
}

fn counting<I: IntoIterator>(items: I) -> (Counting<I::IntoIter>, Arc<AtomicU64>) {
    let pulled = Arc::new(AtomicU64::new(0));
    let iter = Counting {
        inner: items.into_iter(),
        pulled: Arc::clone(&pulled),
    };
    (iter, pulled)
}

// ---------------------------------------------------------------------------
// 1. END
// ---------------------------------------------------------------------------

/// Starts `consumers` workers on `q`, puts 0..n, ends the queue and checks
/// that every consumer stopped and every message came out exactly once.
fn end_stops_all_consumers(q: Queue<u64>, consumers: usize, n: u64) {
    let out = Queue::new();
    let workers: Vec<ezq::Worker> = (0..consumers)
        .map(|_| {
            let (q, out) = (q.clone(), out.clone());
            ezq::run(move || {
                for msg in ezq::iter_msg(&q) {
                    ezq::put_msg(&out, msg.data);
                }
            })
        })
        .collect();
    for i in 0..n {
        ezq::put_msg(&q, i);
    }
    // Returns only once every consumer has stopped.
    ezq::endq_and_wait(&q, workers).expect("no consumer fails");
    let mut got: Vec<u64> = ezq::iter_q(&out).map(|m| m.data).collect();
    got.sort_unstable();
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "{consumers} consumers");
    // The END stays: a late consumer stops at once too.
    assert_eq!(ezq::iter_msg(&q).count(), 0);
    assert_eq!(ezq::iter_msg(&q).count(), 0);
}

#[test]
fn one_end_stops_one_consumer_and_delivers_everything_once() {
    within("END with 1 consumer", || {
        end_stops_all_consumers(Queue::new(), 1, 1000);
    });
}

#[test]
fn one_end_stops_two_consumers_and_delivers_everything_once() {
    within("END with 2 consumers", || {
        end_stops_all_consumers(Queue::new(), 2, 1000);
    });
}

#[test]
fn one_end_stops_eight_consumers_and_delivers_everything_once() {
    within("END with 8 consumers", || {
        end_stops_all_consumers(Queue::new(), 8, 1000);
    });
}

#[test]
fn one_end_stops_eight_consumers_of_a_bounded_queue() {
    within("END with 8 consumers of a bounded queue", || {
        end_stops_all_consumers(Queue::bounded(3), 8, 1000);
    });
}

#[test]
fn messages_queued_before_end_reach_consumers_started_after_it() {
    within("consumers started after END", || {
        let q = Queue::new();
        for i in 0..100u64 {
            ezq::put_msg(&q, i);
        }
        ezq::endq(&q);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || ezq::iter_msg(&q).map(|m| m.data).collect::<Vec<_>>())
            })
            .collect();
        let mut got: Vec<u64> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("consumer"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------
// 2. iter_q
// ---------------------------------------------------------------------------

#[test]
fn iter_q_on_an_empty_queue_returns_at_once_with_nothing() {
    within("iter_q on an empty queue", || {
        let q = Queue::<u64>::new();
        assert_eq!(ezq::iter_q(&q).count(), 0);
        assert!(q.is_ended());
    });
}

#[test]
fn iter_q_drains_everything_queued_then_stops() {
    within("iter_q drains", || {
        let q = Queue::new();
        ezq::put_msg(&q, Msg::new("a").order(1));
        ezq::put_msg(&q, Msg::new("b").kind("K"));
        ezq::put_msg(&q, "c");
        let got: Vec<Msg<&str>> = ezq::iter_q(&q).collect();
        assert_eq!(
            got,
            [
                Msg::new("a").order(1),
                Msg::new("b").kind("K"),
                Msg::new("c")
            ]
        );
        assert_eq!(ezq::iter_q(&q).count(), 0);
    });
}

#[test]
fn iter_q_drains_a_thousand_items() {
    within("iter_q of 1000 items", || {
        let q = Queue::new();
        for i in 0..1000u64 {
            ezq::put_msg(&q, Msg::new(i).kind("").order(i));
        }
        let got: Vec<u64> = ezq::iter_q(&q).map(|m| m.data).collect();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    });
}

#[test]
fn iter_q_stopped_early_on_a_full_bounded_queue_still_ends_it() {
    within("iter_q stopped early on a full bounded queue", || {
        let q = Queue::bounded(2);
        ezq::put_msg(&q, 1u64);
        ezq::put_msg(&q, 2u64);
        // Take one message, then drop the iterator: the END must still be
        // in the queue for the consumers that come after.
        assert_eq!(ezq::iter_q(&q).next().map(|m| m.data), Some(1));
        assert!(q.is_ended());
        assert_eq!(q.len(), 1);
        let rest: Vec<u64> = ezq::iter_msg(&q).map(|m| m.data).collect();
        assert_eq!(rest, [2]);
        assert_eq!(ezq::iter_msg(&q).count(), 0);
    });
}

// ---------------------------------------------------------------------------
// 3. len
// ---------------------------------------------------------------------------

#[test]
fn a_queue_with_two_puts_has_len_two() {
    let q = Queue::new();
    assert_eq!(q.len(), 0);
    assert!(q.is_empty());
    ezq::put_msg(&q, 1u64);
    ezq::put_msg(&q, 2u64);
    assert_eq!(q.len(), 2);
    assert!(!q.is_empty());
    // The END is not a message.
    ezq::endq(&q);
    assert_eq!(q.len(), 2);
}

// ---------------------------------------------------------------------------
// 4. put after END
// ---------------------------------------------------------------------------

#[test]
fn put_msg_after_endq_panics() {
    let q = Queue::new();
    ezq::put_msg(&q, 1u64);
    ezq::endq(&q);
    let result = panic::catch_unwind(AssertUnwindSafe(|| ezq::put_msg(&q, 2u64)));
    let payload = result.expect_err("put_msg after endq must panic");
    assert!(
        panic_text(payload.as_ref()).contains("already ended"),
        "unexpected panic message: {}",
        panic_text(payload.as_ref())
    );
    // The message put before the END is still there, alone.
    let got: Vec<u64> = ezq::iter_q(&q).map(|m| m.data).collect();
    assert_eq!(got, [1]);
}

#[test]
fn try_put_after_end_returns_ended_with_the_message() {
    let q = Queue::new();
    assert_eq!(q.try_put(1u64), Ok(()));
    q.end();
    let msg = Msg::new(7u64).kind("LATE").order(3);
    assert_eq!(q.try_put(msg.clone()), Err(ezq::Ended(msg)));
    assert_eq!(q.try_put(8u64), Err(ezq::Ended(Msg::new(8))));
    let got: Vec<u64> = ezq::iter_q(&q).map(|m| m.data).collect();
    assert_eq!(got, [1]);
}

// ---------------------------------------------------------------------------
// 5. Worker failures
// ---------------------------------------------------------------------------

#[test]
fn endq_and_wait_reports_a_panicking_worker_while_the_others_finish() {
    within("a panicking worker among others", || {
        let in_q = Queue::new();
        let out_q = Queue::new();
        let mut workers: Vec<ezq::Worker> = (0..3)
            .map(|i| {
                let (i_q, o_q) = (in_q.clone(), out_q.clone());
                ezq::run_named(format!("good{i}"), move || {
                    for msg in ezq::iter_msg(&i_q) {
                        ezq::put_msg(&o_q, msg.data * 2);
                    }
                })
            })
            .collect();
        workers.insert(
            1,
            ezq::run_named("bad", || -> () { panic!("bad worker: out of paper") }),
        );
        for i in 0..500u64 {
            ezq::put_msg(&in_q, i);
        }
        let err = ezq::endq_and_wait(&in_q, workers).expect_err("one worker panicked");
        assert_eq!(
            err.failures(),
            [ezq::Failure {
                worker: "bad".to_owned(),
                replica: None,
                cause: Cause::Panicked("bad worker: out of paper".to_owned()),
            }]
        );
        let mut got: Vec<u64> = ezq::iter_q(&out_q).map(|m| m.data).collect();
        got.sort_unstable();
        assert_eq!(got, (0..500).map(|i| i * 2).collect::<Vec<_>>());
    });
}

#[test]
fn a_worker_returning_err_is_reported_as_returned() {
    within("a worker returning Err", || {
        let w = ezq::run_named("fallible", || -> Result<(), String> {
            Err("disk full".to_owned())
        });
        let err = w.join().expect_err("the worker returned Err");
        assert_eq!(err.failures().len(), 1);
        assert_eq!(err.failures()[0].worker, "fallible");
        assert_eq!(
            err.failures()[0].cause,
            Cause::Returned("disk full".to_owned())
        );

        let q = Queue::<u64>::new();
        let ok = ezq::run_named("ok", || -> Result<(), String> { Ok(()) });
        let bad = ezq::run_named("fallible", || -> Result<(), String> {
            Err("disk full".to_owned())
        });
        let err = ezq::endq_and_wait(&q, [ok, bad]).expect_err("one worker returned Err");
        assert_eq!(
            err.failures(),
            [ezq::Failure {
                worker: "fallible".to_owned(),
                replica: None,
                cause: Cause::Returned("disk full".to_owned()),
            }]
        );
    });
}

// ---------------------------------------------------------------------------
// 6. Dropping a Worker
// ---------------------------------------------------------------------------

#[test]
fn dropping_a_worker_joins_it() {
    within("dropping a worker", || {
        let done = Arc::new(AtomicBool::new(false));
        let w = {
            let done = Arc::clone(&done);
            ezq::run(move || {
                thread::sleep(Duration::from_millis(100));
                done.store(true, Ordering::SeqCst);
            })
        };
        drop(w);
        assert!(
            done.load(Ordering::SeqCst),
            "drop returned before the worker finished"
        );
    });
}

#[test]
fn dropping_a_panicked_worker_reraises_its_panic() {
    within("dropping a panicked worker", || {
        let w = ezq::run_named("doomed", || -> () { panic!("kaboom 42") });
        let result = panic::catch_unwind(AssertUnwindSafe(move || drop(w)));
        let payload = result.expect_err("dropping a panicked worker must panic");
        assert_eq!(panic_text(payload.as_ref()), "kaboom 42");
    });
}

#[test]
fn dropping_a_worker_that_returned_err_panics_with_the_error() {
    within("dropping a worker that returned Err", || {
        let w = ezq::run_named("fallible", || -> Result<(), String> { Err("nope".into()) });
        let result = panic::catch_unwind(AssertUnwindSafe(move || drop(w)));
        let payload = result.expect_err("dropping a failed worker must panic");
        let text = panic_text(payload.as_ref());
        assert!(
            text.contains("fallible") && text.contains("nope"),
            "unexpected panic message: {text}"
        );
    });
}

// ---------------------------------------------------------------------------
// 7. sortiter
// ---------------------------------------------------------------------------

fn msgs_with_orders(orders: impl IntoIterator<Item = u64>) -> Vec<Msg<u64>> {
    orders
        .into_iter()
        .map(|o| Msg::new(o * 10).order(o))
        .collect()
}

#[test]
fn sortiter_keeps_in_order_input() {
    let out: Vec<Msg<u64>> = ezq::sortiter(msgs_with_orders(0..100)).collect();
    assert_eq!(out, msgs_with_orders(0..100));
}

#[test]
fn sortiter_sorts_shuffled_input() {
    let mut input = msgs_with_orders(0..50);
    XorShift(0x9E37_79B9_7F4A_7C15).shuffle(&mut input);
    assert_ne!(input, msgs_with_orders(0..50), "the shuffle shuffled");
    let out: Vec<Msg<u64>> = ezq::sortiter(input).collect();
    assert_eq!(out, msgs_with_orders(0..50));
}

#[test]
fn sortiter_sorts_a_hundred_thousand_shuffled_messages() {
    within("sortiter of 100,000", || {
        let n = 100_000;
        let mut input = msgs_with_orders(0..n);
        XorShift(88_172_645_463_325_252).shuffle(&mut input);
        assert_ne!(input[..100], msgs_with_orders(0..100)[..], "shuffled");
        let mut it = ezq::sortiter(input);
        for expected in 0..n {
            let msg = it.next().expect("no message is lost");
            assert_eq!((msg.order, msg.data), (expected, expected * 10));
        }
        assert!(it.next().is_none());
        assert_eq!(it.parked(), 0);
    });
}

#[test]
fn sortiter_yields_everything_after_a_gap() {
    // Python ezq's test: orders 0..990 and 995..1000, shuffled.
    let mut input = msgs_with_orders((0..990).chain(995..1000));
    XorShift(12345).shuffle(&mut input);
    let orders: Vec<u64> = ezq::sortiter(input).map(|m| m.order).collect();
    assert_eq!(orders.len(), 995);
    assert_eq!(orders, (0..990).chain(995..1000).collect::<Vec<_>>());
}

#[test]
fn sortiter_keeps_duplicated_orders_in_arrival_order() {
    let input = [
        (2, "2a"),
        (0, "0a"),
        (1, "1a"),
        (1, "1b"),
        (3, "3a"),
        (2, "2b"),
        (0, "0b"),
        (3, "3b"),
        (1, "1c"),
        (4, "4a"),
    ]
    .map(|(o, tag)| Msg::new(tag).order(o));
    let out: Vec<Msg<&str>> = ezq::sortiter(input.clone()).collect();
    // Nothing lost, nothing invented.
    let mut got: Vec<&str> = out.iter().map(|m| m.data).collect();
    got.sort_unstable();
    let mut expected: Vec<&str> = input.iter().map(|m| m.data).collect();
    expected.sort_unstable();
    assert_eq!(got, expected);
    // Every message keeps its order, and equal orders keep arrival order.
    for m in &out {
        assert_eq!(m.data[..1].parse::<u64>().unwrap(), m.order);
    }
    for order in 0..=4 {
        let tags: Vec<&str> = out
            .iter()
            .filter(|m| m.order == order)
            .map(|m| m.data)
            .collect();
        let mut sorted = tags.clone();
        sorted.sort_unstable();
        assert_eq!(tags, sorted, "order {order} keeps arrival order");
    }
    // The unbroken run comes out first, in order.
    let first: Vec<u64> = out.iter().take(5).map(|m| m.order).collect();
    assert_eq!(first, [0, 1, 2, 3, 4]);
}

#[test]
fn sortiter_from_starts_at_the_given_order() {
    let mut input = msgs_with_orders(1000..1200);
    XorShift(777).shuffle(&mut input);
    let out: Vec<Msg<u64>> = ezq::sortiter_from(input, 1000).collect();
    assert_eq!(out, msgs_with_orders(1000..1200));

    // Streaming from the offset: 1000 comes out as soon as it is read.
    let (input, pulled) = counting(msgs_with_orders([1001, 1000, 1002]));
    let mut it = ezq::sortiter_from(input, 1000);
    assert_eq!(it.next().map(|m| m.order), Some(1000));
    assert_eq!(pulled.load(Ordering::SeqCst), 2);
}

#[test]
fn sortiter_streams_before_the_input_is_exhausted() {
    let n = 1000;
    let orders = [1, 0].into_iter().chain(2..n);
    let (input, pulled) = counting(msgs_with_orders(orders));
    let mut it = ezq::sortiter(input);
    assert_eq!(it.next().map(|m| m.order), Some(0));
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        2,
        "the first message must come out after reading only [1, 0]"
    );
    assert_eq!(it.next().map(|m| m.order), Some(1));
    assert_eq!(pulled.load(Ordering::SeqCst), 2, "1 was parked already");
    assert_eq!(it.next().map(|m| m.order), Some(2));
    assert_eq!(pulled.load(Ordering::SeqCst), 3);
    assert_eq!(it.count() as u64, n - 3);
}

// ---------------------------------------------------------------------------
// 8. Bounded queues
// ---------------------------------------------------------------------------

#[test]
fn a_bounded_queue_blocks_the_producer_at_capacity() {
    within("bounded queue back-pressure", || {
        let q = Queue::bounded(4);
        let puts = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = mpsc::channel();
        let producer = {
            let (q, puts) = (q.clone(), Arc::clone(&puts));
            thread::spawn(move || {
                for i in 0..5u64 {
                    ezq::put_msg(&q, i);
                    puts.fetch_add(1, Ordering::SeqCst);
                }
                let _ = done_tx.send(());
            })
        };
        let deadline = Instant::now() + TIMEOUT;
        while puts.load(Ordering::SeqCst) < 4 {
            assert!(Instant::now() < deadline, "the first 4 puts never finished");
            thread::sleep(Duration::from_millis(1));
        }
        // The one sleep of the file: give a broken bound the chance to show.
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            puts.load(Ordering::SeqCst),
            4,
            "the 5th put must wait while the queue is full"
        );
        assert_eq!(q.len(), 4);
        assert_eq!(q.iter().next().map(|m| m.data), Some(0));
        done_rx
            .recv_timeout(TIMEOUT)
            .expect("the producer must finish once a slot is free");
        producer.join().expect("producer");
        assert_eq!(puts.load(Ordering::SeqCst), 5);
        let rest: Vec<u64> = ezq::iter_q(&q).map(|m| m.data).collect();
        assert_eq!(rest, [1, 2, 3, 4]);
    });
}

// ---------------------------------------------------------------------------
// 9. map and workers in parallel
// ---------------------------------------------------------------------------

#[test]
fn map_keeps_input_order_under_uneven_work() {
    within("map keeps order", || {
        let out: Vec<u64> = ezq::map_with_window(
            |x: u64| {
                // Early items take longest, so later ones finish first.
                if x % 10 == 0 {
                    thread::sleep(Duration::from_millis(5));
                }
                x * 3
            },
            0..200,
            16,
        )
        .collect();
        assert_eq!(out, (0..200).map(|x| x * 3).collect::<Vec<_>>());

        let out: Vec<u64> = ezq::map(|x: u64| x + 1, 0..1000).collect();
        assert_eq!(out, (1..1001).collect::<Vec<_>>());
    });
}

#[test]
fn map_propagates_a_panic_to_the_iterating_thread() {
    within("map propagates a panic", || {
        let mut before = Vec::new();
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            let it = ezq::map(
                |x: u32| {
                    // The items before the bad one are slower, so the
                    // panic happens before their results are ready.
                    if x < 3 {
                        thread::sleep(Duration::from_millis(100));
                    }
                    if x == 3 {
                        panic!("bad item {x}");
                    }
                    x
                },
                0..10,
            );
            for x in it {
                before.push(x);
            }
        }));
        let payload = result.expect_err("the panic must reach the caller");
        assert_eq!(panic_text(payload.as_ref()), "bad item 3");
        assert_eq!(
            before,
            [0, 1, 2],
            "the panic comes when the iteration reaches its item, not before"
        );
    });
}

#[test]
fn map_of_a_million_items_stays_within_its_window() {
    within("map of 1,000,000 items", || {
        const WINDOW: u64 = 64;
        let n: u64 = 1_000_000;
        let pulled = Arc::new(AtomicU64::new(0));
        let yielded = Arc::new(AtomicU64::new(0));
        let most_ahead = Arc::new(AtomicU64::new(0));
        // Checked as each item is pulled, inside `Map::next`, before the
        // result it is pulled for is yielded.
        let input = {
            let (pulled, yielded, most_ahead) = (
                Arc::clone(&pulled),
                Arc::clone(&yielded),
                Arc::clone(&most_ahead),
            );
            (0..n).inspect(move |_| {
                let ahead =
                    pulled.fetch_add(1, Ordering::SeqCst) + 1 - yielded.load(Ordering::SeqCst);
                assert!(
                    ahead <= WINDOW,
                    "{ahead} items pulled but not yielded (window {WINDOW})"
                );
                most_ahead.fetch_max(ahead, Ordering::SeqCst);
            })
        };
        let mut it = ezq::map_with_window(|x: u64| x ^ 0x5555, input, WINDOW as usize);
        assert_eq!(pulled.load(Ordering::SeqCst), 0, "map is lazy");
        let mut count: u64 = 0;
        while let Some(y) = it.next() {
            assert_eq!(y, count ^ 0x5555, "out of order at {count}");
            count += 1;
            yielded.store(count, Ordering::SeqCst);
            let ahead = pulled.load(Ordering::SeqCst) - count;
            assert!(ahead <= WINDOW, "{ahead} items pulled but not yielded");
            assert!(it.in_flight() as u64 <= WINDOW);
            assert_eq!(it.in_flight() as u64, ahead);
        }
        assert_eq!(count, n);
        assert_eq!(pulled.load(Ordering::SeqCst), n);
        assert_eq!(it.in_flight(), 0);
        assert_eq!(
            most_ahead.load(Ordering::SeqCst),
            WINDOW,
            "the window is used in full"
        );
    });
}

#[test]
fn num_cpus_workers_sum_a_thousand_items_through_a_queue() {
    within("num_cpus workers summing", || {
        let in_q = Queue::new();
        let out_q = Queue::new();
        let workers: Vec<ezq::Worker> = (0..ezq::num_cpus())
            .map(|_| {
                let (i_q, o_q) = (in_q.clone(), out_q.clone());
                ezq::run(move || {
                    let total: u64 = ezq::iter_msg(&i_q).map(|m| m.data).sum();
                    ezq::put_msg(&o_q, total);
                })
            })
            .collect();
        for i in 0..1000u64 {
            ezq::put_msg(&in_q, i);
        }
        ezq::endq_and_wait(&in_q, workers).expect("no worker fails");
        let partials: Vec<u64> = ezq::iter_q(&out_q).map(|m| m.data).collect();
        assert_eq!(
            partials.len(),
            ezq::num_cpus(),
            "one partial sum per worker"
        );
        assert_eq!(partials.iter().sum::<u64>(), (0..1000).sum::<u64>());
    });
}

// ---------------------------------------------------------------------------
// 10. Msg
// ---------------------------------------------------------------------------

#[test]
fn msg_new_has_empty_kind_and_order_zero() {
    let m = Msg::new(5u64);
    assert!(m.kind.is_empty());
    assert_eq!(m.kind, "");
    assert_eq!(m.order, 0);
    assert_eq!(m.data, 5);
    let plain: Msg<u64> = 5.into();
    assert_eq!(plain, m);
}

#[test]
fn msg_kinds_compare_equal_to_their_strings() {
    let even = Msg::new(2u64).kind("EVEN");
    assert_eq!(even.kind, "EVEN");
    assert!("EVEN" == even.kind);
    assert_eq!(even.kind.as_str(), "EVEN");
    assert!(even.kind != "ODD");
    assert!(!even.kind.is_empty());

    let long = Msg::new(3u64).kind(String::from("a long kind name"));
    assert_eq!(long.kind, "a long kind name");
    assert_eq!(long.kind, String::from("a long kind name"));
    assert_eq!(long.kind.as_str(), "a long kind name");
    assert!(long.kind != "a long kind namf");
    assert!(long.kind != "EVEN");
    assert_eq!(long.kind, Msg::new(0u64).kind("a long kind name").kind);
}

#[test]
fn msg_of_u64_is_24_bytes() {
    assert_eq!(std::mem::size_of::<Msg<u64>>(), 24);
}

// ---------------------------------------------------------------------------
// 11. num_cpus
// ---------------------------------------------------------------------------

#[test]
fn num_cpus_is_at_least_one_and_matches_available_parallelism() {
    assert!(ezq::num_cpus() >= 1);
    if let Ok(n) = thread::available_parallelism() {
        assert_eq!(ezq::num_cpus(), n.get());
    }
}

// ---------------------------------------------------------------------------
// 12. Error Display
// ---------------------------------------------------------------------------

#[test]
fn error_display_of_one_failure() {
    within("error display of one failure", || {
        let err = ezq::run_named("NAME", || -> () { panic!("MSG") })
            .join()
            .expect_err("the worker panicked");
        assert_eq!(err.to_string(), "worker `NAME` panicked: MSG");
    });
}

#[test]
fn error_display_of_two_failures_lists_both() {
    within("error display of two failures", || {
        let q = Queue::<u64>::new();
        let a = ezq::run_named("alpha", || -> () { panic!("first problem") });
        let b = ezq::run_named("beta", || -> Result<(), String> {
            Err("second problem".to_owned())
        });
        let err = ezq::endq_and_wait(&q, [a, b]).expect_err("both workers failed");
        assert_eq!(err.failures().len(), 2);
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "2 workers failed");
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1].trim(), "worker `alpha` panicked: first problem");
        assert_eq!(
            lines[2].trim(),
            "worker `beta` returned an error: second problem"
        );
    });
}
