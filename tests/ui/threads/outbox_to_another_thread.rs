use ezq::{worker, Inbox, Outbox};

// An outbox belongs to its worker's thread: the thread's waits flush its
// block, so it cannot move to another thread.
#[worker]
fn fan_out(inbox: Inbox<u64>, out: Outbox<u64>) {
    std::thread::spawn(move || {
        for msg in inbox {
            out.put(msg.data);
        }
    });
}

fn main() {}
