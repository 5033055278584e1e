//! The file server's request checks (`protocol/file.rs`, `resolve`, and
//! the request line through `Protocol::data`), against a tree made once:
//! `root/` holds `hello.txt`, `sub/inner.txt`, a FIFO, and symlinks in
//! (`link-in`, `sub/up` to `..`), out (`link-out` to `../secret.txt`),
//! absolute (`/etc/passwd`, `/dev/zero`) and magic (`/proc/self/fd/0`);
//! `secret.txt` is beside the root.
//!
//! - never panics;
//! - a name `resolve` accepts is not empty, holds no NUL, is not absolute
//!   and has no `..` component, and the file it opened is a regular file
//!   inside the root (its path, as the kernel tells it, starts with the
//!   root's), never the secret; a name the text rules refuse is refused
//!   for that reason, before any system call;
//! - `resolve` is deterministic: the same name twice, the same answer;
//! - the input, cut into reads as a peer chooses and ended with EOF, is
//!   answered with a file of the tree, `ERROR: File not found`, `ERROR:
//!   line too long`, or nothing; streaming ends within a few steps.
#![no_main]

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mio::Token;
use monoloop::protocol::file::{FileServer, Refusal, NOT_FOUND};
use monoloop::protocol::lines::LINE_TOO_LONG;
use monoloop::protocol::{Ctx, Limits, Protocol, Step};
use monoloop_fuzz::cut;

/// The tree, made once per process: its root, canonical.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        use std::os::unix::fs::symlink;
        let base = std::env::temp_dir().join(format!("monoloop-fuzz-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("hello.txt"), b"hello").unwrap();
        std::fs::write(root.join("sub/inner.txt"), b"inner").unwrap();
        std::fs::write(base.join("secret.txt"), b"SECRET").unwrap();
        symlink("hello.txt", root.join("link-in")).unwrap();
        symlink("..", root.join("sub/up")).unwrap();
        symlink("../secret.txt", root.join("link-out")).unwrap();
        symlink("/etc/passwd", root.join("link-abs")).unwrap();
        symlink("/dev/zero", root.join("zero")).unwrap();
        symlink("/proc/self/fd/0", root.join("magic")).unwrap();
        let fifo = std::ffi::CString::new(root.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path of our own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        root.canonicalize().unwrap()
    })
}

fn server() -> FileServer {
    FileServer::new(root(), Limits::lines(64))
        .unwrap()
        .with_sendfile(false)
}

/// The text rules, as `resolve` must apply them first.
fn text_refusal(name: &[u8]) -> Option<Refusal> {
    if name.is_empty() {
        Some(Refusal::Empty)
    } else if name.contains(&0) {
        Some(Refusal::Nul)
    } else if name.starts_with(b"/") {
        Some(Refusal::Absolute)
    } else if name.split(|&b| b == b'/').any(|c| c == b"..") {
        Some(Refusal::DotDot)
    } else {
        None
    }
}

fn check_resolve(fs: &FileServer, name: &[u8]) {
    let first = fs.resolve(name);
    let again = fs.resolve(name);
    match (&first, &again) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b, "refused twice, for two reasons"),
        _ => panic!("resolve is not deterministic: {first:?} then {again:?}"),
    }
    if let Some(why) = text_refusal(name) {
        assert_eq!(first.unwrap_err(), why, "{name:?}");
        return;
    }
    let Ok(file) = first else {
        return;
    };
    assert!(
        file.metadata().unwrap().is_file(),
        "{name:?}: not a regular file"
    );
    let at = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
    assert!(
        at.starts_with(root()),
        "{name:?} opened {at:?}, outside {:?}",
        root()
    );
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut text).unwrap();
    assert_ne!(text, b"SECRET", "{name:?} read the secret");
}

fuzz_target!(|data: &[u8]| {
    let (payload, pieces) = cut(data);
    let mut fs = server();
    check_resolve(&fs, payload);

    let id = Token(1);
    let (mut out, mut sends) = (Vec::new(), Vec::new());
    {
        let mut ctx = Ctx::new(Instant::now(), &mut out, &mut sends);
        let mut s = fs.open(id, &mut ctx);
        let mut step = Step::Continue;
        for piece in &pieces {
            step = fs.data(&mut s, id, piece, &mut ctx);
            if step != Step::Continue {
                break;
            }
        }
        if step == Step::Continue {
            fs.eof(&mut s, id, &mut ctx);
        }
        let mut steps = 0;
        while fs.producing(&s) {
            steps += 1;
            assert!(steps <= 4, "a file of a few bytes still streaming");
            if fs.produce(&mut s, id, &mut ctx) != Step::Continue {
                break;
            }
        }
    }
    assert!(
        sends.is_empty(),
        "the file server sent to another connection"
    );
    let allowed: [&[u8]; 5] = [b"", NOT_FOUND, LINE_TOO_LONG, b"hello", b"inner"];
    assert!(allowed.contains(&&out[..]), "answered {out:?}");
});
