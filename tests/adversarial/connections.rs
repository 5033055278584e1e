//! Attacks on the connection table itself, each while a bystander is served:
//! a flood of connects far past `--max-connections`, descriptor exhaustion
//! under a lowered `RLIMIT_NOFILE`, and thousands of short connections
//! across two workers (whole, cut off mid-line, reset) in echo and in chat,
//! which must leave no slot, descriptor or name behind.
//!
//! Earlier tests of the same attacks, without a bystander:
//! tests/resources.rs (the sixth client turned away, out of descriptors,
//! one warning per descriptor episode, churn leaving no timer garbage),
//! tests/workers.rs (one limit and one stats line across workers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::bystander::Bystander;
use crate::common::metrics::{get, metrics_addr, sample};
use crate::common::*;

/// How long the bystander may wait for any one answer while an attack runs:
/// generous for a loaded 2-core machine, far short of a blocked server.
const BOUND: Duration = Duration::from_secs(2);
/// How long an attack lasts at least (however fast it goes), so that the
/// bystander is asked many times while it runs.
const LASTING: Duration = Duration::from_millis(1500);

/// 2,000 connects or more (for 1.5 s, up to 10,000), in bursts of 100, at a limit of 20: every one is told the
/// server is full and closed, each is counted as rejected, the log says so
/// once, nothing is left open, and the 20 inside (the bystander among them)
/// are served throughout.
#[test]
fn a_connect_flood_past_the_limit_is_turned_away_and_counted() {
    const LIMIT: usize = 20;
    const FLOOD: usize = 2_000;
    const BURST: usize = 100;
    let mut server = Server::start(&["echo", "--max-connections", "20", "--stats-interval", "0.2"]);
    let bystander = Bystander::echo(server.addr);
    let mut held: Vec<Client> = (1..LIMIT)
        .map(|i| {
            let mut c = server.client(&format!("held {i}"));
            c.send(format!("{i}\n")).expect(format!("{i}\n"));
            c
        })
        .collect();
    server.wait_stats(&[("active", LIMIT as u64)]);
    let fds_before = server.open_fds();
    let rss_before = server.rss_kib();

    let started = Instant::now();
    let (mut told_full, mut flooded) = (0, 0);
    for burst in 0.. {
        if flooded >= 5 * FLOOD || (flooded >= FLOOD && started.elapsed() >= LASTING) {
            break;
        }
        flooded += BURST;
        let mut flood: Vec<TcpStream> = (0..BURST).map(|_| churn_connect(server.addr)).collect();
        for (i, s) in flood.iter_mut().enumerate() {
            let (said, _) = read_to_eof(s);
            assert!(
                said.is_empty() || said == b"Server is full. Try again later.\n",
                "burst {burst}, client {i} was told {said:?}"
            );
            told_full += usize::from(!said.is_empty());
        }
    }
    eprintln!("{flooded} connects turned away in {:?}", started.elapsed());
    // The refusal is written before the close: every one of them read it.
    assert_eq!(told_full, flooded, "clients that read the refusal");

    let line = server.wait_stats(&[("rejected", flooded as u64)]);
    assert_eq!(line.get("active"), LIMIT as u64, "{line}");
    assert_eq!(line.get("total"), LIMIT as u64, "{line}");
    for (i, c) in held.iter_mut().enumerate() {
        c.send(format!("after {i}\n"))
            .expect(format!("after {i}\n"));
    }
    // Nothing is left behind: no descriptor, no memory to speak of.
    assert_eq!(server.open_fds(), fds_before, "descriptors after the flood");
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(grown <= 1024, "RSS grew {grown} KiB over the flood");
    let seen = bystander.finish(BOUND);
    eprintln!("bystander: {seen:?}");
    // Said once, with the limit: not a line per client.
    let loud = server.loud_lines();
    assert_eq!(loud.len(), 1, "{loud:#?}");
    assert!(
        loud[0].contains("server full (--max-connections 20)"),
        "{}",
        loud[0]
    );
}

/// Under 32 descriptors, clients far past what fits: the loop does not spin
/// on the failing accept, the log says so once however many clients come
/// and go, the bystander (which came before) is served throughout, and
/// once the attackers leave a new client is served again.
#[test]
fn out_of_descriptors_the_bystander_is_served_and_service_resumes() {
    const ATTACKERS: usize = 40;
    let mut server = Server::start_cmd(with_fd_limit(32), &["echo", "--log-level", "debug"]);
    server.wait_for_log("needs about");
    let bystander = Bystander::echo(server.addr);
    server.wait_accepted(1);
    let mut attackers: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| {
            let mut s = connect(server.addr);
            s.write_all(b"x").unwrap();
            s
        })
        .collect();
    server.wait_for_log("cannot accept");
    let held = server.accepts_before("cannot accept");
    assert!(
        held < ATTACKERS,
        "all {ATTACKERS} attackers were accepted under 32 descriptors"
    );
    // No spin: the failing accept is retried on a timer, not in a loop.
    // (The bystander's own probes cost a little.)
    let cpu_before = server.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let cpu = server.cpu_ticks() - cpu_before;
    eprintln!("{cpu} CPU ticks in 1 s out of descriptors, {held} clients held");
    assert!(cpu <= 20, "{cpu} ticks of CPU in 1 s out of descriptors");
    // Attackers come and go (each freed descriptor goes to the next in the
    // backlog, and the accept after it fails again): one episode.
    for _ in 0..30 {
        drop(attackers.remove(0));
        let mut s = connect(server.addr);
        s.write_all(b"y").unwrap();
        attackers.push(s);
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.log_lines("cannot accept").len(), 1, "one warning");
    // The attackers leave: the episode passes, said once, and a newcomer
    // is served.
    attackers.clear();
    server.wait_for_log("accepting connections again");
    let mut newcomer = server.client("newcomer");
    newcomer.send("hello\n").expect("hello\n");
    let seen = bystander.finish(BOUND);
    eprintln!("bystander: {seen:?}");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(server.log_lines("cannot accept").len(), 1);
    assert_eq!(server.log_lines("accepting connections again").len(), 1);
    let loud = server.loud_lines();
    assert!(loud.len() <= 2, "{loud:#?}");
}

/// One short connection of kind `i % 4`: a whole line echoed, half a line
/// and gone, a line and a reset without reading, or a reset at once.
fn echo_churner(addr: SocketAddr, i: usize) {
    let mut s = churn_connect(addr);
    let line = format!("churn {i}\n");
    match i % 4 {
        0 => {
            s.write_all(line.as_bytes()).unwrap();
            // Or the refusal: the churners open connections faster than a
            // turn's accepts are visited, so at a moment the server may
            // hold more than its limit of connections whose peers are gone.
            let said = read_n(&mut s, line.len());
            let full = b"Server is full. Try again later.\n";
            if said != line.as_bytes() && !full.starts_with(&said) {
                panic!("churner {i} was told {:?}", String::from_utf8_lossy(&said));
            }
        }
        1 => {
            let _ = s.write_all(&line.as_bytes()[..4]);
        }
        2 => {
            let _ = s.write_all(line.as_bytes());
            reset(&s);
        }
        _ => reset(&s),
    }
}

/// Connects, as [`connect`] does, but tries again (up to five times) when
/// the kernel refuses: under this much churn a new connection's port may
/// meet the server's TIME_WAIT of an earlier one on loopback, and the
/// connect is reset before the server ever sees it.
fn churn_connect(addr: SocketAddr) -> TcpStream {
    for _ in 0..5 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s.set_write_timeout(Some(PATIENCE)).unwrap();
            return s;
        }
        thread::sleep(Duration::from_millis(10));
    }
    connect(addr)
}

/// Makes the close of `s` a reset.
fn reset(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Runs `each(i)` on two threads, even `i` on one and odd on the other,
/// until `at_least` have run and `for_at_least` has passed, but never more
/// than `at_most`; returns the `i` that ran, in order.
fn on_two_threads(
    at_least: usize,
    for_at_least: Duration,
    at_most: usize,
    each: impl Fn(usize) + Send + Clone + 'static,
) -> Vec<usize> {
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let each = each.clone();
            thread::spawn(move || {
                (t..at_most)
                    .step_by(2)
                    .take_while(|&i| i < at_least || started.elapsed() < for_at_least)
                    .inspect(|&i| each(i))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut done: Vec<usize> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    done.sort_unstable();
    done
}

/// 2,000 short connections or more (for 1.5 s, up to 20,000) across two
/// workers, a quarter of each kind:
/// afterwards the slot count is back to the bystander's, every accepted
/// connection has its access line (accepted = closed + active), the
/// metrics say the same per worker, and the descriptors are as before.
#[test]
fn churn_across_workers_in_echo_leaves_no_slot_behind() {
    const CHURN: usize = 2_000;
    let mut server = Server::start(&[
        "echo",
        "--workers",
        "2",
        "--stats-interval",
        "0.2",
        "--access-log",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let m = metrics_addr(&mut server);
    let bystander = Bystander::echo(server.addr);
    server.wait_stats(&[("active", 1)]);
    let fds_before = server.open_fds();
    let addr = server.addr;
    let started = Instant::now();
    let churned =
        on_two_threads(CHURN, LASTING, 10 * CHURN, move |i| echo_churner(addr, i)).len() as u64;
    eprintln!("{churned} short connections in {:?}", started.elapsed());
    // Nobody left but the bystander.
    // (A few resets beat their accept: neither accepted nor refused.)
    server.wait_stats_where("active=1 and every churner counted", |s| {
        let seen = s.get("total") + s.get("checks") + s.get("rejected");
        s.get("active") == 1 && seen + 50 >= churned
    });
    let seen = bystander.finish(BOUND);
    eprintln!("bystander: {seen:?}");
    // (This wait failed one run in three under load before the supervisor
    // looked again at a board that had not caught up: the line stayed at
    // the bystander's active=1 until the next change.)
    let line = server.wait_stats(&[("active", 0)]);
    // Accepted = closed + active: every connection accepted (clients and
    // checks) has ended with its access line. (A reset that beats its
    // accept is neither.)
    eventually("an access line for every accepted connection", || {
        let closed = server
            .log_lines("access conn=")
            .iter()
            .filter(|l| !l.contains("access conn=0 "))
            .count() as u64;
        closed == line.get("total") + line.get("checks")
    });
    eprintln!("{line}");
    let both = server.log_lines("access conn=");
    for w in ["worker=0 ", "worker=1 "] {
        assert!(both.iter().any(|l| l.contains(w)), "no churn on {w}");
    }
    let text = get(m, "/metrics");
    assert_eq!(sample(&text, "monoloop_connections_active"), 0.0);
    for w in ["0", "1"] {
        let series = format!("monoloop_worker_connections_active{{worker=\"{w}\"}}");
        assert_eq!(sample(&text, &series), 0.0, "{series}");
    }
    // One descriptor fewer than before: the bystander's.
    eventually("the descriptors of before, less the bystander's", || {
        server.open_fds() + 1 == fds_before
    });
    // At most the refusals' one line.
    let loud = server.loud_lines();
    assert!(
        loud.iter().all(|l| l.contains("server full")) && loud.len() <= 1,
        "{loud:#?}"
    );
}

/// Reads lines from a chat connection until one starts with `start`
/// (skipping the joins and leaves of others); fails on a read error or
/// after 10,000 lines.
fn chat_line_starting(r: &mut BufReader<TcpStream>, start: &str) -> Result<String, String> {
    let mut line = String::new();
    for _ in 0..10_000 {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return Err("the server closed".into()),
            Ok(_) if line.starts_with(start) => return Ok(line),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e} (after {line:?})")),
        }
    }
    Err(format!("no line starting {start:?} in 10,000"))
}

/// Connects to a chat and takes `name`.
fn chat_join(addr: SocketAddr, name: &str) -> TcpStream {
    let mut s = churn_connect(addr);
    expect(&mut s, b"Enter your username: ");
    s.write_all(format!("{name}\n").as_bytes()).unwrap();
    expect(&mut s, b"Welcome to the chat!\n");
    s
}

/// One short chat visit of kind `i % 5`, under the name `c{i}` (or
/// `n{i}` after a `/nick`): a line then `/quit`, half a line and gone, a
/// reset after joining, half a name at the prompt and a reset, a rename
/// and gone.
fn chat_churner(addr: SocketAddr, i: usize) {
    let name = format!("c{i}");
    if i % 5 == 3 {
        let mut s = churn_connect(addr);
        expect(&mut s, b"Enter your username: ");
        let _ = s.write_all(&name.as_bytes()[..1]);
        reset(&s);
        return;
    }
    let mut s = chat_join(addr, &name);
    match i % 5 {
        0 => {
            s.write_all(b"hello everyone\n/quit\n").unwrap();
            let _ = read_to_eof(&mut s);
        }
        1 => {
            let _ = s.write_all(b"half a li");
        }
        2 => reset(&s),
        _ => {
            s.write_all(format!("/nick n{i}\nbye\n").as_bytes())
                .unwrap();
            let mut r = BufReader::new(s);
            chat_line_starting(&mut r, "You are now").unwrap_or_else(|e| panic!("c{i}: {e}"));
        }
    }
}

/// 1,000 short chat visits or more (for 1.5 s, up to 10,000) across two
/// workers (see [`chat_churner`]):
/// afterwards `/who` lists the bystander alone, every name used (before
/// and after a `/nick`) can be taken again, and no slot is left.
#[test]
fn churn_across_workers_in_chat_leaves_no_name_behind() {
    const CHURN: usize = 1_000;
    let mut server = Server::start(&["chat", "--workers", "2", "--stats-interval", "0.2"]);
    let addr = server.addr;
    let s = chat_join(addr, "bystander");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let bystander = Bystander::start(Duration::from_millis(20), move || {
        w.write_all(b"/who\n").map_err(|e| format!("write: {e}"))?;
        let who = chat_line_starting(&mut r, "Users online: ")?;
        if !who.contains("bystander") {
            return Err(format!("not in {who:?}"));
        }
        Ok(())
    });
    let started = Instant::now();
    let visits = on_two_threads(CHURN, LASTING, 10 * CHURN, move |i| chat_churner(addr, i));
    let churned = visits.len() as u64;
    eprintln!("{churned} short chat visits in {:?}", started.elapsed());
    server.wait_stats_where("active=1 and every visitor counted", |s| {
        s.get("active") == 1 && s.get("total") + s.get("checks") + 50 >= churned
    });
    // A new member sees the bystander alone (who is still there).
    let mut last = chat_join(addr, "last");
    last.write_all(b"/who\n").unwrap();
    let mut r = BufReader::new(last.try_clone().unwrap());
    let who = chat_line_starting(&mut r, "Users online: ").unwrap();
    assert_eq!(who, "Users online: bystander, last\n");
    drop((r, last));
    let seen = bystander.finish(BOUND);
    eprintln!("bystander: {seen:?}");
    // Every name used is free again, on either worker.
    let visits = Arc::new(visits);
    let n = visits.len();
    on_two_threads(n, Duration::ZERO, n, move |k| {
        let i = visits[k];
        let names = match i % 5 {
            3 => vec![],
            4 => vec![format!("c{i}"), format!("n{i}")],
            _ => vec![format!("c{i}")],
        };
        for name in names {
            let mut s = churn_connect(addr);
            expect(&mut s, b"Enter your username: ");
            s.write_all(format!("{name}\n").as_bytes()).unwrap();
            let mut said = [0u8; 21];
            s.read_exact(&mut said)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                String::from_utf8_lossy(&said),
                "Welcome to the chat!\n",
                "{name} was not free again"
            );
        }
    });
    server.wait_stats_where("active=0 after the names were taken again", |s| {
        s.get("active") == 0 && s.get("total") + s.get("checks") + 50 >= 2 * churned
    });
    assert!(server.loud_lines().is_empty(), "{:#?}", server.loud_lines());
}
