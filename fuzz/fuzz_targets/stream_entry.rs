//! The cluster stream's entries (`cluster/entry.rs`), read from what Redis
//! answers: the bytes decoded as RESP, every reply read as an `XREAD`
//! reply and an `XREVRANGE` one, every array as an entry's fields.
//!
//! - nothing panics, whatever the shape;
//! - an entry that reads, written with `xadd` and read back from that
//!   command's fields, is the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monoloop::cluster::entry::{last_id, read_reply, Entry};
use monoloop::cluster::resp::{Decoder, Value};

/// The entry written as `XADD` and read back from the command's fields.
fn round_trip(entry: &Entry) {
    let mut out = Vec::new();
    entry.xadd("monoloop:fuzz", 10_000, &mut out);
    let mut d = Decoder::new();
    d.feed(&out);
    let Ok(Some(Value::Array(args))) = d.next() else {
        panic!("xadd wrote no array");
    };
    // XADD stream MAXLEN ~ keep * field value ...
    assert_eq!(args[5], Value::Bulk(b"*".to_vec()));
    let again = Entry::parse(&args[6..]);
    assert_eq!(again.as_ref(), Some(entry), "xadd then parse");
}

/// Every array in `v`, at any depth, read as a field list.
fn every_array(v: &Value) {
    if let Value::Array(items) = v {
        if let Some(entry) = Entry::parse(items) {
            round_trip(&entry);
        }
        items.iter().for_each(every_array);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new();
    d.feed(data);
    while let Ok(Some(reply)) = d.next() {
        let _ = last_id(&reply);
        every_array(&reply);
        if let Ok(entries) = read_reply(reply) {
            for (_id, entry) in entries.iter() {
                if let Some(entry) = entry {
                    round_trip(entry);
                }
            }
        }
    }
});
