//! The seed's collatz example across processes: one process feeds the
//! numbers, any number of processes run the collatz workers, one prints
//! the results in order. The queues between them live on Redis.
//!
//! ```sh
//! redis-server --port 6390 --save '' --appendonly yes --daemonize yes
//! export EZQ_REDIS_URL=redis://127.0.0.1:6390/ EZQ_JOB=collatz-demo
//! cargo run --release --example collatz_cluster -- print > results.txt &
//! cargo run --release --example collatz_cluster -- work &
//! cargo run --release --example collatz_cluster -- work --replicas 2 &
//! cargo run --release --example collatz_cluster -- feed 200000
//! wait
//! ```
//!
//! The roles start in any order. `feed N` puts 0..N and ends its part;
//! `work` runs until the numbers have ended and every one was handled;
//! `print` prints one line per result, in order of n, until the results
//! end. A `work` process may be killed at any time: what it held goes to
//! the others, and nothing is printed twice.
//!
//! A job's queues end once: run it again under a new `EZQ_JOB`, or remove
//! the finished job's keys first (`Cluster::remove_job`, or
//! `redis-cli --scan --pattern 'ezq:{collatz-demo}:*' | xargs redis-cli del`).

use std::process::ExitCode;

use ezq::cluster::Cluster;
use ezq::{Inbox, Msg, Outbox, pipeline, worker};

#[worker]
fn collatz(read_q: Inbox<u64>, write_q: Outbox<(u64, u64)>) {
    for msg in read_q {
        let n = msg.data;
        if msg.kind == "EVEN" {
            write_q.put_msg(Msg::new((n, n / 2)).order(msg.order));
        } else if msg.kind == "ODD" {
            write_q.put_msg(Msg::new((n, 3 * n + 1)).order(msg.order));
        }
    }
}

#[worker]
fn printer(write_q: Inbox<(u64, u64)>) {
    for msg in ezq::sortiter(write_q) {
        println!("{:?}", msg.data);
    }
}

const USAGE: &str = "usage: collatz_cluster feed N | work [--replicas R] | print\n\
    (the server from EZQ_REDIS_URL, the job from EZQ_JOB)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let (here, feed, replicas): (&[&str], Option<u64>, usize) = match words.as_slice() {
        ["feed", n] => match n.parse() {
            Ok(n) => (&[], Some(n), 1),
            Err(_) => return usage(),
        },
        ["work"] => (&["collatz"], None, ezq::num_cpus()),
        ["work", "--replicas", r] => match r.parse() {
            Ok(r) if r > 0 => (&["collatz"], None, r),
            _ => return usage(),
        },
        ["print"] => (&["printer"], None, 1),
        _ => return usage(),
    };
    let cluster = match Cluster::from_env("collatz") {
        Ok(cluster) => cluster.run_here(here.iter().copied()),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let p = pipeline! {
        cluster = cluster;
        read_q[redis] -> collatz * replicas -> write_q[redis] -> printer;
    };
    if let Some(n) = feed {
        p.read_q.feed((0..n).map(|i| {
            let kind = if i % 2 == 0 { "EVEN" } else { "ODD" };
            Msg::new(i).kind(kind).order(i)
        }));
    }
    match p.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collatz_cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
