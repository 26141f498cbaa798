//! Large messages through a pipeline with default settings: 2,000 messages
//! of 1 MiB each (the bytes in the value itself, not behind a pointer)
//! through a chain of two workers, fed from the main thread.
//!
//! A queue of the default capacity holds at most 16 MiB of messages
//! (`ezq::graph::DEFAULT_QUEUE_BYTES`), and a worker's stack grows with the
//! size of its messages, so this runs in bounded memory and no worker
//! overflows its stack. It prints the messages seen and the peak resident
//! memory.
//!
//! ```text
//! cargo run --release --example large_messages
//! ```

use ezq::{pipeline, worker};

const SIZE: usize = 1 << 20;
const COUNT: u64 = 2_000;

/// One mebibyte, inline.
struct Block([u8; SIZE]);

/// Stamps the block's first and last bytes with its order.
#[worker]
fn stamp(mut block: Block) -> Block {
    block.0[SIZE - 1] = block.0[0];
    block
}

/// Reduces a block to the bytes that were stamped.
#[worker]
fn checksum(block: Block) -> u64 {
    u64::from(block.0[0]) + u64::from(block.0[SIZE - 1])
}

/// Peak resident memory of this process, in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status.lines())
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn main() {
    // The caller's side passes each 1 MiB value through a few calls on its
    // way into a queue: in a release build it needs about 10 MiB of stack
    // (a hand-written crossbeam program about 4 MiB), more than a main
    // thread's 8 MiB, and a debug build copies more. So it runs on a thread
    // with a large stack; ezq sizes its worker threads' stacks itself.
    let caller = std::thread::Builder::new()
        .name("caller".into())
        .stack_size(64 << 20);
    let (count, total) = caller.spawn(run).expect("a thread").join().expect("ran");
    let expected: u64 = (0..COUNT).map(|i| 2 * (i % 256)).sum();
    assert_eq!(total, expected);
    println!("{count} messages of {} KiB", SIZE / 1024);
    println!("peak resident memory: {} MiB", peak_rss_mib());
}

/// The pipeline, fed from this thread and read on another: how many sums
/// came out, and their total.
fn run() -> (u64, u64) {
    let p = pipeline! { blocks -> stamp -> stamped -> checksum -> sums; };
    let (count, total) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            (p.sums.iter()).fold((0u64, 0u64), |(n, total), msg| (n + 1, total + msg.data))
        });
        for i in 0..COUNT {
            let mut block = Block([0; SIZE]);
            block.0[0] = (i % 256) as u8;
            p.blocks.put(block);
        }
        p.blocks.end();
        reader.join().expect("the reader ran")
    });
    p.join().expect("nothing failed, nothing was lost");
    (count, total)
}
