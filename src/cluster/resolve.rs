//! Finding Redis's address without blocking the loop.
//!
//! An address in the URL is used as it is. A host name is looked up with
//! the system's resolver (`getaddrinfo`, as every other lookup in
//! monoloop), which blocks: so each lookup runs on a short-lived thread,
//! which sends its answer back on a channel and wakes the loop through a
//! socket pair registered in its poll (the loop's own waker belongs to the
//! workers' hub). At most one lookup is in flight. A name is looked up
//! again before every reconnect, so a managed Redis that fails over by
//! moving its name is found where it went.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::mpsc;

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

/// The answer to one lookup.
pub type Answer = io::Result<Vec<SocketAddr>>;

/// Where Redis is, and the lookup in flight if any.
#[derive(Debug)]
pub struct Resolver {
    host: String,
    port: u16,
    /// The host, when it is an address.
    literal: Option<IpAddr>,
    /// The loop's end of the wake-up pair, registered under `token`.
    wake: Option<UnixStream>,
    token: Token,
    /// The thread's end, cloned for each lookup.
    poke: Option<StdUnixStream>,
    pending: Option<mpsc::Receiver<Answer>>,
}

/// What [`Resolver::start`] found.
#[derive(Debug)]
pub enum Lookup {
    /// The host is an address: here it is.
    Now(SocketAddr),
    /// A lookup runs; its answer comes with a wake-up.
    Later,
}

impl Resolver {
    pub fn new(host: &str, port: u16, token: Token) -> Self {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Self {
            host: host.to_string(),
            port,
            literal: bare.parse().ok(),
            wake: None,
            token,
            poke: None,
            pending: None,
        }
    }

    /// Starts finding the address: at once for an address, on a thread for
    /// a name (unless a lookup is already in flight, whose answer serves).
    pub fn start(&mut self, registry: &Registry) -> io::Result<Lookup> {
        if let Some(ip) = self.literal {
            return Ok(Lookup::Now(SocketAddr::new(ip, self.port)));
        }
        if self.pending.is_some() {
            return Ok(Lookup::Later);
        }
        if self.wake.is_none() {
            let (ours, theirs) = StdUnixStream::pair()?;
            ours.set_nonblocking(true)?;
            let mut ours = UnixStream::from_std(ours);
            registry.register(&mut ours, self.token, Interest::READABLE)?;
            self.wake = Some(ours);
            self.poke = Some(theirs);
        }
        let mut poke = self.poke.as_ref().expect("made above").try_clone()?;
        let (tx, rx) = mpsc::channel();
        let (host, port) = (self.host.clone(), self.port);
        std::thread::Builder::new()
            .name("monoloop-resolve".into())
            .spawn(move || {
                let answer = (host.as_str(), port).to_socket_addrs().map(Vec::from_iter);
                let _ = tx.send(answer);
                let _ = poke.write_all(&[1]);
            })?;
        self.pending = Some(rx);
        Ok(Lookup::Later)
    }

    /// The wake-up came: the lookup's answer, if it is there.
    pub fn answer(&mut self) -> Option<Answer> {
        if let Some(wake) = self.wake.as_mut() {
            let mut drain = [0u8; 16];
            while matches!(wake.read(&mut drain), Ok(n) if n > 0) {}
        }
        let answer = self.pending.as_ref()?.try_recv().ok()?;
        self.pending = None;
        Some(answer)
    }
}
