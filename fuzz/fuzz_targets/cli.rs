//! The rest of the command line (`config/parse.rs`, `config::parse`, what
//! `main.rs` calls): the input split at NUL bytes into arguments (any
//! bytes, UTF-8 or not), parsed as `monoloop ARGS`. The parser starts
//! nothing and opens nothing; its one look outside is `file --root`, a
//! `stat` of whatever path the input names, which reads nothing.
//!
//! - never panics: every problem is a `UsageError`, one line naming what
//!   is wrong, with a hint that points at the help;
//! - the same arguments, parsed twice, give the same outcome;
//! - a parsed run respects every documented bound: counts and sizes from
//!   1, timeouts at most a day (and a stats interval 0 or at least 0.1 s),
//!   workers 1 to 1024 or auto, 1 to 64 listeners and no two the same,
//!   the TLS key with its certificate, ALPN names of 1 to 255 bytes,
//!   `--proxy-from` only with `--proxy-protocol`, `--max-line` only where
//!   lines are cut, a cluster prefix of 1 to 64 safe characters and an
//!   outbox of at least 64 KiB, and a file root that is a directory;
//! - a parsed client has a target `HOST:PORT` with a port from 1, and a
//!   certificate only with its key.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use monoloop::config::{parse, Config, Mode, Parsed, ServerOptions, Workers};
use monoloop::tokens::MAX_LISTENERS;

const DAY: Duration = Duration::from_secs(86_400);

fn check_run(c: &Config) {
    let s = &c.server;
    let defaults = ServerOptions::default();
    assert!(s.max_connections >= 1 && s.write_limit >= 1 && s.max_line >= 1);
    for t in [s.idle_timeout, s.request_timeout].into_iter().flatten() {
        assert!(!t.is_zero() && t <= DAY, "{t:?}");
    }
    assert!(s.drain_timeout <= DAY && s.handshake_timeout <= DAY);
    if let Some(t) = s.stats_interval {
        assert!(t >= Duration::from_millis(100) && t <= DAY, "{t:?}");
    }
    match s.workers {
        Workers::Count(n) => assert!((1..=1024).contains(&n), "{n} workers"),
        Workers::Auto => {}
    }
    assert!((1..=MAX_LISTENERS).contains(&c.listen.len()));
    for (i, a) in c.listen.iter().enumerate() {
        assert!(!c.listen[..i].contains(a), "--listen {a} twice");
    }
    if !c.listen_given {
        assert_eq!(c.listen.len(), 1);
    }
    if let Some(tls) = &c.tls {
        assert!(tls.cert.is_some() && tls.key.is_some(), "{tls:?}");
        assert!(tls.alpn.iter().all(|p| (1..=255).contains(&p.len())));
    }
    if !s.edge.proxy_from.is_empty() {
        assert!(s.edge.proxy_protocol);
    }
    match &c.mode {
        Mode::Echo { prefix: None, .. } => assert_eq!(s.max_line, defaults.max_line),
        Mode::File { root, .. } => assert!(root.is_dir(), "--root {root:?}"),
        _ => {}
    }
    if let Some(cluster) = &c.cluster {
        assert!(matches!(c.mode, Mode::Broadcast { .. } | Mode::Chat));
        let p = &cluster.prefix;
        assert!((1..=64).contains(&p.len()), "prefix {p:?}");
        assert!(p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')));
        assert!(cluster.outbox >= 64 << 10);
        assert!(cluster.ca.is_none() || cluster.url.tls);
    }
}

fuzz_target!(|data: &[u8]| {
    let args: Vec<OsString> = data
        .split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    let parsed = parse(args.clone());
    let again = parse(args);
    assert_eq!(
        format!("{parsed:?}"),
        format!("{again:?}"),
        "parsed otherwise twice"
    );
    match parsed {
        Err(e) => {
            assert!(!e.problem.is_empty());
            assert!(e.hint().starts_with("see 'monoloop "));
        }
        Ok(Parsed::Run(config)) => check_run(&config),
        Ok(Parsed::Client(client)) => {
            let (host, port) = client.target.rsplit_once(':').expect("HOST:PORT");
            assert!(!host.is_empty());
            assert!(
                port.parse::<u16>().is_ok_and(|p| p >= 1),
                "{}",
                client.target
            );
            if let Some(tls) = &client.tls {
                assert_eq!(tls.cert.is_some(), tls.key.is_some());
            }
        }
        Ok(Parsed::Help(_) | Parsed::Version) => {}
    }
});
