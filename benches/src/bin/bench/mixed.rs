//! Latency under mixed load (issue 11): measured (`measure_mixed`) and
//! rendered (`render_mixed`) here.
//!
//! One interactive client plays 64-byte ping-pong with the server while
//! MIXED_BULK other connections stream 64 KiB writes flat out (`loadgen
//! --scenario mixed`; its header says how the two share the load
//! generator's core). The question is whether a busy server lets one quiet
//! connection through: a loop that gives every ready connection a long turn
//! makes the interactive client wait behind all the bulk streams. Each
//! server is measured
//! - alone: the interactive client and nothing else, its floor;
//! - with the bulk load;
//! - with the bulk load and a busy process (`loadgen --scenario burn`)
//!   pinned to the server's core, which the server must then share;
//! - over TLS, alone and with the bulk load, where the server has TLS.
//!
//! The plain cases run against monoloop, tokio-ct, threads and the epoll
//! floor; the TLS ones against monoloop and Node's tls (where node exists).
//!
//! `--only mixed` runs this section alone (`only_section`); a full run puts its
//! table in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::measure::{cpu_ns, median, range};
use super::report::{fmt_rate, runs_note};
use super::scenarios::{drive, rotated, scenario, Pass, Sample};
use super::servers::{
    bench_dir, pinned, servers, start, tls_servers, ServerSpec, LOADGEN_CPU, SERVER_CPU,
};

/// Bulk streams beside the interactive client.
const MIXED_BULK: usize = 50;

/// One way of measuring the interactive client.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum MixedCase {
    Alone,
    Bulk,
    BusyCore,
    TlsAlone,
    TlsBulk,
}

impl MixedCase {
    /// In the order measured and shown.
    const ALL: [MixedCase; 5] = [
        MixedCase::Alone,
        MixedCase::Bulk,
        MixedCase::BusyCore,
        MixedCase::TlsAlone,
        MixedCase::TlsBulk,
    ];

    fn label(self) -> String {
        match self {
            MixedCase::Alone => "alone".into(),
            MixedCase::Bulk => format!("{MIXED_BULK} bulk"),
            MixedCase::BusyCore => format!("{MIXED_BULK} bulk + busy core"),
            MixedCase::TlsAlone => "TLS, alone".into(),
            MixedCase::TlsBulk => format!("TLS, {MIXED_BULK} bulk"),
        }
    }

    fn tls(self) -> bool {
        matches!(self, MixedCase::TlsAlone | MixedCase::TlsBulk)
    }

    fn bulk(self) -> usize {
        match self {
            MixedCase::Alone | MixedCase::TlsAlone => 0,
            _ => MIXED_BULK,
        }
    }
}

/// What the mixed-load section measured, and how.
pub struct Mixed {
    pub secs: f64,
    pub warmup: f64,
    pub repeats: usize,
    /// The servers of the plain cases and of the TLS cases, in table order.
    pub plain: Vec<&'static str>,
    pub tls: Vec<&'static str>,
    /// Per case and server, one sample per repeat that gave a result.
    pub samples: BTreeMap<(MixedCase, &'static str), Vec<Sample>>,
    /// Per busy-core run, the share of its core the busy process had.
    pub busy_share: Vec<f64>,
}

/// A process that keeps the server's core busy: `loadgen --scenario burn`,
/// pinned where the server is. The runner stops it by pid (on drop); it
/// also stops itself after the time it is given, should the runner die
/// first (the runner aborts on panic, so drops may not run).
pub struct Burner {
    pub child: Child,
    pub started: Instant,
}

impl Burner {
    fn start(secs: f64) -> Burner {
        let mut cmd = Command::new(bench_dir().join("target/release/loadgen"));
        // `burn` connects nowhere; loadgen wants an address all the same.
        cmd.args(["--addr", "127.0.0.1:0", "--scenario", "burn", "--secs"])
            .arg(format!("{secs}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        pinned(&mut cmd, SERVER_CPU..SERVER_CPU + 1);
        Burner {
            child: cmd.spawn().expect("start the busy process"),
            started: Instant::now(),
        }
    }

    /// Stops it; returns the share of its core it had while it ran.
    fn stop(self) -> f64 {
        cpu_ns(self.child.id()) as f64 / 1e9 / self.started.elapsed().as_secs_f64()
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs every case against its servers, `repeats` times in rotating order
/// (as [`Measurements::measure`] does), with the TLS files of `tls_files`.
pub fn measure_mixed(quick: bool, ca: &Path, cert: &Path, key: &Path) -> Mixed {
    let (secs, warmup, repeats) = if quick { (3.0, 0.5, 1) } else { (5.0, 1.0, 3) };
    let plain: Vec<ServerSpec> = servers()
        .into_iter()
        .filter(|s| matches!(s.name, "monoloop" | "tokio-ct" | "threads" | "epoll"))
        .collect();
    let tls = tls_servers(cert, key);
    let timing = ["--secs", &secs.to_string(), "--warmup", &warmup.to_string()].map(String::from);
    let mut m = Mixed {
        secs,
        warmup,
        repeats,
        plain: plain.iter().map(|s| s.name).collect(),
        tls: tls.iter().map(|s| s.name).collect(),
        samples: BTreeMap::new(),
        busy_share: Vec::new(),
    };
    for case in MixedCase::ALL {
        let specs = if case.tls() { &tls } else { &plain };
        let mut args = vec![
            ("scenario", "mixed".to_string()),
            ("bulk", case.bulk().to_string()),
        ];
        if case.tls() {
            args.push(("ca", ca.to_string_lossy().into_owned()));
        }
        let mut sc = scenario("mixed load", case.label(), case.bulk() + 1, &args, false);
        if case.tls() {
            sc.args.push("--tls".into());
        }
        eprintln!("== mixed load: {}", sc.title);
        for r in 0..repeats {
            for spec in rotated(specs, r) {
                let server = start(spec);
                // Started with the load generator, so it covers the whole
                // window; bounded by the window and a generous margin.
                let burner =
                    (case == MixedCase::BusyCore).then(|| Burner::start(warmup + secs + 30.0));
                let (sample, _) = drive(&server, &sc, &timing, Pass::Cpu);
                if let Some(share) = burner.map(Burner::stop) {
                    m.busy_share.push(share);
                }
                if sample.msgs == 0.0 {
                    eprintln!("   {:9} no result", spec.name);
                    continue;
                }
                eprintln!(
                    "   {:9} p50 {:>6} µs  p99 {:>7} µs  max {:>7} µs  {:>6.0} rt/s  bulk {:>5.0} MB/s",
                    spec.name, sample.p50, sample.p99, sample.max, sample.rate, sample.mbps
                );
                m.samples.entry((case, spec.name)).or_default().push(sample);
            }
        }
    }
    m
}

/// The mixed-load section of the report: how it is measured, and a table.
pub fn render_mixed(m: &Mixed) -> String {
    // "median (lowest – highest)", or the one value of a single repeat.
    let cell = |v: Vec<f64>, f: &dyn Fn(f64) -> String| {
        let (lo, hi) = range(&v);
        if v.len() == 1 {
            f(v[0])
        } else {
            format!("{} ({} – {})", f(median(v)), f(lo), f(hi))
        }
    };
    let us = |v: f64| format!("{v:.0}");
    let mut s = String::new();
    let _ = writeln!(s, "## latency under mixed load\n");
    let _ = writeln!(
        s,
        "Issue 11: one interactive client plays 64-byte ping-pong (write 64 B, wait for \
         the echo, repeat) while {MIXED_BULK} bulk connections stream 64 KiB writes flat \
         out and read everything back, for a {:.0} s window after a {} s warm-up. The \
         server is pinned to core {SERVER_CPU}; the load generator, bulk and interactive \
         client alike, to core {LOADGEN_CPU}, where the interactive client has a thread of \
         its own at real-time priority, so that its figures measure the server and not the \
         load generator (`benches/src/bin/loadgen.rs`, scenario `mixed`). *alone* is the \
         interactive client with no bulk load, the floor; *busy core* adds a process \
         spinning on core {SERVER_CPU}, which the server must share. Round-trip times in \
         µs and round trips per second are the interactive client's; MB/s is what the bulk \
         streams read back. {}\n",
        m.secs,
        m.warmup,
        runs_note(m.repeats, "the median, and in brackets the range")
    );
    let _ = writeln!(
        s,
        "| load | server | p50 µs | p99 µs | max µs | round trips/s | bulk MB/s |"
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for case in MixedCase::ALL {
        let names = if case.tls() { &m.tls } else { &m.plain };
        for &name in names {
            let label = case.label();
            let Some(v) = m.samples.get(&(case, name)) else {
                let _ = writeln!(s, "| {label} | {name} | no result | | | | |");
                continue;
            };
            let pick = |f: fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
            let bulk = if case.bulk() == 0 {
                "–".to_string()
            } else {
                cell(pick(|x| x.mbps), &|v| format!("{v:.0}"))
            };
            let _ = writeln!(
                s,
                "| {label} | {name} | {} | {} | {} | {} | {bulk} |",
                cell(pick(|x| x.p50), &us),
                cell(pick(|x| x.p99), &us),
                cell(pick(|x| x.max), &us),
                cell(pick(|x| x.rate), &fmt_rate),
            );
        }
    }
    if !m.busy_share.is_empty() {
        let _ = writeln!(
            s,
            "\nThe busy process had {:.0}% of core {SERVER_CPU} (median over its runs).",
            median(m.busy_share.clone()) * 100.0
        );
    }
    let _ = writeln!(s);
    s
}
