//! The soak run (issue 24): every mode at once, each a monoloop process of
//! its own on loopback, under mixed abuse for `--minutes M` (default 10),
//! then checks that nothing was lost and nothing grew.
//!
//!     cargo run --release --manifest-path benches/Cargo.toml --bin soak -- --minutes M
//!
//! The servers: echo (plain, TLS, `--workers 2`), broadcast, chat (two
//! instances joined through a redis-server of the soak's own when one is
//! installed, else one alone, said in one line), and file over a directory
//! of generated files. The load (`echo`, `rooms`, `files`): echo clients
//! with short and long lives (churn), slow readers, clients that vanish
//! mid-exchange in every mode, a broadcast flood with reading and stalled
//! receivers, chat members, downloads compared byte for byte. Meanwhile the
//! TLS server's certificate is rewritten or touched and the server sent
//! SIGHUP every 30 s, and Redis is killed and started again halfway. The
//! checks (`checks`): no server exited and no load worker failed, every
//! echoed byte exact, accepted = closed + active on each server, as many
//! connections counted as were made, descriptors back to their count after
//! start, RSS flat. Exits 0 with a last line `soak: passed ...` and the
//! figures, or 1 with each failed check. docs/reliability.md says more.
//!
//! Modules: `procs` (the processes), `tls`, `net` (shared figures and
//! socket helpers), the load (`echo`, `rooms`, `files`), `checks`.

mod checks;
mod echo;
mod files;
mod net;
mod procs;
mod rooms;
mod tls;

/// The benchmark runner's servers module, for `cargo`, `root` and
/// `free_port` (only those are used here).
#[allow(dead_code)]
#[path = "../bench/servers.rs"]
mod servers;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use checks::{Run, Sample};
use echo::{Echo, Targets};
use net::Shared;
use procs::{Redis, Server};
use tls::Pki;

/// How often the TLS server is reloaded, and RSS sampled.
const RELOAD_EVERY: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

fn minutes_arg() -> f64 {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--minutes") {
        None => 10.0,
        Some(i) => match args.get(i + 1).and_then(|m| m.parse::<f64>().ok()) {
            Some(m) if m > 0.0 && m <= 24.0 * 60.0 => m,
            _ => {
                eprintln!("usage: soak [--minutes M]   (M from 0 to 1440; default 10)");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    let minutes = minutes_arg();
    // The release profile aborts on panic, and no Drop would stop the
    // servers: say what failed, stop them, exit 1.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        println!("soak: FAILED: a panic: {info}");
        procs::kill_all();
        std::process::exit(1);
    }));

    let root = servers::root();
    eprintln!("soak: building monoloop (release)");
    servers::run(
        servers::cargo()
            .args(["build", "--release"])
            .current_dir(&root),
        "cargo build --release",
    );
    let program = root.join("target/release/monoloop");
    let dir = std::env::temp_dir().join(format!("monoloop-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the soak's directory");
    println!(
        "soak: {minutes} min; the servers' logs and RSS samples go to {}",
        dir.display()
    );

    let mut pki = Pki::new(&dir);
    let served = Arc::new(files::make_tree(&dir.join("files")));
    let redis_installed = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut redis = if redis_installed {
        Some(Redis::start(servers::free_port()).unwrap_or_else(|e| panic!("{e}")))
    } else {
        println!("soak: the Redis part was skipped: redis-server is not installed (chat runs one instance alone)");
        None
    };

    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut specs: Vec<(&'static str, Vec<String>)> = vec![
        ("echo", args(&["echo"])),
        (
            "echo-tls",
            args(&[
                "echo",
                "--tls-cert",
                &path(&pki.cert),
                "--tls-key",
                &path(&pki.key),
            ]),
        ),
        ("echo-workers", args(&["echo", "--workers", "2"])),
        ("broadcast", args(&["broadcast", "--write-limit", "256K"])),
        ("file", args(&["file", "--root", &path(&dir.join("files"))])),
    ];
    match &redis {
        Some(r) => {
            let url = format!("redis://127.0.0.1:{}", r.port);
            specs.push(("chat-a", args(&["chat", "--cluster", &url])));
            specs.push(("chat-b", args(&["chat", "--cluster", &url])));
        }
        None => specs.push(("chat", args(&["chat"]))),
    }
    let mut servers: Vec<Server> = specs
        .iter()
        .map(|(name, a)| Server::start(name, &program, a, &dir))
        .collect();
    // Settled: the chat instances linked to Redis; then the descriptors.
    for s in servers.iter().filter(|s| s.name.starts_with("chat-")) {
        let end = Instant::now() + Duration::from_secs(20);
        while Server::metric(&s.scrape(), "monoloop_cluster_linked") < 1.0 && Instant::now() < end {
            thread::sleep(Duration::from_millis(100));
        }
    }
    thread::sleep(Duration::from_secs(1));
    let fds_before: Vec<usize> = servers.iter().map(Server::fds).collect();

    let addr_of = |name: &str| servers.iter().find(|s| s.name == name).unwrap().addr;
    let echo = |name: &'static str, tls: bool| Echo {
        name,
        addr: addr_of(name),
        tls,
    };
    let targets = Targets {
        echo: vec![
            echo("echo", false),
            echo("echo-tls", true),
            echo("echo-workers", false),
        ],
        broadcast: addr_of("broadcast"),
        chat: servers
            .iter()
            .filter(|s| s.name.starts_with("chat"))
            .map(|s| (s.name, s.addr))
            .collect(),
        file: addr_of("file"),
        big_file: served.last().unwrap().name.clone(),
    };

    let shared = Arc::new(Shared::default());
    let pki_now = Arc::new(pki.client());
    let workers = start_load(&shared, &pki_now, &targets, &served);

    // The run: RSS samples, reloads, the Redis restart, a progress line a
    // minute; the servers watched.
    let start = Instant::now();
    let length = Duration::from_secs_f64(minutes * 60.0);
    let mut samples = Vec::new();
    let (mut reloads, mut restarts, mut exits) = (0u64, 0u64, Vec::new());
    let (mut next_sample, mut next_reload, mut next_note) =
        (start, start + RELOAD_EVERY, start + Duration::from_secs(60));
    let restart_at = start + length / 2;
    while start.elapsed() < length {
        let now = Instant::now();
        if now >= next_sample {
            next_sample += SAMPLE_EVERY;
            samples.push(Sample {
                at: start.elapsed().as_secs_f64(),
                rss_kib: servers.iter().map(Server::rss_kib).collect(),
            });
            for s in servers.iter_mut() {
                if let Some(how) = s.exited() {
                    if !exits.iter().any(|e: &String| e.starts_with(s.name)) {
                        exits.push(format!("{} exited during the run: {how}", s.name));
                    }
                }
            }
        }
        if now >= next_reload {
            next_reload += RELOAD_EVERY;
            if reloads % 2 == 0 {
                pki.reissue();
            } else {
                pki.touch();
            }
            servers
                .iter()
                .find(|s| s.name == "echo-tls")
                .unwrap()
                .signal(libc::SIGHUP);
            reloads += 1;
        }
        if let Some(r) = redis.as_mut() {
            if restarts == 0 && now >= restart_at {
                println!(
                    "soak: restarting Redis ({:.1} min in)",
                    start.elapsed().as_secs_f64() / 60.0
                );
                if let Err(e) = r.restart(Duration::from_secs(2)) {
                    exits.push(format!("Redis did not come back: {e}"));
                }
                restarts += 1;
                shared.restarted.store(true, Ordering::Relaxed);
            }
        }
        if now >= next_note {
            next_note += Duration::from_secs(60);
            println!(
                "soak: {:.0}/{minutes} min: connections={} bytes_echoed={} lines={} downloads={} reloads={reloads} failures={}",
                start.elapsed().as_secs_f64() / 60.0,
                shared.made_total(),
                shared.echoed.get(),
                shared.lines.get(),
                shared.downloads.get(),
                shared.failures().0,
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
    samples.push(Sample {
        at: start.elapsed().as_secs_f64(),
        rss_kib: servers.iter().map(Server::rss_kib).collect(),
    });

    write_samples(&dir.join("rss.csv"), &servers, &samples);

    // The load stops; every worker's sockets have timeouts, so each join
    // comes.
    shared.stop();
    let panicked_workers = workers
        .into_iter()
        .map(|w| w.join())
        .filter(Result::is_err)
        .count();
    let (failed, figures) = checks::check(
        Run {
            minutes,
            servers: &mut servers,
            fds_before,
            samples,
            reloads,
            expiry: pki.expiry,
            redis: redis.is_some(),
            redis_restarts: restarts,
            exits,
            panicked_workers,
        },
        &shared,
    );
    for s in servers.iter_mut() {
        s.stop();
    }
    drop(redis);
    if failed.is_empty() {
        println!("soak: passed {figures}");
    } else {
        for f in &failed {
            println!("soak: check failed: {f}");
        }
        println!(
            "soak: FAILED ({} checks; logs kept in {}) {figures}",
            failed.len(),
            dir.display()
        );
        std::process::exit(1);
    }
}

/// The RSS samples as CSV (seconds, then KiB per server), for a look at
/// the trend after the run.
fn write_samples(path: &std::path::Path, servers: &[Server], samples: &[Sample]) {
    let mut csv = String::from("seconds");
    for s in servers {
        csv.push(',');
        csv.push_str(s.name);
    }
    for x in samples {
        csv.push_str(&format!("\n{:.0}", x.at));
        for kib in &x.rss_kib {
            csv.push_str(&format!(",{kib}"));
        }
    }
    csv.push('\n');
    let _ = std::fs::write(path, csv);
}

/// Starts every load worker; each runs until `shared.stop()`.
fn start_load(
    shared: &Arc<Shared>,
    pki: &Arc<tls::Client>,
    t: &Targets,
    served: &Arc<Vec<files::Served>>,
) -> Vec<thread::JoinHandle<()>> {
    let mut w = Vec::new();
    let mut spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        w.push(
            thread::Builder::new()
                .name(name)
                .spawn(f)
                .expect("a load thread"),
        );
    };
    let mut seed = 1u64;
    let mut next = || {
        seed += 1;
        seed
    };
    // Echo: 4 clients on each server, 2 slow readers, 2 vanishers.
    for e in &t.echo {
        for _ in 0..4 {
            let (s, p, e, n) = (shared.clone(), pki.clone(), e.clone(), next());
            spawn(
                format!("{}-client", e.name),
                Box::new(move || echo::client(s, p, e, n)),
            );
        }
    }
    for _ in 0..2 {
        let (s, p, t2, n) = (shared.clone(), pki.clone(), t.clone(), next());
        spawn(
            "slow-reader".into(),
            Box::new(move || echo::slow_reader(s, p, t2, n)),
        );
        let (s, p, t2, n) = (shared.clone(), pki.clone(), t.clone(), next());
        spawn(
            "vanisher".into(),
            Box::new(move || echo::vanisher(s, p, t2, n)),
        );
    }
    // Broadcast: the flood, 4 receivers, 1 stalled.
    let (s, a, n) = (shared.clone(), t.broadcast, next());
    spawn("flooder".into(), Box::new(move || rooms::flooder(s, a, n)));
    for _ in 0..4 {
        let (s, a, n) = (shared.clone(), t.broadcast, next());
        spawn(
            "receiver".into(),
            Box::new(move || rooms::receiver(s, a, n)),
        );
    }
    let (s, a, n) = (shared.clone(), t.broadcast, next());
    spawn(
        "stalled".into(),
        Box::new(move || rooms::stalled_receiver(s, a, n)),
    );
    // Chat: 3 members per instance.
    for (i, &(name, addr)) in t.chat.iter().enumerate() {
        for k in 0..3u64 {
            let s = shared.clone();
            let index = i as u64 * 10 + k;
            spawn(
                format!("{name}-member"),
                Box::new(move || rooms::chat_member(s, name, addr, index)),
            );
        }
    }
    // Files: 2 downloaders.
    for _ in 0..2 {
        let (s, a, f, n) = (shared.clone(), t.file, served.clone(), next());
        spawn(
            "downloader".into(),
            Box::new(move || files::downloader(s, a, f, n)),
        );
    }
    w
}
