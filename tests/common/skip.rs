//! A test that cannot run here says so where a person reads it.
//!
//! libtest captures what `print!` and `eprint!` write in a test that passes,
//! so an `eprintln!("skipped ...")` in a test that returns early is never
//! seen, and the test reads `ok` like one that ran. [`skip`] writes to the
//! standard error stream itself, which libtest does not capture (it
//! redirects only the print macros), so the line shows in `cargo test`'s
//! output, among the results, and in a CI log:
//!
//! ```text
//!
//! SKIPPED promtool_accepts_the_text: promtool is not installed (apt-get install prometheus)
//! test promtool_accepts_the_text ... ok
//! ```
//!
//! [`have`] is for the tools some tests drive (haproxy, promtool,
//! redis-server). Where `MONOLOOP_TEST_TOOLS=required` is set, as `.ci/run`
//! sets it, a missing tool fails the test instead: CI installs them and
//! never skips.

use std::io::Write;
use std::process::{Command, Stdio};

/// Says, on one line of the real standard error, that the calling test is
/// skipped and why. The caller returns.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    // libtest runs each test on a thread named after it.
    // A newline first: libtest may have begun a line (`test NAME ... ` with
    // `--test-threads=1`, a row of dots with `-q`).
    let line = match thread.name() {
        Some(name) if name != "main" => format!("\nSKIPPED {name}: {why}\n"),
        _ => format!("\nSKIPPED: {why}\n"),
    };
    // One write: lines of tests running at once do not interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// True if `tool` can be run (`tool PROBE` starts). Otherwise the calling
/// test is skipped, with a line naming the tool and the Debian `package`
/// that has it, and the caller returns; or, under
/// `MONOLOOP_TEST_TOOLS=required`, the test fails.
pub fn have(tool: &str, probe: &str, package: &str) -> bool {
    let runs = Command::new(tool)
        .arg(probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if runs {
        return true;
    }
    let why = format!("{tool} is not installed (apt-get install {package})");
    if std::env::var("MONOLOOP_TEST_TOOLS").as_deref() == Ok("required") {
        panic!("{why}, and MONOLOOP_TEST_TOOLS=required");
    }
    skip(&why);
    false
}
