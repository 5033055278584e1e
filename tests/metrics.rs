//! `--metrics ADDR` over real sockets: the Prometheus text, exact against
//! what the test did; `/healthz` before and during a drain; the answers to
//! everything else; `promtool` where it is installed; and the listener's
//! limits under attack (issue 19): a header deadline, room made for a
//! newcomer beside clients that never finish, only the first request
//! answered, and a close that does not cut the answer short.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::metrics::*;
use common::*;

#[test]
fn the_metrics_count_exactly_what_happened() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0", "--max-connections", "2"]);
    let m = metrics_addr(&mut server);
    // A health check (connect, close without a byte) is not a client
    // (issue 21): counted on its own, not in accepted_total.
    let check = connect(server.addr);
    check.shutdown(std::net::Shutdown::Both).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !get(m, "/metrics").contains("\nmonoloop_health_checks_total 1\n") {
        assert!(Instant::now() < deadline, "no check counted");
        std::thread::sleep(Duration::from_millis(20));
    }
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
    assert!(
        again.contains("\nmonoloop_health_checks_total 1\n"),
        "{again}"
    );
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

/// The Prometheus text of a scrape of `m`.
fn scrape(m: std::net::SocketAddr) -> String {
    let answer = get(m, "/metrics");
    answer.split("\r\n\r\n").nth(1).unwrap().to_string()
}

/// Issue 21: what an operator alerts on beside the counters: the build
/// (`monoloop_build_info`), the configured limits, and, on a plain server,
/// no `monoloop_tls_*` family at all.
#[test]
fn the_build_and_the_limits_are_there_and_no_tls_without_it() {
    let mut server = Server::start(&[
        "echo",
        "--metrics",
        "127.0.0.1:0",
        "--max-connections",
        "77",
        "--max-per-ip",
        "5",
        "--idle-timeout",
        "2.5",
        "--workers",
        "2",
    ]);
    let text = scrape(metrics_addr(&mut server));
    let info = format!(
        "monoloop_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&info))
        .unwrap_or_else(|| panic!("no {info} in:\n{text}"));
    let tls = cfg!(feature = "tls");
    assert!(line.ends_with(&format!("\",tls=\"{tls}\"}} 1")), "{line}");
    assert!(text.contains("# TYPE monoloop_build_info gauge\n"));
    assert_eq!(sample(&text, "monoloop_connections_max"), 77.0);
    assert_eq!(sample(&text, "monoloop_connections_per_ip_max"), 5.0);
    assert_eq!(sample(&text, "monoloop_idle_timeout_seconds"), 2.5);
    assert_eq!(sample(&text, "monoloop_workers"), 2.0);
    assert_eq!(sample(&text, "monoloop_connections_draining"), 0.0);
    assert!(!text.contains("monoloop_tls_"), "TLS families:\n{text}");
    // No limit and no timeout read 0.
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0", "--idle-timeout", "0"]);
    let text = scrape(metrics_addr(&mut server));
    assert_eq!(sample(&text, "monoloop_connections_per_ip_max"), 0.0);
    assert_eq!(sample(&text, "monoloop_idle_timeout_seconds"), 0.0);
    assert_eq!(sample(&text, "monoloop_workers"), 1.0);
}

/// Issue 21: a drain's connections are in `monoloop_connections_draining`,
/// where `monoloop_connections_active` (the slots held) already reads 0:
/// a drain gives each connection's slot back when it begins. (One worker:
/// with several, worker 0 serves the metrics, and its loop, listener
/// included, ends when its own drain does, which may be before the
/// others'; the sum over workers is `worker_link.rs`'s unit test.)
#[test]
fn a_drain_shows_how_many_connections_it_waits_for() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0", "--drain-timeout", "10"]);
    let m = metrics_addr(&mut server);
    let stuck = stuck_client(server.addr);
    server.signal(libc::SIGTERM);
    server.wait_for_log("no longer accepting");
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = scrape(m);
        if text.contains("\nmonoloop_connections_draining 1\n") {
            break text;
        }
        assert!(Instant::now() < deadline, "no draining connection:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(sample(&text, "monoloop_connections_active"), 0.0);
    drop(stuck);
    server.wait_exit(Duration::from_secs(10));
}

/// Issue 21: on a TLS server the certificate's notAfter, in seconds since
/// the epoch, changed by a reload; and a failed reload counted once, not
/// once per worker.
#[cfg(feature = "tls")]
#[test]
fn the_certificates_expiry_follows_reloads_and_a_failed_one_counts_once() {
    let pki = common::tls::Pki::new("metrics-expiry");
    let (live, live_key) = pki.live_files();
    let mut server = Server::start(&[
        "echo",
        "--tls-cert",
        &live,
        "--tls-key",
        &live_key,
        "--workers",
        "3",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let m = metrics_addr(&mut server);
    let text = scrape(m);
    // rcgen's default notAfter: 4096-01-01 00:00:00 UTC.
    assert_eq!(
        sample(&text, "monoloop_tls_certificate_expiry_seconds"),
        67_090_118_400.0
    );
    assert_eq!(sample(&text, "monoloop_tls_reload_failures_total"), 0.0);
    // One that expired on 2020-01-01.
    std::fs::copy(pki.path("expired.pem"), &live).unwrap();
    std::fs::copy(pki.path("expired-key.pem"), &live_key).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("TLS reloaded");
    let deadline = Instant::now() + PATIENCE;
    while sample(&scrape(m), "monoloop_tls_certificate_expiry_seconds") != 1_577_836_800.0 {
        assert!(
            Instant::now() < deadline,
            "the expiry did not follow the reload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&live_key, "not a key\n").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("TLS not reloaded");
    // Every worker has had the signal, and posted its figures (at most
    // 100 ms after a change): one failure, however many workers.
    std::thread::sleep(Duration::from_millis(500));
    let text = scrape(m);
    assert_eq!(sample(&text, "monoloop_tls_reload_failures_total"), 1.0);
    assert_eq!(
        sample(&text, "monoloop_tls_certificate_expiry_seconds"),
        1_577_836_800.0,
        "the old certificate stays"
    );
}

/// Runs `promtool check metrics` on `text`; fails the test if it objects.
fn promtool_check(text: &str) {
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
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    promtool_check(&scrape(m));
    // Several workers, and TLS (issue 21's families): valid too.
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0", "--workers", "2"]);
    promtool_check(&scrape(metrics_addr(&mut server)));
    #[cfg(feature = "tls")]
    {
        let pki = common::tls::Pki::new("promtool");
        let mut server = common::tls::tls_server(&pki, &["echo", "--metrics", "127.0.0.1:0"], &[]);
        let text = scrape(metrics_addr(&mut server));
        assert!(
            text.contains("monoloop_tls_certificate_expiry_seconds "),
            "{text}"
        );
        promtool_check(&text);
    }
}

#[test]
fn a_request_then_fin_is_answered() {
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
}

/// How long a poll may take beside a crowd (issue 19's target), and how
/// long the test waits for one before it fails.
const HEALTH_WITHIN: Duration = Duration::from_secs(1);
const GIVE_UP: Duration = Duration::from_secs(3);

/// Four polls of `/healthz`, 250 ms apart, and a scrape: each answered,
/// within [`HEALTH_WITHIN`].
fn polls_are_answered_at_once(m: std::net::SocketAddr) {
    for poll in 0..5 {
        let path = if poll < 4 { "/healthz" } else { "/metrics" };
        let (answer, took) = timed(m, path, GIVE_UP);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(took < HEALTH_WITHIN, "{path}, poll {poll}: {took:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn health_is_answered_at_once_beside_70_idle_clients() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    // 70 connections that send nothing, more than the listener's places
    // (64), each opened again as soon as the server closes it: before
    // issue 19, polls waited for them to time out (5 s), and failed.
    let crowd = Crowd::hold(m, 70, Pace::Idle);
    std::thread::sleep(Duration::from_millis(200));
    polls_are_answered_at_once(m);
    // The crowd was held throughout: its places were taken from it.
    assert!(crowd.stop() >= 5);
}

#[test]
fn health_is_answered_at_once_beside_70_slow_clients() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    // 70 requests that trickle in a byte every 100 ms and never end.
    let crowd = Crowd::hold(m, 70, Pace::Slow);
    std::thread::sleep(Duration::from_millis(200));
    polls_are_answered_at_once(m);
    assert!(crowd.stop() >= 5);
}

#[test]
fn a_full_listener_closes_its_oldest_client_for_a_newcomer() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    // 64 silent clients fill the places, one after the other, so the
    // server accepts them in this order.
    let connected = Instant::now();
    let mut idle: Vec<TcpStream> = (0..64).map(|_| connect(m)).collect();
    std::thread::sleep(Duration::from_millis(150));
    // A newcomer is answered at once, not once a place frees up...
    let (answer, took) = timed(m, "/healthz", GIVE_UP);
    assert!(answer.ends_with("ok\n"), "{answer:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // ... in the place of the oldest, which is closed; the next is not.
    idle[0]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(idle[0].read(&mut buf), Ok(0) | Err(_)),
        "the oldest is still open"
    );
    idle[1]
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let second = idle[1].read(&mut buf);
    assert!(
        second
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
        "the second oldest was closed too: {second:?}"
    );
    // All this before the header deadline could have closed any of them.
    assert!(connected.elapsed() < Duration::from_millis(950));
}

#[test]
fn a_request_header_must_arrive_within_a_second() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    // A byte every 100 ms, a header that never ends: however it trickles,
    // it is closed unanswered a second after it was accepted (5 s before
    // issue 19).
    let mut s = connect(m);
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = b"GET /metrics HTTP/1.1\r\nX: ";
    let mut buf = [0u8; 256];
    let closed = (0..60).find_map(|i| {
        let byte = start.get(i).copied().unwrap_or(b'a');
        if s.write_all(&[byte]).is_err() {
            return Some(started.elapsed());
        }
        match s.read(&mut buf) {
            Ok(0) => Some(started.elapsed()),
            Ok(n) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(_) => Some(started.elapsed()),
        }
    });
    let closed = closed.expect("still open after 6 s");
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
        "closed after {closed:?}"
    );
}

#[test]
fn a_request_followed_by_other_bytes_is_answered_then_closed() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    // A valid request and 100 KB that are not part of it: the request gets
    // its 200 (it got a 431: issue 19), the rest is never read as a
    // request, and the connection closes after the one answer.
    let mut s = connect(m);
    let mut bytes = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    bytes.resize(bytes.len() + 100_000, b'x');
    let mut w = s.try_clone().unwrap();
    // The server stops reading after the header: the write may block,
    // then fail when it closes (`connect` set a write timeout).
    let writer = std::thread::spawn(move || w.write_all(&bytes).is_ok());
    let (answer, _) = read_to_eof(&mut s);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("\nmonoloop_connections_active 0\n"),
        "{answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    writer.join().unwrap();
    // Two requests back to back (pipelined): the first is answered, the
    // second is not (`Connection: close`), and the connection closes.
    let mut s = connect(m);
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let (answer, _) = read_to_eof(&mut s);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nok\n"),
        "{answer}"
    );
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
}

#[test]
fn an_answer_is_not_cut_short_by_the_bytes_after_its_request() {
    let mut server = Server::start(&["echo", "--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&mut server);
    // A client with a small window, which sends a request and 100 KB more,
    // then reads late: the answer cannot all be delivered until it reads.
    // Closed with its input unread, the socket would reset, and the
    // kernel would drop the rest of the answer; the listener closes in
    // stages instead (our FIN, then it reads and discards until the
    // client has it all).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    socket
        .connect_timeout(&m.into(), Duration::from_secs(5))
        .unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut bytes = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    bytes.resize(bytes.len() + 100_000, b'x');
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&bytes).is_ok());
    std::thread::sleep(Duration::from_millis(300));
    let (answer, _) = read_to_eof(&mut s);
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole header");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok())
        .expect("a length");
    assert_eq!(body.len(), length, "the answer was cut short");
    writer.join().unwrap();
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
