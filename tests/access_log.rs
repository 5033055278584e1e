//! `--access-log` and the debug log over real sockets: one line per
//! connection, in fixed `key=value` fields, saying how each ended.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use common::*;

/// The value of `key=` in an access line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn each_connection_gets_one_line_with_its_bytes_and_end() {
    let mut server = Server::start(&["echo", "--access-log", "--idle-timeout", "1"]);
    let mut s = connect(server.addr);
    let local = s.local_addr().unwrap();
    s.write_all(b"hello").unwrap();
    expect(&mut s, b"hello");
    s.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut s);
    let line = server.wait_for_log("access conn=");
    assert_eq!(field(&line, "peer"), local.to_string(), "{line}");
    assert_eq!(field(&line, "bytes_in"), "5", "{line}");
    assert_eq!(field(&line, "bytes_out"), "5", "{line}");
    assert_eq!(field(&line, "end"), "done", "{line}");
    assert_eq!(
        field(&line, "worker"),
        "0",
        "one worker is worker 0: {line}"
    );
    assert!(line.contains(" INFO "), "{line}");
    // The fields come in a fixed order.
    let keys: Vec<&str> = line
        .split("access ")
        .nth(1)
        .unwrap()
        .split(' ')
        .map(|w| w.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "conn",
            "worker",
            "peer",
            "duration_ms",
            "bytes_in",
            "bytes_out",
            "end"
        ]
    );
    // An idle one times out, and says so.
    let mut idle = connect(server.addr);
    expect(&mut idle, b"Connection timeout\n");
    server.wait_for_log_where("access conn=", |l| l.contains("end=idle_timeout"));
    assert_eq!(server.log_lines("access conn=").len(), 2);
}

#[test]
fn chat_and_file_add_their_own_fields() {
    let mut chat = Server::start(&["chat", "--access-log", "--max-connections", "1"]);
    let mut alice = connect(chat.addr);
    expect(&mut alice, b"Enter your username: ");
    alice.write_all(b"alice\n").unwrap();
    expect(&mut alice, b"Welcome to the chat!\n");
    // Full: the turned-away client has its line too.
    let mut late = connect(chat.addr);
    let (said, _) = read_to_eof(&mut late);
    assert_eq!(said, b"Server is full. Try again later.\n");
    chat.wait_for_log("end=server_full");
    alice.write_all(b"/quit\n").unwrap();
    expect(&mut alice, b"Goodbye!\n");
    let line = chat.wait_for_log("user=alice");
    assert_eq!(field(&line, "end"), "closed", "{line}");

    let dir = std::env::temp_dir().join(format!("monoloop-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a b.txt"), b"12345").unwrap();
    let mut files = Server::start(&["file", "--root", dir.to_str().unwrap(), "--access-log"]);
    let mut s = connect(files.addr);
    s.write_all(b"a b.txt\n").unwrap();
    let (got, _) = read_to_eof(&mut s);
    assert_eq!(got, b"12345");
    let line = files.wait_for_log(r#"file="a b.txt""#);
    assert!(
        line.ends_with(r#"end=done file="a b.txt" size=5 sent=5"#),
        "{line}"
    );
    let mut s = connect(files.addr);
    s.write_all(b"../etc/passwd\n").unwrap();
    let _ = read_to_eof(&mut s);
    let line = files.wait_for_log(r#"file="../etc/passwd""#);
    // Why, as a key=value field like the others (issue 21).
    assert!(line.ends_with(" refused=dot_dot"), "{line}");
    let mut s = connect(files.addr);
    s.write_all(b"missing.txt\n").unwrap();
    let _ = read_to_eof(&mut s);
    let line = files.wait_for_log(r#"file="missing.txt""#);
    assert!(
        line.ends_with(r#"file="missing.txt" refused=not_found"#),
        "{line}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn without_the_option_there_is_no_access_line() {
    let mut server = Server::start(&["echo", "--stats-interval", "0.2"]);
    let mut s = connect(server.addr);
    s.write_all(b"x").unwrap();
    expect(&mut s, b"x");
    drop(s);
    server.wait_stats(&[("total", 1), ("active", 0)]);
    assert!(server.log_lines("access").is_empty());
}

#[test]
fn debug_lines_say_one_thing_each_in_words() {
    let mut server = Server::start(&["echo", "--log-level", "debug", "--idle-timeout", "0.5"]);
    let mut done = connect(server.addr);
    done.write_all(b"x").unwrap();
    done.shutdown(Shutdown::Write).unwrap();
    expect(&mut done, b"x");
    expect_eof(&mut done);
    let mut reset = connect(server.addr);
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    reset.write_all(b"x").ok();
    drop(reset);
    let mut idle = connect(server.addr);
    expect(&mut idle, b"Connection timeout\n");
    server.wait_for_log("closed: idle timeout");
    server.wait_for_log("closed: reset by the client");
    server.wait_for_log("closed: done");
    let log = server.log();
    let closes = log.iter().filter(|l| l.contains(" closed")).count();
    assert_eq!(closes, 3, "one line per close:\n{}", log.join("\n"));
    for bad in ["(gone)", "closing:", "Token(", "socket error"] {
        assert!(
            !log.iter().any(|l| l.contains(bad)),
            "{bad:?} in the log:\n{}",
            log.join("\n")
        );
    }
}

/// Bytes read and thrown away while a connection closes (after its error
/// line, until the peer's FIN) count in its access line exactly as in the
/// stats line. They used to count only in the stats.
#[test]
fn bytes_discarded_while_closing_count_in_the_access_line_as_in_the_stats() {
    let mut server = Server::start(&[
        "echo",
        "--prefix",
        "E: ",
        "--max-line",
        "16",
        "--access-log",
        "--stats-interval",
        "0.1",
    ]);
    let mut s = connect(server.addr);
    s.write_all(&[b'a'; 20]).unwrap();
    // The error, then the server's FIN: it is closing, and reads only to
    // discard.
    let (got, _) = read_to_eof(&mut s);
    assert_eq!(got, b"ERROR: line too long\n");
    s.write_all(&[b'b'; 10_000]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let line = server.wait_for_log("access conn=");
    let bytes_in: u64 = field(&line, "bytes_in").parse().unwrap();
    assert!(
        bytes_in > 20,
        "the discarded bytes are not in the access line: {line}"
    );
    let stats = server.wait_for_log_where("stats:", |l| stat(l, "bytes_in") >= bytes_in);
    assert_eq!(stat(&stats, "bytes_in"), bytes_in, "{stats}\n{line}");
}

/// Issue 21: a balancer's health check (connect, then close, FIN or
/// reset, without a byte, before any byte of ours could have been read)
/// ends `end=check`, and is counted in `checks`, not in `total` (clients
/// accepted). A client that said something, or whose TCP acknowledged
/// what the server said first (a greeting), is a client.
#[test]
fn a_connection_that_says_nothing_and_goes_is_a_check_not_a_client() {
    let mut server = Server::start(&["echo", "--access-log", "--stats-interval", "0.1"]);
    // Connect, then FIN; connect, then reset.
    let fin = connect(server.addr);
    fin.shutdown(Shutdown::Both).unwrap();
    server.wait_for_log("end=check");
    let reset = connect(server.addr);
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);
    server.wait_for_log_where("access conn=2 ", |l| l.contains("end=check"));
    // A client.
    let mut s = connect(server.addr);
    s.write_all(b"x").unwrap();
    expect(&mut s, b"x");
    s.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut s);
    server.wait_for_log_where("access conn=3 ", |l| l.contains("end=done"));
    let line = server.wait_stats(&[("total", 1), ("checks", 2), ("active", 0)]);
    assert_eq!(line.get("rejected"), 0, "{line}");
    for check in server.log_lines("end=check") {
        assert!(check.contains(" bytes_in=0 bytes_out=0 "), "{check}");
    }

    // A server that speaks first: a client that reads the greeting, then
    // leaves without a word, has been served.
    let mut server = Server::start(&[
        "echo",
        "--greeting",
        "hello",
        "--access-log",
        "--stats-interval",
        "0.1",
    ]);
    let mut s = connect(server.addr);
    expect(&mut s, b"hello\n");
    s.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut s);
    let line = server.wait_for_log("access conn=");
    assert!(line.ends_with(" bytes_in=0 bytes_out=6 end=done"), "{line}");
    server.wait_stats(&[("total", 1), ("checks", 0), ("active", 0)]);
    // One that resets without reading it (as HAProxy's checks close) went
    // before it could have read it: a check.
    let reset = connect(server.addr);
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);
    server.wait_for_log("end=check");
    server.wait_stats(&[("total", 1), ("checks", 1), ("active", 0)]);
}

/// A broadcast listener never says a word, and one killed with lines still
/// unread resets the connection as a health check does; it was served
/// (it was sent the room's lines), so it is a client, not a check.
#[test]
fn a_listener_sent_the_rooms_lines_is_a_client_however_it_leaves() {
    let mut server = Server::start(&[
        "broadcast",
        "--access-log",
        "--stats-interval",
        "0.1",
        "--log-level",
        "debug",
    ]);
    let mut listener = connect(server.addr);
    let mut speaker = connect(server.addr);
    server.wait_accepted(2);
    for i in 0..50 {
        speaker.write_all(format!("line {i}\n").as_bytes()).unwrap();
    }
    let want: usize = (0..50)
        .map(|i| format!("[Broadcast] line {i}\n").len())
        .sum();
    read_n(&mut listener, want);
    socket2::SockRef::from(&listener)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(listener);
    let line = server.wait_for_log("access conn=1 ");
    assert!(!line.contains("end=check"), "{line}");
    drop(speaker);
    server.wait_stats(&[("total", 2), ("checks", 0), ("active", 0)]);
}
