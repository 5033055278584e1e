//! Shared bits of the benchmark binaries: the command line every comparison
//! server accepts (`--listen ADDR`), pinning a process to one core, and the
//! tokio echo server that both tokio variants run on their own runtime.

use std::net::SocketAddr;

/// The buffer size every server uses per read, monoloop's included.
pub const BUF: usize = 64 * 1024;

/// `--listen ADDR` from the arguments, or 127.0.0.1:0.
pub fn listen_arg() -> SocketAddr {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .map(|a| a.parse().expect("--listen IP:PORT"))
        .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap())
}

/// A libc return code as a `Result`, the error naming the call (for the
/// floors written straight against libc).
pub fn check(rc: libc::c_int, what: &str) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

/// Says where the server listens, the way monoloop does, so that one
/// harness can start them all.
pub fn announce(name: &str, addr: SocketAddr) {
    eprintln!("{name} listening on {addr}");
}

/// Pins the calling thread (and what it later spawns) to `cpu`.
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity
    // only touch the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raises the soft descriptor limit to the hard one.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Echo on tokio, written the way tokio's own examples write it: a task per
/// connection, read into a buffer, `write_all`. The caller picks the
/// runtime.
pub async fn tokio_echo(name: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raise_fd_limit();
    let listener = tokio::net::TcpListener::bind(listen_arg()).await?;
    announce(name, listener.local_addr()?);
    loop {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; BUF];
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if socket.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}
