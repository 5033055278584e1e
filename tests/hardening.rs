//! Regression tests for defects found by attacking monoloop (issue 9) and
//! by a first day of use: each reproduces the attack or the mistake against
//! the real binary and asserts that it is contained.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Sends one byte every `every` until the peer goes away or `stop` is set;
/// never a newline.
fn trickle(mut s: TcpStream, every: Duration, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            if s.write_all(b"x").is_err() {
                return;
            }
            thread::sleep(every);
        }
    })
}

/// Reads what the server says until it closes; returns it and how long
/// that took from `since`.
fn said_until_close(s: &mut TcpStream, since: Instant) -> (String, Duration) {
    let (bytes, _) = read_to_eof(s);
    (
        String::from_utf8_lossy(&bytes).into_owned(),
        since.elapsed(),
    )
}

#[test]
fn trickling_at_the_chat_prompt_loses_the_slot_at_the_request_timeout() {
    let mut server = Server::start(&[
        "chat",
        "--max-connections",
        "4",
        "--request-timeout",
        "1",
        "--log-level",
        "debug",
    ]);
    // A well-behaved user, in the room before the attack.
    let mut alice = connect(server.addr);
    expect(&mut alice, b"Enter your username: ");
    alice.write_all(b"alice\n").unwrap();
    expect(&mut alice, b"Welcome to the chat!\n");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tricklers: Vec<_> = (0..3)
        .map(|_| {
            let mut s = connect(server.addr);
            expect(&mut s, b"Enter your username: ");
            trickle(
                s.try_clone().unwrap(),
                Duration::from_millis(200),
                stop.clone(),
            );
            s
        })
        .collect();
    // The room is full now; the idle timer (30 s) would never fire, since
    // a byte arrives every 200 ms. The prompt's own deadline does.
    for s in &mut tricklers {
        let (said, took) = said_until_close(s, started);
        assert_eq!(said, "Connection timeout\n");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "closed after {took:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    // A newcomer gets a slot, and alice never noticed.
    let mut bob = connect(server.addr);
    expect(&mut bob, b"Enter your username: ");
    bob.write_all(b"bob\n").unwrap();
    expect(&mut bob, b"Welcome to the chat!\n");
    expect(&mut alice, b"bob joined the chat\n");
    server.wait_for_log("request timeout");
}

#[test]
fn a_refused_name_starts_the_prompt_clock_again() {
    let server = Server::start(&["chat", "--request-timeout", "1"]);
    let mut s = connect(server.addr);
    expect(&mut s, b"Enter your username: ");
    thread::sleep(Duration::from_millis(700));
    s.write_all(b"bad name\n").unwrap();
    let prompt = b"Enter your username: ";
    let mut refusal = Vec::new();
    while !refusal.ends_with(prompt) {
        refusal.extend(read_n(&mut s, 1));
    }
    let again = Instant::now();
    thread::sleep(Duration::from_millis(600));
    // 1.3 s after the first prompt, 0.6 s after the second: still open.
    s.write_all(b"carol\n").unwrap();
    expect(&mut s, b"Welcome to the chat!\n");
    assert!(again.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_line_must_be_finished_within_the_idle_timeout_of_its_first_byte() {
    let mut server = Server::start(&["broadcast", "--idle-timeout", "1", "--log-level", "debug"]);
    let mut listener = connect(server.addr);
    let talker = connect(server.addr);
    let slow = connect(server.addr);
    server.wait_accepted(3);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let t = trickle(
        slow.try_clone().unwrap(),
        Duration::from_millis(200),
        stop.clone(),
    );
    // The talker finishes a line every 300 ms: never idle, never late.
    let talk = {
        let mut talker = talker.try_clone().unwrap();
        let stop = stop.clone();
        thread::spawn(move || {
            for i in 0..8 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                talker.write_all(format!("line {i}\n").as_bytes()).unwrap();
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut slow_reader = slow;
    let (said, took) = said_until_close(&mut slow_reader, started);
    assert!(said.ends_with("Connection timeout\n"), "{said:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    talk.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
    // The talker's lines all arrived, and it is still connected.
    let mut lines = BufReader::new(listener.try_clone().unwrap());
    for i in 0..8 {
        let mut got = String::new();
        lines.read_line(&mut got).unwrap();
        assert_eq!(got, format!("[Broadcast] line {i}\n"));
    }
    let mut talker = talker;
    talker.write_all(b"still here\n").unwrap();
    expect(&mut listener, b"[Broadcast] still here\n");
}

#[test]
fn trickling_a_file_request_ends_at_the_request_timeout() {
    let dir = std::env::temp_dir().join(format!("monoloop-trickle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start(&[
        "file",
        "--root",
        dir.to_str().unwrap(),
        "--request-timeout",
        "1",
    ]);
    let s = connect(server.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let t = trickle(
        s.try_clone().unwrap(),
        Duration::from_millis(200),
        stop.clone(),
    );
    let mut s = s;
    let (said, took) = said_until_close(&mut s, started);
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
    assert_eq!(said, "Connection timeout\n");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn raw_echo_stays_byte_driven() {
    let server = Server::start(&["echo", "--idle-timeout", "1"]);
    let mut s = connect(server.addr);
    // Two and a half idle timeouts of one byte every 200 ms: all echoed.
    for _ in 0..12 {
        s.write_all(b"x").unwrap();
        expect(&mut s, b"x");
        thread::sleep(Duration::from_millis(200));
    }
}

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
fn a_fast_sender_is_paced_and_every_reading_receiver_gets_everything() {
    const RECEIVERS: usize = 51;
    const TOTAL: usize = 30 << 20;
    let mut server = Server::start(&[
        "broadcast",
        "--prefix",
        "",
        "--stats-interval",
        "0.2",
        "--log-level",
        "debug",
    ]);
    let mut sender = connect(server.addr);
    let receivers: Vec<_> = (0..RECEIVERS).map(|_| connect(server.addr)).collect();
    server.wait_accepted(RECEIVERS + 1);
    let line = format!("{}\n", "b".repeat(1023));
    let lines = TOTAL / line.len();
    let handles: Vec<_> = receivers
        .into_iter()
        .map(|r| {
            let line = line.clone();
            thread::spawn(move || {
                let mut r = BufReader::with_capacity(1 << 16, r);
                let mut got = Vec::with_capacity(line.len());
                for i in 0..lines {
                    got.clear();
                    r.read_until(b'\n', &mut got)
                        .unwrap_or_else(|e| panic!("line {i}: {e}"));
                    assert_eq!(got, line.as_bytes(), "line {i}");
                }
            })
        })
        .collect();
    // One burst, as fast as the kernel takes it.
    let burst = line.repeat(lines);
    let started = Instant::now();
    sender.write_all(burst.as_bytes()).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    eprintln!(
        "{} MB to each of {RECEIVERS} receivers in {:?}",
        TOTAL >> 20,
        started.elapsed()
    );
    sender.write_all(b"and the sender is still here\n").unwrap();
    // The final line counts everything that happened.
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(10));
    let line = server.wait_for_log("(final)");
    assert_eq!(stat(&line, "slow_consumers"), 0, "{line}");
    assert!(server.log_lines("slow consumer").is_empty());
}

#[test]
fn short_connections_leave_no_timer_garbage() {
    // Every connection schedules its idle timeout (300 s) and closes at
    // once; the entries of closed connections must not pile up.
    let mut server = Server::start(&[
        "echo",
        "--idle-timeout",
        "300",
        "--max-connections",
        "100000",
        "--stats-interval",
        "0.2",
    ]);
    let addr = server.addr;
    let churn = |n: usize| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                thread::spawn(move || {
                    for _ in 0..n / 2 {
                        let s = TcpStream::connect(addr).unwrap();
                        // RST: no TIME_WAIT to run the ports out.
                        socket2::SockRef::from(&s)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    let settle = |server: &mut Server, total: u64| {
        // A few clients' resets beat their accept (ECONNABORTED): not counted.
        server.wait_stats_where(&format!("total+rejected>={total}-50 active=0"), |s| {
            s.get("total") + s.get("rejected") + 50 >= total && s.get("active") == 0
        });
    };
    churn(5_000);
    settle(&mut server, 5_000);
    let after_5k = server.rss_kib();
    let started = Instant::now();
    churn(95_000);
    settle(&mut server, 100_000);
    let after_100k = server.rss_kib();
    eprintln!(
        "RSS {after_5k} KiB after 5,000 connections, {after_100k} KiB after 100,000 \
         ({:?} for 95,000)",
        started.elapsed()
    );
    // Without compaction the heap held one 40-byte entry per connection:
    // about 3.7 MiB more here.
    assert!(
        after_100k <= after_5k + 1024,
        "RSS grew from {after_5k} to {after_100k} KiB"
    );
}

#[test]
fn the_descriptor_warning_predicts_what_is_served() {
    let cmd = with_fd_limit(64);
    let mut server = Server::start_cmd(cmd, &["echo"]);
    let warning = server.wait_for_log("needs about");
    let predicted: usize = warning
        .split("beyond about ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no estimate in {warning:?}"));
    let mut clients: Vec<_> = (0..80).map(|_| connect(server.addr)).collect();
    for s in &mut clients {
        s.write_all(b"?").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    server.wait_for_log("cannot accept");
    let served = clients
        .iter_mut()
        .filter_map(|s| {
            let mut b = [0u8; 1];
            matches!(s.read(&mut b), Ok(1)).then_some(())
        })
        .count();
    assert!(
        served.abs_diff(predicted) <= 2,
        "predicted about {predicted}, served {served}"
    );
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
