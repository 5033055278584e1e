//! TLS, with rustls: building the server's and the client's configuration
//! from PEM files, and the two moves that drive a TLS session from a
//! non-blocking socket (the client's; the server's session is in `session`,
//! src/tls/session.rs).
//!
//! rustls does no I/O of its own. A session is a pair of buffers with a state
//! machine between them: ciphertext goes in with `read_tls` and is decrypted
//! by `process_new_packets`; plaintext goes in with `writer()` and comes out
//! as records with `write_tls`. That is exactly what a readiness loop wants:
//! [`read_records`] feeds it what the socket has, [`write_records`] drains it
//! into the socket as far as the socket accepts, and both stop at
//! `WouldBlock`. The client (`client.rs`) decides when to call them.
//!
//! The server uses rustls's unbuffered API instead, through
//! [`ServerSession`] (src/tls/session.rs): the same two moves, with the
//! ciphertext read into the loop's shared buffer rather than into a buffer
//! of rustls's own per connection, so that an idle TLS connection holds
//! only its session's state. The connection decides when to call them
//! (`connection/tls.rs`) and what interest that needs (`connection.rs`);
//! the handshake is the connection's HANDSHAKE stage.
//!
//! Every file is read once, and `formats` (src/tls/formats.rs) says what
//! it is when it is not PEM (DER, PKCS#12, an encrypted key) and the
//! `openssl` command that converts it.
//!
//! Before the server starts, `leaf` (src/tls/leaf.rs) checks its own certificate for what
//! rustls does not check when it loads one (the dates, and that it is not a
//! CA); [`server_config`] warns or refuses accordingly.
//!
//! The certificate served is a fact of the whole process (one
//! configuration serves every worker): [`served`] says what it is, for the
//! start-up line and the metrics, as set by the last configuration built
//! to serve, at start or by a reload that succeeded.
//!
//! The crypto provider is *ring*: it builds with the C compiler every machine
//! here has and no other tool, where aws-lc-rs would need CMake.

mod formats;
mod leaf;
mod session;
mod sni;

pub use leaf::subject;
pub use session::{Encrypting, Input, ServerSession};

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub use crate::config::{ClientTls, ServerTls};

/// A TLS set-up problem, as one line naming the option, the file and what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The bytes of a file given to `option`, if they are PEM that can hold
/// what the option wants; else what the file is instead, and the
/// `openssl` command that converts it (`formats.rs`).
fn read_pem(option: &str, path: &Path, holds: formats::Holds) -> Result<Vec<u8>, TlsError> {
    let fail = |why: String| TlsError(format!("{option} {}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    match formats::problem(&bytes, path, holds) {
        Some(why) => Err(fail(why)),
        None => Ok(bytes),
    }
}

/// Every certificate in a PEM file; an error if there is none.
fn load_certs(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |why: String| TlsError(format!("{option} {}: {why}", path.display()));
    let pem = read_pem(option, path, formats::Holds::Certificates)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_problem(e)))?;
    if certs.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
fn load_key(option: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(option, path, formats::Holds::Key)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key (PKCS#8, PKCS#1 or SEC1) in it".to_string()
            }
            other => pem_problem(other),
        };
        TlsError(format!("{option} {}: {why}", path.display()))
    })
}

fn pem_problem(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read it: {e}"),
        rustls::pki_types::pem::Error::NoItemsFound => "no certificate in it".into(),
        other => format!("not valid PEM: {other}"),
    }
}

/// A trust store holding every certificate of a PEM file.
fn load_roots(option: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(option, path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("{option} {}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The certificate being served, as the log and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// `CN=NAME, valid until DATE` (`leaf::describe`).
    pub described: String,
    /// Its notAfter, in seconds since the Unix epoch.
    pub not_after: Option<i64>,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.described)
    }
}

/// The certificate of the configuration last built to serve.
static SERVED: Mutex<Option<Served>> = Mutex::new(None);

/// The certificate being served: the leaf of the configuration last built
/// by [`server_config`] or a [`reload`] that succeeded (each of which is
/// served from then on); `None` before any, or on a plain server.
pub fn served() -> Option<Served> {
    SERVED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Notes `leaf` as the certificate served from now on, and returns it.
fn serve(leaf: &CertificateDer<'_>) -> Served {
    let served = Served {
        described: leaf::describe(leaf).unwrap_or_else(|| "certificate details unreadable".into()),
        not_after: leaf::not_after(leaf),
    };
    *SERVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(served.clone());
    served
}

/// Builds the server's configuration: TLS 1.2 and 1.3 only (rustls's safe
/// defaults), the certificate chain and its key (which must match), client
/// certificates required when a client CA is given, and ALPN.
///
/// The leaf certificate is checked too (see `judge_leaf`): a CA
/// certificate is refused, and one outside its validity period is logged
/// as a warning.
pub fn server_config(opts: &ServerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let (config, leaf) = server_config_and_leaf(opts)?;
    serve(&leaf);
    Ok(Arc::new(config))
}

/// [`server_config`], and the leaf certificate it serves, so that a reload
/// describes the certificate it loaded without reading the file again.
fn server_config_and_leaf(
    opts: &ServerTls,
) -> Result<(ServerConfig, CertificateDer<'static>), TlsError> {
    let (cert, key) = match (&opts.cert, &opts.key) {
        (Some(c), Some(k)) => (c, k),
        (Some(c), None) => {
            return Err(TlsError(format!(
                "--tls-cert {} was given without --tls-key",
                c.display()
            )))
        }
        (None, Some(k)) => {
            return Err(TlsError(format!(
                "--tls-key {} was given without --tls-cert",
                k.display()
            )))
        }
        (None, None) => {
            return Err(TlsError(
                "--tls-client-ca needs --tls-cert and --tls-key".into(),
            ))
        }
    };
    let chain = load_certs("--tls-cert", cert)?;
    let private = load_key("--tls-key", key)?;
    let leaf = chain[0].clone();
    let verdict = leaf::check(&leaf, SystemTime::now());
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))?;
    let builder = match &opts.client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots("--tls-client-ca", ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError(format!("--tls-client-ca {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, private).map_err(|e| {
        let why = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("does not match the certificate in {}", cert.display())
            }
            other => other.to_string(),
        };
        TlsError(format!("--tls-key {}: {why}", key.display()))
    })?;
    judge_leaf(cert, verdict)?;
    // The name each client asks for, noted for the access log (`sni.rs`).
    config.cert_resolver = Arc::new(sni::NotesServerName(config.cert_resolver.clone()));
    config.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Resumption: TLS 1.3 tickets, encrypted with keys rustls rotates every
    // six hours, beside the stateful cache (256 sessions) the builder
    // already sets up for TLS 1.2 and 1.3. One configuration serves every
    // worker, so a session resumes on any of them.
    config.ticketer = ring::Ticketer::new().map_err(|e| TlsError(format!("TLS set-up: {e}")))?;
    Ok((config, leaf))
}

/// Builds the configuration again from the same files (SIGHUP), keeping
/// the old one's session cache and ticket keys, so that sessions made
/// before the reload still resume. Returns it with the certificate now
/// served, for the log and the metrics ([`served`]); the old configuration
/// is untouched if anything is wrong. Each file is read once: what is said
/// is of the certificate just loaded, not of a second reading of its file.
pub fn reload(
    opts: &ServerTls,
    old: &Arc<ServerConfig>,
) -> Result<(Arc<ServerConfig>, Served), TlsError> {
    let (mut config, leaf) = server_config_and_leaf(opts)?;
    config.session_storage = old.session_storage.clone();
    config.ticketer = old.ticketer.clone();
    Ok((Arc::new(config), serve(&leaf)))
}

/// What the start-up check of the leaf certificate (the first in
/// `--tls-cert`) means for start-up: an error for a CA certificate, which
/// rustls's verifier (webpki) refuses as an end entity, so that every
/// handshake with a verifying rustls client would fail; a warning, and start anyway, for
/// one that has expired or is not valid yet, as nginx does (the operator
/// may be in the middle of renewing it).
fn judge_leaf(cert: &Path, verdict: leaf::Verdict) -> Result<(), TlsError> {
    use leaf::Verdict;
    let cert = cert.display();
    match verdict {
        Verdict::CaAsLeaf => {
            return Err(TlsError(format!(
                "--tls-cert {cert}: the certificate has basicConstraints CA:TRUE; \
                 rustls refuses a CA certificate as a server's own: \
                 issue a leaf certificate (CA:FALSE)"
            )))
        }
        Verdict::Expired(on) => log::warn!(
            "--tls-cert {cert}: the certificate expired on {on} \
             (clients that verify will refuse it)"
        ),
        Verdict::NotYetValid(from) => log::warn!(
            "--tls-cert {cert}: the certificate is not valid until {from} \
             (clients that verify will refuse it)"
        ),
        // rustls and the clients will judge it.
        Verdict::Unreadable => {
            log::debug!("--tls-cert {cert}: could not read its dates and constraints")
        }
        Verdict::Fine => {}
    }
    Ok(())
}

/// Builds the client's configuration: verification against `--ca` alone
/// when given, else the system's trust store; a client certificate when
/// given; or no verification at all with `--insecure`.
pub fn client_config(opts: &ClientTls) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let roots = match &opts.ca {
            Some(ca) => load_roots("--ca", ca)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    match (&opts.cert, &opts.key) {
        (Some(c), Some(k)) => {
            let chain = load_certs("--cert", c)?;
            let key = load_key("--key", k)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError(format!("--key {}: {e}", k.display())))
                .map(Arc::new)
        }
        (None, None) => Ok(Arc::new(builder.with_no_client_auth())),
        (Some(c), None) => Err(TlsError(format!(
            "--cert {} was given without --key",
            c.display()
        ))),
        (None, Some(k)) => Err(TlsError(format!(
            "--key {} was given without --cert",
            k.display()
        ))),
    }
}

/// The system's trusted roots, through rustls-native-certs.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError(
            "no trusted certificates found in the system store; give one with --ca FILE".into(),
        ));
    }
    Ok(roots)
}

/// The name to check the server's certificate against (and send as SNI).
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|_| TlsError(format!("'{name}' is not a valid server name")))
}

/// `--insecure`: accepts any certificate, but still checks that the server
/// holds the key of the certificate it sent (the handshake signature).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What one [`read_records`] found.
#[derive(Debug)]
pub enum Records {
    /// Ciphertext was read and processed; read plaintext, or read again.
    /// `drained`: the socket gave less than rustls asked for, so it had no
    /// more (the short-read rule of `Connection::read`).
    Read { drained: bool },
    /// The socket has nothing now.
    WouldBlock,
    /// The peer closed TCP (with or without close_notify: the session's
    /// reader tells which).
    Eof,
    /// The socket failed.
    Failed(io::Error),
    /// The peer broke the protocol or failed verification; the alert is
    /// queued for [`write_records`].
    Rejected(rustls::Error),
}

/// Reads one batch of ciphertext from `sock` into the session and
/// processes it.
pub fn read_records(tls: &mut rustls::Connection, sock: &mut impl Read) -> Records {
    let mut sock = ShortReadProbe { sock, short: false };
    loop {
        return match tls.read_tls(&mut sock) {
            Ok(0) => Records::Eof,
            Ok(_) => match tls.process_new_packets() {
                Ok(_) => Records::Read {
                    drained: sock.short,
                },
                Err(e) => Records::Rejected(e),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Records::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Records::Failed(e),
        };
    }
}

/// A socket that notes whether its last read returned less than the buffer
/// it was given. rustls reads ciphertext into its own buffer, so only this
/// wrapper sees whether the kernel ran out: it lets a TLS connection skip
/// the read that would only say `WouldBlock`, as a plain one does.
struct ShortReadProbe<'a, S> {
    sock: &'a mut S,
    short: bool,
}

impl<S: Read> Read for ShortReadProbe<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// Writes the session's pending records to `sock` until it has none or the
/// socket refuses more. Returns `Ok(true)` when all is written, `Ok(false)`
/// on `WouldBlock`.
pub fn write_records(tls: &mut rustls::Connection, sock: &mut impl Write) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// How many of a server's first bytes [`server_speaks_tls`] needs to be
/// sure: a record header (5) and the first handshake message's type.
pub const SERVER_START_LEN: usize = 6;

/// Whether the first bytes a server sent (at least one, at most
/// [`SERVER_START_LEN`] are looked at) can begin a TLS server's answer to
/// our ClientHello: a handshake record (22) whose first message is a
/// ServerHello (type 2; a TLS 1.3 HelloRetryRequest is one too), or an
/// alert record (21), both with a 3.x record version. Too few bytes to tell
/// count as TLS: rustls will judge the rest.
///
/// A plain-TCP server fails this on its first byte if it sends text (a
/// greeting, an error line, an HTTP status), or on the sixth if it echoes
/// our own ClientHello (type 1) back.
pub fn server_speaks_tls(first: &[u8]) -> bool {
    const HANDSHAKE: u8 = 22;
    const ALERT: u8 = 21;
    const SERVER_HELLO: u8 = 2;
    matches!(
        first,
        [ALERT]
            | [ALERT, 3, ..]
            // Too short to see the message's type yet.
            | [HANDSHAKE]
            | [HANDSHAKE, 3]
            | [HANDSHAKE, 3, _]
            | [HANDSHAKE, 3, _, _]
            | [HANDSHAKE, 3, _, _, _]
            | [HANDSHAKE, 3, _, _, _, SERVER_HELLO, ..]
    )
}

/// A TLS alert in words: its name in the RFCs (RFC 8446 6.2), spaced.
pub fn alert_in_words(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    let words = match alert {
        A::CloseNotify => "close notify",
        A::UnexpectedMessage => "unexpected message",
        A::BadRecordMac => "bad record MAC",
        A::DecryptionFailed => "decryption failed",
        A::RecordOverflow => "record overflow",
        A::DecompressionFailure => "decompression failure",
        A::HandshakeFailure => "handshake failure",
        A::NoCertificate => "no certificate",
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "certificate revoked",
        A::CertificateExpired => "certificate expired",
        A::CertificateUnknown => "certificate unknown",
        A::IllegalParameter => "illegal parameter",
        A::UnknownCA => "unknown CA",
        A::AccessDenied => "access denied",
        A::DecodeError => "decode error",
        A::DecryptError => "decrypt error",
        A::ExportRestriction => "export restriction",
        A::ProtocolVersion => "protocol version",
        A::InsufficientSecurity => "insufficient security",
        A::InternalError => "internal error",
        A::InappropriateFallback => "inappropriate fallback",
        A::UserCanceled => "user canceled",
        A::NoRenegotiation => "no renegotiation",
        A::MissingExtension => "missing extension",
        A::UnsupportedExtension => "unsupported extension",
        A::CertificateUnobtainable => "certificate unobtainable",
        A::UnrecognisedName => "unrecognized name",
        A::BadCertificateStatusResponse => "bad certificate status response",
        A::BadCertificateHashValue => "bad certificate hash value",
        A::UnknownPSKIdentity => "unknown PSK identity",
        A::CertificateRequired => "certificate required",
        A::NoApplicationProtocol => "no application protocol",
        A::EncryptedClientHelloRequired => "encrypted client hello required",
        other => return format!("alert {}", u8::from(other)),
    };
    words.into()
}

/// A rustls error in words a user can act on.
pub fn explain(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "certificate verification failed: unknown issuer".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "certificate verification failed: name mismatch".into()
            }
            C::Expired | C::ExpiredContext { .. } => {
                "certificate verification failed: certificate expired".into()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "certificate verification failed: certificate not valid yet".into()
            }
            // No trusted root could vouch for the chain: webpki reports the
            // last key it tried, which says the same thing less plainly.
            C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
            | C::UnsupportedSignatureAlgorithmContext { .. } => {
                "certificate verification failed: unknown issuer".into()
            }
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                "certificate verification failed: the server sent a CA certificate \
                 (basicConstraints CA:TRUE) as its own"
                    .into()
            }
            other => format!("certificate verification failed: {other:?}"),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_servers_first_bytes_are_told_from_plain_tcp() {
        // A ServerHello record, an alert, and their beginnings.
        let hello = [22, 3, 3, 0, 90, 2, 0, 0, 86];
        for n in 1..=hello.len() {
            assert!(server_speaks_tls(&hello[..n]), "{:?}", &hello[..n]);
        }
        assert!(server_speaks_tls(&[21]));
        assert!(server_speaks_tls(&[21, 3, 3, 0, 2, 2, 40]));
        // Text; our own ClientHello echoed back; a wrong record version.
        assert!(!server_speaks_tls(b"Welcome\n"));
        assert!(!server_speaks_tls(b"H"));
        assert!(!server_speaks_tls(&[22, 3, 1, 1, 0, 1, 0, 0, 252]));
        assert!(!server_speaks_tls(&[22, 4]));
        assert!(!server_speaks_tls(&[21, 0]));
        assert!(!server_speaks_tls(&[]));
    }

    #[test]
    fn alerts_read_as_words() {
        use rustls::AlertDescription as A;
        assert_eq!(alert_in_words(A::BadCertificate), "bad certificate");
        assert_eq!(alert_in_words(A::UnknownCA), "unknown CA");
        assert_eq!(
            alert_in_words(A::CertificateRequired),
            "certificate required"
        );
        assert_eq!(alert_in_words(A::from(0xee)), "alert 238");
    }
}
