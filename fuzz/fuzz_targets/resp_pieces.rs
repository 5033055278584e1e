//! RESP replies from Redis (`cluster/resp.rs`), fed whole and in pieces.
//!
//! - the same bytes, cut anywhere, give the same replies and then the same
//!   error (or the same bytes still buffered);
//! - an error sticks: `next` returns it again;
//! - every reply, written again, decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monoloop::cluster::resp::{Decoder, Malformed, Value};
use monoloop_fuzz::{cut, resp};

/// Replies until "not yet" or an error.
fn drain(d: &mut Decoder, out: &mut Vec<Value>) -> Option<Malformed> {
    loop {
        match d.next() {
            Ok(Some(v)) => out.push(v),
            Ok(None) => return None,
            Err(e) => {
                assert_eq!(d.next(), Err(e.clone()), "an error must stick");
                return Some(e);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (payload, pieces) = cut(data);

    let mut whole = Decoder::new();
    whole.feed(payload);
    let mut once = Vec::new();
    let once_err = drain(&mut whole, &mut once);

    let mut cut_up = Decoder::new();
    let mut many = Vec::new();
    let mut many_err = None;
    for piece in &pieces {
        cut_up.feed(piece);
        many_err = drain(&mut cut_up, &mut many);
        if many_err.is_some() {
            break;
        }
    }
    assert_eq!(once, many, "the same bytes in pieces gave other replies");
    assert_eq!(
        once_err, many_err,
        "the same bytes in pieces ended otherwise"
    );
    if once_err.is_none() {
        assert_eq!(whole.buffered(), cut_up.buffered());
    }

    // The round trip.
    for v in &once {
        let mut bytes = Vec::new();
        resp::write(v, &mut bytes);
        let mut again = Decoder::new();
        again.feed(&bytes);
        assert_eq!(again.next().as_ref(), Ok(&Some(v.clone())), "round trip");
        assert_eq!(again.next(), Ok(None));
        assert_eq!(again.buffered(), 0);
    }
});
