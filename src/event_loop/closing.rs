//! Closing: how a connection ends, and reaping.
//!
//! A graceful close ([`Server::begin_close`]) tells the protocol the
//! connection is gone, flushes what is owed (bounded, or not), sends
//! close_notify and our FIN, and lingers for the peer's FIN; an immediate
//! close ([`Server::close`]) marks the connection CLOSED. Either way the
//! socket is dropped by [`Server::reap`] at the end of the turn, a safe
//! point, never in the middle of a walk over the connections.
//!
//! What a protocol's [`Step`] means for the connection is decided once,
//! in [`Server::after_step`], with the origin of the step named.

use std::io;
use std::time::{Duration, Instant};

use mio::Token;

use super::admission::{Accepting, Limit};
use super::report::{since_last, HANDSHAKE_NOTICE, NOTICE_EVERY};
use super::time::TimerKey;
use super::{peer_name, step_ctx, Server};
use crate::connection::{Connection, Stage, WriteOutcome};
use crate::logging::Verdict;
use crate::protocol::{CloseReason, Step};
use crate::stats::Reporter;
use crate::sys::is_disconnect;

/// How long a connection the server is closing may take to flush and
/// linger, when no shutdown drain bounds it.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a connection whose TLS session failed may take to send its
/// alert and see it acknowledged before it is closed: its flush and its
/// linger together (`refused`, `finish_writing`).
#[cfg(feature = "tls")]
const ALERT_GRACE: Duration = Duration::from_secs(1);
/// How often a lingering connection checks whether the peer has
/// acknowledged everything, after which it may close.
pub(super) const LINGER_CHECK: Duration = Duration::from_millis(100);

/// How a peer ended its connection, for telling a health check
/// (`ends_as_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerEnd {
    /// Its FIN: it said all it will, and may have read what it was sent.
    Fin,
    /// A reset (or a write that found one): an abortive close, with what
    /// it was sent unread, or unwanted.
    Reset,
}

impl PeerEnd {
    /// How a socket error says the peer went: a reset, or (it vanished,
    /// say) as if by FIN, judged by what it acknowledged.
    fn of(e: &io::Error) -> PeerEnd {
        match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => PeerEnd::Reset,
            _ => PeerEnd::Fin,
        }
    }
}

/// Where a protocol's [`Step`] came from, which decides what `Close`
/// means and whether the close that follows is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Answering the peer's input ([`Protocol::data`]).
    ///
    /// [`Protocol::data`]: crate::protocol::Protocol::data
    Input,
    /// Generating output of its own ([`Protocol::produce`]).
    ///
    /// [`Protocol::produce`]: crate::protocol::Protocol::produce
    Production,
    /// After the peer's FIN ([`Protocol::eof`]).
    ///
    /// [`Protocol::eof`]: crate::protocol::Protocol::eof
    PeerEof,
}

impl Server {
    /// Acts on a protocol's step: the one mapping from a [`Step`] to a
    /// close. Returns true if the connection goes on (`Continue`).
    ///
    /// - `Abort`: the output is incomplete; it ends with a reset
    ///   (`Truncated`, `finish_writing`).
    /// - `Close` after input: the protocol closed the conversation (a
    ///   `/quit`, a refused request, a line too long): `Protocol`. The
    ///   peer may not be reading its answer, so the flush is bounded by
    ///   `CLOSE_GRACE`.
    /// - `Close` after production or the peer's FIN: the work is done
    ///   (`Done`). The peer is reading (a download) or has said all it
    ///   will; the flush has no bound of its own but the idle timeout, so
    ///   that a large file is never cut at `CLOSE_GRACE`.
    pub(super) fn after_step(
        &mut self,
        token: Token,
        step: Step,
        from: Origin,
        now: Instant,
    ) -> bool {
        let reason = match (step, from) {
            (Step::Continue, _) => return true,
            (Step::Abort, _) => CloseReason::Truncated,
            (Step::Close, Origin::Input) => CloseReason::Protocol,
            (Step::Close, Origin::Production | Origin::PeerEof) => CloseReason::Done,
        };
        let until = (from == Origin::Input).then(|| now + CLOSE_GRACE);
        self.begin_close(token, reason, until);
        false
    }

    /// A FLUSHING connection has sent everything: close_notify (TLS) and our
    /// FIN follow, then it closes or lingers.
    pub(super) fn finish_writing(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // Incomplete output ends with a reset, not a FIN (file.rs).
        if conn.close_reason == Some(CloseReason::Truncated) {
            self.cut_short(token);
            return;
        }
        match conn.close_write() {
            WriteOutcome::Done => {}
            // close_notify waits for the socket; WRITABLE brings us back.
            WriteOutcome::Blocked => return,
            WriteOutcome::Failed(e) => {
                self.fail(token, &e);
                return;
            }
        }
        if conn.peer_eof() {
            self.close(token, CloseReason::Done);
            return;
        }
        let mut until = match self.draining {
            Some(drain) => drain.min(now + CLOSE_GRACE),
            None => now + CLOSE_GRACE,
        };
        // A failed TLS session's close, its alert and the linger that lets
        // the client read it, takes `ALERT_GRACE` in all: the flush's bound
        // holds for the linger too.
        if conn.close_reason == Some(CloseReason::TlsFailure) {
            if let Stage::Flushing { until: Some(bound) } = conn.stage() {
                until = until.min(bound);
            }
        }
        conn.set_stage(Stage::Lingering {
            until,
            check: now + LINGER_CHECK,
        });
        // Everything is sent and the linger is bounded: the slot is free
        // (if an unbounded flush had kept it).
        let reason = conn.close_reason.unwrap_or(CloseReason::Done);
        mark_closing(&mut self.admission.limit, conn, reason, true);
    }

    /// Starts a graceful close: the protocol is told the connection is gone,
    /// then what is owed is flushed (bounded by `until`, if given), our FIN
    /// sent, and the peer's awaited (`settle` walks those steps).
    pub(super) fn begin_close(
        &mut self,
        token: Token,
        reason: CloseReason,
        until: Option<Instant>,
    ) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.accepts_output() {
            return;
        }
        log::trace!("conn #{}: closing: {reason}", conn.number());
        mark_closing(&mut self.admission.limit, conn, reason, until.is_some());
        conn.set_stage(Stage::Flushing { until });
        self.release_session(token, reason);
    }

    /// Tells the protocol the connection is gone, handing back its session
    /// (once; later calls find none). The access log asks the protocol for
    /// its summary first.
    pub(super) fn release_session(&mut self, token: Token, reason: CloseReason) {
        let mut ctx = step_ctx(Instant::now(), &[], &mut self.staging, &mut self.relay);
        let summary = self
            .protocol
            .closed(token, reason, self.tally.access.is_some(), &mut ctx);
        if let (Some(access), Some(summary)) = (self.tally.access.as_mut(), summary) {
            access.summary(token, summary);
        }
        // Too late for this connection's own output.
        self.staging.clear();
    }

    /// TLS: the peer broke the protocol (plain text on a TLS port, a record
    /// that does not decrypt) or failed verification (an unknown CA). The
    /// alert is on its way and the session is gone (`connection.rs`); our
    /// FIN follows it, and the connection lingers, so that the client reads
    /// the alert rather than a reset: all of it within `ALERT_GRACE`. The
    /// caller settles it.
    #[cfg(feature = "tls")]
    pub(super) fn refused(&mut self, token: Token, e: &rustls::Error, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let why = crate::tls::explain(e);
        if matches!(conn.stage(), Stage::Handshake { .. }) {
            self.handshake_failure(token, &why, now);
        } else {
            log::debug!("conn #{}: TLS error: {why}", conn.number());
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        mark_closing(
            &mut self.admission.limit,
            conn,
            CloseReason::TlsFailure,
            true,
        );
        conn.set_stage(Stage::Flushing {
            until: Some(now + ALERT_GRACE),
        });
        if let Some(access) = self.tally.access.as_mut() {
            access.error(token, &why);
        }
        self.release_session(token, CloseReason::TlsFailure);
    }

    /// True if the connection is still owed output: bytes queued or held
    /// by its TLS session, or a protocol still producing (a download under
    /// way, whose next bytes wait in the file). Closed now, its peer would
    /// not have everything.
    pub(super) fn owes_output(&self, token: Token) -> bool {
        self.conns.get(token).is_some_and(|conn| {
            !matches!(conn.stage(), Stage::Closed)
                && (!conn.all_sent() || (conn.accepts_output() && self.protocol.producing(token)))
        })
    }

    /// Ends a connection whose output is incomplete with a reset
    /// (SO_LINGER 0) rather than a FIN, so that its peer cannot take what
    /// it got for the whole: a file that shrank, or a transfer the drain
    /// timeout cut short. Closes at once, as [`close`](Self::close).
    pub(super) fn cut_short(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            conn.abort();
        }
        self.close(token, CloseReason::Truncated);
    }

    /// Closes at once; the socket is dropped at the end of the turn.
    pub(super) fn close(&mut self, token: Token, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.stage(), Stage::Closed) {
            return;
        }
        // A graceful close that finished reports why it began.
        let reason = match (reason, conn.close_reason) {
            (CloseReason::Done, Some(first)) => first,
            _ => reason,
        };
        // A connection let in is counted once: as a health check, or as a
        // client (if its first byte has not counted it already).
        if reason == CloseReason::Check {
            conn.unproven = false;
            self.tally.stats.checks += 1;
        } else {
            self.tally.client(conn);
        }
        log::debug!(
            "conn #{} closed: {reason}{}",
            conn.number(),
            if conn.queue.is_empty() {
                String::new()
            } else {
                format!(", {} bytes unsent", conn.queue.len())
            }
        );
        if self.tally.access.is_some() {
            self.release_session(token, reason);
            if let Some(line) = self
                .tally
                .access
                .as_mut()
                .and_then(|a| a.close(token, reason, Instant::now()))
            {
                crate::access_log::write(&line);
            }
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.set_stage(Stage::Closed);
        if self.fans_out {
            self.relay.forget(
                token,
                &mut self.conns,
                &mut self.ready,
                self.worker.as_ref(),
            );
        }
        self.release_session(token, reason);
        self.closed.push(token);
    }

    /// A socket error: the peer left, or something worse. Either way this
    /// connection closes, and only this one.
    pub(super) fn fail(&mut self, token: Token, e: &io::Error) {
        let number = token.0 >> 32;
        if let Some(conn) = self.conns.get(token) {
            if matches!(conn.stage(), Stage::Handshake { .. }) {
                self.handshake_failed(token, &e.to_string());
                return;
            }
        }
        // Whatever a socket reports (a reset, a record that does not
        // decrypt) is the peer's doing or the network's: a client must not
        // be able to write the server's log, so this is debug only.
        let reason = if is_disconnect(e) {
            if self.ends_as_check(token, PeerEnd::of(e)) {
                CloseReason::Check
            } else {
                CloseReason::Reset
            }
        } else {
            if let Some(access) = self.tally.access.as_mut() {
                access.error(token, &e.to_string());
            }
            CloseReason::Error
        };
        log::debug!("conn #{number}: {e}");
        self.close(token, reason);
    }

    /// The connection's PROXY header was bad (`why`), cut short, or late:
    /// counted, said at debug and in the access line's `error=`, and the
    /// connection closed without a word.
    pub(super) fn proxy_error(&mut self, token: Token, why: &str) {
        self.tally.stats.proxy_errors += 1;
        log::debug!("conn #{}: {why}", token.0 >> 32);
        if let Some(access) = self.tally.access.as_mut() {
            access.error(token, why);
        }
        self.close(token, CloseReason::ProxyError);
    }

    /// A TLS handshake ended without finishing: plain text on a TLS port,
    /// an unknown CA, no common protocol, or the client gave up. The
    /// client's problem: counted, and logged at debug. A client that never
    /// sent a byte (a port check) is nobody's problem and not counted.
    pub(super) fn handshake_failed(&mut self, token: Token, why: &str) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        if conn.tls_heard() {
            // A failure, not a message: the rare path may read the clock.
            self.handshake_failure(token, why, Instant::now());
            if let Some(access) = self.tally.access.as_mut() {
                access.error(token, why);
            }
            self.close(token, CloseReason::TlsFailure);
        } else {
            log::debug!("conn #{}: closed before sending anything", conn.number());
            let reason = if self.ends_as_check(token, PeerEnd::Fin) {
                CloseReason::Check
            } else {
                CloseReason::Done
            };
            self.close(token, reason);
        }
    }

    /// A TLS handshake failed (`why`; or timed out): counted in
    /// `tls_failures`, said at debug for the connection, and said where an
    /// operator sees it, at warn, at most once a minute for them all
    /// (`NOTICE_EVERY`), with how many failed since: a client can fail as
    /// many handshakes as it likes, and must not write a line each.
    pub(super) fn handshake_failure(&mut self, token: Token, why: &str, now: Instant) {
        self.tally.stats.tls_failures += 1;
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let peer = peer_name(self.gate.as_ref(), token, conn);
        log::debug!(
            "conn #{} {peer}: TLS handshake failed: {why}",
            conn.number()
        );
        if let Verdict::Log { held } = HANDSHAKE_NOTICE.check(now, NOTICE_EVERY) {
            crate::logging::for_the_server(|| {
                log::warn!(
                    "TLS handshake failed from {peer}: {why} {}",
                    since_last(held, "failed")
                )
            });
        }
    }

    /// True if connection `token`, whose peer has just ended it (`how`),
    /// was a health check: it sent no byte of its own (a PROXY header is
    /// the balancer's, not its own), and it went before it could have read
    /// a byte of ours. A server that speaks first (a greeting, chat's
    /// prompt) may have sent some; a peer that read them and left has been
    /// served. So the peer must have reset the connection (an abortive
    /// close: what it was sent went unread, or it did not care, as
    /// HAProxy's checks do), or sent its FIN before its TCP acknowledged a
    /// byte of ours. A room's member that was sent other members' lines
    /// was proven a client then (`deliver`), however it leaves: a listener
    /// killed with lines unread resets too. Asked once per connection that ends so, never per
    /// message. A client turned away (`refusing`) is not one: it is
    /// counted where it was turned away.
    pub(super) fn ends_as_check(&self, token: Token, how: PeerEnd) -> bool {
        let Some(conn) = self.conns.get(token) else {
            return false;
        };
        if conn.refusing.is_some() {
            return false;
        }
        match conn.stage() {
            // Nothing is sent before the header, nor before the ClientHello.
            Stage::Header { .. } => !self.gate.as_ref().is_some_and(|g| g.header_started(token)),
            Stage::Handshake { .. } => !conn.tls_heard(),
            Stage::Open | Stage::HalfClosed => {
                conn.unproven && (how == PeerEnd::Reset || conn.nothing_acked())
            }
            _ => false,
        }
    }

    /// Drops the connections closed this turn; a freed descriptor may let a
    /// paused listener accept again.
    pub(super) fn reap(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        for token in self.closed.drain(..) {
            // Dropping the socket closes it, which also removes it from the
            // epoll set: no deregister call needed.
            if let Some(gate) = self.gate.as_mut() {
                gate.forget(token);
            }
            if let Some(mut conn) = self.conns.remove(token) {
                if conn.refusing.is_some() {
                    self.admission.rejecting -= 1;
                }
                // Closed at once (never a bounded close): its slot is
                // still taken.
                self.admission.limit.give_back(&mut conn);
            }
        }
        if self.admission.accepting == Accepting::Paused {
            self.admission.accepting = Accepting::Backlogged;
        }
        // The closed connections' timer entries are stale now: keep them
        // from piling up (timer.rs, "Stale entries are bounded"). A
        // connection has at most one live entry; the loop's own keys are
        // the rest.
        let conns = &self.conns;
        let stats_due = self.report.reporter.as_ref().and_then(Reporter::due);
        let (pacing_due, publish) = (
            self.relay.pacing_due,
            (self.report.publish_armed, self.report.publish_next),
        );
        let metrics = &self.report.metrics;
        let retry_due = self.admission.retry_due();
        #[cfg(feature = "cluster")]
        let cluster_due = self.relay.cluster_due;
        self.timers
            .compact(conns.len() + TimerKey::LOOP_KEYS, |at, key| match key {
                TimerKey::Conn(token) => conns.get(*token).is_some_and(|c| c.timer_at == Some(at)),
                // The loop's own keys have one live entry each, at the time
                // it recorded; the others were superseded.
                TimerKey::Stats => stats_due == Some(at),
                TimerKey::Pacing => pacing_due == Some(at),
                TimerKey::Publish => publish == (true, at),
                TimerKey::Metrics(token) => {
                    metrics.as_ref().is_some_and(|m| m.due(*token) == Some(at))
                }
                TimerKey::AcceptRetry => retry_due == Some(at),
                #[cfg(feature = "cluster")]
                TimerKey::Cluster => cluster_due == Some(at),
                TimerKey::Drain | TimerKey::Recheck | TimerKey::Watchdog => true,
            });
    }
}

/// Records why a graceful close began. A `bounded` close (it has a
/// deadline) gives the connection's slot back now, so that a client that
/// reconnects at once finds it free; `reap` gives back any slot still held.
fn mark_closing(limit: &mut Limit, conn: &mut Connection, reason: CloseReason, bounded: bool) {
    if conn.close_reason.is_none() {
        conn.close_reason = Some(reason);
    }
    // Only a close with a deadline gives its slot back early: one that
    // flushes for as long as the peer keeps reading (after the peer's FIN)
    // could otherwise hold any number of connections outside the limit.
    if bounded {
        limit.give_back(conn);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::echo_server_with;
    use super::CLOSE_GRACE;
    use crate::connection::Stage;
    use crate::protocol::CloseReason;

    /// Issue 20, item 4: a failed TLS session's linger ends by its flush's
    /// bound (`ALERT_GRACE` from the failure); any other close lingers up
    /// to `CLOSE_GRACE` from the end of its flush.
    #[test]
    fn after_a_tls_failure_the_linger_keeps_the_alerts_bound() {
        let (mut server, _clients, tokens) = echo_server_with(2);
        let t0 = Instant::now();
        let bound = t0 + Duration::from_millis(300);
        let flushed = t0 + Duration::from_millis(100);
        for (&token, reason) in tokens
            .iter()
            .zip([CloseReason::TlsFailure, CloseReason::IdleTimeout])
        {
            let conn = server.conns.get_mut(token).unwrap();
            conn.close_reason = Some(reason);
            conn.set_stage(Stage::Flushing { until: Some(bound) });
            server.finish_writing(token, flushed);
            let until = match server.conns.get(token).unwrap().stage() {
                Stage::Lingering { until, .. } => until,
                other => panic!("{reason}: {other} after the flush"),
            };
            let expected = match reason {
                CloseReason::TlsFailure => bound,
                _ => flushed + CLOSE_GRACE,
            };
            assert_eq!(until, expected, "{reason}");
        }
    }
}
