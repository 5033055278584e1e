//! `--workers N` over real sockets: several loops on one port, behaving as
//! one server (the connection limit, the stats line, shutdown).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::*;

/// The workers named in the debug log's accept lines.
fn workers_seen(server: &Server) -> BTreeSet<String> {
    server.workers_of().into_iter().collect()
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

/// Connections per worker, from the debug log's accept lines
/// (`worker N: conn #K from ADDR`): the worker that serves each one.
fn per_worker(server: &Server) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for l in server.log_lines(" from ") {
        let Some(w) = l.split("worker ").nth(1).and_then(|w| w.split(':').next()) else {
            continue;
        };
        *counts.entry(w.to_string()).or_default() += 1;
    }
    counts
}

/// How the clients arrive.
#[derive(Debug, Clone, Copy)]
enum Arrival {
    /// One every 20 ms: the kernel has time to wake whichever worker it
    /// likes for each.
    Spaced,
    /// All at once, as fast as one thread connects.
    Burst,
}

/// A listening socket as systemd's socket unit makes one (Backlog=4096).
fn systemd_socket() -> std::net::TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(4096).unwrap();
    socket.into()
}

/// Connects `n` clients to a 2-worker echo server, keeps them open, and
/// returns how many each worker serves. `activated`: the server is started
/// as systemd starts it, on one socket it is given (the workers share its
/// accept queue); otherwise on its own sockets (SO_REUSEPORT, one each).
fn spread(n: usize, arrival: Arrival, activated: bool) -> BTreeMap<String, usize> {
    let args = ["echo", "--workers", "2", "--log-level", "debug"];
    let socket = systemd_socket();
    let mut server = if activated {
        Server::start_exact(common::activated(&socket, &args))
    } else {
        Server::start(&args)
    };
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(connect(server.addr));
        if let Arrival::Spaced = arrival {
            thread::sleep(Duration::from_millis(20));
        }
    }
    server.wait_accepted(n);
    let counts = per_worker(&server);
    assert_eq!(counts.values().sum::<usize>(), n, "{counts:?}");
    counts
}

/// Issue 21: neither of two workers serves more than 60 % of the clients,
/// whether the kernel spreads them over the workers' own sockets (a hash)
/// or the workers share systemd's one socket (whoever wakes first).
#[test]
fn connections_are_spread_evenly_over_two_workers() {
    for activated in [false, true] {
        for (n, arrival) in [(40, Arrival::Spaced), (200, Arrival::Burst)] {
            let counts = spread(n, arrival, activated);
            let most = counts.values().copied().max().unwrap_or(0);
            let how = if activated {
                "socket activation"
            } else {
                "own sockets"
            };
            assert!(
                most * 100 <= n * 60,
                "{n} clients, {arrival:?}, {how}: {counts:?}"
            );
        }
    }
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
    // Each worker reports on its own tick: wait for the sum to be whole.
    server.wait_stats(&[("active", 2), ("rejected", 4)]);
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
    let line = server.wait_stats(&[("total", 12), ("active", 5)]);
    assert_eq!(line.get("bytes_in"), 5 * 5 + 7, "{line}");
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
    let mut server = Server::start(&[
        "echo",
        "--workers",
        "2",
        "--prefix",
        "> ",
        "--stats-interval",
        "0.1",
    ]);
    let mut clients: Vec<_> = (0..6).map(|_| connect(server.addr)).collect();
    for s in &mut clients {
        // An unfinished line: shutdown sends it back, then closes.
        s.write_all(b"pending").unwrap();
    }
    // Every unfinished line has been read.
    server.wait_stats(&[("bytes_in", 6 * 7)]);
    server.signal(libc::SIGTERM);
    for s in &mut clients {
        let (said, _) = read_to_eof(s);
        assert_eq!(said, b"> pending");
    }
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));

    let mut server = Server::start(&["echo", "--workers", "2", "--drain-timeout", "30"]);
    let _stuck = stuck_client(server.addr);
    server.signal(libc::SIGTERM);
    server.wait_for_log("no longer accepting");
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{status}");
    let again = server.log_lines("again: exiting now");
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].ends_with("dropping 1 connection"), "{}", again[0]);
}

/// Issue 21: a signal, and the drain timeout, are one line each for the
/// whole server, counting every worker's connections.
#[test]
fn shutdown_is_one_line_per_event_whatever_the_workers() {
    let mut server = Server::start(&["echo", "--workers", "4", "--drain-timeout", "0.5"]);
    // Four clients that never read what they are owed, spread over at
    // least two workers (none serves more than two more than another).
    let stuck: Vec<_> = (0..4).map(|_| stuck_client(server.addr)).collect();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    let draining = server.log_lines("no longer accepting");
    assert_eq!(draining.len(), 1, "{draining:?}");
    assert!(
        draining[0]
            .ends_with("SIGTERM: no longer accepting; draining 4 connections for up to 500ms"),
        "{}",
        draining[0]
    );
    let timed_out = server.log_lines("drain timeout");
    assert_eq!(timed_out.len(), 1, "{timed_out:?}");
    assert!(
        timed_out[0].ends_with("drain timeout: closing 4 connections that did not finish"),
        "{}",
        timed_out[0]
    );
    drop(stuck);
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
        assert!(
            err.contains(&format!("--listen {port}: already in use")),
            "{err}"
        );
    }
}

#[test]
fn bad_worker_counts_and_modes_are_argument_errors() {
    for (args, needle) in [
        (vec!["echo", "--workers", "0"], "--workers"),
        (vec!["echo", "--workers", "-2"], "--workers"),
        (vec!["echo", "--workers", "many"], "--workers"),
        (vec!["chat", "--workers", "1025"], "--workers"),
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

/// Reads `n` lines.
fn lines(r: &mut BufReader<TcpStream>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            l
        })
        .collect()
}

#[test]
fn broadcast_reaches_every_client_on_every_worker_once_and_in_order() {
    const CLIENTS: usize = 12;
    const LINES: usize = 5;
    let mut server = Server::start(&[
        "broadcast",
        "--workers",
        "4",
        "--prefix",
        "",
        "--log-level",
        "debug",
    ]);
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    server.wait_accepted(CLIENTS);
    assert!(workers_seen(&server).len() >= 2, "one worker only");
    let mut writers: Vec<TcpStream> = clients.iter().map(|c| c.try_clone().unwrap()).collect();
    for k in 0..LINES {
        for (i, w) in writers.iter_mut().enumerate() {
            w.write_all(format!("{i}:{k}\n").as_bytes()).unwrap();
        }
    }
    for (me, c) in clients.into_iter().enumerate() {
        let mut r = BufReader::new(c);
        let got = lines(&mut r, (CLIENTS - 1) * LINES);
        let mut next: BTreeMap<usize, usize> = BTreeMap::new();
        for l in got {
            let (from, k) = l.trim().split_once(':').unwrap();
            let (from, k): (usize, usize) = (from.parse().unwrap(), k.parse().unwrap());
            assert_ne!(from, me, "its own line came back");
            let want = next.entry(from).or_default();
            assert_eq!(k, *want, "client {me}: {from}'s lines out of order");
            *want += 1;
        }
        assert_eq!(next.len(), CLIENTS - 1);
        assert!(next.values().all(|&n| n == LINES), "{next:?}");
    }
}

#[test]
fn chat_is_one_room_across_workers() {
    const USERS: usize = 8;
    let mut server = Server::start(&["chat", "--workers", "4", "--log-level", "debug"]);
    let mut users: Vec<BufReader<TcpStream>> = Vec::new();
    for i in 0..USERS {
        let mut s = connect(server.addr);
        expect(&mut s, b"Enter your username: ");
        s.write_all(format!("user{i}\n").as_bytes()).unwrap();
        expect(&mut s, b"Welcome to the chat!\n");
        // Everyone already in hears this one join, wherever they are.
        for (j, earlier) in users.iter_mut().enumerate() {
            assert_eq!(
                lines(earlier, 1),
                [format!("user{i} joined the chat\n")],
                "user{j}"
            );
        }
        users.push(BufReader::new(s));
    }
    server.wait_accepted(USERS);
    assert!(workers_seen(&server).len() >= 2, "one worker only");
    // A name is taken whatever the worker and the case.
    let mut late = connect(server.addr);
    expect(&mut late, b"Enter your username: ");
    late.write_all(b"USER3\n").unwrap();
    expect(&mut late, b"Username taken. Enter your username: ");
    // /who lists everyone, sorted.
    let who = |r: &mut BufReader<TcpStream>| {
        r.get_mut().write_all(b"/who\n").unwrap();
        lines(r, 1).remove(0)
    };
    let all: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
    assert_eq!(
        who(&mut users[5]),
        format!("Users online: {}\n", all.join(", "))
    );
    // /msg reaches a user on any worker, and nobody else.
    for to in 0..USERS {
        users[0]
            .get_mut()
            .write_all(format!("/msg USER{to} hi {to}\n").as_bytes())
            .unwrap();
        assert_eq!(
            lines(&mut users[to], 1),
            [format!("[private] user0: hi {to}\n")]
        );
    }
    // A line reaches every other user once.
    users[7].get_mut().write_all(b"hello all\n").unwrap();
    for (i, r) in users.iter_mut().enumerate().take(7) {
        assert_eq!(lines(r, 1), ["user7: hello all\n"], "user{i}");
    }
    // /nick to a name held on another worker is refused; a free one is
    // announced everywhere, and the old name is free again.
    users[2].get_mut().write_all(b"/nick User6\n").unwrap();
    assert_eq!(lines(&mut users[2], 1), ["ERROR: username taken\n"]);
    users[2].get_mut().write_all(b"/nick carol\n").unwrap();
    assert_eq!(lines(&mut users[2], 1), ["You are now carol\n"]);
    for (i, r) in users.iter_mut().enumerate().filter(|(i, _)| *i != 2) {
        assert_eq!(lines(r, 1), ["user2 is now carol\n"], "user{i}");
    }
    late.write_all(b"user2\n").unwrap();
    expect(&mut late, b"Welcome to the chat!\n");
    for r in users.iter_mut() {
        assert_eq!(lines(r, 1), ["user2 joined the chat\n"]);
    }
    // Leaving is announced to everyone else, everywhere, once.
    let gone = users.remove(4);
    drop(gone);
    for r in users.iter_mut() {
        assert_eq!(lines(r, 1), ["user4 left the chat\n"]);
    }
    let mut late = BufReader::new(late);
    assert_eq!(lines(&mut late, 1), ["user4 left the chat\n"]);
    assert!(who(&mut late).contains("carol, user0"));
}

#[test]
fn a_fast_sender_is_paced_by_receivers_on_every_worker() {
    const RECEIVERS: usize = 10;
    const TOTAL: usize = 16 << 20;
    let mut server = Server::start(&[
        "broadcast",
        "--workers",
        "2",
        "--prefix",
        "",
        "--log-level",
        "debug",
    ]);
    let mut sender = connect(server.addr);
    let receivers: Vec<TcpStream> = (0..RECEIVERS).map(|_| connect(server.addr)).collect();
    server.wait_accepted(RECEIVERS + 1);
    assert!(workers_seen(&server).len() == 2, "one worker only");
    let line = format!("{}\n", "p".repeat(1023));
    let lines_total = TOTAL / line.len();
    let handles: Vec<_> = receivers
        .into_iter()
        .map(|r| {
            thread::spawn(move || {
                // Reads steadily, a little slower than the sender writes.
                let mut r = r;
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                while got < TOTAL {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                    thread::sleep(Duration::from_millis(4));
                }
                got
            })
        })
        .collect();
    let burst = line.repeat(lines_total);
    sender.write_all(burst.as_bytes()).unwrap();
    for h in handles {
        assert_eq!(h.join().unwrap(), TOTAL, "a receiver was cut off");
    }
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(10));
    let last = server.wait_for_log("(final)");
    assert_eq!(stat(&last, "slow_consumers"), 0, "{last}");
}

#[test]
fn chat_across_workers_keeps_one_limit_and_shuts_down_as_one() {
    let mut server = Server::start(&[
        "chat",
        "--workers",
        "3",
        "--max-connections",
        "4",
        "--log-level",
        "debug",
    ]);
    let mut users: Vec<BufReader<TcpStream>> = Vec::new();
    for i in 0..4 {
        let mut s = connect(server.addr);
        expect(&mut s, b"Enter your username: ");
        s.write_all(format!("u{i}\n").as_bytes()).unwrap();
        expect(&mut s, b"Welcome to the chat!\n");
        for earlier in users.iter_mut() {
            assert_eq!(lines(earlier, 1), [format!("u{i} joined the chat\n")]);
        }
        users.push(BufReader::new(s));
    }
    // The fifth, on whichever worker, is one too many for the server.
    let mut late = connect(server.addr);
    assert_eq!(
        read_to_eof(&mut late).0,
        b"Server is full. Try again later.\n"
    );
    // SIGTERM: every user on every worker hears it, and the server exits 0
    // with one final line.
    server.signal(libc::SIGTERM);
    for r in users.iter_mut() {
        // Another worker's users may be announced leaving first.
        loop {
            let line = lines(r, 1).remove(0);
            if line == "Server shutting down\n" {
                break;
            }
            assert!(line.ends_with(" left the chat\n"), "{line:?}");
        }
    }
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    let finals = server.log_lines("(final)");
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(stat(&finals[0], "total"), 4, "{}", finals[0]);
    assert_eq!(stat(&finals[0], "rejected"), 1, "{}", finals[0]);
}

/// The value of `key=` in a log line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Issue 21: an access line has one shape with one worker or many
/// (`access conn=N worker=W ...`, with no `worker N:` in front of it, as
/// other lines of a worker have), and its `conn` is unique in the process:
/// worker W of N numbers its connections W+1, W+1+N, W+1+2N, ... (the
/// debug log's `conn #` too).
#[test]
fn access_lines_have_one_shape_and_numbers_unique_in_the_process() {
    const CLIENTS: usize = 30;
    let server = Server::start(&["echo", "--workers", "3", "--access-log"]);
    for i in 0..CLIENTS {
        let mut s = connect(server.addr);
        let msg = format!("client {i}\n");
        s.write_all(msg.as_bytes()).unwrap();
        expect(&mut s, msg.as_bytes());
        s.shutdown(std::net::Shutdown::Write).unwrap();
        expect_eof(&mut s);
    }
    eventually("an access line per client", || {
        server.log_lines(" access ").len() >= CLIENTS
    });
    let mut numbers = BTreeSet::new();
    let mut workers = BTreeSet::new();
    for line in server.log_lines(" access ") {
        let message = line.split("[monoloop] ").nth(1).unwrap_or_default();
        assert!(message.starts_with("access conn="), "{line}");
        let conn: u64 = field(message, "conn").parse().unwrap();
        let worker: u64 = field(message, "worker").parse().unwrap();
        assert!(worker < 3, "{line}");
        assert_eq!((conn - 1) % 3, worker, "worker {worker}'s numbers: {line}");
        assert!(numbers.insert(conn), "conn={conn} twice: {line}");
        workers.insert(worker);
    }
    assert_eq!(numbers.len(), CLIENTS);
    assert!(
        workers.len() >= 2,
        "all {CLIENTS} on one worker: {workers:?}"
    );
}

/// The server full is the whole server's condition: with four workers it
/// is said once a minute for all, not once per worker that turns a client
/// away (each worker's queue gets some of the 40).
#[test]
fn a_full_server_with_workers_says_so_once() {
    let mut server = Server::start(&[
        "echo",
        "--workers",
        "4",
        "--max-connections",
        "1",
        "--stats-interval",
        "0.1",
    ]);
    let mut kept = connect(server.addr);
    kept.write_all(b"in").unwrap();
    expect(&mut kept, b"in");
    for _ in 0..40 {
        let mut s = connect(server.addr);
        assert_eq!(read_to_eof(&mut s).0, b"Server is full. Try again later.\n");
    }
    server.wait_stats(&[("rejected", 40)]);
    let said = server.log_lines("server full");
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(!said[0].contains("worker "), "{}", said[0]);
}
