//! Why a connection ended: one enum, told to the protocol
//! (`Protocol::closed`), written in the debug log (its `Display`) and in the
//! access log's `end=` field ([`CloseReason::word`]).
//!
//! It sits low, below both the connection (which remembers why a graceful
//! close began) and the protocols (which are told), so that neither has to
//! import the other.

/// Why a connection ended, as told to `Protocol::closed` and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer finished and everything owed was sent.
    Done,
    /// The protocol asked to close (a `/quit`, a refused request, a line
    /// too long) and everything owed was sent.
    Protocol,
    /// No traffic either way for the idle timeout.
    IdleTimeout,
    /// A prompt went unanswered for `--request-timeout`, or a line was not
    /// finished within the idle timeout of its first byte.
    RequestTimeout,
    /// The peer reset the connection or vanished (ECONNRESET, EPIPE, ...).
    Reset,
    /// The socket failed some other way.
    Error,
    /// The TLS handshake failed, or a TLS record was refused.
    TlsFailure,
    /// The TLS handshake did not finish within `--handshake-timeout`.
    HandshakeTimeout,
    /// A closing connection could not deliver what it owed in time.
    Expired,
    /// Output from others piled up past `--write-limit`: the peer is not
    /// reading.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// Turned away at `--max-connections` (on a TLS or PROXY listener,
    /// after the handshake or header that lets it be told so).
    ServerFull,
    /// Turned away at `--max-per-ip`.
    TooManyFromAddress,
    /// Refused by `--allow`/`--deny`, or not a trusted `--proxy-from` peer.
    Denied,
    /// The PROXY protocol header was bad, or did not arrive in time.
    ProxyError,
    /// The output is incomplete (a file shrank while it was sent, or the
    /// shutdown's drain timeout came while output was still owed): the
    /// connection ends with a reset, so the peer cannot take it for whole.
    Truncated,
    /// A health check: the peer closed (FIN or reset) without a byte of its
    /// own, before its TCP had acknowledged a byte of ours, so before it
    /// could have read one (`event_loop/closing.rs`, `ends_as_check`).
    /// Counted in `checks`, not as a client.
    Check,
}

impl CloseReason {
    /// One word for the access log's `end=` field.
    pub fn word(self) -> &'static str {
        match self {
            CloseReason::Done => "done",
            CloseReason::Protocol => "closed",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::RequestTimeout => "request_timeout",
            CloseReason::Reset => "reset",
            CloseReason::Error => "error",
            CloseReason::TlsFailure => "tls_failure",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Expired => "close_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ServerFull => "server_full",
            CloseReason::TooManyFromAddress => "per_ip",
            CloseReason::Denied => "denied",
            CloseReason::ProxyError => "proxy_error",
            CloseReason::Truncated => "truncated",
            CloseReason::Check => "check",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::Done => "done",
            CloseReason::Protocol => "closed by the server after its reply",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::RequestTimeout => "request timeout",
            CloseReason::Reset => "reset by the client",
            CloseReason::Error => "socket error",
            CloseReason::TlsFailure => "TLS failure",
            CloseReason::HandshakeTimeout => "TLS handshake timed out",
            CloseReason::Expired => "could not deliver what it was owed in time",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::Shutdown => "server shutdown",
            CloseReason::ServerFull => "server full",
            CloseReason::TooManyFromAddress => "too many connections from its address",
            CloseReason::Denied => "denied",
            CloseReason::ProxyError => "bad or missing PROXY header",
            CloseReason::Truncated => "output cut short: reset sent",
            CloseReason::Check => "a health check: closed by the peer without a word",
        })
    }
}
