//! The report, docs/benchmarks.md: `render` writes its header, how it is
//! measured, the servers (`servers_note`), the targets (`targets`), a table
//! per scenario of the main tables (`render_tables`, which `--only echo`
//! prints too), then the sections that render themselves (mixed load,
//! scaling, cluster fan-out) and the connection storm and footprint; the
//! notes between `NOTES_BEGIN` and `NOTES_END` are kept across runs. Also
//! the small formatting helpers every section shares (`fmt_rate`,
//! `runs_note`, `machine`, `today`, `slug`). The charts are `charts`'.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use super::files::{render_files, Files};
use super::footprint::{render_footprint, Footprint, Sizes, TlsIdle};
use super::measure::{median, range, PerMessage};
use super::scenarios::{median_of, Sample, Scenario};
use super::servers::{ServerSpec, LOADGEN_CPU, SERVER_CPU};
use super::storm::render_storm;
use super::targets::targets;
use super::tls::resumed_counts;

pub const NOTES_BEGIN: &str = "<!-- notes: kept across runs -->";
pub const NOTES_END: &str = "<!-- end of notes -->";

pub fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

pub fn today() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// How many runs a section's figures come from, for its introduction:
/// `shown` says what a cell holds when there were several.
pub fn runs_note(repeats: usize, shown: &str) -> String {
    if repeats == 1 {
        "One run each: good for spotting a change, not for quoting.".to_string()
    } else {
        format!("{repeats} runs each, servers in rotating order: {shown}.")
    }
}

/// A server's rate over its runs: the median, the lowest and the highest.
pub fn rate_spread(v: &[Sample]) -> (f64, f64, f64) {
    let rates: Vec<f64> = v.iter().map(|x| x.rate).collect();
    let (lo, hi) = range(&rates);
    (median(rates), lo, hi)
}

/// " lg" where the load generator's own core was saturated (over 90% busy,
/// the median over the runs), so that the rate measures it as much as the
/// server; nothing otherwise.
pub fn lg_mark(v: &[Sample]) -> &'static str {
    if median_of(v, |x| x.lg_cpu) > 0.9 {
        " lg"
    } else {
        ""
    }
}

#[allow(clippy::too_many_arguments)]
pub fn render(
    quick: bool,
    specs: &[ServerSpec],
    scenarios: &[Scenario],
    results: &BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>>,
    syscalls: &BTreeMap<String, BTreeMap<&'static str, PerMessage>>,
    instructions: &BTreeMap<String, BTreeMap<&'static str, f64>>,
    mixed: &str,
    files: &Files,
    scaling: &str,
    cluster: &str,
    storm_sc: &Scenario,
    storm: &BTreeMap<&'static str, Vec<(Sample, u64)>>,
    prints: &BTreeMap<&'static str, Footprint>,
    tls_idle: &TlsIdle,
    sizes: &Sizes,
    idle_conns: usize,
    idle_secs: u64,
    took: Duration,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo run --release --manifest-path benches/Cargo.toml --bin bench{}` \
         on {} ({}), in {:.0} s. Every figure below comes from that one run; rerun the \
         command to refresh them.\n",
        if quick { " -- --quick" } else { "" },
        today(),
        machine(),
        took.as_secs_f64()
    );
    if quick {
        let _ = writeln!(
            s,
            "**This is a quick run** (1 s windows, one repeat, a subset of scenarios): \
             good for spotting a regression, not for quoting.\n"
        );
    }
    let _ = writeln!(
        s,
        "How it is measured: each server runs pinned to core {SERVER_CPU}, the load generator \
         (`benches/src/bin/loadgen.rs`, one mio loop) to core {LOADGEN_CPU}. Each scenario \
         warms up, then measures a window; the server's CPU over exactly that window is the \
         sum of its threads' `/proc/PID/task/*/schedstat` (nanoseconds), divided by the \
         messages echoed, and split into user and system by the 10 ms ticks of \
         `/proc/PID/stat` (so the split is coarse where the total is small). Syscalls per \
         message come from a separate, shorter pass with `perf stat -e raw_syscalls:sys_enter` \
         attached to the server (the middle of three passes where a target reads it); in \
         brackets, how many of them were waits (`epoll_wait`, or `io_uring_enter` for \
         `monoio`), one per wakeup, the share that depends on how many events each wakeup \
         found. User-space instructions per message, the exact figure for \
         what a loop costs in user space, come from a third pass with the server under \
         valgrind's callgrind, counting from the window's start to its end \
         (`callgrind_control -z` and `-d`); node is left out of it (a JIT under valgrind \
         measures valgrind). Servers alternate \
         across repeats (three, or five for the scenarios the targets read); tables give the median and the range. Ratios are against monoloop in \
         the same run (above 1 means more than monoloop). `lg` marks a row where the load \
         generator's own core was saturated (over 90% busy): there, messages per second \
         measure the load generator as much as the server, and CPU per message is the figure \
         to read.\n"
    );
    s.push_str(&servers_note(specs));
    let _ = writeln!(s, "{{{{NOTES}}}}\n");
    s.push_str(&targets(
        results,
        syscalls,
        instructions,
        storm,
        prints,
        tls_idle,
        sizes,
        Some(files),
    ));
    s.push_str(&render_tables(
        specs,
        scenarios,
        results,
        syscalls,
        instructions,
    ));
    s.push_str(mixed);
    s.push_str(&render_files(files));
    s.push_str(scaling);
    s.push_str(cluster);
    s.push_str(&render_storm(specs, storm_sc, storm));
    s.push_str(&render_footprint(
        specs, prints, tls_idle, sizes, idle_conns, idle_secs,
    ));
    s
}

/// The list of servers, and what `monoio` is (issue 23): the line under
/// the report's introduction, and the top of `--only echo`.
pub fn servers_note(specs: &[ServerSpec]) -> String {
    let mut s = format!(
        "Servers: {}.\n\n",
        specs
            .iter()
            .map(|s| format!("`{}`", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if specs.iter().any(|s| s.name == "monoio") {
        s.push_str(
            "`monoio` is the same echo on monoio's io_uring runtime \
             (`benches/src/bin/echo_monoio.rs`: one thread, a task per connection, monoio built \
             with its io_uring driver alone, so there is no epoll fallback to land on): the \
             completion-based design a user chasing the fewest syscalls would pick. It is \
             measured where it tells something about the readiness model, the ping-pong and \
             streaming tables and the footprint, and nowhere else. Its syscalls are nearly all \
             `io_uring_enter`, each submitting a turn's reads and writes and waiting for \
             completions; they are what its bracketed figure counts, the wait of its loop as \
             `epoll_wait` is the others'. The reads and writes themselves run in the kernel, \
             inside those calls or in task work the kernel runs on the server's thread, so they \
             are in its CPU per message (as system time) but in neither its syscalls nor its \
             user-space instructions. valgrind runs it (its io_uring syscalls are wrapped), so \
             it has the callgrind pass too.\n\n",
        );
    }
    s
}

/// A table per scenario of the main tables, under a heading per group: a
/// row per server of `specs` that ran it (in that order, then any a
/// section added), with rate, latency, CPU, syscalls and instructions per
/// message.
pub fn render_tables(
    specs: &[ServerSpec],
    scenarios: &[Scenario],
    results: &BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>>,
    syscalls: &BTreeMap<String, BTreeMap<&'static str, PerMessage>>,
    instructions: &BTreeMap<String, BTreeMap<&'static str, f64>>,
) -> String {
    let mut s = String::new();
    let mut group = "";
    for sc in scenarios {
        if sc.group != group {
            group = sc.group;
            let _ = writeln!(s, "## {group}\n");
            if group.starts_with("ping-pong") {
                let _ = writeln!(s, "![messages per second](bench-{}-rate.svg) ![server CPU per message](bench-{}-cpu.svg)\n", slug(group), slug(group));
            }
        }
        let Some(by_server) = results.get(&sc.key) else {
            continue;
        };
        let base = by_server.get("monoloop").map(|v| median_of(v, |x| x.rate));
        let base_instr = instructions
            .get(&sc.key)
            .and_then(|m| m.get("monoloop"))
            .copied();
        let _ = writeln!(s, "### {}\n", sc.title);
        if sc.args.iter().any(|a| a.starts_with("tls")) && sc.args.contains(&"--count".into()) {
            let _ = writeln!(
                s,
                "Resumed (of all handshakes, every run): {}.\n",
                resumed_counts(specs, by_server)
            );
        }
        let _ = writeln!(
            s,
            "| server | msg/s (median) | range | vs monoloop | MB/s | p50 µs | p99 µs | p99.9 µs | CPU µs/msg | user µs/msg | sys µs/msg | syscalls/msg (waits) | user instructions/msg | vs monoloop |"
        );
        let _ = writeln!(
            s,
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        // The main servers in their order, then any a section added (nginx
        // in the handshakes).
        let extra = by_server
            .keys()
            .filter(|name| !specs.iter().any(|s| s.name == **name));
        for name in specs.iter().map(|s| s.name).chain(extra.copied()) {
            let Some(v) = by_server.get(name) else {
                continue;
            };
            let (rate, lo, hi) = rate_spread(v);
            let lg = lg_mark(v);
            let sc_per =
                syscalls
                    .get(&sc.key)
                    .and_then(|m| m.get(name))
                    .map_or("".to_string(), |v| match v.waits {
                        Some(w) => format!("{:.2} ({w:.2})", v.all),
                        None => format!("{:.2}", v.all),
                    });
            let instr = instructions.get(&sc.key).and_then(|m| m.get(name)).copied();
            let instr_cells = match (instr, base_instr) {
                (Some(i), Some(b)) => format!("{i:.0} | {:.2}", i / b),
                (Some(i), None) => format!("{i:.0} | "),
                _ => " | ".to_string(),
            };
            let _ = writeln!(
                s,
                "| {} | {}{lg} | {} – {} | {:.2} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
                name,
                fmt_rate(rate),
                fmt_rate(lo),
                fmt_rate(hi),
                base.map_or(f64::NAN, |b| rate / b),
                median_of(v, |x| x.mbps),
                median_of(v, |x| x.p50),
                median_of(v, |x| x.p99),
                median_of(v, |x| x.p999),
                median_of(v, |x| x.cpu_us),
                median_of(v, |x| x.user_us),
                median_of(v, |x| x.sys_us),
                sc_per,
                instr_cells
            );
        }
        let _ = writeln!(s);
    }
    s
}

pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Writes `report` to `path` with its `{{NOTES}}` replaced by the notes the
/// file there already has (between `NOTES_BEGIN` and `NOTES_END`), or by a
/// placeholder where it has none.
pub fn write_keeping_notes(path: &Path, report: &str) {
    let notes = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| {
            let a = old.find(NOTES_BEGIN)?;
            let b = old.find(NOTES_END)?;
            Some(old[a..b + NOTES_END.len()].to_string())
        })
        .unwrap_or_else(|| format!("{NOTES_BEGIN}\n(No notes yet.)\n{NOTES_END}"));
    let report = report.replace("{{NOTES}}", &notes);
    std::fs::write(path, report).expect("write docs/benchmarks.md");
}
