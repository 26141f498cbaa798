//! The reorder buffer: [`sortiter`].

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::Msg;
use crate::control;

/// Yields messages by `order`, starting at 0 (Python ezq's `sortiter`).
///
/// Streaming: each message comes out as soon as every lower order has come
/// out. Messages that arrive early wait in a min-heap (O(log k) per message
/// for k waiting). When the input ends, whatever still waits (after a gap,
/// a duplicate order, an order below the run) comes out in ascending order:
/// no message is ever lost. Equal orders keep their arrival order.
///
/// Inside a pipeline worker, it also bounds its own buffer: the pipeline's
/// sources wait before running more than a window of orders ahead of the
/// order it waits for (see [`Graph::window`](crate::Graph::window)).
///
/// ```
/// use ezq::Msg;
///
/// let shuffled = [2, 0, 3, 1].map(|i| Msg::new(i * 10).order(i));
/// let data: Vec<u64> = ezq::sortiter(shuffled).map(|m| m.data).collect();
/// assert_eq!(data, [0, 10, 20, 30]);
/// ```
pub fn sortiter<T, I>(messages: I) -> SortIter<I::IntoIter, T>
where
    I: IntoIterator<Item = Msg<T>>,
{
    sortiter_from(messages, 0)
}

/// Like [`sortiter`], with the run starting at order `start`.
///
/// ```
/// use ezq::Msg;
///
/// let msgs = [6, 5, 7].map(|i| Msg::new(()).order(i));
/// let orders: Vec<u64> = ezq::sortiter_from(msgs, 5).map(|m| m.order).collect();
/// assert_eq!(orders, [5, 6, 7]);
/// ```
pub fn sortiter_from<T, I>(messages: I, start: u64) -> SortIter<I::IntoIter, T>
where
    I: IntoIterator<Item = Msg<T>>,
{
    // Inside a pipeline, its sources now wait for this buffer.
    control::publish_low(start);
    SortIter {
        input: Some(messages.into_iter()),
        next: start,
        arrivals: 0,
        ahead: BinaryHeap::new(),
        behind: Vec::new(),
    }
}

/// The iterator of [`sortiter`].
pub struct SortIter<I, T> {
    /// `None` once the input has ended and the flush has begun.
    input: Option<I>,
    /// The order that comes out next.
    next: u64,
    arrivals: u64,
    /// Messages whose order is still to come.
    ahead: BinaryHeap<Reverse<Parked<T>>>,
    /// Messages whose order was passed already (duplicates, orders below
    /// the start): they can only come out in the final flush.
    behind: Vec<Parked<T>>,
}

impl<I, T> SortIter<I, T> {
    /// How many messages wait for a lower order to arrive.
    pub fn parked(&self) -> usize {
        self.ahead.len() + self.behind.len()
    }

    /// Moves on to the next order. Inside a pipeline, tells its sources
    /// every so often, so that they stay within the reorder window.
    #[inline]
    fn advance(&mut self) {
        self.next = self.next.wrapping_add(1);
        if self.next % 256 == 0 {
            control::publish_low(self.next);
        }
    }

    /// Pops the heap's top if it is the next order, moving passed orders
    /// aside on the way.
    fn pop_ready(&mut self) -> Option<Msg<T>> {
        while let Some(Reverse(top)) = self.ahead.peek() {
            match top.msg.order.cmp(&self.next) {
                Ordering::Greater => return None,
                Ordering::Equal => {
                    let Reverse(parked) = self.ahead.pop()?;
                    self.advance();
                    return Some(parked.msg);
                }
                Ordering::Less => {
                    let Reverse(parked) = self.ahead.pop()?;
                    self.behind.push(parked);
                }
            }
        }
        None
    }

    /// After the input ended: everything left, in ascending (order, arrival).
    fn flush(&mut self) -> Option<Msg<T>> {
        if !self.behind.is_empty() {
            // The first call of the flush sorts what was passed, once.
            self.ahead.extend(self.behind.drain(..).map(Reverse));
        }
        self.ahead.pop().map(|Reverse(parked)| parked.msg)
    }
}

impl<I: Iterator<Item = Msg<T>>, T> Iterator for SortIter<I, T> {
    type Item = Msg<T>;

    fn next(&mut self) -> Option<Msg<T>> {
        if self.input.is_none() {
            return self.flush();
        }
        if let Some(msg) = self.pop_ready() {
            return Some(msg);
        }
        while let Some(input) = &mut self.input {
            let Some(msg) = input.next() else {
                self.input = None;
                // Nothing more will come: no source needs to wait for us.
                control::publish_low(u64::MAX);
                break;
            };
            if msg.order == self.next {
                self.advance();
                return Some(msg);
            }
            let parked = Parked {
                msg,
                arrival: self.arrivals,
            };
            self.arrivals += 1;
            if parked.msg.order < self.next {
                self.behind.push(parked);
            } else {
                self.ahead.push(Reverse(parked));
            }
        }
        self.flush()
    }
}

/// A waiting message, ordered by (order, arrival).
struct Parked<T> {
    msg: Msg<T>,
    arrival: u64,
}

impl<T> Parked<T> {
    fn key(&self) -> (u64, u64) {
        (self.msg.order, self.arrival)
    }
}

impl<T> PartialEq for Parked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<T> Eq for Parked<T> {}

impl<T> PartialOrd for Parked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Parked<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders(input: &[u64], start: u64) -> Vec<u64> {
        let msgs = input.iter().map(|&o| Msg::new(()).order(o));
        sortiter_from(msgs, start).map(|m| m.order).collect()
    }

    #[test]
    fn streams_as_soon_as_the_run_is_unbroken() {
        let mut it = sortiter([1, 0, 3, 2].map(|o| Msg::new(o).order(o)));
        // Pulling 0 needs reading 1 and 0; 1 then comes from the heap.
        assert_eq!(it.next().map(|m| m.order), Some(0));
        assert_eq!(it.parked(), 1);
        assert_eq!(it.next().map(|m| m.order), Some(1));
        assert_eq!(it.parked(), 0);
    }

    #[test]
    fn gaps_duplicates_and_stragglers_are_flushed_in_order() {
        assert_eq!(orders(&[0, 2, 1, 5, 4], 0), [0, 1, 2, 4, 5]);
        assert_eq!(orders(&[0, 1, 1, 2, 0], 0), [0, 1, 2, 0, 1]);
        assert_eq!(orders(&[3, 1, 2, 0], 2), [2, 3, 0, 1]);
    }

    #[test]
    fn equal_orders_keep_arrival_order() {
        let msgs = [(5, 'a'), (5, 'b'), (0, 'c'), (5, 'd')].map(|(o, d)| Msg::new(d).order(o));
        let data: String = sortiter(msgs).map(|m| m.data).collect();
        assert_eq!(data, "cabd");
    }
}
