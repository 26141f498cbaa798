// A map worker whose message borrows: a queue carries owned (or
// `'static`) data, so this is an error, and it says so on the parameter,
// without naming the expansion's hidden lifetime.
use ezq::{pipeline, worker};

#[worker]
fn len(word: &str) -> usize {
    word.len()
}

fn main() {
    let p = pipeline! { words -> len -> lens; };
    p.join().unwrap();
}
