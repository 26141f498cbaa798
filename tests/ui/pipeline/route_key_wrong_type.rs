use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn count(inbox: Inbox<(String, u64)>, outbox: Outbox<u64>) {
    outbox.put(inbox.map(|m| m.data.1).sum::<u64>());
}

/// Keys a `String`, but the queue carries `(String, u64)`.
fn first_letter(word: &String) -> char {
    word.chars().next().unwrap_or(' ')
}

/// Returns a key that cannot be hashed.
fn weight(entry: &(String, u64)) -> f64 {
    entry.1 as f64
}

fn main() {
    let by_size = 10;
    let _p = pipeline! {
        words[by first_letter] -> count * 4 -> totals;
        weighed[by weight] -> count * 2 -> more_totals;
        sized[by by_size] -> count * 2 -> sized_totals;
    };
}
