//! The log: one line per record on standard error, and the rules that keep
//! it from hurting the server or from being written by clients.
//!
//! This module owns three things:
//!
//! 1. **Writing never fails the process.** A log line that cannot be written
//!    (the reading end of a pipe closed: a `| head`, a log shipper that
//!    restarts) is dropped and counted ([`dropped`]), never a panic. Rust's
//!    `eprintln!` panics on such an error, and with `panic = "abort"` that
//!    killed the server with SIGABRT, which is why this crate has its own
//!    logger rather than `simple_logger` (docs/architecture.md,
//!    "Dependencies"). SIGPIPE cannot kill the process either: the Rust
//!    runtime sets it to "ignore" before `main`, so a write to a closed
//!    pipe or socket returns `EPIPE` instead, and [`sigpipe_ignored`] lets a
//!    test check that this stays true.
//! 2. **Other crates' records only at trace.** rustls logs what peers do
//!    wrong (an IP address as SNI, a record that does not decrypt) at warn,
//!    and mio traces its own tokens; a client must not be able to write the
//!    server's log, so records whose target is not this crate are shown
//!    only at `--log-level trace`.
//! 3. **Peer-triggered lines are throttled.** What one client can cause,
//!    many can cause at once. A [`Throttle`] lets through one line per kind
//!    per interval and says how many it held back.
//!
//! The line format is `2026-11-26T00:27:30.446Z INFO  [monoloop] message`,
//! in UTC: a local offset cannot be read reliably once a process may have
//! threads, and logs compare better in UTC.
//!
//! Under systemd, when standard error is the journal's stream
//! (`JOURNAL_STREAM` names its device and inode, systemd.exec(5)), each
//! line starts instead with its syslog priority as sd-daemon(3) prefixes
//! it, `<4>WARN  [monoloop] message`, and carries no timestamp: the
//! journal stamps every line itself, and files it under that priority, so
//! that `journalctl -p warning` finds monoloop's warnings
//! ([`journal`]).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

thread_local! {
    /// The worker this thread runs, named in every line it logs; `None` in
    /// a server with one worker, whose lines stay as they were.
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Names the worker this thread runs: its log lines say `worker N: `.
pub fn set_worker(id: usize) {
    WORKER.with(|w| w.set(Some(id)));
}

/// Logs `args` at info without the `worker N: ` before it: for lines that
/// name their worker in a field of their own (the access log's,
/// `access_log.rs`), so that they have one shape with one worker or many.
pub fn info_unmarked(args: std::fmt::Arguments<'_>) {
    for_the_server(|| log::info!("{args}"));
}

/// Runs `f`, whose lines speak for the whole server rather than this
/// worker (a reload, which worker 0 does for all), without the
/// `worker N: ` before them.
pub fn for_the_server<R>(f: impl FnOnce() -> R) -> R {
    let worker = WORKER.with(|w| w.take());
    let r = f();
    WORKER.with(|w| w.set(worker));
    r
}

/// Lines that could not be written since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The number of log lines dropped because standard error would not take
/// them (a closed pipe, a full disk).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The logger: a level, this crate's name to tell its records apart, and
/// whether standard error is the journal.
struct Logger {
    level: LevelFilter,
    journal: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let own = metadata.target().starts_with(env!("CARGO_CRATE_NAME"));
        let level = if own { self.level } else { foreign(self.level) };
        metadata.level() <= level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = match record.target() {
            t if t.starts_with(env!("CARGO_CRATE_NAME")) => env!("CARGO_CRATE_NAME"),
            t => t,
        };
        // The journal stamps lines itself, and reads their priority from
        // the prefix.
        let head = if self.journal {
            format!("<{}>", priority(record.level()))
        } else {
            format!("{} ", utc_timestamp(SystemTime::now()))
        };
        let line = match WORKER.with(|w| w.get()) {
            None => format!("{head}{:<5} [{target}] {}\n", record.level(), record.args()),
            Some(id) => format!(
                "{head}{:<5} [{target}] worker {id}: {}\n",
                record.level(),
                record.args()
            ),
        };
        // One write per line, so that lines from the client's two threads
        // or a shell's other output never interleave inside a line.
        if std::io::stderr().lock().write_all(line.as_bytes()).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

/// The level at which other crates' records show: only when everything
/// does.
fn foreign(level: LevelFilter) -> LevelFilter {
    if level >= LevelFilter::Trace {
        LevelFilter::Trace
    } else {
        LevelFilter::Off
    }
}

/// Installs the logger at `level`. Call once, first thing in `main`.
pub fn init(level: LevelFilter) {
    // One small allocation that lives as long as the process, as `log`
    // requires of a logger.
    let logger: &'static Logger = Box::leak(Box::new(Logger {
        level,
        journal: journal(),
    }));
    // Fails only if a logger is already set, which `main` never does.
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Writes `text` to standard error for a message outside the log (a usage
/// error, the final error line), ignoring a closed pipe: nothing is left to
/// tell then, and panicking would only change the exit status.
pub fn to_stderr(text: &str) {
    if std::io::stderr().lock().write_all(text.as_bytes()).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Like [`to_stderr`], for the error that ends the process: under the
/// journal each of its lines is filed at error priority (`<3>`).
pub fn error_to_stderr(text: &str) {
    if !journal() {
        return to_stderr(text);
    }
    let lines: String = text.lines().map(|l| format!("<3>{l}\n")).collect();
    to_stderr(&lines);
}

/// True if standard error is the systemd journal's stream: `JOURNAL_STREAM`
/// is set and names standard error's device and inode (a variable
/// inherited by a process whose standard error went elsewhere does not
/// count, as systemd.exec(5) asks). Read once.
pub fn journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
            return false;
        };
        // SAFETY: fstat writes into the struct we own; a closed standard
        // error only makes it fail.
        let stat = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstat(libc::STDERR_FILENO, &mut st) == 0).then_some(st)
        };
        stat.is_some_and(|st| names(&stream, st.st_dev, st.st_ino))
    })
}

/// True if `stream` (`JOURNAL_STREAM`'s `DEVICE:INODE`, in decimal) names
/// the file `dev`, `ino`.
fn names(stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = stream.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// A level's syslog priority, as the journal reads it from a `<N>` prefix
/// (sd-daemon(3): `SD_ERR` 3, `SD_WARNING` 4, `SD_INFO` 6, `SD_DEBUG` 7;
/// trace is debug too).
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Writes `text` to standard output (the usage, the version), ignoring a
/// closed pipe, so that `monoloop --help | head -1` exits 0.
pub fn to_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// True if SIGPIPE is ignored, so that writing to a closed pipe or socket
/// is an `EPIPE` error rather than the end of the process.
pub fn sigpipe_ignored() -> bool {
    // SAFETY: sigaction with a null new action only reads the current one
    // into `old`, which we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// `2026-11-26T00:27:30.446Z` for `t`.
pub fn utc_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`, from his paper "chrono-Compatible
/// Low-Level Date Algorithms").
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One kind of peer-triggered log line, let through at most once per
/// interval. Time is passed in.
#[derive(Debug, Default)]
pub struct Throttle {
    /// When the last line was let through.
    last: Option<Instant>,
    /// Lines held back since.
    held: u64,
}

/// A [`Throttle`] for the whole process: for a condition every worker can
/// meet at once (the server full, a failed handshake), said once per
/// interval for the server, not once per worker. A lock taken only when
/// the condition occurs, never on the way of a served byte.
#[derive(Debug)]
pub struct SharedThrottle(std::sync::Mutex<Throttle>);

impl Default for SharedThrottle {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedThrottle {
    pub const fn new() -> Self {
        Self(std::sync::Mutex::new(Throttle {
            last: None,
            held: 0,
        }))
    }

    /// As [`Throttle::check`], for every worker at once.
    pub fn check(&self, now: Instant, every: Duration) -> Verdict {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.check(now, every)
    }
}

/// What a [`Throttle`] says about one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `held` lines of this kind were held back before it.
    Log { held: u64 },
    /// Too soon after the last one: counted, not logged.
    Hold,
}

impl Throttle {
    /// Asks whether a line may be logged `now`, at most one per `every`.
    pub fn check(&mut self, now: Instant, every: Duration) -> Verdict {
        match self.last {
            Some(last) if now < last + every => {
                self.held += 1;
                Verdict::Hold
            }
            _ => {
                self.last = Some(now);
                Verdict::Log {
                    held: std::mem::take(&mut self.held),
                }
            }
        }
    }
}

/// `" (N more like it since the last)"` when lines were held back, else
/// nothing: the tail of a throttled line.
pub fn held_note(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" ({held} more like it were not logged)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_998_450_446);
        assert_eq!(utc_timestamp(t), "2026-11-30T00:27:30.446Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_timestamp(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn other_crates_show_only_at_trace() {
        assert_eq!(foreign(LevelFilter::Warn), LevelFilter::Off);
        assert_eq!(foreign(LevelFilter::Debug), LevelFilter::Off);
        assert_eq!(foreign(LevelFilter::Trace), LevelFilter::Trace);
        let logger = Logger {
            level: LevelFilter::Debug,
            journal: false,
        };
        let rustls = Metadata::builder()
            .level(log::Level::Warn)
            .target("rustls::server::hs")
            .build();
        let ours = Metadata::builder()
            .level(log::Level::Debug)
            .target("monoloop::event_loop")
            .build();
        assert!(!logger.enabled(&rustls));
        assert!(logger.enabled(&ours));
    }

    #[test]
    fn a_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut t = Throttle::default();
        assert_eq!(t.check(t0, every), Verdict::Log { held: 0 });
        for k in 1..=199 {
            assert_eq!(t.check(t0 + Duration::from_millis(k), every), Verdict::Hold);
        }
        assert_eq!(
            t.check(t0 + every, every),
            Verdict::Log { held: 199 },
            "the next line says how many were held"
        );
        assert_eq!(held_note(199), " (199 more like it were not logged)");
        assert_eq!(held_note(0), "");
    }

    #[test]
    fn the_journal_is_standard_error_only_if_its_device_and_inode_say_so() {
        assert!(names("64769:1234", 64769, 1234));
        assert!(names("64769:1234\n", 64769, 1234));
        assert!(!names("64769:1235", 64769, 1234), "another file");
        assert!(!names("64769", 64769, 1234));
        assert!(!names("", 64769, 1234));
        assert!(!names("x:1234", 64769, 1234));
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Warn), 4);
        assert_eq!(priority(log::Level::Info), 6);
        assert_eq!(priority(log::Level::Debug), 7);
        assert_eq!(priority(log::Level::Trace), 7);
    }

    #[test]
    fn the_runtime_ignores_sigpipe() {
        assert!(sigpipe_ignored());
    }
}
