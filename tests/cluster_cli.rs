//! The cluster's command line through the real binary (`--cluster` and
//! the options that need it): argument errors, one line and a hint, exit
//! 2. A build without the cluster refuses them all (`cli.rs`).

#![cfg(feature = "cluster")]

mod common;

use common::*;

/// `--cluster` and the options that need it: the relays' only, each
/// problem one line, before anything starts (no Redis is asked: none
/// runs at these addresses). A password in the URL is never echoed.
#[test]
fn cluster_options_are_argument_errors_before_anything_starts() {
    let chat = "see 'monoloop chat --help'";
    let broadcast = "see 'monoloop broadcast --help'";
    let url = "redis://127.0.0.1";
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["echo", "--cluster", url],
            "echo does not use --cluster (broadcast and chat do)",
            "see 'monoloop echo --help'",
        ),
        (
            &["file", "--root", "/", "--cluster", url],
            "file does not use --cluster (broadcast and chat do)",
            "see 'monoloop file --help'",
        ),
        (
            &["chat", "--cluster-prefix", "app"],
            "--cluster-prefix needs --cluster",
            chat,
        ),
        (
            &["broadcast", "--cluster-ca", "ca.pem"],
            "--cluster-ca needs --cluster",
            broadcast,
        ),
        (
            &["chat", "--cluster-outbox", "1M"],
            "--cluster-outbox needs --cluster",
            chat,
        ),
        (
            &["chat", "--cluster", "redis://:hunter2@127.0.0.1:0"],
            "invalid value 'redis://:***@127.0.0.1:0' for --cluster: \
             port 0 is out of range: ports are 1 to 65535",
            chat,
        ),
        (
            &["chat", "--cluster", "http://127.0.0.1"],
            "invalid value 'http://127.0.0.1' for --cluster: \
             unknown scheme 'http://': expected redis:// or rediss:// (TLS)",
            chat,
        ),
        (
            &["chat", "--cluster", "127.0.0.1:6379"],
            "invalid value '127.0.0.1:6379' for --cluster: \
             expected redis://HOST[:PORT] or rediss://HOST[:PORT] (TLS), \
             such as redis://127.0.0.1:6379",
            chat,
        ),
        (
            &["broadcast", "--cluster", url, "--cluster-prefix", "my app"],
            "invalid value 'my app' for --cluster-prefix: \
             expected 1 to 64 letters, digits or _ . : -",
            broadcast,
        ),
        (
            &["chat", "--cluster", url, "--cluster-outbox", "1K"],
            "invalid value '1K' for --cluster-outbox: must be at least 64K",
            chat,
        ),
        (
            &["broadcast", "--cluster", url, "--cluster-ca", "ca.pem"],
            if cfg!(feature = "tls") {
                "--cluster-ca needs a rediss:// URL: redis:// is plain TCP, \
                 with no certificate to verify"
            } else {
                "--cluster-ca needs TLS, but this monoloop was built without it \
                 (cargo feature \"tls\")"
            },
            broadcast,
        ),
    ];
    for (args, problem, hint) in cases {
        assert_usage_error(args, problem, hint);
    }
}
