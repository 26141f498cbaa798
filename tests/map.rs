//! `ezq::map` inside rayon's pool: nested in itself, called from rayon
//! tasks, and alongside them from ezq workers. Each case once deadlocked
//! the pool (its threads blocked waiting for jobs queued behind them), so
//! each runs under a time limit: a hang fails instead of sticking.

use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

mod common;

use common::within;

/// Held by the tests whose tasks wait for each other on a barrier, one per
/// pool thread: two such groups at once could split the pool between them
/// and never fill either barrier.
static WHOLE_POOL: Mutex<()> = Mutex::new(());

fn whole_pool() -> MutexGuard<'static, ()> {
    WHOLE_POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A 64 x 64 table, each row an `ezq::map` nested in the outer one.
fn nested_table() -> Vec<Vec<u64>> {
    ezq::map(
        |i: u64| ezq::map(move |j: u64| i * 64 + j, 0..64).collect(),
        0..64,
    )
    .collect()
}

fn expected_table() -> Vec<Vec<u64>> {
    (0..64)
        .map(|i| (0..64).map(|j| i * 64 + j).collect())
        .collect()
}

fn plain_map_works() {
    let out: Vec<u64> = ezq::map(|x: u64| x + 1, 0..1000).collect();
    assert_eq!(out, (1..1001).collect::<Vec<_>>());
}

#[test]
fn map_nested_in_map() {
    within(60, || {
        for _ in 0..20 {
            assert_eq!(nested_table(), expected_table());
        }
    });
}

#[test]
fn map_called_from_rayon_tasks_on_every_pool_thread_at_once() {
    within(30, || {
        let _whole_pool = whole_pool();
        let n = rayon::current_num_threads();
        // Each task waits for all the others to start, so every pool thread
        // is iterating a map at the same time and none is left to run the
        // items unless the waiting ones do.
        let all_started = Barrier::new(n);
        let done = AtomicUsize::new(0);
        rayon::scope(|s| {
            for t in 0..n as u64 {
                let (all_started, done) = (&all_started, &done);
                s.spawn(move |_| {
                    all_started.wait();
                    let out: Vec<u64> = ezq::map(move |x: u64| x * t, 0..200).collect();
                    assert_eq!(out, (0..200).map(|x| x * t).collect::<Vec<_>>());
                    done.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(done.into_inner(), n);
    });
}

#[test]
fn map_called_from_an_ezq_worker_while_the_pool_runs_nested_maps() {
    within(60, || {
        let _whole_pool = whole_pool();
        // The first outer items wait for each other, so every pool thread
        // is iterating an inner map at the same time.
        let n = rayon::current_num_threads();
        let all_started = Barrier::new(n);
        let occupied = Arc::new(AtomicUsize::new(0));
        let busy = {
            let occupied = Arc::clone(&occupied);
            ezq::run(move || {
                let outer = move |i: u64| {
                    if i < n as u64 {
                        all_started.wait();
                        occupied.fetch_add(1, Ordering::Relaxed);
                    }
                    let inner = move |j: u64| {
                        thread::sleep(Duration::from_micros(100));
                        i * 64 + j
                    };
                    ezq::map(inner, 0..64).collect::<Vec<u64>>()
                };
                let rows: Vec<Vec<u64>> = ezq::map(outer, 0..64).collect();
                assert_eq!(rows, expected_table());
            })
        };
        // Start only once every pool thread is in an outer item.
        while occupied.load(Ordering::Relaxed) < n {
            thread::sleep(Duration::from_millis(1));
        }
        let plain = Arc::new(Mutex::new(None));
        let worker = {
            let plain = Arc::clone(&plain);
            ezq::run(move || {
                let out: Vec<u64> = ezq::map(|x: u64| x * 3, 0..500).collect();
                *plain.lock().unwrap() = Some(out);
            })
        };
        worker.join().expect("the plain map's worker failed");
        assert_eq!(
            plain.lock().unwrap().take(),
            Some((0..500).map(|x| x * 3).collect::<Vec<_>>())
        );
        busy.join().expect("the nested maps' worker failed");
    });
}

#[test]
fn a_plain_map_still_works_after_a_nested_one() {
    within(30, || {
        assert_eq!(nested_table(), expected_table());
        // Before the fix, the nested map left every pool thread parked and
        // any later map in the process hung; from a pool thread as well.
        plain_map_works();
        rayon::scope(|s| s.spawn(|_| plain_map_works()));
    });
}

#[test]
fn a_panic_in_a_nested_map_reaches_the_outer_caller() {
    let payload = within(30, || {
        panic::catch_unwind(|| {
            ezq::map(
                |i: u64| {
                    ezq::map(
                        move |j: u64| {
                            if (i, j) == (5, 7) {
                                panic!("bad item {i}.{j}");
                            }
                            j
                        },
                        0..64,
                    )
                    .sum::<u64>()
                },
                0..64,
            )
            .collect::<Vec<u64>>()
        })
        .expect_err("the inner panic was lost")
    });
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    assert_eq!(message, Some("bad item 5.7"));
}
