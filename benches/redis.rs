//! Queues on Redis Streams, on loopback: `cargo bench --bench redis`.
//!
//! The benchmark starts its own `redis-server` (the tests' harness, so an
//! append-only file synced every second and no snapshots) and runs every
//! cell on it, round-robin, `reps` times. A cell moves `n` u64 messages
//! from one producer thread to `consumers` competing consumer threads
//! through one stream and one consumer group, and returns how long that
//! took; the consumers' sum is checked, and a wrong one fails the run.
//! Between runs the server is emptied and its append-only file rewritten,
//! so that every run starts from the same state and no automatic rewrite
//! falls inside one run but not the others.
//!
//! The cells:
//!
//! - `hand-written`: the baseline, the crate's blocking client used by
//!   hand. The producer XADDs in pipelines of `batch` entries (fields `d`,
//!   the value as 8 little-endian bytes; `k`, the kind, empty; `o`, the
//!   order in decimal); each consumer reads with `XREADGROUP COUNT batch
//!   BLOCK 100`, sums, and acknowledges each batch with one `XACK`.
//!   Consumers stop when the acknowledged count reaches `n`.
//!
//! - `ezq`: the same messages through a pipeline with a Redis-backed
//!   source queue batched the same way, `consumers` replicas of a summing
//!   worker, and a local sink for their sums. Each replica acknowledges a
//!   block in one commit script, which also trims the stream.
//!
//! Arguments (those starting with `--`, such as the `--bench` that cargo
//! passes, are ignored): `n=` (default 200000), `batch=` (256),
//! `consumers=` (2), `reps=` (3). Without `redis-server` on `PATH` nothing
//! is measured, unless `EZQ_REQUIRE_REDIS` is set: then that fails.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use redis::Commands;
use redis::streams::{StreamPendingReply, StreamReadOptions, StreamReadReply};

#[allow(dead_code)] // The benchmark does not crash its server.
#[path = "../tests/common/redis.rs"]
mod redis_server;

use redis_server::RedisServer;

/// What every cell moves, and how many times.
struct Params {
    n: u64,
    batch: usize,
    consumers: usize,
    reps: usize,
}

/// One way of moving the messages: returns the time from the first XADD to
/// the last acknowledgement, and panics if the result is wrong.
type CellFn = fn(url: &str, n: u64, batch: usize, consumers: usize) -> Duration;

/// A named row of the table.
struct Cell {
    name: &'static str,
    run: CellFn,
}

/// Every cell, in the table's order; the first is the baseline that the
/// ratio column divides by.
const CELLS: &[Cell] = &[
    Cell {
        name: "hand-written XADD / XREADGROUP / XACK",
        run: cell_hand_written,
    },
    Cell {
        name: "ezq `numbers[redis, batch B] -> summer * C -> sums`",
        run: cell_ezq,
    },
];

#[ezq::worker]
fn summer(inbox: ezq::Inbox<u64>, sums: ezq::Outbox<u64>) {
    let mut total = 0u64;
    for msg in inbox {
        total = total.wrapping_add(msg.data);
    }
    sums.put(total);
}

/// The same work through ezq: a source fed from one thread into a
/// Redis-backed queue batched like the baseline, `consumers` replicas of a
/// summing worker reading it (each acknowledges a block with its commit),
/// and their sums on a local sink. Timed from the first put to the last sum.
fn cell_ezq(url: &str, n: u64, batch: usize, consumers: usize) -> Duration {
    let cluster = ezq::cluster::Cluster::connect(url, "bench").expect("the bench's server");
    let p = ezq::pipeline! {
        cluster = cluster;
        numbers[redis, batch batch] -> summer * consumers -> sums;
    };
    let started = Instant::now();
    p.numbers.feed(0..n);
    let total = p.sums.iter().fold(0u64, |a, m| a.wrapping_add(m.data));
    let elapsed = started.elapsed();
    p.join().expect("nothing lost");
    assert_eq!(
        total,
        (0..n).fold(0u64, u64::wrapping_add),
        "the ezq cell's sum"
    );
    elapsed
}

/// The stream and group of a cell's run (the server is emptied between
/// runs).
const STREAM: &str = "bench:numbers";
const GROUP: &str = "summers";

/// How long a consumer's XREADGROUP waits for entries, in milliseconds.
const BLOCK_MS: usize = 100;

fn main() -> ExitCode {
    let params = match parse_args(std::env::args().skip(1)) {
        Ok(params) => params,
        Err(e) => {
            eprintln!("benches/redis: {e}");
            eprintln!("usage: cargo bench --bench redis -- [n=N] [batch=B] [consumers=C] [reps=K]");
            return ExitCode::from(2);
        }
    };
    let Some(server) = RedisServer::start() else {
        eprintln!("benches/redis: nothing measured");
        return ExitCode::SUCCESS;
    };
    let url = server.url();
    let version = server_version(&url);

    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); CELLS.len()];
    for _ in 0..params.reps {
        for (cell, times) in CELLS.iter().zip(&mut times) {
            reset(&url);
            times.push((cell.run)(&url, params.n, params.batch, params.consumers));
        }
    }
    let rows: Vec<(&str, Vec<Duration>)> = (CELLS.iter().zip(times))
        .map(|(cell, times)| (cell.name, times))
        .collect();
    print_table(&params, &version, &rows);
    ExitCode::SUCCESS
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Params, String> {
    let mut params = Params {
        n: 200_000,
        batch: 256,
        consumers: 2,
        reps: 3,
    };
    for arg in args {
        if arg.starts_with("--") {
            continue;
        }
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("unknown argument {arg:?}"))?;
        let bad = |e| format!("{arg:?}: {e}");
        match name {
            "n" => params.n = value.parse().map_err(bad)?,
            "batch" => params.batch = value.parse().map_err(bad)?,
            "consumers" => params.consumers = value.parse().map_err(bad)?,
            "reps" => params.reps = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if params.n == 0 || params.batch == 0 || params.consumers == 0 || params.reps == 0 {
        return Err("n, batch, consumers and reps must be at least 1".into());
    }
    Ok(params)
}

// ---------------------------------------------------------------------------
// The cells.
// ---------------------------------------------------------------------------

/// The baseline: one producer pipelines XADDs, `consumers` threads in one
/// group read, sum and acknowledge a batch at a time.
fn cell_hand_written(url: &str, n: u64, batch: usize, consumers: usize) -> Duration {
    let client = redis::Client::open(url).expect("a redis URL");
    let mut con = connect(&client);
    let _: usize = con.del(STREAM).expect("DEL");
    let _: () = (con.xgroup_create_mkstream(STREAM, GROUP, "$")).expect("XGROUP CREATE");

    let acked = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let done = OnceLock::new();
    // The producer, the consumers and this thread, which starts the clock
    // once every connection is made.
    let ready = Barrier::new(consumers + 2);
    let (started, sum) = thread::scope(|s| {
        s.spawn(|| {
            let _flag = FailFlag(&failed);
            let mut con = connect(&client);
            ready.wait();
            let mut pipe = redis::pipe();
            for first in (0..n).step_by(batch) {
                pipe.clear();
                for i in first..n.min(first + batch as u64) {
                    pipe.cmd("XADD")
                        .arg(STREAM)
                        .arg("*")
                        .arg("d")
                        .arg(&i.to_le_bytes()[..])
                        .arg("k")
                        .arg("")
                        .arg("o")
                        .arg(i)
                        .ignore();
                }
                pipe.exec(&mut con).expect("XADD");
            }
        });
        let consumers: Vec<_> = (0..consumers)
            .map(|c| {
                let (client, acked, failed, done, ready) =
                    (&client, &acked, &failed, &done, &ready);
                s.spawn(move || {
                    let _flag = FailFlag(failed);
                    let mut con = connect(client);
                    let options = StreamReadOptions::default()
                        .group(GROUP, format!("c{c}"))
                        .count(batch)
                        .block(BLOCK_MS);
                    let mut sum = 0u64;
                    let mut ids = Vec::with_capacity(batch);
                    ready.wait();
                    while acked.load(Ordering::Acquire) < n && !failed.load(Ordering::Relaxed) {
                        let reply: Option<StreamReadReply> =
                            (con.xread_options(&[STREAM], &[">"], &options)).expect("XREADGROUP");
                        ids.clear();
                        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                            let d: Vec<u8> = entry.get("d").expect("a field d");
                            let d: [u8; 8] = d.try_into().expect("d of 8 bytes");
                            sum = sum.wrapping_add(u64::from_le_bytes(d));
                            ids.push(entry.id);
                        }
                        if ids.is_empty() {
                            continue;
                        }
                        let _: usize = con.xack(STREAM, GROUP, &ids).expect("XACK");
                        let count = ids.len() as u64;
                        if acked.fetch_add(count, Ordering::AcqRel) + count == n {
                            let _ = done.set(Instant::now());
                        }
                    }
                    sum
                })
            })
            .collect();
        ready.wait();
        let started = Instant::now();
        let sum = (consumers.into_iter())
            .map(|h| h.join().expect("a consumer"))
            .fold(0u64, u64::wrapping_add);
        (started, sum)
    });
    let elapsed = *done.get().expect("every message acknowledged") - started;

    let expected = (0..n).fold(0u64, u64::wrapping_add);
    assert_eq!(sum, expected, "hand-written: the consumers' sum of 0..{n}");
    assert_eq!(
        acked.load(Ordering::Relaxed),
        n,
        "hand-written: acknowledged"
    );
    let pending: StreamPendingReply = con.xpending(STREAM, GROUP).expect("XPENDING");
    assert_eq!(pending.count(), 0, "hand-written: left pending");
    elapsed
}

/// Tells the other threads of a run to stop when this one panics, so that a
/// failure ends the run instead of leaving consumers waiting for ever.
struct FailFlag<'a>(&'a AtomicBool);

impl Drop for FailFlag<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// A connection whose reads may wait well past an XREADGROUP's BLOCK.
fn connect(client: &redis::Client) -> redis::Connection {
    let con = client.get_connection().expect("a connection");
    con.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    con
}

// ---------------------------------------------------------------------------
// The server between runs, and the table.
// ---------------------------------------------------------------------------

/// Empties the server and rewrites its append-only file, waiting until the
/// rewrite is over (an automatic rewrite of the last run's file may be
/// under way: it is waited for first).
fn reset(url: &str) {
    let client = redis::Client::open(url).expect("a redis URL");
    let mut con = connect(&client);
    wait_for_rewrite(&mut con);
    let _: () = redis::cmd("FLUSHALL").query(&mut con).expect("FLUSHALL");
    let started: redis::RedisResult<String> = redis::cmd("BGREWRITEAOF").query(&mut con);
    if let Err(e) = started {
        assert!(
            e.to_string().contains("already in progress"),
            "BGREWRITEAOF: {e}"
        );
    }
    wait_for_rewrite(&mut con);
}

/// Waits until no rewrite of the append-only file runs or is scheduled.
fn wait_for_rewrite(con: &mut redis::Connection) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(con)
            .expect("INFO");
        let busy = info.lines().any(|line| {
            (line.starts_with("aof_rewrite_in_progress:")
                || line.starts_with("aof_rewrite_scheduled:"))
                && !line.ends_with(":0")
        });
        if !busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the AOF rewrite did not finish:\n{info}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn server_version(url: &str) -> String {
    let client = redis::Client::open(url).expect("a redis URL");
    let mut con = connect(&client);
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut con)
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

/// The median of `times` (the slower middle one for an even count).
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn rate(n: u64, time: Duration) -> f64 {
    n as f64 / time.as_secs_f64()
}

/// `msg/s` with a thousands unit: `152.3 k`.
fn show_rate(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else {
        format!("{:.1} k", rate / 1e3)
    }
}

/// One markdown table, a row per named cell: its median rate and time, the
/// range of its runs, and its median rate over the first row's.
fn print_table(params: &Params, version: &str, rows: &[(&str, Vec<Duration>)]) {
    let Params {
        n,
        batch,
        consumers,
        reps,
    } = *params;
    println!(
        "Redis Streams on loopback (redis-server {version}, appendfsync everysec): {n} u64 \
         messages, 1 producer, {consumers} consumers, batches of {batch}, median of {reps} runs\n"
    );
    println!("| cell | msg/s | elapsed | msg/s, slowest - fastest run | vs first row |");
    println!("|---|---:|---:|---:|---:|");
    let baseline = rows.first().map(|(_, times)| rate(n, median(times)));
    for (name, times) in rows {
        let med = median(times);
        let slowest = times.iter().max().expect("a run");
        let fastest = times.iter().min().expect("a run");
        let ratio = baseline.map_or(1.0, |b| rate(n, med) / b);
        println!(
            "| {name} | {} | {:.3} s | {} - {} | {ratio:.2}x |",
            show_rate(rate(n, med)),
            med.as_secs_f64(),
            show_rate(rate(n, *slowest)),
            show_rate(rate(n, *fastest)),
        );
    }
}
