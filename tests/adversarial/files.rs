//! The path-traversal corpus against `monoloop file` (issue 24): `..` in
//! every form, absolute paths, symlinks out of the root (relative and
//! absolute, to a secret, to `/dev/zero`, in chains and loops), special
//! files inside the root (a FIFO, a socket, a device, a directory),
//! overlong names (past NAME_MAX, past PATH_MAX, past `--max-line`), NUL
//! bytes, non-UTF-8 and control bytes in names, `.` and the empty name.
//!
//! Each request gets the one documented refusal (`ERROR: File not found`,
//! or `ERROR: line too long` past the line limit) within a bound, and no
//! answer carries a byte of the secret beside the root; the access log
//! names each refusal's reason (`refused=WHY`) with the name quoted, and
//! the log holds nothing else per request. Meanwhile a bystander
//! downloads a real file again and again and gets it byte for byte,
//! within a bound. (tests/file.rs has the first, smaller corpus, without a
//! bystander or the log's account.)

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::bystander::Bystander;
use crate::common::*;

/// The one refusal, whatever the reason.
const NOT_FOUND: &[u8] = b"ERROR: File not found\n";
/// The answer to a request line longer than `--max-line`.
const TOO_LONG: &[u8] = b"ERROR: line too long\n";
/// What the secret beside the root holds: no answer may carry it.
const SECRET: &[u8] = b"SECRET-beside-the-root-5e1f";
/// The most an answer may be before the test stops reading: a refusal is
/// 22 bytes, and `/dev/zero` served would never end.
const CAP: usize = 1 << 16;
/// How long a refusal may take, and the bystander's slowest download, on
/// a loaded two-core machine: far more than either takes, far less than a
/// blocked loop would make them.
const BOUND: Duration = Duration::from_secs(2);

/// A scratch tree, removed when dropped: `secret.txt` beside `root/`.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("monoloop-adv-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("root/sub")).unwrap();
        fs::write(dir.join("secret.txt"), SECRET).unwrap();
        Tree(dir)
    }
    fn root(&self) -> PathBuf {
        self.0.join("root")
    }
    fn abs(&self, rel: &str) -> String {
        self.0.join(rel).to_string_lossy().into_owned()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What one request got: the bytes, how long they took, and the client's
/// own address (which names its access line).
struct Answer {
    bytes: Vec<u8>,
    took: Duration,
    me: SocketAddr,
}

/// Sends `request` and a LF, then FIN, and reads the answer to its end:
/// at most [`CAP`] bytes (more fails the test at once), each read within
/// 5 s.
fn ask(addr: SocketAddr, request: &[u8]) -> Answer {
    let started = Instant::now();
    let mut s = connect(addr);
    // A loop blocked (on a FIFO's open, say) fails the test in seconds.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = s.local_addr().unwrap();
    let mut line = request.to_vec();
    line.push(b'\n');
    // A request past the line limit is refused before it is all read: the
    // rest may meet a closed socket.
    let _ = s.write_all(&line);
    let _ = s.shutdown(Shutdown::Write);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                assert!(
                    bytes.len() <= CAP,
                    "request {}: more than {CAP} bytes came",
                    client::shown(request)
                );
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "request {}: {e} after {} bytes",
                client::shown(request),
                bytes.len()
            ),
        }
    }
    Answer {
        bytes,
        took: started.elapsed(),
        me,
    }
}

/// A bystander that downloads `name` from `addr` every 20 ms and checks
/// every byte against `expected`.
fn downloader(addr: SocketAddr, name: &'static str, expected: Arc<Vec<u8>>) -> Bystander {
    Bystander::start(Duration::from_millis(20), move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{name}\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut got = Vec::with_capacity(expected.len());
        s.read_to_end(&mut got).map_err(|e| format!("read: {e}"))?;
        if got != *expected {
            return Err(format!(
                "{} bytes of {}, or others",
                got.len(),
                expected.len()
            ));
        }
        Ok(())
    })
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Makes a character device like `/dev/null` at `path`; false where this
/// process may not (no CAP_MKNOD, as in most containers).
fn mknod_null(path: &Path) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mknod on a NUL-terminated path we own.
    unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) == 0 }
}

/// The corpus: each request, with the reason the access log must give
/// (`Refusal::word`), or `None` for a line too long (refused before it is
/// a request: no `file=` field).
fn corpus(t: &Tree, with_device: bool) -> Vec<(Vec<u8>, Option<&'static str>)> {
    let mut c: Vec<(Vec<u8>, Option<&'static str>)> = Vec::new();
    let mut add = |r: &[u8], why: Option<&'static str>| c.push((r.to_vec(), why));
    // `..` in every form.
    for r in [
        &b".."[..],
        b"../",
        b"../secret.txt",
        b"../../../../../../../../etc/passwd",
        b"sub/../../secret.txt",
        b"./../secret.txt",
        b"sub/./../../secret.txt",
        b"sub//..//..//secret.txt",
        b"..//secret.txt",
        b"../root/ok.txt",
        b"sub/..",
        b"a/b/../../../secret.txt",
        b"ok.txt/../../secret.txt",
    ] {
        add(r, Some("dot_dot"));
    }
    add(&b"../".repeat(1000), Some("dot_dot"));
    // Look-alikes of `..` that are other names: not found, never decoded.
    for r in [
        &b"..\\secret.txt"[..],
        b"..\\..\\secret.txt",
        b"%2e%2e/secret.txt",
        b"%2e%2e%2fsecret.txt",
        b".../secret.txt",
        b"....//secret.txt",
        b"..;/secret.txt",
        b" ../secret.txt",
        "\u{ff0e}\u{ff0e}/secret.txt".as_bytes(),
        b"\xc0\xae\xc0\xae/secret.txt",
        b"\xff\xfe.txt",
        b"\x1b[2J\x1b]0;pwned\x07",
        "\u{202e}txt.ko".as_bytes(),
        b"o\rk.txt",
        b"missing.txt",
    ] {
        add(r, Some("not_found"));
    }
    // Absolute paths.
    let secret = t.abs("secret.txt");
    let inside = t.abs("root/ok.txt");
    for r in [
        &b"/etc/passwd"[..],
        secret.as_bytes(),
        inside.as_bytes(),
        b"//etc/passwd",
        b"/",
        b"/dev/zero",
        b"/proc/self/environ",
        b"/proc/self/root/etc/passwd",
    ] {
        add(r, Some("absolute"));
    }
    // Symlinks out of the root, relative and absolute; an absolute one is
    // refused even when it points inside (docs/protocols.md).
    for r in [
        &b"link-out"[..],
        b"link-abs",
        b"link-abs-in",
        b"zero",
        b"zero-rel",
        b"chain",
        b"dir-out/secret.txt",
        b"sub/up/../secret.txt",
        b"sub/up/dir-out/secret.txt",
        b"proc-root/etc/passwd",
    ] {
        let why = if r == b"sub/up/../secret.txt" {
            "dot_dot"
        } else {
            "outside_root"
        };
        add(r, Some(why));
    }
    add(b"loop", Some("symlinks"));
    // Not regular files, inside the root: none may block the loop.
    // A socket cannot be opened at all (ENXIO).
    add(b"sock", Some("open_failed"));
    for r in [
        &b"fifo"[..],
        b"fifo-alone",
        b"sub",
        b"sub/",
        b".",
        b"./",
        b"sub/.",
    ] {
        add(r, Some("not_a_file"));
    }
    if with_device {
        add(b"null-dev", Some("not_a_file"));
    }
    add(b"", Some("empty"));
    // NUL bytes.
    for r in [&b"ok.txt\0"[..], b"\0", b"ok.txt\0../../secret.txt"] {
        add(r, Some("nul"));
    }
    // Overlong: a component past NAME_MAX, a path past PATH_MAX (both under
    // the line limit: the open refuses them), then lines past the limit.
    add(&b"a".repeat(300), Some("open_failed"));
    add(&b"a".repeat(4200), Some("open_failed"));
    add(&b"x/".repeat(2100), Some("open_failed"));
    add(&b"a".repeat(9000), None);
    add(&b"../".repeat(3000), None);
    c
}

#[test]
fn the_traversal_corpus_is_refused_while_a_download_stays_exact() {
    let t = Tree::new("traversal");
    let root = t.root();
    let big: Vec<u8> = (0..1_000_000u64).map(pattern).collect();
    fs::write(root.join("big.bin"), &big).unwrap();
    fs::write(root.join("ok.txt"), b"ok\n").unwrap();
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1\n",
    )
    .unwrap();
    symlink("../secret.txt", root.join("link-out")).unwrap();
    symlink(t.abs("secret.txt"), root.join("link-abs")).unwrap();
    symlink(t.abs("root/ok.txt"), root.join("link-abs-in")).unwrap();
    symlink("/dev/zero", root.join("zero")).unwrap();
    symlink(
        format!("{}dev/zero", "../".repeat(40)),
        root.join("zero-rel"),
    )
    .unwrap();
    symlink("chain2", root.join("chain")).unwrap();
    symlink("sub/../../secret.txt", root.join("chain2")).unwrap();
    symlink("..", root.join("dir-out")).unwrap();
    symlink("..", root.join("sub/up")).unwrap();
    symlink("/proc/self/root", root.join("proc-root")).unwrap();
    symlink("loop", root.join("loop")).unwrap();
    mkfifo(&root.join("fifo"));
    // And one nobody has open: a blocking open of it would never return.
    mkfifo(&root.join("fifo-alone"));
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let with_device = mknod_null(&root.join("null-dev"));
    if !with_device {
        skip::skip("the device inside the root: this process may not mknod (no CAP_MKNOD)");
    }
    // The FIFO has a writer, and the secret waiting in it: a server that
    // opened and read it would send the secret.
    let mut fifo = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("fifo"))
        .unwrap();
    fifo.write_all(SECRET).unwrap();

    let root_arg = root.to_string_lossy().into_owned();
    let mut server = Server::start(&[
        "file",
        "--root",
        &root_arg,
        "--access-log",
        "--stats-interval",
        "0.2",
    ]);
    let addr = server.addr;

    let bystander = downloader(addr, "big.bin", Arc::new(big));
    let corpus = corpus(&t, with_device);
    // Rounds of the whole corpus, three at least and for 1.5 s at least,
    // so that the attack outlasts many of the bystander's downloads however
    // the machine is loaded.
    let (started, mut asked) = (Instant::now(), 0);
    for round in 0..100 {
        if round >= 3 && started.elapsed() > Duration::from_millis(1500) {
            break;
        }
        for (request, why) in &corpus {
            let shown = client::shown(request);
            // The access line is looked for among the lines logged after
            // the request was sent: its port may have been the
            // bystander's for an earlier download.
            let logged = server.log().len();
            let a = ask(addr, request);
            asked += 1;
            let expected = if why.is_some() { NOT_FOUND } else { TOO_LONG };
            assert_eq!(
                a.bytes,
                expected,
                "round {round}, request {shown}: got {}",
                client::shown(&a.bytes)
            );
            assert!(
                a.took < BOUND,
                "round {round}, request {shown}: took {:?}",
                a.took
            );
            if round == 0 {
                let peer = format!(" peer={} ", a.me);
                let line = server.wait_for_log_after(logged, &peer);
                match why {
                    Some(why) => assert!(
                        line.contains(" end=closed file=\"")
                            && line.ends_with(&format!("\" refused={why}")),
                        "request {shown}: {line}"
                    ),
                    None => assert!(
                        line.contains(" end=closed") && !line.contains("file="),
                        "request {shown}: {line}"
                    ),
                }
            }
        }
    }
    // The secret is still in the FIFO, all of it: nobody read it.
    let mut waiting = vec![0u8; SECRET.len()];
    fifo.read_exact(&mut waiting).unwrap();
    assert_eq!(waiting, SECRET);

    let seen = bystander.finish(BOUND);
    assert!(seen.answered >= 5, "too few downloads to judge: {seen:?}");

    // Files inside the root are still served, symlinks that stay in too,
    // and names that are not UTF-8.
    assert_eq!(ask(addr, b"ok.txt").bytes, b"ok\n");
    assert_eq!(ask(addr, b"ok.txt\r").bytes, b"ok\n");
    assert_eq!(ask(addr, b"sub/up/ok.txt").bytes, b"ok\n");
    assert_eq!(ask(addr, b"caf\xe9.txt").bytes, b"latin-1\n");

    // The log: one access line per request and nothing else but stats, no
    // warning, and nothing a client sent written raw (no control
    // character, no bidi override).
    let access = asked + 4 + seen.answered as usize;
    eventually("an access line for every connection", || {
        server.log_lines("access conn=").len() >= access
    });
    let log = server.log();
    let start = ["listening on", "): file server, up to "];
    let extra: Vec<&String> = log
        .iter()
        .filter(|l| !l.contains("access conn=") && !l.contains("stats:"))
        .filter(|l| !start.iter().any(|s| l.contains(s)))
        .collect();
    assert!(
        extra.is_empty(),
        "log lines beyond the access lines: {extra:#?}"
    );
    assert_eq!(server.log_lines("access conn=").len(), access);
    for l in &log {
        assert!(
            !l.chars()
                .any(|c| c.is_control() || ('\u{2028}'..='\u{202e}').contains(&c)),
            "a raw control or bidi character in the log: {l:?}"
        );
        assert!(!l.contains("SECRET"), "{l}");
    }
}

/// Many clients at once, each walking the corpus: the loop answers every
/// one, and the bystander's downloads stay within the bound.
#[test]
fn the_corpus_from_eight_clients_at_once_leaves_downloads_served() {
    let t = Tree::new("traversal-parallel");
    let root = t.root();
    let big: Vec<u8> = (0..1_000_000u64).map(|i| pattern(i + 7)).collect();
    fs::write(root.join("big.bin"), &big).unwrap();
    fs::write(root.join("ok.txt"), b"ok\n").unwrap();
    symlink("../secret.txt", root.join("link-out")).unwrap();
    symlink("/dev/zero", root.join("zero")).unwrap();
    mkfifo(&root.join("fifo"));
    let root_arg = root.to_string_lossy().into_owned();
    let server = Server::start(&["file", "--root", &root_arg]);
    let addr = server.addr;
    let bystander = downloader(addr, "big.bin", Arc::new(big));
    let corpus = Arc::new(corpus(&t, false));
    let attackers: Vec<_> = (0..8)
        .map(|k| {
            let corpus = corpus.clone();
            thread::spawn(move || {
                let mut refused = 0;
                for (request, why) in corpus.iter().cycle().skip(k * 7).take(corpus.len()) {
                    let a = ask(addr, request);
                    let expected = if why.is_some() { NOT_FOUND } else { TOO_LONG };
                    assert!(
                        a.bytes == expected,
                        "request {}: got {}",
                        client::shown(request),
                        client::shown(&a.bytes)
                    );
                    refused += 1;
                }
                refused
            })
        })
        .collect();
    let refused: usize = attackers.into_iter().map(|a| a.join().unwrap()).sum();
    assert_eq!(refused, 8 * corpus.len());
    bystander.finish(BOUND);
}
