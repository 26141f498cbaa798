//! The Redis flavor: a queue is a Redis stream that several processes, on
//! several machines, put into and read from.
//!
//! - A message is a stream entry with fields `k` (kind), `o` (order), `d`
//!   (the data, encoded with postcard) and, once a worker failed on it, `f`
//!   (how many times).
//! - Readers form one consumer group, `readers`: each entry goes to one
//!   consumer, and stays in the group's pending list until acknowledged.
//!   A consumer is one thread ([`session`]): it acknowledges what it took
//!   when it asks for more, in one atomic commit with what it put while
//!   handling it ([`scripts::COMMIT`]); an entry held too long by a consumer
//!   (it died) is claimed by another (`XAUTOCLAIM`).
//! - A producer is a process: it registers in the queue's producer set
//!   with a lease that a background thread renews ([`cluster`]), and ends
//!   its part by joining the ended set. The queue has ended for its readers
//!   when every registered producer has ended or let its lease run out,
//!   every entry was delivered and none is pending ([`scripts::ENDED`]).
//! - The queue's message type travels as a key beside the stream: a
//!   process whose type differs refuses to start.

pub(crate) mod cluster;
mod scripts;
mod session;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis::Value;

use self::cluster::Shared;
use self::session::{Next, Room};
use super::{Item, SendError};
use crate::Msg;
use crate::sync::lock;

pub(crate) use session::{Outcome, flush_thread, thread_done, worker_thread};

/// The group every reader of a stream belongs to.
const GROUP: &str = "readers";

/// Messages a reader takes at once, and a writer sends at once, unless
/// the queue's block says otherwise.
pub(crate) const DEFAULT_BLOCK: usize = 256;

/// A Redis-backed queue, untyped: its keys and what this process knows
/// of it.
pub(crate) struct StreamInfo {
    pub(crate) cluster: Arc<Shared>,
    /// The queue's name in the graph.
    pub(crate) name: String,
    /// The stream.
    pub(crate) key: String,
    /// Its producers: a sorted set of instances, scored by lease end.
    pub(crate) producers: String,
    /// The producers that have ended.
    pub(crate) ended_set: String,
    /// The message type's name.
    type_key: String,
    /// Entries not yet acknowledged (see [`scripts`]).
    pub(crate) live: String,
    /// Set once readers saw the END: no producer registers after it.
    pub(crate) over: String,
    /// How many times each claimed entry was handed out.
    pub(crate) attempts: String,
    /// Set when a reader discarded the rest of the queue on purpose.
    pub(crate) discarded: String,
    /// The most entries the stream holds before producers wait.
    pub(crate) capacity: usize,
    /// Messages read or written at once.
    pub(crate) block: usize,
    /// Readers saw the END.
    pub(crate) ended: AtomicBool,
    /// This pipeline's name as a producer of the queue, once registered;
    /// whether it ended its part.
    producer: Mutex<Option<String>>,
    end_sent: AtomicBool,
    /// Whether the pipeline was cancelled: a producer waiting for room
    /// stops waiting.
    pub(crate) stop: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
    /// Messages sent to the dead-letter stream by this process.
    pub(crate) dead_lettered: Arc<AtomicU64>,
}

impl StreamInfo {
    /// Registers this pipeline as a producer, once.
    pub(crate) fn register(&self, conn: &mut Option<redis::Connection>) {
        let mut producer = lock(&self.producer);
        if producer.is_none() {
            let name = self.cluster.producer_name();
            (self.cluster).register(conn, &self.name, &self.producers, &self.over, &name);
            *producer = Some(name);
        }
    }

    /// This pipeline's name as a producer, if it registered.
    pub(crate) fn producer(&self) -> Option<String> {
        lock(&self.producer).clone()
    }

    /// Ends this pipeline's part of the queue, if it is a producer.
    pub(crate) fn end(&self, conn: &mut Option<redis::Connection>) {
        if let Some(name) = self.producer()
            && !self.end_sent.swap(true, Ordering::AcqRel)
        {
            self.cluster
                .end(conn, &self.producers, &self.ended_set, &name);
        }
    }

    /// Whether the pipeline was cancelled.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.get().is_some_and(|stop| stop())
    }
}

/// A Redis-backed queue of `T`.
pub(crate) struct Stream<T> {
    pub(crate) info: Arc<StreamInfo>,
    codec: Codec<T>,
}

/// How a message type crosses the wire: made where `T`'s serde traits are
/// known, used where they are not.
pub(crate) struct Codec<T> {
    type_name: &'static str,
    encode: fn(&T) -> Result<Vec<u8>, String>,
    decode: fn(&[u8]) -> Result<T, String>,
}

impl<T> Clone for Codec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Codec<T> {}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> {
    pub(crate) fn postcard() -> Self {
        Codec {
            type_name: std::any::type_name::<T>(),
            encode: |value| postcard::to_stdvec(value).map_err(|e| e.to_string()),
            decode: |bytes| postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        }
    }
}

impl<T> Stream<T> {
    /// The queue `name` of the cluster's job.
    pub(crate) fn new(
        cluster: &Arc<Shared>,
        name: &str,
        codec: Codec<T>,
        capacity: usize,
        block: usize,
    ) -> Arc<Self> {
        let key = cluster.queue_key(name);
        Arc::new(Stream {
            info: Arc::new(StreamInfo {
                cluster: Arc::clone(cluster),
                name: name.to_owned(),
                producers: format!("{key}:producers"),
                ended_set: format!("{key}:ended"),
                type_key: format!("{key}:type"),
                live: format!("{key}:live"),
                over: format!("{key}:over"),
                attempts: format!("{key}:attempts"),
                discarded: format!("{key}:discarded"),
                key,
                capacity: capacity.max(1),
                block: block.max(1),
                ended: AtomicBool::new(false),
                producer: Mutex::new(None),
                end_sent: AtomicBool::new(false),
                stop: std::sync::OnceLock::new(),
                dead_lettered: Arc::default(),
            }),
            codec,
        })
    }

    /// Makes sure the stream and its group exist and that it carries this
    /// process's message type.
    ///
    /// # Errors
    /// If the stream was made for another type, or the server is gone.
    pub(crate) fn prepare(&self) -> Result<(), String> {
        let info = &self.info;
        let mut conn = info
            .cluster
            .connect()
            .map_err(|e| info.cluster.error(&e).to_string())?;
        let fail = |e: redis::RedisError| info.cluster.error(&e).to_string();
        let stored: String = redis::cmd("SET")
            .arg(&info.type_key)
            .arg(self.codec.type_name)
            .arg("NX")
            .arg("GET")
            .query::<Option<String>>(&mut conn)
            .map_err(fail)?
            .unwrap_or_else(|| self.codec.type_name.to_owned());
        if stored != self.codec.type_name {
            return Err(format!(
                "ezq: the Redis queue `{}` of job `{}` carries `{stored}`, but this program's `{}` carries `{}`: \
                 a program with another message type ran this job (remove the job's keys, or use another EZQ_JOB)",
                info.name, info.cluster.job, info.name, self.codec.type_name
            ));
        }
        match redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&info.key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query::<()>(&mut conn)
        {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(fail(e)),
            _ => Ok(()),
        }
    }

    fn encode(&self, msg: &Msg<T>) -> session::Output {
        let data = (self.codec.encode)(&msg.data).unwrap_or_else(|e| {
            panic!(
                "ezq: a message for the Redis queue `{}` does not encode as `{}`: {e}",
                self.info.name, self.codec.type_name
            )
        });
        session::Output {
            stream: Arc::clone(&self.info),
            kind: msg.kind.as_str().to_owned(),
            order: msg.order,
            data,
        }
    }

    fn decode(&self, entry: session::Entry) -> Msg<T> {
        let data = (self.codec.decode)(&entry.data).unwrap_or_else(|e| {
            panic!(
                "ezq: entry {} of the Redis queue `{}` is not a `{}`: {e}",
                entry.id, self.info.name, self.codec.type_name
            )
        });
        Msg::new(data).kind(entry.kind.as_str()).order(entry.order)
    }
}

/// A process's part as a producer of a queue: when the last of its
/// senders is gone, its END goes.
pub(crate) struct Producer {
    info: Arc<StreamInfo>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Never panics: an END that cannot be written is replaced by the
        // lease running out.
        self.info.end(&mut None);
    }
}

pub(crate) struct Tx<T> {
    stream: Arc<Stream<T>>,
    producer: Arc<Producer>,
}

pub(crate) struct Rx<T> {
    stream: Arc<Stream<T>>,
}

pub(crate) fn channel<T>(stream: &Arc<Stream<T>>) -> (Tx<T>, Rx<T>) {
    let producer = Arc::new(Producer {
        info: Arc::clone(&stream.info),
    });
    (
        Tx {
            stream: Arc::clone(stream),
            producer,
        },
        Rx {
            stream: Arc::clone(stream),
        },
    )
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Tx {
            stream: Arc::clone(&self.stream),
            producer: Arc::clone(&self.producer),
        }
    }
}

impl<T> Drop for Tx<T> {
    fn drop(&mut self) {
        // A worker's results are committed when its thread finishes: its
        // part of the queue ends after that.
        session::keep_until_done(Arc::clone(&self.producer));
    }
}

impl<T> Clone for Rx<T> {
    fn clone(&self) -> Self {
        Rx {
            stream: Arc::clone(&self.stream),
        }
    }
}

impl<T> Tx<T> {
    /// Registers this process as a producer of the queue now, so that its
    /// readers wait for its END.
    pub(crate) fn register(&self) {
        session::register(&self.stream.info);
    }

    /// Sends; then, if the queue is full, waits for room as `room` says.
    fn send_waiting(&self, item: Item<T>, room: Room) {
        match item {
            Item::Msg(msg) => session::put(vec![self.stream.encode(&msg)], room),
            Item::Batch(block) => {
                session::put(block.iter().map(|m| self.stream.encode(m)).collect(), room);
            }
            Item::End => session::end(&self.stream.info),
        }
    }

    /// Sends, and waits while the queue is full (or until the pipeline is
    /// cancelled).
    pub(crate) fn send(&self, item: Item<T>) -> Result<(), Item<T>> {
        self.send_waiting(item, Room::Wait);
        Ok(())
    }

    /// Sends without waiting for room: the queue may go over its capacity
    /// by what this send holds.
    pub(crate) fn try_send(&self, item: Item<T>) -> Result<(), SendError<T>> {
        self.send_waiting(item, Room::DontWait);
        Ok(())
    }

    /// Sends, waiting for room until `deadline` at most.
    pub(crate) fn send_deadline(
        &self,
        item: Item<T>,
        deadline: Instant,
    ) -> Result<(), SendError<T>> {
        self.send_waiting(item, Room::Until(deadline));
        Ok(())
    }

    /// Stops the queue's producers waiting for room once `stop` says so.
    pub(crate) fn stop_when(&self, stop: Box<dyn Fn() -> bool + Send + Sync>) {
        let _ = self.stream.info.stop.set(stop);
    }

    pub(crate) fn len(&self) -> usize {
        0
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        Some(self.stream.info.capacity)
    }

    pub(crate) fn dead_lettered(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.stream.info.dead_lettered)
    }
}

impl<T> Rx<T> {
    fn next(&self, deadline: Option<Instant>) -> Option<Item<T>> {
        match session::next(&self.stream.info, deadline) {
            Next::Entry(entry) => Some(Item::Msg(self.stream.decode(entry))),
            Next::End => Some(Item::End),
            Next::Nothing => None,
        }
    }

    pub(crate) fn try_recv(&self) -> Option<Item<T>> {
        self.next(Some(Instant::now()))
    }

    pub(crate) fn recv(&self) -> Item<T> {
        self.next(None).unwrap_or(Item::End)
    }

    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Option<Item<T>> {
        self.next(Some(deadline))
    }

    pub(crate) fn len(&self) -> usize {
        session::buffered(&self.stream.info)
    }

    /// A reader discards the rest of the queue on purpose, for every
    /// process: what is put into it from now on is dropped, and its
    /// producers never wait for room.
    pub(crate) fn discard(&self) {
        session::discard(&self.stream.info);
    }

    /// This thread's reader of the queue is gone: what it took and did
    /// not get to goes back to the queue.
    pub(crate) fn close(&self) {
        session::reader_closed(&self.stream.info);
    }
}

/// An entry as the server sends it: its id and fields.
pub(crate) type RawEntry = (String, Vec<(String, Vec<u8>)>);

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The entries of an `XRANGE` reply: `[[id, [field, value, ..]], ..]`.
pub(crate) fn range_reply(reply: &Value) -> Vec<RawEntry> {
    let entry = |v: &Value| {
        let Value::Array(parts) = v else { return None };
        let [id, Value::Array(fields)] = parts.as_slice() else {
            return None;
        };
        let fields = fields
            .chunks(2)
            .filter_map(|pair| match pair {
                [name, Value::BulkString(value)] => Some((text(name)?, value.clone())),
                _ => None,
            })
            .collect();
        Some((text(id)?, fields))
    };
    match reply {
        Value::Array(items) => items.iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}

/// The entries of an `XREADGROUP` reply on one stream: nil, or
/// `[[key, entries]]`.
pub(crate) fn read_reply(reply: &Value) -> Vec<RawEntry> {
    match reply {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => range_reply(&pair[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().flat_map(|(_, v)| range_reply(v)).collect(),
        _ => Vec::new(),
    }
}

/// The next cursor and the entries of an `XAUTOCLAIM` reply:
/// `[cursor, entries, deleted ids]`.
pub(crate) fn claim_reply(reply: &Value) -> (String, Vec<RawEntry>) {
    match reply {
        Value::Array(parts) if parts.len() >= 2 => (
            text(&parts[0]).unwrap_or_else(|| "0-0".to_owned()),
            range_reply(&parts[1]),
        ),
        _ => ("0-0".to_owned(), Vec::new()),
    }
}

/// A field of an entry.
pub(crate) fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}
