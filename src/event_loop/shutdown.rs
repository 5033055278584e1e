//! Signals and the end of the loop: SIGINT and SIGTERM start a bounded,
//! graceful drain (a second one aborts), SIGHUP reloads the TLS files; and
//! the final report. A loop whose poll fails gives back what it holds
//! ([`Server::abandon`]).

use std::time::Instant;

use signal_hook::consts::{SIGHUP, SIGINT};

use super::admission::Accepting;
use super::time::TimerKey;
use super::{connections, step_ctx, Exit, Server};
use crate::connection::Stage;
use crate::logging;
use crate::protocol::CloseReason;

impl Server {
    /// The loop is over: the final stats line (with several workers the
    /// supervisor writes the whole server's, from this worker's report),
    /// and how it ended.
    pub(super) fn exit(&mut self) -> Exit {
        self.tally.stats.log_dropped = logging::dropped();
        let active = self.active();
        match &self.worker {
            None => log::info!(
                "stats: {} (final)",
                self.tally.stats.line(active, self.is_tls())
            ),
            Some(worker) => worker.report(&self.tally.stats, active),
        }
        if self.aborted {
            Exit::Aborted
        } else {
            Exit::Drained
        }
    }

    /// The poll failed and this loop stops at once. Every connection is
    /// closed first, so that what it holds beyond this loop comes back: its
    /// slot in the whole server's limit, its count per address, a chat
    /// name in the shared registry (the relay's departure lines go out to
    /// the other workers too).
    pub(super) fn abandon(&mut self) {
        log::error!(
            "event loop failed: closing {}",
            connections(self.conns.len())
        );
        for token in self.conns.tokens() {
            self.close(token, CloseReason::Shutdown);
        }
        self.deliver(Instant::now());
        self.reap();
        let _ = self.exit();
    }

    /// SIGINT or SIGTERM: the first starts the drain, a second aborts.
    pub(super) fn signal(&mut self, now: Instant) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for sig in signals {
            if sig == SIGHUP {
                self.reload();
                continue;
            }
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if self.draining.is_some() {
                log::warn!(
                    "{name} again: exiting now, dropping {}",
                    connections(self.conns.len())
                );
                self.aborted = true;
                return;
            }
            log::info!(
                "{name}: no longer accepting; draining {} for up to {:?}",
                connections(self.conns.len()),
                self.opts.drain_timeout
            );
            self.begin_shutdown(now);
        }
    }

    /// SIGHUP: the certificate, key and client CA again from their files.
    /// New handshakes use them; established connections, and handshakes
    /// under way, keep the configuration they began with (each session
    /// holds its own `Arc`). If anything is wrong the old configuration
    /// stays, and the error names the file.
    pub(super) fn reload(&mut self) {
        #[cfg(feature = "tls")]
        if let Some((current, files)) = &mut self.tls {
            crate::systemd::reloading();
            let result = crate::tls::reload(files, current);
            crate::systemd::notify("READY=1");
            match result {
                Ok((config, described)) => {
                    *current = config;
                    log::info!("SIGHUP: TLS reloaded: {described}");
                }
                Err(e) => {
                    // One reload of the server, one count: every worker
                    // gets the signal, and worker 0 (or the only loop)
                    // counts its failure for all.
                    if self.worker.as_ref().is_none_or(|w| w.id == 0) {
                        self.tally.stats.tls_reload_failures += 1;
                    }
                    log::error!("SIGHUP: TLS not reloaded, the old certificate stays: {e}");
                }
            }
            return;
        }
        log::info!("SIGHUP: nothing to reload (no TLS)");
    }

    /// Closes the listeners and starts a bounded, graceful close of every
    /// connection: each gets the protocol's last words and what it is owed.
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        crate::systemd::notify("STOPPING=1");
        let deadline = now + self.opts.drain_timeout;
        self.draining = Some(deadline);
        self.admission.accepting = Accepting::Stopped;
        // Dropping a listener this process opened closes it: new clients
        // are refused by the kernel rather than left waiting in a backlog
        // nobody serves. Under socket activation these are copies, and
        // systemd keeps the socket: new clients wait for the next process.
        self.admission.listeners.clear();
        self.timers.schedule(deadline, TimerKey::Drain);
        for token in self.conns.tokens() {
            if let Some(conn) = self.conns.get_mut(token) {
                // Mid-handshake or mid-header: nothing is owed yet, and
                // nobody to tell.
                if matches!(conn.stage(), Stage::Handshake { .. } | Stage::Header { .. }) {
                    self.close(token, CloseReason::Shutdown);
                    continue;
                }
                if conn.accepts_output() {
                    let mut ctx = step_ctx(now, &[], &mut self.staging, &mut self.relay);
                    self.protocol.shutdown(token, &mut ctx);
                    self.emit(token, now);
                }
            }
            self.begin_close(token, CloseReason::Shutdown, Some(deadline));
            self.settle(token, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    use super::super::{Parts, Server};
    use crate::config::ServerOptions;
    use crate::protocol::echo::Echo;
    use crate::protocol::seam::Sessions;
    use crate::protocol::Limits;
    use crate::worker_link::{Board, Slots, Worker};

    /// Issue 18, defect 4: a worker whose loop fails gives back the slots
    /// its connections held in the whole server's limit.
    #[test]
    fn a_failing_worker_gives_back_its_slots() {
        let listener = crate::sys::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let parts = Parts::open(listener).unwrap();
        let addr = parts.local_addr();
        let slots = Slots::new(10);
        let (reports, _rx) = mpsc::channel();
        let worker = Worker {
            id: 0,
            slots: slots.clone(),
            board: Arc::new(Board::new(1)),
            holding: Arc::new(vec![AtomicBool::new(false)]),
            reports,
        };
        let protocol = Sessions::boxed(Echo::new(None, None, Limits::lines(64)));
        let mut server = Server::new(parts, ServerOptions::default(), protocol).in_worker(worker);
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // Accept until all three are in (the listener's event is not
        // needed: accepting until WouldBlock is what an event would do).
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.conns.len() < 3 && Instant::now() < deadline {
            server.accept(Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(server.conns.len(), 3);
        assert_eq!(slots.taken(), 3, "each connection holds a slot");
        server.abandon();
        assert_eq!(slots.taken(), 0, "an abandoned loop gave its slots back");
        assert!(server.conns.is_empty());
        drop(clients);
    }
}
