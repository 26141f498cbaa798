//! Pipelines across processes: queues on Redis Streams, each test against
//! a redis-server of its own. Without redis-server on PATH the tests skip
//! (one line on stderr) unless EZQ_REQUIRE_REDIS is set.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::process::{child_test, collatz_role, wait_until};
use common::redis::RedisServer;
use common::within;
use ezq::cluster::Cluster;
use ezq::{DropReason, Graph, Inbox, Msg, Outbox, pipeline, worker};

/// A server for this test, or a skip.
macro_rules! server {
    () => {
        match RedisServer::start() {
            Some(server) => server,
            None => return,
        }
    };
}

/// A cluster on `server` for `job`, with quick recovery so that tests of
/// failures finish in seconds.
fn cluster(server: &RedisServer, job: &str) -> Cluster {
    Cluster::connect(&server.url(), job)
        .expect("the test's server answers")
        .claim_after(Duration::from_millis(800))
        .lease(Duration::from_millis(900))
}

#[worker]
fn double(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        out.put_msg(msg.map(|x| x * 2));
    }
}

#[test]
fn a_pipeline_on_redis_queues_delivers_every_message_once() {
    let server = server!();
    let c = cluster(&server, "once");
    within(60, move || {
        let p = Arc::new(pipeline! {
            cluster = c;
            numbers[redis] -> double * 3 -> doubled[redis];
        });
        let feeder = {
            let p = Arc::clone(&p);
            thread::spawn(move || p.numbers.feed((0..10_000u64).map(|i| Msg::new(i).order(i))))
        };
        let mut seen: Vec<u64> = p.doubled.iter().map(|m| m.data).collect();
        feeder.join().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..10_000u64).map(|i| i * 2).collect::<Vec<_>>());
        Arc::into_inner(p).unwrap().join().expect("nothing lost");
    });
}

#[test]
fn kind_and_order_travel_with_each_message() {
    let server = server!();
    let c = cluster(&server, "kinds");
    within(30, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis, batch 7] -> double -> doubled[redis];
        };
        p.numbers.feed((0..20u64).map(|i| {
            let kind = if i % 2 == 0 {
                "EVEN"
            } else {
                "a-rather-long-kind"
            };
            Msg::new(i).kind(kind).order(100 + i)
        }));
        let mut got: Vec<(u64, String, u64)> = p
            .doubled
            .iter()
            .map(|m| (m.data, m.kind.as_str().to_owned(), m.order))
            .collect();
        got.sort();
        let want: Vec<_> = (0..20u64)
            .map(|i| {
                let kind = if i % 2 == 0 {
                    "EVEN"
                } else {
                    "a-rather-long-kind"
                };
                (i * 2, kind.to_owned(), 100 + i)
            })
            .collect();
        assert_eq!(got, want);
        p.join().unwrap();
    });
}

/// Microseconds since the epoch: a clock that processes share.
fn unix_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// One feeder of `end_waits_for_every_producer`, run by it as a child
/// process (this test binary, with `EZQ_TEST_FEEDER` set to `URL JOB K
/// PER`): it registers with its first put, waits for the go, feeds
/// `K * PER .. (K + 1) * PER`, ends, and prints when its END went.
#[test]
#[ignore = "a child process of the end_with_*_producers tests"]
fn feeder_process() {
    let Ok(spec) = std::env::var("EZQ_TEST_FEEDER") else {
        return;
    };
    let words: Vec<&str> = spec.split(' ').collect();
    let [url, job, k, per] = words.as_slice() else {
        panic!("EZQ_TEST_FEEDER={spec:?}")
    };
    let (k, per): (u64, u64) = (k.parse().unwrap(), per.parse().unwrap());
    // Only feeds: runs none of the workers.
    let c = Cluster::connect(url, job)
        .unwrap()
        .run_here(Vec::<String>::new());
    let p = pipeline! {
        cluster = c;
        numbers[redis] -> double -> doubled[redis];
    };
    p.numbers.put(k * per);
    let mut admin = redis::Client::open(*url).unwrap().get_connection().unwrap();
    let go = format!("ezq-test:{job}:go");
    while !redis::cmd("EXISTS")
        .arg(&go)
        .query::<bool>(&mut admin)
        .unwrap()
    {
        thread::sleep(Duration::from_millis(5));
    }
    // The feeders end one after the other, slowly.
    thread::sleep(Duration::from_millis(200 * k));
    p.numbers.feed((1..per).map(|i| k * per + i));
    p.numbers.end();
    println!("ended at {}", unix_micros());
    p.join().unwrap();
}

/// `producers` feeder processes each feed a part of one queue; its reader
/// ends only after the last of them ended, having read every message.
fn end_waits_for_every_producer(producers: usize) {
    let server = server!();
    let url = server.url();
    let job = format!("producers-{producers}");
    let reader = cluster(&server, &job);
    let per = 3_000u64;
    let mut admin = server.client().get_connection().unwrap();
    within(60, move || {
        let feeders: Vec<Child> = (0..producers)
            .map(|k| {
                child_test(
                    "feeder_process",
                    "EZQ_TEST_FEEDER",
                    &format!("{url} {job} {k} {per}"),
                )
                .stdout(Stdio::piped())
                .spawn()
                .expect("the feeder starts")
            })
            .collect();
        let p = pipeline! {
            cluster = reader;
            numbers[redis] -> double * 2 -> doubled;
        };
        // Every feeder registered before the first may end.
        let producers_key = format!("ezq:{{{job}}}:q:numbers:producers");
        while redis::cmd("ZCARD")
            .arg(&producers_key)
            .query::<usize>(&mut admin)
            .unwrap()
            < producers
        {
            thread::sleep(Duration::from_millis(5));
        }
        redis::cmd("SET")
            .arg(format!("ezq-test:{job}:go"))
            .arg(1)
            .query::<()>(&mut admin)
            .unwrap();
        let mut seen: Vec<u64> = p.doubled.iter().map(|m| m.data / 2).collect();
        let reader_ended = unix_micros();
        for feeder in feeders {
            let output = feeder.wait_with_output().unwrap();
            assert!(output.status.success(), "a feeder failed");
            let text = String::from_utf8_lossy(&output.stdout);
            let ended: u128 = text
                .lines()
                .find_map(|l| l.strip_prefix("ended at "))
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or_else(|| panic!("the feeder said when it ended: {text}"));
            assert!(
                reader_ended >= ended,
                "the queue ended before one of its producers did"
            );
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..per * producers as u64).collect::<Vec<_>>());
        p.join().unwrap();
    });
}

#[test]
fn end_with_one_producer() {
    end_waits_for_every_producer(1);
}

#[test]
fn end_with_two_producers() {
    end_waits_for_every_producer(2);
}

#[test]
fn end_with_four_producers() {
    end_waits_for_every_producer(4);
}

#[worker]
fn fragile(inbox: Inbox<u64>, out: Outbox<u64>) {
    for msg in inbox {
        assert!(msg.data != 13, "13 is unlucky");
        out.put_msg(msg);
    }
}

#[test]
fn a_message_that_keeps_failing_goes_to_the_dead_letters() {
    let server = server!();
    let c = cluster(&server, "poison").max_failures(2);
    let dead = c.clone();
    within(60, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis, batch 8] -> fragile * 3 -> survivors[redis];
        };
        p.numbers.feed((0..100u64).map(|i| Msg::new(i).order(i)));
        let mut seen: Vec<u64> = p.survivors.iter().map(|m| m.data).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).filter(|&i| i != 13).collect::<Vec<_>>());
        let error = p.join().unwrap_err();
        assert_eq!(error.failures().len(), 2, "{error}");
        assert!(
            error
                .failures()
                .iter()
                .all(|f| f.to_string().contains("13 is unlucky"))
        );
        let drops = error.drops();
        assert_eq!(drops.len(), 1, "{error}");
        assert_eq!((drops[0].queue.as_str(), drops[0].count), ("numbers", 1));
        assert_eq!(drops[0].reason, DropReason::DeadLettered);
        let letters = dead.dead_letters().unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (
                letters[0].queue.as_str(),
                letters[0].order,
                letters[0].failures
            ),
            ("numbers", 13, 2)
        );
        assert!(
            letters[0].error.contains("13 is unlucky"),
            "{:?}",
            letters[0]
        );
    });
}

#[test]
fn a_reader_of_another_type_refuses_to_start() {
    let server = server!();
    let first = cluster(&server, "types");
    let second = cluster(&server, "types");
    let mut g = Graph::new();
    let q = g.redis_queue::<u64>("numbers", ezq::graph::Capacity::Default, None);
    g.cluster(first);
    let p = g.start(|c| c.source(q));
    p.put(1);
    p.end();
    p.join().unwrap();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut g = Graph::new();
        let q = g.redis_queue::<String>("numbers", ezq::graph::Capacity::Default, None);
        g.cluster(second);
        g.start(|c| c.sink(q))
    }));
    let Err(payload) = outcome else {
        panic!("starting with another type fails")
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("carries `u64`") && message.contains("String"),
        "{message}"
    );
}

#[test]
fn a_wrong_url_is_a_clear_error_without_a_hang() {
    let started = Instant::now();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = Cluster::connect(&format!("redis://127.0.0.1:{closed_port}/"), "job").unwrap_err();
    assert!(error.to_string().contains("cannot reach Redis"), "{error}");
    let error = Cluster::connect("not a url", "job").unwrap_err();
    assert!(error.to_string().contains("bad Redis URL"), "{error}");
    let error = Cluster::connect("redis://127.0.0.1:1/", "a{b}").unwrap_err();
    assert!(error.to_string().contains("free of braces"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_local_queue_between_here_and_elsewhere_is_an_error_at_start() {
    let server = server!();
    let c = cluster(&server, "placement").run_here(["double"]);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        pipeline! {
            cluster = c;
            numbers[redis] -> double -> middle -> fragile -> out[redis];
        }
    }));
    let Err(payload) = outcome else {
        panic!("a local queue across processes fails")
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("`middle`") && message.contains("middle[redis]"),
        "{message}"
    );
}

#[test]
fn the_server_going_away_fails_the_workers_in_bounded_time() {
    let mut server = server!();
    let c = cluster(&server, "gone").give_up_after(Duration::from_secs(1));
    let p = pipeline! {
        cluster = c;
        numbers[redis] -> double -> doubled[redis];
    };
    p.numbers.put(1);
    assert_eq!(p.doubled.recv().map(|m| m.data), Some(2));
    server.kill();
    let error = within(30, move || p.join().unwrap_err());
    let text = error.to_string();
    assert!(text.contains("lost the Redis server"), "{text}");
}

#[test]
fn a_pipeline_survives_a_restart_of_the_server() {
    let mut server = server!();
    let mut admin = server.client().get_connection().unwrap();
    // Every acknowledged write is on disk before the reply: a kill loses none.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("always")
        .query::<()>(&mut admin)
        .unwrap();
    // The lease outlasts the outage: a producer silent for longer would
    // (rightly) be counted as gone.
    let c = cluster(&server, "restart")
        .lease(Duration::from_secs(5))
        .give_up_after(Duration::from_secs(20));
    let p = Arc::new(pipeline! {
        cluster = c;
        numbers[redis] -> double * 2 -> doubled[redis];
    });
    let feeder = {
        let p = Arc::clone(&p);
        thread::spawn(move || p.numbers.feed(0..20_000u64))
    };
    let reader = {
        let p = Arc::clone(&p);
        thread::spawn(move || p.doubled.iter().map(|m| m.data).collect::<Vec<u64>>())
    };
    thread::sleep(Duration::from_millis(300));
    server.kill();
    thread::sleep(Duration::from_millis(700));
    server.restart();
    within(60, move || {
        feeder.join().unwrap();
        let mut seen = reader.join().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..20_000u64).map(|i| i * 2).collect::<Vec<_>>());
        Arc::into_inner(p).expect("the last handle").join().unwrap();
    });
}

// ---- the collatz example as separate processes ----

/// A role of the collatz example on the test's server.
fn role(server: &RedisServer, job: &str, args: &[&str]) -> Child {
    collatz_role(&server.url(), job, args, Stdio::piped())
}

/// Waits for `child`, at most until `deadline`; its exit code and stderr.
fn wait(child: &mut Child, deadline: Instant) -> (Option<i32>, String) {
    let status = wait_until(child, deadline);
    let mut err = String::new();
    child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    (status.code(), err)
}

/// How many messages of the numbers queue the consumers of process `pid`
/// hold unacknowledged.
fn held_by(server: &RedisServer, job: &str, pid: u32) -> i64 {
    let mut c = server.client().get_connection().unwrap();
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(format!("ezq:{{{job}}}:q:read_q"))
        .arg("readers")
        .query(&mut c)
        .unwrap_or(redis::Value::Nil);
    let redis::Value::Array(parts) = reply else {
        return 0;
    };
    let Some(redis::Value::Array(consumers)) = parts.get(3) else {
        return 0;
    };
    let tag = format!("-{pid}-");
    consumers
        .iter()
        .filter_map(|c| match c {
            redis::Value::Array(pair) => match pair.as_slice() {
                [redis::Value::BulkString(name), redis::Value::BulkString(n)] => {
                    let name = String::from_utf8_lossy(name);
                    name.contains(&tag)
                        .then(|| String::from_utf8_lossy(n).parse().unwrap_or(0))
                }
                _ => None,
            },
            _ => None,
        })
        .sum()
}

fn collatz_line(n: u64) -> String {
    let next = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
    format!("({n}, {next})")
}

/// One print, three work, one feed of `n`; one work process is killed with
/// SIGKILL while it holds messages, `kill_after` into the feed. Print must
/// print every line once, in order, and every survivor exit 0.
fn cluster_run_with_a_kill(n: u64, kill_after: Duration) {
    let server = server!();
    let job = format!("collatz-{n}-{}", kill_after.as_millis());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut print = role(&server, &job, &["print"]);
    let mut stdout = print.stdout.take().unwrap();
    let printed = thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let mut workers: Vec<Child> = (0..3)
        .map(|_| role(&server, &job, &["work", "--replicas", "2"]))
        .collect();
    let mut feed = role(&server, &job, &["feed", &n.to_string()]);
    thread::sleep(kill_after);
    // The victim is the first worker found holding messages.
    let victim = loop {
        if let Some(i) = (0..workers.len()).find(|&i| held_by(&server, &job, workers[i].id()) > 0) {
            break i;
        }
        assert!(Instant::now() < deadline, "no worker ever held a message");
        thread::sleep(Duration::from_millis(2));
    };
    let mut victim = workers.remove(victim);
    victim.kill().unwrap();
    victim.wait().unwrap();
    let (code, err) = wait(&mut feed, deadline);
    assert_eq!(code, Some(0), "feed failed: {err}");
    for w in &mut workers {
        let (code, err) = wait(w, deadline);
        assert_eq!(code, Some(0), "a surviving work process failed: {err}");
    }
    let (code, err) = wait(&mut print, deadline);
    assert_eq!(code, Some(0), "print failed: {err}");
    let text = printed.join().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, n, "every result printed once");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, collatz_line(i as u64), "line {i}");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn collatz_across_processes_survives_a_killed_worker() {
    cluster_run_with_a_kill(200_000, Duration::from_millis(1500));
}

#[test]
fn killing_a_worker_at_any_point_loses_and_duplicates_nothing() {
    // Kill times across the run, from the first blocks to the last.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    eprintln!("kill-time seed: {seed}");
    let mut x = u64::from(seed) | 1;
    for _ in 0..3 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cluster_run_with_a_kill(20_000, Duration::from_millis(50 + x % 900));
    }
}

#[test]
fn a_producer_killed_before_its_end_stops_holding_the_queue_open() {
    let server = server!();
    let job = "feeder-killed";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut print = role(&server, job, &["print"]);
    let mut stdout = print.stdout.take().unwrap();
    let printed = thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let mut work = role(&server, job, &["work", "--replicas", "2"]);
    let mut feed = role(&server, job, &["feed", "100000000"]);
    thread::sleep(Duration::from_millis(1500));
    feed.kill().unwrap();
    feed.wait().unwrap();
    let (code, err) = wait(&mut work, deadline);
    assert_eq!(code, Some(0), "work failed: {err}");
    let (code, err) = wait(&mut print, deadline);
    assert_eq!(code, Some(0), "print failed: {err}");
    let text = printed.join().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "the feeder put something before it died");
    let unique: HashSet<&str> = lines.iter().copied().collect();
    assert_eq!(unique.len(), lines.len(), "nothing printed twice");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, collatz_line(i as u64), "line {i}");
    }
}

#[test]
fn acknowledged_entries_are_trimmed_and_a_finished_job_can_be_removed() {
    let server = server!();
    let c = cluster(&server, "trim");
    let handle = c.clone();
    within(60, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis] -> double * 2 -> doubled;
        };
        p.numbers.feed(0..5_000u64);
        assert_eq!(p.doubled.iter().count(), 5_000);
        p.join().unwrap();
    });
    let mut admin = server.client().get_connection().unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg("ezq:{trim}:q:numbers")
        .query(&mut admin)
        .unwrap();
    // Trimming removes whole nodes of the stream (of 100 entries, Redis's
    // default), never one holding an entry not yet acknowledged: what is
    // left is the node of the last entry delivered.
    assert!(
        len <= 100,
        "{len} of 5000 entries left after every one was acknowledged"
    );
    handle.remove_job().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("ezq:{trim}:*")
        .query(&mut admin)
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn the_caller_may_read_a_sink_and_then_feed_a_source() {
    let server = server!();
    let c = cluster(&server, "request-reply");
    within(30, move || {
        let p = pipeline! {
            cluster = c;
            numbers[redis] -> double -> doubled[redis];
        };
        // One request, its reply, then the next request: each put is
        // written at once, even while a reply is in the caller's hand.
        for i in 0..20u64 {
            p.numbers.put(i);
            assert_eq!(p.doubled.recv().map(|m| m.data), Some(i * 2));
        }
        p.numbers.end();
        assert!(p.doubled.recv().is_none());
        p.join().unwrap();
    });
}
