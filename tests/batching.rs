//! Batched queues: messages travel in blocks, workers still see them one
//! by one, and nothing is lost, duplicated, reordered within a producer or
//! held back while the pipeline is idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

mod common;

use common::within;
use ezq::{Inbox, Msg, Outbox, pipeline, worker};

/// Each producer numbers its own messages: (producer, sequence).
#[worker]
fn numbered(out: Outbox<(usize, u64)>, producer: usize, count: u64) {
    for seq in 0..count {
        out.put((producer, seq));
    }
}

#[worker]
fn check_order(inbox: Inbox<(usize, u64)>, out: Outbox<(usize, u64)>) {
    let mut last = [None::<u64>; 8];
    for msg in inbox {
        let (producer, seq) = msg.data;
        if let Some(prev) = last[producer] {
            assert!(seq > prev, "producer {producer}: {seq} came after {prev}");
        }
        last[producer] = Some(seq);
        out.put_msg(msg);
    }
}

#[test]
fn order_within_each_producer_is_kept_and_nothing_is_lost() {
    let mut out = within(30, || {
        let p = pipeline! {
            () -> numbered(0, 10_007) -> mixed[64, batch 16];
            () -> numbered(1, 10_007) -> mixed;
            () -> numbered(2, 10_007) -> mixed;
            mixed -> check_order -> checked[batch 100];
        };
        let out: Vec<(usize, u64)> = p.checked.iter().map(|m| m.data).collect();
        p.join().unwrap();
        out
    });
    out.sort_unstable();
    let expected: Vec<(usize, u64)> = (0..3)
        .flat_map(|p| (0..10_007).map(move |s| (p, s)))
        .collect();
    assert_eq!(out, expected, "each message exactly once");
}

#[worker]
fn pass(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        out.put_msg(msg);
    }
}

#[test]
fn many_producers_and_consumers_over_small_bounded_batched_queues() {
    let mut out = within(30, || {
        let p = pipeline! {
            numbers[8, batch 4] -> pass * 3 -> middle[16, batch 8] -> pass * 4 -> out[batch 32];
        };
        for i in 0..50_000u64 {
            p.numbers.put(i);
        }
        p.numbers.end();
        let out: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        p.join().unwrap();
        out
    });
    out.sort_unstable();
    assert_eq!(out, (0..50_000).collect::<Vec<_>>());
}

#[test]
fn end_flushes_a_partial_block() {
    let out = within(10, || {
        let p = pipeline! { numbers[batch 1000] -> pass -> out[batch 1000]; };
        for i in 0..1001u64 {
            p.numbers.put(i);
        }
        p.numbers.end();
        let n = p.out.iter().count();
        p.join().unwrap();
        n
    });
    assert_eq!(out, 1001);
}

#[worker]
fn add_one(x: u64) -> u64 {
    x + 1
}

#[test]
fn an_idle_pipeline_holds_no_message_back() {
    within(10, || {
        let p = pipeline! {
            src[batch 1024] -> add_one -> q1[batch 1024] -> add_one -> q2[batch 1024] -> add_one -> out[batch 1024];
        };
        for i in 0..100u64 {
            // One message at a time: it must come through while the source
            // stays open and every block is far from full.
            p.src.put(i);
            assert_eq!(p.out.recv().map(|m| m.data), Some(i + 3));
        }
    });
}

#[test]
fn an_explicit_flush_sends_a_sources_partial_block() {
    within(10, || {
        let p = pipeline! { src[batch 1024] -> add_one -> out; };
        p.src.put(1);
        p.src.flush();
        // Waits without reading a sink on this thread: only the flush sent it.
        while p.out.is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(p.out.try_recv().map(|m| m.data), Some(2));
    });
}

static TAKEN: AtomicUsize = AtomicUsize::new(0);

#[worker]
fn slow_counter(inbox: Inbox<u64>) {
    for _ in inbox {
        TAKEN.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn a_batched_queue_still_bounds_its_producer() {
    within(30, || {
        let p = pipeline! { src[64, batch 16] -> slow_counter; };
        for i in 0..2000u64 {
            p.src.put(i);
            let ahead = i as usize + 1 - TAKEN.load(Ordering::SeqCst);
            // The queue's 64, the consumer's block in hand, the block being
            // filled: the producer never runs further ahead.
            assert!(ahead <= 64 + 16 + 16, "{ahead} messages ahead");
        }
        p.join().unwrap();
        assert_eq!(TAKEN.load(Ordering::SeqCst), 2000);
    });
}

#[worker]
fn two_loops(mut inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in &mut inbox {
        let last = msg.data == 10;
        out.put_msg(msg);
        if last {
            break;
        }
    }
    // The block taken in the first loop is still there for the second.
    for msg in inbox {
        out.put_msg(msg);
    }
}

#[test]
fn breaking_out_of_the_loop_keeps_the_block_for_the_next_loop() {
    let out = within(10, || {
        let p = pipeline! { src[batch 100] -> two_loops -> out; };
        for i in 0..1000u64 {
            p.src.put(i);
        }
        p.src.end();
        let out: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        p.join().unwrap();
        out
    });
    assert_eq!(out, (0..1000).collect::<Vec<_>>());
}

static QUITTER_DONE: AtomicBool = AtomicBool::new(false);

#[worker]
fn quitter(mut inbox: Inbox<u64>, out: Outbox<u64>) {
    if let Some(msg) = inbox.recv() {
        out.put_msg(msg);
    }
    // Dropping the inbox puts the rest of its block back in the queue.
    drop(inbox);
    QUITTER_DONE.store(true, Ordering::SeqCst);
}

#[worker]
fn pass_after_quitter(inbox: Inbox<u64>, out: Outbox<u64>) {
    while !QUITTER_DONE.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    for msg in inbox {
        out.put_msg(msg);
    }
}

#[test]
fn an_inbox_dropped_early_leaves_its_block_to_the_other_readers() {
    let (mut out, stats) = within(10, || {
        let p = pipeline! {
            src[batch 100] -> quitter -> out;
            src -> pass_after_quitter -> out;
        };
        for i in 0..1000u64 {
            p.src.put(i);
        }
        p.src.end();
        let out: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        let stats = p.stats();
        p.join().unwrap();
        (out, stats)
    });
    out.sort_unstable();
    assert_eq!(
        out,
        (0..1000).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
    let src = stats.queues.iter().find(|q| q.name == "src").unwrap();
    assert_eq!((src.put, src.taken), (1000, 1000));
}

#[test]
fn batched_sources_keep_kind_and_order() {
    let out = within(10, || {
        let p = pipeline! { src[batch 7] -> add_one -> out; };
        for i in 0..100u64 {
            p.src.put_msg(Msg::new(i).kind("K").order(i));
        }
        p.src.end();
        let out: Vec<Msg<u64>> = ezq::sortiter(p.out.iter()).collect();
        p.join().unwrap();
        out
    });
    assert_eq!(out.len(), 100);
    assert!(
        out.iter()
            .enumerate()
            .all(|(i, m)| m.order == i as u64 && m.data == i as u64 + 1 && m.kind == "K")
    );
}

#[test]
fn a_sources_shared_through_an_arc_can_feed_from_several_threads() {
    let total = within(10, || {
        let p = Arc::new(pipeline! { src[batch 64] -> pass -> out; });
        let feeders: Vec<_> = (0..4u64)
            .map(|t| {
                let p = Arc::clone(&p);
                thread::spawn(move || {
                    for i in 0..1000 {
                        p.src.put(t * 1000 + i);
                    }
                    p.src.flush();
                })
            })
            .collect();
        for f in feeders {
            f.join().unwrap();
        }
        p.src.end();
        let total: u64 = p.out.iter().map(|m| m.data).sum();
        Arc::try_unwrap(p).unwrap().join().unwrap();
        total
    });
    assert_eq!(total, (0..4000).sum());
}

/// A request/reply caller: it puts one message into a batched source, then
/// waits on a channel of its own for the reply. Its wait flushes nothing,
/// so only the pipeline's flusher can send the partial block; each reply
/// must come, and well within a second.
#[test]
fn a_sources_block_leaves_while_its_thread_waits_outside_the_pipeline() {
    let slowest = within(20, || {
        let p = pipeline! { requests[batch 64] -> add_one -> replies; };
        let (tx, rx) = std::sync::mpsc::channel();
        let slowest = thread::scope(|s| {
            s.spawn(|| {
                for reply in p.replies.iter() {
                    tx.send(reply.data).expect("the caller waits");
                }
            });
            let mut slowest = Duration::ZERO;
            for i in 0..20u64 {
                let start = std::time::Instant::now();
                p.requests.put(i);
                let reply = (rx.recv_timeout(Duration::from_secs(5)))
                    .expect("the block was sent while its thread waited elsewhere");
                assert_eq!(reply, i + 1);
                slowest = slowest.max(start.elapsed());
            }
            p.requests.end();
            slowest
        });
        p.join().expect("nothing lost");
        slowest
    });
    // The flusher looks every millisecond; a second is a generous bound on
    // a loaded machine, and without it the reply never comes at all.
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
}

// --- Queues batched by default (no options) ----------------------------------

/// Set when the test has seen what it waits for: the computing producers
/// below then return.
static LONG_COMPUTE_DONE: AtomicBool = AtomicBool::new(false);

/// Puts two messages, then computes (here: sleeps, which flushes nothing)
/// until the test is done, for up to 30 seconds.
#[worker]
fn put_two_then_compute(out: Outbox<u64>) {
    out.put(1);
    out.put(2);
    let start = std::time::Instant::now();
    while !LONG_COMPUTE_DONE.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
        thread::sleep(Duration::from_millis(1));
    }
}

/// Busy for 100 ms with the first message, so that the second is put
/// while no reader waits for it.
#[worker]
fn slow_first(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        if msg.data == 1 {
            thread::sleep(Duration::from_millis(100));
        }
        out.put_msg(msg);
    }
}

/// A queue between workers is batched by default: the second message goes
/// into its producer's block while the reader is busy, and the producer
/// then computes for a long time without waiting on the pipeline. The
/// reader sends the block itself when it runs out of messages (or the
/// pipeline's flusher, once the reader waits); without either, the message
/// would wait 30 seconds.
#[test]
fn a_lone_message_leaves_while_its_producer_computes() {
    let took = within(60, || {
        let p = pipeline! { () -> put_two_then_compute -> numbers -> slow_first -> seen; };
        let start = std::time::Instant::now();
        let first = p.seen.recv().expect("the first message").data;
        let second = p.seen.recv().expect("the second message").data;
        let took = start.elapsed();
        LONG_COMPUTE_DONE.store(true, Ordering::SeqCst);
        assert_eq!((first, second), (1, 2));
        assert!(p.seen.recv().is_none());
        p.join().expect("nothing lost");
        took
    });
    // 100 ms of the reader's work, then microseconds: a second more is a
    // generous bound on a loaded machine.
    assert!(took < Duration::from_millis(1100), "{took:?}");
}

/// The same for a source batched by default: its caller puts while the
/// reader is busy, then waits for the reply on a channel of its own, which
/// flushes nothing.
#[test]
fn a_default_sources_block_leaves_while_its_thread_waits_outside_the_pipeline() {
    let slowest = within(30, || {
        let p = pipeline! { requests -> slow_first -> replies; };
        let (tx, rx) = std::sync::mpsc::channel();
        let slowest = thread::scope(|s| {
            s.spawn(|| {
                for reply in p.replies.iter() {
                    tx.send(reply.data).expect("the caller waits");
                }
            });
            let start = std::time::Instant::now();
            p.requests.put(1u64);
            // The reader is busy with 1 for 100 ms: 2 waits in the block.
            p.requests.put(2u64);
            let mut got = Vec::new();
            for _ in 0..2 {
                got.push(
                    (rx.recv_timeout(Duration::from_secs(10)))
                        .expect("the block was sent while its thread waited elsewhere"),
                );
            }
            let took = start.elapsed();
            assert_eq!(got, [1, 2]);
            p.requests.end();
            took
        });
        p.join().expect("nothing lost");
        slowest
    });
    assert!(slowest < Duration::from_millis(1100), "{slowest:?}");
}
