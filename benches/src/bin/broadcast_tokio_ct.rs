//! The broadcast relay on tokio's current-thread runtime, written the way
//! tokio's own chat example writes it: a `tokio::sync::broadcast` channel,
//! a task per connection reading lines and publishing them, and the same
//! task writing what others published. Each line is framed once, as
//! `[Broadcast] LINE\n`, and shared (`Arc<[u8]>`), like monoloop's.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    monoloop_bench::raise_fd_limit();
    let listener = TcpListener::bind(monoloop_bench::listen_arg()).await?;
    monoloop_bench::announce("tokio-ct broadcast", listener.local_addr()?);
    // Roomy enough that a receiver which keeps up never lags.
    let (tx, _) = broadcast::channel::<(u64, Arc<[u8]>)>(65536);
    let mut next_id = 0u64;
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        next_id += 1;
        let id = next_id;
        let tx = tx.clone();
        let mut rx = tx.subscribe();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => {
                            let framed: Arc<[u8]> = format!("[Broadcast] {line}\n").into_bytes().into();
                            let _ = tx.send((id, framed));
                        }
                        _ => return,
                    },
                    msg = rx.recv() => match msg {
                        Ok((from, bytes)) if from != id => {
                            if write.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        // A receiver that fell behind by the whole channel
                        // loses lines: tokio's broadcast semantics.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    },
                }
            }
        });
    }
}
