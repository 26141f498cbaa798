//! Attacks on scoped pipelines (`pipeline! { scope = s; .. }`,
//! `Graph::start_in`, `map_scoped`) and on routing between replicas
//! (`q[by KEY]`, `q[broadcast]`): each test is a way the promise (a
//! message a queue accepted is processed, handed to the caller, or counted
//! as dropped; no hang, no abort) could break. Those that found a break are
//! `#[ignore]`d with the bug in one line, until it is fixed.

mod common;

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::process::child_test_passes;
use common::within;
use ezq::graph::Capacity;
use ezq::{DropReason, Graph, Inbox, Outbox, pipeline, worker};

/// The text of a panic payload.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Forwards every message.
#[worker]
fn echo(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        out.put_msg(msg);
    }
}

/// The replica number of the worker thread running this.
fn my_replica() -> usize {
    let name = thread::current().name().unwrap_or_default().to_owned();
    let (_, n) = name
        .rsplit_once('#')
        .expect("a worker thread is named `worker#replica`");
    n.parse().expect("a replica number")
}

// ---------------------------------------------------------------------------
// Scoped pipelines
// ---------------------------------------------------------------------------

/// `Graph::start_in` whose `handle` panics (here: it asks for a source of
/// a queue that a worker produces, which `Channels::source` refuses) after
/// the workers were spawned on the scope: the panic must reach the caller.
#[test]
fn a_panic_in_start_ins_handle_reaches_the_caller_instead_of_hanging_the_scope() {
    let text = within(10, || {
        let outcome = panic::catch_unwind(|| {
            thread::scope(|s| {
                let mut g = Graph::new();
                let numbers = g.queue::<u64>("numbers");
                let doubled = g.queue::<u64>("doubled");
                g.add(
                    "double",
                    1,
                    (numbers,),
                    (doubled,),
                    |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                        for msg in i {
                            o.put(msg.data * 2);
                        }
                    },
                );
                // `doubled` is produced by `double`: not a source.
                let _p = g.start_in(s, |c| (c.source(doubled), c.sink(doubled)));
            });
        });
        message(outcome.expect_err("the handle's panic").as_ref())
    });
    assert!(text.contains("no worker produces"), "{text}");
}

/// A worker whose thread cannot be spawned (a stack no system can give):
/// the panic of `start_in` must reach the caller, even though the workers
/// before it already run on the scope.
#[test]
fn a_worker_that_cannot_be_spawned_in_a_scope_reaches_the_caller() {
    let text = within(10, || {
        let outcome = panic::catch_unwind(|| {
            thread::scope(|s| {
                let _p = pipeline! {
                    scope = s;
                    numbers -> echo -> middle -> echo[stack 1usize << 60] -> out;
                };
            });
        });
        message(outcome.expect_err("the spawn's panic").as_ref())
    });
    assert!(text.contains("refused to start a worker thread"), "{text}");
}

/// Counts what it sees into a borrowed counter, and sums into another.
#[worker]
fn tally_into(inbox: Inbox<u64>, seen: &AtomicU64, sum: &AtomicU64) {
    for msg in inbox {
        seen.fetch_add(1, Ordering::Relaxed);
        sum.fetch_add(msg.data, Ordering::Relaxed);
    }
}

/// A scoped pipeline never joined: it is dropped at the end of the
/// closure, which ends its source and waits for its workers, so that every
/// message is counted once the scope returns.
#[test]
fn a_scoped_pipeline_dropped_without_join_finishes_its_work() {
    within(20, || {
        let (seen, sum) = (AtomicU64::new(0), AtomicU64::new(0));
        thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                numbers[4] -> tally_into(&seen, &sum) * 3;
            };
            for i in 1..=2000u64 {
                p.numbers.put(i);
            }
            // Neither `end` nor `join`: the drop does both.
        });
        assert_eq!(seen.into_inner(), 2000);
        assert_eq!(sum.into_inner(), 2000 * 2001 / 2);
    });
}

/// The closure panics while the scoped pipeline runs: its own panic
/// reaches the caller (not an abort, not a hang, not the pipeline's), and
/// the workers still finished what they were given before the scope
/// returned.
#[test]
fn a_closure_that_panics_while_its_scoped_pipeline_runs_keeps_its_panic() {
    within(20, || {
        let (seen, sum) = (AtomicU64::new(0), AtomicU64::new(0));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            thread::scope(|s| {
                let p = pipeline! {
                    scope = s;
                    numbers -> tally_into(&seen, &sum) * 2;
                };
                for i in 0..100u64 {
                    p.numbers.put(i);
                }
                panic!("the caller gave up");
            })
        }));
        assert_eq!(message(outcome.unwrap_err().as_ref()), "the caller gave up");
        assert_eq!(seen.load(Ordering::Relaxed), 100);
    });
}

/// Fails at a given message, after counting what it saw.
#[worker]
fn fail_at(inbox: Inbox<u64>, out: Outbox<u64>, at: &u64, seen: &AtomicU64) {
    for msg in inbox {
        seen.fetch_add(1, Ordering::Relaxed);
        assert!(msg.data != *at, "failed at {at}");
        out.put_msg(msg);
    }
}

/// A worker fails and the closure panics too: the closure's panic goes on
/// (the pipeline's drop does not panic a second time, which would abort).
#[test]
fn a_failing_worker_and_a_panicking_closure_do_not_abort() {
    within(20, || {
        let (at, seen) = (5u64, AtomicU64::new(0));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            thread::scope(|s| {
                let p = pipeline! {
                    scope = s;
                    numbers -> fail_at(&at, &seen) -> out;
                };
                p.numbers.feed(0..10u64);
                assert_eq!(p.out.iter().count(), 5);
                panic!("and the caller too");
            })
        }));
        assert_eq!(message(outcome.unwrap_err().as_ref()), "and the caller too");
        assert_eq!(seen.load(Ordering::Relaxed), 6);
    });
}

/// Polls a borrowed flag until the pipeline is cancelled, counting its
/// rounds.
#[worker]
fn spin(out: Outbox<u64>, rounds: &AtomicU64) {
    while !ezq::is_cancelled() {
        rounds.fetch_add(1, Ordering::Relaxed);
        out.put(1);
        thread::sleep(Duration::from_micros(200));
    }
}

/// `cancel` and `join_timeout` inside a scope: the timeout reports the
/// running worker, the cancel stops it, and the error says so.
#[test]
fn cancel_and_join_timeout_inside_a_scope() {
    within(20, || {
        let rounds = AtomicU64::new(0);
        let error = thread::scope(|s| {
            let mut p = pipeline! {
                scope = s;
                () -> spin(&rounds) -> ticks;
            };
            assert!(p.ticks.iter().take(3).count() == 3);
            let timed_out = p
                .join_timeout(Duration::from_millis(20))
                .expect_err("spin runs until cancelled");
            assert_eq!(timed_out.running, [("spin".to_owned(), 0)]);
            p.cancel();
            p.join().expect_err("cancelled")
        });
        assert!(error.is_cancelled(), "{error}");
        assert!(rounds.load(Ordering::Relaxed) >= 3);
    });
}

/// A `join_timeout` that expires while the source's END does not fit (a
/// source of capacity 1 before a slow worker): the END goes on a thread
/// of its own, and the scope still ends with every message taken.
#[test]
fn join_timeout_with_a_full_source_inside_a_scope() {
    within(20, || {
        let (seen, sum) = (AtomicU64::new(0), AtomicU64::new(0));
        thread::scope(|s| {
            let mut g = Graph::new();
            let numbers = g.queue_with::<u64>("numbers", Capacity::Bounded(1));
            let (seen, sum) = (&seen, &sum);
            g.add(
                "slow",
                1,
                (numbers,),
                (),
                move |(i,): (Inbox<u64>,), (): ()| {
                    for msg in i {
                        thread::sleep(Duration::from_millis(5));
                        seen.fetch_add(1, Ordering::Relaxed);
                        sum.fetch_add(msg.data, Ordering::Relaxed);
                    }
                },
            );
            let mut p = g.start_in(s, |c| c.source(numbers));
            for i in 1..=3u64 {
                p.put(i);
            }
            assert!(p.join_timeout(Duration::from_millis(1)).is_err());
            let outcome = p.join_timeout(Duration::from_secs(5));
            assert!(matches!(outcome, Ok(Ok(()))), "{outcome:?}");
        });
        assert_eq!((seen.into_inner(), sum.into_inner()), (3, 6));
    });
}

/// Sums what it reads with a scoped pipeline of its own, which borrows the
/// worker's own local: pipelines nest inside workers.
#[worker]
fn nested_sum(inbox: Inbox<Vec<u64>>, out: Outbox<u64>, offset: &u64) {
    for msg in inbox {
        let local_offset = *offset;
        let seen = AtomicU64::new(0);
        let (seen_ref, sum) = (&seen, AtomicU64::new(0));
        thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                items -> tally_into(seen_ref, &sum) * 2;
            };
            p.items.feed(msg.data.iter().map(|x| x + local_offset));
            p.join().expect("the inner pipeline loses nothing");
        });
        assert_eq!(seen.into_inner(), msg.data.len() as u64);
        out.put(sum.into_inner());
    }
}

#[test]
fn scoped_pipelines_nest_inside_a_scoped_pipelines_workers() {
    within(30, || {
        let offset = 1u64;
        let mut sums: Vec<u64> = thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                batches -> nested_sum(&offset) * 2 -> sums;
            };
            p.batches
                .feed((0..6u64).map(|i| (0..=i).collect::<Vec<_>>()));
            let sums = p.sums.iter().map(|m| m.data).collect();
            p.join().unwrap();
            sums
        });
        sums.sort_unstable();
        let expected: Vec<u64> = (0..6u64).map(|i| (0..=i).map(|x| x + 1).sum()).collect();
        assert_eq!(sums, expected);
    });
}

/// A map worker with a borrowed argument that may fail.
#[worker]
fn find(name: String, table: &HashMap<String, u64>) -> Result<u64, String> {
    table.get(&name).copied().ok_or(format!("no {name}"))
}

/// A map worker that borrows a slice of borrowed strings.
#[worker]
fn pick(index: usize, words: &[&str]) -> String {
    words[index % words.len()].to_owned()
}

#[test]
fn map_workers_borrow_tables_and_slices_of_borrows() {
    within(20, || {
        let table: HashMap<String, u64> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let text = String::from("alpha beta gamma");
        let words: Vec<&str> = text.split(' ').collect();
        let (total, picked, error) = thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                names -> find(&table) * 3 -> ids;
                indices -> pick(&words[..]) -> picked;
            };
            p.names.feed((0..50).map(|i| format!("k{i}")));
            p.indices.feed(0..6usize);
            let total: u64 = p.ids.iter().map(|m| m.data).sum();
            let picked: Vec<String> = p.picked.iter().map(|m| m.data).collect();
            (total, picked, p.join().err())
        });
        assert!(error.is_none(), "{error:?}");
        assert_eq!(total, (0..50).sum::<u64>());
        assert_eq!(picked, ["alpha", "beta", "gamma", "alpha", "beta", "gamma"]);
        // And the failure of a borrowed lookup is reported, what it left
        // counted.
        let error = thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                names -> find(&table) -> ids;
            };
            p.names.feed(["k1", "nobody", "k2", "k3"].map(String::from));
            let _: Vec<_> = p.ids.iter().collect();
            p.join().unwrap_err()
        });
        assert_eq!(error.failures().len(), 1, "{error}");
        assert!(error.to_string().contains("no nobody"), "{error}");
        assert_eq!(error.dropped(), 2, "{error}");
    });
}

#[test]
fn map_scoped_reraises_a_panic_and_handles_empty_and_long_inputs() {
    within(30, || {
        let limit = 500u64;
        let items: Vec<u64> = (0..1000).collect();
        let outcome = panic::catch_unwind(|| {
            ezq::map_scoped(
                |x: &u64| {
                    assert!(*x < limit, "{x} is over {limit}");
                    x * 2
                },
                &items,
            )
        });
        let text = message(outcome.expect_err("the closure panicked").as_ref());
        assert!(text.contains("is over 500"), "{text}");

        let none: Vec<u64> = ezq::map_scoped(|x: &u64| x + limit, &Vec::<u64>::new());
        assert!(none.is_empty());

        let n = 300_000u64;
        let long: Vec<u64> = ezq::map_scoped(|x: u64| x * 3 + limit, 0..n);
        assert_eq!(long.len(), n as usize);
        assert!(
            long.iter()
                .enumerate()
                .all(|(i, y)| *y == i as u64 * 3 + 500)
        );
    });
}

/// `map_scoped` inside a worker of a scoped pipeline, borrowing the
/// worker's argument.
#[worker]
fn scale_all(inbox: Inbox<Vec<u64>>, out: Outbox<u64>, factor: &u64) {
    for msg in inbox {
        let scaled = ezq::map_scoped(|x: &u64| x * factor, &msg.data);
        out.put(scaled.iter().sum::<u64>());
    }
}

#[test]
fn map_scoped_runs_inside_a_scoped_worker() {
    within(20, || {
        let factor = 3u64;
        let total: u64 = thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                batches -> scale_all(&factor) * 2 -> sums;
            };
            p.batches.feed((0..20u64).map(|i| vec![i; 10]));
            let total = p.sums.iter().map(|m| m.data).sum();
            p.join().unwrap();
            total
        });
        assert_eq!(total, (0..20u64).map(|i| i * 10 * 3).sum::<u64>());
    });
}

// ---------------------------------------------------------------------------
// Routing between replicas
// ---------------------------------------------------------------------------

/// A key function that refuses the message 13.
fn fussy_key(n: &u64) -> u64 {
    assert!(*n != 13, "no key for 13");
    *n
}

/// A batched keyed source whose block waits: the flusher thread sends it,
/// calling the key function there. A key that panics on that thread must
/// not make the messages of the block vanish with `Ok(())`.
#[test]
fn a_key_that_panics_on_the_flusher_does_not_lose_a_block_silently() {
    within(20, || {
        let p = pipeline! {
            numbers[by fussy_key, batch 64] -> echo * 2 -> out;
        };
        // A put that panics (were the key computed as it is put) did not
        // accept its message.
        let mut accepted = 0u64;
        for i in 10..14u64 {
            if panic::catch_unwind(AssertUnwindSafe(|| p.numbers.put(i))).is_ok() {
                accepted += 1;
            }
        }
        // The caller waits outside the pipeline: the flusher sends the block.
        thread::sleep(Duration::from_millis(50));
        let _ = panic::catch_unwind(AssertUnwindSafe(|| p.numbers.end()));
        let got = p.out.iter().count() as u64;
        let outcome = p.join();
        let dropped = outcome.as_ref().err().map_or(0, ezq::Error::dropped);
        assert!(
            got + dropped >= accepted && (outcome.is_err() || got == accepted),
            "{accepted} messages accepted, {got} delivered, join: {outcome:?}"
        );
    });
}

/// The same key function in a source's own thread: the put that sends the
/// block panics there, and what the block held is delivered or counted.
#[test]
fn a_key_that_panics_in_the_putting_thread_is_reported() {
    within(20, || {
        let p = pipeline! {
            numbers[by fussy_key, batch 4] -> echo * 2 -> out;
        };
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            for i in 10..14u64 {
                p.numbers.put(i);
            }
        }));
        assert_eq!(message(outcome.unwrap_err().as_ref()), "no key for 13");
        p.numbers.end();
        let got = p.out.iter().count() as u64;
        let outcome = p.join();
        let dropped = outcome.as_ref().err().map_or(0, ezq::Error::dropped);
        // 10, 11 and 12 were accepted: each is delivered or counted.
        assert!(got <= 3, "{got}");
        assert!(got + dropped >= 3, "{got} delivered, join: {outcome:?}");
    });
}

/// Reads its first message, then: replica 0 discards the rest on purpose,
/// every other replica just returns (leaving the rest unread).
#[worker]
fn first_then_leave(inbox: Inbox<u64>, out: Outbox<u64>) {
    let mut inbox = inbox;
    if let Some(msg) = inbox.recv() {
        out.put_msg(msg);
    }
    if my_replica() == 0 {
        inbox.discard_rest();
    }
}

/// A keyed replica that discards the rest of its own channel on purpose
/// must not make another replica's unread messages (which it could never
/// see) count as discarded: that replica returned early, and what it left
/// is lost.
#[test]
fn a_keyed_replicas_discard_does_not_hide_another_replicas_loss() {
    within(20, || {
        let p = pipeline! {
            numbers[by |n: &u64| *n] -> first_then_leave * 2 -> firsts;
        };
        p.numbers.feed(0..2000u64);
        let firsts = p.firsts.iter().count();
        assert_eq!(firsts, 2);
        let error = p
            .join()
            .expect_err("replica 1 returned with its keys unread");
        assert!(
            error
                .drops()
                .iter()
                .any(|d| matches!(d.reason, DropReason::ReaderReturned { replica: 1, .. })),
            "{error}"
        );
    });
}

/// The same with a broadcast queue: replica 0 discards its copies, replica
/// 1 returns leaving its own copies unread.
#[test]
fn a_broadcast_replicas_discard_does_not_hide_another_replicas_loss() {
    within(20, || {
        let p = pipeline! {
            numbers[broadcast] -> first_then_leave * 2 -> firsts;
        };
        p.numbers.feed(0..2000u64);
        assert_eq!(p.firsts.iter().count(), 2);
        let error = p
            .join()
            .expect_err("replica 1 returned with its copies unread");
        assert!(error.dropped() > 0, "{error}");
    });
}

/// Reads one message (the first replica to hear), then leaves, and says so
/// once its inbox is closed.
#[worker]
fn take_one_and_leave(inbox: Inbox<u64>, out: Outbox<u64>, left: &'static AtomicUsize) {
    let mut inbox = inbox;
    if let Some(msg) = inbox.recv() {
        out.put_msg(msg);
    }
    drop(inbox);
    left.fetch_add(1, Ordering::SeqCst);
}

/// After every replica of a broadcast queue's reader is gone, a source's
/// `try_put` hands each message back: not only the first one.
#[test]
fn a_broadcast_queue_with_no_replica_left_refuses_every_put() {
    static LEFT: AtomicUsize = AtomicUsize::new(0);
    within(20, || {
        let p = pipeline! {
            config[broadcast] -> take_one_and_leave(&LEFT) * 2 -> heard;
        };
        p.config.put(1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while LEFT.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(LEFT.load(Ordering::SeqCst), 2);
        let refused: Vec<bool> = (2..6u64).map(|i| p.config.try_put(i).is_err()).collect();
        assert_eq!(refused, [true; 4], "try_put after every replica left");
        assert_eq!(p.heard.iter().count(), 2);
        // Both replicas took the one message accepted; the rest was refused.
        let outcome = p.join();
        assert_eq!(
            outcome.as_ref().err().map_or(0, ezq::Error::dropped),
            0,
            "{outcome:?}"
        );
    });
}

/// Replica 1 finds the readers gone with a `try_put`, and returns; then
/// replica 0 puts, as a generator that counts on `put` to stop it does.
#[worker]
fn generate(out: Outbox<u64>, left: &'static AtomicUsize, after: &'static AtomicU64) {
    static FOUND_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if my_replica() == 1 {
        while left.load(Ordering::SeqCst) < 2 {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(out.try_put(0).is_err(), "every reader is gone");
        FOUND_GONE.store(true, Ordering::SeqCst);
        return;
    }
    out.put(1);
    while !FOUND_GONE.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    // Bounded, so that a put that never stops the worker does not spin for
    // the rest of the run.
    for i in 0..100_000u64 {
        out.put(i);
        after.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_put_into_a_broadcast_queue_with_no_replica_left_stops_its_worker() {
    static LEFT: AtomicUsize = AtomicUsize::new(0);
    static AFTER: AtomicU64 = AtomicU64::new(0);
    within(20, || {
        let p = pipeline! {
            () -> generate(&LEFT, &AFTER) * 2 -> config[broadcast] -> take_one_and_leave(&LEFT) * 2 -> heard;
        };
        assert_eq!(p.heard.iter().count(), 2);
        let error = p.join().expect_err("the replicas left early");
        assert_eq!(
            AFTER.load(Ordering::SeqCst),
            0,
            "puts that went through after every reader left: {error}"
        );
    });
}

/// Puts a message, then fails before the block it sits in leaves.
#[worker]
fn put_then_fail(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        let n = msg.data;
        out.put_msg(msg);
        assert!(n != 13, "failed right after putting {n}");
    }
}

/// A worker fails while its block of a keyed queue holds a message whose
/// key panics: the outbox sends the block as the worker unwinds, and the
/// key function must not panic there (a panic while panicking aborts the
/// process). Checked in a child process, so that an abort stays there.
#[test]
fn a_key_that_panics_while_its_worker_unwinds_does_not_abort() {
    child_test_passes("key_panics_while_unwinding_child", "EZQ_ATTACK_CHILD");
}

/// The body of the test above; does nothing unless run as its child.
#[test]
fn key_panics_while_unwinding_child() {
    if std::env::var_os("EZQ_ATTACK_CHILD").is_none() {
        return;
    }
    within(20, || {
        let p = pipeline! {
            numbers -> put_then_fail -> keyed[by fussy_key, batch 64] -> echo * 2 -> out;
        };
        p.numbers.feed([1, 13, 2]);
        let got = p.out.iter().count() as u64;
        let error = p.join().expect_err("put_then_fail failed");
        assert!(!error.failures().is_empty(), "{error}");
        assert!(got + error.dropped() >= 2, "{error}");
    });
}

/// Feeds a routed source (keyed or broadcast, batched or not) from 4
/// threads with `try_put` while the main thread ends it: every put that
/// returned `Ok` is taken (by each replica, for a broadcast), none after.
#[test]
fn a_routed_source_fed_from_threads_racing_its_end_loses_nothing() {
    for (broadcast, block) in [
        (false, None),
        (false, Some(16)),
        (true, None),
        (true, Some(16)),
    ] {
        within(20, move || {
            let mut g = Graph::new();
            let numbers = match broadcast {
                true => g.broadcast_queue::<u64>("numbers", Capacity::Bounded(8), block),
                false => g.keyed_queue("numbers", Capacity::Bounded(8), block, |n: &u64| n % 97),
            };
            let seen = g.queue::<u64>("seen");
            g.add(
                "count",
                3,
                (numbers,),
                (seen,),
                |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                    for msg in i {
                        o.put_msg(msg);
                    }
                },
            );
            let p = g.start(|c| (c.source(numbers), c.sink(seen)));
            let accepted = AtomicU64::new(0);
            let accepted_sum = AtomicU64::new(0);
            thread::scope(|s| {
                for t in 0..4u64 {
                    let (p, accepted, accepted_sum) = (&p, &accepted, &accepted_sum);
                    s.spawn(move || {
                        for i in 0.. {
                            let value = t * 1_000_000 + i;
                            if p.0.try_put(value).is_err() {
                                break;
                            }
                            accepted.fetch_add(1, Ordering::SeqCst);
                            accepted_sum.fetch_add(value, Ordering::SeqCst);
                        }
                    });
                }
                thread::sleep(Duration::from_millis(30));
                p.0.end();
            });
            let got: Vec<u64> = p.1.iter().map(|m| m.data).collect();
            p.join().unwrap();
            let copies = if broadcast { 3 } else { 1 };
            let what = format!("broadcast {broadcast}, block {block:?}");
            assert_eq!(got.len() as u64, copies * accepted.into_inner(), "{what}");
            assert_eq!(
                got.iter().sum::<u64>(),
                copies * accepted_sum.into_inner(),
                "{what}"
            );
        });
    }
}

/// A scoped pipeline moved to another thread of its scope, fed and joined
/// there.
#[test]
fn a_scoped_pipeline_is_fed_and_joined_from_another_scoped_thread() {
    within(20, || {
        let (seen, sum) = (AtomicU64::new(0), AtomicU64::new(0));
        let outcome = thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                numbers[by |n: &u64| n % 3] -> tally_into(&seen, &sum) * 3;
            };
            let feeder = s.spawn(move || {
                p.numbers.feed(1..=300u64);
                p.join()
            });
            feeder.join().expect("the feeder")
        });
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!((seen.into_inner(), sum.into_inner()), (300, 300 * 301 / 2));
    });
}

/// Records, per key, the replica that saw it; sends its count at END.
#[worker]
fn owner(inbox: Inbox<u64>, out: Outbox<(usize, u64)>) {
    let me = my_replica();
    let mut n = 0;
    for _ in inbox {
        n += 1;
    }
    out.put((me, n));
}

/// Every key hashing to one replica: the others get only the END, and
/// every message is taken once.
#[test]
fn every_key_on_one_replica_still_ends_every_replica() {
    within(20, || {
        let p = pipeline! {
            numbers[by |_: &u64| 7u8, batch 8, 4] -> owner * 4 -> counts;
        };
        p.numbers.feed(0..5000u64);
        let mut counts: Vec<(usize, u64)> = p.counts.iter().map(|m| m.data).collect();
        let monitor = p.monitor();
        p.join().unwrap();
        counts.sort_unstable();
        assert_eq!(counts.len(), 4, "END reaches every replica");
        let busy: Vec<_> = counts.iter().filter(|c| c.1 > 0).collect();
        assert_eq!(busy.len(), 1, "{counts:?}");
        assert_eq!(busy[0].1, 5000);
        let q = &monitor.stats().queues[0];
        assert_eq!((q.put, q.taken, q.dropped), (5000, 5000, 0));
    });
}

/// Fails at a message whose value is a multiple of 1000 (after the first);
/// sends on the others with its replica number.
#[worker]
fn fragile_echo(inbox: Inbox<u64>, out: Outbox<(usize, u64)>) {
    let me = my_replica();
    for msg in inbox {
        assert!(
            msg.data == 0 || msg.data % 1000 != 0,
            "fragile at {}",
            msg.data
        );
        out.put((me, msg.data));
    }
}

/// A keyed replica fails while the source waits on its full channel
/// (capacity 1, batched): the source is released, the other replicas take
/// all their keys, and exactly what was routed to the failed replica and
/// not taken is counted as dropped.
#[test]
fn a_failed_keyed_replica_releases_a_producer_waiting_on_its_full_channel() {
    within(20, || {
        let p = pipeline! {
            numbers[by |n: &u64| n % 10, batch 4, 1] -> fragile_echo * 3 -> out;
        };
        let n = 20_000u64;
        p.numbers.feed(0..n);
        let got: Vec<(usize, u64)> = p.out.iter().map(|m| m.data).collect();
        let error = p.join().expect_err("the replica with key 0 failed");
        assert_eq!(error.failures().len(), 1, "{error}");
        // The message it failed on was taken (by the replica that failed
        // at it): every other one was delivered or counted as dropped.
        assert_eq!(got.len() as u64 + 1 + error.dropped(), n, "{error}");
        let failed = error.failures()[0].replica.expect("a pipeline replica");
        // Each key of a replica that did not fail arrived whole.
        let mut per_key = HashMap::<u64, u64>::new();
        for (replica, value) in &got {
            if *replica != failed {
                *per_key.entry(value % 10).or_default() += 1;
            }
        }
        assert!(!per_key.is_empty());
        for (key, count) in per_key {
            assert_eq!(count, n / 10, "key {key}");
        }
        assert!(matches!(
            error.drops()[0].reason,
            DropReason::ReaderFailed { .. }
        ));
    });
}

/// Counts what it sees, slowly for its first messages.
#[worker]
fn slow_count(inbox: Inbox<u64>, out: Outbox<(usize, u64, u64)>) {
    let (mut n, mut sum) = (0, 0);
    for msg in inbox {
        if n < 20 && my_replica() == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        n += 1;
        sum += msg.data;
    }
    out.put((my_replica(), n, sum));
}

/// A broadcast queue of capacity 1 read by a slow replica and fast ones,
/// batched and not: every replica gets every message, in full.
#[test]
fn a_broadcast_of_capacity_one_with_a_slow_replica_delivers_every_copy() {
    within(30, || {
        macro_rules! check {
            ($p:expr) => {{
                let p = $p;
                p.numbers.feed(0..3000u64);
                let counts: Vec<_> = p.counts.iter().map(|m| m.data).collect();
                let monitor = p.monitor();
                p.join().unwrap();
                assert_eq!(counts.len(), 3);
                for (_, n, sum) in counts {
                    assert_eq!((n, sum), (3000, 3000 * 2999 / 2));
                }
                let q = &monitor.stats().queues[0];
                assert_eq!((q.put, q.taken, q.dropped), (9000, 9000, 0));
            }};
        }
        check!(pipeline! { numbers[broadcast, 1] -> slow_count * 3 -> counts; });
        check!(pipeline! { numbers[broadcast, 1, batch 8] -> slow_count * 3 -> counts; });
    });
}

/// Replica 0 returns after one message, without a word; the others read
/// on.
#[worker]
fn replica_zero_leaves(inbox: Inbox<u64>, out: Outbox<(usize, u64)>) {
    let me = my_replica();
    let mut n = 0;
    for _ in inbox {
        n += 1;
        if me == 0 {
            break;
        }
    }
    out.put((me, n));
}

/// A broadcast replica that returns early loses its own copies, and says
/// so; the other replicas get every message.
#[test]
fn a_broadcast_replica_that_returns_early_loses_only_its_copies() {
    within(20, || {
        let p = pipeline! {
            numbers[broadcast, 16] -> replica_zero_leaves * 3 -> counts;
        };
        p.numbers.feed(0..1000u64);
        let mut counts: Vec<(usize, u64)> = p.counts.iter().map(|m| m.data).collect();
        counts.sort_unstable();
        let error = p.join().expect_err("replica 0 left its copies");
        assert_eq!(counts, [(0, 1), (1, 1000), (2, 1000)]);
        assert_eq!(error.dropped(), 999, "{error}");
        assert!(matches!(
            error.drops()[0].reason,
            DropReason::ReaderReturned { replica: 0, .. }
        ));
    });
}

/// Every replica discards the rest of a broadcast queue on purpose: the
/// copies they left are discarded, not lost.
#[worker]
fn first_then_discard(inbox: Inbox<u64>, out: Outbox<u64>) {
    let mut inbox = inbox;
    if let Some(msg) = inbox.recv() {
        out.put_msg(msg);
    }
    inbox.discard_rest();
}

#[test]
fn broadcast_replicas_that_all_discard_lose_nothing() {
    within(20, || {
        let p = pipeline! {
            numbers[broadcast, batch 4] -> first_then_discard * 3 -> firsts;
        };
        p.numbers.feed(0..1000u64);
        let firsts = p.firsts.iter().count() as u64;
        let monitor = p.monitor();
        p.join().expect("discarded on purpose");
        let q = &monitor.stats().queues[0];
        assert_eq!(firsts, 3);
        assert_eq!((q.put, q.taken + q.discarded, q.dropped), (3000, 3000, 0));
    });
}

/// Waits on each message until the pipeline is cancelled.
#[worker]
fn stall(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        while !ezq::is_cancelled() {
            thread::sleep(Duration::from_millis(1));
        }
        out.put_msg(msg);
    }
}

/// A producer waits on a full channel of a routed queue (capacity 1, its
/// replica stalled): `cancel` releases it, and `join` says it was
/// cancelled, with what was lost counted.
#[test]
fn cancel_releases_a_producer_waiting_on_a_full_routed_channel() {
    within(20, || {
        macro_rules! check {
            ($p:expr) => {{
                let p = Arc::new($p);
                let feeder = {
                    let p = Arc::clone(&p);
                    thread::spawn(move || {
                        for i in 0..100u64 {
                            p.numbers.put(i);
                        }
                    })
                };
                thread::sleep(Duration::from_millis(50));
                assert!(!feeder.is_finished(), "the feeder waits on a full channel");
                p.cancel();
                feeder
                    .join()
                    .expect("put after a cancel drops, it does not panic");
                let p = Arc::into_inner(p).unwrap();
                let error = p.join().expect_err("cancelled");
                assert!(error.is_cancelled(), "{error}");
            }};
        }
        check!(pipeline! { numbers[by |n: &u64| *n, 1] -> stall * 2 -> out; });
        check!(pipeline! { numbers[broadcast, 1, batch 2] -> stall * 3 -> out; });
    });
}

/// Splits a line of numbers into counts of one.
#[worker]
fn split_numbers(lines: Inbox<String>, words: Outbox<(String, u64)>) {
    for msg in lines {
        for w in msg.data.split(' ') {
            words.put((w.to_owned(), 1));
        }
    }
}

/// Sends each number on as a count of one.
#[worker]
fn as_count(numbers: Inbox<u64>, words: Outbox<(String, u64)>) {
    for msg in numbers {
        words.put((msg.data.to_string(), 1));
    }
}

/// Adds up the counts of its keys and sends its totals at END.
#[worker]
fn add_up(counts: Inbox<(String, u64)>, totals: Outbox<(String, u64)>) {
    let mut total = HashMap::<String, u64>::new();
    for msg in counts {
        *total.entry(msg.data.0).or_default() += msg.data.1;
    }
    for entry in total {
        totals.put(entry);
    }
}

fn word(entry: &(String, u64)) -> &str {
    &entry.0
}

/// A keyed queue written by two different workers (fan-in), batched: it
/// ends once both are done, and each key is merged by one replica.
#[test]
fn a_keyed_queue_fed_by_two_different_workers_merges_each_key_once() {
    within(20, || {
        let p = pipeline! {
            lines -> split_numbers * 2 -> words[by word, batch 32];
            numbers -> as_count * 3 -> words;
            words -> add_up * 3 -> totals;
        };
        p.lines
            .feed((0..500).map(|i| format!("{} {}", i % 50, (i + 1) % 50)));
        p.numbers.feed((0..1000u64).map(|i| i % 50));
        let mut totals = HashMap::new();
        for msg in p.totals.iter() {
            assert!(
                totals.insert(msg.data.0, msg.data.1).is_none(),
                "a key merged twice"
            );
        }
        p.join().unwrap();
        assert_eq!(totals.len(), 50);
        assert!(totals.values().all(|&n| n == 40), "{totals:?}");
    });
}

/// Checks that each key's values arrive in the order they were put, and
/// sends how many it saw.
#[worker]
fn in_key_order(inbox: Inbox<u64>, out: Outbox<u64>) {
    let mut last = HashMap::<u64, u64>::new();
    let mut n = 0;
    for msg in inbox {
        let key = msg.data % 17;
        if let Some(before) = last.insert(key, msg.data) {
            assert!(before < msg.data, "key {key}: {} after {before}", msg.data);
        }
        n += 1;
    }
    out.put(n);
}

/// The messages of a key reach their replica in the order they were put,
/// through blocks split by key, a small capacity, and blocks the flusher
/// sends (the feeder pauses now and then).
#[test]
fn a_keyed_block_keeps_each_keys_order() {
    within(30, || {
        let p = pipeline! {
            numbers[by |n: &u64| n % 17, batch 16, 8] -> in_key_order * 3 -> counts;
        };
        for i in 0..20_000u64 {
            p.numbers.put(i);
            if i % 2_000 == 0 {
                thread::sleep(Duration::from_millis(5));
            }
        }
        p.numbers.end();
        let total: u64 = p.counts.iter().map(|m| m.data).sum();
        p.join().unwrap();
        assert_eq!(total, 20_000);
    });
}

/// Sorts what it reads by order and checks that it comes out ascending.
#[worker]
fn sort_check(inbox: Inbox<u64>, out: Outbox<u64>) {
    let mut last = None;
    let mut n = 0;
    for msg in ezq::sortiter(inbox) {
        assert!(last < Some(msg.order), "{:?} then {}", last, msg.order);
        last = Some(msg.order);
        n += 1;
    }
    out.put(n);
}

/// `sortiter` behind keyed replicas (no gap: they all feed it), and inside
/// each keyed replica (each sees gaps: every other replica's orders), past
/// the reorder window: nothing hangs, nothing is lost.
#[test]
fn sortiter_behind_and_inside_keyed_replicas() {
    within(30, || {
        let n = 20_000u64;
        let p = pipeline! {
            numbers[by |x: &u64| x % 5, batch 8] -> echo * 3 -> mixed -> sort_check -> total;
        };
        p.numbers.feed((0..n).map(|i| ezq::Msg::new(i).order(i)));
        let totals: Vec<u64> = p.total.iter().map(|m| m.data).collect();
        p.join().unwrap();
        assert_eq!(totals, [n]);

        let p = pipeline! {
            numbers[by |x: &u64| x % 5] -> sort_check * 3 -> totals;
        };
        p.numbers.feed((0..n).map(|i| ezq::Msg::new(i).order(i)));
        let total: u64 = p.totals.iter().map(|m| m.data).sum();
        p.join().unwrap();
        assert_eq!(total, n);
    });
}

/// Replica 0 fails at 500; the others read everything.
#[worker]
fn zero_fails_at_500(inbox: Inbox<u64>, out: Outbox<(usize, u64)>) {
    let me = my_replica();
    let mut n = 0;
    for msg in inbox {
        n += 1;
        assert!(me != 0 || msg.data != 500, "replica 0 fails at 500");
    }
    out.put((me, n));
}

/// A broadcast replica that fails loses only its own copies: the account
/// counts each copy once, taken or dropped.
#[test]
fn a_failed_broadcast_replica_loses_only_its_copies() {
    within(20, || {
        let p = pipeline! {
            numbers[broadcast, batch 8, 16] -> zero_fails_at_500 * 3 -> counts;
        };
        p.numbers.feed(0..2000u64);
        let mut counts: Vec<(usize, u64)> = p.counts.iter().map(|m| m.data).collect();
        counts.sort_unstable();
        let monitor = p.monitor();
        let error = p.join().expect_err("replica 0 failed");
        assert_eq!(counts, [(1, 2000), (2, 2000)]);
        // Replica 0 took 0..=500.
        assert_eq!(error.dropped(), 2000 - 501, "{error}");
        let q = &monitor.stats().queues[0];
        assert_eq!((q.put, q.taken, q.dropped), (6000, 4501, 1499));
    });
}

static GATE_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A keyed queue is "one channel per replica, each of `capacity`
/// messages": with its readers stalled, a producer puts no more than that
/// (and a block in hand) before it waits, however the keys fall into
/// blocks.
#[test]
fn a_batched_keyed_queue_holds_no_more_than_its_capacity_per_replica() {
    within(20, || {
        let (capacity, block, replicas) = (16usize, 16usize, 4usize);
        let mut g = Graph::new();
        // Each block of 16 consecutive numbers has one key.
        let numbers = g.keyed_queue(
            "numbers",
            Capacity::Bounded(capacity),
            Some(block),
            |n: &u64| n / 16,
        );
        let counts = g.queue::<u64>("counts");
        g.add(
            "gated",
            replicas,
            (numbers,),
            (counts,),
            |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                while !GATE_OPEN.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
                o.put(i.count() as u64);
            },
        );
        let p = Arc::new(g.start(|c| (c.source(numbers), c.sink(counts))));
        let put = Arc::new(AtomicU64::new(0));
        let feeder = {
            let (p, put) = (Arc::clone(&p), Arc::clone(&put));
            thread::spawn(move || {
                for i in 0..10_000u64 {
                    p.0.put(i);
                    put.fetch_add(1, Ordering::SeqCst);
                }
                p.0.end();
            })
        };
        thread::sleep(Duration::from_millis(200));
        let before_waiting = put.load(Ordering::SeqCst);
        GATE_OPEN.store(true, Ordering::SeqCst);
        feeder.join().unwrap();
        let total: u64 = p.1.iter().map(|m| m.data).sum();
        Arc::into_inner(p).unwrap().join().unwrap();
        assert_eq!(total, 10_000);
        let bound = (capacity * replicas + block) as u64;
        assert!(
            before_waiting <= bound,
            "{before_waiting} messages put with every reader stalled; the queue holds {capacity} per replica, {replicas} replicas, blocks of {block}"
        );
    });
}

/// Splits lines into words, leaving out a borrowed set of stop words.
#[worker]
fn words_but(lines: Inbox<String>, words: Outbox<(String, u64)>, stop: &[&str]) {
    for msg in lines {
        for w in msg.data.split(' ').filter(|w| !stop.contains(w)) {
            words.put((w.to_owned(), 1));
        }
    }
}

/// Routing inside a scope: a keyed queue between borrowing workers; the
/// pictures show the route, and the statistics a channel per replica.
#[test]
fn a_scoped_pipeline_routes_between_replicas_and_draws_its_routes() {
    within(20, || {
        let stop = vec!["the", "a"];
        let mut totals: Vec<(String, u64)> = thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                lines -> words_but(&stop) * 2 -> words[by word] -> add_up * 3 -> totals;
                config[broadcast] -> echo * 2 -> echoed;
            };
            assert!(
                p.dot().contains("q1 -> w1 [label=\"by key\"];"),
                "{}",
                p.dot()
            );
            assert!(p.dot().contains("w1 [label=\"add_up ×3\"];"), "{}", p.dot());
            assert!(
                p.mermaid().contains("q1 -- \"by key\" --> w1"),
                "{}",
                p.mermaid()
            );
            assert!(
                p.mermaid().contains("q3 -- \"broadcast\" --> w2"),
                "{}",
                p.mermaid()
            );
            let stats = p.stats();
            assert_eq!(
                stats.queues[1].capacity,
                Some(3 * ezq::graph::DEFAULT_CAPACITY)
            );
            assert_eq!(
                stats.queues[3].capacity,
                Some(2 * ezq::graph::DEFAULT_CAPACITY)
            );
            p.config.feed([7u64]);
            p.lines
                .feed((0..100).map(|i| format!("the {} a {}", i % 3, i % 4)));
            assert_eq!(p.echoed.iter().count(), 2);
            let totals = p.totals.iter().map(|m| m.data).collect();
            p.join().unwrap();
            totals
        });
        totals.sort();
        let mut expected = HashMap::<String, u64>::new();
        for i in 0..100 {
            *expected.entry((i % 3).to_string()).or_default() += 1;
            *expected.entry((i % 4).to_string()).or_default() += 1;
        }
        let mut expected: Vec<(String, u64)> = expected.into_iter().collect();
        expected.sort();
        assert_eq!(totals, expected);
    });
}

/// `Graph::route_to_all` (and `route_by_key`) on a Redis-backed queue:
/// `pipeline!` refuses a route there ("not supported yet"), and so does
/// `Graph::start`, naming the queue, rather than start with the route
/// silently ignored (each message would then reach one replica, not all).
#[test]
fn a_route_on_a_redis_queue_is_refused_by_a_graph() {
    let Some(server) = common::redis::RedisServer::start() else {
        return;
    };
    let cluster = ezq::cluster::Cluster::connect(&server.url(), "routed").expect("a server");
    within(30, move || {
        let mut g = Graph::new();
        g.cluster(cluster);
        let config = g.redis_queue::<u64>("config", Capacity::Default, None);
        g.route_to_all(config);
        let counts = g.queue::<u64>("counts");
        g.add(
            "count",
            3,
            (config,),
            (counts,),
            |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                o.put(i.count() as u64);
            },
        );
        let started = panic::catch_unwind(AssertUnwindSafe(|| {
            g.start(|c| (c.source(config), c.sink(counts)))
        }));
        let Err(payload) = started else {
            panic!("a broadcast Redis-backed queue started");
        };
        let text = message(payload.as_ref());
        assert!(
            text.contains("`config`")
                && text.contains("routing is not supported on Redis-backed queues yet"),
            "{text}"
        );
    });
}
