//! The loop as a whole, whatever the protocol (echo serves as the probe):
//! start-up errors, the stats line, and resets. Its time limits are
//! tests/deadlines.rs, what it holds tests/resources.rs, and stopping
//! tests/shutdown.rs.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

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

/// The line a server writes as it starts (issue 21): the version
/// and commit, whether TLS is built in, the mode, and the limits an
/// operator alerts on.
fn start_line(server: &Server) -> String {
    let lines = server.log_lines(&format!("monoloop {} (commit ", env!("CARGO_PKG_VERSION")));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let tls = if cfg!(feature = "tls") {
        "tls"
    } else {
        "no-tls"
    };
    assert!(lines[0].contains(&format!(", {tls}): ")), "{}", lines[0]);
    lines[0].clone()
}

#[test]
fn the_start_line_says_the_version_the_mode_and_the_limits() {
    let server = Server::start(&[
        "chat",
        "--max-connections",
        "50",
        "--max-per-ip",
        "3",
        "--idle-timeout",
        "7.5",
        "--workers",
        "2",
    ]);
    let line = start_line(&server);
    assert!(
        line.ends_with(
            "): chat server, up to 50 connections, at most 3 per address, \
             idle timeout 7.5s, 2 workers"
        ),
        "{line}"
    );
    let server = Server::start(&["echo", "--idle-timeout", "0"]);
    let line = start_line(&server);
    assert!(
        line.ends_with(
            "): echo server, up to 1024 connections, no limit per address, \
             no idle timeout, 1 worker"
        ),
        "{line}"
    );
    // After the line scripts read first (`... 2>&1 | head -1`).
    let log = server.log();
    let at = |needle: &str| log.iter().position(|l| l.contains(needle)).unwrap();
    assert_eq!(at("listening on"), 0, "{log:#?}");
    assert_eq!(at(" (commit "), 1, "{log:#?}");
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
    let line = server.wait_stats(&[("rejected", 1)]);
    assert_eq!(line.get("total"), 2, "{line}");
    assert_eq!(line.get("active"), 2, "{line}");
    assert_eq!(line.get("bytes_in"), 12, "{line}");
    assert_eq!(line.get("bytes_out"), 12, "{line}");
    // Both time out; each was sent the 19-byte timeout message.
    expect(&mut a, b"Connection timeout\n");
    expect(&mut b, b"Connection timeout\n");
    let line = server.wait_stats(&[("timed_out", 2), ("active", 0)]);
    assert_eq!(line.get("total"), 2, "{line}");
    assert_eq!(line.get("rejected"), 1, "{line}");
    assert_eq!(line.get("bytes_out"), 12 + 2 * 19, "{line}");
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(5));
    let last = server.wait_for_log("(final)");
    assert_eq!(stat(&last, "timed_out"), 2, "{last}");
}

/// Issue 21: a full server says so, at warn, the first time in a minute,
/// with how many it turned away since it last said so; not once per
/// client turned away.
#[test]
fn a_full_server_says_so_once_a_minute() {
    let mut server = Server::start(&["echo", "--max-connections", "1", "--stats-interval", "0.1"]);
    let mut kept = connect(server.addr);
    kept.write_all(b"in").unwrap();
    expect(&mut kept, b"in");
    for _ in 0..5 {
        let mut s = connect(server.addr);
        assert_eq!(read_to_eof(&mut s).0, b"Server is full. Try again later.\n");
    }
    server.wait_stats(&[("rejected", 5)]);
    let said = server.log_lines("server full");
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(said[0].contains(" WARN "), "{}", said[0]);
    assert!(
        said[0].ends_with(
            "server full (--max-connections 1): turning clients away \
             (1 turned away since the last such line; at most one a minute)"
        ),
        "{}",
        said[0]
    );
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
