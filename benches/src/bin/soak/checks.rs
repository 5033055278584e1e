//! The end of a soak: what is checked once the load has stopped and its
//! clients are gone (no server exited, every connection accounted for,
//! descriptors back where they started, RSS flat, the load's own figures),
//! and the one line that reports it.

use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use crate::net::Shared;
use crate::procs::Server;

/// One RSS sample of every server, `at` seconds into the load.
pub struct Sample {
    pub at: f64,
    pub rss_kib: Vec<u64>,
}

/// What the run did besides the load's own figures.
pub struct Run<'a> {
    pub minutes: f64,
    pub servers: &'a mut [Server],
    pub fds_before: Vec<usize>,
    pub samples: Vec<Sample>,
    pub reloads: u64,
    pub expiry: i64,
    pub redis: bool,
    pub redis_restarts: u64,
    /// Servers that exited during the run, and how.
    pub exits: Vec<String>,
    pub panicked_workers: usize,
}

/// How far the last window's RSS maximum may be above the first's.
const RSS_SLACK_KIB: u64 = 1024;

/// Waits (up to `limit`) for `ok`, polling; true if it became true.
fn eventually(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The checks; returns the failures (empty: passed) and the figures.
pub fn check(run: Run<'_>, shared: &Shared) -> (Vec<String>, String) {
    let mut failed: Vec<String> = Vec::new();
    failed.extend(run.exits.iter().cloned());
    for s in run.servers.iter_mut() {
        if let Some(how) = s.exited() {
            failed.push(format!("{} exited: {how}", s.name));
        }
    }
    if run.panicked_workers > 0 {
        failed.push(format!("{} load workers panicked", run.panicked_workers));
    }
    let mut counted = String::new();
    let mut fds = String::new();
    let mut cut_off = 0u64;
    for (i, s) in run.servers.iter().enumerate() {
        // Every client gone: nothing active, every close logged.
        let mut m = Vec::new();
        let settled = eventually(Duration::from_secs(30), || {
            m = s.scrape();
            let (accepted, active) = (
                Server::metric(&m, "monoloop_connections_accepted_total") as u64,
                Server::metric(&m, "monoloop_connections_active") as u64,
            );
            active == 0 && !m.is_empty() && s.log.lock().unwrap().closed() == accepted
        });
        let accepted = Server::metric(&m, "monoloop_connections_accepted_total") as u64;
        let active = Server::metric(&m, "monoloop_connections_active") as u64;
        let checks = Server::metric(&m, "monoloop_health_checks_total") as u64;
        let rejected = Server::metric(&m, "monoloop_connections_rejected_total") as u64;
        let (closed, logged_checks) = {
            let log = s.log.lock().unwrap();
            (log.closed(), log.checks())
        };
        if !settled {
            failed.push(format!(
                "{}: accepted={accepted} but closed={closed} + active={active} (after 30 s)",
                s.name
            ));
        }
        let made = shared.made_to(s.name);
        if made != accepted + checks + rejected {
            failed.push(format!(
                "{}: {made} connections made, but accepted={accepted} + checks={checks} + rejected={rejected}",
                s.name
            ));
        }
        if logged_checks != checks {
            failed.push(format!(
                "{}: {checks} health checks counted, {logged_checks} logged",
                s.name
            ));
        }
        cut_off += Server::metric(&m, "monoloop_slow_consumers_total") as u64;
        let _ = write!(counted, " {}={accepted}/{closed}/{active}", s.name);
        // Descriptors: back to the count just after start.
        let before = run.fds_before[i];
        let mut after = 0;
        if !eventually(Duration::from_secs(10), || {
            after = s.fds();
            after == before
        }) {
            failed.push(format!(
                "{}: {before} descriptors open after start, {after} at the end",
                s.name
            ));
        }
        let _ = write!(fds, " {}={before}/{after}", s.name);
        // The TLS server's reloads, and the cluster's link.
        if s.name == "echo-tls" {
            let failures = Server::metric(&m, "monoloop_tls_reload_failures_total");
            let expiry = Server::metric(&m, "monoloop_tls_certificate_expiry_seconds") as i64;
            if failures > 0.0 {
                failed.push(format!("echo-tls: {failures} reloads failed"));
            }
            if expiry != run.expiry {
                failed.push(format!(
                    "echo-tls: serves a certificate expiring at {expiry}, the last one written expires at {}",
                    run.expiry
                ));
            }
        }
        if run.redis && s.name.starts_with("chat-") {
            let linked = Server::metric(&m, "monoloop_cluster_linked");
            let reconnects = Server::metric(&m, "monoloop_cluster_reconnects_total") as u64;
            if linked < 1.0 {
                failed.push(format!("{}: not linked to Redis at the end", s.name));
            }
            if reconnects < run.redis_restarts {
                failed.push(format!(
                    "{}: {reconnects} reconnects to Redis for {} restarts",
                    s.name, run.redis_restarts
                ));
            }
        }
        for alarm in s.log.lock().unwrap().alarms.iter() {
            failed.push(format!("{} logged: {alarm}", s.name));
        }
    }
    let (rss, rss_failed, window) = rss_flat(&run);
    failed.extend(rss_failed);
    // The load's own figures.
    let (n, list) = shared.failures();
    if n > 0 {
        failed.push(format!(
            "{n} load failures, the first: {}",
            list.join(" | ")
        ));
    }
    for (what, count) in [
        ("echoes came back different", shared.echo_mismatches.get()),
        (
            "downloads came back different",
            shared.download_mismatches.get(),
        ),
        ("flood lines missing or out of order", shared.gaps.get()),
    ] {
        if count > 0 {
            failed.push(format!("{count} {what}"));
        }
    }
    for (what, count) in [
        ("bytes echoed", shared.echoed.get()),
        ("downloads", shared.downloads.get()),
        ("lines delivered", shared.lines.get()),
    ] {
        if count == 0 {
            failed.push(format!("no {what}: the load did not run"));
        }
    }
    if run.redis && run.redis_restarts > 0 && shared.cross_after_restart.get() == 0 {
        failed.push("no chat line crossed instances after the Redis restart".into());
    }
    let figures = format!(
        "minutes={} connections={} bytes_echoed={} lines_delivered={} cross_instance_lines={} \
         downloads={} reloads={} redis_restarts={} vanished={} slow_readers={} slow_consumers_cut_off={cut_off} chat_unavailable={} \
         rss_kib(first/last {window} max):{rss} fds(before/after):{fds} \
         accepted/closed/active:{counted}",
        run.minutes,
        shared.made_total(),
        shared.echoed.get(),
        shared.lines.get(),
        shared.cross_lines.get(),
        shared.downloads.get(),
        run.reloads,
        run.redis_restarts,
        shared.vanished.get(),
        shared.slow_done.get(),
        shared.chat_unavailable.get(),
    );
    (failed, figures)
}

/// RSS flat: each server's maximum over the last minute within
/// `RSS_SLACK_KIB` of its maximum over the first (first and last thirds
/// for a run under 3 minutes). Returns the figures, the failures, and the
/// window's name.
fn rss_flat(run: &Run<'_>) -> (String, Vec<String>, &'static str) {
    let total = run.samples.last().map_or(0.0, |s| s.at);
    let (window, name) = if run.minutes < 3.0 {
        (total / 3.0, "third")
    } else {
        (60.0, "minute")
    };
    let mut figures = String::new();
    let mut failed = Vec::new();
    for (i, s) in run.servers.iter().enumerate() {
        let max_in = |from: f64, to: f64| {
            run.samples
                .iter()
                .filter(|x| x.at >= from && x.at <= to)
                .map(|x| x.rss_kib[i])
                .max()
                .unwrap_or(0)
        };
        let first = max_in(0.0, window);
        let last = max_in(total - window, total);
        if last > first + RSS_SLACK_KIB {
            failed.push(format!(
                "{}: RSS grew: {first} KiB at most in the first {name}, {last} KiB in the last",
                s.name
            ));
        }
        let _ = write!(figures, " {}={first}/{last}", s.name);
    }
    (figures, failed, name)
}
