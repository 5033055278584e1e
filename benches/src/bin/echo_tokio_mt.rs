//! Echo on tokio's multi-thread runtime; the server itself is
//! `monoloop_bench::tokio_echo`, shared with the other tokio variant.
//!
//! `--threads N` sets the runtime's worker threads (the scaling scenario
//! gives it as many as monoloop has workers); without it, tokio's default:
//! one per core this process may run on.

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .map(|n| {
            n.parse::<usize>()
                .expect("--threads N (a positive integer)")
        });
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = threads {
        runtime.worker_threads(n);
    }
    runtime
        .build()?
        .block_on(monoloop_bench::tokio_echo("tokio-mt"))
}
