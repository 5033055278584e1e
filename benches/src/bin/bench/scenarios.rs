//! Scenarios and driving them: a `Scenario` is the load generator's
//! arguments and the labels the report gives them; `drive` runs the load
//! generator against one started server and measures the server over the
//! window (CPU, or a counting pass); `Measurements` runs every server
//! through a scenario, repeats in rotating order, and keeps the samples and
//! counts the report and the targets read. Which scenarios make up a run is
//! `main`'s and each section's.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use super::measure::{
    callgrind_control, callgrind_total, count_syscalls, cpu_ns, cpu_ticks, median, under_callgrind,
    Count, PerMessage, SyscallCounter,
};
use super::servers::{bench_dir, start, Running, ServerSpec};

/// One scenario: loadgen arguments and how to label it.
#[derive(Clone)]
pub struct Scenario {
    pub key: String,
    pub title: String,
    pub group: &'static str,
    pub conns: usize,
    pub args: Vec<String>,
    /// Count syscalls in a separate pass.
    pub syscalls: bool,
}

impl Scenario {
    /// True for the scenarios whose rate, p99 or syscalls `targets` checks.
    fn read_by_targets(&self) -> bool {
        matches!(self.group, "ping-pong 64 B" | "pipelined")
    }
}

pub fn scenario(
    group: &'static str,
    title: String,
    conns: usize,
    args: &[(&str, String)],
    syscalls: bool,
) -> Scenario {
    let mut v = Vec::new();
    for (k, val) in args {
        v.push(format!("--{k}"));
        v.push(val.clone());
    }
    Scenario {
        key: format!("{group} {title}"),
        title,
        group,
        conns,
        args: v,
        syscalls,
    }
}

/// What one loadgen run measured, plus the server's CPU over the window.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub rate: f64,
    pub mbps: f64,
    pub msgs: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    /// The slowest message (only the mixed load reports it).
    pub max: f64,
    pub lg_cpu: f64,
    /// Server CPU per message, user and system together (exact).
    pub cpu_us: f64,
    /// The user and system shares of `cpu_us`, split by the tick counts.
    pub user_us: f64,
    pub sys_us: f64,
    pub failed: f64,
    pub secs: f64,
    /// Handshakes that resumed a session (`tls` and `tls-resume` only).
    pub resumed: f64,
}

/// The median of one figure over a server's runs.
pub fn median_of(v: &[Sample], f: fn(&Sample) -> f64) -> f64 {
    median(v.iter().map(f).collect())
}

pub fn parse_result(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What a pass measures besides the load generator's figures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Server CPU from /proc.
    Cpu,
    /// Syscalls, counted by perf (or strace) attached over the window.
    Syscalls,
    /// User-space instructions, counted by callgrind over the window (the
    /// server runs under valgrind).
    Instructions,
}

/// Runs the load generator against `server` and measures the server over
/// the window, as `pass` says. Returns the sample and, for the counting
/// passes, the count.
pub fn drive(
    server: &Running,
    sc: &Scenario,
    timing: &[String],
    pass: Pass,
) -> (Sample, Option<Count>) {
    let loadgen = bench_dir().join("target/release/loadgen");
    let mut child = Command::new(loadgen)
        .args([
            "--addr",
            &server.addr.to_string(),
            "--cpu",
            &server.loadgen_cpu.to_string(),
        ])
        .args(&sc.args)
        .args(timing)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start loadgen");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // The load generator holds its connections open after END until told
    // we have sampled (see loadgen's `end_window`).
    let mut go_on = child.stdin.take();
    let pid = server.pid();
    let (mut t0, mut t1) = ((0, 0), (0, 0));
    let (mut ns0, mut ns1) = (0, 0);
    let mut counter = None;
    let mut count = None;
    let mut result = BTreeMap::new();
    for line in stdout.lines().map_while(Result::ok) {
        match line.as_str() {
            "START" => {
                t0 = cpu_ticks(pid);
                ns0 = cpu_ns(pid);
                match pass {
                    Pass::Syscalls => counter = count_syscalls(pid),
                    Pass::Instructions => callgrind_control("-z", pid),
                    Pass::Cpu => {}
                }
            }
            "END" => {
                t1 = cpu_ticks(pid);
                ns1 = cpu_ns(pid);
                match pass {
                    Pass::Syscalls => count = counter.take().and_then(SyscallCounter::finish),
                    Pass::Instructions => {
                        count = callgrind_total(pid).map(|all| Count {
                            all,
                            waits: None,
                            secs: None,
                        })
                    }
                    Pass::Cpu => {}
                }
                if let Some(mut w) = go_on.take() {
                    let _ = w.write_all(b"sampled\n");
                }
            }
            l if l.starts_with("RESULT") => result = parse_result(l),
            _ => {}
        }
    }
    let _ = child.wait();
    if let Some(e) = result.get("error") {
        eprintln!("  loadgen error: {e}");
    }
    let num = |k: &str| {
        result
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let msgs = num("msgs").max(1.0);
    let cpu_us = ns1.saturating_sub(ns0) as f64 / 1e3 / msgs;
    let (user_ticks, sys_ticks) = (t1.0.saturating_sub(t0.0), t1.1.saturating_sub(t0.1));
    let user_share = if user_ticks + sys_ticks == 0 {
        f64::NAN
    } else {
        user_ticks as f64 / (user_ticks + sys_ticks) as f64
    };
    let sample = Sample {
        rate: num("rate"),
        mbps: num("mbps"),
        msgs: num("msgs"),
        p50: num("p50"),
        p99: num("p99"),
        p999: num("p999"),
        max: num("max"),
        lg_cpu: num("lg_cpu"),
        cpu_us,
        user_us: cpu_us * user_share,
        sys_us: cpu_us * (1.0 - user_share),
        failed: num("failed"),
        secs: num("secs"),
        resumed: num("resumed"),
    };
    (sample, count)
}

/// Where measurements go, and how to take them.
pub struct Measurements<'a> {
    pub specs: &'a [ServerSpec],
    pub repeats: usize,
    pub timing: &'a [String],
    pub valgrind: bool,
    pub results: &'a mut BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>>,
    pub syscalls: &'a mut BTreeMap<String, BTreeMap<&'static str, PerMessage>>,
    pub instructions: &'a mut BTreeMap<String, BTreeMap<&'static str, f64>>,
}

impl Measurements<'_> {
    /// The same repeats, window and tables for the servers `specs`, without
    /// the callgrind pass (kept for the plain echo servers).
    pub fn with_servers<'b>(&'b mut self, specs: &'b [ServerSpec]) -> Measurements<'b> {
        Measurements {
            valgrind: false,
            ..self.counting_with(specs)
        }
    }

    /// The same repeats, window, tables and counting passes (the callgrind
    /// one included) for the servers `specs`.
    pub fn counting_with<'b>(&'b mut self, specs: &'b [ServerSpec]) -> Measurements<'b> {
        Measurements {
            specs,
            repeats: self.repeats,
            timing: self.timing,
            valgrind: self.valgrind,
            results: &mut *self.results,
            syscalls: &mut *self.syscalls,
            instructions: &mut *self.instructions,
        }
    }

    /// Runs every server through `sc`, `repeats` times in rotating order,
    /// then the counting passes if the scenario asks for them.
    pub fn measure(&mut self, sc: &Scenario) {
        let (specs, timing, valgrind) = (self.specs, self.timing, self.valgrind);
        // The scenarios the targets read get two more repeats, and three
        // syscall passes: their medians are the ones that decide, on a
        // noisy machine.
        let (repeats, counting_rounds) = if sc.read_by_targets() && self.repeats > 1 {
            (self.repeats + 2, 3)
        } else {
            (self.repeats, 1)
        };
        {
            eprintln!("== {}", sc.key);
            for r in 0..repeats {
                for spec in rotated(specs, r) {
                    let server = start(spec);
                    let (sample, _) = drive(&server, sc, timing, Pass::Cpu);
                    eprintln!(
                        "   {:9} {:>10.0} msg/s  p99 {:>6} µs  user {:.2} µs/msg  lg_cpu {:.2}",
                        spec.name, sample.rate, sample.p99, sample.user_us, sample.lg_cpu
                    );
                    self.results
                        .entry(sc.key.clone())
                        .or_default()
                        .entry(spec.name)
                        .or_default()
                        .push(sample);
                }
            }
            if sc.syscalls {
                let per = count_per_message(
                    sc,
                    Pass::Syscalls,
                    ["1", "0.3"],
                    counting_rounds,
                    specs,
                    "syscalls",
                );
                self.syscalls.insert(sc.key.clone(), per);
                if valgrind {
                    // Node's JIT under valgrind would measure valgrind.
                    // Exact counts: one pass is enough.
                    let under: Vec<ServerSpec> = specs
                        .iter()
                        .filter(|s| s.name != "node")
                        .map(under_callgrind)
                        .collect();
                    let per = count_per_message(
                        sc,
                        Pass::Instructions,
                        ["2", "1"],
                        1,
                        &under,
                        "user-space instructions",
                    );
                    self.instructions.insert(
                        sc.key.clone(),
                        per.into_iter().map(|(k, v)| (k, v.all)).collect(),
                    );
                }
            }
        }
    }
}

/// The servers in the order of repeat (or round) `r`: the list rotated by
/// `r`, so that each goes first in turn and machine drift spreads evenly.
pub fn rotated(specs: &[ServerSpec], r: usize) -> Vec<&ServerSpec> {
    let mut order: Vec<&ServerSpec> = specs.iter().collect();
    order.rotate_left(r % specs.len().max(1));
    order
}

/// A counting pass: each server `rounds` times (rotating, like the
/// repeats), over a window of `[secs, warmup]`, its count divided by the
/// messages of that window; of the rounds, the middle one by total.
fn count_per_message(
    sc: &Scenario,
    pass: Pass,
    [secs, warmup]: [&str; 2],
    rounds: usize,
    servers: &[ServerSpec],
    what: &str,
) -> BTreeMap<&'static str, PerMessage> {
    let window = ["--secs", secs, "--warmup", warmup].map(String::from);
    let mut counts: BTreeMap<&'static str, Vec<PerMessage>> = BTreeMap::new();
    for r in 0..rounds {
        for spec in rotated(servers, r) {
            let server = start(spec);
            let (sample, count) = drive(&server, sc, &window, pass);
            if let Some(c) = count {
                // The messages of the part of the window the count saw (the
                // rate is steady across a window).
                let share = match c.secs {
                    Some(t) if sample.secs > 0.0 => (t / sample.secs).min(1.0),
                    _ => 1.0,
                };
                let msgs = (sample.msgs * share).max(1.0);
                let per = PerMessage {
                    all: c.all as f64 / msgs,
                    waits: c.waits.map(|w| w as f64 / msgs),
                };
                eprintln!("   {:9} {:.2} {what}/msg", spec.name, per.all);
                counts.entry(spec.name).or_default().push(per);
            }
        }
    }
    counts
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(|a, b| a.all.total_cmp(&b.all));
            (k, v[v.len() / 2])
        })
        .collect()
}
