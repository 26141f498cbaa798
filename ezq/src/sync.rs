//! Small synchronisation helpers shared by the runtime: a value on a cache
//! line of its own, a lock that tolerates poisoning, and a number for the
//! current thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A value on a cache line of its own, so that threads writing it do not
/// slow down threads reading its neighbours (128 bytes: the prefetcher of
/// recent x86 cores pulls lines in pairs).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Locks `mutex`. Every lock of the runtime guards data that a panic while
/// holding it leaves valid (a `Vec`, a list of names), so a poisoned lock is
/// taken as it is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A number for the current thread, unique in the process (never 0).
#[inline]
pub(crate) fn thread_number() -> u64 {
    thread_local! {
        // Constant-initialized: reading it needs no lazy-init check.
        static NUMBER: Cell<u64> = const { Cell::new(0) };
    }
    NUMBER.with(|n| match n.get() {
        0 => first_thread_number(n),
        number => number,
    })
}

#[cold]
fn first_thread_number(cell: &Cell<u64>) -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    cell.set(number);
    number
}
