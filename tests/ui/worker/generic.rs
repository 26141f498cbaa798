use ezq::{worker, Inbox, Outbox};

#[worker]
fn pass_on<T: Send + 'static>(inbox: Inbox<T>, outbox: Outbox<T>) {
    for msg in inbox {
        outbox.put_msg(msg);
    }
}

fn main() {}
