//! The TLS handshake section (issue 14): full and resumed (TLS 1.3 tickets)
//! handshakes per second, monoloop against Node's `tls` and nginx's stream
//! module (issue 11, where installed), then (with `--only tls`) memory per
//! idle TLS connection, with server CPU
//! per handshake and how many really resumed. Its scenarios also join the
//! main tables of a full run; `--only tls` renders them as a section of
//! their own. The TLS servers and their certificate are `servers`'.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::footprint::{measure_tls_idle, render_tls_idle};
use super::report::{fmt_rate, rate_spread};
use super::scenarios::{median_of, scenario, Measurements, Sample, Scenario};
use super::servers::{handshake_servers, tls_files, tls_idle_servers, ServerSpec};

/// The TLS handshake scenarios (issue 14): full handshakes (the client
/// keeps no sessions), then resumed ones (TLS 1.3 tickets, the client's
/// store primed before the window; see loadgen's `tls-resume`). Both with
/// an ECDSA P-256 certificate, 100 at a time.
pub fn handshake_scenarios(quick: bool, ca: &Path) -> Vec<Scenario> {
    let handshakes = if quick { 1000 } else { 5000 };
    [("tls", "full"), ("tls-resume", "resumed")]
        .into_iter()
        .map(|(name, kind)| {
            scenario(
                "TLS",
                format!("{handshakes} {kind} handshakes, ECDSA P-256, 100 at a time"),
                100,
                &[
                    ("scenario", name.into()),
                    ("count", handshakes.to_string()),
                    ("concurrency", "100".into()),
                    ("ca", ca.to_string_lossy().into_owned()),
                ],
                false,
            )
        })
        .collect()
}

/// "monoloop 1000/1000, node 0/1000": handshakes that resumed, of all, per
/// server, summed over the runs; the servers of `specs` first, then any
/// other that was measured.
pub fn resumed_counts(
    specs: &[ServerSpec],
    by_server: &BTreeMap<&'static str, Vec<Sample>>,
) -> String {
    let extra = by_server
        .keys()
        .filter(|name| !specs.iter().any(|s| s.name == **name));
    specs
        .iter()
        .map(|s| s.name)
        .chain(extra.copied())
        .filter_map(|name| {
            let v = by_server.get(name)?;
            let resumed: f64 = v.iter().map(|x| x.resumed).sum();
            let all: f64 = v.iter().map(|x| x.msgs).sum();
            Some(format!("{name} {resumed:.0}/{all:.0}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `--only tls` section: full against resumed handshakes per second,
/// server CPU per handshake, and how many really resumed.
pub fn render_handshakes(
    specs: &[ServerSpec],
    scs: &[Scenario],
    results: &BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## TLS handshakes: full and resumed\n\n\
         Full: the client keeps no sessions. Resumed: TLS 1.3 PSK with (EC)DHE \
         from a session ticket; the client's ticket store is filled by full \
         handshakes before the window with a ticket for every handshake to \
         come (waiting for the new tickets of each handshake hung against Node, so \
         replenishing is not relied on); priming is outside the \
         window. *resumed* is how many handshakes rustls reported as resumed, of \
         all those completed, over every run: a server that did not resume \
         shows it there, and its row is full handshakes under another name. \
         Rates are medians over runs; CPU is the server's, user and system, \
         per handshake.\n"
    );
    let _ = writeln!(
        s,
        "| server | handshakes | per second | range | vs monoloop | CPU µs/handshake | p99 µs | resumed | failed |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for sc in scs {
        let Some(by_server) = results.get(&sc.key) else {
            continue;
        };
        let base = by_server.get("monoloop").map(|v| median_of(v, |x| x.rate));
        for spec in specs {
            let Some(v) = by_server.get(spec.name) else {
                continue;
            };
            let (rate, lo, hi) = rate_spread(v);
            let resumed: f64 = v.iter().map(|x| x.resumed).sum();
            let all: f64 = v.iter().map(|x| x.msgs).sum();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} – {} | {:.2} | {:.0} | {:.0} | {resumed:.0}/{all:.0} | {:.0} |",
                spec.name,
                sc.title,
                fmt_rate(rate),
                fmt_rate(lo),
                fmt_rate(hi),
                base.map_or(f64::NAN, |b| rate / b),
                median_of(v, |x| x.cpu_us),
                median_of(v, |x| x.p99),
                v.iter().map(|x| x.failed).sum::<f64>(),
            );
        }
    }
    s
}

/// `--only tls`: the handshake scenarios alone, against the TLS servers
/// (`repeats` and windows as in a full run), rendered as their section.
pub fn measure_alone(quick: bool) -> String {
    let (ca, cert, key) = tls_files();
    let specs = handshake_servers(&cert, &key);
    let scs = handshake_scenarios(quick, &ca);
    let (repeats, timing) = if quick {
        (1, ["1", "0.3"])
    } else {
        (3, ["3", "1"])
    };
    let timing: Vec<String> = ["--secs", timing[0], "--warmup", timing[1]]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut results = BTreeMap::new();
    let (mut syscalls, mut instructions) = (BTreeMap::new(), BTreeMap::new());
    let mut tm = Measurements {
        specs: &specs,
        repeats,
        timing: &timing,
        valgrind: false,
        results: &mut results,
        syscalls: &mut syscalls,
        instructions: &mut instructions,
    };
    for sc in &scs {
        tm.measure(sc);
    }
    // And memory per idle TLS connection (issue 11).
    let idle = measure_tls_idle(quick, &tls_idle_servers(&cert, &key), &ca);
    render_handshakes(&specs, &scs, &results) + &render_tls_idle(&idle)
}
