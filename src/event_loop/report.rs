//! Reporting: what is counted and the one call that counts bytes
//! ([`Tally::count`]: the stats, the access log, the visit's total), the
//! stats reporter woken when figures move (its timer's handler is in
//! `time.rs`), the figures a scrape shows (`metrics.rs` serves them), with
//! several workers this worker's figures posted for the others
//! (`worker_link.rs`), and the lines about the whole server
//! ([`Server::say`]).
//!
//! Counting itself happens where things happen, in plain integers
//! (`Tally::stats`, bumped by every layer; bytes through `Tally::count`);
//! the rest of this file only reads them.

use std::time::{Duration, Instant};

use mio::Token;

use super::time::TimerKey;
use super::Server;
use crate::access_log::AccessLog;
use crate::connection::Connection;
use crate::logging::{self, SharedThrottle};
use crate::metrics::{self, Figures, Metrics, Settings};
use crate::stats::{Reporter, Stats};
use crate::worker_link::Event;

/// With several workers, how stale the metrics' view of another worker
/// may be.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// What is counted about connections, and the access log: bytes moved are
/// counted in one call, [`Tally::count`], for the stats, the access log
/// and the visit under way (whose total charges the turn's budget).
#[derive(Debug)]
pub(super) struct Tally {
    pub(super) stats: Stats,
    /// `--access-log`: one line per connection when it ends; `None` when
    /// off, and then it costs nothing.
    pub(super) access: Option<AccessLog>,
    /// Bytes moved by the visit under way.
    moved: usize,
}

impl Tally {
    pub(super) fn new(access_log: bool) -> Self {
        Self {
            stats: Stats::default(),
            access: access_log.then(AccessLog::new),
            moved: 0,
        }
    }

    /// Bytes moved for connection `token`: read from it (`bytes_in`,
    /// plaintext over TLS) and written to it (`bytes_out`).
    #[inline]
    pub(super) fn count(&mut self, token: Token, bytes_in: usize, bytes_out: usize) {
        self.stats.bytes_in += bytes_in as u64;
        self.stats.bytes_out += bytes_out as u64;
        self.moved += bytes_in + bytes_out;
        if let Some(access) = self.access.as_mut() {
            access.count(token, bytes_in as u64, bytes_out as u64);
        }
    }

    /// Connection `conn`, let in, has shown it is a client (a byte of its
    /// own, or an end that is not a health check's): counted in
    /// `accepted`, once.
    #[inline]
    pub(super) fn client(&mut self, conn: &mut Connection) {
        if std::mem::take(&mut conn.unproven) {
            self.stats.accepted += 1;
        }
    }

    /// The visit's count of bytes moved, for a read to add work that moved
    /// no counted byte (a TLS record's decryption, `Connection::read`):
    /// charged to the visit under way, not to the stats.
    #[inline]
    pub(super) fn work(&mut self) -> &mut usize {
        &mut self.moved
    }

    /// The bytes the visit under way has moved so far.
    #[inline]
    pub(super) fn moving(&self) -> usize {
        self.moved
    }

    /// The bytes moved since the last call: what a visit moved.
    #[inline]
    pub(super) fn take_moved(&mut self) -> usize {
        std::mem::take(&mut self.moved)
    }
}

/// The loop's reporting state.
#[derive(Debug)]
pub(super) struct Report {
    /// When to write the periodic stats line; `None` with
    /// `--stats-interval 0`.
    pub(super) reporter: Option<Reporter>,
    /// `--metrics`: the listener and its scrapes, in this loop (the only
    /// one, or worker 0).
    pub(super) metrics: Option<Metrics>,
    /// Turns of the loop, and the time spent in them (outside
    /// `epoll_wait`), for the metrics.
    pub(super) turns: u64,
    pub(super) busy: Duration,
    /// With several workers: when this loop's figures may next be posted,
    /// and whether a timer is armed to post them.
    pub(super) publish_next: Instant,
    pub(super) publish_armed: bool,
    /// The figures last posted (counters, active connections, those a
    /// drain waits for).
    posted: Option<(Stats, usize, usize)>,
}

/// Conditions clients cause at any rate, said at most once per
/// `NOTICE_EVERY` each for the whole server (every worker meets them at
/// once): the server full, a TLS handshake failed.
pub(super) static FULL_NOTICE: SharedThrottle = SharedThrottle::new();
pub(super) static HANDSHAKE_NOTICE: SharedThrottle = SharedThrottle::new();

/// How often a condition clients can cause at any rate (the server full, a
/// failed TLS handshake) is said above debug, at most: once a minute, so
/// that no client can write the log, and an operator still learns of it
/// within a minute (the counters have every occurrence).
pub(super) const NOTICE_EVERY: Duration = Duration::from_secs(60);

/// `N turned away`-style counts for a throttled line: the `held` held back
/// since the last such line, and this one.
pub(super) fn since_last(held: u64, what: &str) -> String {
    format!(
        "({} {what} since the last such line; at most one a minute)",
        held + 1
    )
}

impl Report {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            reporter: None,
            metrics: None,
            turns: 0,
            busy: Duration::ZERO,
            publish_next: now,
            publish_armed: false,
            posted: None,
        }
    }
}

impl Server {
    /// A metrics event (`metrics.rs`): a scrape arrives or is answered, with
    /// the figures of the whole server.
    pub(super) fn scrape(&mut self, token: Token, now: Instant) {
        let Some(mut metrics) = self.report.metrics.take() else {
            return;
        };
        let after = metrics.event(token, self.poll.registry(), now, || self.figures());
        self.report.metrics = Some(metrics);
        for a in after {
            if let metrics::After::Deadline(token, at) = a {
                self.timers.schedule(at, TimerKey::Metrics(token));
            }
        }
    }

    /// This loop's figures, for a scrape or for the other workers.
    pub(super) fn own_figures(&self) -> Figures {
        let mut stats = self.tally.stats.clone();
        stats.log_dropped = logging::dropped();
        Figures {
            stats,
            active: self.active(),
            draining_conns: self.draining_conns(),
            settings: self.settings(),
            per_worker: Vec::new(),
            queued: self.conns.iter().map(|c| c.queue.len() as u64).sum(),
            turns: self.report.turns,
            busy: self.report.busy,
            draining: self.draining.is_some(),
            tls: self.is_tls(),
        }
    }

    /// What a scrape shows: this loop's figures, or with several workers
    /// every worker's, summed (each at most `PUBLISH_EVERY` old), with
    /// this loop's settings (the same on every worker).
    pub(super) fn figures(&self) -> Figures {
        let own = self.own_figures();
        let Some(worker) = &self.worker else {
            return own;
        };
        worker.board.post(worker.id, own.clone());
        Figures {
            settings: own.settings,
            ..worker.board.sum(own.draining, own.tls)
        }
    }

    /// Connections the drain still waits for: every one left, once a
    /// shutdown has begun.
    fn draining_conns(&self) -> usize {
        if self.draining.is_some() {
            self.conns.len()
        } else {
            0
        }
    }

    /// The limits this server runs with, and the certificate it serves.
    fn settings(&self) -> Settings {
        #[cfg(feature = "tls")]
        let certificate_expiry = self
            .is_tls()
            .then(crate::tls::served)
            .flatten()
            .and_then(|c| c.not_after);
        #[cfg(not(feature = "tls"))]
        let certificate_expiry = None;
        Settings {
            max_connections: self.opts.max_connections,
            max_per_ip: self.opts.edge.max_per_ip,
            idle_timeout: self.opts.idle_timeout,
            workers: self.worker.as_ref().map_or(1, |w| w.workers()),
            certificate_expiry,
        }
    }

    /// With several workers: posts this loop's figures for the worker that
    /// serves the metrics, at most every `PUBLISH_EVERY`, and once more
    /// after the last change (a timer), so that an idle worker's figures
    /// are whole and it still makes no wakeups of its own.
    pub(super) fn publish(&mut self, now: Instant) {
        // Nothing moved since the last post: nothing to post, no timer (an
        // idle worker stays asleep).
        let figures = (
            self.tally.stats.clone(),
            self.active(),
            self.draining_conns(),
        );
        if self.report.posted.as_ref() == Some(&figures) {
            return;
        }
        if now >= self.report.publish_next {
            let own = self.own_figures();
            if let Some(worker) = &self.worker {
                worker.board.post(worker.id, own);
            }
            self.report.posted = Some(figures);
            self.report.publish_next = now + PUBLISH_EVERY;
            self.report.publish_armed = false;
        } else if !self.report.publish_armed {
            self.report.publish_armed = true;
            self.timers
                .schedule(self.report.publish_next, TimerKey::Publish);
        }
    }

    /// Says an event of the whole server (a signal, the drain timeout): with
    /// one worker, its line; with several, this worker's part of it to the
    /// supervisor, which writes one line for all (`workers.rs`).
    pub(super) fn say(&self, event: Event) {
        let conns = self.conns.len();
        match &self.worker {
            None => event.log(conns, self.opts.drain_timeout),
            Some(worker) => worker.tell(event, conns),
        }
    }

    /// Once per turn: a quiet stats reporter whose figures moved is armed
    /// again. One comparison while it is not quiet.
    pub(super) fn wake_reporter(&mut self, now: Instant) {
        let active = self.active();
        if let Some(reporter) = self.report.reporter.as_mut() {
            if let Some(due) = reporter.wake(now, &self.tally.stats, active) {
                self.timers.schedule(due, TimerKey::Stats);
            }
        }
    }
}
