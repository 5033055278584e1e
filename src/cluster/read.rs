//! What this worker reads: the reader finds where the stream ends when it
//! first links, then spends its life in a blocking `XREAD` from the last
//! id it has seen; what a reply brings from other instances is handed to
//! the loop once each, in order, consecutive room lines as one chunk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use super::entry::{self, Body, Entry};
use super::link::Happened;
use super::{lines, resp, Arrived, Cluster, Kind, Read, BLOCK, READ_COUNT};

/// How long the reader waits before it reads again after a blocking read
/// came back empty at once.
const NOT_BLOCKING_PAUSE: Duration = Duration::from_secs(1);

impl Cluster {
    pub(super) fn handle_reader(
        &mut self,
        happened: Happened<Read>,
        registry: &Registry,
        now: Instant,
    ) {
        match happened {
            Happened::Up => {
                match self.last_id {
                    None => {
                        let mut cmd = Vec::new();
                        resp::command(
                            &mut cmd,
                            &[
                                b"XREVRANGE",
                                self.stream.as_bytes(),
                                b"+",
                                b"-",
                                b"COUNT",
                                b"1",
                            ],
                        );
                        self.reader.send(&cmd, Read::End, now);
                    }
                    Some(_) => self.read_next(now),
                }
                // Deaf until now: everyone gets a fresh lease to be heard.
                self.roster.trust_again(now);
                self.link_changed(None, now);
            }
            Happened::Reply(Read::End, value) => match entry::last_id(&value) {
                Ok(id) => {
                    self.last_id = Some(id);
                    self.read_next(now);
                }
                Err(why) => self.reader_broken(why, registry, now),
            },
            Happened::Reply(Read::Xread, value) => {
                if let resp::Value::Error(e) = &value {
                    let why = format!("Redis refused XREAD: {e}");
                    return self.reader_broken(&why, registry, now);
                }
                match entry::read_reply(value) {
                    Ok(entries) => {
                        // Nothing, long before the block time was up: this
                        // Redis does not block. Asked again in a second.
                        let early = self.read_sent.is_some_and(|sent| now < sent + BLOCK / 2);
                        if entries.is_empty() && early {
                            self.read_after = Some(now + NOT_BLOCKING_PAUSE);
                        } else {
                            self.take(entries, now);
                            self.read_next(now);
                        }
                    }
                    Err(why) => self.reader_broken(why, registry, now),
                }
            }
            Happened::Failed(why, _) => {
                self.read_after = None;
                self.link_changed(Some(&why), now)
            }
        }
    }

    pub(super) fn reader_broken(&mut self, why: &str, registry: &Registry, now: Instant) {
        let failed = self.reader.fail(why.to_string(), now);
        self.handle_reader(failed, registry, now);
    }

    pub(super) fn read_next(&mut self, now: Instant) {
        self.read_after = None;
        self.read_sent = Some(now);
        let id = self.last_id.as_deref().unwrap_or("$");
        let block = BLOCK.as_millis().to_string();
        let mut cmd = Vec::new();
        resp::command(
            &mut cmd,
            &[
                b"XREAD",
                b"COUNT",
                READ_COUNT.as_bytes(),
                b"BLOCK",
                block.as_bytes(),
                b"STREAMS",
                self.stream.as_bytes(),
                id.as_bytes(),
            ],
        );
        self.reader.send(&cmd, Read::Xread, now);
    }

    /// What one `XREAD` brought: other instances' entries, each once, in
    /// order. Consecutive room lines become one chunk.
    pub(super) fn take(&mut self, entries: Vec<(String, Option<Entry>)>, now: Instant) {
        let mut room: Vec<u8> = Vec::new();
        let mut hello = false;
        for (id, entry) in entries {
            self.last_id = Some(id);
            let Some(e) = entry else { continue };
            if e.from.instance == self.me.instance {
                continue;
            }
            let last = self.seen.entry(e.from).or_insert(0);
            if e.seq <= *last {
                continue;
            }
            *last = e.seq;
            self.roster.heard(e.from, now);
            match e.body {
                Body::Room(data) => {
                    // Every worker reads every entry: the instance
                    // received it once, counted by worker 0's link.
                    if self.me.worker == 0 {
                        self.figures.received += lines(&data);
                    }
                    room.extend_from_slice(&data);
                }
                Body::Direct { to, conn, data } if to == self.me => {
                    self.flush_room(&mut room, now);
                    self.arrived.push(Arrived::Direct {
                        to: Token(conn as usize),
                        chunk: Arc::from(data),
                    });
                }
                Body::Direct { .. } => {}
                Body::Join(named) => self.roster.join(e.from, named),
                Body::Leave(name) => self.roster.leave(e.from, &name),
                Body::Rename { from, to } => self.roster.rename(e.from, &from, to),
                Body::Alive(names) => self.roster.alive(e.from, names),
                Body::Hello => hello = true,
            }
        }
        self.flush_room(&mut room, now);
        if hello && self.kind == Kind::Chat && self.writer.is_ready() {
            // A publisher came (back): it hears this one's names now.
            self.refresh_due = Some(now);
        }
    }

    pub(super) fn flush_room(&mut self, room: &mut Vec<u8>, now: Instant) {
        if !room.is_empty() {
            self.arrived.push(Arrived::Room {
                chunk: Arc::from(std::mem::take(room)),
                at: now,
            });
        }
    }
}
