//! Echo written straight against epoll with libc: no abstraction at all,
//! the floor of what a readiness loop can cost. Edge-triggered; a short read
//! counts as drained (the same rule monoloop uses); replies are written at
//! once and only a leftover waits for EPOLLOUT.

use std::io;

use monoloop_bench::check;

fn main() -> io::Result<()> {
    monoloop_bench::raise_fd_limit();
    let addr = monoloop_bench::listen_arg();
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    monoloop_bench::announce("epoll", std_listener.local_addr()?);
    use std::os::fd::AsRawFd;
    let lfd = std_listener.as_raw_fd();
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
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut buf = vec![0u8; monoloop_bench::BUF];
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
                let flags = ev.events;
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
                        let one: libc::c_int = 1;
                        libc::setsockopt(
                            c,
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            &one as *const _ as *const libc::c_void,
                            4,
                        );
                        let mut cev = libc::epoll_event {
                            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                            u64: c as u64,
                        };
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, &mut cev);
                        if pending.len() <= c as usize {
                            pending.resize_with(c as usize + 1, Vec::new);
                        }
                    }
                    continue;
                }
                let out = &mut pending[fd as usize];
                let mut closed = false;
                if flags & libc::EPOLLOUT as u32 != 0 && !out.is_empty() {
                    let w = libc::write(fd, out.as_ptr() as *const _, out.len());
                    if w > 0 {
                        out.drain(..w as usize);
                    }
                    if out.is_empty() {
                        let mut m = libc::epoll_event {
                            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                            u64: fd as u64,
                        };
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, &mut m);
                    }
                }
                let hup = flags & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
                if flags & libc::EPOLLIN as u32 != 0 || hup {
                    loop {
                        let r = libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len());
                        if r == 0 {
                            closed = true;
                            break;
                        }
                        if r < 0 {
                            closed = io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock;
                            break;
                        }
                        let r = r as usize;
                        if out.is_empty() {
                            let w = libc::write(fd, buf.as_ptr() as *const _, r);
                            let w = if w < 0 { 0 } else { w as usize };
                            if w < r {
                                out.extend_from_slice(&buf[w..r]);
                                let mut m = libc::epoll_event {
                                    events: (libc::EPOLLIN
                                        | libc::EPOLLOUT
                                        | libc::EPOLLRDHUP
                                        | libc::EPOLLET)
                                        as u32,
                                    u64: fd as u64,
                                };
                                libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, &mut m);
                            }
                        } else {
                            out.extend_from_slice(&buf[..r]);
                        }
                        if r < buf.len() && !hup {
                            break;
                        }
                    }
                }
                if closed {
                    out.clear();
                    libc::close(fd);
                }
            }
        }
    }
}
