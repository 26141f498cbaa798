use ezq::{worker, Inbox, Outbox};

#[worker(replicas = 4)]
fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

fn main() {}
