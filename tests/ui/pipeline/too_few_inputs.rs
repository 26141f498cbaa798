use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

#[worker]
fn add(left: Inbox<u64>, right: Inbox<u64>, sums: Outbox<u64>) {
    for (l, r) in left.zip(right) {
        sums.put(l.data + r.data);
    }
}

fn main() {
    let _p = pipeline! {
        a -> add -> c;
    };
    let _ = double;
}