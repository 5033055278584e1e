//! Reading what the server sends, with a failure a person can act on: which
//! client, at which step, the bytes that did arrive, and what the server
//! logged last. Not `reading 2 bytes: Resource temporarily unavailable`
//! after 20 s.
//!
//! [`Client`] is a named connection that counts its steps. The free
//! functions of `common` (`expect`, `read_n`, `read_to_eof`, and TLS's
//! `tls_expect`) read through the same [`read_exactly`] and name a plain
//! socket by its address. Either finds the server's log through the
//! address it is connected to: [`Server::start`](super::Server::start)
//! registers every server it starts ([`register`]).

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{connect, Server};

/// How many of the server's last log lines a failure shows.
const LOG_TAIL: usize = 20;
/// How many of the bytes that arrived a failure shows.
const SHOWN: usize = 512;

/// A server's log, as `Server` keeps it.
type Log = Arc<Mutex<Vec<String>>>;
/// A server's address and its log, which dies with the server.
type Entry = (SocketAddr, Weak<Mutex<Vec<String>>>);

/// The log of every server started, by the address it listens on; a
/// server that has been dropped leaves a dead entry.
static LOGS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Makes `log` the one a failed read from a client of `addr` shows.
pub(super) fn register(addr: SocketAddr, log: &Log) {
    let mut logs = LOGS.lock().unwrap();
    logs.retain(|(a, l)| l.strong_count() > 0 && *a != addr);
    logs.push((addr, Arc::downgrade(log)));
}

/// The tail of the log of the server at `addr`, ready to print.
fn log_tail(addr: Option<SocketAddr>) -> String {
    let Some(addr) = addr else {
        return "(not connected: no server log to show)".into();
    };
    let found = LOGS
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(a, l)| *a == addr && l.strong_count() > 0)
        .and_then(|(_, l)| l.upgrade());
    let Some(log) = found else {
        return format!("(no log of a server at {addr}: not started by Server::start)");
    };
    let log = log.lock().unwrap();
    let from = log.len().saturating_sub(LOG_TAIL);
    let mut out = format!("the last {} lines of {addr}'s log:", log.len() - from);
    for line in &log[from..] {
        let _ = write!(out, "\n  {line}");
    }
    out
}

/// Bytes as a person reads them: text with escapes, cut short if long.
pub fn shown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(SHOWN)];
    let text = format!("{:?}", String::from_utf8_lossy(head));
    if bytes.len() > SHOWN {
        format!("{text}... ({} bytes in all)", bytes.len())
    } else {
        text
    }
}

/// Who is reading, for a failure: a name and step, or a socket's address.
pub struct Reader<'a> {
    /// `client "alice" (127.0.0.1:40000), step 3` or `client 127.0.0.1:40000`.
    pub who: String,
    /// What it was waiting for: `expect "hello\n"`.
    pub step: &'a str,
    /// The server it talks to, for its log.
    pub server: Option<SocketAddr>,
}

impl Reader<'_> {
    /// For a plain socket: named by its own address.
    pub fn of<'a>(s: &TcpStream, step: &'a str) -> Reader<'a> {
        let me = s.local_addr().map(|a| a.to_string());
        Reader {
            who: format!(
                "client {}",
                me.unwrap_or_else(|e| format!("(no address: {e})"))
            ),
            step,
            server: s.peer_addr().ok(),
        }
    }

    /// Fails the test: who, what step, what went wrong, and the log.
    #[track_caller]
    pub fn fail(&self, what: &str, got: &[u8]) -> ! {
        let bytes = if got.len() == 1 { "byte" } else { "bytes" };
        panic!(
            "{}, {}: {what}; what arrived ({} {bytes}): {}\n{}",
            self.who,
            self.step,
            got.len(),
            shown(got),
            log_tail(self.server)
        )
    }

    /// The message for one failed read.
    #[track_caller]
    fn failed_read(&self, e: &std::io::Error, got: &[u8], since: Instant) -> ! {
        let what = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                format!("nothing more within {:.1?}", since.elapsed())
            }
            _ => format!("read failed after {:.1?}: {e}", since.elapsed()),
        };
        self.fail(&what, got)
    }
}

/// Reads exactly `n` bytes from `r`, each read within the socket's timeout;
/// on a timeout, an end of stream or an error, fails the test through
/// `reader` with the bytes that arrived.
#[track_caller]
pub fn read_exactly(r: &mut impl Read, n: usize, reader: &Reader) -> Vec<u8> {
    let since = Instant::now();
    let mut got = vec![0; n];
    let mut have = 0;
    while have < n {
        match r.read(&mut got[have..]) {
            Ok(0) => reader.fail(
                &format!("the server closed after {have} of {n} bytes"),
                &got[..have],
            ),
            Ok(k) => have += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => reader.fail(
                &format!("the server closed after {have} of {n} bytes, without close_notify"),
                &got[..have],
            ),
            Err(e) => reader.failed_read(&e, &got[..have], since),
        }
    }
    got
}

/// Reads until `expected` has come, and fails through `reader` if other
/// bytes did.
#[track_caller]
pub fn expect_exactly(r: &mut impl Read, expected: &[u8], reader: &Reader) {
    let got = read_exactly(r, expected.len(), reader);
    if got != expected {
        reader.fail("other bytes came", &got);
    }
}

/// Reads until the end of stream; a reset after some data ends the read
/// like an end does, and is reported as the second value. A timeout or
/// another error fails the test through `reader`.
#[track_caller]
pub fn read_until_eof(s: &mut TcpStream, reader: &Reader) -> (Vec<u8>, bool) {
    let since = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, false),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, true),
            Err(e) => reader.failed_read(&e, &out, since),
        }
    }
}

/// A client of the server under test with a name, counting its steps, so
/// that a failure says `client "alice" (127.0.0.1:40000), step 3: expect
/// "hi\n"`, what arrived, and the server's log.
pub struct Client {
    name: String,
    stream: TcpStream,
    server: SocketAddr,
    steps: usize,
}

impl Server {
    /// Connects a client named `name` (with the timeouts of [`connect`]).
    pub fn client(&self, name: &str) -> Client {
        Client::connect(self.addr, name)
    }
}

impl Client {
    /// Connects to `addr` (a server started by `Server::start`, for its
    /// log in a failure).
    pub fn connect(addr: SocketAddr, name: &str) -> Client {
        Client {
            name: name.to_string(),
            stream: connect(addr),
            server: addr,
            steps: 0,
        }
    }

    /// The next step's reader, described by `step`.
    fn step<'a>(&mut self, step: &'a str) -> Reader<'a> {
        self.steps += 1;
        let me = self
            .stream
            .local_addr()
            .map_or_else(|e| format!("no address: {e}"), |a| a.to_string());
        Reader {
            who: format!("client {:?} ({me}), step {}", self.name, self.steps),
            step,
            server: Some(self.server),
        }
    }

    /// Sends `bytes`, all of them.
    #[track_caller]
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let bytes = bytes.as_ref();
        let step = format!("send {}", shown(bytes));
        let reader = self.step(&step);
        if let Err(e) = self.stream.write_all(bytes) {
            reader.fail(&format!("write failed: {e}"), &[]);
        }
        self
    }

    /// Reads until `expected` has come; fails if other bytes do, or none
    /// within the timeout.
    #[track_caller]
    pub fn expect(&mut self, expected: impl AsRef<[u8]>) -> &mut Self {
        let expected = expected.as_ref();
        let step = format!("expect {}", shown(expected));
        let reader = self.step(&step);
        expect_exactly(&mut self.stream, expected, &reader);
        self
    }

    /// Reads exactly `n` bytes.
    #[track_caller]
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let step = format!("read {n} bytes");
        let reader = self.step(&step);
        read_exactly(&mut self.stream, n, &reader)
    }

    /// Reads to the end of stream: (bytes, whether it ended in a reset).
    #[track_caller]
    pub fn read_to_eof(&mut self) -> (Vec<u8>, bool) {
        let reader = self.step("read to the end");
        read_until_eof(&mut self.stream, &reader)
    }

    /// Asserts the server closes with nothing more to say.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        let reader = self.step("expect the end, and no more bytes");
        let (rest, _) = read_until_eof(&mut self.stream, &reader);
        if !rest.is_empty() {
            reader.fail("bytes came before the end", &rest);
        }
    }

    /// Sets how long each read may wait (the default is `PATIENCE`).
    pub fn read_timeout(&mut self, within: Duration) -> &mut Self {
        self.stream.set_read_timeout(Some(within)).unwrap();
        self
    }

    /// The socket itself, for what the steps do not cover.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
