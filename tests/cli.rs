//! The command line as a user meets it, through the real binary: argument
//! errors (one line, a hint, exit 2), help for one command or all of them,
//! and `--listen` with a host name, resolved at start.

mod common;

use std::io::Write;
use std::process::Output;

use common::*;

/// Runs `monoloop ARGS` that should exit at once (no server starts: each
/// case fails before listening, or prints help).
fn run(args: &[&str]) -> Output {
    binary()
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Asserts an argument error: exit 2, nothing on stdout, and on stderr
/// exactly `error: PROBLEM` and the hint.
fn assert_usage_error(args: &[&str], problem: &str, hint: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr, format!("error: {problem}\n{hint}\n"), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn argument_errors_are_one_line_and_a_hint_exit_2() {
    let top = "see 'monoloop --help'";
    let echo = "see 'monoloop echo --help'";
    let client = "see 'monoloop client --help'";
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[],
            "no mode given: expected echo, broadcast, chat, file or client",
            top,
        ),
        (
            &["dance"],
            "unknown mode 'dance': expected echo, broadcast, chat, file or client",
            top,
        ),
        (
            &["echo", "--max-connections", "zero"],
            "invalid value 'zero' for --max-connections: expected a whole number",
            echo,
        ),
        (
            &["echo", "--bogus"],
            "unexpected argument '--bogus' for mode echo",
            echo,
        ),
        (
            &["echo", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2"],
            "--listen was given twice",
            echo,
        ),
        (
            &["file", "--root", "/", "--root", "/"],
            "--root was given twice",
            "see 'monoloop file --help'",
        ),
        (
            &["client", "127.0.0.1:1", "--timeout", "1", "--timeout", "1"],
            "--timeout was given twice",
            client,
        ),
        (
            &["client", "127.0.0.1:1", "--cert", "c.pem"],
            "--cert needs --tls",
            client,
        ),
        (
            &["client"],
            "client needs HOST:PORT, such as 127.0.0.1:8080",
            client,
        ),
    ];
    for (args, problem, hint) in cases {
        assert_usage_error(args, problem, hint);
    }
}

#[cfg(feature = "tls")]
#[test]
fn tls_options_missing_their_partner_are_argument_errors() {
    // None of these files exists: the pairing is judged before any is read.
    let echo = "see 'monoloop echo --help'";
    let client = "see 'monoloop client --help'";
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["echo", "--tls-cert", "c.pem"],
            "--tls-cert c.pem was given without --tls-key",
            echo,
        ),
        (
            &["chat", "--tls-key", "k.pem"],
            "--tls-key k.pem was given without --tls-cert",
            "see 'monoloop chat --help'",
        ),
        (
            &["echo", "--tls-client-ca", "ca.pem"],
            "--tls-client-ca needs --tls-cert and --tls-key",
            echo,
        ),
        (
            &["echo", "--alpn", "h2"],
            "--alpn needs --tls-cert and --tls-key",
            echo,
        ),
        (
            &["client", "127.0.0.1:1", "--tls", "--cert", "c.pem"],
            "--cert c.pem was given without --key",
            client,
        ),
        (
            &["client", "127.0.0.1:1", "--tls", "--key", "k.pem"],
            "--key k.pem was given without --cert",
            client,
        ),
        (
            &["client", "127.0.0.1:1", "--tls", "--tls"],
            "--tls was given twice",
            client,
        ),
    ];
    for (args, problem, hint) in cases {
        assert_usage_error(args, problem, hint);
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn without_tls_its_options_are_argument_errors() {
    let why = "needs TLS, but this monoloop was built without it (cargo feature \"tls\")";
    assert_usage_error(
        &["echo", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
        &format!("--tls-cert {why}"),
        "see 'monoloop echo --help'",
    );
    assert_usage_error(
        &["client", "127.0.0.1:1", "--tls"],
        &format!("--tls {why}"),
        "see 'monoloop client --help'",
    );
}

#[test]
fn help_for_one_mode_shows_its_options_and_the_common_ones() {
    let out = run(&["echo", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("monoloop echo: "), "{text}");
    for wanted in [
        "monoloop echo [OPTIONS]",
        "--greeting",
        "--tls-cert",
        "--listen HOST:PORT",
        "--max-connections",
        "--log-level",
    ]
    .into_iter()
    .filter(in_this_build)
    {
        assert!(text.contains(wanted), "echo --help lacks {wanted}:\n{text}");
    }
    for unwanted in ["MODES:", "--root", "BROADCAST OPTIONS", "CLIENT OPTIONS"] {
        assert!(!text.contains(unwanted), "echo --help has {unwanted}");
    }

    let out = run(&["client", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for wanted in [
        "monoloop client HOST:PORT",
        "--timeout",
        "--insecure",
        "--log-level",
    ]
    .into_iter()
    .filter(in_this_build)
    {
        assert!(
            text.contains(wanted),
            "client --help lacks {wanted}:\n{text}"
        );
    }
    for unwanted in ["--listen", "--tls-cert", "--max-connections"] {
        assert!(!text.contains(unwanted), "client --help has {unwanted}");
    }

    // Help wins over a bad line, and names the mode's options still.
    let out = run(&["file", "--bogus", "-h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--root DIR"));
}

#[test]
fn help_without_a_mode_is_the_whole_usage() {
    let whole = run(&["--help"]);
    assert_eq!(whole.status.code(), Some(0));
    let text = String::from_utf8_lossy(&whole.stdout);
    for wanted in [
        "MODES:",
        "ECHO OPTIONS:",
        "BROADCAST OPTIONS:",
        "FILE OPTIONS:",
        "TLS (ANY SERVER MODE):",
        "CLIENT OPTIONS:",
        "OPTIONS FOR EVERY SERVER MODE:",
    ]
    .into_iter()
    .filter(in_this_build)
    {
        assert!(text.contains(wanted), "--help lacks {wanted}");
    }
    // An unknown mode gets the whole usage too: it is what would help.
    assert_eq!(run(&["dance", "--help"]).stdout, whole.stdout);
}

#[test]
fn listen_on_a_host_name_serves_on_its_address() {
    let server = Server::start(&["echo", "--listen", "localhost:0"]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_ne!(server.addr.port(), 0);
    let mut s = connect(server.addr);
    s.write_all(b"by name\n").unwrap();
    expect(&mut s, b"by name\n");
}

#[test]
fn a_listen_name_that_does_not_resolve_is_one_line_exit_1() {
    // `.invalid` never resolves (RFC 2606).
    let out = run(&["echo", "--listen", "nosuch.invalid:8080"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot resolve --listen 'nosuch.invalid:8080': "),
        "{stderr}"
    );
}

#[test]
fn version_names_the_commit_and_whether_tls_is_built_in() {
    let tls = if cfg!(feature = "tls") {
        "tls"
    } else {
        "no-tls"
    };
    for flag in ["--version", "-V"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(out.stderr.is_empty(), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("monoloop {} (commit ", env!("CARGO_PKG_VERSION"));
        let suffix = format!(", {tls})\n");
        let commit = text
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
            .unwrap_or_else(|| panic!("{flag}: {text:?}"));
        // In a git checkout (CI's is a fresh clone) the commit is the one
        // checked out; elsewhere build.rs says it does not know.
        let head = std::process::Command::new("git")
            .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        match head {
            Some(head) => assert!(
                commit.len() >= 7 && head.starts_with(commit),
                "{flag}: commit {commit:?}, HEAD {head}"
            ),
            None => assert_eq!(commit, "unknown", "{flag}"),
        }
    }
}

/// The options a help text lists: on each line that starts with an
/// option, the options before its description (`--cert FILE --key FILE`
/// lists two; `-h, --help` two).
fn listed_options(help: &str) -> Vec<String> {
    let mut listed = Vec::new();
    for line in help.lines().filter(|l| l.starts_with("    -")) {
        for word in line.split_whitespace() {
            if word.starts_with('-') {
                listed.push(word.trim_end_matches(',').to_string());
            } else if !word.starts_with(|c: char| c.is_ascii_uppercase()) {
                // The description: options come before it, each maybe
                // followed by its value's name (FILE, N|auto).
                break;
            }
        }
    }
    listed
}

/// Whether this build's help has `wanted`: a build without TLS lists no TLS
/// option, nor their section.
fn in_this_build(wanted: &&str) -> bool {
    cfg!(feature = "tls") || !(wanted.contains("TLS") || TLS_OPTIONS.contains(wanted))
}

/// Every TLS option, the servers' and the client's.
const TLS_OPTIONS: &[&str] = &[
    "--tls-cert",
    "--tls-key",
    "--tls-client-ca",
    "--handshake-timeout",
    "--alpn",
    "--tls",
    "--ca",
    "--server-name",
    "--cert",
    "--key",
    "--insecure",
];

#[test]
fn help_lists_the_tls_options_only_in_a_build_with_tls() {
    let whole = listed_options(&String::from_utf8_lossy(&run(&["--help"]).stdout));
    assert!(whole.contains(&"--listen".to_string()) && whole.contains(&"-h".to_string()));
    for option in TLS_OPTIONS {
        assert_eq!(
            whole.contains(&option.to_string()),
            cfg!(feature = "tls"),
            "{option} in --help"
        );
    }
    if !cfg!(feature = "tls") {
        for mode in ["echo", "broadcast", "chat", "file", "client"] {
            let out = run(&[mode, "--help"]);
            let listed = listed_options(&String::from_utf8_lossy(&out.stdout));
            assert!(!listed.is_empty(), "{mode}");
            let tls: Vec<_> = listed
                .iter()
                .filter(|o| TLS_OPTIONS.contains(&o.as_str()))
                .collect();
            assert!(tls.is_empty(), "'{mode} --help' lists {tls:?}");
        }
    }
}

/// `--man` and `--completions`, with the default `manual` feature.
#[cfg(feature = "manual")]
mod manual {
    use super::*;

    /// What `monoloop ARGS` prints, which must succeed.
    fn stdout_of(args: &[&str]) -> String {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `tool ARGS` on `script` (written to a file), and returns what it
    /// printed; it must succeed.
    fn run_on(tool: &str, args: &[&str], script: &str) -> String {
        let path = std::env::temp_dir().join(format!("monoloop-cli-{}-{tool}", std::process::id()));
        std::fs::write(&path, script).unwrap();
        let out = std::process::Command::new(tool)
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{tool} {args:?}: {said}");
        said
    }

    #[test]
    fn the_man_page_and_the_completions_name_every_option_each_mode_lists() {
        let man = stdout_of(&["--man"]);
        let bash = stdout_of(&["--completions", "bash"]);
        let zsh = stdout_of(&["--completions", "zsh"]);
        let fish = stdout_of(&["--completions", "fish"]);
        for mode in ["echo", "broadcast", "chat", "file", "client"] {
            let listed = listed_options(&stdout_of(&[mode, "--help"]));
            // Each script's part for the mode: bash's line, zsh's block,
            // fish's lines.
            let bash_line = bash
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{mode}) options='")))
                .unwrap_or_else(|| panic!("bash: no line for {mode}"));
            let bash_words: Vec<&str> = bash_line.split([' ', '\'']).collect();
            let zsh_block = zsh
                .split(&format!("({mode}) spec=("))
                .nth(1)
                .and_then(|rest| rest.split(") ;;").next())
                .unwrap_or_else(|| panic!("zsh: no block for {mode}"));
            let when = format!("'__fish_seen_subcommand_from {mode}' ");
            let fish_lines: String = fish
                .lines()
                .filter(|l| l.contains(&when))
                .map(|l| format!("{l}\n"))
                .collect();
            for option in &listed {
                let roff = option.replace('-', "\\-");
                assert!(man.contains(&format!("\\fB{roff}\\fR")), "man: {option}");
                assert!(
                    bash_words.contains(&option.as_str()),
                    "bash {mode}: {option}"
                );
                assert!(
                    zsh_block.contains(&format!("'{option}["))
                        || zsh_block.contains(&format!("'*{option}[")),
                    "zsh {mode}: {option}"
                );
                let fish_name = match option.strip_prefix("--") {
                    Some(long) => format!("-l {long} "),
                    None => format!("-s {} ", option.trim_start_matches('-')),
                };
                assert!(fish_lines.contains(&fish_name), "fish {mode}: {option}");
            }
        }
        // Nothing a build lacks: the scripts are made from its own help.
        for option in TLS_OPTIONS {
            let word = format!(" {option} ");
            let in_bash = bash.replace(['\'', '|', ')'], " ").contains(&word);
            assert_eq!(in_bash, cfg!(feature = "tls"), "bash: {option}");
        }
    }

    #[test]
    fn the_scripts_parse_and_bash_completes_as_the_help_says() {
        let bash = stdout_of(&["--completions", "bash"]);
        run_on("bash", &["-n"], &bash);
        // Source it and ask, as bash does on a tab: COMP_WORDS, COMP_CWORD.
        let ask = format!(
            "{bash}\nask() {{ COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); \
             _monoloop; echo \"${{COMPREPLY[*]}}\"; }}\n\
             ask monoloop ''\nask monoloop echo --gr\nask monoloop chat --log-level d\n\
             ask monoloop client --ins\nask monoloop echo --listen ''\n"
        );
        let said = run_on("bash", &[], &ask);
        let said: Vec<&str> = said.lines().collect();
        assert_eq!(
            said,
            [
                "echo broadcast chat file client -h --help -V --version",
                "--greeting",
                "debug",
                if cfg!(feature = "tls") {
                    "--insecure"
                } else {
                    ""
                },
                "",
            ]
        );
        if common::skip::have("zsh", "--version", "zsh") {
            run_on("zsh", &["-n"], &stdout_of(&["--completions", "zsh"]));
        }
        if common::skip::have("fish", "--version", "fish") {
            run_on("fish", &["-n"], &stdout_of(&["--completions", "fish"]));
        }
        if common::skip::have("groff", "--version", "groff-base") {
            // -ww: every warning; -z: no output but them.
            let said = run_on(
                "groff",
                &["-man", "-z", "-ww", "-Tutf8"],
                &stdout_of(&["--man"]),
            );
            assert!(said.is_empty(), "{said}");
        }
    }
}

#[cfg(not(feature = "manual"))]
#[test]
fn without_the_manual_feature_man_and_completions_say_so() {
    let out = run(&["--man"]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cargo feature \"manual\""), "{said}");
}
