//! A client's time limits, over real sockets: the idle timeout and what
//! it spares, the request timeout at a prompt however the bytes trickle
//! in, a line's deadline from its first byte, and the raw echo that stays
//! byte-driven. Several reproduce attacks (issue 9) on the deadlines.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
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
