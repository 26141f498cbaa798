//! The examples run and print what they should.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::process::example;

/// Runs an example binary and returns its standard output.
fn run_example(name: &str) -> String {
    run_example_with(name, &[])
}

fn run_example_with(name: &str, args: &[&str]) -> String {
    let path = example(name);
    let output = Command::new(&path)
        .args(args)
        .output()
        .expect("the example runs");
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

/// What wordfreq prints after its statistics, counted by this thread
/// alone: the totals line (without its time) and the 20 most frequent
/// words, in the same tokenization (runs of alphabetic characters,
/// lowercased, in files that are valid UTF-8).
fn wordfreq_alone(root: &Path) -> Vec<String> {
    let (mut files, mut counts) = (0, HashMap::<String, u64>::new());
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("a readable directory")
            .flatten()
        {
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() && entry.file_name() != "target" && entry.file_name() != ".git" {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                files += 1;
                for word in text.split(|c: char| !c.is_alphabetic()) {
                    if !word.is_empty() {
                        *counts.entry(word.to_lowercase()).or_default() += 1;
                    }
                }
            }
        }
    }
    let words: u64 = counts.values().sum();
    let mut lines = vec![format!(
        "{files} text files, {words} words, {} distinct",
        counts.len()
    )];
    let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (rank, (word, n)) in ranked.iter().take(20).enumerate() {
        lines.push(format!("{:>3}. {word:<20} {n:>10}", rank + 1));
    }
    lines
}

#[test]
fn wordfreq_with_sharded_mergers_counts_what_one_thread_counts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run_example_with("wordfreq", &[root.to_str().expect("a UTF-8 path")]);
    let summary: Vec<String> = out
        .lines()
        .skip_while(|l| !l.contains(" text files, "))
        .map(|l| match l.split_once(", in ") {
            Some((totals, _time)) => totals.to_owned(),
            None => l.to_owned(),
        })
        .collect();
    assert_eq!(summary, wordfreq_alone(root));
}
