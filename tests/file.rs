//! `monoloop file --root DIR` over real sockets: byte-exact streaming,
//! confinement, bounded memory with a slow reader, fairness between
//! downloads, files that change under us, and start-up errors. Streaming
//! and shrinking files are tried on both paths: `sendfile` (the default on
//! plain TCP) and reading and writing (`--no-sendfile`, and TLS's path).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A scratch directory, removed when dropped.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("monoloop-it-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("root/sub")).unwrap();
        Tree(dir)
    }
    fn root(&self) -> PathBuf {
        self.0.join("root")
    }
    fn root_arg(&self) -> String {
        self.root().to_string_lossy().into_owned()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes `len` pattern bytes to `path`.
fn pattern_file(path: &Path, len: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        fill_pattern(&mut buf[..n], off);
        f.write_all(&buf[..n]).unwrap();
        off += n as u64;
    }
}

/// Requests `name` and returns everything until the server closes.
fn fetch(server: &Server, name: &[u8]) -> Vec<u8> {
    let mut s = connect(server.addr);
    s.write_all(name).unwrap();
    s.write_all(b"\n").unwrap();
    let (got, reset) = read_to_eof(&mut s);
    assert!(
        !reset,
        "reset while fetching {:?}",
        String::from_utf8_lossy(name)
    );
    got
}

/// The two ways a file reaches a plain TCP client.
const PATHS: [&[&str]; 2] = [&[], &["--no-sendfile"]];

#[test]
fn files_stream_byte_exact() {
    let t = Tree::new("exact");
    pattern_file(&t.root().join("data.bin"), 3_000_000);
    fs::write(t.root().join("sub/notes.txt"), b"notes\n").unwrap();
    symlink("sub/notes.txt", t.root().join("shortcut")).unwrap();
    fs::write(t.root().join("empty"), b"").unwrap();
    for path in PATHS {
        let root = t.root_arg();
        let server = Server::start(&[&["file", "--root", &root], path].concat());
        let got = fetch(&server, b"data.bin");
        assert_eq!(got.len(), 3_000_000, "{path:?}");
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
        assert_eq!(fetch(&server, b"sub/notes.txt"), b"notes\n");
        assert_eq!(
            fetch(&server, b"shortcut\r"),
            b"notes\n",
            "CRLF and inner symlinks"
        );
        assert_eq!(fetch(&server, b"empty"), b"");
    }
}

#[test]
fn a_request_without_newline_is_answered_at_half_close() {
    let t = Tree::new("halfclose");
    fs::write(t.root().join("a.txt"), b"contents").unwrap();
    let server = Server::start(&["file", "--root", &t.root_arg()]);
    let mut s = connect(server.addr);
    s.write_all(b"a.txt").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (got, _) = read_to_eof(&mut s);
    assert_eq!(got, b"contents");
}

#[test]
fn every_escape_and_odd_file_gets_not_found() {
    let t = Tree::new("escape");
    fs::write(t.0.join("secret.txt"), b"secret").unwrap();
    fs::write(t.root().join("ok.txt"), b"ok").unwrap();
    symlink("../secret.txt", t.root().join("link-out")).unwrap();
    symlink(t.0.join("secret.txt"), t.root().join("link-abs")).unwrap();
    symlink("..", t.root().join("sub/up")).unwrap();
    let fifo = std::ffi::CString::new(t.root().join("fifo").to_string_lossy().as_bytes()).unwrap();
    // SAFETY: mkfifo on a path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let server = Server::start(&["file", "--root", &t.root_arg()]);
    let secret = t.0.join("secret.txt");
    let absolute = secret.to_string_lossy().into_owned();
    for request in [
        &b"../secret.txt"[..],
        b"sub/../../secret.txt",
        absolute.as_bytes(),
        b"/etc/passwd",
        b"link-out",
        b"link-abs",
        b"sub/up/../secret.txt",
        b"sub/up/sub/up/ok.txt/../../secret.txt",
        b"fifo",
        b"sub",
        b".",
        b"",
        b"ok.txt\0.png",
        b"missing.txt",
    ] {
        let started = Instant::now();
        assert_eq!(
            fetch(&server, request),
            b"ERROR: File not found\n",
            "request {:?}",
            String::from_utf8_lossy(request)
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a refusal blocked"
        );
    }
    // Symlinks that stay inside the root still work.
    assert_eq!(fetch(&server, b"sub/up/ok.txt"), b"ok");
}

#[test]
fn a_gigabyte_streams_to_a_slow_reader_in_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    const LIMIT: u64 = 1 << 20;
    let t = Tree::new("sparse");
    let path = t.root().join("sparse.bin");
    let markers = [0u64, SIZE / 2 + 12_345, SIZE - 16];
    {
        let mut f = fs::File::create(&path).unwrap();
        f.set_len(SIZE).unwrap();
        for &m in &markers {
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(m)).unwrap();
            f.write_all(b"MARKER--MARKER--").unwrap();
        }
    }
    let server = Server::start(&[
        "file",
        "--root",
        &t.root_arg(),
        "--write-limit",
        &LIMIT.to_string(),
    ]);
    assert_eq!(
        fetch(&server, b"sub/../../nope"),
        b"ERROR: File not found\n"
    ); // warm up
    let before = server.rss_kib();
    let mut s = connect(server.addr);
    s.write_all(b"sparse.bin\n").unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut expected = vec![0u8; 1 << 16];
    let mut off = 0u64;
    let mut worst_growth = 0;
    while off < SIZE {
        // Stall twice: at the start, and half way.
        if off == 0 || (SIZE / 2..SIZE / 2 + (1 << 16)).contains(&off) {
            thread::sleep(Duration::from_millis(700));
            worst_growth = worst_growth.max(server.rss_kib().saturating_sub(before) * 1024);
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "EOF at {off}");
        // The expected bytes: zeros, with the markers patched in.
        expected[..n].fill(0);
        for &m in &markers {
            for k in 0..16u64 {
                if (off..off + n as u64).contains(&(m + k)) {
                    expected[(m + k - off) as usize] = b"MARKER--MARKER--"[k as usize];
                }
            }
        }
        assert!(buf[..n] == expected[..n], "bytes differ near offset {off}");
        off += n as u64;
    }
    expect_eof(&mut s);
    assert!(
        worst_growth <= 2 * LIMIT,
        "server RSS grew {worst_growth} bytes with a write limit of {LIMIT}"
    );
}

#[test]
fn many_downloads_share_the_loop_and_small_requests_are_not_starved() {
    let t = Tree::new("many");
    pattern_file(&t.root().join("big.bin"), 16_000_000);
    fs::write(t.root().join("small.txt"), b"small").unwrap();
    let server = Server::start(&["file", "--root", &t.root_arg(), "--log-level", "debug"]);
    let addr = server.addr;
    let downloads: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut s = connect(addr);
                s.write_all(b"big.bin\n").unwrap();
                read_pattern(&mut s, 16_000_000)
            })
        })
        .collect();
    // All eight are under way before the small request comes.
    eventually("eight downloads under way", || {
        server.log_lines("sending \"big.bin\"").len() == 8
    });
    let started = Instant::now();
    assert_eq!(fetch(&server, b"small.txt"), b"small");
    let small = started.elapsed();
    for d in downloads {
        assert_eq!(d.join().unwrap(), 16_000_000);
    }
    assert!(
        small < Duration::from_secs(2),
        "small request took {small:?}"
    );
}

#[test]
fn a_file_that_shrinks_mid_transfer_ends_with_a_reset() {
    for path in PATHS {
        shrinks_mid_transfer(path);
    }
}

fn shrinks_mid_transfer(extra: &[&str]) {
    let t = Tree::new("shrink");
    let path = t.root().join("shrinking.bin");
    pattern_file(&path, 64 << 20);
    let root = t.root_arg();
    let mut server = Server::start(&[&["file", "--root", &root, "--access-log"], extra].concat());
    let mut s = connect(server.addr);
    s.write_all(b"shrinking.bin\n").unwrap();
    let head = read_n(&mut s, 1 << 20);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let (rest, reset) = read_to_eof(&mut s);
    // No clean end: the client can tell the transfer is incomplete.
    assert!(reset, "a short transfer ended with a FIN");
    let total = head.len() + rest.len();
    assert!(total <= 8 << 20, "more than the file holds now: {total}");
    assert!(head
        .iter()
        .chain(rest.iter())
        .enumerate()
        .all(|(i, &b)| b == pattern(i as u64)));
    server.wait_for_log("shrank while being sent");
    let line = server.wait_for_log("end=truncated");
    assert!(
        line.contains(r#"file="shrinking.bin" size=67108864 sent=8388608"#),
        "{line}"
    );
    // And the server is fine: the file as it is now comes whole.
    assert_eq!(fetch(&server, b"shrinking.bin").len(), 8 << 20);
}

#[test]
fn a_bad_root_exits_2() {
    let t = Tree::new("badroot");
    fs::write(t.0.join("plain-file"), b"x").unwrap();
    for args in [
        vec!["file".to_string()],
        vec![
            "file".into(),
            "--root".into(),
            "/nonexistent/monoloop".into(),
        ],
        vec![
            "file".into(),
            "--root".into(),
            t.0.join("plain-file").to_string_lossy().into_owned(),
        ],
    ] {
        let out = binary().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--root"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_root_the_server_cannot_search_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let t = Tree::new("nosearch");
    // The tree's own directory is open to all, whatever the umask: only the
    // root below it is closed.
    fs::set_permissions(&t.0, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(t.root(), fs::Permissions::from_mode(0o000)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        // Root may search anything: run as nobody, like a server started
        // as another user than the one who owns the files. Nobody may not
        // reach the binary where the checkout is (under /root, say): it
        // runs a link or a copy in the tree.
        let Some(exe) = runnable_by_nobody(&t) else {
            return;
        };
        let mut cmd = std::process::Command::new(exe);
        cmd.uid(NOBODY).gid(NOBODY);
        cmd
    } else {
        binary()
    };
    cmd.args(["file", "--root", &t.root_arg(), "--listen", "127.0.0.1:0"]);
    let out = output_within(cmd);
    fs::set_permissions(t.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot search it, so no file could be served"),
        "{stderr}"
    );
}

/// The user and group `nobody` (65534 on Linux).
const NOBODY: u32 = 65534;

/// The binary under test, at a path in `t` that [`NOBODY`] may run: a hard
/// link where the tree is on the checkout's filesystem, else a copy. `None`,
/// with the test skipped in one line, where nobody cannot run even that
/// (a temporary directory nobody may not enter).
fn runnable_by_nobody(t: &Tree) -> Option<PathBuf> {
    use std::os::unix::process::CommandExt;
    let exe = t.0.join("monoloop");
    let original = env!("CARGO_BIN_EXE_monoloop");
    if fs::hard_link(original, &exe).is_err() {
        fs::copy(original, &exe).unwrap();
    }
    let mut attempts = 0;
    loop {
        let mut probe = std::process::Command::new(&exe);
        probe.arg("--help").uid(NOBODY).gid(NOBODY);
        match try_output_within(probe) {
            Ok(out) if out.status.success() => return Some(exe),
            Ok(out) => panic!("{} --help as nobody: {out:?}", exe.display()),
            // A copy's descriptor still open in a child another test forked
            // this instant (it closes at that child's exec): try again.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 50 => {
                attempts += 1;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                skip::skip(&format!(
                    "user {NOBODY} cannot run {}: {e} (TMPDIR must be open to all)",
                    exe.display()
                ));
                return None;
            }
        }
    }
}

/// Issue 21: a download under way when SIGTERM comes goes on streaming
/// through the drain, and one that finishes in time ends as any
/// complete one does: every byte, then a clean end, and the server exits
/// 0. (Before, the drain ended it at once with a FIN, a few MiB in.)
#[test]
fn a_download_under_way_at_sigterm_finishes_within_the_drain() {
    const SIZE: u64 = 50 << 20;
    let t = Tree::new("drain-finish");
    pattern_file(&t.root().join("big.bin"), SIZE);
    for path in PATHS {
        let root = t.root_arg();
        let args = [&["file", "--root", &root, "--drain-timeout", "20"], path].concat();
        let mut server = Server::start(&args);
        let mut s = connect(server.addr);
        s.write_all(b"big.bin\n").unwrap();
        let head = read_pattern(&mut s, 1 << 20);
        server.signal(libc::SIGTERM);
        server.wait_for_log("SIGTERM");
        // The rest comes after the signal, and then the end.
        let mut rest = vec![0u8; (SIZE - head) as usize];
        s.read_exact(&mut rest)
            .unwrap_or_else(|e| panic!("{path:?}: the download stopped: {e}"));
        assert!(
            rest.iter()
                .enumerate()
                .all(|(i, &b)| b == pattern(head + i as u64)),
            "{path:?}"
        );
        let (extra, reset) = read_to_eof(&mut s);
        assert!(extra.is_empty() && !reset, "{path:?}: not a clean end");
        let status = server.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{path:?}: exit status {status}");
    }
}

/// Issue 21: a download the drain timeout cuts short ends with a reset,
/// never with the FIN of a complete one, and a warning names the file,
/// the bytes sent and its size (without the access log too).
#[test]
fn a_download_the_drain_timeout_cuts_short_ends_with_a_reset_and_a_warning() {
    const SIZE: u64 = 50 << 20;
    let t = Tree::new("drain-cut");
    pattern_file(&t.root().join("big.bin"), SIZE);
    for path in PATHS {
        let root = t.root_arg();
        let args = [&["file", "--root", &root, "--drain-timeout", "1"], path].concat();
        let mut server = Server::start(&args);
        let mut s = connect(server.addr);
        s.write_all(b"big.bin\n").unwrap();
        let head = read_pattern(&mut s, 1 << 20);
        let signalled = Instant::now();
        server.signal(libc::SIGTERM);
        // A slow reader: nothing read for longer than the drain.
        thread::sleep(Duration::from_millis(1500));
        let (rest, reset) = read_to_eof(&mut s);
        assert!(reset, "{path:?}: a cut transfer ended with a FIN");
        let total = head + rest.len() as u64;
        assert!(total < SIZE, "{path:?}: all {total} bytes came");
        assert!(
            rest.iter()
                .enumerate()
                .all(|(i, &b)| b == pattern(head + i as u64)),
            "{path:?}"
        );
        let warning = server.wait_for_log_where("cut short", |l| l.contains("WARN"));
        assert!(
            warning.contains("\"big.bin\"") && warning.contains(&format!("of {SIZE} bytes sent")),
            "{path:?}: {warning}"
        );
        let status = server.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{path:?}: exit status {status}");
        assert!(signalled.elapsed() < Duration::from_secs(8));
    }
}
