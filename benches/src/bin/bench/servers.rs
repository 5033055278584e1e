//! The servers under test: which ones there are (`servers`, the broadcast
//! relays, the TLS echo servers), where their binaries are and how the
//! runner builds them (`cargo`, `build_minimal`), and how one is started
//! (`start`, `start_on`): pinned to its cores, its `listening on` line read
//! for the address (nginx, which prints none, is waited for by its pid
//! file: `Ready`). A new server is a new entry here; the scaling section
//! keeps its own list (`scaling::scaling_servers`), the io_uring echo
//! (`monoio`) is measured only where `tables` says, and measuring a started
//! server is left to `measure` and `scenarios`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The core every server runs on, outside the scaling section.
pub const SERVER_CPU: usize = 0;
/// The load generator's core, outside the scaling section.
pub const LOADGEN_CPU: usize = 1;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Builds the smallest monoloop the way README's "The smallest binary"
/// says: no TLS, and std rebuilt from source with `-Cpanic=immediate-abort`
/// so that std's panic message and backtrace printer (about half of a
/// stable hello world) are left out. Those are unstable options, unlocked
/// on the stable toolchain by `RUSTC_BOOTSTRAP=1`, and std's source comes
/// from the rust-src component. Returns the binary's size, or None (said on
/// stderr) when it cannot be built here.
pub fn build_minimal(root: &Path) -> Option<u64> {
    // Fetches the component if it is missing; harmless if it is there.
    let _ = Command::new("rustup")
        .args(["component", "add", "rust-src"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let host = String::from_utf8(Command::new("rustc").arg("-vV").output().ok()?.stdout)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))?;
    let status = cargo()
        .args([
            "build",
            "--release",
            "--no-default-features",
            "-Zbuild-std=std,panic_abort",
            "--target",
            &host,
            "--target-dir",
            "target/minimal",
        ])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", "-Zunstable-options -Cpanic=immediate-abort")
        .current_dir(root)
        .status()
        .ok()?;
    if !status.success() {
        eprintln!("   the smallest binary did not build ({status}); left out");
        return None;
    }
    let path = root.join(format!("target/minimal/{host}/release/monoloop"));
    std::fs::metadata(path).map(|m| m.len()).ok()
}

/// `cargo`, for the runner's own builds. Each goes to the target directory
/// the runner then starts the binaries from (the crate's `target/`, or one
/// named with `--target-dir`), so a `CARGO_TARGET_DIR` in the caller's
/// environment, meant for the runner's own build, must not move them.
/// Under `cargo run` the runner also inherits its own package's variables
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...), which ring's build script
/// declares it depends on: passed on, they made each run rebuild ring and
/// everything above it (about a minute here), and the next `cargo run`
/// rebuild them again.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if matches!(
            &*name,
            "CARGO_TARGET_DIR" | "CARGO_MANIFEST_DIR" | "CARGO_MANIFEST_PATH"
        ) || name.starts_with("CARGO_PKG_")
        {
            cmd.env_remove(&var);
        }
    }
    cmd
}

/// Runs a command to completion, failing loudly.
pub fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// One server under test: a name and how to start it.
#[derive(Clone)]
pub struct ServerSpec {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub ready: Ready,
}

/// How the runner learns that a started server listens, and where.
#[derive(Clone)]
pub enum Ready {
    /// It logs `listening on ADDR` on stderr (monoloop and every server in
    /// benches/).
    Announces,
    /// It writes `pid_file` once its sockets are open (nginx), and listens
    /// on `addr`, fixed in its configuration.
    PidFile { pid_file: PathBuf, addr: SocketAddr },
}

/// True if nginx and its stream module are installed (Debian's `nginx` and
/// `libnginx-mod-stream`): nginx is then the TLS reference (issue 11).
pub fn nginx_installed() -> bool {
    Path::new(NGINX_STREAM_MODULE).exists()
        && Command::new("nginx")
            .arg("-v")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// nginx as benches/nginx/README.md says to run it: one process (no
/// master), with benches/nginx/tls.conf rendered into a directory of its
/// own, on two fixed loopback ports. Returns two specs for the same
/// configuration: its stream listener (TLS handshakes, a fixed reply) and
/// its http listener (TLS file downloads from `root`).
pub fn nginx(tag: &str, cert: &Path, key: &Path, root: &Path) -> (ServerSpec, ServerSpec) {
    let dir =
        std::env::temp_dir().join(format!("monoloop-bench-nginx-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let (stream_port, http_port) = (free_port(), free_port());
    let template =
        std::fs::read_to_string(bench_dir().join("nginx/tls.conf")).expect("nginx/tls.conf");
    let conf = template
        .replace("@DIR@", &dir.to_string_lossy())
        .replace("@CERT@", &cert.to_string_lossy())
        .replace("@KEY@", &key.to_string_lossy())
        .replace("@STREAM_PORT@", &stream_port.to_string())
        .replace("@HTTP_PORT@", &http_port.to_string())
        .replace("@ROOT@", &root.to_string_lossy());
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let spec = |port: u16| ServerSpec {
        name: "nginx",
        program: PathBuf::from("nginx"),
        args: vec![
            "-p".into(),
            dir.to_string_lossy().into_owned(),
            "-c".into(),
            conf_path.to_string_lossy().into_owned(),
            "-e".into(),
            "stderr".into(),
        ],
        ready: Ready::PidFile {
            pid_file: dir.join("nginx.pid"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        },
    };
    (spec(stream_port), spec(http_port))
}

/// A loopback port that was free a moment ago (nginx cannot listen on port
/// 0 and say where it went).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// monoloop in `mode` (with its own options), set up for measuring: no
/// stats line, no idle timeout, room for every connection, the
/// `listening on` line logged.
pub fn monoloop(mode: &[&str]) -> ServerSpec {
    let mut args: Vec<String> = mode.iter().map(|a| a.to_string()).collect();
    for a in [
        "--listen",
        "127.0.0.1:0",
        "--stats-interval",
        "0",
        "--idle-timeout",
        "0",
        "--max-connections",
        "50000",
        "--log-level",
        "info",
    ] {
        args.push(a.to_string());
    }
    ServerSpec {
        name: "monoloop",
        program: root().join("target/release/monoloop"),
        args,
        ready: Ready::Announces,
    }
}

pub fn servers() -> Vec<ServerSpec> {
    let bin = bench_dir().join("target/release");
    let mut list = vec![
        monoloop(&["echo"]),
        ServerSpec {
            name: "epoll",
            program: bin.join("echo_epoll"),
            args: vec![],
            ready: Ready::Announces,
        },
        ServerSpec {
            name: "tokio-ct",
            program: bin.join("echo_tokio_ct"),
            args: vec![],
            ready: Ready::Announces,
        },
        ServerSpec {
            name: "tokio-mt",
            program: bin.join("echo_tokio_mt"),
            args: vec![],
            ready: Ready::Announces,
        },
        ServerSpec {
            name: "threads",
            program: bin.join("echo_threads"),
            args: vec![],
            ready: Ready::Announces,
        },
    ];
    if Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        list.push(ServerSpec {
            name: "node",
            program: PathBuf::from("node"),
            args: vec![bench_dir()
                .join("node/echo.js")
                .to_string_lossy()
                .into_owned()],
            ready: Ready::Announces,
        });
    }
    list
}

/// The io_uring echo (issue 23): the same echo on monoio, one thread, its
/// io_uring driver alone (`echo_monoio`). Not one of `servers`: it is
/// measured beside them where a completion-based runtime says something
/// about the readiness model (`tables::with_io_uring`, and the footprint),
/// not in every section.
pub fn monoio() -> ServerSpec {
    ServerSpec {
        name: "monoio",
        program: bench_dir().join("target/release/echo_monoio"),
        args: vec![],
        ready: Ready::Announces,
    }
}

/// The broadcast relays: monoloop's, and tokio's current-thread one.
pub fn broadcast_servers() -> Vec<ServerSpec> {
    vec![
        monoloop(&["broadcast"]),
        ServerSpec {
            name: "tokio-ct",
            program: bench_dir().join("target/release/broadcast_tokio_ct"),
            args: vec![],
            ready: Ready::Announces,
        },
    ]
}

/// A CA and a server certificate for localhost signed by it (ECDSA P-256,
/// rcgen's default), written to a temporary directory: (ca, cert, key).
pub fn tls_files() -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("monoloop-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let key = KeyPair::generate().expect("server key");
    let cert = leaf.signed_by(&key, &issuer).expect("server certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

/// The TLS echo servers: monoloop's, and Node's `tls` where node exists.
pub fn tls_servers(cert: &Path, key: &Path) -> Vec<ServerSpec> {
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let mut list = vec![monoloop(&["echo", "--tls-cert", &cert, "--tls-key", &key])];
    if servers().iter().any(|s| s.name == "node") {
        list.push(ServerSpec {
            name: "node",
            program: PathBuf::from("node"),
            args: vec![
                bench_dir()
                    .join("node/tls.js")
                    .to_string_lossy()
                    .into_owned(),
                "--cert".into(),
                cert.into_owned(),
                "--key".into(),
                key.into_owned(),
            ],
            ready: Ready::Announces,
        });
    }
    list
}

/// The servers of the TLS handshake scenarios: the TLS echo servers, and
/// nginx's stream module where it is installed (it answers a fixed reply,
/// so it has no place in the TLS echo).
pub fn handshake_servers(cert: &Path, key: &Path) -> Vec<ServerSpec> {
    let mut list = tls_servers(cert, key);
    if nginx_installed() {
        let root = std::env::temp_dir();
        list.push(nginx("handshakes", cert, key, &root).0);
    }
    list
}

/// The servers of the idle TLS measurement: the TLS echo servers, and
/// nginx's http listener where installed (its stream one closes after its
/// reply, so it holds no idle connection).
pub fn tls_idle_servers(cert: &Path, key: &Path) -> Vec<ServerSpec> {
    let mut list = tls_servers(cert, key);
    if nginx_installed() {
        list.push(nginx("idle", cert, key, &std::env::temp_dir()).1);
    }
    list
}

/// A started server: the process, its address, its pid, and the core its
/// load generator goes to (the first one the server was not given).
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub loadgen_cpu: usize,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pins a child to the cores `cpus` (its threads may run on any of them)
/// and raises its descriptor limit, before exec.
pub fn pinned(cmd: &mut Command, cpus: Range<usize>) {
    // SAFETY: only async-signal-safe calls (sched_setaffinity, setrlimit)
    // on structs on the child's stack, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in cpus.clone() {
                libc::CPU_SET(cpu, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
}

/// Starts a server on core `SERVER_CPU`, its load generator to go on
/// `LOADGEN_CPU`.
pub fn start(spec: &ServerSpec) -> Running {
    start_on(spec, SERVER_CPU..SERVER_CPU + 1, LOADGEN_CPU)
}

/// Starts a server pinned to the cores `cpus`, and waits until it listens
/// (`Ready`); the load generator will go on `loadgen_cpu`.
pub fn start_on(spec: &ServerSpec, cpus: Range<usize>, loadgen_cpu: usize) -> Running {
    if let Ready::PidFile { pid_file, .. } = &spec.ready {
        // Left behind by the last run's SIGKILL.
        let _ = std::fs::remove_file(pid_file);
    }
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    pinned(&mut cmd, cpus);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", spec.name));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // "... listening on ADDR", and with several workers
            // "... listening on ADDR (4 workers)".
            if let Some((_, rest)) = line.split_once("listening on ") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = match &spec.ready {
        Ready::Announces => rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{} did not say where it listens", spec.name))
            .parse()
            .expect("listening address"),
        Ready::PidFile { pid_file, addr } => {
            let pid = child.id().to_string();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !std::fs::read_to_string(pid_file).is_ok_and(|p| p.trim() == pid) {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{} exited before listening: {status}", spec.name);
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} wrote no pid file in 20 s",
                    spec.name
                );
                thread::sleep(Duration::from_millis(10));
            }
            *addr
        }
    };
    Running {
        child,
        addr,
        loadgen_cpu,
    }
}
