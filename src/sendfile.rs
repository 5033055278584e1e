//! Zero-copy file output: `sendfile(2)` from a file straight into a plain
//! TCP socket, for a producing protocol (the file server).
//!
//! The copying path reads a file into the loop's staging buffer and writes
//! that buffer to the socket: every byte crosses into user space and back.
//! `sendfile` asks the kernel to move the file's page-cache pages to the
//! socket itself, in one call and with no user-space copy.
//!
//! The loop lends a [`Direct`] to a producing step only when it could
//! write at once: the connection is on plain TCP (TLS must encrypt in user
//! space, so its bytes take the copying path), owes nothing, and has not
//! been refused a write since its last writable event. The protocol calls
//! [`Ctx::send_file`](crate::protocol::Ctx::send_file), which lands here;
//! afterwards the loop reads what happened from the `Direct` and treats it
//! as it treats any write (`event_loop/visit.rs`, `produce`):
//!
//! - bytes sent count as output, for the statistics, the access log, the
//!   idle timer and the turn's budget;
//! - a socket that refused (`EAGAIN`) marks the connection write-blocked,
//!   which asks epoll for WRITABLE although nothing is queued
//!   (`connection.rs`, `desired_interest`); the writable event brings the
//!   next call;
//! - a socket error (reset, broken pipe) fails the connection as a failed
//!   write would; any other error is the file's (`EIO`, say), and the
//!   protocol ends the transfer with a reset.
//!
//! One step sends at most the loop's per-visit limit for it
//! (`DIRECT_PER_VISIT` in `event_loop/visit.rs`, 1 MiB), so a fast reader
//! of a large file takes its turn like every other connection.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::sys::is_disconnect;

/// A plain socket lent to one producing step, and what was sent through it.
#[derive(Debug)]
pub struct Direct {
    socket: RawFd,
    /// The most one step may send.
    limit: usize,
    /// Bytes the kernel took in this step.
    pub sent: usize,
    /// The socket refused more (`EAGAIN`): wait for a writable event.
    pub blocked: bool,
    /// The socket failed; the loop closes the connection.
    pub failed: Option<io::Error>,
}

/// What one [`Direct::send_file`] did, as the protocol needs to know it.
#[derive(Debug)]
pub enum FileSend {
    /// This many bytes of the file went to the socket.
    Sent(usize),
    /// Nothing is left in the file at that offset: it ended (or shrank).
    EndOfFile,
    /// The socket took nothing now (full or failed); the loop handles it,
    /// the transfer goes on or ends with the connection.
    SocketBusy,
    /// Reading the file failed.
    FileError(io::Error),
}

impl Direct {
    /// Lends `socket` (a non-blocking, plain TCP socket that owes nothing)
    /// for one step that may send up to `limit` bytes.
    pub fn new(socket: RawFd, limit: usize) -> Self {
        Self {
            socket,
            limit,
            sent: 0,
            blocked: false,
            failed: None,
        }
    }

    /// Sends up to `max` bytes (and at most the step's limit) of `file`
    /// from `offset`, in one `sendfile(2)`.
    pub fn send_file(&mut self, file: &File, offset: u64, max: usize) -> FileSend {
        let count = max.min(self.limit.saturating_sub(self.sent));
        if count == 0 || self.blocked || self.failed.is_some() {
            return FileSend::SocketBusy;
        }
        let Ok(mut off) = libc::off_t::try_from(offset) else {
            return FileSend::FileError(io::Error::from_raw_os_error(libc::EOVERFLOW));
        };
        loop {
            // SAFETY: both descriptors are open for the whole call (the
            // loop owns the socket, the caller the file); the kernel reads
            // and updates `off`, ours, and touches no other memory of ours.
            let n = unsafe { libc::sendfile(self.socket, file.as_raw_fd(), &mut off, count) };
            if n > 0 {
                self.sent += n as usize;
                return FileSend::Sent(n as usize);
            }
            if n == 0 {
                return FileSend::EndOfFile;
            }
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    FileSend::SocketBusy
                }
                _ if is_disconnect(&e) => {
                    self.failed = Some(e);
                    FileSend::SocketBusy
                }
                _ => FileSend::FileError(e),
            };
        }
    }
}
