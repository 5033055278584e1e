//! The command line: options, defaults, validation and the usage text.
//!
//! [`parse()`] turns the arguments into a [`Config`] (or a [`ClientConfig`],
//! or a request for the help or the version) or says exactly what is
//! wrong, in one line. It opens no socket, reads no file and resolves no
//! name (a `--listen` or `--metrics` host name is kept as given: `lib.rs`
//! resolves it at start); the one look outside is `file --root`, which
//! must name an existing directory, so that a typo exits 2 at once.
//! `main.rs` decides what to do with the outcome (print the help, print
//! the problem and a hint and exit 2, or run), and `event_loop/` uses the
//! values.
//! [`usage()`] assembles the help, whole or for one command.
//!
//! By concern, in reading order:
//! - `model.rs`: what a run needs ([`Config`], [`Mode`], [`ServerOptions`],
//!   [`ClientConfig`], ...) and every default;
//! - `parse.rs`: the arguments read into the model, and every problem
//!   worded;
//! - `values.rs`: one option's value from its text (seconds, counts,
//!   sizes, ...);
//! - `listen.rs`: `--listen` (repeated) and `--metrics`: an address, a
//!   host name or a port alone;
//! - `cluster.rs`: `--cluster URL` and the options that need it, for the
//!   relays (broadcast, chat);
//! - `options.rs`: which command takes which option, and what to say of
//!   one given to the wrong command or mistyped;
//! - `usage.rs`: the help text, with the test that its defaults are the
//!   code's;
//! - `manual.rs` (with the default `manual` feature): the help read back
//!   into a man page and shell completion scripts (the hidden `--man` and
//!   `--completions SHELL`).
//!
//! Everything the rest of the crate uses is re-exported here, so it is
//! `crate::config::Config`, not `crate::config::model::Config`.
//!
//! Below the command line, this module reads only plain types of other
//! modules: `edge.rs`'s options (allow, deny, PROXY), the Redis URL
//! (`cluster/url.rs`, which parses it), `protocol`'s `Limits` (built by
//! [`ServerOptions::limits`]), broadcast's default prefix and how many
//! listeners a loop can hold (`tokens.rs`). It knows nothing of the loop,
//! connections or sockets.

#[cfg(feature = "cluster")]
mod cluster;
#[cfg(not(feature = "cluster"))]
#[path = "no_cluster.rs"]
mod cluster;
mod listen;
#[cfg(feature = "manual")]
mod manual;
mod model;
mod options;
mod parse;
mod usage;
mod values;

#[cfg(feature = "manual")]
pub use manual::{completions, man_page, Shell};
pub use model::{
    ClientConfig, ClientTls, ClusterOptions, Command, Config, Listen, Mode, ServerOptions,
    ServerTls, Workers, DEFAULT_PORT, DEFAULT_TLS_PORT,
};
pub use parse::{parse, Parsed, UsageError};
pub use usage::usage;
