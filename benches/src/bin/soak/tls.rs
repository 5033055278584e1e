//! TLS for the soak: a CA made at run time, the server's certificate issued
//! by it and written again for each reload (a new certificate with a new
//! expiry, or the same bytes rewritten: a touch), and the client side that
//! trusts the CA only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;

use crate::net::{connect, Shared};

/// The CA, and where the server's certificate and key are.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub client: Arc<rustls::ClientConfig>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How many certificates were issued (each gets a later expiry).
    issued: u32,
    /// The notAfter of the certificate in the files, seconds since the
    /// epoch.
    pub expiry: i64,
}

impl Pki {
    /// A CA, and a first certificate for localhost written to `dir`.
    pub fn new(dir: &Path) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).expect("CA in the roots");
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut pki = Pki {
            issuer: Issuer::new(ca, ca_key),
            client: Arc::new(client),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            issued: 0,
            expiry: 0,
        };
        pki.reissue();
        pki
    }

    /// Writes a new certificate and key (a day later expiry than the last
    /// one), each through a rename so that the server never reads half a
    /// file.
    pub fn reissue(&mut self) {
        let k = self.issued;
        self.issued += 1;
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        leaf.not_after = rcgen::date_time_ymd(
            2031 + (k / 336) as i32,
            (1 + (k / 28) % 12) as u8,
            (1 + k % 28) as u8,
        );
        self.expiry = leaf.not_after.unix_timestamp();
        let key = KeyPair::generate().expect("server key");
        let cert = leaf
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        write_through_rename(&self.cert, cert.pem().as_bytes());
        write_through_rename(&self.key, key.serialize_pem().as_bytes());
    }

    /// Rewrites the files with the bytes they hold (a touch: the same
    /// certificate, a new modification time).
    pub fn touch(&self) {
        for path in [&self.cert, &self.key] {
            let bytes = std::fs::read(path).expect("read the TLS file");
            write_through_rename(path, &bytes);
        }
    }

    /// The client side, for the load's threads.
    pub fn client(&self) -> Client {
        Client(self.client.clone())
    }
}

/// The client side: trusts the CA only.
pub struct Client(Arc<rustls::ClientConfig>);

impl Client {
    /// A TLS connection to `addr`, counted as made to `server`, the
    /// handshake done.
    pub fn connect(
        &self,
        shared: &Shared,
        server: &str,
        addr: SocketAddr,
    ) -> std::io::Result<TlsStream> {
        let sock = connect(shared, server, addr)?;
        let name = ServerName::try_from("localhost").expect("a valid name");
        let conn =
            rustls::ClientConnection::new(self.0.clone(), name).map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(s)
    }
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

fn write_through_rename(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write a TLS file");
    std::fs::rename(&tmp, path).expect("rename a TLS file");
}
