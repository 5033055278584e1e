//! The command line as a user meets it, through the real binary: argument
//! errors (one line, a hint, exit 2), help for one command or all of them,
//! and `--listen` with a host name, resolved at start.

mod common;

use std::io::Write;
use std::process::Output;

use common::*;

/// Runs `monoloop ARGS` that should exit at once (no server starts: each
/// case fails before listening, or prints help). One that starts a server
/// instead fails the test after `PATIENCE`, rather than hanging it.
fn run(args: &[&str]) -> Output {
    let mut cmd = binary();
    cmd.args(args).stdin(std::process::Stdio::null());
    output_within(cmd)
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
        (&["echo", "--bogus"], "unknown option '--bogus' for echo", echo),
        (
            &["echo", "stray"],
            "unexpected argument 'stray' for mode echo",
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

#[test]
fn a_mistyped_mode_or_option_suggests_the_nearest() {
    assert_usage_error(
        &["ecoh", "--listen", "127.0.0.1:0"],
        "unknown mode 'ecoh': did you mean echo?",
        "see 'monoloop --help'",
    );
    assert_usage_error(
        &["chat", "--idle-timout", "5"],
        "unknown option '--idle-timout' for chat: did you mean --idle-timeout?",
        "see 'monoloop chat --help'",
    );
    assert_usage_error(
        &["echo", "--listen=127.0.0.1:0"],
        "'--listen=127.0.0.1:0': give the value after a space: --listen 127.0.0.1:0",
        "see 'monoloop echo --help'",
    );
}

/// An option the mode would ignore is refused, where it used to be
/// accepted and silently do nothing (echo took --request-timeout).
#[test]
fn a_mode_refuses_an_option_it_does_not_use() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["echo", "--request-timeout", "5"],
            "echo does not use --request-timeout (chat and file do)",
            "see 'monoloop echo --help'",
        ),
        (
            &["broadcast", "--greeting", "hi"],
            "broadcast does not use --greeting (echo does)",
            "see 'monoloop broadcast --help'",
        ),
        (
            &["client", "127.0.0.1:1", "--listen", "127.0.0.1:0"],
            "client does not use --listen (the server modes do)",
            "see 'monoloop client --help'",
        ),
        (
            &["echo", "--max-line", "64"],
            "--max-line needs --prefix: plain echo does not cut lines",
            "see 'monoloop echo --help'",
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
    ] {
        assert!(text.contains(wanted), "echo --help lacks {wanted}:\n{text}");
    }
    // Only what echo uses: not the prompts' timeout, nor another mode's.
    for unwanted in [
        "MODES:",
        "--root",
        "--request-timeout",
        "BROADCAST OPTIONS",
        "CLIENT OPTIONS",
    ] {
        assert!(!text.contains(unwanted), "echo --help has {unwanted}");
    }
    let chat = run(&["chat", "--help"]);
    assert!(String::from_utf8_lossy(&chat.stdout).contains("--request-timeout SECS"));

    let out = run(&["client", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for wanted in [
        "monoloop client HOST:PORT",
        "--timeout",
        "--insecure",
        "--log-level",
    ] {
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
        "SERVER OPTIONS:",
    ] {
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
