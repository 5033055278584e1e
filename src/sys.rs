//! What the server needs from the operating system beyond mio: the address
//! a `--listen` host name stands for, a listening socket with deliberate
//! options (TCP keepalive among them, for a room's quiet members; and,
//! when one cannot be had, an error that says what to do), and the
//! file-descriptor limit.
//!
//! Everything here runs once, at start-up, before the loop, but for these:
//! the classifiers of OS errors (which errors mean the peer left,
//! which mean the process ran out of something), [`recv`] and [`send`],
//! the two system calls of every message (made with the `syscall`
//! instruction itself on x86-64 Linux, `raw`), [`unacked`], which a
//! lingering close asks, and [`bytes_acked`], which a connection that
//! ends without a byte from its peer asks (a health check, or not?). The loop itself
//! (`event_loop/admission.rs`) only sees a ready `mio::net::TcpListener`.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// The listen backlog: how many finished handshakes the kernel holds while
/// the loop is busy. mio's `TcpListener::bind` picks one for us; a server
/// that must ride out a connection storm picks its own. Linux silently caps
/// it at `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Where a listening socket is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// This address. An IPv6 one takes IPv6 clients only (IPV6_V6ONLY),
    /// as nginx's `listen [::]:80` does, so that `0.0.0.0:P` and `[::]:P`
    /// can both be listened on, as two listeners.
    Addr(SocketAddr),
    /// Every address on this port, IPv4 and IPv6 (`--listen :PORT`): one
    /// `[::]` socket with IPV6_V6ONLY off, whatever the
    /// `net.ipv6.bindv6only` sysctl says, as systemd's `ListenStream=PORT`
    /// and Go's `:PORT` are; IPv4 clients arrive on it as IPv4-mapped
    /// addresses (`edge.rs` rules on them as IPv4). On a kernel without
    /// IPv6, `0.0.0.0`.
    Any(u16),
}

impl Bind {
    /// The same place on `port` (the port a first socket of a group got).
    fn on(self, port: u16) -> Bind {
        match self {
            Bind::Addr(a) => Bind::Addr(SocketAddr::new(a.ip(), port)),
            Bind::Any(_) => Bind::Any(port),
        }
    }

    fn port(self) -> u16 {
        match self {
            Bind::Addr(a) => a.port(),
            Bind::Any(port) => port,
        }
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Addr(a) => a.fmt(f),
            Bind::Any(port) => write!(f, ":{port}"),
        }
    }
}

/// Why the server could not listen, in words that say what to do; the
/// caller puts the option in front (`--metrics 127.0.0.1:9100: already in
/// use`).
#[derive(Debug)]
pub enum ListenError {
    /// Another socket holds the address (EADDRINUSE).
    InUse(Bind),
    /// A port below the first unprivileged one, without the capability
    /// (EACCES). The number is that first port (1024 unless the
    /// `net.ipv4.ip_unprivileged_port_start` sysctl moved it).
    Privileged(Bind, u16),
    /// The address is none of this machine's (EADDRNOTAVAIL).
    NotHere(Bind),
    Other(Bind, io::Error),
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::InUse(b) => write!(f, "{b}: already in use"),
            ListenError::Privileged(b, first) => {
                let exe = std::env::current_exe()
                    .map_or_else(|_| "monoloop".into(), |p| p.display().to_string());
                write!(
                    f,
                    "{b}: permission denied: a port below {first} needs the \
                     CAP_NET_BIND_SERVICE capability: give it to the binary \
                     (setcap 'cap_net_bind_service=+ep' {exe}) or, under systemd, \
                     to the service (AmbientCapabilities=CAP_NET_BIND_SERVICE, and \
                     the same in CapabilityBoundingSet= if the unit sets it, and no \
                     PrivateUsers=), or \
                     let systemd open the port (socket activation: \
                     docs/deploy/monoloop.socket)"
                )
            }
            ListenError::NotHere(b) => write!(
                f,
                "{b}: not an address of this machine (ip addr lists them; \
                 0.0.0.0 or :PORT is every address)"
            ),
            ListenError::Other(b, e) => write!(f, "{b}: {e}"),
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

/// Opens a non-blocking listening socket on `addr` ([`Bind::Addr`]).
///
/// SO_REUSEADDR lets a restarted server bind while old connections sit in
/// TIME_WAIT (it does not let two servers share a port on Linux: that is
/// SO_REUSEPORT, which is left off so that "address in use" is reported).
pub fn listen(addr: SocketAddr) -> Result<mio::net::TcpListener, ListenError> {
    listen_with(Bind::Addr(addr), false)
}

/// A listening socket, with SO_REUSEPORT if `shared` (one of several
/// workers' sockets on one port).
fn listen_with(bind: Bind, shared: bool) -> Result<mio::net::TcpListener, ListenError> {
    let fail = |e: io::Error| match e.raw_os_error() {
        Some(libc::EADDRINUSE) => ListenError::InUse(bind),
        Some(libc::EACCES) if bind.port() < unprivileged_start() => {
            ListenError::Privileged(bind, unprivileged_start())
        }
        Some(libc::EADDRNOTAVAIL) => ListenError::NotHere(bind),
        _ => ListenError::Other(bind, e),
    };
    let (socket, addr) = match bind {
        Bind::Addr(addr) => {
            let socket =
                Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
            if addr.is_ipv6() {
                socket.set_only_v6(true).map_err(fail)?;
            }
            (socket, addr)
        }
        Bind::Any(port) => match Socket::new(Domain::IPV6, Type::STREAM, None) {
            Ok(socket) => {
                socket.set_only_v6(false).map_err(fail)?;
                (socket, SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
            }
            // A kernel without IPv6 (ipv6.disable=1): every address is
            // every IPv4 address.
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(fail)?;
                (socket, SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            }
            Err(e) => return Err(fail(e)),
        },
    };
    socket.set_reuse_address(true).map_err(fail)?;
    if shared {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(LISTEN_BACKLOG).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// The first port an unprivileged process may listen on: Linux's
/// `net.ipv4.ip_unprivileged_port_start` (for IPv6 too), 1024 unless moved.
fn unprivileged_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Opens `n` listening sockets at `bind` for `n` workers, all before any
/// worker starts, so that every start error is reported once.
///
/// One worker gets one socket as [`listen`] makes it: no SO_REUSEPORT.
/// Several get one socket each with SO_REUSEPORT, which lets them share the
/// port while the kernel spreads new connections over them (by a hash of
/// the connection's addresses and ports). SO_REUSEPORT would also let a
/// second monoloop started on the same port by mistake silently join the
/// group and take part of the connections; so when a port is given, a probe
/// socket without the option is bound to it first, and "address in use" is
/// reported as it is for one worker. With port 0 the first socket picks the
/// port and the others join it.
pub fn listen_group(bind: Bind, n: usize) -> Result<Vec<mio::net::TcpListener>, ListenError> {
    if n <= 1 {
        return Ok(vec![listen_with(bind, false)?]);
    }
    if bind.port() != 0 {
        // Dropped at once: it only asks whether anyone holds the port.
        drop(listen_with(bind, false)?);
    }
    let first = listen_with(bind, true)?;
    let port = first
        .local_addr()
        .map_err(|e| ListenError::Other(bind, e))?
        .port();
    let bind = bind.on(port);
    let mut all = vec![first];
    for _ in 1..n {
        all.push(listen_with(bind, true)?);
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
///
/// On x86-64 Linux it is the `syscall` instruction itself ([`raw`]), not
/// glibc's `recv`: that is a cancellation point, and once the process has
/// a second thread (`--workers 2` and up) glibc takes its slower
/// cancellable path on every call (docs/benchmarks.md, "Issue 23, the
/// cost of workers"). monoloop never cancels a thread.
#[inline]
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the kernel
    // writes at most that many, and no address is asked for.
    return unsafe {
        raw::call6(
            libc::SYS_recvfrom,
            [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
        )
    };
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        // SAFETY: as above.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// One `send(2)` on a connected, non-blocking socket, as `Write::write`
/// does it (`MSG_NOSIGNAL`: a closed peer is an `EPIPE`, never a signal).
/// On x86-64 Linux, the `syscall` instruction itself, as [`recv`] is.
#[inline]
pub fn send(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL as usize;
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes; no address
    // is given.
    return unsafe {
        raw::call6(
            libc::SYS_sendto,
            [
                fd as usize,
                bytes.as_ptr() as usize,
                bytes.len(),
                flags,
                0,
                0,
            ],
        )
    };
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        // SAFETY: as above.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), flags as i32) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// A system call made with the `syscall` instruction, as the x86-64 Linux
/// ABI defines it: the number in `rax`, arguments in `rdi`, `rsi`, `rdx`,
/// `r10`, `r8`, `r9`; the result in `rax`, `-errno` on failure; `rcx` and
/// `r11` overwritten. No libc in between: no cancellation point, no
/// `errno` to write and read back.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod raw {
    use std::io;

    /// # Safety
    /// `args` must be what system call `nr` expects: pointers valid for
    /// what the call reads or writes through them.
    #[inline(always)]
    pub unsafe fn call6(nr: libc::c_long, args: [usize; 6]) -> io::Result<usize> {
        let ret: isize;
        // SAFETY: the caller's; the asm follows the kernel's ABI above.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") args[0],
                in("rsi") args[1],
                in("rdx") args[2],
                in("r10") args[3],
                in("r8") args[4],
                in("r9") args[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        // -4095..-1 are errors (the kernel's -errno); anything else is the
        // result.
        if (-4095..0).contains(&ret) {
            Err(io::Error::from_raw_os_error(-ret as i32))
        } else {
            Ok(ret as usize)
        }
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
/// a reset). Zero means the peer cannot have read a byte of ours yet;
/// `None` that the kernel did not say (an error, or a kernel older than
/// 4.1 whose TCP_INFO stops before the field). Read only when a connection
/// ends without a byte from its peer.
pub fn bytes_acked(fd: RawFd) -> Option<u64> {
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
        let end =
            std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + std::mem::size_of::<u64>();
        (rc == 0 && len as usize >= end).then_some(info.tcpi_bytes_acked)
    }
}

/// TCP keepalive, as the kernel is told it: after `idle` with no segment
/// from the peer, up to `probes` probes `interval` apart; a peer that
/// answers none is closed (the socket fails with ETIMEDOUT). Bytes the
/// peer leaves unacknowledged for [`gives_up`](Self::gives_up) close it
/// too (TCP_USER_TIMEOUT): keepalive probes only a connection with
/// nothing in flight, and without it a machine gone while it was owed
/// bytes would be retried for about 15 minutes (`tcp_retries2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub probes: u32,
}

impl Keepalive {
    /// Sized from one span of silence, Redis's `tcp-keepalive` rule: the
    /// first probe after `silence` (whole seconds, at least 1, at most the
    /// kernel's 32767), then three, a third of it apart (at least 1 s). A
    /// peer whose machine is gone is closed about `2 × silence` after it
    /// last said anything.
    pub fn after(silence: Duration) -> Self {
        let idle = silence.as_secs_f64().ceil().clamp(1.0, 32767.0) as u64;
        Self {
            idle: Duration::from_secs(idle),
            interval: Duration::from_secs((idle / 3).max(1)),
            probes: 3,
        }
    }

    /// How long a peer may stay silent to every probe, or leave bytes
    /// unacknowledged, before it is closed.
    pub fn gives_up(&self) -> Duration {
        self.idle + self.interval * self.probes
    }
}

/// Turns on TCP keepalive, as `k` says, on `socket`. Set on a listener, it
/// holds for every socket the listener accepts: Linux copies a listener's
/// socket options to each connection `accept` returns (the test below
/// checks it), so a connection costs no system call for it.
pub fn keepalive(socket: &impl std::os::fd::AsFd, k: Keepalive) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval)
            .with_retries(k.probes),
    )?;
    socket.set_tcp_user_timeout(Some(k.gives_up()))
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
    /// recv and send say the kernel's errors as `io::Error`s, as libc's
    /// would: a descriptor that is no socket, nothing to read yet, a peer
    /// gone (EPIPE, never SIGPIPE: MSG_NOSIGNAL).
    #[test]
    fn recv_and_send_report_the_kernels_errors() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/dev/null").unwrap();
        let e = recv(file.as_raw_fd(), &mut [0u8; 4]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let e = recv(server.as_raw_fd(), &mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(send(client.as_raw_fd(), b"ping").unwrap(), 4);
        server.set_nonblocking(false).unwrap();
        let mut got = [0u8; 4];
        assert_eq!(recv(server.as_raw_fd(), &mut got).unwrap(), 4);
        assert_eq!(&got, b"ping");
        drop(client);
        let mut rest = Vec::new();
        let _ = server.read_to_end(&mut rest);
        // The peer is gone: the first send may still be taken, a later one
        // fails with EPIPE or a reset, and no signal kills the test.
        let failed = (0..50).find_map(|_| send(server.as_raw_fd(), b"x").err());
        let e = failed.expect("sending to a closed peer never failed");
        assert!(
            matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)),
            "{e}"
        );
    }

    #[test]
    fn bytes_acked_counts_only_acknowledged_data() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        assert_eq!(
            bytes_acked(server.as_raw_fd()),
            Some(0),
            "the handshake is not data"
        );
        server.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while bytes_acked(server.as_raw_fd()) < Some(5) {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        socket2::SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(client);
        let mut buf = [0u8; 8];
        assert!(server.read(&mut buf).is_err(), "a reset");
        assert_eq!(bytes_acked(server.as_raw_fd()), Some(5));
        // A descriptor that is no socket: the kernel does not say.
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(bytes_acked(file.as_raw_fd()), None);
    }

    fn at(addr: &str) -> Bind {
        Bind::Addr(addr.parse().unwrap())
    }

    /// One listener at `bind`.
    fn one(bind: Bind) -> Result<mio::net::TcpListener, ListenError> {
        listen_group(bind, 1).map(|mut group| group.remove(0))
    }

    #[test]
    fn second_listener_on_the_same_port_is_in_use() {
        let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        match listen(addr) {
            Err(e @ ListenError::InUse(_)) => {
                assert_eq!(e.to_string(), format!("{addr}: already in use"))
            }
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    #[test]
    fn every_address_is_one_socket_for_both_families() {
        let any = one(Bind::Any(0)).unwrap();
        let port = any.local_addr().unwrap().port();
        for client in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
            if client.starts_with('[') && std::net::TcpListener::bind("[::1]:0").is_err() {
                eprintln!("skipped: IPv6 loopback is not available here");
                continue;
            }
            std::net::TcpStream::connect(&client).unwrap();
        }
        // Both families' wildcards are taken.
        assert!(matches!(one(Bind::Any(port)), Err(ListenError::InUse(_))));
        let v4 = format!("0.0.0.0:{port}");
        assert!(matches!(one(at(&v4)), Err(ListenError::InUse(_))));
    }

    #[test]
    fn an_ipv6_wildcard_leaves_ipv4_to_its_own_listener() {
        let Ok(v6) = one(at("[::]:0")) else {
            eprintln!("skipped: IPv6 is not available here");
            return;
        };
        let port = v6.local_addr().unwrap().port();
        // As in nginx: 0.0.0.0:P beside [::]:P.
        one(at(&format!("0.0.0.0:{port}"))).unwrap();
    }

    #[test]
    fn errors_say_what_to_do() {
        let privileged = ListenError::Privileged(at("0.0.0.0:80"), 1024).to_string();
        assert!(
            privileged.starts_with(
                "0.0.0.0:80: permission denied: a port below 1024 needs the \
                 CAP_NET_BIND_SERVICE capability: give it to the binary (setcap \
                 'cap_net_bind_service=+ep' /"
            ),
            "{privileged}"
        );
        assert!(privileged.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"));
        assert!(privileged.contains("socket activation"));
        assert!(!privileged.contains('\n'));
        assert!(matches!(
            one(at("192.0.2.1:0")),
            Err(ListenError::NotHere(_))
        ));
        assert_eq!(
            ListenError::NotHere(at("192.0.2.1:80")).to_string(),
            "192.0.2.1:80: not an address of this machine (ip addr lists them; \
             0.0.0.0 or :PORT is every address)"
        );
        assert_eq!(
            ListenError::InUse(Bind::Any(80)).to_string(),
            ":80: already in use"
        );
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
        let group = listen_group(at("127.0.0.1:0"), 3).unwrap();
        let ports: Vec<u16> = group
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
        let addr = Bind::Addr(group[0].local_addr().unwrap());
        // A second server, with several workers or one, is refused.
        assert!(matches!(listen_group(addr, 2), Err(ListenError::InUse(_))));
        assert!(matches!(listen_group(addr, 1), Err(ListenError::InUse(_))));
        // Every address, with several workers: one port.
        let group = listen_group(Bind::Any(0), 2).unwrap();
        let port = group[0].local_addr().unwrap().port();
        assert_eq!(group[1].local_addr().unwrap().port(), port);
    }

    #[test]
    fn keepalive_is_sized_from_the_silence_it_allows() {
        let k = Keepalive::after(Duration::from_secs(30));
        assert_eq!(
            (k.idle, k.interval, k.probes),
            (Duration::from_secs(30), Duration::from_secs(10), 3)
        );
        assert_eq!(k.gives_up(), Duration::from_secs(60));
        // Fractions round up; the kernel counts whole seconds, at least 1.
        let k = Keepalive::after(Duration::from_millis(500));
        assert_eq!(
            (k.idle, k.interval),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        let k = Keepalive::after(Duration::from_secs(1 << 20));
        assert_eq!(k.idle, Duration::from_secs(32767));
    }

    /// Set on the listener, the options hold on the sockets it accepts:
    /// read back from one with getsockopt.
    #[test]
    fn keepalive_set_on_a_listener_holds_on_what_it_accepts() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let k = Keepalive::after(Duration::from_secs(7));
        keepalive(&listener, k).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        let s = socket2::SockRef::from(&accepted);
        assert!(s.keepalive().unwrap(), "SO_KEEPALIVE");
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(2));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 3);
        assert_eq!(s.tcp_user_timeout().unwrap(), Some(Duration::from_secs(13)));
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
