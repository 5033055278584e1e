//! The command line (`config/parse.rs`, `config::parse`), the invariant of
//! the fuzz target for the command line:
//!
//! - parsing never panics, whatever the arguments (unknown options, values
//!   out of range, `--opt=value`, repeats, non-UTF-8 bytes): a usage error
//!   is an error (exit 2 with one line), never a crash;
//! - a usage error is one line (unless an argument itself holds a line
//!   break, quoted back), with a hint that points at the help;
//! - a server command line whose options are all valid parses, and the same
//!   line with one value made invalid is refused, naming that option.
//!
//! Inputs are modes, every option of every mode, values valid for some and
//! not others, and raw text; and, for the second part, tables of valid and
//! invalid values per option.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use monoloop::config::{parse, Parsed};
use proptest::prelude::*;

use super::cases;

/// Every option the help lists, and some it does not.
const OPTIONS: &[&str] = &[
    "--greeting",
    "--prefix",
    "--root",
    "--no-sendfile",
    "--tls-cert",
    "--tls-key",
    "--tls-client-ca",
    "--handshake-timeout",
    "--alpn",
    "--cluster",
    "--cluster-prefix",
    "--cluster-ca",
    "--cluster-outbox",
    "--timeout",
    "--tls",
    "--ca",
    "--server-name",
    "--cert",
    "--key",
    "--insecure",
    "--listen",
    "--max-connections",
    "--idle-timeout",
    "--write-limit",
    "--drain-timeout",
    "--stats-interval",
    "--request-timeout",
    "--max-line",
    "--access-log",
    "--workers",
    "--allow",
    "--deny",
    "--max-per-ip",
    "--metrics",
    "--proxy-protocol",
    "--proxy-from",
    "--log-level",
    "--help",
    "-h",
    "--version",
    "-V",
    "--man",
    "--completions",
    "--idle-timout",
    "-",
    "--",
    "-x",
    "--listen=",
    "--workers=auto",
];

/// Values valid for some option, or for none.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "-0",
    "-0.0",
    "0.5",
    "86400",
    "86401",
    "1e3",
    "NaN",
    "inf",
    "64K",
    "1M",
    "1G",
    "99999999999999999999G",
    "auto",
    "1025",
    "127.0.0.1:0",
    ":8080",
    "[::1]:1",
    "localhost:1",
    "host:99999",
    "10.0.0.0/8",
    "::1/129",
    "/",
    "/nonexistent",
    "redis://:pw@127.0.0.1:6379",
    "rediss://u:p@[::1]/0",
    "redis://h:0",
    "bash",
    "zsh",
    "info",
    "LOUD",
    "echo",
    "chat",
    "",
    " ",
    "h2,http/1.1",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "é",
    "line\nbreak",
];

const MODES: &[&str] = &[
    "echo",
    "broadcast",
    "chat",
    "file",
    "client",
    "ech",
    "",
    "-x",
    "help",
];

/// One argument: a mode, an option, `--option=value`, a value, or bytes
/// that are not UTF-8.
fn arg() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => prop::sample::select(OPTIONS).prop_map(OsString::from),
        4 => prop::sample::select(VALUES).prop_map(OsString::from),
        1 => (prop::sample::select(OPTIONS), prop::sample::select(VALUES))
            .prop_map(|(o, v)| OsString::from(format!("{o}={v}"))),
        1 => prop::sample::select(MODES).prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(OsString::from_vec),
    ]
}

fn args() -> impl Strategy<Value = Vec<OsString>> {
    (
        prop::sample::select(MODES),
        prop::collection::vec(arg(), 0..10),
    )
        .prop_map(|(mode, rest)| {
            let mut all = vec![OsString::from(mode)];
            all.extend(rest);
            all
        })
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn any_command_line_parses_or_is_a_usage_error(args in args()) {
        let breaks = args.iter().any(|a| a.as_encoded_bytes().contains(&b'\n'));
        match parse(args.clone()) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.problem.is_empty());
                prop_assert!(breaks || !e.problem.contains('\n'), "not one line: {:?}", e.problem);
                prop_assert!(e.hint().starts_with("see 'monoloop"), "{}", e.hint());
                prop_assert_eq!(e.to_string(), e.problem.clone());
            }
        }
    }
}

/// Options every server mode takes: valid values, then invalid ones.
const SERVER: &[(&str, &[&str], &[&str])] = &[
    ("--max-connections", &["1", "1024"], &["0", "x", "-1", ""]),
    (
        "--idle-timeout",
        &["0", "30", "0.5"],
        &["x", "86401", "NaN", "-2"],
    ),
    (
        "--write-limit",
        &["1", "64K", "1m"],
        &["0", "K", "1x", "99999999999999999999G"],
    ),
    ("--drain-timeout", &["0", "5"], &["inf", "-5"]),
    ("--stats-interval", &["0", "0.1", "60"], &["0.05", "x"]),
    ("--workers", &["1", "auto", "1024"], &["0", "1025", "x"]),
    ("--max-per-ip", &["0", "5"], &["x", "-1"]),
    (
        "--allow",
        &["10.0.0.0/8", "::1", "1.2.3.4"],
        &["10.0.0.0/33", "x", "::1/129"],
    ),
    ("--deny", &["192.168.0.0/16"], &["1.2.3"]),
    ("--log-level", &["info", "DEBUG"], &["loud"]),
    ("--handshake-timeout", &["10"], &["ten"]),
    (
        "--listen",
        &["127.0.0.1:0", ":8080", "localhost:1", "[::1]:0"],
        &["host:99999", "a b:1", "x"],
    ),
];

/// A server command line: a mode and some of [`SERVER`]'s options, each
/// with a valid value; and the index of one to spoil, with its bad value.
fn server_line() -> impl Strategy<Value = (Vec<(String, String)>, usize, usize)> {
    let mode = prop::sample::select(vec!["echo", "broadcast", "chat", "file"]);
    let chosen = prop::sample::subsequence((0..SERVER.len()).collect::<Vec<_>>(), 1..SERVER.len());
    (mode, chosen, any::<prop::sample::Index>(), any::<usize>()).prop_map(
        |(mode, chosen, good, bad)| {
            let mut line = vec![(mode.to_string(), String::new())];
            if mode == "file" {
                line.push(("--root".to_string(), "/".to_string()));
            }
            for i in chosen {
                let (opt, goods, _) = SERVER[i];
                line.push((opt.to_string(), goods[good.index(goods.len())].to_string()));
            }
            let spoil = 1 + bad % (line.len() - 1);
            (line, spoil, bad)
        },
    )
}

/// The arguments of a line, `--opt value`, or `--opt=value` if `eq`.
fn to_args(line: &[(String, String)], eq: bool) -> Vec<OsString> {
    let mut args = vec![OsString::from(&line[0].0)];
    for (opt, value) in &line[1..] {
        if eq {
            args.push(format!("{opt}={value}").into());
        } else {
            args.push(opt.into());
            args.push(value.into());
        }
    }
    args
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn valid_options_parse_and_one_bad_value_is_named((mut line, spoil, bad) in server_line()) {
        let good = parse(to_args(&line, false));
        prop_assert!(matches!(good, Ok(Parsed::Run(_))), "{:?} refused: {:?}", line, good.err());
        // `--opt=value` is refused on purpose (saying how to write it, or
        // that a needed option is missing), naming an option of the line.
        match parse(to_args(&line, true)) {
            Err(e) => prop_assert!(
                line[1..].iter().any(|(o, _)| e.problem.contains(o.as_str())),
                "{}", e.problem
            ),
            Ok(p) => prop_assert!(false, "{:?} with '=' was accepted: {:?}", line, p),
        }
        let opt = line[spoil].0.clone();
        let Some((_, _, bads)) = SERVER.iter().find(|(o, _, _)| *o == opt) else {
            // `--root` of file mode: spoil it with a directory that is not.
            line[spoil].1 = "/nonexistent/dir".into();
            prop_assert!(parse(to_args(&line, false)).is_err());
            return Ok(());
        };
        line[spoil].1 = bads[bad % bads.len()].to_string();
        match parse(to_args(&line, false)) {
            Err(e) => prop_assert!(e.problem.contains(&opt), "{:?}: {}", line, e.problem),
            Ok(p) => prop_assert!(false, "{:?} was accepted: {:?}", line, p),
        }
    }
}
