//! The server's `stats:` line, read from its log: its figures, and a wait
//! for a line whose figures are what a test needs, which says in a failure
//! which figures it wanted and what the last line showed.

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use super::{stat, Server, PATIENCE};

/// Figures the line shows only once they are not zero (`src/stats.rs`).
const ONCE_NOT_ZERO: &[&str] = &[
    "denied",
    "per_ip_rejected",
    "proxy_errors",
    "checks",
    "log_dropped",
];

/// One `stats:` line (the final one too).
pub struct Stats(pub String);

impl Stats {
    /// The figure `key=N`; zero for a figure shown only once it is not.
    pub fn get(&self, key: &str) -> u64 {
        let shown = self
            .0
            .split_whitespace()
            .any(|w| w.strip_prefix(key).is_some_and(|r| r.starts_with('=')));
        if !shown && ONCE_NOT_ZERO.contains(&key) {
            return 0;
        }
        stat(&self.0, key)
    }

    /// True if every figure of `want` is as given.
    pub fn has(&self, want: &[(&str, u64)]) -> bool {
        want.iter().all(|&(key, n)| self.get(key) == n)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Server {
    /// Waits for a stats line whose figures include every `key=N` of
    /// `want`; returns it. Every line so far counts, the earliest first:
    /// name figures that only the moment awaited shows (`active=1` alone
    /// may be a line from before the second client came).
    #[track_caller]
    pub fn wait_stats(&mut self, want: &[(&str, u64)]) -> Stats {
        let what: Vec<String> = want.iter().map(|(k, n)| format!("{k}={n}")).collect();
        self.wait_stats_where(&what.join(" "), |s| s.has(want))
    }

    /// Waits for a stats line for which `ok` holds; `what` says which, for
    /// a failure.
    #[track_caller]
    pub fn wait_stats_where(&mut self, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let lines: Vec<Stats> = self
                .log()
                .into_iter()
                .filter(|l| l.contains("stats:"))
                .map(Stats)
                .collect();
            let last = lines.last().map(|s| s.0.clone());
            if let Some(found) = lines.into_iter().find(|s| ok(s)) {
                return found;
            }
            let exited = !self.running();
            if exited {
                // One more look, with every line of its log in.
                self.log_complete();
                if let Some(found) = self
                    .log()
                    .into_iter()
                    .filter(|l| l.contains("stats:"))
                    .map(Stats)
                    .find(|s| ok(s))
                {
                    return found;
                }
            }
            if exited || Instant::now() > deadline {
                let why = if exited {
                    "before the server exited".to_string()
                } else {
                    format!("within {PATIENCE:?}")
                };
                let log = self.log();
                let tail = &log[log.len().saturating_sub(20)..];
                panic!(
                    "no stats line with {what} {why}; the last: {}\nthe last {} lines of the log:\n  {}",
                    last.as_deref().unwrap_or("(none yet)"),
                    tail.len(),
                    tail.join("\n  ")
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}
