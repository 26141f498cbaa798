//! Adversarial tests of the queues on Redis: each test attacks one promise
//! of `ezq::cluster` (nothing accepted is lost silently, no hang, bounded
//! failure) against a redis-server of its own. Several "processes" of a job
//! are simulated by separate `Cluster::connect` instances in one test
//! process; where a real process must die, the collatz example (or this
//! test binary itself) runs as a child process.
//!
//! Each of the fourteen ways these attacks once broke a promise is a test
//! here: producers sharing a name, a rerun of a finished job, puts held
//! behind a reader's message, a reader leaving early, a message that
//! crashes its process, consumers slower than `claim_after`, full sinks,
//! a capacity of one, `discard_rest`, cancel and `join_timeout` while a
//! queue is full, a reading thread that ends, and a job name with glob
//! characters.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::process::{child_test, collatz_role, wait_until};
use common::redis::RedisServer;
use common::within;
use ezq::cluster::Cluster;
use ezq::graph::Capacity;
use ezq::{
    Cause, DropReason, Either, Graph, Inbox, Msg, Outbox, Pipeline, Sink, Source, pipeline, worker,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A server for this test, or a skip.
macro_rules! server {
    () => {
        match RedisServer::start() {
            Some(server) => server,
            None => return,
        }
    };
}

/// A cluster instance (a "process") on `server` for `job`, with quick
/// recovery so that tests of failures finish in seconds.
fn cluster(server: &RedisServer, job: &str) -> Cluster {
    Cluster::connect(&server.url(), job)
        .expect("the test's server answers")
        .claim_after(Duration::from_millis(800))
        .lease(Duration::from_millis(900))
}

/// An instance that runs none of the graph's workers: it only feeds or
/// reads.
fn no_workers(c: Cluster) -> Cluster {
    c.run_here(Vec::<String>::new())
}

/// A pipeline that only feeds the Redis queue `name`: a feeding process.
fn redis_source<T>(c: Cluster, name: &str, block: Option<usize>) -> Pipeline<Source<T>>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let mut g = Graph::new();
    let q = g.redis_queue::<T>(name, Capacity::Default, block);
    g.cluster(c);
    g.start(|c| c.source(q))
}

/// A pipeline that only reads the Redis queue `name`: a printing process.
fn redis_sink<T>(c: Cluster, name: &str) -> Pipeline<Sink<T>>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let mut g = Graph::new();
    let q = g.redis_queue::<T>(name, Capacity::Default, None);
    g.cluster(c);
    g.start(|c| c.sink(q))
}

/// The stream of queue `queue` of job `job`.
fn stream_key(job: &str, queue: &str) -> String {
    format!("ezq:{{{job}}}:q:{queue}")
}

fn xlen(server: &RedisServer, key: &str) -> usize {
    let mut con = server.client().get_connection().expect("a connection");
    redis::cmd("XLEN").arg(key).query(&mut con).expect("XLEN")
}

/// The keys of job `job` on the server.
fn job_keys(server: &RedisServer, job: &str) -> BTreeSet<String> {
    let mut con = server.client().get_connection().expect("a connection");
    let all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).expect("KEYS");
    let prefix = format!("ezq:{{{job}}}:");
    all.into_iter().filter(|k| k.starts_with(&prefix)).collect()
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Waits for `running` for up to `secs`; if it is still running then, the
/// test fails as a hang, with what `evidence` says of the state it hangs
/// in. (The stuck thread is left behind; the server it waits on goes with
/// the test.)
fn finished<T>(running: thread::JoinHandle<T>, secs: u64, evidence: impl Fn() -> String) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !running.is_finished() {
        assert!(
            Instant::now() < deadline,
            "did not finish within {secs} s: a hang; {}",
            evidence()
        );
        thread::sleep(Duration::from_millis(20));
    }
    running
        .join()
        .unwrap_or_else(|payload| panic::resume_unwind(payload))
}

/// How many entries of `key` the readers took and have not acknowledged.
fn pending(server: &RedisServer, key: &str) -> i64 {
    let mut con = server.client().get_connection().expect("a connection");
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(key)
        .arg("readers")
        .query(&mut con)
        .expect("XPENDING");
    match reply {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

// ---- workers ----

#[worker]
fn double(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        out.put_msg(msg.map(|x| x * 2));
    }
}

#[worker]
fn triple(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        out.put_msg(msg.map(|x| x * 3));
    }
}

#[worker]
fn shout(inbox: Inbox<String>, out: Outbox<String>) {
    for msg in inbox {
        out.put_msg(msg.map(|s| s.to_uppercase()));
    }
}

/// Takes three messages and returns, without `discard_rest`.
#[worker]
fn first_three(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox.take(3) {
        out.put_msg(msg);
    }
}

/// Takes three messages, then discards the rest on purpose.
#[worker]
fn three_then_discard(inbox: Inbox<u64>, out: Outbox<u64>) {
    let mut inbox = inbox;
    for _ in 0..3 {
        if let Some(msg) = inbox.recv() {
            out.put_msg(msg);
        }
    }
    inbox.discard_rest();
}

/// Puts until the pipeline is cancelled.
#[worker]
fn endless(out: Outbox<u64>) {
    let mut i = 0;
    while !ezq::is_cancelled() {
        out.put(i);
        i += 1;
    }
}

/// Spends `delay_ms` on each message, counting its calls in `calls`.
#[worker]
fn slow(inbox: Inbox<u64>, out: Outbox<u64>, delay_ms: u64, calls: Arc<AtomicUsize>) {
    for msg in inbox {
        calls.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(delay_ms));
        out.put_msg(msg);
    }
}

/// Returns `Err` on 7, the first time any replica sees it.
#[worker]
fn err_once_at_seven(
    inbox: Inbox<u64>,
    out: Outbox<u64>,
    failed: Arc<AtomicBool>,
) -> Result<(), String> {
    for msg in inbox {
        if msg.data == 7 && !failed.swap(true, Ordering::SeqCst) {
            return Err("seven, once".to_owned());
        }
        out.put_msg(msg);
    }
    Ok(())
}

/// Panics on 7, the first time any replica sees it.
#[worker]
fn panic_once_at_seven(inbox: Inbox<u64>, out: Outbox<u64>, failed: Arc<AtomicBool>) {
    for msg in inbox {
        assert!(
            msg.data != 7 || failed.swap(true, Ordering::SeqCst),
            "seven, once"
        );
        out.put_msg(msg);
    }
}

/// Returns `Err` on 7, every time.
#[worker]
fn refuse_seven(inbox: Inbox<u64>, out: Outbox<u64>) -> Result<(), String> {
    for msg in inbox {
        if msg.data == 7 {
            return Err("seven is refused".to_owned());
        }
        out.put_msg(msg);
    }
    Ok(())
}

/// Takes its whole process down on 3, as the out-of-memory killer does
/// (SIGKILL; the same as an abort, a panic under `panic = "abort"` or a
/// crash in native code, without a core file).
#[worker]
fn crash_at_three(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        if msg.data == 3 {
            let me = std::process::id().to_string();
            let _ = Command::new("kill").args(["-KILL", &me]).status();
            thread::sleep(Duration::from_secs(60));
        }
        out.put_msg(msg);
    }
}

/// Reads two Redis queues together.
#[worker]
fn interleave(numbers: Inbox<u64>, words: Inbox<String>, out: Outbox<String>) {
    for either in numbers.merge(words) {
        match either {
            Either::Left(m) => out.put(format!("n{}", m.data)),
            Either::Right(m) => out.put(format!("w{}", m.data)),
        }
    }
}

/// The length and the byte sum of each blob.
#[worker]
fn weigh(inbox: Inbox<Vec<u8>>, out: Outbox<(u64, u64)>) {
    for msg in inbox {
        let sum = msg.data.iter().map(|&b| u64::from(b)).sum();
        out.put_msg(Msg::new((msg.data.len() as u64, sum)).order(msg.order));
    }
}

#[worker]
fn count_units(inbox: Inbox<()>, out: Outbox<u64>) {
    out.put(inbox.count() as u64);
}

#[worker]
fn collatz_step(read_q: Inbox<u64>, write_q: Outbox<(u64, u64)>) {
    for msg in read_q {
        let n = msg.data;
        let next = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        write_q.put_msg(Msg::new((n, next)).order(msg.order));
    }
}

/// Reads through `sortiter`, checks that every order comes in turn, and
/// puts how many came.
#[worker]
fn check_order(write_q: Inbox<(u64, u64)>, counted: Outbox<u64>) {
    let mut n = 0;
    for msg in ezq::sortiter(write_q) {
        assert_eq!((msg.order, msg.data.0), (n, n), "out of order");
        n += 1;
    }
    counted.put(n);
}

// ---- END against puts ----

/// Three feeding instances, each with three threads that put until their
/// source is ended by a fourth thread at a random moment: the reader gets
/// exactly the messages whose `try_put` returned `Ok`, and its queue ends
/// only after every feeder ended.
#[test]
fn end_racing_puts_from_several_threads_and_instances_loses_nothing() {
    let server = server!();
    let job = "end-race";
    let url = server.url();
    let reader = cluster(&server, job);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    eprintln!("end-race seed: {seed}");
    within(60, move || {
        let sink = redis_sink::<u64>(reader, "numbers");
        let registered = Arc::new(Barrier::new(3));
        let feeders: Vec<_> = (0..3u64)
            .map(|k| {
                let (url, registered) = (url.clone(), Arc::clone(&registered));
                thread::spawn(move || {
                    let c = Cluster::connect(&url, job)
                        .unwrap()
                        .lease(Duration::from_millis(900));
                    let p = Arc::new(redis_source::<u64>(c, "numbers", Some(8)));
                    // Registered before anyone ends.
                    p.put(k << 32);
                    registered.wait();
                    let putters: Vec<_> = (0..3u64)
                        .map(|t| {
                            let p = Arc::clone(&p);
                            thread::spawn(move || {
                                let mut accepted = Vec::new();
                                for i in 1.. {
                                    let value = (k << 32) | (t << 24) | i;
                                    if p.try_put(value).is_err() {
                                        break;
                                    }
                                    accepted.push(value);
                                }
                                accepted
                            })
                        })
                        .collect();
                    let pause = (u64::from(seed) >> (k * 4)) % 300 + 50;
                    thread::sleep(Duration::from_millis(pause));
                    p.end();
                    let ended_at = Instant::now();
                    let mut accepted = vec![k << 32];
                    for putter in putters {
                        accepted.extend(putter.join().unwrap());
                    }
                    Arc::into_inner(p)
                        .unwrap()
                        .join()
                        .expect("a feeder loses nothing");
                    (accepted, ended_at)
                })
            })
            .collect();
        let seen: Vec<u64> = sink.iter().map(|m| m.data).collect();
        let reader_ended = Instant::now();
        let mut accepted = Vec::new();
        for f in feeders {
            let (values, ended_at) = f.join().unwrap();
            assert!(reader_ended >= ended_at, "the queue ended before a feeder");
            accepted.extend(values);
        }
        assert!(accepted.len() > 3, "the feeders put something");
        let seen = sorted(seen);
        let unique: HashSet<u64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "a message was read twice");
        assert_eq!(seen, sorted(accepted), "read == accepted");
        sink.join().unwrap();
    });
}

/// Two pipelines of one process, on one `Cluster` (clones of it), feed one
/// queue: the first one's END must not end the queue for the second.
#[test]
fn the_end_of_one_pipeline_does_not_end_the_queue_for_another_on_the_same_cluster() {
    let server = server!();
    let job = "same-instance";
    // The lease outlasts the test: only the END can end the queue early.
    let shared = Cluster::connect(&server.url(), job)
        .unwrap()
        .lease(Duration::from_secs(5));
    let reader = cluster(&server, job);
    let seen = within(30, move || {
        let sink = Arc::new(redis_sink::<u64>(reader, "numbers"));
        let reading = {
            let sink = Arc::clone(&sink);
            thread::spawn(move || sink.iter().map(|m| m.data).collect::<Vec<u64>>())
        };
        let early = redis_source::<u64>(shared.clone(), "numbers", Some(1));
        let late = redis_source::<u64>(shared, "numbers", Some(1));
        early.put(0);
        late.put(1);
        // The early pipeline is done; the late one goes on a moment later.
        early.join().unwrap();
        thread::sleep(Duration::from_millis(700));
        for i in 2..100 {
            late.put(i);
        }
        late.join().expect("the late feeder says nothing was lost");
        let seen = sorted(reading.join().unwrap());
        Arc::into_inner(sink).unwrap().join().unwrap();
        seen
    });
    assert_eq!(
        seen.len(),
        100,
        "the reader stopped at the first pipeline's END: {seen:?}"
    );
}

/// Two feeding pipelines of one process, each on a clone of one `Cluster`
/// with a setting of its own (`.lease(..)`): nothing they put is lost.
#[test]
fn two_feeders_on_clones_of_one_cluster_with_their_own_settings_lose_nothing() {
    let server = server!();
    let job = "clones";
    let base = Cluster::connect(&server.url(), job).unwrap();
    let reader = cluster(&server, job);
    let per = 300u64;
    let (seen, joins) = within(60, move || {
        let sink = Arc::new(redis_sink::<u64>(reader, "numbers"));
        let reading = {
            let sink = Arc::clone(&sink);
            thread::spawn(move || sink.iter().map(|m| m.data).collect::<Vec<u64>>())
        };
        let registered = Arc::new(Barrier::new(2));
        let fed = Arc::new(Barrier::new(2));
        let feeders: Vec<_> = (0..2u64)
            .map(|k| {
                // Settings of its own: a new Cluster value, made from a clone.
                let c = base.clone().lease(Duration::from_secs(5));
                let (registered, fed) = (Arc::clone(&registered), Arc::clone(&fed));
                thread::spawn(move || {
                    let p = redis_source::<u64>(c, "numbers", Some(1));
                    p.put(k * per);
                    registered.wait();
                    for i in 1..per {
                        p.put(k * per + i);
                    }
                    // Both have put everything before either ends.
                    fed.wait();
                    p.join().map_err(|e| e.to_string())
                })
            })
            .collect();
        let joins: Vec<Result<(), String>> =
            feeders.into_iter().map(|f| f.join().unwrap()).collect();
        let seen = sorted(reading.join().unwrap());
        Arc::into_inner(sink).unwrap().join().unwrap();
        (seen, joins)
    });
    assert!(joins.iter().all(Result::is_ok), "{joins:?}");
    assert_eq!(
        seen.len() as u64,
        2 * per,
        "both feeders' joins said nothing was lost, yet the reader got {} of {}",
        seen.len(),
        2 * per
    );
}

/// A job run a second time under the same name, its reader first: the
/// first run's END still stands (nothing tells the runs apart), so the
/// reader ends at once, and the new feeder must not have its messages
/// accepted and lost: its first put fails, saying to remove the job's keys
/// or use another job name. After `remove_job`, the same name runs again.
#[test]
fn a_job_run_again_under_its_name_refuses_its_feeder_until_removed() {
    let server = server!();
    let job = "rerun";
    let first = cluster(&server, job);
    let reader = cluster(&server, job);
    let feeder = no_workers(cluster(&server, job));
    let again = cluster(&server, job);
    within(30, move || {
        let p = pipeline! {
            cluster = first;
            numbers[redis] -> double -> doubled;
        };
        p.numbers.feed(0..10u64);
        assert_eq!(p.doubled.iter().count(), 10);
        p.join().unwrap();
        let p = pipeline! {
            cluster = reader;
            numbers[redis] -> double -> doubled;
        };
        assert_eq!(p.doubled.iter().count(), 0, "the first run's END stands");
        p.join().unwrap();
        let f = redis_source::<u64>(feeder, "numbers", None);
        let refused = panic::catch_unwind(AssertUnwindSafe(|| f.feed(100..110u64)));
        let message = refused
            .expect_err("a put into a finished job fails")
            .downcast::<String>()
            .map(|m| *m)
            .unwrap_or_default();
        assert!(
            message.contains("has already ended") && message.contains("remove_job"),
            "{message}"
        );
        drop(f);
        again.remove_job().unwrap();
        let p = pipeline! {
            cluster = again;
            numbers[redis] -> double -> doubled;
        };
        p.numbers.feed(0..10u64);
        assert_eq!(
            p.doubled.iter().count(),
            10,
            "after remove_job the job runs afresh"
        );
        p.join().unwrap();
    });
}

// ---- readers that leave ----

/// A reader that returns early, alone. On local queues that loses the rest
/// (join reports it); a Redis-backed queue is the job's, not the process's:
/// what its reader left stays on the server, and a later reader, in this
/// process or another, gets every message of it once. So join says Ok, and
/// the rest is still there.
#[test]
fn a_reader_that_returns_early_leaves_the_rest_on_the_server_for_later_readers() {
    let server = server!();
    let c = cluster(&server, "early-alone");
    let later = cluster(&server, "early-alone");
    let local = pipeline! { numbers -> first_three -> firsts; };
    local.numbers.feed(0..100u64);
    assert_eq!(local.firsts.iter().count(), 3);
    let error = local.join().unwrap_err();
    assert!(
        matches!(error.drops()[0].reason, DropReason::ReaderReturned { .. }),
        "{error}"
    );
    within(30, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis] -> first_three -> firsts[redis];
        };
        p.numbers.feed(0..100u64);
        let mut firsts: Vec<u64> = p.firsts.iter().map(|m| m.data).collect();
        assert_eq!(firsts.len(), 3);
        p.join().expect("nothing lost: the rest is on the server");
        let p = pipeline! {
            cluster = later;
            numbers[redis] -> double -> doubled;
        };
        firsts.extend(p.doubled.iter().map(|m| m.data / 2));
        p.join().unwrap();
        assert_eq!(sorted(firsts), (0..100).collect::<Vec<_>>());
    });
}

/// A reader that stops early on purpose (`discard_rest`): "the producers
/// go on as if the queue were read (their puts succeed)".
#[test]
fn a_reader_that_discards_the_rest_of_a_redis_queue_does_not_stall_its_producers() {
    let server = server!();
    let job = "discard";
    let c = cluster(&server, job);
    let running = thread::spawn(move || {
        let p = Arc::new(pipeline! {
            cluster = c;
            numbers[redis] -> three_then_discard -> firsts[redis];
        });
        let feeder = {
            let p = Arc::clone(&p);
            thread::spawn(move || p.numbers.feed(0..5_000u64))
        };
        let firsts = p.firsts.iter().count();
        feeder.join().unwrap();
        let outcome = Arc::into_inner(p)
            .unwrap()
            .join()
            .map_err(|e| e.to_string());
        (firsts, outcome)
    });
    let key = stream_key(job, "numbers");
    let (firsts, outcome) = finished(running, 20, || {
        format!(
            "`numbers` holds {} entries that nothing will read, and its feeder waits for room",
            xlen(&server, &key)
        )
    });
    assert_eq!((firsts, outcome), (3, Ok(())));
}

/// A reader that returns early in one process: what it took and did not
/// handle goes back at once to the other readers (no wait for
/// `claim_after`), and the queue still ends.
#[test]
fn what_a_reader_left_goes_back_to_the_others_at_once() {
    let server = server!();
    let job = "early-shared";
    let long_claim = |c: Cluster| c.claim_after(Duration::from_secs(60));
    let quitter = long_claim(cluster(&server, job));
    let steady = long_claim(cluster(&server, job));
    let feeder = no_workers(cluster(&server, job));
    within(30, move || {
        let q = pipeline! {
            cluster = quitter;
            numbers[redis, batch 16] -> first_three -> firsts[redis];
        };
        let f = redis_source::<u64>(feeder, "numbers", None);
        f.feed(0..100u64);
        f.join().unwrap();
        let firsts: Vec<u64> = q.firsts.iter().map(|m| m.data).collect();
        assert_eq!(firsts.len(), 3);
        q.join().unwrap();
        let s = pipeline! {
            cluster = steady;
            numbers[redis] -> double -> doubled[redis];
        };
        let mut all: Vec<u64> = s.doubled.iter().map(|m| m.data / 2).collect();
        s.join().unwrap();
        all.extend(firsts);
        assert_eq!(sorted(all), (0..100).collect::<Vec<_>>());
    });
}

/// A sink read in part and dropped: the rest goes to another reader, the
/// part read is not read again.
#[test]
fn a_sink_dropped_half_read_gives_the_rest_to_another_reader() {
    let server = server!();
    let job = "sink-half";
    let long_claim = |c: Cluster| no_workers(c).claim_after(Duration::from_secs(60));
    let first = long_claim(cluster(&server, job));
    let second = long_claim(cluster(&server, job));
    let feeder = no_workers(cluster(&server, job));
    within(30, move || {
        let f = redis_source::<u64>(feeder, "numbers", None);
        f.feed(0..100u64);
        f.join().unwrap();
        let sink = redis_sink::<u64>(first, "numbers");
        let part: Vec<u64> = sink.iter().take(5).map(|m| m.data).collect();
        drop(sink);
        let sink = redis_sink::<u64>(second, "numbers");
        let mut all: Vec<u64> = sink.iter().map(|m| m.data).collect();
        sink.join().unwrap();
        all.extend(part);
        assert_eq!(sorted(all), (0..100).collect::<Vec<_>>());
    });
}

/// The same, with the part read on a thread of its own that then finishes
/// (the sink is dropped on the caller's thread): nothing is read twice.
#[test]
fn a_sink_read_on_a_thread_that_finishes_hands_nothing_out_twice() {
    let server = server!();
    let job = "sink-thread";
    let first = no_workers(cluster(&server, job));
    let second = no_workers(cluster(&server, job)).claim_after(Duration::from_millis(500));
    let feeder = no_workers(cluster(&server, job));
    let (part, rest) = within(30, move || {
        let f = redis_source::<u64>(feeder, "numbers", None);
        f.feed(0..100u64);
        f.join().unwrap();
        let sink = Arc::new(redis_sink::<u64>(first, "numbers"));
        let part: Vec<u64> = {
            let sink = Arc::clone(&sink);
            thread::spawn(move || sink.iter().take(5).map(|m| m.data).collect())
                .join()
                .unwrap()
        };
        drop(sink);
        let sink = redis_sink::<u64>(second, "numbers");
        let rest: Vec<u64> = sink.iter().map(|m| m.data).collect();
        sink.join().unwrap();
        (part, rest)
    });
    let twice: Vec<&u64> = part.iter().filter(|v| rest.contains(v)).collect();
    assert!(twice.is_empty(), "handed out twice: {twice:?}");
    assert_eq!(part.len() + rest.len(), 100);
}

/// The caller reads a message from a sink and, on the same thread, puts a
/// follow-up into a source of the same cluster and ends that source: the
/// follow-up is written as it is put (off a worker thread, "what it puts
/// is written at once"), and so before the source's END.
#[test]
fn a_put_by_the_caller_while_it_holds_a_sink_message_lands_before_the_end() {
    let server = server!();
    let job = "caller-put";
    let c = cluster(&server, job);
    let (client, extra) = (server.client(), stream_key(job, "extra"));
    let (written, tripled, outcome) = within(30, move || {
        let p = Arc::new(pipeline! {
            cluster = c;
            numbers[redis] -> double -> doubled[redis];
            extra[redis, batch 1] -> triple -> tripled[redis];
        });
        let reading = {
            let p = Arc::clone(&p);
            thread::spawn(move || p.tripled.iter().map(|m| m.data).collect::<Vec<u64>>())
        };
        p.numbers.put(1);
        p.numbers.end();
        let first = p.doubled.recv().expect("a result");
        p.extra.put(first.data);
        let mut con = client.get_connection().unwrap();
        let written: usize = redis::cmd("XLEN").arg(&extra).query(&mut con).unwrap();
        p.extra.end();
        // The caller goes on with `doubled` a moment later.
        thread::sleep(Duration::from_millis(500));
        assert!(p.doubled.recv().is_none());
        let tripled = reading.join().unwrap();
        let outcome = Arc::into_inner(p)
            .unwrap()
            .join()
            .map_err(|e| e.to_string());
        (written, tripled, outcome)
    });
    assert_eq!(
        tripled,
        [6],
        "the follow-up was lost (entries in `extra` right after the put: {written}; join: {outcome:?})"
    );
}

// ---- failures ----

#[test]
fn a_worker_failing_once_by_err_or_by_panic_loses_nothing() {
    let server = server!();
    let c = cluster(&server, "err-once");
    let failed = Arc::new(AtomicBool::new(false));
    let (seen, error) = within(30, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis, batch 4] -> err_once_at_seven(failed) * 2 -> out[redis];
        };
        p.numbers.feed(0..50u64);
        let seen: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        (seen, p.join().unwrap_err())
    });
    assert_eq!(sorted(seen), (0..50).collect::<Vec<_>>(), "{error}");
    assert_eq!(error.failures().len(), 1, "{error}");
    assert_eq!(
        error.failures()[0].cause,
        Cause::Returned("seven, once".to_owned())
    );
    assert!(error.drops().is_empty(), "{error}");

    let c = cluster(&server, "panic-once");
    let failed = Arc::new(AtomicBool::new(false));
    let (seen, error) = within(30, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis, batch 4] -> panic_once_at_seven(failed) * 2 -> out[redis];
        };
        p.numbers.feed(0..50u64);
        let seen: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        (seen, p.join().unwrap_err())
    });
    assert_eq!(sorted(seen), (0..50).collect::<Vec<_>>(), "{error}");
    assert_eq!(error.failures().len(), 1, "{error}");
    assert!(
        matches!(&error.failures()[0].cause, Cause::Panicked(m) if m.contains("seven, once")),
        "{error}"
    );
    assert!(error.drops().is_empty(), "{error}");
}

#[test]
fn a_message_refused_once_goes_to_the_dead_letters_with_max_failures_one() {
    let server = server!();
    let c = cluster(&server, "dead-one").max_failures(1);
    let letters = c.clone();
    let (seen, error) = within(30, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis, batch 4] -> refuse_seven * 2 -> out[redis];
        };
        p.numbers
            .feed((0..40u64).map(|i| Msg::new(i).order(1000 + i)));
        let seen: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        (seen, p.join().unwrap_err())
    });
    assert_eq!(
        sorted(seen),
        (0..40).filter(|&i| i != 7).collect::<Vec<_>>(),
        "{error}"
    );
    assert_eq!(error.failures().len(), 1, "{error}");
    let drops = error.drops();
    assert_eq!(drops.len(), 1, "{error}");
    assert_eq!(
        (drops[0].queue.as_str(), drops[0].count, &drops[0].reason),
        ("numbers", 1, &DropReason::DeadLettered)
    );
    let letters = letters.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (
            letters[0].order,
            letters[0].failures,
            letters[0].error.as_str()
        ),
        (1007, 1, "seven is refused")
    );
}

/// The child process of
/// `a_message_that_crashes_its_process_is_set_aside_after_max_failures`:
/// runs only when that test starts it.
#[test]
#[ignore = "not a test: the crashing process of a test above, started by it"]
fn crashing_process() {
    let Ok(url) = std::env::var("EZQ_ATTACK_CRASH_URL") else {
        return;
    };
    let c = Cluster::connect(&url, "crash")
        .unwrap()
        .claim_after(Duration::from_millis(300))
        .lease(Duration::from_millis(900))
        .max_failures(2);
    let p = pipeline! {
        cluster = c;
        numbers[redis] -> crash_at_three -> survivors[redis];
    };
    // The process that sets the message aside reports it, and only it.
    if let Err(e) = p.join() {
        let set_aside = e.failures().is_empty()
            && (e.drops().iter()).all(|d| d.reason == ezq::DropReason::DeadLettered);
        assert!(set_aside, "{e}");
    }
}

/// A message that takes its whole process down (an out-of-memory kill, an
/// abort: a panic under `panic = "abort"`) is redelivered to the next
/// process, and the next: it must be set aside after `max_failures`, as
/// one that panics is, not crash every process that ever reads the queue.
#[test]
fn a_message_that_crashes_its_process_is_set_aside_after_max_failures() {
    let server = server!();
    let feeder = no_workers(cluster(&server, "crash"));
    let letters = cluster(&server, "crash");
    let f = redis_source::<u64>(feeder, "numbers", None);
    f.feed((0..10u64).map(|i| Msg::new(i).order(i)));
    f.join().unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let mut child = child_test("crashing_process", "EZQ_ATTACK_CRASH_URL", &server.url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let status = wait_until(&mut child, Instant::now() + Duration::from_secs(20));
        outcomes.push(status);
        if status.success() {
            break;
        }
    }
    assert!(
        outcomes.last().is_some_and(|s| s.success()),
        "every consumer process died on the same message: {outcomes:?}"
    );
    let letters = letters.dead_letters().unwrap();
    assert_eq!(letters.iter().map(|l| l.order).collect::<Vec<_>>(), [3]);
}

// ---- claims ----

/// One consumer is slow, the other fast: the fast one takes the slow one's
/// messages over after `claim_after`; each result is written once.
#[test]
fn a_slow_consumers_messages_claimed_by_another_are_not_duplicated() {
    let server = server!();
    let job = "slow-claimed";
    let claim = |c: Cluster| c.claim_after(Duration::from_millis(200));
    let (slow_c, fast_c) = (claim(cluster(&server, job)), claim(cluster(&server, job)));
    let feeder = no_workers(cluster(&server, job));
    let reader = no_workers(cluster(&server, job));
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let seen = within(30, move || {
        let f = redis_source::<u64>(feeder, "numbers", None);
        f.feed(0..32u64);
        f.join().unwrap();
        // The slow one takes all 32 (a block) and needs 960 ms for them.
        let slow_p = pipeline! {
            cluster = slow_c;
            numbers[redis, batch 32] -> slow(30, Arc::clone(&calls)) -> slowed[redis];
        };
        thread::sleep(Duration::from_millis(50));
        let fast_p = pipeline! {
            cluster = fast_c;
            numbers[redis, batch 32] -> slow(0, Arc::clone(&calls)) -> slowed[redis];
        };
        let sink = redis_sink::<u64>(reader, "slowed");
        let seen: Vec<u64> = sink.iter().map(|m| m.data).collect();
        slow_p.join().unwrap();
        fast_p.join().unwrap();
        sink.join().unwrap();
        seen
    });
    // Whether the fast one took anything over depends on timing (the slow
    // one restarts the idle time of what it holds as it commits); either
    // way, every result is written once.
    assert_eq!(sorted(seen), (0..32).collect::<Vec<_>>());
    assert!(counted.load(Ordering::SeqCst) >= 32);
}

/// Two consumers both slower than `claim_after` per block (the case the
/// docs warn of: "processed twice"): they must still get through.
#[test]
fn consumers_slower_than_claim_after_still_make_progress() {
    let server = server!();
    let job = "livelock";
    let claim = |c: Cluster| c.claim_after(Duration::from_millis(200));
    let (a, b) = (claim(cluster(&server, job)), claim(cluster(&server, job)));
    let feeder = no_workers(cluster(&server, job));
    let reader = no_workers(cluster(&server, job));
    let calls = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(AtomicUsize::new(0));
    let running = {
        let (calls, results) = (Arc::clone(&calls), Arc::clone(&results));
        thread::spawn(move || {
            let f = redis_source::<u64>(feeder, "numbers", None);
            f.feed(0..32u64);
            f.join().unwrap();
            let pa = pipeline! {
                cluster = a;
                numbers[redis, batch 32] -> slow(25, Arc::clone(&calls)) -> slowed[redis];
            };
            thread::sleep(Duration::from_millis(50));
            let pb = pipeline! {
                cluster = b;
                numbers[redis, batch 32] -> slow(25, Arc::clone(&calls)) -> slowed[redis];
            };
            let sink = redis_sink::<u64>(reader, "slowed");
            let seen: Vec<u64> = (sink.iter())
                .inspect(|_| _ = results.fetch_add(1, Ordering::SeqCst))
                .map(|m| m.data)
                .collect();
            pa.join().unwrap();
            pb.join().unwrap();
            sink.join().unwrap();
            seen
        })
    };
    // One consumer alone needs 0.8 s for the 32 messages.
    let seen = finished(running, 15, || {
        format!(
            "{} results of 32, for {} calls of the worker: each consumer takes the other's \
             block over before it commits",
            results.load(Ordering::SeqCst),
            calls.load(Ordering::SeqCst)
        )
    });
    assert_eq!(sorted(seen), (0..32).collect::<Vec<_>>());
}

// ---- capacity ----

/// The canonical use: `feed` then read the sink, on one thread.
#[test]
fn feeding_more_than_a_redis_sinks_capacity_then_reading_it_does_not_deadlock() {
    let server = server!();
    let job = "feed-then-read";
    let c = cluster(&server, job);
    let running = thread::spawn(move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis] -> double -> doubled[redis];
        };
        p.numbers.feed(0..5_000u64);
        let count = p.doubled.iter().count();
        p.join().unwrap();
        count
    });
    let count = finished(running, 20, || {
        format!(
            "`doubled` holds {} entries (its reader, the caller, is still in `feed`), \
             `numbers` holds {}",
            xlen(&server, &stream_key(job, "doubled")),
            xlen(&server, &stream_key(job, "numbers"))
        )
    });
    assert_eq!(count, 5_000);
}

#[test]
fn a_redis_queue_of_capacity_one_does_not_deadlock() {
    let server = server!();
    let job = "capacity-one";
    let c = cluster(&server, job);
    let read = Arc::new(AtomicUsize::new(0));
    let running = {
        let read = Arc::clone(&read);
        thread::spawn(move || {
            let p = Arc::new(pipeline! {
                cluster = c;
                numbers[redis, 1, batch 1] -> double -> doubled[redis];
            });
            let feeder = {
                let p = Arc::clone(&p);
                thread::spawn(move || p.numbers.feed(0..20u64))
            };
            let seen: Vec<u64> = (p.doubled.iter())
                .inspect(|_| _ = read.fetch_add(1, Ordering::SeqCst))
                .map(|m| m.data / 2)
                .collect();
            feeder.join().unwrap();
            Arc::into_inner(p).unwrap().join().unwrap();
            seen
        })
    };
    let key = stream_key(job, "numbers");
    let seen = finished(running, 15, || {
        format!(
            "{} of 20 read; `numbers` holds {} entry, {} of them unacknowledged: the feeder \
             waits for it to hold none",
            read.load(Ordering::SeqCst),
            xlen(&server, &key),
            pending(&server, &key)
        )
    });
    assert_eq!(sorted(seen), (0..20).collect::<Vec<_>>());
}

/// Entries of a stream not yet acknowledged by its readers' group: waiting
/// (the group's lag) plus pending, as the server reports them.
fn unacknowledged(con: &mut redis::Connection, key: &str) -> usize {
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query(con)
        .unwrap_or(redis::Value::Nil);
    let redis::Value::Array(groups) = groups else {
        return 0;
    };
    let mut total = 0;
    for group in groups {
        let fields: Vec<redis::Value> = match group {
            redis::Value::Array(fields) => fields,
            redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => continue,
        };
        for pair in fields.chunks(2) {
            if let [redis::Value::BulkString(name), redis::Value::Int(n)] = pair
                && (name.as_slice() == b"pending" || name.as_slice() == b"lag")
            {
                total += usize::try_from(*n).unwrap_or(0);
            }
        }
    }
    total
}

/// A tiny capacity with two feeders and two consumers: no deadlock, and
/// the stream stays near its bound.
#[test]
fn a_tiny_capacity_bounds_the_stream_without_deadlock() {
    let server = server!();
    let job = "tiny";
    let key = stream_key(job, "numbers");
    let url = server.url();
    let workers = cluster(&server, job);
    let longest = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (longest, done, client) = (Arc::clone(&longest), Arc::clone(&done), server.client());
        let key = key.clone();
        thread::spawn(move || {
            let mut con = client.get_connection().unwrap();
            // What the capacity bounds: entries not yet acknowledged, those
            // waiting (the group's lag) and those pending. Entries already
            // acknowledged may linger until their stream node is trimmed.
            while !done.load(Ordering::SeqCst) {
                longest.fetch_max(unacknowledged(&mut con, &key), Ordering::SeqCst);
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let seen = within(60, move || {
        let p = pipeline! {
            cluster = workers;
            numbers[redis, 3, batch 1] -> double * 2 -> doubled[redis];
        };
        let registered = Arc::new(Barrier::new(2));
        let feeders: Vec<_> = (0..2u64)
            .map(|k| {
                let (url, registered) = (url.clone(), Arc::clone(&registered));
                thread::spawn(move || {
                    let c = no_workers(Cluster::connect(&url, job).unwrap());
                    let mut g = Graph::new();
                    let q = g.redis_queue::<u64>("numbers", Capacity::Bounded(3), Some(1));
                    g.cluster(c);
                    let f = g.start(|c| c.source(q));
                    f.put(k * 1000);
                    registered.wait();
                    for i in 1..150 {
                        f.put(k * 1000 + i);
                    }
                    f.join().unwrap();
                })
            })
            .collect();
        let seen: Vec<u64> = p.doubled.iter().map(|m| m.data / 2).collect();
        for f in feeders {
            f.join().unwrap();
        }
        p.join().unwrap();
        seen
    });
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let want: Vec<u64> = (0..2u64)
        .flat_map(|k| (0..150).map(move |i| k * 1000 + i))
        .collect();
    assert_eq!(sorted(seen), want);
    let longest = longest.load(Ordering::SeqCst);
    assert!(
        longest <= 3 + 2,
        "the stream of capacity 3 held {longest} entries"
    );
}

// ---- cancel and timeouts ----

/// A worker waiting for room in a full Redis queue: `cancel` releases it
/// ("producers waiting on full queues are released").
#[test]
fn cancel_releases_a_worker_waiting_for_room_in_a_redis_queue() {
    let server = server!();
    let job = "cancel-full";
    let c = cluster(&server, job);
    let p = pipeline! {
        cluster = c;
        () -> endless -> numbers[redis];
    };
    // Nothing reads `numbers`: it fills up, and `endless` waits for room.
    let key = stream_key(job, "numbers");
    let deadline = Instant::now() + Duration::from_secs(10);
    while xlen(&server, &key) < 1024 {
        assert!(Instant::now() < deadline, "the queue never filled");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(100));
    p.cancel();
    let started = Instant::now();
    let running = thread::spawn(move || p.join().unwrap_err());
    let error = finished(running, 15, || {
        format!("`numbers` still holds {} entries", xlen(&server, &key))
    });
    assert!(error.is_cancelled(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `join_timeout` returns by its deadline even when a source's last block
/// cannot go into its full Redis queue.
#[test]
fn join_timeout_returns_on_time_when_a_redis_source_is_full() {
    let server = server!();
    // The worker runs elsewhere (nowhere): nothing makes room here.
    let c = no_workers(cluster(&server, "timeout-full"));
    let elapsed = within(15, move || {
        let mut p = pipeline! {
            cluster = c;
            numbers[redis, 3, batch 2] -> double -> doubled[redis];
        };
        // One at a time, each sent by the flusher: the third fills the queue.
        for i in 0..3u64 {
            p.numbers.put(i);
            thread::sleep(Duration::from_millis(30));
        }
        let started = Instant::now();
        let _ = p.join_timeout(Duration::from_millis(500));
        let elapsed = started.elapsed();
        p.cancel();
        std::mem::forget(p);
        elapsed
    });
    assert!(
        elapsed < Duration::from_secs(3),
        "join_timeout took {elapsed:?}"
    );
}

#[test]
fn cancel_stops_workers_waiting_on_a_redis_queue_promptly() {
    let server = server!();
    let c = cluster(&server, "cancel-idle");
    let error = within(30, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis] -> double * 2 -> doubled[redis];
        };
        for i in 0..10u64 {
            p.numbers.put(i);
        }
        p.numbers.flush();
        let seen: Vec<u64> = p.doubled.iter().take(10).map(|m| m.data / 2).collect();
        assert_eq!(sorted(seen), (0..10).collect::<Vec<_>>());
        // The workers now wait on `numbers`, which has not ended.
        p.cancel();
        let started = Instant::now();
        let error = p.join().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "join took {:?}",
            started.elapsed()
        );
        error
    });
    assert!(error.is_cancelled(), "{error}");
}

#[test]
fn join_timeout_reports_running_workers_then_join_completes() {
    let server = server!();
    let c = cluster(&server, "timeout-busy");
    let calls = Arc::new(AtomicUsize::new(0));
    within(30, move || {
        let mut p = pipeline! {
            cluster = c;
            numbers[redis, batch 1] -> slow(150, calls) -> slowed[redis];
        };
        for i in 0..10u64 {
            p.numbers.put(i);
        }
        let started = Instant::now();
        let timed_out = p.join_timeout(Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(timed_out.running, [("slow".to_owned(), 0)]);
        p.join_timeout(Duration::from_secs(20))
            .expect("finished in time")
            .expect("nothing lost");
        assert_eq!(
            sorted(p.slowed.iter().map(|m| m.data).collect()),
            (0..10).collect::<Vec<_>>()
        );
    });
}

// ---- the server ----

/// The server killed for longer than `give_up_after`: the caller's read
/// and `join` come back in bounded time, naming the server.
#[test]
fn the_server_gone_for_longer_than_give_up_after_fails_in_bounded_time() {
    let mut server = server!();
    let c = cluster(&server, "gone").give_up_after(Duration::from_secs(1));
    let p = pipeline! {
        cluster = c;
        numbers[redis] -> double -> doubled[redis];
    };
    p.numbers.put(1);
    assert_eq!(p.doubled.recv().map(|m| m.data), Some(2));
    server.kill();
    let (read, joined) = within(40, move || {
        let started = Instant::now();
        let read = panic::catch_unwind(AssertUnwindSafe(|| p.doubled.recv().map(|m| m.data)));
        let read = (read.map_err(|e| common_message(&e)), started.elapsed());
        let started = Instant::now();
        let joined = panic::catch_unwind(AssertUnwindSafe(|| p.join()));
        let joined = (
            joined
                .map_err(|e| common_message(&e))
                .map(|r| r.map_err(|e| e.to_string())),
            started.elapsed(),
        );
        (read, joined)
    });
    // The read cannot return a message: it fails, naming the server.
    let (read, took) = read;
    assert!(took < Duration::from_secs(15), "the read took {took:?}");
    assert!(
        matches!(&read, Err(m) if m.contains("Redis")),
        "the read: {read:?}"
    );
    let (joined, took) = joined;
    assert!(took < Duration::from_secs(15), "join took {took:?}");
    let Ok(Err(text)) = joined else {
        panic!("join must return the error: {joined:?}");
    };
    assert!(text.contains("lost the Redis server"), "{text}");
}

fn common_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

// ---- messages ----

/// Messages of several MiB each. (Each block of them takes seconds in a
/// debug build: `claim_after` and the lease are the defaults' order, so
/// that this tests the messages, not the timings.)
#[test]
fn huge_messages_cross_redis_intact() {
    let server = server!();
    let c = Cluster::connect(&server.url(), "huge")
        .unwrap()
        .claim_after(Duration::from_secs(60))
        .lease(Duration::from_secs(10));
    const SIZE: usize = 3 << 20;
    let weights = within(60, move || {
        let p = Arc::new(pipeline! {
            cluster = c;
            blobs[redis] -> weigh * 2 -> weights[redis];
        });
        let feeder = {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                p.blobs
                    .feed((0..8u64).map(|i| Msg::new(vec![(i % 251) as u8; SIZE]).order(i)));
            })
        };
        let mut weights: Vec<(u64, (u64, u64))> =
            p.weights.iter().map(|m| (m.order, m.data)).collect();
        feeder.join().unwrap();
        Arc::into_inner(p).unwrap().join().unwrap();
        weights.sort_unstable();
        weights
    });
    let want: Vec<(u64, (u64, u64))> = (0..8u64)
        .map(|i| (i, (SIZE as u64, SIZE as u64 * (i % 251))))
        .collect();
    assert_eq!(weights, want);
}

/// Many tiny messages, with two consumer instances, and messages of a
/// zero-sized type.
#[test]
fn many_tiny_messages_and_empty_ones_arrive_once() {
    let server = server!();
    let job = "tiny-many";
    let (a, b) = (cluster(&server, job), cluster(&server, job));
    let feeder = no_workers(cluster(&server, job));
    let reader = no_workers(cluster(&server, job));
    let n = 30_000u64;
    within(90, move || {
        let pa = pipeline! { cluster = a; numbers[redis] -> double * 2 -> doubled[redis]; };
        let pb = pipeline! { cluster = b; numbers[redis] -> double * 2 -> doubled[redis]; };
        let feeding = thread::spawn(move || {
            let f = redis_source::<u64>(feeder, "numbers", None);
            f.feed((0..n).map(|i| Msg::new(i % 7).order(i)));
            f.join().unwrap();
        });
        let sink = redis_sink::<u64>(reader, "doubled");
        let mut seen: Vec<(u64, u64)> = sink.iter().map(|m| (m.order, m.data)).collect();
        feeding.join().unwrap();
        pa.join().unwrap();
        pb.join().unwrap();
        sink.join().unwrap();
        seen.sort_unstable();
        let want: Vec<(u64, u64)> = (0..n).map(|i| (i, (i % 7) * 2)).collect();
        assert!(seen == want, "{} of {n} read, or some twice", seen.len());
    });
    let c = cluster(&server, "units");
    within(30, move || {
        let p = pipeline! { cluster = c; units[redis] -> count_units -> count[redis]; };
        p.units.feed(std::iter::repeat_n((), 1000));
        assert_eq!(p.count.iter().map(|m| m.data).collect::<Vec<_>>(), [1000]);
        p.join().unwrap();
    });
}

/// A worker whose input is of another type than the queue's refuses to
/// start, naming both types.
#[test]
fn a_worker_reading_another_type_refuses_to_start() {
    let server = server!();
    let first = cluster(&server, "types-worker");
    let second = cluster(&server, "types-worker");
    let p = pipeline! { cluster = first; numbers[redis] -> double -> doubled[redis]; };
    p.numbers.feed(0..3u64);
    assert_eq!(p.doubled.iter().count(), 3);
    p.join().unwrap();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        pipeline! { cluster = second; numbers[redis] -> shout -> doubled[redis]; }
    }));
    let payload = outcome.expect_err("a reader of another type fails to start");
    let message = common_message(&payload);
    assert!(
        message.contains("carries `u64`") && message.contains("String"),
        "{message}"
    );
}

/// A worker reading two Redis queues with `Inbox::merge`, two replicas.
#[test]
fn a_worker_merging_two_redis_queues_reads_each_message_once() {
    let server = server!();
    let c = cluster(&server, "merge");
    let seen = within(60, move || {
        let p = Arc::new(pipeline! {
            cluster = c;
            (numbers[redis], words[redis]) -> interleave * 2 -> mixed[redis];
        });
        let feeders = [
            {
                let p = Arc::clone(&p);
                thread::spawn(move || p.numbers.feed(0..500u64))
            },
            {
                let p = Arc::clone(&p);
                thread::spawn(move || p.words.feed((0..500).map(|i| i.to_string())))
            },
        ];
        let seen: Vec<String> = p.mixed.iter().map(|m| m.data).collect();
        for f in feeders {
            f.join().unwrap();
        }
        Arc::into_inner(p).unwrap().join().unwrap();
        seen
    });
    let mut want: Vec<String> = (0..500)
        .flat_map(|i| [format!("n{i}"), format!("w{i}")])
        .collect();
    want.sort();
    let mut seen = seen;
    seen.sort();
    assert_eq!(seen, want);
}

/// Redis in, local between, Redis out; and local in, Redis between, local
/// out.
#[test]
fn local_and_redis_queues_mix_in_either_order() {
    let server = server!();
    let c = cluster(&server, "mixed-a");
    let seen = within(60, move || {
        let p = Arc::new(pipeline! {
            cluster = c;
            numbers[redis] -> double * 2 -> middle -> triple * 2 -> out[redis];
        });
        let feeder = {
            let p = Arc::clone(&p);
            thread::spawn(move || p.numbers.feed(0..3000u64))
        };
        let seen: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        feeder.join().unwrap();
        Arc::into_inner(p).unwrap().join().unwrap();
        seen
    });
    assert_eq!(sorted(seen), (0..3000).map(|i| i * 6).collect::<Vec<_>>());
    let c = cluster(&server, "mixed-b");
    let seen = within(60, move || {
        let p = pipeline! {
            cluster = c;
            numbers -> double * 2 -> middle[redis] -> triple * 2 -> out;
        };
        p.numbers.feed(0..3000u64);
        let seen: Vec<u64> = p.out.iter().map(|m| m.data).collect();
        p.join().unwrap();
        seen
    });
    assert_eq!(sorted(seen), (0..3000).map(|i| i * 6).collect::<Vec<_>>());
}

/// `sortiter` in a printing instance, reading what two working instances
/// put, fed by a fourth.
#[test]
fn sortiter_across_instances_sees_every_order_in_turn() {
    let server = server!();
    let job = "sorted";
    let role = |here: &[&str]| cluster(&server, job).run_here(here.iter().copied());
    let (printer, w1, w2, feeder) = (
        role(&["check_order"]),
        role(&["collatz_step"]),
        role(&["collatz_step"]),
        role(&[]),
    );
    let n = 20_000u64;
    within(60, move || {
        macro_rules! graph {
            ($c:expr) => {
                pipeline! {
                    cluster = $c;
                    read_q[redis] -> collatz_step * 2 -> write_q[redis] -> check_order -> counted[redis];
                }
            };
        }
        let printing = graph!(printer);
        let (first, second) = (graph!(w1), graph!(w2));
        let feeding = graph!(feeder);
        // Each instance's handle has every end; each uses its own.
        let _unused = (&printing.read_q, &first.read_q, &first.counted);
        let _unused = (&second.read_q, &second.counted, &feeding.counted);
        feeding.read_q.feed((0..n).map(|i| Msg::new(i).order(i)));
        feeding.join().unwrap();
        assert_eq!(
            printing.counted.iter().map(|m| m.data).collect::<Vec<_>>(),
            [n]
        );
        first.join().unwrap();
        second.join().unwrap();
        printing.join().unwrap();
    });
}

/// The same in one process, fed past the reorder window (16 Ki orders): the
/// source waits for the printer's `sortiter` across two Redis queues.
#[test]
fn sortiter_in_one_process_bounds_a_source_across_redis_queues() {
    let server = server!();
    let c = cluster(&server, "sorted-window");
    let n = 40_000u64;
    let counted = within(90, move || {
        let p = pipeline! {
            cluster = c;
            read_q[redis] -> collatz_step * 2 -> write_q[redis] -> check_order -> counted;
        };
        p.read_q.feed((0..n).map(|i| Msg::new(i).order(i)));
        let counted: Vec<u64> = p.counted.iter().map(|m| m.data).collect();
        p.join().unwrap();
        counted
    });
    assert_eq!(counted, [n]);
}

// ---- jobs ----

#[test]
fn two_jobs_on_one_server_do_not_mix_and_remove_job_removes_only_its_own() {
    let server = server!();
    let (alpha, beta) = (cluster(&server, "alpha"), cluster(&server, "beta"));
    let remover = alpha.clone();
    within(60, move || {
        let a = Arc::new(
            pipeline! { cluster = alpha; numbers[redis] -> double * 2 -> doubled[redis]; },
        );
        let b =
            Arc::new(pipeline! { cluster = beta; numbers[redis] -> shout * 2 -> doubled[redis]; });
        let feeders = [
            {
                let a = Arc::clone(&a);
                thread::spawn(move || a.numbers.feed(0..2000u64))
            },
            {
                let b = Arc::clone(&b);
                thread::spawn(move || b.numbers.feed((0..2000).map(|i| format!("w{i}"))))
            },
        ];
        let reader = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.doubled.iter().map(|m| m.data).collect::<Vec<String>>())
        };
        let from_a: Vec<u64> = a.doubled.iter().map(|m| m.data).collect();
        let mut from_b = reader.join().unwrap();
        for f in feeders {
            f.join().unwrap();
        }
        Arc::into_inner(a).unwrap().join().unwrap();
        Arc::into_inner(b).unwrap().join().unwrap();
        assert_eq!(sorted(from_a), (0..2000).map(|i| i * 2).collect::<Vec<_>>());
        from_b.sort();
        let mut want: Vec<String> = (0..2000).map(|i| format!("W{i}")).collect();
        want.sort();
        assert_eq!(from_b, want);
    });
    assert!(!job_keys(&server, "alpha").is_empty());
    let beta_keys = job_keys(&server, "beta");
    remover.remove_job().unwrap();
    assert_eq!(job_keys(&server, "alpha"), BTreeSet::new());
    assert_eq!(job_keys(&server, "beta"), beta_keys);
}

/// A job named with a character that `KEYS` reads as a pattern.
#[test]
fn remove_job_of_a_job_whose_name_looks_like_a_pattern_removes_only_its_own_keys() {
    let server = server!();
    let (plain, bracketed) = (cluster(&server, "batch1"), cluster(&server, "batch[1]"));
    let remover = bracketed.clone();
    within(30, move || {
        for c in [plain, bracketed] {
            let p = redis_source::<u64>(c, "numbers", None);
            p.feed(0..3u64);
            p.join().unwrap();
        }
    });
    let plain_keys = job_keys(&server, "batch1");
    assert!(!plain_keys.is_empty() && !job_keys(&server, "batch[1]").is_empty());
    remover.remove_job().unwrap();
    assert_eq!(
        job_keys(&server, "batch1"),
        plain_keys,
        "another job's keys"
    );
    assert_eq!(
        job_keys(&server, "batch[1]"),
        BTreeSet::new(),
        "its own keys"
    );
}

// ---- processes ----

/// A role of the collatz example on the test's server.
fn role(server: &RedisServer, job: &str, args: &[&str]) -> Child {
    collatz_role(&server.url(), job, args, Stdio::null())
}

/// Waits for `child` until `deadline`; its exit code.
fn wait(child: &mut Child, deadline: Instant) -> Option<i32> {
    wait_until(child, deadline).code()
}

/// Collects a printer's lines as they come.
fn collect_lines(child: &mut Child) -> (Arc<Mutex<Vec<String>>>, thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let reader = {
        let lines = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        })
    };
    (lines, reader)
}

fn collatz_line(n: u64) -> String {
    let next = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
    format!("({n}, {next})")
}

/// The printing process killed halfway: a new printer takes over (what
/// the dead one held comes to it after `claim_after`), and between them
/// every result is printed.
#[test]
fn a_killed_printer_is_replaced_and_every_result_is_printed() {
    let server = server!();
    let job = "printer-killed";
    let n = 20_000u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = role(&server, job, &["print"]);
    let (first_lines, first_reader) = collect_lines(&mut first);
    let mut work = role(&server, job, &["work", "--replicas", "2"]);
    let mut feed = role(&server, job, &["feed", &n.to_string()]);
    while first_lines.lock().unwrap().len() < 2_000 {
        assert!(
            Instant::now() < deadline,
            "the first printer printed too little"
        );
        thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    first_reader.join().unwrap();
    let mut second = role(&server, job, &["print"]);
    let (second_lines, second_reader) = collect_lines(&mut second);
    assert_eq!(wait(&mut feed, deadline), Some(0), "feed");
    assert_eq!(wait(&mut work, deadline), Some(0), "work");
    assert_eq!(wait(&mut second, deadline), Some(0), "the second printer");
    second_reader.join().unwrap();
    let first_lines = first_lines.lock().unwrap().clone();
    let second_lines = second_lines.lock().unwrap().clone();
    for (i, line) in first_lines.iter().enumerate() {
        assert_eq!(*line, collatz_line(i as u64), "the first printer, line {i}");
    }
    let unique: HashSet<&String> = second_lines.iter().collect();
    assert_eq!(
        unique.len(),
        second_lines.len(),
        "the second printer printed twice"
    );
    let printed: HashSet<&String> = first_lines.iter().chain(&second_lines).collect();
    let missing: Vec<u64> = (0..n)
        .filter(|&i| !printed.contains(&collatz_line(i)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "never printed: {missing:?}..");
}
