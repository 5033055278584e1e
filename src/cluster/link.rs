//! One connection to Redis, as the loop drives it: a non-blocking socket
//! registered in the loop's poll like a client's, and a small state
//! machine.
//!
//! ```text
//!  DOWN --retry due--> CONNECTING --writable, connected--> GREETING
//!    ^                     |                                 | AUTH, SELECT (or PING) answered OK
//!    |                     |                                 v
//!    +---- failed: refused, reset, timeout, an error reply,  READY
//!          a reply that is not RESP, too much owed <---------+
//! ```
//!
//! Commands are written as they come (pipelined: none waits for the
//! previous one's reply), and every command sent waits in [`Link::expect`]
//! for its reply, which Redis gives in order: the first reply answers the
//! first command still waiting. A link owes its replies within a bound
//! ([`Link::due`]); one that goes quiet while owing is dropped, so a
//! Redis that accepts and never answers costs a reconnect, not a hang.
//!
//! What a command was for (`W`) is the owner's (`cluster.rs`): the link
//! hands each reply back with it. When the link fails, every command still
//! waiting is handed back too, unanswered, for the owner to send again or
//! to give up.
//!
//! Time is passed in; the socket and the poll are the only I/O.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::resp::{Decoder, Value};
use super::transport::Transport;

/// How long a connect, and the greeting after it, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long Redis may take to answer a command (a blocking `XREAD` adds
/// its own block time).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff: from this, doubling per failure in a row...
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// ...up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a link must stay READY before its failures in a row count
/// from zero again: a Redis that greets well and then breaks each link
/// soon after (a reply of the wrong shape, say) is retried on the backoff
/// like one that refuses, not every 100 ms. A link dropped for a late
/// reply may still count as stable (time spent idle, or a reader's 30 s
/// block, is READY too), but it was up for the reply bound at least
/// before it failed, so it cannot retry in a spin.
pub const STABLE: Duration = Duration::from_secs(10);
/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per visit: a peer that sends without a pause (a reply of a
/// million small elements, garbage) is read and decoded half a MiB at a
/// time, and the loop serves its clients in between.
const READS_PER_VISIT: usize = 8;

/// Where a link is in its life. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No socket; the next attempt is due at `retry`.
    Down { retry: Instant },
    /// A connect in flight, due by `until`.
    Connecting { until: Instant },
    /// Connected; AUTH and SELECT (or a PING) sent, not yet all answered.
    Greeting,
    /// Answering commands.
    Ready,
}

/// What a command in flight was for.
#[derive(Debug)]
pub enum Waiting<W> {
    /// The greeting's commands (AUTH, SELECT, PING): `+OK` or `+PONG`.
    Greeting(&'static str),
    /// The owner's.
    Work(W),
}

/// What happened on a link, for its owner.
#[derive(Debug)]
pub enum Happened<W> {
    /// The greeting was answered: the link is READY.
    Up,
    /// A reply to the owner's command.
    Reply(W, Value),
    /// The link failed and is DOWN, for this reason (a log line's words);
    /// the commands it still owed replies to, oldest first.
    Failed(String, Vec<W>),
}

/// One Redis connection. See the module docs.
#[derive(Debug)]
pub struct Link<W> {
    pub token: Token,
    stage: Stage,
    socket: Option<Transport>,
    /// Encoded commands not yet written, from `written` on.
    out: Vec<u8>,
    written: usize,
    decoder: Decoder,
    expect: VecDeque<Waiting<W>>,
    /// When the oldest reply owed is due (`None`: nothing owed).
    due: Option<Instant>,
    /// Extra time a reply on this link may take (a blocking read's block
    /// time).
    grace: Duration,
    /// Failures in a row, for the backoff.
    pub failures: u32,
    /// Since when the link is READY.
    ready_since: Option<Instant>,
    /// The last visit stopped at [`READS_PER_VISIT`], perhaps with bytes
    /// left that the socket will not announce again: due at once.
    more: Option<Instant>,
    /// What the socket is registered for, to re-register only on change.
    interest: Option<Interest>,
    /// Jitter's state (xorshift).
    jitter: u64,
}

impl<W> Link<W> {
    /// A link that is down, with its first attempt due `now`; its replies
    /// may take `grace` beyond [`REPLY_TIMEOUT`].
    pub fn new(token: Token, seed: u64, grace: Duration, now: Instant) -> Self {
        Self {
            token,
            stage: Stage::Down { retry: now },
            socket: None,
            out: Vec::new(),
            written: 0,
            decoder: Decoder::new(),
            expect: VecDeque::new(),
            due: None,
            grace,
            failures: 0,
            ready_since: None,
            more: None,
            interest: None,
            jitter: seed | 1,
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn is_ready(&self) -> bool {
        self.stage == Stage::Ready
    }

    /// Bytes encoded but not yet taken by the socket.
    pub fn unwritten(&self) -> usize {
        self.out.len() - self.written
    }

    /// Replies still owed.
    pub fn owed(&self) -> usize {
        self.expect.len()
    }

    /// The link's next deadline: the retry, the connect's bound, or the
    /// oldest reply's.
    pub fn deadline(&self) -> Option<Instant> {
        match self.stage {
            Stage::Down { retry } => Some(retry),
            Stage::Connecting { until } => Some(until),
            Stage::Greeting | Stage::Ready => self.due.into_iter().chain(self.more).min(),
        }
    }

    /// Starts a connect to `addr` (non-blocking: it completes when the
    /// socket turns writable). `greeting` are the commands to send first
    /// (AUTH, SELECT), each waiting for `+OK`; with none, a PING.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        tls: &Tls,
        greeting: &[(&'static str, Vec<u8>)],
        registry: &Registry,
        now: Instant,
    ) -> io::Result<()> {
        let mut socket = TcpStream::connect(addr)?;
        let _ = socket.set_nodelay(true);
        registry.register(&mut socket, self.token, Interest::WRITABLE)?;
        self.interest = Some(Interest::WRITABLE);
        self.socket = Some(tls.over(socket)?);
        self.stage = Stage::Connecting {
            until: now + CONNECT_TIMEOUT,
        };
        self.out.clear();
        self.written = 0;
        self.decoder = Decoder::new();
        // The greeting goes first; what the owner sends before READY
        // queues behind it.
        for (what, command) in greeting {
            self.out.extend_from_slice(command);
            self.expect.push_back(Waiting::Greeting(what));
        }
        if greeting.is_empty() {
            super::resp::command(&mut self.out, &[b"PING"]);
            self.expect.push_back(Waiting::Greeting("PING"));
        }
        self.due = Some(now + CONNECT_TIMEOUT);
        Ok(())
    }

    /// Queues a command, waiting for its reply as `what`. Written at the
    /// next [`flush`](Self::flush). On a link that is DOWN it is dropped:
    /// the owner may be handling a reply that came in the same read as
    /// the failure (`[Reply, Failed]`, a reader's `XREAD` answered just
    /// before Redis went), and sends what it needs again at `Up`.
    pub fn send(&mut self, command: &[u8], what: W, now: Instant) {
        if self.socket.is_none() {
            return;
        }
        self.out.extend_from_slice(command);
        if self.expect.is_empty() {
            self.due = Some(now + REPLY_TIMEOUT + self.grace);
        }
        self.expect.push_back(Waiting::Work(what));
    }

    /// The socket is ready: finishes a connect, reads every reply there
    /// is, writes what is owed. Returns what happened, in order.
    pub fn ready(&mut self, registry: &Registry, now: Instant) -> Vec<Happened<W>> {
        let mut happened = Vec::new();
        if self.socket.is_none() {
            return happened;
        }
        if let Stage::Connecting { .. } = self.stage {
            let socket = &self
                .socket
                .as_ref()
                .expect("a socket while connecting")
                .socket;
            match socket.take_error() {
                Ok(Some(e)) | Err(e) => return vec![self.fail(describe(&e), now)],
                Ok(None) => {}
            }
            match socket.peer_addr() {
                Ok(_) => self.stage = Stage::Greeting,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return happened,
                Err(e) => return vec![self.fail(describe(&e), now)],
            }
        }
        if let Err(why) = self.read_replies(&mut happened, now) {
            happened.push(self.fail(why, now));
            return happened;
        }
        if let Err(e) = self.flush(registry) {
            happened.push(self.fail(describe(&e), now));
        }
        happened
    }

    /// True if the last visit stopped at its read budget: the owner
    /// visits again ([`ready`](Self::ready)) when [`deadline`](Self::deadline)
    /// says.
    pub fn has_more(&self) -> bool {
        self.more.is_some() && self.socket.is_some()
    }

    /// Reads until the socket would block, or [`READS_PER_VISIT`] times;
    /// every whole reply is matched to the command it answers. `Err` is
    /// why the link must drop.
    fn read_replies(
        &mut self,
        happened: &mut Vec<Happened<W>>,
        now: Instant,
    ) -> Result<(), String> {
        let mut buf = [0u8; READ_CHUNK];
        self.more = None;
        let mut reads = 0;
        loop {
            if reads == READS_PER_VISIT {
                self.more = Some(now);
                break;
            }
            let socket = self.socket.as_mut().ok_or("no socket")?;
            match socket.read(&mut buf) {
                Ok(0) => return Err("Redis closed the connection".into()),
                Ok(n) => {
                    reads += 1;
                    self.decoder.feed(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(describe(&e)),
            }
            while let Some(value) = self
                .decoder
                .next()
                .map_err(|e| format!("Redis answered what is not RESP: {e}"))?
            {
                self.answered(value, happened, now)?;
            }
        }
        Ok(())
    }

    /// One whole reply: it answers the oldest command waiting.
    fn answered(
        &mut self,
        value: Value,
        happened: &mut Vec<Happened<W>>,
        now: Instant,
    ) -> Result<(), String> {
        let Some(waiting) = self.expect.pop_front() else {
            return Err("Redis answered a command that was not sent".into());
        };
        // The next reply owed is due from now.
        self.due = (!self.expect.is_empty()).then(|| now + REPLY_TIMEOUT + self.grace);
        match waiting {
            Waiting::Greeting(what) => match &value {
                Value::Simple(s) if s == "OK" || s == "PONG" => {
                    if !self
                        .expect
                        .iter()
                        .any(|w| matches!(w, Waiting::Greeting(_)))
                    {
                        self.stage = Stage::Ready;
                        self.ready_since = Some(now);
                        happened.push(Happened::Up);
                    }
                }
                Value::Error(e) => return Err(format!("Redis refused {what}: {e}")),
                Value::Simple(s) => return Err(format!("Redis answered {what} with +{s}")),
                _ => return Err(format!("Redis answered {what} with another type of reply")),
            },
            Waiting::Work(what) => happened.push(Happened::Reply(what, value)),
        }
        Ok(())
    }

    /// Writes what is owed, until the socket would block; then registers
    /// for what the link needs next.
    pub fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        let Some(transport) = self.socket.as_mut() else {
            return Ok(());
        };
        if !matches!(self.stage, Stage::Connecting { .. }) {
            while self.written < self.out.len() {
                match transport.write(&self.out[self.written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
            } else if self.written > READ_CHUNK && self.written * 2 > self.out.len() {
                // Keep the buffer from growing at the front.
                self.out.drain(..self.written);
                self.written = 0;
            }
        }
        // Interest from state, in one place: readable once connected;
        // writable while connecting, or while bytes wait.
        let connecting = matches!(self.stage, Stage::Connecting { .. });
        let owing = self.out.len() > self.written || (!connecting && transport.owes()?);
        let interest = match self.stage {
            Stage::Connecting { .. } => Interest::WRITABLE,
            _ if owing => Interest::READABLE | Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        if self.interest != Some(interest) {
            registry.reregister(&mut transport.socket, self.token, interest)?;
            self.interest = Some(interest);
        }
        Ok(())
    }

    /// Drops the socket: DOWN, the next attempt after a backoff that
    /// doubles with each failure in a row (100 ms to 5 s), less a random
    /// part of up to half, so that instances that lost Redis together do
    /// not all come back in the same millisecond. A link that was READY
    /// for [`STABLE`] starts the count again. Hands back what was owed.
    pub fn fail(&mut self, why: String, now: Instant) -> Happened<W> {
        if self
            .ready_since
            .take()
            .is_some_and(|since| now.saturating_duration_since(since) >= STABLE)
        {
            self.failures = 0;
        }
        self.socket = None;
        self.interest = None;
        self.more = None;
        self.out.clear();
        self.written = 0;
        self.due = None;
        let owed = self
            .expect
            .drain(..)
            .filter_map(|w| match w {
                Waiting::Work(w) => Some(w),
                Waiting::Greeting(_) => None,
            })
            .collect();
        let wait = self.backoff();
        self.failures = self.failures.saturating_add(1);
        self.stage = Stage::Down { retry: now + wait };
        Happened::Failed(why, owed)
    }

    /// The wait before the next attempt.
    fn backoff(&mut self) -> Duration {
        let full = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        // xorshift64: jitter need not be good, only differ per instance.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let half = full / 2;
        // In whole thousandths: no floating point (its formatting and
        // conversions are code this binary does not otherwise need).
        half + half * (self.jitter % 1000) as u32 / 1000
    }

    /// A deadline passed (`now`): a connect or a reply that is late fails
    /// the link. (A retry that is due is the owner's to start.)
    pub fn expire(&mut self, now: Instant) -> Option<Happened<W>> {
        match self.stage {
            Stage::Down { .. } => None,
            Stage::Connecting { until } if now >= until => {
                Some(self.fail("no connection within 5 s".into(), now))
            }
            Stage::Greeting | Stage::Ready if self.due.is_some_and(|d| now >= d) => {
                let within = REPLY_TIMEOUT + self.grace;
                Some(self.fail(
                    format!("Redis did not answer within {} s", within.as_secs()),
                    now,
                ))
            }
            _ => None,
        }
    }

    /// True when the link is down and its retry is due.
    pub fn retry_due(&self, now: Instant) -> bool {
        matches!(self.stage, Stage::Down { retry } if now >= retry)
    }

    /// Puts the next attempt off to `retry` (while a name is resolved, or
    /// after a connect that could not even start).
    pub fn wait_until(&mut self, retry: Instant) {
        self.stage = Stage::Down { retry };
    }
}

/// How a link speaks to Redis: plain, or TLS with this configuration to
/// this name (`rediss://`).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    #[cfg(feature = "tls")]
    pub config: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl Tls {
    /// `socket`, with TLS over it if configured.
    fn over(&self, socket: TcpStream) -> io::Result<Transport> {
        #[cfg(feature = "tls")]
        if let Some((config, name)) = &self.config {
            let session = rustls::ClientConnection::new(config.clone(), name.clone())
                .map_err(io::Error::other)?;
            return Ok(Transport::tls(socket, session));
        }
        Ok(Transport::plain(socket))
    }
}

/// An I/O error in a log line's words.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by Redis".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_100_ms_to_5_s_with_jitter_below_it() {
        let now = Instant::now();
        let mut link: Link<()> = Link::new(Token(1), 42, Duration::ZERO, now);
        let mut waits = Vec::new();
        for _ in 0..10 {
            let Happened::Failed(_, owed) = link.fail("x".into(), now) else {
                unreachable!()
            };
            assert!(owed.is_empty());
            let Stage::Down { retry } = link.stage() else {
                panic!("down after a failure")
            };
            waits.push(retry - now);
        }
        for (i, wait) in waits.iter().enumerate() {
            let full = BACKOFF_FIRST.saturating_mul(1 << i).min(BACKOFF_MAX);
            assert!(
                *wait >= full / 2 && *wait <= full,
                "{i}: {wait:?} for {full:?}"
            );
        }
        assert!(waits[9] >= BACKOFF_MAX / 2, "capped at 5 s");
    }

    #[test]
    fn a_link_that_breaks_soon_after_its_greeting_keeps_backing_off() {
        let now = Instant::now();
        let mut link: Link<()> = Link::new(Token(1), 42, Duration::ZERO, now);
        for _ in 0..4 {
            link.fail("x".into(), now);
        }
        let mut happened = Vec::new();
        // Greeted, then broken within STABLE: the count goes on, and so
        // does the backoff's growth.
        link.expect.push_back(Waiting::Greeting("PING"));
        let pong = || Value::Simple("PONG".into());
        link.answered(pong(), &mut happened, now).unwrap();
        assert!(link.is_ready());
        link.fail("x".into(), now + Duration::from_secs(1));
        assert_eq!(link.failures, 5);
        // READY for STABLE before it broke: counted from zero again.
        link.expect.push_back(Waiting::Greeting("PING"));
        let later = now + Duration::from_secs(2);
        link.answered(pong(), &mut happened, later).unwrap();
        link.fail("x".into(), later + STABLE);
        assert_eq!(link.failures, 1);
    }

    #[test]
    fn a_command_for_a_link_that_is_down_is_dropped() {
        let now = Instant::now();
        let mut link: Link<u8> = Link::new(Token(1), 42, Duration::ZERO, now);
        link.send(b"*1\r\n$4\r\nPING\r\n", 7, now);
        assert_eq!(link.unwritten(), 0);
        assert_eq!(link.deadline(), Some(now), "still the first attempt's");
        let Happened::Failed(_, owed) = link.fail("x".into(), now) else {
            unreachable!()
        };
        assert!(owed.is_empty(), "{owed:?}");
    }
}
