//! The targets issues 5, 11 and 18 set for monoloop, each checked against the
//! figures of this run (issue 11 made them the steady figures: per unit of
//! work, per connection, and ratios within one run; rates are information): a table of target, measured value and whether it
//! was met, for the top of the report. A target reads results by scenario
//! key, so a renamed scenario shows here as "not measured in this run".

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::files::{cpu_per_gib, Files};
use super::footprint::{Footprint, Sizes, TlsIdle};
use super::measure::{median, PerMessage};
use super::scenarios::{median_of, Sample};

/// The targets of issues 5, 11 and 18, checked against this run.
#[allow(clippy::too_many_arguments)]
pub fn targets(
    results: &BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>>,
    syscalls: &BTreeMap<String, BTreeMap<&'static str, PerMessage>>,
    instructions: &BTreeMap<String, BTreeMap<&'static str, f64>>,
    storm: &BTreeMap<&'static str, Vec<(Sample, u64)>>,
    prints: &BTreeMap<&'static str, Footprint>,
    tls_idle: &TlsIdle,
    sizes: &Sizes,
    files: Option<&Files>,
) -> String {
    let med = |key: &str, server: &str, f: fn(&Sample) -> f64| {
        results
            .get(key)
            .and_then(|m| m.get(server))
            .map(|v| median_of(v, f))
    };
    let mut rows: Vec<(String, String, Option<bool>)> = Vec::new();
    // monoloop's figure against another server's, in one scenario: the
    // two sides of a `ratio`.
    let vs = |key: &str, other: &str, f: fn(&Sample) -> f64| {
        (med(key, "monoloop", f), med(key, other, f))
    };
    let instructions_vs = |key: &str, other: &str| {
        let of = |server: &str| instructions.get(key).and_then(|m| m.get(server)).copied();
        (of("monoloop"), of(other))
    };
    let ratio = |what: String,
                 (a, b): (Option<f64>, Option<f64>),
                 want: &str,
                 ok: fn(f64) -> bool|
     -> (String, String, Option<bool>) {
        match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => {
                let r = a / b;
                (what, format!("{r:.2} ({want})"), Some(ok(r)))
            }
            _ => (what, "not measured in this run".into(), None),
        }
    };
    // Instructions, syscalls and CPU per message: the figures a readiness
    // loop controls and a noisy machine does not move much.
    let pipe = "pipelined 100 connections × 16 in flight, 64 B";
    for (key, label) in [
        (
            "ping-pong 64 B 100 connections".to_string(),
            "ping-pong 64 B, 100 conns",
        ),
        (
            "ping-pong 64 B 1000 connections".to_string(),
            "ping-pong 64 B, 1000 conns",
        ),
        (pipe.to_string(), "pipelined"),
    ] {
        rows.push(ratio(
            format!("{label}: user-space instructions/msg vs tokio-ct"),
            instructions_vs(&key, "tokio-ct"),
            "≤ 0.55",
            |r| r <= 0.55,
        ));
    }
    for c in [100, 1000] {
        let key = format!("ping-pong 64 B {c} connections");
        match syscalls.get(&key).and_then(|m| m.get("monoloop")) {
            Some(v) => {
                rows.push((
                    format!("ping-pong 64 B, {c} conns: syscalls/msg"),
                    format!("{:.2} (≤ 2.05)", v.all),
                    Some(v.all <= 2.05),
                ));
                // The per-message part alone: what the loop decides (the
                // epoll waits depend on how many events a wakeup finds).
                if let Some(w) = v.waits {
                    rows.push((
                        format!("ping-pong 64 B, {c} conns: syscalls/msg besides epoll waits"),
                        format!(
                            "{:.2} + {w:.2} in waits (no target; 2 = one read, one write)",
                            v.all - w
                        ),
                        None,
                    ));
                }
            }
            None => rows.push((
                format!("ping-pong 64 B, {c} conns: syscalls/msg"),
                "not measured in this run".into(),
                None,
            )),
        }
        rows.push(ratio(
            format!("ping-pong 64 B, {c} conns: server CPU/msg vs tokio-ct"),
            vs(&key, "tokio-ct", |x| x.cpu_us),
            "≤ 1",
            |r| r <= 1.0,
        ));
    }
    if let Some(v) = storm.get("monoloop") {
        let secs = median(v.iter().map(|x| x.0.secs).collect());
        let n = median(v.iter().map(|x| x.0.msgs).collect());
        let syn = v.iter().map(|x| x.1).max().unwrap_or(0);
        rows.push((
            format!("connection storm ({n:.0} connects): time"),
            format!("{secs:.3} s (< 1 s for 10,000)"),
            Some(secs < 1.0),
        ));
        rows.push((
            "connection storm: SYN retransmits".into(),
            format!("{syn} (0)"),
            Some(syn == 0),
        ));
    }
    if let Some(f) = prints.get("monoloop") {
        rows.push((
            "memory per idle connection".into(),
            format!("{:.0} B (≤ 256)", f.per_idle_conn),
            Some(f.per_idle_conn <= 256.0),
        ));
        if let Some(&b) = tls_idle.by_server.get("monoloop") {
            rows.push((
                "memory per idle TLS connection, after a handshake".into(),
                format!("{b:.0} B (≤ 4096)"),
                Some(b <= 4096.0),
            ));
            rows.push(ratio(
                "memory per idle TLS connection vs nginx".into(),
                (Some(b), tls_idle.by_server.get("nginx").copied()),
                "< 0.5",
                |r| r < 0.5,
            ));
        }
        if let Some(n) = f.idle_syscalls {
            rows.push((
                "syscalls while idle".into(),
                format!("{n} (0)"),
                Some(n == 0),
            ));
        }
        rows.push((
            "start to accepting".into(),
            format!("{:.1} ms (< 10)", f.start_ms),
            Some(f.start_ms < 10.0),
        ));
        if let Some(b) = f.binary {
            rows.push((
                "stripped binary, with TLS".into(),
                format!("{:.0} KB (≤ 2300 KB)", b as f64 / 1000.0),
                Some(b <= 2_300_000),
            ));
        }
    }
    if let Some(b) = sizes.notls {
        rows.push((
            "stripped binary, without TLS (stable std)".into(),
            format!("{:.0} KB (≤ 700 KiB = 716.8 KB)", b as f64 / 1000.0),
            Some(b <= 700 << 10),
        ));
    }
    rows.push(match sizes.minimal {
        Some(b) => (
            "stripped binary, without TLS, std built for size".into(),
            format!("{:.0} KB (≤ 450 KiB = 460.8 KB)", b as f64 / 1000.0),
            Some(b <= 450 << 10),
        ),
        None => (
            "stripped binary, without TLS, std built for size".into(),
            "not built in this run".into(),
            None,
        ),
    });
    for c in [100, 1000] {
        let key = format!("fan-out 1 sender, {c} receivers, 64 B lines");
        rows.push(ratio(
            format!("fan-out, {c} receivers: lines/s vs tokio-ct"),
            vs(&key, "tokio-ct", |x| x.rate),
            "≥ 1.3",
            |r| r >= 1.3,
        ));
    }
    let tls_key = |kind: &str| {
        results
            .keys()
            .find(|k| k.starts_with("TLS ") && k.contains(&format!("{kind} handshakes")))
            .cloned()
            .unwrap_or_default()
    };
    rows.push(ratio(
        "TLS: full handshakes/s vs Node's tls".into(),
        vs(&tls_key("full"), "node", |x| x.rate),
        "≥ 1.5",
        |r| r >= 1.5,
    ));
    for kind in ["full", "resumed"] {
        rows.push(ratio(
            format!("TLS: {kind} handshakes/s vs nginx"),
            vs(&tls_key(kind), "nginx", |x| x.rate),
            "≥ 1",
            |r| r >= 1.0,
        ));
    }
    if let Some(f) = files {
        let of = |key: &str, server: &str, g: fn(&Sample) -> f64| {
            f.results
                .get(key)
                .and_then(|m| m.get(server))
                .map(|v| median_of(v, g))
        };
        for sc in &f.scenarios {
            let (key, conns) = (&sc.key, sc.conns);
            let mono = |g: fn(&Sample) -> f64| of(key, "monoloop", g);
            if sc.group == "file download" {
                rows.push(ratio(
                    format!("file download, {conns} at a time: MB/s vs the sendfile floor"),
                    (mono(|x| x.mbps), of(key, "sendfile floor", |x| x.mbps)),
                    "≥ 0.95",
                    |r| r >= 0.95,
                ));
                rows.push(ratio(
                    format!("file download, {conns} at a time: CPU/GiB vs the sendfile floor"),
                    (mono(cpu_per_gib), of(key, "sendfile floor", cpu_per_gib)),
                    "≤ 1.1",
                    |r| r <= 1.1,
                ));
                rows.push(ratio(
                    format!("file download, {conns} at a time: CPU/GiB vs --no-sendfile"),
                    (
                        mono(cpu_per_gib),
                        of(key, "monoloop --no-sendfile", cpu_per_gib),
                    ),
                    "≤ 0.5: far under the copying path",
                    |r| r <= 0.5,
                ));
            } else {
                rows.push(ratio(
                    format!("TLS file download, {conns} at a time: MB/s vs nginx"),
                    (mono(|x| x.mbps), of(key, "nginx", |x| x.mbps)),
                    "≥ 0.9",
                    |r| r >= 0.9,
                ));
            }
        }
    }
    let mut out = String::from(
        "## Targets\n\nWhat issues 5, 11 and 18 ask of monoloop, checked against this run. The \
         targets are the steady figures: instructions, syscalls and CPU per unit of work, \
         bytes per connection, and ratios to a floor or to nginx measured in the same run. \
         Rates are in the tables below, with their ranges, as information: where the load \
         generator's core is saturated (the `lg` rows) they compare load generators more \
         than servers.\n\n| target | measured | met |\n| --- | --- | --- |\n",
    );
    for (what, measured, ok) in rows {
        let mark = match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(out, "| {what} | {measured} | {mark} |");
    }
    out.push('\n');
    out
}
