//! The examples run and print what they should.

use std::path::PathBuf;
use std::process::Command;

/// Runs an example binary and returns its standard output. `cargo test`
/// builds the examples beside the test binaries; when a test is run alone
/// they may be missing, and then they are built first.
fn run_example(name: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path: PathBuf = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building example {name} failed");
    }
    let output = Command::new(&path).output().expect("the example runs");
    assert!(
        output.status.success(),
        "example {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn collatz_lines() -> Vec<String> {
    (0..40u64)
        .map(|n| {
            let next = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
            format!("({n}, {next})")
        })
        .collect()
}

#[test]
fn sum_prints_the_total() {
    assert_eq!(run_example("sum"), "499500\n");
    assert_eq!(run_example("sum_by_hand"), "499500\n");
}

#[test]
fn collatz_prints_forty_sorted_correct_lines() {
    for example in ["collatz", "collatz_by_hand"] {
        let out = run_example(example);
        let lines: Vec<String> = out.lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 40, "{example}");
        assert_eq!(lines, collatz_lines(), "{example}");
    }
}

#[test]
fn large_messages_run_in_bounded_memory() {
    let out = run_example("large_messages");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2000 messages of 1024 KiB"));
    let peak: u64 = (lines.next())
        .and_then(|l| l.strip_prefix("peak resident memory: "))
        .and_then(|l| l.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .expect("a peak memory line");
    // 2 GiB went through; two queues of 16 MiB, stacks and a few messages
    // in flight stay far below 256 MiB (a debug build copies more).
    assert!(peak < 256, "peak resident memory {peak} MiB");
}
