//! Chat's names across instances: a claim waits for Redis's answer, a
//! name held is refreshed every [`REFRESH`](super::REFRESH) and released
//! at leave, and one that another instance took during an outage is lost.
//!
//! Every change goes through one of three small Lua scripts, so that each
//! is atomic in Redis without a transaction across round trips: [`CLAIM`]
//! (set the name to its holder if it is free or already the holder's,
//! with the lease), [`REFRESH_ALL`] (the same for every name held, saying
//! which another holds now) and [`RELEASE`] (a compare-and-delete). A
//! name's key holds `INSTANCE.WORKER CONN`, so that a claim sent again
//! after a broken link finds its own earlier grant, and a release never
//! deletes a name someone else took since.

use std::time::Instant;

use mio::Token;

use super::entry::{Body, Named};
use super::roster::LEASE;
use super::{resp, Answered, Cluster, Verdict, Write, REFRESH};

/// How long a claim given up on waits for Redis's late answer before it is
/// forgotten (its name, if granted, then expires within the lease).
pub(super) const ABANDONED: std::time::Duration = std::time::Duration::from_secs(60);

/// Sets a name to its holder if it is free or already the holder's, with
/// the lease; 1 if the holder has it, 0 if another does.
pub(super) const CLAIM: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == false or v == ARGV[1] then \
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end return 0";
/// The refresh: CLAIM for every name; returns the keys another holds.
pub(super) const REFRESH_ALL: &str = "local lost = {} for i, k in ipairs(KEYS) do \
    local v = redis.call('GET', k) \
    if v == false or v == ARGV[i] then redis.call('SET', k, ARGV[i], 'EX', ARGV[#ARGV]) \
    else table.insert(lost, k) end end return lost";
/// Deletes a name if it is still the holder's.
pub(super) const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// A claim on a chat name waiting for Redis.
#[derive(Debug)]
pub(super) struct Claiming {
    pub(super) id: u64,
    pub(super) conn: Token,
    pub(super) key: String,
    pub(super) name: String,
    /// The key the claimant held, given up if granted.
    pub(super) previous: Option<String>,
    pub(super) since: Instant,
    pub(super) sent: bool,
    /// It was sent on some link, if not this one: Redis may have granted
    /// it, so giving up on it means releasing it.
    pub(super) ever_sent: bool,
    /// The claimant was told the chat is unavailable; if Redis grants it
    /// after all, the name is released at once.
    pub(super) abandoned: bool,
}

/// A name this worker holds in Redis.
#[derive(Debug, Clone)]
pub(super) struct Mine {
    pub(super) name: String,
    pub(super) conn: Token,
}

impl Cluster {
    /// The value a name's key holds while `conn` here holds it.
    pub(super) fn holder(&self, conn: Token) -> String {
        format!("{} {}", self.me, conn.0)
    }

    pub(super) fn name_key(&self, key: &str) -> String {
        format!("{}:chat:name:{key}", self.opts.prefix)
    }

    /// `conn` asks for the name `name` (`key`, lowercase), giving up
    /// `previous` if granted. The answer comes later
    /// ([`take_answers`](Self::take_answers)), within [`CLAIM_WAIT`].
    pub fn claim(
        &mut self,
        conn: Token,
        key: String,
        name: String,
        previous: Option<String>,
        now: Instant,
    ) {
        self.next_claim += 1;
        self.claims.push(Claiming {
            id: self.next_claim,
            conn,
            key,
            name,
            previous,
            since: now,
            sent: false,
            ever_sent: false,
            abandoned: false,
        });
        if self.writer.is_ready() {
            self.send_claims(now);
        }
    }

    /// `conn` renamed itself to a case variant of its name: the key stays,
    /// the others hear the new spelling.
    pub fn respell(&mut self, key: &str, conn: Token, name: &str) {
        if let Some(mine) = self.mine.get_mut(key).filter(|m| m.conn == conn) {
            let from = std::mem::replace(&mut mine.name, name.to_string());
            self.turn.push(Body::Rename {
                from,
                to: name.to_string(),
            });
        }
    }

    /// `conn` let its name `key` go (it left).
    pub fn release(&mut self, key: &str, conn: Token, now: Instant) {
        // A claim still in flight for it is given up: should Redis grant
        // it after all, the name is released at once.
        for c in self.claims.iter_mut() {
            if c.conn == conn && c.key == key && !c.abandoned {
                c.abandoned = true;
                c.since = now + ABANDONED;
            }
        }
        if self.mine.get(key).is_none_or(|m| m.conn != conn) {
            return;
        }
        let mine = self.mine.remove(key).expect("checked above");
        self.send_release(key, conn, now);
        self.turn.push(Body::Leave(mine.name));
    }

    pub(super) fn send_release(&mut self, key: &str, conn: Token, now: Instant) {
        if !self.writer.is_ready() {
            // Unrefreshed, it expires within the lease.
            return;
        }
        let mut cmd = Vec::new();
        let (k, v) = (self.name_key(key), self.holder(conn));
        resp::command(
            &mut cmd,
            &[
                b"EVAL",
                RELEASE.as_bytes(),
                b"1",
                k.as_bytes(),
                v.as_bytes(),
            ],
        );
        self.writer.send(&cmd, Write::Release, now);
    }

    /// The writer is back: claims given up on while it was away are
    /// released (Redis may have granted them before the link broke), and
    /// the others are sent again.
    pub(super) fn resend_claims(&mut self, now: Instant) {
        let abandoned: Vec<(String, Token)> = self
            .claims
            .iter()
            .filter(|c| c.abandoned)
            .map(|c| (c.key.clone(), c.conn))
            .collect();
        self.claims.retain(|c| !c.abandoned);
        for (key, conn) in abandoned {
            self.send_release(&key, conn, now);
        }
        self.send_claims(now);
    }

    pub(super) fn send_claims(&mut self, now: Instant) {
        let lease = LEASE.as_secs().to_string();
        let unsent: Vec<(u64, String, Token)> = self
            .claims
            .iter_mut()
            .filter(|c| !c.sent)
            .map(|c| {
                c.sent = true;
                c.ever_sent = true;
                (c.id, c.key.clone(), c.conn)
            })
            .collect();
        let mut cmd = Vec::new();
        for (id, key, conn) in unsent {
            let (k, v) = (self.name_key(&key), self.holder(conn));
            cmd.clear();
            resp::command(
                &mut cmd,
                &[
                    b"EVAL",
                    CLAIM.as_bytes(),
                    b"1",
                    k.as_bytes(),
                    v.as_bytes(),
                    lease.as_bytes(),
                ],
            );
            self.writer.send(&cmd, Write::Claim(id), now);
        }
    }

    /// The refresh of every name held here, and this publisher's list.
    pub(super) fn refresh(&mut self, now: Instant) {
        self.refresh_due = Some(now + REFRESH);
        if self.mine.is_empty() {
            // Nothing to refresh: the heartbeat alone.
            self.alive();
            return;
        }
        let keys: Vec<String> = self.mine.keys().map(|k| self.name_key(k)).collect();
        let values: Vec<String> = self.mine.values().map(|m| self.holder(m.conn)).collect();
        let count = keys.len().to_string();
        let lease = LEASE.as_secs().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVAL", REFRESH_ALL.as_bytes(), count.as_bytes()];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        args.extend(values.iter().map(|v| v.as_bytes()));
        args.push(lease.as_bytes());
        let mut cmd = Vec::new();
        resp::command(&mut cmd, &args);
        self.writer.send(&cmd, Write::Refresh, now);
    }

    /// This publisher's heartbeat: every name it holds, as Redis last
    /// confirmed them (sent after the refresh's answer, so that a name
    /// lost meanwhile is not listed).
    pub(super) fn alive(&mut self) {
        let names = self
            .mine
            .values()
            .map(|m| Named {
                name: m.name.clone(),
                conn: m.conn.0 as u64,
            })
            .collect();
        self.turn.push(Body::Alive(names));
    }

    pub(super) fn claim_answered(&mut self, id: u64, value: &resp::Value, now: Instant) {
        let Some(i) = self.claims.iter().position(|c| c.id == id) else {
            return;
        };
        let c = self.claims.remove(i);
        let granted = matches!(value, resp::Value::Int(1));
        if c.abandoned {
            if granted {
                self.send_release(&c.key, c.conn, now);
            }
            return;
        }
        if let resp::Value::Error(e) = value {
            log::warn!("cluster: Redis refused a name claim: {e}");
        }
        let answer = if granted {
            if let Some(prev) = &c.previous {
                if let Some(old) = self.mine.remove(prev) {
                    self.send_release(prev, c.conn, now);
                    self.turn.push(Body::Rename {
                        from: old.name,
                        to: c.name.clone(),
                    });
                }
            } else {
                self.turn.push(Body::Join(Named {
                    name: c.name.clone(),
                    conn: c.conn.0 as u64,
                }));
            }
            self.mine.insert(
                c.key.clone(),
                Mine {
                    name: c.name.clone(),
                    conn: c.conn,
                },
            );
            Verdict::Granted
        } else if matches!(value, resp::Value::Int(0)) {
            Verdict::Taken
        } else {
            Verdict::Unavailable
        };
        self.answers.push(Answered {
            conn: c.conn,
            answer,
            key: c.key,
            name: c.name,
            previous: c.previous,
        });
    }

    /// The refresh's answer: the keys another instance took while this
    /// one could not refresh them. Their users here lose them.
    pub(super) fn refreshed(&mut self, value: resp::Value) {
        let resp::Value::Array(lost) = value else {
            if let resp::Value::Error(e) = value {
                log::warn!("cluster: Redis refused the names' refresh: {e}");
            }
            self.alive();
            return;
        };
        let prefix = self.name_key("");
        for key in lost {
            let resp::Value::Bulk(k) = key else { continue };
            let Some(key) = std::str::from_utf8(&k)
                .ok()
                .and_then(|k| k.strip_prefix(&prefix))
            else {
                continue;
            };
            if let Some(mine) = self.mine.remove(key) {
                log::info!(
                    "cluster: the name {} was taken on another instance while this one \
                     could not hold it: its user here is closed",
                    mine.name
                );
                self.answers.push(Answered {
                    conn: mine.conn,
                    answer: Verdict::Lost,
                    key: key.to_string(),
                    name: mine.name,
                    previous: None,
                });
            }
        }
        self.alive();
    }
}
