//! The cluster link: broadcast and chat across instances, over Redis
//! (`--cluster redis://...`), driven by the same loop as the clients. A
//! loop that is a server and a client at once.
//!
//! Each worker's loop holds one [`Cluster`] (in its hub, `hub.rs`) with two
//! connections to Redis (`cluster/link.rs`): the *writer*, which sends
//! commands (`XADD`, name claims) pipelined, and the *reader*, which spends
//! its life in a blocking `XREAD` on the mode's stream and so can send
//! nothing else. Both are non-blocking sockets in the loop's poll, with
//! their deadlines in the loop's timer heap, like a client's.
//!
//! ```text
//!  this turn's lines --flush--> outbox --XADD (writer)--> Redis stream
//!   (one entry per turn)        (kept until Redis            |
//!                                acknowledges)               | XREAD BLOCK (reader)
//!  other instances' entries <-- one chunk per reply <--------+
//! ```
//!
//! - **What is published.** What a turn says to the room becomes one
//!   stream entry (`cluster/entry.rs`), numbered by its publisher (this
//!   worker of this instance). Entries wait in the *outbox* until Redis
//!   answers their `XADD`; a link that breaks sends again, in order, every
//!   entry not acknowledged, and readers drop a number they have already
//!   seen: exactly once, in order, across outages. While Redis is away the
//!   outbox fills up to `--cluster-outbox`; lines that do not fit are
//!   dropped (never reordered) and counted.
//! - **What is read.** The reader starts at the stream's end (nothing
//!   older is replayed) and asks for what follows the last id it has seen,
//!   so after an outage it catches up from the stream; a line from this
//!   instance is skipped (its workers had it through the hub). What one
//!   reply brings is delivered as one shared chunk, as a local turn is.
//! - **Backpressure.** The link is a receiver like any other. `XADD`s go
//!   out in a window of `--write-limit` bytes not yet acknowledged; past
//!   `--write-limit` of lines Redis has not acknowledged, a linked writer
//!   holds the local senders (the loop asks [`Cluster::holding`], as it
//!   asks whether another worker's receivers hold them), and past twice
//!   that it is dropped, counted, and connects again. A link that is down
//!   holds nobody: local delivery goes on.
//! - **Failure.** A connect, a greeting or a reply that does not come in
//!   time, an error answering the greeting or a read, or a reply that is
//!   not RESP drops the link (an `XADD` Redis refuses drops that entry,
//!   counted; a claim it refuses is "unavailable"); the link is
//!   tried again after a backoff from 100 ms to 5 s with jitter, the host
//!   name looked up again each time without blocking the loop
//!   (`cluster/resolve.rs`). Local delivery never waits for Redis.
//! - **Chat's names.** A name is claimed in Redis with a script that sets
//!   `PREFIX:chat:name:NAME` to its holder if it is free (`EX 30`); the
//!   user waits for the answer (CLAIMING in `protocol/chat.rs`), for at
//!   most 5 s, after which the chat is unavailable to them. The holder
//!   refreshes its names every 10 s (the same script: a name that expired
//!   meanwhile, after an outage or a Redis restart, is taken again if it
//!   is free) and releases each at leave with a compare-and-delete. A name
//!   found taken by another instance after an outage loses: its user is
//!   told and closed. Who holds which name elsewhere is mirrored from the
//!   stream (`cluster/roster.rs`) for `/who` and `/msg`.

pub mod entry;
pub mod link;
mod names;
mod publish;
mod read;
pub mod resolve;
pub mod resp;
pub mod roster;
mod transport;
pub mod url;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use entry::{Body, Entry, Publisher};
use link::Link;
use names::{Claiming, Mine};
use resolve::{Lookup, Resolver};
use roster::Roster;

/// The writer's token, the reader's, the resolver's wake-up (`tokens.rs`).
pub use crate::tokens::{
    CLUSTER_READER as READER, CLUSTER_RESOLVED as RESOLVED, CLUSTER_WRITER as WRITER,
};

/// How long the reader's `XREAD` blocks when nothing comes: an idle link
/// wakes its loop once in this long (and a silent Redis is noticed).
pub const BLOCK: Duration = Duration::from_secs(30);
/// Entries kept in a stream (`MAXLEN ~`): how far back an instance can
/// catch up after an outage.
pub const KEEP: usize = 10_000;
/// Entries read per `XREAD`: each is one turn of one publisher (up to a
/// turn's budget of lines), so this bounds one reply's size.
const READ_COUNT: &str = "256";
/// How long a claim on a chat name may wait for Redis.
pub const CLAIM_WAIT: Duration = Duration::from_secs(5);
/// How often a holder refreshes its names and says it is alive.
pub const REFRESH: Duration = Duration::from_secs(10);

/// What the command line says of the cluster (`config::ClusterOptions`,
/// passed in: configuration points at this module, not back).
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: url::ClusterUrl,
    /// What the keys and streams are called after.
    pub prefix: String,
    /// `--cluster-outbox`, in bytes.
    pub outbox: usize,
    /// TLS to Redis (`rediss://`): made by the caller from `--cluster-ca`
    /// or the system's trust store.
    pub tls: link::Tls,
}

/// Which relay the cluster carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Broadcast,
    Chat,
}

/// What the writer sent, awaiting Redis's answer.
#[derive(Debug)]
enum Write {
    /// The outbox's oldest entry not yet acknowledged.
    Xadd,
    /// A claim on a name (its id).
    Claim(u64),
    /// A release; nothing hangs on the answer.
    Release,
    /// A refresh of these keys.
    Refresh,
}

/// What the reader sent.
#[derive(Debug)]
enum Read {
    /// Where the stream ends now: the first read starts there.
    End,
    Xread,
}

/// What arrived from other instances, for the loop's connections (the
/// hub makes it a `hub::Remote`, as what other workers send).
#[derive(Debug)]
pub enum Arrived {
    /// For every member of the room here who was in it `at`.
    Room { chunk: Arc<[u8]>, at: Instant },
    /// For one connection here (a chat `/msg`).
    Direct { to: Token, chunk: Arc<[u8]> },
}

/// Redis's word on a name (the hub makes it a `hub::Claim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The claimant holds it now.
    Granted,
    /// Another does.
    Taken,
    /// Redis did not answer within [`CLAIM_WAIT`].
    Unavailable,
    /// A name held here was found taken by another instance after an
    /// outage (not an answer to a claim).
    Lost,
}

/// The answer to a claim, for the hub and the protocol.
#[derive(Debug)]
pub struct Answered {
    pub conn: Token,
    pub answer: Verdict,
    /// What was claimed, and the key given up if granted.
    pub key: String,
    pub name: String,
    pub previous: Option<String>,
}

/// The cluster's figures, for the stats line and the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// Workers whose link is up (this one: 0 or 1).
    pub linked: u64,
    /// Lines Redis acknowledged, and lines read from other instances
    /// (once per instance, however many workers read them).
    pub published: u64,
    pub received: u64,
    /// Times a link came back after it was lost.
    pub reconnects: u64,
    /// Lines dropped because the outbox was full.
    pub dropped: u64,
    /// Bytes waiting in the outbox.
    pub outbox: u64,
    /// Writers dropped for owing more than twice `--write-limit`.
    pub slow: u64,
}

impl Figures {
    pub fn add(&mut self, other: &Figures) {
        self.linked += other.linked;
        self.published += other.published;
        self.received += other.received;
        self.reconnects += other.reconnects;
        self.dropped += other.dropped;
        self.outbox += other.outbox;
        self.slow += other.slow;
    }
}

/// Workers whose link is down, process-wide, so that an outage is one
/// warning and one recovery line whatever the number of workers.
static DOWN: AtomicUsize = AtomicUsize::new(0);
/// The first link's line was written.
static LINKED: AtomicBool = AtomicBool::new(false);
/// When an outage was last warned of: one that begins within
/// [`WARN_QUIET`] of it (a Redis that greets well and breaks each link
/// soon after) is logged as info, so that a Redis that misbehaves is one
/// warning a minute at most, not one per attempt.
static WARNED: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
const WARN_QUIET: Duration = Duration::from_secs(60);

/// Where this worker's link stands, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linked {
    /// Not yet linked since start.
    Never,
    Up,
    /// Down since then; `ever`: it had been up before (a reconnect is
    /// counted when it is back), else never reached since start.
    Down {
        since: Instant,
        ever: bool,
    },
}

/// One worker's link to the cluster. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    kind: Kind,
    me: Publisher,
    opts: Settings,
    stream: String,
    writer: Link<Write>,
    reader: Link<Read>,
    resolver: Resolver,
    /// Links waiting for the resolver's answer.
    awaiting: [bool; 2],
    greeting: Vec<(&'static str, Vec<u8>)>,
    write_limit: usize,
    /// This worker's entries: the last number used; what this turn said;
    /// what waits for Redis's acknowledgement, and how many of those
    /// were sent on the current link.
    seq: u64,
    turn: Vec<Body>,
    outbox: VecDeque<(Entry, usize)>,
    outbox_bytes: usize,
    in_flight: usize,
    /// Bytes of those sent: at most about `--write-limit` are (a window).
    in_flight_bytes: usize,
    /// How large the outbox may grow while the writer is up before it is
    /// judged not to keep up: twice `--write-limit`, or what an outage
    /// left in it when the link came back, shrinking as Redis takes it.
    allowance: usize,
    /// Something was said this turn while local senders were held: only
    /// then does an outbox past the allowance mean Redis is slow.
    said_while_held: bool,
    /// The last stream id read (`None`: the end is not known yet).
    last_id: Option<String>,
    /// When the reader's `XREAD` was sent; when the next is due, if it
    /// waits (`read.rs`: a Redis that answers a blocking read with nothing
    /// at once, without blocking, is asked once a second, not in a spin).
    read_sent: Option<Instant>,
    read_after: Option<Instant>,
    /// The last number taken from each publisher.
    seen: HashMap<Publisher, u64>,
    /// For the loop: what arrived, and the claims answered.
    arrived: Vec<Arrived>,
    answers: Vec<Answered>,
    /// Chat: names held here, by key; claims in flight; others' names.
    mine: BTreeMap<String, Mine>,
    claims: Vec<Claiming>,
    next_claim: u64,
    roster: Roster,
    refresh_due: Option<Instant>,
    linked: Linked,
    /// This outage's dropped lines were announced.
    dropping_said: bool,
    /// Redis refused an entry, and was not yet seen to take one since: it
    /// was said once, and further refusals are only counted.
    refusing_said: bool,
    figures: Figures,
}

impl Cluster {
    /// The link of worker `worker` of instance `instance`; its first
    /// connect is due at once.
    pub fn new(
        opts: Settings,
        kind: Kind,
        instance: u64,
        worker: u32,
        write_limit: usize,
        now: Instant,
    ) -> Self {
        let stream = match kind {
            Kind::Broadcast => format!("{}:broadcast", opts.prefix),
            Kind::Chat => format!("{}:chat", opts.prefix),
        };
        let url = &opts.url;
        let mut greeting = Vec::new();
        if let Some(password) = &url.password {
            let mut auth = Vec::new();
            match &url.user {
                Some(user) => {
                    resp::command(&mut auth, &[b"AUTH", user.as_bytes(), password.as_bytes()])
                }
                None => resp::command(&mut auth, &[b"AUTH", password.as_bytes()]),
            }
            greeting.push(("AUTH", auth));
        }
        if let Some(db) = url.db {
            let mut select = Vec::new();
            resp::command(&mut select, &[b"SELECT", db.to_string().as_bytes()]);
            greeting.push(("SELECT", select));
        }
        let seed = instance ^ (u64::from(worker) << 32);
        Self {
            kind,
            me: Publisher { instance, worker },
            stream,
            writer: Link::new(WRITER, seed, Duration::ZERO, now),
            reader: Link::new(READER, seed.rotate_left(17), BLOCK, now),
            resolver: Resolver::new(&url.host, url.port, RESOLVED),
            awaiting: [false; 2],
            greeting,
            write_limit,
            seq: 0,
            turn: Vec::new(),
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            allowance: 2 * write_limit,
            said_while_held: false,
            last_id: None,
            read_sent: None,
            read_after: None,
            seen: HashMap::new(),
            arrived: Vec::new(),
            answers: Vec::new(),
            mine: BTreeMap::new(),
            claims: Vec::new(),
            next_claim: 0,
            roster: Roster::default(),
            refresh_due: None,
            linked: Linked::Never,
            dropping_said: false,
            refusing_said: false,
            figures: Figures::default(),
            opts,
        }
    }

    /// True for the tokens a cluster owns.
    pub fn owns(token: Token) -> bool {
        token == WRITER || token == READER || token == RESOLVED
    }

    /// True while both links answer.
    pub fn is_up(&self) -> bool {
        self.writer.is_ready() && self.reader.is_ready()
    }

    /// This worker's figures.
    pub fn figures(&self) -> Figures {
        Figures {
            linked: u64::from(self.is_up()),
            outbox: self.outbox_bytes as u64,
            ..self.figures
        }
    }

    /// The other instances' chat names.
    pub fn roster(&mut self) -> &mut Roster {
        &mut self.roster
    }

    /// True while Redis, linked, has not yet taken more than
    /// `--write-limit` of this worker's lines: local senders wait, as for a
    /// receiver that is catching up. (A link that is down holds nobody:
    /// local delivery goes on, and the outbox keeps the lines.)
    pub fn holding(&self) -> bool {
        self.writer.is_ready() && self.outbox_bytes > self.write_limit
    }

    /// True while entries wait for a writer that is up (shutdown waits
    /// for them, within the drain timeout).
    pub fn owes(&self) -> bool {
        self.writer.is_ready() && (!self.outbox.is_empty() || !self.turn.is_empty())
    }

    /// What arrived from other instances since last asked.
    pub fn take_arrived(&mut self) -> Vec<Arrived> {
        std::mem::take(&mut self.arrived)
    }

    /// Claims answered since last asked.
    pub fn take_answers(&mut self) -> Vec<Answered> {
        std::mem::take(&mut self.answers)
    }

    /// The earliest moment something is due: a link's retry or bound, a
    /// claim's wait, the refresh, a silent publisher's lease.
    pub fn next_deadline(&self) -> Option<Instant> {
        let claims = self.claims.iter().map(|c| c.since + CLAIM_WAIT).min();
        // Only chat expires its roster (`tick`); a deadline that `tick`
        // does not move would fire again at once, for ever.
        let roster = (self.kind == Kind::Chat && self.reader.is_ready())
            .then(|| self.roster.next_expiry())
            .flatten();
        [
            self.writer.deadline(),
            self.reader.deadline(),
            claims,
            self.refresh_due.filter(|_| self.writer.is_ready()),
            self.read_after.filter(|_| self.reader.is_ready()),
            roster,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A cluster socket is ready (or the resolver answered).
    pub fn event(&mut self, token: Token, registry: &Registry, now: Instant) {
        match token {
            WRITER => {
                for happened in self.writer.ready(registry, now) {
                    self.handle_writer(happened, now);
                }
                self.write(registry, now);
            }
            READER => {
                for happened in self.reader.ready(registry, now) {
                    self.handle_reader(happened, registry, now);
                }
                self.flush_reader(registry, now);
            }
            _ => self.resolved(registry, now),
        }
    }

    /// Writes what the reader has queued; a link that cannot take it is
    /// dropped.
    fn flush_reader(&mut self, registry: &Registry, now: Instant) {
        if let Err(e) = self.reader.flush(registry) {
            let failed = self.reader.fail(e.to_string(), now);
            self.handle_reader(failed, registry, now);
        }
    }

    /// Something is due (`next_deadline` passed).
    pub fn tick(&mut self, registry: &Registry, now: Instant) {
        // A link that stopped at its read budget reads on (and a reply
        // among what it reads is in time).
        if self.writer.has_more() {
            self.event(WRITER, registry, now);
        }
        if self.reader.has_more() {
            self.event(READER, registry, now);
        }
        if let Some(failed) = self.writer.expire(now) {
            self.handle_writer(failed, now);
        }
        if let Some(failed) = self.reader.expire(now) {
            self.handle_reader(failed, registry, now);
        }
        if self.reader.is_ready() && self.read_after.is_some_and(|t| now >= t) {
            // The reader is registered for reads only: its next XREAD goes
            // out now, or it would wait for the reply bound to drop the
            // link (found in review).
            self.read_next(now);
            self.flush_reader(registry, now);
        }
        if self.writer.retry_due(now) {
            self.connect(0, registry, now);
        }
        if self.reader.retry_due(now) {
            self.connect(1, registry, now);
        }
        // Claims given up on whose answer never came are forgotten.
        self.claims
            .retain(|c| !(c.abandoned && now >= c.since + CLAIM_WAIT));
        // Claims that waited too long: the chat is unavailable to them.
        let mut i = 0;
        while i < self.claims.len() {
            let c = &mut self.claims[i];
            if now >= c.since + CLAIM_WAIT && !c.abandoned {
                self.answers.push(Answered {
                    conn: c.conn,
                    answer: Verdict::Unavailable,
                    key: c.key.clone(),
                    name: c.name.clone(),
                    previous: c.previous.clone(),
                });
                if c.ever_sent {
                    // Its answer may still come (or came to a link since
                    // lost): a grant is given back.
                    c.abandoned = true;
                    c.since = now + names::ABANDONED;
                } else {
                    self.claims.remove(i);
                    continue;
                }
            }
            i += 1;
        }
        if self.kind == Kind::Chat {
            if self.writer.is_ready() && self.refresh_due.is_some_and(|d| now >= d) {
                self.refresh(now);
            }
            if self.reader.is_ready() {
                let gone = self.roster.expire(now);
                if !gone.is_empty() {
                    let said: String = gone
                        .iter()
                        .map(|n| format!("{n} left the chat\n"))
                        .collect();
                    self.arrived.push(Arrived::Room {
                        chunk: Arc::from(said.into_bytes()),
                        at: now,
                    });
                }
            }
        }
        // What the links owe goes out now; what this tick said (a
        // heartbeat) joins the turn's entry, flushed with it at the turn's
        // end (`Hub::flush`): one entry per turn.
        self.write(registry, now);
    }

    /// Starts link `which` (0 writer, 1 reader) toward Redis.
    fn connect(&mut self, which: usize, registry: &Registry, now: Instant) {
        match self.resolver.start(registry) {
            Ok(Lookup::Now(addr)) => self.connect_to(which, addr, registry, now),
            Ok(Lookup::Later) if self.awaiting[which] => {
                // A lookup that has not answered in 5 s fails this try, as
                // a connect would: warned once, and backed off.
                self.awaiting[which] = false;
                let why = format!("no answer from the resolver for {}", self.opts.url.host);
                self.failed_to_start(which, why, registry, now);
            }
            Ok(Lookup::Later) => {
                self.awaiting[which] = true;
                let until = now + link::CONNECT_TIMEOUT;
                match which {
                    0 => self.writer.wait_until(until),
                    _ => self.reader.wait_until(until),
                }
            }
            Err(e) => self.failed_to_start(
                which,
                format!("cannot look up the host: {e}"),
                registry,
                now,
            ),
        }
    }

    fn connect_to(
        &mut self,
        which: usize,
        addr: std::net::SocketAddr,
        registry: &Registry,
        now: Instant,
    ) {
        let started = match which {
            0 => self
                .writer
                .connect(addr, &self.opts.tls, &self.greeting, registry, now),
            _ => self
                .reader
                .connect(addr, &self.opts.tls, &self.greeting, registry, now),
        };
        if let Err(e) = started {
            self.failed_to_start(which, e.to_string(), registry, now);
        }
    }

    fn failed_to_start(&mut self, which: usize, why: String, registry: &Registry, now: Instant) {
        match which {
            0 => {
                let failed = self.writer.fail(why, now);
                self.handle_writer(failed, now);
            }
            _ => {
                let failed = self.reader.fail(why, now);
                self.handle_reader(failed, registry, now);
            }
        }
    }

    /// The resolver answered: the links waiting for it connect.
    fn resolved(&mut self, registry: &Registry, now: Instant) {
        let Some(answer) = self.resolver.answer() else {
            return;
        };
        for which in 0..2 {
            if !std::mem::take(&mut self.awaiting[which]) {
                continue;
            }
            let failures = match which {
                0 => self.writer.failures,
                _ => self.reader.failures,
            };
            match &answer {
                Ok(addrs) if !addrs.is_empty() => {
                    // After a failure, the next address the name has.
                    let addr = addrs[failures as usize % addrs.len()];
                    self.connect_to(which, addr, registry, now);
                }
                Ok(_) => {
                    let why = format!("{} has no address", self.opts.url.host);
                    self.failed_to_start(which, why, registry, now);
                }
                Err(e) => {
                    let why = format!("cannot look up {}: {e}", self.opts.url.host);
                    self.failed_to_start(which, why, registry, now);
                }
            }
        }
    }

    /// A link came up (`why` is `None`) or failed: the log hears of an
    /// outage once, and of its end once, for the whole process.
    fn link_changed(&mut self, why: Option<&str>, now: Instant) {
        let url = &self.opts.url;
        match (why, self.linked) {
            (None, Linked::Up) => {}
            (None, was) if self.is_up() => {
                self.linked = Linked::Up;
                self.dropping_said = false;
                let after = match was {
                    Linked::Down { since, ever } => {
                        let last = DOWN.fetch_sub(1, Ordering::AcqRel) == 1;
                        let waited = tenths(now.saturating_duration_since(since));
                        if ever {
                            self.figures.reconnects += 1;
                            if last {
                                let dropped = match self.figures.dropped {
                                    0 => "no line dropped".to_string(),
                                    n => format!("{n} lines dropped so far (outbox full)"),
                                };
                                crate::logging::for_the_server(|| {
                                    log::info!(
                                        "cluster: linked to {url} again after {waited} s; {dropped}"
                                    )
                                });
                            }
                            return;
                        }
                        format!(", {waited} s after the first try")
                    }
                    _ => String::new(),
                };
                // The first link since start: said once for the process.
                if !LINKED.swap(true, Ordering::AcqRel) {
                    crate::logging::for_the_server(|| {
                        log::info!("cluster: linked to {url} (stream {}){after}", self.stream)
                    });
                }
            }
            (None, _) => {}
            (Some(why), Linked::Down { .. }) => log::debug!("cluster: {url}: {why}; retrying"),
            (Some(why), was) => {
                let ever = was == Linked::Up;
                self.linked = Linked::Down { since: now, ever };
                if DOWN.fetch_add(1, Ordering::AcqRel) == 0 {
                    let doing = if ever { "lost" } else { "cannot reach" };
                    let level = {
                        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
                        match *warned {
                            Some(at) if now.saturating_duration_since(at) < WARN_QUIET => {
                                log::Level::Info
                            }
                            _ => {
                                *warned = Some(now);
                                log::Level::Warn
                            }
                        }
                    };
                    crate::logging::for_the_server(|| {
                        log::log!(
                            level,
                            "cluster: {doing} Redis at {url} ({why}): serving this \
                             instance's clients alone, and retrying"
                        )
                    });
                }
            }
        }
    }
}

/// `d` in seconds with one decimal, as the log writes a wait (`2.5`):
/// whole numbers, so that no float formatting is linked in for a log line.
fn tenths(d: Duration) -> String {
    let t = d.as_millis() / 100;
    format!("{}.{}", t / 10, t % 10)
}

/// A random id for this process, which names it in the cluster (its
/// entries' publisher, its names' holder): a restarted instance is a new
/// one, whose numbering starts afresh.
pub fn instance_id() -> u64 {
    let mut id = [0u8; 8];
    // SAFETY: getrandom writes at most `id.len()` bytes into `id`.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        // No entropy to be had: the clock and the pid differ enough.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return nanos ^ (u64::from(std::process::id()) << 40);
    }
    u64::from_ne_bytes(id)
}

/// Lines in `data`: newlines, or one for a last line without one.
fn lines(data: &[u8]) -> u64 {
    let n = data.iter().filter(|&&b| b == b'\n').count() as u64;
    n + u64::from(data.last().is_some_and(|&b| b != b'\n'))
}

#[cfg(test)]
mod tests;
