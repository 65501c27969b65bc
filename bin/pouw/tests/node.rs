//! `pouw node --dev` mines real PoUW blocks; after it stops (and after a restart that mines on)
//! `pouw chain tip` and `pouw chain verify` see every block, and every block re-verifies with
//! its replay.

mod support;

use support::pouw;

use pouw_primitives::{ChainSpec, CompactTarget};

fn json(out: std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn dev_node_blocks_re_verify_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("node");
    // The devnet with an easy target, so that the test mines in well under a second.
    let mut spec = ChainSpec::devnet();
    spec.initial_target = CompactTarget(0x2100_ffff);
    spec.max_target = CompactTarget(0x2100_ffff);
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec.to_toml()).unwrap();
    let chain = spec_path.to_str().unwrap();
    let datadir_s = datadir.to_str().unwrap();

    for (run, expected) in [(2u64, 2u64), (2, 4)] {
        let status = pouw()
            .args(["node", "--dev", "--datadir", datadir_s, "--chain", chain])
            .args(["--blocks", &run.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let tip = json(
            pouw()
                .args(["chain", "tip", "--datadir", datadir_s, "--chain", chain, "--json"])
                .output()
                .unwrap(),
        );
        assert_eq!(tip["height"], expected);
        assert_eq!(tip["hash"].as_str().unwrap().len(), 64);
        let report = json(
            pouw()
                .args(["chain", "verify", "--datadir", datadir_s, "--chain", chain, "--json"])
                .output()
                .unwrap(),
        );
        assert_eq!(report["blocks"], expected);
        assert_eq!(report["verified"], expected);
        assert_eq!(report["failed"], 0);
    }

    // Without the proof data no block can be replayed: verification fails and says why.
    std::fs::remove_file(datadir.join(pouw_storage::PROOFS_FILE)).unwrap();
    let out = pouw()
        .args(["chain", "verify", "--datadir", datadir_s, "--chain", chain, "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], 0);
    assert_eq!(report["failed"], 1);
    assert!(report["failures"][0]["error"].as_str().unwrap().contains("proof store"));
}
