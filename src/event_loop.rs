//! The readiness loop: one `mio::Poll`, the listener, the signal pipe, the
//! table of connections, the timers, and the order in which they are served.
//!
//! One turn of [`Server::run`]:
//!
//! 1. sleep in `epoll_wait` until an event, or until the nearest deadline
//!    (zero if work was left over from the last turn, forever if nothing is
//!    scheduled: an idle server makes no wakeups);
//! 2. dispatch each event: the listener accepts, the signal pipe starts the
//!    shutdown, a connection gets one visit ([`Server::drive`]: one read,
//!    a bounded write) unless it is already queued or the turn's budget is
//!    spent;
//! 3. serve the ready queue: connections with work left, round-robin, one
//!    visit each, until the turn has moved `TURN_BUDGET` bytes (fairness:
//!    a small request never waits behind a megabyte of someone's stream);
//! 4. fire the expired timers (idle timeouts, close bounds, stats, drain,
//!    pacing, metrics);
//! 5. deliver what protocols sent from one connection to others, one
//!    vectored write per receiver per pass (a departure's own announcement
//!    makes a second pass); relays then send what the turn said to other
//!    workers (`Protocol::end_turn`, the hub);
//! 6. reap the connections closed during the turn. Removal waits until here,
//!    a safe point, so nothing is freed while an event batch may still name
//!    it, and `conn_table.rs` makes stale tokens harmless besides;
//! 7. end the turn: re-arm a quiet stats reporter whose figures moved, post
//!    this worker's figures (several workers), give relays a fresh budget.
//!
//! Besides connections, an event may be for the listener, the signal pipe,
//! the hub's waker (other workers sent messages: [`Protocol::remote`]) or
//! the metrics listener and its scrapes (`metrics.rs`).
//!
//! This file decides *when* things happen. What a read or write means, and
//! which interest a socket needs, is `connection.rs`; what bytes to answer
//! is the protocol's (`protocol/`); the deadline heap is `timer.rs`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::access_log::{self, AccessLog};
use crate::config::ServerOptions;
use crate::conn_table::{is_reserved, reserved, ConnTable};
use crate::connection::{is_disconnect, Connection, ReadOutcome, Refusal, Stage, WriteOutcome};
use crate::edge::{Entry, Gate, HeaderStep, PerIp};
use crate::logging;
use crate::logging::{held_note, Throttle, Verdict};
use crate::metrics::{self, Figures, Metrics};
use crate::pacing::{Pacing, Standing};
use crate::protocol::seam::DynProtocol;
use crate::protocol::{earliest, CloseReason, Ctx, Direct, Shared, Step};
use crate::stats::{Reporter, Stats};
use crate::sys::{self, ListenError};
use crate::timer::Timers;
use crate::workers::Worker;

/// The listener's token; no connection can have it.
const LISTENER: Token = reserved(0);
/// The tokens of further listeners (sockets systemd passed beside the
/// first): `reserved(MORE_LISTENERS + i)`.
const MORE_LISTENERS: usize = 8;
/// At most this many listeners in one loop.
const MAX_LISTENERS: usize = 64;

/// The token of listener `i`.
fn listener_token(i: usize) -> Token {
    if i == 0 {
        LISTENER
    } else {
        reserved(MORE_LISTENERS + i)
    }
}

/// True if `token` is a listener's.
fn is_listener(token: Token) -> bool {
    (1..MAX_LISTENERS).any(|i| listener_token(i) == token)
}
/// The signal pipe's token.
const SIGNALS: Token = reserved(1);
/// The hub's waker: other workers sent messages (`hub.rs`).
const HUB: Token = reserved(2);

/// Size of the one read buffer all connections share.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Reads per visit to a connection before the others get their go (64 KiB).
const READS_PER_VISIT: usize = 1;
/// Bytes written to one connection per visit, at most (about).
const WRITE_PER_VISIT: usize = 256 * 1024;
/// Bytes one visit may send with `sendfile` (`sendfile.rs`), at most. A
/// byte sent that way costs about a third of the CPU of one read and
/// written (the files section of docs/benchmarks.md), so a visit may move
/// four times as many in about the same time; fewer, larger calls are what
/// bring the file server to the floor's CPU per GiB.
const DIRECT_PER_VISIT: usize = 1024 * 1024;
/// Pieces a producing protocol (the file server) may generate per visit:
/// a 64 KiB chunk read and written, or one `sendfile`.
const PRODUCE_PER_VISIT: usize = 1;
/// Bytes read and written in one turn, over all connections, before the
/// loop polls again: bounds how long any event waits for its turn.
const TURN_BUDGET: usize = 256 * 1024;
/// The least a visit counts against the turn's budget, so that visits that
/// move few bytes (a handshake step, a held sender) still end a turn.
const VISIT_COST: usize = 128;
/// Accepts per turn before existing connections get their go.
const ACCEPTS_PER_TURN: usize = 256;
/// Events taken from the kernel per `epoll_wait`.
const EVENTS_PER_TURN: usize = 1024;
/// How long a connection the server is closing may take to flush and
/// linger, when no shutdown drain bounds it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a connection whose TLS session failed may take to send its
/// alert and see it acknowledged before it is closed.
#[cfg(feature = "tls")]
const ALERT_GRACE: Duration = Duration::from_secs(1);
/// How often a lingering connection checks whether the peer has
/// acknowledged everything, after which it may close.
const LINGER_CHECK: Duration = Duration::from_millis(100);
/// How soon to retry accepting after an accept error.
const ACCEPT_RETRY: Duration = Duration::from_millis(250);
/// With several workers, how soon a sender held by another worker's
/// receivers is looked at again.
const RECHECK: Duration = Duration::from_millis(5);
/// With several workers, how stale the metrics' view of another worker
/// may be.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// How often a peer-triggered line (a slow consumer) may be logged when
/// there is no stats interval to go by.
const THROTTLE_DEFAULT: Duration = Duration::from_secs(10);
/// The staging buffer is trimmed back to this after a large reply.
const STAGING_KEEP: usize = 64 * 1024;

/// Sent to a client turned away at `--max-connections`.
pub const SERVER_FULL: &[u8] = b"Server is full. Try again later.\n";
/// Sent to a client over `--max-per-ip`.
pub const TOO_MANY: &[u8] = b"Too many connections from your address. Try again later.\n";
/// Sent to a client before the idle timeout closes it.
pub const IDLE_TIMEOUT: &[u8] = b"Connection timeout\n";

/// Whose deadline a timer entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKey {
    /// A connection's idle timeout or close bound (`Connection::deadline`).
    Conn(Token),
    /// The periodic stats line.
    Stats,
    /// The end of the shutdown drain.
    Drain,
    /// Try accepting again after an accept error.
    AcceptRetry,
    /// A receiver that fell behind a relay may stop holding senders back.
    Pacing,
    /// A metrics client's request is due.
    Metrics(Token),
    /// Post this worker's figures for the metrics (several workers).
    Publish,
    /// Look again at senders held by another worker's receivers.
    Recheck,
    /// Tell systemd's watchdog the loop is turning.
    Watchdog,
}

impl TimerKey {
    /// How many entries the loop's own keys (not connections') can have
    /// live at once.
    const LOOP_KEYS: usize = 7 + metrics::MAX_CLIENTS;
}

/// Whether, and how eagerly, the listener is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    /// Accept when the listener reports readiness.
    OnEvent,
    /// The accept budget ran out with clients still waiting: accept again
    /// next turn without waiting for an event (edge-triggered: none comes).
    Backlogged,
    /// An accept failed (out of descriptors, say): wait for a connection to
    /// close or the retry timer, rather than spin on the same error.
    Paused,
    /// Shutting down: the listener is closed.
    Stopped,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A signal, then every connection drained or the drain timeout passed.
    Drained,
    /// A second signal during the drain: stopped at once.
    Aborted,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Listen(ListenError),
    Io(&'static str, io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Listen(e) => e.fmt(f),
            StartError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

/// The server: the poll and everything it serves. See the module docs.
pub struct Server {
    poll: Poll,
    /// The listening sockets (one but under socket activation); emptied
    /// when a shutdown begins.
    listeners: Vec<TcpListener>,
    local_addr: SocketAddr,
    signals: Signals,
    conns: ConnTable<Connection>,
    timers: Timers<TimerKey>,
    /// The protocol and its sessions, behind the one seam that is crossed
    /// dynamically (`protocol/seam.rs`): the loop is compiled once.
    protocol: Box<dyn DynProtocol + Send>,
    /// The protocol sends what one client says to others (a relay): the
    /// loop paces senders (`pacing.rs`) and delivers between workers.
    fans_out: bool,
    /// The protocol generates output of its own (the file server).
    produces: bool,
    opts: ServerOptions,
    stats: Stats,
    /// When to write the periodic stats line; `None` with
    /// `--stats-interval 0`.
    reporter: Option<Reporter>,
    accepting: Accepting,
    /// Which listener to accept from first this turn.
    accept_from: usize,
    /// An accept error was logged and no accept has succeeded since.
    accept_trouble: bool,
    /// Set when the shutdown drain began: its deadline.
    draining: Option<Instant>,
    aborted: bool,
    /// The one read buffer, shared by every connection.
    scratch: Box<[u8]>,
    /// What the protocol wrote for the connection being served.
    staging: Vec<u8>,
    /// What protocols sent to other connections this turn.
    sends: Vec<(Token, Shared)>,
    /// Connections with work left (input waiting, bytes owed to a writable
    /// socket, a file to produce), served round-robin, one visit each.
    ready: VecDeque<Token>,
    /// Bytes read and written so far this turn, against `TURN_BUDGET`.
    spent: usize,
    /// Relay senders to read next turn, once a fresh fan-out budget is
    /// there (flagged `queued`, so each is here once).
    deferred: Vec<Token>,
    /// Connections closed this turn, to be dropped at its end.
    closed: Vec<Token>,
    /// Relays: senders paced to the receivers that keep up.
    pacing: Pacing,
    /// When the pacing timer is armed for; other entries are stale.
    pacing_due: Option<Instant>,
    /// With several workers: whether this worker last told the others it
    /// holds senders back; the senders held because another worker does,
    /// and whether the timer to look at them again is armed.
    holding_posted: bool,
    held_elsewhere: Vec<Token>,
    recheck_armed: bool,
    /// `--access-log`: one line per connection when it ends; `None` when
    /// off, and then it costs nothing.
    access: Option<AccessLog>,
    /// The slow-consumer line, throttled: any number of clients can trigger
    /// it at once.
    slow_log: Throttle,
    /// Connections in the table only to be told "Server is full" (through
    /// TLS, which needs a handshake first). Not counted as active.
    rejecting: usize,
    /// Connections the server is closing (a graceful close began): no
    /// longer counted as active.
    closing: usize,
    /// Who may connect (`--allow`, `--deny`, `--max-per-ip`,
    /// `--proxy-protocol`); `None` when no such option is on.
    gate: Option<Gate>,
    /// `--metrics`: the listener and its scrapes, in this loop (the only
    /// one, or worker 0).
    metrics: Option<Metrics>,
    /// Turns of the loop, and the time spent in them (outside
    /// `epoll_wait`), for the metrics.
    turns: u64,
    busy: Duration,
    /// With several workers: when this loop's figures may next be posted,
    /// and whether a timer is armed to post them.
    publish_next: Instant,
    publish_armed: bool,
    /// The figures last posted (counters and active connections).
    posted: Option<(Stats, usize)>,
    /// One of several workers: its link to the others (`workers.rs`).
    /// `None` with one worker, which then shares nothing.
    worker: Option<Worker>,
    /// The TLS configuration, on a TLS listener.
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The files it came from, for SIGHUP.
    #[cfg(feature = "tls")]
    tls_files: Option<crate::config::ServerTls>,
}

/// What a server needs from the OS before it can run, opened up front so
/// that every start error is reported before any worker starts: the poll,
/// the listener registered in it, and the signal pipe. `Send`, so that the
/// main thread can open each worker's and hand them over.
pub struct Parts {
    poll: Poll,
    listeners: Vec<TcpListener>,
    local_addr: SocketAddr,
    signals: Signals,
}

impl Parts {
    /// A poll with `listener` and a signal pipe registered in it.
    pub fn open(mut listener: TcpListener) -> Result<Self, StartError> {
        let poll = Poll::new().map_err(|e| StartError::Io("cannot create the poll", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| StartError::Io("cannot read the listening address", e))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| StartError::Io("cannot register the listener", e))?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| StartError::Io("cannot install signal handlers", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| StartError::Io("cannot register the signal pipe", e))?;
        Ok(Self {
            poll,
            listeners: vec![listener],
            local_addr,
            signals,
        })
    }

    /// Another listener, served like the first (a second socket systemd
    /// passed: IPv4 and IPv6, say). Returns its address.
    pub fn add_listener(&mut self, mut listener: TcpListener) -> Result<SocketAddr, StartError> {
        let i = self.listeners.len();
        if i >= MAX_LISTENERS {
            return Err(StartError::Io(
                "too many listening sockets",
                io::Error::other(format!("at most {MAX_LISTENERS}")),
            ));
        }
        self.poll
            .registry()
            .register(&mut listener, listener_token(i), Interest::READABLE)
            .map_err(|e| StartError::Io("cannot register a listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io("cannot read the listening address", e))?;
        self.listeners.push(listener);
        Ok(addr)
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A waker for this poll, for the hub: other workers use it to say
    /// that they sent this one messages.
    pub fn waker(&self) -> Result<std::sync::Arc<mio::Waker>, StartError> {
        mio::Waker::new(self.poll.registry(), HUB)
            .map(std::sync::Arc::new)
            .map_err(|e| StartError::Io("cannot create the hub's waker", e))
    }
}

/// At most this many turned-away TLS clients wait for their handshake at
/// once; beyond it they are closed without a word.
const MAX_REJECTING: usize = 64;

impl Server {
    /// Opens the listener and the signal pipe. Nothing is served until
    /// [`run`](Self::run). One worker: the whole server on this thread.
    pub fn bind(
        opts: ServerOptions,
        protocol: Box<dyn DynProtocol + Send>,
    ) -> Result<Self, StartError> {
        sys::raise_fd_limit(opts.max_connections);
        let listener = sys::listen(opts.listen).map_err(StartError::Listen)?;
        let parts = Parts::open(listener)?;
        Ok(Self::new(parts, opts, protocol))
    }

    /// A server on prepared [`Parts`] (a worker's, or `bind`'s).
    pub fn new(parts: Parts, opts: ServerOptions, protocol: Box<dyn DynProtocol + Send>) -> Self {
        let Parts {
            poll,
            listeners,
            local_addr,
            signals,
        } = parts;
        let write_limit = opts.write_limit;
        let access = opts.access_log;
        let edge = opts.edge.clone();
        Self {
            poll,
            listeners,
            local_addr,
            signals,
            conns: ConnTable::new(),
            timers: Timers::new(),
            fans_out: protocol.fans_out(),
            produces: protocol.produces(),
            protocol,
            opts,
            stats: Stats::default(),
            reporter: None,
            accepting: Accepting::OnEvent,
            accept_trouble: false,
            accept_from: 0,
            draining: None,
            aborted: false,
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            staging: Vec::new(),
            sends: Vec::new(),
            ready: VecDeque::new(),
            spent: 0,
            deferred: Vec::new(),
            closed: Vec::new(),
            pacing: Pacing::new(write_limit),
            pacing_due: None,
            holding_posted: false,
            held_elsewhere: Vec::new(),
            recheck_armed: false,
            access: access.then(AccessLog::new),
            slow_log: Throttle::default(),
            rejecting: 0,
            closing: 0,
            worker: None,
            metrics: None,
            turns: 0,
            busy: Duration::ZERO,
            publish_next: Instant::now(),
            publish_armed: false,
            posted: None,
            gate: Gate::new(&edge, PerIp::shared(&edge)),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_files: None,
        }
    }

    /// Serves `--metrics` on `listener` from this loop.
    pub fn with_metrics(mut self, listener: TcpListener) -> Result<Self, StartError> {
        let metrics = Metrics::new(listener, self.poll.registry())
            .map_err(|e| StartError::Io("cannot register the metrics listener", e))?;
        self.metrics = Some(metrics);
        Ok(self)
    }

    /// Shares the `--max-per-ip` count with the other workers (`per_ip` is
    /// the whole server's).
    pub fn with_per_ip(mut self, per_ip: Option<PerIp>) -> Self {
        if let Some(gate) = self.gate.as_mut() {
            gate.share_per_ip(per_ip);
        }
        self
    }

    /// Makes this server one of several workers (`workers.rs`): the
    /// connection limit and the stats line become the whole server's.
    pub fn in_worker(mut self, worker: Worker) -> Self {
        self.worker = Some(worker);
        self
    }

    /// Serves TLS with this configuration: every connection starts with a
    /// handshake.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The files the TLS configuration came from, for SIGHUP to reload.
    #[cfg(feature = "tls")]
    pub fn with_tls_files(mut self, files: crate::config::ServerTls) -> Self {
        self.tls_files = Some(files);
        self
    }

    /// True when the listener speaks TLS.
    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Connections being served: not those turned away, nor those the
    /// server is closing (flushing their last words, lingering for the
    /// peer's FIN), so that a client that reconnects at once after a
    /// timeout finds its slot free. Their descriptors still count against
    /// the process's limit, which `sys.rs` accounts for.
    fn active(&self) -> usize {
        self.conns.len() - self.rejecting - self.closing
    }

    /// The address actually listened on (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until a signal and the drain that follows. Returns how it
    /// ended and the final counters.
    pub fn run(mut self) -> io::Result<(Exit, Stats)> {
        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        // The service manager's watchdog, fed from the loop's own timers
        // (by one loop, with several): a loop that stops turning is
        // restarted.
        if let Some(every) = crate::systemd::watchdog() {
            if self.worker.as_ref().is_none_or(|w| w.id == 0) {
                self.timers
                    .schedule(Instant::now() + every, TimerKey::Watchdog);
            }
        }
        if let Some(every) = self.opts.stats_interval {
            let reporter = Reporter::new(every, Instant::now());
            if let Some(due) = reporter.due() {
                self.timers.schedule(due, TimerKey::Stats);
            }
            self.reporter = Some(reporter);
        }
        let mut woke = Instant::now();
        while !self.finished() {
            let asleep = Instant::now();
            // The loop's own load: time from waking to sleeping again.
            self.busy += asleep.saturating_duration_since(woke);
            let timeout = self.poll_timeout(asleep);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            woke = now;
            self.turns += 1;
            self.spent = 0;
            for event in events.iter() {
                let token = event.token();
                // Nearly every event is a connection's: one test tells.
                if !is_reserved(token) {
                    self.connection_event(token, event, now);
                    continue;
                }
                match token {
                    LISTENER => self.accept(now),
                    SIGNALS => self.signal(now),
                    HUB => self.remote(now),
                    token if Metrics::owns(token) => self.scrape(token, now),
                    token if is_listener(token) => self.accept(now),
                    _ => {}
                }
            }
            self.serve_ready(now);
            if self.accepting == Accepting::Backlogged {
                self.accept(now);
            }
            self.expire(now);
            self.deliver(now);
            if self.fans_out {
                // What this turn said to other workers leaves now, once.
                self.protocol.end_turn();
            }
            self.reap();
            self.wake_reporter(now);
            if self.worker.is_some() {
                self.publish(now);
            }
            if self.fans_out {
                self.pacing.new_turn();
                // Senders that waited for this turn's budget to be spent.
                self.ready.extend(self.deferred.drain(..));
            }
        }
        self.stats.log_dropped = logging::dropped();
        match &self.worker {
            None => log::info!(
                "stats: {} (final)",
                self.stats.line(self.active(), self.is_tls())
            ),
            // The supervisor writes the whole server's final line.
            Some(worker) => worker.report(&self.stats, self.active()),
        }
        let exit = if self.aborted {
            Exit::Aborted
        } else {
            Exit::Drained
        };
        Ok((exit, self.stats))
    }

    /// True once the loop has nothing left to do.
    fn finished(&self) -> bool {
        self.aborted || (self.draining.is_some() && self.conns.is_empty())
    }

    /// Zero if work is waiting that no event will announce; otherwise until
    /// the nearest deadline, or forever.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() || self.accepting == Accepting::Backlogged {
            return Some(Duration::ZERO);
        }
        self.timers.poll_timeout(now)
    }

    // ----- accepting ------------------------------------------------------

    /// Accepts waiting clients, up to a budget per turn.
    fn accept(&mut self, now: Instant) {
        if !matches!(self.accepting, Accepting::OnEvent | Accepting::Backlogged) {
            return;
        }
        // Every listener in turn, within one budget for the turn (almost
        // always there is one listener).
        let mut budget = ACCEPTS_PER_TURN;
        let mut backlogged = false;
        let n = self.listeners.len();
        // A different listener first each turn, so that none starves.
        self.accept_from = (self.accept_from + 1) % n.max(1);
        let start = self.accept_from;
        for i in (0..n).map(|k| (k + start) % n) {
            while budget > 0 {
                let Some(listener) = self.listeners.get(i) else {
                    return;
                };
                budget -= 1;
                match listener.accept() {
                    Ok((stream, peer)) => {
                        if self.accept_trouble {
                            self.accept_trouble = false;
                            log::info!("accepting connections again");
                        }
                        self.admit(stream, peer, now);
                    }
                    // Every client waiting here is accepted.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // One client gave up between SYN and accept: next.
                    Err(e) if sys::is_client_abort(&e) => {
                        log::debug!("accept: client aborted: {e}");
                    }
                    Err(e) => {
                        self.pause_accepting(&e, now);
                        return;
                    }
                }
            }
            backlogged |= budget == 0;
        }
        self.accepting = if backlogged {
            Accepting::Backlogged
        } else {
            Accepting::OnEvent
        };
    }

    /// Stops accepting after an error that would recur at once, warning once
    /// per episode. Accepting resumes when a connection closes (a descriptor
    /// is free) or on the retry timer (another process freed one).
    fn pause_accepting(&mut self, e: &io::Error, now: Instant) {
        if !self.accept_trouble {
            self.accept_trouble = true;
            if sys::is_resource_exhaustion(e) {
                log::warn!(
                    "cannot accept: {e}; serving the {} open connections, \
                     new clients wait until a descriptor frees",
                    self.conns.len()
                );
            } else {
                log::warn!("cannot accept: {e}; retrying");
            }
        }
        self.accepting = Accepting::Paused;
        self.timers
            .schedule(now + ACCEPT_RETRY, TimerKey::AcceptRetry);
    }

    /// Takes in one accepted client, or turns it away if the server is full.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        // One worker counts its own connections; several share one count,
        // touched here and when a connection starts to close.
        let full = match &self.worker {
            None => self.active() >= self.opts.max_connections,
            Some(worker) => !worker.slots.take(),
        };
        if full {
            self.stats.rejected += 1;
            log::debug!("rejected {peer}: server full");
            // Plain TCP: say it and go. TLS: the words must wait for a
            // handshake, so the client gets a bounded place in the table.
            if !self.is_tls() || self.rejecting >= MAX_REJECTING {
                if self.access.is_some() {
                    log::info!("{}", access_log::server_full(peer));
                }
                reject(stream);
                return;
            }
        }
        // Replies go out as soon as they are written, not after Nagle's
        // delay: each write here is already a whole batch.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        let token = self
            .conns
            .insert_with(|token, _| Connection::new(stream, token, now));
        if let Some(access) = self.access.as_mut() {
            access.open(token, peer, now);
        }
        if full {
            self.rejecting += 1;
            if let Some(conn) = self.conns.get_mut(token) {
                conn.refusing = Some(Refusal::ServerFull);
            }
        } else {
            self.stats.accepted += 1;
            log::debug!("conn #{} from {peer}", token.0 >> 32);
            // Who may connect (edge.rs), when any such option is on.
            if let Some(gate) = self.gate.as_mut() {
                let entry = gate.at_accept(token, peer);
                let until = now + self.opts.handshake_timeout;
                if !self.gate_rules(token, entry, until, &[], now) {
                    return;
                }
            }
        }
        self.begin(token, now + self.opts.handshake_timeout, &[], now);
    }

    /// Acts on the gate's word about a connection. Returns true if it goes
    /// on to be served; otherwise it has been closed, turned away, or (its
    /// PROXY header still to come) set to wait for the header until `until`.
    /// `first` are the client's first bytes, if some came with its header.
    fn gate_rules(
        &mut self,
        token: Token,
        entry: Entry,
        until: Instant,
        first: &[u8],
        now: Instant,
    ) -> bool {
        match entry {
            Entry::Go => return true,
            // Nothing read, nothing sent: a scan must learn nothing, and
            // must not flood the log.
            Entry::Refuse => {
                self.stats.denied += 1;
                log::debug!("conn #{}: denied", token.0 >> 32);
                self.close(token, CloseReason::Denied);
            }
            Entry::TooMany => {
                self.stats.per_ip_rejected += 1;
                log::debug!("conn #{}: too many from its address", token.0 >> 32);
                self.turn_away(token, until, first, now);
            }
            Entry::WaitHeader => {
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.set_stage(Stage::Header { until });
                }
                self.settle(token, now);
            }
        }
        false
    }

    /// Tells a client over `--max-per-ip` so, the way `Server is full` is
    /// told on this listener (through TLS, after a handshake, on a TLS
    /// one), and closes it. It no longer counts as active.
    fn turn_away(&mut self, token: Token, until: Instant, first: &[u8], now: Instant) {
        let tls = self.is_tls();
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if tls {
            if self.rejecting >= MAX_REJECTING {
                self.close(token, CloseReason::TooManyFromAddress);
                return;
            }
            conn.refusing = Some(Refusal::TooMany);
            self.rejecting += 1;
            if let Some(worker) = &self.worker {
                worker.slots.free();
            }
            // The handshake (its first bytes may have come with the
            // header), then the words.
            self.begin(token, until, first, now);
            return;
        }
        conn.set_stage(Stage::Open);
        self.staging.extend_from_slice(TOO_MANY);
        self.emit(token, now);
        self.begin_close(
            token,
            CloseReason::TooManyFromAddress,
            Some(now + CLOSE_GRACE),
        );
        self.settle(token, now);
    }

    /// Starts serving a connection: the TLS handshake (due by `until`) on a
    /// TLS listener, else the protocol at once. `first` are the client's
    /// first bytes if some were already read (after a PROXY header).
    fn begin(&mut self, token: Token, until: Instant, first: &[u8], now: Instant) {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            match crate::tls::ServerSession::new(config.clone()) {
                // The protocol meets the connection when the handshake is
                // done (`established`).
                Ok(session) => match conn.start_tls(session, until, first) {
                    Ok(()) => self.settle(token, now),
                    Err(e) => self.refused(token, &e, now),
                },
                Err(e) => {
                    log::warn!("conn #{}: cannot start TLS: {e}", conn.number());
                    self.close(token, CloseReason::TlsFailure);
                }
            }
            return;
        }
        // Plain TCP has no handshake to bound.
        let _ = until;
        self.established(token, now);
        if !first.is_empty() {
            self.first_input(token, first, now);
        }
        // Registers the socket; input already waiting is reported by the
        // registration itself.
        self.settle(token, now);
    }

    /// Hands the protocol bytes read before it met the connection (those
    /// that followed a PROXY header in the same read).
    fn first_input(&mut self, token: Token, input: &[u8], now: Instant) {
        if !self
            .conns
            .get(token)
            .is_some_and(|c| c.stage() == Stage::Open)
        {
            return;
        }
        self.stats.bytes_in += input.len() as u64;
        let mut ctx = Ctx::for_input(now, input, &mut self.staging, &mut self.sends);
        let step = self.protocol.data(token, input, &mut ctx);
        if self.fans_out {
            self.pacing.spend(ctx.fanned_out());
        }
        if ctx.reply_is_input() {
            self.staging.extend_from_slice(input);
        }
        if let Some(access) = self.access.as_mut() {
            access.count(token, input.len() as u64, 0);
        }
        self.emit(token, now);
        if step != Step::Continue {
            let reason = match step {
                Step::Abort => CloseReason::Truncated,
                _ => CloseReason::Protocol,
            };
            self.begin_close(token, reason, Some(now + CLOSE_GRACE));
        }
    }

    /// A visit to a connection whose PROXY header is still arriving: one
    /// read, fed to the gate; once the header is whole, the gate rules on
    /// the client it names, and the connection starts (its TLS handshake,
    /// under the same deadline, or its protocol).
    fn read_header(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let (Some(gate), Stage::Header { until }) = (self.gate.as_mut(), conn.stage()) else {
            return;
        };
        let outcome = conn.read(&mut self.scratch, now);
        let n = match outcome {
            ReadOutcome::Data(n) => n,
            ReadOutcome::Drained => return,
            ReadOutcome::Eof => {
                // A balancer's TCP health check connects and closes without
                // a byte: nobody's error. Part of a header, then a close, is.
                if gate.header_started(token) {
                    self.stats.proxy_errors += 1;
                    self.close(token, CloseReason::ProxyError);
                } else {
                    self.close(token, CloseReason::Done);
                }
                return;
            }
            ReadOutcome::Failed(e) => return self.fail(token, &e),
            #[cfg(feature = "tls")]
            ReadOutcome::Refused(e) => return self.refused(token, &e, now),
        };
        // The balancer's address, for LOCAL and UNKNOWN. A peer gone since
        // (a reset right after its header) has nothing left to serve.
        let Some(peer) = conn.peer_addr() else {
            return self.close(token, CloseReason::Reset);
        };
        match gate.header(token, &self.scratch[..n], peer) {
            // More of it later (read_input queues what is waiting now).
            HeaderStep::Partial => {}
            HeaderStep::Bad(why) => {
                self.stats.proxy_errors += 1;
                log::debug!("conn #{} {peer}: {why}", token.0 >> 32);
                self.close(token, CloseReason::ProxyError);
            }
            HeaderStep::Done {
                entry,
                client,
                rest,
            } => {
                log::debug!("conn #{}: PROXY header: client {client}", token.0 >> 32);
                if let Some(access) = self.access.as_mut() {
                    access.peer(token, client);
                }
                if self.gate_rules(token, entry, until, &rest, now) {
                    self.begin(token, until, &rest, now);
                }
            }
        }
    }

    /// The connection is ready for its protocol: at once on plain TCP,
    /// after the handshake on TLS. A turned-away client is told so instead.
    fn established(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.set_stage(Stage::Open);
        // The handshake had its own clock; idleness starts now. The entry
        // armed for the handshake (or the PROXY header) may be later than
        // the idle deadline: forget it, so that `settle` arms the right one
        // (the old entry is then stale, and ignored when it fires).
        conn.last_activity = now;
        conn.timer_at = None;
        #[cfg(feature = "tls")]
        if let Some(summary) = conn.tls_summary() {
            log::debug!("conn #{}: TLS established: {summary}", conn.number());
            match conn.tls_resumed() {
                Some(true) => self.stats.tls_resumed += 1,
                Some(false) => self.stats.tls_full += 1,
                None => {}
            }
        }
        if let Some(refusal) = conn.refusing {
            let (words, reason) = match refusal {
                Refusal::TooMany => (TOO_MANY, CloseReason::TooManyFromAddress),
                Refusal::ServerFull => (SERVER_FULL, CloseReason::ServerFull),
            };
            self.staging.extend_from_slice(words);
            self.emit(token, now);
            self.begin_close(token, reason, Some(now + CLOSE_GRACE));
            return;
        }
        let mut ctx = Ctx::new(now, &mut self.staging, &mut self.sends);
        self.protocol.open(token, &mut ctx);
        self.emit(token, now);
    }

    // ----- serving one connection -------------------------------------------

    /// Other workers sent messages: the protocol delivers them to this
    /// worker's connections (queued for `deliver`, like local sends).
    fn remote(&mut self, now: Instant) {
        let mut ctx = Ctx::new(now, &mut self.staging, &mut self.sends);
        self.protocol.remote(&mut ctx);
        // Nothing is being served: no connection's own output here.
        self.staging.clear();
    }

    /// Records an event for a connection, then serves it.
    fn connection_event(&mut self, token: Token, event: &mio::event::Event, now: Instant) {
        // Gone, or closed earlier in this batch: the event is stale.
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.stage(), Stage::Closed) {
            return;
        }
        conn.on_event(
            event.is_readable(),
            event.is_read_closed() || event.is_error(),
            event.is_writable(),
        );
        // Already waiting its turn: the event only refreshed what it may do.
        if conn.queued {
            return;
        }
        if self.spent >= TURN_BUDGET {
            self.enqueue(token);
            return;
        }
        self.visit(token, now);
    }

    /// Serves the ready queue in order, one visit each (a connection with
    /// work left goes to the back), until it is empty or the turn's budget
    /// is spent; what is left waits for the next turn, first in line.
    fn serve_ready(&mut self, now: Instant) {
        while self.spent < TURN_BUDGET {
            let Some(token) = self.ready.pop_front() else {
                return;
            };
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            conn.queued = false;
            if !matches!(conn.stage(), Stage::Closed) {
                self.visit(token, now);
            }
        }
    }

    /// One visit: drives the connection and charges the turn for the bytes
    /// it moved (at least `VISIT_COST`).
    #[inline]
    fn visit(&mut self, token: Token, now: Instant) {
        let before = self.stats.bytes_in + self.stats.bytes_out;
        self.drive(token, now);
        let moved = (self.stats.bytes_in + self.stats.bytes_out - before) as usize;
        self.spent += moved.max(VISIT_COST);
    }

    /// Puts a connection with work left at the back of the ready queue,
    /// once.
    fn enqueue(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !conn.queued {
                conn.queued = true;
                self.ready.push_back(token);
            }
        }
    }

    /// Serves one connection for one visit: read what is waiting (one read),
    /// write what is owed (up to `WRITE_PER_VISIT`), let a producing protocol
    /// generate more, then settle its stage, interest and timer. A
    /// connection with work left is queued for another visit.
    fn drive(&mut self, token: Token, now: Instant) {
        self.read_input(token, now);
        let wrote = self.flush(token, now);
        // A receiver that fell behind a relay: is it catching up?
        if self.fans_out && self.pacing.watching() {
            self.judge_receiver(token, wrote > 0, now);
        }
        // Compiled out for protocols that never produce (all but file).
        if self.produces {
            self.produce(token, now);
        }
        self.settle(token, now);
    }

    /// True if the protocol has output to generate and the connection has
    /// sent everything it owed: the moment to generate the next piece.
    fn wants_produce(&self, token: Token) -> bool {
        self.conns.get(token).is_some_and(|c| {
            c.accepts_output()
                && !c.write_blocked()
                && c.queue.is_empty()
                && self.protocol.producing(token)
        })
    }

    /// Lets a producing protocol generate output while the socket takes it,
    /// within a budget; each piece is written at once, so output is made
    /// only as fast as the peer reads it.
    fn produce(&mut self, token: Token, now: Instant) {
        for _ in 0..PRODUCE_PER_VISIT {
            if !self.wants_produce(token) {
                return;
            }
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            // On plain TCP the socket is lent for sendfile (`sendfile.rs`).
            let mut direct = conn.direct(DIRECT_PER_VISIT);
            let mut ctx =
                Ctx::new(now, &mut self.staging, &mut self.sends).with_direct(direct.as_mut());
            let step = self.protocol.produce(token, &mut ctx);
            if let Some(direct) = direct {
                self.sent_direct(token, direct, now);
            }
            self.emit(token, now);
            match step {
                Step::Continue => {}
                Step::Close => return self.begin_close(token, CloseReason::Done, None),
                Step::Abort => return self.begin_close(token, CloseReason::Truncated, None),
            }
        }
        // Budget spent and the socket still takes more: others first.
        if self.wants_produce(token) {
            self.enqueue(token);
        }
    }

    /// Accounts for what a producing step sent with `sendfile`, as `flush`
    /// does for a write: output counted, the idle clock moved, a refusal
    /// remembered (so WRITABLE is asked for), a failure closing the
    /// connection.
    fn sent_direct(&mut self, token: Token, direct: Direct, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if direct.sent > 0 {
            self.stats.bytes_out += direct.sent as u64;
            conn.last_activity = now;
            if let Some(access) = self.access.as_mut() {
                access.count(token, 0, direct.sent as u64);
            }
        }
        if direct.blocked {
            conn.refused_write();
        }
        if let Some(e) = direct.failed {
            self.fail(token, &e);
        }
    }

    /// Reads until the socket is drained, reading pauses, or the budget runs
    /// out; hands each read to the protocol and sends its answer at once.
    fn read_input(&mut self, token: Token, now: Instant) {
        for _ in 0..READS_PER_VISIT {
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            if !conn.wants_read() {
                return;
            }
            if matches!(conn.stage(), Stage::Header { .. }) {
                // Its one read; what it leaves (the client's FIN after a
                // finished header, say) is queued below like any input.
                self.read_header(token, now);
                break;
            }
            // A relay reads its senders only as fast as its receivers keep
            // up (pacing.rs): the kernel holds the rest.
            if self.fans_out
                && conn.stage() == Stage::Open
                && self.worker.as_ref().is_some_and(|w| w.others_holding())
            {
                // A receiver on another worker is catching up: this
                // sender waits too, and is looked at again shortly.
                self.held_elsewhere.push(token);
                if !self.recheck_armed {
                    self.recheck_armed = true;
                    self.timers.schedule(now + RECHECK, TimerKey::Recheck);
                }
                return;
            }
            if self.fans_out && conn.stage() == Stage::Open && !self.pacing.may_read() {
                if self.pacing.budget_spent() {
                    // Next turn: this turn has fanned out all it may, and
                    // queuing it now would only visit it again for nothing.
                    if !conn.queued {
                        conn.queued = true;
                        self.deferred.push(token);
                    }
                } else {
                    self.pacing.hold(token);
                }
                return;
            }
            let outcome = conn.read(&mut self.scratch, now);
            // A TLS handshake that just finished: the protocol comes in
            // before the first plaintext it must see. (Only then is the
            // connection looked up again.)
            let conn = if matches!(conn.stage(), Stage::Handshake { .. }) && conn.handshake_done() {
                self.established(token, now);
                match self.conns.get_mut(token) {
                    Some(conn) => conn,
                    None => return,
                }
            } else {
                conn
            };
            match outcome {
                ReadOutcome::Data(n) => {
                    self.stats.bytes_in += n as u64;
                    let out_before = self.stats.bytes_out;
                    conn.last_activity = now;
                    // Lingering (or turned away): the bytes are read only
                    // to be discarded. Only an open connection has a
                    // session.
                    if conn.stage() != Stage::Open {
                        continue;
                    }
                    let input = &self.scratch[..n];
                    let mut ctx = Ctx::for_input(now, input, &mut self.staging, &mut self.sends);
                    let step = self.protocol.data(token, input, &mut ctx);
                    if self.fans_out {
                        self.pacing.spend(ctx.fanned_out());
                    }
                    // The reply goes out at once (usually one write, no copy
                    // into the queue), through the borrow we already hold;
                    // an echo straight from the read buffer.
                    let sent = if ctx.reply_is_input() {
                        send_reply(conn, input, &mut self.stats, now)
                    } else {
                        send_staged(conn, &mut self.staging, &mut self.stats, now)
                    };
                    if let Some(access) = self.access.as_mut() {
                        access.count(token, n as u64, self.stats.bytes_out - out_before);
                    }
                    if let Err(e) = sent {
                        self.fail(token, &e);
                        return;
                    }
                    if step != Step::Continue {
                        let reason = match step {
                            Step::Abort => CloseReason::Truncated,
                            _ => CloseReason::Protocol,
                        };
                        self.begin_close(token, reason, Some(now + CLOSE_GRACE));
                        return;
                    }
                    conn.apply_backpressure(self.opts.write_limit);
                    // The usual end of a turn's reading: a short read
                    // drained the socket (no second lookup to learn it).
                    if !conn.wants_read() {
                        return;
                    }
                }
                // Still `wants_read` only when TLS yielded after a bounded
                // number of reads: queued below.
                ReadOutcome::Drained => break,
                ReadOutcome::Eof => {
                    self.end_of_input(token, now);
                    return;
                }
                ReadOutcome::Failed(e) => {
                    self.fail(token, &e);
                    return;
                }
                #[cfg(feature = "tls")]
                ReadOutcome::Refused(e) => {
                    self.refused(token, &e, now);
                    return;
                }
            }
        }
        // Budget spent with input still waiting: come back after the others.
        if self.conns.get(token).is_some_and(|c| c.wants_read()) {
            self.enqueue(token);
        }
    }

    /// The peer sent its FIN.
    fn end_of_input(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.stage(), Stage::Handshake { .. }) {
            self.handshake_failed(token, "the client closed mid-handshake");
            return;
        }
        if conn.stage() != Stage::Open {
            // Lingering: the peer has seen our FIN and sent its own.
            self.close(token, CloseReason::Done);
            return;
        }
        let mut ctx = Ctx::new(now, &mut self.staging, &mut self.sends);
        let step = self.protocol.eof(token, &mut ctx);
        self.emit(token, now);
        match step {
            Step::Close => self.begin_close(token, CloseReason::Done, None),
            Step::Abort => self.begin_close(token, CloseReason::Truncated, None),
            Step::Continue => {
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.set_stage(Stage::HalfClosed);
                }
            }
        }
    }

    /// Sends what the protocol just wrote into the staging buffer to the
    /// connection: straight to the socket if nothing is owed before it.
    fn emit(&mut self, token: Token, now: Instant) {
        if self.staging.is_empty() {
            return;
        }
        let Some(conn) = self.conns.get_mut(token) else {
            self.staging.clear();
            return;
        };
        let out_before = self.stats.bytes_out;
        let sent = send_staged(conn, &mut self.staging, &mut self.stats, now);
        if let Some(access) = self.access.as_mut() {
            access.count(token, 0, self.stats.bytes_out - out_before);
        }
        if let Err(e) = sent {
            self.fail(token, &e);
        }
    }

    /// Writes what is owed, if the kernel may take it.
    /// Returns the bytes written.
    fn flush(&mut self, token: Token, now: Instant) -> usize {
        let Some(conn) = self.conns.get_mut(token) else {
            return 0;
        };
        if !conn.can_write() {
            return 0;
        }
        let (outcome, n) = conn.flush(WRITE_PER_VISIT);
        let more = conn.can_write();
        if n > 0 {
            self.stats.bytes_out += n as u64;
            conn.last_activity = now;
            if let Some(access) = self.access.as_mut() {
                access.count(token, 0, n as u64);
            }
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
    fn settle(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // Reading resumed at or below half the write limit: input may be waiting
        // that no new edge will announce.
        if matches!(conn.stage(), Stage::Open)
            && conn.apply_backpressure(self.opts.write_limit)
            && conn.wants_read()
            && !conn.queued
        {
            conn.queued = true;
            self.ready.push_back(token);
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
        let protocol_due = if conn.accepts_output() {
            self.protocol.deadline(token)
        } else {
            None
        };
        // The common case, every message of an open connection: its entry is
        // armed, and its only deadline is the idle one, which moves only
        // later (the armed entry re-arms when it fires). Nothing to do.
        if protocol_due.is_none()
            && conn.timer_at.is_some()
            && matches!(conn.stage(), Stage::Open | Stage::HalfClosed)
        {
            return;
        }
        if let Some(due) = earliest(conn.deadline(self.opts.idle_timeout), protocol_due) {
            // Only an earlier deadline needs a new entry; a later one is
            // picked up when the armed entry fires (see timer.rs).
            if conn.timer_at.is_none_or(|armed| due < armed) {
                conn.timer_at = Some(due);
                self.timers.schedule(due, TimerKey::Conn(token));
            }
        }
    }

    /// A FLUSHING connection has sent everything: close_notify (TLS) and our
    /// FIN follow, then it closes or lingers.
    fn finish_writing(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // Incomplete output ends with a reset, not a FIN (file.rs).
        if conn.close_reason == Some(CloseReason::Truncated) {
            conn.abort();
            self.close(token, CloseReason::Truncated);
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
        let until = match self.draining {
            Some(drain) => drain.min(now + CLOSE_GRACE),
            None => now + CLOSE_GRACE,
        };
        conn.set_stage(Stage::Lingering {
            until,
            check: now + LINGER_CHECK,
        });
        // Everything is sent and the linger is bounded: the slot is free
        // (if an unbounded flush had kept it).
        let reason = conn.close_reason.unwrap_or(CloseReason::Done);
        let counted = mark_closing(conn, reason, true);
        self.started_closing(counted);
    }

    // ----- closing ------------------------------------------------------------

    /// Starts a graceful close: the protocol is told the connection is gone,
    /// then what is owed is flushed (bounded by `until`, if given), our FIN
    /// sent, and the peer's awaited (`settle` walks those steps).
    fn begin_close(&mut self, token: Token, reason: CloseReason, until: Option<Instant>) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.accepts_output() {
            return;
        }
        log::trace!("conn #{}: closing: {reason}", conn.number());
        let counted = mark_closing(conn, reason, until.is_some());
        conn.set_stage(Stage::Flushing { until });
        self.started_closing(counted);
        self.release_session(token, reason);
    }

    /// Tells the protocol the connection is gone, handing back its session
    /// (once; later calls find none). The access log asks the protocol for
    /// its summary first.
    fn release_session(&mut self, token: Token, reason: CloseReason) {
        let mut ctx = Ctx::new(Instant::now(), &mut self.staging, &mut self.sends);
        let summary = self
            .protocol
            .closed(token, reason, self.access.is_some(), &mut ctx);
        if let (Some(access), Some(summary)) = (self.access.as_mut(), summary) {
            access.summary(token, summary);
        }
        // Too late for this connection's own output.
        self.staging.clear();
    }

    /// A connection began to close (`counted` is 1 unless it was turned
    /// away or already closing): it no longer counts as active, and with
    /// several workers its slot in the shared limit is free again.
    fn started_closing(&mut self, counted: usize) {
        self.closing += counted;
        if counted > 0 {
            if let Some(worker) = &self.worker {
                worker.slots.free();
            }
        }
    }

    /// TLS: the peer broke the protocol (plain text on a TLS port, a record
    /// that does not decrypt) or failed verification (an unknown CA). The
    /// alert is on its way and the session is gone (`connection.rs`); our
    /// FIN follows it, and the connection lingers, briefly, so that the
    /// client reads the alert rather than a reset.
    #[cfg(feature = "tls")]
    fn refused(&mut self, token: Token, e: &rustls::Error, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let why = crate::tls::explain(e);
        if matches!(conn.stage(), Stage::Handshake { .. }) {
            self.stats.tls_failures += 1;
            log::debug!(
                "conn #{} {}: TLS handshake failed: {why}",
                conn.number(),
                peer_name(self.gate.as_ref(), token, conn)
            );
        } else {
            log::debug!("conn #{}: TLS error: {why}", conn.number());
        }
        let counted = mark_closing(conn, CloseReason::TlsFailure, true);
        conn.set_stage(Stage::Flushing {
            until: Some(now + ALERT_GRACE),
        });
        self.started_closing(counted);
        if let Some(access) = self.access.as_mut() {
            access.error(token, &why);
        }
        self.release_session(token, CloseReason::TlsFailure);
        self.settle(token, now);
    }

    /// Closes at once; the socket is dropped at the end of the turn.
    fn close(&mut self, token: Token, reason: CloseReason) {
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
        log::debug!(
            "conn #{} closed: {reason}{}",
            conn.number(),
            if conn.queue.is_empty() {
                String::new()
            } else {
                format!(", {} bytes unsent", conn.queue.len())
            }
        );
        if self.access.is_some() {
            self.release_session(token, reason);
            if let Some(line) = self
                .access
                .as_mut()
                .and_then(|a| a.close(token, reason, Instant::now()))
            {
                log::info!("{line}");
            }
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.set_stage(Stage::Closed);
        if self.fans_out {
            if self.pacing.forget(token) == Standing::Released {
                self.release_senders();
            }
            self.post_holding();
        }
        self.release_session(token, reason);
        self.closed.push(token);
    }

    /// A socket error: the peer left, or something worse. Either way this
    /// connection closes, and only this one.
    fn fail(&mut self, token: Token, e: &io::Error) {
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
            CloseReason::Reset
        } else {
            if let Some(access) = self.access.as_mut() {
                access.error(token, &e.to_string());
            }
            CloseReason::Error
        };
        log::debug!("conn #{number}: {e}");
        self.close(token, reason);
    }

    /// A TLS handshake ended without finishing: plain text on a TLS port,
    /// an unknown CA, no common protocol, or the client gave up. The
    /// client's problem: counted, and logged at debug. A client that never
    /// sent a byte (a port check) is nobody's problem and not counted.
    fn handshake_failed(&mut self, token: Token, why: &str) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        if conn.tls_heard() {
            self.stats.tls_failures += 1;
            log::debug!(
                "conn #{} {}: TLS handshake failed: {why}",
                conn.number(),
                peer_name(self.gate.as_ref(), token, conn)
            );
            if let Some(access) = self.access.as_mut() {
                access.error(token, why);
            }
            self.close(token, CloseReason::TlsFailure);
        } else {
            log::debug!("conn #{}: closed before sending anything", conn.number());
            self.close(token, CloseReason::Done);
        }
    }

    /// Drops the connections closed this turn; a freed descriptor may let a
    /// paused listener accept again.
    fn reap(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        for token in self.closed.drain(..) {
            // Dropping the socket closes it, which also removes it from the
            // epoll set: no deregister call needed.
            if let Some(gate) = self.gate.as_mut() {
                gate.forget(token);
            }
            if let Some(conn) = self.conns.remove(token) {
                if conn.refusing.is_some() {
                    self.rejecting -= 1;
                } else if conn.closing_counted {
                    self.closing -= 1;
                } else if let Some(worker) = &self.worker {
                    // Closed at once, never counted as closing: its slot
                    // is still taken.
                    worker.slots.free();
                }
            }
        }
        if self.accepting == Accepting::Paused {
            self.accepting = Accepting::Backlogged;
        }
        // The closed connections' timer entries are stale now: keep them
        // from piling up (timer.rs, "Stale entries are bounded"). A
        // connection has at most one live entry; the loop's own keys are
        // the rest.
        let conns = &self.conns;
        let stats_due = self.reporter.as_ref().and_then(Reporter::due);
        let (pacing_due, publish) = (self.pacing_due, (self.publish_armed, self.publish_next));
        let metrics = &self.metrics;
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
                TimerKey::Drain
                | TimerKey::AcceptRetry
                | TimerKey::Recheck
                | TimerKey::Watchdog => true,
            });
    }

    // ----- between connections ------------------------------------------------

    /// Queues what protocols sent to other connections, then flushes each
    /// receiver once: many messages to one peer become one write.
    ///
    /// A receiver still owing more than `--write-limit` after that write is
    /// not reading; it is disconnected as a slow consumer (the policy of
    /// Redis's pub/sub output buffer limit), so that it can neither stall
    /// the sender nor grow the server's memory. Its departure may itself
    /// send (a chat "left" line), hence the outer loop.
    fn deliver(&mut self, now: Instant) {
        while !self.sends.is_empty() {
            let mut receivers = Vec::new();
            for (to, chunk) in std::mem::take(&mut self.sends) {
                if let Some(conn) = self.conns.get_mut(to) {
                    if conn.accepts_output() {
                        conn.queue.push_shared(chunk);
                        receivers.push(to);
                    }
                }
            }
            receivers.sort_unstable();
            receivers.dedup();
            for token in receivers {
                let wrote = self.flush(token, now);
                self.judge_receiver(token, wrote > 0, now);
                self.settle(token, now);
            }
        }
    }

    /// After a receiver's flush: is it keeping up? One that owes more than
    /// `--write-limit` and is not keeping up (pacing.rs: it stopped reading,
    /// or cannot catch up) is disconnected as a slow consumer, the policy of
    /// Redis's pub/sub output buffer limit; one that keeps up holds the
    /// senders back instead, up to twice the limit.
    fn judge_receiver(&mut self, token: Token, wrote: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.accepts_output() {
            return;
        }
        let owed = conn.queue.len();
        let limit = self.opts.write_limit;
        let standing = if self.fans_out {
            self.pacing.observe(token, owed, wrote, now)
        } else {
            Standing::Dropped
        };
        let cut = owed > limit && (standing == Standing::Dropped || owed > 2 * limit);
        if cut {
            self.stats.slow_consumers += 1;
            // Many clients can stop reading at once: one line per interval,
            // the rest counted in the stats.
            let every = self.opts.stats_interval.unwrap_or(THROTTLE_DEFAULT);
            if let Verdict::Log { held } = self.slow_log.check(now, every) {
                log::info!(
                    "conn #{} {}: slow consumer, {} bytes unread: disconnecting{}",
                    conn.number(),
                    peer_name(self.gate.as_ref(), token, conn),
                    owed,
                    held_note(held)
                );
            }
            self.close(token, CloseReason::SlowConsumer);
        } else if standing == Standing::Released {
            self.release_senders();
        }
        self.arm_pacing();
        self.post_holding();
    }

    /// With several workers: tells the others whether this worker's
    /// receivers hold senders back, when that changed.
    fn post_holding(&mut self) {
        let holding = self.pacing.holding();
        if holding != self.holding_posted {
            self.holding_posted = holding;
            if let Some(worker) = &self.worker {
                worker.set_holding(holding);
            }
        }
    }

    /// Every receiver that keeps up has caught up: the senders held back
    /// are read again, next turn.
    fn release_senders(&mut self) {
        for token in self.pacing.release() {
            self.enqueue(token);
        }
    }

    /// Arms the pacing timer for the next moment a receiver may stop
    /// holding senders back, if that is earlier than the one armed.
    fn arm_pacing(&mut self) {
        if let Some(next) = self.pacing.next_check() {
            if self.pacing_due.is_none_or(|due| next < due) {
                self.pacing_due = Some(next);
                self.timers.schedule(next, TimerKey::Pacing);
            }
        }
    }

    // ----- time ---------------------------------------------------------------

    /// Fires every timer entry that is due.
    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_expired(now) {
            match key {
                TimerKey::Conn(token) => self.connection_timer(token, at, now),
                TimerKey::Stats => {
                    let (active, tls) = (self.active(), self.is_tls());
                    self.stats.log_dropped = logging::dropped();
                    if let Some(reporter) = self.reporter.as_mut() {
                        let was = reporter.due();
                        if let Some(line) = reporter.tick(at, now, &self.stats, active, tls) {
                            match &self.worker {
                                None => log::info!("stats: {line}"),
                                Some(worker) => worker.report(&self.stats, active),
                            }
                        }
                        // A stale entry changes nothing; a real tick moves
                        // the due time, which gets the one live entry.
                        if let Some(due) = reporter.due().filter(|&d| Some(d) != was) {
                            self.timers.schedule(due, TimerKey::Stats);
                        }
                    }
                }
                TimerKey::Drain => {
                    log::info!(
                        "drain timeout: closing {} that did not finish",
                        connections(self.conns.len())
                    );
                    for token in self.conns.tokens() {
                        self.close(token, CloseReason::Shutdown);
                    }
                }
                TimerKey::Pacing => {
                    if self.pacing_due == Some(at) {
                        self.pacing_due = None;
                        if self.pacing.expire(now) == Standing::Released {
                            self.release_senders();
                        }
                        self.arm_pacing();
                        self.post_holding();
                    }
                }
                TimerKey::Watchdog => {
                    crate::systemd::notify("WATCHDOG=1");
                    if let Some(every) = crate::systemd::watchdog() {
                        self.timers.schedule(now + every, TimerKey::Watchdog);
                    }
                }
                TimerKey::Recheck => {
                    self.recheck_armed = false;
                    for token in std::mem::take(&mut self.held_elsewhere) {
                        self.enqueue(token);
                    }
                }
                TimerKey::Metrics(token) => {
                    let mut after = Vec::new();
                    if let Some(m) = self.metrics.as_mut() {
                        after = m.expire(token, self.poll.registry(), now);
                    }
                    for a in after {
                        if let metrics::After::Deadline(token, at) = a {
                            self.timers.schedule(at, TimerKey::Metrics(token));
                        }
                    }
                }
                TimerKey::Publish => {
                    if self.publish_armed && at == self.publish_next {
                        self.publish_armed = false;
                        self.publish(now);
                    }
                }
                TimerKey::AcceptRetry => {
                    if self.accepting == Accepting::Paused {
                        self.accepting = Accepting::Backlogged;
                    }
                }
            }
        }
    }

    /// A connection's timer entry fired: re-arm it if its deadline moved
    /// later, otherwise act on the deadline.
    fn connection_timer(&mut self, token: Token, at: Instant, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // A later entry superseded by an earlier one that already fired.
        if conn.timer_at != Some(at) {
            return;
        }
        conn.timer_at = None;
        let protocol_due = if conn.accepts_output() {
            self.protocol.deadline(token)
        } else {
            None
        };
        match earliest(conn.deadline(self.opts.idle_timeout), protocol_due) {
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
                    self.stats.tls_failures += 1;
                    self.close(token, CloseReason::HandshakeTimeout);
                }
                Stage::Header { .. } => {
                    self.stats.proxy_errors += 1;
                    log::debug!("conn #{}: no PROXY header in time", token.0 >> 32);
                    self.close(token, CloseReason::ProxyError);
                }
                _ => self.close(token, CloseReason::Expired),
            },
        }
    }

    /// A metrics event (`metrics.rs`): a scrape arrives or is answered, with
    /// the figures of the whole server.
    fn scrape(&mut self, token: Token, now: Instant) {
        let Some(mut metrics) = self.metrics.take() else {
            return;
        };
        let after = metrics.event(token, self.poll.registry(), now, || self.figures());
        self.metrics = Some(metrics);
        for a in after {
            if let metrics::After::Deadline(token, at) = a {
                self.timers.schedule(at, TimerKey::Metrics(token));
            }
        }
    }

    /// This loop's figures, for a scrape or for the other workers.
    fn own_figures(&self) -> Figures {
        let mut stats = self.stats.clone();
        stats.log_dropped = logging::dropped();
        Figures {
            stats,
            active: self.active(),
            per_worker: Vec::new(),
            queued: self.conns.iter().map(|c| c.queue.len() as u64).sum(),
            turns: self.turns,
            busy: self.busy,
            draining: self.draining.is_some(),
            tls: self.is_tls(),
        }
    }

    /// What a scrape shows: this loop's figures, or with several workers
    /// every worker's, summed (each at most `PUBLISH_EVERY` old).
    fn figures(&self) -> Figures {
        let own = self.own_figures();
        let Some(worker) = &self.worker else {
            return own;
        };
        worker.board.post(worker.id, own.clone());
        worker.board.sum(own.draining, own.tls)
    }

    /// With several workers: posts this loop's figures for the worker that
    /// serves the metrics, at most every `PUBLISH_EVERY`, and once more
    /// after the last change (a timer), so that an idle worker's figures
    /// are whole and it still makes no wakeups of its own.
    fn publish(&mut self, now: Instant) {
        // Nothing moved since the last post: nothing to post, no timer (an
        // idle worker stays asleep).
        let figures = (self.stats.clone(), self.active());
        if self.posted.as_ref() == Some(&figures) {
            return;
        }
        if now >= self.publish_next {
            let own = self.own_figures();
            if let Some(worker) = &self.worker {
                worker.board.post(worker.id, own);
            }
            self.posted = Some(figures);
            self.publish_next = now + PUBLISH_EVERY;
            self.publish_armed = false;
        } else if !self.publish_armed {
            self.publish_armed = true;
            self.timers.schedule(self.publish_next, TimerKey::Publish);
        }
    }

    /// Once per turn: a quiet stats reporter whose figures moved is armed
    /// again. One comparison while it is not quiet.
    fn wake_reporter(&mut self, now: Instant) {
        let active = self.active();
        if let Some(reporter) = self.reporter.as_mut() {
            if let Some(due) = reporter.wake(now, &self.stats, active) {
                self.timers.schedule(due, TimerKey::Stats);
            }
        }
    }

    /// No bytes either way for `--idle-timeout`, or the protocol's deadline
    /// passed (an unanswered prompt, an unfinished line): say so, and close.
    fn timeout(&mut self, token: Token, reason: CloseReason, now: Instant) {
        self.stats.timed_out += 1;
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

    // ----- shutdown -----------------------------------------------------------

    /// SIGINT or SIGTERM: the first starts the drain, a second aborts.
    fn signal(&mut self, now: Instant) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for sig in signals {
            if sig == SIGHUP {
                self.reload();
                continue;
            }
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if self.draining.is_some() {
                log::warn!(
                    "{name} again: exiting now, dropping {}",
                    connections(self.conns.len())
                );
                self.aborted = true;
                return;
            }
            log::info!(
                "{name}: no longer accepting; draining {} for up to {:?}",
                connections(self.conns.len()),
                self.opts.drain_timeout
            );
            self.begin_shutdown(now);
        }
    }

    /// SIGHUP: the certificate, key and client CA again from their files.
    /// New handshakes use them; established connections, and handshakes
    /// under way, keep the configuration they began with (each session
    /// holds its own `Arc`). If anything is wrong the old configuration
    /// stays, and the error names the file.
    fn reload(&mut self) {
        #[cfg(feature = "tls")]
        if let (Some(files), Some(current)) = (&self.tls_files, &self.tls) {
            crate::systemd::reloading();
            let result = crate::tls::reload(files, current);
            crate::systemd::notify("READY=1");
            match result {
                Ok((config, described)) => {
                    self.tls = Some(config);
                    log::info!("SIGHUP: TLS reloaded: {described}");
                }
                Err(e) => {
                    self.stats.tls_reload_failures += 1;
                    log::error!("SIGHUP: TLS not reloaded, the old certificate stays: {e}");
                }
            }
            return;
        }
        log::info!("SIGHUP: nothing to reload (no TLS)");
    }

    /// Closes the listener and starts a bounded, graceful close of every
    /// connection: each gets the protocol's last words and what it is owed.
    fn begin_shutdown(&mut self, now: Instant) {
        crate::systemd::notify("STOPPING=1");
        let deadline = now + self.opts.drain_timeout;
        self.draining = Some(deadline);
        self.accepting = Accepting::Stopped;
        // Dropping the listener closes it: new clients are refused by the
        // kernel rather than left waiting in a backlog nobody serves.
        self.listeners.clear();
        self.timers.schedule(deadline, TimerKey::Drain);
        for token in self.conns.tokens() {
            if let Some(conn) = self.conns.get_mut(token) {
                // Mid-handshake or mid-header: nothing is owed yet, and
                // nobody to tell.
                if matches!(conn.stage(), Stage::Handshake { .. } | Stage::Header { .. }) {
                    self.close(token, CloseReason::Shutdown);
                    continue;
                }
                if conn.accepts_output() {
                    let mut ctx = Ctx::new(now, &mut self.staging, &mut self.sends);
                    self.protocol.shutdown(token, &mut ctx);
                    self.emit(token, now);
                }
            }
            self.begin_close(token, CloseReason::Shutdown, Some(deadline));
            self.settle(token, now);
        }
    }
}

/// Records why a graceful close began. Returns 1 if the connection now
/// counts among those the server is closing: a `bounded` close (it has a
/// deadline), of a connection not turned away (those were never active),
/// counted once; `reap` subtracts it again by `closing_counted`.
fn mark_closing(conn: &mut Connection, reason: CloseReason, bounded: bool) -> usize {
    if conn.close_reason.is_none() {
        conn.close_reason = Some(reason);
    }
    // Only a close with a deadline gives its slot back early: one that
    // flushes for as long as the peer keeps reading (after the peer's FIN)
    // could otherwise hold any number of connections outside the limit.
    let counted = bounded && conn.refusing.is_none() && !conn.closing_counted;
    conn.closing_counted |= counted;
    usize::from(counted)
}

/// Sends what the protocol just wrote (the staging buffer) to `conn` and
/// empties the buffer. Returns the socket's error, if the write failed.
fn send_staged(
    conn: &mut Connection,
    staging: &mut Vec<u8>,
    stats: &mut Stats,
    now: Instant,
) -> io::Result<()> {
    if staging.is_empty() {
        return Ok(());
    }
    let result = send_reply(conn, staging, stats, now);
    staging.clear();
    if staging.capacity() > STAGING_KEEP {
        staging.shrink_to(STAGING_KEEP);
    }
    result
}

/// Sends `bytes` to `conn`: straight to the socket if nothing is owed
/// before them, else into its queue. A connection that is closing takes
/// nothing more; the bytes are dropped. Returns the socket's error, if the
/// write failed.
fn send_reply(
    conn: &mut Connection,
    bytes: &[u8],
    stats: &mut Stats,
    now: Instant,
) -> io::Result<()> {
    if !conn.accepts_output() {
        return Ok(());
    }
    let (outcome, n) = conn.send(bytes);
    if n > 0 {
        stats.bytes_out += n as u64;
        conn.last_activity = now;
    }
    match outcome {
        WriteOutcome::Done | WriteOutcome::Blocked => Ok(()),
        WriteOutcome::Failed(e) => Err(e),
    }
}

/// The client's address for a log line: the one a PROXY header named, if
/// any, else the socket's peer.
fn peer_name(gate: Option<&Gate>, token: Token, conn: &Connection) -> String {
    match gate.and_then(|g| g.client(token)) {
        Some(client) => client.to_string(),
        None => conn.peer(),
    }
}

/// `1 connection`, `3 connections`: for log lines a person reads.
fn connections(n: usize) -> String {
    if n == 1 {
        "1 connection".into()
    } else {
        format!("{n} connections")
    }
}

/// Turns away a client at the connection limit: one best-effort write of the
/// reason, our FIN, and the socket is dropped. Never blocks and never fails
/// the server: the message fits any fresh socket's send buffer.
fn reject(stream: TcpStream) {
    use std::io::Write;
    let mut stream = stream;
    let _ = stream.write(SERVER_FULL);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
