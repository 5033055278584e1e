//! What a protocol is: the trait the event loop drives, and the context
//! through which a protocol answers.
//!
//! A protocol never touches a socket. The loop reads bytes and hands them to
//! [`Protocol::data`]; the protocol answers by writing into its [`Ctx`]:
//! bytes for this connection with [`Ctx::write`] (or the input itself,
//! uncopied, with [`Ctx::write_input`]), a shared chunk for another
//! connection with [`Ctx::send`], or a span of an open file with
//! [`Ctx::send_file`], which on plain TCP the kernel copies to the socket
//! itself (`sendfile.rs`). The loop then does the I/O, the buffering and
//! the backpressure (`event_loop/`, `connection.rs`). That split keeps
//! every protocol a plain state machine that unit tests drive with byte
//! strings, and keeps the loop the only place that knows about readiness.
//!
//! Each connection has a `Session`, the protocol's per-connection state,
//! created by [`Protocol::open`] and handed back by [`Protocol::closed`].
//! Protocol-wide state (who is connected, for a relay) lives in the value
//! implementing the trait.

pub mod broadcast;
pub mod chat;
pub mod echo;
pub mod file;
pub mod lines;
pub mod room;
pub mod seam;

use std::time::{Duration, Instant};

pub use crate::buffer::Shared;
pub use crate::close::CloseReason;
pub use crate::hub::{Address, Claim, Holder, Registry, Remote};
pub use crate::sendfile::{Direct, FileSend};

use std::sync::{Arc, MutexGuard};

use mio::Token;

use crate::hub::Hub;

/// A connection's identity as protocols see it: its loop token. Stable for
/// the connection's whole life and never reused for another while any
/// reference to it could be live (see `conn_table.rs`).
pub type ConnId = Token;

/// The limits every protocol applies to what a client sends, from the
/// command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line in line modes (`--max-line`).
    pub max_line: usize,
    /// How long a line may take from its first byte to its newline (the
    /// idle timeout): `None`, no bound.
    pub line_timeout: Option<Duration>,
    /// How long a prompt (the chat username, the file request) may wait for
    /// its answer in all (`--request-timeout`): `None`, no bound.
    pub request_timeout: Option<Duration>,
}

impl Limits {
    /// `--max-line` alone, no deadlines: for unit tests.
    pub fn lines(max_line: usize) -> Self {
        Self {
            max_line,
            line_timeout: None,
            request_timeout: None,
        }
    }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the protocol wants after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep going.
    Continue,
    /// Send what is owed, then close this connection.
    Close,
    /// Send what is owed, then end the connection with a reset instead of
    /// a FIN: what was sent is incomplete, and the peer must not take it
    /// for whole (a file that shrank while it was sent).
    Abort,
}

/// What a connection does when the server begins to shut down, as its
/// protocol says ([`Protocol::shutdown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Close now: what the protocol just wrote (its last words) and
    /// everything owed before them are delivered within the drain
    /// timeout, then the FIN.
    Close,
    /// Output of the protocol's own is under way (a file being sent):
    /// keep the connection open and producing until the output ends, or
    /// until the drain timeout cuts it short, which ends it with a reset,
    /// so that the peer never takes a part for the whole.
    Finish,
}

/// The protocol's side of one step: where its output goes.
///
/// `out` is the loop's staging buffer for the connection being served; the
/// loop writes it to the socket straight after the step, so a reply usually
/// costs no allocation. `sends` collects chunks for other connections, which
/// the loop queues and flushes once per turn.
///
/// In [`Protocol::data`] the context also knows the input, so that an echo
/// costs no copy at all: [`Ctx::write_input`] only notes that the reply is
/// the input, and the loop writes it from the buffer it was read into.
///
/// Beyond this worker a relay reaches through the loop's hub (`hub.rs`),
/// lent to the context: [`Ctx::publish`] for the room, [`Ctx::direct`] for
/// one connection anywhere, [`Ctx::registry`] for names. Without a hub (a
/// unit test, or `Hub::Local`) this worker is the whole server.
pub struct Ctx<'a> {
    pub now: Instant,
    out: &'a mut Vec<u8>,
    sends: &'a mut Vec<(ConnId, Shared)>,
    /// The bytes `data` is handling; empty in every other call.
    input: &'a [u8],
    /// Bytes sent to other connections in this step, each shared chunk
    /// counted once (what one receiver gets, not what all of them do).
    fanned_out: usize,
    /// The reply so far is `input`, not yet copied into `out`.
    reply_is_input: bool,
    /// The connection's plain socket, lent for `sendfile` (producing steps
    /// on plain TCP only).
    direct: Option<&'a mut Direct>,
    /// The loop's hub, lent for relays.
    hub: Option<&'a mut Hub>,
    /// Where the chunk last counted in `fanned_out` starts (only compared,
    /// never read): a chunk is counted once, however many receivers it has.
    counted: *const u8,
    /// Tests: every claim is answered later, as a registry across machines
    /// may answer it.
    #[cfg(test)]
    claims_pending: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(now: Instant, out: &'a mut Vec<u8>, sends: &'a mut Vec<(ConnId, Shared)>) -> Self {
        Self::for_input(now, &[], out, sends)
    }

    /// The context for [`Protocol::data`] on `input`.
    pub fn for_input(
        now: Instant,
        input: &'a [u8],
        out: &'a mut Vec<u8>,
        sends: &'a mut Vec<(ConnId, Shared)>,
    ) -> Self {
        Self {
            now,
            out,
            sends,
            input,
            reply_is_input: false,
            fanned_out: 0,
            direct: None,
            hub: None,
            counted: std::ptr::null(),
            #[cfg(test)]
            claims_pending: false,
        }
    }

    /// Tests: every [`claim`](Self::claim) answers `Pending`, as a registry
    /// across machines may.
    #[cfg(test)]
    pub fn with_claims_pending(mut self) -> Self {
        self.claims_pending = true;
        self
    }

    /// Lends the loop's hub: what [`publish`](Self::publish) and
    /// [`direct`](Self::direct) send beyond this worker goes through it.
    pub fn with_hub(mut self, hub: &'a mut Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Lends the connection's socket for [`send_file`](Self::send_file).
    pub fn with_direct(mut self, direct: Option<&'a mut Direct>) -> Self {
        self.direct = direct;
        self
    }

    /// Sends up to `max` bytes of `file` from `offset` straight from the
    /// page cache to the socket (`sendfile(2)`), when the loop lent the
    /// socket for it: on plain TCP, with nothing owed before. `None` means
    /// the bytes must be read and written (TLS encrypts them in user
    /// space): use [`write_with`](Self::write_with).
    pub fn send_file(&mut self, file: &std::fs::File, offset: u64, max: usize) -> Option<FileSend> {
        if !self.out.is_empty() || self.reply_is_input {
            // Bytes written before must go first; they go through the queue.
            return None;
        }
        Some(self.direct.as_mut()?.send_file(file, offset, max))
    }

    /// Queues bytes for the connection being served.
    pub fn write(&mut self, bytes: &[u8]) {
        self.materialize();
        self.out.extend_from_slice(bytes);
    }

    /// Queues the input being handled, unchanged. When it is the whole
    /// reply (nothing written before it or after), nothing is copied: the
    /// loop writes it straight from its read buffer.
    pub fn write_input(&mut self) {
        if self.out.is_empty() && !self.reply_is_input {
            self.reply_is_input = true;
        } else {
            self.materialize();
            self.out.extend_from_slice(self.input);
        }
    }

    /// True when the reply is exactly the input, still uncopied: the loop
    /// then sends the input instead of `out` (which is empty).
    pub fn reply_is_input(&self) -> bool {
        self.reply_is_input
    }

    /// Copies a pending [`write_input`](Self::write_input) into `out`, so
    /// that what is written next comes after it.
    fn materialize(&mut self) {
        if std::mem::take(&mut self.reply_is_input) {
            self.out.extend_from_slice(self.input);
        }
    }

    /// Lets `fill` write up to `max` bytes straight into the output for the
    /// connection being served (a file read, say, with no copy in between).
    /// `fill` returns how many bytes it wrote; its error is passed back.
    pub fn write_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        self.materialize();
        let start = self.out.len();
        self.out.resize(start + max, 0);
        let result = fill(&mut self.out[start..]);
        let n = *result.as_ref().unwrap_or(&0);
        self.out.truncate(start + n.min(max));
        result
    }

    /// Queues a shared chunk for connection `to` of this worker (which may
    /// be gone by the time the loop delivers it; then it is dropped).
    pub fn send(&mut self, to: ConnId, chunk: Shared) {
        self.count(&chunk);
        self.sends.push((to, chunk));
    }

    /// Counts `chunk` against the sender's fan-out budget (`pacing.rs`),
    /// once, however many receivers it has (they are sent it in a row).
    fn count(&mut self, chunk: &Shared) {
        if self.counted != chunk.as_ptr() {
            self.fanned_out += chunk.len();
            self.counted = chunk.as_ptr();
        }
    }

    /// Makes `batch` one chunk for the whole room: the chunk to
    /// [`send`](Self::send) to this worker's members and, with several
    /// workers, published to the room on every other one (sent when the
    /// turn ends). Encoded once and counted once, whoever receives it.
    pub fn publish(&mut self, batch: Vec<u8>) -> Shared {
        let chunk = match self.hub.as_deref_mut() {
            Some(hub) if hub.reaches_out() => {
                let cross: Arc<[u8]> = batch.into();
                hub.publish(cross.clone());
                Shared::Cross(cross)
            }
            _ => Shared::from(batch),
        };
        self.count(&chunk);
        chunk
    }

    /// The address of this worker's connection `id`, for others to reach
    /// it with [`direct`](Self::direct).
    pub fn address(&self, id: ConnId) -> Address {
        match self.hub.as_deref() {
            Some(hub) => hub.address(id),
            None => Address {
                node: 0,
                worker: 0,
                conn: id,
            },
        }
    }

    /// Sends `message` to the connection at `to`, wherever it is: here, as
    /// [`send`](Self::send) does; on another worker, through the hub.
    pub fn direct(&mut self, to: Address, message: Vec<u8>) {
        let here = self.address(to.conn);
        match self.hub.as_deref_mut() {
            Some(hub) if to != here => hub.direct(to, message.into()),
            _ => self.send(to.conn, Shared::from(message)),
        }
    }

    /// The names every worker's relay shares (chat's users); `None` when
    /// this worker is the whole process, and keeps its own.
    pub fn registry(&self) -> Option<MutexGuard<'_, Registry>> {
        self.hub.as_deref()?.registry()
    }

    /// Asks for the name `key`, as `holder`, in place of `previous` (the
    /// key the claimant held, given up if granted). `None` when there is
    /// no registry beyond this worker: it is the whole server, and the
    /// protocol keeps its names itself. The answer may come now or later:
    /// in one process it is always now; across instances (`--cluster`)
    /// Redis answers, [`Claim::Pending`] says so, and the protocol hears
    /// it in [`Protocol::answer`].
    pub fn claim(&mut self, key: String, holder: Holder, previous: Option<&str>) -> Option<Claim> {
        #[cfg(test)]
        if self.claims_pending {
            return Some(Claim::Pending);
        }
        let now = self.now;
        self.hub.as_deref_mut()?.claim(key, holder, previous, now)
    }

    /// The user `id` let the name `key` go (it left): whoever holds the
    /// names beyond this worker hears it.
    pub fn release(&mut self, key: &str, id: ConnId) {
        let (at, now) = (self.address(id), self.now);
        if let Some(hub) = self.hub.as_deref_mut() {
            hub.release(key, at, now);
        }
    }

    /// The names held on other instances (`--cluster`): lowercase key and
    /// name as typed.
    pub fn elsewhere(&mut self) -> Vec<(String, String)> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.hub.as_deref_mut().and_then(|h| h.cluster()) {
            let names = cluster.roster().names();
            return names.map(|(k, n)| (k.to_string(), n.to_string())).collect();
        }
        Vec::new()
    }

    /// Where the user holding `key` is, if on another instance.
    pub fn find_elsewhere(&mut self, key: &str) -> Option<Address> {
        self.hub.as_deref_mut()?.elsewhere(key)
    }

    /// Bytes this step sent to other connections, each shared chunk once:
    /// how much any one receiver's queue grew, at most.
    pub fn fanned_out(&self) -> usize {
        self.fanned_out
    }
}

/// A protocol: a state machine over the bytes of each connection.
///
/// Every method is called by the loop with the current time in `ctx.now`.
/// None may block or do I/O of its own.
pub trait Protocol {
    /// Per-connection state.
    type Session;

    /// True if the protocol ever generates output of its own
    /// ([`producing`](Self::producing)); the loop skips the check entirely
    /// for protocols that do not.
    const PRODUCES: bool = false;

    /// True if the protocol sends what one client says to others
    /// ([`Ctx::send`]): the loop then paces its senders to the receivers
    /// (`pacing.rs`). Compiled out for protocols that do not.
    const FANS_OUT: bool = false;

    /// True if a client may stay silent for as long as it likes while the
    /// server speaks to it unprompted: a room's member who only reads. The
    /// idle timeout then spares a connection that has everything it was
    /// sent (acknowledged by its TCP) and is in the middle of nothing,
    /// and TCP keepalive checks instead that its machine is still there
    /// (docs/architecture.md, "Quiet members"). Echo and file answer what
    /// the client asks, so a silent client there is an idle one.
    const QUIET_MEMBERS: bool = false;

    /// A connection was accepted. Returns its session; may greet via `ctx`.
    fn open(&mut self, id: ConnId, ctx: &mut Ctx) -> Self::Session;

    /// Bytes arrived. `input` is only valid for this call: keep what you
    /// need of it (an unfinished line, say) in the session.
    fn data(
        &mut self,
        session: &mut Self::Session,
        id: ConnId,
        input: &[u8],
        ctx: &mut Ctx,
    ) -> Step;

    /// The peer will send nothing more (it half-closed). What the protocol
    /// still writes is delivered before the connection closes.
    fn eof(&mut self, session: &mut Self::Session, id: ConnId, ctx: &mut Ctx) -> Step {
        let _ = (session, id, ctx);
        Step::Close
    }

    /// True while the protocol has output of its own to generate for this
    /// connection (a file being streamed). The loop then calls
    /// [`produce`](Self::produce) whenever the connection has drained what
    /// it was owed, so output is generated only as fast as the peer reads.
    fn producing(&self, session: &Self::Session) -> bool {
        let _ = session;
        false
    }

    /// Generates the next piece of output (a 64 KiB chunk, or one
    /// [`Ctx::send_file`] on plain TCP) for a connection
    /// that is [`producing`](Self::producing) and has nothing left queued.
    /// `Step::Close` ends the connection once the piece is sent.
    fn produce(&mut self, session: &mut Self::Session, id: ConnId, ctx: &mut Ctx) -> Step {
        let _ = (session, id, ctx);
        Step::Close
    }

    /// The protocol's own deadline for this connection, if it has one now:
    /// a prompt that must be answered by then, or an unfinished line that
    /// must be complete by then. Unlike the idle timeout, it does not move
    /// when bytes arrive, so a client that trickles cannot hold its slot.
    /// When it passes the loop closes the connection as it does an idle one
    /// (`Connection timeout`). The loop asks after every step, unless
    /// [`has_deadlines`](Self::has_deadlines) said it need not.
    #[inline]
    fn deadline(&self, session: &Self::Session) -> Option<Instant> {
        let _ = session;
        None
    }

    /// False if [`deadline`](Self::deadline) is always `None` for this
    /// protocol as configured (raw echo has no lines to finish): the loop,
    /// which asks once at start, then never asks for a deadline at all.
    fn has_deadlines(&self) -> bool {
        true
    }

    /// The registry answered a claim this connection made earlier, when
    /// [`Ctx::claim`] said [`Claim::Pending`]: `answer` is `Granted` or
    /// `Taken`. Only a registry across machines answers later; in one
    /// process this is never called.
    fn answer(
        &mut self,
        session: &mut Self::Session,
        id: ConnId,
        answer: Claim,
        ctx: &mut Ctx,
    ) -> Step {
        let _ = (session, id, answer, ctx);
        Step::Continue
    }

    /// A message from another worker arrived (the hub woke this loop):
    /// deliver it to this worker's connections through `ctx`; `ctx.now` is
    /// when it arrived. Only relays with several workers get this call
    /// (`hub.rs`).
    fn remote(&mut self, message: Remote, ctx: &mut Ctx) {
        let _ = (message, ctx);
    }

    /// The mode's own fact about a connection, for the access log, asked
    /// once, just before the protocol lets go of the session: `key=value`
    /// fields (values quoted where they may hold spaces), such as
    /// `user=alice` or `file="a.txt" sent=1024`. Called only with
    /// `--access-log`.
    fn summary(&self, session: &Self::Session) -> Option<String> {
        let _ = session;
        None
    }

    /// The server is shutting down: last words for this connection, and
    /// whether it closes now ([`Drain::Close`], the default: reading stops
    /// after this call, and what is written is delivered within the drain
    /// timeout) or finishes the output under way first ([`Drain::Finish`]:
    /// the session stays, and [`produce`](Self::produce) goes on).
    fn shutdown(&mut self, session: &mut Self::Session, id: ConnId, ctx: &mut Ctx) -> Drain {
        let _ = (session, id, ctx);
        Drain::Close
    }

    /// The connection is gone (for `reason`). Writes to `ctx` for this
    /// connection are dropped; sends to others are delivered.
    fn closed(&mut self, session: Self::Session, id: ConnId, reason: CloseReason, ctx: &mut Ctx) {
        let _ = (session, id, reason, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a context for `input`; returns what the loop would send.
    fn reply(input: &[u8], f: impl FnOnce(&mut Ctx)) -> (Vec<u8>, bool) {
        let (mut out, mut sends) = (Vec::new(), Vec::new());
        let mut ctx = Ctx::for_input(Instant::now(), input, &mut out, &mut sends);
        f(&mut ctx);
        let as_is = ctx.reply_is_input();
        if as_is {
            assert!(out.is_empty());
            return (input.to_vec(), true);
        }
        (out, false)
    }

    #[test]
    fn the_input_alone_goes_back_uncopied() {
        assert_eq!(reply(b"abc", |c| c.write_input()), (b"abc".to_vec(), true));
    }

    #[test]
    fn the_input_keeps_its_place_among_other_writes() {
        let (out, as_is) = reply(b"abc", |c| {
            c.write(b"<");
            c.write_input();
            c.write(b">");
        });
        assert_eq!((out.as_slice(), as_is), (&b"<abc>"[..], false));
        let (out, _) = reply(b"abc", |c| {
            c.write_input();
            c.write(b"!");
            c.write_input();
        });
        assert_eq!(out, b"abc!abc");
        let (out, _) = reply(b"abc", |c| {
            c.write_input();
            let _ = c.write_with(2, |buf| {
                buf.copy_from_slice(b"xy");
                Ok(2)
            });
        });
        assert_eq!(out, b"abcxy");
    }

    #[test]
    fn a_published_chunk_is_counted_once_and_reaches_the_other_worker() {
        let polls: Vec<_> = (0..2).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|p| std::sync::Arc::new(mio::Waker::new(p.registry(), Token(7)).unwrap()))
            .collect();
        let mut hubs = Hub::mesh(wakers);
        let (mut out, mut sends) = (Vec::new(), Vec::new());
        let (mut here, mut there) = {
            let mut it = hubs.drain(..);
            (it.next().unwrap(), it.next().unwrap())
        };
        let elsewhere = there.address(Token(9));
        let now = Instant::now();
        let mut ctx = Ctx::new(now, &mut out, &mut sends).with_hub(&mut here);
        let chunk = ctx.publish(b"line\n".to_vec());
        assert!(matches!(chunk, Shared::Cross(_)), "shared across workers");
        ctx.send(Token(1), chunk.clone());
        ctx.send(Token(2), chunk);
        assert_eq!(ctx.fanned_out(), 5, "counted once, for every receiver");
        // One connection here, one on the other worker.
        let mine = ctx.address(Token(3));
        ctx.direct(mine, b"psst\n".to_vec());
        ctx.direct(elsewhere, b"psst\n".to_vec());
        assert_eq!(sends.len(), 3, "two room sends and the direct one here");
        let poll = mio::Poll::new().unwrap();
        here.flush(poll.registry(), now);
        let got = there.take();
        assert!(matches!(&got[0], Remote::Room { chunk, .. } if &chunk[..] == b"line\n"));
        assert!(matches!(&got[1], Remote::Direct { to, .. } if *to == Token(9)));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn the_input_twice_is_copied_twice() {
        let (out, as_is) = reply(b"ab", |c| {
            c.write_input();
            c.write_input();
        });
        assert_eq!((out.as_slice(), as_is), (&b"abab"[..], false));
    }
}
