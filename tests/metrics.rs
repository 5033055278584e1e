//! `--metrics ADDR` over real sockets: the Prometheus text, exact against
//! what the test did; `/healthz` before and during a drain; the answers to
//! everything else; `promtool` where it is installed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::metrics::*;
use common::*;

#[test]
fn the_metrics_count_exactly_what_happened() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0", "--max-connections", "2"]);
    let m = metrics_addr(&mut server);
    let mut a = connect(server.addr);
    a.write_all(b"12345").unwrap();
    expect(&mut a, b"12345");
    let mut b = connect(server.addr);
    b.write_all(b"678").unwrap();
    expect(&mut b, b"678");
    let mut full = connect(server.addr);
    assert_eq!(
        read_to_eof(&mut full).0,
        b"Server is full. Try again later.\n"
    );
    let answer = get(m, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    let text = answer.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(sample(text, "monoloop_connections_active"), 2.0);
    assert_eq!(sample(text, "monoloop_connections_accepted_total"), 2.0);
    assert_eq!(
        sample(text, "monoloop_connections_rejected_total{reason=\"full\"}"),
        1.0
    );
    assert_eq!(sample(text, "monoloop_received_bytes_total"), 8.0);
    assert_eq!(sample(text, "monoloop_sent_bytes_total"), 8.0);
    // Every family says what it is; scrapes are not connections.
    for family in [
        "monoloop_idle_timeouts_total",
        "monoloop_loop_busy_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    let again = get(m, "/metrics");
    assert!(again.contains("\nmonoloop_connections_accepted_total 2\n"));
    // The rest of HTTP, briefly.
    assert!(http(m, "HEAD /metrics HTTP/1.1\r\n\r\n").ends_with("\r\n\r\n"));
    assert!(http(m, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(get(m, "/nothing").starts_with("HTTP/1.1 404"));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert!(http(m, &huge).starts_with("HTTP/1.1 431"));
}

#[test]
fn health_turns_to_draining_when_a_shutdown_begins() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0", "--drain-timeout", "10"]);
    let m = metrics_addr(&mut server);
    let ok = get(m, "/healthz");
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok\n"),
        "{ok}"
    );
    // A client that does not read keeps the drain going.
    let stuck = stuck_client(server.addr);
    server.signal(libc::SIGTERM);
    server.wait_for_log("no longer accepting");
    let draining = get(m, "/healthz");
    assert!(
        draining.starts_with("HTTP/1.1 503") && draining.ends_with("draining\n"),
        "{draining}"
    );
    drop(stuck);
    server.wait_exit(Duration::from_secs(10));
}

#[test]
fn several_workers_are_summed_and_listed() {
    let mut server = Server::start(&["echo", "--workers", "3", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    let mut open: Vec<TcpStream> = (0..9).map(|_| connect(server.addr)).collect();
    for s in &mut open {
        s.write_all(b"abc").unwrap();
        expect(s, b"abc");
    }
    // Each worker posts its figures at most 100 ms after they change.
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = get(m, "/metrics");
        if text.contains("\nmonoloop_connections_accepted_total 9\n")
            && text.contains("\nmonoloop_received_bytes_total 27\n")
        {
            break text;
        }
        assert!(Instant::now() < deadline, "never summed to 9:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(sample(&text, "monoloop_received_bytes_total"), 27.0);
    let per_worker: f64 = (0..3)
        .map(|w| {
            sample(
                &text,
                &format!("monoloop_worker_connections_active{{worker=\"{w}\"}}"),
            )
        })
        .sum();
    assert_eq!(per_worker, 9.0);
}

#[test]
fn promtool_accepts_the_text() {
    if !skip::have("promtool", "--version", "prometheus") {
        return;
    }
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    let mut s = connect(server.addr);
    s.write_all(b"x").unwrap();
    expect(&mut s, b"x");
    let answer = get(m, "/metrics");
    let text = answer.split("\r\n\r\n").nth(1).unwrap().to_string();
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_request_then_fin_is_answered_and_a_full_backlog_drains() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    // `nc -N`: the request, then FIN.
    let mut s = TcpStream::connect(m).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.ends_with("ok\n"), "{out:?}");
    // 64 silent clients fill the scrapes' places; the 65th waits in the
    // backlog, and is answered once they time out (5 s).
    let idle: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(m).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let answer = get(m, "/healthz");
    assert!(answer.ends_with("ok\n"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    drop(idle);
}

#[test]
fn idle_workers_make_no_wakeups_for_the_metrics() {
    let mut server = Server::start(&["echo", "--workers", "2", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    let turns = |text: &str| {
        sample(
            text.split("\r\n\r\n").nth(1).unwrap(),
            "monoloop_loop_turns_total",
        )
    };
    let first = turns(&get(m, "/metrics"));
    std::thread::sleep(Duration::from_secs(1));
    let second = turns(&get(m, "/metrics"));
    assert!(
        second - first < 20.0,
        "{first} -> {second} turns while idle"
    );
}
