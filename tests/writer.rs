//! `SourceWriter`: a one-thread handle on a source. Its block must leave
//! whenever this thread waits on the pipeline, at the END (wherever the END
//! comes from), and when the writer goes; nothing it put may be lost,
//! duplicated or reordered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, mpsc};
use std::thread;

mod common;

use common::{add_reordering_stages, within};
use ezq::{Disconnected, Graph, Inbox, Msg, Outbox, pipeline, worker};

#[worker]
fn pass(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        out.put_msg(msg);
    }
}

#[test]
fn a_writer_keeps_its_order_and_loses_nothing() {
    let (got, stats) = within(30, || {
        let p = pipeline! { numbers[batch 100] -> pass -> out; };
        let writer = p.numbers.writer();
        for i in 0..10_007u64 {
            writer.put(i);
        }
        // Ended on the writer's own thread while the writer is still open:
        // its partial block goes out first.
        p.numbers.end();
        let got: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        drop(writer);
        let monitor = p.monitor();
        p.join().unwrap();
        (got, monitor.stats())
    });
    assert_eq!(got, (0..10_007).collect::<Vec<_>>());
    let numbers = &stats.queues[0];
    assert_eq!((numbers.put, numbers.taken), (10_007, 10_007));
}

#[test]
fn reading_a_sink_sends_the_writers_partial_block() {
    let first = within(10, || {
        let p = pipeline! { numbers[batch 1024] -> pass -> out; };
        let writer = p.numbers.writer();
        writer.put(7);
        writer.put(8);
        // No flush, no end: this thread waits on the sink, so the writer's
        // two messages must leave now, or this never returns.
        let first = p.out.recv().map(|m| m.data);
        p.numbers.end();
        drop(writer);
        p.join().unwrap();
        first
    });
    assert_eq!(first, Some(7));
}

#[test]
fn an_end_from_another_thread_waits_for_an_open_writer() {
    let got = within(10, || {
        let p = pipeline! { numbers[batch 1024] -> pass -> out; };
        let ended = Barrier::new(2);
        let (put_done, wait_put) = mpsc::channel();
        let got = thread::scope(|s| {
            s.spawn(|| {
                let writer = p.numbers.writer();
                for i in 0..10 {
                    writer.put(i);
                }
                put_done.send(()).unwrap();
                // The other thread ends the source while these ten wait
                // in this writer's block.
                ended.wait();
                drop(writer);
            });
            wait_put.recv().unwrap();
            p.numbers.end();
            assert!(p.numbers.is_ended());
            ended.wait();
            p.out.iter().map(|m| m.data).collect::<Vec<u64>>()
        });
        p.join().unwrap();
        got
    });
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn an_explicit_flush_and_the_writers_drop_send_its_block() {
    let got = within(10, || {
        let p = pipeline! { numbers[batch 1024] -> pass -> out; };
        let writer = p.numbers.writer();
        writer.put(1);
        writer.flush();
        let first = p.out.recv().map(|m| m.data);
        writer.put(2);
        drop(writer);
        // Dropped: its block left; nothing of it waits for the END.
        let second = p.out.recv().map(|m| m.data);
        p.numbers.end();
        p.join().unwrap();
        (first, second)
    });
    assert_eq!(got, (Some(1), Some(2)));
}

#[test]
#[should_panic(expected = "put on a pipeline source that was already ended")]
fn a_writer_put_after_the_end_panics() {
    let p = pipeline! { numbers[batch 16] -> pass -> out; };
    let writer = p.numbers.writer();
    p.numbers.end();
    writer.put(1);
}

#[test]
fn a_writer_on_a_queue_that_is_not_batched_puts_directly() {
    let got = within(10, || {
        let p = pipeline! { numbers -> pass -> out; };
        let writer = p.numbers.writer();
        writer.put_msg(Msg::new(5).kind("five").order(3));
        let got = p.out.recv().expect("sent at once");
        drop(writer);
        p.numbers.end();
        p.join().unwrap();
        got
    });
    assert_eq!((got.data, got.kind.as_str(), got.order), (5, "five", 3));
}

#[worker]
fn stop_at_once(inbox: Inbox<u64>) {
    drop(inbox);
}

#[test]
fn a_writer_whose_readers_are_gone_hands_the_message_back() {
    let (back, err) = within(10, || {
        // Room for one block: the second waits until the reader, which
        // returns at once, is gone.
        let p = pipeline! { numbers[4, batch 4] -> stop_at_once; };
        let writer = p.numbers.writer();
        let back = (0..1_000u64).find_map(|i| writer.try_put(i).err());
        drop(writer);
        (back, p.join().unwrap_err())
    });
    let Some(Disconnected(msg)) = back else {
        panic!("every put succeeded with no reader")
    };
    // The message whose put sent the full block.
    assert_eq!(msg.data % 4, 3);
    // Every message put before it was lost with the reader that returned
    // (in the queue, or in the block that could not be sent), and join
    // says so; which block that was depends on when the reader left.
    assert_eq!(err.dropped(), msg.data, "{err}");
    assert!(matches!(
        err.drops()[0].reason,
        ezq::DropReason::ReaderReturned { .. }
    ));
}

#[test]
fn a_writer_after_a_cancel_hands_the_message_back() {
    let back = within(10, || {
        let p = pipeline! { numbers[batch 16] -> pass -> out; };
        p.cancel();
        let writer = p.numbers.writer();
        let back = writer.try_put(9);
        drop(writer);
        let _ = p.join();
        back
    });
    assert_eq!(back.map_err(|Disconnected(m)| m.data), Err(9));
}

static MAX_PARKED: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_writer_waiting_for_the_reorder_window_sends_its_block_first() {
    // The writer's block (1024) is larger than the window (300): unless it
    // sends its block before it waits, the window cannot move, the sources
    // give up on it, and the reorder buffer grows without bound while one
    // worker sleeps.
    let (count, max_parked) = within(60, || {
        let mut g = Graph::new();
        g.window(300);
        let numbers = g.batched_queue::<u64>("numbers", ezq::graph::Capacity::Default, 1024);
        let out = g.queue::<usize>("out");
        let slow_at = |order| order % 20_000 == 10_000;
        add_reordering_stages(&mut g, numbers, out, slow_at, &MAX_PARKED);
        let p = g.start(|c| (c.source(numbers), c.sink(out)));
        let writer = p.0.writer();
        for i in 0..100_000u64 {
            writer.put_msg(Msg::new(i).order(i));
        }
        p.0.end();
        let count = p.1.recv().unwrap().data;
        drop(writer);
        p.join().unwrap();
        (count, MAX_PARKED.load(Ordering::Relaxed))
    });
    assert_eq!(count, 100_000);
    // The window, plus what the queues and the workers' blocks held when
    // the buffer first reported (until then, sources do not wait).
    assert!(max_parked <= 300 + 8 * 1024, "{max_parked} parked");
}

#[test]
fn try_put_after_the_end_hands_the_message_back() {
    let (from_writer, from_source, got) = within(10, || {
        let p = pipeline! { numbers[batch 16] -> pass -> out; };
        let writer = p.numbers.writer();
        writer.put(1);
        p.numbers.end();
        let from_writer = writer.try_put(2);
        let from_source = p.numbers.try_put(3);
        drop(writer);
        let got: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        p.join().unwrap();
        (from_writer, from_source, got)
    });
    assert_eq!(from_writer, Err(Disconnected(Msg::new(2))));
    assert_eq!(from_source, Err(Disconnected(Msg::new(3))));
    assert_eq!(got, [1]);
}

#[test]
fn a_leaked_writer_does_not_hold_the_end_back_from_join() {
    let result = within(10, || {
        let p = pipeline! { numbers[batch 16] -> pass -> out; };
        thread::scope(|s| {
            s.spawn(|| {
                let writer = p.numbers.writer();
                writer.put(1);
                // Never dropped: it can never send its END-holding close.
                std::mem::forget(writer);
            });
        });
        // Another thread's writer is still counted open: END waits...
        p.numbers.end();
        // ...until the pipeline finishes, when no writer can be open.
        p.join()
    });
    assert!(result.is_ok(), "{result:?}");
}

#[worker]
fn a_then_b(a: Inbox<u64>, b: Inbox<u64>, out: Outbox<(usize, usize)>) {
    let read_a = a.count();
    let read_b = b.count();
    out.put((read_a, read_b));
}

#[test]
fn ending_a_source_sends_only_what_this_thread_holds_for_it() {
    // The worker reads `a` to its end before `b`. Queue `b` is full and
    // this thread holds two more of its messages in its block: ending `a`
    // must not wait to send those (`b`'s reader waits for `a`'s END).
    let counts = within(10, || {
        let p = pipeline! { (a, b[16, batch 4]) -> a_then_b -> counts; };
        for i in 0..18 {
            p.b.put(i);
        }
        p.a.put(0);
        p.a.end();
        p.b.end();
        let counts = p.counts.recv().map(|m| m.data);
        p.join().unwrap();
        counts
    });
    assert_eq!(counts, Some((1, 18)));
}
