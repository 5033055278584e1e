//! The command line read into the model: pico-args in, a [`Parsed`] or a
//! [`UsageError`] out.
//!
//! `parse` finds the command, then each option once, by name: an option
//! given twice, without its value, or not consumed at all is a problem, as
//! is one that needs another (`--tls-cert` without `--tls-key`). Every
//! problem is one line naming the option, for `main.rs` to print with a
//! hint and exit 2. A value's text is converted by `values.rs`; what a left
//! out option means is `model.rs`'s (the defaults); the help is
//! `usage.rs`'s.

use crate::edge::{Cidr, EdgeOptions, Policy};
use std::ffi::OsString;
use std::fmt;

use super::cluster::cluster_options;
use super::listen::{listens, parse_listen, port_number};
#[cfg(feature = "manual")]
use super::manual::Shell;
use super::model::{
    ClientConfig, ClientTls, Command, Config, Listen, Mode, ServerOptions, ServerTls,
    DEFAULT_BROADCAST_PREFIX, DEFAULT_CLIENT_TIMEOUT, DEFAULT_LOG_LEVEL,
};
use super::options;
use super::values::{
    alpn_list, directory, parse_level, path, positive, seconds, seconds_or_off, size,
    stats_interval, text, whole, workers,
};

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    Client(ClientConfig),
    /// `--help`: the usage of the command named (`monoloop echo --help`), or
    /// all of it when none (or no valid one) was.
    Help(Option<Command>),
    Version,
    /// `--man` and `--completions SHELL`, which the help leaves out: what
    /// README's Install section runs, not options of a run.
    #[cfg(feature = "manual")]
    Man,
    #[cfg(feature = "manual")]
    Completions(Shell),
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
    #[cfg(feature = "manual")]
    {
        if args.contains("--man") {
            return Ok(Parsed::Man);
        }
        if let Some(shell) = opt(&mut args, "--completions", str::parse).map_err(usage_error)? {
            return Ok(Parsed::Completions(shell));
        }
    }
    #[cfg(not(feature = "manual"))]
    for flag in ["--man", "--completions"] {
        if args.contains(flag) {
            return Err(usage_error(format!(
                "{flag} needs the man page and completions, but this monoloop was built \
                 without them (cargo feature \"manual\")"
            )));
        }
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
        let names = Command::ALL.map(Command::name);
        return Err(usage_error(match options::nearest(&word, names) {
            Some(near) => format!("unknown mode '{word}': did you mean {near}?"),
            None => format!("unknown mode '{word}': expected {MODE_LIST}"),
        }));
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
    let log_level = opt(&mut args, "--log-level", parse_level)?.unwrap_or(DEFAULT_LOG_LEVEL);
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
    let given = listens(&mut args)?;
    let listen_given = !given.is_empty();
    let listen = match listen_given {
        true => given,
        false => vec![Listen::default_for(tls.is_some())],
    };
    let metrics = opt(&mut args, "--metrics", parse_listen)?;
    let max_line = opt(&mut args, "--max-line", size)?;
    let server = ServerOptions {
        max_connections: opt(&mut args, "--max-connections", positive)?
            .unwrap_or(defaults.max_connections),
        idle_timeout: opt(&mut args, "--idle-timeout", seconds_or_off)?
            .unwrap_or(defaults.idle_timeout),
        write_limit: opt(&mut args, "--write-limit", size)?.unwrap_or(defaults.write_limit),
        drain_timeout: opt(&mut args, "--drain-timeout", seconds)?
            .unwrap_or(defaults.drain_timeout),
        stats_interval: opt(&mut args, "--stats-interval", stats_interval)?
            .unwrap_or(defaults.stats_interval),
        max_line: max_line.unwrap_or(defaults.max_line),
        handshake_timeout: opt(&mut args, "--handshake-timeout", seconds)?
            .unwrap_or(defaults.handshake_timeout),
        // Read only for the modes with a prompt: given to another, it is
        // left over, and refused by `leftovers`.
        request_timeout: match options::takes(command, "--request-timeout") {
            true => opt(&mut args, "--request-timeout", seconds_or_off)?,
            false => None,
        }
        .unwrap_or(defaults.request_timeout),
        access_log: args.contains("--access-log"),
        workers: opt(&mut args, "--workers", workers)?.unwrap_or(defaults.workers),
        edge: edge_options(&mut args, &defaults.edge)?,
    };

    let mode = match command {
        Command::Echo => Mode::Echo {
            greeting: opt(&mut args, "--greeting", text)?,
            prefix: opt(&mut args, "--prefix", text)?,
        },
        Command::Broadcast => Mode::Broadcast {
            prefix: opt(&mut args, "--prefix", text)?
                .unwrap_or_else(|| DEFAULT_BROADCAST_PREFIX.into()),
        },
        Command::Chat => Mode::Chat,
        Command::File => Mode::File {
            root: opt(&mut args, "--root", directory)?
                .ok_or_else(|| "file mode needs --root DIR".to_string())?,
            sendfile: !flag(&mut args, "--no-sendfile")?,
        },
        Command::Client => unreachable!("parse sends the client to parse_client"),
    };
    if let (Mode::Echo { prefix: None, .. }, Some(_)) = (&mode, max_line) {
        return Err("--max-line needs --prefix: plain echo does not cut lines".into());
    }
    let cluster = cluster_options(&mut args, command)?;
    leftovers(args, command)?;
    Ok(Parsed::Run(Box::new(Config {
        mode,
        server,
        listen,
        listen_given,
        metrics,
        tls,
        cluster,
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
pub(super) const NOT_BUILT: &str = "but this monoloop was built without it (cargo feature \"tls\")";

/// `client HOST:PORT [CLIENT OPTIONS]`.
fn parse_client(mut args: pico_args::Arguments) -> Result<Parsed, String> {
    let log_level = opt(&mut args, "--log-level", parse_level)?.unwrap_or(DEFAULT_LOG_LEVEL);
    let timeout =
        opt(&mut args, "--timeout", seconds_or_off)?.unwrap_or(Some(DEFAULT_CLIENT_TIMEOUT));
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
    if let Some(problem) = options::misplaced(Command::Client, &target) {
        return Err(problem);
    }
    let port = match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => port,
        _ => "",
    };
    match port_number(port) {
        Ok(1..) => {}
        // A port to connect to is 1 to 65535: 0 only ever means "any" to
        // a listener.
        Ok(0) | Err(Some(_)) => {
            return Err(format!(
                "invalid target '{target}': port {port} is out of range: ports are 1 to 65535"
            ))
        }
        Err(None) => {
            return Err(format!(
                "invalid target '{target}': expected HOST:PORT, such as 127.0.0.1:8080"
            ))
        }
    }
    leftovers(args, Command::Client)?;
    Ok(Parsed::Client(ClientConfig {
        target,
        timeout,
        tls,
        log_level,
    }))
}

/// Refuses arguments nothing consumed: an option `command` does not use
/// (or nobody does, with the nearest it does), or a stray word. One that
/// holds a URL (`--cluster=redis://:PASSWORD@host`) is quoted with its
/// password hidden.
fn leftovers(args: pico_args::Arguments, command: Command) -> Result<(), String> {
    let Some(first) = args.finish().into_iter().next() else {
        return Ok(());
    };
    let first = crate::quote::redacted(&first.to_string_lossy());
    Err(options::misplaced(command, &first)
        .unwrap_or_else(|| format!("unexpected argument '{first}' for mode {}", command.name())))
}

/// Reads an optional `--name VALUE`, converting it with `f`. A missing value,
/// one `f` rejects, or the option given twice is a problem naming the option.
pub(super) fn opt<T>(
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
pub(super) fn raw_value(
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

/// `--proxy-protocol`, `--proxy-from`, `--allow`, `--deny`, `--max-per-ip`;
/// `defaults` for those left out.
fn edge_options(
    args: &mut pico_args::Arguments,
    defaults: &EdgeOptions,
) -> Result<EdgeOptions, String> {
    let proxy_protocol = flag(args, "--proxy-protocol")?;
    let proxy_from = cidrs(args, "--proxy-from")?;
    if !proxy_from.is_empty() && !proxy_protocol {
        return Err("--proxy-from needs --proxy-protocol".into());
    }
    Ok(EdgeOptions {
        proxy_protocol,
        proxy_from,
        policy: Policy {
            allow: cidrs(args, "--allow")?,
            deny: cidrs(args, "--deny")?,
        },
        max_per_ip: opt(args, "--max-per-ip", whole)?.unwrap_or(defaults.max_per_ip),
    })
}

/// Every `--name CIDR` (the option may be repeated).
fn cidrs(args: &mut pico_args::Arguments, name: &'static str) -> Result<Vec<Cidr>, String> {
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

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::*;

    /// Parses `args` as the command line would be (the other config
    /// modules' tests use these too).
    pub(in crate::config) fn run(args: &[&str]) -> Result<Parsed, UsageError> {
        parse(args.iter().map(OsString::from).collect())
    }

    /// The configuration `args` give; panics on anything else.
    pub(in crate::config) fn config(args: &[&str]) -> Config {
        match run(args) {
            Ok(Parsed::Run(c)) => *c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&["echo"]);
        assert_eq!(c.server, ServerOptions::default());
        assert_eq!(c.listen, [Listen::Addr("127.0.0.1:8080".parse().unwrap())]);
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
        assert_eq!(c.listen, [Listen::Addr("[::1]:0".parse().unwrap())]);
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
    fn sizes_take_k_m_and_g() {
        let c = config(&["chat", "--write-limit", "64K", "--max-line", "1m"]);
        assert_eq!(c.server.write_limit, 65_536);
        assert_eq!(c.server.max_line, 1_048_576);
        let e = run(&["chat", "--max-line", "8KB"]).unwrap_err();
        assert_eq!(
            e.problem,
            "invalid value '8KB' for --max-line: expected a number of bytes, \
             such as 65536, 64K, 1M or 1G"
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
    fn a_mistyped_mode_or_option_gets_the_nearest() {
        let e = run(&["ecoh"]).unwrap_err();
        assert_eq!(e.problem, "unknown mode 'ecoh': did you mean echo?");
        assert_eq!(e.hint(), "see 'monoloop --help'");
        let e = run(&["chat", "--idle-timout", "5"]).unwrap_err();
        assert_eq!(
            e.problem,
            "unknown option '--idle-timout' for chat: did you mean --idle-timeout?"
        );
        assert_eq!(e.hint(), "see 'monoloop chat --help'");
        let e = run(&["client", "h:1", "--timout", "5"]).unwrap_err();
        assert_eq!(
            e.problem,
            "unknown option '--timout' for client: did you mean --timeout?"
        );
        let e = run(&["client", "--insecur", "h:1"]).unwrap_err();
        assert_eq!(
            e.problem,
            "unknown option '--insecur' for client: did you mean --insecure?"
        );
        let e = run(&["echo", "stray"]).unwrap_err();
        assert_eq!(e.problem, "unexpected argument 'stray' for mode echo");
    }

    #[test]
    fn a_mode_refuses_the_options_it_does_not_use() {
        for (args, problem) in [
            (
                &["echo", "--request-timeout", "5"][..],
                "echo does not use --request-timeout (chat and file do)",
            ),
            (
                &["broadcast", "--request-timeout", "5"],
                "broadcast does not use --request-timeout (chat and file do)",
            ),
            (
                &["chat", "--prefix", "> "],
                "chat does not use --prefix (echo and broadcast do)",
            ),
            (
                &["echo", "--root", "/"],
                "echo does not use --root (file does)",
            ),
            (
                &["chat", "--no-sendfile"],
                "chat does not use --no-sendfile (file does)",
            ),
            (
                &["echo", "--timeout", "1"],
                "echo does not use --timeout (client does)",
            ),
            (
                &["client", "h:1", "--workers", "2"],
                "client does not use --workers (the server modes do)",
            ),
            (
                &["echo", "--max-line", "100"],
                "--max-line needs --prefix: plain echo does not cut lines",
            ),
        ] {
            assert_eq!(run(args).unwrap_err().problem, problem, "{args:?}");
        }
        // The modes that use them still take them.
        assert_eq!(
            config(&["file", "--root", "/", "--request-timeout", "5"])
                .server
                .request_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            config(&["echo", "--prefix", "> ", "--max-line", "9"])
                .server
                .max_line,
            9
        );
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
            &["chat", "--idle-timeout", "1", "--idle-timeout", "1"][..],
            &["echo", "--prefix", "a", "--prefix", "b"],
        ] {
            let e = run(args).unwrap_err();
            let name = args[1];
            assert_eq!(e.problem, format!("{name} was given twice"), "{args:?}");
        }
        let e = run(&["echo", "--listen", "127.0.0.1:1", "--listen"]).unwrap_err();
        assert_eq!(e.problem, "--listen needs a value");
        let e = run(&["client", "h:1", "--tls", "--tls"]).unwrap_err();
        assert_eq!(e.problem, "--tls was given twice");
        let e = run(&["client", "h:1", "--tls", "--insecure", "--insecure"]).unwrap_err();
        assert_eq!(e.problem, "--insecure was given twice");
        let e = run(&["client", "h:1", "--timeout", "1", "--timeout", "2"]).unwrap_err();
        assert_eq!(e.problem, "--timeout was given twice");
        assert_eq!(e.hint(), "see 'monoloop client --help'");
    }

    #[test]
    fn an_out_of_range_port_says_so() {
        for (option, value) in [("--listen", "host:99999"), ("--metrics", "127.0.0.1:65536")] {
            let e = run(&["echo", option, value]).unwrap_err();
            let port = value.rsplit(':').next().unwrap();
            assert_eq!(
                e.problem,
                format!(
                    "invalid value '{value}' for {option}: \
                     port {port} is out of range: ports are 0 to 65535"
                )
            );
        }
        for (target, port) in [("h:65536", "65536"), ("h:0", "0")] {
            let e = run(&["client", target]).unwrap_err();
            assert_eq!(
                e.problem,
                format!(
                    "invalid target '{target}': port {port} is out of range: \
                     ports are 1 to 65535"
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
        assert_eq!(c.listen[0].port(), crate::config::DEFAULT_TLS_PORT);
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
        assert!(super::super::usage(None).contains("built without TLS"));
    }
}
