use ezq::{pipeline, worker, Inbox, Outbox};

mod stages {
    use ezq::{Inbox, Outbox};

    pub fn triple(inbox: Inbox<u64>, outbox: Outbox<u64>) {
        for msg in inbox {
            outbox.put(msg.data * 3);
        }
    }
}

#[worker]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

fn main() {
    let _p = pipeline! {
        a -> double -> b -> stages::triple -> c;
    };
}