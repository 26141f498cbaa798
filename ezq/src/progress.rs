//! A live progress display of a running pipeline (feature `progress`).

use crate::Monitor;

/// Draws a pipeline's progress on stderr while it runs.
#[derive(Debug)]
pub struct Progress {
    _monitor: Monitor,
}

impl Progress {
    /// Starts drawing the progress of the pipeline that `monitor` watches.
    pub fn start(monitor: Monitor) -> Progress {
        Progress { _monitor: monitor }
    }
}
