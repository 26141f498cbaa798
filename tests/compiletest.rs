//! Compile-time diagnostics of `#[worker]` and `pipeline!` (trybuild): each
//! `tests/ui/<topic>/<case>.rs` is one mistake, and its `.stderr` is the
//! exact message users see. Regenerate with `TRYBUILD=overwrite` and review
//! the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/pipeline/*.rs");
    t.compile_fail("tests/ui/worker/*.rs");
    t.compile_fail("tests/ui/threads/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
