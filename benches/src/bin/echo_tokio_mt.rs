//! Echo on tokio's multi-thread runtime (a worker per core); the server itself is
//! `monoloop_bench::tokio_echo`, shared with the other tokio variant.

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    monoloop_bench::tokio_echo("tokio-mt").await
}
