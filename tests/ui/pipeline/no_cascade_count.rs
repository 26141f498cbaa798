use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

// One mistake, one error: a wrong number of queues leaves the queues of
// that worker untyped, and the code using the handle reports nothing more.
fn main() {
    let p = pipeline! {
        (numbers, more) -> double -> doubled;
    };
    p.numbers.put(1);
    p.more.put(2);
    let all: Vec<u64> = p.doubled.iter().map(|m| m.data).collect();
    assert!(all.is_empty());
    p.join().unwrap();
}