//! The file server's request checks (`protocol/file.rs`,
//! `FileServer::resolve`), the invariant of the fuzz target for the file
//! request: a request that passes never names a path outside the root.
//!
//! On a small tree made for the test (a root with files, a directory, a
//! FIFO, symlinks that stay inside and symlinks out, relative and
//! absolute, next to a secret file outside it), for any request:
//!
//! - what opens is one of the regular files inside the root, never the
//!   secret, a directory or the FIFO;
//! - a request that is empty, absolute, holds a NUL or a `..` component is
//!   refused, whatever the tree holds;
//! - a request the tree answers with a file answers with the same file on
//!   every try (the checks depend on nothing but the request and the tree).
//!
//! Requests are paths of components drawn from the tree's names, `.`,
//! `..`, empty ones, and odd bytes, plus raw bytes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::PathBuf;

use monoloop::protocol::file::{FileServer, Refusal};
use monoloop::protocol::Limits;
use proptest::prelude::*;

use super::cases;

/// The tree: `outside/secret`, and `outside/root/` with what the server
/// may serve and the ways out it must not take.
struct Tree {
    top: PathBuf,
    server: FileServer,
    /// (device, inode) of every regular file inside the root.
    inside: BTreeMap<(u64, u64), PathBuf>,
}

impl Tree {
    fn new() -> Tree {
        let top = std::env::temp_dir().join(format!(
            "monoloop-prop-files-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&top);
        let root = top.join("root");
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::write(top.join("secret"), b"secret").unwrap();
        fs::write(root.join("a.txt"), b"a").unwrap();
        fs::write(root.join("sub/b.txt"), b"b").unwrap();
        fs::write(root.join("sub/deeper/c"), b"c").unwrap();
        symlink("a.txt", root.join("in_link")).unwrap();
        symlink("../a.txt", root.join("sub/up_link")).unwrap();
        symlink("../secret", root.join("out_link")).unwrap();
        symlink(top.join("secret"), root.join("abs_link")).unwrap();
        symlink("..", root.join("dotdot_link")).unwrap();
        symlink("/", root.join("slash_link")).unwrap();
        symlink("/proc/self/root/etc/hostname", root.join("proc_link")).unwrap();
        symlink("sub", root.join("sub_link")).unwrap();
        let fifo = std::ffi::CString::new(root.join("fifo").into_os_string().into_encoded_bytes())
            .unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let mut inside = BTreeMap::new();
        for f in ["a.txt", "sub/b.txt", "sub/deeper/c"] {
            let m = fs::metadata(root.join(f)).unwrap();
            inside.insert((m.dev(), m.ino()), root.join(f));
        }
        let server = FileServer::new(&root, Limits::lines(4096)).unwrap();
        Tree {
            top,
            server,
            inside,
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.top);
    }
}

/// A request: components joined by `/` (doubled at times), perhaps
/// with a leading `/`, odd bytes, or raw bytes.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        6 => prop::sample::select(vec![
            "a.txt", "sub", "deeper", "b.txt", "c", "in_link", "up_link", "out_link", "abs_link",
            "dotdot_link", "slash_link", "proc_link", "sub_link", "fifo", "secret", "root", ".",
            "..", "", "...", "..a", "a..", "etc", "hostname",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::sample::select(vec![&b"\0"[..], b"\\", b"%2e%2e", b"\xff", b"\r", b" "]).prop_map(<[u8]>::to_vec),
    ];
    let path = (any::<bool>(), prop::collection::vec(part, 1..6)).prop_map(|(abs, parts)| {
        let mut p = if abs { b"/".to_vec() } else { Vec::new() };
        p.extend(parts.join(&b'/'));
        p
    });
    prop_oneof![5 => path, 1 => prop::collection::vec(any::<u8>(), 0..30)]
}

thread_local! {
    static TREE: Tree = Tree::new();
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn what_opens_is_inside_the_root(req in request()) {
        TREE.with(|tree| -> Result<(), TestCaseError> {
            let got = tree.server.resolve(&req);
            let text_refusal = req.is_empty()
                || req.contains(&0)
                || req.starts_with(b"/")
                || req.split(|&b| b == b'/').any(|c| c == b"..");
            if text_refusal {
                prop_assert!(
                    matches!(got, Err(Refusal::Empty | Refusal::Nul | Refusal::Absolute | Refusal::DotDot)),
                    "{:?} was not refused as text: {:?}", String::from_utf8_lossy(&req), got
                );
            }
            if let Ok(file) = got {
                let m = file.metadata().unwrap();
                prop_assert!(m.is_file());
                prop_assert!(
                    tree.inside.contains_key(&(m.dev(), m.ino())),
                    "{:?} opened a file outside the root", String::from_utf8_lossy(&req)
                );
                let again = tree.server.resolve(&req).map(|f| f.metadata().unwrap().ino());
                prop_assert_eq!(again, Ok(m.ino()), "the same request, another answer");
            }
            Ok(())
        })?;
    }
}

/// The tree's own ways in work, so that the property above is not
/// passing on a server that refuses everything.
#[test]
fn the_tree_serves_what_is_inside_and_nothing_else() {
    TREE.with(|tree| {
        for ok in [
            "a.txt",
            "sub/b.txt",
            "sub//deeper/./c",
            "in_link",
            "sub/up_link",
            "sub_link/b.txt",
        ] {
            assert!(tree.server.resolve(ok.as_bytes()).is_ok(), "{ok} refused");
        }
        for no in [
            "out_link",
            "abs_link",
            "dotdot_link/secret",
            "slash_link/etc/hostname",
            "proc_link",
            "fifo",
            "sub",
            "../secret",
            "/etc/hostname",
        ] {
            assert!(tree.server.resolve(no.as_bytes()).is_err(), "{no} served");
        }
    });
}
