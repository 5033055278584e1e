//! The `monoloop` binary: parse the command line, set up logging, run.
//! Everything else is in the library (see `src/lib.rs` for the tour).
//!
//! Every message here goes through `logging::to_stderr` / `to_stdout`, which
//! never panic: a closed pipe on either must not turn an exit status into a
//! SIGABRT. The error that ends a server goes through `error_to_stderr`,
//! which the journal files at error priority.

use std::process::ExitCode;

use monoloop::config::{self, Parsed};
use monoloop::event_loop::Exit;
use monoloop::logging::{self, error_to_stderr, to_stderr, to_stdout};

fn main() -> ExitCode {
    let config = match config::parse(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Client(client)) => {
            logging::init(client.log_level);
            return match monoloop::client::run(&client) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    to_stderr(&format!("error: {e}\n"));
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Parsed::Help(command)) => {
            to_stdout(&config::usage(command));
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            to_stdout(&format!("{}\n", monoloop::build::describe()));
            return ExitCode::SUCCESS;
        }
        #[cfg(feature = "manual")]
        Ok(Parsed::Man) => {
            to_stdout(&config::man_page());
            return ExitCode::SUCCESS;
        }
        #[cfg(feature = "manual")]
        Ok(Parsed::Completions(shell)) => {
            to_stdout(&config::completions(shell));
            return ExitCode::SUCCESS;
        }
        // One line and a hint, so that the problem stays on screen; the
        // help is a command away.
        Err(e) => {
            error_to_stderr(&format!("error: {e}\n{}\n", e.hint()));
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_level);
    match monoloop::run(&config) {
        Ok(Exit::Drained) => ExitCode::SUCCESS,
        Ok(Exit::Aborted) => ExitCode::from(1),
        Err(e @ (monoloop::RunError::Tls(_) | monoloop::RunError::Usage(_))) => {
            error_to_stderr(&format!("error: {e}\n"));
            ExitCode::from(2)
        }
        Err(e) => {
            error_to_stderr(&format!("error: {e}\n"));
            ExitCode::FAILURE
        }
    }
}
