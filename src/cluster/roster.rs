//! Chat's names on the other instances, as this worker last heard them:
//! what `/who` lists beside this instance's own names and where `/msg`
//! finds a user on another machine.
//!
//! Redis holds who owns a name (`SET ... NX EX 30`, `cluster.rs`); this
//! mirror is only for reading, rebuilt from the chat stream: each
//! publisher's joins, leaves and renames, and every 10 s its whole list
//! (`Alive`), which is also its heartbeat. A publisher unheard of for
//! longer than the name lease has stopped (its instance died, or lost
//! Redis): its names leave the mirror, and [`Roster::expire`] returns them
//! so that this worker's users hear that they left. Their keys in Redis
//! expire at about the same time, since nobody refreshes them.
//!
//! Another instance is a node of the hub's `Address`: numbered here from
//! 1 in the order first heard of (0 is this instance).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use mio::Token;

use super::entry::{Named, Publisher};

/// How long a name is held in Redis without a refresh, and so how long a
/// silent publisher is believed.
pub const LEASE: Duration = Duration::from_secs(30);

/// Where a user on another instance is: its node (numbered here), worker
/// and connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elsewhere {
    pub node: u32,
    pub worker: u32,
    pub conn: Token,
}

/// One name held elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    name: String,
    by: Publisher,
    conn: u64,
}

/// The mirror. See the module docs.
#[derive(Debug, Default)]
pub struct Roster {
    /// By lowercase name.
    names: BTreeMap<String, Held>,
    /// When each publisher was last heard from.
    heard: HashMap<Publisher, Instant>,
    /// Node numbers: `instances[n - 1]` is node `n`.
    instances: Vec<u64>,
}

impl Roster {
    /// Everyone's names, lowercase key and name as typed.
    pub fn names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names
            .iter()
            .map(|(k, h)| (k.as_str(), h.name.as_str()))
    }

    /// Where the user holding `key` is, if on another instance.
    pub fn find(&mut self, key: &str) -> Option<Elsewhere> {
        let held = self.names.get(key)?.clone();
        Some(Elsewhere {
            node: self.node(held.by.instance),
            worker: held.by.worker,
            conn: Token(held.conn as usize),
        })
    }

    /// The instance that is node `node` (from 1).
    pub fn instance(&self, node: u32) -> Option<u64> {
        self.instances.get((node as usize).checked_sub(1)?).copied()
    }

    fn node(&mut self, instance: u64) -> u32 {
        let i = match self.instances.iter().position(|&i| i == instance) {
            Some(i) => i,
            None => {
                self.instances.push(instance);
                self.instances.len() - 1
            }
        };
        i as u32 + 1
    }

    /// `by` was heard from (any entry).
    pub fn heard(&mut self, by: Publisher, now: Instant) {
        self.heard.insert(by, now);
    }

    /// `by` seated a user.
    pub fn join(&mut self, by: Publisher, named: Named) {
        let key = named.name.to_ascii_lowercase();
        self.names.insert(
            key,
            Held {
                name: named.name,
                by,
                conn: named.conn,
            },
        );
    }

    /// `by`'s user let `name` go (only if `by` holds it here: a stale
    /// leave does not unseat the name's new owner).
    pub fn leave(&mut self, by: Publisher, name: &str) {
        let key = name.to_ascii_lowercase();
        if self.names.get(&key).is_some_and(|h| h.by == by) {
            self.names.remove(&key);
        }
    }

    /// `by`'s user renamed itself.
    pub fn rename(&mut self, by: Publisher, from: &str, to: String) {
        let key = from.to_ascii_lowercase();
        let conn = match self.names.get(&key) {
            Some(h) if h.by == by => h.conn,
            _ => return,
        };
        self.names.remove(&key);
        self.join(by, Named { name: to, conn });
    }

    /// `by`'s whole list: what it no longer lists is gone.
    pub fn alive(&mut self, by: Publisher, names: Vec<Named>) {
        self.names.retain(|_, h| h.by != by);
        for named in names {
            self.join(by, named);
        }
    }

    /// Forgets every publisher unheard of for [`LEASE`]; returns the names
    /// they held (as typed), sorted, for this worker's users to hear that
    /// they left.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let silent: Vec<Publisher> = self
            .heard
            .iter()
            .filter(|(_, &at)| now.saturating_duration_since(at) >= LEASE)
            .map(|(&p, _)| p)
            .collect();
        // In the map's order, which is by lowercase name: sorted.
        let mut gone = Vec::new();
        self.names.retain(|_, h| {
            let silent = silent.contains(&h.by);
            if silent {
                gone.push(h.name.clone());
            }
            !silent
        });
        for by in &silent {
            self.heard.remove(by);
        }
        gone
    }

    /// This worker heard nothing for a while (its own link was down):
    /// everyone gets a fresh lease from `now`, to show they are alive.
    pub fn trust_again(&mut self, now: Instant) {
        for at in self.heard.values_mut() {
            *at = now;
        }
    }

    /// When the next publisher falls silent, if none is heard before.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.heard.values().min().map(|&at| at + LEASE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(instance: u64) -> Publisher {
        Publisher {
            instance,
            worker: 0,
        }
    }

    fn named(name: &str, conn: u64) -> Named {
        Named {
            name: name.into(),
            conn,
        }
    }

    #[test]
    fn joins_renames_leaves_and_lists_keep_the_mirror() {
        let now = Instant::now();
        let mut r = Roster::default();
        r.join(by(7), named("Alice", 3));
        r.join(by(9), named("bob", 4));
        let at = r.find("alice").unwrap();
        assert_eq!((at.node, at.conn), (1, Token(3)));
        assert_eq!(r.find("bob").unwrap().node, 2);
        assert_eq!(r.instance(2), Some(9));
        r.rename(by(7), "Alice", "Alicia".into());
        assert!(r.find("alice").is_none());
        assert_eq!(r.find("alicia").unwrap().conn, Token(3));
        // A stale leave from another publisher changes nothing.
        r.leave(by(9), "Alicia");
        assert!(r.find("alicia").is_some());
        r.leave(by(7), "alicia");
        assert!(r.find("alicia").is_none());
        r.alive(by(9), vec![named("carol", 5)]);
        let names: Vec<_> = r.names().map(|(_, n)| n).collect();
        assert_eq!(names, ["carol"], "bob is no longer listed");
        r.heard(by(9), now);
        assert!(r.expire(now + LEASE / 2).is_empty());
        assert_eq!(r.next_expiry(), Some(now + LEASE));
        assert_eq!(r.expire(now + LEASE), ["carol"]);
        assert!(r.names().next().is_none());
    }

    #[test]
    fn a_fresh_lease_for_everyone_after_this_worker_was_deaf() {
        let now = Instant::now();
        let mut r = Roster::default();
        r.heard(by(1), now);
        r.join(by(1), named("a", 1));
        r.trust_again(now + LEASE * 2);
        assert!(r.expire(now + LEASE * 2).is_empty());
        assert_eq!(r.expire(now + LEASE * 3), ["a"]);
    }
}
