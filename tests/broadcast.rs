//! `monoloop broadcast` over real sockets: relaying to everyone else,
//! prefixes, whole lines only, overlong lines, and slow receivers.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_line_reaches_every_other_client_but_not_its_sender() {
    let mut server = Server::start(&["broadcast", "--log-level", "debug"]);
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    let mut c = connect(server.addr);
    // All three must be in the room before anyone speaks.
    server.wait_accepted(3);
    a.write_all(b"hello from a\r\n").unwrap();
    expect(&mut b, b"[Broadcast] hello from a\n");
    expect(&mut c, b"[Broadcast] hello from a\n");
    c.write_all(b"and c\n").unwrap();
    expect(&mut a, b"[Broadcast] and c\n");
    expect(&mut b, b"[Broadcast] and c\n");
    // a got nothing of its own: the next thing it reads is b's line.
    b.write_all(b"b here\n").unwrap();
    expect(&mut a, b"[Broadcast] b here\n");
}

#[test]
fn prefix_can_be_changed_or_removed() {
    for (prefix, framed) in [("", "plain\n"), ("<< ", "<< plain\n")] {
        let mut server = Server::start(&["broadcast", "--prefix", prefix, "--log-level", "debug"]);
        let mut a = connect(server.addr);
        let mut b = connect(server.addr);
        server.wait_accepted(2);
        a.write_all(b"plain\n").unwrap();
        expect(&mut b, framed.as_bytes());
    }
}

#[test]
fn an_unfinished_line_is_relayed_when_its_sender_finishes() {
    let mut server = Server::start(&["broadcast", "--log-level", "debug"]);
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    server.wait_accepted(2);
    a.write_all(b"no newline").unwrap();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    expect(&mut b, b"[Broadcast] no newline\n");
    expect_eof(&mut a);
}

#[test]
fn lines_from_many_senders_never_interleave() {
    const SENDERS: usize = 4;
    const LINES: usize = 200;
    let mut server = Server::start(&["broadcast", "--prefix", "", "--log-level", "debug"]);
    let listener = connect(server.addr);
    let senders: Vec<_> = (0..SENDERS).map(|_| connect(server.addr)).collect();
    server.wait_accepted(1 + SENDERS);
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, mut s)| {
            thread::spawn(move || {
                for i in 0..LINES {
                    let line = format!("sender{k}-line{i:04}-{}\n", "z".repeat(50));
                    // Byte-sized pieces, so that lines arrive in fragments.
                    for piece in line.as_bytes().chunks(7) {
                        s.write_all(piece).unwrap();
                    }
                }
                s
            })
        })
        .collect();
    let mut reader = BufReader::new(listener);
    let mut next = [0usize; SENDERS];
    for _ in 0..SENDERS * LINES {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let k: usize = line[6..7].parse().unwrap_or_else(|_| panic!("{line:?}"));
        let expected = format!("sender{k}-line{:04}-{}\n", next[k], "z".repeat(50));
        assert_eq!(line, expected);
        next[k] += 1;
    }
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn an_overlong_line_closes_only_its_sender() {
    let mut server = Server::start(&["broadcast", "--max-line", "64", "--log-level", "debug"]);
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    server.wait_accepted(2);
    a.write_all(&[b'x'; 100]).unwrap();
    expect(&mut a, b"ERROR: line too long\n");
    expect_eof(&mut a);
    let mut c = connect(server.addr);
    server.wait_accepted(3);
    c.write_all(b"still fine\n").unwrap();
    expect(&mut b, b"[Broadcast] still fine\n");
}

#[test]
fn a_client_that_never_reads_is_cut_off_without_delaying_the_others() {
    const LINES: usize = 20_000;
    let mut server = Server::start(&[
        "broadcast",
        "--write-limit",
        "262144",
        "--stats-interval",
        "0.2",
        "--log-level",
        "debug",
    ]);
    let mut sender = connect(server.addr);
    let stuck = connect(server.addr);
    socket2::SockRef::from(&stuck)
        .set_recv_buffer_size(4096)
        .unwrap();
    let readers: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    server.wait_accepted(5);
    let line = format!("{}\n", "m".repeat(500));
    let framed = format!("[Broadcast] {line}");
    let started = Instant::now();
    let handles: Vec<_> = readers
        .into_iter()
        .map(|r| {
            let framed = framed.clone();
            thread::spawn(move || {
                let mut r = BufReader::new(r);
                for _ in 0..LINES {
                    let mut got = String::new();
                    r.read_line(&mut got).unwrap();
                    assert_eq!(got, framed);
                }
            })
        })
        .collect();
    for i in 0..LINES {
        sender.write_all(line.as_bytes()).unwrap();
        if i % 1000 == 999 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "readers were held up: {took:?}"
    );
    server.wait_for_log("slow consumer");
    let line = server.wait_stats_where("slow_consumers>=1", |s| s.get("slow_consumers") >= 1);
    assert_eq!(
        line.get("slow_consumers"),
        1,
        "only the stuck client: {line}"
    );
    drop(stuck);
}

/// Issue 21: in broadcast too, a member who only reads stays past the idle
/// timeout however quiet the room, and so does one who only talks; one
/// that takes nothing of what it is owed (a machine gone looks the same:
/// bytes outstanding, unacknowledged) is still closed for it.
#[test]
fn a_reader_with_everything_stays_and_one_with_bytes_outstanding_is_cut() {
    let mut server = Server::start(&["broadcast", "--idle-timeout", "1", "--log-level", "debug"]);
    let reader = connect(server.addr);
    let mut talker = connect(server.addr);
    let stuck = connect(server.addr);
    socket2::SockRef::from(&stuck)
        .set_recv_buffer_size(4096)
        .unwrap();
    server.wait_accepted(3);
    // 200 KB: more than the stuck member's buffers hold, far less than
    // the write limit (so it is not cut as a slow consumer).
    let line = format!("{}\n", "x".repeat(999));
    for _ in 0..200 {
        talker.write_all(line.as_bytes()).unwrap();
    }
    let mut lines = BufReader::new(reader.try_clone().unwrap());
    for _ in 0..200 {
        let mut got = String::new();
        lines.read_line(&mut got).unwrap();
        assert_eq!(got.len(), 1000 + "[Broadcast] ".len());
    }
    let quiet = Instant::now();
    // The stuck member is closed for idleness (its access line may then
    // say `end=reset`: keepalive's TCP_USER_TIMEOUT can end the close)...
    let port = stuck.local_addr().unwrap().port();
    let cut = server.wait_for_log(": idle timeout");
    assert!(cut.contains(&format!(":{port}: ")), "{cut}");
    assert!(quiet.elapsed() < Duration::from_secs(5), "{cut}");
    // ...and no one else, though nothing moved for longer than the idle
    // timeout: both can still talk and hear.
    thread::sleep(Duration::from_millis(1500));
    talker.write_all(b"anyone?\n").unwrap();
    let mut got = String::new();
    lines.read_line(&mut got).unwrap();
    assert_eq!(got, "[Broadcast] anyone?\n");
    let mut reader = reader;
    reader.write_all(b"yes\n").unwrap();
    expect(&mut talker, b"[Broadcast] yes\n");
    assert_eq!(server.log_lines(": idle timeout").len(), 1);
    drop(stuck);
}
