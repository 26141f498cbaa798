use ezq::{pipeline, worker, Outbox};

#[worker]
fn numbers(outbox: Outbox<u64>, count: u64) {
    for i in 0..count {
        outbox.put(i);
    }
}

fn main() {
    let _p = pipeline! {
        start -> numbers(3) -> out;
    };
}