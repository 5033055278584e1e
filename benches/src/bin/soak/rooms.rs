//! The room load: a broadcast flood (one sender, bursts of numbered lines)
//! read by receivers that check every line arrives once and in order, with
//! receivers that stop reading beside them; and chat members on each chat
//! instance (two joined through Redis, when there is one) that talk, read
//! what the others say, and count the lines that crossed instances.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::{
    arm_reset, connect, connect_small_window, nap, read_until, timed_out, Rng, Shared, IO_TIMEOUT,
};

/// Lines per burst of the flood, and the pad that makes each ~100 bytes.
const BURST: u64 = 500;
const PAD: &str =
    "................................................................................";

/// The flood: one connection for the whole run, a burst of `BURST`
/// numbered lines every 1 to 2 s. What others send it is read and dropped
/// by a thread of its own, so the sender is never a slow consumer.
pub fn flooder(shared: Arc<Shared>, addr: SocketAddr, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut s = match connect(&shared, "broadcast", addr) {
        Ok(s) => s,
        Err(err) => return shared.fail(format!("broadcast flooder: connect: {err}")),
    };
    let drain = s.try_clone().expect("clone a socket");
    let _ = drain.set_read_timeout(Some(Duration::from_secs(1)));
    let stop = shared.clone();
    let drainer = std::thread::spawn(move || {
        let mut drain = drain;
        let mut buf = [0u8; 16384];
        while !stop.stopping() {
            match drain.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if timed_out(&e) => {}
                Err(_) => return,
            }
        }
    });
    let mut seq = 0u64;
    while !shared.stopping() {
        let mut burst = String::new();
        for _ in 0..BURST {
            burst.push_str(&format!("flood {seq} {PAD}\n"));
            seq += 1;
        }
        if let Err(err) = s.write_all(burst.as_bytes()) {
            shared.fail(format!("broadcast flooder: write: {err}"));
            break;
        }
        nap(&shared, rng.pause(1000, 2000));
    }
    let _ = s.shutdown(Shutdown::Write);
    let _ = drainer.join();
}

/// A reader of the flood: each connection lives 10 to 60 s, checks that
/// each flood line is the one after the last, and closes.
pub fn receiver(shared: Arc<Shared>, addr: SocketAddr, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..1_000_000 {
        if shared.stopping() {
            return;
        }
        let s = match connect(&shared, "broadcast", addr) {
            Ok(s) => s,
            Err(err) => {
                shared.fail(format!("broadcast receiver: connect: {err}"));
                nap(&shared, Duration::from_secs(1));
                continue;
            }
        };
        let life = Instant::now() + rng.pause(10_000, 60_000);
        let mut last: Option<u64> = None;
        if let Err(err) = read_flood(&shared, &s, life, &mut last) {
            shared.fail(format!("broadcast receiver: {err}"));
        }
        let _ = s.shutdown(Shutdown::Write);
        nap(&shared, rng.pause(100, 1000));
    }
}

/// Reads the flood until `life` is over or the run stops, checking each
/// flood line is the one after the last. Reads wait 1 s at most; silence
/// for `IO_TIMEOUT` while the run goes on is the server's fault.
fn read_flood(
    shared: &Shared,
    mut s: &TcpStream,
    life: Instant,
    last: &mut Option<u64>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    let (mut pending, mut buf) = (Vec::new(), [0u8; 16384]);
    let mut heard = Instant::now();
    while Instant::now() < life && !shared.stopping() {
        match s.read(&mut buf) {
            Ok(0) => return Err(std::io::Error::other("the server closed")),
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                heard = Instant::now();
            }
            Err(e) if timed_out(&e) => {
                if heard.elapsed() > IO_TIMEOUT {
                    return Err(std::io::Error::other("nothing for 30 s"));
                }
            }
            Err(e) => return Err(e),
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            shared.lines.add(1);
            let Some(rest) = line.strip_prefix(b"[Broadcast] flood ") else {
                continue;
            };
            let n: u64 = String::from_utf8_lossy(rest)
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX);
            if let Some(l) = *last {
                if n != l + 1 {
                    shared.gaps.add(1);
                    shared.fail(format!("broadcast receiver: flood line {n} after {l}"));
                }
            }
            *last = Some(n);
        }
    }
    Ok(())
}

/// A receiver that never reads, its window kept small: it stays 60 to
/// 180 s, then vanishes. Long before, the server has written it off: cut
/// off as a slow consumer (`--write-limit` owed), or, at the flood's
/// rate, found by TCP_USER_TIMEOUT (its window shut for twice the idle
/// timeout: the kernel ends it, the access log says `end=reset`).
pub fn stalled_receiver(shared: Arc<Shared>, addr: SocketAddr, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..1_000_000 {
        if shared.stopping() {
            return;
        }
        match connect_small_window(&shared, "broadcast", addr) {
            Ok(s) => {
                nap(&shared, rng.pause(60_000, 180_000));
                arm_reset(&s);
                shared.slow_done.add(1);
            }
            Err(err) => shared.fail(format!("stalled receiver: connect: {err}")),
        }
        nap(&shared, rng.pause(500, 2000));
    }
}

/// A chat member of instance `(server, addr)`, the `index`th: joins under
/// a new name each life (the instance's letter first, so that a line's
/// origin shows), says 10 to 60 lines 150 to 600 ms apart, reads what the
/// others say meanwhile, and leaves with /quit.
pub fn chat_member(shared: Arc<Shared>, server: &'static str, addr: SocketAddr, index: u64) {
    let mut rng = Rng::new(index * 7919 + 1);
    let mine = server.chars().last().unwrap_or('x');
    for life in 0..1_000_000u64 {
        if shared.stopping() {
            return;
        }
        let name = format!("{mine}{index}n{life}");
        match chat_life(&shared, server, addr, &name, mine, &mut rng) {
            Ok(()) => {}
            Err(err) => shared.fail(format!("{server} member {name}: {err}")),
        }
        nap(&shared, rng.pause(200, 1000));
    }
}

fn chat_life(
    shared: &Shared,
    server: &str,
    addr: SocketAddr,
    name: &str,
    mine: char,
    rng: &mut Rng,
) -> std::io::Result<()> {
    let mut s = connect(shared, server, addr)?;
    read_until(&mut s, b"username: ", 200)?;
    s.write_all(format!("{name}\n").as_bytes())?;
    let answer = read_until(&mut s, b"username: ", 400)?;
    if answer.starts_with(b"Chat is unavailable") {
        // Redis away (restarting): the claim found no answer in time.
        shared.chat_unavailable.add(1);
        return Ok(());
    }
    if !answer.starts_with(b"Welcome to the chat!") {
        return Err(std::io::Error::other(format!(
            "joining: {:?}",
            String::from_utf8_lossy(&answer)
        )));
    }
    s.set_read_timeout(Some(Duration::from_millis(150)))?;
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    for k in 0..rng.range(10, 60) {
        if shared.stopping() {
            break;
        }
        s.write_all(format!("line {k} from {name}\n").as_bytes())?;
        let until = Instant::now() + rng.pause(150, 600);
        while Instant::now() < until {
            match s.read(&mut buf) {
                Ok(0) => {
                    return Err(std::io::Error::other(format!(
                        "the server closed after {:?}",
                        String::from_utf8_lossy(&pending)
                    )))
                }
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if timed_out(&e) => {}
                Err(e) => return Err(e),
            }
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                count_chat_line(shared, &line, mine);
            }
        }
    }
    s.write_all(b"/quit\n")?;
    // Up to 30 s for the server's close, the rest of what it says read.
    for _ in 0..200 {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no close within 30 s of /quit"))
}

/// Counts a line a member received: every one, and those another
/// instance's member said (`bN...: text` on instance a).
fn count_chat_line(shared: &Shared, line: &[u8], mine: char) {
    shared.lines.add(1);
    let line = String::from_utf8_lossy(line);
    let Some((who, _)) = line.split_once(": ") else {
        return;
    };
    let Some(first) = who.chars().next() else {
        return;
    };
    if !who.contains(' ') && first != mine && who.contains('n') {
        shared.cross_lines.add(1);
        if shared.restarted.load(Ordering::Relaxed) {
            shared.cross_after_restart.add(1);
        }
    }
}
