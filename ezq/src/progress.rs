//! A live progress display of a running pipeline (feature `progress`).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::{Monitor, Stats};

/// How often the display is redrawn.
const INTERVAL: Duration = Duration::from_millis(150);

/// The span the throughput is measured over. Workers add to the shared
/// counters every 256 messages, so over one 150 ms interval a stage's
/// count moves in jumps and its rate would swing between 0 and bursts.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Draws a pipeline's progress on stderr while it runs: one line per worker
/// (its replicas together) with the messages it took, its throughput over
/// the last second, how many of its replicas still run, how busy they are
/// and how full its input queues are; then one line per sink (a queue the
/// caller reads) with the messages waiting in it.
///
/// ```text
/// ⠸ walker   1/1 running          0 msgs        0/s      busy  12%
/// ⠸ tokenize 2/2 running       3072 msgs    10.1k/s      busy  99%  in paths ~1024/1024
/// ⠸ merge    1/1 running       2816 msgs     9295/s      busy  68%  in counts ~256/1024
///   top      queue               ~0 waiting   high 0
/// ```
///
/// The counts are those of [`Stats`], so while workers run they lag by up
/// to 256 messages per replica: a queue's fill is marked `~` as an
/// estimate until every worker has finished. A worker's wait is counted
/// when it ends, so a replica blocked for long shows as busy meanwhile.
///
/// The display is drawn only when stderr is a terminal; otherwise no thread
/// starts and nothing is written. It redraws every 150 ms and stops by
/// itself once every worker has finished, leaving the final counts on
/// screen. [`finish`](Progress::finish) stops it and returns the final
/// [`Stats`]; dropping it stops it too. While it draws, write to the
/// terminal only after it has stopped, or the lines mix.
///
/// ```
/// use ezq::{pipeline, worker, Progress};
///
/// #[worker]
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// let p = pipeline! { numbers -> double * 2 -> doubled; };
/// let progress = Progress::start(p.monitor());
/// for i in 0..1000u64 {
///     p.numbers.put(i);
/// }
/// p.numbers.end();
/// let total: u64 = p.doubled.iter().map(|msg| msg.data).sum();
/// p.join().expect("no worker fails");
/// let stats = progress.finish();
/// assert_eq!(total, 999_000);
/// assert_eq!(stats.queues[1].put, 1000);
/// println!("{stats}");
/// ```
#[derive(Debug)]
#[must_use = "dropping a Progress stops the display"]
pub struct Progress {
    monitor: Monitor,
    /// Dropping the sender stops the drawing thread.
    drawer: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Progress {
    /// Starts drawing the progress of the pipeline that `monitor` watches
    /// (from [`Pipeline::monitor`](crate::Pipeline::monitor)), on a thread
    /// of its own, if stderr is a terminal.
    ///
    /// ```
    /// use ezq::{pipeline, worker, Progress};
    ///
    /// #[worker]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let p = pipeline! { numbers -> square -> squares; };
    /// let _progress = Progress::start(p.monitor());
    /// p.numbers.put(3);
    /// p.numbers.end();
    /// assert_eq!(p.squares.iter().next().map(|msg| msg.data), Some(9));
    /// // `_progress` stops at the end of the scope, or when every worker has finished
    /// ```
    pub fn start(monitor: Monitor) -> Progress {
        let drawer = std::io::stderr()
            .is_terminal()
            .then(|| {
                let multi = MultiProgress::with_draw_target(draw_target());
                // Overwrite the lines in place rather than clear them
                // first: no blank flash between frames.
                multi.set_move_cursor(true);
                multi
            })
            // indicatif hides itself on a dumb terminal (`TERM=dumb` or unset)
            .filter(|multi| !multi.is_hidden())
            .and_then(|multi| {
                let (stop, stopped) = mpsc::channel();
                let watched = monitor.clone();
                thread::Builder::new()
                    .name("ezq-progress".into())
                    .spawn(move || draw(&watched, &stopped, multi))
                    // Without a thread there is no display, and that is all.
                    .ok()
                    .map(|handle| (stop, handle))
            });
        Progress { monitor, drawer }
    }

    /// Stops the display, leaving its last lines on screen, and returns the
    /// pipeline's statistics. After the pipeline has finished (after
    /// [`Pipeline::join`](crate::Pipeline::join)) they are final and exact;
    /// before, they are the counts so far.
    ///
    /// ```
    /// use ezq::{pipeline, worker, Progress};
    ///
    /// #[worker]
    /// fn shout(text: String) -> String {
    ///     text.to_uppercase()
    /// }
    ///
    /// let p = pipeline! { words -> shout -> shouted; };
    /// let monitor = p.monitor();
    /// let progress = Progress::start(p.monitor());
    /// p.words.put("hello".to_string());
    /// p.join().expect("no worker fails");
    /// assert_eq!(progress.finish(), monitor.stats());
    /// ```
    pub fn finish(mut self) -> Stats {
        self.stop();
        self.monitor.stats()
    }

    fn stop(&mut self) {
        if let Some((stop, handle)) = self.drawer.take() {
            drop(stop);
            // The thread draws, and nothing it does panics; if it did,
            // the display is all that is lost.
            let _ = handle.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stderr, redrawn only when the thread asks for it. Each bar redraws the
/// whole display when its message changes; a refresh rate of 1 Hz keeps
/// those partial redraws rare (indicatif also allows short bursts), and the
/// thread forces one full redraw per interval once every bar is updated.
fn draw_target() -> ProgressDrawTarget {
    ProgressDrawTarget::stderr_with_hz(1)
}

/// The drawing thread: redraws until told to stop (the sender dropped) or
/// until every worker has finished, then draws the final counts.
fn draw(monitor: &Monitor, stop: &Receiver<()>, multi: MultiProgress) {
    let mut display = Display::new(multi, &monitor.stats());
    loop {
        // Read before the stats, so that the last frame shows final counts.
        let finished = monitor.is_finished();
        display.update(&monitor.stats(), finished, Instant::now());
        if finished {
            break;
        }
        match stop.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let finished = monitor.is_finished();
                display.update(&monitor.stats(), finished, Instant::now());
                break;
            }
        }
    }
    display.close();
}

/// The bars, and the recent counts that the throughput is measured on.
struct Display {
    stages: Vec<Stage>,
    /// The sinks' lines, with their indices in [`Stats::queues`].
    sinks: Vec<(usize, ProgressBar)>,
    /// (when, messages taken by each stage), over the last [`RATE_WINDOW`].
    samples: VecDeque<(Instant, Vec<u64>)>,
}

/// The replicas of one worker, on one line.
struct Stage {
    name: String,
    bar: ProgressBar,
    done: bool,
}

/// What a stage's replicas add up to.
#[derive(Default)]
struct Totals {
    processed: u64,
    replicas: usize,
    running: usize,
    busy: Duration,
    waiting: Duration,
    /// The longest lifetime of a replica (busy + waiting).
    lifetime: Duration,
}

impl Display {
    fn new(multi: MultiProgress, stats: &Stats) -> Self {
        let mut names: Vec<&str> = Vec::new();
        for w in &stats.workers {
            if !names.contains(&w.name.as_str()) {
                names.push(&w.name);
            }
        }
        let width = (names.iter().copied())
            .chain(stats.queues.iter().map(|q| q.name.as_str()))
            .map(|name| name.chars().count())
            .max()
            .unwrap_or(0)
            .min(24);
        let stage_style = ProgressStyle::with_template("{spinner:.green} {prefix} {msg}")
            .expect("a valid template")
            .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✔"]);
        let queue_style =
            ProgressStyle::with_template("  {prefix} {msg:.dim}").expect("a valid template");
        let stages = (names.iter())
            .map(|&name| Stage {
                name: name.to_owned(),
                bar: multi.add(
                    ProgressBar::new_spinner()
                        .with_style(stage_style.clone())
                        .with_prefix(format!("{name:<width$}")),
                ),
                done: false,
            })
            .collect();
        let sinks = (stats.queues.iter().enumerate())
            .filter(|(_, q)| q.readers.is_empty())
            .map(|(i, q)| {
                let bar = multi.add(
                    ProgressBar::new_spinner()
                        .with_style(queue_style.clone())
                        .with_prefix(format!("{:<width$}", q.name)),
                );
                (i, bar)
            })
            .collect();
        Display {
            stages,
            sinks,
            samples: VecDeque::new(),
        }
    }

    /// Sets every line from `stats`; `finished` if every worker had
    /// finished before they were taken, which makes them exact.
    fn update(&mut self, stats: &Stats, finished: bool, now: Instant) {
        let totals: Vec<Totals> = (self.stages.iter())
            .map(|stage| totals(stats, &stage.name))
            .collect();
        self.samples
            .push_back((now, totals.iter().map(|t| t.processed).collect()));
        // Keep the newest sample at least RATE_WINDOW old as the base.
        while self.samples.len() > 1 && now - self.samples[1].0 >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let (since, base) = &self.samples[0];
        let span = (now - *since).as_secs_f64();
        // While workers run, `put` and `taken` each lag by up to 255 per
        // producer or consumer: the count waiting is only an estimate (it
        // may even exceed the queue's capacity, so `input_fill` caps it),
        // and says so.
        let about = if finished { "" } else { "~" };
        for (i, (stage, t)) in self.stages.iter_mut().zip(&totals).enumerate() {
            if stage.done {
                continue;
            }
            let busy = percent(t.busy, t.busy + t.waiting);
            let inputs = input_fill(stats, &stage.name, about);
            if t.running == 0 {
                let rate = per_sec(t.processed, t.lifetime.as_secs_f64());
                stage.bar.finish_with_message(format!(
                    "{:<11} {:>10} msgs {:>8}/s avg  busy {busy:>3.0}%{inputs}",
                    "done", t.processed, rate
                ));
                stage.done = true;
            } else {
                let rate = per_sec(t.processed.saturating_sub(base[i]), span);
                let running = format!("{}/{} running", t.running, t.replicas);
                stage.bar.set_message(format!(
                    "{running:<11} {:>10} msgs {rate:>8}/s      busy {busy:>3.0}%{inputs}",
                    t.processed
                ));
            }
        }
        for (i, bar) in &self.sinks {
            let q = &stats.queues[*i];
            bar.set_message(format!(
                "{:<11} {:>10} waiting   high {}",
                "queue",
                format!("{about}{}", q.len()),
                q.high_water
            ));
        }
        // One full redraw with every line up to date (the spinners turn).
        for stage in self.stages.iter().filter(|s| !s.done) {
            stage.bar.tick();
        }
        let sinks = self.sinks.last().map(|(_, bar)| bar);
        if let Some(bar) = sinks.or(self.stages.last().map(|s| &s.bar)) {
            bar.force_draw();
        }
    }

    /// Leaves every line on screen as it is: finished stages show a check
    /// mark, stages still running when the display stopped a dot.
    fn close(self) {
        let stopped = ProgressStyle::with_template("· {prefix} {msg}").expect("a valid template");
        for stage in self.stages.iter().filter(|s| !s.done) {
            stage.bar.set_style(stopped.clone());
            stage.bar.abandon();
        }
        for (_, bar) in &self.sinks {
            bar.finish();
        }
    }
}

/// Adds up the replicas of the worker `name`.
fn totals(stats: &Stats, name: &str) -> Totals {
    let mut t = Totals::default();
    for w in stats.workers.iter().filter(|w| w.name == name) {
        t.processed += w.processed;
        t.replicas += 1;
        t.running += usize::from(!w.finished);
        t.busy += w.busy;
        t.waiting += w.waiting;
        t.lifetime = t.lifetime.max(w.busy + w.waiting);
    }
    t
}

/// How full the queues that `worker` reads are: `  in numbers ~12/1024`,
/// the count prefixed with `about` (`~` while it is an estimate) and at
/// most the capacity.
fn input_fill(stats: &Stats, worker: &str, about: &str) -> String {
    let mut text = String::new();
    for q in stats
        .queues
        .iter()
        .filter(|q| q.readers.iter().any(|r| r == worker))
    {
        let sep = if text.is_empty() { "  in " } else { ", " };
        // An estimate may run past the capacity; the queue cannot.
        let (len, capacity) = match q.capacity {
            Some(c) => (q.len().min(c as u64), format!("/{c}")),
            None => (q.len(), String::new()),
        };
        text += &format!("{sep}{} {about}{len}{capacity}", q.name);
    }
    text
}

/// `part` in percent of `whole`, 0 for nothing.
fn percent(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        return 0.0;
    }
    100.0 * part.as_secs_f64() / whole.as_secs_f64()
}

/// `count / seconds`, shortened: `950`, `12.3k`, `4.56M`.
fn per_sec(count: u64, seconds: f64) -> String {
    let rate = if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    };
    if rate < 10_000.0 {
        format!("{rate:.0}")
    } else if rate < 10_000_000.0 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{:.2}M", rate / 1e6)
    }
}
