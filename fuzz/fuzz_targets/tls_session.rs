//! The server's TLS session after a real handshake (`tls/session.rs`,
//! `ServerSession`, driven as `connection/tls.rs` drives it): the loop's
//! use of rustls's unbuffered API, not rustls itself.
//!
//! Each run makes a session from monoloop's own server configuration
//! (`tls::server_config`, on a certificate made at start with rcgen) and
//! completes a handshake in memory with a rustls client (TLS 1.3,
//! AES-128-GCM), which logs its traffic secret. From then on the input
//! says what arrives: records sealed with the client's keys (any inner
//! content type, content and padding, key updates followed), raw bytes,
//! flipped bytes, how many bytes each socket read may take, and a FIN.
//! Each batch is read as the loop reads: visits of at most four socket
//! reads (`TLS_READS_PER_CALL`), until the socket has nothing more; every
//! plaintext is echoed back, as echo mode does, and the records written.
//!
//! - never panics, and the session never asks the loop for the
//!   impossible (a failed encryption, a failed write to a sink that takes
//!   everything);
//! - no read loops without progress: a read that reports input consumed
//!   bytes from the socket, or processed records it held (a read that
//!   brought more than the 64 records one call processes keeps the rest,
//!   `unseen`), or found it could not and reads the socket next; and the
//!   visits end within a bound of the bytes given;
//! - what a session holds is bounded: after the handshake, at most the
//!   start of one record (18 KiB and 5 bytes), or, while a backlog waits,
//!   at most the half of the read buffer a read fills (32 KiB);
//! - what it writes is bounded: the plaintext echoed, plus a record's
//!   overhead per visit and per record received (alerts, key updates);
//! - when the input is only well-formed records (application data of 1 to
//!   16 KiB and key updates, none tampered with), the plaintext read is
//!   exactly the plaintext sealed, nothing is refused, and a FIN ends it.
#![no_main]

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use monoloop::tls::{server_config, Input, ServerSession, ServerTls};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::hkdf;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

/// `MAX_RECORD` in `tls/session.rs`: the most a session holds between
/// reads once the handshake is done.
const MAX_RECORD: usize = 18 * 1024 + 5;

/// `TLS_READS_PER_CALL` in `connection.rs`.
const READS_PER_VISIT: usize = 4;

/// The client's traffic secret, as its key log hands it over.
static SECRET: Mutex<Option<Vec<u8>>> = Mutex::new(None);

#[derive(Debug)]
struct Log;

impl rustls::KeyLog for Log {
    fn log(&self, label: &str, _random: &[u8], secret: &[u8]) {
        if label == "CLIENT_TRAFFIC_SECRET_0" {
            *SECRET.lock().unwrap() = Some(secret.to_vec());
        }
    }
}

/// The server's configuration (monoloop's) and the client's, made once.
fn configs() -> &'static (Arc<ServerConfig>, Arc<ClientConfig>) {
    static CONFIGS: OnceLock<(Arc<ServerConfig>, Arc<ClientConfig>)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("monoloop-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_file, key_file): (PathBuf, PathBuf) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let server = server_config(&ServerTls {
            cert: Some(cert_file),
            key: Some(key_file),
            client_ca: None,
            alpn: Vec::new(),
        })
        .expect("monoloop's server configuration");

        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert.der().to_vec()))
            .unwrap();
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
        let mut client = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.key_log = Arc::new(Log);
        // Every run a full handshake: the same path, whatever ran before.
        client.resumption = rustls::client::Resumption::disabled();
        (server, Arc::new(client))
    })
}

/// The socket's input: the bytes sent so far, the part of them a read may
/// take now (`open`), what was read, and whether a FIN follows them.
#[derive(Default)]
struct Wire {
    bytes: Vec<u8>,
    open: usize,
    read: usize,
    fin: bool,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read < self.open {
            let n = buf.len().min(self.open - self.read);
            buf[..n].copy_from_slice(&self.bytes[self.read..self.read + n]);
            self.read += n;
            return Ok(n);
        }
        if self.fin && self.read == self.bytes.len() {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// HKDF-Expand-Label (RFC 8446, 7.1) with SHA-256 and no context.
fn expand_label(secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let full = format!("tls13 {label}");
    let length = (len as u16).to_be_bytes();
    let info: [&[u8]; 4] = [&length, &[full.len() as u8], full.as_bytes(), &[0]];
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret);
    let mut out = vec![0; len];
    prk.expand(&info, Len(len)).unwrap().fill(&mut out).unwrap();
    out
}

/// The client's record protection (TLS 1.3, AES-128-GCM): seals records
/// as the client would, and follows its key updates.
struct Sealer {
    secret: Vec<u8>,
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Sealer {
    fn new(secret: Vec<u8>) -> Self {
        let key = expand_label(&secret, "key", 16);
        let iv = expand_label(&secret, "iv", 12);
        Self {
            key: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).unwrap()),
            iv: iv.try_into().unwrap(),
            secret,
            seq: 0,
        }
    }

    /// The next traffic secret's keys (after our KeyUpdate).
    fn update(&mut self) {
        *self = Self::new(expand_label(&self.secret, "traffic upd", 32));
    }

    /// One record: `content`, its inner type, `pad` zeros.
    fn seal(&mut self, typ: u8, content: &[u8], pad: usize) -> Vec<u8> {
        let mut inner = content.to_vec();
        inner.push(typ);
        inner.resize(inner.len() + pad, 0);
        let len = inner.len() + 16;
        let header = [23, 3, 3, (len >> 8) as u8, len as u8];
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq += 1;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut inner,
            )
            .unwrap();
        let mut record = header.to_vec();
        record.extend_from_slice(&inner);
        record
    }
}

/// A server session and a client, handshake done; the client's sealer.
fn connected(buf: &mut [u8]) -> (ServerSession, Sealer) {
    let (server_config, client_config) = configs();
    *SECRET.lock().unwrap() = None;
    let mut server = ServerSession::new(server_config.clone()).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(client_config.clone(), name).unwrap();
    for _ in 0..10 {
        let mut wire = Wire::default();
        while client.wants_write() {
            client.write_tls(&mut wire.bytes).unwrap();
        }
        wire.open = wire.bytes.len();
        while wire.read < wire.open {
            match server.read_records(&mut wire, buf) {
                Input::Read { plaintext: 0, .. } => {}
                other => panic!("handshake: {other:?}"),
            }
        }
        let mut out = Vec::new();
        assert!(server.write_records(&mut out).unwrap());
        let mut out = &out[..];
        while !out.is_empty() {
            client.read_tls(&mut out).unwrap();
        }
        client.process_new_packets().unwrap();
        if !server.is_handshaking() && !client.is_handshaking() && !client.wants_write() {
            let secret = SECRET.lock().unwrap().take().expect("the client's secret");
            return (server, Sealer::new(secret));
        }
    }
    panic!("the handshake did not finish");
}

/// What a session holds between reads (its Debug says: `incoming`).
fn held(server: &ServerSession) -> usize {
    shown(server, "incoming")
}

/// The last bytes of what it holds that rustls has not been shown: whole
/// records waiting for the next read (its Debug says: `unseen`).
fn unseen(server: &ServerSession) -> usize {
    shown(server, "unseen")
}

/// A number the session's Debug shows.
fn shown(server: &ServerSession, field: &str) -> usize {
    let shown = format!("{server:?}");
    let label = format!("{field}: ");
    let at = shown.find(&label).expect("Debug shows the field") + label.len();
    let digits: String = shown[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// How a visit ended.
enum Visit {
    /// Plaintext read (and echoed): the loop comes back.
    Data,
    /// Four reads without plaintext: the loop comes back later.
    Yielded,
    /// The socket had nothing more.
    Drained,
    Ended,
    Rejected,
}

/// What the run saw.
#[derive(Default)]
struct Seen {
    plaintext: Vec<u8>,
    written: usize,
    visits: usize,
    rejected: bool,
}

/// One visit, as `Connection::read_tls` makes it, and the echo and
/// flush that follow.
fn visit(server: &mut ServerSession, wire: &mut Wire, buf: &mut [u8], seen: &mut Seen) -> Visit {
    seen.visits += 1;
    let mut outcome = Visit::Yielded;
    for _ in 0..READS_PER_VISIT {
        if server.ended() {
            outcome = Visit::Ended;
            break;
        }
        let (before, held_before, unseen_before) = (wire.read, held(server), unseen(server));
        match server.read_records(wire, buf) {
            Input::Read { plaintext, .. } => {
                assert!(
                    wire.read > before
                        || held(server) < held_before
                        || (unseen_before > 0 && unseen(server) == 0),
                    "a read reported input it did not take"
                );
                let most = if unseen(server) > 0 {
                    buf.len() / 2
                } else {
                    MAX_RECORD
                };
                assert!(held(server) <= most, "holds {} bytes", held(server));
                if plaintext > 0 {
                    let text = buf[..plaintext].to_vec();
                    seen.plaintext.extend_from_slice(&text);
                    // Echo: the session takes it all, the handshake done.
                    assert_eq!(server.encrypt(&text).unwrap(), text.len());
                    outcome = Visit::Data;
                    break;
                }
            }
            Input::Eof => {}
            Input::WouldBlock => {
                outcome = Visit::Drained;
                break;
            }
            Input::Failed(e) => panic!("a read from memory failed: {e}"),
            Input::Rejected(_) => {
                seen.rejected = true;
                outcome = Visit::Rejected;
                break;
            }
        }
    }
    let mut sink = Vec::new();
    assert!(server.write_records(&mut sink).unwrap());
    seen.written += sink.len();
    outcome
}

/// Visits until the socket has nothing more, or the session is over.
fn visits(server: &mut ServerSession, wire: &mut Wire, buf: &mut [u8], seen: &mut Seen) {
    // Each byte is taken from the socket once, and from what is held at
    // most once more.
    let bound = 2 * (wire.open - wire.read) + 2 * READS_PER_VISIT;
    for _ in 0..bound {
        match visit(server, wire, buf, seen) {
            Visit::Data | Visit::Yielded => {}
            Visit::Drained | Visit::Ended | Visit::Rejected => return,
        }
    }
    panic!(
        "visits without end: {} of {} bytes read",
        wire.read, wire.open
    );
}

/// The input, read a byte at a time.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn u16(&mut self) -> usize {
        usize::from(self.byte().unwrap_or(0)) << 8 | usize::from(self.byte().unwrap_or(0))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut server, mut sealer) = connected(&mut buf);
    let mut wire = Wire::default();
    let mut seen = Seen::default();
    // What was sealed as application data, and whether the input kept to
    // well-formed records only.
    let (mut sealed, mut clean, mut records, mut requests) = (Vec::new(), true, 0usize, 0);
    let mut fin = false;
    let mut script = Script(data);
    while let Some(op) = script.byte() {
        if seen.rejected {
            break;
        }
        match op % 6 {
            // A record: its inner type, length, content (or one byte
            // repeated, for long ones) and padding.
            0 | 1 => {
                let typ = script.byte().unwrap_or(23);
                let len = script.u16() % 17_000;
                let content = match op & 0x80 {
                    0 => script.take(len).to_vec(),
                    _ => vec![script.byte().unwrap_or(b'x'); len],
                };
                let pad = usize::from(script.byte().unwrap_or(0) % 64);
                records += 1;
                let well_formed = content.len() + 1 + pad <= 16 * 1024 + 1;
                match (typ, &content[..]) {
                    (23, c) if !c.is_empty() && c.len() <= 16 * 1024 && well_formed => {
                        sealed.extend_from_slice(c)
                    }
                    // One KeyUpdate: the keys change after this record.
                    (22, [24, 0, 0, 1, request @ (0 | 1)]) if well_formed => {
                        requests += usize::from(*request);
                        clean &= requests <= 32;
                    }
                    _ => clean = false,
                }
                wire.bytes.extend(sealer.seal(typ, &content, pad));
                // Every KeyUpdate in it, as rustls would read them.
                if typ == 22 {
                    let mut at = 0;
                    while at + 4 <= content.len() {
                        let len = usize::from(content[at + 1]) << 16
                            | usize::from(content[at + 2]) << 8
                            | usize::from(content[at + 3]);
                        if content[at] == 24 && len == 1 && at + 5 <= content.len() {
                            sealer.update();
                        }
                        at += 4 + len;
                    }
                }
            }
            // Raw bytes.
            2 => {
                let n = usize::from(script.byte().unwrap_or(0));
                wire.bytes.extend_from_slice(script.take(n));
                clean = false;
            }
            // A byte not yet read, flipped.
            3 => {
                let at = script.u16();
                let flip = script.byte().unwrap_or(1) | 1;
                let unread = wire.bytes.len() - wire.open;
                if unread > 0 {
                    wire.bytes[wire.open + at % unread] ^= flip;
                    clean = false;
                }
            }
            // The next bytes reach the socket: the loop reads.
            4 => {
                wire.open = (wire.open + script.u16()).min(wire.bytes.len());
                visits(&mut server, &mut wire, &mut buf, &mut seen);
            }
            // A FIN, after everything the input sends.
            _ => fin = true,
        }
    }
    if !seen.rejected {
        wire.open = wire.bytes.len();
        wire.fin = fin;
        visits(&mut server, &mut wire, &mut buf, &mut seen);
        if fin && !seen.rejected {
            assert!(server.ended(), "a FIN that did not end the input");
        }
    }
    if !seen.rejected {
        server.send_close_notify();
        let mut sink = Vec::new();
        assert!(server.write_records(&mut sink).unwrap());
        seen.written += sink.len();
    }
    let bound = seen.plaintext.len() + 128 * (seen.visits + records + 2);
    assert!(
        seen.written <= bound,
        "wrote {} bytes for {} of plaintext",
        seen.written,
        seen.plaintext.len()
    );
    if clean {
        assert!(!seen.rejected, "well-formed records refused");
        assert!(
            seen.plaintext == sealed,
            "the plaintext read is not what was sent"
        );
    }
});
