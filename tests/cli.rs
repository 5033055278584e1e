//! The command line as a user meets it, through the real binary:
//! `--listen` with a host name, resolved at start.

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
