//! The screening's figures (direction and magnitude against the other miners): statistics,
//! never evidence (design/008).

use super::{MinerLog, TaskScreen};
use pouw_primitives::Address;
use std::collections::BTreeMap;

/// Cosine between two sparse vectors (coordinate -> value).
pub(super) fn cosine(a: &BTreeMap<u32, f64>, b: &BTreeMap<u32, f64>) -> Option<f64> {
    let dot: f64 = a.iter().filter_map(|(j, x)| b.get(j).map(|y| x * y)).sum();
    let na: f64 = a.values().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.values().map(|x| x * x).sum::<f64>().sqrt();
    (na > 0.0 && nb > 0.0).then(|| dot / (na * nb))
}

/// A message map as a sparse +-1 vector.
pub(super) fn signs(map: &[u32]) -> BTreeMap<u32, f64> {
    map.iter()
        .map(|&e| {
            let (j, positive) = pouw_ml::unpack_entry(e);
            (j, if positive { 1.0 } else { -1.0 })
        })
        .collect()
}

/// Adds `scale` times the +-1 vector of `map` to `window`.
pub(super) fn add_map(window: &mut [f32], map: &[u32], scale: f32) {
    for &e in map {
        let (j, positive) = pouw_ml::unpack_entry(e);
        if let Some(w) = window.get_mut(j as usize) {
            *w += if positive { scale } else { -scale };
        }
    }
}

pub(super) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0),
    }
}

impl TaskScreen {
    /// Direction (cosine with the robust aggregate of the others' recent maps) and magnitude
    /// (size over the median of the others' mean sizes) of `map`, sent by `miner`.
    pub(super) fn against_others(
        &self,
        miner: &Address,
        map: &[u32],
    ) -> (Option<f64>, Option<f64>) {
        let others: Vec<&MinerLog> = self
            .logs
            .iter()
            .filter(|(m, l)| *m != miner && !l.recent.is_empty() && l.window.len() == self.params)
            .map(|(_, l)| l)
            .collect();
        if others.is_empty() {
            return (None, None);
        }
        // The coordinate-wise median of the others' window sums, and its norm.
        let mut aggregate = vec![0.0f64; self.params];
        let mut column = vec![0.0f64; others.len()];
        let k = column.len();
        let mut norm = 0.0f64;
        for (j, a) in aggregate.iter_mut().enumerate() {
            for (c, l) in column.iter_mut().zip(&others) {
                *c = f64::from(l.window.get(j).copied().unwrap_or(0.0));
            }
            column.sort_unstable_by(f64::total_cmp);
            let hi = column.get(k / 2).copied().unwrap_or(0.0);
            let m = if k % 2 == 1 {
                hi
            } else {
                (column.get(k / 2 - 1).copied().unwrap_or(0.0) + hi) / 2.0
            };
            *a = m;
            norm += m * m;
        }
        let mut dot = 0.0f64;
        for &e in map {
            let (j, positive) = pouw_ml::unpack_entry(e);
            let x = aggregate.get(j as usize).copied().unwrap_or(0.0);
            dot += if positive { x } else { -x };
        }
        let direction = (norm > 0.0 && !map.is_empty())
            .then(|| dot / (norm.sqrt() * (map.len() as f64).sqrt()));
        let sizes: Vec<f64> = others
            .iter()
            .map(|l| l.recent.iter().map(Vec::len).sum::<usize>() as f64 / l.recent.len() as f64)
            .collect();
        let magnitude = median(sizes).filter(|m| *m > 0.0).map(|m| map.len() as f64 / m);
        (direction, magnitude)
    }
}
