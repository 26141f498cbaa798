//! Behaviour of `#[worker]` and `pipeline!`: real pipelines, run to the end.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

mod common;

use common::within;
use ezq::{Cause, Inbox, Msg, Outbox, pipeline, worker};

#[worker]
fn add_one(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put_msg(msg.map(|x| x + 1));
    }
}

#[worker]
fn double(x: u64) -> u64 {
    x * 2
}

#[worker]
fn to_text(inbox: Inbox<u64>, outbox: Outbox<String>) {
    for msg in inbox {
        outbox.put(msg.data.to_string());
    }
}

#[test]
fn three_stage_chain_delivers_everything_once() {
    let mut out = within(20, || {
        let p = pipeline! {
            numbers -> add_one * 2 -> plus_one -> double * 3 -> doubled -> to_text -> texts;
        };
        for i in 0..10_000u64 {
            p.numbers.put(i);
        }
        p.numbers.end();
        let out: Vec<u64> = p.texts.iter().map(|m| m.data.parse().unwrap()).collect();
        p.join().unwrap();
        out
    });
    out.sort_unstable();
    assert_eq!(out, (0..10_000u64).map(|i| (i + 1) * 2).collect::<Vec<_>>());
}

#[worker]
fn merge_two(left: Inbox<u64>, right: Inbox<u64>, out: Outbox<u64>) {
    for msg in left.merge(right) {
        match msg {
            ezq::Either::Left(m) => out.put(m.data),
            ezq::Either::Right(m) => out.put(m.data + 1_000_000),
        }
    }
}

#[test]
fn fan_in_from_several_producers_and_inboxes() {
    let mut out = within(20, || {
        // Two producers of `mixed` (fan-in on one queue), and a worker
        // reading two inboxes at once.
        let p = pipeline! {
            a -> add_one -> mixed;
            b -> add_one -> mixed;
            (mixed, c) -> merge_two -> out;
        };
        for i in 0..3000u64 {
            p.a.put(i);
            p.b.put(i);
            p.c.put(i);
        }
        p.a.end();
        p.b.end();
        p.c.end();
        let out: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        p.join().unwrap();
        out
    });
    out.sort_unstable();
    let mut expected: Vec<u64> = (0..3000)
        .flat_map(|i| [i + 1, i + 1, i + 1_000_000])
        .collect();
    expected.sort_unstable();
    assert_eq!(out, expected);
}

#[worker]
fn split(inbox: Inbox<u64>, evens: Outbox<u64>, odds: Outbox<u64>) {
    for msg in inbox {
        if msg.data % 2 == 0 {
            evens.put_msg(msg);
        } else {
            odds.put_msg(msg);
        }
    }
}

#[test]
fn fan_out_to_several_outputs_and_shared_consumers() {
    let (evens, odds, tens) = within(20, || {
        let p = pipeline! {
            numbers -> split -> (evens, odds);
            // Two different workers consume `evens`: they share its messages.
            evens -> add_one -> evens_plus;
            evens -> double -> evens_plus;
            odds -> double * 2 -> odds_doubled;
        };
        for i in 0..1000u64 {
            p.numbers.put(i);
        }
        p.numbers.end();
        let evens = p.evens_plus.iter().count();
        let odds: Vec<u64> = p.odds_doubled.iter().map(|m| m.data).collect();
        p.join().unwrap();
        (
            evens,
            odds.len(),
            odds.iter().filter(|&&x| x % 4 == 2).count(),
        )
    });
    assert_eq!(
        evens, 500,
        "each even number is handled by exactly one consumer"
    );
    assert_eq!(odds, 500);
    assert_eq!(tens, 500, "odd numbers doubled are 2 mod 4");
}

#[worker]
fn count_to(out: Outbox<u64>, n: u64) {
    for i in 0..n {
        out.put_msg(Msg::new(i).order(i).kind("COUNT"));
    }
}

#[test]
fn source_worker_map_worker_and_extra_arguments() {
    let out = within(20, || {
        let p = pipeline! {
            () -> count_to(100) -> numbers -> double -> doubled;
        };
        let out: Vec<Msg<u64>> = ezq::sortiter(p.doubled.iter()).collect();
        p.join().unwrap();
        out
    });
    assert_eq!(out.len(), 100);
    for (i, msg) in out.iter().enumerate() {
        assert_eq!(msg.data, 2 * i as u64);
        assert_eq!(msg.order, i as u64, "a map worker keeps the order");
        assert!(msg.kind == "COUNT", "a map worker keeps the kind");
    }
}

#[worker]
fn scale(inbox: Inbox<f64>, outbox: Outbox<f64>, factor: f64, label: String) {
    for msg in inbox {
        outbox.put_msg(Msg::new(msg.data * factor).kind(label.as_str()));
    }
}

#[test]
fn extra_arguments_are_cloned_for_each_replica() {
    let out = within(20, || {
        let label = String::from("scaled");
        let p = pipeline! {
            xs -> scale(2.5, label.clone()) * 3 -> ys;
        };
        for i in 0..30 {
            p.xs.put(f64::from(i));
        }
        p.xs.end();
        let out: Vec<Msg<f64>> = p.ys.iter().collect();
        p.join().unwrap();
        out
    });
    assert_eq!(out.len(), 30);
    assert!(out.iter().all(|m| m.kind == "scaled"));
    assert_eq!(out.iter().map(|m| m.data).sum::<f64>(), 2.5 * 435.0);
}

#[worker]
fn parse_number(text: String) -> Result<u64, std::num::ParseIntError> {
    text.parse()
}

#[worker]
fn reject_sevens(inbox: Inbox<u64>, outbox: Outbox<u64>) -> Result<(), String> {
    for msg in inbox {
        if msg.data == 7 {
            return Err(format!("7 is not welcome (order {})", msg.order));
        }
        outbox.put(msg.data);
    }
    Ok(())
}

#[test]
fn result_workers_report_their_errors() {
    let err = within(20, || {
        let p = pipeline! {
            texts -> parse_number -> numbers -> reject_sevens -> out;
        };
        for t in ["1", "2", "x"] {
            p.texts.put(t.to_string());
        }
        p.texts.end();
        assert_eq!(p.out.iter().count(), 2);
        p.join().unwrap_err()
    });
    assert_eq!(err.failures().len(), 1);
    let failure = &err.failures()[0];
    assert_eq!(failure.worker, "parse_number");
    assert_eq!(failure.replica, Some(0));
    assert_eq!(
        failure.cause,
        Cause::Returned("invalid digit found in string".into())
    );

    let err = within(20, || {
        let p = pipeline! {
            numbers -> reject_sevens * 2 -> out;
        };
        for i in 0..10 {
            p.numbers.put(i);
        }
        p.join().unwrap_err()
    });
    assert_eq!(err.failures().len(), 1);
    assert_eq!(err.failures()[0].worker, "reject_sevens");
    assert!(
        matches!(&err.failures()[0].cause, Cause::Returned(m) if m.starts_with("7 is not welcome"))
    );
}

#[worker]
fn stage(inbox: Inbox<u64>, outbox: Outbox<u64>, name: &'static str, fail: &'static str) {
    for msg in inbox {
        if name == fail && msg.data == 500 {
            panic!("{name} broke at 500");
        }
        outbox.put(msg.data);
    }
}

#[test]
fn a_panic_in_any_stage_is_reported_without_a_hang() {
    for fail in ["first", "second", "third"] {
        let err = within(20, move || {
            let p = pipeline! {
                src -> stage("first", fail) * 2 -> q1[4] -> stage("second", fail) -> q2[4] -> stage("third", fail) -> out;
            };
            // Feeding goes on after the failure; nothing blocks.
            for i in 0..100_000u64 {
                p.src.put(i);
            }
            p.join().unwrap_err()
        });
        assert_eq!(
            err.failures().len(),
            1,
            "only the root cause is reported: {err}"
        );
        let failure = &err.failures()[0];
        assert_eq!(failure.worker, "stage");
        assert_eq!(
            failure.cause,
            Cause::Panicked(format!("{fail} broke at 500"))
        );
    }
}

#[test]
fn dropping_a_failed_pipeline_panics_with_the_failure() {
    let payload = within(20, || {
        panic::catch_unwind(AssertUnwindSafe(|| {
            let p = pipeline! { src -> stage("first", "first") -> out; };
            p.src.put(500);
        }))
        .unwrap_err()
    });
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        text,
        "worker `stage` (replica 0) panicked: first broke at 500"
    );
}

#[test]
fn zero_replicas_at_run_time_is_a_clear_panic_at_build() {
    let payload = panic::catch_unwind(|| {
        let zero = "0".parse::<usize>().unwrap();
        let _p = pipeline! { src -> add_one * zero -> out; };
    })
    .unwrap_err();
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        text,
        "ezq: worker `add_one` needs at least 1 replica, but its replica count is 0"
    );
}

#[test]
fn an_unread_sink_of_a_million_results_never_deadlocks() {
    within(60, || {
        let p = pipeline! {
            () -> count_to(1_000_000) -> numbers -> double -> out;
        };
        while !p.is_finished() {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(p.out.len(), 1_000_000, "a sink is unbounded");
        drop(p);
    });
    within(60, || {
        let p = pipeline! {
            () -> count_to(1_000_000) -> numbers -> double -> out;
        };
        p.join().unwrap();
    });
}

static TAKEN: AtomicUsize = AtomicUsize::new(0);

#[worker]
fn slow_reader(inbox: Inbox<u64>) {
    for _ in inbox {
        TAKEN.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn bounded_capacity_is_respected() {
    within(30, || {
        let put = Arc::new(AtomicUsize::new(0));
        let p = Arc::new(pipeline! { src[8] -> slow_reader; });
        let feeder = {
            let (p, put) = (Arc::clone(&p), Arc::clone(&put));
            thread::spawn(move || {
                for i in 0..200u64 {
                    p.src.put(i);
                    put.fetch_add(1, Ordering::SeqCst);
                    // Never more than the capacity, plus the one the reader
                    // holds, plus the one this thread is about to count.
                    let ahead = put.load(Ordering::SeqCst) - TAKEN.load(Ordering::SeqCst);
                    assert!(ahead <= 8 + 2, "{ahead} messages ahead of a capacity of 8");
                }
            })
        };
        feeder.join().unwrap();
        let p = Arc::try_unwrap(p).unwrap();
        p.join().unwrap();
        assert_eq!(TAKEN.load(Ordering::SeqCst), 200);
    });
}

#[test]
fn the_graph_is_available_as_dot() {
    let p = pipeline! {
        read_q -> add_one * 2 -> write_q -> double -> out;
    };
    insta::assert_snapshot!(p.dot(), @r#"
    digraph pipeline {
        rankdir=LR;
        q0 [label="read_q", shape=box];
        q1 [label="write_q", shape=box];
        q2 [label="out", shape=box];
        w0 [label="add_one ×2"];
        q0 -> w0;
        w0 -> q1;
        w1 [label="double"];
        q1 -> w1;
        w1 -> q2;
    }
    "#);
    insta::assert_snapshot!(p.mermaid(), @r#"
    flowchart LR
        q0["read_q"]
        q1["write_q"]
        q2["out"]
        w0(["add_one ×2"])
        q0 --> w0
        w0 --> q1
        w1(["double"])
        q1 --> w1
        w1 --> q2
    "#);
    p.join().unwrap();
}
