//! Stopping, over real sockets: SIGTERM drains what each client is owed
//! and exits 0, a second signal exits at once, and new clients are refused
//! meanwhile.

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

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
