//! The loop's behaviour, whatever the protocol (echo serves as the probe):
//! connection limit, idle timeout, backpressure and memory, stats, signals,
//! start-up errors, resets, idleness, and running out of descriptors.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sixth_client_is_turned_away_while_five_keep_working() {
    let mut server = Server::start(&["echo", "--max-connections", "5", "--stats-interval", "0.2"]);
    let mut five: Vec<_> = (0..5).map(|_| connect(server.addr)).collect();
    // Make sure all five are accepted before the sixth arrives.
    for (i, s) in five.iter_mut().enumerate() {
        s.write_all(format!("hi {i}\n").as_bytes()).unwrap();
        expect(s, format!("hi {i}\n").as_bytes());
    }
    let mut sixth = connect(server.addr);
    let (got, _) = read_to_eof(&mut sixth);
    assert_eq!(got, b"Server is full. Try again later.\n");
    for (i, s) in five.iter_mut().enumerate() {
        s.write_all(format!("again {i}\n").as_bytes()).unwrap();
        expect(s, format!("again {i}\n").as_bytes());
    }
    // Rejected, never active.
    let line = server.wait_for_log_where("stats:", |l| stat(l, "rejected") == 1);
    assert_eq!(stat(&line, "active"), 5, "{line}");
    assert_eq!(stat(&line, "total"), 5, "{line}");
    // A slot frees when one of the five leaves.
    drop(five.pop());
    eventually("a free slot", || {
        let mut s = connect(server.addr);
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).is_ok() && b == *b"x"
    });
}

#[test]
fn idle_timeout_fires_with_its_message_and_spares_active_clients() {
    let server = Server::start(&["echo", "--idle-timeout", "1"]);
    let mut idle = connect(server.addr);
    let mut busy = connect(server.addr);
    let started = Instant::now();
    let chatter = thread::spawn(move || {
        // Talk every 300 ms for 2.5 s: never idle for a second.
        while started.elapsed() < Duration::from_millis(2500) {
            busy.write_all(b"tick").unwrap();
            expect(&mut busy, b"tick");
            thread::sleep(Duration::from_millis(300));
        }
        busy
    });
    let (got, _) = read_to_eof(&mut idle);
    let waited = started.elapsed();
    assert_eq!(got, b"Connection timeout\n");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "timed out after {waited:?}"
    );
    let mut busy = chatter.join().unwrap();
    busy.write_all(b"still open").unwrap();
    expect(&mut busy, b"still open");
}

#[test]
fn a_client_that_does_not_read_cannot_grow_server_memory() {
    const LIMIT: u64 = 1024 * 1024;
    const TOTAL: u64 = 50 * 1024 * 1024;
    let server = Server::start(&["echo", "--write-limit", &LIMIT.to_string()]);
    // Warm up the shared read buffer and the allocator with a small echo.
    let mut warm = connect(server.addr);
    warm.write_all(&[1u8; 100_000]).unwrap();
    read_n(&mut warm, 100_000);
    drop(warm);
    thread::sleep(Duration::from_millis(200));
    let before = server.rss_kib();

    let mut s = connect(server.addr);
    let sent = Arc::new(AtomicU64::new(0));
    let writer = {
        let s = s.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || write_pattern(s, TOTAL, sent))
    };
    // The writer stalls once the server stops reading (backpressure) and
    // every kernel buffer between them is full.
    let stalled_at = settles(&sent, Duration::from_millis(700));
    assert!(stalled_at < TOTAL, "server never pushed back");
    let grown = server.rss_kib().saturating_sub(before) * 1024;
    eprintln!("writer stalled after {stalled_at} bytes; server RSS grew {grown} bytes");
    assert!(
        grown <= 2 * LIMIT,
        "server RSS grew {grown} bytes with a write limit of {LIMIT}"
    );
    // Now read: every byte comes back, in order.
    assert_eq!(read_pattern(&mut s, TOTAL), TOTAL);
    writer.join().unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), TOTAL);
}

#[test]
fn address_in_use_exits_1_with_the_address() {
    let first = Server::start(&["echo"]);
    let addr = first.addr.to_string();
    let out = binary().args(["echo", "--listen", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: --listen {addr}: already in use")),
        "stderr: {stderr}"
    );
}

#[test]
fn bad_arguments_exit_2_with_the_problem_and_a_hint() {
    // One line and a hint, not the usage: the problem stays on screen.
    // (tests/cli.rs has every kind of argument error.)
    for (args, hint) in [
        (&["echo", "--max-connections", "zero"][..], "echo"),
        (&["echo", "--listen", "localhost"], "echo"),
        (&["echo", "--bogus"], "echo"),
        (&["nonsense"], ""),
        (&[], ""),
    ] {
        let out = binary().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
        let hint = match hint {
            "" => "see 'monoloop --help'".to_string(),
            mode => format!("see 'monoloop {mode} --help'"),
        };
        assert_eq!(lines[1], hint, "{args:?}");
    }
    let out = binary()
        .args(["echo", "--max-connections", "zero"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid value 'zero' for --max-connections")
    );
    let help = binary().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--listen",
        "--max-connections",
        "--idle-timeout",
        "--write-limit",
        "--drain-timeout",
        "--stats-interval",
        "--log-level",
        "--greeting",
        "--prefix",
    ] {
        assert!(text.contains(option), "usage lacks {option}");
    }
}

#[test]
fn sigterm_lets_a_pending_reply_drain_then_exits_0() {
    const LIMIT: u64 = 1024 * 1024;
    let mut server = Server::start(&["echo", "--write-limit", &LIMIT.to_string()]);
    let mut s = connect(server.addr);
    let sent = Arc::new(AtomicU64::new(0));
    let writer = {
        let s = s.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || write_pattern(s, 32 * 1024 * 1024, sent))
    };
    // Not reading: the server owes us at least a write limit's worth.
    settles(&sent, Duration::from_millis(500));
    server.signal(libc::SIGTERM);
    server.wait_for_log("SIGTERM");
    let (got, _) = read_to_eof(&mut s);
    writer.join().unwrap();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(
        got.len() as u64 > LIMIT,
        "only {} bytes came back",
        got.len()
    );
    for (i, &b) in got.iter().enumerate() {
        assert_eq!(b, pattern(i as u64), "byte {i}");
    }
    let last = server.wait_for_log("(final)");
    assert_eq!(stat(&last, "bytes_out"), got.len() as u64, "{last}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server = Server::start(&["echo", "--drain-timeout", "30"]);
    let s = connect(server.addr);
    // A client that never reads keeps the drain busy.
    let sent = Arc::new(AtomicU64::new(0));
    {
        let s = s.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || write_pattern(s, 64 * 1024 * 1024, sent));
    }
    settles(&sent, Duration::from_millis(500));
    server.signal(libc::SIGINT);
    server.wait_for_log("SIGINT: no longer accepting");
    thread::sleep(Duration::from_millis(300));
    assert!(server.running(), "the drain should still be waiting");
    let asked = Instant::now();
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(2));
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(1));
    drop(s);
}

#[test]
fn shutdown_refuses_new_clients_and_exits_when_idle() {
    let mut server = Server::start(&["echo"]);
    let addr = server.addr;
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(status.success());
    assert!(std::net::TcpStream::connect(addr).is_err());
    assert_eq!(server.log_lines("(final)").len(), 1);
}

#[test]
fn stats_lines_count_connections_rejections_timeouts_and_bytes() {
    let mut server = Server::start(&[
        "echo",
        "--stats-interval",
        "0.3",
        "--max-connections",
        "2",
        "--idle-timeout",
        "1",
    ]);
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    a.write_all(b"hello\n").unwrap();
    expect(&mut a, b"hello\n");
    b.write_all(b"world\n").unwrap();
    expect(&mut b, b"world\n");
    let mut c = connect(server.addr);
    let (full, _) = read_to_eof(&mut c);
    assert_eq!(full, b"Server is full. Try again later.\n");
    let line = server.wait_for_log_where("stats:", |l| stat(l, "rejected") == 1);
    assert_eq!(stat(&line, "total"), 2, "{line}");
    assert_eq!(stat(&line, "active"), 2, "{line}");
    assert_eq!(stat(&line, "bytes_in"), 12, "{line}");
    assert_eq!(stat(&line, "bytes_out"), 12, "{line}");
    // Both time out; each was sent the 19-byte timeout message.
    expect(&mut a, b"Connection timeout\n");
    expect(&mut b, b"Connection timeout\n");
    let line = server.wait_for_log_where("stats:", |l| {
        stat(l, "timed_out") == 2 && stat(l, "active") == 0
    });
    assert_eq!(stat(&line, "total"), 2, "{line}");
    assert_eq!(stat(&line, "rejected"), 1, "{line}");
    assert_eq!(stat(&line, "bytes_out"), 12 + 2 * 19, "{line}");
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(5));
    let last = server.wait_for_log("(final)");
    assert_eq!(stat(&last, "timed_out"), 2, "{last}");
}

#[test]
fn a_reset_client_is_a_debug_line_and_nobody_else_notices() {
    let mut server = Server::start(&["echo", "--log-level", "debug"]);
    let mut bystander = connect(server.addr);
    for _ in 0..20 {
        let mut s = connect(server.addr);
        s.write_all(&[7u8; 200_000]).unwrap();
        // SO_LINGER 0: close sends RST, mid-transfer.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }
    bystander.write_all(b"fine").unwrap();
    expect(&mut bystander, b"fine");
    server.wait_for_log_where("closed", |l| l.contains("reset by the client"));
    let bad: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(bad.is_empty(), "resets logged as problems: {bad:?}");
    assert!(server.running());
}

#[test]
fn an_idle_server_makes_no_wakeups() {
    let server = Server::start(&["echo", "--stats-interval", "0"]);
    thread::sleep(Duration::from_millis(200));
    let before = server.context_switches();
    thread::sleep(Duration::from_secs(2));
    let after = server.context_switches();
    assert_eq!(
        before,
        after,
        "the idle server woke up {} times",
        after - before
    );
}

#[test]
fn out_of_descriptors_neither_spins_nor_stops_serving() {
    let mut server = Server::start_cmd(with_fd_limit(32), &["echo"]);
    server.wait_for_log("needs about");
    // About 25 fit under 32 descriptors; the rest wait in the backlog.
    let mut clients: Vec<_> = (0..40).map(|_| connect(server.addr)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        s.write_all(format!("{i:02}").as_bytes()).unwrap();
    }
    server.wait_for_log("cannot accept");
    // Accepted clients are still served.
    expect(&mut clients[0], b"00");
    // And the loop is not spinning on the failing accept.
    let cpu_before = server.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let cpu = server.cpu_ticks() - cpu_before;
    eprintln!("{cpu} CPU ticks in 1 s while out of descriptors");
    assert!(
        cpu <= 10,
        "{cpu} ticks of CPU in 1 s while out of descriptors"
    );
    assert_eq!(
        server.log_lines("cannot accept").len(),
        1,
        "one warning per episode"
    );
    // Free 16 descriptors: every waiting client gets served.
    clients.drain(..16);
    for (i, s) in clients.iter_mut().enumerate() {
        expect(s, format!("{:02}", i + 16).as_bytes());
    }
    // Those 16 took the freed descriptors, so every accept still fails
    // (`accept` needs a free descriptor before it looks at the backlog).
    // Once one more frees and a second passes without a failure, the
    // episode has passed.
    clients.pop();
    server.wait_for_log("accepting connections again");
}

/// At the descriptor limit every freed descriptor is taken by the next
/// client and the accept after it fails again: one episode, one warning,
/// and one line when it has passed, not two lines per client.
#[test]
fn a_descriptor_limit_episode_logs_one_warning_however_many_clients_cycle() {
    let mut server = Server::start_cmd(with_fd_limit(32), &["echo"]);
    server.wait_for_log("needs about");
    let mut clients: std::collections::VecDeque<_> =
        (0..40).map(|_| connect(server.addr)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        s.write_all(&[b'a' + (i % 26) as u8]).unwrap();
    }
    server.wait_for_log("cannot accept");
    // Find the first client still waiting in the backlog: it has no echo.
    let waiting = clients
        .iter_mut()
        .position(|s| {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut b = [0u8; 1];
            let answered = matches!(s.read(&mut b), Ok(1));
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            !answered
        })
        .expect("some clients wait in the backlog");
    // Twenty times: one served client leaves, the first waiting one is let
    // in (its echo arrives), and a new client joins the backlog.
    let mut next = waiting;
    for round in 0..20 {
        drop(clients.pop_front());
        next -= 1;
        let s = &mut clients[next];
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("round {round}: the freed slot's client got no echo: {e}"));
        next += 1;
        let mut c = connect(server.addr);
        c.write_all(b"z").unwrap();
        clients.push_back(c);
    }
    assert_eq!(
        server.log_lines("cannot accept").len(),
        1,
        "one warning while the condition lasts"
    );
    assert!(
        server.log_lines("accepting connections again").is_empty(),
        "the episode has not passed while accepts keep failing"
    );
    // Free enough descriptors for everyone: after a second with no failure,
    // one line says it has passed.
    for _ in 0..20 {
        drop(clients.pop_front());
    }
    server.wait_for_log("accepting connections again");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(server.log_lines("cannot accept").len(), 1);
    assert_eq!(server.log_lines("accepting connections again").len(), 1);
}
