//! A real `redis-server` for the cluster tests (issue 22): started on a
//! free 127.0.0.1 port, in a directory of its own, with persistence off
//! (`--save ""`, `--appendonly no`), and stopped by its pid when the
//! handle goes.
//!
//! ```ignore
//! let Some(redis) = Redis::start() else { return }; // skipped, and said so
//! assert_eq!(redis.command(&["PING"]).as_str(), Some("PONG"));
//! ```
//!
//! Where `redis-server` is not installed, [`Redis::start`] says so on a
//! line of its own ([`skip::have`]) and gives `None`; under
//! `MONOLOOP_TEST_TOOLS=required`, as `.ci/run` sets it, the test fails
//! instead. [`Redis::command`] speaks RESP over a plain `TcpStream`, with
//! its own small parser, so that the tests depend neither on `redis-cli`
//! nor on the RESP code they test.
//!
//! The server is started with `PR_SET_PDEATHSIG`: if the test process is
//! killed (a CI timeout), Redis goes with it instead of holding its port
//! for good. Linux sends that signal when the *thread* that started the
//! server ends, so start a `Redis` on the thread that keeps it (a test's
//! own thread), not on a helper thread that returns first.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{skip, PATIENCE};

/// How long a started server may take to answer PING.
const READY: Duration = Duration::from_secs(5);

/// How long [`Redis::start_again`] retries a port that is not free yet.
const REBIND: Duration = Duration::from_secs(5);

/// One reply, as RESP2 gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the whole line after the `-`.
    Error(String),
    /// `:1`
    Int(i64),
    /// `$3\r\nabc`; `None` for the null bulk string, `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*N ...`; `None` for the null array, `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a simple string, or of a bulk string that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) => Some(s),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The bytes of a bulk string (or of a simple one).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Simple(s) => Some(s.as_bytes()),
            Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements of an array that is not null.
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(a)) => Some(a),
            _ => None,
        }
    }

    /// The error line (`NOAUTH Authentication required.`), if an error.
    pub fn as_error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The null bulk string or the null array (a GET of a missing key).
    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Bulk(None) | Reply::Array(None))
    }
}

/// A running `redis-server`; stopped (SIGKILL, then waited for) and its
/// directory removed on drop.
pub struct Redis {
    child: Option<Child>,
    pid: u32,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    /// While stopped: the port, bound and not listening, so that no other
    /// test's server (Redis, or monoloop on 127.0.0.1:0) is given it and
    /// found by this one's instances, which must find nothing there.
    reserved: Option<socket2::Socket>,
}

impl Redis {
    /// A fresh server with the defaults above; `None` where `redis-server`
    /// is not installed (the test is then skipped, and says so).
    pub fn start() -> Option<Redis> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with more arguments for `redis-server`
    /// (`&["--requirepass", "s3cret"]`); [`start_again`](Self::start_again)
    /// passes them again.
    pub fn start_with(extra_args: &[&str]) -> Option<Redis> {
        if !skip::have("redis-server", "--version", "redis-server") {
            return None;
        }
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("monoloop-redis-{}-{serial}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis {
            child: None,
            pid: 0,
            port: 0,
            dir,
            extra: extra_args.iter().map(|a| a.to_string()).collect(),
            reserved: None,
        };
        // The port was free when asked for, but another test may take it
        // before Redis binds it: then Redis exits, and another port is tried.
        let mut failures = Vec::new();
        for _ in 0..5 {
            redis.port = super::free_port();
            match redis.launch() {
                Ok(()) => return Some(redis),
                Err(log) if port_taken(&log) => failures.push(redis.port),
                Err(log) => panic!("redis-server did not start; its output:\n{log}"),
            }
        }
        panic!("redis-server found each port taken: {failures:?}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` (no password, even with `--requirepass`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's pid (the last one's, once stopped).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// True while the server process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Kills the server (SIGKILL: nothing to save, and a crash is what a
    /// cluster test means by it) and waits for it to exit. Once it returns
    /// the port refuses connections. Again, it does nothing.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.reserved = reserve(self.port);
        }
    }

    /// Stops the server if it runs, then starts a fresh, empty one on the
    /// same port, with the same arguments, and waits for it to answer PING.
    /// A port still held (a socket closing, another test) is retried for a
    /// few seconds.
    pub fn start_again(&mut self) {
        self.stop();
        let deadline = Instant::now() + REBIND;
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(log) if port_taken(&log) && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(log) => panic!(
                    "redis-server did not start again on port {}; its output:\n{log}",
                    self.port
                ),
            }
        }
    }

    /// Sends one command on a new connection and reads its reply. A Redis
    /// that does not answer within [`PATIENCE`] fails the test.
    #[track_caller]
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {args:?} on port {}: {e}", self.port))
    }

    /// [`command`](Self::command), with an I/O failure (a stopped server
    /// refusing the connection, say) as an error.
    pub fn try_command(&self, args: &[&str]) -> io::Result<Reply> {
        let mut replies = self.try_commands(&[args])?;
        Ok(replies.remove(0))
    }

    /// Several commands on one connection, in order (`AUTH`, then what
    /// needs it), and their replies.
    #[track_caller]
    pub fn commands(&self, commands: &[&[&str]]) -> Vec<Reply> {
        self.try_commands(commands)
            .unwrap_or_else(|e| panic!("redis {commands:?} on port {}: {e}", self.port))
    }

    fn try_commands(&self, commands: &[&[&str]]) -> io::Result<Vec<Reply>> {
        self.exchange(commands, PATIENCE)
    }

    /// Sends `commands` on a new connection and reads their replies, each
    /// read and write waiting at most `patience`.
    fn exchange(&self, commands: &[&[&str]], patience: Duration) -> io::Result<Vec<Reply>> {
        let addr = ([127, 0, 0, 1], self.port).into();
        let stream = TcpStream::connect_timeout(&addr, patience)?;
        stream.set_read_timeout(Some(patience))?;
        stream.set_write_timeout(Some(patience))?;
        let mut out = Vec::new();
        for args in commands {
            encode(&mut out, args);
        }
        (&stream).write_all(&out)?;
        let mut reader = BufReader::new(stream);
        commands.iter().map(|_| read_reply(&mut reader)).collect()
    }

    /// User plus system CPU time of the server so far, in clock ticks
    /// (1/100 s on Linux). The server must be running.
    pub fn cpu_ticks(&self) -> u64 {
        super::cpu_ticks_of(self.pid)
    }

    /// The server's own directory (its `--dir`), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the server has written to its standard output and error
    /// (its log) since it last started.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("redis.out")).unwrap_or_default()
    }

    /// Starts `redis-server` on `self.port` and waits (at most [`READY`])
    /// for it to answer PING; if it exits first, gives its output.
    fn launch(&mut self) -> Result<(), String> {
        let out = File::create(self.dir.join("redis.out")).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no", "--logfile", ""])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid are async-signal-safe, run in the
        // forked child before exec, and touch no memory of ours.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The test process died before the line above took effect.
                if libc::getppid() != parent {
                    return Err(io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start redis-server");
        self.pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                return Err(format!("({status})\n{}", self.log()));
            }
            // Answered (an unauthenticated PING is refused under
            // --requirepass: an answer all the same), and by this server,
            // not by another test's that took the port first. Waited for
            // briefly: what holds the port may accept and never answer.
            let answer = self.exchange(&[&["PING"]], Duration::from_millis(500));
            let answer = answer.ok().map(|mut replies| replies.remove(0));
            let ready = match &answer {
                Some(Reply::Simple(s)) => s == "PONG",
                Some(Reply::Error(e)) => e.starts_with("NOAUTH"),
                _ => false,
            };
            if ready && listens(self.pid, self.port) {
                // Redis holds the port now.
                self.reserved = None;
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.log();
                self.stop();
                panic!(
                    "redis-server on port {} did not answer PING within {READY:?} \
                     (last answer {answer:?}); its output:\n{log}",
                    self.port
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Binds 127.0.0.1:`port` without listening, with SO_REUSEADDR: a
/// connection to it is refused, as to a stopped server; the kernel gives
/// the port to no socket that asks for any port (`:0`); and Redis, which
/// sets SO_REUSEADDR too, can still bind it when started again. `None` if
/// the port could not be had (something took it already).
fn reserve(port: u16) -> Option<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    s.set_reuse_address(true).ok()?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    s.bind(&addr.into()).ok()?;
    Some(s)
}

/// True if process `pid` holds the socket listening on 127.0.0.1:`port`
/// (/proc/net/tcp gives the socket's inode, /proc/PID/fd its holder).
fn listens(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        // local_address, st (0A: LISTEN), inode.
        .filter(|f| f.len() > 9 && f[1] == local && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

/// True if Redis's output says it could not bind its port.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// One command as RESP: an array of bulk strings.
fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one whole reply (a timeout or an early end is an error).
fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(bad(format!("no whole line: {:?}", show(&line))));
    };
    let (kind, rest) = line.split_first().ok_or_else(|| bad("an empty line"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    let length = || -> io::Result<i64> {
        text.parse()
            .map_err(|_| bad(format!("a bad length: {}", show(line))))
    };
    Ok(match kind {
        b'+' => Reply::Simple(text),
        b'-' => Reply::Error(text),
        b':' => Reply::Int(length()?),
        b'$' => match length()? {
            -1 => Reply::Bulk(None),
            n @ 0..=0x400_0000 => {
                let mut data = vec![0; n as usize + 2];
                r.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(bad("a bulk string without its CRLF"));
                }
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
            _ => return Err(bad(format!("a bad length: {}", show(line)))),
        },
        b'*' => match length()? {
            -1 => Reply::Array(None),
            n @ 0..=0x10_0000 => Reply::Array(Some(
                (0..n).map(|_| read_reply(r)).collect::<io::Result<_>>()?,
            )),
            _ => return Err(bad(format!("a bad length: {}", show(line)))),
        },
        _ => return Err(bad(format!("not RESP: {}", show(line)))),
    })
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
