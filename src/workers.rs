//! Several workers: one readiness loop per core, behaving as one server.
//!
//! With `--workers N` (N > 1) the process runs N threads, each a complete
//! [`Server`]: its own `mio::Poll`, connection table, timers, write queues
//! and protocol state, and its own listening socket on the shared address
//! (`sys::listen_group`, SO_REUSEPORT), or copies of the sockets systemd
//! passed; a worker that serves more than its share hands what it accepts
//! to one that serves fewer (`spread.rs`). What the workers share is each
//! one's link (`worker_link.rs`): the connection count and each worker's
//! load, the handoff, the figures board, the holding flags and the report
//! channel; the count per address (`edge::PerIp`) and the relays' hub
//! (`hub.rs`) besides.
//! This module starts the workers and is the supervisor: it writes the one
//! `stats:` line for the whole server from the workers' reports, at most
//! once per interval, and the final one when every worker has stopped.
//!
//! Signals reach every worker: each registers its own signal pipe, so the
//! first SIGINT or SIGTERM starts every worker's drain within the one
//! `--drain-timeout`, and a second stops them all. What each worker did
//! about it comes to the supervisor as an [`Event`], and the supervisor
//! writes one line for the whole server ([`Gathering`]), counting every
//! worker's connections. SIGHUP is worker 0's alone
//! (`event_loop/shutdown.rs`). The supervisor only waits: it makes no
//! wakeups of its own while the server is idle.
//!
//! With one worker none of this exists: `lib.rs` builds one `Server` on the
//! main thread exactly as before, with no thread, channel or atomic (the
//! loop still tests its `Option<Worker>`: each turn, and on a relay's
//! reads).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::event_loop::{Exit, Parts, Server};
use crate::hub::Hub;
use crate::protocol::seam::DynProtocol;
use crate::spread::Handoff;
use crate::stats::Stats;
use crate::worker_link::{Board, Event, Report, Shared};

/// How a multi-worker run ended, for `lib.rs`.
pub struct Outcome {
    pub exit: Exit,
}

/// Runs one worker per prepared [`Parts`] (listener, poll, signal pipe),
/// each with its protocol, its hub and its handoff (both made on the
/// workers' wakers), until all have stopped. Writes the server's
/// stats lines. `tls` configures every worker alike (one shared
/// configuration, so that sessions resume on any worker).
/// `metrics`, if given, is served by worker 0, from every worker's posted
/// figures ([`Board`]).
pub fn run(
    parts: Vec<Parts>,
    protocols: Vec<Box<dyn DynProtocol + Send>>,
    hubs: Vec<Hub>,
    handoffs: Vec<Handoff>,
    metrics: Option<mio::net::TcpListener>,
    opts: &crate::config::ServerOptions,
    #[cfg(feature = "tls")] tls: Option<(
        std::sync::Arc<rustls::ServerConfig>,
        crate::config::ServerTls,
    )>,
) -> std::io::Result<Outcome> {
    let n = parts.len();
    let (tx, rx) = mpsc::channel();
    let shared = Shared::new(n, opts.max_connections, tx);
    // `--max-per-ip` is the whole server's too.
    let per_ip = crate::edge::PerIp::shared(&opts.edge);
    let mut handles = Vec::with_capacity(n);
    let mut metrics = metrics;
    let loops = parts.into_iter().zip(protocols).zip(hubs).zip(handoffs);
    for (id, (((parts, protocol), hub), handoff)) in loops.enumerate() {
        let metrics = metrics.take();
        let worker = shared.worker(id, handoff);
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
                    .with_hub(hub)
                    .with_per_ip(per_ip);
                let server = match metrics {
                    Some(listener) => server
                        .with_metrics(listener)
                        .map_err(|e| std::io::Error::other(e.to_string()))?,
                    None => server,
                };
                #[cfg(feature = "tls")]
                let server = match tls {
                    Some((tls, files)) => server.with_tls(tls, files),
                    None => server,
                };
                server.run()
            })?;
        handles.push(handle);
    }
    // Only the workers hold senders now: the channel ends when they do.
    let board = shared.board.clone();
    drop(shared);
    #[cfg(feature = "tls")]
    let is_tls = tls.is_some();
    #[cfg(not(feature = "tls"))]
    let is_tls = false;
    supervise(rx, &board, n, opts, is_tls);
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

/// How long the supervisor waits after a worker's report before writing
/// the line: long enough for every worker to have posted its figures on
/// the board (each posts at most 100 ms after a change), so that the line
/// is the whole server's at one moment, not one worker's news beside the
/// others' older figures.
const SETTLE: Duration = Duration::from_millis(200);

/// How long the supervisor waits for every worker's part of an event
/// before it writes the line with the parts it has: a worker whose loop is
/// stuck must not hold up the line about the others.
const GATHER: Duration = Duration::from_millis(250);

/// An event of the whole server being gathered from the workers' parts,
/// into one line: written once every worker still running has told its
/// part (or has stopped), or at `due` at the latest.
#[derive(Debug)]
struct Gathering {
    event: Event,
    conns: usize,
    heard: Vec<bool>,
    due: Instant,
}

impl Gathering {
    fn new(event: Event, n: usize, now: Instant) -> Self {
        Self {
            event,
            conns: 0,
            heard: vec![false; n],
            due: now + GATHER,
        }
    }

    /// Adds worker `worker`'s part: `conns` of its connections.
    fn hear(&mut self, worker: usize, conns: usize) {
        if let Some(h) = self.heard.get_mut(worker) {
            *h = true;
        }
        self.conns += conns;
    }

    /// True once every worker has told its part or stopped.
    fn complete(&self, stopped: &[bool]) -> bool {
        self.heard.iter().zip(stopped).all(|(h, s)| *h || *s)
    }
}

/// The supervisor: wakes on the workers' reports (each sends one when its
/// stats timer finds its figures moved), and writes one stats line for the
/// whole server from the board, at most once per `stats_interval`, when
/// the sum moved or an hour passed (the heartbeat); one line per event of
/// the whole server, from every worker's part ([`Gathering`]); then the
/// final line, from each worker's last report, when the last worker has
/// stopped (its channel closed).
fn supervise(
    rx: mpsc::Receiver<Report>,
    board: &Board,
    n: usize,
    opts: &crate::config::ServerOptions,
    tls: bool,
) {
    let every = opts.stats_interval;
    let mut latest: Vec<(Stats, usize)> = vec![(Stats::default(), 0); n];
    let mut stopped = vec![false; n];
    let mut gathering: Option<Gathering> = None;
    let mut written: Option<((Stats, usize), Instant)> = None;
    let mut allowed = Instant::now();
    let mut write_at: Option<Instant> = None;
    let say = |g: Gathering| g.event.log(g.conns, opts.drain_timeout);
    loop {
        let wake_at = match (write_at, gathering.as_ref().map(|g| g.due)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let got = match wake_at {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        match got {
            Ok(Report::Figures {
                worker,
                stats,
                active,
                last,
            }) => {
                if let Some(slot) = latest.get_mut(worker) {
                    *slot = (stats, active);
                }
                if last {
                    if let Some(s) = stopped.get_mut(worker) {
                        *s = true;
                    }
                } else if write_at.is_none() && every.is_some() {
                    write_at = Some((now + SETTLE).max(allowed));
                }
            }
            Ok(Report::Event {
                worker,
                event,
                conns,
            }) => {
                // Another event ends the one being gathered: its line first.
                if let Some(g) = gathering.take_if(|g| g.event != event) {
                    say(g);
                }
                gathering
                    .get_or_insert_with(|| Gathering::new(event, n, now))
                    .hear(worker, conns);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(g) = gathering.take_if(|g| g.complete(&stopped) || now >= g.due) {
            say(g);
        }
        if write_at.is_some_and(|at| now >= at) {
            write_at = None;
            let f = board.sum(false, tls);
            let total = (f.stats, f.active);
            let heartbeat = written
                .as_ref()
                .is_some_and(|(_, at)| now >= *at + crate::stats::HEARTBEAT);
            if heartbeat || written.as_ref().map(|(t, _)| t) != Some(&total) {
                log::info!("stats: {}", total.0.line(total.1, tls));
                written = Some((total, now));
            }
            allowed = now + every.unwrap_or_default();
            // A worker's report can come before its figures are on the
            // board (it posts at most every 100 ms, and on a loaded machine
            // later than SETTLE): then the line just written, or not
            // written, is stale, and would stay so until the next change.
            // Look again at the next interval.
            if !board.shows(&latest) {
                write_at = Some((now + SETTLE).max(allowed));
            }
        }
    }
    if let Some(g) = gathering {
        say(g);
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
