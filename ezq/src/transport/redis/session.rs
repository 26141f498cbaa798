//! A thread's session with the Redis server: its connection, the entries
//! it took and has not acknowledged, and what it put and has not written.
//!
//! A thread is one consumer. What it takes from a stream it holds
//! ("in hand") until it asks for the next message: the one in hand is then
//! done. Done messages are acknowledged in one atomic commit together with
//! the messages put while they were in hand, so a process that dies
//! between two commits leaves its inputs pending (another consumer claims
//! them) and none of their results written: nothing is lost and nothing
//! is written twice. A commit happens before the thread reads from the
//! server, when a block's worth is done, when the thread is about to wait
//! ([`flush_thread`]), and when a worker thread finishes ([`thread_done`]).
//!
//! A thread that is not a pipeline's worker (the caller feeding a source,
//! reading a sink) writes what it puts at once.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use super::cluster::Shared;
use super::{GROUP, Producer, StreamInfo, field, scripts};

/// The longest a blocking read waits before the reader checks for END and
/// for entries to claim.
const POLL: Duration = Duration::from_millis(100);

/// One message put: where, and what.
pub(crate) struct Output {
    pub(crate) stream: Arc<StreamInfo>,
    pub(crate) kind: String,
    pub(crate) order: u64,
    pub(crate) data: Vec<u8>,
}

/// One entry taken from a stream.
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) order: u64,
    pub(crate) data: Vec<u8>,
    /// How many times workers failed on it.
    failures: u64,
    /// Taken over from another consumer: handed out one at a time.
    claimed: bool,
}

/// Whether a producer waits when what it wrote left the queue full.
#[derive(Clone, Copy)]
pub(crate) enum Room {
    /// Until there is room (or the pipeline is cancelled).
    Wait,
    /// Not at all.
    DontWait,
    /// Until there is room, or this instant.
    Until(Instant),
}

/// How a worker thread finished.
pub(crate) enum Outcome<'a> {
    /// It returned: the message in hand was handled.
    Done,
    /// It failed on the message in hand, with this error.
    Failed(&'a str),
    /// It stopped before handling the message in hand (its outputs' readers
    /// were gone, or the pipeline was cancelled): the message stays on the
    /// server for another consumer.
    GaveBack,
}

/// What a reader gets.
pub(crate) enum Next {
    Entry(Entry),
    End,
    Nothing,
}

/// A message handled: acknowledged with its outputs at the next commit.
struct Done {
    stream: Arc<StreamInfo>,
    id: String,
    outputs: Vec<Output>,
}

/// The message in hand, and what was put while it was.
struct InHand {
    stream: Arc<StreamInfo>,
    id: String,
    /// How many times workers failed on it before.
    failures: u64,
    outputs: Vec<Output>,
}

/// What this thread took from one stream and has not yet handed out.
struct Reading {
    stream: Arc<StreamInfo>,
    buffered: VecDeque<Entry>,
    /// When what this thread holds of the stream last had its idle time
    /// restarted (read, claimed, or touched by a commit).
    held_since: Instant,
    /// When this thread last looked for entries to claim, and where.
    last_claim: Instant,
    cursor: String,
}

struct Session {
    cluster: Arc<Shared>,
    conn: Option<Connection>,
    /// Consumer name, and the session's name for its commit numbers.
    name: String,
    commits: u64,
    reading: Vec<Reading>,
    in_hand: Option<InHand>,
    done: Vec<Done>,
    /// Messages put while no message was in hand.
    free: Vec<Output>,
    /// Entries taken and not handed out, to give back at the next commit.
    released: Vec<(Arc<StreamInfo>, Entry)>,
    /// Producers whose END waits for this thread's last commit.
    kept: Vec<Arc<Producer>>,
    /// Set when the server was lost for good: no more calls.
    broken: bool,
    /// The message last handed out was claimed: it is committed as soon
    /// as it is done, alone.
    last_claimed: bool,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
    static WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as a pipeline's worker: what it puts waits for its
/// commits, and its END for [`thread_done`].
pub(crate) fn worker_thread() {
    WORKER.with(|w| w.set(true));
}

fn is_worker() -> bool {
    WORKER.with(std::cell::Cell::get)
}

/// Runs `f` on this thread's session with `cluster`, opening it if needed.
fn with<R>(cluster: &Arc<Shared>, f: impl FnOnce(&mut Session) -> R) -> R {
    SESSION.with(|cell| {
        let mut slot = cell.borrow_mut();
        let reuse = slot
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.cluster, cluster));
        if !reuse {
            if let Some(mut old) = slot.take() {
                old.finish(Outcome::Done);
            }
            *slot = Some(Session {
                cluster: Arc::clone(cluster),
                conn: None,
                name: cluster.consumer_name(),
                commits: 0,
                reading: Vec::new(),
                in_hand: None,
                done: Vec::new(),
                free: Vec::new(),
                released: Vec::new(),
                kept: Vec::new(),
                broken: false,
                last_claimed: false,
            });
        }
        f(slot.as_mut().expect("opened above"))
    })
}

/// Registers this process as a producer of `stream`.
pub(crate) fn register(stream: &Arc<StreamInfo>) {
    with(&stream.cluster, |s| {
        let conn = &mut s.conn;
        stream.register(conn);
    });
}

/// Puts messages; a worker's wait for its next commit, anyone else's are
/// written now (and wait for room as `room` says).
pub(crate) fn put(outputs: Vec<Output>, room: Room) {
    let Some(first) = outputs.first() else { return };
    let stream = Arc::clone(&first.stream);
    with(&stream.cluster, |s| {
        stream.register(&mut s.conn);
        // Only a worker's puts wait for its message in hand: the caller's
        // thread may read a sink and feed a source in any order.
        match (&mut s.in_hand, is_worker()) {
            (Some(hand), true) => hand.outputs.extend(outputs),
            _ => s.free.extend(outputs),
        }
        if !is_worker() || s.free.len() >= stream.block {
            s.commit(room);
        }
    });
}

/// Ends this process's part of `stream`, behind everything this thread put.
pub(crate) fn end(stream: &Arc<StreamInfo>) {
    with(&stream.cluster, |s| {
        s.commit(Room::DontWait);
        stream.end(&mut s.conn);
    });
}

/// Keeps a producer alive until this worker thread's last commit; off a
/// worker thread, lets it go now.
pub(crate) fn keep_until_done(producer: Arc<Producer>) {
    if !is_worker() {
        return;
    }
    let _ = SESSION.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut()
            && let Some(s) = slot.as_mut()
        {
            s.kept.push(producer);
        }
    });
}

/// Commits what this thread holds: it is about to wait.
pub(crate) fn flush_thread() {
    let _ = SESSION.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut()
            && let Some(s) = slot.as_mut()
            && (!s.done.is_empty() || !s.free.is_empty())
        {
            s.commit(Room::Wait);
        }
    });
}

/// Marks `stream` discarded on the server (see [`scripts::COMMIT`]).
pub(crate) fn discard(stream: &Arc<StreamInfo>) {
    with(&stream.cluster, |s| {
        let key = stream.discarded.clone();
        s.call("discard a queue", |c| {
            redis::cmd("SET").arg(&key).arg(1).query::<()>(c)
        });
    });
}

/// Entries this thread took from `stream` and has not handed out.
pub(crate) fn buffered(stream: &Arc<StreamInfo>) -> usize {
    SESSION.with(|cell| {
        cell.borrow().as_ref().map_or(0, |s| {
            s.reading
                .iter()
                .find(|r| Arc::ptr_eq(&r.stream, stream))
                .map_or(0, |r| r.buffered.len())
        })
    })
}

/// The next message of `stream` for this thread, waiting until `deadline`
/// (`None`: for ever) for one.
pub(crate) fn next(stream: &Arc<StreamInfo>, deadline: Option<Instant>) -> Next {
    with(&stream.cluster, |s| s.next(stream, deadline))
}

/// This thread's reader of `stream` is gone. On a worker thread, the
/// thread's end decides about the message in hand (done, or failed); on
/// the caller's, what it was handed is done now, and what it took and was
/// not handed goes back.
pub(crate) fn reader_closed(stream: &Arc<StreamInfo>) {
    if is_worker() || thread::panicking() {
        return;
    }
    let _ = SESSION.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return;
        };
        let Some(s) = slot.as_mut() else { return };
        s.hand_done();
        s.release_buffered(Some(stream));
        s.commit(Room::DontWait);
    });
}

/// A worker thread finishes: the message in hand was done, or failed
/// (it goes back to its queue, or to the dead letters once it has failed
/// too often), or was given back; what was taken and not handed out goes
/// back, and everything else is committed; then the queues this thread
/// produced end their part.
pub(crate) fn thread_done(outcome: Outcome) {
    let session = SESSION.with(|cell| cell.borrow_mut().take());
    if let Some(mut session) = session {
        session.finish(outcome);
    }
}

impl Drop for Session {
    /// A thread that is not a worker (one that read a sink, say) ends:
    /// what it was handed is done, what it took and was not handed goes
    /// back. Never panics (a panic here would abort the process).
    fn drop(&mut self) {
        if self.broken || thread::panicking() {
            return;
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.finish(Outcome::Done);
        }));
    }
}

impl Session {
    fn finish(&mut self, outcome: Outcome) {
        if self.broken {
            return;
        }
        match outcome {
            Outcome::Done => self.hand_done(),
            Outcome::Failed(error) => self.fail_in_hand(error),
            Outcome::GaveBack => self.in_hand = None,
        }
        self.release_buffered(None);
        self.commit(Room::DontWait);
        // The producers' ENDs go as `kept` drops, after the commit.
        drop(std::mem::take(&mut self.kept));
    }

    /// The message in hand is done.
    fn hand_done(&mut self) {
        if let Some(hand) = self.in_hand.take() {
            self.done.push(Done {
                stream: hand.stream,
                id: hand.id,
                outputs: hand.outputs,
            });
        }
    }

    /// A worker failed on the message in hand: what it put for it is
    /// dropped, and the message goes back to its queue or to the dead
    /// letters.
    fn fail_in_hand(&mut self, error: &str) {
        let Some(hand) = self.in_hand.take() else {
            return;
        };
        let cluster = Arc::clone(&self.cluster);
        let name = self.name.clone();
        let outcome: i64 = self.call("record a failure", |c| {
            scripts::FAIL
                .key(&hand.stream.key)
                .key(cluster.dead_key())
                .key(&hand.stream.live)
                .arg(GROUP)
                .arg(&name)
                .arg(&hand.id)
                .arg(hand.failures)
                .arg(cluster.max_failures)
                .arg(&hand.stream.name)
                .arg(error)
                .invoke(c)
        });
        if outcome == 2 {
            hand.stream.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries taken and not handed out go back to their queues at the
    /// next commit (of one stream, or all).
    fn release_buffered(&mut self, only: Option<&Arc<StreamInfo>>) {
        for r in &mut self.reading {
            if only.is_none_or(|s| Arc::ptr_eq(s, &r.stream)) {
                let stream = &r.stream;
                (self.released).extend(r.buffered.drain(..).map(|e| (Arc::clone(stream), e)));
            }
        }
    }

    /// Runs a Redis operation, reconnecting if the server went away.
    fn call<R>(
        &mut self,
        what: &str,
        op: impl FnMut(&mut Connection) -> Result<R, redis::RedisError>,
    ) -> R {
        let cluster = Arc::clone(&self.cluster);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cluster.retry(&mut self.conn, what, op)
        }));
        match outcome {
            Ok(value) => value,
            Err(payload) => {
                self.broken = true;
                std::panic::resume_unwind(payload)
            }
        }
    }

    fn next(&mut self, stream: &Arc<StreamInfo>, deadline: Option<Instant>) -> Next {
        assert!(
            !self.broken,
            "ezq: the Redis server at {} was lost: this thread's queues on it are unusable",
            self.cluster.url
        );
        self.hand_done();
        // Commit a block's worth, and anything done that has been held for
        // a quarter of `claim_after`: no other consumer should take over
        // what this one has handled.
        let held_long =
            (self.reading.iter()).any(|r| r.held_since.elapsed() >= stream.cluster.claim_after / 4);
        let doubtful = self.last_claimed;
        if self.done.len() >= stream.block || (held_long || doubtful) && !self.done.is_empty() {
            self.commit(Room::Wait);
        }
        let r = match self
            .reading
            .iter()
            .position(|r| Arc::ptr_eq(&r.stream, stream))
        {
            Some(i) => i,
            None => {
                self.reading.push(Reading {
                    stream: Arc::clone(stream),
                    buffered: VecDeque::new(),
                    held_since: Instant::now(),
                    last_claim: Instant::now(),
                    cursor: "0-0".to_owned(),
                });
                self.reading.len() - 1
            }
        };
        loop {
            if let Some(entry) = self.reading[r].buffered.pop_front() {
                if entry.claimed && !self.attempt(stream, &entry) {
                    continue;
                }
                return self.hand_out(stream, entry);
            }
            if stream.ended.load(Ordering::Acquire) {
                return Next::End;
            }
            // Acknowledge before reading: what is done must not wait on a
            // read that may block.
            self.commit(Room::Wait);
            let wait = deadline.map_or(POLL, |d| {
                d.saturating_duration_since(Instant::now()).min(POLL)
            });
            let claim_due = self.reading[r].last_claim.elapsed() >= stream.cluster.claim_after / 2;
            let mut got = if claim_due { self.claim(r) } else { Vec::new() };
            if got.is_empty() {
                got = self.read(stream, wait);
            }
            if got.is_empty() && !claim_due {
                got = self.claim(r);
            }
            if !got.is_empty() {
                let reading = &mut self.reading[r];
                reading.buffered.extend(got);
                reading.held_since = Instant::now();
                continue;
            }
            if self.ended(stream) {
                stream.ended.store(true, Ordering::Release);
                return Next::End;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Next::Nothing;
            }
            if wait.is_zero() {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn hand_out(&mut self, stream: &Arc<StreamInfo>, entry: Entry) -> Next {
        self.last_claimed = entry.claimed;
        self.in_hand = Some(InHand {
            stream: Arc::clone(stream),
            id: entry.id.clone(),
            failures: entry.failures,
            outputs: Vec::new(),
        });
        Next::Entry(entry)
    }

    /// Reads new entries of a stream, waiting up to `wait` for some.
    fn read(&mut self, stream: &Arc<StreamInfo>, wait: Duration) -> Vec<Entry> {
        let name = self.name.clone();
        let reply: Value = self.call("read a queue", |c| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(GROUP)
                .arg(&name)
                .arg("COUNT")
                .arg(stream.block);
            if !wait.is_zero() {
                cmd.arg("BLOCK").arg(wait.as_millis().max(1) as u64);
            }
            cmd.arg("STREAMS").arg(&stream.key).arg(">").query(c)
        });
        parse_entries(stream, super::read_reply(&reply))
    }

    /// Claims entries that another consumer has held too long.
    fn claim(&mut self, r: usize) -> Vec<Entry> {
        let stream = Arc::clone(&self.reading[r].stream);
        let cursor = self.reading[r].cursor.clone();
        let idle = stream.cluster.claim_after.as_millis() as u64;
        let name = self.name.clone();
        let reply: Value = self.call("claim entries", |c| {
            redis::cmd("XAUTOCLAIM")
                .arg(&stream.key)
                .arg(GROUP)
                .arg(&name)
                .arg(idle)
                .arg(&cursor)
                .arg("COUNT")
                .arg(stream.block)
                .query(c)
        });
        let (next, entries) = super::claim_reply(&reply);
        let reading = &mut self.reading[r];
        reading.cursor = next;
        reading.last_claim = Instant::now();
        // This thread may be the slow one: what it still holds is not new.
        let holds = |id: &str| {
            reading.buffered.iter().any(|e| e.id == id)
                || self.done.iter().any(|d| d.id == id)
                || self.in_hand.as_ref().is_some_and(|h| h.id == id)
        };
        let fresh = entries.into_iter().filter(|(id, _)| !holds(id)).collect();
        let mut claimed = parse_entries(&stream, fresh);
        for e in &mut claimed {
            e.claimed = true;
        }
        claimed
    }

    /// Before a claimed entry is handed out: what is done is committed (so
    /// that only this entry is in doubt if the process dies now), and its
    /// attempt is counted. False if it must not be handed out (set aside,
    /// or another consumer has it).
    fn attempt(&mut self, stream: &Arc<StreamInfo>, entry: &Entry) -> bool {
        self.commit(Room::Wait);
        let cluster = Arc::clone(&self.cluster);
        let name = self.name.clone();
        let outcome: i64 = self.call("count an attempt", |c| {
            scripts::ATTEMPT
                .key(&stream.key)
                .key(cluster.dead_key())
                .key(&stream.live)
                .key(&stream.attempts)
                .arg(GROUP)
                .arg(&name)
                .arg(&entry.id)
                .arg(cluster.max_failures)
                .arg(&stream.name)
                .invoke(c)
        });
        if outcome == 2 {
            stream.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        outcome == 1
    }

    /// Whether the stream has ended for its readers.
    fn ended(&mut self, stream: &Arc<StreamInfo>) -> bool {
        let ended: i64 = self.call("check for END", |c| {
            scripts::ENDED
                .key(&stream.producers)
                .key(&stream.ended_set)
                .key(&stream.key)
                .key(&stream.over)
                .arg(GROUP)
                .invoke(c)
        });
        ended == 1
    }

    /// Writes what was put and acknowledges what is done, in one atomic
    /// step (see [`scripts::COMMIT`] for the layout of its arguments);
    /// then waits, as `room` says, while a stream written is full.
    fn commit(&mut self, room: Room) {
        if self.broken || (self.done.is_empty() && self.free.is_empty() && self.released.is_empty())
        {
            return;
        }
        if self.cluster.lease_lost.load(Ordering::Acquire) {
            self.broken = true;
            panic!(
                "ezq: this process's lease as a producer ran out (it was stalled for over {:.0?}): \
                 its readers may have ended without what it puts",
                self.cluster.lease
            );
        }
        self.commits += 1;
        let mut out_streams: Vec<&Arc<StreamInfo>> = Vec::new();
        for o in self.done.iter().flat_map(|d| &d.outputs).chain(&self.free) {
            if !out_streams.iter().any(|s| Arc::ptr_eq(s, &o.stream)) {
                out_streams.push(&o.stream);
            }
        }
        let mut trimmed: Vec<&Arc<StreamInfo>> = Vec::new();
        for d in &self.done {
            if !trimmed.iter().any(|s| Arc::ptr_eq(s, &d.stream)) {
                trimmed.push(&d.stream);
            }
        }
        let mut a = Args::new(self.cluster.seq_key());
        a.push(&self.name);
        a.push(self.commits);
        a.push(GROUP);
        a.push(&self.name);
        let leases: Vec<(&Arc<StreamInfo>, String)> = (out_streams.iter())
            .filter_map(|s| Some((*s, s.producer()?)))
            .collect();
        a.push(leases.len());
        for (s, producer) in &leases {
            a.key(&s.producers);
            a.push(producer);
        }
        a.push(self.done.len());
        for d in &self.done {
            a.key(&d.stream.key);
            a.key(&d.stream.live);
            a.push(&d.id);
            a.push(d.outputs.len());
            for o in &d.outputs {
                a.output(o);
            }
        }
        a.push(self.free.len());
        for o in &self.free {
            a.output(o);
        }
        a.push(self.released.len());
        for (stream, e) in &self.released {
            a.key(&stream.key);
            a.push(&e.id);
            a.push(&e.kind);
            a.push(e.order);
            a.bytes(e.data.clone());
            a.push(e.failures);
        }
        // What this thread holds and has held long: its idle time restarts.
        let touch_after = self.cluster.claim_after / 4;
        let touched: Vec<(&Arc<StreamInfo>, &str)> = (self.reading.iter())
            .filter(|r| r.held_since.elapsed() >= touch_after)
            .flat_map(|r| r.buffered.iter().map(move |e| (&r.stream, e.id.as_str())))
            .chain(self.in_hand.as_ref().map(|h| (&h.stream, h.id.as_str())))
            .collect();
        a.push(touched.len());
        for (s, id) in &touched {
            a.key(&s.key);
            a.push(id);
        }
        a.push(trimmed.len());
        for s in &trimmed {
            a.key(&s.key);
        }
        a.push(out_streams.len());
        for s in &out_streams {
            a.key(&s.live);
        }
        let out_streams: Vec<Arc<StreamInfo>> = out_streams.into_iter().cloned().collect();
        let mut invocation = scripts::COMMIT.prepare_invoke();
        for k in &a.keys {
            invocation.key(k);
        }
        for v in &a.args {
            invocation.arg(v.as_slice());
        }
        let reply: Vec<i64> = self.call("commit", |c| invocation.invoke(c));
        if reply.first() == Some(&-1) {
            self.broken = true;
            let names: Vec<String> = out_streams
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect();
            panic!(
                "ezq: this process's lease as a producer of {} ran out before its results were written: \
                 they were not written, and its inputs go to other consumers",
                names.join(", ")
            );
        }
        self.done.clear();
        self.free.clear();
        self.released.clear();
        let now = Instant::now();
        for r in &mut self.reading {
            if r.held_since.elapsed() >= touch_after {
                r.held_since = now;
            }
        }
        for (s, live) in out_streams.iter().zip(reply.iter().skip(1)) {
            if usize::try_from(*live).unwrap_or(0) >= s.capacity {
                self.wait_for_room(s, room);
            }
        }
    }

    /// Waits while a stream holds its capacity of entries not yet
    /// acknowledged, as `room` says, and never past a cancel.
    fn wait_for_room(&mut self, stream: &Arc<StreamInfo>, room: Room) {
        let deadline = match room {
            Room::DontWait => return,
            Room::Wait => None,
            Room::Until(deadline) => Some(deadline),
        };
        let mut pause = Duration::from_millis(1);
        loop {
            let (live, discarded): (Option<i64>, Option<i64>) = self.call("measure a queue", |c| {
                redis::cmd("MGET")
                    .arg(&stream.live)
                    .arg(&stream.discarded)
                    .query(c)
            });
            if usize::try_from(live.unwrap_or(0)).unwrap_or(0) < stream.capacity
                || discarded.is_some()
                || stream.stopped()
                || deadline.is_some_and(|d| Instant::now() >= d)
            {
                return;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(4));
        }
    }
}

/// The keys and arguments of a script call: keys are given by their
/// index in KEYS, each key once.
struct Args {
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl Args {
    fn new(first_key: String) -> Self {
        Args {
            keys: vec![first_key],
            args: Vec::new(),
        }
    }

    fn push(&mut self, value: impl ToString) {
        self.args.push(value.to_string().into_bytes());
    }

    fn bytes(&mut self, value: Vec<u8>) {
        self.args.push(value);
    }

    /// Pushes the index of `key` in KEYS (1-based, as in Lua).
    fn key(&mut self, key: &str) {
        let i = match self.keys.iter().position(|k| k == key) {
            Some(i) => i + 1,
            None => {
                self.keys.push(key.to_owned());
                self.keys.len()
            }
        };
        self.push(i);
    }

    fn output(&mut self, o: &Output) {
        self.key(&o.stream.key);
        self.key(&o.stream.live);
        self.push(&o.kind);
        self.push(o.order);
        self.bytes(o.data.clone());
    }
}

fn parse_entries(stream: &StreamInfo, raw: Vec<super::RawEntry>) -> Vec<Entry> {
    raw.into_iter()
        .map(|(id, fields)| {
            let text = |name| {
                field(&fields, name).map(|b| String::from_utf8_lossy(b).into_owned())
            };
            let number = |name| text(name).and_then(|t| t.parse::<u64>().ok());
            let (Some(order), Some(data)) = (number("o"), field(&fields, "d")) else {
                panic!(
                    "ezq: entry {id} of the Redis queue `{}` is not an ezq message (no `o` and `d` fields)",
                    stream.name
                );
            };
            Entry {
                kind: text("k").unwrap_or_default(),
                order,
                data: data.to_vec(),
                failures: number("f").unwrap_or(0),
                claimed: false,
                id,
            }
        })
        .collect()
}
