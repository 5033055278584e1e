//! Counters, the one line that reports them, and when to report.
//!
//! The loop bumps these as things happen (`event_loop/`); the stats timer
//! logs [`Stats::line`] at most every `--stats-interval`, when
//! [`Reporter`] says so, and once more at shutdown.
//! Counting is a few integer adds per event: no clock reads, no syscalls.
//!
//! [`Reporter`] decides when a line is worth writing: the first one after
//! any change, then nothing while the figures stand still (but one line an
//! hour, so that a silent log still says the server is alive). While
//! nothing changes its timer is not armed again until the hour is up, so
//! an idle server with the default settings wakes for it twice after start
//! (the baseline line, then the tick that finds nothing moved), then once
//! an hour.

use std::time::{Duration, Instant};

/// Totals since the server started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Clients: connections let in to be served, past the limit and the
    /// gate (`event_loop/entry.rs`, `let_in`), counted once they prove not
    /// to be a health check: at their first byte (of a TLS handshake, too,
    /// so one that then fails is counted here and in `tls_failures`; not
    /// of a PROXY header, which is the balancer's), or when they end
    /// otherwise than as a check. Those turned away are not: they are
    /// counted by reason below; health checks in `checks`.
    pub accepted: u64,
    /// Connections turned away because the server was full.
    pub rejected: u64,
    /// Connections closed by the idle timeout.
    pub timed_out: u64,
    /// Receivers disconnected for not reading what others sent them.
    pub slow_consumers: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Log lines that could not be written (a closed pipe): the loop copies
    /// `logging::dropped()` here before reporting.
    pub log_dropped: u64,
    /// Peers refused by `--allow`/`--deny`, or outside `--proxy-from`.
    pub denied: u64,
    /// Connections turned away by `--max-per-ip`.
    pub per_ip_rejected: u64,
    /// PROXY protocol headers that were bad, or did not arrive in time.
    pub proxy_errors: u64,
    /// TLS handshakes completed in full, and resumed.
    pub tls_full: u64,
    pub tls_resumed: u64,
    /// SIGHUP reloads of the TLS files that failed.
    pub tls_reload_failures: u64,
    /// Health checks: connections closed by the peer without a byte of
    /// its own, before it could have read one of ours (`CloseReason::Check`).
    pub checks: u64,
    /// The link to other instances' (`--cluster`) figures; `None` without
    /// one. Copied from the link at the end of each turn.
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::cluster::Figures>,
}

impl Stats {
    /// Adds another loop's counters to these (the workers' sum).
    pub fn add(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.timed_out += other.timed_out;
        self.slow_consumers += other.slow_consumers;
        self.tls_failures += other.tls_failures;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.denied += other.denied;
        self.per_ip_rejected += other.per_ip_rejected;
        self.proxy_errors += other.proxy_errors;
        self.tls_full += other.tls_full;
        self.tls_resumed += other.tls_resumed;
        self.tls_reload_failures += other.tls_reload_failures;
        self.checks += other.checks;
        #[cfg(feature = "cluster")]
        if let Some(theirs) = &other.cluster {
            self.cluster
                .get_or_insert_with(Default::default)
                .add(theirs);
        }
    }

    /// The report, given how many connections are open now:
    /// `connections total=3 active=1 rejected=0 timed_out=1 slow_consumers=0
    /// bytes_in=10 bytes_out=10` (on one line), with `tls_failures=N` before
    /// the bytes on a TLS listener. Bytes are application bytes: TLS records
    /// and handshakes are not counted.
    pub fn line(&self, active: usize, tls: bool) -> String {
        let tls = if tls {
            format!("tls_failures={} ", self.tls_failures)
        } else {
            String::new()
        };
        // The edge's counters and the log's losses, once there are any.
        let mut dropped = String::new();
        for (name, n) in [
            ("denied", self.denied),
            ("per_ip_rejected", self.per_ip_rejected),
            ("proxy_errors", self.proxy_errors),
            ("checks", self.checks),
            ("log_dropped", self.log_dropped),
        ] {
            if n > 0 {
                dropped.push_str(&format!(" {name}={n}"));
            }
        }
        // The cluster's figures, with one.
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.cluster {
            let state = if c.linked > 0 { "up" } else { "down" };
            dropped.push_str(&format!(
                " cluster={state} published={} received={} reconnects={} outbox={} \
                 cluster_dropped={}",
                c.published, c.received, c.reconnects, c.outbox, c.dropped
            ));
        }
        format!(
            "connections total={} active={} rejected={} timed_out={} slow_consumers={} \
             {tls}bytes_in={} bytes_out={}{dropped}",
            self.accepted,
            active,
            self.rejected,
            self.timed_out,
            self.slow_consumers,
            self.bytes_in,
            self.bytes_out
        )
    }
}

/// How long a server whose figures do not move stays silent: one line an
/// hour says it is still there.
pub const HEARTBEAT: Duration = Duration::from_secs(3600);

/// `1 connection`, `3 connections`: for log lines a person reads.
pub fn connections(n: usize) -> String {
    if n == 1 {
        "1 connection".into()
    } else {
        format!("{n} connections")
    }
}

/// When to write the periodic stats line. Pure: time and figures are
/// passed in. The loop keeps one timer entry for it, due at
/// [`due`](Reporter::due).
#[derive(Debug)]
pub struct Reporter {
    every: Duration,
    /// The figures last written, and when.
    last: Option<(Stats, usize, Instant)>,
    /// When the timer is armed for; an entry for any other time is stale.
    due: Option<Instant>,
    /// Nothing moved at the last tick: disarmed until something does (or
    /// the heartbeat).
    quiet: bool,
}

impl Reporter {
    /// A reporter writing at most every `every`, starting at `now`.
    pub fn new(every: Duration, now: Instant) -> Self {
        Self {
            every,
            last: None,
            due: Some(now + every),
            quiet: false,
        }
    }

    /// When the timer should fire next.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The timer fired for `at`. Returns the line to log, if the figures
    /// moved since the last one or the heartbeat is due; the next due time
    /// is then [`due`](Self::due). A stale `at` does nothing.
    pub fn tick(
        &mut self,
        at: Instant,
        now: Instant,
        stats: &Stats,
        active: usize,
        tls: bool,
    ) -> Option<String> {
        if self.due != Some(at) {
            return None;
        }
        let moved = self
            .last
            .as_ref()
            .is_none_or(|(s, a, _)| s != stats || *a != active);
        let heartbeat = self
            .last
            .as_ref()
            .is_some_and(|(_, _, when)| now >= *when + HEARTBEAT);
        if moved || heartbeat {
            self.last = Some((stats.clone(), active, now));
            self.quiet = false;
            // Keep the cadence, unless the loop fell behind it.
            self.due = Some((at + self.every).max(now));
            return Some(stats.line(active, tls));
        }
        // Still: sleep until the heartbeat, unless something moves first.
        self.quiet = true;
        self.due = self.last.as_ref().map(|(_, _, when)| *when + HEARTBEAT);
        None
    }

    /// Called once per loop turn: if the reporter went quiet and a figure
    /// has moved since, re-arms it one interval from `now` and returns the
    /// new due time for the loop to schedule. Costs one comparison while
    /// not quiet.
    #[inline]
    pub fn wake(&mut self, now: Instant, stats: &Stats, active: usize) -> Option<Instant> {
        if !self.quiet {
            return None;
        }
        let (s, a, _) = self.last.as_ref()?;
        if s == stats && *a == active {
            return None;
        }
        self.quiet = false;
        self.due = Some(now + self.every);
        self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_names_every_counter() {
        let s = Stats {
            accepted: 7,
            rejected: 1,
            timed_out: 2,
            slow_consumers: 3,
            tls_failures: 4,
            bytes_in: 300,
            bytes_out: 299,
            ..Stats::default()
        };
        assert!(s.line(4, true).contains(" tls_failures=4 bytes_in=300"));
        assert_eq!(
            s.line(4, false),
            "connections total=7 active=4 rejected=1 timed_out=2 slow_consumers=3 \
             bytes_in=300 bytes_out=299"
        );
    }

    #[test]
    fn dropped_log_lines_are_reported_when_there_are_some() {
        let s = Stats {
            log_dropped: 5,
            ..Stats::default()
        };
        assert!(s.line(0, false).ends_with(" bytes_out=0 log_dropped=5"));
    }

    #[test]
    fn the_reporter_writes_on_change_then_sleeps_until_something_moves() {
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut r = Reporter::new(every, t0);
        let mut s = Stats::default();
        let at = r.due().unwrap();
        assert_eq!(at, t0 + every);
        // The first tick always writes.
        assert!(r.tick(at, at, &s, 0, false).is_some());
        let at = r.due().unwrap();
        assert_eq!(at, t0 + 2 * every);
        // Nothing moved: no line, and the timer sleeps until the heartbeat.
        assert_eq!(r.tick(at, at, &s, 0, false), None);
        assert_eq!(r.due(), Some(t0 + every + HEARTBEAT));
        // Still nothing: waking costs nothing and arms nothing.
        assert_eq!(r.wake(at + every, &s, 0), None);
        // A connection: re-armed one interval later, and that tick writes.
        s.accepted += 1;
        let woke = r.wake(at + every, &s, 1).unwrap();
        assert_eq!(woke, at + 2 * every);
        assert_eq!(
            r.tick(t0 + every + HEARTBEAT, woke, &s, 1, false),
            None,
            "stale"
        );
        assert!(r.tick(woke, woke, &s, 1, false).is_some());
    }

    #[test]
    fn a_still_server_writes_one_heartbeat_an_hour() {
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut r = Reporter::new(every, t0);
        let s = Stats::default();
        let first = r.due().unwrap();
        assert!(r.tick(first, first, &s, 0, false).is_some());
        let at = r.due().unwrap();
        assert_eq!(r.tick(at, at, &s, 0, false), None);
        let hb = r.due().unwrap();
        assert_eq!(hb, first + HEARTBEAT);
        assert!(r.tick(hb, hb, &s, 0, false).is_some(), "heartbeat");
    }
}
