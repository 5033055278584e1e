//! The PROXY protocol header, v1 and v2 (`proxy.rs`, `Header::feed`), fed
//! whole and in pieces, as reads deliver it.
//!
//! - the same bytes, cut anywhere, give the same outcome: the same client
//!   and the same bytes after the header, or a refusal, never a different
//!   client for a different cut (the framing decides where the header ends
//!   before anything is parsed);
//! - a header is never longer than `MAX_HEADER`, and `rest` is exactly
//!   what followed it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monoloop::proxy::{Header, Progress, MAX_HEADER};
use monoloop_fuzz::cut;

fuzz_target!(|data: &[u8]| {
    let (payload, pieces) = cut(data);

    let whole = Header::default().feed(payload);
    if let Progress::Done(p) = &whole {
        assert!(payload.ends_with(&p.rest));
        assert!(payload.len() - p.rest.len() <= MAX_HEADER);
    }

    let mut header = Header::default();
    let mut fed = 0;
    let mut outcome = Progress::Partial;
    for piece in &pieces {
        fed += piece.len();
        outcome = header.feed(piece);
        if outcome != Progress::Partial {
            break;
        }
    }
    // What a connection would read after the header: the rest of the read
    // that completed it, then the pieces after that read.
    if let Progress::Done(p) = &mut outcome {
        p.rest.extend_from_slice(&payload[fed..]);
    }
    match (&whole, &outcome) {
        (Progress::Bad(_), Progress::Bad(_)) => {}
        _ => assert_eq!(whole, outcome, "the same bytes in pieces read otherwise"),
    }
});
