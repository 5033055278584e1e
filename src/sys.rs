//! What the server needs from the operating system beyond mio: the address
//! a `--listen` host name stands for, a listening socket with deliberate
//! options, and the file-descriptor limit.
//!
//! Everything here runs once, at start-up, before the loop, but for these:
//! the classifiers of OS errors (which errors mean the peer left,
//! which mean the process ran out of something), [`recv`] and [`send`],
//! the two system calls of every message, [`unacked`], which a
//! lingering close asks, and [`bytes_acked`], which a connection that
//! ends without a byte from its peer asks (a health check, or not?). The loop itself
//! (`event_loop/admission.rs`) only sees a ready `mio::net::TcpListener`.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;

use socket2::{Domain, Socket, Type};

/// The listen backlog: how many finished handshakes the kernel holds while
/// the loop is busy. mio's `TcpListener::bind` picks one for us; a server
/// that must ride out a connection storm picks its own. Linux silently caps
/// it at `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Why the server could not listen.
#[derive(Debug)]
pub enum ListenError {
    InUse(SocketAddr),
    Other(SocketAddr, io::Error),
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::InUse(a) => write!(f, "{a} is already in use"),
            ListenError::Other(a, e) => write!(f, "cannot listen on {a}: {e}"),
        }
    }
}

impl std::error::Error for ListenError {}

/// What a `--listen` host name resolved to.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The resolver's first answer: the one address listened on.
    pub first: SocketAddr,
    /// The rest, in the resolver's order, without repeats: not listened on
    /// (the loop has one listener).
    pub others: Vec<SocketAddr>,
}

/// Resolves `host` with `port` through the system's resolver (blocking:
/// called once, at start-up). An answer with no address is an error, as a
/// failed lookup is.
pub fn resolve(host: &str, port: u16) -> io::Result<Resolved> {
    first_of((host, port).to_socket_addrs()?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses"))
}

/// The first address, and the others without repeats; `None` for none.
fn first_of(addrs: impl IntoIterator<Item = SocketAddr>) -> Option<Resolved> {
    let mut addrs = addrs.into_iter();
    let first = addrs.next()?;
    let mut others: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        if a != first && !others.contains(&a) {
            others.push(a);
        }
    }
    Some(Resolved { first, others })
}

/// Opens a non-blocking listening socket on `addr`.
///
/// SO_REUSEADDR lets a restarted server bind while old connections sit in
/// TIME_WAIT (it does not let two servers share a port on Linux: that is
/// SO_REUSEPORT, which is left off so that "address in use" is reported).
pub fn listen(addr: SocketAddr) -> Result<mio::net::TcpListener, ListenError> {
    listen_with(addr, false)
}

/// A listening socket, with SO_REUSEPORT if `shared` (one of several
/// workers' sockets on one port).
fn listen_with(addr: SocketAddr, shared: bool) -> Result<mio::net::TcpListener, ListenError> {
    let fail = |e: io::Error| {
        if e.kind() == io::ErrorKind::AddrInUse {
            ListenError::InUse(addr)
        } else {
            ListenError::Other(addr, e)
        }
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if shared {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(LISTEN_BACKLOG).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Opens `n` listening sockets on `addr` for `n` workers, all before any
/// worker starts, so that every start error is reported once.
///
/// One worker gets [`listen`]'s socket: no SO_REUSEPORT, exactly as before.
/// Several get one socket each with SO_REUSEPORT, which lets them share the
/// port while the kernel spreads new connections over them (by a hash of
/// the connection's addresses and ports). SO_REUSEPORT would also let a
/// second monoloop started on the same port by mistake silently join the
/// group and take part of the connections; so when a port is given, a probe
/// socket without the option is bound to it first, and "address in use" is
/// reported as it is for one worker. With port 0 the first socket picks the
/// port and the others join it.
pub fn listen_group(addr: SocketAddr, n: usize) -> Result<Vec<mio::net::TcpListener>, ListenError> {
    if n <= 1 {
        return Ok(vec![listen(addr)?]);
    }
    if addr.port() != 0 {
        // Dropped at once: it only asks whether anyone holds the port.
        drop(listen(addr)?);
    }
    let first = listen_with(addr, true)?;
    let port = first
        .local_addr()
        .map_err(|e| ListenError::Other(addr, e))?
        .port();
    let addr = SocketAddr::new(addr.ip(), port);
    let mut all = vec![first];
    for _ in 1..n {
        all.push(listen_with(addr, true)?);
    }
    Ok(all)
}

/// Descriptors the server opens after this check and keeps besides its
/// connections: the epoll instance, the listener, the signal pipe's two
/// ends.
const OPENED_AFTER: u64 = 4;

/// Descriptors open now (stdio, a file server's root, ...), counted in
/// /proc/self/fd, or 16 if that cannot be read.
fn open_descriptors() -> u64 {
    match std::fs::read_dir("/proc/self/fd") {
        // The listing's own descriptor is in it: not one we keep.
        Ok(dir) => (dir.count() as u64).saturating_sub(1),
        Err(_) => 16,
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, and warns if
/// `max_connections` still cannot fit. Returns the soft limit in force.
pub fn raise_fd_limit(max_connections: usize) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        log::warn!(
            "cannot read the descriptor limit: {}",
            io::Error::last_os_error()
        );
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            log::debug!(
                "descriptor limit raised from {} to {}",
                lim.rlim_cur,
                lim.rlim_max
            );
            lim.rlim_cur = lim.rlim_max;
        } else {
            log::warn!(
                "cannot raise the descriptor limit: {}",
                io::Error::last_os_error()
            );
        }
    }
    let fixed = open_descriptors() + OPENED_AFTER;
    let needed = max_connections as u64 + fixed;
    if lim.rlim_cur < needed {
        log::warn!(
            "--max-connections {} needs about {} file descriptors, but the limit is {}: \
             beyond about {} connections, new clients wait in the backlog",
            max_connections,
            needed,
            lim.rlim_cur,
            lim.rlim_cur.saturating_sub(fixed)
        );
    }
    lim.rlim_cur
}

/// True for accept errors that mean "out of descriptors or memory": retrying
/// at once would fail again and spin the loop.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// True for accept errors about one aborted client, not the listener: skip
/// it and accept the next.
pub fn is_client_abort(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM | libc::ECONNRESET)
    )
}

/// One `recv(2)` on a connected, non-blocking socket: what `Read::read`
/// on a `TcpStream` does, with nothing between the caller and the system
/// call. Every message is one `recv` and one [`send`]; through mio's and
/// std's wrappers each was two calls more, which the size-optimised
/// release build does not inline (docs/benchmarks.md, "Binary size").
#[inline]
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the kernel
    // writes at most that many.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One `send(2)` on a connected, non-blocking socket, as `Write::write`
/// does it (`MSG_NOSIGNAL`: a closed peer is an `EPIPE`, never a signal).
#[inline]
pub fn send(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Bytes sent on socket `fd` that the peer has not acknowledged yet, our
/// FIN included (SIOCOUTQ). Zero means everything we said has arrived, so
/// closing now cannot destroy any of it, even with the peer's input
/// unread (a close that then resets).
pub fn unacked(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int into `n`, ours.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if rc == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// Bytes sent on socket `fd` that the peer's TCP has acknowledged
/// (`tcpi_bytes_acked` of TCP_INFO, Linux 4.1 and later; still there after
/// a reset). Zero means the peer cannot have read a byte of ours yet. Read
/// only when a connection ends without a byte from its peer.
pub fn bytes_acked(fd: RawFd) -> u64 {
    // SAFETY: tcp_info is plain integers, for which zero is a value;
    // getsockopt writes at most `len` bytes into it and says how many.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if rc == 0 {
            info.tcpi_bytes_acked
        } else {
            0
        }
    }
}

/// True for the errors that just mean the peer went away: logged at debug,
/// never as a server error.
pub fn is_disconnect(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected | UnexpectedEof | TimedOut
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn disconnect_errors_are_recognised() {
        assert!(is_disconnect(&std::io::ErrorKind::ConnectionReset.into()));
        assert!(is_disconnect(&std::io::ErrorKind::BrokenPipe.into()));
        assert!(!is_disconnect(&std::io::ErrorKind::PermissionDenied.into()));
    }

    use super::*;

    /// What `bytes_acked` says of a health check: nothing until the peer's
    /// TCP acknowledges a byte of ours, the handshake aside, and what it
    /// acknowledged still after it reset the connection.
    #[test]
    fn bytes_acked_counts_only_acknowledged_data() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        assert_eq!(
            bytes_acked(server.as_raw_fd()),
            0,
            "the handshake is not data"
        );
        server.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while bytes_acked(server.as_raw_fd()) < 5 {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        socket2::SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(client);
        let mut buf = [0u8; 8];
        assert!(server.read(&mut buf).is_err(), "a reset");
        assert_eq!(bytes_acked(server.as_raw_fd()), 5);
    }

    #[test]
    fn second_listener_on_the_same_port_is_in_use() {
        let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        match listen(addr) {
            Err(e @ ListenError::InUse(_)) => {
                assert_eq!(e.to_string(), format!("{addr} is already in use"))
            }
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    #[test]
    fn a_host_name_resolves_to_its_first_address_and_the_others_are_named() {
        let a: SocketAddr = "[::1]:80".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(
            first_of([a, b, a, b]),
            Some(Resolved {
                first: a,
                others: vec![b]
            })
        );
        assert_eq!(first_of([]), None);
        let local = resolve("localhost", 0).unwrap();
        assert!(local.first.ip().is_loopback(), "{local:?}");
        assert!(resolve("nosuch.invalid", 80).is_err());
    }

    #[test]
    fn a_group_shares_one_port_and_a_stranger_cannot_join_it() {
        let group = listen_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = group
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
        let addr = group[0].local_addr().unwrap();
        // A second server, with several workers or one, is refused.
        assert!(matches!(listen_group(addr, 2), Err(ListenError::InUse(_))));
        assert!(matches!(listen_group(addr, 1), Err(ListenError::InUse(_))));
    }

    #[test]
    fn resource_errors_are_told_apart() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        assert!(is_client_abort(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
