use ezq::{pipeline, worker, Inbox};

/// Owns a file: one value, which the replicas cannot each have a copy of.
struct Settings(std::fs::File);

#[worker]
fn apply(inbox: Inbox<Settings>) {
    for msg in inbox {
        drop(msg.data.0);
    }
}

fn main() {
    let _p = pipeline! {
        settings[broadcast] -> apply * 4;
    };
}
