//! `monoloop client HOST:PORT`: a netcat-style client on its own small
//! readiness loop.
//!
//! Standard input goes to the server; what the server sends goes to standard
//! output. At the end of input the client half-closes (our FIN) and keeps
//! printing until the server closes, then exits 0. A refused, unreachable or
//! unresolvable target, or a reset, is one line on stderr and exit 1.
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
    Reset(SocketAddr),
    /// The TLS set-up or handshake failed; the text says why.
    Tls(String),
    Io(&'static str, io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadHost(h) => write!(f, "cannot resolve '{h}': not a valid host name"),
            ClientError::Resolve(t, e) => write!(f, "cannot resolve '{t}': {e}"),
            ClientError::Refused(a) => write!(f, "connection to {a} refused"),
            ClientError::Connect(a, e) => write!(f, "cannot connect to {a}: {e}"),
            ClientError::Timeout(t, d) => {
                write!(
                    f,
                    "timed out connecting to {t} after {:.1}s",
                    d.as_secs_f64()
                )
            }
            ClientError::Reset(a) => write!(f, "connection reset by {a}"),
            ClientError::Tls(why) => write!(f, "TLS: {why}"),
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
    let deadline = Instant::now() + cfg.timeout;
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
    let (mut stream, peer) = connect(&mut poll, &addrs, &cfg.target, deadline, cfg.timeout)?;
    log::debug!("connected to {peer}");
    let mut session = Session::new(&mut poll, peer)?;
    #[cfg(feature = "tls")]
    {
        session.tls = tls;
    }
    session.pump(&mut poll, &mut stream)
}

/// A client TLS session for `target`, named by `--server-name` or the host.
#[cfg(feature = "tls")]
fn tls_session(
    opts: &crate::config::ClientTls,
    target: &str,
) -> Result<Box<rustls::Connection>, ClientError> {
    let config = crate::tls::client_config(opts).map_err(|e| ClientError::Tls(e.0))?;
    if opts.insecure {
        eprintln!("warning: --insecure: the server's certificate is not verified");
    }
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    let name = crate::tls::server_name(opts.server_name.as_deref().unwrap_or(host))
        .map_err(|e| ClientError::Tls(e.0))?;
    let session =
        rustls::ClientConnection::new(config, name).map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(Box::new(rustls::Connection::Client(session)))
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

/// Tries each address in turn until one connects or the deadline passes.
fn connect(
    poll: &mut Poll,
    addrs: &[SocketAddr],
    target: &str,
    deadline: Instant,
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
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(target.to_string(), timeout));
            }
            match poll.poll(&mut events, Some(left)) {
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
    /// The TLS session, with `--tls`.
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::Connection>>,
    /// TLS: our FIN followed close_notify.
    #[cfg(feature = "tls")]
    fin_sent: bool,
}

impl Session {
    fn new(poll: &mut Poll, peer: SocketAddr) -> Result<Self, ClientError> {
        let mut s = Session {
            peer,
            stdin: stdin_kind(),
            stdin_registered: false,
            queue: WriteQueue::new(),
            shut: false,
            buf: vec![0; CHUNK],
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            fin_sent: false,
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
        let mut events = Events::with_capacity(8);
        let mut stdout = io::stdout().lock();
        loop {
            let timeout = (self.stdin == Stdin::Plain && self.queue.len() < QUEUE_LIMIT)
                .then_some(Duration::ZERO);
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

    /// Copies what the server sent to standard output. True once the server
    /// has closed.
    fn server_readable(
        &mut self,
        stream: &mut TcpStream,
        stdout: &mut io::StdoutLock,
    ) -> Result<bool, ClientError> {
        loop {
            match self.read_server(stream) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    if let Err(e) = stdout
                        .write_all(&self.buf[..n])
                        .and_then(|_| stdout.flush())
                    {
                        // Whoever read our output has gone (`| head`): done.
                        if e.kind() == io::ErrorKind::BrokenPipe {
                            return Ok(true);
                        }
                        return Err(ClientError::Io("cannot write to standard output", e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if crate::connection::is_disconnect(&e) => {
                    return Err(ClientError::Reset(self.peer))
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(ClientError::Tls(e.to_string()))
                }
                Err(e) => return Err(ClientError::Io("cannot read from the server", e)),
            }
        }
    }

    /// One read of the server's bytes into `buf`: straight from the socket,
    /// or plaintext out of the TLS session (fed from the socket as needed).
    /// A TLS failure comes back as `InvalidData` with the reason.
    fn read_server(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            use crate::tls::{explain, read_records, write_records, Records};
            loop {
                match tls.reader().read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // A TCP close without close_notify ends the output too.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    other => return other,
                }
                match read_records(tls, stream) {
                    Records::Read { .. } | Records::Eof => {}
                    Records::WouldBlock => return Err(io::ErrorKind::WouldBlock.into()),
                    Records::Failed(e) => return Err(e),
                    Records::Rejected(e) => {
                        let _ = write_records(tls, stream);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, explain(&e)));
                    }
                }
            }
        }
        stream.read(&mut self.buf)
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
                    eprintln!("warning: reading standard input failed: {e}; treating it as ended");
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
                Err(e) if crate::connection::is_disconnect(&e) => {
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
    /// handshake is done; at the end of input, close_notify, then our FIN.
    #[cfg(feature = "tls")]
    fn write_server_tls(&mut self, stream: &mut TcpStream) -> Result<(), ClientError> {
        use crate::tls::write_records;
        let peer = self.peer;
        let failed = |e: io::Error| {
            if crate::connection::is_disconnect(&e) {
                ClientError::Reset(peer)
            } else {
                ClientError::Io("cannot write to the server", e)
            }
        };
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        loop {
            if !write_records(tls, stream).map_err(failed)? {
                return Ok(());
            }
            if self.queue.is_empty() || tls.is_handshaking() {
                break;
            }
            match self.queue.write_to(&mut tls.writer()) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(ClientError::Io("TLS session refused data", e)),
            }
        }
        if self.stdin == Stdin::Done && self.queue.is_empty() && !self.shut {
            self.shut = true;
            tls.send_close_notify();
        }
        // Our FIN goes after close_notify's record.
        if self.shut && !self.fin_sent && write_records(tls, stream).map_err(failed)? {
            self.fin_sent = true;
            let _ = stream.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// True if anything is ready to go to the server now.
    fn wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.wants_write() || (!self.queue.is_empty() && !tls.is_handshaking());
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
    }
}
