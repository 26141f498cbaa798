//! `tracing` integration (feature `tracing`): a span per worker replica,
//! and an event when it ends, fails or panics. Without the feature, a
//! replica's body runs as it is.

use crate::stats::ReplicaCounters;

/// Runs one replica's `body`.
#[cfg(not(feature = "tracing"))]
#[inline]
pub(crate) fn replica(
    _counters: &ReplicaCounters,
    body: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    body()
}

/// Runs one replica's `body` in a span named `ezq_worker`, with the
/// worker's name and replica, and reports how it ended.
#[cfg(feature = "tracing")]
pub(crate) fn replica(
    counters: &ReplicaCounters,
    body: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    use std::panic::{self, AssertUnwindSafe};

    use crate::error::{Stopped, panic_message};

    let span =
        tracing::info_span!("ezq_worker", worker = %counters.name, replica = counters.replica);
    let _entered = span.enter();
    tracing::debug!("worker started");
    let outcome = panic::catch_unwind(AssertUnwindSafe(body));
    let processed = counters
        .processed
        .load(std::sync::atomic::Ordering::Relaxed);
    match &outcome {
        Ok(Ok(())) => tracing::debug!(processed, "worker reached END"),
        Ok(Err(error)) => tracing::error!(processed, %error, "worker returned an error"),
        Err(payload) if payload.is::<Stopped>() => {
            tracing::debug!(
                processed,
                "worker stopped: every reader of its output is gone"
            );
        }
        Err(payload) => {
            tracing::error!(processed, panic = %panic_message(payload.as_ref()), "worker panicked")
        }
    }
    outcome.unwrap_or_else(|payload| panic::resume_unwind(payload))
}
