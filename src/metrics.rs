//! The metrics listener (`--metrics ADDR`): Prometheus's text format at
//! `/metrics`, and `/healthz` for a load balancer, over HTTP/1.1, served by
//! the loop itself (worker 0's, with several).
//!
//! This module owns the listener and its few connections (a slab of its
//! own, outside the server's table: they never take a `--max-connections`
//! slot and are not counted in the server's figures): reading a request,
//! writing its answer, and the limits. What an answer says, the parsing of
//! a request (`httparse`, which does no I/O) and the Prometheus text, is
//! `metrics/text.rs`'s. The loop (`event_loop/report.rs`) hands it events
//! for its tokens and the figures to show ([`Figures`]); counting stays
//! where it was, in the loop's plain integers, summed only when a scrape
//! asks.
//!
//! - `GET /metrics`: 200, `text/plain; version=0.0.4`, every family with
//!   `# HELP` and `# TYPE`, base units, counters ending in `_total`.
//! - `GET /healthz`: 200 `ok` while the server accepts, 503 `draining`
//!   once a shutdown has begun, so that a balancer stops sending clients
//!   before the listener closes.
//! - `HEAD` answers like `GET` without the body; any other method 405; any
//!   other path 404; a request `httparse` refuses 400; a request header
//!   over 8 KiB 431; one not complete within a second of the accept is
//!   closed ([`HEADER_TIMEOUT`]). Every
//!   answer closes its connection: what a client sends after its first
//!   request's header is never read as a request, only thrown away until
//!   the client has the answer (a close in stages, [`Stage::Lingering`]).
//! - At most [`MAX_CLIENTS`] clients at once; a newcomer beyond them takes
//!   the place of the oldest whose request is not whole (if none, of a
//!   lingering one, then of one being answered: [`victim`]), so that
//!   connections held open cannot keep a health check out.

mod text;

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::stats::Stats;
use crate::sys;
use crate::tokens::{reserved, METRICS, METRICS_CLIENTS};
pub use text::answer;

/// The metrics listener's token (`tokens.rs`).
pub const LISTENER: Token = METRICS;
/// Metrics clients' tokens are `reserved(FIRST + slot)` (`tokens.rs`).
const FIRST: usize = METRICS_CLIENTS;
/// The largest request header. Reading stops once more than this has
/// come, header or not.
const MAX_REQUEST: usize = 8 * 1024;
/// How long the whole request header may take to arrive, from the accept,
/// however it trickles in. Those who ask here are machines nearby (a
/// Prometheus, a balancer's health check), whose request is one small
/// segment sent as soon as the connection is up: a second is an RTT plus
/// several retransmissions (Linux's RTO is 200 ms at least) and as long
/// as a Kubernetes probe waits for the whole answer by default. It bounds
/// how long a client that never finishes holds a place (issue 19: 5 s
/// made 64 of them a 5 s outage of `/healthz`). Too short to type a
/// request by hand: `printf 'GET /healthz HTTP/1.0\r\n\r\n' | nc`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// From the moment a request is answered, how long writing the answer and
/// closing in stages (our FIN, then the client's input read and discarded
/// until it has the answer) may take: as long as the server gives its own
/// connections (`CLOSE_GRACE`). A client that holds on to it gives its
/// place to a newcomer first ([`victim`]).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes a lingering client's event reads and discards at most, so that
/// one client streaming at it cannot hold the loop; more brings another
/// event.
const DISCARD_PER_EVENT: usize = 16 * 1024;
/// At most this many clients at once. A newcomer beyond them is not left
/// to wait: it takes the place of the one that matters least ([`victim`]).
pub const MAX_CLIENTS: usize = 64;
/// Accepts per listener event: one table's worth. Beyond it, each newcomer
/// would take the place of one accepted in the same event before that one
/// could say a word; the rest of the backlog is accepted at the next event.
const ACCEPTS_PER_EVENT: usize = MAX_CLIENTS;

/// What a scrape shows: the server's figures, summed over workers.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub stats: Stats,
    pub active: usize,
    /// Connections a shutdown's drain still waits for (0 unless draining).
    /// Most gave their slot back when the drain began, and `active` no
    /// longer counts them; a download that goes on through the drain
    /// (`Drain::Finish`) keeps its slot, and counts in both.
    pub draining_conns: usize,
    /// What the server was set up with, the same on every worker: the
    /// scraped worker's.
    pub settings: Settings,
    /// Connections active per worker, with several.
    pub per_worker: Vec<usize>,
    /// Bytes owed to clients now.
    pub queued: u64,
    pub turns: u64,
    pub busy: Duration,
    pub draining: bool,
    pub tls: bool,
}

/// The limits an operator compares the figures with, and the certificate
/// served: what the server was set up with, not what it counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settings {
    pub max_connections: usize,
    /// `--max-per-ip`; 0: no limit.
    pub max_per_ip: usize,
    /// `None`: no idle timeout.
    pub idle_timeout: Option<Duration>,
    pub workers: usize,
    /// The served certificate's notAfter, in seconds since the Unix epoch
    /// (`tls::served`); `None` on a plain server.
    pub certificate_expiry: Option<i64>,
}

/// Where a client is in its one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading the request's header, for [`HEADER_TIMEOUT`] at most.
    Request,
    /// Writing the answer.
    Answering,
    /// Answered, and our FIN sent: reading and discarding until the client
    /// has the whole answer (or its FIN comes), so that close() does not
    /// turn input left unread into a reset that destroys the answer's
    /// tail (RFC 9112, 9.6).
    Lingering,
}

impl Stage {
    /// Who makes room for a newcomer first: the lowest. A request not yet
    /// whole goes first: it cost nothing yet, and the oldest is the least
    /// likely ever to be. Then a lingering client, whose answer is written
    /// and most likely delivered (closing risks only its unacknowledged
    /// tail). Last an answer being written.
    fn eviction_rank(self) -> u8 {
        match self {
            Stage::Request => 0,
            Stage::Lingering => 1,
            Stage::Answering => 2,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Request => "REQUEST",
            Stage::Answering => "ANSWERING",
            Stage::Lingering => "LINGERING",
        })
    }
}

/// A client's place: its stage, when it came, when it is due. No socket,
/// so that the policy ([`victim`]) is tested on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    stage: Stage,
    /// The listener's how-manieth accept it was: the order of arrival. (A
    /// time would not do: a whole backlog is accepted at one `now`.)
    arrival: u64,
    /// When it was accepted.
    accepted: Instant,
    /// When it is closed, whatever it is doing.
    due: Instant,
}

impl Place {
    /// The listener's `arrival`th client, accepted at `now`.
    fn new(arrival: u64, now: Instant) -> Self {
        Self {
            stage: Stage::Request,
            arrival,
            accepted: now,
            due: now + HEADER_TIMEOUT,
        }
    }

    /// Accepted at `now` and not read yet: it has had no chance to send
    /// its request, so it does not make room for those behind it.
    fn fresh(&self, now: Instant) -> bool {
        self.stage == Stage::Request && self.accepted == now
    }

    /// Its request was answered at `now`: the answer and the close have
    /// [`CLOSE_TIMEOUT`] from here.
    fn answered(&mut self, now: Instant) {
        self.due = now + CLOSE_TIMEOUT;
    }
}

/// The client that makes room when every place is taken and a newcomer is
/// here: the lowest stage ([`Stage::eviction_rank`]), and in it the oldest,
/// the one that has had the longest to finish. The newcomer is never the
/// one turned away: an attacker who holds the places cannot keep a scrape
/// or a health check out, only make it take the place of one of his. Nor
/// is a client accepted at this `now` ([`Place::fresh`]): a burst of more
/// newcomers than places would otherwise close the first of them, a
/// health check perhaps, before its request was read (found by
/// `tests/adversarial/metrics.rs` in review).
fn victim<'a>(places: impl IntoIterator<Item = (usize, &'a Place)>, now: Instant) -> Option<usize> {
    places
        .into_iter()
        .filter(|(_, p)| !p.fresh(now))
        .min_by_key(|(_, p)| (p.stage.eviction_rank(), p.arrival))
        .map(|(key, _)| key)
}

/// What a client's socket said when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Nothing more for now, or as much as is read at once.
    Waiting,
    /// The client's FIN: it will send nothing more.
    Ended,
    /// An error (a reset): the client is gone.
    Failed,
}

/// What became of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// All written.
    Done,
    /// The socket is full: WRITABLE brings us back.
    Blocked,
    /// An error: the client is gone.
    Failed,
}

/// What becomes of a client after its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It waits for its socket, or its deadline.
    Wait,
    /// Its exchange is over, or failed: it is dropped, which closes it.
    Close,
}

/// One client: its socket, its place, and its one exchange.
#[derive(Debug)]
struct Client {
    stream: TcpStream,
    place: Place,
    request: Vec<u8>,
    answer: Vec<u8>,
    written: usize,
    /// The client's FIN came: nothing is left unread, no need to linger.
    peer_eof: bool,
}

impl Client {
    fn new(stream: TcpStream, place: Place) -> Self {
        Self {
            stream,
            place,
            request: Vec::new(),
            answer: Vec::new(),
            written: 0,
            peer_eof: false,
        }
    }

    /// Moves the exchange on as far as the socket lets it: reads the
    /// request, answers it, writes the answer, closes in stages.
    fn step(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        figures: impl FnOnce() -> Figures,
    ) -> Step {
        if self.place.stage == Stage::Request {
            let input = self.read_request();
            match input {
                Input::Failed => return Step::Close,
                Input::Ended => self.peer_eof = true,
                Input::Waiting => {}
            }
            match answer(&self.request, figures) {
                Some(a) => self.answer = a,
                // Not whole yet: wait for the rest, unless there will be
                // none.
                None if input == Input::Ended => return Step::Close,
                None => return Step::Wait,
            }
            self.request = Vec::new();
            self.place.answered(now);
            self.set_stage(Stage::Answering);
            let _ = registry.reregister(&mut self.stream, token, Interest::WRITABLE);
        }
        if self.place.stage == Stage::Answering {
            match self.write_answer() {
                Output::Done => {}
                Output::Blocked => return Step::Wait,
                Output::Failed => return Step::Close,
            }
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
            if self.peer_eof {
                return Step::Close;
            }
            self.set_stage(Stage::Lingering);
            // Input already waiting makes this report READABLE at once.
            let _ = registry.reregister(&mut self.stream, token, Interest::READABLE);
        }
        match self.discard() {
            Input::Ended | Input::Failed => Step::Close,
            // Everything we said has arrived: closing cannot destroy it,
            // whatever the client still sends.
            Input::Waiting if sys::unacked(self.stream.as_raw_fd()) == 0 => Step::Close,
            Input::Waiting => Step::Wait,
        }
    }

    /// The one place a client's stage changes, traced as `old -> new`.
    fn set_stage(&mut self, stage: Stage) {
        let Place {
            arrival,
            stage: old,
            ..
        } = self.place;
        log::trace!("metrics client #{arrival}: {old} -> {stage}");
        self.place.stage = stage;
    }

    /// Reads what the client sent, until the socket is empty or more than
    /// the limit has come.
    fn read_request(&mut self) -> Input {
        let mut buf = [0u8; 2048];
        while self.request.len() <= MAX_REQUEST {
            match self.stream.read(&mut buf) {
                // The client said all it will: what it said is answered,
                // if it is whole (`nc -N` sends its request, then FIN).
                Ok(0) => return Input::Ended,
                Ok(n) => self.request.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Input::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Input::Failed,
            }
        }
        Input::Waiting
    }

    /// Reads and throws away what a lingering client sends, up to
    /// `DISCARD_PER_EVENT`.
    fn discard(&mut self) -> Input {
        let mut buf = [0u8; 4096];
        for _ in 0..DISCARD_PER_EVENT / buf.len() {
            match self.stream.read(&mut buf) {
                Ok(0) => return Input::Ended,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Input::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Input::Failed,
            }
        }
        Input::Waiting
    }

    /// Writes what is left of the answer.
    fn write_answer(&mut self) -> Output {
        while self.written < self.answer.len() {
            match self.stream.write(&self.answer[self.written..]) {
                Ok(0) => return Output::Failed,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Output::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Output::Failed,
            }
        }
        Output::Done
    }
}

/// The listener and its clients.
#[derive(Debug)]
pub struct Metrics {
    listener: TcpListener,
    clients: Slab<Client>,
    /// Accepts so far: the next client's [`Place::arrival`].
    arrivals: u64,
    /// An event's accepts stopped at `ACCEPTS_PER_EVENT` with newcomers
    /// perhaps still in the backlog: accept again at this module's next
    /// event or deadline (the listener is edge-triggered: it reports only
    /// newer arrivals).
    backlogged: bool,
}

/// What the loop should do after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Nothing,
    /// A client was accepted, or answered: arm a timer for it at this
    /// time.
    Deadline(Token, Instant),
}

impl Metrics {
    /// Serves `listener`, registered in `registry`.
    pub fn new(mut listener: TcpListener, registry: &Registry) -> io::Result<Self> {
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Self {
            listener,
            clients: Slab::new(),
            arrivals: 0,
            backlogged: false,
        })
    }

    /// True if `token` is the metrics listener's or one of its clients'.
    pub fn owns(token: Token) -> bool {
        token == LISTENER || slot(token).is_some()
    }

    /// Handles an event for one of this module's tokens. `figures` is
    /// asked for only when an answer needs it.
    pub fn event(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        figures: impl FnOnce() -> Figures,
    ) -> Vec<After> {
        if token == LISTENER {
            return self.accept(registry, now);
        }
        let mut after = Vec::new();
        if let Some(key) = slot(token) {
            after.extend(self.serve(key, registry, now, figures));
        }
        after.extend(self.refill(registry, now));
        after
    }

    /// A client's deadline passed: close it if it is still there.
    pub fn expire(&mut self, token: Token, registry: &Registry, now: Instant) -> Vec<After> {
        if let Some(key) = slot(token) {
            if self.clients.get(key).is_some_and(|c| now >= c.place.due) {
                self.clients.remove(key);
            }
        }
        self.refill(registry, now)
    }

    /// When the client of `token` is due, if it is still there.
    pub fn due(&self, token: Token) -> Option<Instant> {
        self.clients.get(slot(token)?).map(|c| c.place.due)
    }

    /// If an event's accepts stopped at the budget, accepts the rest of
    /// the backlog now.
    fn refill(&mut self, registry: &Registry, now: Instant) -> Vec<After> {
        if self.backlogged {
            self.accept(registry, now)
        } else {
            Vec::new()
        }
    }

    /// Accepts newcomers, `ACCEPTS_PER_EVENT` at most; each finds a place,
    /// made for it if need be ([`make_room`](Self::make_room)). Returns
    /// their deadlines.
    fn accept(&mut self, registry: &Registry, now: Instant) -> Vec<After> {
        let mut after = Vec::new();
        for _ in 0..ACCEPTS_PER_EVENT {
            // Who makes room, chosen before the accept: if every place is
            // a newcomer not read yet, the rest wait in the backlog for the
            // next event (a newcomer's request) or deadline.
            let room = if self.clients.len() < MAX_CLIENTS {
                None
            } else if let Some(key) = self.victim(now) {
                Some(key)
            } else {
                self.backlogged = true;
                return after;
            };
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: all taken. Anything else: try at the next
                // event; the server's own clients are unaffected.
                Err(_) => {
                    self.backlogged = false;
                    return after;
                }
            };
            if let Some(key) = room {
                self.make_room(key);
            }
            let entry = self.clients.vacant_entry();
            let token = reserved(FIRST + entry.key());
            if registry
                .register(&mut stream, token, Interest::READABLE)
                .is_err()
            {
                continue;
            }
            self.arrivals += 1;
            let place = Place::new(self.arrivals, now);
            after.push(After::Deadline(token, place.due));
            entry.insert(Client::new(stream, place));
        }
        self.backlogged = true;
        after
    }

    /// Every place is taken and a newcomer is here: `key`, the [`victim`], is
    /// closed to make room, as nginx, out of connections, closes its
    /// oldest idle ones (`ngx_drain_connections`) rather than refuse new
    /// ones. A request still trickling in goes as an idle one would: the
    /// newcomer's may be whole a moment later, and the trickler has had
    /// longer than anyone.
    ///
    /// The newcomer takes the victim's slot, and so its token, in the same
    /// turn (clients' tokens have no generation). An event left for the
    /// victim then reaches the newcomer as the spurious wakeup mio allows
    /// (a read that would block); a timer entry left for it closes only a
    /// client whose own deadline has passed (`expire` compares).
    fn make_room(&mut self, key: usize) {
        let gone = self.clients.remove(key).place;
        log::debug!(
            "metrics: all {MAX_CLIENTS} places taken; client #{} ({}) closed to make room",
            gone.arrival,
            gone.stage
        );
    }

    /// Who would make room now ([`victim`]).
    fn victim(&self, now: Instant) -> Option<usize> {
        victim(self.clients.iter().map(|(key, c)| (key, &c.place)), now)
    }

    /// Serves one client's event; drops it once its exchange is over.
    /// Returns its new deadline if its request was answered.
    fn serve(
        &mut self,
        key: usize,
        registry: &Registry,
        now: Instant,
        figures: impl FnOnce() -> Figures,
    ) -> Option<After> {
        let client = self.clients.get_mut(key)?;
        let (token, due) = (reserved(FIRST + key), client.place.due);
        match client.step(token, registry, now, figures) {
            Step::Close => {
                self.clients.remove(key);
                None
            }
            Step::Wait => {
                (client.place.due != due).then_some(After::Deadline(token, client.place.due))
            }
        }
    }
}

/// The slot of a client's token, if it is one.
fn slot(token: Token) -> Option<usize> {
    let key_bits = LISTENER.0 & 0xffff_ffff;
    if token.0 & 0xffff_ffff != key_bits {
        return None;
    }
    (token.0 >> 32).checked_sub(FIRST)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client at `stage`, the listener's `arrival`th, accepted at `at`.
    fn place(stage: Stage, arrival: u64, at: Instant) -> Place {
        Place {
            stage,
            ..Place::new(arrival, at)
        }
    }

    /// Who makes room, among `places` (slab key, place).
    fn victim_of(places: &[(usize, Place)]) -> Option<usize> {
        let long_after = Instant::now() + HEADER_TIMEOUT * 10;
        victim(places.iter().map(|(key, p)| (*key, p)), long_after)
    }

    #[test]
    fn a_newcomer_not_read_yet_makes_no_room() {
        let (before, now) = (Instant::now(), Instant::now() + HEADER_TIMEOUT / 2);
        let places = [
            (1, place(Stage::Request, 1, now)),
            (2, place(Stage::Request, 2, now)),
            (3, place(Stage::Answering, 0, before)),
        ];
        // The oldest request, but accepted at this `now`: the answer
        // being written makes room instead.
        let of = |ps: &[(usize, Place)]| victim(ps.iter().map(|(k, p)| (*k, p)), now);
        assert_eq!(of(&places), Some(3));
        // Only newcomers: nobody, and the rest wait in the backlog.
        assert_eq!(of(&places[..2]), None);
        // A turn later they are like anyone.
        let later = now + Duration::from_millis(1);
        assert_eq!(victim(places.iter().map(|(k, p)| (*k, p)), later), Some(1));
    }

    #[test]
    fn a_request_is_due_a_second_after_the_accept() {
        let now = Instant::now();
        let p = Place::new(1, now);
        assert_eq!((p.stage, p.due), (Stage::Request, now + HEADER_TIMEOUT));
    }

    #[test]
    fn the_oldest_unfinished_request_makes_room_first() {
        let (now, later) = (Instant::now(), Instant::now() + HEADER_TIMEOUT / 2);
        // Slab keys say nothing of age (places are reused); arrivals do,
        // even among clients accepted at one `now`.
        let places = [
            (7, place(Stage::Answering, 1, now)),
            (3, place(Stage::Request, 4, later)),
            (5, place(Stage::Request, 2, now)),
            (9, place(Stage::Request, 3, now)),
        ];
        // Not the older answer being written: the oldest request.
        assert_eq!(victim_of(&places), Some(5));
        assert_eq!(victim_of(&places[1..]), Some(5));
        assert_eq!(victim_of(&[places[1], places[3]]), Some(9));
        // No request left: a lingering client, whose answer is written,
        // before an answer being written; the oldest, rather than refuse.
        let answered = [
            (2, place(Stage::Answering, 6, later)),
            (4, place(Stage::Answering, 5, later)),
            (6, place(Stage::Lingering, 8, later)),
            (8, place(Stage::Lingering, 7, later)),
        ];
        assert_eq!(victim_of(&answered), Some(8));
        assert_eq!(victim_of(&answered[..2]), Some(4));
        assert_eq!(victim_of(&[]), None);
    }

    #[test]
    fn an_answer_and_its_close_have_their_own_deadline() {
        let now = Instant::now();
        let mut p = Place::new(1, now);
        // Answered near the end of the header's second: the close is not
        // cut short by it.
        let answered = now + HEADER_TIMEOUT - Duration::from_millis(1);
        p.answered(answered);
        assert_eq!(p.due, answered + CLOSE_TIMEOUT);
    }

    #[test]
    fn client_tokens_are_told_apart() {
        assert!(Metrics::owns(LISTENER));
        assert!(Metrics::owns(reserved(FIRST + 5)));
        assert_eq!(slot(reserved(FIRST + 5)), Some(5));
        assert!(!Metrics::owns(reserved(2)));
        assert!(!Metrics::owns(Token(1 << 32)));
    }
}
