//! The echo load: clients that exchange random bytes and check every one
//! that comes back (short and long lives: connection churn), slow readers
//! that send a lot and read it back a little at a time, and the vanishing
//! clients of every mode (a reset or a close without goodbye, mid-exchange),
//! which live here because most of them are echo's.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::net::{arm_reset, connect, nap, read_until, Rng, Shared, Stream};
use crate::tls::Client;

/// Where each server listens, and under which name its connections count.
#[derive(Clone)]
pub struct Targets {
    pub echo: Vec<Echo>,
    pub broadcast: SocketAddr,
    /// Chat instances: (name, address).
    pub chat: Vec<(&'static str, SocketAddr)>,
    pub file: SocketAddr,
    /// The biggest file served, and its name.
    pub big_file: String,
}

/// An echo server: its name, address, and whether it speaks TLS.
#[derive(Clone)]
pub struct Echo {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub tls: bool,
}

/// A connection to an echo server, and its socket (for a reset).
fn open(shared: &Shared, pki: &Client, e: &Echo) -> std::io::Result<(Box<dyn Stream>, TcpStream)> {
    if e.tls {
        let s = pki.connect(shared, e.name, e.addr)?;
        let raw = s.sock.try_clone()?;
        Ok((Box::new(s), raw))
    } else {
        let s = connect(shared, e.name, e.addr)?;
        let raw = s.try_clone()?;
        Ok((Box::new(s), raw))
    }
}

/// One exchange: `n` random bytes out, the same `n` back, compared.
fn exchange(shared: &Shared, s: &mut dyn Stream, rng: &mut Rng, n: usize) -> std::io::Result<bool> {
    let out = rng.bytes(n);
    s.write_all(&out)?;
    s.flush()?;
    let mut back = vec![0u8; n];
    s.read_exact(&mut back)?;
    if back == out {
        shared.echoed.add(n as u64);
        Ok(true)
    } else {
        shared.echo_mismatches.add(1);
        Ok(false)
    }
}

/// An echo client, over and over until the run stops: a connection lives
/// 1 to 60 exchanges of 1 byte to 8 KiB, 50 to 250 ms apart, then says
/// goodbye (FIN, or TLS close_notify) and the next one connects.
pub fn client(shared: Arc<Shared>, pki: Arc<Client>, e: Echo, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..1_000_000 {
        if shared.stopping() {
            return;
        }
        let (mut s, raw) = match open(&shared, &pki, &e) {
            Ok(c) => c,
            Err(err) => {
                shared.fail(format!("{}: connect: {err}", e.name));
                nap(&shared, Duration::from_secs(1));
                continue;
            }
        };
        let rounds = rng.range(1, 60);
        let mut ok = true;
        for _ in 0..rounds {
            let n = rng.range(1, 8192) as usize;
            match exchange(&shared, &mut *s, &mut rng, n) {
                Ok(true) => {}
                Ok(false) => {
                    shared.fail(format!("{}: {n} bytes echoed wrong", e.name));
                    ok = false;
                    break;
                }
                Err(err) => {
                    shared.fail(format!("{}: exchange of {n} bytes: {err}", e.name));
                    ok = false;
                    break;
                }
            }
            if shared.stopping() {
                break;
            }
            nap(&shared, rng.pause(50, 250));
        }
        if ok {
            goodbye(&shared, e.name, s, &raw);
        }
    }
}

/// Ends a connection cleanly: our FIN, then the server's.
fn goodbye(shared: &Shared, name: &str, mut s: Box<dyn Stream>, raw: &TcpStream) {
    // On TLS the stream's own close_notify goes first (rustls sends it
    // when told; a plain stream ignores the flush).
    let _ = s.flush();
    let _ = raw.shutdown(Shutdown::Write);
    let mut rest = [0u8; 64];
    match raw.try_clone().and_then(|mut r| r.read(&mut rest)) {
        Ok(_) => {}
        Err(err) => shared.fail(format!("{name}: waiting for the close: {err}")),
    }
}

/// Slow readers: 64 to 256 KiB sent at once, read back 2 KiB every 50 ms
/// and compared, one after another until the run stops.
pub fn slow_reader(shared: Arc<Shared>, pki: Arc<Client>, targets: Targets, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..1_000_000 {
        if shared.stopping() {
            return;
        }
        let e = &targets.echo[rng.range(0, targets.echo.len() as u64 - 1) as usize];
        let (mut s, raw) = match open(&shared, &pki, e) {
            Ok(c) => c,
            Err(err) => {
                shared.fail(format!("{} slow reader: connect: {err}", e.name));
                nap(&shared, Duration::from_secs(1));
                continue;
            }
        };
        let n = rng.range(64, 256) as usize * 1024;
        let out = rng.bytes(n);
        if let Err(err) = s.write_all(&out).and_then(|_| s.flush()) {
            shared.fail(format!("{} slow reader: write {n}: {err}", e.name));
            continue;
        }
        let mut back = Vec::with_capacity(n);
        let mut buf = [0u8; 2048];
        while back.len() < n {
            let want = buf.len().min(n - back.len());
            match s.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(k) => back.extend_from_slice(&buf[..k]),
                Err(err) => {
                    shared.fail(format!("{} slow reader: read: {err}", e.name));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if back == out {
            shared.echoed.add(n as u64);
            shared.slow_done.add(1);
            goodbye(&shared, e.name, s, &raw);
        } else if back.len() == n {
            shared.echo_mismatches.add(1);
            shared.fail(format!("{} slow reader: {n} bytes echoed wrong", e.name));
        } else {
            shared.fail(format!(
                "{} slow reader: {} of {n} bytes came back",
                e.name,
                back.len()
            ));
        }
        nap(&shared, rng.pause(200, 1000));
    }
}

/// Clients that vanish: in every mode, mid-exchange, with a reset or a
/// bare close; and some that connect and say nothing (health checks).
pub fn vanisher(shared: Arc<Shared>, pki: Arc<Client>, targets: Targets, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..1_000_000 {
        if shared.stopping() {
            return;
        }
        if let Err(err) = vanish_once(&shared, &pki, &targets, &mut rng) {
            // The server may close first (a half TLS hello, say): only a
            // failure to connect at all is the server's fault.
            if err.kind() == std::io::ErrorKind::ConnectionRefused {
                shared.fail(format!("vanishing client: {err}"));
            }
        }
        shared.vanished.add(1);
        nap(&shared, rng.pause(200, 800));
    }
}

fn vanish_once(shared: &Shared, pki: &Client, t: &Targets, rng: &mut Rng) -> std::io::Result<()> {
    let reset = rng.range(0, 1) == 0;
    let s = match rng.range(0, 7) {
        // Echo, plain or TLS: bytes sent, some read back, gone.
        0 | 1 => {
            let e = &t.echo[rng.range(0, t.echo.len() as u64 - 1) as usize];
            let (mut s, raw) = open(shared, pki, e)?;
            let n = rng.range(1, 65536) as usize;
            let out = rng.bytes(n);
            s.write_all(&out)?;
            s.flush()?;
            let mut some = vec![0u8; out.len().min(100)];
            s.read_exact(&mut some)?;
            raw
        }
        // Half a TLS ClientHello to the TLS server.
        2 => {
            let e = t.echo.iter().find(|e| e.tls).unwrap_or(&t.echo[0]);
            let mut s = connect(shared, e.name, e.addr)?;
            s.write_all(&[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ])?;
            s
        }
        // Broadcast: half a line.
        3 => {
            let mut s = connect(shared, "broadcast", t.broadcast)?;
            s.write_all(b"half a li")?;
            s
        }
        // Chat: a name, half a line.
        4 => {
            let (name, addr) = t.chat[rng.range(0, t.chat.len() as u64 - 1) as usize];
            let mut s = connect(shared, name, addr)?;
            read_until(&mut s, b": ", 200)?;
            s.write_all(format!("ghost{}\nhalf a mess", rng.range(0, 1 << 40)).as_bytes())?;
            s
        }
        // File: the biggest file asked for, a little read.
        5 => {
            let mut s = connect(shared, "file", t.file)?;
            s.write_all(format!("{}\n", t.big_file).as_bytes())?;
            let mut some = [0u8; 10_000];
            s.read_exact(&mut some)?;
            s
        }
        // A file request cut short.
        6 => {
            let mut s = connect(shared, "file", t.file)?;
            s.write_all(b"some/fi")?;
            s
        }
        // Nothing at all: connect and go (a health check).
        _ => {
            let e = &t.echo[rng.range(0, t.echo.len() as u64 - 1) as usize];
            connect(shared, e.name, e.addr)?
        }
    };
    if reset {
        arm_reset(&s);
    }
    drop(s);
    Ok(())
}
