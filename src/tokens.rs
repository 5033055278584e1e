//! The token map: every `mio::Token` that is not a connection's, in one
//! place.
//!
//! A connection's token is its slot and generation (`conn_table.rs`); its
//! low 32 bits are never all set. Every other token sets them all
//! ([`reserved`]), and is one of these:
//!
//! | token                      | what it wakes                              |
//! | -------------------------- | ------------------------------------------ |
//! | `reserved(0)`              | the (first) listener                       |
//! | `reserved(1)`              | the signal pipe                            |
//! | `reserved(2)`              | the waker: other workers sent words or     |
//! |                            | connections (`hub.rs`, `spread.rs`)        |
//! | `reserved(3)`              | the metrics listener (`metrics.rs`)        |
//! | `reserved(4)`, `(5)`       | the cluster link's writer and reader       |
//! |                            | (`cluster.rs`, `--cluster`)                |
//! | `reserved(6)`              | the cluster's resolver answered            |
//! | `reserved(8 + i)`, i ≥ 1   | further listeners (socket activation)      |
//! | `reserved(65536 + k)`      | metrics client `k` (`metrics.rs`)          |

use mio::Token;

pub use crate::conn_table::{is_reserved, reserved};

/// The listener's token; no connection can have it.
pub const LISTENER: Token = reserved(0);
/// The signal pipe's token.
pub const SIGNALS: Token = reserved(1);
/// The worker's waker: other workers sent messages (`hub.rs`) or
/// connections (`spread.rs`).
pub const WAKER: Token = reserved(2);
/// The metrics listener.
pub const METRICS: Token = reserved(3);
/// The cluster link's two connections to Redis, and its resolver's wake-up.
pub const CLUSTER_WRITER: Token = reserved(4);
pub const CLUSTER_READER: Token = reserved(5);
pub const CLUSTER_RESOLVED: Token = reserved(6);
/// The tokens of further listeners (sockets systemd passed beside the
/// first): `reserved(MORE_LISTENERS + i)`.
const MORE_LISTENERS: usize = 8;
/// At most this many listeners in one loop.
pub const MAX_LISTENERS: usize = 64;
/// Metrics clients' tokens are `reserved(METRICS_CLIENTS + slot)`.
pub const METRICS_CLIENTS: usize = 1 << 16;

/// The token of listener `i`.
pub fn listener_token(i: usize) -> Token {
    if i == 0 {
        LISTENER
    } else {
        reserved(MORE_LISTENERS + i)
    }
}

/// True if `token` is a listener's.
pub fn is_listener(token: Token) -> bool {
    (1..MAX_LISTENERS).any(|i| listener_token(i) == token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_uses_share_a_token() {
        let mut all = vec![
            LISTENER,
            SIGNALS,
            WAKER,
            METRICS,
            CLUSTER_WRITER,
            CLUSTER_READER,
            CLUSTER_RESOLVED,
        ];
        all.extend((1..MAX_LISTENERS).map(listener_token));
        all.push(reserved(METRICS_CLIENTS));
        let mut seen = all.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), all.len());
        assert!(all.iter().all(|&t| is_reserved(t)));
        const { assert!(MORE_LISTENERS + MAX_LISTENERS < METRICS_CLIENTS) };
        assert!(is_listener(listener_token(5)) && !is_listener(SIGNALS));
    }
}
