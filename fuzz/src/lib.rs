//! What the targets share: one input read as the same bytes cut into
//! pieces, so that a target can feed them whole and in pieces and compare.

/// The input `[n, c1, ..., cn, payload...]`: the payload, and the pieces
/// it is cut into, `c1` bytes, then `c2`, ... (0 is an empty read), then
/// what is left as one last piece. Cuts past the payload's end are
/// clamped. An input too short for its `n` is all payload, in one piece.
pub fn cut(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let Some((&n, rest)) = data.split_first() else {
        return (data, Vec::new());
    };
    let n = usize::from(n);
    if rest.len() < n {
        return (data, vec![data]);
    }
    let (cuts, payload) = rest.split_at(n);
    let mut pieces = Vec::with_capacity(n + 1);
    let mut at = 0;
    for &c in cuts {
        let end = (at + usize::from(c)).min(payload.len());
        pieces.push(&payload[at..end]);
        at = end;
    }
    pieces.push(&payload[at..]);
    (payload, pieces)
}

/// An encoder for RESP values, written apart from the decoder's, for the
/// round trip: what the decoder returns, written again, reads the same.
pub mod resp {
    use monoloop::cluster::resp::Value;

    pub fn write(v: &Value, out: &mut Vec<u8>) {
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

    fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
        out.push(kind);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cuts() {
        assert_eq!(cut(b""), (&b""[..], vec![]));
        assert_eq!(cut(b"\x00abc"), (&b"abc"[..], vec![&b"abc"[..]]));
        assert_eq!(
            cut(b"\x02\x01\x00abc"),
            (&b"abc"[..], vec![&b"a"[..], b"", b"bc"])
        );
        assert_eq!(cut(b"\x05ab"), (&b"\x05ab"[..], vec![&b"\x05ab"[..]]));
    }
}
