//! The processes the soak runs: monoloop servers (started with a metrics
//! listener and the access log, their stderr copied to a log file and read
//! for the figures the checks need) and a redis-server of the soak's own
//! (persistence off, stopped and started again on the same port). Also what
//! is read off a process from /proc (RSS, open descriptors), and the list of
//! every pid started, so that a panic can stop them all before the exit.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Every pid the soak started and has not stopped yet.
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register(pid: u32) {
    PIDS.lock().unwrap().push(pid);
}

fn unregister(pid: u32) {
    PIDS.lock().unwrap().retain(|&p| p != pid);
}

/// Kills every process the soak started (for the panic hook: no Drop runs
/// after it).
pub fn kill_all() {
    if let Ok(pids) = PIDS.lock() {
        for &pid in pids.iter() {
            // SAFETY: kill(2) on a pid this process started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// What a server's log says, as it comes.
#[derive(Default)]
pub struct LogFigures {
    /// Access-log lines, by their `end=` word.
    pub ends: BTreeMap<String, u64>,
    /// Lines that say something went wrong inside the server.
    pub alarms: Vec<String>,
}

impl LogFigures {
    /// Connections that ended as clients (not turned away, not health
    /// checks): the access log's side of `accepted`.
    pub fn closed(&self) -> u64 {
        self.ends
            .iter()
            .filter(|(end, _)| {
                !matches!(end.as_str(), "check" | "server_full" | "per_ip" | "denied")
            })
            .map(|(_, n)| n)
            .sum()
    }
    pub fn checks(&self) -> u64 {
        self.ends.get("check").copied().unwrap_or(0)
    }
}

/// A running monoloop.
pub struct Server {
    pub name: &'static str,
    child: Child,
    pub addr: SocketAddr,
    metrics: SocketAddr,
    pub log: Arc<Mutex<LogFigures>>,
}

impl Server {
    /// Starts `program` with `args` and the soak's own options (a metrics
    /// listener, the access log, a stats line every 10 s), its stderr to
    /// `dir/NAME.log`; waits until it says where it listens.
    pub fn start(name: &'static str, program: &Path, args: &[String], dir: &Path) -> Server {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .args([
                "--access-log",
                "--stats-interval",
                "10",
                "--log-level",
                "info",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        register(child.id());
        let stderr = child.stderr.take().unwrap();
        let log_path = dir.join(format!("{name}.log"));
        let mut file = File::create(&log_path).expect("server log file");
        let log = Arc::new(Mutex::new(LogFigures::default()));
        let figures = log.clone();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some((_, rest)) = line.split_once("listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(("listen", addr.to_string()));
                } else if let Some((_, rest)) = line.split_once("metrics on http://") {
                    let addr = rest.split('/').next().unwrap_or_default();
                    let _ = tx.send(("metrics", addr.to_string()));
                }
                let mut f = figures.lock().unwrap();
                if line.contains("access conn=") {
                    if let Some(end) = line.split_whitespace().find_map(|w| w.strip_prefix("end="))
                    {
                        *f.ends.entry(end.to_string()).or_default() += 1;
                    }
                } else if (line.contains("panicked") || line.contains("ERROR"))
                    && f.alarms.len() < 10
                {
                    f.alarms.push(line.clone());
                }
            }
        });
        let (mut addr, mut metrics) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while addr.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (what, a) = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("{name} did not say where it listens (see {log_path:?})")
            });
            let a: SocketAddr = a.parse().expect("an address");
            match what {
                "listen" => addr = addr.or(Some(a)),
                _ => metrics = Some(a),
            }
        }
        Server {
            name,
            child,
            addr: addr.unwrap(),
            metrics: metrics.unwrap(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// None while it runs; how it ended otherwise.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(e.to_string()),
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
    }

    /// The metrics, as (series, value); empty if the scrape failed.
    pub fn scrape(&self) -> Vec<(String, f64)> {
        let Ok(mut s) = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(5)) else {
            return Vec::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
        let req = "GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n";
        if s.write_all(req.as_bytes()).is_err() {
            return Vec::new();
        }
        let mut text = String::new();
        if s.read_to_string(&mut text).is_err() {
            return Vec::new();
        }
        let Some((_, body)) = text.split_once("\r\n\r\n") else {
            return Vec::new();
        };
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// The sum of a family's series in `scraped` (every label set).
    pub fn metric(scraped: &[(String, f64)], family: &str) -> f64 {
        scraped
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(family))
            .map(|(_, v)| v)
            .sum()
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Open descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// SIGTERM, then SIGKILL if it has not gone within 10 s.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(self.pid());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(self.pid());
    }
}

/// A redis-server of the soak's own, persistence off.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    /// Starts one on `port`, and waits until it answers PING.
    pub fn start(port: u16) -> Result<Redis, String> {
        let mut r = Redis { child: None, port };
        r.launch()?;
        Ok(r)
    }

    fn launch(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server did not start: {e}"))?;
        register(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong() {
            if Instant::now() > deadline {
                return Err(format!("redis-server on port {} did not answer", self.port));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn pong(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills it by its pid (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            unregister(child.id());
        }
    }

    /// Kills it and starts it again on the same port, empty.
    pub fn restart(&mut self, down: Duration) -> Result<(), String> {
        self.kill();
        thread::sleep(down);
        self.launch()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
