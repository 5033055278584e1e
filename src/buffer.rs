//! Buffers: the per-connection write queue, and nothing else.
//!
//! Reads do not need a buffer per connection: the event loop owns one shared
//! scratch buffer (`event_loop/`) that every read lands in, and the protocol
//! consumes the bytes before the next read. Writes are different: bytes the
//! kernel would not take yet must wait somewhere, and they wait here.
//!
//! [`WriteQueue`] is a FIFO of byte chunks.
//!
//! - `new()` allocates nothing; an idle connection's queue costs its struct
//!   size and no heap. When the last byte is written the queue frees its ring
//!   again (`consume`), so a connection holds heap memory only while it owes
//!   bytes.
//! - `push_copy(&[u8])` copies bytes in, coalescing small writes into the
//!   tail chunk so that a burst of tiny messages is one `writev` entry, not
//!   hundreds.
//! - `push_shared(Shared)` queues a chunk without copying it: a broadcast
//!   line is encoded once and the same allocation sits in every receiver's
//!   queue. [`Shared`] is an `Rc` within one worker, and an `Arc` for a
//!   chunk that other workers hold too (`hub.rs`).
//! - `write_to(w)` hands up to [`MAX_IOVECS`] chunks to the kernel in one
//!   vectored write, and drops what was written.
//! - `len()` is the number of bytes owed; the connection compares it with the
//!   write limit to decide backpressure (`connection.rs`).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;
use std::sync::Arc;

/// How many chunks one vectored write hands to the kernel. Linux accepts up
/// to 1024 (`IOV_MAX`); 64 is plenty to write a whole queue in one call.
pub const MAX_IOVECS: usize = 64;

/// A tail chunk smaller than this absorbs the next `push_copy` instead of a
/// new chunk being made.
const COALESCE_BELOW: usize = 16 * 1024;

/// Bytes shared by many write queues, encoded once: within one worker an
/// `Rc` (no atomic on the per-message path), across workers an `Arc`.
#[derive(Debug, Clone)]
pub enum Shared {
    Local(Rc<[u8]>),
    Cross(Arc<[u8]>),
}

impl Shared {
    /// True if both are the same allocation.
    pub fn ptr_eq(&self, other: &Shared) -> bool {
        match (self, other) {
            (Shared::Local(a), Shared::Local(b)) => Rc::ptr_eq(a, b),
            (Shared::Cross(a), Shared::Cross(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::ops::Deref for Shared {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Shared::Local(r) => r,
            Shared::Cross(a) => a,
        }
    }
}

impl From<Vec<u8>> for Shared {
    /// A chunk for this worker alone.
    fn from(v: Vec<u8>) -> Self {
        Shared::Local(v.into())
    }
}

/// One queued run of bytes: owned by this queue, or shared with other queues.
#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    Shared(Shared),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(r) => r,
        }
    }
}

/// Bytes owed to one peer, oldest first. See the module documentation.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    head: usize,
    /// Bytes still owed, across all chunks.
    len: usize,
}

impl WriteQueue {
    /// An empty queue. Allocates nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes still owed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a copy of `data`. Empty slices are ignored.
    pub fn push_copy(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        // Grow a small owned tail rather than add a chunk. This is safe even
        // when the tail is also the partly written head: `head` is an offset,
        // not a pointer, and no IoSlice outlives `write_to`.
        if let Some(Chunk::Owned(tail)) = self.chunks.back_mut() {
            if tail.len() + data.len() <= COALESCE_BELOW {
                tail.extend_from_slice(data);
                return;
            }
        }
        self.chunks.push_back(Chunk::Owned(data.to_vec()));
    }

    /// Queues a shared chunk without copying it. Empty chunks are ignored.
    pub fn push_shared(&mut self, data: Shared) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.chunks.push_back(Chunk::Shared(data));
    }

    /// Fills `out` with the owed bytes, oldest first; returns how many slices
    /// were filled.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if n == out.len() {
                break;
            }
            let bytes = if i == 0 {
                &chunk.bytes()[self.head..]
            } else {
                chunk.bytes()
            };
            out[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Drops the first `n` owed bytes (they were written). When the queue
    /// empties, its ring is freed so that an idle connection holds no heap.
    pub fn consume(&mut self, mut n: usize) {
        assert!(n <= self.len, "consumed more than was queued");
        self.len -= n;
        while n > 0 {
            let front_left = self.chunks[0].bytes().len() - self.head;
            if n >= front_left {
                n -= front_left;
                self.head = 0;
                self.chunks.pop_front();
            } else {
                self.head += n;
                n = 0;
            }
        }
        if self.len == 0 {
            self.chunks = VecDeque::new();
            self.head = 0;
        }
    }

    /// One vectored write of the owed bytes to `w`; drops what was written.
    ///
    /// Returns what `write_vectored` returned: `Ok(n)` with the bytes written
    /// (0 only if nothing was owed), or the error, `WouldBlock` included,
    /// untouched for the caller to interpret.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let count = self.io_slices(&mut slices);
        let n = w.write_vectored(&slices[..count])?;
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `cap` bytes per call, then `WouldBlock`
    /// once `budget` is spent: a socket with a small, filling send buffer.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        budget: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n).min(self.budget - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if take < b.len() {
                    break;
                }
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn new_queue_is_empty_and_allocates_nothing() {
        let q = WriteQueue::new();
        assert!(q.is_empty());
        assert_eq!(q.chunks.capacity(), 0);
    }

    #[test]
    fn bytes_come_out_in_order_across_partial_writes() {
        let mut q = WriteQueue::new();
        q.push_copy(b"hello ");
        q.push_shared(Shared::Local(Rc::from(&b"shared "[..])));
        q.push_copy(b"world");
        assert_eq!(q.len(), 18);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 4,
            budget: usize::MAX,
            calls: 0,
        };
        while !q.is_empty() {
            q.write_to(&mut w).unwrap();
        }
        assert_eq!(w.out, b"hello shared world");
    }

    #[test]
    fn small_copies_coalesce_into_one_chunk() {
        let mut q = WriteQueue::new();
        for _ in 0..100 {
            q.push_copy(b"0123456789");
        }
        assert_eq!(q.chunks.len(), 1);
        assert_eq!(q.len(), 1000);
    }

    #[test]
    fn large_copies_stay_separate() {
        let mut q = WriteQueue::new();
        q.push_copy(&[1u8; COALESCE_BELOW]);
        q.push_copy(&[2u8; 10]);
        assert_eq!(q.chunks.len(), 2);
    }

    #[test]
    fn whole_queue_goes_out_in_one_vectored_write() {
        let mut q = WriteQueue::new();
        for i in 0..10u8 {
            q.push_shared(Shared::Local(Rc::from(&[i; 3][..])));
        }
        let mut w = Trickle {
            out: Vec::new(),
            cap: usize::MAX,
            budget: usize::MAX,
            calls: 0,
        };
        assert_eq!(q.write_to(&mut w).unwrap(), 30);
        assert_eq!(w.calls, 1);
        assert!(q.is_empty());
    }

    #[test]
    fn would_block_leaves_the_queue_untouched() {
        let mut q = WriteQueue::new();
        q.push_copy(b"abc");
        let mut w = Trickle {
            out: Vec::new(),
            cap: 10,
            budget: 0,
            calls: 0,
        };
        let err = q.write_to(&mut w).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn draining_frees_the_ring() {
        let mut q = WriteQueue::new();
        q.push_copy(b"abc");
        assert!(q.chunks.capacity() > 0);
        q.consume(2);
        assert_eq!(q.len(), 1);
        q.consume(1);
        assert!(q.is_empty());
        assert_eq!(q.chunks.capacity(), 0);
        assert_eq!(q.head, 0);
    }

    #[test]
    fn partial_consume_within_front_chunk_is_remembered() {
        let mut q = WriteQueue::new();
        q.push_copy(&[7u8; COALESCE_BELOW]);
        q.push_copy(b"tail");
        q.consume(COALESCE_BELOW - 1);
        let mut slices = [IoSlice::new(&[]); 4];
        let n = q.io_slices(&mut slices);
        assert_eq!(n, 2);
        assert_eq!(&*slices[0], &[7u8]);
        assert_eq!(&*slices[1], b"tail");
    }

    #[test]
    fn shared_chunks_are_not_copied() {
        let line: Rc<[u8]> = Rc::from(&b"line\n"[..]);
        let mut a = WriteQueue::new();
        let mut b = WriteQueue::new();
        a.push_shared(Shared::Local(line.clone()));
        b.push_shared(Shared::Local(line.clone()));
        assert_eq!(Rc::strong_count(&line), 3);
        a.consume(5);
        assert_eq!(Rc::strong_count(&line), 2);
        // Across workers, the same with an Arc.
        let cross: Arc<[u8]> = Arc::from(&b"all\n"[..]);
        a.push_shared(Shared::Cross(cross.clone()));
        assert_eq!(Arc::strong_count(&cross), 2);
        assert!(Shared::Cross(cross.clone()).ptr_eq(&Shared::Cross(cross)));
    }
}
