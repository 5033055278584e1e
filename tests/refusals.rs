//! Clients turned away, over real sockets: what each is told, on which
//! layer, and where it is counted. The regression tests of the refusal
//! defects of issue 18 (1 to 3); the TLS ones are in [`over_tls`].

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};

use common::metrics::*;
use common::*;

/// The words a client over `--max-per-ip` is told.
const TOO_MANY: &[u8] = b"Too many connections from your address. Try again later.\n";

/// The server's `/metrics` text, once `ready` holds for it; fails after
/// [`PATIENCE`].
fn scrape_when(m: SocketAddr, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    eventually(what, || {
        let answer = get(m, "/metrics");
        text = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        ready(&text)
    });
    text
}

/// `monoloop_connections_rejected_total` for `reason`.
fn rejected(text: &str, reason: &str) -> f64 {
    sample(
        text,
        &format!("monoloop_connections_rejected_total{{reason=\"{reason}\"}}"),
    )
}

/// With one client served and `n` turned away: the `n` are counted under
/// their reason (`/metrics`'s `reason` label and the stats line's key), and
/// `accepted` (`monoloop_connections_accepted_total`, the stats line's
/// `total`) counts the one served alone.
fn counted_apart(server: &mut Server, m: SocketAddr, (label, key): (&str, &str), n: u64) {
    let text = scrape_when(m, &format!("{n} {label} in /metrics"), |t| {
        rejected(t, label) == n as f64
    });
    assert_eq!(
        sample(&text, "monoloop_connections_accepted_total"),
        1.0,
        "accepted_total counts the {n} clients turned away as {label}"
    );
    let line = server.wait_stats(&[(key, n)]);
    assert_eq!(
        line.get("total"),
        1,
        "the stats line counts clients turned away as {key}: {line}"
    );
}

/// A client that is served: what it says comes back.
fn served(addr: SocketAddr, first: &[u8], words: &[u8]) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(first).unwrap();
    s.write_all(words).unwrap();
    expect(&mut s, words);
    s
}

/// Issue 18, defect 3: clients `--deny` turns away are denied, not accepted.
#[test]
fn denied_clients_are_counted_as_denied_not_accepted() {
    let mut server = Server::start(&[
        "echo",
        "--metrics",
        "127.0.0.1:0",
        "--deny",
        "127.0.0.2",
        "--stats-interval",
        "0.2",
    ]);
    let m = metrics_addr(&mut server);
    let _kept = served(server.addr, b"", b"served");
    let from: IpAddr = "127.0.0.2".parse().unwrap();
    for _ in 0..5 {
        let mut s = connect_from(from, server.addr);
        let (said, _) = read_to_eof(&mut s);
        assert!(said.is_empty(), "a denied client was told {said:?}");
    }
    counted_apart(&mut server, m, ("denied", "denied"), 5);
}

/// Issue 20, item 7: a denial wins over the limit. A denied client that
/// comes while the server is full is told nothing, not `Server is full`,
/// and is counted as denied, not rejected.
#[test]
fn a_denied_client_is_told_nothing_even_when_the_server_is_full() {
    let mut server = Server::start(&[
        "echo",
        "--deny",
        "127.0.0.2",
        "--max-connections",
        "1",
        "--access-log",
        "--stats-interval",
        "0.2",
    ]);
    let _kept = served(server.addr, b"", b"served");
    let from: IpAddr = "127.0.0.2".parse().unwrap();
    let mut s = connect_from(from, server.addr);
    let (said, _) = read_to_eof(&mut s);
    assert!(
        said.is_empty(),
        "a denied client at a full server was told {:?}",
        String::from_utf8_lossy(&said)
    );
    server.wait_stats(&[("denied", 1), ("rejected", 0)]);
    server.wait_for_log_where("access conn=0", |l| l.contains("end=denied"));
}

/// Issue 18, defect 3: clients over `--max-per-ip` are counted there, not
/// as accepted.
#[test]
fn clients_over_the_limit_per_address_are_counted_there_not_accepted() {
    let mut server = Server::start(&[
        "echo",
        "--metrics",
        "127.0.0.1:0",
        "--max-per-ip",
        "1",
        "--stats-interval",
        "0.2",
    ]);
    let m = metrics_addr(&mut server);
    let _kept = served(server.addr, b"", b"served");
    for _ in 0..3 {
        let mut s = connect(server.addr);
        let (said, _) = read_to_eof(&mut s);
        assert_eq!(
            String::from_utf8_lossy(&said),
            String::from_utf8_lossy(TOO_MANY)
        );
    }
    counted_apart(&mut server, m, ("per_ip", "per_ip_rejected"), 3);
}

/// Issue 18, defect 3: connections with a bad PROXY header are proxy
/// errors, not accepted.
#[test]
fn bad_proxy_headers_are_counted_as_proxy_errors_not_accepted() {
    let mut server = Server::start(&[
        "echo",
        "--metrics",
        "127.0.0.1:0",
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.0/8",
        "--stats-interval",
        "0.2",
    ]);
    let m = metrics_addr(&mut server);
    let _kept = served(
        server.addr,
        b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n",
        b"served",
    );
    let bad: [&[u8]; 3] = [
        b"hello, no header\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\nbare LF",
    ];
    for b in bad {
        let mut s = connect(server.addr);
        s.write_all(b).unwrap();
        let (said, _) = read_to_eof(&mut s);
        assert!(
            said.is_empty(),
            "{:?} got {said:?}",
            String::from_utf8_lossy(b)
        );
    }
    counted_apart(&mut server, m, ("proxy", "proxy_errors"), 3);
}

/// Issue 18, defect 2, on plain TCP: a full server behind `--proxy-protocol`
/// reads the header first, then says it is full.
#[test]
fn a_full_proxy_listener_reads_the_header_before_saying_it_is_full() {
    let server = Server::start(&[
        "echo",
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.0/8",
        "--max-connections",
        "1",
    ]);
    let header: &[u8] = b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n";
    let _kept = served(server.addr, header, b"served");
    let mut late = connect(server.addr);
    late.write_all(header).unwrap();
    let (said, _) = read_to_eof(&mut late);
    assert_eq!(
        String::from_utf8_lossy(&said),
        "Server is full. Try again later.\n"
    );
}

/// Turned away from a TLS listener: the words only ever through TLS.
#[cfg(feature = "tls")]
mod over_tls {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;

    use rustls::pki_types::ServerName;

    use super::common::metrics::metrics_addr;
    use super::common::tls::*;
    use super::common::*;
    use super::{rejected, scrape_when};

    /// The words a full server says, through TLS on a TLS listener.
    const SERVER_FULL: &[u8] = b"Server is full. Try again later.\n";

    /// How many turned-away TLS clients the server keeps a place for while
    /// they handshake (`MAX_REJECTING` in the loop).
    const WAITING_PLACES: usize = 64;

    /// A TLS client behind a balancer: `header` first, alone or in the
    /// same write as the ClientHello, then the handshake.
    fn tls_connect_behind(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        header: &[u8],
        with_hello: bool,
    ) -> TlsStream {
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(config, name).unwrap();
        let mut sock = connect(addr);
        let mut first = header.to_vec();
        if with_hello {
            conn.write_tls(&mut first).unwrap();
        }
        sock.write_all(&first).unwrap();
        rustls::StreamOwned::new(conn, sock)
    }

    /// True if `s` has been sent nothing so far (it may have been closed).
    fn said_nothing_yet(s: &mut TcpStream) -> Result<(), Vec<u8>> {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        let said = match s.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Vec::new(),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Vec::new(),
            Err(e) => panic!("read: {e}"),
        };
        s.set_nonblocking(false).unwrap();
        if said.is_empty() {
            Ok(())
        } else {
            Err(said)
        }
    }

    /// Issue 18, defect 1: beyond the places for turned-away TLS clients,
    /// the next are closed without a word, never told in plaintext.
    #[test]
    fn beyond_the_waiting_places_a_full_tls_server_closes_without_plaintext() {
        let pki = Pki::new("refuse-beyond");
        let mut server = tls_server(
            &pki,
            &["echo", "--max-connections", "1", "--metrics", "127.0.0.1:0"],
            // Longer than the test: the waiting ones keep their places.
            &["--handshake-timeout", "60"],
        );
        let m = metrics_addr(&mut server);
        let mut kept = tls_connect(server.addr, client_config(&pki, false, &[]));
        kept.write_all(b"in").unwrap();
        tls_expect(&mut kept, b"in");
        // Turned away, each waits for a ClientHello that never comes.
        let mut waiting: Vec<TcpStream> =
            (0..WAITING_PLACES).map(|_| connect(server.addr)).collect();
        scrape_when(m, "every waiting client turned away", |t| {
            rejected(t, "full") == WAITING_PLACES as f64
        });
        for (i, s) in waiting.iter_mut().enumerate() {
            if let Err(said) = said_nothing_yet(s) {
                panic!("waiting client {i} was sent {said:?} before any ClientHello");
            }
        }
        // Beyond the bound: closed (or reset), and not a byte of plaintext.
        for i in 0..3 {
            let mut s = connect(server.addr);
            let (said, _) = read_to_eof(&mut s);
            assert!(
                said.is_empty(),
                "client {} beyond the {WAITING_PLACES} waiting places was sent {:?} \
                 in plaintext on a TLS listener",
                WAITING_PLACES + 1 + i,
                String::from_utf8_lossy(&said)
            );
        }
        // The served client never noticed.
        kept.write_all(b"still here").unwrap();
        tls_expect(&mut kept, b"still here");
        drop(waiting);
    }

    /// Issue 18, defect 2: a full TLS server behind a balancer reads the
    /// PROXY header first, then says `Server is full` through TLS.
    #[test]
    fn a_full_tls_server_reads_the_proxy_header_before_the_handshake() {
        let pki = Pki::new("refuse-proxy");
        let server = tls_server(
            &pki,
            &["echo", "--max-connections", "1", "--proxy-protocol"],
            &["--proxy-from", "127.0.0.0/8"],
        );
        let config = client_config(&pki, false, &[]);
        let mut kept = tls_connect_behind(
            server.addr,
            config.clone(),
            b"PROXY TCP4 192.0.2.1 10.0.0.1 1111 443\r\n",
            true,
        );
        kept.write_all(b"in").unwrap();
        tls_expect(&mut kept, b"in");
        // The header alone then the handshake, and both in one write.
        for with_hello in [false, true] {
            let mut full = tls_connect_behind(
                server.addr,
                config.clone(),
                b"PROXY TCP4 192.0.2.2 10.0.0.1 2222 443\r\n",
                with_hello,
            );
            let mut said = Vec::new();
            if let Err(e) = full.read_to_end(&mut said) {
                panic!(
                    "a client at the limit (header with the ClientHello: {with_hello}) \
                     must complete its handshake and read {:?} through TLS; it got \
                     {said:?}, then: {e}",
                    String::from_utf8_lossy(SERVER_FULL)
                );
            }
            assert_eq!(
                String::from_utf8_lossy(&said),
                String::from_utf8_lossy(SERVER_FULL)
            );
        }
        kept.write_all(b"still here").unwrap();
        tls_expect(&mut kept, b"still here");
    }
}
