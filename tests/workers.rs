//! `--workers N` over real sockets: several loops on one port, behaving as
//! one server (the connection limit, the stats line, shutdown).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use common::*;

/// The workers named in the debug log's accept lines.
fn workers_seen(server: &Server) -> BTreeSet<String> {
    server
        .log_lines(" from ")
        .iter()
        .filter_map(|l| {
            let w = l.split("worker ").nth(1)?;
            Some(w.split(':').next()?.to_string())
        })
        .collect()
}

#[test]
fn connections_spread_over_the_workers_of_one_port() {
    let mut server = Server::start(&["echo", "--workers", "4", "--log-level", "debug"]);
    let listening = server.wait_for_log("listening on");
    assert!(listening.ends_with("(4 workers)"), "{listening}");
    let mut clients: Vec<_> = (0..40).map(|_| connect(server.addr)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        let msg = format!("client {i}\n");
        s.write_all(msg.as_bytes()).unwrap();
        expect(s, msg.as_bytes());
    }
    server.wait_accepted(40);
    let seen = workers_seen(&server);
    assert!(seen.len() >= 2, "all 40 on one worker: {seen:?}");
    assert!(seen
        .iter()
        .all(|w| ["0", "1", "2", "3"].contains(&w.as_str())));
}

#[test]
fn the_connection_limit_is_the_whole_servers() {
    let mut server = Server::start(&[
        "echo",
        "--workers",
        "4",
        "--max-connections",
        "3",
        "--stats-interval",
        "0.2",
    ]);
    let mut kept: Vec<_> = (0..3)
        .map(|i| {
            let mut s = connect(server.addr);
            let msg = format!("in {i}");
            s.write_all(msg.as_bytes()).unwrap();
            expect(&mut s, msg.as_bytes());
            s
        })
        .collect();
    // Whichever worker the kernel picks, the fourth is one too many.
    for _ in 0..4 {
        let mut s = connect(server.addr);
        let (said, _) = read_to_eof(&mut s);
        assert_eq!(said, b"Server is full. Try again later.\n");
    }
    drop(kept.pop());
    let line = server.wait_for_log_where("stats:", |l| stat(l, "active") == 2);
    assert_eq!(stat(&line, "rejected"), 4, "{line}");
    let mut s = connect(server.addr);
    s.write_all(b"room again").unwrap();
    expect(&mut s, b"room again");
}

#[test]
fn one_stats_line_sums_the_workers_and_adds_up() {
    let mut server = Server::start(&[
        "echo",
        "--workers",
        "3",
        "--stats-interval",
        "0.2",
        "--log-level",
        "debug",
    ]);
    let mut open: Vec<_> = (0..5).map(|_| connect(server.addr)).collect();
    for s in &mut open {
        s.write_all(b"12345").unwrap();
        expect(s, b"12345");
    }
    for _ in 0..7 {
        let mut s = connect(server.addr);
        s.write_all(b"x").unwrap();
        expect(&mut s, b"x");
    }
    let line = server.wait_for_log_where("stats:", |l| {
        stat(l, "total") == 12 && stat(l, "active") == 5
    });
    assert_eq!(stat(&line, "bytes_in"), 5 * 5 + 7, "{line}");
    assert!(workers_seen(&server).len() >= 2);
    open.clear();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    let finals = server.log_lines("(final)");
    assert_eq!(finals.len(), 1, "one final line: {finals:?}");
    assert_eq!(stat(&finals[0], "total"), 12, "{}", finals[0]);
    assert_eq!(stat(&finals[0], "active"), 0, "{}", finals[0]);
}

#[test]
fn sigterm_drains_every_worker_and_a_second_signal_stops_them() {
    let mut server = Server::start(&["echo", "--workers", "2", "--prefix", "> "]);
    let mut clients: Vec<_> = (0..6).map(|_| connect(server.addr)).collect();
    for s in &mut clients {
        // An unfinished line: shutdown sends it back, then closes.
        s.write_all(b"pending").unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    for s in &mut clients {
        let (said, _) = read_to_eof(s);
        assert_eq!(said, b"> pending");
    }
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));

    let mut server = Server::start(&["echo", "--workers", "2", "--drain-timeout", "30"]);
    let stuck = connect(server.addr);
    socket2::SockRef::from(&stuck)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut w = stuck.try_clone().unwrap();
    // Owed more than it will ever read: the drain would wait 30 s.
    w.write_all(&[b'z'; 1 << 20]).ok();
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    server.wait_for_log("no longer accepting");
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{status}");
}

#[test]
fn a_second_server_on_the_same_port_is_refused() {
    let server = Server::start(&["echo", "--workers", "2"]);
    let port = server.addr.to_string();
    for workers in ["1", "3"] {
        let out = binary()
            .args(["echo", "--listen", &port, "--workers", workers])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "--workers {workers}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is already in use"), "{err}");
    }
}

#[test]
fn bad_worker_counts_and_modes_are_argument_errors() {
    for (args, needle) in [
        (vec!["echo", "--workers", "0"], "--workers"),
        (vec!["echo", "--workers", "-2"], "--workers"),
        (vec!["echo", "--workers", "many"], "--workers"),
        (vec!["chat", "--workers", "2"], "one worker"),
    ] {
        let out = binary().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // `auto` is a count, whatever this machine has.
    let server = Server::start(&["echo", "--workers", "auto"]);
    let mut s = connect(server.addr);
    s.write_all(b"auto").unwrap();
    expect(&mut s, b"auto");
}
