//! Scaling, workers against cores (issue 12): measured (`measure_scaling`)
//! and rendered (`render_scaling`) here, with its own server list.
//!
//! For w = 1, 2, … up to one less than the cores this process may run on
//! (`available_parallelism`; at least 1), the server gets cores 0 to w − 1
//! and the load generator core w:
//! - ping-pong, 64 B, SCALING_CONNS connections, against `monoloop echo
//!   --workers w` and tokio's multi-thread runtime with w worker threads
//!   (`echo_tokio_mt --threads w`);
//! - fan-out, one sender and SCALING_CONNS receivers (the fan-out scenario
//!   of the main tables), against `monoloop broadcast --workers w`: the kernel spreads the
//!   receivers over the workers, so with several, every line crosses the hub.
//!
//! With fewer than three cores (`shares_cores`) there is no core to spare
//! for the load generator, so rate against workers cannot be shown; what
//! can be is the cost workers add (issue 23). There the section measures 1
//! and 2 workers (1 to `cores`) with the server on all the cores and the load
//! generator pinned to the last of them, sharing it with the server: msg/s is
//! then not the figure to read, CPU per message is.
//!
//! The server is pinned to the set of its cores, not each thread to a core
//! of its own. Neither monoloop nor tokio pins its threads, so the kernel
//! places them within the set as it would on a machine of that size; the
//! set keeps the load generator's core to the load generator. Unpinned, the
//! server's threads would take turns on that core with the load generator,
//! and msg/s would measure the scheduler more than the server.
//!
//! The load generator is one thread on one core, as everywhere in this
//! report. Where its core saturates (`lg`), msg/s stops growing with w and
//! CPU per message is the figure to read.
//!
//! `--only scaling` runs this section alone (`only_section`); a full run puts
//! its tables in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::thread;

use super::report::{fmt_rate, lg_mark, rate_spread, runs_note};
use super::scenarios::{drive, median_of, rotated, scenario, Pass, Sample};
use super::servers::{bench_dir, monoloop, start_on, Ready, ServerSpec};

/// Connections of the ping-pong, and receivers of the fan-out.
pub const SCALING_CONNS: usize = 1000;

/// The two scenarios of the scaling section, as the tables name them.
pub const SCALING_ECHO: &str = "ping-pong 64 B";
pub const SCALING_FANOUT: &str = "fan-out";

/// What the scaling section measured, and how.
pub struct Scaling {
    pub secs: f64,
    pub warmup: f64,
    pub repeats: usize,
    /// The cores this process may run on.
    pub cores: usize,
    /// The worker counts measured, 1 to cores − 1 (1 to cores when
    /// `shares_cores`).
    pub workers: Vec<usize>,
    /// Fewer than three cores: the server on all of them, the load
    /// generator sharing the last.
    pub shares_cores: bool,
    /// Per scenario, worker count and server, one sample per repeat that
    /// gave a result.
    pub samples: BTreeMap<(&'static str, usize, &'static str), Vec<Sample>>,
}

/// The servers of one scenario of the scaling section, with `w` workers.
pub fn scaling_servers(group: &str, w: usize) -> Vec<ServerSpec> {
    let n = w.to_string();
    if group == SCALING_FANOUT {
        return vec![monoloop(&["broadcast", "--workers", &n])];
    }
    vec![
        monoloop(&["echo", "--workers", &n]),
        ServerSpec {
            name: "tokio-mt",
            program: bench_dir().join("target/release/echo_tokio_mt"),
            args: vec!["--threads".into(), n],
            ready: Ready::Announces,
        },
    ]
}

/// Runs both scenarios for every worker count, `repeats` times in rotating
/// order (as [`Measurements::measure`] does).
pub fn measure_scaling(quick: bool) -> Scaling {
    let (secs, warmup, repeats) = if quick { (1.0, 0.3, 1) } else { (3.0, 1.0, 3) };
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let timing = ["--secs", &secs.to_string(), "--warmup", &warmup.to_string()].map(String::from);
    let conns = SCALING_CONNS.to_string();
    let echo = scenario(
        SCALING_ECHO,
        format!("{SCALING_CONNS} connections"),
        SCALING_CONNS,
        &[
            ("scenario", "echo".into()),
            ("conns", conns.clone()),
            ("size", "64".into()),
        ],
        false,
    );
    let fan = scenario(
        SCALING_FANOUT,
        format!("1 sender, {SCALING_CONNS} receivers, 64 B lines"),
        SCALING_CONNS,
        &[
            ("scenario", "fanout".into()),
            ("conns", conns),
            ("size", "64".into()),
            ("window", "64".into()),
        ],
        false,
    );
    let shares_cores = cores < 3;
    let max_w = if shares_cores { cores } else { cores - 1 };
    let mut m = Scaling {
        secs,
        warmup,
        repeats,
        cores,
        workers: (1..=max_w.max(1)).collect(),
        shares_cores,
        samples: BTreeMap::new(),
    };
    for w in m.workers.clone() {
        for sc in [&echo, &fan] {
            let specs = scaling_servers(sc.group, w);
            eprintln!("== scaling, {w} worker(s): {}", sc.key);
            for r in 0..repeats {
                for spec in rotated(&specs, r) {
                    let server = if shares_cores {
                        start_on(spec, 0..cores, cores - 1)
                    } else {
                        start_on(spec, 0..w, w)
                    };
                    let (sample, _) = drive(&server, sc, &timing, Pass::Cpu);
                    if sample.msgs == 0.0 {
                        eprintln!("   {:9} no result", spec.name);
                        continue;
                    }
                    eprintln!(
                        "   {:9} {:>10.0} msg/s  cpu {:.3} µs/msg  p99 {:>6} µs  lg_cpu {:.2}",
                        spec.name, sample.rate, sample.cpu_us, sample.p99, sample.lg_cpu
                    );
                    m.samples
                        .entry((sc.group, w, spec.name))
                        .or_default()
                        .push(sample);
                }
            }
        }
    }
    m
}

/// The scaling section of the report: how it is measured, what this
/// machine could show, and a table per scenario.
pub fn render_scaling(m: &Scaling) -> String {
    let max_w = m.workers.last().copied().unwrap_or(1);
    let mut s = String::new();
    let _ = writeln!(s, "## scaling\n");
    let _ = writeln!(
        s,
        "Issue 12: the same load against 1 to (cores − 1) workers, {SCALING_CONNS} \
         connections, for a {:.0} s window after a {} s warm-up. With w workers the server \
         is pinned to cores 0 to w − 1 (the set, not a core per thread: neither server pins \
         its threads) and the load generator, one thread, to core w. Ping-pong: 64 B \
         messages, `monoloop echo --workers w` beside tokio's multi-thread runtime with w \
         worker threads (`echo_tokio_mt --threads w`). Fan-out: one sender and \
         {SCALING_CONNS} receivers on `monoloop broadcast --workers w`, lines delivered per \
         second counted at the receivers. *vs 1 worker* is the rate against the same \
         server's with one; *cores busy* is the server's CPU time over the window divided \
         by the window; `lg` marks a load generator whose core was saturated, where msg/s \
         stops growing and CPU per message is the figure to read. {}\n",
        m.secs,
        m.warmup,
        runs_note(m.repeats, "the median, and the range")
    );
    if m.shares_cores && max_w > 1 {
        let _ = writeln!(
            s,
            "This machine has {} cores, too few to spare one for the load generator, so the \
             rate against workers cannot be shown here; what can be is the cost workers add \
             (issue 23). With 1 to {max_w} workers the server is on all {} cores and the load \
             generator on core {}, sharing it: msg/s says little, *CPU µs* per message or line \
             is the figure to read, and *cores busy* includes time the server took from the \
             load generator. The same command on a machine with three or more cores gives \
             the tables described above.\n",
            m.cores,
            m.cores,
            m.cores - 1
        );
    } else if max_w == 1 {
        let _ = writeln!(
            s,
            "This machine has {} core{}, one of them the load generator's, so the tables stop \
             at one worker; the same command on a machine with more cores gives the rest of \
             them, up to cores − 1 workers.\n",
            m.cores,
            if m.cores == 1 { "" } else { "s" }
        );
    } else {
        let _ = writeln!(
            s,
            "This machine has {} cores: 1 to {max_w} workers, and the last core the load \
             generator's.\n",
            m.cores
        );
    }
    let row = |group: &'static str, w: usize, name: &'static str| {
        let v = m.samples.get(&(group, w, name))?;
        let (rate, lo, hi) = rate_spread(v);
        let one = m
            .samples
            .get(&(group, 1, name))
            .map(|v| median_of(v, |x| x.rate));
        let lg = lg_mark(v);
        let med = |f: fn(&Sample) -> f64| median_of(v, f);
        Some(format!(
            "{}{lg} | {} – {} | {:.2} | {:.3} | {:.3} | {:.3} | {:.2} | {:.0}",
            fmt_rate(rate),
            fmt_rate(lo),
            fmt_rate(hi),
            one.map_or(f64::NAN, |b| rate / b),
            med(|x| x.cpu_us),
            med(|x| x.user_us),
            med(|x| x.sys_us),
            med(|x| x.cpu_us * x.msgs / x.secs.max(1e-9) / 1e6),
            med(|x| x.p99),
        ))
    };
    for (group, title, rate, unit) in [
        (
            SCALING_ECHO,
            format!("ping-pong 64 B, {SCALING_CONNS} connections"),
            "msg/s",
            "msg",
        ),
        (
            SCALING_FANOUT,
            format!("fan-out: 1 sender, {SCALING_CONNS} receivers, 64 B lines"),
            "lines/s",
            "line",
        ),
    ] {
        let _ = writeln!(s, "### {title}\n");
        let _ = writeln!(
            s,
            "| workers | server | {rate} (median) | range | vs 1 worker | CPU µs/{unit} | \
             user µs/{unit} | sys µs/{unit} | cores busy | p99 µs |"
        );
        let _ = writeln!(
            s,
            "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for &w in &m.workers {
            for spec in scaling_servers(group, w) {
                let cells =
                    row(group, w, spec.name).unwrap_or_else(|| "no result | | | | | | | |".into());
                let _ = writeln!(s, "| {w} | {} | {cells} |", spec.name);
            }
        }
        let _ = writeln!(s);
    }
    s
}
