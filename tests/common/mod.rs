//! Shared helpers for the integration tests: start the real binary on
//! 127.0.0.1:0 (or as systemd starts it, on a socket the test made:
//! [`activated`]), learn its port from the `listening on` line, watch its log,
//! and talk to it over real sockets with deadlines everywhere, so that a hung
//! server fails a test instead of hanging it. [`metrics`] reads the
//! `--metrics` listener; [`tls`] (with the `tls` feature) makes certificates
//! at run time and drives a rustls client; [`redis`] runs a real
//! `redis-server` for the cluster tests, and [`cluster`] starts instances
//! joined through it; [`skip`] says, where a person
//! sees it, that a test cannot run here. A read that fails names the client
//! and the step, and shows what arrived and the server's log ([`client`]).

#![allow(dead_code)] // each test file uses its own subset

pub mod client;
pub mod cluster;
pub mod metrics;
pub mod redis;
pub mod skip;
pub mod stats;
#[cfg(feature = "tls")]
pub mod tls;

#[allow(unused_imports)] // as dead_code above
pub use {client::Client, stats::Stats};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single expectation may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running `monoloop` process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread that copies the server's stderr into `log`: done once
    /// the server has exited and every line is in.
    reader: thread::JoinHandle<()>,
}

/// Runs `monoloop ARGS` that should exit at once (no server starts: each
/// case fails before listening, or prints help). One that starts a server
/// instead fails the test after `PATIENCE`, rather than hanging it.
pub fn run(args: &[&str]) -> std::process::Output {
    let mut cmd = binary();
    cmd.args(args).stdin(std::process::Stdio::null());
    output_within(cmd)
}

/// Asserts an argument error: exit 2, nothing on stdout, and on stderr
/// exactly `error: PROBLEM` and the hint.
pub fn assert_usage_error(args: &[&str], problem: &str, hint: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr, format!("error: {problem}\n{hint}\n"), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

/// Runs `cmd` (stdout and stderr piped) to its end. A process that runs on
/// instead, a server that started when it should have refused to, is
/// killed after `PATIENCE` and fails the test rather than hanging it.
pub fn output_within(cmd: Command) -> std::process::Output {
    try_output_within(cmd).unwrap()
}

/// [`output_within`], but a command that cannot be started is an error
/// for the caller, not a failed test.
pub fn try_output_within(mut cmd: Command) -> std::io::Result<std::process::Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not exit within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output()
}

/// A free port on loopback (bound and released: the kernel will not hand
/// it out again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary under test.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monoloop"))
}

impl Server {
    /// Starts `monoloop ARGS --listen 127.0.0.1:0` and waits for it to listen.
    pub fn start(args: &[&str]) -> Server {
        Self::start_cmd(binary(), args)
    }

    /// Like [`start`](Self::start), from a prepared command (for rlimits).
    pub fn start_cmd(mut cmd: Command, args: &[&str]) -> Server {
        cmd.args(args);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        Self::start_exact(cmd)
    }

    /// Starts a command exactly as prepared (no `--listen` added: a
    /// socket-activated server, say), and waits for it to listen.
    pub fn start_exact(mut cmd: Command) -> Server {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start monoloop");
        let stderr = child.stderr.take().unwrap();
        Self::watch(child, stderr)
    }

    /// Starts a command whose standard error is already set (to a pipe the
    /// test made, say) and waits for it to listen; `log` is where its
    /// standard error can be read.
    pub fn start_logging_to(mut cmd: Command, log: impl Read + Send + 'static) -> Server {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let child = cmd.spawn().expect("start monoloop");
        // The command's copy of the write end goes with it, so that the
        // log ends when the server does.
        drop(cmd);
        Self::watch(child, log)
    }

    /// Collects `child`'s log lines from `stderr`, and waits for it to
    /// listen.
    fn watch(child: Child, stderr: impl Read + Send + 'static) -> Server {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("MONOLOOP_TEST_ECHO_LOG").is_some() {
                    eprintln!("server: {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            reader,
        };
        let line = server.wait_for_log("listening on ");
        // `... listening on ADDR`, or `... listening on ADDR (4 workers)`.
        let addr = line
            .rsplit("listening on ")
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        server.addr = addr.parse().expect("address in the listening line");
        client::register(server.addr, &server.log);
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }

    /// Which worker served each accepted connection, in the order
    /// accepted: the debug log's `worker N: conn #K from ADDR` lines.
    pub fn workers_of(&self) -> Vec<String> {
        self.log_lines(" from ")
            .iter()
            .filter_map(|l| {
                let w = l.split("worker ").nth(1)?;
                Some(w.split(':').next()?.to_string())
            })
            .collect()
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        self.wait_for_log_where(needle, |_| true)
    }

    /// Waits for a log line containing `needle` among those after the
    /// first `skip` lines (those logged before some step, from
    /// `log().len()`); returns it.
    pub fn wait_for_log_after(&mut self, skip: usize, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(l) = self
                .log()
                .into_iter()
                .skip(skip)
                .find(|l| l.contains(needle))
            {
                return l;
            }
            assert!(
                Instant::now() < deadline && self.running(),
                "no log line with {needle:?} after line {skip} within {PATIENCE:?}; log:\n{}",
                self.log().join("\n")
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a log line containing `needle` that satisfies `ok`.
    pub fn wait_for_log_where(&mut self, needle: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(needle) && ok(l)) {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.log_complete();
                if let Some(l) = self.log().into_iter().find(|l| l.contains(needle) && ok(l)) {
                    return l;
                }
                panic!(
                    "server exited ({status}) before logging {needle:?}; log:\n{}",
                    self.log().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within {PATIENCE:?}; log:\n{}",
                self.log().join("\n")
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the server has accepted `n` connections in all. Needs
    /// `--log-level debug`, which logs each accept as `conn #N from ADDR`.
    pub fn wait_accepted(&mut self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self
            .log()
            .iter()
            .filter(|l| l.contains("conn #") && l.contains(" from "))
            .count()
            < n
        {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} accepts logged; log:\n{}",
                self.log().join("\n")
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// How many accepts were logged before the first line containing
    /// `needle` (with `--log-level debug`): the clients a server held when
    /// it said something, such as `cannot accept`.
    pub fn accepts_before(&self, needle: &str) -> usize {
        self.log()
            .iter()
            .take_while(|l| !l.contains(needle))
            .filter(|l| l.contains("conn #") && l.contains(" from "))
            .count()
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, failing after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.log_complete();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running after {within:?}; log:\n{}",
                self.log().join("\n")
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// After the process has exited: waits until the reader has taken in
    /// the last of its log (its stderr is at an end), for at most a second
    /// (a process it started may still hold the pipe).
    pub(super) fn log_complete(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A field of /proc/PID/status, in its own unit (kB for memory).
    pub fn status_field(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc status"))
    }

    /// Context switches so far, voluntary and not: a process that makes
    /// none over a stretch of time did not wake up.
    pub fn context_switches(&self) -> u64 {
        self.status_field("voluntary_ctxt_switches")
            + self.status_field("nonvoluntary_ctxt_switches")
    }

    /// Open descriptors, from /proc/PID/fd.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// The log lines an operator would notice: not debug or trace, not the
    /// periodic stats line, and none of the lines the server writes of
    /// itself (the start lines, the descriptor estimate, access lines).
    /// What an attack may add to them is what the tests count.
    pub fn loud_lines(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
            .filter(|l| !l.contains("stats:") && !l.contains("listening on"))
            .filter(|l| !l.contains(" (commit ") && !l.contains("needs about"))
            .filter(|l| !l.contains("access conn=") && !l.contains("metrics on http"))
            .collect()
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS")
    }

    /// User plus system CPU time, in clock ticks (1/100 s on Linux).
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks_of(self.pid())
    }
}

/// User plus system CPU time of process `pid`, in clock ticks (1/100 s on
/// Linux), from /proc/PID/stat.
pub fn cpu_ticks_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that ends the command name; utime and stime
    // are the 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary, to be run with a hard descriptor limit of `limit` and
/// nothing open but its standard streams.
///
/// A descriptor the test runner inherited without close-on-exec (from a
/// shell, an IDE, a CI runner's `make -j`) would otherwise pass on to the
/// server and take one of its `limit` numbers: one such descriptor made
/// the server hold one client fewer, and a test that counted on it waited
/// for an echo that could never come.
pub fn with_fd_limit(limit: u64) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = binary();
    // SAFETY: setrlimit and fcntl are async-signal-safe, and run in the
    // forked child before exec (after its standard streams are in place),
    // touching only a struct on its stack.
    unsafe {
        cmd.pre_exec(move || {
            // Closed at exec; a number that is not open fails harmlessly.
            for fd in 3..limit.min(4096) as i32 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A client connected from `from` (a loopback address such as 127.0.0.2,
/// to stand for another machine), with timeouts and no Nagle delay.
pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("cannot bind {from}: {e}"));
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Connects with read and write timeouts, so that no test can hang on I/O.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// A client that is owed far more than it will read: a 4 KiB receive
/// buffer, 1 MiB echoed at it. It keeps a drain (or a slow-consumer rule)
/// busy for as long as it stays open.
pub fn stuck_client(addr: SocketAddr) -> TcpStream {
    let stuck = connect(addr);
    socket2::SockRef::from(&stuck)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut w = stuck.try_clone().unwrap();
    w.write_all(&[b'z'; 1 << 20]).ok();
    // The server is answering it: bytes wait unread on our side.
    eventually("the server's first answer to the stuck client", || {
        unread(&stuck) > 0
    });
    stuck
}

/// Bytes received on `s` and not yet read (`FIONREAD`).
pub fn unread(s: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, into `n`, which we own.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// Reads exactly `n` bytes (or fails on timeout, EOF or error, saying
/// which client, what arrived, and what the server logged last).
#[track_caller]
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let step = format!("read {n} bytes");
    client::read_exactly(s, n, &client::Reader::of(s, &step))
}

/// Reads until `expected.len()` bytes have come and asserts they match.
#[track_caller]
pub fn expect(s: &mut TcpStream, expected: &[u8]) {
    let step = format!("expect {}", client::shown(expected));
    client::expect_exactly(s, expected, &client::Reader::of(s, &step));
}

/// Reads until EOF; fails on timeout. A reset after some data ends the read
/// like EOF does, and is reported as the second value.
#[track_caller]
pub fn read_to_eof(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let reader = client::Reader::of(s, "read to the end");
    client::read_until_eof(s, &reader)
}

/// Asserts the peer closes: EOF (or reset) with no further bytes.
#[track_caller]
pub fn expect_eof(s: &mut TcpStream) {
    let reader = client::Reader::of(s, "expect the end, and no more bytes");
    let (rest, _) = client::read_until_eof(s, &reader);
    if !rest.is_empty() {
        reader.fail("bytes came before the end", &rest);
    }
}

/// A deterministic, non-repeating-looking byte pattern: byte `i` of a stream.
pub fn pattern(i: u64) -> u8 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (i as u8)
}

/// Fills `buf` with the pattern starting at stream offset `from`.
pub fn fill_pattern(buf: &mut [u8], from: u64) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern(from + k as u64);
    }
}

/// Writes `total` pattern bytes to `s` in 64 KiB chunks, counting progress
/// in `sent`. Stops quietly if the peer goes away.
pub fn write_pattern(mut s: TcpStream, total: u64, sent: Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; 65536];
    let mut off = 0u64;
    while off < total {
        let n = (total - off).min(buf.len() as u64) as usize;
        fill_pattern(&mut buf[..n], off);
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
        off += n as u64;
        sent.store(off, Ordering::SeqCst);
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
}

/// Reads `total` bytes and checks each against the pattern; returns the
/// number of bytes verified.
pub fn read_pattern(s: &mut TcpStream, total: u64) -> u64 {
    let mut buf = vec![0u8; 65536];
    let mut off = 0u64;
    while off < total {
        let want = (total - off).min(buf.len() as u64) as usize;
        let n = s
            .read(&mut buf[..want])
            .unwrap_or_else(|e| panic!("read at offset {off}: {e}"));
        assert!(n > 0, "EOF after {off} of {total} bytes");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                pattern(off + k as u64),
                "byte {} differs",
                off + k as u64
            );
        }
        off += n as u64;
    }
    off
}

/// Waits until `f` holds, polling; fails after [`PATIENCE`].
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a counter stops moving for `quiet`; returns its value.
pub fn settles(counter: &std::sync::atomic::AtomicU64, quiet: Duration) -> u64 {
    use std::sync::atomic::Ordering;
    let deadline = Instant::now() + PATIENCE;
    let mut last = counter.load(Ordering::SeqCst);
    let mut since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = counter.load(Ordering::SeqCst);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(Instant::now() < deadline, "counter never settled");
    }
}

/// Parses `key=value` out of a stats line.
pub fn stat(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap()
}

/// `monoloop ARGS` started the way systemd starts a socket-activated
/// service: `listener` as descriptor 3, `LISTEN_FDS=1`, and `LISTEN_PID`
/// the server's own pid (a shell sets it to `$$`, then `exec`s, which keeps
/// the pid).
pub fn activated(listener: &impl std::os::fd::AsRawFd, args: &[&str]) -> Command {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_monoloop"))
        .args(args);
    // SAFETY: dup2 is async-signal-safe; it runs in the child before exec,
    // and the new descriptor 3 does not close on exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            // Already 3: only its close-on-exec flag must go.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}
