//! The help text: all of it for `monoloop --help`, one command's for
//! `monoloop MODE --help`.
//!
//! The text is written out as it prints, in sections that [`usage`]
//! assembles; [`Command`]'s lines in it (synopsis, summary, options
//! section) are here too. The defaults it states are `model.rs`'s. The two
//! ports are put in from its constants, so that each is written once (the
//! plain one is stated several times, in `--listen`'s entry); the other defaults
//! are written out where they print, and a test below checks each
//! `[default: X]` (and `off by default`) against what `parse` gives a
//! command line that leaves the option out. What the options mean is
//! decided by `parse.rs`; printing is `main.rs`'s.

#[cfg(feature = "tls")]
use super::model::DEFAULT_TLS_PORT;
use super::model::{Command, DEFAULT_PORT};
use super::options;

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

/// The TLS options (after a blank line), and the port TLS listens on by
/// default; nothing in a build without TLS, which refuses them.
#[cfg(feature = "tls")]
fn tls_options() -> String {
    format!(
        "
TLS (ANY SERVER MODE):
    --tls-cert FILE        PEM certificate chain; turns TLS on
    --tls-key FILE         PEM private key (PKCS#8, PKCS#1 or SEC1)
    --tls-client-ca FILE   require client certificates signed by this CA
    --handshake-timeout SECS  close clients that have not finished the
                           handshake by then                  [default: 10]
    --alpn LIST            ALPN protocols to offer, comma-separated
    With TLS the default port is {DEFAULT_TLS_PORT}.
"
    )
}
#[cfg(not(feature = "tls"))]
fn tls_options() -> String {
    String::new()
}

/// The relays' options across machines (after a blank line), for
/// broadcast's and chat's help and the whole usage; nothing in a build
/// without the cluster, which refuses them.
#[cfg(feature = "cluster")]
fn cluster_options() -> String {
    // A build without TLS takes redis:// only, and has no CA to verify.
    let (tls, ca) = if cfg!(feature = "tls") {
        (
            "; rediss:// for TLS",
            "    --cluster-ca FILE      with rediss://: verify Redis against this CA only\n",
        )
    } else {
        ("", "")
    };
    format!(
        "
CLUSTER (BROADCAST AND CHAT):
    --cluster URL          relay through Redis, to and from every server
                           given the same URL and --cluster-prefix:
                           redis://[[USER]:PASSWORD@]HOST[:PORT][/DB];
                           port 6379 if none{tls}
    --cluster-prefix NAME  what the Redis keys start with: 1 to 64
                           letters, digits or _ . : -         [default: monoloop]
{ca}    --cluster-outbox BYTES what may wait for Redis while it is slow or
                           away (at least 64K)                [default: 4M]
"
    )
}

#[cfg(not(feature = "cluster"))]
fn cluster_options() -> String {
    String::new()
}

const CLIENT_OPTIONS: &str = "\
CLIENT OPTIONS:
    --timeout SECS         give up connecting (with --tls: and finishing
                           the handshake) after this long; 0: wait as
                           long as the kernel does            [default: 10]
";

/// The client's TLS options, after its others; in a build without TLS,
/// which refuses them, a line saying so instead.
#[cfg(feature = "tls")]
const CLIENT_TLS_OPTIONS: &str =
    "    --tls                  speak TLS; verify the server against the system's
                           trust store
    --ca FILE              verify against this CA only
    --server-name NAME     name to check and send as SNI [default: HOST]
    --cert FILE --key FILE present a client certificate
    --insecure             do not verify the server (says so on stderr)
";

#[cfg(not(feature = "tls"))]
const CLIENT_TLS_OPTIONS: &str =
    "    This monoloop was built without TLS (cargo feature \"tls\"): no mode
    takes a TLS option.
";

/// The options every server mode takes, `--listen`'s default port put in.
fn server_options() -> String {
    format!(
        "    --listen HOST:PORT     address and port to listen on; repeat it for
                           more (127.0.0.1:{DEFAULT_PORT} and [::1]:{DEFAULT_PORT}, say);
                           :{DEFAULT_PORT} or {DEFAULT_PORT}: every address, IPv4 and IPv6;
                           port 0 picks a free port; a host name listens
                           on its first address     [default: 127.0.0.1:{DEFAULT_PORT}]
    --max-connections N    clients served at once; more get
                           \"Server is full. Try again later.\"  [default: 1024]
    --idle-timeout SECS    close a connection silent both ways this long
                           (chat, broadcast: unless it has everything it
                           was sent; TCP keepalive probes it after this
                           long instead); 0 disables          [default: 30]
    --write-limit BYTES    bytes queued for one client before the server
                           stops reading from it (backpressure); any BYTES
                           may end in K, M or G (1024-based)  [default: 1M]
    --drain-timeout SECS   on SIGINT/SIGTERM, time allowed to flush what
                           each client is owed and finish downloads under
                           way; what is still owed then ends with a reset
                                                              [default: 5]
    --stats-interval SECS  log a stats line this often (at least 0.1);
                           0 disables                         [default: 10]
    --request-timeout SECS chat, file: close a client that has not
                           answered the username prompt or sent the
                           request by then; 0 disables        [default: 30]
    --max-line BYTES       longest line in line modes (broadcast, chat,
                           file, and echo with --prefix)      [default: 8K]
    --access-log           log one line per connection when it ends (info)
    --workers N|auto       loops, one per thread, sharing the port; auto:
                           one per core                       [default: 1]
    --allow CIDR           only peers in these ranges may connect (repeat)
    --deny CIDR            peers in these ranges may not (repeat)
    --max-per-ip N         connections one address may hold; 0: no
                           limit                              [default: 0]
    --metrics HOST:PORT    serve Prometheus metrics at /metrics and health
                           at /healthz there, HOST:PORT as for --listen
                           (off by default)
    --proxy-protocol       every connection starts with a PROXY protocol
                           header (v1 or v2) naming the client
    --proxy-from CIDR      only these peers may send it (repeat); without
                           it, every peer is trusted
"
    )
}

/// The options every command takes, servers and client alike.
const GENERAL_OPTIONS: &str =
    "    --log-level LEVEL      error, warn, info, debug or trace  [default: info]
    -h, --help             print this help
    -V, --version          print the version
";

/// The help text: everything for `None`, else what `command` uses (its
/// own options, then the TLS and the other server options for a server
/// mode, less those it does not use: `options.rs` says which).
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
                out.push_str(CLIENT_TLS_OPTIONS);
            }
            if c == Command::File {
                out.push_str(&tls_options());
                out.push_str(&cluster_options());
            }
        }
        out.push_str("\nSERVER OPTIONS:\n");
        out.push_str(&server_options());
        out.push_str(GENERAL_OPTIONS);
        return out;
    };
    let only = |text: &str| only_for(command, text);
    // The summary's second line, if any, lines up under its first.
    let title = format!("monoloop {}: ", command.name());
    let indent = format!("\n{}", " ".repeat(title.len()));
    let summary = command.summary().replace("\n                ", &indent);
    out.push_str(&format!("{title}{summary}\n"));
    out.push_str(&format!("\nUSAGE:\n    {}\n", command.synopsis()));
    if let Some(options) = command.options() {
        out.push('\n');
        out.push_str(&only(options));
    }
    if command == Command::Client {
        out.push_str(&only(CLIENT_TLS_OPTIONS));
        out.push_str(&only(GENERAL_OPTIONS));
        return out;
    }
    out.push_str(&only(&tls_options()));
    if options::takes(command, "--cluster") {
        out.push_str(&only(&cluster_options()));
    }
    out.push_str("\nSERVER OPTIONS:\n");
    out.push_str(&only(&server_options()));
    out.push_str(&only(GENERAL_OPTIONS));
    out
}

/// `text`, a section of the help, with only the entries of the options
/// `command` uses and this build lists (`options::listed`). An entry is its first line (`    --NAME ...`) and the
/// lines indented deeper under it; any other line (a note such as the
/// TLS port's) stays.
fn only_for(command: Command, text: &str) -> String {
    let mut out = String::new();
    let mut keep = true;
    for line in text.split_inclusive('\n') {
        if line.starts_with("    -") {
            keep = names(line).any(|name| options::listed(command, name));
        } else if !line.starts_with("     ") {
            keep = true;
        }
        if keep {
            out.push_str(line);
        }
    }
    out
}

/// The options an entry's first line names before its text starts (at
/// column 27, or sooner): `-h, --help` is two, and so is `--cert FILE --key
/// FILE`.
fn names(line: &str) -> impl Iterator<Item = &str> {
    line.get(..27)
        .unwrap_or(line)
        .split_whitespace()
        .filter(|word| word.starts_with('-'))
        .map(|word| word.trim_end_matches(','))
}

/// A command's lines in the help.
impl Command {
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

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::time::Duration;

    use super::*;
    use crate::config::{parse, Mode, Parsed, Workers};

    /// Every default the help states, as `(option, value)` in order: each
    /// `[default: X]`, and `(off by default)` as `off`. An entry may run
    /// over several lines; its option is the first word of the last line
    /// that starts with `-`.
    fn stated_defaults(help: &str) -> Vec<(String, String)> {
        let mut option = String::new();
        let mut stated = Vec::new();
        for line in help.lines() {
            let words = line.trim_start();
            if !line.starts_with(' ') {
                // A title, or the blank line before one.
                option.clear();
            } else if words.starts_with('-') {
                option = words.split([' ', ',']).next().unwrap_or_default().into();
            }
            let value = if let Some((_, rest)) = line.split_once("[default: ") {
                let (value, _) = rest
                    .rsplit_once(']')
                    .unwrap_or_else(|| panic!("no closing ] in {line:?}"));
                value.to_string()
            } else if line.contains("(off by default)") {
                "off".to_string()
            } else {
                continue;
            };
            assert!(!option.is_empty(), "a default outside any option: {line:?}");
            stated.push((option.clone(), value));
        }
        stated
    }

    /// `command` with every option left out (but the ones it needs).
    /// The client's gets `--tls` when built with TLS, and the relays
    /// `--cluster`, so that the defaults of the options that need them are
    /// filled in too.
    fn bare(command: Command) -> Vec<OsString> {
        let mut args = vec![command.name()];
        match command {
            Command::File => args.extend(["--root", env!("CARGO_MANIFEST_DIR")]),
            Command::Broadcast | Command::Chat if cfg!(feature = "cluster") => {
                args.extend(["--cluster", "redis://h"])
            }
            Command::Client if cfg!(feature = "tls") => args.extend(["h:1", "--tls"]),
            Command::Client => args.push("h:1"),
            _ => {}
        }
        args.into_iter().map(OsString::from).collect()
    }

    /// Bytes as the help writes them: in the largest unit that divides
    /// them (`8K`, `1M`).
    fn bytes(mut n: usize) -> String {
        let mut units = ["", "K", "M", "G"].iter();
        let mut unit = units.next().unwrap();
        while n >= 1024 && n % 1024 == 0 {
            let Some(next) = units.next() else { break };
            n /= 1024;
            unit = next;
        }
        format!("{n}{unit}")
    }

    /// Seconds as the help writes them (`30`, `0.5`); off is `0`.
    fn secs(d: Option<Duration>) -> String {
        d.map_or(0.0, |d| d.as_secs_f64()).to_string()
    }

    /// What `parse` gives each option of `command` that has a default,
    /// written as the help writes it.
    fn used_defaults(command: Command) -> Vec<(&'static str, String)> {
        let level = |l: log::LevelFilter| l.to_string().to_ascii_lowercase();
        let c = match parse(bare(command)) {
            Ok(Parsed::Run(c)) => c,
            Ok(Parsed::Client(c)) => {
                // No name given: the client sends and checks the target's
                // host (client.rs).
                let server_name = c.tls.unwrap_or_default().server_name;
                let mut used = vec![
                    ("--timeout", secs(c.timeout)),
                    (
                        "--server-name",
                        server_name.unwrap_or_else(|| "HOST".into()),
                    ),
                    ("--log-level", level(c.log_level)),
                ];
                used.retain(|(option, _)| options::listed(command, option));
                return used;
            }
            other => panic!("{command:?}: expected a run, got {other:?}"),
        };
        let s = &c.server;
        let mut used: Vec<(&str, String)> = vec![
            ("--handshake-timeout", secs(Some(s.handshake_timeout))),
            (
                "--listen",
                c.listen
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ("--max-connections", s.max_connections.to_string()),
            ("--idle-timeout", secs(s.idle_timeout)),
            ("--write-limit", bytes(s.write_limit)),
            ("--drain-timeout", secs(Some(s.drain_timeout))),
            ("--stats-interval", secs(s.stats_interval)),
            ("--request-timeout", secs(s.request_timeout)),
            ("--max-line", bytes(s.max_line)),
            (
                "--workers",
                match s.workers {
                    Workers::Count(n) => n.to_string(),
                    Workers::Auto => "auto".into(),
                },
            ),
            ("--max-per-ip", s.edge.max_per_ip.to_string()),
            (
                "--metrics",
                c.metrics.as_ref().map_or("off".into(), |a| a.to_string()),
            ),
            ("--log-level", level(c.log_level)),
        ];
        if let Mode::Broadcast { prefix } = &c.mode {
            used.push(("--prefix", format!("\"{prefix}\"")));
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &c.cluster {
            used.push(("--cluster-prefix", cluster.prefix.clone()));
            used.push(("--cluster-outbox", bytes(cluster.outbox)));
        }
        used.retain(|(option, _)| options::listed(command, option));
        used
    }

    #[test]
    fn every_default_the_help_states_is_the_one_the_code_uses() {
        let mut each_commands = Vec::new();
        for command in Command::ALL {
            let name = command.name();
            let help = usage(Some(command));
            let stated = stated_defaults(&help);
            let used = used_defaults(command);
            for (option, value) in &stated {
                let Some((_, code)) = used.iter().find(|(o, _)| o == option) else {
                    panic!(
                        "'monoloop {name} --help' states a default for {option}, \
                         which this test does not know: add it to used_defaults"
                    );
                };
                assert_eq!(
                    value, code,
                    "'monoloop {name} --help' says {option} defaults to {value}, \
                     the code uses {code}"
                );
            }
            for (option, _) in &used {
                assert!(
                    stated.iter().any(|(o, _)| o == option),
                    "'monoloop {name} --help' states no default for {option}"
                );
            }
            // A default stated in other words would escape the check.
            let tls_port = help.matches("the default port is").count();
            assert_eq!(
                help.matches("default").count(),
                stated.len() + tls_port,
                "a default 'monoloop {name} --help' states in words this test does not read"
            );
            each_commands.extend(stated);
        }
        // The whole help is the commands' sections put together.
        for stated in stated_defaults(&usage(None)) {
            assert!(each_commands.contains(&stated), "{stated:?}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn the_tls_port_the_help_states_is_the_one_the_code_uses() {
        let args = ["echo", "--tls-cert", "c.pem", "--tls-key", "k.pem"];
        let Ok(Parsed::Run(c)) = parse(args.into_iter().map(OsString::from).collect()) else {
            panic!("expected a run");
        };
        let note = format!("With TLS the default port is {}.\n", c.listen[0].port());
        for command in [None, Some(Command::Echo), Some(Command::File)] {
            assert!(usage(command).contains(&note), "{command:?}");
        }
    }

    /// The options the help names (each entry's first line), in order.
    fn named(help: &str) -> Vec<&str> {
        help.lines()
            .filter(|l| l.starts_with("    -"))
            .flat_map(names)
            .collect()
    }

    #[test]
    fn each_help_names_exactly_the_options_its_command_takes() {
        // All of them, but TLS's and the cluster's in a build without them.
        let table: Vec<&str> = options::OPTIONS
            .iter()
            .map(|(o, _)| *o)
            .filter(|o| cfg!(feature = "tls") || !options::TLS.contains(o))
            .filter(|o| cfg!(feature = "cluster") || !options::CLUSTER.contains(o))
            .collect();
        let whole = usage(None);
        let mut all = named(&whole);
        all.sort_unstable();
        all.dedup();
        let mut sorted = table.clone();
        sorted.sort_unstable();
        assert_eq!(all, sorted, "'monoloop --help' and options.rs disagree");
        for command in Command::ALL {
            let help = usage(Some(command));
            let mut named = named(&help);
            named.sort_unstable();
            let mut taken: Vec<&str> = table
                .iter()
                .copied()
                .filter(|o| options::listed(command, o))
                .collect();
            taken.sort_unstable();
            assert_eq!(named, taken, "'monoloop {} --help'", command.name());
        }
        let echo = usage(Some(Command::Echo));
        assert!(!echo.contains("--request-timeout"), "{echo}");
        assert!(usage(Some(Command::Chat)).contains("--request-timeout SECS chat, file: "));
    }

    /// The flags `options.rs` lists are exactly the options the help
    /// shows without a value after them (`--access-log`, not `--root DIR`).
    #[test]
    fn the_help_shows_a_value_for_every_option_but_the_flags() {
        let help = usage(None);
        let mut flags: Vec<&str> = Vec::new();
        for line in help.lines().filter(|l| l.starts_with("    -")) {
            let words: Vec<&str> = line.get(..27).unwrap_or(line).split_whitespace().collect();
            for (i, word) in words.iter().enumerate() {
                let name = word.trim_end_matches(',');
                let valued = words
                    .get(i + 1)
                    .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_uppercase()));
                if name.starts_with('-') && !valued && !flags.contains(&name) {
                    flags.push(name);
                }
            }
        }
        flags.sort_unstable();
        let mut listed: Vec<&str> = options::FLAGS
            .iter()
            .copied()
            .filter(|o| cfg!(feature = "tls") || !options::TLS.contains(o))
            .collect();
        listed.sort_unstable();
        assert_eq!(flags, listed);
    }

    #[test]
    fn the_whole_usage_has_every_section_and_a_commands_has_its_own() {
        let all = usage(None);
        let tls = "TLS (ANY SERVER MODE):";
        let cluster = "CLUSTER (BROADCAST AND CHAT):";
        for section in [
            "USAGE:",
            "MODES:",
            "ECHO OPTIONS:",
            "BROADCAST OPTIONS:",
            "FILE OPTIONS:",
            tls,
            cluster,
            "CLIENT OPTIONS:",
            "SERVER OPTIONS:",
        ] {
            let built = match section {
                s if s == tls => cfg!(feature = "tls"),
                s if s == cluster => cfg!(feature = "cluster"),
                _ => true,
            };
            let once = usize::from(built);
            assert_eq!(all.matches(section).count(), once, "{section}");
        }
        assert!(all.contains(
            "    client      connect: standard input to the server, the server to\n                standard output (like nc)\n"
        ));
        let echo = usage(Some(Command::Echo));
        assert!(echo.starts_with("monoloop echo: send every byte back, in order (RFC 862)\n"));
        assert!(echo.contains("ECHO OPTIONS:") && echo.contains("--listen HOST:PORT"));
        assert_eq!(echo.contains(tls), cfg!(feature = "tls"));
        assert!(echo.contains("--log-level"));
        assert!(!echo.contains("BROADCAST OPTIONS") && !echo.contains("CLIENT OPTIONS"));
        assert!(!echo.contains(cluster) && !usage(Some(Command::File)).contains(cluster));
        let chat = usage(Some(Command::Chat));
        assert!(chat.contains("monoloop chat [OPTIONS]") && chat.contains("--max-line"));
        assert_eq!(chat.contains(cluster), cfg!(feature = "cluster"));
        assert_eq!(
            usage(Some(Command::Broadcast)).contains(cluster),
            cfg!(feature = "cluster")
        );
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
