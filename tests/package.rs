//! What each published crate ships: its own README, its sources, and not
//! the macro crate's unit tests and snapshots (`cargo package --list`).

use std::process::Command;

fn packaged(krate: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["package", "--list", "--allow-dirty", "-p", krate])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo package --list -p {krate}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_macro_crate_ships_its_readme_and_no_tests() {
    let files = packaged("ezq-macros");
    assert!(files.iter().any(|f| f == "README.md"), "{files:?}");
    assert!(
        files.iter().any(|f| f == "src/pipeline/parse.rs"),
        "{files:?}"
    );
    let test_files: Vec<_> = (files.iter())
        .filter(|f| f.ends_with("tests.rs") || f.contains("snapshots"))
        .collect();
    assert!(test_files.is_empty(), "{test_files:?}");
}

#[test]
fn the_runtime_crate_ships_its_own_readme() {
    let files = packaged("ezq");
    assert!(files.iter().any(|f| f == "README.md"), "{files:?}");
    assert!(
        files.iter().any(|f| f == "src/transport/local.rs"),
        "{files:?}"
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ezq/README.md"))
        .expect("ezq/README.md");
    // It speaks of the published crate only: nothing that needs this
    // repository.
    for needs_the_repository in ["cargo run --example", "benches/", "tests/ui", ".ci/run"] {
        assert!(
            !readme.contains(needs_the_repository),
            "{needs_the_repository}"
        );
    }
}
