//! Admission: the listeners, accepting within a budget, the pause when
//! accepting fails (out of descriptors), and `--max-connections`.
//!
//! The connection limit is one type, [`Limit`], the same with one worker or
//! many: a connection takes a slot when it is admitted and gives it back
//! exactly once (`Connection::holds_slot` says whether it still holds one),
//! when it starts a bounded close, when it is turned away, when its
//! unbounded flush ends and its (bounded) linger begins, or at the latest
//! when it is reaped (`closing.rs`: `mark_closing`, `reap`). With several
//! workers the count is also the whole server's (`worker_link::Slots`);
//! with one there is no atomic.
//!
//! With several workers, a client this worker accepts may be served by
//! another that serves fewer (`spread.rs`): it is handed over before
//! anything else happens to it ([`Server::arrive`]), and the receiver
//! admits it as if it had accepted it ([`Server::take_handed`]).
//!
//! Who may connect (`--allow`, `--deny`, `--max-per-ip`, PROXY) is the
//! gate's (`edge.rs`), asked in `entry.rs`, and here only of a client the
//! limit turns away, so that a denied one is told nothing; what a client
//! turned away is told, and when, is `entry.rs`'s. This file only takes
//! the socket.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

use super::report::{since_last, FULL_NOTICE, NOTICE_EVERY};
use super::Server;
use crate::access_log;
use crate::connection::{Connection, Refusal};
use crate::logging;
use crate::logging::Verdict;
use crate::protocol::CloseReason;
use crate::spread::{Handed, Route};
use crate::sys;
use crate::worker_link::Slots;

/// Accepts per turn before existing connections get their go.
const ACCEPTS_PER_TURN: usize = 256;
/// How soon to retry accepting after an accept error.
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(250);
/// An accept-error episode has passed once no accept has failed for this
/// long: until then, accepts that succeed in between (a descriptor freed,
/// taken at once by the next client) do not end it, and its warning is not
/// repeated.
pub(super) const ACCEPT_CALM: Duration = Duration::from_secs(1);
/// At most this many turned-away clients wait in the table at once (for a
/// TLS handshake, or a PROXY header, before they are told); beyond it they
/// are closed without a word on a TLS or PROXY listener.
pub(super) const MAX_REJECTING: usize = 64;

/// Loops of this process in an episode of failing accepts: the first to
/// enter one warns and the last to leave says it has passed, so that with
/// several workers the log says each once (issue 21, one event one line).
/// Touched only when an episode begins or ends.
static TROUBLED_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Whether, and how eagerly, the listener is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Accepting {
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

/// `--max-connections`, counted in one place. See the module docs.
#[derive(Debug)]
pub(super) struct Limit {
    max: usize,
    /// This loop's connections that hold a slot: the ones it serves.
    held: usize,
    /// With several workers, the whole server's count, and this worker's
    /// number in it.
    shared: Option<(Slots, usize)>,
}

impl Limit {
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            held: 0,
            shared: None,
        }
    }

    /// Counts against the whole server's `slots` from now on, as worker
    /// `worker`.
    pub(super) fn share(&mut self, slots: Slots, worker: usize) {
        self.shared = Some((slots, worker));
    }

    /// Takes a slot, if one is free; false if the server is full. The
    /// caller marks the connection that took it (`holds_slot`), so that
    /// [`give_back`](Self::give_back) returns it once.
    pub(super) fn take(&mut self) -> bool {
        let free = match &self.shared {
            None => self.held < self.max,
            Some((slots, worker)) => slots.take(*worker),
        };
        self.held += usize::from(free);
        free
    }

    /// Gives `conn`'s slot back, if it still holds one.
    pub(super) fn give_back(&mut self, conn: &mut Connection) {
        if std::mem::take(&mut conn.holds_slot) {
            self.held -= 1;
            if let Some((slots, worker)) = &self.shared {
                slots.free(*worker);
            }
        }
    }

    /// Connections being served: not those turned away, nor those the
    /// server is closing within a bound, so that a client that reconnects
    /// at once after a timeout finds its slot free. Their descriptors still
    /// count against the process's limit, which `sys.rs` accounts for.
    pub(super) fn active(&self) -> usize {
        self.held
    }
}

/// The listeners and the accounting of who is let in.
#[derive(Debug)]
pub(super) struct Admission {
    /// The listening sockets (one but under socket activation); emptied
    /// when a shutdown begins.
    pub(super) listeners: Vec<TcpListener>,
    pub(super) local_addr: SocketAddr,
    pub(super) accepting: Accepting,
    /// Which listener to accept from first this turn.
    accept_from: usize,
    /// Accepting has failed within the last `ACCEPT_CALM`: the episode the
    /// one warning was logged for.
    trouble: Option<Trouble>,
    /// When the one live `AcceptRetry` timer entry is due, if one is.
    retry_due: Option<Instant>,
    pub(super) limit: Limit,
    /// Connections in the table only to be told they are turned away (after
    /// a TLS handshake or a PROXY header). They hold no slot.
    pub(super) rejecting: usize,
}

/// An episode of failing accepts (out of descriptors, say).
#[derive(Debug, Clone, Copy)]
struct Trouble {
    since: Instant,
    last: Instant,
    failures: u64,
}

impl Admission {
    pub(super) fn new(listeners: Vec<TcpListener>, local_addr: SocketAddr, max: usize) -> Self {
        Self {
            listeners,
            local_addr,
            accepting: Accepting::OnEvent,
            accept_from: 0,
            trouble: None,
            retry_due: None,
            limit: Limit::new(max),
            rejecting: 0,
        }
    }

    /// When the live `AcceptRetry` entry is due (others were superseded).
    pub(super) fn retry_due(&self) -> Option<Instant> {
        self.retry_due
    }
}

impl Server {
    /// Accepts waiting clients, up to a budget per turn.
    pub(super) fn accept(&mut self, now: Instant) {
        if !matches!(
            self.admission.accepting,
            Accepting::OnEvent | Accepting::Backlogged
        ) {
            return;
        }
        // Every listener in turn, within one budget for the turn (almost
        // always there is one listener).
        let mut budget = ACCEPTS_PER_TURN;
        let mut backlogged = false;
        let n = self.admission.listeners.len();
        // A different listener first each turn, so that none starves.
        self.admission.accept_from = (self.admission.accept_from + 1) % n.max(1);
        let start = self.admission.accept_from;
        for i in (0..n).map(|k| (k + start) % n) {
            while budget > 0 {
                let Some(listener) = self.admission.listeners.get(i) else {
                    return;
                };
                budget -= 1;
                match listener.accept() {
                    Ok((stream, peer)) => self.arrive(stream, peer, now),
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
        self.admission.accepting = if backlogged {
            Accepting::Backlogged
        } else {
            Accepting::OnEvent
        };
    }

    /// Stops accepting after an error that would recur at once, warning once
    /// per episode. Accepting resumes when a connection closes (a descriptor
    /// is free) or on the retry timer (another process freed one). At the
    /// limit each freed descriptor is taken by the next client and the
    /// accept after it fails again: that is still the same episode.
    fn pause_accepting(&mut self, e: &io::Error, now: Instant) {
        match &mut self.admission.trouble {
            Some(t) => {
                t.last = now;
                t.failures += 1;
            }
            None => {
                self.admission.trouble = Some(Trouble {
                    since: now,
                    last: now,
                    failures: 1,
                });
                // Descriptors are the process's: with several workers all
                // run out at once, and the first to say so speaks for all.
                if TROUBLED_WORKERS.fetch_add(1, Ordering::Relaxed) > 0 {
                    return self.pause_only(now);
                }
                logging::for_the_server(|| {
                    if sys::is_resource_exhaustion(e) {
                        log::warn!(
                            "cannot accept: {e}; serving the open connections, \
                             new clients wait until a descriptor frees"
                        );
                    } else {
                        log::warn!("cannot accept: {e}; retrying");
                    }
                });
            }
        }
        self.pause_only(now);
    }

    /// Pauses accepting until the retry timer (or a freed descriptor).
    fn pause_only(&mut self, now: Instant) {
        self.admission.accepting = Accepting::Paused;
        self.arm_accept_retry(now + ACCEPT_RETRY);
    }

    /// The `AcceptRetry` entry due at `at` fired: a paused listener tries
    /// again, and an episode with no failure for `ACCEPT_CALM` has passed,
    /// said in one line.
    pub(super) fn retry_accepting(&mut self, at: Instant, now: Instant) {
        if self.admission.retry_due != Some(at) {
            return; // superseded by an earlier entry
        }
        self.admission.retry_due = None;
        if self.admission.accepting == Accepting::Paused {
            self.admission.accepting = Accepting::Backlogged;
        }
        let Some(t) = self.admission.trouble else {
            return;
        };
        let calm_at = t.last + ACCEPT_CALM;
        if now < calm_at {
            self.arm_accept_retry(calm_at);
            return;
        }
        self.admission.trouble = None;
        // The last worker whose episode passes says so, for all.
        if TROUBLED_WORKERS.fetch_sub(1, Ordering::Relaxed) > 1 {
            return;
        }
        logging::for_the_server(|| {
            log::info!(
                "accepting connections again: no accept failed for {} s \
                 ({} failed over {} ms)",
                ACCEPT_CALM.as_secs(),
                t.failures,
                t.last.duration_since(t.since).as_millis()
            )
        });
    }

    /// Keeps one live `AcceptRetry` entry, due at the earliest time asked.
    fn arm_accept_retry(&mut self, at: Instant) {
        if self.admission.retry_due.is_some_and(|due| due <= at) {
            return;
        }
        self.admission.retry_due = Some(at);
        self.timers.schedule(at, super::TimerKey::AcceptRetry);
    }

    /// A client this worker has just accepted: served here, or, with
    /// several workers, handed to one that serves fewer (`spread.rs`).
    fn arrive(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let Some(worker) = self.worker.as_mut() else {
            return self.admit(stream, peer, now);
        };
        let Route::HandTo(to) = worker.route() else {
            return self.admit(stream, peer, now);
        };
        match worker.hand(to, Handed { stream, peer }) {
            Ok(()) => log::debug!("{peer}: handed to worker {to}"),
            // Its loop has ended (shutdown): served here after all.
            Err(back) => self.admit(back.stream, back.peer, now),
        }
    }

    /// Other workers handed this one connections (its waker woke it): each
    /// is admitted as if accepted here; once shutting down, each is closed,
    /// as a client arriving at a closed listener would be refused.
    pub(super) fn take_handed(&mut self, now: Instant) {
        while let Some(handed) = self.worker.as_ref().and_then(|w| w.take_handed()) {
            if self.admission.accepting == Accepting::Stopped {
                log::debug!("{}: handed over during shutdown, closed", handed.peer);
                continue;
            }
            self.admit(handed.stream, handed.peer, now);
        }
    }

    /// Takes in one accepted client: it takes a slot, or is turned away if
    /// the server is full. A client the gate refuses at accept is then
    /// closed without a word (denied); otherwise plain TCP without PROXY
    /// says so at once and goes; a client that must first finish a TLS
    /// handshake or send its PROXY header gets a bounded place in the
    /// table (`MAX_REJECTING`), and beyond it is closed without a word: a
    /// TLS listener never sends plaintext, and a PROXY listener reads the
    /// header first.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let full = !self.admission.limit.take();
        // A denial wins over the limit: a peer the gate refuses at accept
        // is told nothing, not even that the server is full, and is
        // counted as denied (`edge.rs`, `Gate::refuses`). Dropped: closed
        // without a word.
        if full && self.gate.as_ref().is_some_and(|g| g.refuses(peer)) {
            self.tally.stats.denied += 1;
            log::debug!("denied {peer}");
            if let Some(access) = &self.tally.access {
                access_log::write(&access.turned_away(peer, CloseReason::Denied, now));
            }
            return;
        }
        if full {
            self.tally.stats.rejected += 1;
            log::debug!("rejected {peer}: server full");
            // Said where an operator sees it, but at most once a minute:
            // a flood of clients must not write a line each.
            if let Verdict::Log { held } = FULL_NOTICE.check(now, NOTICE_EVERY) {
                logging::for_the_server(|| {
                    log::warn!(
                        "server full (--max-connections {}): turning clients away {}",
                        self.opts.max_connections,
                        since_last(held, "turned away")
                    )
                });
            }
            let waits = self.is_tls() || self.gate.as_ref().is_some_and(|g| g.proxy());
            if !waits || self.admission.rejecting >= MAX_REJECTING {
                if let Some(access) = &self.tally.access {
                    access_log::write(&access.turned_away(peer, CloseReason::ServerFull, now));
                }
                if !waits {
                    reject(stream);
                }
                // Otherwise dropped: closed without a word.
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
        if let Some(conn) = self.conns.get_mut(token) {
            if full {
                conn.refusing = Some(Refusal::ServerFull);
                self.admission.rejecting += 1;
            } else {
                conn.holds_slot = true;
            }
        }
        if let Some(access) = self.tally.access.as_mut() {
            access.open(token, peer, now);
        }
        self.enter(token, peer, now);
    }
}

/// Turns away a client at the connection limit: one best-effort write of the
/// reason, our FIN, and the socket is dropped. Never blocks and never fails
/// the server: the message fits any fresh socket's send buffer.
pub(super) fn reject(stream: TcpStream) {
    use std::io::Write;
    let mut stream = stream;
    let _ = stream.write(super::SERVER_FULL);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
