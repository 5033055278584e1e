//! RESP replies from Redis (`cluster/resp.rs`, `Decoder`), as the fuzz
//! target `resp_pieces` checks them:
//!
//! - the same bytes, cut anywhere, give the same replies and then the same
//!   error (or the same bytes still buffered); an error sticks;
//! - an encoded value decodes to itself, alone or among others, however
//!   cut; `command` writes what decodes to its arguments;
//! - the bounds hold, and the same way however the bytes arrive: arrays
//!   nested deeper than `MAX_DEPTH`, a bulk string over `MAX_BULK`, an
//!   array over `MAX_ARRAY` and a first line over `MAX_LINE` are refused,
//!   the first three from their header alone, before any body arrives.
//!
//! Inputs are values (nested to the depth limit) encoded here, the same
//! mutated by a byte, and raw bytes.

use monoloop::cluster::resp::{
    command, Decoder, Malformed, Value, MAX_ARRAY, MAX_BULK, MAX_DEPTH, MAX_LINE,
};
use proptest::prelude::*;

use super::{cases, cuts, mutate, mutation, pieces};

/// An encoder written apart from the decoder (as `fuzz/src/lib.rs` has).
pub fn write(v: &Value, out: &mut Vec<u8>) {
    let line = |out: &mut Vec<u8>, kind: u8, text: &[u8]| {
        out.push(kind);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    };
    match v {
        Value::Simple(s) => line(out, b'+', s.as_bytes()),
        Value::Error(s) => line(out, b'-', s.as_bytes()),
        Value::Int(n) => line(out, b':', n.to_string().as_bytes()),
        Value::Nil => out.extend_from_slice(b"$-1\r\n"),
        Value::Bulk(b) => {
            line(out, b'$', b.len().to_string().as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Value::Array(items) => {
            line(out, b'*', items.len().to_string().as_bytes());
            for item in items {
                write(item, out);
            }
        }
    }
}

/// A line's text for `+` and `-`: anything but CR and LF.
fn line_text() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        8 => prop::char::range(' ', '~'),
        1 => any::<char>().prop_filter("no CR or LF", |c| !matches!(c, '\r' | '\n')),
    ];
    prop::collection::vec(c, 0..20).prop_map(|v| v.into_iter().collect())
}

/// Any value, arrays nested at most `MAX_DEPTH` deep (the limit itself
/// included: a reply that deep is accepted).
pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        line_text().prop_map(Value::Simple),
        line_text().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Int),
        Just(Value::Nil),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bulk),
        Just(Value::Array(Vec::new())),
    ];
    leaf.prop_recursive(MAX_DEPTH as u32, 64, 6, |inner| {
        prop::collection::vec(inner, 1..6).prop_map(Value::Array)
    })
}

/// Replies until "not yet" or an error; the error must stick.
fn drain(d: &mut Decoder, out: &mut Vec<Value>) -> Result<Option<Malformed>, TestCaseError> {
    loop {
        match d.next() {
            Ok(Some(v)) => out.push(v),
            Ok(None) => return Ok(None),
            Err(e) => {
                prop_assert_eq!(d.next(), Err(e.clone()), "an error must stick");
                return Ok(Some(e));
            }
        }
    }
}

/// The replies, the error and what stays buffered, for `pieces` in turn.
fn decode(pieces: &[&[u8]]) -> Result<(Vec<Value>, Option<Malformed>, usize), TestCaseError> {
    let mut d = Decoder::new();
    let mut got = Vec::new();
    for piece in pieces {
        d.feed(piece);
        if let Some(e) = drain(&mut d, &mut got)? {
            return Ok((got, Some(e), 0));
        }
    }
    Ok((got, None, d.buffered()))
}

/// Whole and in pieces, the same.
fn same_however_cut(
    bytes: &[u8],
    cut: &[u16],
) -> Result<(Vec<Value>, Option<Malformed>, usize), TestCaseError> {
    let once = decode(&[bytes])?;
    let many = decode(&pieces(bytes, cut))?;
    prop_assert_eq!(&once, &many, "the same bytes in pieces decoded otherwise");
    Ok(once)
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn values_decode_to_themselves_however_cut(values in prop::collection::vec(value(), 1..4), cut in cuts()) {
        let mut bytes = Vec::new();
        for v in &values {
            write(v, &mut bytes);
        }
        let (got, err, left) = same_however_cut(&bytes, &cut)?;
        prop_assert_eq!(got, values);
        prop_assert_eq!(err, None);
        prop_assert_eq!(left, 0);
    }

    #[test]
    fn a_reply_cut_short_is_not_yet_a_reply(v in value(), keep in any::<u16>()) {
        let mut bytes = Vec::new();
        write(&v, &mut bytes);
        let n = bytes.len() * usize::from(keep) / 65536;
        let (got, err, left) = decode(&[&bytes[..n]])?;
        prop_assert!(got.is_empty() && err.is_none());
        prop_assert_eq!(left, n);
    }

    #[test]
    fn mutated_replies_decode_the_same_however_cut(
        v in value(),
        m in prop::collection::vec(mutation(), 1..3),
        cut in cuts(),
    ) {
        let mut bytes = Vec::new();
        write(&v, &mut bytes);
        let bytes = m.iter().fold(bytes, mutate);
        let (got, _, _) = same_however_cut(&bytes, &cut)?;
        for v in got {
            let mut again = Vec::new();
            write(&v, &mut again);
            prop_assert_eq!(decode(&[&again])?, (vec![v], None, 0), "round trip");
        }
    }

    #[test]
    fn any_bytes_decode_the_same_however_cut(bytes in prop::collection::vec(any::<u8>(), 0..200), cut in cuts()) {
        same_however_cut(&bytes, &cut)?;
    }

    #[test]
    fn a_command_decodes_to_its_arguments(args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..6)) {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let mut bytes = Vec::new();
        command(&mut bytes, &refs);
        let want = Value::Array(args.into_iter().map(Value::Bulk).collect());
        prop_assert_eq!(decode(&[&bytes])?, (vec![want], None, 0));
    }
}

/// A header alone that goes past a bound: refused at once, whole or a
/// byte at a time, with nothing of its body sent.
fn refused_from_the_header(header: &[u8]) -> Result<Malformed, TestCaseError> {
    let (_, whole, _) = decode(&[header])?;
    let bytes: Vec<&[u8]> = header.chunks(1).collect();
    let (_, trickled, _) = decode(&bytes)?;
    prop_assert_eq!(&whole, &trickled);
    match whole {
        Some(e) => Ok(e),
        None => Err(TestCaseError::fail(format!("{header:?} was not refused"))),
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn the_bounds_hold_however_the_bytes_arrive(
        extra in 1u64..1_000_000,
        depth in 0usize..4,
        cut in cuts(),
    ) {
        refused_from_the_header(format!("${}\r\n", MAX_BULK as u64 + extra).as_bytes())?;
        refused_from_the_header(format!("*{}\r\n", MAX_ARRAY as u64 + extra).as_bytes())?;
        // Nested one deeper than allowed (and more): refused once the
        // headers say so.
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1 + depth);
        refused_from_the_header(deep.as_bytes())?;
        // Exactly at the limit: accepted.
        let mut ok = "*1\r\n".repeat(MAX_DEPTH);
        ok.push_str(":1\r\n");
        let (got, err, _) = decode(&[ok.as_bytes()])?;
        prop_assert!(err.is_none() && got.len() == 1, "{:?}", err);

        // A first line over MAX_LINE, ended by CRLF, by a CR and CRLF, or
        // by a bare LF, cut anywhere: refused, and in the same words.
        for end in [&b"x\r\n"[..], b"\r\r\n", b"x\n"] {
            let mut long = b"+".to_vec();
            long.resize(MAX_LINE + 1 + depth, b'a');
            long.extend_from_slice(end);
            let (_, err, _) = same_however_cut(&long, &cut)?;
            prop_assert!(err.is_some(), "a line over MAX_LINE was accepted");
            // All but the line's last byte, then that byte: the decoder
            // has seen the line is long before its end arrives.
            let (last, most) = long.split_last().unwrap();
            let (_, in_two, _) = decode(&[most, &[*last]])?;
            prop_assert_eq!(&in_two, &err, "{:?} in two pieces", String::from_utf8_lossy(end));
        }
    }
}
