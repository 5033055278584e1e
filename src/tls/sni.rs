//! The name a client asked for (SNI), for the access log.
//!
//! rustls's unbuffered server connection, which the server's session is
//! built on (`session.rs`), does not say which name the ClientHello named:
//! `server_name()` belongs to its buffered `ServerConnection` only (as of
//! 0.23). The one place the name passes through our code is the
//! certificate resolver, which rustls asks with the ClientHello, on the
//! thread that is processing it, before it chooses a certificate, full
//! handshake or resumed ([`NotesServerName`]). So the resolver notes the
//! name in a slot of that thread's, and the session that was processing
//! takes it out right after ([`take`]): one loop is one thread, and a
//! session processes one ClientHello at a time, so the note is always its
//! own. The resolver answers as the one it wraps did.

use std::cell::RefCell;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

thread_local! {
    /// The name the last ClientHello processed on this thread asked for.
    static NOTED: RefCell<Option<Box<str>>> = const { RefCell::new(None) };
}

/// Takes the name the ClientHello just processed on this thread asked for,
/// if one did. Call after each processing of a handshake's records; a
/// call before clears a note nobody took.
pub fn take() -> Option<Box<str>> {
    NOTED.with(|n| n.borrow_mut().take())
}

/// A certificate resolver that notes the name the client asked for, then
/// asks the resolver it wraps.
#[derive(Debug)]
pub struct NotesServerName(pub Arc<dyn ResolvesServerCert>);

impl ResolvesServerCert for NotesServerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(Box::from);
        NOTED.with(|n| *n.borrow_mut() = name);
        self.0.resolve(hello)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.0.only_raw_public_keys()
    }
}
