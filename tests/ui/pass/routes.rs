// Routed queues in every form: a key function that borrows from the
// message, a closure, a broadcast, each with the other queue options.
use std::collections::HashMap;
use std::sync::Arc;

use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn tally(inbox: Inbox<(String, u64)>, outbox: Outbox<(String, u64)>) {
    let mut counts = HashMap::new();
    for msg in inbox {
        *counts.entry(msg.data.0).or_insert(0) += msg.data.1;
    }
    for entry in counts {
        outbox.put(entry);
    }
}

#[worker]
fn listen(inbox: Inbox<Arc<str>>, outbox: Outbox<usize>) {
    outbox.put(inbox.count());
}

fn word(entry: &(String, u64)) -> &str {
    &entry.0
}

mod keys {
    pub fn length(entry: &(String, u64)) -> usize {
        entry.0.len()
    }
}

fn main() {
    let n = 3;
    let p = pipeline! {
        words[by word, batch 16] -> tally * n -> totals;
        lengths[64, by keys::length] -> tally * 2 -> by_length;
        closures[by |e: &(String, u64)| e.1 % 7, unbounded] -> tally -> by_count;
        config[broadcast, batch 4] -> listen * 4 -> heard;
    };
    for w in ["a", "b", "a"] {
        p.words.put((w.to_owned(), 1));
        p.lengths.put((w.to_owned(), 1));
        p.closures.put((w.to_owned(), 1));
    }
    p.config.put(Arc::from("x"));
    p.words.end();
    p.lengths.end();
    p.closures.end();
    p.config.end();
    let mut totals: Vec<_> = p.totals.iter().map(|m| m.data).collect();
    totals.sort();
    assert_eq!(totals, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    assert_eq!(p.heard.iter().map(|m| m.data).sum::<usize>(), 4);
    p.join().unwrap();
}
