//! The in-process flavor: a crossbeam channel per queue.

use std::time::Instant;

use crossbeam_channel::{
    Receiver, RecvTimeoutError, Select, SendTimeoutError, Sender, TryRecvError, TrySendError,
};

use super::{Ending, Item, Selected, SendError};

pub(crate) struct Tx<T> {
    tx: Sender<Item<T>>,
}

pub(crate) struct Rx<T> {
    rx: Receiver<Item<T>>,
    /// For a queue that ends explicitly: where a reader puts the END back
    /// for the other readers. (Holding a sender keeps the channel from
    /// disconnecting, which such a queue does not need.)
    resend: Option<Sender<Item<T>>>,
}

pub(crate) fn channel<T>(capacity: Option<usize>, ending: Ending) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = match capacity {
        Some(n) => crossbeam_channel::bounded(n.max(1)),
        None => crossbeam_channel::unbounded(),
    };
    let resend = (ending == Ending::Explicit).then(|| tx.clone());
    (Tx { tx }, Rx { rx, resend })
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Tx {
            tx: self.tx.clone(),
        }
    }
}

impl<T> Clone for Rx<T> {
    fn clone(&self) -> Self {
        Rx {
            rx: self.rx.clone(),
            resend: self.resend.clone(),
        }
    }
}

impl<T> Tx<T> {
    #[inline(always)]
    pub(crate) fn try_send(&self, item: Item<T>) -> Result<(), SendError<T>> {
        self.tx.try_send(item).map_err(|e| match e {
            TrySendError::Full(item) => SendError::Full(item),
            TrySendError::Disconnected(item) => SendError::Gone(item),
        })
    }

    #[inline(always)]
    pub(crate) fn send(&self, item: Item<T>) -> Result<(), Item<T>> {
        self.tx.send(item).map_err(|e| e.into_inner())
    }

    #[inline(always)]
    pub(crate) fn send_deadline(
        &self,
        item: Item<T>,
        deadline: Instant,
    ) -> Result<(), SendError<T>> {
        self.tx.send_deadline(item, deadline).map_err(|e| match e {
            SendTimeoutError::Timeout(item) => SendError::Full(item),
            SendTimeoutError::Disconnected(item) => SendError::Gone(item),
        })
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.tx.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.tx.is_full()
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        self.tx.capacity()
    }
}

impl<T> Rx<T> {
    /// What a reader sees of an item taken, or of a disconnection: an END
    /// is put back for the other readers.
    #[inline]
    fn taken(&self, item: Option<Item<T>>) -> Item<T> {
        match item {
            Some(Item::End) | None => {
                if let Some(tx) = &self.resend {
                    // The END was the last item ever sent (the gate admits no
                    // put after it), so taking it left room for it.
                    let _ = tx.try_send(Item::End);
                }
                Item::End
            }
            Some(item) => item,
        }
    }

    #[inline]
    pub(crate) fn try_recv(&self) -> Option<Item<T>> {
        match self.rx.try_recv() {
            Ok(item) => Some(self.taken(Some(item))),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(self.taken(None)),
        }
    }

    pub(crate) fn recv(&self) -> Item<T> {
        self.taken(self.rx.recv().ok())
    }

    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Option<Item<T>> {
        match self.rx.recv_deadline(deadline) {
            Ok(item) => Some(self.taken(Some(item))),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(self.taken(None)),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }
}

pub(crate) fn select<A, B>(left: &Rx<A>, right: &Rx<B>) -> Selected<A, B> {
    let mut select = Select::new();
    let l = select.recv(&left.rx);
    select.recv(&right.rx);
    let op = select.select();
    if op.index() == l {
        Selected::Left(left.taken(op.recv(&left.rx).ok()))
    } else {
        Selected::Right(right.taken(op.recv(&right.rx).ok()))
    }
}
