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

/// No compile error shows the expansion's hidden items: users read these
/// messages, and wrote none of those names.
#[test]
fn no_error_message_names_the_expansions_hidden_items() {
    let mut offenders = Vec::new();
    for dir in ["tests/ui/pipeline", "tests/ui/worker", "tests/ui/threads"] {
        for entry in std::fs::read_dir(dir).expect("a UI directory") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "stderr") {
                let text = std::fs::read_to_string(&path).expect("a .stderr file");
                for hidden in ["__private", "__ezq"] {
                    if text.contains(hidden) {
                        offenders.push(format!("{} names `{hidden}`", path.display()));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
