//! The `tracing` feature: each worker replica runs in an `ezq_worker` span,
//! with an event when it reaches END, returns an error or panics. One test
//! in its own binary, since it installs the process's global subscriber
//! (worker threads do not see a thread-local one).

use std::io;
use std::sync::{Arc, Mutex};

use ezq::{Inbox, Outbox, pipeline, worker};
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[worker]
fn relay(inbox: Inbox<u64>, out: Outbox<u64>) -> Result<(), String> {
    for msg in inbox {
        if msg.data == 13 {
            return Err("13 is unlucky".into());
        }
        if msg.data == 666 {
            panic!("666 is worse");
        }
        out.put_msg(msg);
    }
    Ok(())
}

#[test]
fn worker_spans_and_their_ending_events() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    for bad in [1, 13, 666] {
        let p = pipeline! { numbers -> relay -> out; };
        p.numbers.put(bad);
        let _ = p.join();
    }

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let has = |needle: &str| {
        lines
            .iter()
            .any(|l| l.contains("ezq_worker{worker=relay replica=0}") && l.contains(needle))
    };
    assert!(has("worker started"), "{log}");
    assert!(has("worker reached END"), "{log}");
    assert!(
        has("worker returned an error") && has("13 is unlucky"),
        "{log}"
    );
    assert!(has("worker panicked") && has("666 is worse"), "{log}");
}
