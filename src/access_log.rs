//! The access log (`--access-log`): one line per connection, at info, when
//! it ends.
//!
//! ```text
//! access conn=7 worker=0 peer=127.0.0.1:51234 duration_ms=1520 bytes_in=12 bytes_out=31 end=done user=alice
//! ```
//!
//! `key=value` fields in a fixed order, so that a line can be parsed with a
//! split on spaces; a value that may hold spaces or quotes (a file name, a
//! TLS error) is written in double quotes with `\` escapes. The fields:
//!
//! | field | what |
//! | --- | --- |
//! | `conn` | the connection's number, as in the debug log, unique in the process (`conn_table.rs`, `number_from`; 0 for a client turned away at accept, [`AccessLog::turned_away`]) |
//! | `worker` | the worker that served it (0 with one) |
//! | `peer` | the client's address; an IPv4-mapped IPv6 one (`::ffff:a.b.c.d`, an IPv4 client of a dual-stack listener) as the IPv4 address it carries |
//! | `duration_ms` | from accept to close |
//! | `bytes_in`, `bytes_out` | application bytes read from the client and written to it, as the stats line counts them (on a TLS listener: plaintext, not records) |
//! | `end` | how it ended: a [`CloseReason`] word ([`CloseReason::word`]) |
//! | `error` | why, when the end was a TLS failure, a socket error or a PROXY header's error |
//! | `tls`, `sni`, `alpn`, `client_subject` | on TLS, once the handshake is done: the version, and the name the client asked for, the protocol agreed and its certificate's subject, each when there is one ([`TlsFields`]) |
//! | the mode's own | chat: `user=NAME`; file: `file="NAME" size=N sent=N`, or `file="NAME" refused=WHY` (see `Protocol::summary`) |
//!
//! A line has this one shape with one worker or many: it names its worker
//! in a field, so the logger does not put `worker N:` before it
//! ([`write`]).
//!
//! The log costs next to nothing while it is off: its records live in a
//! table of their own, indexed like the connection table, that exists only
//! with `--access-log`, so a connection carries no field for it; the
//! per-message path pays one test of an `Option` per read and write.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use mio::Token;

use crate::close::CloseReason;
use crate::quote::{quote_into, token_into};

/// What the access log keeps of one open connection.
#[derive(Debug)]
struct Record {
    /// The generation of the connection the record belongs to (the token's
    /// high half), so that a reused slot never inherits a record.
    token: Token,
    peer: SocketAddr,
    start: Instant,
    bytes_in: u64,
    bytes_out: u64,
    /// The mode's own fact (`user=alice`), taken when the protocol lets go
    /// of the connection.
    summary: Option<String>,
    /// Why it failed, in words, for `error=`.
    error: Option<String>,
    /// What its TLS handshake negotiated, once it is done.
    tls: Option<Box<TlsFields>>,
}

/// What a finished TLS handshake negotiated, for the access log's TLS
/// fields (`connection/tls.rs` reads them from the session).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFields {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The name the client asked for (SNI), if it named one.
    pub sni: Option<String>,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<String>,
    /// The subject of the client's certificate, if it sent one
    /// (`--tls-client-ca`).
    pub client_subject: Option<String>,
}

/// The access log's table of open connections.
#[derive(Debug, Default)]
pub struct AccessLog {
    /// Indexed by the connection's slab key (the token's low 32 bits).
    records: Vec<Option<Record>>,
    /// The worker whose connections these are, for `worker=`.
    worker: usize,
}

/// A connection's slot in the table.
fn slot(token: Token) -> usize {
    token.0 & 0xffff_ffff
}

impl AccessLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// The connections are worker `id`'s.
    pub fn in_worker(&mut self, id: usize) {
        self.worker = id;
    }

    /// A connection was accepted from `peer` at `now`.
    pub fn open(&mut self, token: Token, peer: SocketAddr, now: Instant) {
        let peer = ipv4_if_mapped(peer);
        let i = slot(token);
        if self.records.len() <= i {
            self.records.resize_with(i + 1, || None);
        }
        self.records[i] = Some(Record {
            token,
            peer,
            start: now,
            bytes_in: 0,
            bytes_out: 0,
            summary: None,
            error: None,
            tls: None,
        });
    }

    fn get(&mut self, token: Token) -> Option<&mut Record> {
        self.records
            .get_mut(slot(token))?
            .as_mut()
            .filter(|r| r.token == token)
    }

    /// The client behind a PROXY header: the address the line names.
    pub fn peer(&mut self, token: Token, client: SocketAddr) {
        if let Some(r) = self.get(token) {
            r.peer = ipv4_if_mapped(client);
        }
    }

    /// Counts bytes read from and written to the connection.
    #[inline]
    pub fn count(&mut self, token: Token, bytes_in: u64, bytes_out: u64) {
        if let Some(r) = self.get(token) {
            r.bytes_in += bytes_in;
            r.bytes_out += bytes_out;
        }
    }

    /// Notes the mode's own fact about the connection (once its protocol
    /// lets go of it).
    pub fn summary(&mut self, token: Token, summary: String) {
        if let Some(r) = self.get(token) {
            r.summary = Some(summary);
        }
    }

    /// Notes what the connection's TLS handshake negotiated.
    pub fn tls(&mut self, token: Token, fields: TlsFields) {
        if let Some(r) = self.get(token) {
            r.tls = Some(Box::new(fields));
        }
    }

    /// Notes why the connection failed (the first reason wins).
    pub fn error(&mut self, token: Token, why: &str) {
        if let Some(r) = self.get(token) {
            r.error.get_or_insert_with(|| why.to_string());
        }
    }

    /// The connection ended: returns its line, and forgets it.
    pub fn close(&mut self, token: Token, reason: CloseReason, now: Instant) -> Option<String> {
        let r = self.records.get_mut(slot(token))?;
        if r.as_ref().is_none_or(|r| r.token != token) {
            return None;
        }
        let r = r.take()?;
        let duration_ms = now.saturating_duration_since(r.start).as_millis();
        Some(line(self.worker, &r, duration_ms, reason))
    }

    /// The line for a client turned away at accept, which never has a
    /// record: at `--max-connections` (`end=server_full`), or denied while
    /// the server is full (`end=denied`).
    pub fn turned_away(&self, peer: SocketAddr, end: CloseReason, now: Instant) -> String {
        let r = Record {
            token: Token(0),
            peer: ipv4_if_mapped(peer),
            start: now,
            bytes_in: 0,
            bytes_out: 0,
            summary: None,
            error: None,
            tls: None,
        };
        line(self.worker, &r, 0, end)
    }
}

/// `addr`, written as IPv4 if it is an IPv4-mapped IPv6 address: how a
/// dual-stack listener sees an IPv4 client (`edge::canonical`, as allow
/// and deny match it).
fn ipv4_if_mapped(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(crate::edge::canonical(addr.ip()), addr.port())
}

/// Writes an access line, at info. Its worker is a field of its own, so
/// the logger's `worker N:` is left out: one shape, however many workers.
pub fn write(line: &str) {
    crate::logging::info_unmarked(format_args!("{line}"));
}

/// The line of connection `r`, served by `worker`, which ended for `end`.
fn line(worker: usize, r: &Record, duration_ms: u128, end: CloseReason) -> String {
    let mut out = String::with_capacity(128);
    let _ = write!(
        out,
        "access conn={} worker={worker} peer={} duration_ms={duration_ms} \
         bytes_in={} bytes_out={} end={}",
        r.token.0 >> 32,
        r.peer,
        r.bytes_in,
        r.bytes_out,
        end.word()
    );
    if let Some(e) = &r.error {
        out.push_str(" error=");
        quote_into(&mut out, e);
    }
    if let Some(tls) = &r.tls {
        out.push_str(" tls=");
        token_into(&mut out, &tls.version);
        for (key, value) in [("sni", &tls.sni), ("alpn", &tls.alpn)] {
            if let Some(v) = value {
                let _ = write!(out, " {key}=");
                token_into(&mut out, v);
            }
        }
        if let Some(subject) = &tls.client_subject {
            out.push_str(" client_subject=");
            quote_into(&mut out, subject);
        }
    }
    if let Some(s) = &r.summary {
        out.push(' ');
        out.push_str(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::quoted;
    use std::time::Duration;

    fn peer() -> SocketAddr {
        "127.0.0.1:5555".parse().unwrap()
    }

    #[test]
    fn a_line_has_every_field_in_order() {
        let t0 = Instant::now();
        let mut log = AccessLog::new();
        let token = Token(7 << 32 | 3);
        log.open(token, peer(), t0);
        log.summary(token, "user=alice".into());
        log.count(token, 12, 0);
        log.count(token, 0, 31);
        let line = log
            .close(
                token,
                CloseReason::IdleTimeout,
                t0 + Duration::from_millis(1520),
            )
            .unwrap();
        assert_eq!(
            line,
            "access conn=7 worker=0 peer=127.0.0.1:5555 duration_ms=1520 bytes_in=12 \
             bytes_out=31 end=idle_timeout user=alice"
        );
        assert_eq!(log.close(token, CloseReason::Done, t0), None, "logged once");
    }

    #[test]
    fn errors_are_quoted_and_a_reused_slot_has_no_record() {
        let t0 = Instant::now();
        let mut log = AccessLog::new();
        let old = Token(1 << 32);
        log.open(old, peer(), t0);
        log.error(old, "bad \"cert\"\n");
        log.error(old, "second reason is ignored");
        let line = log.close(old, CloseReason::TlsFailure, t0).unwrap();
        assert!(
            line.ends_with(r#"end=tls_failure error="bad \"cert\"\x0a""#),
            "{line}"
        );
        let new = Token(2 << 32);
        log.count(new, 1, 1);
        assert_eq!(log.close(new, CloseReason::Done, t0), None);
    }

    #[test]
    fn tls_fields_come_after_the_end_and_only_when_known() {
        let t0 = Instant::now();
        let mut log = AccessLog::new();
        let token = Token(4 << 32);
        log.open(token, peer(), t0);
        log.tls(
            token,
            TlsFields {
                version: "TLSv1.3".into(),
                sni: Some("example.org".into()),
                alpn: Some("my proto".into()),
                client_subject: Some("CN=alice,O=Example\\, Inc.".into()),
            },
        );
        log.summary(token, "user=alice".into());
        let line = log.close(token, CloseReason::Done, t0).unwrap();
        assert!(
            line.ends_with(
                r#"end=done tls=TLSv1.3 sni=example.org alpn="my proto" client_subject="CN=alice,O=Example\\, Inc." user=alice"#
            ),
            "{line}"
        );
        log.open(token, peer(), t0);
        log.tls(
            token,
            TlsFields {
                version: "TLSv1.2".into(),
                ..TlsFields::default()
            },
        );
        let line = log.close(token, CloseReason::Done, t0).unwrap();
        assert!(line.ends_with("end=done tls=TLSv1.2"), "{line}");
    }

    #[test]
    fn a_mapped_address_is_written_as_ipv4() {
        let t0 = Instant::now();
        let mut log = AccessLog::new();
        let token = Token(3 << 32);
        log.open(token, "[::ffff:192.0.2.1]:80".parse().unwrap(), t0);
        let line = log.close(token, CloseReason::Done, t0).unwrap();
        assert!(line.contains(" peer=192.0.2.1:80 "), "{line}");
        log.open(token, "[2001:db8::1]:80".parse().unwrap(), t0);
        let line = log.close(token, CloseReason::Done, t0).unwrap();
        assert!(line.contains(" peer=[2001:db8::1]:80 "), "{line}");
    }

    #[test]
    fn a_turned_away_client_has_its_own_line() {
        let mut log = AccessLog::new();
        log.in_worker(2);
        assert_eq!(
            log.turned_away(peer(), CloseReason::ServerFull, Instant::now()),
            "access conn=0 worker=2 peer=127.0.0.1:5555 duration_ms=0 bytes_in=0 \
             bytes_out=0 end=server_full"
        );
        assert_eq!(quoted("a b"), "\"a b\"");
    }
}
