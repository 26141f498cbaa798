use ezq::{worker, Inbox, Outbox};

#[worker]
async fn fetch(urls: Inbox<String>, pages: Outbox<String>) {
    for msg in urls {
        pages.put(msg.data);
    }
}

fn main() {}
