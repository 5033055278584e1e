//! Echo on monoio's io_uring runtime (issue 23): the completion-based
//! variant a user chasing the fewest syscalls would pick, beside monoloop's
//! readiness loop. The same echo as `monoloop_bench::tokio_echo`: a task
//! per connection, TCP_NODELAY, a read of up to `BUF` bytes, then the whole
//! of it written back. One thread (monoio runs a runtime per thread, and
//! this starts one), on the io_uring driver alone: the crate is built
//! without its epoll fallback, so this either runs on io_uring or fails to
//! start. monoio's buffers are owned ("rent"): a read takes the buffer and
//! hands it back filled, the write takes it and hands it back sent.

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio::{IoUringDriver, RuntimeBuilder};

use monoloop_bench::{announce, listen_arg, raise_fd_limit, BUF};

fn main() -> std::io::Result<()> {
    raise_fd_limit();
    RuntimeBuilder::<IoUringDriver>::new()
        .build()?
        .block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let listener = TcpListener::bind(listen_arg())?;
    announce("monoio", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        monoio::spawn(echo(socket));
    }
}

async fn echo(mut socket: TcpStream) {
    let mut buf = Vec::with_capacity(BUF);
    loop {
        let (read, filled) = socket.read(buf).await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (written, mut sent) = socket.write_all(filled).await;
        if written.is_err() {
            return;
        }
        sent.clear();
        buf = sent;
    }
}
