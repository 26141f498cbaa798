//! Ordered parallel map: [`map`].

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread;
use std::time::Duration;

use rayon::Yield;

/// Applies `f` to every item in parallel and yields the results in input
/// order, as they become ready (Python ezq 3's `map`).
///
/// The work runs on rayon's thread pool (the current one when called from
/// inside a pool). At most a small window of items (four per pool thread) is
/// in flight or waiting to be yielded, so memory stays bounded however long
/// the input is, and items are pulled from `items` only as results are
/// consumed. A panic in `f` is re-raised in the thread that iterates, when it
/// reaches that item: no result is silently missing.
///
/// `map` shares rayon's pool rather than owning threads, so that it uses the
/// cores the rest of the program's parallel work uses instead of competing
/// with it; in exchange, a pool thread that iterates (a `map` nested in
/// another's `f`, or one called from a rayon task) does not sit blocked on
/// a result: it runs other pending pool jobs while it waits, so nesting
/// cannot deadlock the pool.
///
/// ```
/// let row = |i: u32| ezq::map(move |j: u32| i * j, 0..3).collect::<Vec<_>>();
/// let table: Vec<Vec<u32>> = ezq::map(row, 0..3).collect();
/// assert_eq!(table, [[0, 0, 0], [0, 1, 2], [0, 2, 4]]);
/// ```
///
/// ```
/// let squares: Vec<u64> = ezq::map(|x: u64| x * x, 0..5).collect();
/// assert_eq!(squares, [0, 1, 4, 9, 16]);
/// ```
pub fn map<I, F, U>(f: F, items: I) -> Map<I::IntoIter, U>
where
    I: IntoIterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> U + Send + Sync + 'static,
    U: Send + 'static,
{
    let window = 4 * rayon::current_num_threads().max(1);
    map_with_window(f, items, window)
}

/// Like [`map`], with at most `window` items (at least 1) in flight or
/// waiting to be yielded.
///
/// ```
/// let lens: Vec<usize> = ezq::map_with_window(|s: &str| s.len(), ["a", "bcd"], 1).collect();
/// assert_eq!(lens, [1, 3]);
/// ```
pub fn map_with_window<I, F, U>(f: F, items: I, window: usize) -> Map<I::IntoIter, U>
where
    I: IntoIterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> U + Send + Sync + 'static,
    U: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let f = Arc::new(f);
    Map {
        input: items.into_iter(),
        spawn: Box::new(move |index, item, tx: &Sender<Done<U>>| {
            let (f, tx) = (Arc::clone(&f), tx.clone());
            rayon::spawn(move || {
                // Caught so that a panic reaches the caller instead of
                // aborting the pool; the caller re-raises it.
                let result = panic::catch_unwind(AssertUnwindSafe(|| f(item)));
                // The iterator may have been dropped: then nobody wants it.
                let _ = tx.send((index, result));
            });
        }),
        window: window.max(1),
        next_index: 0,
        ready: VecDeque::new(),
        tx,
        rx,
    }
}

type Done<U> = (u64, thread::Result<U>);
type Spawn<T, U> = dyn Fn(u64, T, &Sender<Done<U>>) + Send;

/// The first and the longest nap of a pool thread that waits for a result
/// and finds no rayon job to run meanwhile.
const FIRST_NAP: Duration = Duration::from_micros(50);
const LAST_NAP: Duration = Duration::from_millis(1);

/// The iterator of [`map`].
pub struct Map<I: Iterator, U> {
    input: I,
    spawn: Box<Spawn<I::Item, U>>,
    window: usize,
    /// Index of the next item to pull from the input.
    next_index: u64,
    /// Results from the next one to yield on; `None` while still running.
    /// Its length is the number of items in flight or waiting.
    ready: VecDeque<Option<thread::Result<U>>>,
    tx: Sender<Done<U>>,
    rx: Receiver<Done<U>>,
}

impl<I: Iterator, U> Map<I, U> {
    /// How many items are in flight or waiting to be yielded; never more
    /// than the window.
    pub fn in_flight(&self) -> usize {
        self.ready.len()
    }

    /// Waits for the next result to arrive, in any order.
    ///
    /// Off a rayon pool, this blocks. On a pool thread it must not: the job
    /// that would send the result may be queued behind this very thread
    /// (nested maps), and if every pool thread blocked, nothing would ever
    /// run it. So it runs pending jobs of the pool (`rayon::yield_now`) and,
    /// when there are none, naps briefly before looking again. A job run
    /// here may itself iterate a map and wait the same way, on top of this
    /// frame; it finishes once its own items are done, which does not depend
    /// on the frames beneath it (they only wait), so the stack unwinds, and
    /// its depth is bounded by the jobs in flight, as in `rayon::join`.
    fn wait(&self) -> Done<U> {
        const KEPT: &str = "ezq::map keeps a sender of its own";
        let mut nap = FIRST_NAP;
        loop {
            match self.rx.try_recv() {
                Ok(done) => return done,
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => unreachable!("{KEPT}"),
            }
            match rayon::yield_now() {
                None => return self.rx.recv().expect(KEPT),
                Some(Yield::Executed) => nap = FIRST_NAP,
                Some(Yield::Idle) => match self.rx.recv_timeout(nap) {
                    Ok(done) => return done,
                    Err(RecvTimeoutError::Timeout) => nap = (nap * 2).min(LAST_NAP),
                    Err(RecvTimeoutError::Disconnected) => unreachable!("{KEPT}"),
                },
            }
        }
    }
}

impl<I: Iterator, U> Iterator for Map<I, U> {
    type Item = U;

    fn next(&mut self) -> Option<U> {
        while self.ready.len() < self.window {
            let Some(item) = self.input.next() else { break };
            (self.spawn)(self.next_index, item, &self.tx);
            self.next_index += 1;
            self.ready.push_back(None);
        }
        loop {
            match self.ready.front_mut() {
                None => return None,
                Some(slot) if slot.is_some() => {
                    let result = self.ready.pop_front().flatten()?;
                    return Some(result.unwrap_or_else(|payload| panic::resume_unwind(payload)));
                }
                Some(_) => {}
            }
            let (index, result) = self.wait();
            let first = self.next_index - self.ready.len() as u64;
            self.ready[(index - first) as usize] = Some(result);
        }
    }
}

/// [`map`] for a closure or items that borrow from the caller's stack: `f`
/// over every item, in parallel on rayon's pool, the results in the
/// items' order. Unlike [`map`], it takes every item before it starts and
/// returns when every result is in (nothing outlives the call, so nothing
/// needs to be `'static`). A panic in `f` is re-raised here.
///
/// ```
/// use std::collections::HashMap;
///
/// let ages = HashMap::from([("ann", 31), ("bob", 42)]);
/// let names = vec!["bob", "ann", "bob"];
/// let found: Vec<u32> = ezq::map_scoped(|name: &&str| ages[name], &names);
/// assert_eq!(found, [42, 31, 42]);
/// ```
pub fn map_scoped<I, F, U>(f: F, items: I) -> Vec<U>
where
    I: IntoIterator,
    I::Item: Send,
    F: Fn(I::Item) -> U + Send + Sync,
    U: Send,
{
    use rayon::iter::{IntoParallelIterator, ParallelIterator};
    let items: Vec<I::Item> = items.into_iter().collect();
    items.into_par_iter().map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_under_uneven_work() {
        let out: Vec<u64> = map(
            |x: u64| {
                if x % 7 == 0 {
                    thread::sleep(std::time::Duration::from_millis(2));
                }
                x * 2
            },
            0..200,
        )
        .collect();
        assert_eq!(out, (0..200).map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let result = panic::catch_unwind(|| {
            map(
                |x: u32| if x == 3 { panic!("bad item {x}") } else { x },
                0..10,
            )
            .count()
        });
        let payload = result.unwrap_err();
        assert_eq!(crate::error::panic_message(payload.as_ref()), "bad item 3");
    }

    #[test]
    fn the_iterator_can_move_to_another_thread() {
        fn is_send<T: Send>(_: &T) {}
        is_send(&map(|x: u32| x, vec![1, 2]));
    }
}
