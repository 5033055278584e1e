//! One connection: its socket, its stage, the bytes it is owed, its
//! readiness as last reported, and its deadline.
//!
//! This file owns the per-connection rules: how a read or a write is
//! interpreted ([`ReadOutcome`], [`WriteOutcome`]), which interest the socket
//! needs in each state ([`Connection::desired_interest`], the one place that
//! computes it), when reading pauses for backpressure, and when the
//! connection's timer is due ([`Connection::deadline`]). It does not know
//! about other connections, protocols or the poll loop: `event_loop/` calls
//! these methods in order and routes the bytes.
//!
//! # Stages
//!
//! ```text
//!            accept --PROXY listener--> HEADER --whole------+
//!              |    (timeout, bad header or denied: CLOSED)     |
//!              |<-----------------------------------------------+
//!              |
//!              +------ TLS listener ----> HANDSHAKE --done--+
//!              |                  (timeout or bad TLS: CLOSED) |
//!              v                                               |
//!  +-------> OPEN <--------------------------------------------+
//!  |           | ---------- peer EOF, protocol keeps talking --> HALF-CLOSED
//!  |           |                                                       |
//!  |           | protocol done / peer EOF / idle timeout / shutdown    |
//!  |           v                                                       |
//!  |       FLUSHING  <-------------------------------------------------+
//!  |           |  (writes what is owed, reads nothing)
//!  |           | all sent: close_notify (TLS), shutdown(SHUT_WR) = our FIN
//!  |           v
//!  |       LINGERING  (reads and discards until the peer's FIN, so that
//!  |           |        close() does not turn unread input into an RST
//!  |           |        that destroys the bytes we just sent)
//!  |           v
//!  +------ CLOSED  (any error or expired deadline jumps here; the loop
//!                   drops the socket at the end of the turn)
//! ```
//!
//! # Readiness is remembered, interest is derived
//!
//! mio is edge-triggered: an event says "something changed", once. So the
//! connection remembers what the last event promised (`read_ready`: input
//! may be waiting; `write_blocked`: the kernel refused a write and a
//! writable event has not come since) and forgets it only when the socket
//! says so (`WouldBlock`, or a short read). The interest registered with
//! epoll is a separate thing, computed from the stage and the queue alone:
//! READABLE unless reading is paused or over, WRITABLE only while bytes are
//! owed or a write was refused. Idle, it is just READABLE, and a
//! request-reply exchange never changes it, so it costs no `epoll_ctl`.
//! (A write refused with nothing queued is a `sendfile` that found the
//! socket full, `sendfile.rs`: the file's bytes are owed, but they wait in
//! the file, not in the queue.)
//!
//! # TLS is a transport under the same rules
//!
//! On a TLS listener the connection also holds a TLS session
//! (`tls/session.rs`). Reads feed it ciphertext and take plaintext out;
//! writes encrypt the queue's plaintext into records and write those to the
//! socket. The
//! rules above hold with one addition: WRITABLE is also wanted while the
//! session has records to send (handshake messages, alerts, close_notify).
//! Plaintext is encrypted from the queue only when the session has sent
//! every record before it, so the session holds at most one batch of
//! records and the write limit, counted on the queue, still bounds the
//! connection. An idle session holds no buffer at all.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::buffer::WriteQueue;
use crate::close::CloseReason;

/// The idle clock, and quiet members spared it.
mod idle;
/// The TLS half of a connection's reads and writes.
#[cfg(feature = "tls")]
mod tls;
use crate::conn_table::Tokened;

/// Where a connection is in its life. See the module documentation.
///
/// `repr(u8)`: a one-byte tag, so that asking the stage (several times per
/// message) is one comparison. Without it the tag hides in the spare bits
/// of an `Instant`, and each question costs a handful of instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// A PROXY protocol header is arriving (`--proxy-protocol`), due by
    /// `until`; nothing else is read or written yet.
    Header { until: Instant },
    /// A TLS handshake is under way until `until`; no protocol yet.
    Handshake { until: Instant },
    /// Reading and writing.
    Open,
    /// The peer sent its FIN; the protocol may still write.
    HalfClosed,
    /// Writing what is owed, reading nothing; `until` bounds it if set.
    Flushing { until: Option<Instant> },
    /// Our FIN is sent; reading and discarding until the peer's FIN, until
    /// the peer has acknowledged everything we sent (checked at `check`),
    /// or until `until`, whichever comes first.
    Lingering { until: Instant, check: Instant },
    /// Done; the socket is dropped at the end of the turn.
    Closed,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Header { .. } => "HEADER",
            Stage::Handshake { .. } => "HANDSHAKE",
            Stage::Open => "OPEN",
            Stage::HalfClosed => "HALF-CLOSED",
            Stage::Flushing { .. } => "FLUSHING",
            Stage::Lingering { .. } => "LINGERING",
            Stage::Closed => "CLOSED",
        })
    }
}

/// Socket reads one TLS read may make while they yield no plaintext.
#[cfg(feature = "tls")]
const TLS_READS_PER_CALL: usize = 4;

/// What one read found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// `n` bytes are in the buffer.
    Data(usize),
    /// Nothing to read now (`WouldBlock`): wait for the next event. (Over
    /// TLS also: nothing readable yet after a bounded number of reads;
    /// then `wants_read` stays true and the loop comes back.)
    Drained,
    /// The peer will send nothing more (a read of 0 bytes).
    Eof,
    /// The connection failed (reset, for instance).
    Failed(io::Error),
    /// TLS: the peer broke the protocol or failed verification. The alert
    /// saying why is sent and the session dropped; the connection should
    /// close gracefully so that the alert arrives.
    #[cfg(feature = "tls")]
    /// (Boxed: it is rare, and keeping it small keeps every read's outcome
    /// in registers.)
    Refused(Box<rustls::Error>),
}

/// What one attempt to send found.
#[derive(Debug)]
pub enum WriteOutcome {
    /// Everything owed is written.
    Done,
    /// The kernel's send buffer is full (`WouldBlock`); bytes remain queued.
    Blocked,
    /// The connection failed (reset, broken pipe, ...).
    Failed(io::Error),
}

/// One client connection. See the module documentation.
/// Why a connection is turned away after a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections`: `Server is full`.
    ServerFull,
    /// `--max-per-ip`.
    TooMany,
}

#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    token: Token,
    stage: Stage,
    /// Bytes owed to the peer.
    pub queue: WriteQueue,
    /// The last event said input may be waiting, and no read has found the
    /// socket empty since.
    read_ready: bool,
    /// The last event reported the peer's FIN or an error: keep reading
    /// until the read says so, even after a short read.
    read_closed_hint: bool,
    /// A write returned `WouldBlock`, and no writable event has come since.
    write_blocked: bool,
    /// Reading stopped because `queue` passed the write limit.
    reading_paused: bool,
    /// The peer's FIN has been read.
    peer_eof: bool,
    /// The interest now registered with the poll, if any.
    registered: Option<Interest>,
    /// When bytes last moved either way (the idle timeout counts from
    /// here). Moved only by this connection's own reads, writes and
    /// `sendfile`s, and restarted when it opens (`idle.rs`: `touch`).
    last_activity: Instant,
    /// The idle deadline passed while the connection was caught up, and
    /// its protocol lets quiet members stay: no idle deadline until bytes
    /// move again (`idle.rs`).
    idle_spared: bool,
    /// The deadline of this connection's one live timer entry, if armed.
    pub timer_at: Option<Instant>,
    /// Why a graceful close began, for the log line when it ends.
    pub close_reason: Option<CloseReason>,
    /// Being turned away, and why: on a TLS listener the refusal waits for
    /// the handshake, so it can be said through TLS. Such a connection was
    /// never active.
    pub refusing: Option<Refusal>,
    /// Let in, but not yet counted as a client (`accepted`): it has sent
    /// no byte of its own, and may be a health check
    /// (`event_loop/closing.rs`, `ends_as_check`).
    pub unproven: bool,
    /// The connection holds a `--max-connections` slot
    /// (`event_loop/admission.rs`, `Limit`): from its admission until it
    /// starts a bounded close, is turned away, starts lingering, or is
    /// reaped.
    pub holds_slot: bool,
    /// The TLS session, on a TLS listener.
    #[cfg(feature = "tls")]
    tls: Option<Box<crate::tls::ServerSession>>,
    /// The connection waits in one of the loop's queues (`ready`, `fresh`,
    /// `light` or the relay's deferred senders; `event_loop/visit.rs`), so
    /// that it is never queued, or served from an event, twice.
    pub queued: bool,
    /// Visits in a row that ended with input still waiting and put it back
    /// at the front of the ready queue (`event_loop/visit.rs::carry`).
    pub carried: u8,
    /// Its last visit moved little (`event_loop/visit.rs::LIGHT_VISIT`): a
    /// client that talks in small messages. If its next event finds the
    /// turn's budget spent, it waits in the loop's `light` queue, served
    /// first next turn, not in `fresh`, unless it owes more than that. Set
    /// only at the end of a visit that moved something; a new connection
    /// starts light.
    pub light: bool,
    /// TLS: close_notify has been queued.
    #[cfg(feature = "tls")]
    notify_sent: bool,
    /// TLS: the peer has sent at least one byte of the handshake, so a
    /// handshake that ends now failed (rather than being a port check).
    #[cfg(feature = "tls")]
    heard: bool,
}

impl Tokened for Connection {
    fn token(&self) -> Token {
        self.token
    }
}

impl Connection {
    pub fn new(stream: TcpStream, token: Token, now: Instant) -> Self {
        Self {
            stream,
            token,
            stage: Stage::Open,
            queue: WriteQueue::new(),
            // Input that arrived before registration is reported by the
            // registration itself (epoll checks readiness on EPOLL_CTL_ADD).
            read_ready: false,
            read_closed_hint: false,
            write_blocked: false,
            reading_paused: false,
            peer_eof: false,
            registered: None,
            last_activity: now,
            idle_spared: false,
            timer_at: None,
            close_reason: None,
            refusing: None,
            unproven: false,
            holds_slot: false,
            queued: false,
            carried: 0,
            light: true,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            notify_sent: false,
            #[cfg(feature = "tls")]
            heard: false,
        }
    }

    /// True once a TLS session has finished its handshake (false on plain
    /// TCP, and after a failed session was dropped).
    pub fn handshake_done(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return !tls.is_handshaking();
        }
        false
    }

    /// True while a TLS handshake is unfinished.
    #[inline]
    pub fn handshaking(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.is_handshaking();
        }
        false
    }

    /// True if the peer has sent anything on a TLS connection (on plain TCP:
    /// always false). A handshake that ends after this failed; one that
    /// ends before it was a port check, nobody's error.
    pub fn tls_heard(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.heard;
        #[cfg(not(feature = "tls"))]
        false
    }

    /// True if the TLS session has records waiting for the socket.
    #[inline]
    fn tls_wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.wants_write();
        }
        false
    }

    /// The peer's address, for a log line. Asked of the kernel rather than
    /// stored, to keep an idle connection small; the accept is logged with
    /// the address and the connection's number, which later lines repeat.
    pub fn peer(&self) -> String {
        match self.stream.peer_addr() {
            Ok(a) => a.to_string(),
            Err(_) => "(gone)".into(),
        }
    }

    /// True if the peer's TCP has acknowledged none of what we sent: it
    /// cannot have read any of it.
    pub fn nothing_acked(&self) -> bool {
        // Unknown (an old kernel) counts as acknowledged: a client, never
        // a client mistaken for a check.
        crate::sys::bytes_acked(self.stream.as_raw_fd()) == Some(0)
    }

    /// The peer's address, as the kernel has it (`None` once it is gone).
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// The connection's number in the logs (its token's generation).
    pub fn number(&self) -> u32 {
        (self.token.0 >> 32) as u32
    }

    #[inline]
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The one place a stage changes, so that every transition can be traced.
    pub fn set_stage(&mut self, next: Stage) {
        if std::mem::discriminant(&self.stage) != std::mem::discriminant(&next) {
            log::trace!("conn #{}: {} -> {}", self.number(), self.stage, next);
        }
        self.stage = next;
    }

    pub fn peer_eof(&self) -> bool {
        self.peer_eof
    }

    /// True if this stage takes bytes from the protocol and other
    /// connections. Flushing, lingering and closed connections take no more.
    #[inline]
    pub fn accepts_output(&self) -> bool {
        // (HANDSHAKE is not here: no protocol knows the connection yet.)
        matches!(self.stage, Stage::Open | Stage::HalfClosed)
    }

    /// Records what an event reported.
    #[inline]
    pub fn on_event(&mut self, readable: bool, read_closed: bool, writable: bool) {
        if readable || read_closed {
            self.read_ready = true;
        }
        if read_closed {
            self.read_closed_hint = true;
        }
        if writable {
            self.write_blocked = false;
        }
    }

    /// True if a read now is both allowed and may find something.
    #[inline]
    pub fn wants_read(&self) -> bool {
        self.read_ready && self.reads() && !self.reading_paused
    }

    /// True if this stage reads at all.
    #[inline]
    fn reads(&self) -> bool {
        match self.stage {
            Stage::Header { .. }
            | Stage::Handshake { .. }
            | Stage::Open
            | Stage::Lingering { .. } => !self.peer_eof,
            Stage::HalfClosed | Stage::Flushing { .. } | Stage::Closed => false,
        }
    }

    /// True if bytes are owed and the kernel may take some now.
    #[inline]
    pub fn can_write(&self) -> bool {
        (self.plaintext_ready() || self.tls_wants_write())
            && !self.write_blocked
            && !matches!(self.stage, Stage::Closed)
    }

    /// True if queued bytes may move on now: always on plain TCP, and with
    /// TLS once the handshake is done.
    #[inline]
    fn plaintext_ready(&self) -> bool {
        !self.queue.is_empty() && !self.handshaking()
    }

    /// True when nothing at all is left to send: the queue, and the TLS
    /// session's records.
    #[inline]
    pub fn all_sent(&self) -> bool {
        self.queue.is_empty() && !self.tls_wants_write()
    }

    /// One read into `buf`.
    ///
    /// A read that fills less than `buf` is taken to have drained the socket:
    /// on Linux a TCP socket's reads return everything queued, and any byte
    /// that arrives later raises a fresh edge. That saves the extra read per
    /// message that would only return `WouldBlock`. The exception is an event
    /// that carried the peer's FIN or an error: then reading goes on until the
    /// 0-byte read or the error, which may raise no further edge.
    ///
    /// Every read that returns bytes moves the idle clock to `now`; over
    /// TLS, ciphertext that completes a record or begins a new one does
    /// (plaintext or not), but more bytes of a record begun earlier do not:
    /// a record must complete within the idle timeout of its first byte.
    ///
    /// `work` is the visit's count of bytes moved: over TLS the records
    /// read are added to it at their cost (`read_tls`), so that the turn is
    /// charged for them; plain TCP's bytes are counted by the caller, and
    /// its reads never touch it (the parameter costs them nothing).
    #[inline(always)]
    pub fn read(&mut self, buf: &mut [u8], work: &mut usize, now: Instant) -> ReadOutcome {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.read_tls(buf, work, now);
        }
        #[cfg(not(feature = "tls"))]
        let _ = work;
        loop {
            return match crate::sys::recv(self.stream.as_raw_fd(), buf) {
                Ok(0) => {
                    self.read_ready = false;
                    self.peer_eof = true;
                    ReadOutcome::Eof
                }
                Ok(n) => {
                    if n < buf.len() && !self.read_closed_hint {
                        self.read_ready = false;
                    }
                    self.touch(now);
                    ReadOutcome::Data(n)
                }
                // The OS saying "not now".
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_ready = false;
                    ReadOutcome::Drained
                }
                // A signal arrived mid-call: just try again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_ready = false;
                    ReadOutcome::Failed(e)
                }
            };
        }
    }

    /// Sends `bytes` after what is already owed. When nothing is owed it
    /// writes them straight away, and queues (copies) only what the kernel
    /// did not take. Returns the outcome and the bytes written now; any
    /// written move the idle clock to `now`.
    #[inline]
    pub fn send(&mut self, bytes: &[u8], now: Instant) -> (WriteOutcome, usize) {
        let (outcome, n) = self.send_now(bytes);
        if n > 0 {
            self.touch(now);
        }
        (outcome, n)
    }

    /// [`send`](Self::send), without the clock.
    #[inline(always)]
    fn send_now(&mut self, bytes: &[u8]) -> (WriteOutcome, usize) {
        if bytes.is_empty() {
            return (WriteOutcome::Done, 0);
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            self.queue.push_copy(bytes);
            return self.flush_now(usize::MAX);
        }
        if !self.queue.is_empty() || self.write_blocked {
            self.queue.push_copy(bytes);
            return (WriteOutcome::Blocked, 0);
        }
        loop {
            return match crate::sys::send(self.stream.as_raw_fd(), bytes) {
                Ok(n) if n == bytes.len() => (WriteOutcome::Done, n),
                Ok(n) => {
                    self.queue.push_copy(&bytes[n..]);
                    (WriteOutcome::Blocked, n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    self.queue.push_copy(bytes);
                    (WriteOutcome::Blocked, 0)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => (WriteOutcome::Failed(e), 0),
            };
        }
    }

    /// Writes what is owed until it is all written or the kernel refuses
    /// more. Each round is one vectored write of up to 64 chunks. Returns
    /// the outcome and the bytes written.
    ///
    /// At most about `limit` bytes go per call (the loop's per-visit share):
    /// past it the call returns `Blocked` with the socket still writable,
    /// and [`can_write`](Self::can_write) says to come back. Bytes written
    /// move the idle clock to `now`.
    pub fn flush(&mut self, limit: usize, now: Instant) -> (WriteOutcome, usize) {
        let (outcome, n) = self.flush_now(limit);
        if n > 0 {
            self.touch(now);
        }
        (outcome, n)
    }

    /// [`flush`](Self::flush), without the clock.
    fn flush_now(&mut self, limit: usize) -> (WriteOutcome, usize) {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.flush_tls(limit);
        }
        let mut written = 0;
        while self.can_write() && written < limit {
            match self.queue.write_to(&mut self.stream) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return (WriteOutcome::Blocked, written);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (WriteOutcome::Failed(e), written),
            }
        }
        if self.queue.is_empty() {
            (WriteOutcome::Done, written)
        } else {
            (WriteOutcome::Blocked, written)
        }
    }

    /// Ends our side once everything owed is written: close_notify first on
    /// TLS (its record must be sent too), then our FIN. Returns `Done` once
    /// the FIN is sent, `Blocked` while close_notify waits for the socket.
    pub fn close_write(&mut self) -> WriteOutcome {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            if !self.notify_sent {
                tls.send_close_notify();
                self.notify_sent = true;
            }
            match tls.write_records(&mut self.stream) {
                Ok(true) => {}
                Ok(false) => {
                    self.write_blocked = true;
                    return WriteOutcome::Blocked;
                }
                Err(e) => return WriteOutcome::Failed(e),
            }
        }
        // ENOTCONN here means the peer is already gone, which the next read
        // will report; nothing to do about it now.
        let _ = self.stream.shutdown(Shutdown::Write);
        WriteOutcome::Done
    }

    /// Bytes we sent that the peer has not acknowledged yet, our FIN
    /// included (SIOCOUTQ). Zero means everything we said has arrived, so
    /// closing now cannot destroy any of it.
    pub fn unacked(&self) -> usize {
        crate::sys::unacked(self.stream.as_raw_fd())
    }

    /// Makes the coming close a reset (SO_LINGER 0) rather than a FIN: the
    /// peer must see that what it got is incomplete.
    pub fn abort(&mut self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }

    /// Applies the write limit with hysteresis: reading pauses when more than
    /// `limit` bytes are owed and resumes when no more than half are.
    /// Returns true if reading just resumed. The common case (not paused,
    /// under the limit) is two comparisons, inlined.
    #[inline]
    pub fn apply_backpressure(&mut self, limit: usize) -> bool {
        if self.reading_paused {
            self.maybe_resume(limit)
        } else {
            if self.queue.len() > limit {
                self.pause_reading();
            }
            false
        }
    }

    #[cold]
    fn pause_reading(&mut self) {
        self.reading_paused = true;
        log::debug!(
            "conn #{}: {} bytes owed, pausing reads",
            self.number(),
            self.queue.len()
        );
    }

    #[cold]
    fn maybe_resume(&mut self, limit: usize) -> bool {
        if self.queue.len() > limit / 2 {
            return false;
        }
        self.reading_paused = false;
        log::debug!("conn #{}: drained, resuming reads", self.number());
        true
    }

    /// A write was refused and no writable event has come since.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked
    }

    /// What a write made outside the queue (`sendfile`, `sendfile.rs`)
    /// did: bytes sent move the idle clock to `now`; a refusal waits for a
    /// writable event before the next.
    pub fn sent_directly(&mut self, sent: usize, blocked: bool, now: Instant) {
        if sent > 0 {
            self.touch(now);
        }
        if blocked {
            self.write_blocked = true;
        }
    }

    /// The connection reaches OPEN, ready for its protocol: the idle clock
    /// starts now (a handshake or a PROXY header had its own clock), and
    /// the timer entry armed for that stage is forgotten, so that the next
    /// settle arms the idle one (the old entry is then stale, and ignored
    /// when it fires).
    pub fn open(&mut self, now: Instant) {
        self.set_stage(Stage::Open);
        self.touch(now);
        self.timer_at = None;
    }

    /// The socket, lent for `sendfile` for one step of at most `limit`
    /// bytes: on plain TCP only (TLS encrypts in user space).
    pub fn direct(&self, limit: usize) -> Option<crate::sendfile::Direct> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return None;
        }
        Some(crate::sendfile::Direct::new(self.stream.as_raw_fd(), limit))
    }

    pub fn reading_paused(&self) -> bool {
        self.reading_paused
    }

    /// The interest this connection needs now: the one place it is decided.
    #[inline]
    pub fn desired_interest(&self) -> Option<Interest> {
        let read = self.reads() && !self.reading_paused;
        let write = (self.plaintext_ready() || self.tls_wants_write() || self.write_blocked)
            && !matches!(self.stage, Stage::Closed);
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Makes the registration match [`desired_interest`](Self::desired_interest),
    /// with a syscall only when it differs from what is registered.
    pub fn sync_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let want = self.desired_interest();
        if want == self.registered {
            return Ok(());
        }
        match (self.registered, want) {
            (None, Some(i)) => registry.register(&mut self.stream, self.token, i)?,
            (Some(_), Some(i)) => registry.reregister(&mut self.stream, self.token, i)?,
            (Some(_), None) => registry.deregister(&mut self.stream)?,
            (None, None) => {}
        }
        self.registered = want;
        Ok(())
    }

    /// When this connection's timer is due: the idle deadline (bytes last
    /// moved + `idle`) or the stage's own bound, whichever is first.
    pub fn deadline(&self, idle: Option<Duration>) -> Option<Instant> {
        let idle_at = self.idle_due(idle);
        let stage_at = match self.stage {
            // The handshake has its own clock; idleness starts after it.
            Stage::Header { until } | Stage::Handshake { until } => return Some(until),
            Stage::Flushing { until } => until,
            Stage::Lingering { until, check } => return Some(until.min(check)),
            Stage::Closed => return None,
            Stage::Open | Stage::HalfClosed => None,
        };
        match (idle_at, stage_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener as StdListener;

    /// A connected pair over loopback: (server side as a Connection,
    /// client). `idle.rs`'s tests use it too.
    pub(super) fn pair() -> (Connection, std::net::TcpStream) {
        let l = StdListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let conn = Connection::new(TcpStream::from_std(s), Token(1 << 32), Instant::now());
        (conn, client)
    }

    #[test]
    fn idle_open_connection_wants_only_readable() {
        let (c, _client) = pair();
        assert_eq!(c.desired_interest(), Some(Interest::READABLE));
        assert_eq!(c.number(), 1);
    }

    #[test]
    fn a_refused_sendfile_asks_for_writable_until_the_event() {
        let (mut c, _client) = pair();
        assert!(c.direct(1024).is_some(), "plain TCP lends its socket");
        c.sent_directly(0, true, Instant::now());
        assert!(c.queue.is_empty());
        assert_eq!(
            c.desired_interest(),
            Some(Interest::READABLE | Interest::WRITABLE)
        );
        c.on_event(false, false, true);
        assert_eq!(c.desired_interest(), Some(Interest::READABLE));
    }

    #[test]
    fn owed_bytes_add_writable_and_backpressure_drops_readable() {
        let (mut c, _client) = pair();
        c.queue.push_copy(&[0u8; 100]);
        assert_eq!(
            c.desired_interest(),
            Some(Interest::READABLE | Interest::WRITABLE)
        );
        assert!(!c.apply_backpressure(50));
        assert!(c.reading_paused());
        assert_eq!(c.desired_interest(), Some(Interest::WRITABLE));
        // Still above half the limit: stays paused.
        c.queue.consume(60);
        assert!(!c.apply_backpressure(50));
        assert!(c.reading_paused());
        // At half: resumes.
        c.queue.consume(15);
        assert!(c.apply_backpressure(50));
        assert_eq!(
            c.desired_interest(),
            Some(Interest::READABLE | Interest::WRITABLE)
        );
    }

    #[test]
    fn flushing_and_lingering_read_only_when_they_should() {
        let (mut c, _client) = pair();
        c.set_stage(Stage::Flushing { until: None });
        assert_eq!(c.desired_interest(), None);
        c.queue.push_copy(b"x");
        assert_eq!(c.desired_interest(), Some(Interest::WRITABLE));
        c.queue.consume(1);
        c.set_stage(Stage::Lingering {
            until: Instant::now(),
            check: Instant::now(),
        });
        assert_eq!(c.desired_interest(), Some(Interest::READABLE));
    }

    #[test]
    fn deadline_is_the_earlier_of_idle_and_stage_bound() {
        let (mut c, _client) = pair();
        let t0 = c.last_activity;
        let idle = Some(Duration::from_secs(30));
        assert_eq!(c.deadline(idle), Some(t0 + Duration::from_secs(30)));
        assert_eq!(c.deadline(None), None);
        c.set_stage(Stage::Flushing {
            until: Some(t0 + Duration::from_secs(5)),
        });
        assert_eq!(c.deadline(idle), Some(t0 + Duration::from_secs(5)));
        c.set_stage(Stage::Closed);
        assert_eq!(c.deadline(idle), None);
    }

    #[test]
    fn short_read_counts_as_drained_and_zero_is_eof() {
        let (mut c, mut client) = pair();
        client.write_all(b"hello").unwrap();
        let mut buf = [0u8; 64];
        // Wait for the bytes to cross loopback.
        let deadline = Instant::now() + Duration::from_secs(5);
        let n = loop {
            match c.read(&mut buf, &mut 0, Instant::now()) {
                ReadOutcome::Data(n) => break n,
                ReadOutcome::Drained if Instant::now() < deadline => {
                    c.on_event(true, false, false);
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(&buf[..n], b"hello");
        assert!(!c.wants_read(), "a short read drains");
        drop(client);
        c.on_event(true, true, false);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match c.read(&mut buf, &mut 0, Instant::now()) {
                ReadOutcome::Eof => break,
                ReadOutcome::Drained if Instant::now() < deadline => {
                    c.on_event(true, true, false);
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(c.peer_eof());
    }

    #[test]
    fn send_writes_directly_when_nothing_is_owed() {
        let (mut c, mut client) = pair();
        let (outcome, n) = c.send(b"ping", Instant::now());
        assert!(matches!(outcome, WriteOutcome::Done));
        assert_eq!(n, 4);
        assert!(c.queue.is_empty());
        let mut got = [0u8; 4];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }
}

#[cfg(test)]
mod footprint {
    use super::*;
    use crate::protocol::echo::EchoSession;

    /// An idle echo connection's user-space cost is its slab slot (this
    /// struct plus the slab's tag) and one timer entry; its queue and
    /// session own no heap while idle. Keep the slot small.
    #[test]
    fn an_idle_echo_connection_fits_in_a_few_hundred_bytes() {
        // The session is kept beside the table (`protocol/seam.rs`), one
        // `Option` per slot: it counts here all the same.
        let conn = std::mem::size_of::<Connection>() + std::mem::size_of::<Option<EchoSession>>();
        eprintln!("Connection + Option<EchoSession>: {conn} bytes");
        assert!(conn <= 200, "connection grew to {conn} bytes");
    }
}
