//! A private `redis-server` for one test: started as a child process on a
//! loopback port of its own, with its own directory and an append-only file
//! (`appendfsync everysec`, no RDB snapshots), killed and cleaned up on drop.
//!
//! Without `redis-server` on `PATH`, [`RedisServer::start`] returns `None`
//! and the caller skips its test, after one line on stderr per test binary;
//! with `EZQ_REQUIRE_REDIS` set (to anything but `0`), a missing server is a
//! failure instead, so that CI cannot pass by skipping.
//!
//! The benchmarks include this file too (`#[path]`), so it uses nothing but
//! the standard library and the `redis` crate.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The program started, looked up on `PATH`.
const PROGRAM: &str = "redis-server";

/// How long a start or a restart may take before it is a failure: a fresh
/// server answers in ~30 ms; a restart replays its append-only file first.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// How many fresh ports a start tries when the one it picked was taken in
/// the meantime (by another test binding port 0, say).
const PORT_ATTEMPTS: usize = 5;

/// Says that the Redis tests are skipped, once per test binary.
static SKIP_NOTICE: Once = Once::new();

/// Makes the directories of the servers of one process distinct.
static SERVERS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// A `redis-server` child process on `127.0.0.1`, with a directory of its
/// own; dropping it kills the server and removes the directory.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    /// `None` after [`RedisServer::kill`].
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    ///
    /// Returns `None` when `redis-server` is not on `PATH` (the caller skips
    /// its test), unless `EZQ_REQUIRE_REDIS` is set: then that panics. A
    /// server that is there but does not come up within ~5 s panics too,
    /// with its log.
    pub fn start() -> Option<RedisServer> {
        let dir = std::env::temp_dir().join(format!(
            "ezq-redis-{}-{}",
            std::process::id(),
            SERVERS_STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        // Left over by an earlier process that had the same id.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut server = RedisServer {
            port: 0,
            dir,
            child: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            // The log of a failed attempt would mislead the next one.
            let _ = fs::remove_file(server.log_path());
            match server.spawn() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    not_found();
                    return None; // Drops `server`, which removes its directory.
                }
                Err(e) => panic!("cannot start {PROGRAM}: {e}"),
            }
            match server.wait_until_ready() {
                Ok(()) => return Some(server),
                Err(log) if attempt < PORT_ATTEMPTS && log.contains("Address already in use") => {
                    continue;
                }
                Err(log) => server.fail("did not come up", &log),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `redis://127.0.0.1:PORT/`, for `redis::Client::open`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The loopback TCP port the server listens on; it keeps it across
    /// restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's own directory: its append-only files and its log
    /// (`server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client for this server (connections are made on use).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a valid redis URL")
    }

    /// Waits until every write that the server has acknowledged is in its
    /// append-only file: written to the kernel, which survives a SIGKILL of
    /// the server (not a power cut). Under `appendfsync everysec` the server
    /// holds its writes back, for up to 2 s, while a background fsync runs,
    /// and acknowledges commands meanwhile: a kill then loses them. A test
    /// whose crash must lose nothing acknowledged calls this before
    /// [`RedisServer::kill`].
    pub fn wait_aof_written(&self) {
        let mut con = (self.client())
            .get_connection_with_timeout(Duration::from_secs(1))
            .expect("a connection");
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            // What is not written yet, counted when INFO runs: every
            // command that ran before it has put its writes there.
            let info: String = (redis::cmd("INFO").arg("persistence"))
                .query(&mut con)
                .expect("INFO persistence");
            if info.lines().any(|line| line == "aof_buffer_length:0") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the AOF writes are held back for over {READY_WITHIN:?}:\n{info}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to
    /// be gone. Does nothing if it is not running. Writes acknowledged in the
    /// last 2 s may be lost: see [`RedisServer::wait_aof_written`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means that it has already exited: reaped just below.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory, so that it
    /// reloads its append-only file, and waits until it answers `PING` and
    /// has finished loading. A server still running is killed first (a
    /// crash and a restart).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("cannot restart {PROGRAM}: {e}");
        }
        if let Err(log) = self.wait_until_ready() {
            self.fail("did not come back after a restart", &log);
        }
    }

    /// Starts the child process on `self.port`, its output appended to
    /// `server.log` in its directory.
    fn spawn(&mut self) -> io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let dir = self.dir.to_str().expect("a UTF-8 temporary directory");
        let child = Command::new(PROGRAM)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            // No RDB snapshots; an append-only file, written at once and
            // synced every second (what the queues will run on).
            .args(["--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--dir", dir, "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server answers `PING` and is not loading its data;
    /// on failure, returns its log (for the panic, or to pick another port).
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let client = self.client();
        loop {
            let child = self.child.as_mut().expect("a server was spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("it exited with {status}\n{}", self.log()));
            }
            if ready(&client) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("no answer within {READY_WITHIN:?}\n{}", self.log()));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn fail(&mut self, what: &str, log: &str) -> ! {
        self.kill();
        panic!("{PROGRAM} on 127.0.0.1:{} {what}: {log}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server answers `PING` and has finished loading its data (it
/// answers `-LOADING` to `PING` while loading, but `INFO` says it plainly).
fn ready(client: &redis::Client) -> bool {
    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    if con.set_read_timeout(Some(Duration::from_secs(1))).is_err() {
        return false;
    }
    let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut con);
    if !matches!(pong.as_deref(), Ok("PONG")) {
        return false;
    }
    let info: redis::RedisResult<String> = redis::cmd("INFO").arg("persistence").query(&mut con);
    info.is_ok_and(|info| {
        info.lines()
            .filter(|line| line.starts_with("loading:") || line.starts_with("async_loading:"))
            .all(|line| line.ends_with(":0"))
    })
}

/// A loopback port that was free a moment ago: the OS picks it for a
/// listener, which is dropped at once so that the server can take it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// `redis-server` is not on `PATH`: a failure when the run requires it,
/// otherwise one line on stderr (written straight to the handle, since the
/// test harness captures `eprintln!`).
fn not_found() {
    let required = std::env::var_os("EZQ_REQUIRE_REDIS").is_some_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!(
            "{PROGRAM} not found on PATH, and EZQ_REQUIRE_REDIS is set: install redis-server \
             (Debian: apt-get install redis-server), or run .ci/run"
        );
    }
    SKIP_NOTICE.call_once(|| {
        let _ = writeln!(
            io::stderr(),
            "ezq: {PROGRAM} not found: skipping the Redis tests (install redis-server, or run .ci/run)"
        );
    });
}
