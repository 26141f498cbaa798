//! A scoped pipeline whose workers borrow: a table, a counter, a slice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn emit(out: Outbox<String>, names: &[String]) {
    for name in names {
        out.put(name.clone());
    }
}

#[worker]
fn lookup(names: Inbox<String>, ids: Outbox<u32>, table: &HashMap<String, u32>, seen: &AtomicU64) {
    for msg in names {
        seen.fetch_add(1, Ordering::Relaxed);
        ids.put(table[&msg.data]);
    }
}

fn main() {
    let names: Vec<String> = vec!["a".into(), "b".into()];
    let table = HashMap::from([("a".to_string(), 1), ("b".to_string(), 2)]);
    let seen = AtomicU64::new(0);
    let total: u32 = std::thread::scope(|s| {
        let p = pipeline! {
            scope = s;
            () -> emit(&names) -> words -> lookup(&table, &seen) * 2 -> ids;
        };
        let total = p.ids.iter().map(|m| m.data).sum();
        p.join().unwrap();
        total
    });
    assert_eq!((total, seen.load(Ordering::Relaxed)), (3, 2));
}
