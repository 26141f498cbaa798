//! Helpers shared by the behaviour tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use ezq::graph::QueueRef;
use ezq::{Graph, Inbox, Outbox};

#[allow(dead_code)] // Not every test binary uses it.
pub mod process;
#[allow(dead_code)] // Only the Redis tests use it.
pub mod redis;

/// Runs `f` on a thread and fails the test if it does not finish within
/// `secs` seconds: a hang is a bug, and it must show up as a failure, not
/// as a stuck run. A panic in `f` is re-raised as it is.
#[allow(dead_code)] // Not every test binary uses it.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(value) => value,
        // It panicked before sending: re-raise its own panic.
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("a thread that returned sent its value"),
        },
        // Still running: fail now, and leave the stuck thread behind.
        Err(RecvTimeoutError::Timeout) => panic!("did not finish within {secs} s: a hang"),
    }
}

/// Adds what makes a reorder buffer grow: two replicas of a worker that
/// forwards `numbers`, one falling 20 ms behind at each order where
/// `slow_at` holds (the other runs ahead), and a printer that reads their
/// output through `sortiter`, checks the order, records its largest
/// buffer in `max_parked` and puts how many messages it saw on `out`.
#[allow(dead_code)] // Not every test binary uses it.
pub fn add_reordering_stages(
    g: &mut Graph,
    numbers: QueueRef<u64>,
    out: QueueRef<usize>,
    slow_at: fn(u64) -> bool,
    max_parked: &'static AtomicUsize,
) {
    let results = g.queue::<u64>("results");
    g.add(
        "slow_sometimes",
        2,
        (numbers,),
        (results,),
        move |(inbox,): (Inbox<u64>,), (out,): (Outbox<u64>,)| {
            for msg in inbox {
                if slow_at(msg.order) {
                    thread::sleep(Duration::from_millis(20));
                }
                out.put_msg(msg);
            }
        },
    );
    g.add(
        "printer",
        1,
        (results,),
        (out,),
        move |(inbox,): (Inbox<u64>,), (out,): (Outbox<usize>,)| {
            let mut sorted = ezq::sortiter(inbox);
            let mut count = 0;
            while let Some(msg) = sorted.next() {
                assert_eq!(msg.order, count as u64);
                max_parked.fetch_max(sorted.parked(), Ordering::Relaxed);
                count += 1;
            }
            out.put(count);
        },
    );
}
