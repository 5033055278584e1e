//! The server's own certificate, checked at start and at each reload
//! (`tls::server_config`): is it valid now, and is it a leaf? rustls loads a certificate without asking either question;
//! a client that verifies asks both at every handshake, so a mistake here
//! would otherwise show only as every verifying client failing. And the
//! subject of a certificate, written out ([`subject`]): a client's, for
//! the access log.
//!
//! This module reads the two facts out of the certificate's DER with a small
//! reader of its own (tag, length, contents: just enough X.509 to reach the
//! validity and the basicConstraints extension) and turns them into a
//! [`Verdict`]. It neither logs nor fails: `tls::server_config` decides what
//! each verdict means for start-up. Anything it cannot read is
//! [`Verdict::Unreadable`], "cannot tell": rustls and the clients still
//! judge the certificate. The time is passed in, so that tests choose it.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the start-up check concluded about a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid now, and not a CA.
    Fine,
    /// Its notAfter has passed.
    Expired(Time),
    /// Its notBefore has not come yet.
    NotYetValid(Time),
    /// It has basicConstraints CA:TRUE: webpki refuses it as an end entity
    /// (whatever its dates, so this verdict comes first).
    CaAsLeaf,
    /// Not a certificate this reader understands: cannot tell.
    Unreadable,
}

/// Judges the DER certificate `der` at `now`.
pub fn check(der: &[u8], now: SystemTime) -> Verdict {
    let Some(facts) = read_certificate(der) else {
        return Verdict::Unreadable;
    };
    let now = unix_seconds(now);
    // RFC 5280 4.1.2.5: valid from notBefore through notAfter, inclusive.
    if facts.ca {
        Verdict::CaAsLeaf
    } else if now > facts.not_after.unix() {
        Verdict::Expired(facts.not_after)
    } else if now < facts.not_before.unix() {
        Verdict::NotYetValid(facts.not_before)
    } else {
        Verdict::Fine
    }
}

/// A moment of a certificate's validity, in UTC, to the second: X.509's
/// UTCTime and GeneralizedTime say no more than this (RFC 5280 4.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Time {
    /// Seconds since 1970-01-01 00:00:00 UTC (negative before).
    pub fn unix(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        days * 86_400 + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
    }
}

/// Prints as `2026-01-02 00:00:00 UTC`.
impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian
/// calendar: Howard Hinnant's `days_from_civil`. The year is counted from
/// March, so that the leap day falls at its end; an era is the 400-year
/// cycle after which the calendar repeats (146097 days).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400); // 0..=399
    let month_from_march = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468: the days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// `now` as Unix seconds; a clock set before 1970 gives a negative number.
fn unix_seconds(now: SystemTime) -> i64 {
    let clamp = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => clamp(after.as_secs()),
        Err(before) => -clamp(before.duration().as_secs()),
    }
}

/// The two facts the check needs.
#[derive(Debug, PartialEq, Eq)]
struct Facts {
    not_before: Time,
    not_after: Time,
    /// The subject's common name, if it has one in a string form.
    common_name: Option<String>,
    /// basicConstraints is present with cA TRUE.
    ca: bool,
}

// DER tags (X.690 8.1.2): universal types, then context-specific ones, whose
// 0x20 bit marks a constructed encoding (EXPLICIT tagging).
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0; // [0] EXPLICIT
const ISSUER_UNIQUE_ID: u8 = 0x81; // [1] IMPLICIT BIT STRING
const SUBJECT_UNIQUE_ID: u8 = 0x82; // [2] IMPLICIT BIT STRING
const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT

/// 2.5.29.19, id-ce-basicConstraints, as DER OID contents.
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];

/// A cursor over a run of DER elements.
///
/// Each step takes one whole element (tag, length, contents) off the front,
/// or returns `None` and moves nothing: a tag this reader does not handle
/// (the multi-byte form, which no element it walks uses), an indefinite or
/// over-long length, or contents that run past the end. The contents of a
/// constructed element are walked with a new cursor over them.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next element's tag and contents.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            short @ 0..=0x7f => (usize::from(short), rest),
            // Long form: the low bits count the length octets that follow.
            // 0x80, the indefinite length, is BER and never DER; four octets
            // already describe more than any certificate.
            0x81..=0x84 => {
                let count = usize::from(first & 0x7f);
                if rest.len() < count {
                    return None;
                }
                let (octets, rest) = rest.split_at(count);
                let len = octets
                    .iter()
                    .fold(0usize, |len, &b| (len << 8) | usize::from(b));
                (len, rest)
            }
            _ => return None,
        };
        if rest.len() < len {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, contents))
    }

    /// The next element's contents, if it has tag `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let before = self.0;
        match self.next() {
            Some((t, contents)) if t == tag => Some(contents),
            _ => {
                self.0 = before;
                None
            }
        }
    }

    /// An OPTIONAL element: `Some(None)` if the next element does not have
    /// tag `tag` (nothing is taken), `Some(Some(contents))` if it does, and
    /// `None` if it has the tag but is malformed.
    fn optional(&mut self, tag: u8) -> Option<Option<&'a [u8]>> {
        if self.0.first() == Some(&tag) {
            self.expect(tag).map(Some)
        } else {
            Some(None)
        }
    }

    /// The contents of the one element that must fill the cursor.
    fn only(mut self, tag: u8) -> Option<&'a [u8]> {
        let contents = self.expect(tag)?;
        self.0.is_empty().then_some(contents)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Walks Certificate -> TBSCertificate (RFC 5280 4.1) to the validity and
/// the extensions.
fn read_certificate(der: &[u8]) -> Option<Facts> {
    let mut certificate = Der(Der(der).only(SEQUENCE)?);
    let mut tbs = Der(certificate.expect(SEQUENCE)?);
    tbs.optional(VERSION)?;
    tbs.expect(INTEGER)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature (the algorithm)
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = Der(tbs.expect(SEQUENCE)?);
    let subject = tbs.expect(SEQUENCE)?;
    tbs.expect(SEQUENCE)?; // subjectPublicKeyInfo
    tbs.optional(ISSUER_UNIQUE_ID)?;
    tbs.optional(SUBJECT_UNIQUE_ID)?;
    let ca = match tbs.optional(EXTENSIONS)? {
        Some(extensions) => is_ca(extensions)?,
        None => false,
    };
    if !tbs.is_empty() {
        return None;
    }
    let not_before = read_time(validity.next()?)?;
    let not_after = read_time(validity.next()?)?;
    validity.is_empty().then_some(Facts {
        not_before,
        not_after,
        common_name: common_name(subject),
        ca,
    })
}

/// The commonName (2.5.4.3) in a Name ::= SEQUENCE OF SET OF
/// AttributeTypeAndValue, if one is there as text.
fn common_name(name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let mut rdns = Der(name);
    while !rdns.is_empty() {
        let (_, set) = rdns.next()?;
        let mut atvs = Der(set);
        while !atvs.is_empty() {
            let mut atv = Der(atvs.expect(SEQUENCE)?);
            let id = atv.expect(OID)?;
            let (_, value) = atv.next()?;
            if id == CN {
                return std::str::from_utf8(value).ok().map(str::to_string);
            }
        }
    }
    None
}

/// A certificate's subject as RFC 4514 writes a distinguished name, most
/// significant last as OpenSSL's `-nameopt RFC2253` and nginx's
/// `$ssl_client_s_dn` do (`CN=alice,O=Example,C=FR`): for the access log's
/// `client_subject=`. `None` if the certificate cannot be read.
pub fn subject(der: &[u8]) -> Option<String> {
    let mut tbs = Der(Der(Der(der).only(SEQUENCE)?).expect(SEQUENCE)?);
    tbs.optional(VERSION)?;
    tbs.expect(INTEGER)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let mut rdns = Der(tbs.expect(SEQUENCE)?);
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (_, set) = rdns.next()?;
        let mut atvs = Der(set);
        let mut rdn = Vec::new();
        while !atvs.is_empty() {
            let mut atv = Der(atvs.expect(SEQUENCE)?);
            let oid = atv.expect(OID)?;
            let (tag, value) = atv.next()?;
            rdn.push(format!(
                "{}={}",
                attribute_name(oid),
                attribute_value(tag, value)
            ));
        }
        parts.push(rdn.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// The short name of a subject attribute (RFC 4514 3, and those OpenSSL
/// prints), or its OID in dotted form.
fn attribute_name(oid: &[u8]) -> String {
    let known = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        _ => return dotted(oid),
    };
    known.to_string()
}

/// An OID's contents in dotted decimal (`2.5.4.42`).
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut arc: u64 = 0;
    for &b in oid {
        arc = (arc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(arc);
            arc = 0;
        }
    }
    let mut out = match arcs.first() {
        Some(&first) if first < 80 => format!("{}.{}", first / 40, first % 40),
        Some(&first) => format!("2.{}", first - 80),
        None => return "0".into(),
    };
    for a in &arcs[1..] {
        out.push_str(&format!(".{a}"));
    }
    out
}

/// An attribute's value as RFC 4514 writes it: the text of a string type
/// (UTF8String, PrintableString, IA5String, TeletexString taken as Latin-1),
/// with `,` `+` `"` `\` `<` `>` `;` and a leading `#` or space, or a
/// trailing space, escaped by a backslash; any other type, or text that is
/// not valid, as `#` and the hex of its contents.
fn attribute_value(tag: u8, value: &[u8]) -> String {
    const UTF8_STRING: u8 = 0x0c;
    const PRINTABLE_STRING: u8 = 0x13;
    const TELETEX_STRING: u8 = 0x14;
    const IA5_STRING: u8 = 0x16;
    let text = match tag {
        UTF8_STRING | PRINTABLE_STRING | IA5_STRING => {
            std::str::from_utf8(value).ok().map(str::to_string)
        }
        TELETEX_STRING => Some(value.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    };
    let Some(text) = text else {
        return value.iter().fold("#".to_string(), |mut s, b| {
            s.push_str(&format!("{b:02x}"));
            s
        });
    };
    let last = text.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A certificate's notAfter, in seconds since the Unix epoch (for the
/// metrics); `None` if it cannot be read.
pub fn not_after(der: &[u8]) -> Option<i64> {
    read_certificate(der).map(|facts| facts.not_after.unix())
}

/// What the log says of a certificate that was loaded: `CN=NAME, valid
/// until DATE`; `None` if it cannot be read.
pub fn describe(der: &[u8]) -> Option<String> {
    let facts = read_certificate(der)?;
    Some(match facts.common_name {
        Some(cn) => format!("CN={cn}, valid until {}", facts.not_after),
        None => format!("valid until {}", facts.not_after),
    })
}

/// Whether `[3] { SEQUENCE OF Extension }` holds basicConstraints with cA
/// TRUE.
fn is_ca(explicit: &[u8]) -> Option<bool> {
    let mut extensions = Der(Der(explicit).only(SEQUENCE)?);
    while !extensions.is_empty() {
        // Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE,
        //                          extnValue OCTET STRING }
        let mut extension = Der(extensions.expect(SEQUENCE)?);
        let id = extension.expect(OID)?;
        extension.optional(BOOLEAN)?;
        let value = extension.expect(OCTET_STRING)?;
        if id == BASIC_CONSTRAINTS {
            return basic_constraints_ca(value);
        }
    }
    Some(false)
}

/// BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE,
///                                 pathLenConstraint INTEGER OPTIONAL }
fn basic_constraints_ca(value: &[u8]) -> Option<bool> {
    let mut constraints = Der(Der(value).only(SEQUENCE)?);
    match constraints.optional(BOOLEAN)? {
        None => Some(false),
        // DER's TRUE is 0xFF. An explicit FALSE breaks DER's rule against
        // encoding a default, but means the same.
        Some([0xff]) => Some(true),
        Some([0x00]) => Some(false),
        Some(_) => None,
    }
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), the
/// only forms RFC 5280 4.1.2.5 allows in a certificate.
fn read_time((tag, text): (u8, &[u8])) -> Option<Time> {
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            // Two-digit years: 50..=99 are 19xx, 00..=49 are 20xx.
            let yy = i64::from(digits(&text[..2])?);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => (i64::from(digits(&text[..4])?), &text[4..]),
        _ => return None,
    };
    // rest is MMDDHHMMSSZ
    if rest[10] != b'Z' {
        return None;
    }
    let time = Time {
        year,
        month: digits(&rest[0..2])?,
        day: digits(&rest[2..4])?,
        hour: digits(&rest[4..6])?,
        minute: digits(&rest[6..8])?,
        second: digits(&rest[8..10])?,
    };
    let valid = (1..=12).contains(&time.month)
        && (1..=days_in_month(time.year, time.month)).contains(&time.day)
        && time.hour < 24
        && time.minute < 60
        && time.second < 60;
    valid.then_some(time)
}

/// ASCII decimal digits as a number; `None` if any byte is not a digit.
fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, IsCa, KeyPair};
    use std::time::Duration;

    /// A self-signed certificate for localhost, adjusted by `edit`.
    fn cert(edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn at(year: i64, month: u32, day: u32) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(midnight(year, month, day).unix() as u64)
    }

    fn midnight(year: i64, month: u32, day: u32) -> Time {
        Time {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        }
    }

    // ----- the calendar ------------------------------------------------------

    #[test]
    fn days_from_civil_agrees_with_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
        // 1700-03-01 and 2100-03-01: the century years that are not leap.
        assert_eq!(
            days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28),
            1
        );
        assert_eq!(
            days_from_civil(1700, 3, 1) - days_from_civil(1700, 2, 28),
            1
        );
        // 2026-01-02 00:00:00 UTC is 1767312000 (date -d ... +%s).
        assert_eq!(midnight(2026, 1, 2).unix(), 1_767_312_000);
        // A whole 400-year cycle.
        assert_eq!(
            days_from_civil(2400, 1, 1) - days_from_civil(2000, 1, 1),
            146_097
        );
    }

    #[test]
    fn unix_seconds_counts_both_ways_from_1970() {
        assert_eq!(unix_seconds(UNIX_EPOCH), 0);
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(90)), 90);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(90)), -90);
    }

    #[test]
    fn times_read_both_forms_and_refuse_nonsense() {
        let utc = |s: &str| read_time((UTC_TIME, s.as_bytes()));
        let gen = |s: &str| read_time((GENERALIZED_TIME, s.as_bytes()));
        let t = utc("260102030405Z").unwrap();
        assert_eq!(t.to_string(), "2026-01-02 03:04:05 UTC");
        assert_eq!(t.unix(), 1_767_312_000 + 3 * 3600 + 4 * 60 + 5);
        assert_eq!(utc("491231235959Z").unwrap().year, 2049);
        assert_eq!(utc("500101000000Z").unwrap().year, 1950);
        assert_eq!(gen("20500101000000Z").unwrap().year, 2050);
        assert_eq!(
            gen("99991231235959Z").unwrap().to_string(),
            "9999-12-31 23:59:59 UTC"
        );
        assert_eq!(utc("240229000000Z").unwrap().day, 29);
        for bad in [
            "230229000000Z", // not a leap year
            "261301000000Z", // month 13
            "260100000000Z", // day 0
            "260101240000Z", // hour 24
            "260101006000Z", // minute 60
            "2601010000000", // no Z
            "26010100000Z",  // too short
            "2601010000+0Z", // not a digit
        ] {
            assert_eq!(utc(bad), None, "{bad}");
        }
        assert_eq!(
            gen("260102030405Z"),
            None,
            "a UTCTime tagged as GeneralizedTime"
        );
        assert_eq!(read_time((OCTET_STRING, b"260102030405Z")), None);
    }

    // ----- the DER reader ----------------------------------------------------

    #[test]
    fn der_lengths_short_long_and_refused() {
        let mut d = Der(&[0x04, 0x02, b'h', b'i', 0x05, 0x00]);
        assert_eq!(d.next(), Some((0x04, &b"hi"[..])));
        assert_eq!(d.next(), Some((0x05, &b""[..])));
        assert!(d.is_empty());
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend([7u8; 256]);
        assert_eq!(Der(&long).next().map(|(_, c)| c.len()), Some(256));
        // Runs past the end; indefinite; five length octets; high tag.
        for bad in [
            &[0x04, 0x03, 1, 2][..],
            &[0x30, 0x80, 0, 0],
            &[0x04, 0x85, 0, 0, 0, 0, 1, 0],
            &[0x1f, 0x01, 0x00],
            &[0x04],
            &[],
        ] {
            let mut d = Der(bad);
            assert_eq!(d.next(), None, "{bad:02x?}");
            assert_eq!(d.0, bad, "a failed step moved the cursor");
        }
    }

    #[test]
    fn der_optional_and_expect_leave_the_cursor_on_a_mismatch() {
        let bytes = [0x02, 0x01, 0x05];
        let mut d = Der(&bytes);
        assert_eq!(d.optional(VERSION), Some(None));
        assert_eq!(d.expect(SEQUENCE), None);
        assert_eq!(d.expect(INTEGER), Some(&[5u8][..]));
        // The tag is there but the element is cut short: malformed.
        assert_eq!(Der(&[0xa0, 0x05, 0x02]).optional(VERSION), None);
    }

    // ----- verdicts on real certificates --------------------------------------

    #[test]
    fn a_good_leaf_is_fine() {
        // rcgen's defaults: 1975-01-01 (UTCTime) to 4096-01-01
        // (GeneralizedTime), no basicConstraints.
        let der = cert(|_| {});
        let facts = read_certificate(&der).unwrap();
        assert_eq!(facts.not_before, midnight(1975, 1, 1));
        assert_eq!(facts.not_after, midnight(4096, 1, 1));
        assert_eq!(not_after(&der), Some(midnight(4096, 1, 1).unix()));
        assert!(!facts.ca);
        assert_eq!(check(&der, at(2026, 6, 1)), Verdict::Fine);
        // basicConstraints present with cA FALSE.
        let explicit = cert(|p| p.is_ca = IsCa::ExplicitNoCa);
        assert_eq!(check(&explicit, at(2026, 6, 1)), Verdict::Fine);
    }

    #[test]
    fn an_expired_leaf_names_its_end() {
        let der = cert(|p| {
            p.not_before = date_time_ymd(2019, 1, 1);
            p.not_after = date_time_ymd(2020, 1, 1);
        });
        let end = midnight(2020, 1, 1);
        assert_eq!(check(&der, at(2026, 6, 1)), Verdict::Expired(end));
        // Valid through its last second, inclusive.
        let last = UNIX_EPOCH + Duration::from_secs(end.unix() as u64);
        assert_eq!(check(&der, last), Verdict::Fine);
        assert_eq!(
            check(&der, last + Duration::from_secs(1)),
            Verdict::Expired(end)
        );
    }

    #[test]
    fn a_leaf_not_yet_valid_names_its_start() {
        let der = cert(|p| {
            p.not_before = date_time_ymd(2040, 3, 1);
            p.not_after = date_time_ymd(2060, 3, 1);
        });
        assert_eq!(
            check(&der, at(2026, 6, 1)),
            Verdict::NotYetValid(midnight(2040, 3, 1))
        );
        assert_eq!(check(&der, at(2050, 1, 1)), Verdict::Fine);
    }

    #[test]
    fn a_ca_certificate_as_leaf_is_refused_whatever_its_dates() {
        let ca = cert(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
        assert!(read_certificate(&ca).unwrap().ca);
        assert_eq!(check(&ca, at(2026, 6, 1)), Verdict::CaAsLeaf);
        let old_ca = cert(|p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.not_after = date_time_ymd(2020, 1, 1);
        });
        assert_eq!(check(&old_ca, at(2026, 6, 1)), Verdict::CaAsLeaf);
    }

    #[test]
    fn a_subject_reads_as_rfc_4514_writes_it() {
        use rcgen::DnType;
        let der = cert(|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(DnType::CountryName, "FR");
            p.distinguished_name
                .push(DnType::OrganizationName, "Example, Inc.");
            p.distinguished_name.push(DnType::CommonName, "alice");
        });
        assert_eq!(
            subject(&der).as_deref(),
            Some(r"CN=alice,O=Example\, Inc.,C=FR")
        );
        assert_eq!(subject(b"not a certificate"), None);
        assert_eq!(dotted(&[0x55, 0x04, 0x2a]), "2.5.4.42");
        assert_eq!(attribute_value(0x0c, b"#x; "), r"\#x\;\ ");
        assert_eq!(attribute_value(0x0c, b" #"), r"\ #");
        assert_eq!(attribute_value(0x1e, &[0, 0x41]), "#0041");
    }

    #[test]
    fn garbage_cannot_be_judged() {
        let good = cert(|_| {});
        let now = at(2026, 6, 1);
        let mut trailing = good.clone();
        trailing.push(0);
        let mut flipped = good.clone();
        assert_eq!(
            &good[..2],
            [0x30, 0x82],
            "a certificate of 256 bytes or more"
        );
        assert_eq!(good[4], SEQUENCE);
        flipped[4] = 0x31; // the TBSCertificate's SEQUENCE tag, now a SET
        for bad in [
            &b""[..],
            b"not a certificate",
            &[0x30, 0x00],
            &good[..good.len() - 1],
            &good[..good.len() / 2],
            &trailing,
            &flipped,
        ] {
            assert_eq!(check(bad, now), Verdict::Unreadable, "{bad:02x?}");
        }
        // Every truncation of a real certificate, none of which may panic.
        for cut in 0..good.len() {
            assert_eq!(check(&good[..cut], now), Verdict::Unreadable);
        }
    }
}
