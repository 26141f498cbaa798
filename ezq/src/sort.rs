//! The reorder buffer: [`sortiter`].

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use crate::Msg;
use crate::control;

/// Yields messages by `order`, starting at 0 (Python ezq's `sortiter`).
///
/// Streaming: each message comes out as soon as every lower order has come
/// out. Messages that arrive early wait: within [`REORDER_RING`] orders of
/// the one awaited, in a ring indexed by order (O(1) per message); further
/// ahead, or a second message of the same order, in a min-heap (O(log k)
/// for k waiting). Messages of one order that are waiting when that order
/// comes out come out together, in arrival order; one that arrives after
/// its order has passed waits for the end. When the input ends, whatever
/// still waits (after a gap, a late duplicate, an order below the run)
/// comes out in ascending order: no message is ever lost. Equal orders keep
/// their arrival order.
///
/// ```
/// use ezq::Msg;
///
/// let msgs = [("a", 1), ("b", 1), ("c", 0), ("d", 2)].map(|(d, o)| Msg::new(d).order(o));
/// let data: Vec<&str> = ezq::sortiter(msgs).map(|m| m.data).collect();
/// assert_eq!(data, ["c", "a", "b", "d"]);
/// ```
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
        draining: false,
        arrivals: 0,
        near: VecDeque::new(),
        in_near: 0,
        ahead: BinaryHeap::new(),
        behind: Vec::new(),
    }
}

/// How far ahead of the order it waits for [`sortiter`] parks messages in
/// its ring rather than its heap, at most: the ring also stays within
/// 2 MiB, so for large messages it covers fewer orders. Pipelines
/// bound how far ahead messages run
/// ([`DEFAULT_WINDOW`](crate::graph::DEFAULT_WINDOW) orders by default), so there
/// the ring holds nearly all of them.
pub const REORDER_RING: u64 = 32 * 1024;

/// The most memory [`sortiter`]'s ring takes: a slot per order, whether a
/// message waits in it or not, so one message far ahead costs as much as
/// a full ring.
const RING_BYTES: usize = 2 << 20;

/// The orders the ring covers for messages of type `T`.
fn ring_orders<T>() -> u64 {
    let slot = std::mem::size_of::<Option<Parked<T>>>().max(1);
    ((RING_BYTES / slot) as u64).clamp(64, REORDER_RING)
}

/// The iterator of [`sortiter`].
pub struct SortIter<I, T> {
    /// `None` once the input has ended and the flush has begun.
    input: Option<I>,
    /// The order that comes out next.
    next: u64,
    /// A message of order `next` came out: the others of that order that
    /// are waiting come out before the run moves on.
    draining: bool,
    arrivals: u64,
    /// Early messages less than `ring_orders` ahead: slot `i` holds the
    /// first to arrive of order `next + i`.
    near: VecDeque<Option<Parked<T>>>,
    in_near: usize,
    /// Other messages whose order is still to come.
    ahead: BinaryHeap<Reverse<Parked<T>>>,
    /// Messages whose order was passed already (duplicates, orders below
    /// the start): they can only come out in the final flush.
    behind: Vec<Parked<T>>,
}

impl<I, T> SortIter<I, T> {
    /// How many messages wait for a lower order to arrive.
    pub fn parked(&self) -> usize {
        self.in_near + self.ahead.len() + self.behind.len()
    }

    /// Moves on to the next order. Inside a pipeline, tells its sources
    /// every so often, so that they stay within the reorder window.
    #[inline]
    fn advance(&mut self) {
        // The ring's first slot is the order just passed: a message still
        // in it lost to an earlier arrival of the same order in the heap.
        if let Some(Some(passed)) = self.near.pop_front() {
            self.in_near -= 1;
            self.behind.push(passed);
        }
        self.next = self.next.wrapping_add(1);
        if self.next % 256 == 0 {
            control::publish_low(self.next);
        }
    }

    /// Parks a message whose order is still to come.
    fn park_ahead(&mut self, parked: Parked<T>) {
        let gap = parked.msg.order - self.next;
        if gap < ring_orders::<T>() {
            let i = gap as usize;
            if self.near.len() <= i {
                self.near.resize_with(i + 1, || None);
            }
            if self.near[i].is_none() {
                self.near[i] = Some(parked);
                self.in_near += 1;
                return;
            }
        }
        self.ahead.push(Reverse(parked));
    }

    /// The next waiting message of the run: another of the order that just
    /// came out, or the earliest of the next order; moves passed orders
    /// aside on the way.
    fn pop_ready(&mut self) -> Option<Msg<T>> {
        loop {
            if let Some(msg) = self.pop_order() {
                self.draining = true;
                return Some(msg);
            }
            if !self.draining {
                return None;
            }
            self.draining = false;
            self.advance();
        }
    }

    /// The earliest waiting message of order `next`, if any.
    fn pop_order(&mut self) -> Option<Msg<T>> {
        while let Some(Reverse(top)) = self.ahead.peek() {
            if top.msg.order >= self.next {
                break;
            }
            let Reverse(passed) = self.ahead.pop()?;
            self.behind.push(passed);
        }
        let in_heap = (self.ahead.peek()).filter(|Reverse(top)| top.msg.order == self.next);
        let in_ring = self.near.front().and_then(Option::as_ref);
        let from_ring = match (in_ring, in_heap) {
            (None, None) => return None,
            (Some(ring), Some(Reverse(heap))) => ring.arrival < heap.arrival,
            (ring, _) => ring.is_some(),
        };
        let parked = if from_ring {
            self.in_near -= 1;
            self.near.front_mut().and_then(Option::take)?
        } else {
            self.ahead.pop()?.0
        };
        Some(parked.msg)
    }

    /// After the input ended: everything left, in ascending (order, arrival).
    fn flush(&mut self) -> Option<Msg<T>> {
        if self.in_near > 0 || !self.behind.is_empty() {
            // The first call of the flush sorts what is left, once.
            self.in_near = 0;
            let near = self.near.drain(..).flatten();
            self.ahead
                .extend(near.chain(self.behind.drain(..)).map(Reverse));
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
                self.draining = true;
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
                self.park_ahead(parked);
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
    fn waiting_messages_of_an_order_come_out_together() {
        // `b` waits when order 1 comes out: it comes out right after `a`.
        assert_eq!(orders(&[1, 1, 0, 2], 0), [0, 1, 1, 2]);
        let msgs = [(0, 1), (1, 1), (2, 0), (3, 2)].map(|(d, o)| Msg::new(d).order(o));
        let data: Vec<u8> = sortiter(msgs).map(|m| m.data).collect();
        assert_eq!(data, [2, 0, 1, 3]);
    }

    #[test]
    fn gaps_duplicates_and_stragglers_are_flushed_in_order() {
        assert_eq!(orders(&[0, 2, 1, 5, 4], 0), [0, 1, 2, 4, 5]);
        assert_eq!(orders(&[0, 1, 1, 2, 0], 0), [0, 1, 2, 0, 1]);
        assert_eq!(orders(&[3, 1, 2, 0], 2), [2, 3, 0, 1]);
    }

    /// What `sortiter_from` must yield, by brute force: as soon as the
    /// next order has arrived, every waiting message of it, by arrival;
    /// then everything left by (order, arrival).
    fn model(input: &[u64], start: u64) -> Vec<(u64, usize)> {
        let (mut out, mut parked, mut next) = (Vec::new(), Vec::new(), start);
        for (arrival, &order) in input.iter().enumerate() {
            parked.push((order, arrival));
            while parked.iter().any(|p| p.0 == next) {
                // `parked` is in arrival order; `retain` keeps it so.
                out.extend(parked.iter().filter(|p| p.0 == next).copied());
                parked.retain(|p| p.0 != next);
                next += 1;
            }
        }
        parked.sort_unstable();
        out.extend(parked);
        out
    }

    #[test]
    fn ring_and_heap_together_match_the_model() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut random = move |n: u64| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        };
        for case in 0..500 {
            let start = random(3);
            let len = 1 + random(60) as usize;
            // Near orders (the ring), their duplicates (the heap), and
            // orders past the ring (the heap; the run never reaches them,
            // the next test does).
            let input: Vec<u64> = (0..len)
                .map(|_| match random(10) {
                    0 => REORDER_RING + random(4),
                    _ => random(40),
                })
                .collect();
            let msgs = input.iter().enumerate().map(|(a, &o)| Msg::new(a).order(o));
            let got: Vec<(u64, usize)> = sortiter_from(msgs, start)
                .map(|m| (m.order, m.data))
                .collect();
            assert_eq!(
                got,
                model(&input, start),
                "case {case}: {input:?} from {start}"
            );
        }
    }

    #[test]
    fn an_order_parked_in_the_heap_first_comes_out_first() {
        // Order REORDER_RING + 2 arrives first, too far ahead for the ring (heap);
        // its second copy arrives when the ring reaches it. The first
        // arrival must come out first, the second in the final flush.
        let far = REORDER_RING + 2;
        let mut input = vec![far];
        input.extend(0..3);
        input.push(far);
        input.extend(3..far);
        let msgs = input.iter().enumerate().map(|(a, &o)| Msg::new(a).order(o));
        let got: Vec<(u64, usize)> = sortiter(msgs).map(|m| (m.order, m.data)).collect();
        assert_eq!(got.len(), input.len());
        assert_eq!(got[got.len() - 2..], [(far, 0), (far, 4)]);
        assert!(got[..got.len() - 2].iter().map(|g| g.0).eq(0..far));
    }

    #[test]
    fn large_messages_get_a_shorter_ring() {
        assert_eq!(ring_orders::<u64>(), REORDER_RING);
        let orders = ring_orders::<[u8; 4096]>();
        assert!((64..REORDER_RING).contains(&orders), "{orders}");
        // Past the shorter ring, messages wait in the heap: still in order.
        let far = orders + 10;
        let msgs = [far, 0, 1, far - 1].map(|o| Msg::new([0u8; 4096]).order(o));
        let got: Vec<u64> = sortiter(msgs).map(|m| m.order).collect();
        assert_eq!(got, [0, 1, far - 1, far]);
    }

    #[test]
    fn equal_orders_keep_arrival_order() {
        let msgs = [(5, 'a'), (5, 'b'), (0, 'c'), (5, 'd')].map(|(o, d)| Msg::new(d).order(o));
        let data: String = sortiter(msgs).map(|m| m.data).collect();
        assert_eq!(data, "cabd");
    }
}
