//! The deployment files in `deploy/`: the systemd unit passes `systemd-analyze verify`
//! without a complaint, and the example environment file names only real settings, with
//! values that parse.

use std::path::Path;
use std::process::Command;

use postrust::config::{Config, SETTINGS, unknown_variables};

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    // verify checks that ExecStart= and EnvironmentFile= exist: point them at this build.
    let dir = std::env::temp_dir().join(format!("postrust-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/postrust.env");
    let unit = deploy("postrust.service")
        .replace("/usr/local/bin/postrust", env!("CARGO_BIN_EXE_postrust"))
        .replace(
            "/etc/postrust/postrust.env",
            &env_file.display().to_string(),
        );
    let path = dir.join("postrust.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // It reports what it ignores on standard error and still exits 0.
    assert!(stderr.trim().is_empty(), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_example_environment_names_real_settings_that_parse() {
    let text = deploy("postrust.env");
    let mut active = Vec::new();
    let mut named = Vec::new();
    for line in text.lines() {
        let (commented, line) = match line.strip_prefix('#') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((var, value)) = line.split_once('=') else {
            continue;
        };
        if !var.starts_with("POSTRUST_") || var.contains(' ') {
            continue;
        }
        named.push(var.to_owned());
        if !commented {
            active.push((var.to_owned(), value.to_owned()));
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    assert_eq!(unknown_variables(named.clone()), Vec::<String>::new());
    assert!(named.iter().all(|n| SETTINGS.iter().any(|s| s.var == n)));
    let config = Config::from_lookup(|k| {
        active
            .iter()
            .find(|(var, _)| var == k)
            .map(|(_, v)| v.clone())
    })
    .expect("the example's values parse");
    assert_eq!(config.db_schemas.0, ["public"]);
}
