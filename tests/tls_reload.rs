//! Reloading the server's certificate on SIGHUP, over real sockets: new
//! handshakes get the new certificate and established sessions keep theirs,
//! a broken file keeps the old one, with workers the reload is one line and
//! one count and every worker serves its result, and a plain server says
//! there is nothing to reload. The server's other TLS is tests/tls_server.rs.

#![cfg(feature = "tls")]

mod common;

use std::io::Write;
use std::time::Duration;

use common::tls::*;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The DER of the certificate the server presented on `s`.
fn presented(s: &TlsStream) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

/// The DER of the first certificate in a PEM file.
fn der(path: &str) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[test]
fn sighup_reloads_the_certificate_for_new_handshakes_only() {
    let pki = Pki::new("reload");
    let (live, live_key) = pki.live_files();
    let mut server = Server::start(&[
        "echo",
        "--tls-cert",
        &live,
        "--tls-key",
        &live_key,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let resuming = client_config(&pki, false, &[]);
    let mut first = tls_connect(server.addr, resuming.clone());
    first.write_all(b"one").unwrap();
    tls_expect(&mut first, b"one");
    assert_eq!(presented(&first), der(&pki.path("server.pem")));
    // The new certificate goes in place; SIGHUP.
    std::fs::copy(pki.path("server2.pem"), &live).unwrap();
    std::fs::copy(pki.path("server2-key.pem"), &live_key).unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log("TLS reloaded");
    assert!(line.contains("CN=localhost, valid until "), "{line}");
    let mut fresh = tls_connect(server.addr, client_config(&pki, false, &[]));
    fresh.write_all(b"two").unwrap();
    tls_expect(&mut fresh, b"two");
    assert_eq!(presented(&fresh), der(&pki.path("server2.pem")));
    // The established connection is untouched; a session from before the
    // reload still resumes.
    first.write_all(b"still").unwrap();
    tls_expect(&mut first, b"still");
    let mut again = tls_connect(server.addr, resuming);
    again.write_all(b"back").unwrap();
    tls_expect(&mut again, b"back");
    assert_eq!(
        again.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    // A broken reload keeps the old configuration, and says so.
    std::fs::write(&live_key, "not a key\n").unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log("TLS not reloaded");
    assert!(line.contains("live-key.pem"), "{line}");
    assert!(line.contains(" ERROR "), "{line}");
    let mut after = tls_connect(server.addr, client_config(&pki, false, &[]));
    after.write_all(b"ok").unwrap();
    tls_expect(&mut after, b"ok");
    assert_eq!(presented(&after), der(&pki.path("server2.pem")));
    assert!(server.running());
}

/// Issue 21: with several workers a SIGHUP is one reload for the whole
/// server: one line and one count, whatever its outcome, and every worker
/// serves what it loaded.
#[test]
fn under_workers_a_reload_is_one_line_and_one_count_and_every_worker_serves_it() {
    let pki = Pki::new("reload-workers");
    let (live, live_key) = pki.live_files();
    let mut server = Server::start(&[
        "echo",
        "--workers",
        "4",
        "--tls-cert",
        &live,
        "--tls-key",
        &live_key,
        "--metrics",
        "127.0.0.1:0",
        "--log-level",
        "debug",
    ]);
    let metrics = common::metrics::metrics_addr(&mut server);
    std::fs::copy(pki.path("server2.pem"), &live).unwrap();
    std::fs::copy(pki.path("server2-key.pem"), &live_key).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("TLS reloaded");
    // Eight open at once are spread over the four workers (two each, give
    // or take one): each presents the new certificate.
    let open: Vec<TlsStream> = (0..8)
        .map(|i| {
            let mut s = tls_connect(server.addr, client_config(&pki, false, &[]));
            let msg = format!("after {i}");
            s.write_all(msg.as_bytes()).unwrap();
            tls_expect(&mut s, msg.as_bytes());
            assert_eq!(presented(&s), der(&pki.path("server2.pem")), "client {i}");
            s
        })
        .collect();
    eventually("eight handshakes logged", || {
        server.log_lines("TLS established").len() >= 8
    });
    let serving: std::collections::BTreeSet<String> = server
        .log_lines("TLS established")
        .iter()
        .filter_map(|l| Some(l.split("worker ").nth(1)?.split(':').next()?.to_string()))
        .collect();
    assert_eq!(serving.len(), 4, "{serving:?}");
    // A broken reload: one error line, one failure counted.
    std::fs::write(&live_key, "not a key\n").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("TLS not reloaded");
    let failures = || {
        let text = common::metrics::get(metrics, "/metrics");
        common::metrics::sample(&text, "monoloop_tls_reload_failures_total")
    };
    eventually("the failure counted", || failures() >= 1.0);
    // Every worker gets the signal within a few milliseconds, and posts its
    // figures within 100 ms: half a second shows any second line or count.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(failures(), 1.0);
    assert_eq!(
        server.log_lines("TLS not reloaded").len(),
        1,
        "{:?}",
        server.log()
    );
    assert_eq!(
        server.log_lines("TLS reloaded").len(),
        1,
        "{:?}",
        server.log()
    );
    // Worker 0 reloads for all: its lines speak for the server, and carry
    // no `worker 0: ` of their own.
    let reload_lines: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.contains("SIGHUP"))
        .collect();
    assert!(
        reload_lines.iter().all(|l| !l.contains("worker ")),
        "{reload_lines:?}"
    );
    drop(open);
}

#[test]
fn sighup_without_tls_says_there_is_nothing_to_reload() {
    let mut server = Server::start(&["echo"]);
    server.signal(libc::SIGHUP);
    server.wait_for_log("nothing to reload");
    let mut s = connect(server.addr);
    s.write_all(b"alive").unwrap();
    expect(&mut s, b"alive");
}
