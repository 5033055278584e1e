//! Under systemd, as systemd does it: a listening socket passed as
//! descriptor 3 with `LISTEN_FDS`/`LISTEN_PID`, and `NOTIFY_SOCKET` pointing
//! at a datagram socket the test reads.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_socket_activated_server_serves_the_socket_it_was_given() {
    for workers in ["1", "3"] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = Server::start_exact(activated(&listener, &["echo", "--workers", workers]));
        let line = server.wait_for_log("listening on");
        assert!(line.contains(&addr.to_string()), "{line}");
        assert!(line.ends_with("(socket activation)"), "{line}");
        for i in 0..6 {
            let mut s = connect(addr);
            let msg = format!("activated {i}");
            s.write_all(msg.as_bytes()).unwrap();
            expect(&mut s, msg.as_bytes());
        }
    }
}

#[test]
fn every_passed_socket_is_served() {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.2:0").unwrap();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_monoloop"))
        .args(["echo", "--workers", "2"]);
    // SAFETY: dup2 and close are async-signal-safe; they run in the child
    // before exec. Through 100 and 101 first, so that neither socket is
    // overwritten on its way to 3 and 4.
    unsafe {
        cmd.pre_exec(move || {
            for (from, via) in [(fa, 100), (fb, 101)] {
                if libc::dup2(from, via) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (via, to) in [(100, 3), (101, 4)] {
                if libc::dup2(via, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(via);
            }
            Ok(())
        });
    }
    let mut server = Server::start_exact(cmd);
    server.wait_for_log(&format!(
        "listening on {} (socket activation)",
        b.local_addr().unwrap()
    ));
    for addr in [a.local_addr().unwrap(), b.local_addr().unwrap()] {
        let mut s = connect(addr);
        s.write_all(b"both").unwrap();
        expect(&mut s, b"both");
    }
}

#[test]
fn listen_and_socket_activation_together_are_an_argument_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = activated(&listener, &["echo", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--listen") && err.contains("LISTEN_FDS"),
        "{err}"
    );
}

#[test]
fn a_passed_socket_that_is_not_a_tcp_listener_is_refused_at_start() {
    // `ListenDatagram=`, and `Accept=yes` (one accepted connection per
    // instance): each is named, and nothing is served.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    for (fd, what) in [
        (udp.as_raw_fd(), "not a stream socket"),
        (accepted.as_raw_fd(), "not a listening socket (Accept=yes?)"),
    ] {
        let out = output_within(activated(&fd, &["echo"]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("systemd passed descriptor 3, which is") && err.contains(what),
            "{err}"
        );
        assert!(!err.contains("listening on"), "{err}");
    }
}

/// Reads datagrams until one contains `want`, or fails after `PATIENCE`.
fn wait_for(socket: &UnixDatagram, want: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 512];
    loop {
        assert!(Instant::now() < deadline, "no {want:?} from the server");
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains(want) {
                return msg;
            }
        }
    }
}

/// A datagram socket to stand for systemd's `NOTIFY_SOCKET`, in a fresh
/// directory named after `tag`: (the directory, to remove at the end; the
/// socket's path, for the server; the socket, reading with a 200 ms
/// timeout).
fn notify_socket(tag: &str) -> (PathBuf, PathBuf, UnixDatagram) {
    let dir = std::env::temp_dir().join(format!("monoloop-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (dir, path, socket)
}

#[test]
fn readiness_reload_stopping_and_the_watchdog_are_told() {
    let (dir, path, socket) = notify_socket("notify");
    let mut cmd = binary();
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut server = Server::start_cmd(cmd, &["echo"]);
    wait_for(&socket, "READY=1");
    // The watchdog, at half of WATCHDOG_USEC: several within a second.
    let started = Instant::now();
    for _ in 0..3 {
        wait_for(&socket, "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // Reloading, even with nothing to reload: under Type=notify-reload
    // systemd waits for RELOADING=1, then READY=1.
    server.signal(libc::SIGHUP);
    let reloading = wait_for(&socket, "RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    wait_for(&socket, "READY=1");
    server.wait_for_log("nothing to reload");
    server.signal(libc::SIGTERM);
    wait_for(&socket, "STOPPING=1");
    server.wait_exit(Duration::from_secs(10));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The thread of process `pid` named `name` (`/proc/PID/task/*/comm`).
fn thread_named(pid: u32, name: &str) -> i32 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim() == name).then(|| t.file_name().to_str()?.parse().ok())?
        })
        .next()
        .unwrap_or_else(|| panic!("no thread {name} in process {pid}"))
}

/// One thread of another process, stopped as a loop stuck in a long
/// computation stands still, while the process's other threads run on:
/// ptrace(2)'s PTRACE_SEIZE, then PTRACE_INTERRUPT, stop that thread alone.
/// Dropping it lets the thread go (from the thread that froze it, as
/// ptrace requires).
struct Frozen(libc::pid_t);

impl Frozen {
    /// `None` where this process may not trace (a sandbox that forbids
    /// ptrace).
    fn new(tid: libc::pid_t) -> Option<Frozen> {
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: ptrace on a thread of our own child process, with no
        // memory of ours passed; waitpid writes into the int we own.
        unsafe {
            if libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) != 0 {
                return None;
            }
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null), 0);
            let mut status = 0;
            assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid);
        }
        Some(Frozen(tid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: as in `new`; the thread is in a ptrace stop.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.0, null, null) };
    }
}

/// Issue 21: with several workers, the watchdog is told the server is
/// alive only while every worker's loop turns; a worker that stands still
/// stops it, and says so, and one that turns again resumes it.
#[test]
fn the_watchdog_hears_from_every_worker_or_not_at_all() {
    let (dir, path, socket) = notify_socket("watchdog");
    let mut cmd = binary();
    // Told every 200 ms while all is well.
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID");
    let mut server = Server::start_cmd(cmd, &["echo", "--workers", "2"]);
    wait_for(&socket, "READY=1");
    let started = Instant::now();
    for _ in 0..3 {
        wait_for(&socket, "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let Some(frozen) = Frozen::new(thread_named(server.pid(), "worker-1")) else {
        common::skip::skip("this sandbox does not allow ptrace(2), needed to stop one worker");
        return;
    };
    server.wait_for_log("worker 1's loop has not turned");
    // What was sent before the line is read and forgotten; after it,
    // nothing for a second (five of the periods in which it was told).
    let mut buf = [0u8; 512];
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while socket.recv(&mut buf).is_ok() {}
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    match socket.recv(&mut buf) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        Ok(n) => panic!(
            "told {:?} while worker 1 stood still",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    drop(frozen);
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    wait_for(&socket, "WATCHDOG=1");
    server.wait_for_log("worker 1's loop turns again");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_abstract_notify_socket_works_too() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("monoloop-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut cmd = binary();
    cmd.env("NOTIFY_SOCKET", format!("@{name}"));
    let _server = Server::start_cmd(cmd, &["echo"]);
    wait_for(&socket, "READY=1");
}

/// A pipe for a server's standard error, and `JOURNAL_STREAM` naming it,
/// as systemd sets both when a unit's output goes to the journal
/// (systemd.exec(5)): the read end, the write end, and the variable.
fn journal_pipe() -> (std::fs::File, std::fs::File, String) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own; each is
    // then owned by one File. fstat writes into the struct we own.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let (read, write) = (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        );
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fds[1], &mut st), 0);
        (read, write, format!("{}:{}", st.st_dev, st.st_ino))
    }
}

/// Issue 21: under the journal each line starts with its syslog priority
/// and has no timestamp of our own, so that `journalctl -p warning` shows
/// the warnings; a `JOURNAL_STREAM` that names another file changes
/// nothing.
#[test]
fn under_the_journal_lines_carry_their_priority_and_no_timestamp() {
    let timestamped = |l: &str| l.len() > 24 && l.as_bytes()[4] == b'-' && &l[23..24] == "Z";
    // A descriptor limit too low for --max-connections: a warning at start.
    let args = ["echo", "--max-connections", "1000"];
    let (read, write, stream) = journal_pipe();
    let mut cmd = with_fd_limit(64);
    cmd.args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("JOURNAL_STREAM", &stream)
        .stderr(write);
    let mut server = Server::start_logging_to(cmd, read);
    let warning = server.wait_for_log("file descriptors");
    assert!(
        warning.starts_with("<4>WARN  [monoloop] --max-connections 1000 needs"),
        "{warning}"
    );
    let listening = server.wait_for_log("listening on");
    assert!(
        listening.starts_with("<6>INFO  [monoloop] echo server listening on 127.0.0.1:"),
        "{listening}"
    );
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(10));
    let log = server.log();
    assert!(
        log.iter()
            .all(|l| l.starts_with('<') && !timestamped(&l[3..])),
        "{log:?}"
    );
    // The error that ends a process is filed as one too.
    let (read, write, stream) = journal_pipe();
    let mut cmd = binary();
    cmd.args(["echo", "--workers", "0"])
        .env("JOURNAL_STREAM", &stream)
        .stderr(write);
    let out = output_within_reading(cmd, read);
    assert!(out.starts_with("<3>error: "), "{out}");
    // Standard error elsewhere: the usual lines.
    let (read, write, _) = journal_pipe();
    let mut cmd = binary();
    cmd.args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("JOURNAL_STREAM", "1:1")
        .stderr(write);
    let mut server = Server::start_logging_to(cmd, read);
    let line = server.wait_for_log("listening on");
    assert!(timestamped(&line), "{line}");
}

/// Runs `cmd` to its end within `PATIENCE`, and returns what it wrote to
/// `stderr` (the read end of its standard error).
fn output_within_reading(mut cmd: Command, mut stderr: std::fs::File) -> String {
    use std::io::Read;
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = String::new();
    stderr.read_to_string(&mut out).unwrap();
    out
}

/// Issue 21: a reload that fails says why in the service's status
/// (`systemctl status`), between `RELOADING=1` and `READY=1` as
/// `Type=notify-reload` expects; one that works says so too.
#[cfg(feature = "tls")]
#[test]
fn a_failed_reload_tells_systemd_why() {
    let pki = common::tls::Pki::new("notify-reload");
    let (live, live_key) = pki.live_files();
    let (dir, path, socket) = notify_socket("status");
    let mut cmd = binary();
    cmd.env("NOTIFY_SOCKET", &path);
    let args = [
        "echo",
        "--workers",
        "2",
        "--tls-cert",
        &live,
        "--tls-key",
        &live_key,
    ];
    let server = Server::start_cmd(cmd, &args);
    wait_for(&socket, "READY=1");
    std::fs::write(&live_key, "not a key\n").unwrap();
    server.signal(libc::SIGHUP);
    wait_for(&socket, "RELOADING=1");
    let ready = wait_for(&socket, "READY=1");
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= in {ready:?}"));
    assert!(
        status.starts_with("TLS not reloaded, the old certificate stays: ")
            && status.contains("live-key.pem"),
        "{status}"
    );
    std::fs::copy(pki.path("server-key.pem"), &live_key).unwrap();
    server.signal(libc::SIGHUP);
    wait_for(&socket, "RELOADING=1");
    let ready = wait_for(&socket, "READY=1");
    assert!(
        ready.contains("STATUS=TLS reloaded: CN=localhost"),
        "{ready:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
