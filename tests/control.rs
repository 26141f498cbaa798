//! Controlling a running pipeline: cancel, timeouts, statistics, and the
//! reorder window that bounds `sortiter`'s buffer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{add_reordering_stages, within};
use ezq::{Graph, Inbox, Msg, Outbox, RecvTimeout, pipeline, worker};

#[worker]
fn forever(out: Outbox<u64>) {
    let mut i = 0;
    while !ezq::is_cancelled() {
        out.put(i);
        i += 1;
    }
}

#[worker]
fn stalled(inbox: Inbox<u64>) {
    // Reads nothing until the pipeline is cancelled: its producer fills
    // the queue and waits.
    while !ezq::is_cancelled() {
        thread::sleep(Duration::from_millis(1));
    }
    drop(inbox);
}

#[test]
fn cancel_releases_blocked_producers_and_counts_what_was_dropped() {
    let err = within(10, || {
        let p = pipeline! {
            () -> forever -> numbers[16] -> stalled;
            feed[4] -> stalled;
        };
        for i in 0..4 {
            p.feed.put(i);
        }
        thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        p.cancel();
        // Puts after a cancel are dropped, never blocking.
        for i in 0..100 {
            p.feed.put(i);
        }
        let err = p.join().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "cancel is prompt"
        );
        err
    });
    assert!(err.is_cancelled());
    assert!(err.failures().is_empty(), "{err}");
    // The 16 waiting in `numbers` and the one `forever` was putting, the
    // 4 then the 100 put into `feed`.
    assert_eq!(err.dropped(), 16 + 1 + 4 + 100, "{err}");
    assert!(
        err.to_string()
            .starts_with("the pipeline was cancelled; 121 messages were dropped")
    );
}

#[test]
fn cancel_ends_inboxes_waiting_on_an_empty_source() {
    let err = within(10, || {
        let p = pipeline! { feed -> stalled; };
        p.cancel();
        p.join().unwrap_err()
    });
    assert!(err.is_cancelled());
    assert_eq!(err.dropped(), 0);
}

#[worker]
fn sleepy(inbox: Inbox<u64>, seconds: u64) {
    for _ in inbox {
        thread::sleep(Duration::from_secs(seconds));
    }
}

#[test]
fn join_timeout_names_the_workers_still_running() {
    within(20, || {
        let mut p = pipeline! { work -> sleepy(3) * 2 -> (); };
        p.work.put(1);
        let start = Instant::now();
        let timed_out = p.join_timeout(Duration::from_millis(200)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(
            timed_out.running.contains(&("sleepy".to_string(), 0))
                || timed_out.running.contains(&("sleepy".to_string(), 1))
        );
        assert_eq!(
            timed_out.running.len(),
            1,
            "the idle replica ended with its source: {timed_out}"
        );
        // Given enough time, the same pipeline finishes.
        assert_eq!(p.join_timeout(Duration::from_secs(10)), Ok(Ok(())));
    });
}

#[worker]
fn impatient(mut inbox: Inbox<u64>, out: Outbox<String>) {
    loop {
        match inbox.recv_timeout(Duration::from_millis(20)) {
            Ok(msg) => out.put(format!("got {}", msg.data)),
            Err(RecvTimeout::Timeout) => out.put("timeout".to_string()),
            Err(RecvTimeout::Ended) => break,
        }
    }
}

#[test]
fn an_inbox_can_wait_with_a_timeout() {
    let out = within(10, || {
        let p = pipeline! { src -> impatient -> out; };
        assert_eq!(p.out.recv().unwrap().data, "timeout");
        p.src.put(7);
        let got = p.out.iter().map(|m| m.data).find(|m| m != "timeout");
        p.join().unwrap();
        got
    });
    assert_eq!(out.as_deref(), Some("got 7"));
}

#[worker]
fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn a_source_fed_from_several_threads_counts_every_put() {
    // The first thread to put counts without shared writes; the others
    // add directly: the totals must still be exact.
    let stats = within(10, || {
        let p = pipeline! { numbers -> double -> out; };
        thread::scope(|s| {
            for t in 0..3u64 {
                let numbers = &p.numbers;
                s.spawn(move || {
                    for i in 0..1_000 {
                        numbers.put(t * 1_000 + i);
                    }
                });
            }
        });
        // One more, from this thread, after the others are done.
        p.numbers.put(0);
        p.numbers.end();
        assert_eq!(p.out.iter().count(), 3_001);
        let monitor = p.monitor();
        p.join().unwrap();
        monitor.stats()
    });
    assert_eq!((stats.queues[0].put, stats.queues[0].taken), (3_001, 3_001));
}

#[test]
fn stats_count_every_queue_and_replica() {
    let stats = within(10, || {
        let p = pipeline! { numbers -> double * 3 -> doubled[batch 512] -> double -> out; };
        for i in 0..10_000u64 {
            p.numbers.put(i);
        }
        p.numbers.end();
        assert_eq!(p.out.iter().count(), 10_000);
        while !p.is_finished() {
            thread::sleep(Duration::from_millis(1));
        }
        let stats = p.stats();
        p.join().unwrap();
        stats
    });
    let names: Vec<_> = stats.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["numbers", "doubled", "out"]);
    let shape: Vec<_> = (stats.queues.iter())
        .map(|q| (q.capacity, q.readers.clone()))
        .collect();
    assert_eq!(
        shape,
        [
            (Some(1024), vec!["double".to_string()]),
            // A batched queue's default room: four blocks.
            (Some(4 * 512), vec!["double".to_string()]),
            (None, vec![]),
        ],
        "capacities and readers: a sink is unbounded and read by nobody"
    );
    for q in &stats.queues {
        assert_eq!((q.put, q.taken), (10_000, 10_000), "{}", q.name);
    }
    assert_eq!(stats.workers.len(), 4);
    assert!(
        stats
            .workers
            .iter()
            .all(|w| w.finished && w.name == "double")
    );
    let first: u64 = stats.workers[..3].iter().map(|w| w.processed).sum();
    assert_eq!(first, 10_000);
    assert_eq!(stats.workers[3].processed, 10_000);
    let table = stats.to_string();
    assert!(
        table.contains("doubled") && table.contains("double#2"),
        "{table}"
    );
}

static MAX_PARKED: AtomicUsize = AtomicUsize::new(0);

#[test]
fn the_reorder_window_bounds_sortiters_buffer() {
    let (count, max_parked) = within(60, || {
        let mut g = Graph::new();
        g.window(1000);
        let numbers = g.queue::<u64>("numbers");
        let out = g.queue::<usize>("out");
        add_reordering_stages(&mut g, numbers, out, |o| o % 5000 == 0, &MAX_PARKED);
        let p = g.start(|c| (c.source(numbers), c.sink(out)));
        for i in 0..100_000u64 {
            p.0.put_msg(Msg::new(i).order(i));
        }
        p.0.end();
        let count = p.1.recv().unwrap().data;
        p.join().unwrap();
        (count, MAX_PARKED.load(Ordering::Relaxed))
    });
    assert_eq!(count, 100_000);
    // The window, plus what was in flight when the buffer last reported.
    assert!(max_parked <= 1000 + 256 + 2 * 1024, "{max_parked} parked");
}

#[test]
fn a_gap_in_the_orders_slows_the_window_but_never_hangs() {
    let count = within(30, || {
        let mut g = Graph::new();
        g.window(100);
        let numbers = g.queue::<u64>("numbers");
        let out = g.queue::<usize>("out");
        g.add(
            "printer",
            1,
            (numbers,),
            (out,),
            |(inbox,): (Inbox<u64>,), (out,): (Outbox<usize>,)| {
                out.put(ezq::sortiter(inbox).count());
            },
        );
        let p = g.start(|c| (c.source(numbers), c.sink(out)));
        // Order 500 never comes: the buffer waits for it until the end.
        for i in (0..5000u64).filter(|&i| i != 500) {
            p.0.put_msg(Msg::new(i).order(i));
        }
        p.0.end();
        let count = p.1.recv().unwrap().data;
        p.join().unwrap();
        count
    });
    assert_eq!(count, 4999);
}
