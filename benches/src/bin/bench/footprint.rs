//! The footprint section: memory per idle connection, start to accepting,
//! syscalls while idle, and binary sizes (`Sizes`, the builds without TLS).
//! Measured per server here; written into the report by `report::render`
//! and checked by `targets`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::measure::{count_syscalls, median, rss_kib};
use super::servers::{bench_dir, free_port, pinned, start, ServerSpec, LOADGEN_CPU, SERVER_CPU};

/// The stripped sizes of the two plain-TCP builds.
pub struct Sizes {
    /// `cargo build --release --no-default-features`, on stable std.
    pub notls: Option<u64>,
    /// The smallest binary: see `build_minimal`.
    pub minimal: Option<u64>,
}

pub struct Footprint {
    pub per_idle_conn: f64,
    pub binary: Option<u64>,
    pub start_ms: f64,
    pub idle_syscalls: Option<u64>,
}

/// The rise in `spec`'s VmRSS while the load generator holds `conns` idle
/// connections (`loadgen --scenario idle`, with `extra` arguments: `--tls
/// --ca CA` for connections through a full handshake), per connection.
fn idle_memory(spec: &ServerSpec, conns: usize, extra: &[&str]) -> f64 {
    let server = start(spec);
    thread::sleep(Duration::from_millis(300));
    let before = rss_kib(server.pid());
    let mut lg = Command::new(bench_dir().join("target/release/loadgen"))
        .args(["--addr", &server.addr.to_string(), "--scenario", "idle"])
        .args([
            "--count",
            &conns.to_string(),
            "--cpu",
            &LOADGEN_CPU.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("loadgen idle");
    let mut out = BufReader::new(lg.stdout.take().unwrap());
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    if !line.starts_with("READY") {
        eprintln!(
            "   {}: the idle connections failed: {}",
            spec.name,
            line.trim()
        );
        drop(lg.stdin.take());
        let _ = lg.wait();
        return f64::NAN;
    }
    thread::sleep(Duration::from_millis(500));
    let after = rss_kib(server.pid());
    drop(lg.stdin.take());
    let _ = lg.wait();
    drop(server);
    after.saturating_sub(before) as f64 * 1024.0 / conns as f64
}

/// Memory per idle TLS connection after a full handshake (issue 11), by
/// server, and how many connections it was measured with.
pub struct TlsIdle {
    pub conns: usize,
    pub by_server: BTreeMap<&'static str, f64>,
}

/// Measures [`TlsIdle`] for `specs`: the TLS echo servers, and nginx's http
/// module, where a TLS connection waits for its request.
pub fn measure_tls_idle(quick: bool, specs: &[ServerSpec], ca: &std::path::Path) -> TlsIdle {
    let conns = if quick { 1000 } else { 5000 };
    let ca = ca.to_string_lossy();
    eprintln!("== memory per idle TLS connection, {conns} connections");
    let mut by_server = BTreeMap::new();
    for spec in specs {
        let b = idle_memory(spec, conns, &["--tls", "--ca", &ca]);
        eprintln!("   {:9} {b:.0} B/idle TLS conn", spec.name);
        by_server.insert(spec.name, b);
    }
    TlsIdle { conns, by_server }
}

pub fn footprint(spec: &ServerSpec, idle_conns: usize, idle_secs: u64, starts: usize) -> Footprint {
    let per_idle_conn = idle_memory(spec, idle_conns, &[]);

    // Start to accepting.
    let mut times = Vec::new();
    for _ in 0..starts {
        let t0 = Instant::now();
        let mut cmd = Command::new(&spec.program);
        let mut args = spec.args.clone();
        // A fixed port, so that the connect loop knows where to knock.
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = listen.clone();
        } else {
            args.push("--listen".into());
            args.push(listen.clone());
        }
        cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
        pinned(&mut cmd, SERVER_CPU..SERVER_CPU + 1);
        let mut child = cmd.spawn().expect("start");
        let deadline = t0 + Duration::from_secs(10);
        while std::net::TcpStream::connect(&listen).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_micros(200));
        }
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();
    }

    // Syscalls while idle.
    let server = start(spec);
    thread::sleep(Duration::from_millis(500));
    let idle_syscalls = count_syscalls(server.pid()).and_then(|c| {
        thread::sleep(Duration::from_secs(idle_secs));
        c.finish().map(|n| n.all)
    });
    let binary = std::fs::metadata(&spec.program).ok().map(|m| m.len());
    Footprint {
        per_idle_conn,
        binary: if spec.name == "node" { None } else { binary },
        start_ms: median(times),
        idle_syscalls,
    }
}

/// Measures every server of `specs`; returns the footprints by server, and
/// the idle connections and idle seconds they were measured with.
pub fn measure_footprints(
    quick: bool,
    specs: &[ServerSpec],
) -> (BTreeMap<&'static str, Footprint>, usize, u64) {
    let idle_conns = if quick { 2000 } else { 10_000 };
    let idle_secs = if quick { 2 } else { 10 };
    let starts = if quick { 3 } else { 9 };
    eprintln!("== footprint");
    let mut prints = BTreeMap::new();
    for spec in specs {
        let f = footprint(spec, idle_conns, idle_secs, starts);
        eprintln!(
            "   {:9} {:.0} B/idle conn, start {:.1} ms, idle syscalls {:?}",
            spec.name, f.per_idle_conn, f.start_ms, f.idle_syscalls
        );
        prints.insert(spec.name, f);
    }
    (prints, idle_conns, idle_secs)
}

/// The table of memory per idle TLS connection (empty if not measured).
pub fn render_tls_idle(tls_idle: &TlsIdle) -> String {
    let mut s = String::new();
    if tls_idle.by_server.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\nMemory per idle TLS connection: the rise in the server's VmRSS over {} \
         connections, each through a full TLS 1.3 handshake (ECDSA P-256) and whatever the \
         server sent after it (session tickets) read, then silent, divided by their number. \
         nginx's is its http module's: a TLS connection waiting for its request.\n",
        tls_idle.conns
    );
    let _ = writeln!(s, "| server | bytes per idle TLS connection |");
    let _ = writeln!(s, "| --- | ---: |");
    for (name, b) in &tls_idle.by_server {
        let _ = writeln!(s, "| {name} | {b:.0} |");
    }
    s
}

/// The footprint's section of the report: how it is measured, a table per
/// server, and the sizes of the builds without TLS.
pub fn render_footprint(
    specs: &[ServerSpec],
    prints: &BTreeMap<&'static str, Footprint>,
    tls_idle: &TlsIdle,
    sizes: &Sizes,
    idle_conns: usize,
    idle_secs: u64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## footprint\n");
    let _ = writeln!(
        s,
        "Memory per idle connection is the rise in the server's VmRSS while the load \
         generator holds {idle_conns} idle connections, divided by {idle_conns}: user space and \
         the kernel's per-process page tables, not the kernel's socket buffers. Binary sizes \
         are of the stripped release builds. Start is the time from `exec` to the first \
         accepted connect (median). Idle syscalls are counted over {idle_secs} s with no client.\n"
    );
    let _ = writeln!(s, "| server | bytes per idle connection | binary | start to accepting | syscalls in {idle_secs} s idle |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
    for spec in specs {
        let Some(f) = prints.get(spec.name) else {
            continue;
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {:.1} ms | {} |",
            spec.name,
            f.per_idle_conn,
            f.binary.map_or("(a runtime)".into(), |b| format!(
                "{:.0} KB",
                b as f64 / 1000.0
            )),
            f.start_ms,
            f.idle_syscalls.map_or("n/a".into(), |v| v.to_string())
        );
    }
    s.push_str(&render_tls_idle(tls_idle));
    if let Some(b) = sizes.notls {
        let _ = writeln!(
            s,
            "\nmonoloop built without TLS (`--no-default-features`): {:.0} KB.",
            b as f64 / 1000.0
        );
    }
    match sizes.minimal {
        Some(b) => {
            let _ = writeln!(
                s,
                "\nThe smallest monoloop (README, \"The smallest binary\": no TLS, std rebuilt \
                 for size, panics abort without a message): {:.0} KB.",
                b as f64 / 1000.0
            );
        }
        None => {
            let _ = writeln!(
                s,
                "\nThe smallest monoloop (README, \"The smallest binary\") could not be built \
                 in this run (it needs the rust-src component)."
            );
        }
    }
    s
}
