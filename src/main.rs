//! The `monoloop` binary: parse the command line, set up logging, run.
//! Everything else is in the library (see `src/lib.rs` for the tour).

use std::process::ExitCode;

use monoloop::config::{self, Parsed, USAGE};
use monoloop::event_loop::Exit;

fn main() -> ExitCode {
    let config = match config::parse(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Run(config)) => config,
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
    // Timestamps in UTC: a local offset cannot be read reliably once a
    // process may have threads, and logs compare better in UTC anyway.
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .with_utc_timestamps()
        .init()
    {
        eprintln!("error: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    match monoloop::run(&config) {
        Ok(Exit::Drained) => ExitCode::SUCCESS,
        Ok(Exit::Aborted) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
