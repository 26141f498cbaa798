//! Word frequencies over every text file under a directory, with a live
//! progress display: `cargo run --release --example wordfreq -- [DIR]`
//! (DIR defaults to the current directory).
//!
//! ```text
//! () -> walker(root) -> paths -> tokenize * num_cpus -> counts -> merge -> top
//! ```
//!
//! - `walker` walks the tree with `std::fs`, skipping `target/` and `.git/`
//!   directories and symbolic links (so a link cannot make it loop), and
//!   puts the path of every regular file.
//! - `tokenize`, one replica per CPU, reads each file and counts its words.
//!   A text file is any file that is valid UTF-8, whatever its name
//!   (`README`, `LICENSE` and `Makefile` count, images and binaries do
//!   not); a word is a run of alphabetic characters, lowercased.
//! - `merge` adds the counts up and sends the 20 most frequent words.
//!
//! The progress display is drawn on stderr while the pipeline runs (when
//! stderr is a terminal); the statistics table and the words go to stdout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use ezq::{Inbox, Outbox, Progress, pipeline, worker};

/// How many words the summary lists.
const TOP: usize = 20;

/// The words of one file and how often each occurs.
type Counts = HashMap<String, u64>;

/// What `merge` sends at the end.
#[derive(Debug)]
struct Summary {
    files: u64,
    words: u64,
    distinct: usize,
    top: Vec<(String, u64)>,
}

/// Puts the path of every regular file under `root`.
#[worker]
fn walker(paths: Outbox<PathBuf>, root: PathBuf) {
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        // An unreadable directory is skipped, like an unreadable file.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // The entry's own type: a symbolic link is neither file nor dir.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if entry.file_name() != "target" && entry.file_name() != ".git" {
                    dirs.push(entry.path());
                }
            } else if kind.is_file() {
                paths.put(entry.path());
            }
        }
    }
}

/// Counts the words of each file that is valid UTF-8.
///
/// It sends one map per file rather than the words themselves: counting
/// here, in parallel, leaves the single `merge` one addition per distinct
/// word of a file instead of one per word, so it is never the bottleneck,
/// and one message per file keeps the channel traffic small.
#[worker]
fn tokenize(paths: Inbox<PathBuf>, counts: Outbox<Counts>) {
    for msg in paths {
        let Ok(bytes) = std::fs::read(&msg.data) else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let mut words = Counts::new();
        for word in text.split(|c: char| !c.is_alphabetic()) {
            if word.is_empty() {
                continue;
            }
            // Most text is lowercase already: allocate only for a new word.
            if word.chars().any(char::is_uppercase) {
                *words.entry(word.to_lowercase()).or_default() += 1;
            } else if let Some(n) = words.get_mut(word) {
                *n += 1;
            } else {
                words.insert(word.to_owned(), 1);
            }
        }
        counts.put(words);
    }
}

/// Adds up the counts of every file and sends the most frequent words.
#[worker]
fn merge(counts: Inbox<Counts>, top: Outbox<Summary>) {
    let mut total = Counts::new();
    let mut files = 0;
    for msg in counts {
        files += 1;
        for (word, n) in msg.data {
            *total.entry(word).or_default() += n;
        }
    }
    let words = total.values().sum();
    let distinct = total.len();
    let mut ranked: Vec<(String, u64)> = total.into_iter().collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(TOP);
    top.put(Summary {
        files,
        words,
        distinct,
        top: ranked,
    });
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    if !root.is_dir() {
        eprintln!("wordfreq: {} is not a directory", root.display());
        std::process::exit(2);
    }
    let start = Instant::now();
    let p = pipeline! {
        () -> walker(root) -> paths -> tokenize * ezq::num_cpus() -> counts -> merge -> top;
    };
    let progress = Progress::start(p.monitor());
    let summary = p.top.iter().next().map(|msg| msg.data);
    if let Err(error) = p.join() {
        drop(progress);
        eprintln!("wordfreq: {error}");
        std::process::exit(1);
    }
    let stats = progress.finish();
    let elapsed = start.elapsed();
    let summary = summary.expect("merge sends a summary when it has not failed");

    println!("{stats}");
    println!(
        "{} text files, {} words, {} distinct, in {:.2}s",
        summary.files,
        summary.words,
        summary.distinct,
        elapsed.as_secs_f64()
    );
    for (rank, (word, n)) in summary.top.iter().enumerate() {
        println!("{:>3}. {word:<20} {n:>10}", rank + 1);
    }
}
