//! What the metrics listener says: the answer to a request, parsed with
//! `httparse` (which does no I/O), and the Prometheus text of the
//! figures, with the process's own families from /proc. Pure but for
//! /proc and the clocks: `metrics.rs` reads the request and writes the
//! answer.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Figures, MAX_REQUEST};

/// The answer to a request, once it is complete: `None` while it is not.
///
/// Only the first request's header is parsed, up to its blank line: the
/// bytes after it (a body, a pipelined request, anything) are not part of
/// it and never read as a request, since every answer closes the
/// connection. So `request` may hold more than the limit; only the header
/// may not.
pub fn answer(request: &[u8], figures: impl FnOnce() -> Figures) -> Option<Vec<u8>> {
    let too_large = || {
        Some(response(
            431,
            "Request Header Fields Too Large",
            "text/plain",
            "request too large\n",
            true,
        ))
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(request) {
        Ok(httparse::Status::Complete(len)) if len > MAX_REQUEST => return too_large(),
        Ok(httparse::Status::Complete(_)) => {}
        // Not complete within the limit: it never will be.
        Ok(httparse::Status::Partial) if request.len() > MAX_REQUEST => return too_large(),
        Ok(httparse::Status::Partial) => return None,
        Err(_) => {
            return Some(response(
                400,
                "Bad Request",
                "text/plain",
                "bad request\n",
                true,
            ))
        }
    }
    let head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => {
            return Some(response(
                405,
                "Method Not Allowed",
                "text/plain",
                "method not allowed\n",
                true,
            ))
        }
    };
    let path = req.path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (code, reason, kind, body) = match path {
        "/metrics" => (
            200,
            "OK",
            "text/plain; version=0.0.4; charset=utf-8",
            exposition(&figures()),
        ),
        "/healthz" => {
            let f = figures();
            if f.draining {
                (
                    503,
                    "Service Unavailable",
                    "text/plain",
                    "draining\n".to_string(),
                )
            } else {
                // Cut off from the cluster, an instance still serves its
                // own clients: healthy, and says what it lacks.
                #[cfg(feature = "cluster")]
                let body = match &f.stats.cluster {
                    Some(c) if (c.linked as usize) < f.settings.workers.max(1) => {
                        "ok; cluster link down: serving this instance's clients alone\n"
                    }
                    _ => "ok\n",
                };
                #[cfg(not(feature = "cluster"))]
                let body = "ok\n";
                (200, "OK", "text/plain", body.to_string())
            }
        }
        _ => (404, "Not Found", "text/plain", "not found\n".to_string()),
    };
    let mut out = response(code, reason, kind, &body, true);
    if head {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(out.len(), |p| p + 4);
        out.truncate(end);
    }
    Some(out)
}

fn response(code: u16, reason: &str, kind: &str, body: &str, close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Appends one family: its help, its type, and its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The Prometheus text for `f`, and the process's own families. The
/// `monoloop_tls_*` families are there only on a TLS server.
pub fn exposition(f: &Figures) -> String {
    let s = &f.stats;
    let mut out = String::with_capacity(4096);
    #[cfg(feature = "cluster")]
    if let Some(c) = &s.cluster {
        cluster(&mut out, c);
    }
    let one = |v: u64| vec![("", v.to_string())];
    let build = format!(
        "version=\"{}\",commit=\"{}\",tls=\"{}\"",
        label_value(crate::build::version()),
        label_value(crate::build::commit()),
        crate::build::tls()
    );
    family(
        &mut out,
        "monoloop_build_info",
        "gauge",
        "The build: its version, the commit it was built from, and whether TLS is built in.",
        &[(build.as_str(), "1".to_string())],
    );
    settings(&mut out, &f.settings);
    family(
        &mut out,
        "monoloop_connections_active",
        "gauge",
        "Connections being served now.",
        &[("", f.active.to_string())],
    );
    family(
        &mut out,
        "monoloop_connections_draining",
        "gauge",
        "Connections a shutdown's drain still waits for (0 unless draining).",
        &[("", f.draining_conns.to_string())],
    );
    family(
        &mut out,
        "monoloop_connections_accepted_total",
        "counter",
        "Clients let in past the limit and the gate (not health checks).",
        &one(s.accepted),
    );
    family(
        &mut out,
        "monoloop_connections_rejected_total",
        "counter",
        "Connections turned away, by reason.",
        &[
            ("reason=\"full\"", s.rejected.to_string()),
            ("reason=\"denied\"", s.denied.to_string()),
            ("reason=\"per_ip\"", s.per_ip_rejected.to_string()),
            ("reason=\"proxy\"", s.proxy_errors.to_string()),
        ],
    );
    family(
        &mut out,
        "monoloop_health_checks_total",
        "counter",
        "Connections closed by the peer without a word, before they could have been served: health checks, not clients.",
        &one(s.checks),
    );
    family(
        &mut out,
        "monoloop_idle_timeouts_total",
        "counter",
        "Connections closed for silence or an unanswered prompt.",
        &one(s.timed_out),
    );
    family(
        &mut out,
        "monoloop_slow_consumers_total",
        "counter",
        "Receivers cut off for not reading.",
        &one(s.slow_consumers),
    );
    family(
        &mut out,
        "monoloop_received_bytes_total",
        "counter",
        "Application bytes read from clients.",
        &one(s.bytes_in),
    );
    family(
        &mut out,
        "monoloop_sent_bytes_total",
        "counter",
        "Application bytes written to clients.",
        &one(s.bytes_out),
    );
    if f.tls {
        tls(&mut out, f);
    }
    family(
        &mut out,
        "monoloop_write_queue_bytes",
        "gauge",
        "Bytes owed to clients now.",
        &one(f.queued),
    );
    family(
        &mut out,
        "monoloop_loop_turns_total",
        "counter",
        "Turns of the readiness loop (wakeups).",
        &one(f.turns),
    );
    family(
        &mut out,
        "monoloop_loop_busy_seconds_total",
        "counter",
        "Time the loop spent outside epoll_wait.",
        &[("", seconds_micro(f.busy))],
    );
    if !f.per_worker.is_empty() {
        let labels: Vec<String> = (0..f.per_worker.len())
            .map(|w| format!("worker=\"{w}\""))
            .collect();
        let samples: Vec<(&str, String)> = labels
            .iter()
            .zip(&f.per_worker)
            .map(|(l, n)| (l.as_str(), n.to_string()))
            .collect();
        family(
            &mut out,
            "monoloop_worker_connections_active",
            "gauge",
            "Connections being served now, per worker.",
            &samples,
        );
    }
    process(&mut out);
    out
}

/// The configured limits, as gauges (0: no limit, no timeout).
fn settings(out: &mut String, c: &super::Settings) {
    let gauges = [
        (
            "monoloop_connections_max",
            "Connections served at most at once (--max-connections).",
            c.max_connections.to_string(),
        ),
        (
            "monoloop_connections_per_ip_max",
            "Connections one client address may hold (--max-per-ip); 0: no limit.",
            c.max_per_ip.to_string(),
        ),
        (
            "monoloop_idle_timeout_seconds",
            "Silence after which a connection is closed (--idle-timeout); 0: never.",
            seconds_micro(c.idle_timeout.unwrap_or_default()),
        ),
        (
            "monoloop_workers",
            "Loops serving the port (--workers).",
            c.workers.to_string(),
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help, &[("", value)]);
    }
}

/// The link to other instances (`--cluster`), when there is one.
#[cfg(feature = "cluster")]
fn cluster(out: &mut String, c: &crate::cluster::Figures) {
    family(
        out,
        "monoloop_cluster_linked",
        "gauge",
        "Workers whose link to the cluster's Redis is up (the others serve their own clients alone).",
        &[("", c.linked.to_string())],
    );
    family(
        out,
        "monoloop_cluster_lines_total",
        "counter",
        "Lines published to the cluster (acknowledged by Redis), and received from other instances.",
        &[
            ("direction=\"published\"", c.published.to_string()),
            ("direction=\"received\"", c.received.to_string()),
        ],
    );
    family(
        out,
        "monoloop_cluster_reconnects_total",
        "counter",
        "Times a link to Redis came back after it was lost.",
        &[("", c.reconnects.to_string())],
    );
    family(
        out,
        "monoloop_cluster_outbox_bytes",
        "gauge",
        "This instance's lines waiting for Redis to take them.",
        &[("", c.outbox.to_string())],
    );
    family(
        out,
        "monoloop_cluster_dropped_lines_total",
        "counter",
        "Lines dropped because the outbox was full (--cluster-outbox).",
        &[("", c.dropped.to_string())],
    );
    family(
        out,
        "monoloop_cluster_slow_total",
        "counter",
        "Links to Redis dropped for owing more than twice --write-limit.",
        &[("", c.slow.to_string())],
    );
}

/// The `monoloop_tls_*` families, on a TLS server.
fn tls(out: &mut String, f: &Figures) {
    let s = &f.stats;
    family(
        out,
        "monoloop_tls_handshakes_total",
        "counter",
        "TLS handshakes completed, full or resumed.",
        &[
            ("resumed=\"false\"", s.tls_full.to_string()),
            ("resumed=\"true\"", s.tls_resumed.to_string()),
        ],
    );
    family(
        out,
        "monoloop_tls_reload_failures_total",
        "counter",
        "SIGHUP reloads of the TLS files that failed.",
        &[("", s.tls_reload_failures.to_string())],
    );
    family(
        out,
        "monoloop_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed or timed out.",
        &[("", s.tls_failures.to_string())],
    );
    if let Some(expiry) = f.settings.certificate_expiry {
        family(
            out,
            "monoloop_tls_certificate_expiry_seconds",
            "gauge",
            "The served certificate's notAfter, in seconds since the Unix epoch.",
            &[("", expiry.to_string())],
        );
    }
}

/// `v` as a label value: `\\`, `"` and newlines escaped, as the text
/// format asks.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `d` in seconds with six decimals, rounded to the nearest microsecond,
/// as `{:.6}` prints it, in whole numbers (no floating point: its
/// formatting is 10 KB of the binary).
fn seconds_micro(d: Duration) -> String {
    let micros = (d.as_nanos() + 500) / 1000;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// `ticks` of the kernel's clock (USER_HZ, 100 a second on Linux) in
/// seconds, with two decimals.
fn tick_seconds(ticks: u64) -> String {
    format!("{}.{:02}", ticks / 100, ticks % 100)
}

/// The usual `process_*` families, from /proc.
fn process(out: &mut String) {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            family(
                out,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent.",
                &[("", tick_seconds(num(11) + num(12)))],
            );
            family(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch.",
                &[("", tick_seconds(boot_time() * 100 + num(19)))],
            );
            // SAFETY: sysconf only reads a configuration value.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
            family(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size.",
                &[("", (num(21) * page).to_string())],
            );
        }
    }
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1));
    family(
        out,
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
        &[("", fds.to_string())],
    );
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    family(
        out,
        "process_max_fds",
        "gauge",
        "The file descriptor limit.",
        &[("", lim.rlim_cur.to_string())],
    );
}

/// The boot time, in whole seconds since the epoch: the wall clock less
/// the time since boot, as the kernel computes `btime` in /proc/stat. Read
/// from the clocks rather than from /proc/stat, which the shipped units
/// hide (`ProcSubset=pid`: only /proc/PID is left).
fn boot_time() -> u64 {
    let now = |clock| {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the struct we own; no other
        // memory. Both clocks exist on every Linux monoloop runs on.
        unsafe { libc::clock_gettime(clock, &mut t) };
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    let since_boot = now(libc::CLOCK_BOOTTIME);
    now(libc::CLOCK_REALTIME)
        .saturating_sub(since_boot)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn the_boot_time_from_the_clocks_is_the_kernels_btime() {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return;
        };
        let btime: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            .expect("btime in /proc/stat");
        // The kernel rounds down as we do; a second's slack covers a tick
        // of the wall clock between the two readings.
        assert!(boot_time().abs_diff(btime) <= 1, "{} {btime}", boot_time());
    }

    #[test]
    fn seconds_are_written_without_floating_point_as_it_would() {
        assert_eq!(
            seconds_micro(Duration::from_nanos(1_234_567_890)),
            "1.234568"
        );
        assert_eq!(seconds_micro(Duration::from_nanos(499)), "0.000000");
        assert_eq!(seconds_micro(Duration::ZERO), "0.000000");
        assert_eq!(tick_seconds(7), "0.07");
        assert_eq!(tick_seconds(12_345), "123.45");
    }

    fn figures() -> Figures {
        Figures {
            stats: Stats {
                accepted: 3,
                bytes_in: 10,
                ..Stats::default()
            },
            active: 2,
            ..Figures::default()
        }
    }

    fn text(a: Option<Vec<u8>>) -> String {
        String::from_utf8(a.expect("complete")).unwrap()
    }

    #[test]
    fn requests_are_answered_once_complete() {
        assert_eq!(
            answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", figures),
            None
        );
        let a = text(answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", figures));
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(a.contains("\nmonoloop_connections_accepted_total 3\n"));
        assert!(a.contains("\nmonoloop_connections_rejected_total{reason=\"per_ip\"} 0\n"));
        assert!(a.contains("# TYPE monoloop_received_bytes_total counter\n"));
        let head = text(answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", figures));
        assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
        assert!(
            text(answer(b"POST /metrics HTTP/1.1\r\n\r\n", figures)).starts_with("HTTP/1.1 405")
        );
        assert!(text(answer(b"GET /nope HTTP/1.1\r\n\r\n", figures)).starts_with("HTTP/1.1 404"));
        assert!(text(answer(b"\x01\x02 garbage\r\n\r\n", figures)).starts_with("HTTP/1.1 400"));
        let big = vec![b'a'; MAX_REQUEST + 1];
        assert!(text(answer(&big, figures)).starts_with("HTTP/1.1 431"));
    }

    /// A request whose header is exactly `len` bytes.
    fn header_of(len: usize) -> Vec<u8> {
        let (start, end) = (&b"GET /healthz HTTP/1.1\r\nX: "[..], &b"\r\n\r\n"[..]);
        let mut req = start.to_vec();
        req.resize(len - end.len(), b'a');
        req.extend_from_slice(end);
        req
    }

    #[test]
    fn only_the_first_requests_header_counts() {
        // A valid request and 100 KB after it: the request is answered;
        // what follows is not part of it (issue 19).
        let mut req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        req.extend_from_slice(&[b'x'; 100_000]);
        let a = text(answer(&req, figures));
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        // Two pipelined requests: the answer is the first one's.
        let two = b"GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n";
        let a = text(answer(two, figures));
        assert!(
            a.starts_with("HTTP/1.1 200 OK\r\n") && a.ends_with("ok\n"),
            "{a}"
        );
        // The header itself may be 8 KiB, not more, whole or not yet.
        assert_eq!(header_of(MAX_REQUEST).len(), MAX_REQUEST);
        let at = text(answer(&header_of(MAX_REQUEST), figures));
        assert!(at.starts_with("HTTP/1.1 200"), "{at}");
        let mut over = header_of(MAX_REQUEST + 1);
        assert!(text(answer(&over, figures)).starts_with("HTTP/1.1 431"));
        over.extend_from_slice(b"GET /healthz HTTP/1.1\r\n\r\n");
        assert!(text(answer(&over, figures)).starts_with("HTTP/1.1 431"));
        let unfinished = &header_of(MAX_REQUEST + 8)[..MAX_REQUEST + 1];
        assert!(text(answer(unfinished, figures)).starts_with("HTTP/1.1 431"));
        assert_eq!(answer(&unfinished[..MAX_REQUEST], figures), None);
    }

    #[test]
    fn tls_families_only_on_a_tls_server_and_the_build_always() {
        let plain = exposition(&figures());
        assert!(!plain.contains("monoloop_tls_"), "{plain}");
        assert!(
            plain.contains("\nmonoloop_build_info{version=\""),
            "{plain}"
        );
        assert!(
            plain.contains("\nmonoloop_idle_timeout_seconds 0.000000\n"),
            "{plain}"
        );
        let tls = Figures {
            tls: true,
            settings: crate::metrics::Settings {
                certificate_expiry: Some(1_577_836_800),
                idle_timeout: Some(Duration::from_millis(2500)),
                ..Default::default()
            },
            ..figures()
        };
        let text = exposition(&tls);
        assert!(text.contains("\nmonoloop_tls_certificate_expiry_seconds 1577836800\n"));
        assert!(text.contains("\nmonoloop_tls_handshakes_total{resumed=\"true\"} 0\n"));
        assert!(text.contains("\nmonoloop_idle_timeout_seconds 2.500000\n"));
        assert_eq!(label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn health_says_draining_once_a_shutdown_began() {
        let ok = text(answer(b"GET /healthz HTTP/1.1\r\n\r\n", figures));
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("\r\n\r\nok\n"),
            "{ok}"
        );
        let draining = || Figures {
            draining: true,
            ..figures()
        };
        let d = text(answer(b"GET /healthz HTTP/1.1\r\n\r\n", draining));
        assert!(
            d.starts_with("HTTP/1.1 503") && d.ends_with("draining\n"),
            "{d}"
        );
    }
}
