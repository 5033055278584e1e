//! Echo with a thread per connection and blocking sockets: the design the
//! readiness loop replaces.

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    monoloop_bench::raise_fd_limit();
    let listener = TcpListener::bind(monoloop_bench::listen_arg())?;
    monoloop_bench::announce("threads", listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        // Small stacks: each connection's thread only loops over a buffer.
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = vec![0u8; monoloop_bench::BUF];
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("cannot spawn: {e}");
        }
    }
    Ok(())
}
