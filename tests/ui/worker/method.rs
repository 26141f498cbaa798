use ezq::{worker, Inbox, Outbox};

struct Stage;

impl Stage {
    #[worker]
    fn run(&self, inbox: Inbox<u64>, outbox: Outbox<u64>) {
        for msg in inbox {
            outbox.put(msg.data);
        }
    }
}

fn main() {}
