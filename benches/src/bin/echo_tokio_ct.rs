//! Echo on tokio's current-thread runtime, written the way tokio's own
//! examples write it: a task per connection, read into a buffer, write_all.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    monoloop_bench::raise_fd_limit();
    let listener = TcpListener::bind(monoloop_bench::listen_arg()).await?;
    monoloop_bench::announce("tokio-ct", listener.local_addr()?);
    loop {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; monoloop_bench::BUF];
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
