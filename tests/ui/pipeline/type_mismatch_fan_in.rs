use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn count(inbox: Inbox<String>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data.len() as u64);
    }
}

#[worker]
fn measure(inbox: Inbox<String>, outbox: Outbox<f64>) {
    for msg in inbox {
        outbox.put(msg.data.len() as f64);
    }
}

// Two producers of one queue disagree on its type.
fn main() {
    let _p = pipeline! {
        words -> count -> sizes;
        lines -> measure -> sizes;
    };
}