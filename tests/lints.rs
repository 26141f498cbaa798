//! The code `#[worker]` and `pipeline!` generate is lint-clean in a user's
//! crate: strict rustc lints, clippy's pedantic group (CI runs clippy on
//! every target with `-D warnings`), no unsafe code, and a prelude shadowed
//! by the user's own types.
#![deny(
    warnings,
    unused_qualifications,
    unreachable_pub,
    missing_debug_implementations
)]
#![deny(clippy::all, clippy::pedantic)]
#![forbid(unsafe_code)]

use ezq::{Inbox, Outbox, pipeline, worker};

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
#[allow(dead_code)]
struct Ok;

#[worker]
fn split(inbox: Inbox<u64>, evens: Outbox<u64>, odds: Outbox<u64>, limit: u64) {
    for msg in inbox {
        if msg.data > limit {
            continue;
        }
        if msg.data % 2 == 0 {
            evens.put_msg(msg);
        } else {
            odds.put_msg(msg);
        }
    }
}

#[worker]
fn half(x: u64) -> u64 {
    x / 2
}

#[worker]
fn checked(x: u64) -> core::result::Result<u64, std::string::String> {
    x.checked_mul(3).ok_or_else(|| "overflow".to_owned())
}

#[worker]
fn total(inbox: Inbox<u64>, out: Outbox<u64>) -> core::result::Result<(), std::string::String> {
    let sum = inbox.map(|m| m.data).try_fold(0u64, u64::checked_add);
    out.put(sum.ok_or_else(|| "overflow".to_owned())?);
    core::result::Result::Ok(())
}

#[test]
fn generated_code_passes_strict_lints() {
    let p = pipeline! {
        numbers[32] -> split(100) * 2 -> (evens, odds);
        evens -> half -> halves[unbounded];
        halves -> total -> sum_of_halves;
        odds -> checked -> tripled;
    };
    for i in 0..10 {
        p.numbers.put(i);
    }
    p.numbers.end();
    assert_eq!(p.sum_of_halves.iter().map(|m| m.data).sum::<u64>(), 10);
    assert_eq!(p.tripled.iter().map(|m| m.data).sum::<u64>(), 75);
    p.join().unwrap();
}
