//! The bytes under a link: plain TCP (`redis://`), or TLS over it
//! (`rediss://`), as one non-blocking read and write.
//!
//! TLS to Redis is a client session of rustls's buffered API
//! (`rustls::ClientConnection`): the link hands it plaintext, which it
//! keeps until the handshake is done and then encrypts, and asks it for
//! plaintext, which it decrypts from what the socket gave. The handshake
//! itself needs no code of its own: the link's first commands (AUTH,
//! SELECT or PING) wait in the session while it runs, and the connect's
//! deadline bounds it. Unlike the server's sessions (`tls/session.rs`),
//! which keep no buffer while idle because there may be thousands of them,
//! there are two of these per worker, so the simpler API is the right one.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// A connected (or connecting) socket, with TLS or without.
#[derive(Debug)]
pub struct Transport {
    pub socket: TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Transport {
    pub fn plain(socket: TcpStream) -> Self {
        Self {
            socket,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// TLS over `socket`, to the server named `name`.
    #[cfg(feature = "tls")]
    pub fn tls(socket: TcpStream, tls: rustls::ClientConnection) -> Self {
        Self {
            socket,
            tls: Some(Box::new(tls)),
        }
    }

    /// Plaintext into `buf`: `Ok(0)` at the end of the stream,
    /// `WouldBlock` when the socket has nothing more now.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            loop {
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // No plaintext yet: more records from the socket.
                match tls.read_tls(&mut self.socket)? {
                    0 => return Ok(0),
                    _ => {
                        tls.process_new_packets()
                            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
                        // The handshake may have something to say back.
                        pump(tls, &mut self.socket)?;
                    }
                }
            }
        }
        self.socket.read(buf)
    }

    /// Plaintext from `data`; how much was taken, or `WouldBlock`.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            let n = tls.writer().write(data)?;
            pump(tls, &mut self.socket)?;
            if n == 0 && !data.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            return Ok(n);
        }
        self.socket.write(data)
    }

    /// Records the session still owes the socket (TLS only): the link
    /// then waits for WRITABLE too.
    pub fn owes(&mut self) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            pump(tls, &mut self.socket)?;
            return Ok(tls.wants_write());
        }
        Ok(false)
    }
}

/// Writes the session's records until it has none or the socket is full.
#[cfg(feature = "tls")]
fn pump(tls: &mut rustls::ClientConnection, socket: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
