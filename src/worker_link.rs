//! One worker's link to the rest of the server (`--workers N`): what the
//! workers of one process share, and nothing that runs them (that is the
//! supervisor, `workers.rs`). The loop holds a [`Worker`]; it never sees
//! the supervisor.
//!
//! - [`Slots`]: the one `--max-connections` count for the whole server, an
//!   atomic taken at accept and given back once (`event_loop/admission.rs`,
//!   `Limit`): when a connection starts a bounded close, is turned away,
//!   starts its linger after an unbounded flush, or at the latest when it
//!   is reaped; per connection, never per message;
//! - the [`Board`]: each worker's figures for the metrics, posted at most
//!   every 100 ms and once after the last change, a mutex per worker;
//! - the holding flags: per worker, whether its relay receivers hold
//!   senders back, stored when that changes (`event_loop/relay.rs`,
//!   `post_holding`) and read on every read of a relay's connection
//!   (`event_loop/visit.rs`, `read_input`): per message, relays only;
//! - the report channel to the supervisor, which writes the stats line.
//!
//! Shared across workers but not here: the count per address
//! (`edge::PerIp`), the relays' hub (`hub.rs`) and the TLS configuration;
//! docs/architecture.md ("Workers") lists all of it and how often each is
//! touched.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use crate::metrics::Figures;
use crate::stats::Stats;

/// The connection count shared by the workers of one server.
#[derive(Debug, Clone)]
pub struct Slots {
    taken: Arc<AtomicUsize>,
    max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Self {
            taken: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Takes a slot for a new connection; false if the server is full.
    pub fn take(&self) -> bool {
        // Never above the limit, even for an instant: a client is refused
        // only when the server is really full.
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back.
    pub fn free(&self) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
    }

    /// Slots taken now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
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
}

impl Worker {
    /// How many workers the server has (one holding flag each).
    pub fn workers(&self) -> usize {
        self.holding.len()
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
    fn slots_are_shared_and_never_oversold() {
        let slots = Slots::new(3);
        let other = slots.clone();
        assert!(slots.take());
        assert!(other.take());
        assert!(slots.take());
        assert!(!other.take(), "the fourth anywhere is refused");
        assert_eq!(slots.taken(), 3);
        other.free();
        assert!(slots.take());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = slots.clone();
                std::thread::spawn(move || (0..1000).filter(|_| s.take()).count())
            })
            .collect();
        let won: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(won, 0, "full stays full under contention");
    }
}
