//! The files in docs/deploy, checked the way their own tools check them:
//! `systemd-analyze verify` on the units (the template through an instance
//! and its drop-in, as an operator installs it) and `haproxy -c` on the
//! balancer's configuration. Where a tool is not installed its test says
//! so in one line and passes; CI installs both (`.ci/run`).
//!
//! And one rule of our own: the template's sandbox is the plain unit's,
//! directive for directive, so that hardening one hardens both.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy().join(name)).unwrap()
}

/// The directives (comments and blank lines left out) from the unit's
/// `# Hardening` comment to its `[Install]` section.
fn sandbox(unit: &str) -> Vec<String> {
    let text = read(unit);
    let start = text
        .find("\n# Hardening")
        .unwrap_or_else(|| panic!("{unit}: no '# Hardening' comment"));
    let end = text[start..]
        .find("\n[Install]")
        .unwrap_or_else(|| panic!("{unit}: no [Install] after the hardening"));
    text[start..start + end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_template_is_sandboxed_as_the_plain_unit_is() {
    let plain = sandbox("monoloop.service");
    assert!(plain.iter().any(|l| l == "PrivateUsers=yes"), "{plain:?}");
    assert_eq!(sandbox("monoloop@.service"), plain);
}

/// Whether `tool` runs here (`tool version_flag`); if not, says that the
/// test is skipped.
fn installed(tool: &str, version_flag: &str, package: &str) -> bool {
    let found = Command::new(tool).arg(version_flag).output().is_ok();
    if !found {
        eprintln!(
            "skipped: {tool} is not installed (apt-get install {package}); .ci/run installs it"
        );
    }
    found
}

#[test]
fn the_units_verify_once_the_binary_is_installed() {
    if !installed("systemd-analyze", "--version", "systemd") {
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
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A warning (an unknown or misspelt directive) exits 0: nothing at all
    // may be said.
    assert!(out.status.success() && said.is_empty(), "{said}");
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
    if !installed("haproxy", "-v", "haproxy") {
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
    // Echo shares nothing between instances: the example balances it, not
    // a chat whose instances would be separate rooms.
    let cfg = read("haproxy.cfg");
    assert!(cfg.contains("#   monoloop echo --listen 127.0.0.1:9001"));
    assert!(!cfg.contains("#   monoloop chat --listen"));
}
