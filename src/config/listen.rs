//! Where a server listens: `--listen` (repeatable) and `--metrics`, each an
//! IP address and port, a host name and port, or a port alone.
//!
//! [`parse_listen`] reads one value into a [`Listen`]; [`listens`] reads
//! every `--listen`, in order, and refuses the same one twice or two that
//! overlap, which could only fail at start with "already in use", by this
//! very server. Nothing is resolved or bound here: a host name is checked
//! for DNS syntax only; `lib.rs` resolves it and `sys.rs` binds (and says
//! what `:PORT` binds: one dual-stack socket).

use std::net::SocketAddr;

use crate::tokens::MAX_LISTENERS;

use super::model::Listen;
use super::parse::raw_value;

/// `--listen` and `--metrics`: an IP address and port, a host name and
/// port (resolved at start), or a port alone (`:8080` or `8080`): every
/// address. A host name is checked for DNS syntax here, so that a typo is
/// an argument error rather than a failed lookup.
pub(super) fn parse_listen(s: &str) -> Result<Listen, String> {
    const EXPECTED: &str = "expected HOST:PORT or :PORT, \
                            such as 127.0.0.1:8080, [::1]:8080, localhost:8080 or :8080";
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(Listen::Addr(addr));
    }
    let (host, port) = s.rsplit_once(':').unwrap_or(("", s));
    let port = match port_number(port) {
        Ok(port) => port,
        Err(Some(why)) => return Err(why),
        Err(None) => return Err(EXPECTED.into()),
    };
    if host.is_empty() {
        return Ok(Listen::Any(port));
    }
    let plausible = host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !plausible {
        return Err(EXPECTED.into());
    }
    Ok(Listen::Host {
        host: host.to_string(),
        port,
    })
}

/// A port number, 0 to 65535; `Err(Some(why))` for a number out of that
/// range, `Err(None)` for text that is no number.
pub(super) fn port_number(s: &str) -> Result<u16, Option<String>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(None);
    }
    s.parse()
        .map_err(|_| Some(format!("port {s} is out of range: ports are 0 to 65535")))
}

/// Every `--listen` (it may be repeated, as nginx's `listen` may), in
/// order. The same one twice, or two that overlap (`:8080`, every
/// address, beside `127.0.0.1:8080`), is a problem: the second could only
/// fail to bind, saying its address is in use, by this very server. Host
/// names are not compared: resolving them is start-up's.
pub(super) fn listens(args: &mut pico_args::Arguments) -> Result<Vec<Listen>, String> {
    let mut all: Vec<Listen> = Vec::new();
    while let Some(raw) = raw_value(args, "--listen")? {
        let listen = parse_listen(&raw)
            .map_err(|why| format!("invalid value '{raw}' for --listen: {why}"))?;
        if let Some(earlier) = all.iter().find(|l| overlap(l, &listen)) {
            return Err(if *earlier == listen {
                format!("--listen {listen} was given twice")
            } else {
                format!("--listen {earlier} and --listen {listen} overlap: give one or the other")
            });
        }
        all.push(listen);
    }
    if all.len() > MAX_LISTENERS {
        return Err(format!(
            "--listen was given {} times: at most {MAX_LISTENERS}",
            all.len()
        ));
    }
    Ok(all)
}

/// True if `a` and `b` cannot both be listened on: the same port (not 0,
/// which picks a free one) and the same address, or one of them every
/// address (`:PORT`) or its family's (`0.0.0.0`, `[::]`).
fn overlap(a: &Listen, b: &Listen) -> bool {
    let (ip, other) = match (a, b) {
        _ if a.port() != b.port() || a.port() == 0 => return false,
        (Listen::Any(_), Listen::Any(_) | Listen::Addr(_)) | (Listen::Addr(_), Listen::Any(_)) => {
            return true
        }
        (Listen::Addr(a), Listen::Addr(b)) => (a.ip(), b.ip()),
        _ => return false,
    };
    ip == other
        || (ip.is_ipv4() == other.is_ipv4() && (ip.is_unspecified() || other.is_unspecified()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::tests::{config, run};

    #[test]
    fn a_listen_is_an_address_a_host_name_or_a_port_alone() {
        assert_eq!(
            parse_listen("localhost:1"),
            Ok(Listen::Host {
                host: "localhost".into(),
                port: 1
            })
        );
        assert_eq!(
            parse_listen("[::1]:80"),
            Ok(Listen::Addr("[::1]:80".parse().unwrap()))
        );
        assert_eq!(parse_listen(":8080"), Ok(Listen::Any(8080)));
        assert_eq!(parse_listen("8080"), Ok(Listen::Any(8080)));
        assert_eq!(parse_listen("0"), Ok(Listen::Any(0)));
        for far in [
            "127.0.0.1:65536",
            "[::1]:70000",
            "host:99999",
            ":65536",
            "123456789012",
        ] {
            let port = far.rsplit(':').next().unwrap();
            assert_eq!(
                parse_listen(far),
                Err(format!("port {port} is out of range: ports are 0 to 65535")),
                "{far}"
            );
        }
        for bad in [
            "localhost",
            "::1:80",
            "bad!host:80",
            "host:",
            ":",
            "",
            "host:-1",
        ] {
            assert!(
                parse_listen(bad).unwrap_err().starts_with("expected "),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn listen_takes_an_address_a_host_name_or_a_port_alone() {
        let c = config(&["echo", "--listen", "localhost:0"]);
        let host = Listen::Host {
            host: "localhost".into(),
            port: 0,
        };
        assert_eq!(c.listen, [host]);
        let c = config(&["echo", "--listen", "[::1]:8080"]);
        assert_eq!(c.listen, [Listen::Addr("[::1]:8080".parse().unwrap())]);
        assert!(c.listen_given);
        let c = config(&["echo", "--listen", ":8080"]);
        assert_eq!(c.listen, [Listen::Any(8080)]);
        assert_eq!(config(&["echo", "--listen", "8080"]).listen, c.listen);
        let c = config(&["echo"]);
        assert_eq!(c.listen, [Listen::default_for(false)]);
        assert!(!c.listen_given);
        for bad in ["localhost", "bad!host:80", "::1:80", "host:"] {
            let e = run(&["echo", "--listen", bad]).unwrap_err();
            assert_eq!(
                e.problem,
                format!(
                    "invalid value '{bad}' for --listen: expected HOST:PORT or :PORT, \
                     such as 127.0.0.1:8080, [::1]:8080, localhost:8080 or :8080"
                )
            );
        }
    }

    #[test]
    fn listen_may_be_repeated_but_not_overlap() {
        let c = config(&[
            "echo",
            "--listen",
            "127.0.0.1:8080",
            "--listen",
            "[::1]:8080",
            "--listen",
            "localhost:9090",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::1]:0",
            "--listen",
            ":0",
        ]);
        let given: Vec<String> = c.listen.iter().map(|l| l.to_string()).collect();
        let expected = ["127.0.0.1:8080", "[::1]:8080", "localhost:9090"];
        assert_eq!(given[..3], expected);
        assert_eq!(given[3..], ["127.0.0.1:0", "[::1]:0", ":0"]);
        // The nginx way to every address: each family's wildcard.
        let c = config(&["echo", "--listen", "0.0.0.0:80", "--listen", "[::]:80"]);
        assert_eq!(c.listen.len(), 2);
        for (a, b, problem) in [
            (
                "127.0.0.1:80",
                "127.0.0.1:80",
                "--listen 127.0.0.1:80 was given twice",
            ),
            (":80", "80", "--listen :80 was given twice"),
            (
                ":80",
                "127.0.0.1:80",
                "--listen :80 and --listen 127.0.0.1:80 overlap: give one or the other",
            ),
            (
                "[::1]:80",
                ":80",
                "--listen [::1]:80 and --listen :80 overlap: give one or the other",
            ),
            (
                "0.0.0.0:80",
                "127.0.0.1:80",
                "--listen 0.0.0.0:80 and --listen 127.0.0.1:80 overlap: give one or the other",
            ),
            (
                "[::1]:80",
                "[::]:80",
                "--listen [::1]:80 and --listen [::]:80 overlap: give one or the other",
            ),
        ] {
            let e = run(&["echo", "--listen", a, "--listen", b]).unwrap_err();
            assert_eq!(e.problem, problem);
        }
        let mut many = vec!["echo"];
        let ports: Vec<String> = (1..=65).map(|p| format!("127.0.0.1:{p}")).collect();
        for p in &ports {
            many.extend(["--listen", p]);
        }
        let e = run(&many).unwrap_err();
        assert_eq!(e.problem, "--listen was given 65 times: at most 64");
    }

    #[test]
    fn metrics_takes_what_listen_takes() {
        let c = config(&["echo", "--metrics", "localhost:9100"]);
        let host = Listen::Host {
            host: "localhost".into(),
            port: 9100,
        };
        assert_eq!(c.metrics, Some(host));
        assert_eq!(
            config(&["echo", "--metrics", ":0"]).metrics,
            Some(Listen::Any(0))
        );
        assert_eq!(config(&["echo"]).metrics, None);
        let e = run(&["echo", "--metrics", "1.2.3.4:5", "--metrics", "1.2.3.4:6"]).unwrap_err();
        assert_eq!(e.problem, "--metrics was given twice");
    }
}
