//! `--cluster rediss://...`: the link to Redis over TLS, against a real
//! redis-server listening with `--tls-port` and a password, verified with
//! `--cluster-ca`.

#![cfg(all(feature = "tls", feature = "cluster"))]

mod common;

use std::io::Write;

use common::redis::Redis;
use common::tls::Pki;
use common::*;

/// A real Redis with a TLS port (its certificate is the test PKI's
/// server.pem, for localhost and 127.0.0.1) and a password. Returns it and
/// the TLS port.
fn tls_redis(pki: &Pki) -> Option<(Redis, u16)> {
    let tls_port = free_port();
    let port = tls_port.to_string();
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server-key.pem"),
        pki.path("ca.pem"),
    );
    let redis = Redis::start_with(&[
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "s3cret",
    ])?;
    Some((redis, tls_port))
}

#[test]
fn a_line_crosses_instances_over_tls_and_the_password_is_never_logged() {
    let pki = Pki::new("rediss-ok");
    let Some((_redis, tls_port)) = tls_redis(&pki) else {
        return;
    };
    let url = format!("rediss://:s3cret@localhost:{tls_port}");
    let ca = pki.path("ca.pem");
    let args = [
        "broadcast",
        "--cluster",
        &url,
        "--cluster-ca",
        &ca,
        "--log-level",
        "debug",
    ];
    let mut one = Server::start(&args);
    let mut two = Server::start(&args);
    one.wait_for_log("cluster: linked to rediss://:***@localhost");
    two.wait_for_log("cluster: linked to rediss://:***@localhost");
    let mut sender = connect(one.addr);
    let mut receiver = connect(two.addr);
    two.wait_accepted(1);
    one.wait_accepted(1);
    sender.write_all(b"sealed\n").unwrap();
    expect(&mut receiver, b"[Broadcast] sealed\n");
    for server in [&one, &two] {
        let log = server.log().join("\n");
        assert!(!log.contains("s3cret"), "the password was logged:\n{log}");
    }
}

#[test]
fn a_redis_whose_certificate_is_not_trusted_is_not_linked_and_clients_are_still_served() {
    let pki = Pki::new("rediss-untrusted");
    let Some((_redis, tls_port)) = tls_redis(&pki) else {
        return;
    };
    let url = format!("rediss://:s3cret@127.0.0.1:{tls_port}");
    // Trusts another CA only.
    let ca = pki.path("other-ca.pem");
    let mut server = Server::start(&[
        "broadcast",
        "--cluster",
        &url,
        "--cluster-ca",
        &ca,
        "--log-level",
        "debug",
    ]);
    let warning = server.wait_for_log("cluster: cannot reach Redis");
    assert!(
        warning.contains("certificate") && warning.contains("rediss://:***@127.0.0.1"),
        "{warning}"
    );
    // Its own clients are one room still.
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    server.wait_accepted(2);
    a.write_all(b"local\n").unwrap();
    expect(&mut b, b"[Broadcast] local\n");
}

#[test]
fn a_cluster_ca_that_cannot_be_read_is_an_argument_error() {
    let out = output_within({
        let mut cmd = binary();
        cmd.args([
            "chat",
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            "rediss://127.0.0.1:1",
            "--cluster-ca",
            "/nonexistent/ca.pem",
        ]);
        cmd
    });
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cluster-ca /nonexistent/ca.pem"), "{err}");
}
