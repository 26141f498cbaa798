use ezq::{pipeline, worker};

#[worker]
fn double(x: u64) -> u64 {
    x * 2
}

// A source writer belongs to the thread that opened it; other threads open
// their own.
fn main() {
    let p = pipeline! { numbers[batch 64] -> double -> doubled; };
    let writer = p.numbers.writer();
    std::thread::scope(|s| {
        s.spawn(move || writer.put(1));
    });
}
