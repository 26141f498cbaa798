//! [`Sink`]: a queue that the pipeline's caller reads.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::Msg;
use crate::batch;
use crate::stats::QueueCounters;
use crate::sync::lock;
use crate::transport::{Item, Rx};

/// A queue that the pipeline's caller reads: a field of the pipeline handle
/// for each queue that no worker consumes.
///
/// [`iter`](Sink::iter) yields messages as they come and ends when every
/// worker producing the queue has finished. Sinks are unbounded, so a
/// pipeline never waits for its caller to read them. What the caller leaves
/// unread is the caller's choice: it is not counted as dropped.
pub struct Sink<T> {
    rx: Rx<T>,
    block: Mutex<std::vec::IntoIter<Msg<T>>>,
    queue: Arc<QueueCounters>,
    ended: AtomicBool,
}

impl<T> fmt::Debug for Sink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink").field("len", &self.rx.len()).finish()
    }
}

impl<T> Sink<T> {
    pub(crate) fn new(rx: Rx<T>, queue: Arc<QueueCounters>) -> Self {
        Sink {
            rx,
            block: Mutex::new(Vec::new().into_iter()),
            queue,
            ended: AtomicBool::new(false),
        }
    }

    /// The next message, waiting for one; `None` once every producer of the
    /// queue has finished and the queue is empty.
    pub fn recv(&self) -> Option<Msg<T>> {
        self.next_msg(|rx| {
            rx.try_recv().or_else(|| {
                // This thread may hold batched source messages that the
                // pipeline needs in order to produce what it waits for.
                batch::flush_unsent();
                Some(rx.recv())
            })
        })
    }

    /// The next message if one is waiting, without waiting.
    pub fn try_recv(&self) -> Option<Msg<T>> {
        self.next_msg(Rx::try_recv)
    }

    fn next_msg(&self, mut take: impl FnMut(&Rx<T>) -> Option<Item<T>>) -> Option<Msg<T>> {
        let mut block = lock(&self.block);
        loop {
            if let Some(msg) = block.next() {
                self.queue.add_taken(1);
                return Some(msg);
            }
            if self.ended.load(Ordering::Acquire) {
                return None;
            }
            match take(&self.rx)? {
                Item::Msg(msg) => {
                    self.queue.add_taken(1);
                    return Some(msg);
                }
                Item::Batch(b) => *block = b.into_iter(),
                Item::End => {
                    self.ended.store(true, Ordering::Release);
                    return None;
                }
            }
        }
    }

    /// Iterates over the messages until every producer has finished.
    pub fn iter(&self) -> SinkIter<'_, T> {
        SinkIter { sink: self }
    }

    /// Number of messages waiting to be read (a block of a batched queue
    /// counts as one until it is read).
    pub fn len(&self) -> usize {
        self.rx.len() + lock(&self.block).len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Sink<T> {
    fn drop(&mut self) {
        self.rx.close();
    }
}

impl<'a, T> IntoIterator for &'a Sink<T> {
    type Item = Msg<T>;
    type IntoIter = SinkIter<'a, T>;

    fn into_iter(self) -> SinkIter<'a, T> {
        self.iter()
    }
}

/// The iterator of [`Sink::iter`].
#[derive(Debug)]
pub struct SinkIter<'a, T> {
    sink: &'a Sink<T>,
}

impl<T> Iterator for SinkIter<'_, T> {
    type Item = Msg<T>;

    fn next(&mut self) -> Option<Msg<T>> {
        self.sink.recv()
    }
}
