// A worker whose extra argument is a function pointer taking a reference:
// it borrows nothing (a `fn` pointer is `'static`), so it needs no scope,
// and it works in one too.
use ezq::{pipeline, worker, Inbox, Outbox};

#[worker]
fn apply(words: Inbox<String>, lens: Outbox<usize>, f: fn(&str) -> usize) {
    for msg in words {
        lens.put(f(&msg.data));
    }
}

fn main() {
    let p = pipeline! { words -> apply(str::len) -> lens; };
    p.words.feed(["a".to_string(), "bcd".to_string()]);
    assert_eq!(p.lens.iter().map(|m| m.data).sum::<usize>(), 4);
    p.join().unwrap();

    std::thread::scope(|s| {
        let p = pipeline! { scope = s; words -> apply(str::len) -> lens; };
        p.words.feed(["ab".to_string()]);
        assert_eq!(p.lens.iter().map(|m| m.data).sum::<usize>(), 2);
        p.join().unwrap();
    });
}
