//! One entry of a cluster stream: what an instance writes with `XADD` and
//! what the others read back with `XREAD`, as fields, with no I/O.
//!
//! ```text
//! XADD monoloop:chat MAXLEN ~ 10000 * p 9f3c2a10b4d5e6f7.0 s 42 k r d "alice: hi\n"
//!                                     |                    |    |   the bytes
//!                                     publisher: instance  |    kind
//!                                     and worker           its 42nd entry
//! ```
//!
//! Every publisher (one worker of one instance) numbers its entries from 1.
//! A reader keeps the last number it took from each publisher and drops an
//! entry numbered at or below it: after a broken link the writer sends again
//! what Redis may or may not have stored, and the number makes the second
//! copy harmless. That is what makes delivery exactly once across outages.
//!
//! The kinds: `r` lines for the room (one entry per turn, however many
//! lines), `m` a private message for one connection (`t` names it),
//! and, for chat's names, `j` a join, `l` a leave, `n` a rename, `a` the
//! publisher's whole list (its heartbeat), `h` hello (a publisher that just
//! linked asks the others for their lists).

use super::resp::Value;

/// One worker of one instance: who wrote an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Publisher {
    /// The instance: random, chosen at start (`Cluster::new`).
    pub instance: u64,
    pub worker: u32,
}

impl std::fmt::Display for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}.{}", self.instance, self.worker)
    }
}

impl Publisher {
    fn parse(s: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(s).ok()?;
        let (instance, worker) = s.split_once('.')?;
        Some(Self {
            instance: u64::from_str_radix(instance, 16).ok()?,
            worker: worker.parse().ok()?,
        })
    }
}

/// A user's name and where its connection is, on its publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub conn: u64,
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Lines for every member of the room.
    Room(Vec<u8>),
    /// Lines for one connection: `to` (instance, worker), `conn`.
    Direct {
        to: Publisher,
        conn: u64,
        data: Vec<u8>,
    },
    /// Chat: a user took a name.
    Join(Named),
    /// Chat: a user let a name go.
    Leave(String),
    /// Chat: a user renamed itself.
    Rename { from: String, to: String },
    /// Chat: every name the publisher holds now (a heartbeat).
    Alive(Vec<Named>),
    /// Chat: a publisher that just linked; the others answer with `Alive`.
    Hello,
}

/// One entry: its publisher, its number, what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub from: Publisher,
    pub seq: u64,
    pub body: Body,
}

impl Entry {
    /// The `XADD` command for this entry on `stream`, trimmed to about
    /// `keep` entries (`MAXLEN ~`: Redis trims whole nodes, cheaply).
    pub fn xadd(&self, stream: &str, keep: usize, out: &mut Vec<u8>) {
        let keep = keep.to_string();
        let from = self.from.to_string();
        let seq = self.seq.to_string();
        let mut args: Vec<&[u8]> = vec![
            b"XADD",
            stream.as_bytes(),
            b"MAXLEN",
            b"~",
            keep.as_bytes(),
            b"*",
            b"p",
            from.as_bytes(),
            b"s",
            seq.as_bytes(),
            b"k",
        ];
        let (to, conn, list);
        match &self.body {
            Body::Room(data) => args.extend([&b"r"[..], b"d", data]),
            Body::Direct {
                to: t,
                conn: c,
                data,
            } => {
                to = t.to_string();
                conn = c.to_string();
                args.extend([&b"m"[..], b"t", to.as_bytes(), b"c", conn.as_bytes()]);
                args.extend([&b"d"[..], data]);
            }
            Body::Join(named) => {
                conn = named.conn.to_string();
                args.extend([&b"j"[..], b"d", named.name.as_bytes()]);
                args.extend([&b"c"[..], conn.as_bytes()]);
            }
            Body::Leave(name) => args.extend([&b"l"[..], b"d", name.as_bytes()]),
            Body::Rename { from, to } => {
                args.extend([&b"n"[..], b"o", from.as_bytes(), b"d", to.as_bytes()]);
            }
            Body::Alive(names) => {
                list = names
                    .iter()
                    .map(|n| format!("{} {}\n", n.name, n.conn))
                    .collect::<String>();
                args.extend([&b"a"[..], b"d", list.as_bytes()]);
            }
            Body::Hello => args.push(b"h"),
        }
        super::resp::command(out, &args);
    }

    /// Reads one entry's field list (`[p, .., s, .., k, .., ...]`); `None`
    /// for an entry this version does not understand (skipped, not fatal:
    /// a newer instance may write kinds an older one does not know).
    pub fn parse(fields: &[Value]) -> Option<Entry> {
        let field = |name: &[u8]| -> Option<&[u8]> {
            fields.chunks_exact(2).find_map(|pair| match pair {
                [Value::Bulk(k), Value::Bulk(v)] if k == name => Some(v.as_slice()),
                _ => None,
            })
        };
        let text = |name: &[u8]| -> Option<String> {
            std::str::from_utf8(field(name)?).ok().map(str::to_string)
        };
        let number = |name: &[u8]| -> Option<u64> { text(name)?.parse().ok() };
        let from = Publisher::parse(field(b"p")?)?;
        let seq = number(b"s")?;
        let body = match field(b"k")? {
            b"r" => Body::Room(field(b"d")?.to_vec()),
            b"m" => Body::Direct {
                to: Publisher::parse(field(b"t")?)?,
                conn: number(b"c")?,
                data: field(b"d")?.to_vec(),
            },
            b"j" => Body::Join(Named {
                name: text(b"d")?,
                conn: number(b"c")?,
            }),
            b"l" => Body::Leave(text(b"d")?),
            b"n" => Body::Rename {
                from: text(b"o")?,
                to: text(b"d")?,
            },
            b"a" => Body::Alive(
                text(b"d")?
                    .lines()
                    .filter_map(|line| {
                        let (name, conn) = line.split_once(' ')?;
                        Some(Named {
                            name: name.to_string(),
                            conn: conn.parse().ok()?,
                        })
                    })
                    .collect(),
            ),
            b"h" => Body::Hello,
            _ => return None,
        };
        Some(Entry { from, seq, body })
    }
}

/// The entries of an `XREAD` reply for one stream, with their ids:
/// `[[stream, [[id, [field, value, ...]], ...]]]`, or nil when the block
/// timed out with nothing new. `Err` when the reply has another shape.
pub fn read_reply(reply: Value) -> Result<Vec<(String, Option<Entry>)>, &'static str> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        _ => return Err("XREAD answered neither an array nor nil"),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            return Err("XREAD's stream is not an array");
        };
        let Some(Value::Array(entries)) = pair.pop() else {
            return Err("XREAD's stream has no entries array");
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                return Err("an XREAD entry is not an array");
            };
            let (Some(Value::Array(fields)), Some(Value::Bulk(id))) = (parts.pop(), parts.pop())
            else {
                return Err("an XREAD entry is not [id, fields]");
            };
            let id = String::from_utf8(id).map_err(|_| "an entry id is not text")?;
            out.push((id, Entry::parse(&fields)));
        }
    }
    Ok(out)
}

/// The id of the last entry in an `XREVRANGE key + - COUNT 1` reply: where
/// a new reader starts (nothing before it is replayed); `0-0` for a stream
/// that is empty or does not exist yet.
pub fn last_id(reply: &Value) -> Result<String, &'static str> {
    match reply {
        Value::Array(entries) if entries.is_empty() => Ok("0-0".to_string()),
        Value::Array(entries) => match &entries[0] {
            Value::Array(parts) => match parts.first() {
                Some(Value::Bulk(id)) => {
                    String::from_utf8(id.clone()).map_err(|_| "an entry id is not text")
                }
                _ => Err("an XREVRANGE entry has no id"),
            },
            _ => Err("an XREVRANGE entry is not an array"),
        },
        Value::Nil => Ok("0-0".to_string()),
        _ => Err("XREVRANGE did not answer an array"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resp::Decoder;

    /// The fields of an XADD command as Redis would store them.
    fn fields_of(entry: &Entry) -> Vec<Value> {
        let mut out = Vec::new();
        entry.xadd("s", 100, &mut out);
        let mut d = Decoder::new();
        d.feed(&out);
        let Ok(Some(Value::Array(args))) = d.next() else {
            panic!("not an array");
        };
        // XADD s MAXLEN ~ 100 * then the fields.
        args[6..].to_vec()
    }

    #[test]
    fn every_kind_reads_back_as_written() {
        let from = Publisher {
            instance: 0x9f3c_2a10_b4d5_e6f7,
            worker: 3,
        };
        let bodies = [
            Body::Room(b"alice: hi\nbob joined the chat\n".to_vec()),
            Body::Direct {
                to: Publisher {
                    instance: 1,
                    worker: 0,
                },
                conn: 1 << 40,
                data: b"[private] a: b\n".to_vec(),
            },
            Body::Join(Named {
                name: "Alice".into(),
                conn: 7,
            }),
            Body::Leave("Alice".into()),
            Body::Rename {
                from: "a".into(),
                to: "b".into(),
            },
            Body::Alive(vec![
                Named {
                    name: "a".into(),
                    conn: 1,
                },
                Named {
                    name: "b".into(),
                    conn: 2,
                },
            ]),
            Body::Alive(Vec::new()),
            Body::Hello,
        ];
        for (seq, body) in bodies.into_iter().enumerate() {
            let entry = Entry {
                from,
                seq: seq as u64 + 1,
                body,
            };
            assert_eq!(Entry::parse(&fields_of(&entry)), Some(entry));
        }
    }

    #[test]
    fn an_unknown_kind_or_a_missing_field_is_skipped() {
        let b = |s: &str| Value::Bulk(s.as_bytes().to_vec());
        let fields = [
            b("p"),
            b("00000000000000ff.0"),
            b("s"),
            b("1"),
            b("k"),
            b("z"),
        ];
        assert_eq!(Entry::parse(&fields), None);
        let fields = [b("p"), b("nothex.0"), b("s"), b("1"), b("k"), b("h")];
        assert_eq!(Entry::parse(&fields), None);
        let fields = [b("p"), b("00000000000000ff.0"), b("k"), b("h")];
        assert_eq!(Entry::parse(&fields), None, "no number");
    }

    #[test]
    fn an_xread_reply_gives_its_entries_in_order_and_nil_gives_none() {
        let b = |s: &str| Value::Bulk(s.as_bytes().to_vec());
        let entry = |id: &str, seq: &str| {
            Value::Array(vec![
                b(id),
                Value::Array(vec![
                    b("p"),
                    b("0000000000000001.0"),
                    b("s"),
                    b(seq),
                    b("k"),
                    b("r"),
                    b("d"),
                    b("x\n"),
                ]),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            b("monoloop:broadcast"),
            Value::Array(vec![entry("1-0", "1"), entry("1-1", "2")]),
        ])]);
        let got = read_reply(reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, "1-1");
        assert_eq!(got[1].1.as_ref().unwrap().seq, 2);
        assert!(read_reply(Value::Nil).unwrap().is_empty());
        assert!(read_reply(Value::Int(3)).is_err());
        assert_eq!(last_id(&Value::Array(vec![])).unwrap(), "0-0");
        assert_eq!(
            last_id(&Value::Array(vec![entry("5-2", "1")])).unwrap(),
            "5-2"
        );
    }
}
