//! A connection's idle clock: when bytes last moved, and whether a quiet
//! member is spared its idle deadline.
//!
//! The idle timeout closes a connection on which no bytes moved either way
//! for `--idle-timeout`. In a room (`Protocol::QUIET_MEMBERS`) silence both
//! ways is no sign of trouble: a member who only reads, in a quiet room,
//! hears nothing and says nothing. So when its idle deadline passes the
//! loop asks [`Connection::caught_up`]: a peer that has everything it was
//! sent, acknowledged by its TCP, and is in the middle of nothing, is
//! spared ([`Connection::spare_idle`]) and has no idle deadline until bytes
//! move again; TCP keepalive (`sys::keepalive`) watches that its machine
//! is still there. A peer with bytes outstanding (a machine gone, a reader
//! stuck) is not caught up, and is closed as before. `connection.rs`
//! combines the idle deadline with the stage's bound; the loop
//! (`event_loop/time.rs`) decides, on the protocol's word, whether to ask.

use std::time::{Duration, Instant};

use super::Connection;

impl Connection {
    /// Bytes moved at `now`: the idle clock starts again, and a spared
    /// member is judged afresh at its next idle deadline.
    #[inline]
    pub(super) fn touch(&mut self, now: Instant) {
        self.last_activity = now;
        self.idle_spared = false;
    }

    /// The idle deadline: `idle` after bytes last moved; none while spared,
    /// or without an idle timeout.
    #[inline]
    pub(super) fn idle_due(&self, idle: Option<Duration>) -> Option<Instant> {
        idle.filter(|_| !self.idle_spared)
            .map(|d| self.last_activity + d)
    }

    /// True when the peer has everything it was sent and is in the middle
    /// of nothing: no bytes owed (queued, in TLS records, or a refused
    /// `sendfile`), none unacknowledged by its TCP (SIOCOUTQ, which counts
    /// bytes not yet sent too), no TLS record begun and not finished. A
    /// room's member who only reads looks like this; a dead or stuck reader
    /// has bytes outstanding, and a trickler a record begun.
    pub fn caught_up(&self) -> bool {
        #[cfg(feature = "tls")]
        let mid_record = self.tls.as_ref().is_some_and(|t| t.mid_record());
        #[cfg(not(feature = "tls"))]
        let mid_record = false;
        self.all_sent() && !self.write_blocked && !mid_record && self.unacked() == 0
    }

    /// Lifts the idle deadline until bytes move again: the connection was
    /// [`caught_up`](Self::caught_up) when it passed, and its protocol lets
    /// quiet members stay.
    pub fn spare_idle(&mut self) {
        self.idle_spared = true;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::connection::tests::pair;
    use crate::connection::Stage;

    #[test]
    fn a_spared_connection_has_no_idle_deadline_until_bytes_move() {
        let (mut c, mut client) = pair();
        let idle = Some(Duration::from_secs(30));
        assert!(c.caught_up(), "nothing sent, nothing owed");
        c.spare_idle();
        assert_eq!(c.deadline(idle), None, "spared");
        c.set_stage(Stage::Flushing {
            until: Some(c.last_activity + Duration::from_secs(5)),
        });
        assert_eq!(
            c.deadline(idle),
            Some(c.last_activity + Duration::from_secs(5)),
            "a stage's bound still stands"
        );
        c.set_stage(Stage::Open);
        let later = Instant::now() + Duration::from_secs(1);
        c.send(b"news", later);
        assert_eq!(c.deadline(idle), Some(later + Duration::from_secs(30)));
        let mut got = [0u8; 4];
        client.read_exact(&mut got).unwrap();
        // The client's TCP acknowledges at once on loopback.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.caught_up() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(c.caught_up(), "read and acknowledged");
        c.queue.push_copy(b"owed");
        assert!(!c.caught_up(), "bytes owed");
    }
}
