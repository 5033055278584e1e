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
use crate::protocol::{CloseReason, Drain};
use crate::worker_link::Event;

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
            Some(worker) => {
                worker.stop_beating();
                worker.report(&self.tally.stats, active, true);
            }
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
        if let Some(worker) = self.worker.as_ref() {
            worker.retire();
        }
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
            let signal = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if self.draining.is_some() {
                self.say(Event::Aborting { signal });
                // Dropped with the loop; those still owed output end with
                // a reset, as at the drain timeout, not a FIN that would
                // pass for the end.
                for token in self.conns.tokens() {
                    if self.owes_output(token) {
                        self.cut_short(token);
                    }
                }
                self.aborted = true;
                return;
            }
            self.say(Event::Draining { signal });
            self.begin_shutdown(now);
        }
    }

    /// SIGHUP: the certificate, key and client CA again from their files.
    /// New handshakes use them; established connections, and handshakes
    /// under way, keep the configuration they began with (each session
    /// holds its own `Arc`). If anything is wrong the old configuration
    /// stays, and the error names the file.
    ///
    /// With several workers, every one gets the signal and worker 0 alone
    /// reloads, for all: one reading of the files, one line, one count. It
    /// publishes the new configuration, and each worker takes it up before
    /// its next handshake (`entry.rs`, `Follower::follow`).
    ///
    /// systemd hears `RELOADING=1` before and `READY=1` after, with nothing
    /// to reload too (under `Type=notify-reload` it waits for both), and
    /// the outcome as the service's `STATUS=`, so that `systemctl status`
    /// says why a reload failed.
    pub(super) fn reload(&mut self) {
        if self.worker.as_ref().is_some_and(|w| w.id != 0) {
            return;
        }
        crate::systemd::reloading();
        #[cfg(feature = "tls")]
        if let Some((current, files)) = &mut self.tls {
            let status = match crate::tls::reload(files, current) {
                Ok((config, described)) => {
                    if let Some(worker) = self.worker.as_mut() {
                        worker.tls.publish(config.clone());
                    }
                    *current = config;
                    logging::for_the_server(|| log::info!("SIGHUP: TLS reloaded: {described}"));
                    format!("TLS reloaded: {described}")
                }
                Err(e) => {
                    self.tally.stats.tls_reload_failures += 1;
                    let why = format!("TLS not reloaded, the old certificate stays: {e}");
                    logging::for_the_server(|| log::error!("SIGHUP: {why}"));
                    why
                }
            };
            crate::systemd::ready(Some(&status));
            return;
        }
        logging::for_the_server(|| log::info!("SIGHUP: nothing to reload (no TLS)"));
        crate::systemd::ready(None);
    }

    /// Closes the listeners and starts a bounded, graceful close of every
    /// connection: each gets the protocol's last words and what it is owed.
    /// One whose protocol has output of its own under way (a download:
    /// [`Drain::Finish`]) stays open and goes on producing it; the drain
    /// timeout ends whatever has not finished by then (`time.rs`).
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        // The other workers stop handing this one connections.
        if let Some(worker) = self.worker.as_ref() {
            worker.retire();
        }
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
                    let drain = self.protocol.shutdown(token, &mut ctx);
                    self.emit(token, now);
                    if drain == Drain::Finish {
                        self.settle(token, now);
                        continue;
                    }
                }
            }
            self.begin_close(token, CloseReason::Shutdown, Some(deadline));
            self.settle(token, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::super::{Parts, Server};
    use crate::config::ServerOptions;
    use crate::protocol::echo::Echo;
    use crate::protocol::seam::Sessions;
    use crate::protocol::Limits;
    use crate::spread::Handoff;
    use crate::worker_link::Shared;

    /// Issue 18, defect 4: a worker whose loop fails gives back the slots
    /// its connections held in the whole server's limit.
    #[test]
    fn a_failing_worker_gives_back_its_slots() {
        let listener = crate::sys::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let parts = Parts::open(listener).unwrap();
        let addr = parts.local_addr();
        let (reports, _rx) = mpsc::channel();
        let shared = Shared::new(1, 10, reports);
        let slots = shared.slots.clone();
        let handoff = Handoff::mesh(&[parts.waker().unwrap()]).pop().unwrap();
        let worker = shared.worker(0, handoff);
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
