use ezq::{worker, Inbox};

#[worker]
fn count(inbox: Inbox<u64>) -> usize {
    inbox.count()
}

fn main() {}
