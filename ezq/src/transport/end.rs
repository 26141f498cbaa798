//! The END protocol of a queue that ends explicitly (a source, a hand-made
//! queue): a [`Gate`] that admits puts until the queue is closed, and then
//! sends one END behind the last message admitted.
//!
//! A put enters the gate, sends, and leaves. Closing the gate refuses every
//! later put; the END goes once no put is inside, so no message a put was
//! admitted for can land behind it, and none is lost. Readers treat END as
//! sticky (see [`Rx`](super::Rx)): one END ends the queue for all of them.
//!
//! Entering costs one locked instruction for the thread that puts first
//! (usually the only one), and a shared add for the others: a put and the
//! closer must each see the other's write before reading, which no cheaper
//! instruction guarantees. Leaving is a plain store.

use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize};
use std::thread;
use std::time::{Duration, Instant};

use super::{Item, SendError, Tx};
use crate::sync::{Padded, thread_number};

/// Admits puts into a queue until it is closed, then sends its END.
pub(crate) struct Gate {
    closed: AtomicBool,
    /// The thread that put first; it enters with a flag of its own.
    owner: AtomicU64,
    owner_inside: Padded<AtomicBool>,
    /// Puts of other threads inside the gate.
    others: AtomicUsize,
    /// [`NOT_SENT`], [`SENDING`] or [`SENT`].
    end: AtomicU8,
}

const NOT_SENT: u8 = 0;
const SENDING: u8 = 1;
const SENT: u8 = 2;

/// Marks the END unsent again if dropped (by a panic).
struct Unsent<'a>(&'a AtomicU8);

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        self.0.store(NOT_SENT, SeqCst);
    }
}

/// A put inside the gate; it leaves when dropped.
pub(crate) struct Pass<'a> {
    gate: &'a Gate,
    owner: bool,
}

impl Drop for Pass<'_> {
    #[inline]
    fn drop(&mut self) {
        // The closer waits by looking: leaving needs no fence, only that
        // the send is seen before it.
        if self.owner {
            self.gate.owner_inside.store(false, Release);
        } else {
            self.gate.others.fetch_sub(1, Release);
        }
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            closed: AtomicBool::new(false),
            owner: AtomicU64::new(0),
            owner_inside: Padded(AtomicBool::new(false)),
            others: AtomicUsize::new(0),
            end: AtomicU8::new(NOT_SENT),
        }
    }
}

impl Gate {
    /// Lets a put in; `None` once the gate is closed.
    #[inline]
    pub(crate) fn enter(&self) -> Option<Pass<'_>> {
        let me = thread_number();
        let owner = self.owner.load(Relaxed);
        let is_owner = owner == me
            || (owner == 0 && (self.owner.compare_exchange(0, me, Relaxed, Relaxed)).is_ok());
        if is_owner {
            self.owner_inside.swap(true, SeqCst);
        } else {
            self.others.fetch_add(1, SeqCst);
        }
        let pass = Pass {
            gate: self,
            owner: is_owner,
        };
        if self.closed.load(SeqCst) {
            return None; // `pass` leaves as it drops
        }
        Some(pass)
    }

    /// Closes the gate; true if this call closed it.
    pub(crate) fn close(&self) -> bool {
        !self.closed.swap(true, SeqCst)
    }

    /// Whether the gate was closed.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Whether no put is inside.
    pub(crate) fn is_quiet(&self) -> bool {
        !self.owner_inside.load(SeqCst) && self.others.load(SeqCst) == 0
    }

    /// Waits until no put is inside, or `deadline`; false if the deadline
    /// came first. A put inside waits only for room in the queue, which
    /// its readers make.
    fn wait_quiet(&self, deadline: Option<Instant>) -> bool {
        let mut pause = Duration::from_micros(1);
        let mut spins = 0;
        while !self.is_quiet() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            if spins < 100 {
                spins += 1;
                thread::yield_now();
            } else {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(1));
            }
        }
        true
    }

    /// Whether the END was sent (or nobody was left to need it).
    pub(crate) fn end_sent(&self) -> bool {
        self.end.load(SeqCst) == SENT
    }

    /// Sends the END of a closed gate, once no put is inside, waiting for
    /// room until `deadline` (for ever if `None`). `before` runs first,
    /// once no put is inside: what producers hold back (a partial block)
    /// goes ahead of the END. True once the END is in the queue, or every
    /// reader is gone; false if the deadline came first (call again to go
    /// on).
    pub(crate) fn send_end<T>(
        &self,
        tx: &Tx<T>,
        deadline: Option<Instant>,
        before: impl FnOnce(),
    ) -> bool {
        debug_assert!(self.is_closed());
        loop {
            match self.end.compare_exchange(NOT_SENT, SENDING, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(SENT) => return true,
                // Another thread is sending it: wait for that one.
                Err(_) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return false;
                    }
                    thread::sleep(Duration::from_micros(50));
                }
            }
        }
        if !self.wait_quiet(deadline) {
            self.end.store(NOT_SENT, SeqCst);
            return false;
        }
        // A send that panics (a remote queue whose server is gone) leaves
        // the END unsent, for a later call to try again, not stuck as
        // being sent.
        let unsent_on_panic = Unsent(&self.end);
        before();
        let sent = match deadline {
            None => {
                let _ = tx.send(Item::End);
                true
            }
            Some(d) => !matches!(tx.send_deadline(Item::End, d), Err(SendError::Full(_))),
        };
        std::mem::forget(unsent_on_panic);
        self.end.store(if sent { SENT } else { NOT_SENT }, SeqCst);
        sent
    }

    /// Sends the END of a closed gate if that needs no wait: no put is
    /// inside and the queue has room. True if it is in the queue.
    pub(crate) fn try_send_end<T>(&self, tx: &Tx<T>) -> bool {
        if !self.is_quiet() {
            return false;
        }
        if self
            .end
            .compare_exchange(NOT_SENT, SENDING, SeqCst, SeqCst)
            .is_err()
        {
            return self.end_sent();
        }
        let sent = !matches!(tx.try_send(Item::End), Err(SendError::Full(_)));
        self.end.store(if sent { SENT } else { NOT_SENT }, SeqCst);
        sent
    }

    /// Sends an END now if there is room, whether or not a put is inside:
    /// to wake the readers of a cancelled pipeline, which drop what comes
    /// after it anyway.
    pub(crate) fn force_end<T>(&self, tx: &Tx<T>) {
        if self
            .end
            .compare_exchange(NOT_SENT, SENDING, SeqCst, SeqCst)
            .is_ok()
        {
            let sent = !matches!(tx.try_send(Item::End), Err(SendError::Full(_)));
            self.end.store(if sent { SENT } else { NOT_SENT }, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Ending, channel};

    #[test]
    fn a_closed_gate_admits_nobody() {
        let gate = Gate::default();
        assert!(gate.enter().is_some());
        assert!(gate.close());
        assert!(!gate.close());
        assert!(gate.enter().is_none());
        assert!(gate.is_quiet());
    }

    #[test]
    fn the_end_waits_for_a_put_inside() {
        let gate = Gate::default();
        let (tx, rx) = channel::<u8>(Some(4), Ending::Explicit);
        let pass = gate.enter().expect("open");
        gate.close();
        assert!(!gate.try_send_end(&tx));
        let soon = Instant::now() + Duration::from_millis(5);
        assert!(!gate.send_end(&tx, Some(soon), || {}));
        drop(pass);
        assert!(gate.send_end(&tx, None, || {}));
        assert!(matches!(rx.try_recv(), Some(Item::End)));
        // Sticky: the reader put it back.
        assert!(matches!(rx.try_recv(), Some(Item::End)));
    }

    #[test]
    fn another_thread_enters_through_the_shared_count() {
        let gate = std::sync::Arc::new(Gate::default());
        let _mine = gate.enter().expect("open");
        let other = std::sync::Arc::clone(&gate);
        thread::spawn(move || {
            let pass = other.enter().expect("open");
            assert!(!pass.owner);
        })
        .join()
        .unwrap();
        assert_eq!(gate.others.load(SeqCst), 0);
    }
}
