//! The command line as a user meets it, through the real binary: argument
//! errors (one line, a hint, exit 2), help for one command or all of them,
//! `--listen` (repeated, a host name resolved at start, a port alone) and
//! `--metrics`, and the start errors that name their listener and say
//! what to do (exit 1).

mod common;

use std::io::Write;
use std::net::SocketAddr;

use common::*;

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
            "unknown option '--bogus' for echo",
            echo,
        ),
        (
            &["echo", "stray"],
            "unexpected argument 'stray' for mode echo",
            echo,
        ),
        (
            &["echo", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:1"],
            "--listen 127.0.0.1:1 was given twice",
            echo,
        ),
        (
            &["echo", "--listen", "127.0.0.1:99999"],
            "invalid value '127.0.0.1:99999' for --listen: \
             port 99999 is out of range: ports are 0 to 65535",
            echo,
        ),
        (
            &["echo", "--write-limit", "2X"],
            "invalid value '2X' for --write-limit: \
             expected a number of bytes, such as 65536, 64K, 1M or 1G",
            echo,
        ),
        (
            &["client", "127.0.0.1:70000"],
            "invalid target '127.0.0.1:70000': port 70000 is out of range: \
             ports are 1 to 65535",
            client,
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
    #[cfg(feature = "cluster")]
    assert_usage_error(
        &["chat", "--cluster", "rediss://:hunter2@127.0.0.1"],
        &format!("--cluster rediss://:***@127.0.0.1:6379 {why}; redis:// is plain TCP"),
        "see 'monoloop chat --help'",
    );
}

/// A build without the cluster (cargo feature "cluster") refuses its
/// options, saying why (its help lists none: see the help's test).
#[cfg(not(feature = "cluster"))]
#[test]
fn without_the_cluster_its_options_are_argument_errors() {
    assert_usage_error(
        &["chat", "--cluster", "redis://:hunter2@127.0.0.1"],
        "--cluster needs the cluster, but this monoloop was built without it \
         (cargo feature \"cluster\")",
        "see 'monoloop chat --help'",
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
    assert!(!text.contains("--cluster"), "echo --help has --cluster");
    let chat = run(&["chat", "--help"]);
    let chat = String::from_utf8_lossy(&chat.stdout);
    assert!(chat.contains("--request-timeout SECS"));
    assert_eq!(chat.contains("--cluster URL"), cfg!(feature = "cluster"));

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
        "SERVER OPTIONS:",
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

/// True if this machine has IPv6 loopback (some containers do not).
fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Waits for the `listening on` line naming `ip` (each listener has one,
/// in the order of the command line), and returns its address.
fn listening_on(server: &mut Server, ip: &str) -> SocketAddr {
    let line = server.wait_for_log_where("listening on ", |l| l.contains(ip));
    let rest = line.rsplit("listening on ").next().unwrap();
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Sends a line and expects it back.
fn echoes(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(b"hi\n").unwrap();
    expect(&mut s, b"hi\n");
}

#[test]
fn listen_may_be_given_more_than_once() {
    if !has_ipv6() {
        skip::skip("no IPv6 loopback (::1) here");
        return;
    }
    for workers in ["1", "2"] {
        let mut server = Server::start(&[
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::1]:0",
            "--workers",
            workers,
        ]);
        let v4 = listening_on(&mut server, "127.0.0.1:");
        let v6 = listening_on(&mut server, "[::1]:");
        assert_eq!(v4, server.addr, "the first line is the first --listen");
        echoes(v4);
        echoes(v6);
    }
}

#[test]
fn a_port_alone_listens_on_every_address() {
    let mut server = Server::start(&["echo", "--listen", ":0"]);
    // One socket for both families, [::] (0.0.0.0 on a kernel without
    // IPv6).
    let line = server.wait_for_log("listening on ");
    assert!(
        line.contains("listening on [::]:") || line.contains("listening on 0.0.0.0:"),
        "{line}"
    );
    let port = server.addr.port();
    echoes(SocketAddr::from(([127, 0, 0, 1], port)));
    if has_ipv6() {
        echoes(format!("[::1]:{port}").parse().unwrap());
    }
}

#[test]
fn metrics_takes_a_host_name() {
    let mut server = Server::start(&["echo", "--metrics", "localhost:0"]);
    let addr = common::metrics::metrics_addr(&mut server);
    assert!(addr.ip().is_loopback(), "{addr}");
    let answer = common::metrics::get(addr, "/healthz");
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && answer.trim_end().ends_with("ok"),
        "{answer}"
    );
}

/// An address in use names the option whose address it is, so that with
/// two listeners the operator knows which to change.
#[test]
fn a_listener_in_use_is_named() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    for option in ["--listen", "--metrics"] {
        let out = run(&["echo", "--listen", "127.0.0.1:0", option, &taken]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{option}: {stderr}");
        assert_eq!(stderr, format!("error: {option} {taken}: already in use\n"));
    }
}

/// A port below 1024 without the privilege says how to get it. The tests
/// run as root here, so the binary runs as nobody (65534), from a copy in
/// the temporary directory (the checkout may be where nobody cannot go,
/// under /root); not as root, it runs as the tester, who lacks the
/// privilege already.
#[test]
fn a_privileged_port_says_how_to_get_the_privilege() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let first = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    if first <= 1 {
        skip::skip(&format!(
            "net.ipv4.ip_unprivileged_port_start is {first}: no port is privileged here"
        ));
        return;
    }
    // SAFETY: geteuid reads the process's own id; no memory is involved.
    let root = unsafe { libc::geteuid() } == 0;
    let dir = std::env::temp_dir().join(format!("monoloop-nobody-{}", std::process::id()));
    let mut cmd = if root {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("monoloop");
        std::fs::copy(env!("CARGO_BIN_EXE_monoloop"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = std::process::Command::new(&copy);
        cmd.uid(65534).gid(65534).current_dir(&dir);
        cmd
    } else {
        binary()
    };
    cmd.args(["echo", "--listen", "127.0.0.1:1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn();
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            skip::skip(&format!(
                "cannot run the binary as nobody (65534) here: {e}"
            ));
            return;
        }
    };
    // A server that did get the port would run on: fail, not hang.
    let deadline = std::time::Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("monoloop listened on port 1 without the privilege");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let expected = format!(
        "error: --listen 127.0.0.1:1: permission denied: a port below {first} needs \
         the CAP_NET_BIND_SERVICE capability: give it to the binary \
         (setcap 'cap_net_bind_service=+ep' "
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    for how in [
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "socket activation: docs/deploy/monoloop.socket",
    ] {
        assert!(stderr.contains(how), "{stderr}");
    }
}

/// A certificate or key in a format monoloop does not read (DER, or a key
/// under a passphrase) is named, with the `openssl` command that converts
/// it, by the server (exit 2, before listening) and by the client (exit 1).
#[cfg(feature = "tls")]
#[test]
fn a_certificate_or_key_in_another_format_names_the_command_that_converts_it() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let pki = common::tls::Pki::new("formats");
    let (cert, key) = (pki.path("server.pem"), pki.path("server-key.pem"));
    let dir = pki.0.display().to_string();
    let cert_der = pki.path("server.der");
    let der = CertificateDer::from_pem_file(&cert).unwrap();
    std::fs::write(&cert_der, der.as_ref()).unwrap();
    let key_der = pki.path("server-key.der");
    let der = PrivateKeyDer::from_pem_file(&key).unwrap();
    std::fs::write(&key_der, der.secret_der()).unwrap();
    // What `openssl pkey -aes256` writes: the header is what tells.
    let encrypted = pki.path("locked-key.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n\
         MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgAAAAAAAAAAAICCAAw\n\
         -----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let cases = [
        (
            vec!["echo", "--tls-cert", &cert_der, "--tls-key", &key],
            format!(
                "--tls-cert {cert_der}: this is DER (binary), not PEM: convert it with \
                 `openssl x509 -inform DER -in {cert_der} -out {dir}/server.pem`"
            ),
        ),
        (
            vec!["echo", "--tls-cert", &cert, "--tls-key", &key_der],
            format!(
                "--tls-key {key_der}: this is DER (binary), not PEM: convert it with \
                 `openssl pkey -inform DER -in {key_der} -out {dir}/server-key.pem`"
            ),
        ),
        (
            vec!["chat", "--tls-cert", &cert, "--tls-key", &encrypted],
            format!(
                "--tls-key {encrypted}: the private key is encrypted, and monoloop \
                 cannot ask for its passphrase: write it out unencrypted with \
                 `openssl pkey -in {encrypted} -out {dir}/locked-key-plain.pem` (it asks \
                 for the passphrase once), readable by the server's user only"
            ),
        ),
    ];
    for (args, problem) in cases {
        let out = run(&[&args[..], &["--listen", "127.0.0.1:0"]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr, format!("error: {problem}\n"));
    }
    let out = run(&["client", "127.0.0.1:1", "--tls", "--ca", &cert_der]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: TLS: --ca {cert_der}: this is DER (binary)"
        )),
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
    "--cluster-ca",
];

#[test]
fn help_lists_the_tls_options_only_in_a_build_with_tls() {
    let whole = listed_options(&String::from_utf8_lossy(&run(&["--help"]).stdout));
    assert!(whole.contains(&"--listen".to_string()) && whole.contains(&"-h".to_string()));
    for option in TLS_OPTIONS {
        // (`--cluster-ca` is the cluster's too.)
        let built =
            cfg!(feature = "tls") && (cfg!(feature = "cluster") || *option != "--cluster-ca");
        assert_eq!(
            whole.contains(&option.to_string()),
            built,
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
