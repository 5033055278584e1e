//! TLS peers for the integration tests: certificates made at run time with
//! rcgen ([`Pki`]), a TLS server started on them, a rustls client over a
//! blocking socket with the deadlines of [`super::connect`], and the
//! monoloop client run to its end ([`run_client`]).

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{binary, connect, Server, PATIENCE};

/// A directory of PEM files: a CA, a server certificate it signed for
/// localhost and 127.0.0.1, a client certificate it signed, an expired
/// server certificate, an unrelated CA and a client certificate that CA
/// signed, and a self-signed CA certificate for localhost (CA:TRUE, which
/// no server should use as its own).
pub struct Pki(pub PathBuf);

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    expired: bool,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    if expired {
        params.not_before = date_time_ymd(2019, 1, 1);
        params.not_after = date_time_ymd(2020, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("monoloop-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_cert, issuer) = ca("monoloop test CA");
        let (other_cert, other_issuer) = ca("some other CA");
        let server_names = ["localhost", "127.0.0.1"];
        let (server, server_key) = leaf(
            &issuer,
            &server_names,
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
        );
        let (server2, server2_key) = leaf(
            &issuer,
            &server_names,
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
        );
        let (old, old_key) = leaf(
            &issuer,
            &server_names,
            ExtendedKeyUsagePurpose::ServerAuth,
            true,
        );
        let (client, client_key) = leaf(
            &issuer,
            &["client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        );
        let (rogue, rogue_key) = leaf(
            &other_issuer,
            &["client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        );
        let (ca_leaf, ca_leaf_key) = {
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
        };
        for (name, pem) in [
            ("ca.pem", ca_cert.pem()),
            ("other-ca.pem", other_cert.pem()),
            ("server.pem", server),
            ("server-key.pem", server_key),
            ("server2.pem", server2),
            ("server2-key.pem", server2_key),
            ("expired.pem", old),
            ("expired-key.pem", old_key),
            ("client.pem", client),
            ("client-key.pem", client_key),
            ("rogue-client.pem", rogue),
            ("rogue-client-key.pem", rogue_key),
            ("ca-leaf.pem", ca_leaf),
            ("ca-leaf-key.pem", ca_leaf_key),
            ("garbage.pem", "not a pem file\n".into()),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        Pki(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    /// Copies of the server's certificate and key, `live.pem` and
    /// `live-key.pem`, for a test to rewrite before a SIGHUP: their paths.
    pub fn live_files(&self) -> (String, String) {
        let (live, live_key) = (self.path("live.pem"), self.path("live-key.pem"));
        std::fs::copy(self.path("server.pem"), &live).unwrap();
        std::fs::copy(self.path("server-key.pem"), &live_key).unwrap();
        (live, live_key)
    }

    /// `--tls-cert server.pem --tls-key server-key.pem` and friends.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("server.pem"),
            "--tls-key".into(),
            self.path("server-key.pem"),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a TLS server in `mode` with extra arguments.
pub fn tls_server(pki: &Pki, mode: &[&str], extra: &[&str]) -> Server {
    let mut args: Vec<String> = mode.iter().map(|s| s.to_string()).collect();
    args.extend(pki.server_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

/// A rustls client over a blocking socket with timeouts.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub fn client_config(pki: &Pki, client_cert: bool, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = if client_cert {
        let chain = CertificateDer::pem_file_iter(pki.path("client.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("client-key.pem")).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

pub fn tls_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream {
    let sock = connect(addr);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Reads until `expected` has come over TLS; a failure names the client,
/// shows what arrived and the server's log (`common::client`).
#[track_caller]
pub fn tls_expect(s: &mut TlsStream, expected: &[u8]) {
    let step = format!("expect {} over TLS", super::client::shown(expected));
    let reader = super::client::Reader::of(&s.sock, &step);
    super::client::expect_exactly(s, expected, &reader);
}

/// Reads to the end; true if the end was a clean close_notify.
pub fn tls_read_to_end(s: &mut TlsStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return (out, false),
            Err(e) => panic!("TLS read failed after {} bytes: {e}", out.len()),
        }
    }
}

/// Runs `monoloop client ARGS` with `input` on stdin (a file) to its end;
/// returns (exit code, stdout, stderr). A client still running after
/// `PATIENCE` fails the test.
pub fn run_client(args: &[&str], input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let path = std::env::temp_dir().join(format!(
        "monoloop-tls-in-{}-{:?}",
        std::process::id(),
        thread::current().id()
    ));
    std::fs::write(&path, input).unwrap();
    let mut child = binary()
        .arg("client")
        .args(args)
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "client hung");
        thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    std::fs::remove_file(&path).unwrap();
    (
        out.status.code(),
        reader.join().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
