use std::collections::HashMap;

use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn lookup(names: Inbox<String>, ids: Outbox<u32>, table: &HashMap<String, u32>) {
    for msg in names {
        ids.put(table[&msg.data]);
    }
}

fn main() {
    let table = HashMap::from([("a".to_string(), 1)]);
    let _p = pipeline! { names -> lookup(&table) -> ids; };
}
