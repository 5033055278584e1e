//! The fake Redis the [`redis`](crate::redis) attacks talk to: a
//! listener of the test's own on 127.0.0.1 that plays Redis honestly
//! ([`honest`]: enough for a link to come up and carry lines and names),
//! then answers as its [`Script`] says, with the bytes of a [`Reply`].
//! It can also relay a connection to a real `redis-server`. Every thread
//! and socket read has a timeout, and everything stops when the [`Fake`]
//! is dropped.

#![cfg(feature = "cluster")]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What the fake says to one command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// What Redis would say ([`honest`]).
    Honest,
    /// These bytes, at once.
    Bytes(Vec<u8>),
    /// `head`, then `unit` again and again until `total` bytes are
    /// written or the link closes: as fast as the link reads.
    Flood {
        head: Vec<u8>,
        unit: Vec<u8>,
        total: usize,
    },
    /// An endless bulk string, a byte every 500 ms.
    Trickle,
    /// The honest reply, this late.
    After(Duration),
    /// Nothing, ever.
    Nothing,
    /// The connection closed, at once.
    Close,
    /// Not a fake at all: a new connection is relayed, both ways, to the
    /// real Redis on this port (a greeting only).
    Relay(u16),
}

/// How the fake behaves: to the greeting of a new connection (its first
/// command, a PING), and to the commands after it; `only` narrows
/// `work` to one command (`XREAD`), the others answered honestly.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Script {
    pub(crate) greeting: Reply,
    pub(crate) work: Reply,
    pub(crate) only: Option<&'static str>,
}

impl Script {
    pub(crate) const HONEST: Script = Script {
        greeting: Reply::Honest,
        work: Reply::Honest,
        only: None,
    };

    /// The same reply to everything.
    pub(crate) fn always(reply: Reply) -> Script {
        Script {
            greeting: reply.clone(),
            work: reply,
            only: None,
        }
    }

    /// An honest greeting, then `reply` to the commands named `only` (or
    /// to all).
    pub(crate) fn after_greeting(reply: Reply, only: Option<&'static str>) -> Script {
        Script {
            greeting: Reply::Honest,
            work: reply,
            only,
        }
    }
}

/// A fake Redis on 127.0.0.1: one thread accepts, one per connection
/// answers as the current [`Script`] says. Everything stops on drop.
pub(crate) struct Fake {
    pub(crate) addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    accepted: Arc<AtomicUsize>,
    /// `XREAD`s received, on every connection.
    xreads: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    pub(crate) fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::HONEST));
        let accepted = Arc::new(AtomicUsize::new(0));
        let xreads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sc, ac, st) = (script.clone(), accepted.clone(), stop.clone());
        let xr = xreads.clone();
        let thread = thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        ac.fetch_add(1, Ordering::SeqCst);
                        let greeting = sc.lock().unwrap().greeting.clone();
                        match greeting {
                            Reply::Close => continue,
                            Reply::Relay(port) => {
                                conns.extend(relay(s, port, &st));
                                continue;
                            }
                            _ => {}
                        }
                        let (sc, st, xr) = (sc.clone(), st.clone(), xr.clone());
                        conns.push(thread::spawn(move || serve(s, &sc, &xr, &st)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("the fake's accept: {e}"),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Fake {
            addr,
            script,
            accepted,
            xreads,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub(crate) fn play(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    /// `XREAD`s received so far.
    pub(crate) fn xreads(&self) -> usize {
        self.xreads.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: reads commands, answers each as the script says,
/// until the link closes it or the fake stops.
pub(crate) fn serve(
    mut s: TcpStream,
    script: &Mutex<Script>,
    xreads: &AtomicUsize,
    stop: &AtomicBool,
) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = Vec::new();
    let mut greeted = false;
    while !stop.load(Ordering::Relaxed) {
        let Some(command) = next_command(&mut s, &mut buf, stop) else {
            return;
        };
        let name = String::from_utf8_lossy(&command[0]).to_ascii_uppercase();
        if name == "XREAD" {
            xreads.fetch_add(1, Ordering::SeqCst);
        }
        let now = script.lock().unwrap().clone();
        let reply = if !greeted {
            greeted = true;
            now.greeting
        } else if now.only.is_none_or(|only| only == name) {
            now.work
        } else {
            Reply::Honest
        };
        if !answer(&mut s, &command, &name, reply, script, stop) {
            return;
        }
    }
}

/// Relays `s` to the real Redis on `port` and back, on two threads,
/// until either side closes or the fake stops.
pub(crate) fn relay(s: TcpStream, port: u16, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let Ok(real) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream, stop: Arc<AtomicBool>| {
        thread::spawn(move || {
            from.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            to.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = [0u8; 16 << 10];
            while !stop.load(Ordering::Relaxed) {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
        })
    };
    vec![
        pipe(
            s.try_clone().unwrap(),
            real.try_clone().unwrap(),
            stop.clone(),
        ),
        pipe(real, s, stop.clone()),
    ]
}

/// Reads one command (an array of bulk strings); `None` when the link
/// closed or the fake stops.
pub(crate) fn next_command(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &AtomicBool,
) -> Option<Vec<Vec<u8>>> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some((command, used)) = parse_command(buf) {
            buf.drain(..used);
            return Some(command);
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

/// A whole command at the start of `buf`, and its length.
pub(crate) fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    pub(crate) fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    let (n, mut at) = line(buf, 0)?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, from) = line(buf, at)?;
        if buf.len() < from + len + 2 {
            return None;
        }
        args.push(buf[from..from + len].to_vec());
        at = from + len + 2;
    }
    Some((args, at))
}

/// What Redis would answer: enough for a link to come up and to carry
/// lines and names (every claim is granted, no name is lost).
pub(crate) fn honest(command: &[Vec<u8>], name: &str) -> &'static [u8] {
    match name {
        "PING" => b"+PONG\r\n",
        "XREVRANGE" => b"*0\r\n",
        "XREAD" => b"*-1\r\n",
        "XADD" => b"$3\r\n1-1\r\n",
        // The refresh answers the names lost (none); a claim and a
        // release, 1.
        "EVAL" if command.iter().any(|a| a.windows(6).any(|w| w == b"ipairs")) => b"*0\r\n",
        "EVAL" => b":1\r\n",
        _ => b"+OK\r\n",
    }
}

/// Answers one command; false when the connection is done.
pub(crate) fn answer(
    s: &mut TcpStream,
    command: &[Vec<u8>],
    name: &str,
    reply: Reply,
    script: &Mutex<Script>,
    stop: &AtomicBool,
) -> bool {
    let waits = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    };
    match reply {
        Reply::Honest if name == "XREAD" => {
            // A blocking read: held for a second, unless the script turns
            // against it meanwhile; then answered as the script says.
            let turned = || {
                let now = script.lock().unwrap().clone();
                match now.only {
                    Some(only) if only != name => Reply::Honest,
                    _ => now.work,
                }
            };
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && turned() == Reply::Honest {
                if !waits(Duration::from_millis(20)) {
                    return false;
                }
            }
            let reply = turned();
            match reply {
                Reply::Honest => s.write_all(honest(command, name)).is_ok(),
                other => answer(s, command, "XREAD (turned)", other, script, stop),
            }
        }
        Reply::Honest => s.write_all(honest(command, name)).is_ok(),
        Reply::Bytes(b) => s.write_all(&b).is_ok(),
        Reply::Flood { head, unit, total } => {
            let mut chunk = head;
            let mut sent = 0;
            while sent < total && !stop.load(Ordering::Relaxed) {
                while chunk.len() < 64 << 10 {
                    chunk.extend_from_slice(&unit);
                }
                if s.write_all(&chunk).is_err() {
                    return false;
                }
                sent += chunk.len();
                chunk.clear();
            }
            true
        }
        Reply::Trickle => {
            for b in b"$1000000\r\n".iter().chain([b'x'; 1000].iter()) {
                if s.write_all(&[*b]).is_err() || !waits(Duration::from_millis(500)) {
                    return false;
                }
            }
            true
        }
        Reply::After(d) => waits(d) && s.write_all(honest(command, name)).is_ok(),
        // Held open, and read (so that the link's writes never block),
        // until the link closes it.
        Reply::Nothing => true,
        Reply::Close | Reply::Relay(_) => false,
    }
}
