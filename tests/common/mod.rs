//! Helpers shared by the behaviour tests.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

/// Runs `f` on a thread and fails the test if it does not finish within
/// `secs` seconds: a hang is a bug, and it must show up as a failure, not
/// as a stuck run. A panic in `f` is re-raised as it is.
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
