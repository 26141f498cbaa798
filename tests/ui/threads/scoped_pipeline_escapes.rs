use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

fn main() {
    // The scope would wait for its workers, and they for the pipeline's END.
    let p = std::thread::scope(|s| pipeline! { scope = s; numbers -> double -> doubled; });
    p.numbers.put(1);
}
