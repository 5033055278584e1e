//! systemd: socket activation and readiness notification, the two
//! conventions a service manager uses, each a few lines over the
//! environment and a datagram socket (sd_listen_fds(3), sd_notify(3)).
//!
//! - Socket activation ([`activated`]): when `LISTEN_PID` is this process's
//!   pid, `LISTEN_FDS` sockets start at descriptor 3 and are already
//!   listening; systemd keeps them open across restarts, so a restart
//!   refuses no client. The variables are unset once read, so that nothing
//!   this process starts takes them for its own.
//! - Notification ([`notify`]): when `NOTIFY_SOCKET` is set (a path, or
//!   `@name` for an abstract socket), one datagram per state: `READY=1`
//!   once listening, `STOPPING=1` when a drain begins, `RELOADING=1` (with
//!   `MONOTONIC_USEC`) and `READY=1` around a SIGHUP reload, as
//!   `Type=notify-reload` requires, the reload's outcome as `STATUS=`, and
//!   `WATCHDOG=1` at least every half of `WATCHDOG_USEC` from the loops' own
//!   timers ([`watchdog`]), so that a loop that stops turning is restarted
//!   (with several workers, any loop: `event_loop/time.rs`).
//!
//! Without the variables nothing here does anything. A failed notification
//! is ignored: the service manager's problem is never the server's.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// The first descriptor systemd passes.
const SD_LISTEN_FDS_START: RawFd = 3;

/// The sockets systemd passed, if this process was started by socket
/// activation. Unsets `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`.
pub fn activated() -> Vec<OwnedFd> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let ours = pid.and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let n = fds.and_then(|n| n.parse::<RawFd>().ok()).unwrap_or(0);
    if !ours || n <= 0 {
        return Vec::new();
    }
    (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n)
        // Only sockets are taken: a descriptor that is not one (a
        // misconfigured unit) is left alone rather than owned twice.
        .filter(|&fd| is_socket(fd))
        .map(|fd| {
            // SAFETY: fcntl on a descriptor systemd passed us; it only sets
            // a flag (no descriptor leaks into what we start).
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            // SAFETY: systemd passed this descriptor to this process for it
            // to own (LISTEN_PID is ours); nothing else in it claims it.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect()
}

/// `Ok` if `fd` is what monoloop can serve: a listening TCP socket. The
/// error says what it is instead, for a unit that passes something else
/// (`ListenDatagram=`, a Unix path, or `Accept=yes`, which passes one
/// accepted connection per instance rather than the listener).
pub fn check_listener(fd: &OwnedFd) -> Result<(), String> {
    let raw = fd.as_raw_fd();
    let domain = sockopt(raw, libc::SO_DOMAIN);
    let kind = sockopt(raw, libc::SO_TYPE);
    let listening = sockopt(raw, libc::SO_ACCEPTCONN);
    let what = if !matches!(domain, Some(libc::AF_INET | libc::AF_INET6)) {
        "not an IP socket (a Unix socket?)"
    } else if kind != Some(libc::SOCK_STREAM) {
        "not a stream socket (ListenDatagram=?)"
    } else if listening != Some(1) {
        "a connection, not a listening socket (Accept=yes?)"
    } else {
        return Ok(());
    };
    Err(format!(
        "systemd passed descriptor {raw}, which is {what}: monoloop serves TCP \
         listeners only (ListenStream= with Accept=no in the socket unit)"
    ))
}

/// An integer socket option of `fd`, or `None` if it cannot be read.
fn sockopt(fd: RawFd, name: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the int we own.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

/// True if `fd` is an open socket.
fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat writes into the struct we own; a closed descriptor
    // only makes it fail.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

/// Where notifications go, read once: `None` without `NOTIFY_SOCKET`.
fn target() -> &'static Option<(UnixDatagram, String)> {
    static TARGET: OnceLock<Option<(UnixDatagram, String)>> = OnceLock::new();
    TARGET.get_or_init(|| {
        let path = std::env::var("NOTIFY_SOCKET").ok()?;
        let socket = UnixDatagram::unbound().ok()?;
        Some((socket, path))
    })
}

/// Sends `state` (such as `READY=1`) to the service manager, if one asked.
pub fn notify(state: &str) {
    let Some((socket, path)) = target() else {
        return;
    };
    let _ = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            match std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()) {
                Ok(addr) => socket.send_to_addr(state.as_bytes(), &addr),
                Err(e) => Err(e),
            }
        }
        None => socket.send_to(state.as_bytes(), path),
    };
}

/// `RELOADING=1` with the monotonic clock, as `Type=notify-reload` wants.
pub fn reloading() {
    if target().is_none() {
        return;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// `READY=1` at the end of a reload, with `status` (one line) as the
/// service's status text if given (`systemctl status` shows it).
pub fn ready(status: Option<&str>) {
    match status {
        // A status is one line: a newline would end it.
        Some(s) => notify(&format!("READY=1\nSTATUS={}", s.replace('\n', " "))),
        None => notify("READY=1"),
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if it is set
/// and meant for this process (`WATCHDOG_PID`, when set, names it).
pub fn watchdog() -> Option<Duration> {
    static EVERY: OnceLock<Option<Duration>> = OnceLock::new();
    *EVERY.get_or_init(|| {
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    })
}
