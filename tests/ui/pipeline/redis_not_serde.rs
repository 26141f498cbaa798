use ezq::{pipeline, worker, Inbox, Outbox};

/// Holds a file handle: nothing serde can carry to another process.
struct Handle(std::fs::File);

#[worker]
fn open(inbox: Inbox<String>, outbox: Outbox<Handle>) {
    for msg in inbox {
        outbox.put(Handle(std::fs::File::open(msg.data).unwrap()));
    }
}

#[worker]
fn close(inbox: Inbox<Handle>) {
    for msg in inbox {
        drop(msg.data.0);
    }
}

fn main() {
    let _p = pipeline! {
        paths -> open -> handles[redis] -> close;
    };
}
