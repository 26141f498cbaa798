//! [`Cluster`]: where a job's Redis-backed queues live (the server, the
//! job's key namespace), which of the graph's workers run in this process,
//! and the timings of recovery. Also what every process shares with the
//! server: connections that come back after the server does, and the
//! leases by which a producer says it is alive.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use redis::{Connection, RedisError};

use super::scripts;
use crate::sync::lock;

/// How long a connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The socket read timeout: above the longest blocking read (`BLOCK`).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a job's Redis-backed queues live, and what this process runs.
///
/// A pipeline whose queues are marked `[redis]` (or made with
/// [`Graph::redis_queue`](crate::Graph::redis_queue)) keeps them on a
/// Redis server, as streams under the key prefix `ezq:{JOB}:`, so that the
/// same graph can run as several processes on several machines: each runs
/// the workers it is told to ([`run_here`](Cluster::run_here)), and the
/// Redis-backed queues join them.
///
/// ```no_run
/// use ezq::cluster::Cluster;
///
/// // EZQ_REDIS_URL=redis://10.0.0.5:6379/ EZQ_JOB=nightly EZQ_WORKERS=collatz
/// let cluster = Cluster::from_env("collatz").expect("a Redis server");
/// // or: Cluster::connect("redis://127.0.0.1:6379/", "nightly")?.run_here(["collatz"])
/// # Ok::<(), ezq::cluster::ClusterError>(())
/// ```
///
/// The settings that decide how fast a failure is recovered from:
/// [`claim_after`](Cluster::claim_after) (a message held this long by a
/// consumer that does not acknowledge it goes to another),
/// [`lease`](Cluster::lease) (a producer silent this long no longer holds
/// its queues open) and [`max_failures`](Cluster::max_failures) (a message
/// on which workers failed this often goes to the dead-letter stream).
#[derive(Clone)]
pub struct Cluster {
    pub(crate) shared: Arc<Shared>,
}

/// Why a cluster could not be reached or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterError {
    message: String,
}

impl ClusterError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ClusterError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClusterError {}

/// A message that workers failed on [`max_failures`](Cluster::max_failures)
/// times, set aside in the job's dead-letter stream with its last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The queue it was taken from.
    pub queue: String,
    /// The last failure's message.
    pub error: String,
    /// How many times a worker failed on it.
    pub failures: u64,
    /// Its kind.
    pub kind: String,
    /// Its order.
    pub order: u64,
    /// Its data, as the queue encoded it.
    pub data: Vec<u8>,
}

/// What the ends of one process's Redis-backed queues share.
pub(crate) struct Shared {
    client: redis::Client,
    /// The server's address, as given, for messages.
    pub(crate) url: String,
    pub(crate) job: String,
    /// This cluster handle's name among the job's producers and consumers:
    /// unique per handle, so clones given other settings never share one.
    pub(crate) instance: String,
    /// The workers that run here; `None`: all of them.
    pub(crate) here: Option<HashSet<String>>,
    pub(crate) claim_after: Duration,
    pub(crate) lease: Duration,
    pub(crate) max_failures: u64,
    /// How long an operation retries while the server is unreachable.
    pub(crate) give_up: Duration,
    /// The producer leases this process keeps alive: (producer set,
    /// producer).
    leases: Mutex<Vec<(String, String)>>,
    heartbeat_started: AtomicBool,
    /// Set when an operation gave up on the server: later ones fail at
    /// once instead of each waiting out [`give_up`](Shared::give_up).
    lost: AtomicBool,
    /// Set when a lease could not be renewed in time: this process may no
    /// longer count as a producer, and must not write as one.
    pub(crate) lease_lost: AtomicBool,
}

/// Numbers that make names unique within this process: of cluster
/// handles, of consumers (reading threads), of producers (a queue's ends in
/// one pipeline).
static INSTANCES: AtomicU64 = AtomicU64::new(0);
static CONSUMERS: AtomicU64 = AtomicU64::new(0);
static PRODUCERS: AtomicU64 = AtomicU64::new(0);

/// A name no other cluster handle, here or in another process, has.
fn new_instance() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
    format!(
        "{host}-{}-{:x}-{}",
        std::process::id(),
        since_epoch.as_nanos() & 0xffff_ffff,
        INSTANCES.fetch_add(1, Ordering::Relaxed)
    )
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.shared.url)
            .field("job", &self.shared.job)
            .field("instance", &self.shared.instance)
            .field("here", &self.shared.here)
            .finish()
    }
}

fn env_ms(name: &str) -> Result<Option<Duration>, ClusterError> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| {
                ClusterError::new(format!(
                    "ezq: {name}={text:?} is not a number of milliseconds"
                ))
            }),
        Err(_) => Ok(None),
    }
}

impl Cluster {
    /// Connects as the environment says: the server from `EZQ_REDIS_URL`
    /// (required), the job from `EZQ_JOB` (else `default_job`), the workers
    /// to run here from `EZQ_WORKERS` (comma-separated names; unset: all),
    /// and, if set, `EZQ_CLAIM_AFTER_MS`, `EZQ_LEASE_MS` and
    /// `EZQ_MAX_FAILURES`.
    ///
    /// # Errors
    /// If `EZQ_REDIS_URL` is unset or malformed, a setting is not a number,
    /// or the server does not answer within 2 seconds.
    pub fn from_env(default_job: &str) -> Result<Cluster, ClusterError> {
        let url = std::env::var("EZQ_REDIS_URL").map_err(|_| {
            ClusterError::new(
                "ezq: EZQ_REDIS_URL is not set: give the Redis server of the job's queues, e.g. EZQ_REDIS_URL=redis://127.0.0.1:6379/",
            )
        })?;
        let job = std::env::var("EZQ_JOB").unwrap_or_else(|_| default_job.to_owned());
        let mut cluster = Cluster::connect(&url, &job)?;
        if let Ok(names) = std::env::var("EZQ_WORKERS") {
            cluster = cluster.run_here(names.split(',').map(str::trim).filter(|n| !n.is_empty()));
        }
        if let Some(d) = env_ms("EZQ_CLAIM_AFTER_MS")? {
            cluster = cluster.claim_after(d);
        }
        if let Some(d) = env_ms("EZQ_LEASE_MS")? {
            cluster = cluster.lease(d);
        }
        if let Ok(text) = std::env::var("EZQ_MAX_FAILURES") {
            let n = text.trim().parse().map_err(|_| {
                ClusterError::new(format!("ezq: EZQ_MAX_FAILURES={text:?} is not a number"))
            })?;
            cluster = cluster.max_failures(n);
        }
        Ok(cluster)
    }

    /// Connects to the Redis server at `url` (`redis://host:port/`,
    /// `redis+unix:///path`) for the job `job`: two jobs on one server
    /// never share a key.
    ///
    /// # Errors
    /// If the URL is malformed or the server does not answer within 2
    /// seconds.
    pub fn connect(url: &str, job: &str) -> Result<Cluster, ClusterError> {
        if job.is_empty() || job.contains(['{', '}']) {
            return Err(ClusterError::new(format!(
                "ezq: the job name {job:?} must be non-empty and free of braces"
            )));
        }
        let client = redis::Client::open(url)
            .map_err(|e| ClusterError::new(format!("ezq: bad Redis URL {url:?}: {e}")))?;
        let mut conn = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| ClusterError::new(format!("ezq: cannot reach Redis at {url}: {e}")))?;
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map_err(|e| ClusterError::new(format!("ezq: Redis at {url} did not answer: {e}")))?;
        let instance = new_instance();
        Ok(Cluster {
            shared: Arc::new(Shared {
                client,
                url: url.to_owned(),
                job: job.to_owned(),
                instance,
                here: None,
                claim_after: Duration::from_secs(10),
                lease: Duration::from_secs(10),
                max_failures: 3,
                give_up: Duration::from_secs(30),
                leases: Mutex::new(Vec::new()),
                heartbeat_started: AtomicBool::new(false),
                lost: AtomicBool::new(false),
                lease_lost: AtomicBool::new(false),
            }),
        })
    }

    /// A handle with changed settings, and a name of its own: pipelines
    /// started from the original and from the copy are distinct producers
    /// and consumers.
    fn with(self, change: impl FnOnce(&mut Shared)) -> Self {
        let shared = &self.shared;
        let mut copy = Shared {
            client: shared.client.clone(),
            url: shared.url.clone(),
            job: shared.job.clone(),
            instance: new_instance(),
            here: shared.here.clone(),
            claim_after: shared.claim_after,
            lease: shared.lease,
            max_failures: shared.max_failures,
            give_up: shared.give_up,
            leases: Mutex::new(Vec::new()),
            heartbeat_started: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            lease_lost: AtomicBool::new(false),
        };
        change(&mut copy);
        Cluster {
            shared: Arc::new(copy),
        }
    }

    /// Runs only the named workers in this process; the others run
    /// elsewhere. A queue between a worker here and one elsewhere must be
    /// Redis-backed: starting the pipeline says so otherwise.
    pub fn run_here<I, S>(self, workers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let here = workers.into_iter().map(Into::into).collect();
        self.with(|s| s.here = Some(here))
    }

    /// How long a consumer may hold a message without acknowledging it
    /// before another consumer takes it over (10 s unless set). It must
    /// exceed the longest time a worker spends on a block of messages;
    /// if not, a slow consumer's messages are processed twice, and its own
    /// results for them are dropped, so nothing is duplicated downstream.
    pub fn claim_after(self, idle: Duration) -> Self {
        self.with(|s| s.claim_after = idle.max(Duration::from_millis(10)))
    }

    /// How long a producer stays registered without renewing its lease
    /// (10 s unless set; renewed every third of it). A producer that dies
    /// without its END stops holding its queues open this long after.
    pub fn lease(self, lease: Duration) -> Self {
        self.with(|s| s.lease = lease.max(Duration::from_millis(30)))
    }

    /// How many times workers may fail (panic or return `Err`) on one
    /// message before it goes to the dead-letter stream (3 unless set).
    pub fn max_failures(self, failures: u64) -> Self {
        self.with(|s| s.max_failures = failures.max(1))
    }

    /// How long an operation waits for an unreachable server before its
    /// worker fails (30 s unless set).
    pub fn give_up_after(self, wait: Duration) -> Self {
        self.with(|s| s.give_up = wait)
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.shared.job
    }

    /// Whether the worker `name` runs in this process.
    pub fn runs_here(&self, name: &str) -> bool {
        self.shared.runs_here(name)
    }

    /// The messages set aside in the job's dead-letter stream.
    ///
    /// # Errors
    /// If the server cannot be reached.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, ClusterError> {
        let mut conn = self.shared.connect().map_err(|e| self.shared.error(&e))?;
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(self.shared.dead_key())
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .map_err(|e| self.shared.error(&e))?;
        Ok(super::range_reply(&reply)
            .into_iter()
            .map(|(_, fields)| {
                let text = |name: &str| {
                    String::from_utf8_lossy(super::field(&fields, name).unwrap_or_default())
                        .into_owned()
                };
                DeadLetter {
                    queue: text("queue"),
                    error: text("error"),
                    failures: text("failures").parse().unwrap_or(0),
                    kind: text("k"),
                    order: text("o").parse().unwrap_or(0),
                    data: super::field(&fields, "d").unwrap_or_default().to_vec(),
                }
            })
            .collect())
    }

    /// Removes every key of the job from the server: its queues, their
    /// producers, the dead letters. For when the job is done (or to start
    /// it afresh); processes still running it would see their queues gone.
    ///
    /// # Errors
    /// If the server cannot be reached.
    pub fn remove_job(&self) -> Result<(), ClusterError> {
        let mut conn = self.shared.connect().map_err(|e| self.shared.error(&e))?;
        // The job's name may hold glob characters: escaped, it matches
        // only itself.
        let job: String = (self.shared.job.chars())
            .flat_map(|c| match c {
                '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("ezq:{{{job}}}:*");
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .map_err(|e| self.shared.error(&e))?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(keys)
                    .query::<()>(&mut conn)
                    .map_err(|e| self.shared.error(&e))?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(())
    }
}

impl Shared {
    pub(crate) fn runs_here(&self, name: &str) -> bool {
        self.here.as_ref().is_none_or(|h| h.contains(name))
    }

    /// The prefix of every key of a queue of this job.
    pub(crate) fn queue_key(&self, queue: &str) -> String {
        format!("ezq:{{{}}}:q:{queue}", self.job)
    }

    pub(crate) fn dead_key(&self) -> String {
        format!("ezq:{{{}}}:dead", self.job)
    }

    pub(crate) fn seq_key(&self) -> String {
        format!("ezq:{{{}}}:seq", self.job)
    }

    /// A consumer name for one reading thread of this process.
    pub(crate) fn consumer_name(&self) -> String {
        let n = CONSUMERS.fetch_add(1, Ordering::Relaxed);
        format!("{}-c{n}", self.instance)
    }

    /// A producer name for one queue's ends in one pipeline.
    pub(crate) fn producer_name(&self) -> String {
        let n = PRODUCERS.fetch_add(1, Ordering::Relaxed);
        format!("{}-p{n}", self.instance)
    }

    pub(crate) fn error(&self, e: &RedisError) -> ClusterError {
        ClusterError::new(format!("ezq: Redis at {}: {e}", self.url))
    }

    /// A new connection, with timeouts that outlast the blocking reads.
    pub(crate) fn connect(&self) -> Result<Connection, RedisError> {
        let conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(READ_TIMEOUT))?;
        conn.set_write_timeout(Some(READ_TIMEOUT))?;
        Ok(conn)
    }

    /// Runs `op` on `conn`, reconnecting while the server is unreachable
    /// (a restart, a network blip) for up to [`give_up`](Shared::give_up);
    /// then, or on an error that a retry cannot mend, panics with a message
    /// that names the server: the worker fails and `join` reports it.
    ///
    /// Every operation passed here may run twice (the first attempt may
    /// have been carried out before its reply was lost): each is a read or
    /// an idempotent write.
    pub(crate) fn retry<R>(
        &self,
        conn: &mut Option<Connection>,
        what: &str,
        op: impl FnMut(&mut Connection) -> Result<R, RedisError>,
    ) -> R {
        self.attempt(conn, what, op)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`retry`](Shared::retry), with the error returned.
    pub(crate) fn attempt<R>(
        &self,
        conn: &mut Option<Connection>,
        what: &str,
        mut op: impl FnMut(&mut Connection) -> Result<R, RedisError>,
    ) -> Result<R, ClusterError> {
        let mut first_failure: Option<Instant> = None;
        let mut pause = Duration::from_millis(20);
        loop {
            let outcome = match conn {
                Some(c) => op(c),
                None => self.connect().and_then(|mut c| {
                    let value = op(&mut c);
                    *conn = Some(c);
                    value
                }),
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !retriable(&error) {
                return Err(ClusterError::new(format!(
                    "ezq: Redis at {} refused to {what}: {error}",
                    self.url
                )));
            }
            *conn = None;
            let since = *first_failure.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.give_up || self.lost.load(Ordering::Acquire) {
                self.lost.store(true, Ordering::Release);
                return Err(ClusterError::new(format!(
                    "ezq: lost the Redis server at {} (could not {what} for {:.0?}): {error}",
                    self.url, self.give_up
                )));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Registers `producer` as a producer of a queue (its producer set is
    /// `producers`), with a lease renewed until it ends the queue.
    ///
    /// # Panics
    /// If the queue has already ended for its readers (an earlier run of
    /// the job finished it): what this producer put would reach nobody.
    pub(crate) fn register(
        self: &Arc<Self>,
        conn: &mut Option<Connection>,
        queue: &str,
        producers: &str,
        over: &str,
        producer: &str,
    ) {
        let lease = self.lease.as_millis() as u64;
        let registered: i64 = self.retry(conn, "register a producer", |c| {
            scripts::REGISTER
                .key(producers)
                .key(over)
                .arg(producer)
                .arg(lease)
                .invoke(c)
        });
        assert!(
            registered == 1,
            "ezq: the Redis queue `{queue}` of job `{}` has already ended: a run of this job finished it, \
             so what is put now would reach no reader. Remove the job's keys (Cluster::remove_job) or \
             give this run another job name (EZQ_JOB)",
            self.job
        );
        lock(&self.leases).push((producers.to_owned(), producer.to_owned()));
        if !self.heartbeat_started.swap(true, Ordering::AcqRel) {
            let weak = Arc::downgrade(self);
            thread::Builder::new()
                .name("ezq-lease".into())
                .spawn(move || heartbeat(&weak))
                .expect("ezq: the operating system refused to start a thread");
        }
    }

    /// Ends `producer`'s part of a queue: readers stop counting it. If the
    /// server cannot be reached, the lease is no longer renewed, so the
    /// readers stop counting it when the lease runs out.
    pub(crate) fn end(
        &self,
        conn: &mut Option<Connection>,
        producers: &str,
        ended: &str,
        producer: &str,
    ) {
        lock(&self.leases).retain(|(k, p)| k != producers || p != producer);
        let _ = self.attempt(conn, "end a queue", |c| {
            redis::cmd("SADD").arg(ended).arg(producer).query::<()>(c)
        });
    }
}

/// Whether an operation that failed with `e` may succeed on a new
/// connection: the server went away, timed out, or is loading its data.
fn retriable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some("LOADING" | "TRYAGAIN" | "BUSY" | "MASTERDOWN")
        )
}

/// Renews this process's producer leases every third of a lease, until
/// the cluster is dropped. A renewal that finds its lease expired marks it
/// lost: this process's later writes fail instead of landing in a queue
/// whose readers may have ended.
fn heartbeat(shared: &Weak<Shared>) {
    let mut conn = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let period = s.lease / 3;
        let leases = lock(&s.leases).clone();
        let lease = s.lease.as_millis() as u64;
        for (key, producer) in leases {
            let renewed = conn
                .get_or_insert_with(|| s.connect())
                .as_mut()
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    scripts::RENEW
                        .key(&key)
                        .arg(&producer)
                        .arg(lease)
                        .invoke::<i64>(c)
                        .map_err(|e| e.to_string())
                });
            match renewed {
                Ok(1) => {}
                Ok(_) => s.lease_lost.store(true, Ordering::Release),
                Err(_) => conn = None, // retried at the next period
            }
        }
        drop(s);
        thread::sleep(period);
    }
}
