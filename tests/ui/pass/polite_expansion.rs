// The generated code compiles cleanly under strict lints, with the prelude
// shadowed.
#![deny(warnings, missing_docs, unused_qualifications, unreachable_pub)]
#![forbid(unsafe_code)]
//! A crate that uses ezq.

use ezq::{pipeline, worker, Inbox, Outbox};

#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Vec;
#[allow(dead_code)]
struct String;
#[allow(dead_code)]
struct Box;

/// Doubles numbers.
#[worker]
pub fn double(inbox: Inbox<u64>, outbox: Outbox<u64>) {
    for msg in inbox {
        outbox.put(msg.data * 2);
    }
}

#[worker]
fn inc(x: u64) -> core::result::Result<u64, std::string::String> {
    Ok(x + 1)
}

fn parity(x: &u64) -> u64 {
    x % 2
}

fn main() {
    let p = pipeline! {
        a[16] -> double * 2 -> b[by parity, batch 4];
        b -> inc * 2 -> c;
    };
    p.a.put(1);
    p.a.end();
    assert_eq!(p.c.iter().map(|m| m.data).sum::<u64>(), 3);
    p.join().unwrap();
}
