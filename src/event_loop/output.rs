//! Output: what a connection is sent, and settling it after any change.
//! [`Server::emit`] sends what a protocol just wrote, [`Server::flush`]
//! writes what is owed within a visit's share, and [`Server::settle`] moves
//! the connection along its stages, makes its registered interest match
//! (`Connection::sync_interest`, the one place interest is derived), and
//! arms its timer (after a visit, also marking it light or not). Every
//! layer above calls these after it changed a connection; they call only
//! `closing.rs` below them.

use std::io;
use std::time::{Duration, Instant};

use mio::Token;

use super::time::TimerKey;
use super::{enqueue, Server};
use crate::connection::{Connection, Stage, WriteOutcome};
use crate::protocol::earliest;
use crate::protocol::seam::DynProtocol;

/// Bytes written to one connection per visit, at most (about).
const WRITE_PER_VISIT: usize = 256 * 1024;
/// The staging buffer is trimmed back to this after a large reply.
const STAGING_KEEP: usize = 64 * 1024;

/// The protocol's own deadline for a connection (a prompt to answer, a
/// line to finish), asked only while the connection has a session, and
/// only of a protocol that may have one (`asked`: `None` if it never does).
#[inline]
pub(super) fn protocol_due(
    conn: &Connection,
    token: Token,
    asked: Option<&(dyn DynProtocol + Send)>,
) -> Option<Instant> {
    match asked {
        Some(protocol) if conn.accepts_output() => protocol.deadline(token),
        _ => None,
    }
}

/// When a connection's timer is due: the earliest of the idle deadline,
/// its stage's bound (`Connection::deadline`) and the protocol's. The one
/// place they are combined.
#[inline]
pub(super) fn next_due(
    conn: &Connection,
    protocol_due: Option<Instant>,
    idle: Option<Duration>,
) -> Option<Instant> {
    earliest(conn.deadline(idle), protocol_due)
}

impl Server {
    /// Puts a connection with work left at the back of the ready queue,
    /// once.
    pub(super) fn enqueue(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            enqueue(&mut self.ready, token, conn);
        }
    }

    /// Sends what the protocol just wrote into the staging buffer to the
    /// connection: straight to the socket if nothing is owed before it.
    pub(super) fn emit(&mut self, token: Token, now: Instant) {
        if self.staging.is_empty() {
            return;
        }
        let Some(conn) = self.conns.get_mut(token) else {
            self.staging.clear();
            return;
        };
        let (written, sent) = send_staged(conn, &mut self.staging, now);
        self.tally.count(token, 0, written);
        if let Err(e) = sent {
            self.fail(token, &e);
        }
    }

    /// Writes what is owed, if the kernel may take it.
    /// Returns the bytes written.
    pub(super) fn flush(&mut self, token: Token, now: Instant) -> usize {
        let Some(conn) = self.conns.get_mut(token) else {
            return 0;
        };
        if !conn.can_write() {
            return 0;
        }
        let (outcome, n) = conn.flush(WRITE_PER_VISIT, now);
        let more = conn.can_write();
        if n > 0 {
            self.tally.count(token, 0, n);
        }
        match outcome {
            WriteOutcome::Failed(e) => self.fail(token, &e),
            // Its share written, and the socket would take more.
            WriteOutcome::Blocked if more => self.enqueue(token),
            _ => {}
        }
        n
    }

    /// After any change: moves the connection along its stages, makes the
    /// registered interest match, and arms the timer.
    #[inline]
    pub(super) fn settle(&mut self, token: Token, now: Instant) {
        self.settle_as(token, now, None);
    }

    /// `settle`, told at the end of a visit whether the visit was light
    /// (`Connection::light`, which says where the connection waits if its
    /// next event finds the turn's budget spent).
    pub(super) fn settle_as(&mut self, token: Token, now: Instant, light: Option<bool>) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if let Some(light) = light {
            conn.light = light;
        }
        // Reading resumed at or below half the write limit: input may be waiting
        // that no new edge will announce.
        if matches!(conn.stage(), Stage::Open)
            && conn.apply_backpressure(self.opts.write_limit)
            && conn.wants_read()
        {
            enqueue(&mut self.ready, token, conn);
        }
        let conn = if matches!(conn.stage(), Stage::Flushing { .. }) && conn.all_sent() {
            self.finish_writing(token, now);
            match self.conns.get_mut(token) {
                Some(conn) => conn,
                None => return,
            }
        } else {
            conn
        };
        if matches!(conn.stage(), Stage::Closed) {
            return;
        }
        if let Err(e) = conn.sync_interest(self.poll.registry()) {
            self.fail(token, &e);
            return;
        }
        let asked = self.deadlines.then_some(self.protocol.as_ref());
        let protocol_due = protocol_due(conn, token, asked);
        // The common case, every message of an open connection: its entry is
        // armed, and its only deadline is the idle one, which moves only
        // later (the armed entry re-arms when it fires); or it has no
        // deadline at all (`--idle-timeout 0`). Nothing to do.
        if protocol_due.is_none()
            && (conn.timer_at.is_some() || self.opts.idle_timeout.is_none())
            && matches!(conn.stage(), Stage::Open | Stage::HalfClosed)
        {
            return;
        }
        if let Some(due) = next_due(conn, protocol_due, self.opts.idle_timeout) {
            // Only an earlier deadline needs a new entry; a later one is
            // picked up when the armed entry fires (see timer.rs).
            if conn.timer_at.is_none_or(|armed| due < armed) {
                conn.timer_at = Some(due);
                self.timers.schedule(due, TimerKey::Conn(token));
            }
        }
    }
}

/// Sends what the protocol just wrote (the staging buffer) to `conn` and
/// empties the buffer. Returns the bytes written now (the rest is queued),
/// and the socket's error, if the write failed.
pub(super) fn send_staged(
    conn: &mut Connection,
    staging: &mut Vec<u8>,
    now: Instant,
) -> (usize, io::Result<()>) {
    if staging.is_empty() {
        return (0, Ok(()));
    }
    let result = send_reply(conn, staging, now);
    staging.clear();
    if staging.capacity() > STAGING_KEEP {
        staging.shrink_to(STAGING_KEEP);
    }
    result
}

/// Sends `bytes` to `conn`: straight to the socket if nothing is owed
/// before them, else into its queue. A connection that is closing takes
/// nothing more; the bytes are dropped. Returns the bytes written now, and
/// the socket's error, if the write failed.
pub(super) fn send_reply(
    conn: &mut Connection,
    bytes: &[u8],
    now: Instant,
) -> (usize, io::Result<()>) {
    if !conn.accepts_output() {
        return (0, Ok(()));
    }
    match conn.send(bytes, now) {
        (WriteOutcome::Failed(e), n) => (n, Err(e)),
        (WriteOutcome::Done | WriteOutcome::Blocked, n) => (n, Ok(())),
    }
}
