//! What the server's bytes say about how the session went, where the
//! socket says nothing is wrong. Two such endings would otherwise exit 0:
//!
//! - **A TLS server answering a plain client.** The client's first line
//!   is no ClientHello, so the server sends an alert and closes, cleanly;
//!   printed, the alert is a few bytes of binary. On a plain connection
//!   the server's first bytes are held back until they tell: a TLS record
//!   header (an alert, 21, or a handshake record, 22; version 3.0 to 3.4;
//!   a length a record may have) is [`Seen::Tls`], anything else is
//!   printed as it comes. A plain server whose own first bytes happen to
//!   form such a header (a file that begins with one) is taken for TLS.
//! - **The server's timeout.** An idle or unanswered connection is told
//!   `Connection timeout\n` and closed, cleanly too. When those are the
//!   last bytes before the server's close, and the client had not ended
//!   its own input (after our FIN the close is the answer to it),
//!   [`Ending::TimedOut`]. A stream that ends in those very bytes while
//!   our input is open (a file whose last line they are) is taken for the
//!   server's timeout.
//!
//! No I/O here: `client.rs` reads and prints, and asks this what to print
//! and how the session ended.

use crate::event_loop::IDLE_TIMEOUT;

/// A TLS record header's length: type, version (2), length (2).
const HEADER: usize = 5;
/// The longest record a TLS peer may send: 2^14 bytes, plus 2048 of
/// expansion (RFC 5246, 6.2.3).
const MAX_RECORD: usize = (1 << 14) + 2048;

/// What the client has seen of the server's bytes. See the module docs.
#[derive(Debug)]
pub(super) struct Watch {
    /// The first bytes of a plain connection, held back until they tell
    /// whether the server speaks TLS.
    start: Vec<u8>,
    /// They have yet to tell: plain TCP, and too few so far.
    checking: bool,
    /// The last bytes the server sent, as many as [`IDLE_TIMEOUT`] has.
    tail: Vec<u8>,
}

/// What to do with bytes that just came from the server.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen<'a> {
    /// Print these, in order: bytes held back from earlier reads (most
    /// often none), then the ones that just came.
    Print(&'a [u8], &'a [u8]),
    /// Too few bytes to tell whether the server speaks TLS: nothing to
    /// print yet.
    Held,
    /// The server answered a plain client with TLS.
    Tls,
}

/// How the session ended, once the server closed cleanly.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ending<'a> {
    /// As it should; print what is still held back (a start too short to
    /// tell), if anything.
    Clean(&'a [u8]),
    /// The server's last words were its timeout line, and ours had not
    /// ended: it closed the connection for a timeout.
    TimedOut,
}

/// What a plain connection's first bytes say.
#[derive(Debug, PartialEq, Eq)]
enum Opening {
    /// A TLS record header: the server speaks TLS.
    Tls,
    /// Not one: a plain server.
    Plain,
    /// Too few bytes to tell.
    Unsure,
}

impl Watch {
    /// A watch for a plain connection (`plain`), whose first bytes are
    /// checked for TLS, or for a TLS one, whose are not.
    pub(super) fn new(plain: bool) -> Self {
        Self {
            start: Vec::new(),
            checking: plain,
            tail: Vec::new(),
        }
    }

    /// The server sent `bytes`: what to print, if anything.
    pub(super) fn seen<'a>(&'a mut self, bytes: &'a [u8]) -> Seen<'a> {
        keep_tail(&mut self.tail, bytes);
        if !self.checking {
            return Seen::Print(&[], bytes);
        }
        // Only what is needed to tell is copied; the rest is printed from
        // where it lies.
        let take = bytes.len().min(HEADER - self.start.len());
        self.start.extend_from_slice(&bytes[..take]);
        match opening(&self.start) {
            Opening::Tls => Seen::Tls,
            Opening::Unsure => Seen::Held,
            Opening::Plain => {
                self.checking = false;
                Seen::Print(&self.start, &bytes[take..])
            }
        }
    }

    /// The server closed cleanly; `input_open`: we had not sent our FIN
    /// (our input had not ended). How the session ended.
    pub(super) fn end(&self, input_open: bool) -> Ending<'_> {
        if self.checking {
            return Ending::Clean(&self.start);
        }
        if input_open && self.tail == IDLE_TIMEOUT {
            Ending::TimedOut
        } else {
            Ending::Clean(&[])
        }
    }
}

/// Keeps in `tail` the last [`IDLE_TIMEOUT`]`.len()` bytes of the stream,
/// `bytes` being the newest.
fn keep_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    let keep = IDLE_TIMEOUT.len();
    if bytes.len() >= keep {
        tail.clear();
        tail.extend_from_slice(&bytes[bytes.len() - keep..]);
    } else {
        tail.extend_from_slice(bytes);
        let excess = tail.len().saturating_sub(keep);
        tail.drain(..excess);
    }
}

/// Whether `first`, a plain connection's first bytes (at most [`HEADER`]),
/// begin a TLS record: an alert (21) or a handshake record (22), version
/// 3.0 to 3.4 (SSL 3.0 to TLS 1.3's legacy field), a length from 1 to
/// [`MAX_RECORD`]. Text fails on the first byte.
fn opening(first: &[u8]) -> Opening {
    const ALERT: u8 = 21;
    const HANDSHAKE: u8 = 22;
    let plausible = match *first {
        [] => return Opening::Unsure,
        [kind, ..] if kind != ALERT && kind != HANDSHAKE => false,
        [_, major, ..] if major != 3 => false,
        [_, _, minor, ..] if minor > 4 => false,
        [_, _, _, hi, lo, ..] => {
            (1..=MAX_RECORD).contains(&usize::from(u16::from_be_bytes([hi, lo])))
        }
        _ => return Opening::Unsure,
    };
    if plausible {
        Opening::Tls
    } else {
        Opening::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS 1.2 alert record, as rustls sends it for a plain line.
    const ALERT: &[u8] = &[21, 3, 3, 0, 2, 2, 50];

    #[test]
    fn a_tls_answer_is_told_from_its_first_five_bytes() {
        assert_eq!(opening(ALERT), Opening::Tls);
        assert_eq!(opening(&[22, 3, 1, 0, 200]), Opening::Tls);
        assert_eq!(opening(&[21, 3, 3]), Opening::Unsure);
        assert_eq!(opening(b"Welcome"), Opening::Plain);
        assert_eq!(opening(&[22, 2, 1, 0, 5]), Opening::Plain);
        assert_eq!(opening(&[22, 3, 9, 0, 5]), Opening::Plain);
        assert_eq!(opening(&[21, 3, 3, 0, 0]), Opening::Plain, "empty");
        assert_eq!(opening(&[21, 3, 3, 0xff, 0xff]), Opening::Plain, "too long");
    }

    #[test]
    fn a_tls_answer_in_pieces_is_held_then_refused() {
        let mut w = Watch::new(true);
        assert_eq!(w.seen(&ALERT[..2]), Seen::Held);
        assert_eq!(w.seen(&ALERT[2..]), Seen::Tls);
        // With TLS, the same bytes are the session's business.
        let mut w = Watch::new(false);
        assert_eq!(w.seen(ALERT), Seen::Print(&[], ALERT));
    }

    #[test]
    fn a_plain_start_is_printed_whole_and_in_order() {
        let mut w = Watch::new(true);
        assert_eq!(w.seen(&[22]), Seen::Held);
        assert_eq!(
            w.seen(b"ok then"),
            Seen::Print(&[22, b'o', b'k', b' ', b't'][..], b"hen")
        );
        assert_eq!(w.seen(b"more"), Seen::Print(&[], b"more"));
        // A start too short to tell, then the close: printed at the end.
        let mut w = Watch::new(true);
        assert_eq!(w.seen(&[21, 3]), Seen::Held);
        assert_eq!(w.end(true), Ending::Clean(&[21, 3]));
    }

    #[test]
    fn the_servers_timeout_line_last_is_a_timeout_while_our_input_is_open() {
        let mut w = Watch::new(true);
        let _ = w.seen(b"Enter your username: Connection");
        let _ = w.seen(b" time");
        let _ = w.seen(b"out\n");
        assert_eq!(w.end(true), Ending::TimedOut);
        assert_eq!(w.end(false), Ending::Clean(&[]), "after our FIN");
        let _ = w.seen(b"more");
        assert_eq!(w.end(true), Ending::Clean(&[]));
        let mut w = Watch::new(false);
        let _ = w.seen(b"Connection timeout\n");
        assert_eq!(w.end(true), Ending::TimedOut);
    }
}
