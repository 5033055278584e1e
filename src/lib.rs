//! monoloop: TCP servers on one hand-rolled, single-threaded mio readiness
//! loop.
//!
//! # A tour, in reading order
//!
//! 1. [`timer`]: one min-heap of deadlines, pure, time passed in. Shows how
//!    an idle timeout can move on every byte without touching the heap.
//! 2. [`buffer`]: the write queue, the only per-connection buffer, which
//!    exists only while bytes are owed; shared chunks for fan-out.
//! 3. [`conn_table`]: the slab of connections, with tokens that carry a
//!    generation so that a reused slot never receives its old tenant's events;
//!    [`tokens`], every token that is not a connection's.
//! 4. [`connection`]: one connection's stages (an enum), its reads and
//!    writes interpreted as outcome enums, and the single function that
//!    derives its epoll interest.
//! 5. [`protocol`]: the trait a protocol implements, then
//!    [`protocol::echo`], the simplest one, [`protocol::lines`] (cutting a
//!    stream into lines), [`protocol::broadcast`] (fan-out with shared
//!    chunks), [`protocol::chat`] (a state machine per user) and
//!    [`protocol::file`] (streaming as the socket drains, confined opens).
//!    Protocols never see a socket; [`sendfile`] is how the file server
//!    still sends a file without copying it, through a socket the loop
//!    lends for one step. [`protocol::seam`] is the one place the loop
//!    meets a protocol: a trait object, so that the loop is compiled once;
//!    [`protocol::room`] is what both relays do with their room.
//! 6. [`event_loop`]: the loop itself, one file per layer of a turn: its
//!    `mod.rs` is the turn (poll, dispatch); then admission, entry (PROXY,
//!    TLS, open), the visit, output (emit, flush, settle), closing, relays,
//!    time, reporting, shutdown, and the start-up that opens its parts.
//! 7. [`pacing`] (a relay's senders paced to the receivers that keep up),
//!    [`stats`], [`access_log`], [`close`] (why a connection ended),
//!    [`quote`] (log fields a client cannot break), [`logging`] (a log that never kills the
//!    server, and that clients cannot write), [`sys`] (resolving
//!    `--listen`, listeners, descriptor limit), [`config`] (the command
//!    line, and its help read back into a man page and shell completions),
//!    [`build`] (the version and commit that `--version`, the start line
//!    and the metrics name).
//! 8. `tls` (with the default `tls` feature): rustls configurations from
//!    PEM files, and the two moves that drive a TLS session from a
//!    non-blocking socket; the server's session (`tls/session.rs`, rustls's
//!    unbuffered API) keeps no buffer while idle. `connection/tls.rs` shows
//!    where they are called.
//! 9. [`workers`], [`worker_link`], [`spread`] and [`hub`]: `--workers N`,
//!    N loops behaving as one server: the supervisor that runs them, what
//!    each loop shares with the others (the connection count, the
//!    figures, the holding flags), how new connections are spread over
//!    them, and what the relays send across them. Then [`cluster`]
//!    (`--cluster`): broadcast and chat across instances through Redis,
//!    each loop a server and a Redis client at once: one connection's
//!    state machine (`cluster/link.rs`), RESP by hand (`cluster/resp.rs`),
//!    the stream's entries, chat's names, and what the loop does with it
//!    (`event_loop/cluster.rs`).
//! 10. [`proxy`] and [`edge`]: behind a load balancer, the PROXY protocol
//!     header read before anything else, then who may connect (`--allow`,
//!     `--deny`, `--max-per-ip`), ruled on the client the header names.
//! 11. [`metrics`] and [`systemd`]: for the operator, `/metrics` and
//!     `/healthz` served from the same loop, and socket activation and
//!     readiness for the service manager.
//! 12. [`client`]: the netcat-style client, a second, smaller readiness
//!     loop over a socket and standard input, with or without TLS.
//!
//! `src/main.rs` only parses, sets up logging and calls [`run`].
//! docs/architecture.md tells the same story in prose.

pub mod access_log;
pub mod buffer;
pub mod build;
pub mod client;
pub mod close;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod conn_table;
pub mod connection;
pub mod edge;
pub mod event_loop;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod pacing;
pub mod protocol;
pub mod proxy;
pub mod quote;
pub mod sendfile;
pub mod spread;
pub mod stats;
pub mod sys;
pub mod systemd;
pub mod timer;
#[cfg(feature = "tls")]
pub mod tls;
pub mod tokens;
pub mod worker_link;
pub mod workers;

use std::net::SocketAddr;

use config::{Config, Listen, Mode};
use event_loop::{Exit, Parts, Server, StartError};
use hub::Hub;
use protocol::broadcast::Broadcast;
use protocol::chat::Chat;
use protocol::echo::Echo;
use protocol::file::FileServer;
use protocol::seam::Sessions;
use sys::{Bind, ListenError};

/// How a run ended, for `main` to turn into an exit code.
#[derive(Debug)]
pub enum RunError {
    /// A TLS option that cannot work (a missing file, a key that does not
    /// match its certificate, ...): exit 2, before listening.
    Tls(String),
    /// Could not start: exit 1.
    Start(StartError),
    /// Could not listen where this option (`--listen`, `--metrics`) said:
    /// the address is in use, the port is privileged, ...: exit 1.
    Listen(&'static str, ListenError),
    /// The host name this option was given (as given) did not resolve:
    /// exit 1, like the other start errors, since the name was well formed
    /// (`config` refuses one that is not, exit 2) and whether it resolves
    /// is up to this machine's resolver.
    Resolve(&'static str, String, std::io::Error),
    /// The loop failed (epoll itself): exit 1.
    Loop(std::io::Error),
    /// The command line cannot work with how the process was started (say,
    /// `--listen` under socket activation): exit 2.
    Usage(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Tls(e) => f.write_str(e),
            RunError::Start(e) => e.fmt(f),
            RunError::Listen(option, e) => write!(f, "{option} {e}"),
            RunError::Resolve(option, given, e) => {
                write!(f, "cannot resolve {option} '{given}': {e}")
            }
            RunError::Loop(e) => write!(f, "event loop failed: {e}"),
            RunError::Usage(e) => f.write_str(e),
        }
    }
}

/// Makes a worker's protocol, given the worker's hub, boxed for the loop.
type MakeProtocol<'a> =
    dyn Fn() -> Result<Box<dyn protocol::seam::DynProtocol + Send>, RunError> + 'a;

/// Runs the configured server until it is told to stop.
pub fn run(config: &Config) -> Result<Exit, RunError> {
    let limits = config.server.limits();
    match &config.mode {
        Mode::Echo { greeting, prefix } => serve(config, &|| {
            Ok(Sessions::boxed(Echo::new(
                greeting.as_deref(),
                prefix.as_deref(),
                limits,
            )))
        }),
        Mode::Broadcast { prefix } => serve(config, &|| {
            Ok(Sessions::boxed(Broadcast::new(prefix, limits)))
        }),
        Mode::Chat => serve(config, &|| Ok(Sessions::boxed(Chat::new(limits)))),
        Mode::File { root, sendfile } => serve(config, &|| {
            FileServer::new(root, limits)
                .map(|f| Sessions::boxed(f.with_sendfile(*sendfile)))
                .map_err(|e| RunError::Start(StartError::Io("cannot open the --root directory", e)))
        }),
    }
}

/// Builds the protocol (once per worker, with `make`, given the worker's
/// hub), the TLS configuration and the listeners, then serves: on this
/// thread with one worker, on N threads with several (`workers.rs`).
///
/// Each protocol arrives boxed behind [`protocol::seam::DynProtocol`], so
/// this, the workers and the loop are compiled once, not once per mode.
fn serve(config: &Config, make: &MakeProtocol<'_>) -> Result<Exit, RunError> {
    // Socket activation: systemd already holds the listening socket, as
    // descriptor 3 and up; taken before this process opens anything else.
    let activated = activated_listener(config)?;
    // Made next, so that a bad --root is reported before anything opens.
    let first = make()?;
    #[cfg(feature = "tls")]
    let tls = match &config.tls {
        Some(files) => Some(tls::server_config(files).map_err(|e| RunError::Tls(e.0))?),
        None => None,
    };
    #[cfg(not(feature = "tls"))]
    if config.tls.is_some() {
        return Err(RunError::Tls(
            "this monoloop was built without TLS (cargo feature \"tls\")".into(),
        ));
    }
    let options = config.server.clone();
    let workers = options.workers.resolve();
    let name = config.mode.name();
    let tls_note = if config.tls.is_some() { " (TLS)" } else { "" };
    let how = if activated.is_some() {
        " (socket activation)"
    } else {
        ""
    };
    // Every listener and poll is opened here, before anything runs, in
    // the command line's order (--listen, then --metrics), so that any
    // start error is one message and one exit code.
    sys::raise_fd_limit(options.max_connections);
    let (parts, addrs) = match &activated {
        // Every worker serves systemd's sockets: copies of them share
        // their accept queues.
        Some(sockets) => (
            (0..workers)
                .map(|_| activated_parts(sockets))
                .collect::<Result<Vec<_>, _>>()?,
            sockets.iter().filter_map(|s| s.local_addr().ok()).collect(),
        ),
        None => listening_parts(config, workers)?,
    };
    let metrics = match &config.metrics {
        Some(given) => {
            let bind = bind_for("--metrics", given)?;
            let mut one =
                sys::listen_group(bind, 1).map_err(|e| RunError::Listen("--metrics", e))?;
            Some(one.remove(0))
        }
        None => None,
    };
    // What runs, and with which limits (issue 21): after the `listening
    // on` lines, the first of which scripts parse, and before the metrics
    // line.
    #[cfg(feature = "tls")]
    let certificate = tls
        .as_ref()
        .and_then(|_| tls::served())
        .map(|c| c.described);
    #[cfg(not(feature = "tls"))]
    let certificate: Option<String> = None;
    let started = start_line(name, tls_note, &options, workers, certificate.as_deref());
    // The `listening on` lines, the first (which scripts parse) with the
    // workers; the start line and the metrics line after them.
    let listening = |workers_note: &str| {
        for (i, addr) in addrs.iter().enumerate() {
            let note = if i == 0 { workers_note } else { "" };
            log::info!("{name} server{tls_note} listening on {addr}{note}{how}");
        }
        log::info!("{started}");
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(addr) = metrics_addr {
            log::info!("metrics on http://{addr}/metrics");
        }
    };
    // The link to other instances (`--cluster`), one per worker.
    let linked = cluster_links(config, &options)?;
    if workers == 1 {
        let parts = parts.into_iter().next().expect("one worker's parts");
        listening("");
        let server = Server::new(parts, options.clone(), first).with_hub(linked(Hub::local(), 0));
        let server = match metrics {
            Some(listener) => server.with_metrics(listener).map_err(RunError::Start)?,
            None => server,
        };
        #[cfg(feature = "tls")]
        let server = match tls {
            Some(tls) => server.with_tls(tls, config.tls.clone().unwrap_or_default()),
            None => server,
        };
        systemd::notify("READY=1");
        let (exit, _stats) = server.run().map_err(RunError::Loop)?;
        return Ok(exit);
    }
    // Every worker may be handed connections (`spread.rs`); relays also
    // reach each other's members through a hub. Both wake a worker with
    // its one waker.
    let fans_out = first.fans_out();
    drop(first);
    let wakers = parts
        .iter()
        .map(Parts::waker)
        .collect::<Result<Vec<_>, _>>()
        .map_err(RunError::Start)?;
    let handoffs = spread::Handoff::mesh(&wakers);
    let hubs: Vec<Hub> = if fans_out {
        Hub::mesh(wakers)
    } else {
        (0..workers).map(|_| Hub::local()).collect()
    };
    let hubs = hubs
        .into_iter()
        .enumerate()
        .map(|(worker, hub)| linked(hub, worker))
        .collect();
    let protocols = (0..workers)
        .map(|_| make())
        .collect::<Result<Vec<_>, _>>()?;
    listening(&format!(" ({workers} workers)"));
    systemd::notify("READY=1");
    let outcome = workers::run(
        parts,
        protocols,
        hubs,
        handoffs,
        metrics,
        &options,
        #[cfg(feature = "tls")]
        tls.map(|t| (t, config.tls.clone().unwrap_or_default())),
    )
    .map_err(RunError::Loop)?;
    Ok(outcome.exit)
}

/// What links each worker's hub to the other instances (`--cluster`): one
/// link per worker, under one instance id; the hub as it is without
/// `--cluster` or for a mode without a relay.
#[cfg(feature = "cluster")]
fn cluster_links<'a>(
    config: &'a Config,
    options: &'a config::ServerOptions,
) -> Result<impl Fn(Hub, usize) -> Hub + 'a, RunError> {
    let instance = cluster::instance_id();
    let tls = cluster_tls(config)?;
    Ok(
        move |hub: Hub, worker: usize| match (&config.cluster, cluster_kind(&config.mode)) {
            (Some(opts), Some(kind)) => {
                let settings = cluster::Settings {
                    url: opts.url.clone(),
                    prefix: opts.prefix.clone(),
                    outbox: opts.outbox,
                    tls: tls.clone(),
                };
                hub.with_cluster(cluster::Cluster::new(
                    settings,
                    kind,
                    instance,
                    worker as u32,
                    options.write_limit,
                    std::time::Instant::now(),
                ))
            }
            _ => hub,
        },
    )
}

/// A build without the cluster: no links (config refused `--cluster`).
#[cfg(not(feature = "cluster"))]
fn cluster_links(
    _: &Config,
    _: &config::ServerOptions,
) -> Result<impl Fn(Hub, usize) -> Hub, RunError> {
    Ok(|hub, _| hub)
}

/// TLS to the cluster's Redis (`rediss://`): verified against
/// `--cluster-ca` alone when given, else the system's trust store, for the
/// URL's host. A CA file that cannot be used is a TLS option error (exit 2).
#[cfg(feature = "cluster")]
fn cluster_tls(config: &Config) -> Result<cluster::link::Tls, RunError> {
    #[allow(unused_mut)]
    let mut tls = cluster::link::Tls::default();
    #[cfg(feature = "tls")]
    if let Some(opts) = config.cluster.as_ref().filter(|c| c.url.tls) {
        let client = config::ClientTls {
            ca: opts.ca.clone(),
            ..Default::default()
        };
        let made = tls::client_config(&client)
            .map_err(|e| RunError::Tls(e.0.replace("--ca", "--cluster-ca")))?;
        let name = tls::server_name(&opts.url.host).map_err(|e| RunError::Tls(e.0))?;
        tls.config = Some((made, name));
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    Ok(tls)
}

/// Which relay a cluster carries for `mode`; `None` for a mode that has
/// none (config refuses `--cluster` for it).
#[cfg(feature = "cluster")]
fn cluster_kind(mode: &Mode) -> Option<cluster::Kind> {
    match mode {
        Mode::Broadcast { .. } => Some(cluster::Kind::Broadcast),
        Mode::Chat => Some(cluster::Kind::Chat),
        _ => None,
    }
}

/// The start-up line: `monoloop 0.1.0 (commit 9524292, tls): echo
/// server, up to 1024 connections, no limit per address, idle timeout 30s,
/// 1 worker`, and with TLS `; certificate CN=NAME, valid until DATE`, as a
/// reload says it.
fn start_line(
    mode: &str,
    tls_note: &str,
    options: &config::ServerOptions,
    workers: usize,
    certificate: Option<&str>,
) -> String {
    let per_ip = match options.edge.max_per_ip {
        0 => "no limit per address".to_string(),
        n => format!("at most {n} per address"),
    };
    let idle = match options.idle_timeout {
        Some(d) => format!("idle timeout {d:?}"),
        None => "no idle timeout".to_string(),
    };
    let workers = match workers {
        1 => "1 worker".to_string(),
        n => format!("{n} workers"),
    };
    let mut line = format!(
        "{}: {mode} server{tls_note}, up to {} connections, {per_ip}, {idle}, {workers}",
        build::describe(),
        options.max_connections
    );
    if let Some(c) = certificate {
        line.push_str("; certificate ");
        line.push_str(c);
    }
    line
}

/// Opens every `--listen`, one socket per worker each (`sys::listen_group`:
/// with several workers, SO_REUSEPORT groups), and gives each worker its
/// [`Parts`], one socket of every `--listen`, in order. Returns them with
/// the addresses listened on.
fn listening_parts(
    config: &Config,
    workers: usize,
) -> Result<(Vec<Parts>, Vec<SocketAddr>), RunError> {
    let mut each: Vec<Vec<mio::net::TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for given in &config.listen {
        let bind = bind_for("--listen", given)?;
        let group =
            sys::listen_group(bind, workers).map_err(|e| RunError::Listen("--listen", e))?;
        for (mine, listener) in each.iter_mut().zip(group) {
            mine.push(listener);
        }
    }
    let addrs = each[0].iter().filter_map(|l| l.local_addr().ok()).collect();
    let parts = each
        .into_iter()
        .map(|listeners| {
            let mut listeners = listeners.into_iter();
            let first = listeners
                .next()
                .expect("config gives at least one --listen");
            let mut parts = Parts::open(first).map_err(RunError::Start)?;
            for more in listeners {
                parts.add_listener(more).map_err(RunError::Start)?;
            }
            Ok(parts)
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    Ok((parts, addrs))
}

/// The listening sockets systemd passed (`LISTEN_FDS`), if this process
/// was socket-activated: every one is served (an IPv4 and an IPv6 socket of
/// one unit, say). `--listen` at the same time is an argument error: exit 2.
fn activated_listener(config: &Config) -> Result<Option<Vec<std::net::TcpListener>>, RunError> {
    let fds = systemd::activated();
    if fds.is_empty() {
        return Ok(None);
    }
    if config.listen_given {
        return Err(RunError::Usage(
            "--listen was given, but systemd passed the listening socket (LISTEN_FDS): \
             leave --listen out and set the address in the socket unit"
                .into(),
        ));
    }
    for fd in &fds {
        systemd::check_listener(fd).map_err(RunError::Usage)?;
    }
    Ok(Some(
        fds.into_iter().map(std::net::TcpListener::from).collect(),
    ))
}

/// One loop's parts on copies of the activated sockets (they share their
/// accept queues with the other loops').
fn activated_parts(sockets: &[std::net::TcpListener]) -> Result<Parts, RunError> {
    let mut copies = sockets.iter().map(activated_copy);
    let first = copies
        .next()
        .ok_or_else(|| RunError::Usage("systemd passed no socket".into()))??;
    let mut parts = Parts::open(first).map_err(RunError::Start)?;
    for more in copies {
        parts.add_listener(more?).map_err(RunError::Start)?;
    }
    Ok(parts)
}

/// A non-blocking copy of an activated socket, for one loop.
fn activated_copy(socket: &std::net::TcpListener) -> Result<mio::net::TcpListener, RunError> {
    let copy = socket
        .try_clone()
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|e| RunError::Start(StartError::Io("cannot use the socket systemd passed", e)))?;
    Ok(mio::net::TcpListener::from_std(copy))
}

/// Where `option` (`--listen`, `--metrics`), given as `given`, listens: the
/// address, every address, or for a host name the first address the
/// resolver returns for it, resolved now, before binding. The other
/// addresses of a name that has several are not listened on (give each
/// its own `--listen` for that); the log says which was chosen.
fn bind_for(option: &'static str, given: &Listen) -> Result<Bind, RunError> {
    let (host, port) = match given {
        Listen::Addr(addr) => return Ok(Bind::Addr(*addr)),
        Listen::Any(port) => return Ok(Bind::Any(*port)),
        Listen::Host { host, port } => (host, *port),
    };
    let resolved =
        sys::resolve(host, port).map_err(|e| RunError::Resolve(option, given.to_string(), e))?;
    if !resolved.others.is_empty() {
        let others: Vec<String> = resolved.others.iter().map(|a| a.to_string()).collect();
        log::info!(
            "{option} {given} resolved to {} addresses: listening on the first, {}, \
             and not on {}",
            resolved.others.len() + 1,
            resolved.first,
            others.join(", ")
        );
    }
    Ok(Bind::Addr(resolved.first))
}
