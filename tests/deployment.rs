//! What `docs/deployment.md` ships: the systemd unit passes `systemd-analyze verify` (with its
//! `ExecStart` pointed at the binary just built), and every flag it gives `punch serve` exists.

mod common;

use common::*;

#[test]
fn the_systemd_unit_verifies_and_its_flags_exist() {
    require("systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/punch.service"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("punch.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/punch", env!("CARGO_BIN_EXE_punch")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );

    let help = std::process::Command::new(env!("CARGO_BIN_EXE_punch"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let exec: String = unit
        .split("ExecStart=")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("ExecReload"))
        .collect();
    let flags: Vec<&str> = exec
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(flags.len() >= 5, "{exec}");
    for flag in flags {
        assert!(
            help.contains(&format!("{flag} ")),
            "punch serve has no {flag}"
        );
    }
}
