// Valid input that exercises the corners of the grammar.
use ezq::{pipeline, worker, Inbox, Outbox};

mod stages {
    use ezq::{worker, Inbox, Outbox};

    #[worker]
    pub fn scale(inbox: Inbox<u64>, outbox: Outbox<u64>, factor: u64, offset: u64) {
        for msg in inbox {
            outbox.put(msg.data * factor + offset);
        }
    }
}

#[worker]
fn numbers(out: Outbox<u64>, count: u64) {
    for i in 0..count {
        out.put(i);
    }
}

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn checked_half(x: u64) -> Result<u64, String> {
    if x % 2 == 0 { Ok(x / 2) } else { Err(format!("{x} is odd")) }
}

#[worker]
fn split(inbox: Inbox<u64>, small: Outbox<u64>, large: Outbox<u64>) {
    for msg in inbox {
        if msg.data < 50 { small.put_msg(msg) } else { large.put_msg(msg) }
    }
}

#[worker]
fn total(inbox: Inbox<u64>, out: Outbox<u64>) -> Result<(), std::fmt::Error> {
    out.put(inbox.map(|m| m.data).sum::<u64>());
    Ok(())
}

// A pipeline in a generic function: its checks use no generic parameter.
fn squares<T: Into<u64>>(values: Vec<T>) -> u64 {
    let p = pipeline! {
        numbers -> square -> squared;
    };
    for v in values {
        p.numbers.put(v.into());
    }
    p.numbers.end();
    let total = p.squared.iter().map(|m| m.data).sum();
    p.join().unwrap();
    total
}

fn main() {
    assert_eq!(squares(vec![1u8, 2, 3]), 14);
    let n = 3usize;
    let p = pipeline! {
        () -> numbers(10) -> raw[unbounded];
        raw -> stages::scale(2, 0) * n.max(1) -> scaled[8];
        scaled -> square * (n - 1) -> squared;
        squared -> split -> (small[4], large);
        (small) -> total -> small_total;
        large -> total -> large_total;
        evens -> checked_half -> halves;
    };
    p.evens.put(8);
    let small: u64 = p.small_total.iter().map(|m| m.data).sum();
    let large: u64 = p.large_total.iter().map(|m| m.data).sum();
    let expected: u64 = (0..10u64).map(|i| (2 * i) * (2 * i)).sum();
    assert_eq!(small + large, expected);
    p.evens.end();
    assert_eq!(p.halves.iter().next().map(|m| m.data), Some(4));
    p.join().unwrap();

    // A worker declared in a function and used twice, and a queue whose
    // name is a type parameter's.
    #[worker]
    fn inc(x: u64) -> u64 {
        x + 1
    }
    let p = pipeline! {
        a -> inc -> T;
        T -> inc -> b;
    };
    p.a.put(1);
    p.a.end();
    assert_eq!(p.b.iter().map(|m| m.data).collect::<Vec<_>>(), [3]);
    p.join().unwrap();
}
