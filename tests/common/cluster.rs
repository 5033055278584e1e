//! Instances joined through a real Redis (`--cluster`, issue 22), for the
//! `cluster_*` test files: start one and wait until it is linked, read a
//! broadcast client's lines with a deadline, seat a chat user, and the
//! figures the stats line and `/metrics` give of the link.
//!
//! Every instance is started with `--log-level debug` (each accept is
//! logged, so [`Server::wait_accepted`] knows who is in the room) and a
//! stats line every 0.2 s.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{shown, Client};
use super::redis::Redis;
use super::{binary, connect, metrics, Server, Stats, PATIENCE};

/// How long a silence must last to count as one.
pub const QUIET: Duration = Duration::from_millis(300);

/// `monoloop MODE --cluster URL ARGS...` (stats every 0.2 s, debug log),
/// listening, and not yet linked: Redis may be away.
pub fn unlinked(mode: &str, url: &str, args: &[&str]) -> Server {
    let mut all = vec![mode, "--cluster", url, "--stats-interval", "0.2"];
    all.extend(["--log-level", "debug"]);
    all.extend(args);
    Server::start_cmd(binary(), &all)
}

/// [`unlinked`], then waits until it logs its link to Redis.
pub fn instance(mode: &str, url: &str, args: &[&str]) -> Server {
    let mut server = unlinked(mode, url, args);
    server.wait_for_log("cluster: linked to ");
    server
}

/// A broadcast client, read line by line.
pub struct Member {
    pub name: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Member {
    /// Connects to `server` (which must log accepts: see the module docs).
    pub fn join(server: &Server, name: &str) -> Member {
        let s = connect(server.addr);
        Member {
            name: name.to_string(),
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    /// Sends `bytes`, all of them.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.writer
            .write_all(bytes.as_ref())
            .unwrap_or_else(|e| panic!("{}: write: {e}", self.name));
    }

    /// The next whole line (with its newline), within [`PATIENCE`].
    #[track_caller]
    pub fn line(&mut self) -> String {
        let mut line = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while !line.ends_with(b"\n") {
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => panic!(
                    "{}: the server closed; the line so far: {}",
                    self.name,
                    shown(&line)
                ),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "{}: no whole line within {:.1?} ({e}); so far: {}",
                    self.name,
                    PATIENCE,
                    shown(&line)
                ),
            }
            assert!(Instant::now() < deadline, "{}: no line in time", self.name);
        }
        String::from_utf8(line).unwrap()
    }

    /// The next `n` lines.
    #[track_caller]
    pub fn lines(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.line()).collect()
    }

    /// The next line must be `want`.
    #[track_caller]
    pub fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(got, want, "{}: another line came", self.name);
    }

    /// Nothing arrives for `for_how_long` (nor does the server close).
    #[track_caller]
    pub fn silent(&mut self, for_how_long: Duration) {
        let buffered = self.reader.buffer();
        assert!(
            buffered.is_empty(),
            "{}: unexpected {}",
            self.name,
            shown(buffered)
        );
        let s = self.reader.get_mut();
        s.set_read_timeout(Some(for_how_long)).unwrap();
        let mut b = [0u8; 512];
        let got = s.read(&mut b);
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        match got {
            Ok(0) => panic!("{}: the server closed", self.name),
            Ok(n) => panic!("{}: unexpected {}", self.name, shown(&b[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{}: {e}", self.name),
        }
    }
}

/// Connects to `server` and takes the chat name `name`; the client after
/// the welcome.
#[track_caller]
pub fn chatter(server: &Server, name: &str) -> Client {
    let mut c = server.client(name);
    c.expect(monoloop::protocol::chat::PROMPT);
    c.send(format!("{name}\n"));
    c.expect(monoloop::protocol::chat::WELCOME);
    c
}

/// Nothing arrives at `c` for [`QUIET`] (nor does the server close).
#[track_caller]
pub fn quiet(c: &mut Client) {
    c.read_timeout(QUIET);
    let mut b = [0u8; 512];
    let got = c.stream().read(&mut b);
    c.read_timeout(PATIENCE);
    match got {
        Ok(0) => panic!("the server closed"),
        Ok(n) => panic!("unexpected {}", shown(&b[..n])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) => panic!("{e}"),
    }
}

/// The last stats line so far (there is one every 0.2 s).
#[track_caller]
pub fn last_stats(server: &mut Server) -> Stats {
    server.wait_stats_where("any", |_| true);
    let line = server.log_lines("stats:").pop().unwrap();
    Stats(line)
}

/// Waits until the last stats line shows `state` (`up` or `down`) for
/// the link, and returns it. A line is logged whenever a figure moves,
/// and only then: the last one is the link's state as last seen.
#[track_caller]
pub fn wait_link(server: &mut Server, state: &str) -> Stats {
    let want = format!("cluster={state} ");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(l) = server.log_lines("stats:").pop() {
            if l.contains(&want) {
                return Stats(l);
            }
        }
        if Instant::now() > deadline {
            let log = server.log();
            let tail = &log[log.len().saturating_sub(30)..];
            panic!(
                "the last stats line does not show {want:?} after {PATIENCE:?}; the last {} \
                 lines of the log:\n  {}",
                tail.len(),
                tail.join("\n  ")
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The `--metrics` listener's address (the server must have one).
pub fn metrics_at(server: &mut Server) -> SocketAddr {
    metrics::metrics_addr(server)
}

/// One sample of `/metrics`.
pub fn sample(addr: SocketAddr, series: &str) -> f64 {
    metrics::sample(&metrics::get(addr, "/metrics"), series)
}

/// The body of `/healthz`, with its status line.
pub fn healthz(addr: SocketAddr) -> String {
    metrics::get(addr, "/healthz")
}

/// Waits until `what` holds, polling every 20 ms, for at most `within`;
/// returns how long it took.
#[track_caller]
pub fn within(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Lines as a broadcast client receives them: `PREFIX TAG-N`.
pub fn numbered(prefix: &str, tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{tag}-{i:04}\n")).collect()
}

/// Every room line in the stream `PREFIX:MODE` (`monoloop:broadcast`), in
/// the stream's order, as the entries' `d` fields hold them.
pub fn stream_lines(redis: &super::redis::Redis, stream: &str) -> Vec<String> {
    let all = redis.command(&["XRANGE", stream, "-", "+"]);
    let mut out = Vec::new();
    for entry in all.as_array().unwrap_or_default() {
        let fields = entry.as_array().unwrap()[1].as_array().unwrap();
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv[0].as_str() == Some(name))
                .and_then(|kv| kv[1].as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        if field("k").as_deref() == Some("r") {
            let data = field("d").unwrap_or_default();
            out.extend(data.split_inclusive('\n').map(str::to_string));
        }
    }
    out
}

/// A connection to Redis of the test's own, held across a moment when
/// Redis takes no new ones; commands inline, one reply line each.
pub struct Admin(BufReader<TcpStream>);

impl Admin {
    pub fn connect(redis: &Redis) -> Admin {
        let s = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        Admin(BufReader::new(s))
    }

    /// Sends `commands` in one write (Redis runs them together, before
    /// it accepts anyone); their one-line replies.
    pub fn run(&mut self, commands: &[&str]) -> Vec<String> {
        let all: String = commands.iter().map(|c| format!("{c}\r\n")).collect();
        self.0.get_mut().write_all(all.as_bytes()).unwrap();
        (0..commands.len())
            .map(|_| {
                let mut line = String::new();
                self.0.read_line(&mut line).unwrap();
                line.trim_end().to_string()
            })
            .collect()
    }
}
