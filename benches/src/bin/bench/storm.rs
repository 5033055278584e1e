//! The connection storm: thousands of connects, 1000 at a time, against
//! every server, with the kernel's SYN retransmits counted around each run
//! (`measure_storm`), and its table in the report (`render_storm`). Its
//! time and retransmits are also targets (`targets`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::measure::{median, range, tcp_ext};
use super::report::fmt_rate;
use super::scenarios::{drive, rotated, scenario, Pass, Sample, Scenario};
use super::servers::{start, ServerSpec};

/// Per server, each run's sample and the SYN retransmits counted during it.
pub type StormRuns = BTreeMap<&'static str, Vec<(Sample, u64)>>;

/// Runs the storm against every server of `specs`, `repeats` times in
/// rotating order; returns the scenario and, per server, each run's sample
/// with the SYN retransmits the kernel counted during it.
pub fn measure_storm(quick: bool, specs: &[ServerSpec], repeats: usize) -> (Scenario, StormRuns) {
    let storm_count = if quick { 2000 } else { 10_000 };
    let storm_sc = scenario(
        "connection storm",
        format!("{storm_count} connects, 1000 at a time"),
        storm_count,
        &[
            ("scenario", "storm".into()),
            ("count", storm_count.to_string()),
            ("concurrency", "1000".into()),
            ("size", "64".into()),
        ],
        false,
    );
    let mut storm: StormRuns = BTreeMap::new();
    eprintln!("== {}", storm_sc.key);
    for r in 0..repeats {
        for spec in rotated(specs, r) {
            let server = start(spec);
            let syn0 = tcp_ext("TCPSynRetrans");
            let (sample, _) = drive(&server, &storm_sc, &[], Pass::Cpu);
            let syn = tcp_ext("TCPSynRetrans") - syn0;
            eprintln!(
                "   {:9} {:.3} s, {} failed, {} SYN retransmits",
                spec.name, sample.secs, sample.failed, syn
            );
            storm.entry(spec.name).or_default().push((sample, syn));
        }
    }
    (storm_sc, storm)
}

/// The storm's section of the report: a table of its runs per server.
pub fn render_storm(specs: &[ServerSpec], storm_sc: &Scenario, storm: &StormRuns) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## connection storm\n\n### {}\n", storm_sc.title);
    let _ = writeln!(s, "| server | seconds (median) | range | connects/s | failed | SYN retransmits | p99 µs (connect to reply) |");
    let _ = writeln!(s, "| --- | ---: | --- | ---: | ---: | ---: | ---: |");
    for spec in specs {
        let Some(v) = storm.get(spec.name) else {
            continue;
        };
        let secs: Vec<f64> = v.iter().map(|x| x.0.secs).collect();
        let (lo, hi) = range(&secs);
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} – {:.3} | {} | {:.0} | {} | {:.0} |",
            spec.name,
            median(secs.clone()),
            lo,
            hi,
            fmt_rate(median(v.iter().map(|x| x.0.rate).collect())),
            median(v.iter().map(|x| x.0.failed).collect()),
            v.iter().map(|x| x.1).max().unwrap_or(0),
            median(v.iter().map(|x| x.0.p99).collect()),
        );
    }
    s
}
