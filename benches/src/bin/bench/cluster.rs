//! Fan-out across instances through Redis (issue 22): measured
//! (`measure_cluster`) and rendered (`render_cluster`) here; the scenario
//! is called `cluster-fanout`.
//!
//! One sender and CLUSTER_RECEIVERS receivers (`loadgen --scenario fanout
//! --addrs A,B`: receivers spread over the instances in turn, the sender on
//! the first, at most FANOUT_WINDOW lines ahead of the slowest receiver),
//! against
//! - `monoloop alone`: one `monoloop broadcast`, no cluster, every
//!   receiver on it: the floor the pair is read against;
//! - `monoloop pair`: two `monoloop broadcast --cluster redis://...` on one
//!   Redis;
//! - `node pair`: two `benches/node/broadcast-redis.js`, the tutorial's
//!   `net` relay joined through Redis with ioredis pub/sub, as most guides
//!   do it; where node or ioredis is missing it is left out, said in one
//!   line (the runner tries `npm ci` in benches/node once, from the
//!   lockfile, when node_modules is missing).
//!
//! Each run has a Redis of its own: `redis-server` with persistence off, on
//! a free loopback port, stopped by its pid. Every server process and Redis
//! are pinned to core SERVER_CPU, the load generator to LOADGEN_CPU, as in
//! the other tables: the pair and its Redis share what one instance alone
//! had. Over the load generator's window the runner reads each process's
//! CPU (`/proc/PID/task/*/schedstat`): the instances' together per
//! delivered line, and Redis's per line sent. Variants rotate across
//! repeats; cells are the median and the range.
//!
//! `--only cluster` runs this section alone (`only_section`); a full run
//! puts it in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::measure::{cpu_ns, median, range};
use super::report::{fmt_rate, runs_note};
use super::scenarios::parse_result;
use super::servers::{
    bench_dir, free_port, monoloop, pinned, start, Ready, Running, ServerSpec, LOADGEN_CPU,
    SERVER_CPU,
};

/// Receivers, split over the instances.
pub const CLUSTER_RECEIVERS: usize = 1000;
/// How many lines the sender may run ahead of the slowest receiver (the
/// fan-out table's window).
const FANOUT_WINDOW: usize = 64;
/// Bytes per line the sender writes, newline included.
const LINE: usize = 64;

/// One way of relaying.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Variant {
    MonoloopAlone,
    MonoloopPair,
    NodePair,
}

impl Variant {
    const ALL: [Variant; 3] = [
        Variant::MonoloopAlone,
        Variant::MonoloopPair,
        Variant::NodePair,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::MonoloopAlone => "monoloop alone",
            Variant::MonoloopPair => "monoloop pair",
            Variant::NodePair => "node pair",
        }
    }

    fn through_redis(self) -> bool {
        self != Variant::MonoloopAlone
    }

    /// The instances' specs, for a Redis on `port`.
    fn specs(self, port: u16) -> Vec<ServerSpec> {
        let url = format!("redis://127.0.0.1:{port}");
        match self {
            Variant::MonoloopAlone => vec![monoloop(&["broadcast"])],
            Variant::MonoloopPair => {
                vec![monoloop(&["broadcast", "--cluster", &url]); 2]
            }
            Variant::NodePair => vec![
                ServerSpec {
                    name: "node",
                    program: PathBuf::from("node"),
                    args: vec![
                        bench_dir()
                            .join("node/broadcast-redis.js")
                            .to_string_lossy()
                            .into_owned(),
                        "--redis".into(),
                        url,
                    ],
                    ready: Ready::Announces,
                };
                2
            ],
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Lines delivered per second, counted at the receivers.
    pub rate: f64,
    /// Lines the sender sent per second (delivered / receivers).
    pub sent_rate: f64,
    pub p50: f64,
    pub p99: f64,
    /// Receivers on the second instance: lines that went through Redis.
    pub remote_p50: f64,
    pub remote_p99: f64,
    /// The instances' CPU (together) per delivered line, µs.
    pub server_us: f64,
    /// The instances' CPU over the window, in cores.
    pub server_busy: f64,
    /// Redis's CPU per line sent, µs.
    pub redis_us: f64,
    pub redis_busy: f64,
    pub lost: f64,
    pub lg_cpu: f64,
    /// How busy the servers' core and the load generator's core were over
    /// the window, whoever used them (`/proc/stat`): a core busy while its
    /// process is not was taken by something else.
    pub server_core: f64,
    pub lg_core: f64,
}

/// (busy, total) jiffies of core `cpu`, from /proc/stat.
fn core_jiffies(cpu: usize) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let name = format!("cpu{cpu}");
    let Some(line) = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
    else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn core_busy(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return f64::NAN;
    }
    b.0.saturating_sub(a.0) as f64 / total as f64
}

/// What the section measured, and how.
pub struct ClusterFanout {
    pub secs: f64,
    pub warmup: f64,
    pub repeats: usize,
    pub variants: Vec<Variant>,
    /// Why a variant (or the whole section) was left out.
    pub skipped: Vec<String>,
    pub runs: BTreeMap<Variant, Vec<Run>>,
    pub redis_version: String,
    pub node_version: String,
}

/// A redis-server of the benchmark's own: persistence off, on a free
/// loopback port, pinned to the servers' core; stopped by its pid on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        pinned(&mut cmd, SERVER_CPU..SERVER_CPU + 1);
        let child = cmd.spawn().expect("start redis-server");
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.ask("PING").starts_with("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An inline command's reply, read until a short pause (INFO's reply
    /// is one bulk string, small); empty if Redis is not there yet.
    pub fn ask(&self, command: &str) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        if s.write_all(format!("{command}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.ends_with(b"\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A figure of `INFO` (0 if absent).
    fn info(&self, key: &str) -> u64 {
        self.ask("INFO")
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn version(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program).arg(arg).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// True if benches/node has ioredis, after one `npm ci` if it had none.
fn ioredis_ready() -> Result<(), String> {
    let dir = bench_dir().join("node");
    if dir.join("node_modules/ioredis/package.json").exists() {
        return Ok(());
    }
    eprintln!("   benches/node/node_modules has no ioredis: `npm ci` there");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() && dir.join("node_modules/ioredis").exists() => Ok(()),
        Ok(s) => Err(format!(
            "`npm ci` in benches/node failed ({s}): no registry reachable?"
        )),
        Err(e) => Err(format!("npm did not run ({e})")),
    }
}

/// Runs every variant, `repeats` times in rotating order.
pub fn measure_cluster(quick: bool) -> ClusterFanout {
    let (secs, warmup, repeats) = if quick { (2.0, 1.0, 1) } else { (3.0, 1.0, 3) };
    let mut c = ClusterFanout {
        secs,
        warmup,
        repeats,
        variants: Vec::new(),
        skipped: Vec::new(),
        runs: BTreeMap::new(),
        redis_version: version("redis-server", "--version").unwrap_or_default(),
        node_version: version("node", "--version").unwrap_or_default(),
    };
    eprintln!("== cluster-fanout");
    if c.redis_version.is_empty() {
        let why = "redis-server is not installed (Debian: `apt-get install redis-server`): \
                   the cluster fan-out was not measured"
            .to_string();
        eprintln!("   {why}");
        c.skipped.push(why);
        return c;
    }
    c.variants = vec![Variant::MonoloopAlone, Variant::MonoloopPair];
    if c.node_version.is_empty() {
        c.skipped
            .push("node pair: left out, node is not installed".to_string());
    } else {
        match ioredis_ready() {
            Ok(()) => c.variants.push(Variant::NodePair),
            Err(why) => c
                .skipped
                .push(format!("node pair: left out, no ioredis: {why}")),
        }
    }
    for why in &c.skipped {
        eprintln!("   {why}");
    }
    let timing = ["--secs", &secs.to_string(), "--warmup", &warmup.to_string()].map(String::from);
    for r in 0..repeats {
        let mut order = c.variants.clone();
        let n = order.len();
        order.rotate_left(r % n);
        for v in order {
            let Some(run) = run_once(v, &timing) else {
                eprintln!("   {:14} no result", v.label());
                continue;
            };
            eprintln!(
                "   {:14} {:>8} lines/s ({:>6.0} sent/s)  p50 {:>6.0} µs  p99 {:>6.0} µs  \
                 server {:.3} µs/line  redis {:.2} µs/sent line  lost {}  lg_cpu {:.2}  \
                 cores {:.2} {:.2}",
                v.label(),
                fmt_rate(run.rate),
                run.sent_rate,
                run.p50,
                run.p99,
                run.server_us,
                run.redis_us,
                run.lost,
                run.lg_cpu,
                run.server_core,
                run.lg_core
            );
            c.runs.entry(v).or_default().push(run);
        }
    }
    c
}

/// One run of one variant, with a fresh Redis.
fn run_once(v: Variant, timing: &[String]) -> Option<Run> {
    let redis = Redis::start();
    let servers: Vec<Running> = v.specs(redis.port).iter().map(start).collect();
    if v == Variant::MonoloopPair {
        // Each instance's reader sits in a blocking XREAD once linked.
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.info("blocked_clients") < servers.len() as u64 {
            if Instant::now() > deadline {
                eprintln!("   the instances did not link to Redis in 10 s");
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let mut child = Command::new(bench_dir().join("target/release/loadgen"))
        .args(["--addr", &addrs[0], "--addrs", &addrs.join(",")])
        .args(["--cpu", &LOADGEN_CPU.to_string(), "--scenario", "fanout"])
        .args(["--conns", &CLUSTER_RECEIVERS.to_string()])
        .args(["--size", &LINE.to_string()])
        .args(["--window", &FANOUT_WINDOW.to_string()])
        .args(timing)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start loadgen");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut go_on = child.stdin.take();
    let pids: Vec<u32> = servers.iter().map(Running::pid).collect();
    let server_cpu = || pids.iter().map(|&p| cpu_ns(p)).sum::<u64>();
    let (mut s0, mut s1, mut r0, mut r1) = (0, 0, 0, 0);
    let (mut t0, mut t1) = (Instant::now(), Instant::now());
    let cores = || (core_jiffies(SERVER_CPU), core_jiffies(LOADGEN_CPU));
    let (mut c0, mut c1) = (cores(), cores());
    let mut result = BTreeMap::new();
    for line in stdout.lines().map_while(Result::ok) {
        match line.as_str() {
            "START" => {
                (s0, r0, t0, c0) = (server_cpu(), cpu_ns(redis.pid()), Instant::now(), cores());
            }
            "END" => {
                (s1, r1, t1, c1) = (server_cpu(), cpu_ns(redis.pid()), Instant::now(), cores());
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
        return None;
    }
    let num = |k: &str| result.get(k).and_then(|v| v.parse::<f64>().ok());
    let msgs = num("msgs")?;
    let secs = num("secs")?;
    // One instance: every line sent reaches every receiver there.
    let sent = num("sent").unwrap_or(msgs / CLUSTER_RECEIVERS as f64);
    let window = (t1 - t0).as_secs_f64().max(1e-9);
    let (server_ns, redis_ns) = (s1.saturating_sub(s0) as f64, r1.saturating_sub(r0) as f64);
    Some(Run {
        rate: num("rate")?,
        sent_rate: sent / secs,
        p50: num("p50")?,
        p99: num("p99")?,
        remote_p50: num("remote_p50").unwrap_or(f64::NAN),
        remote_p99: num("remote_p99").unwrap_or(f64::NAN),
        server_us: server_ns / 1e3 / msgs.max(1.0),
        server_busy: server_ns / 1e9 / window,
        redis_us: redis_ns / 1e3 / sent.max(1.0),
        redis_busy: redis_ns / 1e9 / window,
        lost: num("lost").unwrap_or(0.0),
        lg_cpu: num("lg_cpu").unwrap_or(0.0),
        server_core: core_busy(c0.0, c1.0),
        lg_core: core_busy(c0.1, c1.1),
    })
}

/// "median (lowest – highest)", or the one value of a single run.
fn cell(v: Vec<f64>, f: &dyn Fn(f64) -> String) -> String {
    let v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return "–".to_string();
    }
    let (lo, hi) = range(&v);
    if v.len() == 1 {
        f(v[0])
    } else {
        format!("{} ({} – {})", f(median(v)), f(lo), f(hi))
    }
}

/// The medians of one figure for a variant, if it ran.
fn median_for(c: &ClusterFanout, v: Variant, f: fn(&Run) -> f64) -> Option<f64> {
    let runs = c.runs.get(&v)?;
    Some(median(runs.iter().map(f).collect()))
}

/// The cluster section of the report: how it is measured, a table, and
/// issue 22's target against this run.
pub fn render_cluster(c: &ClusterFanout) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## fan-out across instances, through Redis\n");
    let _ = writeln!(
        s,
        "Issue 22 (scenario `cluster-fanout`, `benches/src/bin/bench/cluster.rs`): one \
         sender and {CLUSTER_RECEIVERS} receivers, {LINE} B lines, the sender at most \
         {FANOUT_WINDOW} lines ahead of the slowest receiver (`loadgen --scenario fanout \
         --addrs A,B`), for a {:.0} s window after a {:.0} s warm-up. With two instances the \
         receivers alternate between them and the sender is on the first, so half the \
         receivers have each line through Redis. *monoloop alone* is one `monoloop \
         broadcast` with every receiver on it; *monoloop pair* two `monoloop broadcast \
         --cluster redis://...` (a Redis stream, `XADD` and a blocking `XREAD`); *node pair* \
         two `benches/node/broadcast-redis.js`, the tutorial's `net` relay joined with \
         ioredis pub/sub. Each run starts its own Redis ({}; persistence off, free port, \
         stopped by pid). The instances and Redis share core {SERVER_CPU}, the load \
         generator has core {LOADGEN_CPU}. Lines/s are lines delivered, counted at the \
         receivers (sent/s is that over {CLUSTER_RECEIVERS}); latency is from the sender's \
         write to a receiver's read, in µs, over all receivers and (*via Redis*) over the \
         second instance's alone; server CPU is the instances' together per delivered \
         line, Redis CPU Redis's per line sent, both from `/proc/PID/task/*/schedstat` over \
         the window; *busy* is CPU over the window in cores (*lg busy* the load \
         generator's); *core {SERVER_CPU}* and *core {LOADGEN_CPU}* are how busy those cores \
         were, by anyone (`/proc/stat`: more than the processes above means something else \
         ran there); *lost* counts sequence numbers a receiver never had. {}\n",
        c.secs,
        c.warmup,
        c.redis_version
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        runs_note(c.repeats, "the median, and in brackets the range")
    );
    for why in &c.skipped {
        let _ = writeln!(s, "*{why}.*\n");
    }
    if c.runs.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "| setup | lines/s | sent/s | p50 µs | p99 µs | via Redis p50 µs | via Redis p99 µs | \
         server CPU µs/line | server busy | Redis CPU µs/sent line | Redis busy | lost | lg busy | \
         core {SERVER_CPU} | core {LOADGEN_CPU} |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: \
         | ---: |"
    );
    let us = |v: f64| format!("{v:.0}");
    let two = |v: f64| format!("{v:.2}");
    let three = |v: f64| format!("{v:.3}");
    for v in Variant::ALL {
        let Some(runs) = c.runs.get(&v) else {
            if c.variants.contains(&v) {
                let _ = writeln!(s, "| {} | no result | | | | | | | | | | | | | |", v.label());
            }
            continue;
        };
        let pick = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let redis = |f: fn(&Run) -> f64, fmt: &dyn Fn(f64) -> String| {
            if v.through_redis() {
                cell(pick(f), fmt)
            } else {
                "–".to_string()
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v.label(),
            cell(pick(|r| r.rate), &fmt_rate),
            cell(pick(|r| r.sent_rate), &fmt_rate),
            cell(pick(|r| r.p50), &us),
            cell(pick(|r| r.p99), &us),
            redis(|r| r.remote_p50, &us),
            redis(|r| r.remote_p99, &us),
            cell(pick(|r| r.server_us), &three),
            cell(pick(|r| r.server_busy), &two),
            redis(|r| r.redis_us, &two),
            redis(|r| r.redis_busy, &two),
            cell(pick(|r| r.lost), &us),
            cell(pick(|r| r.lg_cpu), &two),
            cell(pick(|r| r.server_core), &two),
            cell(pick(|r| r.lg_core), &two),
        );
    }
    let _ = writeln!(s);
    let mono = median_for(c, Variant::MonoloopPair, |r| r.rate);
    let node = median_for(c, Variant::NodePair, |r| r.rate);
    let mono_p99 = median_for(c, Variant::MonoloopPair, |r| r.p99);
    let node_p99 = median_for(c, Variant::NodePair, |r| r.p99);
    if let (Some(m), Some(n), Some(mp), Some(np)) = (mono, node, mono_p99, node_p99) {
        let met = m >= 5.0 * n && mp <= np;
        let _ = writeln!(
            s,
            "Target (issue 22): the monoloop pair at least 5 times the node pair's lines/s \
             at no more than its p99. Medians: {:.2} times the lines/s, p99 {:.0} µs against \
             {:.0} µs: **{}**.\n",
            m / n,
            mp,
            np,
            if met { "met" } else { "not met" }
        );
    }
    s
}
