//! The routed flavor: a queue read by the replicas of one worker, made of
//! one [local](super::local) channel per replica, whose producers choose
//! the channel of each item. A keyed queue sends a message to the replica
//! its key picks, so one replica sees every message of a key; a broadcast
//! queue sends every replica a copy of each message.
//!
//! A block of a batched keyed queue is split as it leaves: each replica
//! gets the part of the block that is its own, in the order the messages
//! were put, in items of at most `part` messages (a part may hold the
//! whole block when keys are skewed: cut so, each channel holds at most
//! its slots times `part` messages).
//!
//! END reaches every channel: each one disconnects when the producers are
//! gone (their one shared [`Tx`] holds every channel's sender), and an
//! explicit END (a source's gate) is sent on each, once.
//!
//! A replica that is gone loses only its own channel: what a producer
//! sends there afterwards is dropped, and the account shows it (it was
//! counted as put and is never taken). A send fails, handing its item
//! back, only once every replica is gone, as a send on an unrouted queue
//! does.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::{Ending, Item, SendError, local};
use crate::Msg;

/// A function that keys the messages of a keyed queue: from
/// [`Graph::keyed_queue`](crate::Graph::keyed_queue) or `q[by KEY]` in
/// `pipeline!`. Every message of a key goes to the same replica of the
/// queue's reader, for the queue's life.
///
/// Any `fn(&T) -> K` or closure `|m: &T| -> K` whose key `K` implements
/// [`Hash`] is one, and the key may borrow from the message: a function
/// `fn(&(String, u64)) -> &str` keys by the string without copying it. (A
/// closure cannot return a borrow; write a function for that.) Keys that
/// are equal must hash equally, as [`Hash`] requires; the key's [`Hash`]
/// is fed to the standard library's `DefaultHasher`, built the same way
/// each time, so the replica of a key is the same from one run to the
/// next of the same program.
///
/// ```
/// use ezq::graph::KeyFn;
///
/// fn user(event: &(String, u32)) -> &str {
///     &event.0
/// }
///
/// fn keys<F: for<'a> KeyFn<'a, (String, u32)>>(_key: F) {}
/// keys(user);
/// keys(|event: &(String, u32)| event.1 % 10);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot key a queue of `{T}`",
    label = "expected a key function `fn(&{T}) -> K`, where `K: Hash`",
    note = "`q[by KEY]` calls KEY with a reference to each message of the queue (`&{T}`), and sends the message to the replica that the key's hash picks: the key must implement `Hash`"
)]
pub trait KeyFn<'a, T: 'a>: Send + Sync + 'static {
    /// The key of a message.
    type Key: Hash;

    /// The key of `message`.
    fn key(&self, message: &'a T) -> Self::Key;
}

impl<'a, T: 'a, F, K> KeyFn<'a, T> for F
where
    F: Fn(&'a T) -> K + Send + Sync + 'static,
    K: Hash,
{
    type Key = K;

    #[inline]
    fn key(&self, message: &'a T) -> K {
        self(message)
    }
}

/// How a routed queue chooses the replicas of an item.
pub(crate) enum Route<T> {
    /// To the replica its key's hash picks.
    Keyed(Arc<dyn Fn(&T) -> u64 + Send + Sync>),
    /// To every replica, each its own copy.
    Broadcast(fn(&T) -> T),
}

impl<T> Clone for Route<T> {
    fn clone(&self) -> Self {
        match self {
            Route::Keyed(hash) => Route::Keyed(Arc::clone(hash)),
            Route::Broadcast(copy) => Route::Broadcast(*copy),
        }
    }
}

impl<T: 'static> Route<T> {
    /// Routes by `key`.
    pub(crate) fn keyed<F: for<'a> KeyFn<'a, T>>(key: F) -> Self {
        Route::Keyed(Arc::new(move |message: &T| {
            let mut hasher = DefaultHasher::new();
            key.key(message).hash(&mut hasher);
            hasher.finish()
        }))
    }

    /// Copies to every replica.
    pub(crate) fn broadcast() -> Self
    where
        T: Clone,
    {
        Route::Broadcast(T::clone)
    }
}

impl<T> Route<T> {
    /// How the route reads in a picture of the graph.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Route::Keyed(_) => "by key",
            Route::Broadcast(_) => "broadcast",
        }
    }

    /// How many copies of a message its queue's account counts, for
    /// `readers` replicas.
    pub(crate) fn copies(&self, readers: usize) -> u64 {
        match self {
            Route::Keyed(_) => 1,
            Route::Broadcast(_) => readers as u64,
        }
    }
}

/// The replica of `hash` among `n`: the high bits of `hash * n`, which
/// spread a well-mixed hash evenly without a division.
#[inline]
fn shard(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// The producing end of a routed queue; clones share its channels, and the
/// last one dropped disconnects them all.
pub(crate) struct Tx<T> {
    routes: Arc<Routes<T>>,
}

struct Routes<T> {
    /// One channel per replica of the reader.
    channels: Box<[local::Tx<T>]>,
    route: Route<T>,
    /// The most messages one item of a keyed block's part holds.
    part: usize,
    /// Channels whose reader a send found gone.
    gone: Box<[AtomicBool]>,
    /// Messages (copies, for a broadcast) routed to each channel and not
    /// handed back, delivered or dropped there: the queue's account per
    /// channel reads them.
    routed: Box<[Arc<AtomicU64>]>,
    /// Channels that have their END: an END sent again (after a deadline
    /// or a full channel) goes only where it has not gone yet.
    ended: Box<[AtomicBool]>,
}

/// A queue of `readers` channels (at least one), each holding at most
/// `capacity` items, and the reading end of each. A keyed block's part
/// leaves in items of at most `part` messages.
pub(crate) fn channel<T>(
    route: Route<T>,
    readers: usize,
    capacity: Option<usize>,
    part: usize,
    ending: Ending,
) -> (Tx<T>, Vec<local::Rx<T>>) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..readers.max(1))
        .map(|_| local::channel(capacity, ending))
        .unzip();
    let flags = || (0..txs.len()).map(|_| AtomicBool::new(false)).collect();
    let routes = Routes {
        gone: flags(),
        routed: (0..txs.len()).map(|_| Arc::default()).collect(),
        ended: flags(),
        channels: txs.into(),
        route,
        part: part.max(1),
    };
    let routes = Arc::new(routes);
    (Tx { routes }, rxs)
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Tx {
            routes: Arc::clone(&self.routes),
        }
    }
}

/// The copy of a message for one more replica.
fn copy_msg<T>(copy: fn(&T) -> T, msg: &Msg<T>) -> Msg<T> {
    Msg {
        data: copy(&msg.data),
        kind: msg.kind,
        order: msg.order,
    }
}

impl<T> Routes<T> {
    /// Counts `n` messages routed to channel `i`.
    fn count(&self, i: usize, n: usize) {
        self.routed[i].fetch_add(n as u64, Ordering::Relaxed);
    }

    fn shard_of(&self, hash: &(dyn Fn(&T) -> u64 + Send + Sync), data: &T) -> usize {
        shard(hash(data), self.channels.len())
    }

    fn all_gone(&self) -> bool {
        self.gone.iter().all(|g| g.load(Ordering::Relaxed))
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.channels.len()).filter(|&i| !self.gone[i].load(Ordering::Relaxed))
    }

    /// The messages of `block`, one part per channel, each in the block's
    /// order.
    fn split(
        &self,
        hash: &(dyn Fn(&T) -> u64 + Send + Sync),
        block: Vec<Msg<T>>,
    ) -> Vec<Vec<Msg<T>>> {
        let n = self.channels.len();
        let mut parts: Vec<Vec<Msg<T>>> = (0..n)
            .map(|_| Vec::with_capacity(block.len() / n + 1))
            .collect();
        for msg in block {
            parts[self.shard_of(hash, &msg.data)].push(msg);
        }
        parts
    }

    /// Sends `part` on channel `i` with `send`, in items of at most
    /// `self.part` messages; on a failure, what did not go (that item and
    /// the rest) comes back in the error.
    fn send_part(
        &self,
        i: usize,
        part: Vec<Msg<T>>,
        send: impl Fn(&local::Tx<T>, Item<T>) -> Result<(), SendError<T>>,
    ) -> Result<(), SendError<T>> {
        let tx = &self.channels[i];
        if part.len() <= self.part {
            return send(tx, Item::Batch(Box::new(part)));
        }
        let mut messages = part.into_iter();
        loop {
            let chunk: Vec<Msg<T>> = messages.by_ref().take(self.part).collect();
            if chunk.is_empty() {
                return Ok(());
            }
            if let Err(error) = send(tx, Item::Batch(Box::new(chunk))) {
                return Err(match error {
                    SendError::Full(Item::Batch(mut rest)) => {
                        rest.extend(messages);
                        SendError::Full(Item::Batch(rest))
                    }
                    SendError::Gone(Item::Batch(mut rest)) => {
                        rest.extend(messages);
                        SendError::Gone(Item::Batch(rest))
                    }
                    _ => unreachable!("a channel hands back the item it was given"),
                });
            }
        }
    }

    /// An item that channel `i` refused, its reader gone: handed back if
    /// every reader is gone, else dropped (its messages were counted as
    /// put: the account shows them dropped).
    fn refused(&self, i: usize, item: Item<T>) -> Result<(), Item<T>> {
        self.gone[i].store(true, Ordering::Relaxed);
        if self.all_gone() { Err(item) } else { Ok(()) }
    }

    /// Every copy of `item` for a broadcast, one per live channel, the
    /// item itself last; the item itself back if no channel is live
    /// (every replica is gone: the send fails, as on an unrouted queue).
    fn copies(&self, copy: fn(&T) -> T, item: Item<T>) -> Result<Vec<(usize, Item<T>)>, Item<T>> {
        let live: Vec<usize> = self.live().collect();
        let Some((&last, others)) = live.split_last() else {
            return Err(item);
        };
        let mut copies: Vec<(usize, Item<T>)> = (others.iter())
            .map(|&i| {
                let copied = match &item {
                    Item::Msg(msg) => Item::Msg(copy_msg(copy, msg)),
                    Item::Batch(block) => {
                        Item::Batch(Box::new(block.iter().map(|m| copy_msg(copy, m)).collect()))
                    }
                    Item::End => Item::End,
                };
                (i, copied)
            })
            .collect();
        copies.push((last, item));
        Ok(copies)
    }

    /// Sends each `(channel, item)` with `send`; what could not go (its
    /// reader gone) comes back only if nothing went and every reader is
    /// gone.
    fn send_copies(
        &self,
        copies: Vec<(usize, Item<T>)>,
        send: impl Fn(&local::Tx<T>, Item<T>) -> Result<(), Item<T>>,
    ) -> Result<(), Item<T>> {
        let mut delivered = false;
        let mut refused = None;
        for (i, item) in copies {
            match send(&self.channels[i], item) {
                Ok(()) => delivered = true,
                Err(item) => {
                    self.gone[i].store(true, Ordering::Relaxed);
                    // The item itself comes last: it is the one to hand back.
                    refused = Some(item);
                }
            }
        }
        match refused {
            Some(item) if !delivered && self.all_gone() => Err(item),
            _ => Ok(()),
        }
    }

    /// Sends the END on every channel that does not have it, with `send`;
    /// false if one was full.
    fn send_end(&self, send: impl Fn(&local::Tx<T>) -> Result<(), SendError<T>>) -> bool {
        let mut all = true;
        for (tx, ended) in self.channels.iter().zip(&self.ended) {
            if ended.load(Ordering::Acquire) {
                continue;
            }
            match send(tx) {
                Ok(()) | Err(SendError::Gone(_)) => ended.store(true, Ordering::Release),
                Err(SendError::Full(_)) => all = false,
            }
        }
        all
    }
}

impl<T> Tx<T> {
    pub(crate) fn send(&self, item: Item<T>) -> Result<(), Item<T>> {
        let routes = &*self.routes;
        match (&routes.route, item) {
            (_, Item::End) => {
                routes.send_end(|tx| tx.send(Item::End).map_err(SendError::Gone));
                Ok(())
            }
            (Route::Keyed(hash), Item::Msg(msg)) => {
                let i = routes.shard_of(&**hash, &msg.data);
                let sent = (routes.channels[i].send(Item::Msg(msg)))
                    .or_else(|item| routes.refused(i, item));
                if sent.is_ok() {
                    routes.count(i, 1);
                }
                sent
            }
            (Route::Keyed(hash), Item::Batch(block)) => {
                let (mut refused, mut refused_by): (Vec<Msg<T>>, Vec<(usize, usize)>) =
                    (Vec::new(), Vec::new());
                for (i, part) in routes.split(&**hash, *block).into_iter().enumerate() {
                    if part.is_empty() {
                        continue;
                    }
                    let n = part.len();
                    let send = |tx: &local::Tx<T>, item| tx.send(item).map_err(SendError::Gone);
                    match routes.send_part(i, part, send) {
                        Err(SendError::Gone(Item::Batch(part))) => {
                            routes.gone[i].store(true, Ordering::Relaxed);
                            routes.count(i, n - part.len());
                            refused_by.push((i, part.len()));
                            refused.extend(*part);
                        }
                        _ => routes.count(i, n),
                    }
                }
                match refused.is_empty() || !routes.all_gone() {
                    true => {
                        // Dropped where their replica is gone: counted there.
                        for (i, n) in refused_by {
                            routes.count(i, n);
                        }
                        Ok(())
                    }
                    false => Err(Item::Batch(Box::new(refused))),
                }
            }
            (Route::Broadcast(copy), item) => {
                let n = item.messages() as usize;
                routes.send_copies(routes.copies(*copy, item)?, local::Tx::send)?;
                // A copy for every replica, made or not (its replica gone).
                for i in 0..routes.channels.len() {
                    routes.count(i, n);
                }
                Ok(())
            }
        }
    }

    /// Sends without waiting. An item for one channel is tried there; a
    /// keyed block is tried part by part, and what did not fit comes back
    /// as [`SendError::Full`], to send again; a broadcast goes only if
    /// every channel has room (checked first, so a producer racing for
    /// the last slot may wait for it briefly).
    pub(crate) fn try_send(&self, item: Item<T>) -> Result<(), SendError<T>> {
        let routes = &*self.routes;
        match (&routes.route, item) {
            (_, Item::End) => match routes.send_end(|tx| tx.try_send(Item::End)) {
                true => Ok(()),
                false => Err(SendError::Full(Item::End)),
            },
            (Route::Keyed(hash), Item::Msg(msg)) => {
                let i = routes.shard_of(&**hash, &msg.data);
                let sent = match routes.channels[i].try_send(Item::Msg(msg)) {
                    Err(SendError::Gone(item)) => routes.refused(i, item).map_err(SendError::Gone),
                    other => other,
                };
                if sent.is_ok() {
                    routes.count(i, 1);
                }
                sent
            }
            (Route::Keyed(hash), Item::Batch(block)) => {
                let (mut full, mut refused, mut refused_by) = (Vec::new(), Vec::new(), Vec::new());
                for (i, part) in routes.split(&**hash, *block).into_iter().enumerate() {
                    if part.is_empty() {
                        continue;
                    }
                    let n = part.len();
                    match routes.send_part(i, part, local::Tx::try_send) {
                        Ok(()) => routes.count(i, n),
                        Err(SendError::Full(Item::Batch(part))) => {
                            routes.count(i, n - part.len());
                            full.extend(*part);
                        }
                        Err(SendError::Gone(Item::Batch(part))) => {
                            routes.gone[i].store(true, Ordering::Relaxed);
                            routes.count(i, n - part.len());
                            refused_by.push((i, part.len()));
                            refused.extend(*part);
                        }
                        Err(_) => unreachable!("a channel hands back the item it was given"),
                    }
                }
                if routes.all_gone() && !(full.is_empty() && refused.is_empty()) {
                    full.extend(refused);
                    return Err(SendError::Gone(Item::Batch(Box::new(full))));
                }
                // Dropped where their replica is gone: counted there.
                for (i, n) in refused_by {
                    routes.count(i, n);
                }
                match full.is_empty() {
                    true => Ok(()),
                    false => Err(SendError::Full(Item::Batch(Box::new(full)))),
                }
            }
            (Route::Broadcast(_), item) => {
                if routes.live().any(|i| routes.channels[i].is_full()) {
                    return Err(SendError::Full(item));
                }
                self.send(item).map_err(SendError::Gone)
            }
        }
    }

    /// Sends, waiting while a channel is full until `deadline`: for the
    /// END, which goes on waiting where it left off when called again.
    pub(crate) fn send_deadline(
        &self,
        item: Item<T>,
        deadline: Instant,
    ) -> Result<(), SendError<T>> {
        match item {
            Item::End => match self
                .routes
                .send_end(|tx| tx.send_deadline(Item::End, deadline))
            {
                true => Ok(()),
                false => Err(SendError::Full(Item::End)),
            },
            item => self.send(item).map_err(SendError::Gone),
        }
    }

    /// What the producers routed to each channel, counted as it goes (see
    /// the queue's account per channel).
    pub(crate) fn routed(&self) -> Vec<Arc<AtomicU64>> {
        self.routes.routed.to_vec()
    }

    /// Items waiting in every channel (a snapshot).
    pub(crate) fn len(&self) -> usize {
        self.routes.channels.iter().map(local::Tx::len).sum()
    }

    /// The most items every channel together holds; `None` if unbounded.
    pub(crate) fn capacity(&self) -> Option<usize> {
        let channels = &self.routes.channels;
        (channels[0].capacity()).map(|c| c * channels.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(readers: usize, ending: Ending) -> (Tx<u64>, Vec<local::Rx<u64>>) {
        channel(
            Route::keyed(|n: &u64| *n % 100),
            readers,
            None,
            usize::MAX,
            ending,
        )
    }

    fn drain(rx: &local::Rx<u64>) -> Vec<u64> {
        let mut got = Vec::new();
        loop {
            match rx.try_recv() {
                Some(Item::Msg(m)) => got.push(m.data),
                Some(Item::Batch(b)) => got.extend(b.into_iter().map(|m| m.data)),
                Some(Item::End) | None => return got,
            }
        }
    }

    #[test]
    fn a_key_goes_to_one_replica_every_time() {
        let (tx, rxs) = keyed(4, Ending::ProducersGone);
        for n in 0..1000u64 {
            assert!(tx.send(Item::Msg(Msg::new(n))).is_ok());
        }
        let block = (1000..2000).map(Msg::new).collect();
        assert!(tx.send(Item::Batch(Box::new(block))).is_ok());
        drop(tx);
        let mut owner = [None; 100];
        let mut total = 0;
        for (i, rx) in rxs.iter().enumerate() {
            let got = drain(rx);
            assert!(!got.is_empty(), "replica {i} got nothing");
            for n in &got {
                let key = (*n % 100) as usize;
                assert_eq!(
                    *owner[key].get_or_insert(i),
                    i,
                    "key {key} went to two replicas"
                );
            }
            // The parts of a block keep the order in which they were put.
            assert!(got.windows(2).all(|w| w[0] < w[1]));
            total += got.len();
            assert!(matches!(rx.try_recv(), Some(Item::End)));
        }
        assert_eq!(total, 2000);
    }

    #[test]
    fn a_broadcast_copies_to_every_replica() {
        let (tx, rxs) = channel(
            Route::<u64>::broadcast(),
            3,
            Some(8),
            8,
            Ending::ProducersGone,
        );
        assert!(tx.try_send(Item::Msg(Msg::new(7))).is_ok());
        let block = vec![Msg::new(1), Msg::new(2)];
        assert!(tx.send(Item::Batch(Box::new(block))).is_ok());
        drop(tx);
        for rx in &rxs {
            assert_eq!(drain(rx), [7, 1, 2]);
            assert!(matches!(rx.recv(), Item::End));
        }
    }

    #[test]
    fn an_explicit_end_reaches_every_channel_once() {
        let (tx, rxs) = channel(Route::keyed(|n: &u64| *n), 3, Some(1), 1, Ending::Explicit);
        let to_first = (0..1000).find(|&n| shard(hash_of(&tx, n), 3) == 0).unwrap();
        assert!(tx.send(Item::Msg(Msg::new(to_first))).is_ok());
        // The first channel is full: the END goes to the others now, and
        // to it once there is room, and nowhere twice (a second END would
        // not fit in a channel of one slot).
        assert!(matches!(
            tx.try_send(Item::End),
            Err(SendError::Full(Item::End))
        ));
        assert!(matches!(rxs[1].try_recv(), Some(Item::End)));
        assert!(matches!(rxs[0].try_recv(), Some(Item::Msg(_))));
        assert!(tx.try_send(Item::End).is_ok());
        for rx in &rxs {
            assert!(matches!(rx.try_recv(), Some(Item::End)));
            // Sticky: the reader put it back.
            assert!(matches!(rx.try_recv(), Some(Item::End)));
            assert_eq!(rx.len(), 1);
        }
        assert!(tx.send(Item::End).is_ok());
    }

    fn hash_of(tx: &Tx<u64>, n: u64) -> u64 {
        match &tx.routes.route {
            Route::Keyed(hash) => hash(&n),
            Route::Broadcast(_) => unreachable!(),
        }
    }

    #[test]
    fn a_gone_replica_loses_only_its_own_messages() {
        let (tx, mut rxs) = keyed(2, Ending::ProducersGone);
        let gone = rxs.remove(0);
        drop(gone);
        let to_gone = (0..100).find(|&n| shard(hash_of(&tx, n), 2) == 0).unwrap();
        let to_live = (0..100).find(|&n| shard(hash_of(&tx, n), 2) == 1).unwrap();
        // Dropped, not handed back: another replica is still there.
        assert!(tx.send(Item::Msg(Msg::new(to_gone))).is_ok());
        assert!(tx.send(Item::Msg(Msg::new(to_live))).is_ok());
        assert_eq!(drain(&rxs[0]), [to_live]);
        drop(rxs);
        // Every replica gone: the item comes back.
        assert!(tx.send(Item::Msg(Msg::new(to_live))).is_err());
        let block = vec![Msg::new(to_gone), Msg::new(to_live)];
        match tx.send(Item::Batch(Box::new(block))) {
            Err(item) => assert_eq!(item.messages(), 2),
            Ok(()) => panic!("a block sent to no reader at all went through"),
        }
    }

    #[test]
    fn a_broadcast_with_no_replica_left_hands_back_every_item() {
        let (tx, rxs) = channel(
            Route::<u64>::broadcast(),
            2,
            Some(4),
            4,
            Ending::ProducersGone,
        );
        drop(rxs);
        for n in 0..3 {
            assert!(tx.send(Item::Msg(Msg::new(n))).is_err());
            assert!(matches!(
                tx.try_send(Item::Msg(Msg::new(n))),
                Err(SendError::Gone(_))
            ));
        }
    }

    #[test]
    fn a_skewed_part_leaves_in_items_of_at_most_part_messages() {
        let (tx, rxs) = channel(
            Route::keyed(|_: &u64| 0),
            2,
            Some(2),
            3,
            Ending::ProducersGone,
        );
        let owner = shard(hash_of(&tx, 0), 2);
        let block = (0..8).map(Msg::new).collect();
        // 8 messages of one key: 3 fit (one item), the rest comes back.
        match tx.try_send(Item::Batch(Box::new(block))) {
            Err(SendError::Full(Item::Batch(rest))) => {
                assert_eq!(rest.iter().map(|m| m.data).collect::<Vec<_>>(), [6, 7]);
            }
            _ => panic!("a part larger than its channel went whole"),
        }
        let mut sizes = Vec::new();
        while let Some(Item::Batch(b)) = rxs[owner].try_recv() {
            sizes.push(b.len());
        }
        assert_eq!(sizes, [3, 3]);
    }

    #[test]
    fn keys_spread_over_the_replicas() {
        let (tx, rxs) = channel(
            Route::keyed(|n: &u64| *n),
            4,
            None,
            1,
            Ending::ProducersGone,
        );
        for n in 0..4000u64 {
            assert!(tx.send(Item::Msg(Msg::new(n))).is_ok());
        }
        drop(tx);
        for rx in &rxs {
            let n = drain(rx).len();
            assert!(
                (800..1200).contains(&n),
                "{n} of 4000 keys on one of 4 replicas"
            );
        }
    }
}
