//! The main tables of the report: echo ping-pong (64 B and 4 KiB, by
//! connection count), pipelined, streaming, open loop, TLS (handshakes and
//! echo) and fan-out, each a table with a row per server. Here is which
//! scenarios they are, with what arguments and against which servers, in
//! the order they are measured; `report::render` gives each scenario its
//! table, so a new scenario here needs nothing else (unless a target reads
//! it: `targets`). The echo scenarios (`measure_echo`) are also what
//! `--only echo` runs; the io_uring echo joins the plain echo servers in
//! those `with_io_uring` names.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::measure::PerMessage;
use super::report::fmt_rate;
use super::scenarios::{median_of, scenario, Measurements, Sample, Scenario};
use super::servers::{
    broadcast_servers, handshake_servers, monoio, servers, tls_files, tls_servers, ServerSpec,
};
use super::tls::handshake_scenarios;

/// The echo tables (ping-pong, pipelined, streaming): the first part of
/// the main tables, and all of `--only echo`. A full run adds its other
/// scenarios to `scenarios` and their figures to the maps.
pub struct Echo {
    /// Repeats per scenario (the storm makes as many).
    pub repeats: usize,
    pub timing: Vec<String>,
    /// Whether callgrind is there for the instruction counts.
    pub valgrind: bool,
    /// The plain echo servers (the storm measures them too).
    pub specs: Vec<ServerSpec>,
    /// Every server of the echo tables, in the order shown: `specs`, then
    /// the io_uring echo (issue 23). The report's list of servers, the
    /// charts' lines, and the footprint's rows.
    pub shown: Vec<ServerSpec>,
    /// The ping-pong connection counts: the charts' x axis.
    pub conn_counts: &'static [usize],
    /// Every scenario, in the order measured and shown.
    pub scenarios: Vec<Scenario>,
    /// results[scenario key][server] = samples
    pub results: BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>>,
    pub syscalls: BTreeMap<String, BTreeMap<&'static str, PerMessage>>,
    pub instructions: BTreeMap<String, BTreeMap<&'static str, f64>>,
}

/// What the main tables measured, and what the rest of a full run reads
/// from them: the echo tables' measurements, the other scenarios added to
/// them, and the TLS certificate files (ca, cert, key), which the mixed
/// load uses too.
pub struct Tables {
    pub echo: Echo,
    pub tls_files: (PathBuf, PathBuf, PathBuf),
}

/// True for the scenarios the io_uring echo (`servers::monoio`, issue 23)
/// is measured in: ping-pong and streaming, where the distance from the
/// readiness model to a completion-based one shows in syscalls and CPU per
/// message. Elsewhere (TLS, fan-out, files, mixed load, storm, scaling) it
/// has no counterpart or says nothing new.
pub fn with_io_uring(sc: &Scenario) -> bool {
    sc.group.starts_with("ping-pong") || sc.group == "streaming"
}

/// Measures the echo scenarios against the plain echo servers, and the
/// io_uring echo in those `with_io_uring` names.
pub fn measure_echo(quick: bool) -> Echo {
    let (secs, warmup, repeats) = if quick {
        ("1", "0.3", 1)
    } else {
        ("3", "1", 3)
    };
    let timing = vec![
        "--secs".to_string(),
        secs.to_string(),
        "--warmup".to_string(),
        warmup.to_string(),
    ];
    let mut scenarios: Vec<Scenario> = Vec::new();
    let conn_counts: &[usize] = if quick { &[1, 100] } else { &[1, 100, 1000] };
    let sizes: &[usize] = if quick { &[64] } else { &[64, 4096] };
    for &size in sizes {
        for &c in conn_counts {
            scenarios.push(scenario(
                if size == 64 {
                    "ping-pong 64 B"
                } else {
                    "ping-pong 4 KiB"
                },
                format!("{c} connections"),
                c,
                &[
                    ("scenario", "echo".into()),
                    ("conns", c.to_string()),
                    ("size", size.to_string()),
                ],
                // The counting passes are slow: in quick mode, one scenario.
                if quick {
                    c == 100 && size == 64
                } else {
                    c >= 100
                },
            ));
        }
    }
    scenarios.push(scenario(
        "pipelined",
        "100 connections × 16 in flight, 64 B".into(),
        100,
        &[
            ("scenario", "echo".into()),
            ("conns", "100".into()),
            ("size", "64".into()),
            ("depth", "16".into()),
        ],
        !quick,
    ));
    // Streaming at 100 connections is where issue 23 compares CPU per MB
    // with the floor's, and syscalls with io_uring's: quick mode runs it
    // too, and it has the counting passes.
    for &c in &[1, 100] {
        scenarios.push(scenario(
            "streaming",
            format!("{c} connections"),
            c,
            &[("scenario", "stream".into()), ("conns", c.to_string())],
            c == 100,
        ));
    }

    let mut specs = servers();
    if quick {
        // Quick mode compares with the two that matter most: the floor and
        // the async runtime monoloop must beat.
        specs.retain(|s| matches!(s.name, "monoloop" | "epoll" | "tokio-ct"));
    }
    let shown: Vec<ServerSpec> = specs.iter().cloned().chain([monoio()]).collect();
    // results[scenario key][server] = samples
    let mut results: BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>> = BTreeMap::new();
    let mut syscalls: BTreeMap<String, BTreeMap<&'static str, PerMessage>> = BTreeMap::new();
    let mut instructions: BTreeMap<String, BTreeMap<&'static str, f64>> = BTreeMap::new();
    let valgrind = Command::new("callgrind_control")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    let mut m = Measurements {
        specs: &specs,
        repeats,
        timing: &timing,
        valgrind,
        results: &mut results,
        syscalls: &mut syscalls,
        instructions: &mut instructions,
    };
    for sc in &scenarios {
        if with_io_uring(sc) {
            m.counting_with(&shown).measure(sc);
        } else {
            m.measure(sc);
        }
    }
    Echo {
        repeats,
        timing,
        valgrind,
        specs,
        shown,
        conn_counts,
        scenarios,
        results,
        syscalls,
        instructions,
    }
}

/// Measures every scenario of the main tables against its servers.
pub fn measure_tables(quick: bool) -> Tables {
    let mut echo = measure_echo(quick);
    let scenarios = &mut echo.scenarios;
    let mut m = Measurements {
        specs: &echo.specs,
        repeats: echo.repeats,
        timing: &echo.timing,
        valgrind: echo.valgrind,
        results: &mut echo.results,
        syscalls: &mut echo.syscalls,
        instructions: &mut echo.instructions,
    };
    // Open loop, at 50% and 80% of the best closed-loop rate measured above
    // (100 connections, 64 B): a schedule every server is offered alike.
    let best = m
        .results
        .get("ping-pong 64 B 100 connections")
        .map(|by| {
            by.values()
                .map(|v| median_of(v, |x| x.rate))
                .fold(0.0, f64::max)
        })
        .unwrap_or(0.0);
    let shares: &[u32] = if quick { &[80] } else { &[50, 80] };
    for &pct in shares.iter().filter(|_| best > 0.0) {
        let rate = (best * pct as f64 / 100.0).round();
        let sc = scenario(
            "open loop",
            format!(
                "100 connections, 64 B, {} msg/s ({pct}% of the best closed-loop rate)",
                fmt_rate(rate)
            ),
            100,
            &[
                ("scenario", "open".into()),
                ("conns", "100".into()),
                ("size", "64".into()),
                ("rate", format!("{rate}")),
            ],
            false,
        );
        m.measure(&sc);
        scenarios.push(sc);
    }

    // TLS: full handshakes with an ECDSA P-256 certificate.
    let (ca, cert, key) = tls_files();
    let tls_specs = tls_servers(&cert, &key);
    // Full and resumed handshakes (issue 14), nginx among them (issue 11).
    let hs_specs = handshake_servers(&cert, &key);
    let mut hm = m.with_servers(&hs_specs);
    for sc in handshake_scenarios(quick, &ca) {
        hm.measure(&sc);
        scenarios.push(sc);
    }
    let mut tm = m.with_servers(&tls_specs);
    // TLS: echo throughput, every byte decrypted and re-encrypted.
    let tls_stream_conns: &[usize] = if quick { &[1] } else { &[1, 100] };
    for &c in tls_stream_conns {
        let sc = scenario(
            "TLS echo",
            format!("streaming, {c} connections"),
            c,
            &[
                ("scenario", "tls-stream".into()),
                ("conns", c.to_string()),
                ("ca", ca.to_string_lossy().into_owned()),
            ],
            false,
        );
        tm.measure(&sc);
        scenarios.push(sc);
    }

    // Fan-out: the broadcast relays, one sender and many receivers.
    let fan_specs = broadcast_servers();
    let mut fm = m.with_servers(&fan_specs);
    let fan_counts: &[usize] = if quick { &[100] } else { &[100, 1000] };
    for &c in fan_counts {
        let sc = scenario(
            "fan-out",
            format!("1 sender, {c} receivers, 64 B lines"),
            c,
            &[
                ("scenario", "fanout".into()),
                ("conns", c.to_string()),
                ("size", "64".into()),
                ("window", "64".into()),
            ],
            false,
        );
        fm.measure(&sc);
        scenarios.push(sc);
    }

    Tables {
        echo,
        tls_files: (ca, cert, key),
    }
}
