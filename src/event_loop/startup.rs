//! Start-up: what a server needs from the OS before it runs ([`Parts`]),
//! opened up front so that every start error is reported before any
//! worker starts, and the builders that make a [`Server`] of them.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use mio::{Interest, Poll};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use std::collections::VecDeque;
use std::time::Instant;

use super::admission::Admission;
use super::relay::Relay;
use super::report::{Report, Tally};
use super::visit::SCRATCH_SIZE;
use super::Server;
use crate::config::ServerOptions;
use crate::conn_table::ConnTable;
use crate::edge::{Gate, PerIp};
use crate::metrics::Metrics;
use crate::protocol::seam::DynProtocol;
use crate::sys;
use crate::timer::Timers;
use crate::tokens::{listener_token, LISTENER, MAX_LISTENERS, SIGNALS, WAKER};
use crate::worker_link::Worker;

/// Why the server could not start, once its listeners are open (`lib.rs`
/// opens them, and says which option's could not be).
#[derive(Debug)]
pub enum StartError {
    Io(&'static str, io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

/// What a server needs from the OS before it can run, opened up front so
/// that every start error is reported before any worker starts: the poll,
/// the listeners registered in it, and the signal pipe. `Send`, so that the
/// main thread can open each worker's and hand them over.
pub struct Parts {
    poll: Poll,
    listeners: Vec<TcpListener>,
    local_addr: SocketAddr,
    signals: Signals,
}

impl Parts {
    /// A poll with `listener` and a signal pipe registered in it.
    pub fn open(mut listener: TcpListener) -> Result<Self, StartError> {
        let poll = Poll::new().map_err(|e| StartError::Io("cannot create the poll", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| StartError::Io("cannot read the listening address", e))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| StartError::Io("cannot register the listener", e))?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| StartError::Io("cannot install signal handlers", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| StartError::Io("cannot register the signal pipe", e))?;
        Ok(Self {
            poll,
            listeners: vec![listener],
            local_addr,
            signals,
        })
    }

    /// Another listener, served like the first (a second socket systemd
    /// passed: IPv4 and IPv6, say). Returns its address.
    pub fn add_listener(&mut self, mut listener: TcpListener) -> Result<SocketAddr, StartError> {
        let i = self.listeners.len();
        if i >= MAX_LISTENERS {
            return Err(StartError::Io(
                "too many listening sockets",
                io::Error::other(format!("at most {MAX_LISTENERS}")),
            ));
        }
        self.poll
            .registry()
            .register(&mut listener, listener_token(i), Interest::READABLE)
            .map_err(|e| StartError::Io("cannot register a listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io("cannot read the listening address", e))?;
        self.listeners.push(listener);
        Ok(addr)
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A waker for this poll (mio allows one): other workers use it to say
    /// that they sent this one messages (`hub.rs`) or connections
    /// (`spread.rs`).
    pub fn waker(&self) -> Result<std::sync::Arc<mio::Waker>, StartError> {
        mio::Waker::new(self.poll.registry(), WAKER)
            .map(std::sync::Arc::new)
            .map_err(|e| StartError::Io("cannot create the worker's waker", e))
    }
}

impl Server {
    /// A server on prepared [`Parts`] (the one worker's, or each of
    /// several). Nothing is served until [`run`](Self::run).
    pub fn new(parts: Parts, opts: ServerOptions, protocol: Box<dyn DynProtocol + Send>) -> Self {
        let Parts {
            poll,
            listeners,
            local_addr,
            signals,
        } = parts;
        let now = Instant::now();
        // A room's quiet members are spared the idle timeout; the kernel
        // checks instead that their machines are still there, probing after
        // as much silence as the idle timeout allows (`sys::keepalive`).
        // Set on the listeners, it holds for every connection they accept.
        if let (true, Some(silence)) = (protocol.quiet_members(), opts.idle_timeout) {
            for listener in &listeners {
                if let Err(e) = sys::keepalive(listener, sys::Keepalive::after(silence)) {
                    log::warn!("cannot set TCP keepalive: {e}; a vanished member stays");
                }
            }
        }
        Self {
            poll,
            signals,
            conns: ConnTable::new(),
            timers: Timers::new(),
            fans_out: protocol.fans_out(),
            produces: protocol.produces(),
            deadlines: protocol.has_deadlines(),
            quiet_members: protocol.quiet_members(),
            protocol,
            tally: Tally::new(opts.access_log),
            admission: Admission::new(listeners, local_addr, opts.max_connections),
            gate: Gate::new(&opts.edge, PerIp::shared(&opts.edge)),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            staging: Vec::new(),
            ready: VecDeque::new(),
            fresh: VecDeque::new(),
            light: VecDeque::new(),
            ready_passed_over: 0,
            spent: 0,
            closed: Vec::new(),
            relay: Relay::new(opts.write_limit),
            report: Report::new(now),
            draining: None,
            aborted: false,
            worker: None,
            #[cfg(feature = "tls")]
            tls: None,
            opts,
        }
    }

    /// Serves `--metrics` on `listener` from this loop.
    pub fn with_metrics(mut self, listener: TcpListener) -> Result<Self, StartError> {
        let metrics = Metrics::new(listener, self.poll.registry())
            .map_err(|e| StartError::Io("cannot register the metrics listener", e))?;
        self.report.metrics = Some(metrics);
        Ok(self)
    }

    /// Shares the `--max-per-ip` count with the other workers (`per_ip` is
    /// the whole server's).
    pub fn with_per_ip(mut self, per_ip: Option<PerIp>) -> Self {
        if let Some(gate) = self.gate.as_mut() {
            gate.share_per_ip(per_ip);
        }
        self
    }

    /// Makes this server one of several workers (`workers.rs`): the
    /// connection limit and the stats line become the whole server's, and
    /// its connections' numbers its share of the process's.
    pub fn in_worker(mut self, worker: Worker) -> Self {
        self.admission.limit.share(worker.slots.clone(), worker.id);
        // Numbers unique in the process, with nothing shared to count them:
        // worker W of N numbers its connections W+1, W+1+N, ...
        self.conns
            .number_from(worker.id as u32 + 1, worker.workers() as u32);
        if let Some(access) = self.tally.access.as_mut() {
            access.in_worker(worker.id);
        }
        self.worker = Some(worker);
        self
    }

    /// Relays reach the other workers through `hub` (`hub.rs`); without
    /// it, this loop is the whole server (`Hub::Local`).
    pub fn with_hub(mut self, hub: crate::hub::Hub) -> Self {
        self.relay.hub = hub;
        self
    }

    /// Serves TLS with this configuration, made from `files` (which SIGHUP
    /// reloads): every connection starts with a handshake.
    #[cfg(feature = "tls")]
    pub fn with_tls(
        mut self,
        config: std::sync::Arc<rustls::ServerConfig>,
        files: crate::config::ServerTls,
    ) -> Self {
        self.tls = Some((config, files));
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Parts, Server};
    use crate::config::ServerOptions;
    use crate::protocol::broadcast::Broadcast;
    use crate::protocol::chat::Chat;
    use crate::protocol::echo::Echo;
    use crate::protocol::seam::{DynProtocol, Sessions};
    use crate::protocol::Limits;

    /// Issue 21: a room's listeners carry TCP keepalive sized from the
    /// idle timeout (and so every connection they accept: `sys::tests`);
    /// echo's do not, and nor do a room's with `--idle-timeout 0`.
    #[test]
    fn a_rooms_listeners_carry_keepalive_and_echos_do_not() {
        let limits = Limits::lines(64);
        let cases: [(Box<dyn DynProtocol + Send>, Option<Duration>, bool); 4] = [
            (
                Sessions::boxed(Chat::new(limits)),
                Some(Duration::from_secs(30)),
                true,
            ),
            (
                Sessions::boxed(Broadcast::new("", limits)),
                Some(Duration::from_secs(30)),
                true,
            ),
            (Sessions::boxed(Chat::new(limits)), None, false),
            (
                Sessions::boxed(Echo::new(None, None, limits)),
                Some(Duration::from_secs(30)),
                false,
            ),
        ];
        for (protocol, idle_timeout, expected) in cases {
            let listener = crate::sys::listen("127.0.0.1:0".parse().unwrap()).unwrap();
            let opts = ServerOptions {
                idle_timeout,
                ..ServerOptions::default()
            };
            let server = Server::new(Parts::open(listener).unwrap(), opts, protocol);
            let l = socket2::SockRef::from(&server.admission.listeners[0]);
            assert_eq!(l.keepalive().unwrap(), expected, "{idle_timeout:?}");
            if expected {
                assert_eq!(l.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
                assert_eq!(l.tcp_user_timeout().unwrap(), Some(Duration::from_secs(60)));
            }
        }
    }
}
