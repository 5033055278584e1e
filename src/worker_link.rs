//! One worker's link to the rest of the server (`--workers N`): what the
//! workers of one process share, and nothing that runs them (that is the
//! supervisor, `workers.rs`). The loop holds a [`Worker`]; it never sees
//! the supervisor.
//!
//! - [`Slots`]: the one `--max-connections` count for the whole server, an
//!   atomic taken at accept and given back once (`event_loop/admission.rs`,
//!   `Limit`): when a connection starts a bounded close, is turned away,
//!   starts its linger after an unbounded flush, or at the latest when it
//!   is reaped; per connection, never per message; and each worker's part
//!   of it, its load, which decides where a new connection is served
//!   (`spread.rs`);
//! - the handoff (`spread::Handoff`): a connection accepted by one worker
//!   and served by another travels through it;
//! - the [`Board`]: each worker's figures for the metrics, posted at most
//!   every 100 ms and once after the last change, a mutex per worker;
//! - the holding flags: per worker, whether its relay receivers hold
//!   senders back, stored when that changes (`event_loop/relay.rs`,
//!   `post_holding`) and read on every read of a relay's connection
//!   (`event_loop/visit.rs`, `read_input`): per message, relays only;
//! - the report channel to the supervisor, which writes the stats line and
//!   the lines about the whole server ([`Event`]): a signal reaches every
//!   worker, and each tells the supervisor what it did, so that the log
//!   says it once;
//! - the TLS configuration worker 0 reloads for all ([`Latest`]): SIGHUP is
//!   one reload, one line and one count, and every worker serves its
//!   result;
//! - the beats ([`Beats`]): each worker's loop counts its watchdog ticks,
//!   and worker 0 tells systemd's watchdog the server is alive only when
//!   every loop has turned since it last looked ([`Watch`]).
//!
//! Shared across workers but not here: the count per address
//! (`edge::PerIp`) and the relays' hub (`hub.rs`); docs/architecture.md
//! ("Workers") lists all of it and how often each is touched.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::metrics::Figures;
use crate::spread::{Handed, Handoff, Route};
use crate::stats::{connections, Stats};

/// The connection count shared by the workers of one server, and each
/// worker's load: the slots it holds, plus the connections handed to it
/// that it has not taken in yet.
#[derive(Debug, Clone)]
pub struct Slots {
    taken: Arc<AtomicUsize>,
    max: usize,
    loads: Arc<[AtomicUsize]>,
    /// Workers that take no more connections (shut down, or their loop
    /// failed): never chosen to be handed one.
    retired: Arc<[AtomicBool]>,
}

impl Slots {
    /// `max` connections for the whole server of `workers` workers.
    pub fn new(max: usize, workers: usize) -> Self {
        Self {
            taken: Arc::new(AtomicUsize::new(0)),
            max,
            loads: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            retired: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Takes a slot for a new connection of `worker`; false if the server
    /// is full.
    pub fn take(&self, worker: usize) -> bool {
        // Never above the limit, even for an instant: a client is refused
        // only when the server is really full.
        let took = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if took {
            self.add(worker);
        }
        took
    }

    /// Gives a slot of `worker`'s back.
    pub fn free(&self, worker: usize) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
        self.sub(worker);
    }

    /// Slots taken now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// Each worker's load now, into `out` (one entry per worker);
    /// [`RETIRED`](crate::spread::RETIRED) for one that takes no more.
    pub fn loads(&self, out: &mut Vec<usize>) {
        out.clear();
        out.extend(self.loads.iter().zip(self.retired.iter()).map(|(l, r)| {
            if r.load(Ordering::Acquire) {
                crate::spread::RETIRED
            } else {
                l.load(Ordering::Acquire)
            }
        }));
    }

    /// `worker` takes no more connections (it is shutting down, or its loop
    /// failed): the others stop handing it any, and keep spreading among
    /// themselves. Once per worker's life.
    pub fn retire(&self, worker: usize) {
        if let Some(r) = self.retired.get(worker) {
            r.store(true, Ordering::Release);
        }
    }

    /// One more for `worker`'s load.
    fn add(&self, worker: usize) {
        if let Some(load) = self.loads.get(worker) {
            load.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// One fewer for `worker`'s load.
    fn sub(&self, worker: usize) {
        if let Some(load) = self.loads.get(worker) {
            load.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What a worker sends the supervisor.
#[derive(Debug, Clone)]
pub enum Report {
    /// Its counters, when they moved (its stats tick), and once more when
    /// its loop has ended (`last`).
    Figures {
        worker: usize,
        stats: Stats,
        /// Connections it is serving now.
        active: usize,
        last: bool,
    },
    /// Its part of an event of the whole server: `conns` connections of
    /// its own were concerned.
    Event {
        worker: usize,
        event: Event,
        conns: usize,
    },
}

/// Something that happens to the whole server, said in one line. With
/// several workers each sees it and tells the supervisor, which adds up
/// their connections and writes the line (`workers.rs`); with one, the
/// loop writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The first SIGINT or SIGTERM: no longer accepting, draining.
    Draining { signal: &'static str },
    /// A second one during the drain: stopping now.
    Aborting { signal: &'static str },
    /// The drain timeout passed with connections left.
    DrainTimedOut,
}

impl Event {
    /// Logs the event's line, `conns` connections concerned (`drain`:
    /// `--drain-timeout`).
    pub fn log(self, conns: usize, drain: Duration) {
        let n = connections(conns);
        match self {
            Event::Draining { signal } => {
                log::info!("{signal}: no longer accepting; draining {n} for up to {drain:?}")
            }
            Event::Aborting { signal } => {
                log::warn!("{signal} again: exiting now, dropping {n}")
            }
            Event::DrainTimedOut => {
                log::info!("drain timeout: closing {n} that did not finish")
            }
        }
    }
}

/// A value one worker replaces and the others follow ([`Follower`]): the
/// TLS configuration, after worker 0 reloads it. A follower pays one atomic
/// load per look while nothing changed, and the lock only when it did.
#[derive(Debug)]
pub struct Latest<T> {
    version: AtomicU64,
    value: Mutex<Option<T>>,
}

impl<T: Clone> Latest<T> {
    pub fn new() -> Self {
        Self {
            version: AtomicU64::new(0),
            value: Mutex::new(None),
        }
    }

    /// Replaces the value: every follower takes it at its next look.
    pub fn set(&self, value: T) {
        let mut slot = self.value.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(value);
        self.version.fetch_add(1, Ordering::Release);
    }
}

impl<T: Clone> Default for Latest<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// One worker's view of a [`Latest`]: the version it last took.
#[derive(Debug)]
pub struct Follower<T> {
    latest: Arc<Latest<T>>,
    seen: u64,
}

impl<T: Clone> Follower<T> {
    pub fn new(latest: Arc<Latest<T>>) -> Self {
        Self { latest, seen: 0 }
    }

    /// Replaces `current` with the latest value, if one was set since the
    /// last look.
    pub fn follow(&mut self, current: &mut T) {
        let version = self.latest.version.load(Ordering::Acquire);
        if version == self.seen {
            return;
        }
        self.seen = version;
        let slot = self.latest.value.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = slot.as_ref() {
            *current = value.clone();
        }
    }

    /// Sets the latest value for every follower (this one has it already).
    pub fn publish(&mut self, value: T) {
        self.latest.set(value);
        self.seen = self.latest.version.load(Ordering::Acquire);
    }
}

/// Every worker's figures as each last posted them, for the worker that
/// serves `--metrics` to sum when scraped. A worker posts at most every
/// 100 ms, and once after its last change (`event_loop/report.rs`, `publish`);
/// each slot is its own mutex, locked by its owner to post and by the
/// scrape to read.
#[derive(Debug)]
pub struct Board {
    slots: Vec<std::sync::Mutex<Figures>>,
}

impl Board {
    pub fn new(n: usize) -> Self {
        Self {
            slots: (0..n)
                .map(|_| std::sync::Mutex::new(Figures::default()))
                .collect(),
        }
    }

    /// Worker `id`'s figures now.
    pub fn post(&self, id: usize, figures: Figures) {
        if let Some(slot) = self.slots.get(id) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = figures;
        }
    }

    /// True if every worker's posted figures are those it last reported
    /// (`latest`, one `(stats, active)` per worker; the log's losses, which
    /// are the process's, aside). False while a post is still to come
    /// after a report, or a report after a post.
    pub fn shows(&self, latest: &[(Stats, usize)]) -> bool {
        let plain = |s: &Stats| Stats {
            log_dropped: 0,
            ..s.clone()
        };
        self.slots
            .iter()
            .zip(latest)
            .all(|(slot, (stats, active))| {
                let f = slot.lock().unwrap_or_else(|p| p.into_inner());
                f.active == *active && plain(&f.stats) == plain(stats)
            })
    }

    /// The whole server's figures: every worker's, added up, with each
    /// worker's active count beside the total.
    pub fn sum(&self, draining: bool, tls: bool) -> Figures {
        let mut total = Figures {
            draining,
            tls,
            ..Figures::default()
        };
        for slot in &self.slots {
            let f = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
            total.stats.add(&f.stats);
            total.active += f.active;
            total.draining_conns += f.draining_conns;
            total.per_worker.push(f.active);
            total.queued += f.queued;
            total.turns += f.turns;
            total.busy += f.busy;
        }
        total.stats.log_dropped = crate::logging::dropped();
        total
    }
}

/// Every worker's watchdog beats: a count each worker's loop bumps at
/// each of its watchdog ticks (so a loop that stopped turning stops
/// bumping it), or [`Beats::STOPPED`] once its loop has ended.
#[derive(Debug, Clone)]
pub struct Beats {
    counts: Arc<[AtomicU64]>,
}

impl Beats {
    /// A worker whose loop has ended: nothing to wait for.
    pub const STOPPED: u64 = u64::MAX;

    pub fn new(n: usize) -> Self {
        Self {
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn beat(&self, worker: usize) {
        if let Some(c) = self.counts.get(worker) {
            c.fetch_add(1, Ordering::Release);
        }
    }

    fn stop(&self, worker: usize) {
        if let Some(c) = self.counts.get(worker) {
            c.store(Self::STOPPED, Ordering::Release);
        }
    }

    /// Every worker's count now.
    fn now(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .collect()
    }
}

/// What worker 0 finds when it looks at the beats ([`Watch::look`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Look {
    /// Every loop still running turned since the last look: tell the
    /// watchdog.
    pub all_turned: bool,
    /// Workers that have now missed [`Watch::STALLED`] looks in a row:
    /// say so, once.
    pub stalled: Vec<usize>,
    /// Workers that had stalled and turn again.
    pub recovered: Vec<usize>,
}

/// Worker 0's view of the beats: each worker's count at the last look, and
/// how many looks in a row it has not moved. Pure: the counts are passed
/// in.
#[derive(Debug, Clone)]
pub struct Watch {
    seen: Vec<u64>,
    missed: Vec<u32>,
}

impl Watch {
    /// Looks in a row without a beat after which a worker is said to be
    /// stuck: one can be a late timer, two is a loop that stands still.
    pub const STALLED: u32 = 2;

    pub fn new(n: usize) -> Self {
        Self {
            seen: vec![0; n],
            missed: vec![0; n],
        }
    }

    /// Compares `now` (every worker's count) with the last look.
    pub fn look(&mut self, now: &[u64]) -> Look {
        let mut look = Look {
            all_turned: true,
            ..Look::default()
        };
        for (i, (&count, (seen, missed))) in now
            .iter()
            .zip(self.seen.iter_mut().zip(self.missed.iter_mut()))
            .enumerate()
        {
            if count == Beats::STOPPED || count != *seen {
                if *missed >= Self::STALLED {
                    look.recovered.push(i);
                }
                *missed = 0;
                *seen = count;
                continue;
            }
            look.all_turned = false;
            *missed += 1;
            if *missed == Self::STALLED {
                look.stalled.push(i);
            }
        }
        look
    }
}

/// One worker's link to the rest of the server, held by its `Server`.
#[derive(Debug)]
pub struct Worker {
    pub id: usize,
    pub slots: Slots,
    /// Where the metrics find this worker's figures.
    pub board: Arc<Board>,
    /// Per worker: a relay receiver there is behind and keeping up, so
    /// every worker's senders wait (`pacing.rs`, across workers).
    pub(crate) holding: Arc<Vec<AtomicBool>>,
    pub(crate) reports: mpsc::Sender<Report>,
    /// Connections to and from the other workers (`spread.rs`).
    pub(crate) handoff: Handoff,
    /// Every worker's load, read at accept (kept to save an allocation).
    pub(crate) loads: Vec<usize>,
    /// The TLS configuration worker 0 last reloaded for every worker.
    #[cfg(feature = "tls")]
    pub(crate) tls: Follower<Arc<rustls::ServerConfig>>,
    /// Every worker's watchdog beats, and what worker 0 last saw of them.
    pub(crate) beats: Beats,
    pub(crate) watch: Watch,
}

/// What the workers of one server share, made once by the supervisor; each
/// worker's [`Worker`] is made from it.
#[derive(Debug)]
pub struct Shared {
    pub slots: Slots,
    pub board: Arc<Board>,
    pub holding: Arc<Vec<AtomicBool>>,
    pub reports: mpsc::Sender<Report>,
    #[cfg(feature = "tls")]
    pub tls: Arc<Latest<Arc<rustls::ServerConfig>>>,
    pub beats: Beats,
}

impl Shared {
    /// For `n` workers, at most `max` connections in all; their reports go
    /// to `reports`.
    pub fn new(n: usize, max: usize, reports: mpsc::Sender<Report>) -> Self {
        Self {
            slots: Slots::new(max, n),
            board: Arc::new(Board::new(n)),
            holding: Arc::new((0..n).map(|_| AtomicBool::new(false)).collect()),
            reports,
            #[cfg(feature = "tls")]
            tls: Arc::new(Latest::new()),
            beats: Beats::new(n),
        }
    }

    /// Worker `id`'s link, with its end of the handoff.
    pub fn worker(&self, id: usize, handoff: Handoff) -> Worker {
        Worker {
            id,
            slots: self.slots.clone(),
            board: self.board.clone(),
            holding: self.holding.clone(),
            reports: self.reports.clone(),
            handoff,
            loads: Vec::with_capacity(self.holding.len()),
            #[cfg(feature = "tls")]
            tls: Follower::new(self.tls.clone()),
            beats: self.beats.clone(),
            watch: Watch::new(self.holding.len()),
        }
    }
}

impl Worker {
    /// How many workers the server has (one holding flag each).
    pub fn workers(&self) -> usize {
        self.holding.len()
    }

    /// Where a connection this worker has just accepted is served
    /// (`spread::choose`, on every worker's load now).
    /// This worker takes no more connections ([`Slots::retire`]).
    pub fn retire(&self) {
        self.slots.retire(self.id);
    }

    pub fn route(&mut self) -> Route {
        self.slots.loads(&mut self.loads);
        crate::spread::choose(self.id, &self.loads)
    }

    /// Hands a connection to worker `to`, counted in its load from now on.
    /// Gives it back if that worker's loop has ended.
    pub fn hand(&self, to: usize, handed: Handed) -> Result<(), Handed> {
        self.slots.add(to);
        self.handoff
            .send(to, handed)
            .inspect_err(|_| self.slots.sub(to))
    }

    /// A connection another worker handed to this one, if one is waiting.
    /// It no longer counts as on its way: taking it in takes a slot, which
    /// counts it again.
    pub fn take_handed(&self) -> Option<Handed> {
        let handed = self.handoff.take()?;
        self.slots.sub(self.id);
        Some(handed)
    }

    /// Says whether this worker's relay receivers hold senders back.
    pub fn set_holding(&self, on: bool) {
        if let Some(flag) = self.holding.get(self.id) {
            flag.store(on, Ordering::Release);
        }
    }

    /// True if another worker's receivers hold senders back.
    pub fn others_holding(&self) -> bool {
        self.holding
            .iter()
            .enumerate()
            .any(|(i, f)| i != self.id && f.load(Ordering::Acquire))
    }

    /// Sends this worker's counters to the supervisor; `last` once its
    /// loop has ended.
    pub fn report(&self, stats: &Stats, active: usize, last: bool) {
        // The supervisor outlives every worker; if it is gone, so is the
        // process.
        let _ = self.reports.send(Report::Figures {
            worker: self.id,
            stats: stats.clone(),
            active,
            last,
        });
    }

    /// A watchdog tick of this worker's loop: it turned.
    pub fn beat(&self) {
        self.beats.beat(self.id);
    }

    /// This worker's loop has ended: the watchdog no longer waits for it.
    pub fn stop_beating(&self) {
        self.beats.stop(self.id);
    }

    /// Worker 0's look at every worker's beats (`Watch::look`).
    pub fn look(&mut self) -> Look {
        self.watch.look(&self.beats.now())
    }

    /// Tells the supervisor this worker's part of `event`: `conns` of its
    /// connections.
    pub fn tell(&self, event: Event, conns: usize) {
        let _ = self.reports.send(Report::Event {
            worker: self.id,
            event,
            conns,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_shows_what_each_worker_reported_or_not_yet() {
        let board = Board::new(2);
        let reported = |active| (Stats::default(), active);
        board.post(
            1,
            Figures {
                active: 1,
                ..Figures::default()
            },
        );
        assert!(board.shows(&[reported(0), reported(1)]));
        // Worker 1 reported that its last connection closed; its post is
        // still to come.
        assert!(!board.shows(&[reported(0), reported(0)]));
        board.post(1, Figures::default());
        assert!(board.shows(&[reported(0), reported(0)]));
    }

    #[test]
    fn the_board_sums_every_workers_figures() {
        let board = Board::new(2);
        for (id, (active, draining)) in [(3, 0), (0, 2)].into_iter().enumerate() {
            board.post(
                id,
                Figures {
                    active,
                    draining_conns: draining,
                    ..Figures::default()
                },
            );
        }
        let sum = board.sum(true, false);
        assert_eq!((sum.active, sum.draining_conns), (3, 2));
        assert_eq!(sum.per_worker, [3, 0]);
        assert!(sum.draining);
    }

    #[test]
    fn the_watchdog_waits_for_every_running_loop() {
        let mut watch = Watch::new(3);
        let look = |w: &mut Watch, now: &[u64]| w.look(now);
        assert!(look(&mut watch, &[1, 1, 1]).all_turned);
        // Worker 2 late once: not told this time, nobody said stuck yet.
        let l = look(&mut watch, &[2, 2, 1]);
        assert!(!l.all_turned && l.stalled.is_empty());
        assert!(look(&mut watch, &[3, 3, 3]).all_turned);
        // Worker 1 stands still: said once, on its second missed look.
        assert!(!look(&mut watch, &[4, 3, 4]).all_turned);
        let l = look(&mut watch, &[5, 3, 5]);
        assert_eq!((l.all_turned, l.stalled.clone()), (false, vec![1]));
        assert_eq!(look(&mut watch, &[6, 3, 6]).stalled, Vec::<usize>::new());
        // It turns again.
        let l = look(&mut watch, &[7, 4, 7]);
        assert!(l.all_turned);
        assert_eq!(l.recovered, vec![1]);
        // A loop that has ended is not waited for.
        assert!(look(&mut watch, &[8, Beats::STOPPED, 8]).all_turned);
        assert!(look(&mut watch, &[9, Beats::STOPPED, 9]).all_turned);
    }

    #[test]
    fn followers_take_the_latest_value_once() {
        let latest = Arc::new(Latest::new());
        let mut zero = Follower::new(latest.clone());
        let mut one = Follower::new(latest.clone());
        let mut current = "old";
        one.follow(&mut current);
        assert_eq!(current, "old", "nothing set yet");
        zero.publish("new");
        let mut zeros = "old";
        zero.follow(&mut zeros);
        assert_eq!(zeros, "old", "the publisher had it already");
        one.follow(&mut current);
        assert_eq!(current, "new");
        current = "changed here";
        one.follow(&mut current);
        assert_eq!(current, "changed here", "taken once, not again");
        latest.set("newer");
        one.follow(&mut current);
        assert_eq!(current, "newer");
    }

    #[test]
    fn slots_are_shared_and_never_oversold() {
        let slots = Slots::new(3, 4);
        let other = slots.clone();
        assert!(slots.take(0));
        assert!(other.take(1));
        assert!(slots.take(0));
        assert!(!other.take(1), "the fourth anywhere is refused");
        assert_eq!(slots.taken(), 3);
        other.free(1);
        assert!(slots.take(0));
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let s = slots.clone();
                std::thread::spawn(move || (0..1000).filter(|_| s.take(w)).count())
            })
            .collect();
        let won: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(won, 0, "full stays full under contention");
        let mut loads = Vec::new();
        slots.loads(&mut loads);
        assert_eq!(
            loads,
            [3, 0, 0, 0],
            "each worker's part, refusals not counted"
        );
    }
}
