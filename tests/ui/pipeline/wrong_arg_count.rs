use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

#[worker]
fn scale(inbox: Inbox<f64>, outbox: Outbox<f64>, factor: f64) {
    for msg in inbox {
        outbox.put(msg.data * factor);
    }
}

fn main() {
    let _p = pipeline! {
        a -> scale(2.0, 3.0) -> b;
        c -> scale -> d;
        e -> double(4) -> f;
    };
}