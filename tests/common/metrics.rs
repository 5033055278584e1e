//! The `--metrics` listener, from the outside: where it listens (read from
//! the server's log), one HTTP request at a time, a sample picked out of
//! the Prometheus text, and a crowd of clients that never finish a request.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{Server, PATIENCE};

/// The metrics address from the `metrics on http://ADDR/metrics` line.
pub fn metrics_addr(server: &mut Server) -> SocketAddr {
    let line = server.wait_for_log("metrics on http://");
    line.split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// One HTTP request; the whole answer (the server closes after it).
pub fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

pub fn get(addr: SocketAddr, path: &str) -> String {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

/// The value of a sample (`name` with its labels, as written).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// How the clients of a [`Crowd`] behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Connect, then send nothing.
    Idle,
    /// Send a request that never ends, one byte every [`Crowd::ROUND`].
    Slow,
}

/// `n` connections to the metrics listener that never finish a request,
/// held by a thread of their own: each one the server closes is opened
/// again at once, as an attacker would, so that `n` are connected
/// throughout. The thread stops when the crowd is dropped, or after
/// [`PATIENCE`] at the latest.
pub struct Crowd {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Crowd {
    /// How often each connection is looked at (and a slow one sends a byte).
    pub const ROUND: Duration = Duration::from_millis(100);

    /// Opens the `n` connections, and returns once all are open.
    pub fn hold(addr: SocketAddr, n: usize, pace: Pace) -> Crowd {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, opened) = mpsc::channel();
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let open = || {
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
                s.set_nonblocking(true).ok()?;
                Some((s, 0))
            };
            let mut held: Vec<Option<(TcpStream, usize)>> = (0..n).map(|_| open()).collect();
            let _ = ready.send(());
            let (until, mut reopened) = (Instant::now() + PATIENCE, 0);
            while !flag.load(Ordering::SeqCst) && Instant::now() < until {
                for place in &mut held {
                    if !place.as_mut().is_some_and(|(s, sent)| keep(s, sent, pace)) {
                        *place = open();
                        reopened += 1;
                    }
                }
                thread::sleep(Self::ROUND);
            }
            reopened
        });
        opened
            .recv_timeout(PATIENCE)
            .expect("the crowd could not connect");
        Crowd {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops holding; how many connections the server closed and the
    /// crowd opened again.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One round for one of a crowd's connections: false once the server has
/// closed it.
fn keep(s: &mut TcpStream, sent: &mut usize, pace: Pace) -> bool {
    let mut byte = [0u8; 1];
    match s.peek(&mut byte) {
        Ok(0) => return false,
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(_) => return false,
    }
    if pace == Pace::Slow {
        // A header line that never ends.
        let start = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let next = start.get(*sent).copied().unwrap_or(b'a');
        match s.write(&[next]) {
            Ok(_) => *sent += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    true
}

/// One HTTP request, timed: the whole answer and how long it took, or a
/// failure if it did not come within `limit` (so that a listener that
/// makes it wait fails the test quickly rather than after [`PATIENCE`]).
pub fn timed(addr: SocketAddr, path: &str, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    if let Err(e) = s.read_to_string(&mut out) {
        panic!(
            "GET {path}: no whole answer after {:?} ({e}); got {out:?}",
            started.elapsed()
        );
    }
    (out, started.elapsed())
}
