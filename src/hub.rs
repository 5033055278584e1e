//! The hub: what the relays (broadcast and chat) send beyond their own loop.
//!
//! A relay's members are spread over the workers (`workers.rs`): a line from
//! a client on worker 0 must reach every member on every worker, exactly
//! once and in the order it was sent; a chat name must be unique across all
//! of them. The hub is the loop's (`event_loop/relay.rs`): protocols never
//! see it, nor threads or channels; they publish, address a connection and
//! ask the registry through their context (`protocol::Ctx`), the loop
//! flushes what a turn said at its end and hands what arrives to the
//! protocol (`Protocol::remote`). A hub holds up to two links, each an
//! `Option`: to the other workers ([`Cross`]) and to the other instances
//! ([`Cluster`], `--cluster`, `cluster.rs`).
//!
//! - [`Hub::local`], with one worker and no cluster: there is nobody else,
//!   every call is a no-op, and nothing on the per-message path changes
//!   (chunks stay `Rc`).
//! - [`Hub::mesh`], with several workers: each worker has an inbox (a
//!   channel) and a `mio::Waker` registered in its poll. What a protocol sends during a
//!   turn is queued in its outbox and flushed at the end of the turn
//!   ([`Hub::flush`]): one channel send per message and peer, and one wake
//!   per peer per turn. The peer's loop sees the wake as an event like any
//!   other and hands the messages to its protocol ([`Hub::take`]), which
//!   delivers them to its own connections, one flush per receiver per
//!   delivery pass as for local lines. A line is encoded once, into an `Arc` that every
//!   worker's receivers share. A room message is heard by whoever was in
//!   the room where it arrives when it arrived: it is stamped as it enters
//!   the receiving worker's inbox ([`Hub::flush`], by this process's
//!   clock), never with a time the sender chose, which would mean nothing
//!   to another machine (the cluster link stamps a message when it reads
//!   it).
//!
//! A connection anywhere is named by an [`Address`]: the node (this
//! process is node 0; the cluster's roster numbers the other instances
//! from 1, `cluster/roster.rs`), the worker and the connection's token.
//!
//! Chat names live in a [`Registry`] behind a mutex, touched only when a
//! name is claimed, changed, looked up or released (`/who`, `/msg`), never
//! per message.
//!
//! With a cluster the same calls reach other machines: `publish` also
//! adds to the turn's stream entry, what the link read arrives through
//! [`Hub::arrived`] as what other workers sent does, and a claim is
//! answered by Redis, later ([`Claim::Pending`], then [`Hub::answers`]).

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Instant;

use mio::{Token, Waker};

#[cfg(feature = "cluster")]
use crate::cluster::{Arrived, Cluster, Verdict};

/// A connection anywhere in the server: node, worker, connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// The process: 0 is this one.
    pub node: u32,
    /// The worker (loop) within it.
    pub worker: u32,
    /// The connection's token within the worker.
    pub conn: Token,
}

/// A message between workers.
#[derive(Debug, Clone)]
pub enum Remote {
    /// For every member of the room on the receiving worker who was in it
    /// when the message arrived (`at`, by this process's clock): one who
    /// joined while it was on its way did not hear it said, and does not
    /// now.
    Room { chunk: Arc<[u8]>, at: Instant },
    /// For one connection of the receiving worker (a chat `/msg`).
    Direct { to: Token, chunk: Arc<[u8]> },
}

/// The answer to a claim on a name (`Ctx::claim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is the claimant's now.
    Granted,
    /// Someone else holds it.
    Taken,
    /// Redis did not answer in time (`--cluster`): the chat is unavailable
    /// to a new user for now.
    Unavailable,
    /// A name held was found taken by another instance after an outage
    /// (`--cluster`): its user here loses it. Not an answer to a claim.
    Lost,
    /// The registry answers later (one across machines): the protocol
    /// hears it in `Protocol::answer`. In one process a claim is never
    /// pending.
    Pending,
}

/// Where a chat name is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The name as its owner typed it.
    pub name: String,
    pub at: Address,
}

/// Chat names across every worker, keyed without regard to ASCII case.
#[derive(Debug, Default)]
pub struct Registry {
    names: BTreeMap<String, Holder>,
}

impl Registry {
    /// Who holds the name `key` (already lowercased), if anyone.
    pub fn get(&self, key: &str) -> Option<&Holder> {
        self.names.get(key)
    }

    /// Claims `key` for `holder`; false if someone else holds it.
    pub fn claim(&mut self, key: String, holder: Holder) -> bool {
        match self.names.get(&key) {
            Some(h) if h.at != holder.at => false,
            _ => {
                self.names.insert(key, holder);
                true
            }
        }
    }

    /// Claims `key` for `holder` in place of `previous` (the key it held,
    /// given up if the claim is granted); false if `key` is held, unless it
    /// is `previous` itself (renaming oneself to a case variant).
    pub fn claim_instead(&mut self, key: String, holder: Holder, previous: Option<&str>) -> bool {
        if previous != Some(key.as_str()) && self.names.contains_key(&key) {
            return false;
        }
        if let Some(old) = previous {
            self.release(old, holder.at);
        }
        self.claim(key, holder)
    }

    /// Gives `key` up, if `at` holds it.
    pub fn release(&mut self, key: &str, at: Address) {
        if self.names.get(key).is_some_and(|h| h.at == at) {
            self.names.remove(key);
        }
    }

    /// Every name, in the registry's (case-insensitive) order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.values().map(|h| h.name.as_str())
    }
}

/// Another worker, as a hub reaches it.
#[derive(Debug)]
struct Peer {
    id: usize,
    inbox: mpsc::Sender<Remote>,
    waker: Arc<Waker>,
}

/// What a turn said, waiting for [`Hub::flush`].
#[derive(Debug)]
enum Outgoing {
    Room(Arc<[u8]>),
    Direct(usize, Token, Arc<[u8]>),
}

/// The hub of one worker among several.
#[derive(Debug)]
pub struct Cross {
    id: usize,
    inbox: mpsc::Receiver<Remote>,
    peers: Vec<Peer>,
    /// Said this turn, for [`Hub::flush`]: to one worker (`Some`) or the
    /// room on every other.
    outbox: Vec<Outgoing>,
    registry: Arc<Mutex<Registry>>,
}

/// A relay's link to the other workers, and to other instances. See the
/// module documentation.
#[derive(Debug, Default)]
pub struct Hub {
    /// The other workers of this process; `None` with one worker.
    cross: Option<Box<Cross>>,
    /// The other instances, through Redis (`--cluster`); `None` without.
    /// A build without the cluster (cargo feature) has no such field.
    #[cfg(feature = "cluster")]
    cluster: Option<Box<Cluster>>,
}

impl Hub {
    /// One worker, no cluster: nobody else.
    pub fn local() -> Self {
        Self::default()
    }

    /// Builds the hubs of `wakers.len()` workers, each able to reach every
    /// other; `wakers[i]` wakes worker `i`'s loop.
    pub fn mesh(wakers: Vec<Arc<Waker>>) -> Vec<Hub> {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let (senders, receivers): (Vec<_>, Vec<_>) =
            wakers.iter().map(|_| mpsc::channel::<Remote>()).unzip();
        receivers
            .into_iter()
            .enumerate()
            .map(|(id, inbox)| {
                let peers = senders
                    .iter()
                    .zip(&wakers)
                    .enumerate()
                    .filter(|(other, _)| *other != id)
                    .map(|(other, (tx, waker))| Peer {
                        id: other,
                        inbox: tx.clone(),
                        waker: waker.clone(),
                    })
                    .collect();
                let mut hub = Hub::local();
                hub.cross = Some(Box::new(Cross {
                    id,
                    inbox,
                    peers,
                    outbox: Vec::new(),
                    registry: registry.clone(),
                }));
                hub
            })
            .collect()
    }

    /// This hub, also linked to the other instances through `cluster`.
    #[cfg(feature = "cluster")]
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(Box::new(cluster));
        self
    }

    /// True if there is anyone beyond this worker to reach: what the room
    /// says is then encoded once into an `Arc`, shared across threads.
    #[inline]
    pub fn reaches_out(&self) -> bool {
        #[cfg(feature = "cluster")]
        if self.cluster.is_some() {
            return true;
        }
        self.cross.is_some()
    }

    /// True while the link to other instances holds this worker's
    /// senders (Redis is catching up), as other workers' receivers can.
    #[inline]
    pub fn holding(&self) -> bool {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.cluster {
            return cluster.holding();
        }
        false
    }

    /// True while the link to other instances owes Redis something (a
    /// user's leave, say): a draining loop waits for it.
    pub fn owes(&self) -> bool {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.cluster {
            return cluster.owes();
        }
        false
    }

    /// The link to other instances, if any.
    #[cfg(feature = "cluster")]
    pub fn cluster(&mut self) -> Option<&mut Cluster> {
        self.cluster.as_deref_mut()
    }

    /// The link to other instances, to read.
    #[cfg(feature = "cluster")]
    pub fn cluster_ref(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }

    /// This worker's number (0 with one worker).
    pub fn worker(&self) -> usize {
        self.cross.as_ref().map_or(0, |c| c.id)
    }

    /// The address of this worker's connection `conn`.
    pub fn address(&self, conn: Token) -> Address {
        Address {
            node: 0,
            worker: self.worker() as u32,
            conn,
        }
    }

    /// Sends `chunk` to every member on every other worker, and instance.
    pub fn publish(&mut self, chunk: Arc<[u8]>) {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.as_deref_mut() {
            cluster.publish(&chunk);
        }
        if let Some(c) = self.cross.as_deref_mut() {
            c.outbox.push(Outgoing::Room(chunk));
        }
    }

    /// Sends `chunk` to the connection at `to`, on another worker of this
    /// node or on another instance.
    pub fn direct(&mut self, to: Address, chunk: Arc<[u8]>) {
        if to.node != 0 {
            #[cfg(feature = "cluster")]
            if let Some(cluster) = self.cluster.as_deref_mut() {
                cluster.direct(to.node, to.worker, to.conn, &chunk);
            }
            return;
        }
        if let Some(c) = self.cross.as_deref_mut() {
            c.outbox
                .push(Outgoing::Direct(to.worker as usize, to.conn, chunk));
        }
    }

    /// Sends what was queued this turn, in order, and wakes each peer that
    /// got something, once. Room messages arrive `now`. The cluster's
    /// entries for the turn go to its outbox, and to Redis if it is there.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub fn flush(&mut self, registry: &mio::Registry, now: Instant) {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.as_deref_mut() {
            cluster.flush(registry, now);
        }
        let Some(c) = self.cross.as_deref_mut() else {
            return;
        };
        if c.outbox.is_empty() {
            return;
        }
        let mut woken = vec![false; c.peers.len()];
        for outgoing in c.outbox.drain(..) {
            let (to, message) = match outgoing {
                Outgoing::Room(chunk) => (None, Remote::Room { chunk, at: now }),
                Outgoing::Direct(worker, to, chunk) => (Some(worker), Remote::Direct { to, chunk }),
            };
            for (i, peer) in c.peers.iter().enumerate() {
                if to.is_some_and(|w| w != peer.id) {
                    continue;
                }
                // A peer whose loop has stopped (shutdown) takes nothing.
                if peer.inbox.send(message.clone()).is_ok() {
                    woken[i] = true;
                }
            }
        }
        for (peer, woken) in c.peers.iter().zip(woken) {
            if woken {
                if let Err(e) = peer.waker.wake() {
                    log::warn!("cannot wake worker {}: {e}", peer.id);
                }
            }
        }
    }

    /// What other workers sent, oldest first.
    pub fn take(&mut self) -> Vec<Remote> {
        match self.cross.as_deref_mut() {
            None => Vec::new(),
            Some(c) => c.inbox.try_iter().collect(),
        }
    }

    /// The names registry shared by every worker; `None` with one worker.
    pub fn registry(&self) -> Option<MutexGuard<'_, Registry>> {
        // A worker that panicked while holding it aborted the process
        // (panic=abort), so a poisoned lock cannot be met in a release
        // build; in a test build, take the data as it is.
        let c = self.cross.as_deref()?;
        Some(c.registry.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Asks for the name `key` for `holder`, in place of `previous`.
    /// `None` when this worker is the whole server and keeps its names
    /// itself. With a cluster the answer is Redis's, later (`Pending`),
    /// but for a new spelling of one's own name, which is granted now.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub fn claim(
        &mut self,
        key: String,
        holder: Holder,
        previous: Option<&str>,
        now: Instant,
    ) -> Option<Claim> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.as_deref_mut() {
            if previous == Some(key.as_str()) {
                cluster.respell(&key, holder.at.conn, &holder.name);
                if let Some(mut registry) = self.registry() {
                    registry.claim(key, holder);
                }
                return Some(Claim::Granted);
            }
            let previous = previous.map(str::to_string);
            cluster.claim(holder.at.conn, key, holder.name, previous, now);
            return Some(Claim::Pending);
        }
        let granted = self.registry()?.claim_instead(key, holder, previous);
        Some(if granted {
            Claim::Granted
        } else {
            Claim::Taken
        })
    }

    /// What other instances sent (`--cluster`), as what other workers do.
    #[cfg(feature = "cluster")]
    pub fn arrived(&mut self) -> Vec<Remote> {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return Vec::new();
        };
        cluster
            .take_arrived()
            .into_iter()
            .map(|a| match a {
                Arrived::Room { chunk, at } => Remote::Room { chunk, at },
                Arrived::Direct { to, chunk } => Remote::Direct { to, chunk },
            })
            .collect()
    }

    /// Where the user holding `key` is, if on another instance.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub fn elsewhere(&mut self, key: &str) -> Option<Address> {
        #[cfg(feature = "cluster")]
        if let Some(e) = self.cluster.as_deref_mut()?.roster().find(key) {
            return Some(Address {
                node: e.node,
                worker: e.worker,
                conn: e.conn,
            });
        }
        None
    }

    /// The cluster's answers to claims, with this process's registry told
    /// of each grant: what the loop hands to the protocol.
    #[cfg(feature = "cluster")]
    pub fn answers(&mut self) -> Vec<(Token, Claim)> {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return Vec::new();
        };
        let answers = cluster.take_answers();
        let worker = self.worker() as u32;
        if let Some(mut registry) = self.registry() {
            for a in answers.iter().filter(|a| a.answer == Verdict::Granted) {
                let at = Address {
                    node: 0,
                    worker,
                    conn: a.conn,
                };
                let holder = Holder {
                    name: a.name.clone(),
                    at,
                };
                registry.claim_instead(a.key.clone(), holder, a.previous.as_deref());
            }
            for a in answers.iter().filter(|a| a.answer == Verdict::Lost) {
                let at = Address {
                    node: 0,
                    worker,
                    conn: a.conn,
                };
                registry.release(&a.key, at);
            }
        }
        let claim = |v| match v {
            Verdict::Granted => Claim::Granted,
            Verdict::Taken => Claim::Taken,
            Verdict::Unavailable => Claim::Unavailable,
            Verdict::Lost => Claim::Lost,
        };
        answers
            .into_iter()
            .map(|a| (a.conn, claim(a.answer)))
            .collect()
    }

    /// The user at `at` (of this worker) let `key` go.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub fn release(&mut self, key: &str, at: Address, now: Instant) {
        if let Some(mut registry) = self.registry() {
            registry.release(key, at);
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.as_deref_mut() {
            cluster.release(key, at.conn, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wakers(n: usize) -> (Vec<mio::Poll>, Vec<Arc<Waker>>) {
        let polls: Vec<_> = (0..n).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|p| Arc::new(Waker::new(p.registry(), Token(7)).unwrap()))
            .collect();
        (polls, wakers)
    }

    #[test]
    fn a_published_chunk_reaches_every_other_worker_once_in_order() {
        let (mut polls, w) = wakers(3);
        let mut hubs = Hub::mesh(w);
        hubs[0].publish(Arc::from(&b"one\n"[..]));
        let to = hubs[2].address(Token(5));
        hubs[0].direct(to, Arc::from(&b"psst\n"[..]));
        hubs[0].publish(Arc::from(&b"two\n"[..]));
        assert!(hubs[1].take().is_empty(), "nothing before the flush");
        let poll = mio::Poll::new().unwrap();
        hubs[0].flush(poll.registry(), Instant::now());
        let got1 = hubs[1].take();
        let got2 = hubs[2].take();
        assert_eq!(got1.len(), 2, "the direct message went to worker 2 only");
        assert!(matches!(&got1[0], Remote::Room { chunk: c, .. } if &c[..] == b"one\n"));
        assert!(matches!(&got1[1], Remote::Room { chunk: c, .. } if &c[..] == b"two\n"));
        assert_eq!(got2.len(), 3);
        assert!(matches!(&got2[1], Remote::Direct { to, .. } if *to == Token(5)));
        assert!(hubs[0].take().is_empty(), "not to itself");
        // The peers were woken.
        let mut events = mio::Events::with_capacity(4);
        polls[1]
            .poll(&mut events, Some(std::time::Duration::from_secs(1)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == Token(7)));
    }

    #[test]
    fn names_are_unique_across_workers() {
        let (_polls, w) = wakers(2);
        let hubs = Hub::mesh(w);
        let holder = |worker, token| Holder {
            name: "Alice".into(),
            at: Address {
                node: 0,
                worker,
                conn: Token(token),
            },
        };
        assert!(hubs[0]
            .registry()
            .unwrap()
            .claim("alice".into(), holder(0, 1)));
        assert!(!hubs[1]
            .registry()
            .unwrap()
            .claim("alice".into(), holder(1, 9)));
        assert!(hubs[0]
            .registry()
            .unwrap()
            .claim("alice".into(), holder(0, 1)));
        hubs[1]
            .registry()
            .unwrap()
            .release("alice", holder(1, 9).at);
        assert!(
            hubs[1].registry().unwrap().get("alice").is_some(),
            "not its to give"
        );
        hubs[0]
            .registry()
            .unwrap()
            .release("alice", holder(0, 1).at);
        assert!(hubs[1].registry().unwrap().get("alice").is_none());
        assert!(Hub::local().registry().is_none());
    }
}
