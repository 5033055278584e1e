//! Regression tests for defects found by attacking monoloop (issue 9) and
//! by a first day of use: each reproduces the attack or the mistake against
//! the real binary and asserts that it is contained. Those on deadlines
//! (trickling bytes) are in tests/deadlines.rs, those on what the server
//! holds (memory, timers, descriptors) in tests/resources.rs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A pipe whose reading end we hold, for the server's standard error.
struct LogPipe {
    reader: BufReader<std::process::ChildStderr>,
}

#[test]
fn a_closed_log_pipe_leaves_the_server_serving() {
    // `monoloop echo --stats-interval 0.5 2>&1 | head -1`, by hand.
    let mut child = binary()
        .args([
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--stats-interval",
            "0.2",
            "--log-level",
            "debug",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = LogPipe {
        reader: BufReader::new(child.stderr.take().unwrap()),
    };
    let mut first = String::new();
    pipe.reader.read_line(&mut first).unwrap();
    let addr: std::net::SocketAddr = first
        .rsplit("listening on ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // `head` exits: the reading end closes.
    drop(pipe);
    // Every connection logs debug lines, and stats lines follow; each one
    // now meets a closed pipe.
    for i in 0..20 {
        let mut s = connect(addr);
        let msg = format!("ping {i}");
        s.write_all(msg.as_bytes()).unwrap();
        expect(&mut s, msg.as_bytes());
    }
    thread::sleep(Duration::from_millis(600));
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    let mut s = connect(addr);
    s.write_all(b"still serving").unwrap();
    expect(&mut s, b"still serving");
    // It still stops cleanly, with status 0.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "{status}");
}

/// A pipe with its reading end already closed, as a child's stdout.
fn closed_pipe() -> std::fs::File {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two fresh descriptors into our array.
    // Close-on-exec, as std's own: a server another test starts meanwhile
    // must not inherit them.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fds[0] is ours and closed once, here.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is a fresh descriptor nobody else owns.
    unsafe { std::fs::File::from_raw_fd(fds[1]) }
}

#[test]
fn help_and_errors_into_a_closed_pipe_keep_their_exit_status() {
    let status = binary()
        .arg("--help")
        .stdout(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "--help | head: {status}");
    let status = binary()
        .args(["echo", "--max-connections", "zero"])
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "bad argument 2>&1 | head: {status}");
}

#[test]
fn an_idle_server_with_a_stats_interval_goes_quiet_and_wakes_on_change() {
    let mut server = Server::start(&["echo", "--stats-interval", "0.2"]);
    server.wait_for_log("stats:");
    // The next tick finds nothing moved and the timer goes to sleep.
    thread::sleep(Duration::from_millis(600));
    let lines = server.log_lines("stats:").len();
    let before = server.context_switches();
    thread::sleep(Duration::from_secs(2));
    let after = server.context_switches();
    assert_eq!(before, after, "woke {} times while idle", after - before);
    assert_eq!(server.log_lines("stats:").len(), lines, "repeated a line");
    // Something happens: one new line says so.
    let mut s = connect(server.addr);
    s.write_all(b"hi").unwrap();
    expect(&mut s, b"hi");
    server.wait_stats(&[("total", 1)]);
    s.shutdown(Shutdown::Both).unwrap();
}
