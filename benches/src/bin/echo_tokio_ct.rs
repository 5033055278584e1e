//! Echo on tokio's current-thread runtime; the server itself is
//! `monoloop_bench::tokio_echo`, shared with the other tokio variant.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    monoloop_bench::tokio_echo("tokio-ct").await
}
