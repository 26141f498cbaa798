//! Routed queues through `pipeline!` and `Graph`: a sharded merge counts
//! what one merger counts, a broadcast reaches every replica, the pictures
//! show the routes, and a wrongly wired routed queue, a cancel and a
//! discard behave as documented.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod common;

use common::within;
use ezq::graph::Capacity;
use ezq::{DropReason, Graph, Inbox, Outbox, pipeline, worker};

type Entry = (String, u64);

fn word(entry: &Entry) -> &str {
    &entry.0
}

/// Adds up the counts of the words it sees, and sends its totals at END.
#[worker]
fn merge(counts: Inbox<Entry>, totals: Outbox<HashMap<String, u64>>) {
    let mut total = HashMap::new();
    for msg in counts {
        *total.entry(msg.data.0).or_insert(0) += msg.data.1;
    }
    totals.put(total);
}

fn text() -> Vec<Entry> {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
    ];
    (0..5000u64)
        .map(|i| (words[(i * i % 7 + i % 3) as usize].to_owned(), i % 5 + 1))
        .collect()
}

fn count_alone(entries: &[Entry]) -> HashMap<String, u64> {
    let mut total = HashMap::new();
    for (w, n) in entries {
        *total.entry(w.clone()).or_insert(0) += n;
    }
    total
}

#[test]
fn a_sharded_merge_counts_what_one_merger_counts() {
    let p = pipeline! {
        counts[by word, batch 64] -> merge * 4 -> totals;
    };
    p.counts.feed(text());
    let shards: Vec<HashMap<String, u64>> = p.totals.iter().map(|m| m.data).collect();
    p.join().unwrap();
    assert_eq!(shards.len(), 4, "END reaches every replica");
    let mut merged = HashMap::new();
    for shard in shards {
        for (w, n) in shard {
            assert!(merged.insert(w, n).is_none(), "a word reached two replicas");
        }
    }
    assert_eq!(merged, count_alone(&text()));
}

/// Splits lines into words, one message per word.
#[worker]
fn split(lines: Inbox<String>, words: Outbox<Entry>) {
    for msg in lines {
        for w in msg.data.split_whitespace() {
            words.put((w.to_owned(), 1));
        }
    }
}

#[test]
fn a_keyed_queue_between_workers_ends_when_its_producers_do() {
    let p = pipeline! {
        lines -> split * 3 -> words[by |e: &Entry| e.0.len()] -> merge * 2 -> totals;
    };
    p.lines.feed((0..300).map(|i| format!("a bb ccc {i}")));
    let totals: Vec<_> = p.totals.iter().map(|m| m.data).collect();
    p.join().unwrap();
    assert_eq!(totals.len(), 2);
    let a: u64 = totals.iter().filter_map(|t| t.get("a")).sum();
    assert_eq!(a, 300);
}

/// Counts the updates it sees.
#[worker]
fn listen(updates: Inbox<Arc<str>>, seen: Outbox<Vec<String>>) {
    seen.put(updates.map(|m| m.data.to_string()).collect::<Vec<_>>());
}

#[test]
fn a_broadcast_reaches_every_replica_in_order() {
    let p = pipeline! {
        config[broadcast, batch 2] -> listen * 3 -> seen;
    };
    let updates: Vec<Arc<str>> = (0..5).map(|i| Arc::from(format!("v{i}"))).collect();
    p.config.feed(updates);
    let seen: Vec<_> = p.seen.iter().map(|m| m.data).collect();
    let monitor = p.monitor();
    p.join().unwrap();
    assert_eq!(seen.len(), 3);
    for replica in &seen {
        assert_eq!(replica, &["v0", "v1", "v2", "v3", "v4"]);
    }
    let config = &monitor.stats().queues[0];
    // A broadcast counts one copy per replica.
    assert_eq!((config.put, config.taken, config.dropped), (15, 15, 0));
}

#[test]
fn the_pictures_show_the_routes() {
    let p = pipeline! {
        counts[by word] -> merge * 2 -> totals;
        config[broadcast] -> listen * 2 -> seen;
    };
    assert!(
        p.dot().contains("q0 -> w0 [label=\"by key\"];"),
        "{}",
        p.dot()
    );
    assert!(
        p.dot().contains("q2 -> w1 [label=\"broadcast\"];"),
        "{}",
        p.dot()
    );
    assert!(
        p.mermaid().contains("q0 -- \"by key\" --> w0"),
        "{}",
        p.mermaid()
    );
    assert!(
        p.mermaid().contains("q2 -- \"broadcast\" --> w1"),
        "{}",
        p.mermaid()
    );
    p.join().unwrap();
}

/// Messages the replicas of `fragile` took.
static FRAGILE_TOOK: AtomicU64 = AtomicU64::new(0);

/// A replica that fails at the first fox after its first two messages.
#[worker]
fn fragile(counts: Inbox<Entry>, totals: Outbox<u64>) {
    let mut n = 0;
    for msg in counts {
        FRAGILE_TOOK.fetch_add(1, Ordering::SeqCst);
        if msg.data.0 == "fox" && n >= 2 {
            panic!("fragile: a fox");
        }
        n += 1;
    }
    totals.put(n);
}

#[test]
fn a_failing_replica_drops_only_what_was_routed_to_it() {
    let p = pipeline! {
        counts[by word] -> fragile * 4 -> totals;
    };
    let entries = text();
    p.counts.feed(entries.clone());
    let survivors = p.totals.iter().count();
    let error = within(10, move || p.join()).unwrap_err();
    assert_eq!(survivors, 3);
    assert_eq!(error.failures().len(), 1);
    assert_eq!(error.failures()[0].worker, "fragile");
    // What was routed to the replica that failed, and not taken by it, is
    // dropped; the other replicas took everything else.
    let took = FRAGILE_TOOK.load(Ordering::SeqCst);
    assert!(error.dropped() > 0);
    assert_eq!(took + error.dropped(), entries.len() as u64);
    assert!(matches!(
        error.drops()[0].reason,
        DropReason::ReaderFailed { .. }
    ));
}

#[test]
fn a_cancel_ends_every_replica() {
    let p = pipeline! {
        counts[by word, 8] -> merge * 3 -> totals;
        config[broadcast, 2] -> listen * 3 -> seen;
    };
    p.counts.put(("a".to_owned(), 1));
    p.config.put(Arc::from("x"));
    p.cancel();
    let error = within(10, move || p.join()).unwrap_err();
    assert!(error.is_cancelled());
}

/// Reads one message and discards the rest of its queue.
#[worker]
fn first_only(counts: Inbox<Entry>, firsts: Outbox<Entry>) {
    let mut counts = counts;
    if let Some(msg) = counts.recv() {
        firsts.put_msg(msg);
    }
    counts.discard_rest();
}

#[test]
fn a_replica_may_discard_the_rest_of_a_keyed_queue() {
    let p = pipeline! {
        counts[by word] -> first_only * 2 -> firsts;
    };
    p.counts.feed(text());
    let firsts = p.firsts.iter().count() as u64;
    let monitor = p.monitor();
    p.join().expect("discarded on purpose, not dropped");
    let counts = &monitor.stats().queues[0];
    assert_eq!(counts.taken, firsts);
    assert_eq!(counts.discarded + counts.taken, 5000);
}

fn start_with_route(readers: usize) {
    let mut g = Graph::new();
    let numbers = g.keyed_queue("numbers", Capacity::Default, None, |n: &u64| *n);
    let doubled = g.queue::<u64>("doubled");
    for _ in 0..readers {
        g.add(
            "double",
            2,
            (numbers,),
            (doubled,),
            |(i,): (Inbox<u64>,), (o,): (Outbox<u64>,)| {
                for msg in i {
                    o.put(msg.data * 2);
                }
            },
        );
    }
    let p = g.start(|c| c.source(numbers));
    p.end();
}

#[test]
#[should_panic(
    expected = "ezq: the queue `numbers` is routed by key but 2 workers read it (`double`, `double`): a routed queue needs exactly one reader worker, with as many replicas as it likes"
)]
fn a_graph_refuses_a_routed_queue_with_two_readers() {
    start_with_route(2);
}

#[test]
#[should_panic(expected = "ezq: the queue `numbers` is routed by key but no worker reads it")]
fn a_graph_refuses_a_routed_sink() {
    start_with_route(0);
}

/// Sends each message on as it comes.
#[worker]
fn echo(counts: Inbox<Entry>, out: Outbox<Entry>) {
    for msg in counts {
        out.put_msg(msg);
    }
}

#[test]
fn a_lone_message_of_a_batched_keyed_queue_is_not_held_back() {
    // The caller waits outside the pipeline (it polls without reading the
    // sink, which would flush): the flusher sends the block's parts.
    let p = pipeline! {
        counts[by word, batch 256] -> echo * 2 -> out;
    };
    p.counts.put(("a".to_owned(), 1));
    p.counts.put(("b".to_owned(), 1));
    let mut got = 0;
    for _ in 0..1000 {
        got += std::iter::from_fn(|| p.out.try_recv()).count();
        if got == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(got, 2);
    p.counts.end();
    p.join().unwrap();
}
