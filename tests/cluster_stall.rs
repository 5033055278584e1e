//! A Redis that stops answering (SIGSTOP: its connections stay open, it
//! reads and answers nothing): the link holds local senders as a slow
//! receiver does, past `--write-limit`; after 5 s without an answer it is
//! lost, local delivery goes on, and the lines wait in the outbox for
//! Redis to come back.

#![cfg(feature = "cluster")]

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::Redis;
use common::*;

#[test]
fn a_stalled_redis_holds_senders_then_is_dropped_and_local_delivery_goes_on() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let url = redis.url();
    let mut server = Server::start(&[
        "broadcast",
        "--prefix",
        "",
        "--cluster",
        &url,
        "--write-limit",
        "64K",
        "--log-level",
        "debug",
    ]);
    server.wait_for_log("cluster: linked to");
    let mut sender = connect(server.addr);
    let mut receiver = connect(server.addr);
    server.wait_accepted(2);
    // SAFETY: kill(2) on the pid of the redis-server this test started.
    unsafe { libc::kill(redis.pid() as i32, libc::SIGSTOP) };
    // The receiver reads everything, on its own thread, and counts.
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let reader = thread::spawn(move || {
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let end = Instant::now() + Duration::from_secs(12);
        let mut at_2s = None;
        let start = Instant::now();
        while Instant::now() < end {
            if at_2s.is_none() && start.elapsed() > Duration::from_secs(2) {
                at_2s = Some(got);
            }
            match receiver.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => {}
            }
        }
        (at_2s.unwrap_or(got), got)
    });
    // The sender writes 1 KB lines for 8 s, as fast as it may.
    sender
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let line = [b'x'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    let chunk = line.repeat(16);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        let _ = sender.write_all(&chunk);
    }
    let (early, total) = reader.join().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(redis.pid() as i32, libc::SIGCONT) };
    // Held: while Redis was linked but silent, little got through (the
    // first ~2 s, with a 64 KiB limit: well under a megabyte).
    assert!(early < 1 << 20, "{early} bytes in the first 2 s: not held");
    // Then the link was lost, once, and local delivery went on.
    let lost = server.wait_for_log("cluster: lost Redis");
    assert!(lost.contains("did not answer"), "{lost}");
    assert!(
        total > early + (4 << 20),
        "local delivery did not resume: {early} then {total} bytes"
    );
    // Redis back: the link comes back, the outbox is published.
    server.wait_for_log("cluster: linked to");
    let again = server.wait_for_log("again after");
    assert!(again.contains(&url), "{again}");
}

/// A Redis that keeps up is not dropped as slow because one turn read more
/// than twice a small `--write-limit` before the senders were held (a
/// turn reads up to its budget, 256 KiB, from clients that write fast).
#[test]
fn a_burst_bigger_than_twice_the_write_limit_does_not_drop_a_redis_that_keeps_up() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let url = redis.url();
    let mut server = Server::start(&[
        "broadcast",
        "--cluster",
        &url,
        "--write-limit",
        "16K",
        "--stats-interval",
        "0.2",
        "--log-level",
        "debug",
    ]);
    server.wait_for_log("cluster: linked to");
    let mut senders: Vec<_> = (0..4).map(|_| connect(server.addr)).collect();
    let mut receiver = connect(server.addr);
    server.wait_accepted(5);
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            if let Ok(0) = receiver.read(&mut buf) {
                break;
            }
        }
    });
    let line = [b'x'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    let chunk = line.repeat(128);
    for s in &mut senders {
        s.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for s in &mut senders {
            let _ = s.write_all(&chunk);
        }
    }
    reader.join().unwrap();
    let stats = server.wait_for_log_where("published=", |l| !l.contains("published=0 "));
    let log = server.log().join("\n");
    assert!(
        !log.contains("Redis is not keeping up"),
        "dropped as slow: {log}"
    );
    assert!(!log.contains("lost Redis"), "{stats}");
}
