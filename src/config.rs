//! The command line: options, defaults, validation and the usage text.
//!
//! `parse` turns the arguments into a [`Config`] or says exactly what is
//! wrong, in one line. It opens no socket, reads no file and resolves no
//! name (a `--listen` host name is kept as given: `lib.rs` resolves it at
//! start); the one look outside is `file --root`, which must name an
//! existing directory, so that a typo exits 2 at once; `main.rs` decides what to do with the outcome (print the help,
//! print the problem and a hint and exit 2, or run), and `event_loop.rs`
//! uses the values. `usage` assembles the help, whole or for one command.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a server run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub server: ServerOptions,
    /// `--listen` as given; `server.listen` is its address once resolved.
    pub listen: Listen,
    /// True if `--listen` was given (not the default): systemd's socket
    /// activation and `--listen` cannot both say where to listen.
    pub listen_given: bool,
    /// `Some` when any `--tls-*` option was given.
    pub tls: Option<ServerTls>,
    pub log_level: log::LevelFilter,
}

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

/// `--listen` as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// An IP address and port (`127.0.0.1:8080`, `[::1]:8080`): bound as is.
    Addr(SocketAddr),
    /// A host name and port (`localhost:8080`), resolved at start; the
    /// first address the resolver returns is bound.
    Host { host: String, port: u16 },
}

impl Listen {
    /// The address to put in [`ServerOptions::listen`] until this is
    /// resolved: the address itself, or for a host name, 127.0.0.1 with its
    /// port (loopback, so that a forgotten resolution exposes nothing).
    fn stand_in(&self) -> SocketAddr {
        match self {
            Listen::Addr(a) => *a,
            Listen::Host { port, .. } => SocketAddr::from(([127, 0, 0, 1], *port)),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Addr(a) => a.fmt(f),
            Listen::Host { host, port } => write!(f, "{host}:{port}"),
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
    /// The address bound. When `--listen` named a host, this is a stand-in
    /// until `lib.rs` resolves [`Config::listen`] and puts the address here,
    /// before binding: the loop only ever sees a resolved address.
    pub listen: SocketAddr,
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
    /// `--metrics ADDR`: where to serve /metrics and /healthz.
    pub metrics: Option<SocketAddr>,
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

/// The port served when `--listen` is not given: plain, and TLS.
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_TLS_PORT: u16 = 8443;

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
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
            metrics: None,
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    Client(ClientConfig),
    /// `--help`: the usage of the command named (`monoloop echo --help`), or
    /// all of it when none (or no valid one) was.
    Help(Option<Command>),
    Version,
}

/// The word after `monoloop`: a server mode, or the client.
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

    /// Its line under USAGE.
    fn synopsis(self) -> &'static str {
        match self {
            Command::Echo => "monoloop echo [OPTIONS]",
            Command::Broadcast => "monoloop broadcast [OPTIONS]",
            Command::Chat => "monoloop chat [OPTIONS]",
            Command::File => "monoloop file --root DIR [OPTIONS]",
            Command::Client => "monoloop client HOST:PORT [CLIENT OPTIONS]",
        }
    }

    /// What it does, as its entry under MODES shows it (wrapped to fit).
    fn summary(self) -> &'static str {
        match self {
            Command::Echo => "send every byte back, in order (RFC 862)",
            Command::Broadcast => "relay each line a client sends to every other client",
            Command::Chat => "a chat room: username prompt, join/leave messages, /commands",
            Command::File => "send the file named on the request line, from below DIR",
            Command::Client => {
                "connect: standard input to the server, the server to\n                \
                 standard output (like nc)"
            }
        }
    }

    /// Its own options section, if it has one.
    fn options(self) -> Option<&'static str> {
        match self {
            Command::Echo => Some(ECHO_OPTIONS),
            Command::Broadcast => Some(BROADCAST_OPTIONS),
            Command::Chat => None,
            Command::File => Some(FILE_OPTIONS),
            Command::Client => Some(CLIENT_OPTIONS),
        }
    }
}

/// A command line that cannot run, and why: `main` prints the problem on
/// one line and [`hint`](Self::hint) on the next, and exits 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong, in one line, naming the option or argument.
    pub problem: String,
    /// The command the line named, when it named a valid one: the hint
    /// points at that command's help rather than the whole usage.
    pub command: Option<Command>,
}

impl UsageError {
    /// Where to read more: `see 'monoloop echo --help'`, or
    /// `see 'monoloop --help'` when no valid command was given.
    pub fn hint(&self) -> String {
        match self.command {
            Some(c) => format!("see 'monoloop {} --help'", c.name()),
            None => "see 'monoloop --help'".to_string(),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)
    }
}

// The usage, in sections that `usage` assembles: all of them for
// `monoloop --help`, one command's for `monoloop MODE --help`.

const TITLE: &str = "monoloop: TCP servers on one single-threaded readiness loop\n";

const ECHO_OPTIONS: &str = "\
ECHO OPTIONS:
    --greeting TEXT        send TEXT and a newline to each client on connect
    --prefix TEXT          line mode: send each complete line back as TEXT + line
";

const BROADCAST_OPTIONS: &str = "\
BROADCAST OPTIONS:
    --prefix TEXT          put before each relayed line   [default: \"[Broadcast] \"]
";

const FILE_OPTIONS: &str = "\
FILE OPTIONS:
    --root DIR             the directory files are served from (required)
    --no-sendfile          read and write files instead of sendfile(2) (for a
                           filesystem whose sendfile misbehaves, as nginx's
                           `sendfile off`); TLS always reads and encrypts
";

const TLS_OPTIONS: &str = "\
TLS (ANY SERVER MODE):
    --tls-cert FILE        PEM certificate chain; turns TLS on
    --tls-key FILE         PEM private key (PKCS#8, PKCS#1 or SEC1)
    --tls-client-ca FILE   require client certificates signed by this CA
    --handshake-timeout SECS  close clients that have not finished the
                           handshake by then                  [default: 10]
    --alpn LIST            ALPN protocols to offer, comma-separated
    With TLS the default port is 8443.
";

const CLIENT_OPTIONS: &str = "\
CLIENT OPTIONS:
    --timeout SECS         give up connecting (with --tls: and finishing
                           the handshake) after this long; 0: wait as
                           long as the kernel does            [default: 10]
    --tls                  speak TLS; verify the server against the system's
                           trust store
    --ca FILE              verify against this CA only
    --server-name NAME     name to check and send as SNI [default: HOST]
    --cert FILE --key FILE present a client certificate
    --insecure             do not verify the server (says so on stderr)
";

/// Said under the TLS options of a build without them.
#[cfg(not(feature = "tls"))]
const NO_TLS: &str = "    This monoloop was built without TLS (cargo feature \"tls\"):
    these options are refused.
";
#[cfg(feature = "tls")]
const NO_TLS: &str = "";

const SERVER_OPTIONS: &str =
    "    --listen HOST:PORT     address and port to listen on    [default: 127.0.0.1:8080]
                           (IPv6: [::1]:8080; port 0 picks a free port;
                           a host name listens on its first address only)
    --max-connections N    clients served at once; more get
                           \"Server is full. Try again later.\"  [default: 1024]
    --idle-timeout SECS    close a connection silent both ways this long;
                           0 disables                         [default: 30]
    --write-limit BYTES    bytes queued for one client before the server
                           stops reading from it (backpressure) [default: 1048576]
    --drain-timeout SECS   on SIGINT/SIGTERM, time allowed to flush what
                           each client is owed                [default: 5]
    --stats-interval SECS  log a stats line this often (at least 0.1);
                           0 disables                         [default: 10]
    --request-timeout SECS close a client that has not answered the chat
                           username prompt or sent the file request by
                           then; 0 disables                   [default: 30]
    --max-line BYTES       longest line in line modes         [default: 8192]
    --access-log           log one line per connection when it ends (info)
    --workers N|auto       loops, one per thread, sharing the port; auto:
                           one per core                       [default: 1]
    --allow CIDR           only peers in these ranges may connect (repeat)
    --deny CIDR            peers in these ranges may not (repeat)
    --max-per-ip N         connections one address may hold; 0: no
                           limit                              [default: 0]
    --metrics ADDR         serve Prometheus metrics at http://ADDR/metrics
                           and health at /healthz (off by default)
    --proxy-protocol       every connection starts with a PROXY protocol
                           header (v1 or v2) naming the client
    --proxy-from CIDR      only these peers may send it (repeat); without
                           it, every peer is trusted
";

/// The options every command takes, servers and client alike.
const GENERAL_OPTIONS: &str =
    "    --log-level LEVEL      error, warn, info, debug or trace  [default: info]
    -h, --help             print this help
    -V, --version          print the version
";

/// The help text: everything for `None`, else what `command` accepts (its
/// own options, then the TLS and common server options for a server mode).
pub fn usage(command: Option<Command>) -> String {
    let mut out = String::new();
    let Some(command) = command else {
        out.push_str(TITLE);
        out.push_str("\nUSAGE:\n");
        for c in Command::ALL {
            out.push_str(&format!("    {}\n", c.synopsis()));
        }
        out.push_str("\nMODES:\n");
        for c in Command::ALL {
            out.push_str(&format!("    {:<11} {}\n", c.name(), c.summary()));
        }
        for c in Command::ALL {
            if let Some(options) = c.options() {
                out.push('\n');
                out.push_str(options);
            }
            if c == Command::Client {
                out.push_str(NO_TLS);
            }
            if c == Command::File {
                out.push('\n');
                out.push_str(TLS_OPTIONS);
                out.push_str(NO_TLS);
            }
        }
        out.push_str("\nOPTIONS FOR EVERY SERVER MODE:\n");
        out.push_str(SERVER_OPTIONS);
        out.push_str(GENERAL_OPTIONS);
        return out;
    };
    // The summary's second line, if any, lines up under its first.
    let title = format!("monoloop {}: ", command.name());
    let indent = format!("\n{}", " ".repeat(title.len()));
    let summary = command.summary().replace("\n                ", &indent);
    out.push_str(&format!("{title}{summary}\n"));
    out.push_str(&format!("\nUSAGE:\n    {}\n", command.synopsis()));
    if let Some(options) = command.options() {
        out.push('\n');
        out.push_str(options);
    }
    if command == Command::Client {
        out.push_str(NO_TLS);
        out.push_str(GENERAL_OPTIONS);
        return out;
    }
    out.push('\n');
    out.push_str(TLS_OPTIONS);
    out.push_str(NO_TLS);
    out.push_str("\nOPTIONS FOR EVERY SERVER MODE:\n");
    out.push_str(SERVER_OPTIONS);
    out.push_str(GENERAL_OPTIONS);
    out
}

/// Parses the process's arguments (without the program name).
///
/// Every problem that can be seen without touching the system is found
/// here, so that it exits 2 with one line: bad values, unknown or repeated
/// options, and options that need another (`--tls-cert` without
/// `--tls-key`, say). Whether files exist and parse, and whether a
/// `--listen` host name resolves, is left to start-up.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, UsageError> {
    let mut args = pico_args::Arguments::from_vec(args);
    let usage_error = |problem: String| UsageError {
        problem,
        command: None,
    };
    if args.contains(["-h", "--help"]) {
        let word: Option<String> = args.subcommand().ok().flatten();
        return Ok(Parsed::Help(word.as_deref().and_then(Command::from_word)));
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Parsed::Version);
    }
    let word: Option<String> = args
        .subcommand()
        .map_err(|e| usage_error(format!("bad mode: {e}")))?;
    let Some(word) = word else {
        return Err(usage_error(match args.finish().first() {
            Some(first) => format!(
                "no mode given: expected {MODE_LIST} first, before '{}'",
                first.to_string_lossy()
            ),
            None => format!("no mode given: expected {MODE_LIST}"),
        }));
    };
    let Some(command) = Command::from_word(&word) else {
        return Err(usage_error(format!(
            "unknown mode '{word}': expected {MODE_LIST}"
        )));
    };
    let parsed = match command {
        Command::Client => parse_client(args),
        server => parse_server(args, server),
    };
    parsed.map_err(|problem| UsageError {
        problem,
        command: Some(command),
    })
}

/// The commands, as a problem lists them.
const MODE_LIST: &str = "echo, broadcast, chat, file or client";

/// A server mode's options. Errors are the problem alone; `parse` adds
/// the command.
fn parse_server(mut args: pico_args::Arguments, command: Command) -> Result<Parsed, String> {
    let log_level = opt(&mut args, "--log-level", parse_level)?.unwrap_or(log::LevelFilter::Info);
    let tls = ServerTls {
        cert: opt(&mut args, "--tls-cert", path)?,
        key: opt(&mut args, "--tls-key", path)?,
        client_ca: opt(&mut args, "--tls-client-ca", path)?,
        alpn: opt(&mut args, "--alpn", alpn_list)?.unwrap_or_default(),
    };
    let tls = (tls != ServerTls::default()).then_some(tls);
    if let Some(tls) = &tls {
        check_server_tls(tls)?;
    }
    let defaults = ServerOptions::default();
    let given = opt(&mut args, "--listen", parse_listen)?;
    let listen_given = given.is_some();
    let listen = given.unwrap_or(Listen::Addr(match tls {
        Some(_) => SocketAddr::new(defaults.listen.ip(), DEFAULT_TLS_PORT),
        None => defaults.listen,
    }));
    let server = ServerOptions {
        listen: listen.stand_in(),
        max_connections: opt(&mut args, "--max-connections", positive)?
            .unwrap_or(defaults.max_connections),
        idle_timeout: opt(&mut args, "--idle-timeout", seconds_or_off)?
            .unwrap_or(defaults.idle_timeout),
        write_limit: opt(&mut args, "--write-limit", positive)?.unwrap_or(defaults.write_limit),
        drain_timeout: opt(&mut args, "--drain-timeout", seconds)?
            .unwrap_or(defaults.drain_timeout),
        stats_interval: opt(&mut args, "--stats-interval", stats_interval)?
            .unwrap_or(defaults.stats_interval),
        max_line: opt(&mut args, "--max-line", positive)?.unwrap_or(defaults.max_line),
        handshake_timeout: opt(&mut args, "--handshake-timeout", seconds)?
            .unwrap_or(defaults.handshake_timeout),
        request_timeout: opt(&mut args, "--request-timeout", seconds_or_off)?
            .unwrap_or(defaults.request_timeout),
        access_log: args.contains("--access-log"),
        workers: opt(&mut args, "--workers", workers)?.unwrap_or(Workers::Count(1)),
        edge: edge_options(&mut args)?,
        metrics: opt(&mut args, "--metrics", metrics_addr)?,
    };

    let mode = match command {
        Command::Echo => Mode::Echo {
            greeting: opt(&mut args, "--greeting", text)?,
            prefix: opt(&mut args, "--prefix", text)?,
        },
        Command::Broadcast => Mode::Broadcast {
            prefix: opt(&mut args, "--prefix", text)?
                .unwrap_or_else(|| crate::protocol::broadcast::DEFAULT_PREFIX.into()),
        },
        Command::Chat => Mode::Chat,
        Command::File => Mode::File {
            root: opt(&mut args, "--root", directory)?
                .ok_or_else(|| "file mode needs --root DIR".to_string())?,
            sendfile: !flag(&mut args, "--no-sendfile")?,
        },
        Command::Client => unreachable!("parse sends the client to parse_client"),
    };
    no_leftovers(args, mode.name())?;
    Ok(Parsed::Run(Box::new(Config {
        mode,
        server,
        listen,
        listen_given,
        tls,
        log_level,
    })))
}

/// The server's TLS options that only work together: a certificate and its
/// key, and the rest only with both. (`tls.rs` checks the files.)
fn check_server_tls(tls: &ServerTls) -> Result<(), String> {
    if cfg!(not(feature = "tls")) {
        let given = if tls.cert.is_some() {
            "--tls-cert"
        } else if tls.key.is_some() {
            "--tls-key"
        } else if tls.client_ca.is_some() {
            "--tls-client-ca"
        } else {
            "--alpn"
        };
        return Err(format!("{given} needs TLS, {NOT_BUILT}"));
    }
    match (&tls.cert, &tls.key) {
        (Some(_), Some(_)) => Ok(()),
        (Some(c), None) => Err(format!(
            "--tls-cert {} was given without --tls-key",
            c.display()
        )),
        (None, Some(k)) => Err(format!(
            "--tls-key {} was given without --tls-cert",
            k.display()
        )),
        (None, None) if tls.client_ca.is_some() => {
            Err("--tls-client-ca needs --tls-cert and --tls-key".into())
        }
        (None, None) => Err("--alpn needs --tls-cert and --tls-key".into()),
    }
}

/// Why a TLS option is refused by a build without TLS.
const NOT_BUILT: &str = "but this monoloop was built without it (cargo feature \"tls\")";

/// `client HOST:PORT [CLIENT OPTIONS]`.
fn parse_client(mut args: pico_args::Arguments) -> Result<Parsed, String> {
    let log_level = opt(&mut args, "--log-level", parse_level)?.unwrap_or(log::LevelFilter::Info);
    let timeout =
        opt(&mut args, "--timeout", seconds_or_off)?.unwrap_or(Some(Duration::from_secs(10)));
    let use_tls = flag(&mut args, "--tls")?;
    let tls = ClientTls {
        ca: opt(&mut args, "--ca", path)?,
        server_name: opt(&mut args, "--server-name", text)?,
        cert: opt(&mut args, "--cert", path)?,
        key: opt(&mut args, "--key", path)?,
        insecure: flag(&mut args, "--insecure")?,
    };
    if use_tls && cfg!(not(feature = "tls")) {
        return Err(format!("--tls needs TLS, {NOT_BUILT}"));
    }
    if !use_tls && tls != ClientTls::default() {
        let given = [
            ("--ca", tls.ca.is_some()),
            ("--server-name", tls.server_name.is_some()),
            ("--cert", tls.cert.is_some()),
            ("--key", tls.key.is_some()),
            ("--insecure", tls.insecure),
        ];
        let (first, _) = given.iter().find(|(_, on)| *on).expect("one was given");
        return Err(format!("{first} needs --tls"));
    }
    match (&tls.cert, &tls.key) {
        (Some(c), None) => return Err(format!("--cert {} was given without --key", c.display())),
        (None, Some(k)) => return Err(format!("--key {} was given without --cert", k.display())),
        _ => {}
    }
    let tls = use_tls.then_some(tls);
    let target: String = args
        .free_from_str()
        .map_err(|_| "client needs HOST:PORT, such as 127.0.0.1:8080".to_string())?;
    if target.starts_with('-') {
        return Err(format!("unknown option '{target}' for client"));
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => {
            return Err(format!(
                "invalid target '{target}': expected HOST:PORT, such as 127.0.0.1:8080"
            ))
        }
    }
    no_leftovers(args, "client")?;
    Ok(Parsed::Client(ClientConfig {
        target,
        timeout,
        tls,
        log_level,
    }))
}

/// Refuses arguments nothing consumed.
fn no_leftovers(args: pico_args::Arguments, mode: &str) -> Result<(), String> {
    match args.finish().first() {
        Some(first) => Err(format!(
            "unexpected argument '{}' for mode {mode}",
            first.to_string_lossy()
        )),
        None => Ok(()),
    }
}

/// Reads an optional `--name VALUE`, converting it with `f`. A missing value,
/// one `f` rejects, or the option given twice is a problem naming the option.
fn opt<T>(
    args: &mut pico_args::Arguments,
    name: &'static str,
    f: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    let Some(raw) = raw_value(args, name)? else {
        return Ok(None);
    };
    // pico-args takes the first occurrence and would leave a second one
    // for `no_leftovers` to call "unexpected": say what it is instead.
    if !matches!(raw_value(args, name), Ok(None)) {
        return Err(twice(name));
    }
    f(&raw)
        .map(Some)
        .map_err(|why| format!("invalid value '{raw}' for {name}: {why}"))
}

/// The value of `--name VALUE`, unconverted.
fn raw_value(
    args: &mut pico_args::Arguments,
    name: &'static str,
) -> Result<Option<String>, String> {
    match args.opt_value_from_str(name) {
        Ok(v) => Ok(v),
        Err(pico_args::Error::OptionWithoutAValue(_)) => Err(format!("{name} needs a value")),
        Err(pico_args::Error::Utf8ArgumentParsingFailed { value, .. }) => Err(format!(
            "invalid value '{value}' for {name}: not valid UTF-8"
        )),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// Reads a flag that takes no value; given twice is a problem.
fn flag(args: &mut pico_args::Arguments, name: &'static str) -> Result<bool, String> {
    let on = args.contains(name);
    if on && args.contains(name) {
        return Err(twice(name));
    }
    Ok(on)
}

fn twice(name: &str) -> String {
    format!("{name} was given twice")
}

/// `--listen`: an IP address and port, or a host name and port, resolved
/// at start. A host name is checked for DNS syntax here, so that a typo
/// is an argument error rather than a failed lookup.
fn parse_listen(s: &str) -> Result<Listen, String> {
    const EXPECTED: &str =
        "expected HOST:PORT, such as 127.0.0.1:8080, [::1]:8080 or localhost:8080";
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(Listen::Addr(addr));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(EXPECTED.into());
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(EXPECTED.into());
    };
    let plausible = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !plausible {
        return Err(EXPECTED.into());
    }
    Ok(Listen::Host {
        host: host.to_string(),
        port,
    })
}

/// `--proxy-protocol`, `--proxy-from`, `--allow`, `--deny`, `--max-per-ip`.
fn edge_options(args: &mut pico_args::Arguments) -> Result<crate::edge::EdgeOptions, String> {
    let proxy_protocol = flag(args, "--proxy-protocol")?;
    let proxy_from = cidrs(args, "--proxy-from")?;
    if !proxy_from.is_empty() && !proxy_protocol {
        return Err("--proxy-from needs --proxy-protocol".into());
    }
    Ok(crate::edge::EdgeOptions {
        proxy_protocol,
        proxy_from,
        policy: crate::edge::Policy {
            allow: cidrs(args, "--allow")?,
            deny: cidrs(args, "--deny")?,
        },
        max_per_ip: opt(args, "--max-per-ip", whole)?.unwrap_or(0),
    })
}

/// Every `--name CIDR` (the option may be repeated).
fn cidrs(
    args: &mut pico_args::Arguments,
    name: &'static str,
) -> Result<Vec<crate::edge::Cidr>, String> {
    let raw: Vec<String> = args
        .values_from_str(name)
        .map_err(|e| format!("{name}: {e}"))?;
    raw.iter()
        .map(|v| {
            v.parse()
                .map_err(|why| format!("invalid value '{v}' for {name}: {why}"))
        })
        .collect()
}

/// `--metrics`: an IP address and port.
fn metrics_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "expected IP:PORT, such as 127.0.0.1:9100".to_string())
}

/// A whole number, 0 included.
fn whole(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| "expected a whole number".to_string())
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

/// `--workers`: a whole number from 1, or `auto`.
fn workers(s: &str) -> Result<Workers, String> {
    if s == "auto" {
        return Ok(Workers::Auto);
    }
    match positive(s) {
        Ok(n) if n <= 1024 => Ok(Workers::Count(n)),
        Ok(_) => Err("at most 1024".into()),
        Err(_) => Err("expected a whole number from 1, or auto".into()),
    }
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number".into()),
    }
}

/// Seconds, whole or fractional (`1`, `0.5`), at most a day.
fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err("must be between 0 and 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(v))
}

/// Like [`seconds`], with 0 meaning "off".
fn seconds_or_off(s: &str) -> Result<Option<Duration>, String> {
    seconds(s).map(|d| (!d.is_zero()).then_some(d))
}

/// `--stats-interval`: 0 (off), or at least 0.1 s, so that a typo cannot
/// turn the log into a flood.
fn stats_interval(s: &str) -> Result<Option<Duration>, String> {
    match seconds_or_off(s)? {
        Some(d) if d < Duration::from_millis(100) => {
            Err("must be 0 (off) or at least 0.1 seconds".into())
        }
        other => Ok(other),
    }
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err("expected error, warn, info, debug or trace".into()),
    }
}

fn path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("expected a file name".into());
    }
    Ok(PathBuf::from(s))
}

/// `h2,http/1.1`: protocol names for ALPN, comma-separated.
fn alpn_list(s: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
    if names.iter().any(|n| n.is_empty() || n.len() > 255) {
        return Err("expected comma-separated protocol names, such as h2,http/1.1".into());
    }
    Ok(names)
}

/// An existing directory (checked now, so that a typo exits 2 at once).
fn directory(s: &str) -> Result<PathBuf, String> {
    match std::fs::metadata(s) {
        Ok(m) if m.is_dir() => Ok(PathBuf::from(s)),
        Ok(_) => Err("not a directory".into()),
        Err(e) => Err(format!("{e}")),
    }
}

fn text(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Parsed, UsageError> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn config(args: &[&str]) -> Config {
        match run(args) {
            Ok(Parsed::Run(c)) => *c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&["echo"]);
        assert_eq!(c.server, ServerOptions::default());
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.mode,
            Mode::Echo {
                greeting: None,
                prefix: None
            }
        );
    }

    #[test]
    fn every_common_option_is_read() {
        let c = config(&[
            "echo",
            "--listen",
            "[::1]:0",
            "--max-connections",
            "5",
            "--idle-timeout",
            "0",
            "--write-limit",
            "4096",
            "--drain-timeout",
            "0.5",
            "--stats-interval",
            "2",
            "--max-line",
            "100",
            "--log-level",
            "debug",
            "--greeting",
            "hi",
            "--prefix",
            "Echo: ",
        ]);
        assert_eq!(c.server.listen.to_string(), "[::1]:0");
        assert_eq!(c.server.max_connections, 5);
        assert_eq!(c.server.idle_timeout, None);
        assert_eq!(c.server.write_limit, 4096);
        assert_eq!(c.server.drain_timeout, Duration::from_millis(500));
        assert_eq!(c.server.stats_interval, Some(Duration::from_secs(2)));
        assert_eq!(c.server.max_line, 100);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(
            c.mode,
            Mode::Echo {
                greeting: Some("hi".into()),
                prefix: Some("Echo: ".into())
            }
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        let e = run(&["echo", "--listen", "nowhere"]).unwrap_err();
        assert!(e.problem.contains("--listen"), "{e}");
        let e = run(&["echo", "--max-connections", "0"]).unwrap_err();
        assert!(
            e.problem.contains("--max-connections") && e.problem.contains("at least 1"),
            "{e}"
        );
        let e = run(&["echo", "--idle-timeout", "-1"]).unwrap_err();
        assert!(e.problem.contains("--idle-timeout"), "{e}");
        let e = run(&["echo", "--log-level", "loud"]).unwrap_err();
        assert!(e.problem.contains("--log-level"), "{e}");
        let e = run(&["echo", "--listen"]).unwrap_err();
        assert!(e.problem.contains("needs a value"), "{e}");
        let e = run(&["echo", "--stats-interval", "0.001"]).unwrap_err();
        assert!(e.problem.contains("at least 0.1"), "{e}");
        let c = config(&["chat", "--stats-interval", "0", "--request-timeout", "0"]);
        assert_eq!(c.server.stats_interval, None);
        assert_eq!(c.server.request_timeout, None);
    }

    #[test]
    fn unknown_modes_and_arguments_are_refused() {
        let e = run(&[]).unwrap_err();
        assert_eq!(
            e.problem,
            "no mode given: expected echo, broadcast, chat, file or client"
        );
        assert_eq!(e.hint(), "see 'monoloop --help'");
        let e = run(&["--listen", "127.0.0.1:1", "echo"]).unwrap_err();
        assert!(e.problem.ends_with("first, before '--listen'"), "{e}");
        let e = run(&["dance"]).unwrap_err();
        assert!(e.problem.starts_with("unknown mode 'dance'"), "{e}");
        assert_eq!(e.command, None);
        let e = run(&["echo", "--frobnicate"]).unwrap_err();
        assert!(e.problem.contains("--frobnicate"), "{e}");
        assert_eq!(e.hint(), "see 'monoloop echo --help'");
    }

    #[test]
    fn help_and_version_win_over_everything() {
        assert!(matches!(
            run(&["echo", "--help"]),
            Ok(Parsed::Help(Some(Command::Echo)))
        ));
        assert!(matches!(
            run(&["client", "1.2.3.4:5", "-h"]),
            Ok(Parsed::Help(Some(Command::Client)))
        ));
        assert!(matches!(run(&["--help"]), Ok(Parsed::Help(None))));
        assert!(matches!(run(&["dance", "--help"]), Ok(Parsed::Help(None))));
        assert!(matches!(run(&["-V"]), Ok(Parsed::Version)));
    }

    #[test]
    fn an_option_given_twice_says_so() {
        for args in [
            &["echo", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2"][..],
            &["echo", "--listen", "127.0.0.1:1", "--listen"],
            &["chat", "--idle-timeout", "1", "--idle-timeout", "1"],
            &["echo", "--prefix", "a", "--prefix", "b"],
        ] {
            let e = run(args).unwrap_err();
            let name = args[1];
            assert_eq!(e.problem, format!("{name} was given twice"), "{args:?}");
        }
        let e = run(&["client", "h:1", "--tls", "--tls"]).unwrap_err();
        assert_eq!(e.problem, "--tls was given twice");
        let e = run(&["client", "h:1", "--tls", "--insecure", "--insecure"]).unwrap_err();
        assert_eq!(e.problem, "--insecure was given twice");
        let e = run(&["client", "h:1", "--timeout", "1", "--timeout", "2"]).unwrap_err();
        assert_eq!(e.problem, "--timeout was given twice");
        assert_eq!(e.hint(), "see 'monoloop client --help'");
    }

    #[test]
    fn listen_takes_an_address_or_a_host_name() {
        let c = config(&["echo", "--listen", "localhost:0"]);
        assert_eq!(
            c.listen,
            Listen::Host {
                host: "localhost".into(),
                port: 0
            }
        );
        assert_eq!(c.listen.to_string(), "localhost:0");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:0");
        let c = config(&["echo", "--listen", "[::1]:8080"]);
        assert_eq!(c.listen, Listen::Addr("[::1]:8080".parse().unwrap()));
        assert_eq!(c.server.listen.to_string(), "[::1]:8080");
        let c = config(&["echo"]);
        assert_eq!(c.listen, Listen::Addr(c.server.listen));
        for bad in [
            "localhost",
            "bad!host:80",
            ":80",
            "::1:80",
            "host:99999",
            "host:",
        ] {
            let e = run(&["echo", "--listen", bad]).unwrap_err();
            assert_eq!(
                e.problem,
                format!(
                    "invalid value '{bad}' for --listen: expected HOST:PORT, \
                     such as 127.0.0.1:8080, [::1]:8080 or localhost:8080"
                )
            );
        }
    }

    #[test]
    fn client_timeout_zero_means_no_limit() {
        let client = |args: &[&str]| match run(args) {
            Ok(Parsed::Client(c)) => c,
            other => panic!("expected a client, got {other:?}"),
        };
        assert_eq!(
            client(&["client", "h:1"]).timeout,
            Some(Duration::from_secs(10))
        );
        assert_eq!(client(&["client", "h:1", "--timeout", "0"]).timeout, None);
        assert_eq!(
            client(&["client", "h:1", "--timeout", "2.5"]).timeout,
            Some(Duration::from_millis(2500))
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_options_that_need_another_are_argument_errors() {
        for (args, problem) in [
            (
                &["echo", "--tls-cert", "c.pem"][..],
                "--tls-cert c.pem was given without --tls-key",
            ),
            (
                &["echo", "--tls-key", "k.pem"],
                "--tls-key k.pem was given without --tls-cert",
            ),
            (
                &["echo", "--tls-client-ca", "ca.pem"],
                "--tls-client-ca needs --tls-cert and --tls-key",
            ),
            (
                &["echo", "--alpn", "h2"],
                "--alpn needs --tls-cert and --tls-key",
            ),
            (
                &["client", "h:1", "--tls", "--cert", "c.pem"],
                "--cert c.pem was given without --key",
            ),
            (
                &["client", "h:1", "--tls", "--key", "k.pem"],
                "--key k.pem was given without --cert",
            ),
            (&["client", "h:1", "--insecure"], "--insecure needs --tls"),
            (&["client", "h:1", "--ca", "ca.pem"], "--ca needs --tls"),
        ] {
            assert_eq!(run(args).unwrap_err().problem, problem, "{args:?}");
        }
        let c = config(&[
            "echo",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
            "--alpn",
            "h2",
        ]);
        assert_eq!(c.server.listen.port(), DEFAULT_TLS_PORT);
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_the_tls_feature_tls_options_are_argument_errors() {
        let e = run(&["echo", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap_err();
        assert_eq!(
            e.problem,
            "--tls-cert needs TLS, but this monoloop was built without it (cargo feature \"tls\")"
        );
        let e = run(&["client", "h:1", "--tls"]).unwrap_err();
        assert!(e.problem.starts_with("--tls needs TLS, but"), "{e}");
        assert!(usage(None).contains("built without TLS"));
    }

    #[test]
    fn the_whole_usage_has_every_section_and_a_commands_has_its_own() {
        let all = usage(None);
        for section in [
            "USAGE:",
            "MODES:",
            "ECHO OPTIONS:",
            "BROADCAST OPTIONS:",
            "FILE OPTIONS:",
            "TLS (ANY SERVER MODE):",
            "CLIENT OPTIONS:",
            "OPTIONS FOR EVERY SERVER MODE:",
        ] {
            assert_eq!(all.matches(section).count(), 1, "{section}");
        }
        assert!(all.contains(
            "    client      connect: standard input to the server, the server to\n                standard output (like nc)\n"
        ));
        let echo = usage(Some(Command::Echo));
        assert!(echo.starts_with("monoloop echo: send every byte back, in order (RFC 862)\n"));
        assert!(echo.contains("ECHO OPTIONS:") && echo.contains("--listen HOST:PORT"));
        assert!(echo.contains("TLS (ANY SERVER MODE):") && echo.contains("--log-level"));
        assert!(!echo.contains("BROADCAST OPTIONS") && !echo.contains("CLIENT OPTIONS"));
        let chat = usage(Some(Command::Chat));
        assert!(chat.contains("monoloop chat [OPTIONS]") && chat.contains("--max-line"));
        assert!(!chat.contains("ECHO OPTIONS") && !chat.contains("--root"));
        let client = usage(Some(Command::Client));
        assert!(client.contains("CLIENT OPTIONS:") && client.contains("--log-level"));
        assert!(client.contains("0: wait as\n"));
        assert!(!client.contains("--listen") && !client.contains("--tls-cert"));
        for text in [&all, &echo, &chat, &client] {
            assert!(text.lines().all(|l| l.len() <= 90), "{text}");
            // Every option line is indented like its neighbours.
            assert!(
                text.lines()
                    .filter(|l| l.trim_start().starts_with('-'))
                    .all(|l| l.starts_with("    -")),
                "{text}"
            );
        }
    }
}
