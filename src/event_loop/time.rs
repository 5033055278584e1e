//! Time: one handler per timer key. Every deadline of the loop is an entry
//! in one heap (`timer.rs`); when one fires, the matching handler here acts
//! on it, or finds it stale and does nothing.
//!
//! A connection's deadlines (idle, the protocol's own, a stage's bound) are
//! combined in one place, `next_due` (`output.rs`), and its one live entry
//! re-arms itself when the real deadline moved later (see `timer.rs`).

use std::time::Instant;

use mio::Token;

use super::closing::{CLOSE_GRACE, LINGER_CHECK};
use super::output::{next_due, protocol_due};
use super::{connections, peer_name, Server};
use crate::connection::Stage;
use crate::logging;
use crate::metrics;
use crate::pacing::Standing;
use crate::protocol::CloseReason;
use crate::stats::Reporter;
use crate::worker_link::{Event, Watch};

/// Sent to a client before the idle timeout closes it.
pub const IDLE_TIMEOUT: &[u8] = b"Connection timeout\n";

/// Whose deadline a timer entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimerKey {
    /// A connection's idle timeout or close bound (`Connection::deadline`).
    Conn(Token),
    /// The periodic stats line.
    Stats,
    /// The end of the shutdown drain.
    Drain,
    /// Try accepting again after an accept error; see whether the episode
    /// of errors has passed.
    AcceptRetry,
    /// A receiver that fell behind a relay may stop holding senders back.
    Pacing,
    /// A metrics client's request is due.
    Metrics(Token),
    /// Post this worker's figures for the metrics (several workers).
    Publish,
    /// Look again at senders held by another worker's receivers.
    Recheck,
    /// The cluster link's next deadline (`cluster.rs`: a retry, a reply
    /// due, a claim's wait, the names' refresh).
    #[cfg(feature = "cluster")]
    Cluster,
    /// Tell systemd's watchdog the loop is turning (with several workers:
    /// this loop's beat, and worker 0's look at every loop's).
    Watchdog,
}

impl TimerKey {
    /// How many entries the loop's own keys (not connections') can have
    /// live at once.
    pub(super) const LOOP_KEYS: usize = 8 + metrics::MAX_CLIENTS;
}

impl Server {
    /// The timers a loop starts with: systemd's watchdog (with several
    /// workers every loop beats, so that any loop that stops turning is
    /// noticed) and the stats line.
    pub(super) fn start_timers(&mut self, now: Instant) {
        // The cluster link's first connect is due now.
        #[cfg(feature = "cluster")]
        self.arm_cluster(now);
        if let Some(every) = self.watchdog_every() {
            self.timers.schedule(now + every, TimerKey::Watchdog);
        }
        if let Some(every) = self.opts.stats_interval {
            let reporter = Reporter::new(every, now);
            if let Some(due) = reporter.due() {
                self.timers.schedule(due, TimerKey::Stats);
            }
            self.report.reporter = Some(reporter);
        }
    }

    /// Fires every timer entry that is due.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_expired(now) {
            match key {
                TimerKey::Conn(token) => self.connection_timer(token, at, now),
                TimerKey::Stats => {
                    let (active, tls) = (self.active(), self.is_tls());
                    self.tally.stats.log_dropped = logging::dropped();
                    if let Some(reporter) = self.report.reporter.as_mut() {
                        let was = reporter.due();
                        if let Some(line) = reporter.tick(at, now, &self.tally.stats, active, tls) {
                            match &self.worker {
                                None => log::info!("stats: {line}"),
                                Some(worker) => worker.report(&self.tally.stats, active, false),
                            }
                        }
                        // A stale entry changes nothing; a real tick moves
                        // the due time, which gets the one live entry.
                        if let Some(due) = reporter.due().filter(|&d| Some(d) != was) {
                            self.timers.schedule(due, TimerKey::Stats);
                        }
                    }
                }
                TimerKey::Drain => self.drain_timed_out(),
                TimerKey::Pacing => {
                    if self.relay.pacing_due == Some(at) {
                        self.relay.pacing_due = None;
                        if self.relay.pacing.expire(now) == Standing::Released {
                            self.release_senders();
                        }
                        self.arm_pacing();
                        self.post_holding();
                    }
                }
                TimerKey::Watchdog => {
                    self.watchdog_tick();
                    if let Some(every) = self.watchdog_every() {
                        self.timers.schedule(now + every, TimerKey::Watchdog);
                    }
                }
                TimerKey::Recheck => {
                    self.relay.recheck_armed = false;
                    for token in std::mem::take(&mut self.relay.held_elsewhere) {
                        self.enqueue(token);
                    }
                }
                TimerKey::Metrics(token) => {
                    let mut after = Vec::new();
                    if let Some(m) = self.report.metrics.as_mut() {
                        after = m.expire(token, self.poll.registry(), now);
                    }
                    for a in after {
                        if let metrics::After::Deadline(token, at) = a {
                            self.timers.schedule(at, TimerKey::Metrics(token));
                        }
                    }
                }
                TimerKey::Publish => {
                    if self.report.publish_armed && at == self.report.publish_next {
                        self.report.publish_armed = false;
                        self.publish(now);
                    }
                }
                TimerKey::AcceptRetry => self.retry_accepting(at, now),
                #[cfg(feature = "cluster")]
                TimerKey::Cluster => self.cluster_timer(at, now),
            }
        }
    }

    /// The shutdown's drain timeout passed: every connection left closes
    /// now. Those still owed output (a download under way, bytes queued)
    /// end with a reset (`cut_short`): a FIN would tell their peers they
    /// had it all.
    pub(super) fn drain_timed_out(&mut self) {
        let tokens = self.conns.tokens();
        let cut: Vec<_> = tokens
            .iter()
            .copied()
            .filter(|&t| self.owes_output(t))
            .collect();
        self.say(Event::DrainTimedOut);
        if !cut.is_empty() {
            log::debug!(
                "drain timeout: {} still owed output, ended with a reset",
                connections(cut.len())
            );
        }
        for token in cut {
            self.cut_short(token);
        }
        for token in tokens {
            self.close(token, CloseReason::Shutdown);
        }
    }

    /// How often this loop's watchdog tick comes: with one worker, every
    /// half of `WATCHDOG_USEC` (`systemd::watchdog`); with several, twice
    /// as often, so that between two of worker 0's looks every loop that
    /// turns has beaten at least once, even a little late.
    fn watchdog_every(&self) -> Option<std::time::Duration> {
        let every = crate::systemd::watchdog()?;
        Some(if self.worker.is_some() {
            every / 2
        } else {
            every
        })
    }

    /// A watchdog tick: this loop turned. With one worker that is the
    /// whole server, and systemd is told. With several, the tick is this
    /// worker's beat, and worker 0 tells systemd only if every loop still
    /// running has beaten since its last look: a worker that stands still
    /// stops the watchdog's food, and the service is restarted
    /// (`WatchdogSec=`). Worker 0 says once which loop stands still, and
    /// when it turns again.
    fn watchdog_tick(&mut self) {
        let Some(worker) = self.worker.as_mut() else {
            crate::systemd::notify("WATCHDOG=1");
            return;
        };
        worker.beat();
        if worker.id != 0 {
            return;
        }
        let look = worker.look();
        let every = crate::systemd::watchdog().unwrap_or_default();
        for w in look.stalled {
            log::error!(
                "worker {w}'s loop has not turned for {:?}: no longer telling systemd's \
                 watchdog that the server is alive",
                every * Watch::STALLED / 2
            );
        }
        for w in look.recovered {
            log::info!("worker {w}'s loop turns again: telling the watchdog again");
        }
        if look.all_turned {
            crate::systemd::notify("WATCHDOG=1");
        }
    }

    /// A connection's timer entry fired: re-arm it if its deadline moved
    /// later, otherwise act on the deadline.
    pub(super) fn connection_timer(&mut self, token: Token, at: Instant, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // A later entry superseded by an earlier one that already fired.
        if conn.timer_at != Some(at) {
            return;
        }
        conn.timer_at = None;
        let asked = self.deadlines.then_some(self.protocol.as_ref());
        let protocol_due = protocol_due(conn, token, asked);
        match next_due(conn, protocol_due, self.opts.idle_timeout) {
            None => {}
            Some(due) if due > now => {
                conn.timer_at = Some(due);
                self.timers.schedule(due, TimerKey::Conn(token));
            }
            Some(_) => match conn.stage() {
                Stage::Open | Stage::HalfClosed => {
                    // The protocol's deadline is fixed; the idle one moves
                    // with every byte. Either way the client hears the same.
                    let reason = match protocol_due {
                        Some(due) if due <= now => CloseReason::RequestTimeout,
                        _ => CloseReason::IdleTimeout,
                    };
                    // A room's member who only reads, with everything it
                    // was sent: quiet, not idle. It stays, without an idle
                    // deadline until bytes move again (keepalive watches
                    // its machine); the protocol's deadline still stands.
                    if reason == CloseReason::IdleTimeout && self.quiet_members && conn.caught_up()
                    {
                        log::trace!("conn #{}: quiet, has everything: stays", conn.number());
                        conn.spare_idle();
                        if let Some(due) = next_due(conn, protocol_due, self.opts.idle_timeout) {
                            conn.timer_at = Some(due);
                            self.timers.schedule(due, TimerKey::Conn(token));
                        }
                        return;
                    }
                    self.timeout(token, reason, now)
                }
                Stage::Lingering { until, .. } => {
                    // Everything we sent has arrived: closing cannot hurt
                    // it, whatever the peer still sends.
                    if conn.unacked() == 0 {
                        self.close(token, CloseReason::Done);
                    } else if now >= until {
                        self.close(token, CloseReason::Expired);
                    } else {
                        conn.set_stage(Stage::Lingering {
                            until,
                            check: now + LINGER_CHECK,
                        });
                        self.settle(token, now);
                    }
                }
                Stage::Handshake { .. } => {
                    let why = "no whole handshake in time (--handshake-timeout)";
                    self.handshake_failure(token, why, now);
                    self.close(token, CloseReason::HandshakeTimeout);
                }
                Stage::Header { .. } => {
                    self.proxy_error(token, "no whole PROXY header in time (--handshake-timeout)")
                }
                _ => self.close(token, CloseReason::Expired),
            },
        }
    }

    /// No bytes either way for `--idle-timeout` (and, in a room, bytes
    /// still outstanding), or the protocol's deadline passed (an
    /// unanswered prompt, an unfinished line): say so, and close.
    pub(super) fn timeout(&mut self, token: Token, reason: CloseReason, now: Instant) {
        self.tally.stats.timed_out += 1;
        if let Some(conn) = self.conns.get(token) {
            log::debug!(
                "conn #{} {}: {reason}",
                conn.number(),
                peer_name(self.gate.as_ref(), token, conn)
            );
        }
        self.staging.extend_from_slice(IDLE_TIMEOUT);
        self.emit(token, now);
        self.begin_close(token, reason, Some(now + CLOSE_GRACE));
        self.settle(token, now);
    }
}
