//! The readiness loop: one `mio::Poll`, and the order in which what it
//! watches is served. This file is the turn: [`Server`] and
//! [`Server::run`] first, then the layers the turn calls, each a file of
//! its own with one `impl Server` block (listed below `run`, in the order
//! they call each other).
//!
//! This module decides *when* things happen. What a read or write means,
//! and which interest a socket needs, is `connection.rs`; what bytes to
//! answer is the protocol's, reached through one trait object
//! (`protocol/seam.rs`), so the loop is compiled once; the deadline heap
//! is `timer.rs`; every reserved token is in `tokens.rs`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use signal_hook_mio::v1_0::Signals;

#[cfg(feature = "cluster")]
use crate::cluster::Cluster;
use crate::config::ServerOptions;
use crate::conn_table::{is_reserved, ConnTable};
use crate::connection::Connection;
use crate::edge::Gate;
use crate::metrics::Metrics;
use crate::protocol::seam::DynProtocol;
use crate::protocol::Ctx;
use crate::stats::{connections, Stats};
use crate::timer::Timers;
use crate::tokens::{is_listener, LISTENER, SIGNALS, WAKER};
use crate::worker_link::Worker;

use admission::{Accepting, Admission};
use relay::Relay;
use report::{Report, Tally};
use time::TimerKey;

pub use entry::{SERVER_FULL, TOO_MANY};
pub use startup::{Parts, StartError};
pub use time::IDLE_TIMEOUT;

/// Events taken from the kernel per `epoll_wait`.
const EVENTS_PER_TURN: usize = 1024;

/// The server: the poll and everything it serves. See the module docs.
pub struct Server {
    poll: Poll,
    signals: Signals,
    conns: ConnTable<Connection>,
    timers: Timers<TimerKey>,
    /// The protocol and its sessions, behind the one seam crossed
    /// dynamically (`protocol/seam.rs`).
    protocol: Box<dyn DynProtocol + Send>,
    /// The protocol relays (`Protocol::FANS_OUT`) or produces output of its
    /// own (`Protocol::PRODUCES`): asked once.
    fans_out: bool,
    produces: bool,
    /// The protocol may set deadlines of its own (`Protocol::has_deadlines`):
    /// if not, it is never asked for one.
    deadlines: bool,
    /// Its clients may only listen (`Protocol::QUIET_MEMBERS`): the idle
    /// timeout spares one that has everything it was sent.
    quiet_members: bool,
    opts: ServerOptions,
    /// The counters and the access log: bytes are counted in one call.
    tally: Tally,
    /// The listeners, the connection limit, who is turned away.
    admission: Admission,
    /// Who may connect (`--allow`, `--deny`, `--max-per-ip`,
    /// `--proxy-protocol`); `None` when no such option is on.
    gate: Option<Gate>,
    /// The one read buffer, shared by every connection.
    scratch: Box<[u8]>,
    /// What the protocol wrote for the connection being served.
    staging: Vec<u8>,
    /// Connections with work left, served in turn, one visit each (a
    /// stream is served a few visits in a row: `visit.rs::carry`).
    ready: VecDeque<Token>,
    /// Heavy connections (not `light`) whose event came after the turn's
    /// budget was spent, in the order of their events: served before the
    /// ready queue (`visit.rs::next_ready`), so that a client that just
    /// spoke does not wait behind every bulk stream in `ready`.
    fresh: VecDeque<Token>,
    /// The same, for light connections (`Connection::light`): served at the
    /// start of the next turn, before its events, one read each
    /// (`visit.rs::serve_light`), so that a client that talks in small
    /// messages waits for the turn under way, not for as many turns as the
    /// streams' events take.
    light: VecDeque<Token>,
    /// Turns in a row the ready queue waited without a visit.
    ready_passed_over: u32,
    /// Bytes read and written so far this turn, against `TURN_BUDGET`.
    spent: usize,
    /// Connections closed this turn, to be dropped at its end.
    closed: Vec<Token>,
    /// Between connections: sends, pacing, holding across workers.
    relay: Relay,
    /// The stats line, the metrics, and this worker's posted figures.
    report: Report,
    /// Set when the shutdown drain began: its deadline.
    draining: Option<Instant>,
    aborted: bool,
    /// One of several workers: its link to the others. `None` with one.
    worker: Option<Worker>,
    /// The TLS configuration on a TLS listener, and its files for SIGHUP.
    #[cfg(feature = "tls")]
    tls: Option<(
        std::sync::Arc<rustls::ServerConfig>,
        crate::config::ServerTls,
    )>,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A signal, then every connection drained or the drain timeout passed.
    Drained,
    /// A second signal during the drain: stopped at once.
    Aborted,
}

impl Server {
    /// Serves until a signal and the drain that follows. Returns how it
    /// ended and the final counters. If the poll itself fails, every
    /// connection is closed first, so that what it held (its slot, a chat
    /// name) is given back to the other workers.
    ///
    /// One turn:
    ///
    /// 1. sleep in `epoll_wait` until an event or the nearest deadline
    ///    (zero if work is left from the last turn, forever if nothing is
    ///    scheduled; docs/architecture.md lists what an idle server wakes
    ///    for);
    /// 2. serve the light connections whose events the last turn had no
    ///    budget for (`light`), one read each, while less than half the
    ///    budget is spent;
    /// 3. dispatch each event: a listener accepts (`admission.rs`), a
    ///    connection gets one visit (`visit.rs`) unless it is queued
    ///    already or the turn's budget is spent (then it waits in `light`
    ///    if its last visit moved little, else in `fresh`, served before
    ///    the ready queue); the others are the signal
    ///    pipe (`shutdown.rs`), the waker (other workers sent connections,
    ///    `admission.rs`, or messages, `relay.rs`) and the metrics listener
    ///    (`report.rs`);
    /// 4. serve `fresh`, then the ready queue (which goes first for one
    ///    visit if `fresh` kept it waiting for 64 turns), one visit each,
    ///    until the turn has moved `TURN_BUDGET` bytes (fairness);
    /// 5. fire the expired timers (`time.rs`);
    /// 6. deliver what protocols sent from one connection to others, and
    ///    flush what the turn said to other workers (`relay.rs`);
    /// 7. reap the connections closed during the turn (`closing.rs`), at
    ///    this safe point, so that nothing is freed while an event may name
    ///    it;
    /// 8. end the turn: the stats reporter and this worker's figures
    ///    (`report.rs`), a fresh fan-out budget.
    pub fn run(mut self) -> io::Result<(Exit, Stats)> {
        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        self.start_timers(Instant::now());
        let mut woke = Instant::now();
        while !self.finished() {
            let asleep = Instant::now();
            // The loop's own load: time from waking to sleeping again.
            self.report.busy += asleep.saturating_duration_since(woke);
            let timeout = self.poll_timeout(asleep);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.abandon();
                return Err(e);
            }
            let now = Instant::now();
            woke = now;
            self.report.turns += 1;
            self.spent = 0;
            self.serve_light(now);
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
                    WAKER => {
                        self.take_handed(now);
                        self.remote(now);
                    }
                    token if Metrics::owns(token) => self.scrape(token, now),
                    #[cfg(feature = "cluster")]
                    token if Cluster::owns(token) => self.cluster_event(token, now),
                    token if is_listener(token) => self.accept(now),
                    _ => {}
                }
            }
            self.serve_ready(now);
            if self.admission.accepting == Accepting::Backlogged {
                self.accept(now);
            }
            self.expire(now);
            // Most turns sent nothing between connections and closed
            // nothing: two tests, not two calls.
            if self.fans_out || !self.relay.sends.is_empty() {
                self.deliver(now);
            }
            if !self.closed.is_empty() {
                self.reap();
            }
            self.end_turn(now);
        }
        Ok((self.exit(), self.tally.stats))
    }
}

// The layers, top to bottom; each calls only those below it
// (`tests/layout.rs` checks it), and any may ask the two queries on the
// struct, `active` and `is_tls`:
//
//   mod.rs        the turn: run, dispatch
//   shutdown.rs   signals: drain, abort, reload; abandon
//   time.rs       one handler per timer key
//   report.rs     stats and metrics figures
//   visit.rs      one connection served: read, produce
//   cluster.rs    the link to other instances: its events, its timer
//   relay.rs      between connections: delivery, judging receivers, pacing
//   admission.rs  accepting, the pause on EMFILE, the connection limit
//   entry.rs      PROXY header -> TLS handshake -> OPEN
//   output.rs     emit, flush, settle (stage, interest, timer)
//   closing.rs    one mapping from a step to a close; reaping
//   startup.rs    the parts opened before the loop runs (beside the rest)
mod admission;
mod closing;
#[cfg(feature = "cluster")]
mod cluster;
mod entry;
mod output;
mod relay;
mod report;
mod shutdown;
mod startup;
mod time;
mod visit;

impl Server {
    /// The end of a turn: a quiet stats reporter whose figures moved is
    /// armed again, this worker's figures are posted, relays get a fresh
    /// fan-out budget.
    fn end_turn(&mut self, now: Instant) {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.relay.hub.cluster_ref() {
            self.tally.stats.cluster = Some(cluster.figures());
        }
        self.wake_reporter(now);
        if self.worker.is_some() {
            self.publish(now);
        }
        if self.fans_out {
            self.next_relay_turn();
        }
    }

    /// True once the loop has nothing left to do: aborted, or draining
    /// with every connection gone and nothing owed to the cluster's Redis
    /// (the users' leaves, say), unless the drain timeout has passed.
    fn finished(&self) -> bool {
        let owes = |now| self.draining.is_some_and(|until| now < until) && self.relay.hub.owes();
        self.aborted || (self.draining.is_some() && self.conns.is_empty() && !owes(Instant::now()))
    }

    /// Zero if work is waiting that no event will announce; otherwise until
    /// the nearest deadline, or forever.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty()
            || !self.fresh.is_empty()
            || !self.light.is_empty()
            || self.admission.accepting == Accepting::Backlogged
        {
            return Some(Duration::ZERO);
        }
        self.timers.poll_timeout(now)
    }

    /// Connections being served (`admission::Limit::active`).
    fn active(&self) -> usize {
        self.admission.limit.active()
    }

    /// True when the listener speaks TLS.
    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The address actually listened on (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.admission.local_addr
    }
}

/// The protocol's context for one step: the staging buffer of the
/// connection being served (and its `input`, for `Protocol::data`), the
/// sends to other connections, and the hub.
fn step_ctx<'a>(
    now: Instant,
    input: &'a [u8],
    staging: &'a mut Vec<u8>,
    relay: &'a mut Relay,
) -> Ctx<'a> {
    Ctx::for_input(now, input, staging, &mut relay.sends).with_hub(&mut relay.hub)
}

/// Puts `conn` (whose token is `token`) at the back of `queue` (the ready
/// queue, `fresh` or `light`), once: its `queued` flag keeps it from
/// waiting in any of them twice.
fn enqueue(queue: &mut VecDeque<Token>, token: Token, conn: &mut Connection) {
    if !conn.queued {
        conn.queued = true;
        conn.carried = 0;
        queue.push_back(token);
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

/// For the loop's unit tests: an echo server on loopback with `n` clients
/// connected and accepted (within 5 s); the clients, and the tokens of
/// their connections.
#[cfg(test)]
fn echo_server_with(n: usize) -> (Server, Vec<std::net::TcpStream>, Vec<Token>) {
    use crate::protocol::echo::Echo;
    use crate::protocol::seam::Sessions;
    use crate::protocol::Limits;
    let listener = crate::sys::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let parts = Parts::open(listener).unwrap();
    let addr = parts.local_addr();
    let protocol = Sessions::boxed(Echo::new(None, None, Limits::lines(64)));
    let mut server = Server::new(parts, ServerOptions::default(), protocol);
    let clients: Vec<_> = (0..n)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.conns.len() < n && Instant::now() < deadline {
        server.accept(Instant::now());
        std::thread::sleep(Duration::from_millis(5));
    }
    let tokens = server.conns.tokens();
    assert_eq!(tokens.len(), n, "clients accepted");
    (server, clients, tokens)
}
