//! The `monoloop` binary: parse the command line, set up logging, run.
//! Everything else is in the library (see `src/lib.rs` for the tour).

use std::process::ExitCode;

use monoloop::config::{self, Parsed, USAGE};
use monoloop::event_loop::Exit;

fn main() -> ExitCode {
    let config = match config::parse(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Client(client)) => {
            init_logging(client.log_level);
            return match monoloop::client::run(&client) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("monoloop {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level);
    match monoloop::run(&config) {
        Ok(Exit::Drained) => ExitCode::SUCCESS,
        Ok(Exit::Aborted) => ExitCode::from(1),
        Err(e @ monoloop::RunError::Tls(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr with timestamps. In UTC: a local offset cannot be read
/// reliably once a process may have threads, and logs compare better in UTC.
fn init_logging(level: log::LevelFilter) {
    // Fails only if a logger is already set, which cannot happen here.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_utc_timestamps()
        .init();
}
