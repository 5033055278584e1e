//! What the runner reads off a running server, by pid: CPU time (exact
//! nanoseconds from schedstat, user and system ticks from stat), resident
//! memory, syscalls (perf attached, else strace), user-space instructions
//! (callgrind, with the server started under valgrind), the kernel's TcpExt
//! counters; and how repeats are summed up (`median`, `range`). When to
//! read them, around a load generator's window, is `scenarios::drive`'s.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use super::servers::ServerSpec;

/// (utime, stime) in clock ticks, from /proc/PID/stat.
pub fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return (0, 0);
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    (f[11].parse().unwrap_or(0), f[12].parse().unwrap_or(0))
}

/// CPU time of every thread of the process, in nanoseconds, from
/// /proc/PID/task/*/schedstat (exact, unlike the 10 ms ticks of stat).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A syscall counter attached to a process (perf, else strace).
pub struct SyscallCounter {
    pub child: Child,
    pub tool: &'static str,
    pub out: PathBuf,
}

/// What the syscall pass counts: every syscall, and the waits among them:
/// epoll waits (mio and tokio call `epoll_wait`, libuv `epoll_pwait`) and
/// `io_uring_enter` (monoio's one syscall, issue 23: it submits the turn's
/// reads and writes and waits for their completions, so it is its loop's
/// wait, once per wakeup as an epoll wait is). `duration_time` is how long
/// perf counted: it attaches after the window opens, so its count covers
/// that much of the window, not all of it.
const PERF_EVENTS: &str = "duration_time,raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,\
syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_pwait2,syscalls:sys_enter_io_uring_enter";

/// The waits among the syscalls, by name (see `PERF_EVENTS`).
const WAITS: [&str; 4] = [
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "io_uring_enter",
];

/// A counting pass's total over the window, and for syscalls how many of
/// them were waits, epoll or io_uring (one per wakeup: the part that
/// depends on how many events each wakeup finds).
#[derive(Clone, Copy, Debug)]
pub struct Count {
    pub all: u64,
    pub waits: Option<u64>,
    /// How long the count ran, when less than the whole window.
    pub secs: Option<f64>,
}

/// Per message: a [`Count`] divided by the messages of its window.
#[derive(Clone, Copy, Debug)]
pub struct PerMessage {
    pub all: f64,
    pub waits: Option<f64>,
}

pub fn count_syscalls(pid: u32) -> Option<SyscallCounter> {
    let out = std::env::temp_dir().join(format!("monoloop-syscalls-{pid}"));
    let _ = std::fs::remove_file(&out);
    let perf = Command::new("perf")
        .args(["stat", "-x", ",", "-e", PERF_EVENTS, "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let (child, tool) = match perf {
        Ok(c) => (c, "perf"),
        Err(_) => (
            Command::new("strace")
                .args(["-c", "-f", "-o"])
                .arg(&out)
                .args(["-p", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?,
            "strace",
        ),
    };
    // Give the tracer a moment to attach.
    thread::sleep(Duration::from_millis(300));
    Some(SyscallCounter { child, tool, out })
}

impl SyscallCounter {
    pub fn finish(mut self) -> Option<Count> {
        // SAFETY: SIGINT to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).ok()?;
        let _ = std::fs::remove_file(&self.out);
        match self.tool {
            "perf" => {
                // One CSV line per event: count, unit, event, run time, ...
                let count = |event: &str| -> Option<u64> {
                    let line = text.lines().find(|l| l.split(',').nth(2) == Some(event))?;
                    let fields: Vec<&str> = line.split(',').collect();
                    match fields[0].trim() {
                        // perf says this when the process never ran while it
                        // watched (its run time, the 4th field, is 0): none.
                        "<not counted>" if fields.get(3).map(|f| f.trim()) == Some("0") => Some(0),
                        n => n.parse().ok(),
                    }
                };
                let waits = WAITS
                    .iter()
                    .map(|w| count(&format!("syscalls:sys_enter_{w}")))
                    .sum::<Option<u64>>();
                Some(Count {
                    all: count("raw_syscalls:sys_enter")?,
                    waits,
                    secs: count("duration_time").map(|ns| ns as f64 / 1e9),
                })
            }
            _ => {
                // strace -c: "% time seconds usecs/call calls errors syscall".
                let calls = |l: &str| l.split_whitespace().nth(3)?.parse::<u64>().ok();
                let all = text
                    .lines()
                    .find(|l| l.trim_end().ends_with("total"))
                    .and_then(calls)?;
                let waits = text
                    .lines()
                    .filter(|l| {
                        l.split_whitespace()
                            .last()
                            .is_some_and(|w| WAITS.contains(&w))
                    })
                    .filter_map(calls)
                    .sum();
                Some(Count {
                    all,
                    waits: Some(waits),
                    secs: None,
                })
            }
        }
    }
}

/// Asks callgrind, in the server, to zero (`-z`) or dump (`-d`) its counts.
pub fn callgrind_control(op: &str, pid: u32) {
    let _ = Command::new("callgrind_control")
        .args([op, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Dumps callgrind's counts for the window and returns the instructions.
pub fn callgrind_total(pid: u32) -> Option<u64> {
    callgrind_control("-d", pid);
    let prefix = format!("monoloop-cg.{pid}");
    let mut total = None;
    for entry in std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .filter_map(Result::ok)
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) {
            continue;
        }
        // The dump is `monoloop-cg.PID.1`; the bare file is the start-up part.
        if name.len() > prefix.len() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            total = text
                .lines()
                .find_map(|l| l.strip_prefix("totals:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok());
        }
        let _ = std::fs::remove_file(entry.path());
    }
    total
}

/// The same server, under callgrind.
pub fn under_callgrind(spec: &ServerSpec) -> ServerSpec {
    let mut args = vec![
        "--tool=callgrind".to_string(),
        format!(
            "--callgrind-out-file={}/monoloop-cg.%p",
            std::env::temp_dir().display()
        ),
        spec.program.to_string_lossy().into_owned(),
    ];
    args.extend(spec.args.iter().cloned());
    ServerSpec {
        name: spec.name,
        program: PathBuf::from("valgrind"),
        args,
        ready: spec.ready.clone(),
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Reads a TcpExt counter from /proc/net/netstat (SYN retransmits).
pub fn tcp_ext(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        if pair.len() == 2 && pair[0].starts_with("TcpExt:") {
            let keys: Vec<&str> = pair[0].split_whitespace().collect();
            let vals: Vec<&str> = pair[1].split_whitespace().collect();
            if let Some(i) = keys.iter().position(|k| *k == name) {
                return vals.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
    }
    0
}
