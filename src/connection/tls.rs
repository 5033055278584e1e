//! A connection over TLS: the same reads and writes as `connection.rs`,
//! through the server's TLS session (`tls/session.rs`). Reads feed it
//! ciphertext and take plaintext out; writes send its records first, then
//! encrypt the next batch of queued plaintext. Compiled with the `tls`
//! feature only, so that the plain build carries none of it.

use std::time::Instant;

use super::{Connection, ReadOutcome, Stage, WriteOutcome, TLS_READS_PER_CALL};

/// Bytes of the turn's budget one TLS record is charged, beyond its
/// plaintext (`read_tls`). Most of a record's cost is fixed (setting up
/// its decryption, rustls's bookkeeping), so a read of many tiny records
/// costs far more than its few bytes of plaintext say; this is about what
/// decrypting that many bytes more costs: a peer that sends the smallest
/// records cannot buy a long turn with them.
const RECORD_COST: usize = 512;

impl Connection {
    /// Puts a TLS session under this connection, which starts in HANDSHAKE
    /// until `until`. `first` are bytes already read from the socket (after
    /// a PROXY header): the start of the ClientHello, fed to the session
    /// before anything else. Fails if rustls refuses them; the alert is then
    /// queued for the socket.
    pub fn start_tls(
        &mut self,
        mut session: crate::tls::ServerSession,
        until: Instant,
        first: &[u8],
    ) -> Result<(), rustls::Error> {
        self.heard |= !first.is_empty();
        let result = session.feed(first);
        if result.is_err() {
            // Tell the peer why, as a refused read does; the session is over.
            let _ = session.write_records(&mut self.stream);
        } else {
            self.tls = Some(Box::new(session));
        }
        self.set_stage(Stage::Handshake { until });
        result
    }

    /// True if the finished TLS handshake resumed an earlier session.
    pub fn tls_resumed(&self) -> Option<bool> {
        let kind = self.tls.as_ref()?.state().handshake_kind()?;
        Some(kind == rustls::HandshakeKind::Resumed)
    }

    /// What the finished handshake negotiated, for the access log: the
    /// version, the name asked for, the protocol agreed, the client
    /// certificate's subject.
    pub fn tls_fields(&self) -> Option<crate::access_log::TlsFields> {
        let session = self.tls.as_ref()?;
        let state = session.state();
        let version = match state.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            other => format!("{other:?}"),
        };
        Some(crate::access_log::TlsFields {
            version,
            sni: session.server_name().map(str::to_string),
            alpn: state
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            client_subject: state
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| crate::tls::subject(leaf)),
        })
    }

    /// The negotiated TLS version and ALPN protocol, for the log.
    pub fn tls_summary(&self) -> Option<String> {
        let tls = self.tls.as_ref()?.state();
        let version = tls
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        Some(match tls.alpn_protocol() {
            Some(p) => format!("{version}, ALPN {}", String::from_utf8_lossy(p)),
            None => version,
        })
    }

    /// TLS: one batch of records from the socket, processed, until there is
    /// plaintext, the socket is drained, or the peer is done. The short-read
    /// rule applies to the socket reads (`Input::Read { drained }`), with
    /// the same exception for an event that carried FIN or an error.
    ///
    /// `buf` is the loop's shared read buffer: the session reads ciphertext
    /// into its back half and leaves the plaintext at its front
    /// (`tls/session.rs`), so `Data(n)` means `buf[..n]`, as on plain TCP.
    pub(super) fn read_tls(
        &mut self,
        buf: &mut [u8],
        work: &mut usize,
        now: Instant,
    ) -> ReadOutcome {
        use crate::tls::Input;
        let Some(tls) = self.tls.as_mut() else {
            return ReadOutcome::Drained;
        };
        // Records that carry no plaintext (handshake messages, a KeyUpdate,
        // an empty record) read on until some do; but not forever: a peer
        // that keeps sending such records must not hold the loop in one
        // visit. After a few, the connection yields with `read_ready` still
        // set, and the loop queues it behind the others.
        for _ in 0..TLS_READS_PER_CALL {
            // close_notify, or a FIN without it: either way the end of input.
            if tls.ended() {
                self.peer_eof = true;
                self.read_ready = false;
                return ReadOutcome::Eof;
            }
            if !self.read_ready {
                return ReadOutcome::Drained;
            }
            let input = tls.read_records(&mut self.stream, buf);
            // Each record read, charged to the turn (`RECORD_COST`).
            *work += tls.take_records() as usize * RECORD_COST;
            match input {
                Input::Read {
                    plaintext,
                    drained,
                    advanced,
                } => {
                    self.heard = true;
                    // A record completed (plaintext or not: a KeyUpdate) or
                    // a new one began: the peer is not idle. More bytes of
                    // a record begun earlier do not count, so a record must
                    // complete within the idle timeout of its first byte.
                    if advanced {
                        // (`touch`, field by field: `tls` is borrowed.)
                        self.last_activity = now;
                        self.idle_spared = false;
                    }
                    // A close_notify just read is reported on the next
                    // call, which must come without a further event.
                    if drained && !self.read_closed_hint && !tls.ended() {
                        self.read_ready = false;
                    }
                    if plaintext > 0 {
                        return ReadOutcome::Data(plaintext);
                    }
                }
                // Reported as the end on the next round.
                Input::Eof => {}
                Input::WouldBlock => {
                    self.read_ready = false;
                    return ReadOutcome::Drained;
                }
                Input::Failed(e) => return ReadOutcome::Failed(e),
                Input::Rejected(e) => {
                    self.heard = true;
                    // Tell the peer why: the alert is a few bytes, which a
                    // socket that is not backed up takes at once.
                    let _ = tls.write_records(&mut self.stream);
                    self.read_ready = false;
                    // The session is over. What follows is plain TCP: our
                    // FIN after the alert, and a linger that lets the peer
                    // read the alert before we close (a close with its
                    // bytes unread would be a reset, which may destroy it).
                    // Plaintext still queued must never go out unencrypted.
                    self.tls = None;
                    self.queue.consume(self.queue.len());
                    return ReadOutcome::Refused(Box::new(e));
                }
            }
        }
        ReadOutcome::Drained
    }

    /// TLS: records first, then the next batch of plaintext into the
    /// session, until everything is out or the socket refuses. Returns the
    /// outcome and the plaintext bytes handed to the session.
    pub(super) fn flush_tls(&mut self, limit: usize) -> (WriteOutcome, usize) {
        let mut moved = 0;
        let Some(tls) = self.tls.as_mut() else {
            return (WriteOutcome::Done, 0);
        };
        loop {
            match tls.write_records(&mut self.stream) {
                Ok(true) => {}
                Ok(false) => {
                    self.write_blocked = true;
                    return (WriteOutcome::Blocked, moved);
                }
                Err(e) => return (WriteOutcome::Failed(e), moved),
            }
            if self.queue.is_empty() {
                return (WriteOutcome::Done, moved);
            }
            if moved >= limit {
                return (WriteOutcome::Blocked, moved);
            }
            if tls.is_handshaking() {
                // Plaintext waits in the queue until the session can
                // encrypt it.
                return (WriteOutcome::Blocked, moved);
            }
            match self.queue.write_to(&mut crate::tls::Encrypting(tls)) {
                Ok(0) => return (WriteOutcome::Blocked, moved),
                Ok(n) => moved += n,
                Err(e) => return (WriteOutcome::Failed(e), moved),
            }
        }
    }
}
