//! The files section (issue 11): downloading one large file, 1 and 100
//! clients at a time, each reading to the end and starting over until the
//! window closes (loadgen's `download` and `tls-download`).
//!
//! - Plain TCP: monoloop's file mode as it runs by default (`sendfile`),
//!   the same with `--no-sendfile` (read and write: what it did before),
//!   and `file_epoll`, the floor (`sendfile` on raw epoll, nothing else).
//! - TLS: monoloop's file mode with a certificate (read, encrypt, write)
//!   against nginx's http module serving the same file over TLS, where
//!   nginx is installed (benches/nginx/).
//!
//! The figures: MB/s of body bytes, and the server's CPU (user + system)
//! per GiB sent, both over the window. `--only files` runs this section
//! alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::report::{lg_mark, runs_note};
use super::scenarios::{drive, median_of, rotated, scenario, Pass, Sample, Scenario};
use super::servers::{bench_dir, monoloop, nginx, nginx_installed, start, Ready, ServerSpec};

/// What the section measured.
pub struct Files {
    pub size: u64,
    pub repeats: usize,
    pub secs: f64,
    pub plain: Vec<ServerSpec>,
    pub tls: Vec<ServerSpec>,
    pub scenarios: Vec<Scenario>,
    pub results: BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>>,
}

/// The file every server sends: `size` bytes of a pattern (not zeros, in
/// case anything on the way compresses), written once so that every
/// server reads it from the page cache.
fn make_file(size: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("monoloop-bench-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("files dir");
    let mut f = std::fs::File::create(dir.join("big.bin")).expect("big.bin");
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for _ in 0..size / block.len() as u64 {
        f.write_all(&block).expect("write big.bin");
    }
    dir
}

/// Server CPU seconds per GiB sent, from one sample: its CPU over the
/// window (per download, times the downloads) over its bytes.
pub fn cpu_per_gib(s: &Sample) -> f64 {
    let cpu_s = s.cpu_us * s.msgs.max(1.0) / 1e6;
    let gib = s.mbps * 1e6 * s.secs / (1u64 << 30) as f64;
    if gib > 0.0 {
        cpu_s / gib
    } else {
        f64::NAN
    }
}

pub fn measure_files(quick: bool, ca: &Path, cert: &Path, key: &Path) -> Files {
    let size: u64 = if quick { 64 << 20 } else { 256 << 20 };
    let (repeats, secs, warmup) = if quick { (1, 2.0, 0.5) } else { (3, 4.0, 1.0) };
    let root = make_file(size);
    let r = root.to_string_lossy().into_owned();
    let (cert_s, key_s) = (cert.to_string_lossy(), key.to_string_lossy());
    let mut copying = monoloop(&["file", "--root", &r, "--no-sendfile"]);
    copying.name = "monoloop --no-sendfile";
    let plain = vec![
        monoloop(&["file", "--root", &r]),
        copying,
        ServerSpec {
            name: "sendfile floor",
            program: bench_dir().join("target/release/file_epoll"),
            args: vec!["--root".into(), r.clone()],
            ready: Ready::Announces,
        },
    ];
    let mut tls = vec![monoloop(&[
        "file",
        "--root",
        &r,
        "--tls-cert",
        &cert_s,
        "--tls-key",
        &key_s,
    ])];
    if nginx_installed() {
        tls.push(nginx("files", cert, key, &root).1);
    } else {
        eprintln!("   nginx or its stream module is not installed: TLS downloads without it");
    }
    let timing: Vec<String> = ["--secs", &secs.to_string(), "--warmup", &warmup.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut results: BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>> = BTreeMap::new();
    let mut scenarios = Vec::new();
    for (group, specs, kind) in [
        ("file download", &plain, "download"),
        ("TLS file download", &tls, "tls-download"),
    ] {
        for conns in [1, 100] {
            // monoloop and the floor are asked `NAME\n`, nginx an HTTP GET:
            // the same scenario (one key) with the request each expects.
            let with = |request: &str| {
                scenario(
                    group,
                    format!("{} MiB, {conns} at a time", size >> 20),
                    conns,
                    &[
                        ("scenario", kind.into()),
                        ("conns", conns.to_string()),
                        ("size", size.to_string()),
                        ("request", request.into()),
                        ("ca", ca.to_string_lossy().into_owned()),
                    ],
                    false,
                )
            };
            let (line, http) = (
                with("big.bin\\n"),
                with("GET /big.bin HTTP/1.0\\r\\n\\r\\n"),
            );
            eprintln!("== {}", line.key);
            for r in 0..repeats {
                for spec in rotated(specs, r) {
                    let sc = if spec.name == "nginx" { &http } else { &line };
                    let server = start(spec);
                    let (sample, _) = drive(&server, sc, &timing, Pass::Cpu);
                    eprintln!(
                        "   {:22} {:>6.0} MB/s  {:.3} CPU s/GiB  lg_cpu {:.2}",
                        spec.name,
                        sample.mbps,
                        cpu_per_gib(&sample),
                        sample.lg_cpu
                    );
                    results
                        .entry(line.key.clone())
                        .or_default()
                        .entry(spec.name)
                        .or_default()
                        .push(sample);
                }
            }
            scenarios.push(line);
        }
    }
    Files {
        size,
        repeats,
        secs,
        plain,
        tls,
        scenarios,
        results,
    }
}

/// The section: MB/s and CPU per GiB per server and scenario, with the
/// floor (plain) or nginx (TLS) as the reference of each table.
pub fn render_files(f: &Files) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Files: sendfile, and TLS against nginx\n\n\
         Each client asks for one {} MiB file, reads it to the end and asks again, until \
         the {} s window closes. *MB/s* is body bytes read in the window (median over runs, \
         and range); *CPU/GiB* is the server's CPU, user and system, per GiB it sent. \
         Plain TCP: monoloop's file mode (`sendfile`), the same with `--no-sendfile` \
         (reading and writing, as before `sendfile`), and the floor: `file_epoll`, \
         `sendfile` on raw epoll with nothing else. TLS: monoloop's file mode with a \
         certificate against nginx's http module serving the same file (one process, \
         `sendfile off`, no kernel TLS: both read, encrypt and write; \
         benches/nginx/tls.conf). {}\n",
        f.size >> 20,
        f.secs,
        runs_note(f.repeats, "medians shown")
    );
    for (group, specs, reference) in [
        ("file download", &f.plain, "sendfile floor"),
        ("TLS file download", &f.tls, "nginx"),
    ] {
        let _ = writeln!(
            s,
            "| {group} | server | MB/s | range | vs {reference} | CPU s/GiB | vs {reference} |"
        );
        let _ = writeln!(s, "| --- | --- | ---: | --- | ---: | ---: | ---: |");
        for sc in f.scenarios.iter().filter(|sc| sc.group == group) {
            let Some(by_server) = f.results.get(&sc.key) else {
                continue;
            };
            let base = by_server.get(reference);
            let base_mbps = base.map(|v| median_of(v, |x| x.mbps));
            let base_cpu = base.map(|v| median_of(v, cpu_per_gib));
            for spec in specs.iter() {
                let Some(v) = by_server.get(spec.name) else {
                    continue;
                };
                let mbps = median_of(v, |x| x.mbps);
                let rates: Vec<f64> = v.iter().map(|x| x.mbps).collect();
                let (lo, hi) = super::measure::range(&rates);
                let cpu = median_of(v, cpu_per_gib);
                let _ = writeln!(
                    s,
                    "| {} | {} | {mbps:.0}{} | {lo:.0} – {hi:.0} | {:.2} | {cpu:.3} | {:.2} |",
                    sc.title,
                    spec.name,
                    lg_mark(v),
                    base_mbps.map_or(f64::NAN, |b| mbps / b),
                    base_cpu.map_or(f64::NAN, |b| cpu / b),
                );
            }
        }
        s.push('\n');
    }
    s
}
