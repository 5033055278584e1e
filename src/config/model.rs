//! What a run needs, and every default: the types `parse.rs` fills in and
//! the rest of the crate reads.
//!
//! A server run is a [`Config`] (its [`Mode`], the [`ServerOptions`] every
//! mode shares, `--listen` and `--metrics` as given, the TLS files, the
//! relays' [`ClusterOptions`]); a
//! client run is a
//! [`ClientConfig`]. [`Command`] is the word after `monoloop` that chooses
//! between them. Each default is written once, here: in
//! [`ServerOptions::default`], or as a `DEFAULT_*` constant for a value that
//! is not a server option (the ports, the log level, the client's timeout,
//! broadcast's prefix, the cluster's). The help states them in its own words (`usage.rs`),
//! and a test there checks that the two agree.
//!
//! Nothing here reads the command line (`parse.rs`, with the converters in
//! `values.rs`), and nothing here is checked: the types say what a valid
//! command line means, `parse.rs` makes sure that is what they hold. The
//! TLS files are loaded by `tls.rs`, a `--listen` or `--metrics` host name
//! is resolved by `lib.rs`, and the edge options are `edge.rs`'s type.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "cluster")]
use crate::cluster::url::ClusterUrl;

/// The port served when `--listen` is not given: plain, and TLS. The help
/// states both from these.
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_TLS_PORT: u16 = 8443;

/// The address listened on when `--listen` is not given: loopback only,
/// so that a first run exposes nothing.
const DEFAULT_LISTEN_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// `--log-level`, for the servers and the client alike.
pub(super) const DEFAULT_LOG_LEVEL: log::LevelFilter = log::LevelFilter::Info;

/// The client's `--timeout`.
pub(super) const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Broadcast's `--prefix`: the protocol's own default, named here with the
/// others.
pub(super) const DEFAULT_BROADCAST_PREFIX: &str = crate::protocol::broadcast::DEFAULT_PREFIX;

/// `--cluster-prefix`: what the Redis keys start with.
#[cfg(feature = "cluster")]
pub(super) const DEFAULT_CLUSTER_PREFIX: &str = "monoloop";

/// `--cluster-outbox`, and the least it may be: room for what the relays
/// say while Redis is slow or away.
#[cfg(feature = "cluster")]
pub(super) const DEFAULT_CLUSTER_OUTBOX: usize = 4 << 20;
#[cfg(feature = "cluster")]
pub(super) const MIN_CLUSTER_OUTBOX: usize = 64 << 10;

/// Everything a server run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub server: ServerOptions,
    /// Every `--listen`, as given and in order (the default when none
    /// was): never empty. `lib.rs` resolves and binds them.
    pub listen: Vec<Listen>,
    /// True if `--listen` was given (not the default): systemd's socket
    /// activation and `--listen` cannot both say where to listen.
    pub listen_given: bool,
    /// `--metrics HOST:PORT`: where to serve /metrics and /healthz.
    pub metrics: Option<Listen>,
    /// `Some` when any `--tls-*` option was given.
    pub tls: Option<ServerTls>,
    /// `Some` with `--cluster` (broadcast and chat only).
    pub cluster: Option<ClusterOptions>,
    pub log_level: log::LevelFilter,
}

/// `--cluster` and the options that go with it: where Redis is, and how
/// the link uses it. Checked as a whole (`config/cluster.rs`); the URL's
/// syntax is `cluster/url.rs`'s, and its password prints as `***`.
#[cfg(feature = "cluster")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    pub url: ClusterUrl,
    /// `--cluster-prefix`: 1 to 64 of `A-Za-z0-9_.:-`.
    pub prefix: String,
    /// `--cluster-ca`: with `rediss://` only; `None`: the system's trust
    /// store.
    pub ca: Option<PathBuf>,
    /// `--cluster-outbox`, in bytes: at least 64 KiB.
    pub outbox: usize,
}

/// A build without the cluster has none to hold: it refuses `--cluster`.
#[cfg(not(feature = "cluster"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOptions {}

/// Which protocol the server speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// RFC 862 echo, optionally greeting and prefixing lines.
    Echo {
        greeting: Option<String>,
        prefix: Option<String>,
    },
    /// Every line to every other client, behind `prefix`.
    Broadcast { prefix: String },
    /// The line-based chat room.
    Chat,
    /// Files below `root`, one per connection; `sendfile`: on plain TCP,
    /// send them with `sendfile(2)` (unless `--no-sendfile`).
    File { root: PathBuf, sendfile: bool },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Echo { .. } => "echo",
            Mode::Broadcast { .. } => "broadcast",
            Mode::Chat => "chat",
            Mode::File { .. } => "file",
        }
    }
}

/// One `--listen` (or `--metrics`) as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// An IP address and port (`127.0.0.1:8080`, `[::1]:8080`): bound as
    /// is (an IPv6 one takes IPv6 clients only, as in nginx: `sys.rs`).
    Addr(SocketAddr),
    /// A host name and port (`localhost:8080`), resolved at start; the
    /// first address the resolver returns is bound.
    Host { host: String, port: u16 },
    /// A port alone (`:8080` or `8080`): every address, IPv4 and IPv6, on
    /// one dual-stack socket (`sys.rs` says how).
    Any(u16),
}

impl Listen {
    /// Where a server listens when `--listen` is not given: loopback, on
    /// the plain or the TLS port.
    pub(super) fn default_for(tls: bool) -> Self {
        let port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        Listen::Addr(SocketAddr::from((DEFAULT_LISTEN_IP, port)))
    }

    /// The port given.
    pub fn port(&self) -> u16 {
        match self {
            Listen::Addr(a) => a.port(),
            Listen::Host { port, .. } | Listen::Any(port) => *port,
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Addr(a) => a.fmt(f),
            Listen::Host { host, port } => write!(f, "{host}:{port}"),
            Listen::Any(port) => write!(f, ":{port}"),
        }
    }
}

/// The server's TLS files and choices, as given on the command line.
/// Checked and loaded by `tls.rs`, which says what is wrong with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub alpn: Vec<String>,
}

/// The client's TLS choices, as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure: bool,
}

/// What `monoloop client` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `HOST:PORT`, resolved when the client runs.
    pub target: String,
    /// Bound on resolving, connecting and (with `--tls`) the handshake,
    /// counted from the start; `None` (`--timeout 0`): no bound of ours,
    /// the connect lasts as long as the kernel keeps trying.
    pub timeout: Option<Duration>,
    /// `Some` with `--tls`.
    pub tls: Option<ClientTls>,
    pub log_level: log::LevelFilter,
}

/// The options every server mode shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    pub max_connections: usize,
    /// `None`: connections never time out.
    pub idle_timeout: Option<Duration>,
    pub write_limit: usize,
    pub drain_timeout: Duration,
    /// `None`: no periodic stats line (the final one is still logged).
    pub stats_interval: Option<Duration>,
    pub max_line: usize,
    /// How long a TLS client may take to finish its handshake.
    pub handshake_timeout: Duration,
    /// How long a prompt (chat username, file request) waits for its answer
    /// in all; `None`: no bound.
    pub request_timeout: Option<Duration>,
    /// `--access-log`: one line per connection at its close.
    pub access_log: bool,
    /// `--workers`: how many loops, each on its own thread.
    pub workers: Workers,
    /// Who may connect: PROXY protocol, allow and deny, limit per address.
    pub edge: crate::edge::EdgeOptions,
}

impl ServerOptions {
    /// What the protocols enforce on client input: the line limit, a line's
    /// deadline (the idle timeout from its first byte) and the prompts'.
    pub fn limits(&self) -> crate::protocol::Limits {
        crate::protocol::Limits {
            max_line: self.max_line,
            line_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
        }
    }
}

/// The defaults of every server option: what a server mode uses for an
/// option its command line leaves out. (`--listen`'s is
/// [`Listen::default_for`]; `--metrics` is off.)
impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Some(Duration::from_secs(30)),
            write_limit: 1024 * 1024,
            drain_timeout: Duration::from_secs(5),
            stats_interval: Some(Duration::from_secs(10)),
            max_line: 8192,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(30)),
            access_log: false,
            workers: Workers::Count(1),
            edge: crate::edge::EdgeOptions::default(),
        }
    }
}

/// How many workers `--workers` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Count(usize),
    /// One per core the process may run on, counted at start.
    Auto,
}

impl Workers {
    /// The number of workers, `auto` resolved.
    pub fn resolve(self) -> usize {
        match self {
            Workers::Count(n) => n,
            Workers::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The word after `monoloop`: a server mode, or the client. (Its lines in
/// the help are `usage.rs`'s.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Echo,
    Broadcast,
    Chat,
    File,
    Client,
}

impl Command {
    /// Every command, in the order the usage lists them.
    pub const ALL: [Command; 5] = [
        Command::Echo,
        Command::Broadcast,
        Command::Chat,
        Command::File,
        Command::Client,
    ];

    /// The command named `word`, if any.
    pub fn from_word(word: &str) -> Option<Command> {
        Self::ALL.into_iter().find(|c| c.name() == word)
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Echo => "echo",
            Command::Broadcast => "broadcast",
            Command::Chat => "chat",
            Command::File => "file",
            Command::Client => "client",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_prints_as_it_is_given() {
        let host = Listen::Host {
            host: "example.org".into(),
            port: 7,
        };
        assert_eq!((host.to_string(), host.port()), ("example.org:7".into(), 7));
        let addr = Listen::Addr("[::1]:9".parse().unwrap());
        assert_eq!((addr.to_string(), addr.port()), ("[::1]:9".into(), 9));
        assert_eq!(
            (Listen::Any(8).to_string(), Listen::Any(8).port()),
            (":8".into(), 8)
        );
        assert_eq!(Listen::default_for(false).to_string(), "127.0.0.1:8080");
        assert_eq!(Listen::default_for(true).to_string(), "127.0.0.1:8443");
    }

    #[test]
    fn every_command_is_found_by_its_name() {
        for c in Command::ALL {
            assert_eq!(Command::from_word(c.name()), Some(c));
        }
        assert_eq!(Command::from_word("dance"), None);
        assert_eq!(Workers::Count(3).resolve(), 3);
        assert!(Workers::Auto.resolve() >= 1);
    }
}
