//! What packaging needs from the binary: shell completions, JSON logs, and the systemd unit
//! example naming flags that exist.

mod support;

use support::pouw;

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = pouw().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["wallet", "transfer", "devnet", "datadir"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = pouw().args(["completions", "tcsh"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("n");
    let out = pouw()
        .args(["--log-format", "json", "node", "--dev", "--datadir", d.to_str().unwrap()])
        .args(["--blocks", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("created the node key")), "{text}");
}

#[test]
fn the_systemd_unit_names_real_flags() {
    let unit = include_str!("../../../contrib/pouw.service");
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).expect("an ExecStart line");
    let args: Vec<&str> =
        exec.trim_start_matches("ExecStart=").split_whitespace().skip(1).collect();
    // The unit's command line, with `--print-config`, must parse (the config file it names is
    // replaced by the example file).
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/node.example.toml");
    let args: Vec<&str> =
        args.iter().map(|a| if a.ends_with(".toml") { example } else { a }).collect();
    let out = pouw().args(&args).arg("--print-config").output().unwrap();
    assert!(out.status.success(), "{exec}: {}", String::from_utf8_lossy(&out.stderr));
}
