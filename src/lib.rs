//! Examples and integration tests for ezq; see the `ezq` crate.
