//! `monoloop echo` over real sockets: bytes come back exact, half-close
//! delivers everything owed, many clients at once, greeting and line mode.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;

#[test]
fn ten_mib_echo_byte_exact() {
    let server = Server::start(&["echo"]);
    let s = connect(server.addr);
    let total = 10 * 1024 * 1024;
    let writer = {
        let s = s.try_clone().unwrap();
        thread::spawn(move || write_pattern(s, total, Arc::new(AtomicU64::new(0))))
    };
    let mut r = s;
    assert_eq!(read_pattern(&mut r, total), total);
    writer.join().unwrap();
    // The writer half-closed after the last byte: the server closes too.
    expect_eof(&mut r);
}

#[test]
fn half_close_delivers_everything_owed() {
    let server = Server::start(&["echo"]);
    let mut s = connect(server.addr);
    // Write everything first, without reading, then half-close: the server
    // must still owe (and deliver) what the kernel buffers could not hold.
    let total: u64 = 3 * 1024 * 1024;
    let writer = {
        let s = s.try_clone().unwrap();
        thread::spawn(move || write_pattern(s, total, Arc::new(AtomicU64::new(0))))
    };
    let (got, reset) = read_to_eof(&mut s);
    writer.join().unwrap();
    assert!(!reset, "connection was reset instead of closed");
    assert_eq!(got.len() as u64, total);
    for (i, &b) in got.iter().enumerate() {
        assert_eq!(b, pattern(i as u64), "byte {i}");
    }
}

#[test]
fn half_close_with_a_small_message_gets_it_back_then_eof() {
    let server = Server::start(&["echo"]);
    let mut s = connect(server.addr);
    s.write_all(b"last words").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (got, reset) = read_to_eof(&mut s);
    assert_eq!(got, b"last words");
    assert!(!reset);
}

#[test]
fn five_hundred_clients_each_echo_a_thousand_messages() {
    const CLIENTS: usize = 500;
    const MESSAGES: usize = 1000;
    const BATCH: usize = 100;
    let server = Server::start(&["echo"]);
    let addr = server.addr;
    // Everyone connects before anyone talks, so all 500 are open at once.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let barrier = barrier.clone();
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut s = connect(addr);
                    barrier.wait();
                    for batch in 0..MESSAGES / BATCH {
                        let mut out = Vec::new();
                        for m in 0..BATCH {
                            // 16 bytes, unique per client and message.
                            writeln!(out, "c{c:03}m{:04}......", batch * BATCH + m).unwrap();
                        }
                        s.write_all(&out).unwrap();
                        let back = read_n(&mut s, out.len());
                        assert_eq!(back, out, "client {c} batch {batch}");
                    }
                    MESSAGES
                })
                .unwrap()
        })
        .collect();
    let echoed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(echoed, CLIENTS * MESSAGES);
}

#[test]
fn greeting_then_prefixed_lines() {
    let server = Server::start(&[
        "echo",
        "--greeting",
        "Welcome to secure server",
        "--prefix",
        "Echo: ",
    ]);
    let mut s = connect(server.addr);
    expect(&mut s, b"Welcome to secure server\n");
    s.write_all(b"hello\nwor").unwrap();
    expect(&mut s, b"Echo: hello\n");
    s.write_all(b"ld\r\n").unwrap();
    expect(&mut s, b"Echo: world\r\n");
    // An unfinished line comes back at half-close, then the server closes.
    s.write_all(b"tail").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (rest, _) = read_to_eof(&mut s);
    assert_eq!(rest, b"Echo: tail");
}

#[test]
fn overlong_line_is_refused_and_only_that_client_closed() {
    let server = Server::start(&["echo", "--prefix", "> ", "--max-line", "16"]);
    let mut bystander = connect(server.addr);
    let mut s = connect(server.addr);
    s.write_all(&[b'x'; 40]).unwrap();
    expect(&mut s, b"ERROR: line too long\n");
    expect_eof(&mut s);
    bystander.write_all(b"still here\n").unwrap();
    expect(&mut bystander, b"> still here\n");
}

#[test]
fn ipv6_loopback_works() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip::skip("no IPv6 loopback (::1) here");
        return;
    }
    let server = Server::start(&["echo", "--listen", "[::1]:0"]);
    assert!(server.addr.is_ipv6());
    let mut s = connect(server.addr);
    s.write_all(b"six").unwrap();
    expect(&mut s, b"six");
}
