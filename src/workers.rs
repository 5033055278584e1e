//! Several workers: one readiness loop per core, behaving as one server.
//!
//! With `--workers N` (N > 1) the process runs N threads, each a complete
//! [`Server`]: its own `mio::Poll`, connection table, timers, write queues
//! and protocol state, and its own listening socket on the shared address
//! (`sys::listen_group`, SO_REUSEPORT: the kernel spreads new connections
//! over the workers). Nothing on the per-message path is shared: a worker
//! touches what another owns only through the two things in this module:
//!
//! - [`Slots`]: the one `--max-connections` count for the whole server, an
//!   atomic reserved at accept and released when a connection starts to
//!   close: touched per connection, never per message;
//! - the report channel: each worker sends its counters when its stats
//!   timer finds they moved, and the supervisor (the main thread) writes
//!   the one `stats:` line for the whole server, at most once per interval,
//!   and the final one when every worker has stopped.
//!
//! Signals reach every worker: each registers its own signal pipe, so the
//! first SIGINT or SIGTERM starts every worker's drain within the one
//! `--drain-timeout`, and a second stops them all. The supervisor only
//! waits: it makes no wakeups of its own while the server is idle.
//!
//! With one worker none of this exists: `lib.rs` builds one `Server` on the
//! main thread exactly as before, with no thread, channel or atomic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::event_loop::{Exit, Parts, Server};
use crate::metrics::Figures;
use crate::protocol::Protocol;
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
        if self.taken.fetch_add(1, Ordering::AcqRel) < self.max {
            true
        } else {
            self.taken.fetch_sub(1, Ordering::AcqRel);
            false
        }
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
/// 100 ms, and once after its last change (`event_loop.rs`, `publish`);
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
    reports: mpsc::Sender<Report>,
}

impl Worker {
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

/// How a multi-worker run ended, for `lib.rs`.
pub struct Outcome {
    pub exit: Exit,
}

/// Runs one worker per prepared [`Parts`] (listener, poll, signal pipe),
/// each with its protocol, until all have stopped. Writes the server's
/// stats lines. `tls` configures every worker alike (one shared
/// configuration, so that sessions resume on any worker).
/// `metrics`, if given, is served by worker 0, from every worker's posted
/// figures ([`Board`]).
pub fn run<P>(
    parts: Vec<Parts>,
    protocols: Vec<P>,
    metrics: Option<mio::net::TcpListener>,
    opts: &crate::config::ServerOptions,
    #[cfg(feature = "tls")] tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> std::io::Result<Outcome>
where
    P: Protocol + Send + 'static,
{
    let n = parts.len();
    let slots = Slots::new(opts.max_connections);
    let board = Arc::new(Board::new(n));
    // `--max-per-ip` is the whole server's too.
    let per_ip = crate::edge::PerIp::shared(&opts.edge);
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(n);
    let mut metrics = metrics;
    for (id, (parts, protocol)) in parts.into_iter().zip(protocols).enumerate() {
        let metrics = metrics.take();
        let worker = Worker {
            id,
            slots: slots.clone(),
            board: board.clone(),
            reports: tx.clone(),
        };
        let opts = opts.clone();
        let per_ip = per_ip.clone();
        #[cfg(feature = "tls")]
        let tls = tls.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                crate::logging::set_worker(id);
                let server = Server::new(parts, opts, protocol)
                    .in_worker(worker)
                    .with_per_ip(per_ip);
                let server = match metrics {
                    Some(listener) => server
                        .with_metrics(listener)
                        .map_err(|e| std::io::Error::other(e.to_string()))?,
                    None => server,
                };
                #[cfg(feature = "tls")]
                let server = match tls {
                    Some(tls) => server.with_tls(tls),
                    None => server,
                };
                server.run()
            })?;
        handles.push(handle);
    }
    // Only the workers hold senders now: the channel ends when they do.
    drop(tx);
    #[cfg(feature = "tls")]
    let is_tls = tls.is_some();
    #[cfg(not(feature = "tls"))]
    let is_tls = false;
    supervise(rx, n, opts.stats_interval, is_tls);
    let mut exit = Exit::Drained;
    let mut failed = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok((Exit::Aborted, _))) => exit = Exit::Aborted,
            Ok(Ok((Exit::Drained, _))) => {}
            Ok(Err(e)) => failed = Some(e),
            // A worker panicked: with panic=abort the process is gone
            // already; in a test build, say so.
            Err(_) => failed = Some(std::io::Error::other("a worker panicked")),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(Outcome { exit }),
    }
}

/// The supervisor: gathers the workers' reports and writes one stats line
/// for the whole server, at most once per `every`, and the final line when
/// the last worker has stopped (its channel closed).
fn supervise(rx: mpsc::Receiver<Report>, n: usize, every: Option<Duration>, tls: bool) {
    let mut latest: Vec<(Stats, usize)> = vec![(Stats::default(), 0); n];
    let mut written: Option<(Stats, usize)> = None;
    let mut next: Option<Instant> = None;
    let mut pending = false;
    loop {
        let got = match (next, pending) {
            (Some(at), true) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            _ => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(report) => {
                if let Some(slot) = latest.get_mut(report.worker) {
                    *slot = (report.stats, report.active);
                }
                pending = true;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if pending && next.is_none_or(|at| now >= at) {
            let total = sum(&latest);
            if written.as_ref() != Some(&total) {
                log::info!("stats: {}", total.0.line(total.1, tls));
                written = Some(total);
            }
            pending = false;
            next = every.map(|d| now + d);
        }
    }
    let (stats, active) = sum(&latest);
    log::info!("stats: {} (final)", stats.line(active, tls));
}

/// The server's figures: every worker's, added up.
fn sum(latest: &[(Stats, usize)]) -> (Stats, usize) {
    let mut total = Stats::default();
    let mut active = 0;
    for (stats, a) in latest {
        total.add(stats);
        active += a;
    }
    total.log_dropped = crate::logging::dropped();
    (total, active)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_sum_adds_every_counter() {
        let a = Stats {
            accepted: 2,
            bytes_in: 10,
            ..Stats::default()
        };
        let b = Stats {
            accepted: 3,
            rejected: 1,
            bytes_in: 5,
            ..Stats::default()
        };
        let (total, active) = sum(&[(a, 1), (b, 2)]);
        assert_eq!((total.accepted, total.rejected, total.bytes_in), (5, 1, 15));
        assert_eq!(active, 3);
    }
}
