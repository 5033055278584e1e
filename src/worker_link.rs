//! One worker's link to the rest of the server (`--workers N`): what the
//! workers of one process share, and nothing that runs them (that is the
//! supervisor, `workers.rs`). The loop holds a [`Worker`]; it never sees
//! the supervisor.
//!
//! - [`Slots`]: the one `--max-connections` count for the whole server, an
//!   atomic taken at accept and given back when a connection starts a
//!   bounded close or is reaped (`event_loop/admission.rs`): per
//!   connection, never per message; and each worker's part of it, its
//!   load, which decides where a new connection is served (`spread.rs`);
//! - the handoff (`spread::Handoff`): a connection accepted by one worker
//!   and served by another travels through it;
//! - the [`Board`]: each worker's figures for the metrics, posted at most
//!   every 100 ms;
//! - the holding flags: per worker, whether its relay receivers hold
//!   senders back (read on a relay's reads, `pacing.rs`);
//! - the report channel to the supervisor, which writes the stats line.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use crate::metrics::Figures;
use crate::spread::{Handed, Handoff, Route};
use crate::stats::Stats;

/// The connection count shared by the workers of one server, and each
/// worker's load: the slots it holds, plus the connections handed to it
/// that it has not taken in yet.
#[derive(Debug, Clone)]
pub struct Slots {
    taken: Arc<AtomicUsize>,
    max: usize,
    loads: Arc<[AtomicUsize]>,
}

impl Slots {
    /// `max` connections for the whole server of `workers` workers.
    pub fn new(max: usize, workers: usize) -> Self {
        Self {
            taken: Arc::new(AtomicUsize::new(0)),
            max,
            loads: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
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

    /// Each worker's load now, into `out` (one entry per worker).
    pub fn loads(&self, out: &mut Vec<usize>) {
        out.clear();
        out.extend(self.loads.iter().map(|l| l.load(Ordering::Acquire)));
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
pub struct Report {
    pub worker: usize,
    pub stats: Stats,
    /// Connections it is serving now.
    pub active: usize,
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
            total.per_worker.push(f.active);
            total.queued += f.queued;
            total.turns += f.turns;
            total.busy += f.busy;
        }
        total.stats.log_dropped = crate::logging::dropped();
        total
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
}

impl Worker {
    /// Where a connection this worker has just accepted is served
    /// (`spread::choose`, on every worker's load now).
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

    /// Sends this worker's counters to the supervisor.
    pub fn report(&self, stats: &Stats, active: usize) {
        // The supervisor outlives every worker; if it is gone, so is the
        // process.
        let _ = self.reports.send(Report {
            worker: self.id,
            stats: stats.clone(),
            active,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
