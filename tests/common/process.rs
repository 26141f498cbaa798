//! Child processes for the tests: example binaries, and tests of this
//! binary run in a process of their own (so that an abort, a crash or a
//! SIGKILL stays there).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The path of an example binary. `cargo test` builds the examples beside
/// the test binaries; when a test is run alone they may be missing, and
/// then they are built first.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = dir
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
    path
}

/// A command that runs the test `name` of this test binary (ignored or
/// not) in a child process, with `var=value` in its environment: such a
/// test does its work only when `var` is set.
pub fn child_test(name: &str, var: &str, value: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args(["--exact", name, "--nocapture", "--include-ignored"])
        .env(var, value);
    cmd
}

/// Runs the test `name` of this test binary in a child process (see
/// [`child_test`], with `var=1`), and fails unless it ran and passed.
pub fn child_test_passes(name: &str, var: &str) {
    let out = child_test(name, var, "1").output().expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the child test `{name}` failed, or did not run: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for `child` until `deadline`, then kills it and fails the test:
/// a process that does not finish is a hang.
pub fn wait_until(child: &mut Child, deadline: Instant) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("a child process did not finish in time");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A role of `examples/collatz_cluster.rs` (`print`, `work ..`, `feed N`)
/// on the server at `url` for `job`, with recovery quick enough for a
/// test (1 s to claim a dead consumer's messages and for a lease to lapse).
/// `print`'s output is piped.
pub fn collatz_role(url: &str, job: &str, args: &[&str], stderr: Stdio) -> Child {
    Command::new(example("collatz_cluster"))
        .args(args)
        .env("EZQ_REDIS_URL", url)
        .env("EZQ_JOB", job)
        .env("EZQ_CLAIM_AFTER_MS", "1000")
        .env("EZQ_LEASE_MS", "1000")
        .stdout(if args.first() == Some(&"print") {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(stderr)
        .spawn()
        .expect("the example starts")
}
