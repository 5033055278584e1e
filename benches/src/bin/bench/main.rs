//! The runner: builds monoloop and the comparison servers in release mode,
//! runs every server through every scenario with the server pinned to core
//! 0 and the load generator to core 1, alternates the servers across
//! repeats so that machine drift cancels, and writes docs/benchmarks.md
//! (tables, SVG charts, the footprint section).
//!
//!     cargo run --release --manifest-path benches/Cargo.toml --bin bench [-- --quick]
//!
//! `--quick` runs a subset with short windows in about four minutes, for use
//! while developing; its report says so at the top.
//!
//! `--only mixed` runs only the latency-under-mixed-load section (issue 11;
//! see the header of `mixed`), prints its table on stdout and leaves
//! docs/benchmarks.md alone; `--out FILE` writes the table to FILE as well.
//! With `--quick` it takes about a minute after the build.
//!
//! `--only scaling` does the same for the scaling section (issue 12): 1 to
//! (cores − 1) workers, each with the server on that many cores and the
//! load generator on the next one. On two cores that is one worker: about
//! ten seconds with `--quick`, under a minute without, after the build.
//!
//! `--only tls` does the same for the TLS handshakes (issue 14): full and
//! resumed (TLS 1.3 tickets) handshakes per second, monoloop against Node's
//! `tls` and nginx's stream module (where installed), with server CPU per
//! handshake and how many really resumed.
//!
//! `--only cluster` does the same for fan-out across instances through
//! Redis (issue 22, scenario `cluster-fanout`): monoloop alone, two
//! monoloop instances joined with `--cluster`, and two Node relays joined
//! with ioredis pub/sub, each run with a redis-server of its own. About 20
//! s with `--quick`, a minute without, after the build.
//!
//! `--only echo` does the same for the echo tables (ping-pong, pipelined,
//! streaming), with the io_uring echo (`monoio`, issue 23) beside the
//! others in ping-pong and streaming. About two and a half minutes with
//! `--quick` after the build; without it (every size, connection count
//! and counting pass), roughly half an hour.
//!
//! `--only files` does the same for the files section (issue 11): one
//! large file downloaded by 1 and 100 clients, monoloop's `sendfile`
//! against its copying path and the `sendfile` floor, and over TLS against
//! nginx. About a minute with `--quick`, four without, after the build.
//!
//! This file is the command line and the order of a run; the rest is in
//! modules, each owning one concern:
//! - `servers`: the servers under test, how they are built and started,
//!   pinned to their cores;
//! - `measure`: what is read off a running server (CPU, memory, syscalls,
//!   instructions) and how repeats are summed up;
//! - `scenarios`: a scenario, driving the load generator through one, and
//!   running every server through it;
//! - `tables`: the scenarios of the main tables (ping-pong, pipelined,
//!   streaming, open loop, TLS, fan-out), measured in order;
//! - the sections that are their own concern: `mixed` (latency under mixed
//!   load), `files` (sendfile, TLS downloads against nginx), `scaling`
//!   (workers against cores), `tls` (handshakes), `cluster` (fan-out
//!   across instances through Redis), `storm`
//!   (the connection storm), `footprint` (memory, start, idle, sizes);
//! - `report` (docs/benchmarks.md and its formatting helpers), `targets`
//!   (issue 5's targets against this run), `charts` (the SVG charts).
//!
//! A new server is an entry in `servers`; a new scenario of the main tables
//! is an entry in `tables`, and the report gives it a table by itself.

mod charts;
mod cluster;
mod files;
mod footprint;
mod measure;
mod mixed;
mod report;
mod scaling;
mod scenarios;
mod servers;
mod storm;
mod tables;
mod targets;
mod tls;

use std::path::PathBuf;
use std::time::Instant;

use charts::write_charts;
use cluster::{measure_cluster, render_cluster};
use files::{measure_files, render_files};
use footprint::{measure_footprints, measure_tls_idle, Sizes};
use mixed::{measure_mixed, render_mixed};
use report::{machine, render, render_tables, servers_note, today, write_keeping_notes};
use scaling::{measure_scaling, render_scaling};
use servers::{bench_dir, build_minimal, cargo, root, run, tls_files, tls_idle_servers};
use storm::measure_storm;
use tables::{measure_echo, measure_tables};

/// The command line (see the module's header).
struct Options {
    quick: bool,
    /// `--only SECTION`: that section alone.
    only: Option<Only>,
    /// `--out FILE`: where `--only` also writes its table.
    out: Option<PathBuf>,
}

/// The sections `--only` can run alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    /// Fan-out across instances through Redis (issue 22).
    Cluster,
    /// The echo tables: ping-pong, pipelined, streaming (issue 23: with
    /// the io_uring echo).
    Echo,
    /// Large file downloads: sendfile, and TLS against nginx (issue 11).
    Files,
    /// Latency under mixed load (issue 11).
    Mixed,
    /// Workers against cores (issue 12).
    Scaling,
    /// Full and resumed TLS handshakes (issue 14).
    Tls,
}

impl Only {
    fn name(self) -> &'static str {
        match self {
            Only::Cluster => "cluster",
            Only::Echo => "echo",
            Only::Files => "files",
            Only::Mixed => "mixed",
            Only::Scaling => "scaling",
            Only::Tls => "tls",
        }
    }
}

impl Options {
    /// Parses the command line; a mistake is a message and exit code 2.
    fn parse() -> Options {
        let mut o = Options {
            quick: false,
            only: None,
            out: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--only" => match args.next().as_deref() {
                    Some("cluster") => o.only = Some(Only::Cluster),
                    Some("echo") => o.only = Some(Only::Echo),
                    Some("files") => o.only = Some(Only::Files),
                    Some("mixed") => o.only = Some(Only::Mixed),
                    Some("scaling") => o.only = Some(Only::Scaling),
                    Some("tls") => o.only = Some(Only::Tls),
                    other => usage(&format!(
                        "--only takes `cluster`, `echo`, `files`, `mixed`, `scaling` or `tls`, not {other:?}"
                    )),
                },
                "--out" => match args.next() {
                    Some(f) => o.out = Some(PathBuf::from(f)),
                    None => usage("--out needs a FILE"),
                },
                other => usage(&format!("unknown option {other}")),
            }
        }
        if o.out.is_some() && o.only.is_none() {
            usage("--out goes with --only (a full run writes docs/benchmarks.md)");
        }
        o
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "bench: {problem}\nusage: bench [--quick] [--only cluster|echo|files|mixed|scaling|tls [--out FILE]]"
    );
    std::process::exit(2)
}

fn main() {
    let opts = Options::parse();
    let quick = opts.quick;
    let started = Instant::now();
    let root = root();

    eprintln!("== building (release)");
    run(
        cargo().args(["build", "--release"]).current_dir(&root),
        "cargo build monoloop",
    );
    run(
        cargo()
            .args(["build", "--release", "--bins"])
            .current_dir(bench_dir()),
        "cargo build benches",
    );
    match opts.only {
        Some(Only::Cluster) => {
            let cluster = measure_cluster(opts.quick);
            only_section(&opts, started, &render_cluster(&cluster));
            return;
        }
        Some(Only::Echo) => {
            let echo = measure_echo(opts.quick);
            let section = format!(
                "{}{}",
                servers_note(&echo.shown),
                render_tables(
                    &echo.shown,
                    &echo.scenarios,
                    &echo.results,
                    &echo.syscalls,
                    &echo.instructions,
                )
            );
            only_section(&opts, started, &section);
            return;
        }
        Some(Only::Files) => {
            let (ca, cert, key) = tls_files();
            let files = measure_files(opts.quick, &ca, &cert, &key);
            only_section(&opts, started, &render_files(&files));
            return;
        }
        Some(Only::Mixed) => {
            let (ca, cert, key) = tls_files();
            let mixed = measure_mixed(opts.quick, &ca, &cert, &key);
            only_section(&opts, started, &render_mixed(&mixed));
            return;
        }
        Some(Only::Scaling) => {
            let scaling = measure_scaling(opts.quick);
            only_section(&opts, started, &render_scaling(&scaling));
            return;
        }
        Some(Only::Tls) => {
            only_section(&opts, started, &tls::measure_alone(opts.quick));
            return;
        }
        None => {}
    }
    run(
        cargo()
            .args([
                "build",
                "--release",
                "--no-default-features",
                "--target-dir",
                "target/notls",
            ])
            .current_dir(&root),
        "cargo build monoloop without TLS",
    );
    let minimal = build_minimal(&root);

    let tables = measure_tables(quick);
    let (ca, cert, key) = &tables.tls_files;

    // Latency under mixed load (issue 11): its own section (`mixed`).
    let mixed = measure_mixed(quick, ca, cert, key);
    let files = measure_files(quick, ca, cert, key);
    // Workers against cores (issue 12): its own section (`scaling`).
    let scaling = measure_scaling(quick);
    // Fan-out across instances through Redis (issue 22): `cluster`.
    let cluster = measure_cluster(quick);

    // Connection storm: everyone, with SYN retransmits counted.
    let (storm_sc, storm) = measure_storm(quick, &tables.echo.specs, tables.echo.repeats);

    // Footprint: the echo servers and the io_uring one.
    let (prints, idle_conns, idle_secs) = measure_footprints(quick, &tables.echo.shown);
    let tls_idle = measure_tls_idle(quick, &tls_idle_servers(cert, key), ca);
    let sizes = Sizes {
        notls: std::fs::metadata(root.join("target/notls/release/monoloop"))
            .map(|m| m.len())
            .ok(),
        minimal,
    };

    let report = render(
        quick,
        &tables.echo.shown,
        &tables.echo.scenarios,
        &tables.echo.results,
        &tables.echo.syscalls,
        &tables.echo.instructions,
        &render_mixed(&mixed),
        &files,
        &render_scaling(&scaling),
        &render_cluster(&cluster),
        &storm_sc,
        &storm,
        &prints,
        &tls_idle,
        &sizes,
        idle_conns,
        idle_secs,
        started.elapsed(),
    );
    let path = root.join("docs/benchmarks.md");
    write_keeping_notes(&path, &report);
    write_charts(
        &root,
        &tables.echo.shown,
        &tables.echo.scenarios,
        &tables.echo.results,
        tables.echo.conn_counts,
    );
    eprintln!("== wrote {} in {:.0?}", path.display(), started.elapsed());
}

/// `--only SECTION`: prints the section measured alone, under a line
/// saying how and where, on stdout, and writes it to `--out FILE` if
/// given; docs/benchmarks.md is left as it is.
fn only_section(opts: &Options, started: Instant, section: &str) {
    let report = format!(
        "Measured by `cargo run --release --manifest-path benches/Cargo.toml --bin bench -- \
         --only {}{}` on {} ({}), in {:.0} s.\n\n{section}",
        opts.only.map_or("", Only::name),
        if opts.quick { " --quick" } else { "" },
        today(),
        machine(),
        started.elapsed().as_secs_f64(),
    );
    print!("{report}");
    if let Some(path) = &opts.out {
        std::fs::write(path, &report).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("== wrote {}", path.display());
    }
}
