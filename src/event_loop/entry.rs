//! Entry: from an admitted socket to an OPEN connection, one state machine.
//!
//! ```text
//!   admitted --PROXY listener--> HEADER --header read, gate rules--+
//!      |                                                           |
//!      +--gate rules (allow/deny, --max-per-ip)--------------------+
//!                                                                  v
//!                            TLS listener: HANDSHAKE --done--> established
//!                            plain TCP: ------------------------> established
//! ```
//!
//! `established` opens the protocol's session, or, for a client turned
//! away (`Connection::refusing`: the server is full, or too many from its
//! address), says why and closes. The words go the way the listener
//! speaks: through TLS after a handshake on a TLS listener, after the
//! PROXY header on a PROXY listener, never as plaintext on a TLS socket.
//! Starting and finishing a handshake is this file's; the loop's other
//! TLS `cfg`s are its configuration (`mod.rs`, `startup.rs`), the reload
//! (`shutdown.rs`), a refused session's close (`closing.rs`) and a refused
//! read (`visit.rs`).
//!
//! `accepted` counts a connection when it is let in to be served: the
//! gate said go (or there is no gate) and it holds a slot, before any TLS
//! handshake (one that then fails is also a `tls_failures`). Those the gate
//! turned away are counted in their own counters (`denied`,
//! `per_ip_rejected`, `proxy_errors`), those the limit turned away in
//! `rejected`.

use std::net::SocketAddr;
use std::time::Instant;

use mio::Token;

use super::admission::MAX_REJECTING;
use super::closing::{Origin, PeerEnd, CLOSE_GRACE};
use super::{step_ctx, Server};
use crate::connection::{ReadOutcome, Refusal, Stage};
use crate::edge::{Entry, HeaderStep};
use crate::protocol::CloseReason;

/// Sent to a client turned away at `--max-connections`.
pub const SERVER_FULL: &[u8] = b"Server is full. Try again later.\n";
/// Sent to a client over `--max-per-ip`.
pub const TOO_MANY: &[u8] = b"Too many connections from your address. Try again later.\n";

impl Server {
    /// A client just admitted (holding a slot, or turned away for the
    /// limit): the gate rules on it, or waits for its PROXY header, and it
    /// begins. A client turned away for the limit is not ruled on unless
    /// its header must be read first.
    pub(super) fn enter(&mut self, token: Token, peer: SocketAddr, now: Instant) {
        let until = now + self.opts.handshake_timeout;
        let refusing = self.conns.get(token).is_some_and(|c| c.refusing.is_some());
        if !refusing {
            log::debug!("conn #{} from {peer}", token.0 >> 32);
        }
        match self.gate.as_mut() {
            Some(gate) if !refusing || gate.proxy() => {
                let entry = gate.at_accept(token, peer);
                if !self.gate_rules(token, entry, until, &[], now) {
                    return;
                }
            }
            _ => {
                if !refusing {
                    self.let_in(token);
                }
            }
        }
        self.begin(token, until, &[], now);
    }

    /// A connection is let in to be served. It is counted as accepted (a
    /// client) once it sends a byte of its own, or ends otherwise than as
    /// a health check (`Tally::client`; `closing.rs`, `ends_as_check`).
    fn let_in(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            conn.unproven = true;
        }
    }

    /// Acts on the gate's word about a connection. Returns true if it goes
    /// on (to be served, or, turned away for the limit already, to be told
    /// so); otherwise it has been closed, turned away, or (its PROXY header
    /// still to come) set to wait for the header until `until`. `first` are
    /// the client's first bytes, if some came with its header. A denial
    /// wins over the limit: a denied client is told nothing.
    pub(super) fn gate_rules(
        &mut self,
        token: Token,
        entry: Entry,
        until: Instant,
        first: &[u8],
        now: Instant,
    ) -> bool {
        let refusing = self.conns.get(token).is_some_and(|c| c.refusing.is_some());
        match entry {
            Entry::Go | Entry::TooMany if refusing => return true,
            Entry::Go => {
                self.let_in(token);
                return true;
            }
            // Nothing read, nothing sent: a scan must learn nothing, and
            // must not flood the log.
            Entry::Refuse => {
                self.tally.stats.denied += 1;
                log::debug!("conn #{}: denied", token.0 >> 32);
                self.close(token, CloseReason::Denied);
            }
            Entry::TooMany => {
                self.tally.stats.per_ip_rejected += 1;
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
    pub(super) fn turn_away(&mut self, token: Token, until: Instant, first: &[u8], now: Instant) {
        let tls = self.is_tls();
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if tls {
            if self.admission.rejecting >= MAX_REJECTING {
                self.close(token, CloseReason::TooManyFromAddress);
                return;
            }
            conn.refusing = Some(Refusal::TooMany);
            self.admission.rejecting += 1;
            self.admission.limit.give_back(conn);
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
    pub(super) fn begin(&mut self, token: Token, until: Instant, first: &[u8], now: Instant) {
        #[cfg(feature = "tls")]
        if let Some((config, _)) = &mut self.tls {
            // With several workers: the configuration worker 0 last
            // reloaded, if it is newer (one atomic load while it is not).
            if let Some(worker) = self.worker.as_mut() {
                worker.tls.follow(config);
            }
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            match crate::tls::ServerSession::new(config.clone()) {
                // The protocol meets the connection when the handshake is
                // done (`established`).
                Ok(session) => match conn.start_tls(session, until, first) {
                    Ok(()) => {
                        // The start of its handshake came with a PROXY
                        // header: a client.
                        if conn.tls_heard() {
                            self.tally.client(conn);
                        }
                        self.settle(token, now)
                    }
                    Err(e) => {
                        self.refused(token, &e, now);
                        self.settle(token, now);
                    }
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
    pub(super) fn first_input(&mut self, token: Token, input: &[u8], now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.stage() != Stage::Open {
            return;
        }
        // Bytes of its own after the header: a client.
        self.tally.client(conn);
        self.tally.count(token, input.len(), 0);
        let mut ctx = step_ctx(now, input, &mut self.staging, &mut self.relay);
        let step = self.protocol.data(token, input, &mut ctx);
        let (fanned_out, as_is) = (ctx.fanned_out(), ctx.reply_is_input());
        if self.fans_out {
            self.relay.pacing.spend(fanned_out);
        }
        if as_is {
            self.staging.extend_from_slice(input);
        }
        self.emit(token, now);
        self.after_step(token, step, Origin::Input, now);
    }

    /// A visit to a connection whose PROXY header is still arriving: one
    /// read, fed to the gate; once the header is whole, the gate rules on
    /// the client it names, and the connection starts (its TLS handshake,
    /// under the same deadline, or its protocol).
    pub(super) fn read_header(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let (Some(gate), Stage::Header { until }) = (self.gate.as_mut(), conn.stage()) else {
            return;
        };
        let outcome = conn.read(&mut self.scratch, self.tally.work(), now);
        let n = match outcome {
            ReadOutcome::Data(n) => n,
            ReadOutcome::Drained => return,
            ReadOutcome::Eof => {
                // A balancer's TCP health check connects and closes without
                // a byte: nobody's error, and not a client. Part of a
                // header, then a close, is an error.
                if gate.header_started(token) {
                    self.proxy_error(token, "the client closed with its PROXY header cut short");
                } else if self.ends_as_check(token, PeerEnd::Fin) {
                    self.close(token, CloseReason::Check);
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
        // (a reset right after its header) has nothing left to serve: its
        // header is still read, to tell a health check from an error.
        let peer = conn.peer_addr();
        let stand_in = SocketAddr::from(([0, 0, 0, 0], 0));
        match gate.header(token, &self.scratch[..n], peer.unwrap_or(stand_in)) {
            // More of it later (read_input queues what is waiting now).
            HeaderStep::Partial => {}
            HeaderStep::Bad(why) => self.proxy_error(token, &why),
            // A balancer's health check (HAProxy's `check-send-proxy`):
            // the header, then a reset, and not a byte of its own.
            HeaderStep::Done { rest, .. } if peer.is_none() => {
                let reason = if rest.is_empty() && self.ends_as_check(token, PeerEnd::Reset) {
                    CloseReason::Check
                } else {
                    CloseReason::Reset
                };
                self.close(token, reason);
            }
            HeaderStep::Done {
                entry,
                client,
                rest,
            } => {
                log::debug!("conn #{}: PROXY header: client {client}", token.0 >> 32);
                if let Some(access) = self.tally.access.as_mut() {
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
    pub(super) fn established(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // The handshake had its own clock; idleness starts now.
        conn.open(now);
        #[cfg(feature = "tls")]
        if let Some(summary) = conn.tls_summary() {
            log::debug!("conn #{}: TLS established: {summary}", conn.number());
            match conn.tls_resumed() {
                Some(true) => self.tally.stats.tls_resumed += 1,
                Some(false) => self.tally.stats.tls_full += 1,
                None => {}
            }
            if let Some(access) = self.tally.access.as_mut() {
                if let Some(fields) = conn.tls_fields() {
                    access.tls(token, fields);
                }
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
        let mut ctx = step_ctx(now, &[], &mut self.staging, &mut self.relay);
        self.protocol.open(token, &mut ctx);
        self.emit(token, now);
    }
}
