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
//!   other path 404; a request header over 8 KiB 431; one not complete
//!   within a second of the accept is closed ([`HEADER_TIMEOUT`]). Every
//!   answer closes its connection: what a client sends after its first
//!   request's header is never read as a request.

mod text;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::stats::Stats;
use crate::tokens::{reserved, METRICS, METRICS_CLIENTS};
use text::answer;

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
/// segment sent with the handshake's last ACK: a second is an RTT plus
/// several retransmissions (Linux's RTO is 200 ms at least) and as long
/// as a Kubernetes probe waits for the whole answer by default. It bounds
/// how long a client that never finishes holds a place (issue 19: 5 s
/// made 64 of them a 5 s outage of `/healthz`). Too short to type a
/// request by hand: `printf 'GET /healthz HTTP/1.0\r\n\r\n' | nc`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// At most this many scrapes at once; more wait in the backlog.
pub const MAX_CLIENTS: usize = 64;

/// What a scrape shows: the server's figures, summed over workers.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub stats: Stats,
    pub active: usize,
    /// Connections active per worker, with several.
    pub per_worker: Vec<usize>,
    /// Bytes owed to clients now.
    pub queued: u64,
    pub turns: u64,
    pub busy: Duration,
    pub draining: bool,
    pub tls: bool,
}

/// One scrape in progress.
#[derive(Debug)]
struct Client {
    stream: TcpStream,
    request: Vec<u8>,
    answer: Vec<u8>,
    written: usize,
    due: Instant,
}

/// The listener and its clients.
#[derive(Debug)]
pub struct Metrics {
    listener: TcpListener,
    clients: Slab<Client>,
    /// Accepting stopped at `MAX_CLIENTS` with scrapes perhaps still in
    /// the backlog: accept again as soon as a client goes.
    full: bool,
}

/// What the loop should do after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Nothing,
    /// A client was accepted: arm a timer for it at this time.
    Deadline(Token, Instant),
}

impl Metrics {
    /// Serves `listener`, registered in `registry`.
    pub fn new(mut listener: TcpListener, registry: &Registry) -> io::Result<Self> {
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Self {
            listener,
            clients: Slab::new(),
            full: false,
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
        if let Some(key) = slot(token) {
            self.serve(key, registry, figures);
        }
        self.refill(registry, now)
    }

    /// A client's deadline passed: close it if it is still there.
    pub fn expire(&mut self, token: Token, registry: &Registry, now: Instant) -> Vec<After> {
        if let Some(key) = slot(token) {
            if self.clients.get(key).is_some_and(|c| now >= c.due) {
                self.clients.remove(key);
            }
        }
        self.refill(registry, now)
    }

    /// When the client of `token` is due, if it is still there.
    pub fn due(&self, token: Token) -> Option<Instant> {
        self.clients.get(slot(token)?).map(|c| c.due)
    }

    /// After a client went: if accepting had stopped at the limit, accept
    /// what waits in the backlog (the listener is edge-triggered: no new
    /// event would say so).
    fn refill(&mut self, registry: &Registry, now: Instant) -> Vec<After> {
        if self.full && self.clients.len() < MAX_CLIENTS {
            self.accept(registry, now)
        } else {
            Vec::new()
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant) -> Vec<After> {
        let mut after = Vec::new();
        self.full = false;
        loop {
            if self.clients.len() >= MAX_CLIENTS {
                self.full = true;
                break;
            }
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let entry = self.clients.vacant_entry();
                    let token = reserved(FIRST + entry.key());
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let due = now + HEADER_TIMEOUT;
                    entry.insert(Client {
                        stream,
                        request: Vec::new(),
                        answer: Vec::new(),
                        written: 0,
                        due,
                    });
                    after.push(After::Deadline(token, due));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: all taken. Anything else: try at the next
                // event; the server's own clients are unaffected.
                Err(_) => break,
            }
        }
        after
    }

    /// Reads the request, answers it, writes the answer, closes.
    fn serve(&mut self, key: usize, registry: &Registry, figures: impl FnOnce() -> Figures) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.answer.is_empty() {
            let mut buf = [0u8; 2048];
            loop {
                match client.stream.read(&mut buf) {
                    // The client said all it will: answer what it said, if
                    // anything (`nc -N` sends its request, then FIN).
                    Ok(0) if !client.request.is_empty() => break,
                    Ok(0) => {
                        self.clients.remove(key);
                        return;
                    }
                    Ok(n) => client.request.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.clients.remove(key);
                        return;
                    }
                }
                if client.request.len() > MAX_REQUEST {
                    break;
                }
            }
            match answer(&client.request, figures) {
                Some(a) => client.answer = a,
                None => return, // not complete yet
            }
            let token = reserved(FIRST + key);
            let _ = registry.reregister(&mut client.stream, token, Interest::WRITABLE);
        }
        loop {
            match client.stream.write(&client.answer[client.written..]) {
                Ok(n) => {
                    client.written += n;
                    if client.written == client.answer.len() {
                        let _ = client.stream.shutdown(std::net::Shutdown::Write);
                        self.clients.remove(key);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.clients.remove(key);
                    return;
                }
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

    #[test]
    fn client_tokens_are_told_apart() {
        assert!(Metrics::owns(LISTENER));
        assert!(Metrics::owns(reserved(FIRST + 5)));
        assert_eq!(slot(reserved(FIRST + 5)), Some(5));
        assert!(!Metrics::owns(reserved(2)));
        assert!(!Metrics::owns(Token(1 << 32)));
    }
}
