//! Which command takes which option: the one table that the parser, the
//! help and the answer to a mistyped or misplaced option all read.
//!
//! [`OPTIONS`] names every option once, with the commands that use it.
//! `parse.rs` reads an option only for a command that uses it, so one
//! given to another command is left over, and [`misplaced`] words the
//! problem: a command that does not use it (`echo does not use
//! --request-timeout (chat and file do)`), an unknown option with the
//! nearest known one (`did you mean --idle-timeout?`), or a `--name=value`
//! that pico-args does not split. `usage.rs` keeps, in one command's help,
//! the entries of the options that command uses, and a test there checks
//! that the help and this table name the same options.
//!
//! What each option means, its value and its default are not here: they
//! are `parse.rs`'s, `values.rs`'s and `model.rs`'s.

use super::model::Command::{self, Broadcast, Chat, Client, Echo, File};

/// The server modes.
const SERVERS: &[Command] = &[Echo, Broadcast, Chat, File];

/// The relays, which a cluster spans.
const RELAYS: &[Command] = &[Broadcast, Chat];

/// Every option, with the commands that use it, in the order the help
/// lists them. A build without TLS still lists the TLS options: they are
/// read, to be refused with a word on why.
pub(super) const OPTIONS: &[(&str, &[Command])] = &[
    ("--greeting", &[Echo]),
    ("--prefix", &[Echo, Broadcast]),
    ("--root", &[File]),
    ("--no-sendfile", &[File]),
    ("--tls-cert", SERVERS),
    ("--tls-key", SERVERS),
    ("--tls-client-ca", SERVERS),
    ("--handshake-timeout", SERVERS),
    ("--alpn", SERVERS),
    ("--cluster", RELAYS),
    ("--cluster-prefix", RELAYS),
    ("--cluster-ca", RELAYS),
    ("--cluster-outbox", RELAYS),
    ("--timeout", &[Client]),
    ("--tls", &[Client]),
    ("--ca", &[Client]),
    ("--server-name", &[Client]),
    ("--cert", &[Client]),
    ("--key", &[Client]),
    ("--insecure", &[Client]),
    ("--listen", SERVERS),
    ("--max-connections", SERVERS),
    ("--idle-timeout", SERVERS),
    ("--write-limit", SERVERS),
    ("--drain-timeout", SERVERS),
    ("--stats-interval", SERVERS),
    // The prompts: chat's username, file's request line.
    ("--request-timeout", &[Chat, File]),
    // Line modes; echo is one with --prefix only (parse.rs says so).
    ("--max-line", SERVERS),
    ("--access-log", SERVERS),
    ("--workers", SERVERS),
    ("--allow", SERVERS),
    ("--deny", SERVERS),
    ("--max-per-ip", SERVERS),
    ("--metrics", SERVERS),
    ("--proxy-protocol", SERVERS),
    ("--proxy-from", SERVERS),
    ("--log-level", &Command::ALL),
    ("-h", &Command::ALL),
    ("--help", &Command::ALL),
    ("-V", &Command::ALL),
    ("--version", &Command::ALL),
];

/// The options that take no value: flags.
pub(super) const FLAGS: &[&str] = &[
    "--no-sendfile",
    "--tls",
    "--insecure",
    "--access-log",
    "--proxy-protocol",
    "-h",
    "--help",
    "-V",
    "--version",
];

/// The commands that use `option`; `None` for an option nobody uses.
fn users(option: &str) -> Option<&'static [Command]> {
    OPTIONS
        .iter()
        .find(|(name, _)| *name == option)
        .map(|(_, users)| *users)
}

/// True if `command` uses `option`.
pub(super) fn takes(command: Command, option: &str) -> bool {
    users(option).is_some_and(|users| users.contains(&command))
}

/// The options of the `tls` feature: a build without it still reads them,
/// to refuse them, but its help does not list them. (`--cluster` is not
/// one: a build without TLS takes `redis://`.)
pub(super) const TLS: &[&str] = &[
    "--tls-cert",
    "--tls-key",
    "--tls-client-ca",
    "--handshake-timeout",
    "--alpn",
    "--cluster-ca",
    "--tls",
    "--ca",
    "--server-name",
    "--cert",
    "--key",
    "--insecure",
];

/// The options of the `cluster` feature: read and refused by a build
/// without it (`no_cluster.rs`), whose help does not list them.
pub(super) const CLUSTER: &[&str] = &[
    "--cluster",
    "--cluster-prefix",
    "--cluster-ca",
    "--cluster-outbox",
];

/// True if `command`'s help, in this build, lists `option`: it uses it,
/// and it is no TLS option of a build without TLS, nor a cluster option
/// of a build without the cluster.
pub(super) fn listed(command: Command, option: &str) -> bool {
    takes(command, option)
        && (cfg!(feature = "tls") || !TLS.contains(&option))
        && (cfg!(feature = "cluster") || !CLUSTER.contains(&option))
}

/// What is wrong with `arg`, an argument that `command` did not consume,
/// when it looks like an option; `None` for anything else (a stray word).
pub(super) fn misplaced(command: Command, arg: &str) -> Option<String> {
    if !arg.starts_with('-') {
        return None;
    }
    let name = command.name();
    if let Some((option, value)) = arg.split_once('=') {
        if takes(command, option) {
            return Some(match FLAGS.contains(&option) {
                true => format!("'{arg}': {option} takes no value"),
                false => format!("'{arg}': give the value after a space: {option} {value}"),
            });
        }
    }
    if let Some(users) = users(arg) {
        return Some(format!("{name} does not use {arg} ({})", who(users)));
    }
    let mine = OPTIONS
        .iter()
        .filter(|(option, users)| option.starts_with("--") && users.contains(&command))
        .map(|(option, _)| *option);
    Some(match nearest(arg, mine) {
        Some(near) => format!("unknown option '{arg}' for {name}: did you mean {near}?"),
        None => format!("unknown option '{arg}' for {name}"),
    })
}

/// `users`, as the subject of "do": "file does", "chat and file do", "the
/// server modes do".
fn who(users: &[Command]) -> String {
    if users == SERVERS {
        return "the server modes do".into();
    }
    let names: Vec<&str> = users.iter().map(|c| c.name()).collect();
    match names.split_last() {
        Some((last, [])) => format!("{last} does"),
        Some((last, rest)) => format!("{} and {last} do", rest.join(", ")),
        None => "no command does".into(),
    }
}

/// The candidate closest to `typed`, if it is close enough to be what was
/// meant: at most one edit in four characters, and at least one.
pub(super) fn nearest<'a>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let allowed = (typed.chars().count() / 4).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(typed, c), c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The edits (insert, delete, replace a character, or swap two neighbours)
/// that turn `a` into `b`: Levenshtein's distance with transpositions
/// (the "optimal string alignment" one), so that `ecoh` is one edit from
/// `echo`. Three rows of a table, for the few short words of a command
/// line.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Row i holds the distances from a[..i] to each b[..j].
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut above: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let replace = above[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            row[j] = replace.min(above[j] + 1).min(row[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut above);
        std::mem::swap(&mut above, &mut row);
    }
    above[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(distance("echo", "echo"), 0);
        assert_eq!(distance("ecoh", "echo"), 1);
        assert_eq!(distance("eco", "echo"), 1);
        assert_eq!(distance("echoo", "echo"), 1);
        assert_eq!(distance("ekho", "echo"), 1);
        assert_eq!(distance("", "chat"), 4);
        assert_eq!(distance("chat", ""), 4);
        assert_eq!(distance("dance", "chat"), 5);
        assert_eq!(distance("abcd", "badc"), 2);
        assert_eq!(distance("--idle-timout", "--idle-timeout"), 1);
    }

    #[test]
    fn the_nearest_is_suggested_only_when_near() {
        let modes = ["echo", "broadcast", "chat", "file", "client"];
        assert_eq!(nearest("ecoh", modes), Some("echo"));
        assert_eq!(nearest("brodcast", modes), Some("broadcast"));
        assert_eq!(nearest("files", modes), Some("file"));
        assert_eq!(nearest("dance", modes), None);
        assert_eq!(nearest("x", modes), None);
    }

    #[test]
    fn an_option_given_to_the_wrong_command_says_who_uses_it() {
        assert_eq!(
            misplaced(Echo, "--request-timeout").as_deref(),
            Some("echo does not use --request-timeout (chat and file do)")
        );
        assert_eq!(
            misplaced(Chat, "--root").as_deref(),
            Some("chat does not use --root (file does)")
        );
        assert_eq!(
            misplaced(Echo, "--cluster").as_deref(),
            Some("echo does not use --cluster (broadcast and chat do)")
        );
        assert_eq!(
            misplaced(Client, "--listen").as_deref(),
            Some("client does not use --listen (the server modes do)")
        );
        assert_eq!(
            misplaced(Echo, "--idle-timout").as_deref(),
            Some("unknown option '--idle-timout' for echo: did you mean --idle-timeout?")
        );
        assert_eq!(
            misplaced(File, "--bogus").as_deref(),
            Some("unknown option '--bogus' for file")
        );
        assert_eq!(
            misplaced(Echo, "--listen=:8080").as_deref(),
            Some("'--listen=:8080': give the value after a space: --listen :8080")
        );
        assert_eq!(
            misplaced(Echo, "--access-log=yes").as_deref(),
            Some("'--access-log=yes': --access-log takes no value")
        );
        assert_eq!(misplaced(Echo, "stray"), None);
    }

    #[test]
    fn every_flag_is_an_option() {
        for flag in FLAGS {
            assert!(users(flag).is_some(), "{flag}");
        }
    }

    #[test]
    fn every_command_takes_the_general_options() {
        for c in Command::ALL {
            for o in ["--log-level", "--help", "-h", "--version", "-V"] {
                assert!(takes(c, o), "{c:?} {o}");
            }
        }
        assert!(takes(File, "--request-timeout") && !takes(Broadcast, "--request-timeout"));
        assert!(!takes(Echo, "--nonsense"));
    }
}
