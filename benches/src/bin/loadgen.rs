//! The load generator: one thread, one mio readiness loop, many connections.
//!
//! It drives one scenario against one server and prints, on stdout:
//! `START` when the measured window opens (after a warm-up), `END` when it
//! closes (the runner samples the server's CPU at both), then one
//! `RESULT key=value ...` line. Everything is bounded by count and time, and
//! it only ever connects to the address it is given (loopback, from the
//! runner).
//!
//! Scenarios:
//! - `echo`: C connections each keep D messages of S bytes in flight (D = 1
//!   is ping-pong, D > 1 pipelined); latency per message.
//! - `open`: C connections, messages sent at a fixed total rate on a
//!   schedule; latency is measured from the *intended* send time, so a
//!   stalled server cannot hide its stall (no coordinated omission).
//! - `stream`: C connections write continuously and read everything back,
//!   checking every byte.
//! - `storm`: N connections opened as fast as possible (up to K at once),
//!   each sending one message, reading it back and closing.
//! - `idle`: N connections opened and held until standard input closes;
//!   with `--tls` (and `--ca`), each first through a full TLS handshake.
//! - `fanout`: one sender and C receivers on a broadcast relay; the sender
//!   keeps at most W lines ahead of the slowest receiver; lines delivered
//!   per second and delivery latency (send to receipt, per receiver).
//!   With `--addrs A,B,...` (issue 22: instances joined through Redis) the
//!   receivers are spread over the addresses in turn and the sender is on
//!   the first; the RESULT line adds `sent=` (lines the sender sent in the
//!   window, counted as deliveries per receiver), `remote_p50=` and
//!   `remote_p99=` (receivers on the other addresses only, whose lines went
//!   through Redis) and `lost=` (sequence numbers a receiver skipped: a
//!   line it never had). Every address must be loopback.
//! - `tls`: N full TLS handshakes (no resumption), K at once, each closed
//!   once done; handshakes per second. The server's certificate is checked
//!   against `--ca`, as a real client would.
//! - `tls-resume` (issue 14): N *resumed* TLS 1.3 handshakes, K at once.
//!   All share one client configuration whose ticket store ([`TicketPool`])
//!   is primed, before the window, by full handshakes only (`primed=P`)
//!   until it holds N + K tickets (`held=H`), so the store cannot run dry:
//!   OpenSSL servers send at most one new ticket on a resumed handshake
//!   (Node none, nginx one). Each handshake in the window takes one ticket
//!   and is done when its handshake is. `resumed=N` in the RESULT line says
//!   how many really resumed (rustls's `HandshakeKind::Resumed`): a server
//!   that does not resume shows `resumed=0` instead of passing off full
//!   handshakes. (`tls` reports `resumed=` too; it should be 0.)
//! - `tls-stream`: `stream` over TLS (one rustls client per connection), so
//!   the server decrypts and re-encrypts every byte.
//! - `download` and `tls-download` (issue 11: files without copies, and
//!   TLS against nginx): C connections each send
//!   `--request` (`NAME\n` for monoloop's file mode, `GET /NAME
//!   HTTP/1.0\r\n\r\n` for an HTTP server; the two-character escapes `\r`
//!   and `\n` become CR and LF), over plain TCP or TLS, and read the reply
//!   to its end; the
//!   body must be exactly `--size` bytes, the file's size. A request that
//!   starts `GET ` wants an HTTP reply: it must say `200`, and its header is
//!   not counted. A finished connection is replaced by a new one, with a
//!   full handshake, until the window closes. `mbps` is body bytes read in the
//!   window, `msgs` the downloads finished in it, `p50`.. their durations.
//! - `mixed` (issue 11, latency under mixed load): `--bulk B` connections
//!   (default 50) stream as in `stream`, while ONE interactive connection
//!   plays 64-byte ping-pong; `--secs W` is its window (default 5 s here).
//!   `--tls` runs both over TLS (needs `--ca`). In its RESULT line, `msgs`,
//!   `rate`, `p50`, `p99`, `p999` and `max` are the interactive client's
//!   (round trips, round trips per second, µs), `mbps` the bulk streams'.
//!   `--bulk 0` is the baseline: the interactive client alone.
//! - `burn`: spins on one core for `--secs`, doing nothing else; the runner
//!   starts it beside a server to make that server's core busy, and stops
//!   it by pid (`--secs` only bounds it, should the runner die).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use std::sync::Arc;

struct Args {
    addr: SocketAddr,
    /// `fanout`: the instances (`--addrs`), `addr` alone if not given.
    addrs: Vec<SocketAddr>,
    scenario: String,
    conns: usize,
    size: usize,
    depth: usize,
    rate: f64,
    secs: f64,
    warmup: f64,
    count: usize,
    concurrency: usize,
    window: usize,
    ca: Option<String>,
    cpu: Option<usize>,
    /// `mixed`: how many bulk streams run beside the interactive client.
    bulk: usize,
    /// `mixed`: everything over TLS.
    tls: bool,
    /// `tls-download`: what each connection sends (`\r` and `\n` escapes
    /// turned into CR and LF).
    request: Option<String>,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let num = |name: &str, default: f64| get(name).map_or(default, |v| v.parse().expect(name));
    let scenario = get("--scenario").unwrap_or_else(|| "echo".into());
    // Issue 11 asks for a 5 s window for the mixed load; 3 s elsewhere.
    let secs = num("--secs", if scenario == "mixed" { 5.0 } else { 3.0 });
    let addr: SocketAddr = get("--addr")
        .expect("--addr")
        .parse()
        .expect("--addr IP:PORT");
    let addrs: Vec<SocketAddr> = get("--addrs").map_or(vec![addr], |list| {
        list.split(',')
            .map(|a| a.parse().expect("--addrs IP:PORT,IP:PORT,..."))
            .collect()
    });
    assert!(
        addrs.iter().all(|a| a.ip().is_loopback()),
        "--addrs: loopback addresses only"
    );
    Args {
        addr,
        addrs,
        scenario,
        conns: num("--conns", 1.0) as usize,
        size: num("--size", 64.0) as usize,
        depth: num("--depth", 1.0) as usize,
        rate: num("--rate", 10_000.0),
        secs,
        warmup: num("--warmup", 1.0),
        count: num("--count", 10_000.0) as usize,
        concurrency: num("--concurrency", 1000.0) as usize,
        window: num("--window", 64.0) as usize,
        ca: get("--ca"),
        cpu: get("--cpu").map(|v| v.parse().expect("--cpu N")),
        bulk: num("--bulk", 50.0) as usize,
        tls: argv.iter().any(|a| a == "--tls"),
        request: get("--request").map(|r| r.replace("\\r", "\r").replace("\\n", "\n")),
    }
}

fn main() {
    let args = parse_args();
    monoloop_bench::raise_fd_limit();
    if let Some(cpu) = args.cpu {
        monoloop_bench::pin_to(cpu).expect("pin the load generator");
    }
    let result = match args.scenario.as_str() {
        "echo" | "open" => echo(&args),
        "stream" => stream(&args),
        "storm" => storm(&args),
        "idle" => idle(&args),
        "fanout" => fanout(&args),
        "tls" => tls_handshakes(&args, false),
        "tls-resume" => tls_handshakes(&args, true),
        "tls-stream" => tls_stream(&args),
        "download" => download(&args, false),
        "tls-download" => download(&args, true),
        "mixed" => mixed(&args),
        "burn" => burn(&args),
        other => panic!("unknown scenario {other}"),
    };
    match result {
        Ok(line) => println!("RESULT {line}"),
        Err(e) => {
            println!("RESULT error={}", e.to_string().replace(' ', "_"));
            std::process::exit(1);
        }
    }
}

/// Says `END`, then waits for the runner to say it has sampled the server
/// (a line on standard input; EOF does as well). Until then every
/// connection stays open: a thread-per-connection server's threads, and the
/// CPU time they carry, must still exist when the runner looks.
fn end_window() {
    println!("END");
    let _ = io::stdout().flush();
    let mut line = String::new();
    let _ = io::BufRead::read_line(&mut io::stdin().lock(), &mut line);
}

/// CPU time this process has used (user + system).
fn own_cpu() -> Duration {
    // SAFETY: getrusage fills a struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Opens `n` connections, `concurrency` at a time; all registered READABLE.
fn open_all(poll: &Poll, addr: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        // std's blocking connect is simplest and bounded by the kernel's
        // SYN timeout; the server is on loopback.
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)?;
        conns.push(s);
    }
    Ok(conns)
}

/// One connection of the echo scenarios.
struct EchoConn {
    stream: TcpStream,
    /// Bytes still to write.
    out: Vec<u8>,
    out_at: usize,
    /// Send times (or intended send times) of messages not yet back.
    sent: VecDeque<Instant>,
    /// Bytes of the current message received so far.
    got: usize,
    writable_registered: bool,
}

/// The window: opened after the warm-up, closed after `secs`.
struct Window {
    opens: Instant,
    closes: Instant,
    open: bool,
    cpu_at_open: Duration,
}

impl Window {
    fn new(args: &Args) -> Window {
        let now = Instant::now();
        let opens = now + Duration::from_secs_f64(args.warmup);
        Window {
            opens,
            closes: opens + Duration::from_secs_f64(args.secs),
            open: false,
            cpu_at_open: Duration::ZERO,
        }
    }

    /// Opens the window when its time comes; true while measuring.
    fn tick(&mut self, now: Instant) -> bool {
        if !self.open && now >= self.opens {
            self.open = true;
            self.cpu_at_open = own_cpu();
            println!("START");
        }
        self.open
    }

    fn done(&self, now: Instant) -> bool {
        now >= self.closes
    }

    /// Closes the window; returns the load generator's own CPU share.
    fn finish(&self) -> f64 {
        let cpu = own_cpu() - self.cpu_at_open;
        end_window();
        cpu.as_secs_f64() / (self.closes - self.opens).as_secs_f64()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Ping-pong, pipelined and open-loop echo.
fn echo(args: &Args) -> io::Result<String> {
    let mut poll = Poll::new()?;
    let open_loop = args.scenario == "open";
    let message = vec![b'x'; args.size];
    let mut conns: Vec<EchoConn> = open_all(&poll, args.addr, args.conns)?
        .into_iter()
        .map(|stream| EchoConn {
            stream,
            out: Vec::new(),
            out_at: 0,
            sent: VecDeque::new(),
            got: 0,
            writable_registered: false,
        })
        .collect();
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 * 1024];
    let mut hist = histogram();
    let mut window = Window::new(args);
    let (mut msgs, mut bytes) = (0u64, 0u64);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1.0));
    let mut next_send = Instant::now();
    let mut rr = 0usize;
    let mut late_max = Duration::ZERO;

    // Closed loop: fill every connection's window now.
    if !open_loop {
        let now = Instant::now();
        for (i, c) in conns.iter_mut().enumerate() {
            for _ in 0..args.depth {
                queue_message(&poll, i, c, &message, now)?;
            }
        }
    }
    loop {
        let now = Instant::now();
        if window.done(now) {
            break;
        }
        // Wake for the next scheduled send (open loop), or at least every
        // 10 ms to open and close the window on time.
        let mut timeout = Duration::from_millis(10);
        if open_loop {
            timeout = timeout.min(next_send.saturating_duration_since(now));
        }
        let timeout = Some(timeout);
        poll.poll(&mut events, timeout)?;
        let now = Instant::now();
        let measuring = window.tick(now);
        if open_loop {
            // Send everything whose time has come, stamped with the time it
            // was meant to go.
            while next_send <= now {
                let i = rr % conns.len();
                rr += 1;
                late_max = late_max.max(now - next_send);
                queue_message(&poll, i, &mut conns[i], &message, next_send)?;
                next_send += interval;
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            if ev.is_writable() {
                flush(&poll, i, c)?;
            }
            if !(ev.is_readable() || ev.is_read_closed()) {
                continue;
            }
            loop {
                let n = match c.stream.read(&mut buf) {
                    Ok(0) => return Err(io::Error::other("server closed a connection")),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if measuring {
                    bytes += n as u64;
                }
                c.got += n;
                let done_at = Instant::now();
                while c.got >= args.size {
                    c.got -= args.size;
                    let sent = c.sent.pop_front().unwrap_or(done_at);
                    if measuring {
                        msgs += 1;
                        let us = done_at.duration_since(sent).as_micros().max(1) as u64;
                        let _ = hist.record(us.min(60_000_000));
                    }
                    if !open_loop {
                        // Replace it; everything this read completed goes
                        // out in one write below, as a pipelining client
                        // does (one write per message would make the load
                        // generator, not the server, the measured side).
                        c.sent.push_back(done_at);
                        c.out.extend_from_slice(&message);
                    }
                }
                if n < buf.len() {
                    break;
                }
            }
            flush(&poll, i, c)?;
        }
    }
    let lg_cpu = window.finish();
    let secs = (window.closes - window.opens).as_secs_f64();
    Ok(format!(
        "msgs={msgs} secs={secs:.3} rate={:.0} mbps={:.2} p50={} p99={} p999={} lg_cpu={lg_cpu:.3} late_ms={}",
        msgs as f64 / secs,
        bytes as f64 / secs / 1e6,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        late_max.as_millis()
    ))
}

/// Queues one message on connection `i` and writes what the socket takes.
fn queue_message(
    poll: &Poll,
    i: usize,
    c: &mut EchoConn,
    message: &[u8],
    stamp: Instant,
) -> io::Result<()> {
    c.sent.push_back(stamp);
    c.out.extend_from_slice(message);
    flush(poll, i, c)
}

fn flush(poll: &Poll, i: usize, c: &mut EchoConn) -> io::Result<()> {
    while c.out_at < c.out.len() {
        match c.stream.write(&c.out[c.out_at..]) {
            Ok(n) => c.out_at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if c.out_at == c.out.len() {
        c.out.clear();
        c.out_at = 0;
    }
    let want_write = !c.out.is_empty();
    if want_write != c.writable_registered {
        let interest = if want_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        poll.registry()
            .reregister(&mut c.stream, Token(i), interest)?;
        c.writable_registered = want_write;
    }
    Ok(())
}

/// The streaming scenarios' chunk (also their "message", for CPU per
/// message), how far a stream's writer may run ahead of its reader, and the
/// largest read.
const CHUNK: usize = 64 * 1024;
const WINDOW: u64 = 4 << 20;
const READ_BUF: usize = 256 * 1024;

/// What every stream carries: byte `i` is `table[i % PERIOD]`. The period
/// is prime, so chunks never line up with it and a lost or repeated chunk
/// shows; the table holds one period plus the largest read, so whatever is
/// written or must be compared is one slice of it (no per-byte work: the
/// load generator is the saturated side and must stay cheap).
struct Pattern(Vec<u8>);

impl Pattern {
    const PERIOD: u64 = 65_521;

    fn new() -> Pattern {
        Pattern(
            (0..Self::PERIOD as usize + READ_BUF)
                .map(|i| {
                    let j = (i as u64) % Self::PERIOD;
                    (j.wrapping_mul(31) ^ (j >> 8)) as u8
                })
                .collect(),
        )
    }

    /// The `len` bytes of a stream from offset `at`.
    fn at(&self, at: u64, len: usize) -> &[u8] {
        let o = (at % Self::PERIOD) as usize;
        &self.0[o..o + len]
    }

    /// Checks `got`, arriving at offset `at` of stream `i`.
    fn check(&self, got: &[u8], at: u64, i: usize) -> io::Result<()> {
        let want = self.at(at, got.len());
        if got == want {
            return Ok(());
        }
        let k = got.iter().zip(want).take_while(|(g, w)| g == w).count();
        Err(io::Error::other(format!(
            "byte {} of stream {i} differs",
            at + k as u64
        )))
    }
}

/// Reads stream `i` from `src` until `WouldBlock`, checking every piece
/// against the pattern; `recv` is how much of the stream has come back,
/// `counted` the window's byte count (None outside the window). The end of
/// a stream is an error: the server must echo for as long as it runs.
fn read_back(
    src: &mut impl Read,
    buf: &mut [u8],
    pattern: &Pattern,
    i: usize,
    recv: &mut u64,
    mut counted: Option<&mut u64>,
) -> io::Result<()> {
    loop {
        match src.read(buf) {
            Ok(0) => return Err(io::Error::other("server closed a stream")),
            Ok(n) => {
                pattern.check(&buf[..n], *recv, i)?;
                *recv += n as u64;
                if let Some(c) = counted.as_deref_mut() {
                    *c += n as u64;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The RESULT line of a streaming scenario.
fn stream_result(window: &Window, bytes: u64) -> String {
    let lg_cpu = window.finish();
    let secs = (window.closes - window.opens).as_secs_f64();
    format!(
        "msgs={} secs={secs:.3} rate={:.0} mbps={:.2} p50=0 p99=0 p999=0 lg_cpu={lg_cpu:.3}",
        bytes / CHUNK as u64,
        bytes as f64 / CHUNK as f64 / secs,
        bytes as f64 / secs / 1e6
    )
}

/// Continuous streaming, every byte checked.
fn stream(args: &Args) -> io::Result<String> {
    let mut poll = Poll::new()?;
    let mut conns = open_all(&poll, args.addr, args.conns)?;
    let mut window = Window::new(args);
    let bytes = pump_plain(&mut poll, &mut conns, &mut window, || false)?;
    Ok(stream_result(&window, bytes))
}

/// Streams on `conns` (open, registered with `poll` under their index):
/// each writes the pattern in `CHUNK` pieces, at most `WINDOW` ahead of
/// what has come back, and checks everything read. Runs until the window
/// closes and `hold()` is false (`mixed` holds the load on until its
/// interactive client has finished its last round trip); returns the bytes
/// read back while the window was open.
fn pump_plain(
    poll: &mut Poll,
    conns: &mut [TcpStream],
    window: &mut Window,
    hold: impl Fn() -> bool,
) -> io::Result<u64> {
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .reregister(c, Token(i), Interest::READABLE | Interest::WRITABLE)?;
    }
    let mut sent = vec![0u64; conns.len()];
    let mut recv = vec![0u64; conns.len()];
    let pattern = Pattern::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut events = Events::with_capacity(4096);
    let mut bytes = 0u64;
    loop {
        let now = Instant::now();
        if window.done(now) && !hold() {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        let now = Instant::now();
        let measuring = window.tick(now) && !window.done(now);
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            if ev.is_readable() {
                let counted = measuring.then_some(&mut bytes);
                read_back(c, &mut buf, &pattern, i, &mut recv[i], counted)?;
            }
        }
        // Write wherever the window allows: after a writable event, and
        // after reads freed room in a window that had stalled the writer.
        for (i, c) in conns.iter_mut().enumerate() {
            // Keep at most WINDOW bytes unechoed, so memory is bounded.
            while sent[i] - recv[i] < WINDOW {
                match c.write(pattern.at(sent[i], CHUNK)) {
                    Ok(n) => sent[i] += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(bytes)
}

/// Runs `count` short-lived connections, at most `concurrency` at once:
/// `start` makes one (already registered with the poll under the token it
/// is given), `step` handles an event for one and says when it is over
/// (`Some(true)` done, `Some(false)` failed). The one engine behind the
/// storm and the TLS handshakes. Returns the RESULT line.
fn attempts<A>(
    args: &Args,
    mut start: impl FnMut(&Poll, Token) -> io::Result<A>,
    mut step: impl FnMut(&mut A, &mio::event::Event) -> Option<bool>,
) -> io::Result<String> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut live: slab::Slab<(A, Instant)> = slab::Slab::new();
    let (mut started, mut done, mut failed) = (0usize, 0usize, 0usize);
    let mut hist = histogram();
    println!("START");
    let cpu0 = own_cpu();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(120);
    while done + failed < args.count {
        if Instant::now() > deadline {
            return Err(io::Error::other("did not finish in 120 s"));
        }
        while started < args.count && live.len() < args.concurrency {
            let entry = live.vacant_entry();
            let attempt = start(&poll, Token(entry.key()))?;
            entry.insert((attempt, Instant::now()));
            started += 1;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let key = ev.token().0;
            let Some((attempt, at)) = live.get_mut(key) else {
                continue;
            };
            let Some(ok) = step(attempt, ev) else {
                continue;
            };
            if ok {
                done += 1;
                let us = at.elapsed().as_micros().max(1) as u64;
                let _ = hist.record(us.min(60_000_000));
            } else {
                failed += 1;
            }
            // Dropping the attempt closes its socket (and leaves the poll).
            live.remove(key);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let lg_cpu = (own_cpu() - cpu0).as_secs_f64() / secs;
    end_window();
    Ok(format!(
        "msgs={done} failed={failed} secs={secs:.3} rate={:.0} mbps=0 p50={} p99={} p999={} lg_cpu={lg_cpu:.3}",
        done as f64 / secs,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999)
    ))
}

/// Starts a non-blocking connect, registered for both directions (writable
/// says the handshake is over).
fn connect_registered(poll: &Poll, token: Token, addr: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    poll.registry()
        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
    Ok(stream)
}

/// One connection of the storm: connected, sent its message, read so much.
struct StormConn {
    stream: TcpStream,
    sent: bool,
    got: usize,
}

/// A connection storm: `count` connects, at most `concurrency` at once,
/// each sending one message and waiting for it before closing.
fn storm(args: &Args) -> io::Result<String> {
    let message = vec![b's'; args.size];
    let mut buf = vec![0u8; 64 * 1024];
    let addr = args.addr;
    attempts(
        args,
        |poll, token| {
            let stream = connect_registered(poll, token, addr)?;
            Ok(StormConn {
                stream,
                sent: false,
                got: 0,
            })
        },
        |c, ev| {
            if !c.sent && ev.is_writable() {
                // Writable means the handshake finished, one way or another.
                if c.stream.peer_addr().is_err() || c.stream.write_all(&message).is_err() {
                    return Some(false);
                }
                c.sent = true;
            }
            if !(c.sent && (ev.is_readable() || ev.is_read_closed())) {
                return None;
            }
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => return Some(false),
                    Ok(n) => {
                        c.got += n;
                        if c.got >= message.len() {
                            return Some(true);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                    Err(_) => return Some(false),
                }
            }
        },
    )
}

/// Opens `count` connections and holds them until standard input closes.
fn idle(args: &Args) -> io::Result<String> {
    if args.tls {
        return idle_tls(args);
    }
    let poll = Poll::new()?;
    let t0 = Instant::now();
    let conns = open_all(&poll, args.addr, args.count)?;
    println!("READY {}", conns.len());
    let secs = t0.elapsed().as_secs_f64();
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    Ok(format!("msgs={} secs={secs:.3}", conns.len()))
}

/// `idle --tls`: N connections, each through a full TLS handshake (100 at a
/// time, so that none waits near the server's handshake timeout), and
/// whatever the server sends after it (session tickets) read; then held,
/// silent, until standard input closes. The server's memory per idle TLS
/// connection is what the runner reads meanwhile.
fn idle_tls(args: &Args) -> io::Result<String> {
    let config = tls_client_config(args)?;
    let mut poll = Poll::new()?;
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(args.count);
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    while held.len() < args.count {
        let batch = (args.count - held.len()).min(100);
        let base = held.len();
        let mut conns = Vec::with_capacity(batch);
        for i in 0..batch {
            let s = std::net::TcpStream::connect_timeout(&args.addr, Duration::from_secs(10))?;
            s.set_nonblocking(true)?;
            let mut s = TcpStream::from_std(s);
            poll.registry().register(
                &mut s,
                Token(base + i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let tls = rustls::ClientConnection::new(config.clone(), localhost())
                .map_err(io::Error::other)?;
            conns.push((s, tls));
        }
        // Each handshake to its end, and a quiet moment to read what
        // follows it; bounded in time.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut quiet_since = None;
        loop {
            let now = Instant::now();
            if now > deadline {
                return Err(io::Error::other("idle --tls: handshakes took over 30 s"));
            }
            let pending = conns.iter().any(|(_, t)| t.is_handshaking());
            if !pending && quiet_since.is_some_and(|q: Instant| now - q > Duration::from_millis(50))
            {
                break;
            }
            poll.poll(&mut events, Some(Duration::from_millis(10)))?;
            if events.is_empty() {
                quiet_since.get_or_insert(now);
            } else {
                quiet_since = None;
            }
            for ev in events.iter() {
                let (stream, tls) = &mut conns[ev.token().0 - base];
                loop {
                    match tls.read_tls(stream) {
                        Ok(0) => {
                            return Err(io::Error::other("the server closed an idle connection"))
                        }
                        Ok(_) => {
                            tls.process_new_packets().map_err(io::Error::other)?;
                            while let Ok(n) = tls.reader().read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                while tls.wants_write() {
                    match tls.write_tls(stream) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        // Held from here on, silent: no more events for them.
        for (stream, _) in conns.iter_mut() {
            poll.registry().deregister(stream)?;
        }
        held.extend(conns);
    }
    println!("READY {}", held.len());
    let secs = t0.elapsed().as_secs_f64();
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    Ok(format!("msgs={} secs={secs:.3}", held.len()))
}

/// One sender, `conns` receivers, a broadcast relay in between (or
/// several, `--addrs`: receiver `i` on relay `i % n`, the sender on the
/// first).
fn fanout(args: &Args) -> io::Result<String> {
    let mut poll = Poll::new()?;
    let relays = args.addrs.len();
    let mut receivers = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let s =
            std::net::TcpStream::connect_timeout(&args.addrs[i % relays], Duration::from_secs(10))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)?;
        receivers.push(s);
    }
    let sender_std = std::net::TcpStream::connect(args.addrs[0])?;
    sender_std.set_nodelay(true)?;
    sender_std.set_nonblocking(true)?;
    let mut sender = TcpStream::from_std(sender_std);
    let sender_token = Token(usize::MAX - 1);
    poll.registry()
        .register(&mut sender, sender_token, Interest::WRITABLE)?;
    // Let the relay register everyone before the first line.
    std::thread::sleep(Duration::from_millis(500));

    let ring = args.window.next_power_of_two() * 2;
    let mut sent_at = vec![Instant::now(); ring];
    let mut next_seq = 0u64;
    // Per receiver: the last sequence number seen, and a partial line.
    let mut seen = vec![u64::MAX; receivers.len()];
    let mut partial: Vec<Vec<u8>> = vec![Vec::new(); receivers.len()];
    let mut out: Vec<u8> = Vec::new();
    let mut out_at = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(4096);
    let mut hist = histogram();
    // Receivers on another relay than the sender's: through Redis.
    let mut remote = histogram();
    let mut lost = 0u64;
    let mut window = Window::new(args);
    let mut lines = 0u64;
    let mut last_progress = Instant::now();
    let pad = "p".repeat(args.size.saturating_sub(24));
    loop {
        let now = Instant::now();
        if window.done(now) {
            break;
        }
        // The slowest receiver bounds how far ahead the sender may run.
        let slowest = seen.iter().map(|&s| s.wrapping_add(1)).min().unwrap_or(0);
        while next_seq < slowest + args.window as u64 && out.len() - out_at < 64 * 1024 {
            sent_at[(next_seq as usize) % ring] = Instant::now();
            out.extend_from_slice(format!("{next_seq:020},{pad}\n").as_bytes());
            next_seq += 1;
        }
        while out_at < out.len() {
            match sender.write(&out[out_at..]) {
                Ok(n) => out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if out_at == out.len() {
            out.clear();
            out_at = 0;
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        let measuring = window.tick(Instant::now());
        for ev in events.iter() {
            if ev.token() == sender_token {
                continue;
            }
            let i = ev.token().0;
            loop {
                let n = match receivers[i].read(&mut buf) {
                    Ok(0) => return Err(io::Error::other("relay closed a receiver")),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                };
                let at = Instant::now();
                partial[i].extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(nl) = partial[i][start..].iter().position(|&b| b == b'\n') {
                    let line = &partial[i][start..start + nl];
                    start += nl + 1;
                    // "[Broadcast] " then 20 digits.
                    let digits = line
                        .iter()
                        .position(|b| b.is_ascii_digit())
                        .map(|d| &line[d..(d + 20).min(line.len())]);
                    let Some(seq) = digits
                        .and_then(|d| std::str::from_utf8(d).ok())
                        .and_then(|d| d.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    if seen[i] != u64::MAX && seq > seen[i] + 1 {
                        lost += seq - seen[i] - 1;
                    }
                    seen[i] = seq;
                    last_progress = at;
                    if measuring {
                        lines += 1;
                        let us = at
                            .duration_since(sent_at[(seq as usize) % ring])
                            .as_micros();
                        let us = (us as u64).clamp(1, 60_000_000);
                        let _ = hist.record(us);
                        if i % relays != 0 {
                            let _ = remote.record(us);
                        }
                    }
                }
                partial[i].drain(..start);
                if n < buf.len() {
                    break;
                }
            }
        }
        if last_progress.elapsed() > Duration::from_secs(5) {
            return Err(io::Error::other("no line delivered for 5 s"));
        }
    }
    let lg_cpu = window.finish();
    let secs = (window.closes - window.opens).as_secs_f64();
    let mut result = format!(
        "msgs={lines} secs={secs:.3} rate={:.0} mbps={:.2} p50={} p99={} p999={} lg_cpu={lg_cpu:.3}",
        lines as f64 / secs,
        lines as f64 * (args.size as f64 + 12.0) / secs / 1e6,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999)
    );
    if relays > 1 {
        let sent = lines as f64 / receivers.len().max(1) as f64;
        result.push_str(&format!(
            " sent={sent:.0} remote_p50={} remote_p99={} lost={lost}",
            remote.value_at_quantile(0.5),
            remote.value_at_quantile(0.99),
        ));
    }
    Ok(result)
}

/// A client configuration that trusts `--ca` only, with session
/// resumption off so that every handshake is a full one.
fn tls_client_config(args: &Args) -> io::Result<Arc<rustls::ClientConfig>> {
    tls_client_config_with(args, rustls::client::Resumption::disabled())
}

/// [`tls_client_config`] with the given resumption settings.
fn tls_client_config_with(
    args: &Args,
    resumption: rustls::client::Resumption,
) -> io::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let ca = args.ca.as_deref().expect("--ca FILE");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = resumption;
    Ok(Arc::new(config))
}

/// The client's TLS 1.3 ticket store for `tls-resume`. rustls's default
/// store (`ClientSessionMemoryCache`, on by default) keeps at most 8 tickets
/// per server, and a client uses each ticket once: with 100 handshakes in
/// flight, 92 would find none and do a full handshake. This one keeps up to
/// `cap` tickets (the load generator talks to one server, so the name is
/// not looked at), hands out the newest first, and counts what arrives.
/// Key-exchange hints and TLS 1.2 sessions go to rustls's own cache.
///
/// It lends no ticket until [`TicketPool::lend`] is called: while
/// [`prime`] fills it, every handshake must be a full one. A handshake that
/// took a ticket would resume, and OpenSSL servers give back at most one
/// ticket for it: Node's `tls` none (priming stopped at the first
/// resumption, one ticket held), nginx one (priming ran in place, one in,
/// one out, until its bound, one or two held). Either way 1 or 2 of
/// thousands resumed in the window. A full handshake brings two.
struct TicketPool {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::Mutex<VecDeque<rustls::client::Tls13ClientSessionValue>>,
    cap: usize,
    received: std::sync::atomic::AtomicUsize,
    lending: std::sync::atomic::AtomicBool,
}

impl TicketPool {
    fn new(cap: usize) -> TicketPool {
        TicketPool {
            inner: rustls::client::ClientSessionMemoryCache::new(16),
            tickets: std::sync::Mutex::new(VecDeque::new()),
            cap,
            received: Default::default(),
            lending: Default::default(),
        }
    }

    /// From now on, handshakes take tickets (and resume).
    fn lend(&self) {
        self.lending
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tickets received so far.
    fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tickets held now.
    fn len(&self) -> usize {
        self.tickets.lock().unwrap().len()
    }
}

impl std::fmt::Debug for TicketPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TicketPool({} held, {} received)",
            self.len(),
            self.received()
        )
    }
}

impl rustls::client::ClientSessionStore for TicketPool {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }

    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }

    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }

    fn insert_tls13_ticket(
        &self,
        _name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut t = self.tickets.lock().unwrap();
        t.push_back(value);
        if t.len() > self.cap {
            t.pop_front();
        }
    }

    fn take_tls13_ticket(
        &self,
        _name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        if !self.lending.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.tickets.lock().unwrap().pop_back()
    }
}

/// The name the benchmark's certificate is for.
fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid name")
}

/// Before the window of `tls-resume`: full handshakes, one at a time, each
/// waiting up to a second for its tickets, until `pool` holds `want`
/// tickets. Returns how many handshakes that took; stops early (pool short)
/// if a handshake brings no ticket. The pool must not be lending yet (see
/// [`TicketPool`]), so that each of these handshakes is a full one.
fn prime(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    pool: &TicketPool,
    want: usize,
) -> io::Result<usize> {
    let mut n = 0;
    while pool.len() < want && n < want + 10 {
        n += 1;
        let mut sock = std::net::TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut tls =
            rustls::ClientConnection::new(config.clone(), localhost()).map_err(io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut sock)?;
        }
        let before = pool.received();
        while pool.received() == before {
            match tls.read_tls(&mut sock) {
                Ok(0) => break,
                Ok(_) => {
                    tls.process_new_packets().map_err(io::Error::other)?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
        if pool.received() == before {
            break;
        }
    }
    Ok(n)
}

/// One handshake of `tls` / `tls-resume`.
struct Handshake {
    stream: TcpStream,
    tls: rustls::ClientConnection,
}

/// TLS handshakes, `concurrency` at a time, until `count` are done: full
/// ones, or (`resume`) resumed ones from a primed ticket store.
fn tls_handshakes(args: &Args, resume: bool) -> io::Result<String> {
    let want = args.count + args.concurrency;
    let pool = Arc::new(TicketPool::new(want));
    let config = if resume {
        tls_client_config_with(args, rustls::client::Resumption::store(pool.clone()))?
    } else {
        tls_client_config(args)?
    };
    let primed = if resume {
        prime(args.addr, &config, &pool, want)?
    } else {
        0
    };
    pool.lend();
    let held = pool.len();
    let mut resumed = 0usize;
    let name = localhost();
    let addr = args.addr;
    let line = attempts(
        args,
        |poll, token| {
            let stream = connect_registered(poll, token, addr)?;
            let tls = rustls::ClientConnection::new(config.clone(), name.clone())
                .map_err(io::Error::other)?;
            Ok(Handshake { stream, tls })
        },
        |h, ev| {
            if ev.is_readable() || ev.is_read_closed() {
                loop {
                    match h.tls.read_tls(&mut h.stream) {
                        Ok(0) => return Some(false),
                        Ok(_) => {
                            if h.tls.process_new_packets().is_err() {
                                return Some(false);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => return Some(false),
                    }
                }
            }
            while h.tls.wants_write() {
                match h.tls.write_tls(&mut h.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return Some(false),
                }
            }
            if h.tls.is_handshaking() {
                return None;
            }
            if h.tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                resumed += 1;
            }
            Some(true)
        },
    )?;
    Ok(format!(
        "{line} resumed={resumed} primed={primed} held={held}"
    ))
}

/// One connection of `download` or `tls-download`: it sends its request
/// and reads the reply to its end.
struct Download {
    stream: TcpStream,
    /// Over TLS: the rustls client, which holds the request until its
    /// handshake is over.
    tls: Option<rustls::ClientConnection>,
    /// Plain TCP: what of the request is still to be written.
    unsent: Vec<u8>,
    /// An HTTP reply's header, until its blank line has come; `None` once
    /// it has (or from the start, for a reply that is all body).
    header: Option<Vec<u8>>,
    /// Body bytes so far.
    body: u64,
    started: Instant,
}

/// What reading a download's socket came to.
enum DownloadStep {
    /// Read all there was for now; the reply goes on.
    Reading,
    /// The server ended the reply (`close_notify`, or a TCP FIN without
    /// one: the body's size decides whether it was whole).
    Ended,
}

/// The longest HTTP header `tls-download` accepts.
const MAX_HEADER: usize = 16 * 1024;

impl Download {
    /// Connects (non-blocking) and queues the request: written once the
    /// socket is writable, or, over TLS (`config`), sent by rustls once the
    /// handshake is over.
    fn start(
        poll: &Poll,
        token: Token,
        addr: SocketAddr,
        config: Option<&Arc<rustls::ClientConfig>>,
        request: &[u8],
    ) -> io::Result<Download> {
        let stream = connect_registered(poll, token, addr)?;
        let mut unsent = request.to_vec();
        let tls = match config {
            Some(config) => {
                let mut tls = rustls::ClientConnection::new(config.clone(), localhost())
                    .map_err(io::Error::other)?;
                tls.writer().write_all(&std::mem::take(&mut unsent))?;
                Some(tls)
            }
            None => None,
        };
        let http = request.starts_with(b"GET ");
        Ok(Download {
            stream,
            tls,
            unsent,
            header: http.then(Vec::new),
            body: 0,
            started: Instant::now(),
        })
    }

    /// Writes what is to send: the request, or whatever rustls has
    /// (handshake, request).
    fn writable(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            while !self.unsent.is_empty() {
                match self.stream.write(&self.unsent) {
                    Ok(n) => drop(self.unsent.drain(..n)),
                    // Still connecting, or full: the next writable event.
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::NotConnected =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads until `WouldBlock` or the end of the reply; `counted` is the
    /// window's body byte count (None outside the window).
    fn readable(
        &mut self,
        buf: &mut [u8],
        mut counted: Option<&mut u64>,
    ) -> io::Result<DownloadStep> {
        let Some(tls) = self.tls.as_mut() else {
            loop {
                let n = match self.stream.read(buf) {
                    Ok(0) => return Ok(DownloadStep::Ended),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(DownloadStep::Reading)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                let body = past_header(&mut self.header, &buf[..n])?;
                self.body += body as u64;
                if let Some(c) = counted.as_deref_mut() {
                    *c += body as u64;
                }
            }
        };
        loop {
            let tcp_end = match tls.read_tls(&mut self.stream) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(DownloadStep::Reading)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            tls.process_new_packets().map_err(io::Error::other)?;
            // Take the plaintext out before reading more records: rustls
            // stops reading when its plaintext buffer is full.
            loop {
                let n = match tls.reader().read(buf) {
                    // close_notify: the server ended the reply.
                    Ok(0) => return Ok(DownloadStep::Ended),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // A FIN without close_notify.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Ok(DownloadStep::Ended)
                    }
                    Err(e) => return Err(e),
                };
                let body = past_header(&mut self.header, &buf[..n])?;
                self.body += body as u64;
                if let Some(c) = counted.as_deref_mut() {
                    *c += body as u64;
                }
            }
            if tcp_end {
                return Ok(DownloadStep::Ended);
            }
        }
    }
}

/// Passes `got`, the next piece of a reply, through its HTTP header if one
/// is still expected (`header` is `Some`, holding what came so far);
/// returns how many of its bytes are body. Once the blank line has come,
/// `header` becomes `None`. A status other than 200 is an error.
fn past_header(header: &mut Option<Vec<u8>>, got: &[u8]) -> io::Result<usize> {
    let Some(head) = header else {
        return Ok(got.len());
    };
    let before = head.len();
    head.extend_from_slice(got);
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        if head.len() > MAX_HEADER {
            return Err(io::Error::other("an HTTP header over 16 KiB"));
        }
        return Ok(0);
    };
    let status = head.split(|&b| b == b' ').nth(1).unwrap_or_default();
    if status != b"200" {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(io::Error::other(format!(
            "the server answered {}",
            String::from_utf8_lossy(line)
        )));
    }
    // The blank line ends in this piece (the ones before had none).
    debug_assert!(end + 4 > before);
    let body = head.len() - (end + 4);
    *header = None;
    Ok(body)
}

/// Downloads, over TLS if `tls`, `--conns` at a time, for one window (see
/// the module's header). Each finished download must have brought exactly
/// `--size` body bytes.
fn download(args: &Args, tls: bool) -> io::Result<String> {
    let request = args.request.as_deref().expect("--request LINE").as_bytes();
    let config = match tls {
        true => Some(tls_client_config(args)?),
        false => None,
    };
    let config = config.as_ref();
    let mut poll = Poll::new()?;
    let mut conns = (0..args.conns)
        .map(|i| Download::start(&poll, Token(i), args.addr, config, request))
        .collect::<io::Result<Vec<_>>>()?;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUF];
    let mut hist = histogram();
    let mut window = Window::new(args);
    let (mut downloads, mut bytes) = (0u64, 0u64);
    let mut ended = Vec::new();
    loop {
        let now = Instant::now();
        if window.done(now) {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        let now = Instant::now();
        let measuring = window.tick(now) && !window.done(now);
        for ev in events.iter() {
            let i = ev.token().0;
            let d = &mut conns[i];
            let failed =
                |e: io::Error| io::Error::other(format!("download on connection {i}: {e}"));
            if ev.is_readable() || ev.is_read_closed() {
                let counted = measuring.then_some(&mut bytes);
                if let DownloadStep::Ended = d.readable(&mut buf, counted).map_err(failed)? {
                    ended.push(i);
                    continue;
                }
            }
            d.writable().map_err(failed)?;
        }
        // Replace what ended after the events are walked, so that no event
        // of this turn can reach a new connection under an old token.
        for i in ended.drain(..) {
            let d = &conns[i];
            if d.header.is_some() || d.body != args.size as u64 {
                return Err(io::Error::other(format!(
                    "a download on connection {i} ended after {} body bytes of {}",
                    d.body, args.size
                )));
            }
            let at = Instant::now();
            if measuring {
                downloads += 1;
                let us = at.duration_since(d.started).as_micros().max(1) as u64;
                let _ = hist.record(us.min(60_000_000));
            }
            conns[i] = Download::start(&poll, Token(i), args.addr, config, request)?;
        }
    }
    let lg_cpu = window.finish();
    let secs = (window.closes - window.opens).as_secs_f64();
    Ok(format!(
        "msgs={downloads} secs={secs:.3} rate={:.2} mbps={:.2} p50={} p99={} p999={} lg_cpu={lg_cpu:.3}",
        downloads as f64 / secs,
        bytes as f64 / secs / 1e6,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999)
    ))
}

/// `stream` over TLS: the same pattern, window and checks, each connection
/// a rustls client.
fn tls_stream(args: &Args) -> io::Result<String> {
    let config = tls_client_config(args)?;
    let mut poll = Poll::new()?;
    let mut conns = open_tls(&poll, args.addr, args.conns, &config)?;
    let mut window = Window::new(args);
    let bytes = pump_tls(&mut poll, &mut conns, &mut window, || false)?;
    Ok(stream_result(&window, bytes))
}

/// Opens `n` connections, each with a rustls client whose handshake the
/// first writes and reads will drive.
fn open_tls(
    poll: &Poll,
    addr: SocketAddr,
    n: usize,
    config: &Arc<rustls::ClientConfig>,
) -> io::Result<Vec<(TcpStream, rustls::ClientConnection)>> {
    let mut conns = Vec::with_capacity(n);
    for stream in open_all(poll, addr, n)? {
        let tls =
            rustls::ClientConnection::new(config.clone(), localhost()).map_err(io::Error::other)?;
        conns.push((stream, tls));
    }
    Ok(conns)
}

/// [`pump_plain`] over TLS. Writes are bounded by rustls's own outgoing
/// buffer (`writer().write` takes less, or nothing, when it is full).
fn pump_tls(
    poll: &mut Poll,
    conns: &mut [(TcpStream, rustls::ClientConnection)],
    window: &mut Window,
    hold: impl Fn() -> bool,
) -> io::Result<u64> {
    for (i, (stream, _)) in conns.iter_mut().enumerate() {
        poll.registry()
            .reregister(stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
    }
    let mut sent = vec![0u64; conns.len()];
    let mut recv = vec![0u64; conns.len()];
    let pattern = Pattern::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut events = Events::with_capacity(4096);
    let mut bytes = 0u64;
    loop {
        let now = Instant::now();
        if window.done(now) && !hold() {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        let now = Instant::now();
        let measuring = window.tick(now) && !window.done(now);
        for ev in events.iter() {
            let i = ev.token().0;
            let (stream, tls) = &mut conns[i];
            if !(ev.is_readable() || ev.is_read_closed()) {
                continue;
            }
            loop {
                match tls.read_tls(stream) {
                    Ok(0) => return Err(io::Error::other("server closed a stream")),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
                tls.process_new_packets().map_err(io::Error::other)?;
                // Take the plaintext out before reading more records:
                // rustls stops reading when its plaintext buffer is full.
                let counted = measuring.then_some(&mut bytes);
                read_back(
                    &mut tls.reader(),
                    &mut buf,
                    &pattern,
                    i,
                    &mut recv[i],
                    counted,
                )?;
            }
        }
        for (i, (stream, tls)) in conns.iter_mut().enumerate() {
            while sent[i] - recv[i] < WINDOW {
                match tls.writer().write(pattern.at(sent[i], CHUNK))? {
                    0 => break,
                    n => sent[i] += n as u64,
                }
            }
            while tls.wants_write() {
                match tls.write_tls(stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// Latency under mixed load (issue 11)
// ---------------------------------------------------------------------------
//
// The bulk streams and the interactive client are two threads of this one
// process, both on the load generator's core (the runner pins it), rather
// than two processes: one process keeps one window, one START/END exchange
// with the runner and one RESULT line, and two processes on one core would
// be scheduled no differently. What matters is that the interactive client
// is NOT a connection of the bulk loop: there its echo would wait behind
// the loop's own reads of 50 streams, and the figure would measure the load
// generator. On its own thread, with a blocking socket and real-time
// priority where allowed, it is woken by the kernel the moment its echo
// arrives, ahead of the bulk thread; its round trips measure the server.

/// The interactive client's message size.
const PING: usize = 64;
/// How long one interactive write or read may take before the scenario
/// fails: far beyond any stall worth measuring, short enough that a server
/// which never answers cannot hang the run.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// What the interactive client measured over the window.
struct Pings {
    hist: Histogram<u64>,
    round_trips: u64,
    /// Whether it ran at real-time priority.
    realtime: bool,
}

/// The bulk connections of `mixed`.
enum Bulk {
    Plain(Vec<TcpStream>),
    Tls(Vec<(TcpStream, rustls::ClientConnection)>),
}

/// Latency under mixed load: `--bulk` streams flat out (plain or TLS) and
/// one interactive 64-byte ping-pong on its own thread, for one window.
fn mixed(args: &Args) -> io::Result<String> {
    let config = if args.tls {
        Some(tls_client_config(args)?)
    } else {
        None
    };
    let mut poll = Poll::new()?;
    let mut bulk = match &config {
        None => Bulk::Plain(open_all(&poll, args.addr, args.bulk)?),
        Some(c) => Bulk::Tls(open_tls(&poll, args.addr, args.bulk, c)?),
    };
    let sock = std::net::TcpStream::connect_timeout(&args.addr, PING_TIMEOUT)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(PING_TIMEOUT))?;
    sock.set_write_timeout(Some(PING_TIMEOUT))?;
    let mut window = Window::new(args);
    let (opens, closes) = (window.opens, window.closes);
    let pinger = match &config {
        None => std::thread::spawn(move || ping_pong(sock, opens, closes)),
        Some(c) => {
            let mut tls =
                rustls::ClientConnection::new(c.clone(), localhost()).map_err(io::Error::other)?;
            let mut sock = sock;
            // The handshake before the window, bounded by the socket's
            // timeouts.
            while tls.is_handshaking() {
                tls.complete_io(&mut sock)?;
            }
            let stream = rustls::StreamOwned::new(tls, sock);
            std::thread::spawn(move || ping_pong(stream, opens, closes))
        }
    };
    // The bulk load runs until the window closes and then until the
    // interactive client's last round trip is back, so that round trip
    // too is taken under load.
    let hold = || !pinger.is_finished();
    let bytes = match &mut bulk {
        Bulk::Plain(conns) => pump_plain(&mut poll, conns, &mut window, hold)?,
        Bulk::Tls(conns) => pump_tls(&mut poll, conns, &mut window, hold)?,
    };
    let pings = pinger
        .join()
        .map_err(|_| io::Error::other("the interactive client panicked"))??;
    if !pings.realtime {
        eprintln!(
            "loadgen: no real-time priority for the interactive client \
             (needs CAP_SYS_NICE); its latency includes waiting for the bulk thread"
        );
    }
    let lg_cpu = window.finish();
    let secs = (closes - opens).as_secs_f64();
    let h = &pings.hist;
    Ok(format!(
        "msgs={} secs={secs:.3} rate={:.0} mbps={:.2} p50={} p99={} p999={} max={} \
         lg_cpu={lg_cpu:.3} bulk={} tls={} realtime={}",
        pings.round_trips,
        pings.round_trips as f64 / secs,
        bytes as f64 / secs / 1e6,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        args.bulk,
        u8::from(args.tls),
        u8::from(pings.realtime),
    ))
}

/// The interactive client: writes 64 bytes, waits for their echo, repeats,
/// until `closes`; records the round trips that started in
/// `[opens, closes)`. Each message carries its sequence number and its
/// echo must match it byte for byte. `stream` blocks, with timeouts.
fn ping_pong(mut stream: impl Read + Write, opens: Instant, closes: Instant) -> io::Result<Pings> {
    let realtime = realtime_priority();
    let mut hist = histogram();
    let mut round_trips = 0u64;
    let mut ping = [b'i'; PING];
    let mut echo = [0u8; PING];
    let mut seq = 0u64;
    loop {
        let sent = Instant::now();
        if sent >= closes {
            break;
        }
        ping[..8].copy_from_slice(&seq.to_le_bytes());
        let exchanged = stream
            .write_all(&ping)
            .and_then(|()| stream.flush())
            .and_then(|()| stream.read_exact(&mut echo));
        match exchanged {
            Ok(()) => {}
            // A socket timeout reads as "would block".
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::other(format!(
                    "an interactive round trip took over {} s",
                    PING_TIMEOUT.as_secs()
                )))
            }
            Err(e) => return Err(e),
        }
        let back = Instant::now();
        if echo != ping {
            return Err(io::Error::other(format!("interactive echo {seq} differs")));
        }
        if sent >= opens {
            round_trips += 1;
            let us = back.duration_since(sent).as_micros().max(1) as u64;
            let _ = hist.record(us.min(60_000_000));
        }
        seq += 1;
    }
    Ok(Pings {
        hist,
        round_trips,
        realtime,
    })
}

/// Puts the calling thread in the lowest real-time class (SCHED_FIFO 1),
/// so that on a shared core it runs as soon as it is woken. Safe for a
/// thread that blocks between short bursts, as the interactive client does;
/// the kernel's real-time throttling bounds it anyway. False where not
/// permitted.
fn realtime_priority() -> bool {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: changes only the calling thread's scheduling, with a param
    // we own.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

/// Burns CPU for `--secs` (see the module's header).
fn burn(args: &Args) -> io::Result<String> {
    let until = Instant::now() + Duration::from_secs_f64(args.secs);
    let mut spins = 0u64;
    while Instant::now() < until {
        spins = std::hint::black_box(spins + 1);
    }
    Ok(format!("spins={spins}"))
}

#[cfg(test)]
mod tests {
    use super::past_header;

    #[test]
    fn a_reply_without_header_is_all_body() {
        let mut header = None;
        assert_eq!(past_header(&mut header, b"abc").unwrap(), 3);
    }

    #[test]
    fn the_body_starts_after_the_blank_line_whatever_the_pieces() {
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..reply.len() {
            let mut header = Some(Vec::new());
            let body = past_header(&mut header, &reply[..cut]).unwrap()
                + past_header(&mut header, &reply[cut..]).unwrap();
            assert_eq!(body, 5, "cut at {cut}");
            assert!(header.is_none());
        }
    }

    #[test]
    fn a_status_other_than_200_is_an_error() {
        let mut header = Some(Vec::new());
        let e = past_header(&mut header, b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap_err();
        assert_eq!(e.to_string(), "the server answered HTTP/1.1 404 Not Found");
    }

    #[test]
    fn a_header_without_end_is_bounded() {
        let mut header = Some(Vec::new());
        let piece = [b'x'; 1024];
        let mut result = Ok(0);
        for _ in 0..17 {
            result = past_header(&mut header, &piece);
        }
        assert!(result.is_err());
    }
}
