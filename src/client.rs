//! `monoloop client HOST:PORT`: a netcat-style client on its own small
//! readiness loop.
//!
//! Standard input goes to the server; what the server sends goes to standard
//! output. At the end of input the client half-closes (our FIN) and keeps
//! printing until the server closes, then exits 0. A refused, unreachable or
//! unresolvable target, or a reset, is one line on stderr and exit 1.
//!
//! With `--tls`, failures of TLS are one line too, in the server's terms
//! where it gave any: the alert it sent when it refused the handshake (our
//! certificate, say), or that it did not answer with TLS at all. The latter
//! is decided on the server's first bytes, peeked before rustls sees them,
//! so that rustls never gets to log its own complaint about them.
//!
//! Two endings the socket calls clean are failures too, told from the
//! server's bytes (`client/watch.rs`): a TLS server answering a plain
//! client (an alert, not printed), and the server closing the connection
//! for a timeout (`Connection timeout` as its last words).
//!
//! The loop polls two sources: the socket, and standard input when it is a
//! terminal or a pipe. A regular file (or `/dev/null`) cannot be polled
//! (epoll refuses it with EPERM) and is always ready anyway, so it is read
//! whenever the outgoing queue has room. Standard input is never switched to
//! non-blocking mode: the flag belongs to the open file description, shared
//! with the shell's terminal, and would outlive us. Instead each read is
//! preceded by a zero-timeout `poll(2)` that says it will not block.
//! Standard output is written with ordinary blocking writes: if the reader
//! of our output is slow, we stop reading the socket, which is the
//! backpressure we want.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::buffer::WriteQueue;
use crate::config::ClientConfig;

/// What the server's bytes say about how the session went.
mod watch;
use watch::{Ending, Seen, Watch};

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);
/// Bytes of standard input queued for the server before we stop reading it.
const QUEUE_LIMIT: usize = 256 * 1024;
const CHUNK: usize = 64 * 1024;

/// Why the client failed. Each prints as one line.
#[derive(Debug)]
pub enum ClientError {
    BadHost(String),
    Resolve(String, io::Error),
    Refused(SocketAddr),
    Connect(SocketAddr, io::Error),
    Timeout(String, Duration),
    /// With `--tls`: connected, but the handshake had not finished when
    /// `--timeout` (counted from the start, as curl's `--connect-timeout`
    /// is) ran out.
    HandshakeTimeout(String, Duration),
    Reset(SocketAddr),
    /// The TLS set-up or handshake failed; the text says why.
    Tls(String),
    /// The server sent a fatal TLS alert, in words. `handshake`: it came
    /// before any data, so the server refused the handshake (with TLS 1.3
    /// the client learns that only after its own side of the handshake is
    /// done, when the server has judged our certificate).
    TlsAlert {
        alert: String,
        handshake: bool,
    },
    /// With `--tls`, the server's first bytes were not a TLS server's.
    NotTls,
    /// Without `--tls`, the server's first bytes were a TLS record (its
    /// alert, most likely, for our plain text).
    AnsweredWithTls,
    /// The server closed the connection after its timeout line.
    ServerTimedOut,
    Io(&'static str, io::Error),
}

/// `d` in seconds with one decimal, rounded, as `{:.1}` prints it, in
/// whole numbers (no floating point: its formatting is 10 KB of binary).
fn tenths(d: std::time::Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadHost(h) => write!(f, "cannot resolve '{h}': not a valid host name"),
            ClientError::Resolve(t, e) => write!(f, "cannot resolve '{t}': {e}"),
            ClientError::Refused(a) => write!(f, "connection to {a} refused"),
            ClientError::Connect(a, e) => write!(f, "cannot connect to {a}: {e}"),
            ClientError::Timeout(t, d) => {
                write!(f, "timed out connecting to {t} after {}s", tenths(*d))
            }
            ClientError::HandshakeTimeout(t, d) => write!(
                f,
                "connected to {t}, but the TLS handshake had not finished after {}s \
                 (a plain-TCP server waits silently for data)",
                tenths(*d)
            ),
            ClientError::Reset(a) => write!(f, "connection reset by {a}"),
            ClientError::Tls(why) => write!(f, "TLS: {why}"),
            ClientError::TlsAlert {
                alert,
                handshake: true,
            } => write!(f, "the server refused the TLS handshake: {alert}"),
            ClientError::TlsAlert {
                alert,
                handshake: false,
            } => write!(f, "the server ended the TLS session with an alert: {alert}"),
            ClientError::NotTls => {
                f.write_str("the server did not answer with TLS (is it a plain-TCP server?)")
            }
            #[cfg(feature = "tls")]
            ClientError::AnsweredWithTls => {
                f.write_str("the server answered with TLS: add --tls (and --ca FILE if its certificate is not in the system's store)")
            }
            #[cfg(not(feature = "tls"))]
            ClientError::AnsweredWithTls => f.write_str(
                "the server answered with TLS, which this monoloop was built without (cargo feature \"tls\")",
            ),
            ClientError::ServerTimedOut => {
                f.write_str("the server closed the connection after a timeout (\"Connection timeout\")")
            }
            ClientError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// How standard input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdin {
    /// A terminal or pipe, registered with the poll.
    Polled,
    /// A regular file or a device epoll refuses: always ready.
    Plain,
    /// Read to its end (or absent).
    Done,
}

/// Runs the client until the server closes the connection.
pub fn run(cfg: &ClientConfig) -> Result<(), ClientError> {
    // `--timeout 0` is `None`: no deadline of ours, as 0 is elsewhere.
    let deadline = cfg.timeout.map(|t| Instant::now() + t);
    #[cfg(feature = "tls")]
    let tls = match &cfg.tls {
        Some(opts) => Some(tls_session(opts, &cfg.target)?),
        None => None,
    };
    #[cfg(not(feature = "tls"))]
    if cfg.tls.is_some() {
        return Err(ClientError::Tls(
            "this monoloop was built without TLS (cargo feature \"tls\")".into(),
        ));
    }
    let addrs = resolve(&cfg.target)?;
    let mut poll = Poll::new().map_err(|e| ClientError::Io("cannot create the poll", e))?;
    let timeout = cfg.timeout.unwrap_or_default();
    let (mut stream, peer) = connect(&mut poll, &addrs, &cfg.target, deadline, timeout)?;
    log::debug!("connected to {peer}");
    let mut session = Session::new(&mut poll, peer, cfg.tls.is_none())?;
    #[cfg(feature = "tls")]
    {
        session.tls = tls;
        session.handshake_by = deadline.map(|d| (d, cfg.target.clone(), timeout));
    }
    session.pump(&mut poll, &mut stream)
}

/// A client TLS session for `target`, named by `--server-name` or the host.
#[cfg(feature = "tls")]
fn tls_session(opts: &crate::config::ClientTls, target: &str) -> Result<TlsClient, ClientError> {
    let config = crate::tls::client_config(opts).map_err(|e| ClientError::Tls(e.0))?;
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    let name = crate::tls::server_name(opts.server_name.as_deref().unwrap_or(host))
        .map_err(|e| ClientError::Tls(e.0))?;
    let session =
        rustls::ClientConnection::new(config, name).map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(TlsClient {
        conn: Box::new(rustls::Connection::Client(session)),
        fin_sent: false,
        answered: false,
        got_data: false,
        warn_insecure: opts.insecure,
    })
}

/// Resolves `HOST:PORT`. Host names are checked for DNS syntax first, so
/// that a mistyped name fails here rather than as a lookup.
fn resolve(target: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let (host, _) = target.rsplit_once(':').unwrap_or((target, ""));
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let plausible = bare.parse::<std::net::IpAddr>().is_ok()
        || (!bare.is_empty()
            && bare.len() <= 253
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !plausible {
        return Err(ClientError::BadHost(host.to_string()));
    }
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| ClientError::Resolve(target.to_string(), e))?
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::Resolve(
            target.to_string(),
            io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        ));
    }
    Ok(addrs)
}

/// Tries each address in turn until one connects or the deadline passes
/// (`timeout` after the start, which the error names). Without a deadline
/// each attempt lasts until the kernel gives up on it.
fn connect(
    poll: &mut Poll,
    addrs: &[SocketAddr],
    target: &str,
    deadline: Option<Instant>,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), ClientError> {
    let mut events = Events::with_capacity(4);
    let mut last = None;
    for &addr in addrs {
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                last = Some(classify(addr, e));
                continue;
            }
        };
        poll.registry()
            .register(&mut stream, SOCKET, Interest::WRITABLE)
            .map_err(|e| ClientError::Io("cannot register the socket", e))?;
        // Writable means the handshake finished, one way or the other.
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                return Err(ClientError::Timeout(target.to_string(), timeout));
            }
            match poll.poll(&mut events, left) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::Io("poll failed", e)),
            }
            if !events.is_empty() {
                break;
            }
        }
        let failure = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => stream.peer_addr().err(),
        };
        match failure {
            None => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Some(e) => {
                let _ = poll.registry().deregister(&mut stream);
                last = Some(classify(addr, e));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        ClientError::Resolve(target.to_string(), io::ErrorKind::NotFound.into())
    }))
}

fn classify(addr: SocketAddr, e: io::Error) -> ClientError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        ClientError::Refused(addr)
    } else {
        ClientError::Connect(addr, e)
    }
}

/// The connected client: what is owed to the server, and what is done.
struct Session {
    peer: SocketAddr,
    stdin: Stdin,
    /// Whether standard input is registered right now (it is dropped from
    /// the poll while the queue is full).
    stdin_registered: bool,
    queue: WriteQueue,
    /// Our FIN is sent.
    shut: bool,
    buf: Vec<u8>,
    /// What the server's bytes have said so far.
    watch: Watch,
    /// The TLS session, with `--tls`.
    #[cfg(feature = "tls")]
    tls: Option<TlsClient>,
    /// When the TLS handshake must be done by, with the target and the
    /// `--timeout` its error names; `None` without a deadline.
    #[cfg(feature = "tls")]
    handshake_by: Option<(Instant, String, Duration)>,
}

/// What one read from the server gave.
#[derive(Debug)]
enum FromServer {
    /// This many bytes are in the buffer, for standard output.
    Data(usize),
    /// The server has closed (with TLS: with or without close_notify).
    Closed,
    /// Nothing more for now.
    WouldBlock,
    /// The connection failed; the error says how, in one line.
    Failed(ClientError),
}

/// A socket error while reading: a reset, or worse.
fn read_failure(peer: SocketAddr, e: io::Error) -> ClientError {
    if crate::sys::is_disconnect(&e) {
        ClientError::Reset(peer)
    } else {
        ClientError::Io("cannot read from the server", e)
    }
}

impl Session {
    /// `plain`: without `--tls`, so that a TLS answer is looked for.
    fn new(poll: &mut Poll, peer: SocketAddr, plain: bool) -> Result<Self, ClientError> {
        let mut s = Session {
            peer,
            stdin: stdin_kind(),
            stdin_registered: false,
            queue: WriteQueue::new(),
            shut: false,
            buf: vec![0; CHUNK],
            watch: Watch::new(plain),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            handshake_by: None,
        };
        if s.stdin == Stdin::Polled {
            match poll
                .registry()
                .register(&mut SourceFd(&0), STDIN, Interest::READABLE)
            {
                Ok(()) => s.stdin_registered = true,
                // epoll refuses what is always ready (/dev/null, say).
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => s.stdin = Stdin::Plain,
                Err(e) => return Err(ClientError::Io("cannot watch standard input", e)),
            }
        }
        Ok(s)
    }

    /// The loop: until the server closes.
    fn pump(&mut self, poll: &mut Poll, stream: &mut TcpStream) -> Result<(), ClientError> {
        poll.registry()
            .reregister(stream, SOCKET, Interest::READABLE)
            .map_err(|e| ClientError::Io("cannot register the socket", e))?;
        let mut registered = Interest::READABLE;
        // What is owed before any event: with TLS, the ClientHello. Left to
        // the first event, it waited for standard input's first line, and a
        // TLS server's greeting with it.
        self.write_server(stream)?;
        self.sync(poll, stream, &mut registered)?;
        let mut events = Events::with_capacity(8);
        let mut stdout = io::stdout().lock();
        loop {
            let timeout = self.poll_timeout(Instant::now())?;
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::Io("poll failed", e)),
            }
            for event in events.iter() {
                let from_socket = event.token() == SOCKET
                    && (event.is_readable() || event.is_read_closed() || event.is_error());
                if from_socket && self.server_readable(stream, &mut stdout)? {
                    return Ok(());
                }
            }
            self.read_stdin();
            self.write_server(stream)?;
            self.sync(poll, stream, &mut registered)?;
        }
    }

    /// How long the next poll may wait: not at all while standard input is
    /// a file with room in the queue, no longer than the handshake has
    /// left, and otherwise until an event.
    fn poll_timeout(&mut self, now: Instant) -> Result<Option<Duration>, ClientError> {
        let stdin_ready = (self.stdin == Stdin::Plain && self.queue.len() < QUEUE_LIMIT)
            .then_some(Duration::ZERO);
        #[cfg(feature = "tls")]
        if let Some(left) = self.handshake_left(now)? {
            return Ok(Some(stdin_ready.map_or(left, |t| t.min(left))));
        }
        #[cfg(not(feature = "tls"))]
        let _ = now;
        Ok(stdin_ready)
    }

    /// While the TLS handshake is under way with a deadline: how long is
    /// left of it, or the timeout error once nothing is. `None` when there
    /// is nothing to wait for (no TLS, no deadline, or the handshake done).
    #[cfg(feature = "tls")]
    fn handshake_left(&mut self, now: Instant) -> Result<Option<Duration>, ClientError> {
        let handshaking = self.tls.as_ref().is_some_and(|t| t.conn.is_handshaking());
        if !handshaking {
            self.handshake_by = None;
        }
        let Some((by, target, timeout)) = &self.handshake_by else {
            return Ok(None);
        };
        match by.checked_duration_since(now) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(ClientError::HandshakeTimeout(target.clone(), *timeout)),
        }
    }

    /// Copies what the server sent to standard output. True once the server
    /// has closed; an error if it answered a plain client with TLS, or
    /// closed after its timeout line (`client/watch.rs`).
    fn server_readable(
        &mut self,
        stream: &mut TcpStream,
        stdout: &mut io::StdoutLock,
    ) -> Result<bool, ClientError> {
        loop {
            let (held, now, closed) = match self.read_server(stream) {
                FromServer::Closed => match self.watch.end(!self.shut) {
                    Ending::Clean(held) => (held, &[][..], true),
                    Ending::TimedOut => return Err(ClientError::ServerTimedOut),
                },
                FromServer::Data(n) => match self.watch.seen(&self.buf[..n]) {
                    Seen::Print(held, now) => (held, now, false),
                    Seen::Held => continue,
                    Seen::Tls => return Err(ClientError::AnsweredWithTls),
                },
                FromServer::WouldBlock => return Ok(false),
                FromServer::Failed(e) => return Err(e),
            };
            if let Err(e) = stdout
                .write_all(held)
                .and_then(|_| stdout.write_all(now))
                .and_then(|_| stdout.flush())
            {
                // Whoever read our output has gone (`| head`): done.
                if e.kind() == io::ErrorKind::BrokenPipe {
                    return Ok(true);
                }
                return Err(ClientError::Io("cannot write to standard output", e));
            }
            if closed {
                return Ok(true);
            }
        }
    }

    /// One read of the server's bytes into `buf`: straight from the socket,
    /// or plaintext out of the TLS session (fed from the socket as needed).
    fn read_server(&mut self, stream: &mut TcpStream) -> FromServer {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            return tls.read(stream, &mut self.buf, self.peer);
        }
        loop {
            return match stream.read(&mut self.buf) {
                Ok(0) => FromServer::Closed,
                Ok(n) => FromServer::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => FromServer::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => FromServer::Failed(read_failure(self.peer, e)),
            };
        }
    }

    /// Reads standard input into the queue while there is room and a read
    /// will not block.
    fn read_stdin(&mut self) {
        while self.stdin != Stdin::Done && self.queue.len() < QUEUE_LIMIT {
            if self.stdin == Stdin::Polled && !stdin_readable() {
                return;
            }
            match io::stdin().lock().read(&mut self.buf) {
                Ok(0) => {
                    log::debug!("end of standard input");
                    self.stdin = Stdin::Done;
                }
                Ok(n) => self.queue.push_copy(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    crate::logging::to_stderr(&format!(
                        "warning: reading standard input failed: {e}; treating it as ended\n"
                    ));
                    self.stdin = Stdin::Done;
                }
            }
        }
    }

    /// Writes what is queued; sends our FIN once input is done and sent.
    fn write_server(&mut self, stream: &mut TcpStream) -> Result<(), ClientError> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.write_server_tls(stream);
        }
        while !self.queue.is_empty() {
            match self.queue.write_to(stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if crate::sys::is_disconnect(&e) => {
                    return Err(ClientError::Reset(self.peer))
                }
                Err(e) => return Err(ClientError::Io("cannot write to the server", e)),
            }
        }
        if self.stdin == Stdin::Done && !self.shut {
            self.shut = true;
            let _ = stream.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// TLS: records first, then queued input into the session once the
    /// handshake is done; at the end of input, and not before the handshake
    /// is done, close_notify, then our FIN.
    #[cfg(feature = "tls")]
    fn write_server_tls(&mut self, stream: &mut TcpStream) -> Result<(), ClientError> {
        use crate::tls::write_records;
        let peer = self.peer;
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        loop {
            match write_records(&mut tls.conn, stream) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(tls.write_failed(stream, &mut self.buf, peer, e)),
            }
            if self.queue.is_empty() || tls.conn.is_handshaking() {
                break;
            }
            match self.queue.write_to(&mut tls.conn.writer()) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(ClientError::Io("TLS session refused data", e)),
            }
        }
        // close_notify waits for the handshake: sent during it, it is an
        // alert that aborts the handshake, and a server with something to
        // say first (a greeting) could not say it.
        let input_done = self.stdin == Stdin::Done && self.queue.is_empty();
        if input_done && !self.shut && !tls.conn.is_handshaking() {
            self.shut = true;
            tls.conn.send_close_notify();
        }
        // Our FIN goes after close_notify's record.
        if self.shut && !tls.fin_sent {
            match write_records(&mut tls.conn, stream) {
                Ok(true) => {
                    tls.fin_sent = true;
                    let _ = stream.shutdown(Shutdown::Write);
                }
                Ok(false) => {}
                Err(e) => return Err(tls.write_failed(stream, &mut self.buf, peer, e)),
            }
        }
        Ok(())
    }

    /// True if anything is ready to go to the server now.
    fn wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(TlsClient { conn, .. }) = &self.tls {
            return conn.wants_write() || (!self.queue.is_empty() && !conn.is_handshaking());
        }
        !self.queue.is_empty()
    }

    /// Makes the registrations match what is wanted now.
    fn sync(
        &mut self,
        poll: &mut Poll,
        stream: &mut TcpStream,
        registered: &mut Interest,
    ) -> Result<(), ClientError> {
        let want = if self.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if want != *registered {
            poll.registry()
                .reregister(stream, SOCKET, want)
                .map_err(|e| ClientError::Io("cannot register the socket", e))?;
            *registered = want;
        }
        let stdin_wanted = self.stdin == Stdin::Polled && self.queue.len() < QUEUE_LIMIT;
        if stdin_wanted != self.stdin_registered {
            let fd = &mut SourceFd(&0);
            let r = if stdin_wanted {
                poll.registry().register(fd, STDIN, Interest::READABLE)
            } else {
                poll.registry().deregister(fd)
            };
            r.map_err(|e| ClientError::Io("cannot watch standard input", e))?;
            self.stdin_registered = stdin_wanted;
        }
        Ok(())
    }
}

/// The client's TLS session, and what the client has learnt of the server
/// through it.
#[cfg(feature = "tls")]
struct TlsClient {
    conn: Box<rustls::Connection>,
    /// Our FIN followed close_notify.
    fin_sent: bool,
    /// The server's first bytes looked like a TLS server's; until then they
    /// are peeked at before rustls reads them.
    answered: bool,
    /// Plaintext has come from the server: an alert now ends a session
    /// rather than refusing a handshake.
    got_data: bool,
    /// `--insecure`, and the warning is still to be printed: once the
    /// handshake is done, when a certificate has in fact gone unverified
    /// (a server that never completes one gets only its own error line).
    warn_insecure: bool,
}

#[cfg(feature = "tls")]
impl TlsClient {
    /// One read of plaintext into `buf`: what the session already holds,
    /// else records from the socket until there is some, the socket has no
    /// more, or the session ends or fails.
    fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8], peer: SocketAddr) -> FromServer {
        use crate::tls::{read_records, write_records, Records};
        if !self.answered {
            if let Some(not_yet) = self.check_answer(stream, peer) {
                return not_yet;
            }
        }
        loop {
            match self.conn.reader().read(buf) {
                // close_notify.
                Ok(0) => return FromServer::Closed,
                Ok(n) => {
                    self.got_data = true;
                    return FromServer::Data(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    if self.conn.is_handshaking() {
                        return FromServer::Failed(ClientError::Tls(
                            "the server closed the connection during the handshake".into(),
                        ));
                    }
                    // A TCP close without close_notify ends the output too.
                    return FromServer::Closed;
                }
                Err(e) => return FromServer::Failed(read_failure(peer, e)),
            }
            match read_records(&mut self.conn, stream) {
                Records::Read { .. } | Records::Eof => {}
                Records::WouldBlock => return FromServer::WouldBlock,
                Records::Failed(e) => return FromServer::Failed(read_failure(peer, e)),
                Records::Rejected(e) => {
                    // Tell the server why, if the socket takes it now.
                    let _ = write_records(&mut self.conn, stream);
                    return FromServer::Failed(self.rejected(&e));
                }
            }
            if self.warn_insecure && !self.conn.is_handshaking() {
                self.warn_insecure = false;
                crate::logging::to_stderr(
                    "warning: --insecure: the server's certificate is not verified\n",
                );
            }
        }
    }

    /// Peeks at the server's first bytes, before rustls reads them. `None`:
    /// they look like TLS (or the server closed, which the session's reader
    /// will report), go on reading; otherwise what to return instead.
    fn check_answer(&mut self, stream: &mut TcpStream, peer: SocketAddr) -> Option<FromServer> {
        let mut first = [0u8; crate::tls::SERVER_START_LEN];
        loop {
            return match stream.peek(&mut first) {
                Ok(0) => None,
                Ok(n) if crate::tls::server_speaks_tls(&first[..n]) => {
                    self.answered = true;
                    None
                }
                Ok(_) => Some(FromServer::Failed(ClientError::NotTls)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(FromServer::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Some(FromServer::Failed(read_failure(peer, e))),
            };
        }
    }

    /// The error for a failed write. A reset may have been the server's way
    /// of closing after it refused us: with TLS 1.3 our certificate is
    /// judged only after our side of the handshake is done, so we may still
    /// be writing when the server sends its alert and closes, and our bytes
    /// then meet a closed socket. What arrived before the reset stays
    /// readable (Linux keeps the receive queue), so the alert is looked for
    /// there first; what the server said is a better reason than "reset".
    fn write_failed(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut [u8],
        peer: SocketAddr,
        e: io::Error,
    ) -> ClientError {
        if !crate::sys::is_disconnect(&e) {
            return ClientError::Io("cannot write to the server", e);
        }
        log::debug!("writing to the server failed ({e}); reading what it sent before");
        loop {
            match self.read(stream, buf, peer) {
                // Too late for standard output: we are failing anyway.
                FromServer::Data(_) => {}
                FromServer::Failed(why @ (ClientError::TlsAlert { .. } | ClientError::NotTls)) => {
                    return why
                }
                _ => return ClientError::Reset(peer),
            }
        }
    }

    /// The error for a session that rustls ended.
    fn rejected(&self, e: &rustls::Error) -> ClientError {
        match e {
            rustls::Error::AlertReceived(alert) => ClientError::TlsAlert {
                alert: crate::tls::alert_in_words(*alert),
                handshake: !self.got_data,
            },
            other => ClientError::Tls(crate::tls::explain(other)),
        }
    }
}

/// Polled for a terminal or pipe, Plain for a regular file, Done if there
/// is no standard input at all.
fn stdin_kind() -> Stdin {
    // SAFETY: fstat fills a struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(io::stdin().as_raw_fd(), &mut st) } != 0 {
        return Stdin::Done;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
        Stdin::Plain
    } else {
        Stdin::Polled
    }
}

/// True if a read of standard input will not block (data, EOF or error).
fn stdin_readable() -> bool {
    let mut fds = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we pass.
    unsafe { libc::poll(&mut fds, 1, 0) > 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenths_round_as_the_float_format_did() {
        use std::time::Duration;
        assert_eq!(tenths(Duration::from_millis(2000)), "2.0");
        assert_eq!(tenths(Duration::from_millis(1249)), "1.2");
        assert_eq!(tenths(Duration::from_millis(1250)), "1.3");
        assert_eq!(tenths(Duration::from_millis(30)), "0.0");
    }

    #[test]
    fn host_names_are_checked_before_any_lookup() {
        assert!(matches!(
            resolve("bad!host:80"),
            Err(ClientError::BadHost(_))
        ));
        assert!(matches!(resolve("a b:80"), Err(ClientError::BadHost(_))));
        assert_eq!(
            resolve("127.0.0.1:8080").unwrap(),
            ["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:8080").unwrap(),
            ["[::1]:8080".parse().unwrap()]
        );
    }

    #[test]
    fn errors_read_as_one_line() {
        let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            ClientError::Refused(a).to_string(),
            "connection to 127.0.0.1:9 refused"
        );
        assert_eq!(
            ClientError::Reset(a).to_string(),
            "connection reset by 127.0.0.1:9"
        );
        assert_eq!(
            ClientError::TlsAlert {
                alert: "unknown CA".into(),
                handshake: true
            }
            .to_string(),
            "the server refused the TLS handshake: unknown CA"
        );
        assert_eq!(
            ClientError::NotTls.to_string(),
            "the server did not answer with TLS (is it a plain-TCP server?)"
        );
    }
}
