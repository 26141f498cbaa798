//! Word frequencies over every text file under a directory, with a live
//! progress display: `cargo run --release --example wordfreq -- [DIR]`
//! (DIR defaults to the current directory).
//!
//! ```text
//! () -> walker(root) -> paths -> tokenize * num_cpus -> (counts, texts);
//! counts[by word, batch 256] -> merge * (num_cpus / 2) -> shards;
//! (shards, texts) -> summarize -> top;
//! ```
//!
//! - `walker` walks the tree with `std::fs`, skipping `target/` and `.git/`
//!   directories and symbolic links (so a link cannot make it loop), and
//!   puts the path of every regular file.
//! - `tokenize`, one replica per CPU, reads each file and counts its words.
//!   A text file is any file that is valid UTF-8, whatever its name
//!   (`README`, `LICENSE` and `Makefile` count, images and binaries do
//!   not); a word is a run of alphabetic characters, lowercased. It sends
//!   each word of a file with its count, and at the end how many text
//!   files it read.
//! - `merge`, one replica per CPU, adds the counts up. `counts` is keyed by
//!   the word, so every count of a word reaches the same replica: each
//!   replica's totals are final for its words, and it sends its share of
//!   the summary (its words, and its 20 most frequent).
//! - `summarize` adds the shares up: the 20 most frequent words are among
//!   the shares' (the replicas' words do not overlap), so the summary is
//!   the one a single merger would make.
//!
//! The progress display is drawn on stderr while the pipeline runs (when
//! stderr is a terminal); the statistics table and the words go to stdout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use ezq::{Either, Inbox, Outbox, Progress, pipeline, worker};

/// How many words the summary lists.
const TOP: usize = 20;

/// The words of one file and how often each occurs.
type Counts = HashMap<String, u64>;

/// One word and how often it occurs in one file: what `counts` carries.
type Count = (String, u64);

/// Routes a count to the replica of `merge` that owns its word.
fn word(count: &Count) -> &str {
    &count.0
}

/// What each replica of `merge` sends at the end, and `summarize` too.
#[derive(Debug, Default)]
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
/// It counts each file's words here, in parallel, and sends each distinct
/// word of a file once, with its count: the mergers then make one addition
/// per distinct word of a file instead of one per word.
#[worker]
fn tokenize(paths: Inbox<PathBuf>, counts: Outbox<Count>, texts: Outbox<u64>) {
    let mut files = 0;
    for msg in paths {
        let Ok(bytes) = std::fs::read(&msg.data) else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        files += 1;
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
        for count in words {
            counts.put(count);
        }
    }
    texts.put(files);
}

/// The `TOP` most frequent of `ranked`, most frequent first, ties in
/// alphabetical order.
fn top(mut ranked: Vec<(String, u64)>) -> Vec<(String, u64)> {
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(TOP);
    ranked
}

/// Adds up the counts of its words and sends its share of the summary.
#[worker]
fn merge(counts: Inbox<Count>, shares: Outbox<Summary>) {
    let mut total = Counts::new();
    for msg in counts {
        let (word, n) = msg.data;
        *total.entry(word).or_default() += n;
    }
    shares.put(Summary {
        files: 0,
        words: total.values().sum(),
        distinct: total.len(),
        top: top(total.into_iter().collect()),
    });
}

/// Adds up the mergers' shares and the tokenizers' file counts.
#[worker]
fn summarize(shares: Inbox<Summary>, texts: Inbox<u64>, summary: Outbox<Summary>) {
    let mut all = Summary::default();
    for msg in shares.merge(texts) {
        match msg {
            Either::Left(share) => {
                all.words += share.data.words;
                all.distinct += share.data.distinct;
                all.top.extend(share.data.top);
            }
            Either::Right(files) => all.files += files.data,
        }
    }
    all.top = top(all.top);
    summary.put(all);
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    if !root.is_dir() {
        eprintln!("wordfreq: {} is not a directory", root.display());
        std::process::exit(2);
    }
    let start = Instant::now();
    let cpus = ezq::num_cpus();
    // Merging a count costs less than finding it: half as many mergers as
    // tokenizers keep up (on two cores, one: sharding over two was slower
    // there, since the one merger was not the bottleneck).
    let mergers = (cpus / 2).max(1);
    let p = pipeline! {
        () -> walker(root) -> paths -> tokenize * cpus -> (counts, texts);
        counts[by word, batch 256] -> merge * mergers -> shares;
        (shares, texts) -> summarize -> top;
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
