//! The files in docs/deploy, checked the way their own tools check them:
//! `systemd-analyze verify` on the units (the template through an instance
//! and its drop-in, as an operator installs it), `haproxy -c` on the
//! balancers' configurations and `bash -n` on the cluster's script. Where a tool is not installed its test is
//! skipped (`common::have`); CI installs both and never skips.
//!
//! And one rule of our own: the template runs as the plain unit does,
//! directive for directive but its `ExecStart=`, so that hardening or
//! changing one changes both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy().join(name)).unwrap()
}

/// The directives of the unit's `[Service]` section, comments and blank
/// lines left out, `ExecStart=` too.
fn service(unit: &str) -> Vec<String> {
    let text = read(unit);
    let (_, rest) = text
        .split_once("\n[Service]\n")
        .unwrap_or_else(|| panic!("{unit}: no [Service]"));
    let section = rest.split("\n[").next().unwrap_or_default();
    section
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("ExecStart="))
        .map(String::from)
        .collect()
}

#[test]
fn the_template_runs_as_the_plain_unit_does() {
    let plain = service("monoloop.service");
    assert!(plain.iter().any(|l| l == "PrivateUsers=yes"), "{plain:?}");
    assert_eq!(service("monoloop@.service"), plain);
}

/// systemd's version, from the first line of `systemd-analyze --version`
/// (`systemd 252 (252.38-1~deb12u1)`).
fn systemd_version() -> u32 {
    let out = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {text:?}"))
}

#[test]
fn the_units_verify_once_the_binary_is_installed() {
    if !common::skip::have("systemd-analyze", "--version", "systemd") {
        return;
    }
    // The units as an operator would install them, with ExecStart= naming
    // the binary under test instead of /usr/local/bin/monoloop (verify
    // refuses a command that is not there), and the drop-in the template's
    // socket needs for one instance.
    let dir = std::env::temp_dir().join(format!("monoloop-units-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("monoloop@echo.socket.d")).unwrap();
    for unit in [
        "monoloop.socket",
        "monoloop.service",
        "monoloop@.socket",
        "monoloop@.service",
    ] {
        let text = read(unit);
        assert!(text.contains("/usr/local/bin/monoloop") || unit.ends_with(".socket"));
        let text = text.replace("/usr/local/bin/monoloop", env!("CARGO_BIN_EXE_monoloop"));
        std::fs::write(dir.join(unit), text).unwrap();
    }
    std::fs::write(
        dir.join("monoloop@echo.socket.d/listen.conf"),
        "[Socket]\nListenStream=127.0.0.1:7007\n",
    )
    .unwrap();
    let verify = |units: &[&str]| {
        Command::new("systemd-analyze")
            .arg("verify")
            .args(units)
            // The trailing colon keeps the system's own units (sockets.target,
            // ...) on the path after ours.
            .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
            .output()
            .unwrap()
    };
    let out = verify(&[
        "monoloop.socket",
        "monoloop.service",
        "monoloop@echo.socket",
        "monoloop@echo.service",
    ]);
    // A warning (an unknown or misspelt directive) exits 0: nothing at all
    // may be said, but what the units say an older systemd says of
    // Type=notify-reload (253).
    let old = systemd_version() < 253;
    let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .filter(|l| !(old && (l.contains("notify-reload") || l.contains("'ReloadSignal'"))))
        .map(String::from)
        .collect();
    assert!(out.status.success() && said.is_empty(), "{said:#?}");
    // An instance without its drop-in has no port, and says so.
    let out = verify(&["monoloop@chat.socket"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("has no Listen setting"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_haproxy_configuration_is_valid() {
    if !common::skip::have("haproxy", "-v", "haproxy") {
        return;
    }
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(deploy().join("haproxy.cfg"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // Echo shares no state between instances: the example balances it,
    // not a chat whose instances would be separate rooms.
    let cfg = read("haproxy.cfg");
    assert!(cfg.contains("#   monoloop echo --listen 127.0.0.1:9001"));
    assert!(!cfg.contains("#   monoloop chat --listen"));
}

#[test]
fn the_cluster_example_is_valid_and_agrees_with_its_script() {
    let cfg = read("haproxy-cluster.cfg");
    let script = read("cluster.sh");
    // The instances the configuration balances are the ones the script
    // starts, on the Redis it starts.
    for port in ["9201", "9202", "9203"] {
        assert!(cfg.contains(&format!("server m{} 127.0.0.1:{port}", &port[3..])));
        assert!(cfg.contains(&format!(
            "#   monoloop chat --listen 127.0.0.1:{port} --proxy-protocol"
        )));
    }
    assert!(cfg.contains("--cluster redis://127.0.0.1:6380"));
    assert!(script.contains("ports=(9201 9202 9203)") && script.contains("redis_port=6380"));
    assert!(cfg.contains("bind 127.0.0.1:8080") && script.contains("front=8080"));
    assert!(script.contains("haproxy-cluster.cfg"));
    let out = Command::new("bash")
        .arg("-n")
        .arg(deploy().join("cluster.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !common::skip::have("haproxy", "-v", "haproxy") {
        return;
    }
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(deploy().join("haproxy-cluster.cfg"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
}
