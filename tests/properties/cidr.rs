//! `--allow`, `--deny` and `--proxy-from` ranges (`edge.rs`, `Cidr`'s
//! `FromStr`), as the fuzz target `cidr` checks them:
//!
//! - a range that parses prints as text that parses to the same range,
//!   and contains its own address;
//! - it matches an address of its family by the first `prefix` bits only,
//!   and an IPv4-mapped IPv6 address as the IPv4 address it carries;
//! - a prefix longer than the family's is refused; nothing panics.
//!
//! Inputs are addresses and prefixes of both families written as ranges,
//! bare, and with mapped addresses, and text near that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use monoloop::edge::Cidr;
use proptest::prelude::*;

use super::cases;

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        // Mostly the same as another: the interesting matches.
        any::<u8>().prop_map(|b| IpAddr::V4(Ipv4Addr::new(10, 0, b, 1))),
    ]
}

/// The address as 128 bits, an IPv4 one in the top 32.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn same_prefix(a: IpAddr, b: IpAddr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    bits(a) & mask == bits(b) & mask
}

fn mapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    }
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn a_range_round_trips_and_matches_by_its_prefix(
        net in addr(),
        prefix in 0u32..=128,
        bare in any::<bool>(),
        other in addr(),
        flip in 0u32..128,
    ) {
        let max = if net.is_ipv4() { 32 } else { 128 };
        let text = if bare { net.to_string() } else { format!("{net}/{prefix}") };
        let parsed = text.parse::<Cidr>();
        if !bare && prefix > max {
            prop_assert!(parsed.is_err(), "{} accepted", text);
            return Ok(());
        }
        let cidr = parsed.unwrap();
        let prefix = if bare { max } else { prefix };
        let shown = cidr.to_string();
        prop_assert_eq!(shown.parse::<Cidr>(), Ok(cidr));
        prop_assert_eq!(&shown, &format!("{net}/{prefix}"));
        prop_assert!(cidr.contains(net));
        prop_assert!(cidr.contains(mapped(net)), "{} and its mapped form", shown);
        // An address one bit off: inside exactly when the bit is past the
        // prefix.
        let bit = flip % max;
        let off = match net {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) ^ (1 << (31 - bit)))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) ^ (1 << (127 - bit)))),
        };
        prop_assert_eq!(cidr.contains(off), bit >= prefix, "{} and {}", shown, off);
        // Any other address: by its first `prefix` bits, in its family.
        let canonical = match other {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(other, IpAddr::V4),
            v4 => v4,
        };
        let want = canonical.is_ipv4() == net.is_ipv4() && same_prefix(net, canonical, prefix);
        prop_assert_eq!(cidr.contains(other), want, "{} and {}", shown, other);
    }

    #[test]
    fn text_near_a_range_never_panics(
        text in prop::collection::vec(prop::sample::select(b"0123456789abcdef.:/f%[] -+".to_vec()), 0..45)
    ) {
        let text = String::from_utf8(text).unwrap();
        if let Ok(cidr) = text.parse::<Cidr>() {
            let shown = cidr.to_string();
            prop_assert_eq!(shown.parse::<Cidr>(), Ok(cidr));
        }
    }
}
