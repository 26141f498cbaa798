//! Scoped pipelines: workers that borrow from the caller's stack, joined
//! before the scope returns.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use common::within;
use ezq::{Inbox, Outbox, pipeline, worker};

#[worker]
fn lookup(names: Inbox<String>, ids: Outbox<u32>, table: &HashMap<String, u32>) {
    for msg in names {
        ids.put_msg(msg.map(|name| table[&name]));
    }
}

#[test]
fn workers_borrow_a_table() {
    within(30, || {
        let table: HashMap<String, u32> = (0..100).map(|i| (format!("n{i}"), i)).collect();
        let total: u32 = std::thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                names -> lookup(&table) * 3 -> ids;
            };
            p.names.feed((0..100).map(|i| format!("n{i}")));
            let total = p.ids.iter().map(|m| m.data).sum();
            p.join().expect("nothing lost");
            total
        });
        assert_eq!(total, (0..100).sum());
    });
}

#[worker]
fn tally(inbox: Inbox<u64>, seen: &AtomicU64) {
    for msg in inbox {
        seen.fetch_add(msg.data, Ordering::Relaxed);
    }
}

#[test]
fn workers_count_into_a_borrowed_atomic() {
    within(30, || {
        let seen = AtomicU64::new(0);
        std::thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                numbers -> tally(&seen) * 4;
            };
            p.numbers.feed(1..=1000u64);
            p.join().unwrap();
        });
        assert_eq!(seen.into_inner(), 500_500);
    });
}

#[worker]
fn emit(out: Outbox<u64>, items: &[u64]) {
    for &item in items {
        out.put(item);
    }
}

#[worker]
fn square(x: u64, offset: &u64) -> u64 {
    x * x + offset
}

#[test]
fn a_source_worker_reads_a_borrowed_slice() {
    within(30, || {
        let items: Vec<u64> = (0..500).collect();
        let offset = 1u64;
        let mut squares: Vec<u64> = std::thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                () -> emit(&items) -> numbers -> square(&offset) * 2 -> squares;
            };
            let squares = p.squares.iter().map(|m| m.data).collect();
            p.join().unwrap();
            squares
        });
        squares.sort_unstable();
        assert_eq!(squares, items.iter().map(|x| x * x + 1).collect::<Vec<_>>());
    });
}

#[worker]
fn picky(inbox: Inbox<u64>, out: Outbox<u64>, limit: &u64) {
    for msg in inbox {
        assert!(msg.data < *limit, "{} is over the limit", msg.data);
        out.put_msg(msg);
    }
}

#[test]
fn a_failure_in_a_scoped_pipeline_reaches_the_caller() {
    within(30, || {
        let limit = 10u64;
        let error = std::thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                numbers -> picky(&limit) -> out;
            };
            p.numbers.feed(0..20u64);
            let _: Vec<_> = p.out.iter().collect();
            p.join().unwrap_err()
        });
        assert_eq!(error.failures().len(), 1, "{error}");
        assert!(
            error.to_string().contains("10 is over the limit"),
            "{error}"
        );
        assert!(
            !error.drops().is_empty(),
            "what picky left is counted: {error}"
        );
    });
}

#[test]
fn dropping_a_failed_scoped_pipeline_panics_with_the_failure() {
    let limit = 1u64;
    let outcome = std::panic::catch_unwind(|| {
        std::thread::scope(|s| {
            let p = pipeline! {
                scope = s;
                numbers -> picky(&limit) -> out;
            };
            p.numbers.feed(0..5u64);
        });
    });
    let payload = outcome.expect_err("the drop re-raises the failure");
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("is over the limit"), "{text}");
}

#[test]
fn map_scoped_borrows_its_closures_environment_and_items() {
    let table: HashMap<u64, &str> = HashMap::from([(1, "one"), (2, "two"), (3, "three")]);
    let keys = vec![3u64, 1, 2, 2];
    let names: Vec<&str> = ezq::map_scoped(|k: &u64| table[k], &keys);
    assert_eq!(names, ["three", "one", "two", "two"]);
}
