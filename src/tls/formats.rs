//! The files a TLS option may be given that are not the PEM monoloop
//! reads, recognised so that the error says what the file is and the
//! `openssl` command that makes PEM of it: DER (binary) certificates and
//! keys, PKCS#12 bundles (`.p12`, `.pfx`), and encrypted private keys,
//! whose passphrase a server started by systemd has nobody to ask.
//!
//! `tls.rs` reads each file once, asks [`problem`] about its bytes, and
//! has rustls parse them as PEM only when there is none; what is wrong
//! with a PEM file (no certificate in it, bad base64) is still rustls's to
//! find. Only the first bytes of a DER file are read, enough to tell a
//! PKCS#12 bundle from the rest; nothing here is X.509 (that is
//! `leaf.rs`'s).

use std::path::{Path, PathBuf};

/// What a file is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holds {
    /// A certificate chain, or CA certificates.
    Certificates,
    /// A private key.
    Key,
}

/// Why `bytes`, read from `path` for `holds`, is not PEM that monoloop
/// can use, with the command that converts it; `None` when it looks like
/// PEM (or like nothing this knows).
pub(super) fn problem(bytes: &[u8], path: &Path, holds: Holds) -> Option<String> {
    let file = shell(path);
    if contains(bytes, b"-----BEGIN ") {
        let encrypted = contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || contains(bytes, b"Proc-Type: 4,ENCRYPTED");
        if holds == Holds::Key && encrypted {
            let plain = shell(&beside(path, "-plain.pem"));
            return Some(format!(
                "the private key is encrypted, and monoloop cannot ask for its \
                 passphrase: write it out unencrypted with \
                 `openssl pkey -in {file} -out {plain}` (it asks for the passphrase \
                 once), readable by the server's user only"
            ));
        }
        return None;
    }
    let pkcs12 = match der(bytes)? {
        Der::Pkcs12 => true,
        Der::Other => false,
    };
    let pem = shell(&beside(path, ".pem"));
    Some(match (pkcs12, holds) {
        (true, _) => {
            let key = shell(&beside(path, "-key.pem"));
            format!(
                "this is a PKCS#12 bundle (binary), not PEM: take the certificates \
                 out with `openssl pkcs12 -in {file} -nokeys -out {pem}` and the key \
                 with `openssl pkcs12 -in {file} -nocerts -nodes -out {key}`"
            )
        }
        (false, Holds::Certificates) => format!(
            "this is DER (binary), not PEM: convert it with \
             `openssl x509 -inform DER -in {file} -out {pem}`"
        ),
        (false, Holds::Key) => format!(
            "this is DER (binary), not PEM: convert it with \
             `openssl pkey -inform DER -in {file} -out {pem}`"
        ),
    })
}

/// What a DER file holds, as far as its first element tells.
#[derive(Debug, PartialEq, Eq)]
enum Der {
    /// A PKCS#12 bundle: its SEQUENCE opens with the version, INTEGER 3
    /// (RFC 7292, PFX).
    Pkcs12,
    /// A certificate (a SEQUENCE that opens with a SEQUENCE), or a key
    /// (opening with INTEGER 0 or 1).
    Other,
}

/// `Some` if `bytes` are exactly one DER SEQUENCE, as a DER certificate,
/// key or bundle file is; `None` for anything else.
fn der(bytes: &[u8]) -> Option<Der> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    // The length: short form below 0x80, else 0x81 to 0x84 and that many
    // octets (X.690, 8.1.3).
    let (len, inner) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first - 0x80);
            let octets = rest.get(..n)?;
            let len = octets
                .iter()
                .fold(0usize, |l, &o| (l << 8) | usize::from(o));
            (len, &rest[n..])
        }
        _ => return None,
    };
    if inner.len() != len {
        return None;
    }
    Some(match inner {
        [0x02, 0x01, 0x03, ..] => Der::Pkcs12,
        _ => Der::Other,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `path`'s name without its extension, with `suffix` after it, in the
/// same directory: `key.der` and `.pem` give `key.pem`. A name that would
/// be `path` itself (a DER file named `.pem`) gets `-pem` before `.pem`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let named = path.with_file_name(format!("{stem}{suffix}"));
    if named == path {
        return path.with_file_name(format!("{stem}-pem{suffix}"));
    }
    named
}

/// `path` as a shell word: as is when it is plain, else in single quotes.
fn shell(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@".contains(&b));
    if plain && !text.is_empty() {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    const PEM_KEY: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";

    #[test]
    fn pem_passes_to_rustls() {
        assert_eq!(problem(PEM_KEY, p("k.pem"), Holds::Key), None);
        assert_eq!(problem(b"not a pem file\n", p("x.pem"), Holds::Key), None);
        assert_eq!(problem(b"", p("x.pem"), Holds::Certificates), None);
        // An encrypted key is only a problem where a key is wanted.
        let encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n";
        assert_eq!(problem(encrypted, p("c.pem"), Holds::Certificates), None);
    }

    #[test]
    fn an_encrypted_key_names_the_command_that_decrypts_it() {
        let expected = "the private key is encrypted, and monoloop cannot ask for its \
             passphrase: write it out unencrypted with `openssl pkey -in /etc/k.pem \
             -out /etc/k-plain.pem` (it asks for the passphrase once), readable by the \
             server's user only";
        let pkcs8 =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            problem(pkcs8, p("/etc/k.pem"), Holds::Key).unwrap(),
            expected
        );
        let legacy = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
            DEK-Info: AES-256-CBC,0123\n\nabcd\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            problem(legacy, p("/etc/k.pem"), Holds::Key).unwrap(),
            expected
        );
    }

    #[test]
    fn der_and_pkcs12_name_their_conversion() {
        // A certificate: SEQUENCE { SEQUENCE ... }.
        let cert = [0x30, 0x04, 0x30, 0x02, 0x05, 0x00];
        assert_eq!(
            problem(&cert, p("c.der"), Holds::Certificates).unwrap(),
            "this is DER (binary), not PEM: convert it with \
             `openssl x509 -inform DER -in c.der -out c.pem`"
        );
        // A key, in a file named .pem: the output may not overwrite it.
        let key = [0x30, 0x03, 0x02, 0x01, 0x00];
        assert_eq!(
            problem(&key, p("k.pem"), Holds::Key).unwrap(),
            "this is DER (binary), not PEM: convert it with \
             `openssl pkey -inform DER -in k.pem -out k-pem.pem`"
        );
        // A bundle: SEQUENCE { INTEGER 3, ... }, long-form length.
        let mut p12 = vec![0x30, 0x81, 0x83, 0x02, 0x01, 0x03];
        p12.extend([0u8; 0x80]);
        assert_eq!(
            problem(&p12, p("my cert.p12"), Holds::Key).unwrap(),
            "this is a PKCS#12 bundle (binary), not PEM: take the certificates out \
             with `openssl pkcs12 -in 'my cert.p12' -nokeys -out 'my cert.pem'` and \
             the key with `openssl pkcs12 -in 'my cert.p12' -nocerts -nodes -out \
             'my cert-key.pem'`"
        );
    }

    #[test]
    fn only_one_whole_der_sequence_is_taken_for_der() {
        assert_eq!(der(&[0x30, 0x00]), Some(Der::Other));
        assert_eq!(der(&[0x30, 0x03, 0x02, 0x01]), None, "short");
        assert_eq!(der(&[0x30, 0x00, 0x00]), None, "trailing bytes");
        assert_eq!(der(&[0x31, 0x00]), None, "not a SEQUENCE");
        assert_eq!(
            der(&[0x30, 0x80, 0x00, 0x00]),
            None,
            "BER's indefinite length"
        );
        assert_eq!(der(&[0x30]), None);
        assert_eq!(der(b"\x7fELF"), None);
    }
}
