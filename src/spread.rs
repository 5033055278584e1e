//! Spreading connections over the workers (`--workers N`): the rule that
//! says which worker serves a connection one of them has just accepted
//! ([`choose`]), and the channels that hand it over ([`Handoff`]). The
//! counts the rule reads are `worker_link::Slots`'; the loop asks the rule
//! at accept (`event_loop/admission.rs`).
//!
//! Which worker *accepts* a connection is the kernel's choice, and the
//! kernel does not know how many each worker already serves:
//!
//! - on the workers' own sockets (`SO_REUSEPORT`), a hash of the
//!   connection's addresses and ports picks the socket: many connections
//!   spread evenly, a few do not (40 clients went 12 / 28 over two
//!   workers as readily as 20 / 20);
//! - on the one socket systemd passed, every idle worker is woken for each
//!   connection and whoever runs first takes it: 40 clients 20 ms apart
//!   went 5 / 35, and a burst of 200 went 198 / 2.
//!
//! So the worker that accepted a connection asks [`choose`] where it
//! belongs. If this worker serves more than the least loaded one by more
//! than a slack (one connection, plus 1/16 of the average, so that a busy
//! server is not forever moving connections to undo the hash's small
//! unevenness), the connection goes to that worker before a byte is read:
//! one channel send and one wake ([`Handoff::send`]), and the receiver
//! takes it in as if it had accepted it (its limit, its gate, its TLS
//! handshake, its log lines). A handed connection counts in its receiver's
//! load from the moment it is sent, so that a burst accepted by one worker
//! is spread at once, even while the others are still asleep. Seastar's
//! `connection_distribution` load balancing does the same: one hop for a
//! connection that is moved, and none while the spread is even.
//!
//! What is balanced is connections being served now, not connections ever
//! accepted: short connections leave no load behind, and a worker busy
//! with them is the one that wakes last.
//!
//! A worker whose loop stopped turning still gets a few connections
//! before its load, which counts them, makes it no longer the least
//! loaded. A worker that begins its shutdown, or whose loop failed, is
//! retired (`worker_link::Slots::retire`, [`RETIRED`]): it is never chosen
//! again, so the others go on spreading among themselves; a connection
//! handed to it just before is closed as a closed listener would refuse
//! it, and one whose send fails (its loop has ended) is served where it
//! was accepted.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};

use mio::net::TcpStream;
use mio::Waker;

/// Where a connection just accepted goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This worker serves it.
    Keep,
    /// Worker `n` serves fewer by more than the slack: it goes there.
    HandTo(usize),
}

/// The rule: worker `me` has just accepted a connection, and `loads[i]` is
/// how many worker `i` serves (or has on their way to it). It keeps the
/// connection unless it serves more than the least loaded worker by more
/// than the slack; then that worker (the first of them, if several) takes
/// it.
pub fn choose(me: usize, loads: &[usize]) -> Route {
    let live = || loads.iter().copied().filter(|&load| load != RETIRED);
    let Some((least, &fewest)) = loads
        .iter()
        .enumerate()
        .filter(|&(_, &load)| load != RETIRED)
        .min_by_key(|&(_, load)| *load)
    else {
        return Route::Keep;
    };
    let mine = loads.get(me).copied().unwrap_or(0);
    if mine != RETIRED && mine > fewest + slack(live()) {
        Route::HandTo(least)
    } else {
        Route::Keep
    }
}

/// How far ahead of the least loaded worker a worker may be and still keep
/// what it accepts: one connection, and 1/16 of the average load. All
/// accepted by one worker, 40 connections over two end 21 / 19, 200 end
/// 104 / 96 and 1000 end 516 / 484: a large server moves few connections
/// to undo small differences.
fn slack(live: impl Iterator<Item = usize>) -> usize {
    let (n, total) = live.fold((0, 0), |(n, total), load| (n + 1, total + load));
    1 + total / (16 * n).max(1)
}

/// A worker's load as [`choose`] reads it once the worker takes no more
/// connections (`worker_link::Slots::retire`): it is never chosen, and its
/// connections do not count in the others' slack.
pub const RETIRED: usize = usize::MAX;

/// A connection on its way from the worker that accepted it to the one
/// that serves it.
#[derive(Debug)]
pub struct Handed {
    pub stream: TcpStream,
    pub peer: SocketAddr,
}

/// Another worker, as a handoff reaches it.
#[derive(Debug)]
struct Peer {
    to: mpsc::Sender<Handed>,
    waker: Arc<Waker>,
}

/// One worker's end of the handoff: its inbox, and a way to reach every
/// worker's (its own included, never used).
#[derive(Debug)]
pub struct Handoff {
    inbox: mpsc::Receiver<Handed>,
    peers: Vec<Peer>,
}

impl Handoff {
    /// The handoffs of `wakers.len()` workers; `wakers[i]` wakes worker
    /// `i`'s loop (the same waker the hub uses: mio allows one per poll).
    pub fn mesh(wakers: &[Arc<Waker>]) -> Vec<Handoff> {
        let (senders, inboxes): (Vec<_>, Vec<_>) =
            wakers.iter().map(|_| mpsc::channel::<Handed>()).unzip();
        inboxes
            .into_iter()
            .map(|inbox| Handoff {
                inbox,
                peers: senders
                    .iter()
                    .zip(wakers)
                    .map(|(to, waker)| Peer {
                        to: to.clone(),
                        waker: waker.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Sends `handed` to worker `to` and wakes it. Gives the connection
    /// back if that worker's loop has ended, or there is no such worker.
    pub fn send(&self, to: usize, handed: Handed) -> Result<(), Handed> {
        let Some(peer) = self.peers.get(to) else {
            return Err(handed);
        };
        peer.to.send(handed).map_err(|e| e.0)?;
        if let Err(e) = peer.waker.wake() {
            // Its loop will still find the connection on its next wake.
            log::warn!("cannot wake worker {to}: {e}");
        }
        Ok(())
    }

    /// A connection another worker handed to this one, if any is waiting.
    pub fn take(&self) -> Option<Handed> {
        self.inbox.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_keeps_what_it_accepts_until_it_is_ahead_by_more_than_the_slack() {
        assert_eq!(choose(0, &[0, 0]), Route::Keep);
        assert_eq!(
            choose(1, &[0, 1]),
            Route::Keep,
            "one ahead is within the slack"
        );
        assert_eq!(choose(1, &[0, 2]), Route::HandTo(0));
        assert_eq!(
            choose(0, &[3, 1, 1, 2]),
            Route::HandTo(1),
            "the first of the least"
        );
        assert_eq!(choose(2, &[5, 5, 5]), Route::Keep);
        // The slack grows with the load: 1 + 1/16 of the average.
        assert_eq!(choose(0, &[104, 100]), Route::Keep);
        assert_eq!(choose(0, &[107, 100]), Route::Keep);
        assert_eq!(choose(0, &[108, 100]), Route::HandTo(1));
        assert_eq!(choose(0, &[]), Route::Keep);
    }

    /// A worker that takes no more (shut down, or its loop failed) is
    /// never chosen, however few it serves, and the others go on spreading
    /// among themselves.
    #[test]
    fn a_retired_worker_is_never_chosen() {
        assert_eq!(choose(0, &[5, RETIRED, 2]), Route::HandTo(2));
        assert_eq!(choose(0, &[2, RETIRED]), Route::Keep);
        assert_eq!(choose(1, &[RETIRED, 3, 0]), Route::HandTo(2));
        assert_eq!(choose(0, &[RETIRED, RETIRED]), Route::Keep);
        // Its load counts in nobody's slack (no overflow either).
        assert_eq!(choose(0, &[3, RETIRED, 0]), Route::HandTo(2));
    }

    /// What the rule makes of connections that all reach one worker (the
    /// first to wake, on a shared socket): an even spread, within the
    /// slack, whatever the others do meanwhile.
    #[test]
    fn connections_that_all_reach_one_worker_end_evenly_spread() {
        for (workers, n, expected) in [
            (2, 40, vec![21, 19]),
            (2, 200, vec![104, 96]),
            (2, 1000, vec![516, 484]),
            (4, 1000, vec![262, 246, 246, 246]),
        ] {
            let mut loads = vec![0usize; workers];
            for _ in 0..n {
                match choose(0, &loads) {
                    Route::Keep => loads[0] += 1,
                    Route::HandTo(to) => loads[to] += 1,
                }
            }
            assert_eq!(loads, expected);
            let (most, least) = (loads.iter().max().unwrap(), loads.iter().min().unwrap());
            assert!(
                most - least <= slack(loads.iter().copied()) + 1,
                "{loads:?}"
            );
            // No worker above 120 % of its share (60 % of two workers').
            assert!(most * workers * 100 <= n * 120, "{loads:?}");
        }
    }

    #[test]
    fn a_handed_connection_reaches_its_worker_and_wakes_it() {
        let mut polls: Vec<_> = (0..2).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers: Vec<_> = polls
            .iter()
            .map(|p| Arc::new(Waker::new(p.registry(), mio::Token(7)).unwrap()))
            .collect();
        let handoffs = Handoff::mesh(&wakers);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let handed = Handed {
            stream: TcpStream::from_std(stream),
            peer,
        };
        assert!(handoffs[0].send(1, handed).is_ok());
        assert!(handoffs[0].take().is_none(), "not to the sender");
        let got = handoffs[1].take().expect("handed to worker 1");
        assert_eq!(got.peer, peer);
        let mut events = mio::Events::with_capacity(4);
        polls[1]
            .poll(&mut events, Some(std::time::Duration::from_secs(1)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        // A worker whose loop has ended gives the connection back.
        let mut handoffs = handoffs;
        drop(handoffs.pop());
        let back = handoffs[0].send(1, got).expect_err("nobody to take it");
        assert_eq!(back.peer, peer);
        assert!(handoffs[0].send(5, back).is_err(), "no worker 5");
    }
}
