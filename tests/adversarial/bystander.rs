//! A well-behaved client that keeps being served while an attack runs: it
//! repeats one small exchange (a probe) every few milliseconds on its own
//! thread and records the slowest answer and every failure. `finish`
//! stops it and asserts that it was served, every time, within a bound.

#![allow(dead_code)] // each attack file uses what it needs

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a bystander saw.
#[derive(Debug)]
pub struct Served {
    /// Probes answered.
    pub answered: u32,
    /// The slowest answer.
    pub slowest: Duration,
    /// The first failure, if any: which probe, and what went wrong.
    pub failed: Option<String>,
}

pub struct Bystander {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Served>>,
}

impl Bystander {
    /// Starts repeating `probe` every `every` until [`finish`](Self::finish).
    /// A probe returns `Err` with what went wrong; it should have its own
    /// socket timeouts so that a hung server fails it rather than hangs it.
    pub fn start(
        every: Duration,
        mut probe: impl FnMut() -> Result<(), String> + Send + 'static,
    ) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Served {
                answered: 0,
                slowest: Duration::ZERO,
                failed: None,
            };
            while !stopped.load(Ordering::Relaxed) {
                let t = Instant::now();
                match probe() {
                    Ok(()) => {
                        seen.answered += 1;
                        seen.slowest = seen.slowest.max(t.elapsed());
                    }
                    Err(e) => {
                        seen.failed = Some(format!("probe {}: {e}", seen.answered + 1));
                        break;
                    }
                }
                std::thread::sleep(every);
            }
            seen
        });
        Bystander {
            stop,
            thread: Some(thread),
        }
    }

    /// A bystander on an echo server: one connection, a line every 20 ms,
    /// each echoed in full.
    pub fn echo(addr: std::net::SocketAddr) -> Bystander {
        Bystander::echo_on(std::net::TcpStream::connect(addr).expect("bystander connects"))
    }

    /// The same on a connection already made: one that came from a chosen
    /// address, or has sent a PROXY header.
    pub fn echo_on(s: std::net::TcpStream) -> Bystander {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        Bystander::echo_over(s)
    }

    /// The echo probe over any stream (a TLS session, say), which should
    /// have its timeouts set: a line every 20 ms, each echoed in full.
    pub fn echo_over(mut s: impl std::io::Read + std::io::Write + Send + 'static) -> Bystander {
        let mut n = 0u64;
        Bystander::start(Duration::from_millis(20), move || {
            n += 1;
            let line = format!("bystander {n}\n");
            s.write_all(line.as_bytes())
                .map_err(|e| format!("write: {e}"))?;
            let mut got = vec![0; line.len()];
            s.read_exact(&mut got).map_err(|e| format!("read: {e}"))?;
            if got != line.as_bytes() {
                return Err(format!("echoed {:?}", String::from_utf8_lossy(&got)));
            }
            Ok(())
        })
    }

    /// A bystander on a relay (broadcast, chat): `say` sends a line every
    /// 20 ms and `hear`, another client of the same server, must receive
    /// it whole, as `heard` says it arrives (`[Broadcast] LINE`,
    /// `alice: LINE`). The two must already be in the room.
    pub fn relay(
        say: std::net::TcpStream,
        mut hear: std::net::TcpStream,
        heard: impl Fn(&str) -> String + Send + 'static,
    ) -> Bystander {
        use std::io::{Read, Write};
        let mut say = say;
        for s in [&say, &hear] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            s.set_nodelay(true).unwrap();
        }
        let mut n = 0u64;
        Bystander::start(Duration::from_millis(20), move || {
            n += 1;
            let line = format!("bystander {n}\n");
            say.write_all(line.as_bytes())
                .map_err(|e| format!("write: {e}"))?;
            let want = heard(&line);
            let mut got = vec![0; want.len()];
            hear.read_exact(&mut got)
                .map_err(|e| format!("read {want:?}: {e}"))?;
            if got != want.as_bytes() {
                return Err(format!(
                    "heard {:?}, not {want:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
            Ok(())
        })
    }

    /// Stops the probes and returns what was seen.
    pub fn stop(mut self) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the bystander's thread panicked")
    }

    /// Stops the probes and asserts that at least one was answered, none
    /// failed, and none took longer than `bound`.
    pub fn finish(self, bound: Duration) -> Served {
        let seen = self.stop();
        assert!(seen.failed.is_none(), "bystander: {seen:?}");
        assert!(seen.answered > 0, "bystander was never answered: {seen:?}");
        assert!(
            seen.slowest <= bound,
            "bystander's slowest answer took {:?}, over {bound:?}: {seen:?}",
            seen.slowest
        );
        seen
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
