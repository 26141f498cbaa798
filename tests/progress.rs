//! `ezq::Progress`: silent when stderr is not a terminal, exact final
//! statistics, and a drop that never hangs, on a terminal or not.
//!
//! Whether stderr is a terminal depends on how the tests are run, so the
//! tests that need one or the other run a test of this binary again as a
//! child process: with stderr piped, or under `script`, which gives it a
//! pseudo-terminal.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ezq::{Inbox, Outbox, Progress, pipeline, worker};

/// Set in a child process: which scenario to run.
const CHILD: &str = "EZQ_PROGRESS_CHILD";

#[worker]
fn slow_double(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(200));
    x * 2
}

#[worker]
fn adder(inbox: Inbox<u64>, out: Outbox<u64>) {
    out.put(inbox.map(|msg| msg.data).sum::<u64>());
}

/// Runs a pipeline for about half a second (several redraws) with a
/// Progress, and checks its result.
fn run_with_progress() {
    let p = pipeline! { numbers -> slow_double * 2 -> doubled -> adder -> total; };
    let monitor = p.monitor();
    let progress = Progress::start(p.monitor());
    for i in 0..2000u64 {
        p.numbers.put(i);
    }
    p.numbers.end();
    let total = p.total.iter().next().map(|msg| msg.data);
    p.join().expect("no worker fails");
    let stats = progress.finish();
    assert_eq!(total, Some(2 * (0..2000).sum::<u64>()));
    assert_eq!(stats, monitor.stats());
}

/// Starts a Progress on a pipeline that cannot finish (its source is never
/// ended), lets it draw, and drops it.
fn drop_while_running() {
    let p = pipeline! { numbers -> slow_double -> doubled; };
    let progress = Progress::start(p.monitor());
    p.numbers.put(1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!p.monitor().is_finished());
    drop(progress);
    p.numbers.end();
    p.join().expect("no worker fails");
}

/// The scenario a parent test asked for, if this is a child process.
#[test]
fn child() {
    match std::env::var(CHILD).as_deref() {
        Ok("run") => run_with_progress(),
        Ok("drop") => drop_while_running(),
        _ => {}
    }
}

/// Runs the test `child` of this binary with `CHILD=scenario`, through
/// `wrap` (a command line prefix, or none), and returns (success, stdout,
/// stderr). Panics if it takes more than 30 seconds.
fn run_child(scenario: &str, wrap: Option<&[&str]>) -> (bool, String, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let exe = exe.to_str().expect("a UTF-8 path");
    let test = [exe, "child", "--exact", "--nocapture", "--test-threads=1"];
    let mut cmd = match wrap {
        None => {
            let mut cmd = Command::new(exe);
            cmd.args(&test[1..]);
            cmd
        }
        Some([program, args @ ..]) => {
            let mut cmd = Command::new(program);
            // One shell command line: the path quoted, in case of spaces.
            let line = format!("'{exe}' {}", test[1..].join(" "));
            cmd.args(args).arg(line);
            cmd
        }
        Some([]) => unreachable!("a wrapper names a program"),
    };
    let mut child = cmd
        .env(CHILD, scenario)
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test binary runs");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child process hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let stderr = reader.join().expect("the reader thread");
    (status.success(), stdout, stderr)
}

/// `text` without its ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // Skip to the sequence's final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// util-linux's `script` runs a command on a pseudo-terminal and copies
/// what it shows to its stdout; `None` if it is not installed.
fn script() -> Option<&'static [&'static str]> {
    let found = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("util-linux"));
    if !found {
        eprintln!("skipped: `script` (util-linux) is not installed");
    }
    found.then_some(&["script", "--quiet", "--return", "/dev/null", "--command"])
}

#[test]
fn finish_returns_the_final_stats() {
    // In a child, so that nothing is drawn among this test run's output.
    let (ok, stdout, stderr) = run_child("run", None);
    assert!(ok, "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn nothing_is_drawn_when_stderr_is_not_a_terminal() {
    for scenario in ["run", "drop"] {
        let (ok, stdout, stderr) = run_child(scenario, None);
        assert!(ok, "{scenario}: child failed:\n{stdout}\n{stderr}");
        assert_eq!(stderr, "", "{scenario}: nothing may be written to stderr");
    }
}

#[test]
fn on_a_terminal_it_draws() {
    let Some(script) = script() else { return };
    let (ok, stdout, stderr) = run_child("run", Some(script));
    assert!(ok, "child failed:\n{stdout}\n{stderr}");
    let stdout = strip_ansi(&stdout);
    assert!(stdout.contains("1 passed"), "{stdout}");
    // The final frame: every stage done, exact queue counts.
    for line in ["slow_double", "adder", "numbers", "doubled", "total"] {
        assert!(stdout.contains(line), "`{line}` was not drawn: {stdout}");
    }
    assert!(stdout.contains("✔ adder"), "{stdout}");
    // Each stage's line ends with its input queue's fill: exact (no `~`)
    // and empty once every worker has finished.
    for (stage, input) in [
        ("slow_double", "in numbers 0/1024"),
        ("adder", "in doubled 0/1024"),
    ] {
        // Frames are separated by carriage returns and cursor moves (now
        // stripped): a line runs to the next mark.
        let mark = format!("✔ {stage}");
        let start = stdout.rfind(&mark).expect("a final line");
        let line = &stdout[start + mark.len()..];
        let line = &line[..line.find(['\r', '\n', '✔']).unwrap_or(line.len())];
        let rest = line.find(input).map(|at| &line[at + input.len()..]);
        assert!(
            rest.is_some_and(|rest| rest.is_empty() || rest.starts_with(' ')),
            "{stage}'s final line should show `{input}`: {line:?}"
        );
    }
    assert!(
        !stdout.contains("· "),
        "no stage was left running: {stdout}"
    );
}

#[test]
fn dropping_a_progress_of_an_unfinished_pipeline_does_not_hang() {
    // Off a terminal nothing runs in the background; on one, a thread does.
    let (ok, stdout, stderr) = run_child("drop", None);
    assert!(ok, "child failed:\n{stdout}\n{stderr}");
    let Some(script) = script() else { return };
    let (ok, stdout, stderr) = run_child("drop", Some(script));
    assert!(ok, "child failed:\n{stdout}\n{stderr}");
    let stdout = strip_ansi(&stdout);
    assert!(stdout.contains("1 passed"), "{stdout}");
    // Dropped while running: the stage is left as it was, marked stopped.
    assert!(stdout.contains("· slow_double"), "{stdout}");
}
