//! The file server's floor: `NAME\n` in, the file out with `sendfile(2)`,
//! written straight against epoll with libc. Edge-triggered; each event
//! sends until the socket refuses (`EAGAIN`) or the file ends, and a
//! transfer keeps EPOLLOUT registered from start to end, so it costs no
//! `epoll_ctl` on the way. No confinement beyond refusing `..` and absolute
//! names, no timeouts, no fairness bound: the least a readiness loop can do
//! to serve a file, for monoloop's file mode to be measured against.
//!
//!     file_epoll --listen 127.0.0.1:0 --root DIR

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;

use monoloop_bench::check;

/// One connection: the request line so far, then the open file.
#[derive(Default)]
struct Conn {
    request: Vec<u8>,
    file: i32,
    offset: libc::off_t,
    size: libc::off_t,
}

fn root_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--root")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .expect("--root DIR")
}

fn main() -> io::Result<()> {
    monoloop_bench::raise_fd_limit();
    let addr = monoloop_bench::listen_arg();
    let root = std::fs::File::open(root_arg())?;
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    monoloop_bench::announce("file-epoll", std_listener.local_addr()?);
    let lfd = std_listener.as_raw_fd();
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut buf = vec![0u8; 4096];
    // SAFETY: plain syscalls on descriptors this function owns; buffers are
    // live Rust allocations passed with their true lengths.
    unsafe {
        let ep = check(libc::epoll_create1(libc::EPOLL_CLOEXEC), "epoll_create1")?;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: lfd as u64,
        };
        check(
            libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, &mut ev),
            "epoll_ctl",
        )?;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        loop {
            let n = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1);
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::last_os_error());
            }
            for ev in &events[..n as usize] {
                let fd = ev.u64 as i32;
                if fd == lfd {
                    loop {
                        let c = libc::accept4(
                            lfd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        );
                        if c < 0 {
                            break;
                        }
                        let mut cev = libc::epoll_event {
                            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                            u64: c as u64,
                        };
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, &mut cev);
                        if conns.len() <= c as usize {
                            conns.resize_with(c as usize + 1, || None);
                        }
                        conns[c as usize] = Some(Conn {
                            file: -1,
                            ..Conn::default()
                        });
                    }
                    continue;
                }
                let Some(conn) = conns[fd as usize].as_mut() else {
                    continue;
                };
                let mut done = false;
                if conn.file < 0 {
                    // The request line.
                    loop {
                        let r = libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len());
                        if r <= 0 {
                            done = r == 0
                                || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock;
                            break;
                        }
                        conn.request.extend_from_slice(&buf[..r as usize]);
                        if conn.request.contains(&b'\n') || conn.request.len() > 4096 {
                            break;
                        }
                    }
                    if let Some(end) = conn.request.iter().position(|&b| b == b'\n') {
                        let name = &conn.request[..end];
                        let name = name.strip_suffix(b"\r").unwrap_or(name);
                        let bad = name.starts_with(b"/")
                            || name.split(|&b| b == b'/').any(|c| c == b"..");
                        if let (false, Ok(path)) = (bad, CString::new(name)) {
                            conn.file = libc::openat(
                                root.as_raw_fd(),
                                path.as_ptr(),
                                libc::O_RDONLY | libc::O_CLOEXEC,
                            );
                        }
                        if conn.file < 0 {
                            let msg = b"ERROR: File not found\n";
                            libc::write(fd, msg.as_ptr() as *const _, msg.len());
                            done = true;
                        } else {
                            let mut st: libc::stat = std::mem::zeroed();
                            libc::fstat(conn.file, &mut st);
                            conn.size = st.st_size;
                            // EPOLLOUT for the whole transfer: no toggling.
                            let mut m = libc::epoll_event {
                                events: (libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                                u64: fd as u64,
                            };
                            libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, &mut m);
                        }
                    }
                }
                if !done && conn.file >= 0 {
                    while conn.offset < conn.size {
                        let left = (conn.size - conn.offset) as usize;
                        let w = libc::sendfile(fd, conn.file, &mut conn.offset, left);
                        if w <= 0 {
                            let e = io::Error::last_os_error();
                            done = w == 0 || e.kind() != io::ErrorKind::WouldBlock;
                            break;
                        }
                    }
                    done |= conn.offset >= conn.size;
                }
                if done {
                    if conn.file >= 0 {
                        libc::close(conn.file);
                    }
                    conns[fd as usize] = None;
                    libc::close(fd);
                }
            }
        }
    }
}
