//! The fuzz targets' brief run (CI): every committed corpus input (`fuzz/corpus/<target>/`)
//! through its target's check, then deterministic mutations of them (bit flips, byte
//! changes, truncations, insertions, splices) for about a second per target. The checks are
//! the fuzz crate's own (`fuzz/src/lib.rs`, compiled in here), so a panic here is the same bug
//! libFuzzer would report; the sanitizer runs of `scripts/fuzz.sh` go much further.

#[allow(dead_code, unreachable_pub, clippy::all, clippy::pedantic, clippy::nursery)]
#[path = "../../../fuzz/src/lib.rs"]
mod checks;

use std::{
    path::Path,
    time::{Duration, Instant},
};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 14] = [
    ("block", checks::block),
    ("header", checks::header),
    ("transaction", checks::transaction),
    ("iteration_message", checks::iteration_message),
    ("proof_data", checks::proof_data),
    ("gossip", checks::gossip),
    ("request", checks::request),
    ("response", checks::response),
    ("task_file", checks::task_file),
    ("chain_spec", checks::chain_spec),
    ("idx", checks::idx),
    ("csv", checks::csv),
    ("json_rpc", checks::json_rpc),
    ("safetensors", checks::safetensors),
];

/// xorshift64*: reproducible mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            4 if !other.is_empty() => {
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ if v.len() >= 4 => {
                // A length-like little-endian u32 set to something large.
                let i = rng.below(v.len() - 3);
                v[i..i + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    let budget = Duration::from_millis(
        std::env::var("FUZZ_BRIEF_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
    );
    for (i, (name, check)) in TARGETS.iter().enumerate() {
        let inputs = corpus(name);
        assert!(!inputs.is_empty(), "target {name} has a committed corpus");
        for input in &inputs {
            check(input);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
        let started = Instant::now();
        let mut runs = inputs.len();
        while started.elapsed() < budget {
            let a = &inputs[rng.below(inputs.len())];
            let b = &inputs[rng.below(inputs.len())];
            check(&mutate(&mut rng, a, b));
            runs += 1;
        }
        assert!(runs > inputs.len(), "target {name} ran mutations");
    }
}
