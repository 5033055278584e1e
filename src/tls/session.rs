//! The server's TLS session, with the buffers on our side of rustls.
//!
//! rustls's buffered `ServerConnection` owns a receive buffer that never
//! shrinks below 4 KiB once a record has been read (its deframer keeps room
//! for the next read), so an idle TLS connection cost about 7.9 KB, more
//! than half of it that one buffer. This session uses rustls's unbuffered
//! API instead (`rustls::server::UnbufferedServerConnection`), where the
//! caller passes the ciphertext in and receives the records to send:
//!
//! - ciphertext is read into the back half of the loop's shared read
//!   buffer, and plaintext is decrypted into its front half, so an idle
//!   session holds no receive buffer at all; only a record's beginning,
//!   when a read ends inside one, is kept (`incoming`) until the rest comes;
//! - records to send (handshake messages, application data, alerts,
//!   close_notify) are kept in `outgoing` only until the socket has taken
//!   them, then freed.
//!
//! What an idle session still holds is rustls's own state: the keys, the
//! state machine, and the connection struct; docs/architecture.md has the
//! measured breakdown. `connection/tls.rs` decides when to call these moves;
//! this file knows nothing of stages or interest.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError};
use rustls::ServerConfig;

/// What one [`ServerSession::read_records`] found.
#[derive(Debug)]
pub enum Input {
    /// Ciphertext was read and processed, and `plaintext` bytes of it are at
    /// the front of the buffer (possibly none: handshake messages, a
    /// record's beginning). `drained`: the socket gave less than was asked,
    /// so it had no more (the short-read rule of `Connection::read`).
    /// `advanced`: a record was completed or a new one began; false when
    /// the bytes only continued a record begun in an earlier read. Only an
    /// advance moves the idle clock, so a record must complete within the
    /// idle timeout of its first byte (a client cannot hold its connection
    /// by trickling one record forever).
    Read {
        plaintext: usize,
        drained: bool,
        advanced: bool,
    },
    /// The socket has nothing now.
    WouldBlock,
    /// The peer closed TCP ([`ServerSession::ended`] is now true).
    Eof,
    /// The socket failed.
    Failed(io::Error),
    /// The peer broke the protocol or failed verification; the alert is
    /// queued for [`ServerSession::write_records`], and the session is over.
    Rejected(rustls::Error),
}

/// One server-side TLS session: rustls's state machine, the start of a
/// record still arriving, and the records not yet written.
pub struct ServerSession {
    conn: UnbufferedServerConnection,
    /// Ciphertext read but not yet processed: the start of a record (or of a
    /// handshake message split across records). Empty, and unallocated,
    /// between whole records.
    incoming: Vec<u8>,
    /// Records for the socket, written up to `sent`. Empty, and
    /// unallocated, once the socket has taken them.
    outgoing: Vec<u8>,
    sent: usize,
    /// The peer's close_notify arrived, or its FIN.
    ended: bool,
    /// The name the ClientHello asked for (SNI), if it named one
    /// (`sni.rs`).
    server_name: Option<Box<str>>,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("incoming", &self.incoming.len())
            .field("outgoing", &(self.outgoing.len() - self.sent))
            .field("ended", &self.ended)
            .finish()
    }
}

impl ServerSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            ended: false,
            server_name: None,
        })
    }

    /// The name the client asked for in its ClientHello (SNI), if any.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The negotiated parameters and the handshake's progress.
    pub fn state(&self) -> &rustls::CommonState {
        &self.conn
    }

    /// True while the handshake is unfinished.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True if records are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// True while the peer is part-way through a record: its start is
    /// held until the rest comes. (A quiet member is never spared the idle
    /// timeout in the middle of one: `Connection::caught_up`.)
    pub fn mid_record(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// True once the peer has said it sends nothing more: close_notify, or
    /// its FIN.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Feeds bytes already read from the socket (the start of the
    /// ClientHello, after a PROXY header). Handshake answers are queued for
    /// [`write_records`](Self::write_records); on an error, so is the alert.
    pub fn feed(&mut self, first: &[u8]) -> Result<(), rustls::Error> {
        let mut input = std::mem::take(&mut self.incoming);
        input.extend_from_slice(first);
        // No plaintext can come before the handshake's end, which needs
        // our answer first: nothing to decrypt into.
        let result = self.process(&mut input, &mut []);
        match result {
            Ok((used, _)) => {
                self.hold(&input[used..]);
                Ok(())
            }
            Err(e) => Err(self.reject(e)),
        }
    }

    /// Reads one batch of ciphertext from `sock` and processes it: handshake
    /// answers go to the outgoing records, plaintext to the front of `buf`.
    ///
    /// `buf` is the loop's shared read buffer: its back half takes the
    /// ciphertext (after any record's beginning kept from the last read),
    /// its front half the plaintext. The ciphertext is never more than half
    /// the buffer and plaintext is never longer than the records it came in,
    /// so it always fits. `buf` must hold more than two of the largest
    /// records (2 x 18 KiB); the loop's holds 64 KiB.
    pub fn read_records(&mut self, sock: &mut impl Read, buf: &mut [u8]) -> Input {
        debug_assert!(buf.len() > 2 * MAX_RECORD + 4096, "read buffer too small");
        let (plain, cipher) = buf.split_at_mut(buf.len() / 2);
        let held = self.incoming.len();
        // What is held is the start of one record, except while a handshake
        // message split across records is being joined.
        if held > MAX_RECORD {
            return self.read_big(sock, plain);
        }
        cipher[..held].copy_from_slice(&self.incoming);
        let got = match read_some(sock, &mut cipher[held..]) {
            Ok(n) => n,
            Err(end) => return self.stopped(end),
        };
        let drained = held + got < cipher.len();
        let filled = &mut cipher[..held + got];
        match self.process(filled, plain) {
            Ok((used, plaintext)) => {
                self.hold(&filled[used..]);
                Input::Read {
                    plaintext,
                    drained,
                    advanced: used > 0 || held == 0,
                }
            }
            Err(e) => Input::Rejected(self.reject(e)),
        }
    }

    /// [`read_records`](Self::read_records) while a handshake message
    /// longer than a record (a long client certificate chain) is joined: it
    /// grows in `incoming` instead, by a record's worth per read. Rare, and
    /// rustls bounds it at 64 KiB. No application data can come before the
    /// handshake's end, so the plaintext is at most what this read brought:
    /// it fits.
    fn read_big(&mut self, sock: &mut impl Read, plain: &mut [u8]) -> Input {
        let mut input = std::mem::take(&mut self.incoming);
        let held = input.len();
        input.resize(held + MAX_RECORD, 0);
        let got = match read_some(sock, &mut input[held..]) {
            Ok(n) => n,
            Err(end) => {
                input.truncate(held);
                self.incoming = input;
                return self.stopped(end);
            }
        };
        input.truncate(held + got);
        match self.process(&mut input, plain) {
            Ok((used, plaintext)) => {
                self.hold(&input[used..]);
                Input::Read {
                    plaintext,
                    drained: got < MAX_RECORD,
                    advanced: used > 0,
                }
            }
            Err(e) => Input::Rejected(self.reject(e)),
        }
    }

    /// A read that brought no bytes: notes the end of input.
    fn stopped(&mut self, end: Input) -> Input {
        if matches!(end, Input::Eof) {
            self.ended = true;
        }
        end
    }

    /// Keeps `rest`, the start of a record, for the next read; frees the
    /// buffer when there is none. Once the peer has ended (close_notify),
    /// nothing more is read: what came after it is dropped, not held.
    fn hold(&mut self, rest: &[u8]) {
        if rest.is_empty() || self.ended {
            self.incoming = Vec::new();
        } else {
            self.incoming.clear();
            self.incoming.extend_from_slice(rest);
        }
    }

    /// Lets rustls act on `input`: it answers handshake messages (queued in
    /// `outgoing`) and decrypts application data (copied into `plain`).
    /// Stops when it needs more input. Returns how much of `input` it used
    /// (what is left is the start of a record) and the plaintext's length.
    fn process(
        &mut self,
        input: &mut [u8],
        plain: &mut [u8],
    ) -> Result<(usize, usize), rustls::Error> {
        // While handshaking, the ClientHello may be among these records:
        // the name it asked for is noted as rustls processes it (`sni.rs`).
        if !self.conn.is_handshaking() {
            return self.process_records(input, plain);
        }
        super::sni::take();
        let result = self.process_records(input, plain);
        if let Some(name) = super::sni::take() {
            self.server_name = Some(name);
        }
        result
    }

    /// [`process`](Self::process), once the name is taken care of.
    fn process_records(
        &mut self,
        input: &mut [u8],
        plain: &mut [u8],
    ) -> Result<(usize, usize), rustls::Error> {
        let (mut used, mut n) = (0, 0);
        loop {
            let status = self.conn.process_tls_records(&mut input[used..]);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    self.alert(&mut input[used + discard..]);
                    return Err(e);
                }
            };
            let more = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        let end = n + record.payload.len();
                        let Some(room) = plain.get_mut(n..end) else {
                            // Cannot happen (plaintext is shorter than its
                            // records); refused rather than panicking.
                            return Err(rustls::Error::General(
                                "no room for decrypted data".into(),
                            ));
                        };
                        room.copy_from_slice(record.payload);
                        n = end;
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(&mut self.outgoing, &mut data);
                    true
                }
                // `outgoing` holds them until the socket takes them.
                ConnectionState::TransmitTlsData(data) => {
                    data.done();
                    true
                }
                ConnectionState::PeerClosed => {
                    self.ended = true;
                    true
                }
                ConnectionState::Closed => {
                    self.ended = true;
                    false
                }
                // BlockedHandshake or WriteTraffic: the input is used up
                // (early data is never accepted: `max_early_data_size` is 0).
                _ => false,
            };
            used += discard;
            if !more {
                return Ok((used, n));
            }
        }
    }

    /// After an error: takes the alert rustls prepared saying why. It hands
    /// out queued records before it looks at the input again, so asking
    /// only while records are queued never processes the input twice.
    /// `rest` is the input it has not discarded: rustls must be shown it on
    /// every call.
    fn alert(&mut self, rest: &mut [u8]) {
        // (`CommonState::wants_write`: records are queued inside rustls.)
        while self.conn.wants_write() {
            match self.conn.process_tls_records(rest).state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.outgoing, &mut data)
                }
                _ => return,
            }
        }
    }

    /// After an error: the session is over; what it held is dropped.
    fn reject(&mut self, e: rustls::Error) -> rustls::Error {
        self.incoming = Vec::new();
        e
    }

    /// Moves whatever rustls has queued without new input (tickets, a key
    /// update's answer) into `outgoing`. Returns true if application data
    /// may be sent now.
    fn pump(&mut self) -> bool {
        // rustls must be shown the input it has not discarded yet (the
        // start of a record) on every call, even one that reads nothing.
        let mut held = std::mem::take(&mut self.incoming);
        let ready = loop {
            let status = self.conn.process_tls_records(&mut held);
            let discard = status.discard;
            let step = match status.state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.outgoing, &mut data);
                    None
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    None
                }
                Ok(ConnectionState::WriteTraffic(_)) => Some(true),
                _ => Some(false),
            };
            held.drain(..discard);
            if let Some(ready) = step {
                break ready;
            }
        };
        self.incoming = held;
        ready
    }

    /// Encrypts `plaintext` into records for the socket. Returns the bytes
    /// taken: all of them once the handshake is done, none before.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        if plaintext.is_empty() || !self.pump() {
            return Ok(0);
        }
        let Ok(ConnectionState::WriteTraffic(mut traffic)) =
            self.conn.process_tls_records(&mut self.incoming).state
        else {
            return Ok(0);
        };
        // The records' headers and tags: 22 bytes each for TLS 1.3's
        // AES-GCM, fewer for TLS 1.2; rustls says if it needs more.
        let overhead = (plaintext.len() / MAX_PLAINTEXT + 1) * 32;
        grow_with(
            &mut self.outgoing,
            plaintext.len() + overhead,
            |out| match traffic.encrypt(plaintext, out) {
                Ok(n) => Ok(n),
                Err(EncryptError::InsufficientSize(e)) => Err(Some(e.required_size)),
                Err(_) => Err(None),
            },
        )
        .map(|_| plaintext.len())
        .ok_or_else(|| io::Error::other("TLS: the encryption key is used up"))
    }

    /// Queues close_notify, if the handshake is done (before it, the FIN
    /// that follows says enough).
    pub fn send_close_notify(&mut self) {
        if !self.pump() {
            return;
        }
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) =
            self.conn.process_tls_records(&mut self.incoming).state
        {
            grow_with(&mut self.outgoing, 64, |out| {
                match traffic.queue_close_notify(out) {
                    Ok(n) => Ok(n),
                    Err(EncryptError::InsufficientSize(e)) => Err(Some(e.required_size)),
                    Err(_) => Err(None),
                }
            });
        }
    }

    /// Writes the queued records to `sock` until none is left or the socket
    /// refuses more. Returns `Ok(true)` when all is written (and the buffer
    /// freed), `Ok(false)` on `WouldBlock`.
    pub fn write_records(&mut self, sock: &mut impl Write) -> io::Result<bool> {
        while self.sent < self.outgoing.len() {
            match sock.write(&self.outgoing[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Ok(true)
    }
}

/// Lets a [`WriteQueue`](crate::buffer::WriteQueue) write plaintext into a
/// session: each slice becomes records in one batch.
pub struct Encrypting<'a>(pub &'a mut ServerSession);

impl Write for Encrypting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.encrypt(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Up to about one socket write's worth at a time, like the plain
        // path's vectored write.
        let mut taken = 0;
        for buf in bufs {
            if taken >= BATCH {
                break;
            }
            let n = self.0.encrypt(buf)?;
            taken += n;
            if n < buf.len() {
                break;
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One read from the socket into `space`: the bytes read, or why none.
fn read_some(sock: &mut impl Read, space: &mut [u8]) -> Result<usize, Input> {
    loop {
        return match sock.read(space) {
            Ok(0) => Err(Input::Eof),
            Ok(n) => Ok(n),
            // The OS saying "not now".
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Input::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(Input::Failed(e)),
        };
    }
}

/// The most plaintext one record carries (RFC 8446 5.1).
const MAX_PLAINTEXT: usize = 16 * 1024;

/// The largest record rustls accepts: header, 16 KiB and expansion.
const MAX_RECORD: usize = 18 * 1024 + 5;

/// How much plaintext one vectored write encrypts at most.
const BATCH: usize = 64 * 1024;

/// Encodes a handshake record rustls prepared onto the end of `out`.
fn encode(out: &mut Vec<u8>, data: &mut EncodeTlsData<'_, ServerConnectionData>) {
    grow_with(out, 1024, |room| match data.encode(room) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(e)) => Err(Some(e.required_size)),
        Err(_) => Err(None),
    });
}

/// Appends to `out` what `write` puts into the room it is given: `guess`
/// bytes first, then as many as it says it needs (`Err(Some(n))`).
/// `Err(None)` is a failure: nothing is appended, and `None` returned.
fn grow_with(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Option<usize> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Some(n);
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                out.truncate(start);
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    /// One direction of a socket, in memory: `WouldBlock` when empty, as a
    /// non-blocking socket says, never end of stream.
    #[derive(Default)]
    struct Pipe(VecDeque<u8>);

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.0.read(buf)
        }
    }

    /// A server session and a rustls client that trusts its certificate.
    fn peers() -> (ServerSession, ClientConnection) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert: CertificateDer<'static> = params.self_signed(&key).unwrap().der().clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        (
            ServerSession::new(Arc::new(server)).unwrap(),
            ClientConnection::new(Arc::new(client), name).unwrap(),
        )
    }

    /// A server that requires client certificates, and a client whose
    /// certificate is long (about 36 KB: 2,000 names), so that its
    /// Certificate message spans three records.
    fn peers_with_a_long_client_certificate() -> (ServerSession, ClientConnection) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap().der().clone();
        let issuer = Issuer::new(ca, ca_key);
        let names: Vec<String> = (0..2000).map(|i| format!("host-{i}.example")).collect();
        let client_key = KeyPair::generate().unwrap();
        let client_cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap()
            .der()
            .clone();
        assert!(client_cert.len() > 2 * MAX_RECORD - 4096);

        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap()
            .der()
            .clone();
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert).unwrap();
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert],
                PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            )
            .unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![client_cert],
                PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
            )
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        (
            ServerSession::new(Arc::new(server)).unwrap(),
            ClientConnection::new(Arc::new(client), name).unwrap(),
        )
    }

    /// Everything the client has to send, as the server's socket input.
    fn from_client(client: &mut ClientConnection) -> Pipe {
        let mut wire = Pipe::default();
        let mut bytes = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut bytes).unwrap();
        }
        wire.0.extend(bytes);
        wire
    }

    /// Everything the server has to send, handed to the client.
    fn to_client(server: &mut ServerSession, client: &mut ClientConnection) {
        let mut bytes = Vec::new();
        assert!(server.write_records(&mut bytes).unwrap());
        let mut input = &bytes[..];
        while !input.is_empty() {
            client.read_tls(&mut input).unwrap();
        }
        client.process_new_packets().unwrap();
    }

    /// Runs the handshake to its end, and the tickets after it.
    fn handshake(server: &mut ServerSession, client: &mut ClientConnection, buf: &mut [u8]) {
        for _ in 0..10 {
            let mut wire = from_client(client);
            while !wire.0.is_empty() {
                match server.read_records(&mut wire, buf) {
                    Input::Read { plaintext: 0, .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            to_client(server, client);
            if !server.is_handshaking() && !client.is_handshaking() && !client.wants_write() {
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn an_idle_session_holds_no_buffer_after_the_handshake_and_an_echo() {
        let (mut server, mut client) = peers();
        let mut buf = vec![0u8; 64 * 1024];
        handshake(&mut server, &mut client, &mut buf);
        assert_eq!(server.state().protocol_version(), client.protocol_version());

        client.writer().write_all(b"ping").unwrap();
        let mut wire = from_client(&mut client);
        match server.read_records(&mut wire, &mut buf) {
            Input::Read { plaintext: 4, .. } => assert_eq!(&buf[..4], b"ping"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(server.encrypt(b"pong").unwrap(), 4);
        assert!(server.wants_write());
        to_client(&mut server, &mut client);
        let mut got = [0u8; 4];
        client.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");

        // Idle: the records are written and nothing was left half read.
        assert!(!server.wants_write());
        assert_eq!(server.incoming.capacity(), 0);
        assert_eq!(server.outgoing.capacity(), 0);
    }

    #[test]
    fn a_record_split_across_reads_is_kept_until_whole_then_freed() {
        let (mut server, mut client) = peers();
        let mut buf = vec![0u8; 64 * 1024];
        handshake(&mut server, &mut client, &mut buf);

        client.writer().write_all(&[7u8; 1000]).unwrap();
        let mut wire = from_client(&mut client);
        let record: Vec<u8> = wire.0.drain(..).collect();
        // Its first bytes begin a record: an advance (the idle clock moves).
        let mut first = Pipe(record[..300].iter().copied().collect());
        match server.read_records(&mut first, &mut buf) {
            Input::Read {
                plaintext: 0,
                advanced: true,
                ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(server.incoming.len(), 300, "the record's start is kept");
        // More of the same record: not an advance (a trickle).
        let mut more = Pipe(record[300..600].iter().copied().collect());
        match server.read_records(&mut more, &mut buf) {
            Input::Read {
                plaintext: 0,
                advanced: false,
                ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
        // Its end completes it: an advance.
        let mut rest = Pipe(record[600..].iter().copied().collect());
        match server.read_records(&mut rest, &mut buf) {
            Input::Read {
                plaintext: 1000,
                advanced: true,
                ..
            } => assert!(buf[..1000].iter().all(|&b| b == 7)),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(server.incoming.capacity(), 0);
    }

    /// A read that ends inside a full-size record leaves most of it held;
    /// the next read, of small records, must still decrypt into the half
    /// of the buffer left for plaintext.
    #[test]
    fn a_held_record_and_many_small_ones_after_it_all_arrive() {
        let (mut server, mut client) = peers();
        let mut buf = vec![0u8; 64 * 1024];
        handshake(&mut server, &mut client, &mut buf);
        // Two full records, then forty of 1,000 bytes.
        let mut sent = Vec::new();
        let mut wire = Pipe::default();
        let pieces = (0..2u8).map(|i| vec![i; 16 * 1024]);
        for piece in pieces.chain((0..40u8).map(|i| vec![100 + i; 1000])) {
            client.writer().write_all(&piece).unwrap();
            sent.extend_from_slice(&piece);
            wire.0.extend(from_client(&mut client).0);
        }
        let mut got = Vec::new();
        loop {
            match server.read_records(&mut wire, &mut buf) {
                Input::Read { plaintext, .. } => got.extend_from_slice(&buf[..plaintext]),
                Input::WouldBlock => break,
                other => panic!("unexpected {other:?} after {} bytes", got.len()),
            }
        }
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the plaintext differs");
        assert_eq!(server.incoming.capacity(), 0);
    }

    /// A handshake message longer than half the read buffer (a long
    /// client certificate) is joined in `incoming`, then freed.
    #[test]
    fn a_client_certificate_longer_than_the_buffer_half_is_joined_then_freed() {
        let (mut server, mut client) = peers_with_a_long_client_certificate();
        let mut buf = vec![0u8; 64 * 1024];
        handshake(&mut server, &mut client, &mut buf);
        assert!(server.state().peer_certificates().is_some());
        client.writer().write_all(b"ping").unwrap();
        let mut wire = from_client(&mut client);
        match server.read_records(&mut wire, &mut buf) {
            Input::Read { plaintext: 4, .. } => assert_eq!(&buf[..4], b"ping"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(server.incoming.capacity(), 0);
    }

    /// Found by the `tls_session` fuzz target: records after the peer's
    /// close_notify, read with it, were kept in `incoming` (up to half the
    /// read buffer, 32 KiB) for as long as the connection lived. Nothing
    /// after close_notify is ever read, so nothing of it is held.
    #[test]
    fn what_follows_close_notify_is_not_held() {
        let (mut server, mut client) = peers();
        let mut buf = vec![0u8; 64 * 1024];
        handshake(&mut server, &mut client, &mut buf);
        client.send_close_notify();
        let mut wire = from_client(&mut client);
        // Records after it, as the fuzzer sent: 20 KB of them.
        wire.0.extend(std::iter::repeat_n(0x17, 20 * 1024));
        assert!(matches!(
            server.read_records(&mut wire, &mut buf),
            Input::Read { plaintext: 0, .. }
        ));
        assert!(server.ended());
        assert_eq!(server.incoming.capacity(), 0, "held after close_notify");
    }

    #[test]
    fn close_notify_ends_the_input_and_garbage_is_refused_with_an_alert() {
        let (mut server, mut client) = peers();
        let mut buf = vec![0u8; 64 * 1024];
        handshake(&mut server, &mut client, &mut buf);
        client.send_close_notify();
        let mut wire = from_client(&mut client);
        assert!(matches!(
            server.read_records(&mut wire, &mut buf),
            Input::Read { plaintext: 0, .. }
        ));
        assert!(server.ended());

        let (mut server, _) = peers();
        let mut wire = Pipe(b"GET / HTTP/1.1\r\n\r\n".iter().copied().collect());
        assert!(matches!(
            server.read_records(&mut wire, &mut buf),
            Input::Rejected(_)
        ));
        let mut alert = Vec::new();
        assert!(server.write_records(&mut alert).unwrap());
        assert_eq!(alert.first(), Some(&21), "an alert record: {alert:?}");
    }
}
