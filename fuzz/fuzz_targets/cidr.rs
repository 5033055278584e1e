//! `--allow`, `--deny` and `--proxy-from` ranges (`edge.rs`, `Cidr`'s
//! `FromStr`): never panics; a range that parses prints as text that
//! parses to the same range, contains its own address, and matches an
//! address by its first `prefix` bits only.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use monoloop::edge::Cidr;

fuzz_target!(|data: &[u8]| {
    // The first 16 bytes are an address to match, the rest the text.
    if data.len() < 16 {
        return;
    }
    let (octets, text) = data.split_at(16);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(cidr) = text.parse::<Cidr>() else {
        return;
    };
    let shown = cidr.to_string();
    assert_eq!(
        shown.parse::<Cidr>(),
        Ok(cidr),
        "{text:?} shown as {shown:?}"
    );
    let (addr, prefix) = shown.split_once('/').expect("ADDR/BITS");
    let addr: IpAddr = addr.parse().expect("an address");
    let prefix: u32 = prefix.parse().expect("a prefix");
    assert!(cidr.contains(addr), "{shown} does not contain its address");

    // An address of the range's family, from the input's bytes: in the
    // range exactly when its first `prefix` bits are the range's.
    let other: IpAddr = match addr {
        IpAddr::V4(_) => <[u8; 4]>::try_from(&octets[..4]).unwrap().into(),
        IpAddr::V6(_) => <[u8; 16]>::try_from(octets).unwrap().into(),
    };
    let bits = |ip: IpAddr| -> u128 {
        match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        }
    };
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    let same = bits(addr) & mask == bits(other) & mask;
    // An IPv4-mapped IPv6 address is matched as the IPv4 one it carries.
    let mapped = matches!(other, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    if !mapped {
        assert_eq!(cidr.contains(other), same, "{shown} and {other}");
    }
});
