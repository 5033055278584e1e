//! What every load actor of the soak shares: the stop flag and the figures
//! they add to (`Shared`), the failures they report, a small deterministic
//! random generator, and socket helpers (connect with timeouts, vanish with
//! a reset, read a line within a deadline). Every socket made here has a
//! read and a write timeout, so a hung server fails the soak instead of
//! hanging it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long any read or write may wait before the soak calls the server
/// hung. Generous: the machine is small and shared.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A figure the actors add to.
#[derive(Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The figures of a run, the stop flag, and the failures.
#[derive(Default)]
pub struct Shared {
    stop: AtomicBool,
    /// Connections made, per server name (see `made`).
    made: Mutex<Vec<(String, u64)>>,
    /// Echoed bytes that came back exact.
    pub echoed: Count,
    /// Echo exchanges whose bytes came back different.
    pub echo_mismatches: Count,
    /// Lines received by room members (broadcast and chat).
    pub lines: Count,
    /// Chat lines that crossed from one instance to the other.
    pub cross_lines: Count,
    /// ... and those received after the Redis restart.
    pub cross_after_restart: Count,
    /// Broadcast flood lines missing or out of order at a reading receiver.
    pub gaps: Count,
    /// Whole downloads whose bytes matched the file.
    pub downloads: Count,
    pub download_mismatches: Count,
    /// Abuse that went as expected: vanished clients, slow readers done,
    /// chat refused while Redis was away.
    pub vanished: Count,
    pub slow_done: Count,
    pub chat_unavailable: Count,
    /// Set once Redis has been restarted (the cross-instance lines after
    /// it are counted apart).
    pub restarted: AtomicBool,
    failures: Mutex<Vec<String>>,
    failure_count: Count,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Counts a connection made to `server` (one the server accepted into
    /// its backlog: connect returned).
    pub fn made(&self, server: &str) {
        let mut made = self.made.lock().unwrap();
        match made.iter_mut().find(|(name, _)| name == server) {
            Some((_, n)) => *n += 1,
            None => made.push((server.to_string(), 1)),
        }
    }
    pub fn made_to(&self, server: &str) -> u64 {
        let made = self.made.lock().unwrap();
        made.iter()
            .find(|(n, _)| n == server)
            .map_or(0, |(_, n)| *n)
    }
    pub fn made_total(&self) -> u64 {
        self.made.lock().unwrap().iter().map(|(_, n)| n).sum()
    }

    /// Reports a failure of the load (kept: the first 20 words of each).
    pub fn fail(&self, what: String) {
        self.failure_count.add(1);
        let mut f = self.failures.lock().unwrap();
        if f.len() < 20 {
            eprintln!("soak: load failure: {what}");
            f.push(what);
        }
    }
    pub fn failures(&self) -> (u64, Vec<String>) {
        (
            self.failure_count.get(),
            self.failures.lock().unwrap().clone(),
        )
    }
}

/// xorshift64*: the payloads and the choices, reproducible from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 32) as u8).collect()
    }
    /// A pause of `lo..=hi` milliseconds.
    pub fn pause(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

/// Sleeps `d`, in steps, returning early when the run stops.
pub fn nap(shared: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !shared.stopping() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// A TCP connection to `addr` with the soak's timeouts, counted as made to
/// `server`.
pub fn connect(shared: &Shared, server: &str, addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    shared.made(server);
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Makes the next close of `s` a reset (SO_LINGER 0): a client that
/// vanishes without a goodbye.
pub fn arm_reset(s: &TcpStream) {
    let lin = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor we own, with a struct of its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lin as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A TCP connection to `addr` (IPv4) whose receive buffer was shrunk to
/// 4 KiB before it connected, so that its window stays small: a reader
/// that stops reading is found out soon, not after megabytes of kernel
/// buffers. Counted as made to `server`, with the soak's timeouts.
pub fn connect_small_window(
    shared: &Shared,
    server: &str,
    addr: SocketAddr,
) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::other("an IPv4 address"));
    };
    // SAFETY: a new socket this function owns (wrapped in a TcpStream at
    // once, which closes it), and structs of the sizes given.
    let s = unsafe {
        let fd = monoloop_bench::check(
            libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0),
            "socket",
        )?;
        let s = TcpStream::from_raw_fd(fd);
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        monoloop_bench::check(
            libc::connect(
                fd,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            "connect",
        )?;
        s
    };
    shared.made(server);
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// A stream of either kind, plain or TLS.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Reads bytes up to and including `\n` (or, without one, until `stop`
/// ends the text: a prompt), one byte at a time so that nothing after it
/// is taken. Errors on end of stream or timeout.
pub fn read_until(s: &mut dyn Read, stop: &[u8], max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < max {
        match s.read(&mut b)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed after {:?}", String::from_utf8_lossy(&line)),
                ))
            }
            _ => line.push(b[0]),
        }
        if b[0] == b'\n' || line.ends_with(stop) {
            return Ok(line);
        }
    }
    Err(io::Error::other("line too long"))
}

/// True for the errors a read timeout gives.
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
