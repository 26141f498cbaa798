use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

#[worker]
fn shout(inbox: Inbox<String>, outbox: Outbox<String>) {
    for msg in inbox {
        outbox.put(msg.data.to_uppercase());
    }
}

// Two consumers of one source queue disagree on its type.
fn main() {
    let _p = pipeline! {
        input -> double -> doubled;
        input -> shout -> shouted;
    };
}