//! The PROXY protocol header, v1 and v2 (`proxy.rs`, `Header::feed`), as
//! the fuzz target `proxy_header` checks it:
//!
//! - the same bytes, cut anywhere, give the same outcome: the same client
//!   and the same bytes after the header, or a refusal (the framing
//!   decides where a header ends before anything is parsed);
//! - a header is never longer than `MAX_HEADER`, and `rest` is exactly
//!   what followed it;
//! - and, for headers made here: a well-formed header names the client it
//!   was made with (none for `LOCAL`, `UNKNOWN`, UDP or UNIX), whatever
//!   follows it; and a header cut short is never taken for a whole one.
//!
//! Inputs are v1 (`TCP4`, `TCP6`, `UNKNOWN`) and v2 (`PROXY` and `LOCAL`,
//! IPv4, IPv6, UNIX, TCP and UDP, with TLVs) headers followed by client
//! bytes, the same mutated by a byte, and raw bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use monoloop::proxy::{Header, Parsed, Progress, MAX_HEADER};
use proptest::prelude::*;

use super::{cases, cuts, mutate, mutation, pieces};

/// A header made here, and the client it names.
#[derive(Debug, Clone)]
struct Made {
    bytes: Vec<u8>,
    client: Option<SocketAddr>,
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

/// A version 1 header: `PROXY TCP4|TCP6 src dst sport dport\r\n`, or
/// `PROXY UNKNOWN ...\r\n`.
fn v1() -> impl Strategy<Value = Made> {
    let tcp = (addr(), any::<u16>(), any::<u16>(), any::<bool>()).prop_map(
        |(src, sport, dport, other)| {
            let dst = match src {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(10, 0, 0, if other { 2 } else { 1 })),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            Made {
                bytes: format!("PROXY {family} {src} {dst} {sport} {dport}\r\n").into_bytes(),
                client: Some(SocketAddr::new(src, sport)),
            }
        },
    );
    let unknown = prop::sample::select(vec!["PROXY UNKNOWN\r\n", "PROXY UNKNOWN ::1 ::2 1 2\r\n"])
        .prop_map(|s| Made {
            bytes: s.as_bytes().to_vec(),
            client: None,
        });
    prop_oneof![4 => tcp, 1 => unknown]
}

/// A version 2 header: signature, version and command, family and
/// transport, length, addresses, TLVs.
fn v2() -> impl Strategy<Value = Made> {
    let tlvs = prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20)),
        0..3,
    )
    .prop_map(|t| {
        t.into_iter()
            .flat_map(|(kind, value)| {
                let mut v = vec![kind];
                v.extend((value.len() as u16).to_be_bytes());
                v.extend(value);
                v
            })
            .collect::<Vec<u8>>()
    });
    // (local, udp, unix)
    let shape = (0u8..8, addr(), any::<u16>(), any::<u16>());
    (shape, tlvs).prop_map(|((kind, src, sport, dport), tlvs)| {
        let local = kind == 0;
        let udp = kind == 1;
        let unix = kind == 2;
        let command = if local { 0x20 } else { 0x21 };
        let (family, block): (u8, Vec<u8>) = if unix {
            (0x30, vec![b'/'; 216])
        } else {
            match src {
                IpAddr::V4(a) => {
                    let mut b = a.octets().to_vec();
                    b.extend([127, 0, 0, 1]);
                    b.extend(sport.to_be_bytes());
                    b.extend(dport.to_be_bytes());
                    (0x10, b)
                }
                IpAddr::V6(a) => {
                    let mut b = a.octets().to_vec();
                    b.extend(Ipv6Addr::LOCALHOST.octets());
                    b.extend(sport.to_be_bytes());
                    b.extend(dport.to_be_bytes());
                    (0x20, b)
                }
            }
        };
        let transport = if udp { 2 } else { 1 };
        let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        bytes.push(command);
        bytes.push(family | transport);
        bytes.extend(((block.len() + tlvs.len()) as u16).to_be_bytes());
        bytes.extend(block);
        bytes.extend(tlvs);
        let client = (!local && !udp && !unix).then(|| SocketAddr::new(src, sport));
        Made { bytes, client }
    })
}

/// What a client sends after the header: nothing, a line, a TLS record's
/// start, or bytes that look like another header.
fn after() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"hello\n".to_vec()),
        Just(b"\x16\x03\x01\x02\x00\x01".to_vec()),
        Just(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

/// Feeds `pieces` as reads deliver them; the outcome, with `rest` what a
/// connection would read after the header (the rest of the read that
/// completed it, then the reads after).
fn feed(payload: &[u8], pieces: &[&[u8]]) -> Progress {
    let mut header = Header::default();
    let mut fed = 0;
    let mut outcome = Progress::Partial;
    for piece in pieces {
        fed += piece.len();
        outcome = header.feed(piece);
        if outcome != Progress::Partial {
            break;
        }
    }
    if let Progress::Done(p) = &mut outcome {
        p.rest.extend_from_slice(&payload[fed..]);
    }
    outcome
}

/// The outcome of `payload` whole and in `pieces` agree, and a header
/// found is bounded and followed by exactly the rest.
fn same_however_cut(payload: &[u8], cut: &[u16]) -> Result<Progress, TestCaseError> {
    let whole = Header::default().feed(payload);
    if let Progress::Done(p) = &whole {
        prop_assert!(payload.ends_with(&p.rest));
        prop_assert!(payload.len() - p.rest.len() <= MAX_HEADER);
    }
    let many = feed(payload, &pieces(payload, cut));
    match (&whole, &many) {
        (Progress::Bad(_), Progress::Bad(_)) => {}
        _ => prop_assert_eq!(&whole, &many, "the same bytes in pieces read otherwise"),
    }
    Ok(whole)
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn a_header_names_its_client_however_cut(made in prop_oneof![v1(), v2()], rest in after(), cut in cuts()) {
        let mut payload = made.bytes.clone();
        payload.extend(&rest);
        let got = same_however_cut(&payload, &cut)?;
        prop_assert_eq!(got, Progress::Done(Parsed { client: made.client, rest }));
    }

    #[test]
    fn a_header_cut_short_is_never_whole(made in prop_oneof![v1(), v2()], keep in any::<u16>()) {
        let n = made.bytes.len() * usize::from(keep) / 65536;
        prop_assert_eq!(Header::default().feed(&made.bytes[..n]), Progress::Partial);
    }

    #[test]
    fn a_mutated_header_reads_the_same_however_cut(
        made in prop_oneof![v1(), v2()],
        rest in after(),
        m in prop::collection::vec(mutation(), 1..3),
        cut in cuts(),
    ) {
        let mut payload = made.bytes.clone();
        payload.extend(&rest);
        let payload = m.iter().fold(payload, mutate);
        same_however_cut(&payload, &cut)?;
    }

    #[test]
    fn any_bytes_read_the_same_however_cut(payload in prop::collection::vec(any::<u8>(), 0..200), cut in cuts()) {
        same_however_cut(&payload, &cut)?;
    }
}
