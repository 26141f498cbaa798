use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

fn key(n: &u64) -> u64 {
    *n
}

fn main() {
    let _p = pipeline! {
        numbers[by key] -> double * 2 -> doubled;
        numbers -> double -> tripled;
    };
}
