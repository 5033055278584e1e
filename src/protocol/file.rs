//! The file server: the client names a file relative to `--root` on one
//! line; the server streams the file's bytes and closes.
//!
//! ```text
//!   REQUEST --line (or unfinished line + EOF)--> resolve under the root
//!           --refused or missing--> "ERROR: File not found\n", close
//!           --a regular file------> STREAMING
//!   STREAMING --socket drained--> next piece (Protocol::produce):
//!                                 plain TCP: sendfile(2), up to 1 MiB
//!                                 TLS, --no-sendfile: read 64 KiB, write
//!             --end of file-----> close
//! ```
//!
//! # Confinement
//!
//! Nothing outside the root is ever served, and a refusal always reads
//! "File not found", so the tree outside cannot be probed. Two layers:
//!
//! 1. The request is checked as text: empty, absolute, containing NUL or a
//!    `..` component is refused before any syscall.
//! 2. The open itself is confined by the kernel: `openat2(2)` relative to a
//!    descriptor of the root, with `RESOLVE_BENEATH` (every step of the
//!    resolution, symlinks included, must stay below the root) and
//!    `RESOLVE_NO_MAGICLINKS` (no `/proc/self/fd` tricks). The check and the
//!    open are one system call, so a path swapped for a symlink between a
//!    check and an open (the classic race) cannot escape: there is no
//!    "between". Symlinks that stay inside the root are followed.
//!
//! The file is opened `O_NONBLOCK | O_NOCTTY`, so that a FIFO's open returns
//! at once instead of blocking the loop until a writer appears, and then
//! `fstat` on the open descriptor must say "regular file": FIFOs, sockets,
//! devices and directories are refused.
//!
//! # Streaming
//!
//! The loop calls [`Protocol::produce`] only when the connection has written
//! everything it owed, so the file is sent a piece at a time as fast as the
//! client reads and no faster. On plain TCP a piece is one `sendfile(2)`
//! ([`Ctx::send_file`], `sendfile.rs`): the kernel moves the file's pages
//! to the socket, and no byte of it passes through this process, so a
//! transfer costs no buffer at all. Over TLS the bytes must be encrypted
//! here, so a piece is a 64 KiB read into the loop's staging buffer, which
//! the loop writes (and queues what the socket did not take): a 4 GiB file
//! to a slow reader costs one chunk of memory. `--no-sendfile` takes the
//! reading path on plain TCP too, for filesystems whose `sendfile` cannot
//! be trusted (as nginx's `sendfile off`). Either way the file is read at
//! the transfer's own offset (`pread`, or `sendfile`'s offset argument),
//! never its shared position.
//!
//! Reads of a regular file do not wait on the network, but they can wait
//! on the disk; like nginx without thread pools, monoloop accepts that for
//! files in the page cache.
//!
//! The protocol has no length field (the client reads to the end), so a
//! transfer that ends early must not look like a complete one. A file that
//! shrinks while it is sent, or whose read fails, ends the connection with
//! a reset instead of a FIN ([`Step::Abort`]): the client sees an error,
//! not a clean end. A file that grows is sent to its end as found.
//!
//! # Shutdown
//!
//! A transfer under way when the server begins to shut down goes on
//! ([`Drain::Finish`]): the loop keeps producing it through the drain.
//! If the drain timeout cuts it short, the loop ends it with a reset and
//! tells this protocol so ([`CloseReason::Truncated`] while still
//! streaming), and a warning names the file, the bytes sent and its size.
//! A connection still waiting for its request is closed at once.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use std::time::Instant;

use super::lines::{content, Lines, TooLong, LINE_TOO_LONG};
use super::{CloseReason, ConnId, Ctx, Drain, FileSend, Limits, Protocol, Step};

/// The one refusal, whatever the reason.
pub const NOT_FOUND: &[u8] = b"ERROR: File not found\n";

/// Bytes read from the file per [`Protocol::produce`] call, on the copying
/// path.
const CHUNK: usize = 64 * 1024;

/// Bytes asked of one `sendfile` per [`Protocol::produce`] call (the loop
/// may allow fewer: its per-visit share). Larger than [`CHUNK`] because
/// nothing is buffered: the socket's send buffer is the only bound.
const SENDFILE_CHUNK: usize = 1024 * 1024;

/// The server: a descriptor of the root directory.
#[derive(Debug)]
pub struct FileServer {
    root: OwnedFd,
    limits: Limits,
    /// Use `sendfile` where the loop allows it (`--no-sendfile` clears it).
    sendfile: bool,
}

/// One connection's stage.
#[derive(Debug)]
pub enum FileSession {
    /// Waiting for the request line, which must come within
    /// `--request-timeout` of `since` (when the connection opened).
    Request { lines: Lines, since: Instant },
    /// Sending this file.
    Streaming(Box<Transfer>),
    /// Answered, with what was asked and how far it went (for the access
    /// log); `None` if nothing was asked.
    Done(Option<Box<Transfer>>),
}

/// One request and how far its answer went.
#[derive(Debug)]
pub struct Transfer {
    /// The open file while it is being sent.
    file: Option<File>,
    /// The name asked for, as text.
    name: String,
    /// The file's size when it was opened; `None` if it was refused.
    size: Option<u64>,
    /// Why it was refused, in one word ([`Refusal::word`]), for the
    /// access log's `refused=`.
    refused: Option<&'static str>,
    /// Bytes of it handed to the connection so far.
    sent: u64,
}

/// Why a request was refused (logged at debug; the client sees only
/// [`NOT_FOUND`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    Absolute,
    Nul,
    DotDot,
    NotRegular,
    /// The open failed with this errno.
    Open(i32),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Empty => f.write_str("empty request"),
            Refusal::Absolute => f.write_str("absolute path"),
            Refusal::Nul => f.write_str("NUL byte in the name"),
            Refusal::DotDot => f.write_str("'..' in the path"),
            Refusal::NotRegular => f.write_str("not a regular file"),
            Refusal::Open(libc::EXDEV) => {
                f.write_str("it leads outside the root (a symlink out, or an absolute one)")
            }
            Refusal::Open(libc::ELOOP) => f.write_str("too many symlinks, or a magic link"),
            Refusal::Open(libc::ENOENT) => f.write_str("no such file"),
            Refusal::Open(e) => io::Error::from_raw_os_error(*e).fmt(f),
        }
    }
}

impl Refusal {
    /// One word for the access log's `refused=` field.
    pub fn word(&self) -> &'static str {
        match self {
            Refusal::Empty => "empty",
            Refusal::Absolute => "absolute",
            Refusal::Nul => "nul",
            Refusal::DotDot => "dot_dot",
            Refusal::NotRegular => "not_a_file",
            Refusal::Open(libc::EXDEV) => "outside_root",
            Refusal::Open(libc::ELOOP) => "symlinks",
            Refusal::Open(libc::ENOENT | libc::ENOTDIR) => "not_found",
            Refusal::Open(libc::EACCES | libc::EPERM) => "permission",
            Refusal::Open(_) => "open_failed",
        }
    }
}

/// The errno of an error, for a [`Refusal`].
fn errno(e: io::Error) -> Refusal {
    Refusal::Open(e.raw_os_error().unwrap_or(libc::EIO))
}

impl FileServer {
    /// Opens the root directory; fails if it is missing or not a directory.
    pub fn new(root: &Path, limits: Limits) -> io::Result<Self> {
        let path = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        // SAFETY: a plain open(2) of a NUL-terminated path we own; on success
        // the descriptor is ours alone and wrapped at once.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let root = unsafe { OwnedFd::from_raw_fd(fd) };
        // An O_PATH open succeeds without any permission on the directory,
        // but serving needs to search it (x): without that every request
        // would fail, so refuse to start and say why. Reading it (r) is not
        // needed: files are opened by name, never listed.
        // SAFETY: faccessat reads the NUL-terminated "." and touches no
        // other memory.
        let rc = unsafe {
            libc::faccessat(
                root.as_raw_fd(),
                c".".as_ptr(),
                libc::X_OK,
                libc::AT_EACCESS,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "{e}: this process (uid {uid}) cannot search it, so no file could be served"
                ),
            ));
        }
        Ok(Self {
            root,
            limits,
            sendfile: true,
        })
    }

    /// `false`: always read and write, never `sendfile` (`--no-sendfile`).
    pub fn with_sendfile(mut self, sendfile: bool) -> Self {
        self.sendfile = sendfile;
        self
    }

    /// Opens the file a request names, confined below the root. See the
    /// module documentation for the rules.
    pub fn resolve(&self, request: &[u8]) -> Result<File, Refusal> {
        if request.is_empty() {
            return Err(Refusal::Empty);
        }
        if request.contains(&0) {
            return Err(Refusal::Nul);
        }
        if request.starts_with(b"/") {
            return Err(Refusal::Absolute);
        }
        if request.split(|&b| b == b'/').any(|c| c == b"..") {
            return Err(Refusal::DotDot);
        }
        let path = CString::new(request).map_err(|_| Refusal::Nul)?;
        let file = openat2_beneath(&self.root, &path).map_err(errno)?;
        match file.metadata() {
            Ok(m) if m.is_file() => Ok(file),
            Ok(_) => Err(Refusal::NotRegular),
            Err(e) => Err(errno(e)),
        }
    }

    /// Answers a request line: starts streaming, or refuses.
    fn request(&self, s: &mut FileSession, id: ConnId, line: &[u8], ctx: &mut Ctx) -> Step {
        let name = content(line);
        let shown = String::from_utf8_lossy(name).into_owned();
        match self.resolve(name) {
            Ok(file) => {
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                log::debug!("conn #{}: sending {shown:?}, {size} bytes", id.0 >> 32);
                *s = FileSession::Streaming(Box::new(Transfer {
                    file: Some(file),
                    name: shown,
                    size: Some(size),
                    refused: None,
                    sent: 0,
                }));
                Step::Continue
            }
            Err(why) => {
                log::debug!("conn #{}: refused {shown:?}: {why}", id.0 >> 32);
                *s = FileSession::Done(Some(Box::new(Transfer {
                    file: None,
                    name: shown,
                    size: None,
                    refused: Some(why.word()),
                    sent: 0,
                })));
                ctx.write(NOT_FOUND);
                Step::Close
            }
        }
    }
}

/// `openat2(root, path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
/// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
fn openat2_beneath(root: &OwnedFd, path: &CString) -> io::Result<File> {
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the kernel reads `path` (NUL-terminated, ours) and `how` (ours,
    // with its true size), and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel, owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

impl Protocol for FileServer {
    type Session = FileSession;
    const PRODUCES: bool = true;

    fn open(&mut self, _id: ConnId, ctx: &mut Ctx) -> FileSession {
        FileSession::Request {
            lines: Lines::default(),
            since: ctx.now,
        }
    }

    fn data(&mut self, s: &mut FileSession, id: ConnId, input: &[u8], ctx: &mut Ctx) -> Step {
        let FileSession::Request { lines, .. } = s else {
            // The request is answered; anything more is ignored.
            return Step::Continue;
        };
        let mut first = None;
        let fed = lines.feed(input, self.limits.max_line, ctx.now, |line| {
            first = Some(line.to_vec());
            Step::Close
        });
        match (fed, first) {
            (Err(TooLong), _) => {
                *s = FileSession::Done(None);
                ctx.write(LINE_TOO_LONG);
                Step::Close
            }
            (Ok(_), Some(line)) => self.request(s, id, &line, ctx),
            (Ok(_), None) => Step::Continue,
        }
    }

    fn eof(&mut self, s: &mut FileSession, id: ConnId, ctx: &mut Ctx) -> Step {
        match s {
            // `printf name | nc -N`: a request without its newline.
            FileSession::Request { lines, .. } => match lines.take_rest() {
                Some(rest) => self.request(s, id, &rest, ctx),
                None => Step::Close,
            },
            // Keep streaming to a client that has finished sending.
            FileSession::Streaming(_) => Step::Continue,
            FileSession::Done(_) => Step::Close,
        }
    }

    /// `file="NAME" size=N sent=N`, or `file="NAME" refused=WHY` (the
    /// access log's fields for this mode; [`Refusal::word`]).
    fn summary(&self, s: &FileSession) -> Option<String> {
        let t = match s {
            FileSession::Streaming(t) | FileSession::Done(Some(t)) => t,
            _ => return None,
        };
        let name = crate::quote::quoted(&t.name);
        Some(match t.size {
            Some(size) => format!("file={name} size={size} sent={}", t.sent),
            None => format!("file={name} refused={}", t.refused.unwrap_or("unknown")),
        })
    }

    /// A transfer under way finishes, within the drain timeout; a request
    /// not yet made is not waited for.
    fn shutdown(&mut self, s: &mut FileSession, _id: ConnId, _ctx: &mut Ctx) -> Drain {
        match s {
            FileSession::Streaming(_) => Drain::Finish,
            FileSession::Request { .. } | FileSession::Done(_) => Drain::Close,
        }
    }

    /// A transfer the loop cut short (the drain timeout passed while it
    /// was still streaming) ended with a reset: the operator hears which
    /// file, and how far it went, whether the access log is on or not. A
    /// client that goes away mid-transfer is its own business (debug, in
    /// the loop's log), and a file that shrank was warned of already.
    fn closed(&mut self, s: FileSession, id: ConnId, reason: CloseReason, _ctx: &mut Ctx) {
        if let (FileSession::Streaming(t), CloseReason::Truncated) = (s, reason) {
            log::warn!(
                "conn #{}: {:?} cut short: {} of {} bytes sent; ended with a reset",
                id.0 >> 32,
                t.name,
                t.sent,
                t.size.unwrap_or(0)
            );
        }
    }

    /// The request line must come within `--request-timeout` of the
    /// connection opening, however it trickles in.
    fn deadline(&self, s: &FileSession) -> Option<Instant> {
        match s {
            FileSession::Request { since, .. } => Some(*since + self.limits.request_timeout?),
            _ => None,
        }
    }

    fn producing(&self, s: &FileSession) -> bool {
        matches!(s, FileSession::Streaming(_))
    }

    fn produce(&mut self, s: &mut FileSession, id: ConnId, ctx: &mut Ctx) -> Step {
        let FileSession::Streaming(t) = s else {
            return Step::Close;
        };
        let Some(file) = t.file.as_ref() else {
            return Step::Close;
        };
        let direct = match self.sendfile {
            true => ctx.send_file(file, t.sent, SENDFILE_CHUNK),
            false => None,
        };
        let read = match direct {
            Some(FileSend::Sent(n)) => Ok(n),
            Some(FileSend::EndOfFile) => Ok(0),
            // The loop waits for room, or closes a failed connection.
            Some(FileSend::SocketBusy) => return Step::Continue,
            Some(FileSend::FileError(e)) => Err(e),
            // TLS, or --no-sendfile: read the next chunk for the loop to write.
            None => ctx.write_with(CHUNK, |buf| file.read_at(buf, t.sent)),
        };
        let step = match read {
            Ok(0) => match t.size {
                Some(size) if t.sent < size => {
                    log::warn!(
                        "conn #{}: {:?} shrank while being sent: {} of {size} bytes sent; \
                         ending with a reset",
                        id.0 >> 32,
                        t.name,
                        t.sent
                    );
                    Step::Abort
                }
                _ => Step::Close,
            },
            Ok(n) => {
                t.sent += n as u64;
                return Step::Continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::Continue,
            Err(e) => {
                log::warn!(
                    "conn #{}: reading {:?} failed after {} bytes: {e}; ending with a reset",
                    id.0 >> 32,
                    t.name,
                    t.sent
                );
                Step::Abort
            }
        };
        // Done with the file: close it now, keep the record.
        t.file = None;
        if let FileSession::Streaming(t) = std::mem::replace(s, FileSession::Done(None)) {
            *s = FileSession::Done(Some(t));
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Direct;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    /// A scratch tree: root/{hello.txt, sub/inner.txt, link-in -> hello.txt,
    /// link-out -> ../secret.txt}, secret.txt beside root.
    fn tree(tag: &str) -> (std::path::PathBuf, FileServer) {
        let base = std::env::temp_dir().join(format!("monoloop-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("hello.txt"), b"hello").unwrap();
        std::fs::write(root.join("sub/inner.txt"), b"inner").unwrap();
        std::fs::write(base.join("secret.txt"), b"secret").unwrap();
        symlink("hello.txt", root.join("link-in")).unwrap();
        symlink("../secret.txt", root.join("link-out")).unwrap();
        symlink("/etc/passwd", root.join("link-abs")).unwrap();
        let server = FileServer::new(&root, Limits::lines(100)).unwrap();
        (base, server)
    }

    fn read(f: Result<File, Refusal>) -> String {
        let mut s = String::new();
        f.unwrap().read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn files_below_the_root_are_served() {
        let (base, fs) = tree("ok");
        assert_eq!(read(fs.resolve(b"hello.txt")), "hello");
        assert_eq!(read(fs.resolve(b"sub/inner.txt")), "inner");
        assert_eq!(read(fs.resolve(b"./sub//inner.txt")), "inner");
        assert_eq!(read(fs.resolve(b"link-in")), "hello");
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn every_escape_is_refused() {
        let (base, fs) = tree("escape");
        assert_eq!(fs.resolve(b"").unwrap_err(), Refusal::Empty);
        assert_eq!(fs.resolve(b"/etc/passwd").unwrap_err(), Refusal::Absolute);
        assert_eq!(fs.resolve(b"../secret.txt").unwrap_err(), Refusal::DotDot);
        assert_eq!(
            fs.resolve(b"sub/../../secret.txt").unwrap_err(),
            Refusal::DotDot
        );
        assert_eq!(fs.resolve(b"a\0b").unwrap_err(), Refusal::Nul);
        assert!(matches!(fs.resolve(b"link-out"), Err(Refusal::Open(_))));
        assert!(matches!(fs.resolve(b"link-abs"), Err(Refusal::Open(_))));
        assert!(matches!(fs.resolve(b"missing"), Err(Refusal::Open(_))));
        assert_eq!(fs.resolve(b"sub").unwrap_err(), Refusal::NotRegular);
        // The access log's words for them (`refused=`).
        let word = |request: &[u8]| fs.resolve(request).unwrap_err().word();
        assert_eq!(word(b"link-out"), "outside_root");
        assert_eq!(word(b"missing"), "not_found");
        assert_eq!(word(b"../secret.txt"), "dot_dot");
        assert_eq!(word(b"sub"), "not_a_file");
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (base, fs) = tree("fifo");
        let fifo = CString::new(base.join("root/pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo on a path we own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        // A blocking open would hang this test forever: no writer exists.
        assert_eq!(fs.resolve(b"pipe").unwrap_err(), Refusal::NotRegular);
        std::fs::remove_dir_all(base).unwrap();
    }

    /// Streams `name` through `produce` until the file ends, lending a
    /// plain socket (`direct`) or not; returns what the peer received and
    /// the bytes that passed through the staging buffer.
    fn stream(fs: &mut FileServer, name: &[u8], direct: bool) -> (Vec<u8>, usize) {
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut peer = listener.accept().unwrap().0;
        sender.set_nonblocking(true).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let id = mio::Token(1);
        let (mut out, mut sends) = (Vec::new(), Vec::new());
        let mut s = fs.open(id, &mut Ctx::new(Instant::now(), &mut out, &mut sends));
        let mut request = name.to_vec();
        request.push(b'\n');
        let mut ctx = Ctx::new(Instant::now(), &mut out, &mut sends);
        assert_eq!(fs.data(&mut s, id, &request, &mut ctx), Step::Continue);
        let (mut got, mut staged) = (Vec::new(), 0);
        for _ in 0..10_000 {
            let mut lent = direct.then(|| Direct::new(sender.as_raw_fd(), 256 * 1024));
            let mut ctx = Ctx::new(Instant::now(), &mut out, &mut sends).with_direct(lent.as_mut());
            let step = fs.produce(&mut s, id, &mut ctx);
            staged += out.len();
            (&sender).write_all(&out).unwrap();
            out.clear();
            // Read what is in flight, so the socket never stays full.
            peer.set_nonblocking(true).unwrap();
            let _ = peer.read_to_end(&mut got);
            if step == Step::Close {
                break;
            }
        }
        drop(sender);
        peer.set_nonblocking(false).unwrap();
        peer.read_to_end(&mut got).unwrap();
        (got, staged)
    }

    #[test]
    fn with_a_lent_socket_the_file_never_passes_through_the_process() {
        let (base, mut fs) = tree("direct");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(base.join("root/big.bin"), &data).unwrap();
        let (got, staged) = stream(&mut fs, b"big.bin", true);
        assert!(
            got == data,
            "sendfile: {} bytes of {}",
            got.len(),
            data.len()
        );
        assert_eq!(staged, 0, "bytes were copied through the staging buffer");
        // TLS (no socket lent) and --no-sendfile read and write instead.
        let (got, staged) = stream(&mut fs, b"big.bin", false);
        assert!(got == data && staged == data.len());
        let mut fs = fs.with_sendfile(false);
        let (got, staged) = stream(&mut fs, b"big.bin", true);
        assert!(got == data && staged == data.len());
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_missing_root_is_an_error() {
        assert!(FileServer::new(Path::new("/nonexistent/monoloop"), Limits::lines(10)).is_err());
        assert!(FileServer::new(&std::env::current_exe().unwrap(), Limits::lines(10)).is_err());
    }
}
