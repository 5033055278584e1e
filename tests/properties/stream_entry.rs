//! The cluster stream's entries (`cluster/entry.rs`), as the fuzz target
//! `stream_entry` checks them:
//!
//! - an entry written with `xadd` and read back from that command's fields
//!   is the same entry, for every kind;
//! - the same entries, in an `XREAD` reply as Redis shapes it, encoded and
//!   decoded, come back from `read_reply` with their ids, in order; and
//!   `last_id` of an `XREVRANGE` reply is its first entry's id;
//! - nothing panics on replies of any other shape.
//!
//! Inputs are entries of every kind with arbitrary bytes and text (chat's
//! names, which the `Alive` list carries one a line, follow the name rule),
//! and arbitrary RESP values.

use monoloop::cluster::entry::{last_id, read_reply, Body, Entry, Named, Publisher};
use monoloop::cluster::resp::{Decoder, Value};
use proptest::prelude::*;

use super::cases;
use super::resp_pieces::{value, write};

fn publisher() -> impl Strategy<Value = Publisher> {
    (any::<u64>(), any::<u32>()).prop_map(|(instance, worker)| Publisher { instance, worker })
}

/// A chat name: what `valid_name` accepts.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(b"abzAZ09_-.".to_vec()), 1..=32)
        .prop_map(|v| String::from_utf8(v).unwrap())
}

fn named() -> impl Strategy<Value = Named> {
    (name(), any::<u64>()).prop_map(|(name, conn)| Named { name, conn })
}

fn body() -> impl Strategy<Value = Body> {
    let bytes = prop::collection::vec(any::<u8>(), 0..60);
    prop_oneof![
        bytes.clone().prop_map(Body::Room),
        (publisher(), any::<u64>(), bytes).prop_map(|(to, conn, data)| Body::Direct {
            to,
            conn,
            data
        }),
        named().prop_map(Body::Join),
        any::<String>().prop_map(Body::Leave),
        (any::<String>(), any::<String>()).prop_map(|(from, to)| Body::Rename { from, to }),
        prop::collection::vec(named(), 0..5).prop_map(Body::Alive),
        Just(Body::Hello),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (publisher(), any::<u64>(), body()).prop_map(|(from, seq, body)| Entry { from, seq, body })
}

/// The fields `xadd` writes for `entry`, as Redis stores them.
fn fields(entry: &Entry) -> Vec<Value> {
    let mut out = Vec::new();
    entry.xadd("monoloop:prop", 100, &mut out);
    let mut d = Decoder::new();
    d.feed(&out);
    let Ok(Some(Value::Array(args))) = d.next() else {
        panic!("xadd wrote no array");
    };
    // XADD stream MAXLEN ~ keep * field value ...
    assert_eq!(args[5], Value::Bulk(b"*".to_vec()));
    args[6..].to_vec()
}

/// An id as Redis makes them.
fn id(i: usize) -> String {
    format!("{}-{i}", 1_700_000_000_000u64 + i as u64)
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn an_entry_reads_back_as_written(e in entry()) {
        prop_assert_eq!(Entry::parse(&fields(&e)), Some(e));
    }

    #[test]
    fn an_xread_reply_gives_its_entries_in_order(entries in prop::collection::vec(entry(), 0..5)) {
        let listed: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| Value::Array(vec![Value::Bulk(id(i).into_bytes()), Value::Array(fields(e))]))
            .collect();
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Bulk(b"monoloop:prop".to_vec()),
            Value::Array(listed.clone()),
        ])]);
        // Through the wire, as the link reads it.
        let mut bytes = Vec::new();
        write(&reply, &mut bytes);
        let mut d = Decoder::new();
        d.feed(&bytes);
        let decoded = d.next().unwrap().unwrap();
        prop_assert_eq!(&decoded, &reply);
        let got = read_reply(decoded).unwrap();
        let want: Vec<(String, Option<Entry>)> =
            entries.iter().enumerate().map(|(i, e)| (id(i), Some(e.clone()))).collect();
        prop_assert_eq!(got, want);
        // XREVRANGE + - COUNT 1: the newest first.
        let newest = Value::Array(listed.into_iter().rev().collect());
        let expected = match entries.len() {
            0 => "0-0".to_string(),
            n => id(n - 1),
        };
        prop_assert_eq!(last_id(&newest), Ok(expected));
    }

    #[test]
    fn any_reply_is_read_without_panic(v in value()) {
        let _ = last_id(&v);
        if let Value::Array(items) = &v {
            if let Some(e) = Entry::parse(items) {
                prop_assert_eq!(Entry::parse(&fields(&e)), Some(e));
            }
        }
        if let Ok(entries) = read_reply(v) {
            for e in entries.into_iter().filter_map(|(_, e)| e) {
                prop_assert_eq!(Entry::parse(&fields(&e)), Some(e));
            }
        }
    }
}
