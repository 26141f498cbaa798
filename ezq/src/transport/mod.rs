//! The transport layer: how an item crosses from a queue's producers to its
//! readers. The rest of the runtime sees only [`Tx`], [`Rx`], [`Item`],
//! [`select`] and the END protocol of [`end`]; each way of moving items is a
//! flavor in a file of its own (today [`local`]: an in-process channel).
//!
//! To add a flavor: write `transport/<name>.rs` with the same operations as
//! `local.rs`, add a variant to [`Tx`] and [`Rx`] and an arm to each match
//! below, and a constructor beside [`channel`]. Inboxes, outboxes, sources,
//! sinks, batching and statistics do not change.

mod end;
mod local;

use std::time::Instant;

pub(crate) use end::Gate;

use crate::Msg;

/// What travels through a queue: a message, a block of messages (on a
/// batched queue), or the END of the stream. END is in-band so that it
/// queues behind the messages sent before it.
///
/// The enum adds one word to `Msg<T>`: [`Kind`](crate::Kind) leaves no
/// invalid bit pattern to hide the variant in, on purpose.
pub(crate) enum Item<T> {
    Msg(Msg<T>),
    /// Boxed, so that the item stays one word over a message even when the
    /// message is smaller than a `Vec`.
    #[allow(clippy::box_collection)]
    Batch(Box<Vec<Msg<T>>>),
    End,
}

impl<T> Item<T> {
    /// The message to hand back from an item that could not be sent: for a
    /// block, its last message, the one whose `put` sent the block.
    pub(crate) fn into_last_msg(self) -> Option<Msg<T>> {
        match self {
            Item::Msg(msg) => Some(msg),
            Item::Batch(block) => block.into_iter().last(),
            Item::End => None,
        }
    }

    /// How many messages the item carries.
    pub(crate) fn messages(&self) -> u64 {
        match self {
            Item::Msg(_) => 1,
            Item::Batch(block) => block.len() as u64,
            Item::End => 0,
        }
    }
}

/// How a queue's readers learn that it has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its producers go away (a pipeline's workers return): the readers
    /// see END once every [`Tx`] is dropped.
    ProducersGone,
    /// Someone ends it explicitly (a source, a hand-made queue) by sending
    /// one [`Item::End`] through the queue's [`Gate`]. The END is sticky:
    /// a reader that takes it puts it back for the others.
    Explicit,
}

/// Why a send did not go through; the item comes back.
pub(crate) enum SendError<T> {
    /// The queue is full (`try_send`) or stayed full until the deadline.
    Full(Item<T>),
    /// Every reader is gone.
    Gone(Item<T>),
}

/// The producing end of a queue; clones share the queue.
pub(crate) enum Tx<T> {
    Local(local::Tx<T>),
}

/// The reading end of a queue; clones share the queue (each item goes to
/// one reader).
pub(crate) enum Rx<T> {
    Local(local::Rx<T>),
}

/// A queue holding at most `capacity` items (`None`: no limit; at least 1).
pub(crate) fn channel<T>(capacity: Option<usize>, ending: Ending) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = local::channel(capacity, ending);
    (Tx::Local(tx), Rx::Local(rx))
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        match self {
            Tx::Local(tx) => Tx::Local(tx.clone()),
        }
    }
}

impl<T> Clone for Rx<T> {
    fn clone(&self) -> Self {
        match self {
            Rx::Local(rx) => Rx::Local(rx.clone()),
        }
    }
}

impl<T> Tx<T> {
    /// Sends without waiting.
    #[inline(always)]
    pub(crate) fn try_send(&self, item: Item<T>) -> Result<(), SendError<T>> {
        match self {
            Tx::Local(tx) => tx.try_send(item),
        }
    }

    /// Sends, waiting while the queue is full; `Err` with the item if every
    /// reader is gone.
    #[inline(always)]
    pub(crate) fn send(&self, item: Item<T>) -> Result<(), Item<T>> {
        match self {
            Tx::Local(tx) => tx.send(item),
        }
    }

    /// Sends, waiting while the queue is full until `deadline`.
    #[inline(always)]
    pub(crate) fn send_deadline(
        &self,
        item: Item<T>,
        deadline: Instant,
    ) -> Result<(), SendError<T>> {
        match self {
            Tx::Local(tx) => tx.send_deadline(item, deadline),
        }
    }

    /// Items waiting in the queue (a snapshot).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Tx::Local(tx) => tx.len(),
        }
    }

    /// The most items the queue holds; `None` if unbounded.
    pub(crate) fn capacity(&self) -> Option<usize> {
        match self {
            Tx::Local(tx) => tx.capacity(),
        }
    }
}

impl<T> Rx<T> {
    /// The next item if one is waiting. Once the queue has ended this
    /// returns [`Item::End`], every time.
    #[inline]
    pub(crate) fn try_recv(&self) -> Option<Item<T>> {
        match self {
            Rx::Local(rx) => rx.try_recv(),
        }
    }

    /// The next item, waiting for one; [`Item::End`] once the queue has
    /// ended, every time.
    pub(crate) fn recv(&self) -> Item<T> {
        match self {
            Rx::Local(rx) => rx.recv(),
        }
    }

    /// Like [`recv`](Rx::recv), waiting at most until `deadline`: `None` if
    /// nothing came by then.
    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Option<Item<T>> {
        match self {
            Rx::Local(rx) => rx.recv_deadline(deadline),
        }
    }

    /// Items waiting in the queue (a snapshot).
    pub(crate) fn len(&self) -> usize {
        match self {
            Rx::Local(rx) => rx.len(),
        }
    }
}

/// Which of two queues [`select`] took from.
pub(crate) enum Selected<A, B> {
    Left(Item<A>),
    Right(Item<B>),
}

/// Waits until either queue has an item (or has ended) and takes it.
pub(crate) fn select<A, B>(left: &Rx<A>, right: &Rx<B>) -> Selected<A, B> {
    match (left, right) {
        (Rx::Local(l), Rx::Local(r)) => local::select(l, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_adds_at_most_a_word_to_its_message() {
        assert_eq!(size_of::<Item<u64>>(), 32);
        assert_eq!(
            size_of::<Item<(u64, u64)>>(),
            size_of::<Msg<(u64, u64)>>() + 8
        );
    }

    #[test]
    fn readers_see_end_when_every_producer_is_gone() {
        let (tx, rx) = channel::<u8>(Some(2), Ending::ProducersGone);
        tx.send(Item::Msg(Msg::new(1))).ok();
        drop(tx);
        assert!(matches!(rx.recv(), Item::Msg(_)));
        assert!(matches!(rx.recv(), Item::End));
        assert!(matches!(rx.try_recv(), Some(Item::End)));
    }

    #[test]
    fn an_explicit_end_is_sticky_for_every_reader() {
        let (tx, rx) = channel::<u8>(Some(1), Ending::Explicit);
        let other = rx.clone();
        tx.send(Item::End).ok();
        assert!(matches!(rx.recv(), Item::End));
        assert!(matches!(other.recv(), Item::End));
        assert!(matches!(rx.try_recv(), Some(Item::End)));
    }
}
