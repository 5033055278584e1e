//! The server's TLS session, with the buffers on our side of rustls.
//!
//! rustls's buffered `ServerConnection` owns a receive buffer that never
//! shrinks below 4 KiB once a record has been read (its deframer keeps room
//! for the next read), so an idle TLS connection cost about 7.9 KB, more
//! than half of it that one buffer. This session uses rustls's unbuffered
//! API instead (`rustls::server::UnbufferedServerConnection`), where the
//! caller passes the ciphertext in and receives the records to send:
//!
//! - ciphertext is read into the back half of the loop's shared read
//!   buffer, and plaintext is decrypted into its front half, so an idle
//!   session holds no receive buffer at all; only a record's beginning,
//!   when a read ends inside one, is kept (`incoming`) until the rest comes;
//! - records to send (handshake messages, application data, alerts,
//!   close_notify) are kept in `outgoing` only until the socket has taken
//!   them, then freed.
//!
//! What an idle session still holds is rustls's own state: the keys, the
//! state machine, and the connection struct; docs/architecture.md has the
//! measured breakdown. `connection/tls.rs` decides when to call these moves;
//! this file knows nothing of stages or interest.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError};
use rustls::ServerConfig;

/// What one [`ServerSession::read_records`] found.
#[derive(Debug)]
pub enum Input {
    /// Ciphertext was read and processed, and `plaintext` bytes of it are at
    /// the front of the buffer (possibly none: handshake messages, a
    /// record's beginning). `drained`: the socket gave less than was asked,
    /// so it had no more (the short-read rule of `Connection::read`).
    /// `advanced`: a record was completed or a new one began; false when
    /// the bytes only continued a record begun in an earlier read. Only an
    /// advance moves the idle clock, so a record must complete within the
    /// idle timeout of its first byte (a client cannot hold its connection
    /// by trickling one record forever).
    Read {
        plaintext: usize,
        drained: bool,
        advanced: bool,
    },
    /// The socket has nothing now.
    WouldBlock,
    /// The peer closed TCP ([`ServerSession::ended`] is now true).
    Eof,
    /// The socket failed.
    Failed(io::Error),
    /// The peer broke the protocol or failed verification; the alert is
    /// queued for [`ServerSession::write_records`], and the session is over.
    Rejected(rustls::Error),
}

/// One server-side TLS session: rustls's state machine, the start of a
/// record still arriving, and the records not yet written.
pub struct ServerSession {
    conn: UnbufferedServerConnection,
    /// Ciphertext read but not yet processed: the start of a record (or of a
    /// handshake message split across records). Empty, and unallocated,
    /// between whole records.
    incoming: Vec<u8>,
    /// Records for the socket, written up to `sent`. Empty, and
    /// unallocated, once the socket has taken them.
    outgoing: Vec<u8>,
    sent: usize,
    /// The last bytes of `incoming` that rustls has not been shown: what a
    /// read brought beyond its [`RECORDS_PER_READ`] records (the backlog,
    /// whole records or only a record's start). The next read takes them
    /// before the socket; until then, calls that only show rustls what it
    /// has seen (`seen`: `pump`, `encrypt`) leave them out, or it would
    /// process them there. Zero when there is none.
    unseen: usize,
    /// Records processed since [`take_records`](Self::take_records) last
    /// asked: what a visit's reading cost, beyond its bytes.
    records: u32,
    /// The peer's close_notify arrived, or its FIN.
    ended: bool,
    /// The name the ClientHello asked for (SNI), if it named one
    /// (`sni.rs`).
    server_name: Option<Box<str>>,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("incoming", &self.incoming.len())
            .field("unseen", &self.unseen)
            .field("outgoing", &(self.outgoing.len() - self.sent))
            .field("ended", &self.ended)
            .finish()
    }
}

impl ServerSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            unseen: 0,
            records: 0,
            ended: false,
            server_name: None,
        })
    }

    /// The name the client asked for in its ClientHello (SNI), if any.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The negotiated parameters and the handshake's progress.
    pub fn state(&self) -> &rustls::CommonState {
        &self.conn
    }

    /// True while the handshake is unfinished.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The whole records read since the last call. A record's cost is
    /// mostly fixed, so the loop charges a visit for these as well as for
    /// its plaintext (`Connection::read_tls`).
    pub fn take_records(&mut self) -> u32 {
        std::mem::take(&mut self.records)
    }

    /// True if records are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// True while the peer is part-way through a record: its start is
    /// held until the rest comes. (A quiet member is never spared the idle
    /// timeout in the middle of one: `Connection::caught_up`.)
    pub fn mid_record(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// True once the peer has said it sends nothing more: close_notify, or
    /// its FIN.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Feeds bytes already read from the socket (the start of the
    /// ClientHello, after a PROXY header). Handshake answers are queued for
    /// [`write_records`](Self::write_records); on an error, so is the alert.
    pub fn feed(&mut self, first: &[u8]) -> Result<(), rustls::Error> {
        let mut input = std::mem::take(&mut self.incoming);
        input.extend_from_slice(first);
        // No plaintext can come before the handshake's end, which needs
        // our answer first: nothing to decrypt into.
        let result = self.process(&mut input, &mut []);
        match result {
            Ok((used, _)) => {
                self.hold(&input[used..]);
                Ok(())
            }
            Err(e) => Err(self.reject(e)),
        }
    }

    /// Reads one batch of ciphertext from `sock` and processes it: handshake
    /// answers go to the outgoing records, plaintext to the front of `buf`.
    ///
    /// `buf` is the loop's shared read buffer: its back half takes the
    /// ciphertext (after any record's beginning kept from the last read),
    /// its front half the plaintext. The ciphertext is never more than half
    /// the buffer and plaintext is never longer than the records it came in,
    /// so it always fits. `buf` must hold more than two of the largest
    /// records (2 x 18 KiB); the loop's holds 64 KiB.
    ///
    /// At most `RECORDS_PER_READ` (64) whole records are processed per call
    /// once the handshake is done; the rest of what was read waits in
    /// `incoming`, and the call says it did not drain the socket, so the
    /// connection is visited again and the next call takes them first.
    pub fn read_records(&mut self, sock: &mut impl Read, buf: &mut [u8]) -> Input {
        debug_assert!(buf.len() > 2 * MAX_RECORD + 4096, "read buffer too small");
        let (plain, cipher) = buf.split_at_mut(buf.len() / 2);
        if self.unseen > 0 {
            return self.read_backlog(plain);
        }
        let held = self.incoming.len();
        // What is held is the start of one record, except while a handshake
        // message split across records is being joined.
        if held > MAX_RECORD {
            return self.read_big(sock, plain);
        }
        cipher[..held].copy_from_slice(&self.incoming);
        let got = match read_some(sock, &mut cipher[held..]) {
            Ok(n) => n,
            Err(end) => return self.stopped(end),
        };
        let drained = held + got < cipher.len();
        let filled = &mut cipher[..held + got];
        match self.process_some(filled, held, plain) {
            Ok((used, plaintext)) => {
                self.hold(&filled[used..]);
                Input::Read {
                    plaintext,
                    drained: drained && self.unseen == 0,
                    advanced: used > 0 || held == 0,
                }
            }
            Err(e) => Input::Rejected(self.reject(e)),
        }
    }

    /// [`read_records`](Self::read_records) while records an earlier read
    /// brought are waiting: the next of them, without reading. Never says
    /// the socket is drained: it was not looked at.
    fn read_backlog(&mut self, plain: &mut [u8]) -> Input {
        let seen = seen(&self.incoming, self.unseen);
        let mut input = std::mem::take(&mut self.incoming);
        match self.process_some(&mut input, seen, plain) {
            Ok((used, plaintext)) => {
                self.hold(&input[used..]);
                Input::Read {
                    plaintext,
                    drained: false,
                    advanced: used > 0,
                }
            }
            Err(e) => Input::Rejected(self.reject(e)),
        }
    }

    /// [`process`](Self::process) on at most the first [`RECORDS_PER_READ`]
    /// whole records of `input`, once the handshake is done; sets `unseen`
    /// to what is left over.
    ///
    /// Why a bound: a record's cost is mostly fixed (a decryption's set-up),
    /// so half a read buffer of the smallest records (32 empty ones, then a
    /// byte, over and over: all rustls allows) is some 1,500 of them, a
    /// hundred times a data read's work. Bounded, such a read costs about
    /// what one of full records does, and the rest waits its turn.
    ///
    /// `seen` is how much of `input`'s start rustls was shown before. The
    /// window never ends inside it: rustls may have processed all of it
    /// without letting it go (a handshake message being joined, whose
    /// records it has rewritten in place, so their headers no longer say
    /// where records end), and it must be shown at least that much again.
    fn process_some(
        &mut self,
        input: &mut [u8],
        seen: usize,
        plain: &mut [u8],
    ) -> Result<(usize, usize), rustls::Error> {
        let windowed = !self.conn.is_handshaking();
        let most = if windowed {
            RECORDS_PER_READ
        } else {
            usize::MAX
        };
        let (end, records) = records_end(input, most);
        let end = end.max(seen);
        self.records = self.records.saturating_add(records);
        let (used, plaintext) = self.process(&mut input[..end], plain)?;
        // After the handshake the only handshake message a client sends is
        // a KeyUpdate, five bytes. One that a whole window of records could
        // not finish, or that holds more than a record's worth of input
        // unfinished, is an attack on our memory (a byte per record, each
        // padded to 16 KiB, would make rustls keep a gigabyte): refused.
        // (What follows a close_notify is never read: `hold` drops it.)
        let stuck = (used == 0 && end < input.len()) || end - used > MAX_RECORD;
        if windowed && stuck && !self.ended {
            return Err(rustls::Error::General(
                "a handshake message split across too many records".into(),
            ));
        }
        // Whatever the window left, even the start of a record only: rustls
        // has not been shown it, and must not be outside a read (it judges a
        // record's header before the record is whole).
        self.unseen = if self.ended { 0 } else { input.len() - end };
        Ok((used, plaintext))
    }

    /// [`read_records`](Self::read_records) while a handshake message
    /// longer than a record (a long client certificate chain) is joined: it
    /// grows in `incoming` instead, by a record's worth per read. Only
    /// during the handshake (`process_some` refuses it after), and only up
    /// to `MAX_JOINED`: rustls bounds the message at 64 KiB, but not the
    /// records it comes in, which a peer may pad. No application data can
    /// come before the handshake's end, so the plaintext is at most what
    /// this read brought: it fits.
    fn read_big(&mut self, sock: &mut impl Read, plain: &mut [u8]) -> Input {
        let held = self.incoming.len();
        if held + MAX_RECORD > MAX_JOINED {
            let e = rustls::Error::General("a handshake message held too long".into());
            return Input::Rejected(self.reject(e));
        }
        let mut input = std::mem::take(&mut self.incoming);
        input.resize(held + MAX_RECORD, 0);
        let got = match read_some(sock, &mut input[held..]) {
            Ok(n) => n,
            Err(end) => {
                input.truncate(held);
                self.incoming = input;
                return self.stopped(end);
            }
        };
        input.truncate(held + got);
        let (_, records) = records_end(&input, usize::MAX);
        self.records = self.records.saturating_add(records);
        match self.process(&mut input, plain) {
            Ok((used, plaintext)) => {
                self.hold(&input[used..]);
                Input::Read {
                    plaintext,
                    drained: got < MAX_RECORD,
                    advanced: used > 0,
                }
            }
            Err(e) => Input::Rejected(self.reject(e)),
        }
    }

    /// A read that brought no bytes: notes the end of input.
    fn stopped(&mut self, end: Input) -> Input {
        if matches!(end, Input::Eof) {
            self.ended = true;
        }
        end
    }

    /// Keeps `rest`, the start of a record, for the next read; frees the
    /// buffer when there is none. Once the peer has ended (close_notify),
    /// nothing more is read: what came after it is dropped, not held.
    fn hold(&mut self, rest: &[u8]) {
        if rest.is_empty() || self.ended {
            self.incoming = Vec::new();
        } else {
            self.incoming.clear();
            self.incoming.extend_from_slice(rest);
        }
    }

    /// Lets rustls act on `input`: it answers handshake messages (queued in
    /// `outgoing`) and decrypts application data (copied into `plain`).
    /// Stops when it needs more input. Returns how much of `input` it used
    /// (what is left is the start of a record) and the plaintext's length.
    fn process(
        &mut self,
        input: &mut [u8],
        plain: &mut [u8],
    ) -> Result<(usize, usize), rustls::Error> {
        // While handshaking, the ClientHello may be among these records:
        // the name it asked for is noted as rustls processes it (`sni.rs`).
        if !self.conn.is_handshaking() {
            return self.process_records(input, plain);
        }
        super::sni::take();
        let result = self.process_records(input, plain);
        if let Some(name) = super::sni::take() {
            self.server_name = Some(name);
        }
        result
    }

    /// [`process`](Self::process), once the name is taken care of.
    fn process_records(
        &mut self,
        input: &mut [u8],
        plain: &mut [u8],
    ) -> Result<(usize, usize), rustls::Error> {
        let (mut used, mut n) = (0, 0);
        loop {
            let status = self.conn.process_tls_records(&mut input[used..]);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    self.alert(&mut input[used + discard..]);
                    return Err(e);
                }
            };
            let more = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        let end = n + record.payload.len();
                        let Some(room) = plain.get_mut(n..end) else {
                            // Cannot happen (plaintext is shorter than its
                            // records); refused rather than panicking.
                            return Err(rustls::Error::General(
                                "no room for decrypted data".into(),
                            ));
                        };
                        room.copy_from_slice(record.payload);
                        n = end;
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(&mut self.outgoing, &mut data);
                    true
                }
                // `outgoing` holds them until the socket takes them.
                ConnectionState::TransmitTlsData(data) => {
                    data.done();
                    true
                }
                ConnectionState::PeerClosed => {
                    self.ended = true;
                    true
                }
                ConnectionState::Closed => {
                    self.ended = true;
                    false
                }
                // BlockedHandshake or WriteTraffic: the input is used up
                // (early data is never accepted: `max_early_data_size` is 0).
                _ => false,
            };
            used += discard;
            if !more {
                return Ok((used, n));
            }
        }
    }

    /// After an error: takes the alert rustls prepared saying why. It hands
    /// out queued records before it looks at the input again, so asking
    /// only while records are queued never processes the input twice.
    /// `rest` is the input it has not discarded: rustls must be shown it on
    /// every call.
    fn alert(&mut self, rest: &mut [u8]) {
        // (`CommonState::wants_write`: records are queued inside rustls.)
        while self.conn.wants_write() {
            match self.conn.process_tls_records(rest).state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.outgoing, &mut data)
                }
                _ => return,
            }
        }
    }

    /// After an error: the session is over; what it held is dropped.
    fn reject(&mut self, e: rustls::Error) -> rustls::Error {
        self.incoming = Vec::new();
        self.unseen = 0;
        e
    }

    /// Moves whatever rustls has queued without new input (tickets, a key
    /// update's answer) into `outgoing`. Returns true if application data
    /// may be sent now.
    fn pump(&mut self) -> bool {
        // rustls must be shown the input it has not discarded yet (the
        // start of a record) on every call, even one that reads nothing;
        // but not the backlog, which would be processed here.
        let mut held = std::mem::take(&mut self.incoming);
        let ready = loop {
            let seen = seen(&held, self.unseen);
            let status = self.conn.process_tls_records(&mut held[..seen]);
            let discard = status.discard;
            let step = match status.state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.outgoing, &mut data);
                    None
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    None
                }
                Ok(ConnectionState::WriteTraffic(_)) => Some(true),
                _ => Some(false),
            };
            held.drain(..discard);
            if let Some(ready) = step {
                break ready;
            }
        };
        self.incoming = held;
        ready
    }

    /// Encrypts `plaintext` into records for the socket. Returns the bytes
    /// taken: all of them once the handshake is done, none before.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        if plaintext.is_empty() || !self.pump() {
            return Ok(0);
        }
        // (As in `pump`: the backlog is not shown.)
        let seen = seen(&self.incoming, self.unseen);
        let Ok(ConnectionState::WriteTraffic(mut traffic)) = self
            .conn
            .process_tls_records(&mut self.incoming[..seen])
            .state
        else {
            return Ok(0);
        };
        // The records' headers and tags: 22 bytes each for TLS 1.3's
        // AES-GCM, fewer for TLS 1.2; rustls says if it needs more.
        let overhead = (plaintext.len() / MAX_PLAINTEXT + 1) * 32;
        grow_with(
            &mut self.outgoing,
            plaintext.len() + overhead,
            |out| match traffic.encrypt(plaintext, out) {
                Ok(n) => Ok(n),
                Err(EncryptError::InsufficientSize(e)) => Err(Some(e.required_size)),
                Err(_) => Err(None),
            },
        )
        .map(|_| plaintext.len())
        .ok_or_else(|| io::Error::other("TLS: the encryption key is used up"))
    }

    /// Queues close_notify, if the handshake is done (before it, the FIN
    /// that follows says enough).
    pub fn send_close_notify(&mut self) {
        if !self.pump() {
            return;
        }
        let seen = seen(&self.incoming, self.unseen);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = self
            .conn
            .process_tls_records(&mut self.incoming[..seen])
            .state
        {
            grow_with(&mut self.outgoing, 64, |out| {
                match traffic.queue_close_notify(out) {
                    Ok(n) => Ok(n),
                    Err(EncryptError::InsufficientSize(e)) => Err(Some(e.required_size)),
                    Err(_) => Err(None),
                }
            });
        }
    }

    /// Writes the queued records to `sock` until none is left or the socket
    /// refuses more. Returns `Ok(true)` when all is written (and the buffer
    /// freed), `Ok(false)` on `WouldBlock`.
    pub fn write_records(&mut self, sock: &mut impl Write) -> io::Result<bool> {
        while self.sent < self.outgoing.len() {
            match sock.write(&self.outgoing[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Ok(true)
    }
}

/// Lets a [`WriteQueue`](crate::buffer::WriteQueue) write plaintext into a
/// session: each slice becomes records in one batch.
pub struct Encrypting<'a>(pub &'a mut ServerSession);

impl Write for Encrypting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.encrypt(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Up to about one socket write's worth at a time, like the plain
        // path's vectored write.
        let mut taken = 0;
        for buf in bufs {
            if taken >= BATCH {
                break;
            }
            let n = self.0.encrypt(buf)?;
            taken += n;
            if n < buf.len() {
                break;
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One read from the socket into `space`: the bytes read, or why none.
fn read_some(sock: &mut impl Read, space: &mut [u8]) -> Result<usize, Input> {
    loop {
        return match sock.read(space) {
            Ok(0) => Err(Input::Eof),
            Ok(n) => Ok(n),
            // The OS saying "not now".
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Input::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(Input::Failed(e)),
        };
    }
}

/// The most plaintext one record carries (RFC 8446 5.1).
const MAX_PLAINTEXT: usize = 16 * 1024;

/// The largest record rustls accepts: header, 16 KiB and expansion.
const MAX_RECORD: usize = 18 * 1024 + 5;

/// The most input a session holds while rustls joins a handshake message
/// (`read_big`): the largest message rustls accepts, 64 KiB, in records of
/// the largest size, with room for the start of the next.
const MAX_JOINED: usize = 64 * 1024 + 2 * MAX_RECORD;

/// Whole records one [`ServerSession::read_records`] call processes at
/// most after the handshake. A read of full records holds two or three; a
/// peer sending small records one at a time rarely sends more than a few
/// between two reads; 64 records of the smallest kind cost about what a
/// read of full ones does (`process_some`).
const RECORDS_PER_READ: usize = 64;

/// How much of `held` (a session's `incoming`) rustls has been shown: all
/// but its last `unseen` bytes, the backlog.
fn seen(held: &[u8], unseen: usize) -> usize {
    held.len() - unseen
}

/// The length of the first `most` whole records at the start of `input`
/// (all of it if it holds no more), and how many whole records that is,
/// read from their headers (type, version, a 2-byte length). A length no
/// record can have (the peer broke the protocol, or `input` starts inside
/// a handshake message being joined) ends the count there: rustls is
/// given everything, and judges.
fn records_end(input: &[u8], most: usize) -> (usize, u32) {
    let (mut at, mut records) = (0, 0);
    while (records as usize) < most {
        let Some(header) = input.get(at..at + 5) else {
            break;
        };
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if len > MAX_RECORD - 5 || at + 5 + len > input.len() {
            break;
        }
        at += 5 + len;
        records += 1;
        if at == input.len() {
            return (at, records);
        }
    }
    if (records as usize) < most {
        (input.len(), records)
    } else {
        (at, records)
    }
}

/// How much plaintext one vectored write encrypts at most.
const BATCH: usize = 64 * 1024;

/// Encodes a handshake record rustls prepared onto the end of `out`.
fn encode(out: &mut Vec<u8>, data: &mut EncodeTlsData<'_, ServerConnectionData>) {
    grow_with(out, 1024, |room| match data.encode(room) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(e)) => Err(Some(e.required_size)),
        Err(_) => Err(None),
    });
}

/// Appends to `out` what `write` puts into the room it is given: `guess`
/// bytes first, then as many as it says it needs (`Err(Some(n))`).
/// `Err(None)` is a failure: nothing is appended, and `None` returned.
fn grow_with(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Option<usize> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Some(n);
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                out.truncate(start);
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
