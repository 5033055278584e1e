//! The monoloop client's TLS (`monoloop client --tls`), over real sockets:
//! byte-exact transfer, why a verification failed, the server's alert
//! named, a plain or silent or closing server said in one line, and the
//! handshake's place before input and under `--timeout`. The server's TLS
//! is tests/tls_server.rs; certificates come from `common::tls`.

#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;

#[test]
fn ten_mib_echo_byte_exact_through_the_client() {
    let pki = Pki::new("echo10");
    let server = tls_server(&pki, &["echo"], &[]);
    let mut input = vec![0u8; 10 << 20];
    fill_pattern(&mut input, 0);
    let target = server.addr.to_string();
    let (code, out, err) = run_client(&[&target, "--tls", "--ca", &pki.path("ca.pem")], &input);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.len(), input.len());
    assert!(out == input);
}

#[test]
fn the_client_says_why_verification_failed() {
    let pki = Pki::new("verify");
    let server = tls_server(&pki, &["echo"], &[]);
    let target = server.addr.to_string();
    let ca = pki.path("ca.pem");
    let other = pki.path("other-ca.pem");
    for (args, why) in [
        (vec![&target[..], "--tls", "--ca", &other], "unknown issuer"),
        (
            vec![
                &target[..],
                "--tls",
                "--ca",
                &ca,
                "--server-name",
                "elsewhere.test",
            ],
            "name mismatch",
        ),
    ] {
        let (code, out, err) = run_client(&args, b"x\n");
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let expired = Server::start(&[
        "echo",
        "--tls-cert",
        &pki.path("expired.pem"),
        "--tls-key",
        &pki.path("expired-key.pem"),
    ]);
    let (code, _, err) = run_client(&[&expired.addr.to_string(), "--tls", "--ca", &ca], b"x\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("expired"), "{err}");
    // --insecure connects anyway, and says so.
    let (code, out, err) = run_client(&[&target, "--tls", "--insecure"], b"anyway\n");
    assert_eq!((code, out.as_slice()), (Some(0), &b"anyway\n"[..]));
    assert!(err.contains("not verified"), "{err}");
}

#[test]
fn the_client_names_the_alert_when_the_server_refuses_its_certificate() {
    let pki = Pki::new("refused");
    let server = tls_server(&pki, &["echo"], &["--tls-client-ca", &pki.path("ca.pem")]);
    let target = server.addr.to_string();
    let ca = pki.path("ca.pem");
    let (rogue, rogue_key) = (
        pki.path("rogue-client.pem"),
        pki.path("rogue-client-key.pem"),
    );
    for (args, alert) in [
        (
            vec![&target[..], "--tls", "--ca", &ca],
            "certificate required",
        ),
        (
            vec![
                &target[..],
                "--tls",
                "--ca",
                &ca,
                "--cert",
                &rogue,
                "--key",
                &rogue_key,
            ],
            "unknown CA",
        ),
    ] {
        let (code, out, err) = run_client(&args, b"let me in\n");
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(
            err,
            format!("error: the server refused the TLS handshake: {alert}\n"),
            "{args:?}"
        );
    }
}

#[test]
fn a_tls_client_against_a_plain_server_says_so_in_one_line() {
    // An echo server sends our ClientHello back; a greeting is text.
    for mode in [&["echo"][..], &["echo", "--greeting", "hello"], &["chat"]] {
        let server = Server::start(mode);
        let target = server.addr.to_string();
        let (code, out, err) = run_client(&[&target, "--tls", "--insecure"], b"hi\n");
        assert_eq!(code, Some(1), "{mode:?}: {err}");
        assert!(out.is_empty(), "{mode:?}");
        assert_eq!(
            err, "error: the server did not answer with TLS (is it a plain-TCP server?)\n",
            "{mode:?}"
        );
    }
}

#[test]
fn a_server_that_closes_during_the_handshake_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let closer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut hello = [0u8; 4096];
        let _ = s.read(&mut hello); // the ClientHello, unanswered
    });
    let (code, out, err) = run_client(&[&target, "--tls", "--insecure"], b"");
    closer.join().unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty());
    assert_eq!(
        err,
        "error: TLS: the server closed the connection during the handshake\n"
    );
}

#[test]
fn a_silent_server_ends_the_tls_client_at_its_timeout() {
    // A plain server that waits for a request says nothing to a ClientHello;
    // `--timeout` bounds the handshake as it bounds the connect.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let silent = std::thread::spawn(move || {
        let (_s, _) = listener.accept().unwrap();
        let _ = done_rx.recv_timeout(PATIENCE);
    });
    let started = Instant::now();
    let (code, out, err) = run_client(&[&target, "--tls", "--insecure", "--timeout", "0.5"], b"");
    let took = started.elapsed();
    done_tx.send(()).unwrap();
    silent.join().unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty());
    assert_eq!(
        err,
        format!(
            "error: connected to {target}, but the TLS handshake had not finished after 0.5s \
             (a plain-TCP server waits silently for data)\n"
        )
    );
    assert!(
        took >= Duration::from_millis(450),
        "gave up early: {took:?}"
    );
}

#[test]
fn the_tls_client_handshakes_before_input_and_its_timeout_ends_there() {
    // The greeting arrives while standard input is silent (the ClientHello
    // used to wait for the first input), and `--timeout` does not apply
    // once the handshake is done.
    let pki = Pki::new("hs-timeout");
    let server = tls_server(&pki, &["echo", "--greeting", "hi there"], &[]);
    let target = server.addr.to_string();
    let ca = pki.path("ca.pem");
    let mut child = binary()
        .args(["client", &target, "--tls", "--ca", &ca, "--timeout", "0.3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let greeting = rx
        .recv_timeout(PATIENCE)
        .expect("no greeting before any input");
    assert_eq!(greeting, b"hi there\n");
    // Well past the timeout, then a line and the end of input.
    std::thread::sleep(Duration::from_millis(600));
    stdin.write_all(b"still here\n").unwrap();
    drop(stdin);
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "client hung");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let rest: Vec<u8> = rx.try_iter().flatten().collect();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(rest, b"still here\n");
}

#[test]
fn a_tls_client_with_no_input_still_reads_the_greeting() {
    // Input ends before the handshake does: close_notify must wait for it.
    let pki = Pki::new("noinput");
    let server = tls_server(&pki, &["echo", "--greeting", "hi there"], &[]);
    let target = server.addr.to_string();
    for _ in 0..3 {
        let (code, out, err) = run_client(&[&target, "--tls", "--ca", &pki.path("ca.pem")], b"");
        assert_eq!(
            (code, out.as_slice()),
            (Some(0), &b"hi there\n"[..]),
            "{err}"
        );
        assert!(err.is_empty(), "{err}");
    }
}
