//! Merkle trees over a segment's samples: the segment hash is the root of its samples' tree, so
//! a node holding none of the data can check that a sample (features and label) sits at a given
//! index of a segment from a logarithmic proof (design/010, attack 3).
//!
//! - leaf `i` (index in the segment, from 0): `BLAKE3("pouw-ml/sample/v1" || 0x00 || u32 i ||
//!   u32 width || features f32 || u32 label)`;
//! - inner node: `BLAKE3("pouw-ml/merkle-node/v1" || 0x00 || left || right)`; a level of odd
//!   length passes its last node up unchanged (no duplicate leaf, so no two leaf lists share a
//!   root);
//! - segment hash: `BLAKE3("pouw-ml/segment/v2" || 0x00 || u32 count || u32 width || tree root)`
//!   (the tree root of no sample is 32 zero bytes), so the hash also fixes the segment's length
//!   and width.
//!
//! A proof of leaf `i` is the sibling of each level on its path that has one, bottom up:
//! `ceil(log2(count))` hashes at most.

use crate::hash::{self, Digest};

/// Domain tag of a leaf.
const SAMPLE_TAG: &str = "pouw-ml/sample/v1";
/// Domain tag of an inner node.
const NODE_TAG: &str = "pouw-ml/merkle-node/v1";

/// The leaf of the sample at `index` of its segment.
pub fn sample_leaf(index: u32, features: &[f32], label: u32) -> Digest {
    let mut h = hash::tagged(SAMPLE_TAG);
    h.update(&index.to_le_bytes());
    h.update(&u32::try_from(features.len()).unwrap_or(u32::MAX).to_le_bytes());
    hash::update_f32s(&mut h, features);
    h.update(&label.to_le_bytes());
    Digest(*h.finalize().as_bytes())
}

fn node(left: &Digest, right: &Digest) -> Digest {
    let mut h = hash::tagged(NODE_TAG);
    h.update(&left.0);
    h.update(&right.0);
    Digest(*h.finalize().as_bytes())
}

/// The segment hash of a tree root over `count` samples of `width` features.
pub fn segment_root(count: u32, width: u32, tree_root: &Digest) -> Digest {
    let mut h = hash::tagged(hash::SEGMENT_TAG);
    h.update(&count.to_le_bytes());
    h.update(&width.to_le_bytes());
    h.update(&tree_root.0);
    Digest(*h.finalize().as_bytes())
}

/// The Merkle tree of one segment's samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTree {
    /// `levels[0]` the leaves, the last level the root (empty when there is no sample).
    levels: Vec<Vec<Digest>>,
    width: u32,
}

impl SegmentTree {
    /// The tree of `labels.len()` samples of `width` features each (`features` row-major; a
    /// short `features` gives the missing samples no features).
    pub fn new(features: &[f32], labels: &[u32], width: usize) -> Self {
        let leaves: Vec<Digest> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let start = i.saturating_mul(width);
                let end = start.saturating_add(width).min(features.len());
                let x = features.get(start.min(end)..end).unwrap_or_default();
                sample_leaf(u32::try_from(i).unwrap_or(u32::MAX), x, *label)
            })
            .collect();
        let mut levels = vec![leaves];
        while let Some(last) = levels.last().filter(|l| l.len() > 1) {
            let up = last
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node(l, r),
                    [one] => *one,
                    _ => Digest::default(),
                })
                .collect();
            levels.push(up);
        }
        Self { levels, width: u32::try_from(width).unwrap_or(u32::MAX) }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// True when the segment has no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment hash: [`segment_root`] of the tree's root.
    pub fn root(&self) -> Digest {
        let top = self.levels.last().and_then(|l| l.first()).copied().unwrap_or_default();
        segment_root(u32::try_from(self.len()).unwrap_or(u32::MAX), self.width, &top)
    }

    /// The proof of sample `index` (its siblings bottom up); `None` past the last sample.
    pub fn proof(&self, index: usize) -> Option<Vec<Digest>> {
        if index >= self.len() {
            return None;
        }
        let mut i = index;
        let mut out = Vec::new();
        for level in &self.levels {
            if level.len() > 1 {
                if let Some(s) = level.get(i ^ 1) {
                    out.push(*s);
                }
            }
            i /= 2;
        }
        Some(out)
    }
}

/// Length of the proof of sample `index` of a segment of `count` samples (`None`: no such
/// sample). At most `ceil(log2(count))`.
pub fn proof_len(count: usize, index: usize) -> Option<usize> {
    if index >= count {
        return None;
    }
    let (mut i, mut len, mut n) = (index, count, 0usize);
    while len > 1 {
        if (i ^ 1) < len {
            n = n.saturating_add(1);
        }
        i /= 2;
        len = len.div_ceil(2);
    }
    Some(n)
}

/// The segment hash that `leaf` at `index` of a segment of `count` samples of `width` features
/// proves with `siblings` (exactly [`proof_len`] of them, bottom up); `None` when the index is
/// out of range or the sibling count is wrong.
pub fn root_from_proof(
    count: usize,
    width: u32,
    index: usize,
    leaf: Digest,
    siblings: &[Digest],
) -> Option<Digest> {
    if proof_len(count, index)? != siblings.len() {
        return None;
    }
    let (mut i, mut len, mut h) = (index, count, leaf);
    let mut next = siblings.iter();
    while len > 1 {
        if (i ^ 1) < len {
            let s = next.next()?;
            h = if i % 2 == 1 { node(s, &h) } else { node(&h, s) };
        }
        i /= 2;
        len = len.div_ceil(2);
    }
    Some(segment_root(u32::try_from(count).ok()?, width, &h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: usize) -> (Vec<f32>, Vec<u32>, SegmentTree) {
        let x: Vec<f32> = (0..n * 3).map(|v| v as f32 * 0.5).collect();
        let y: Vec<u32> = (0..n as u32).map(|v| v % 4).collect();
        let t = SegmentTree::new(&x, &y, 3);
        (x, y, t)
    }

    #[test]
    fn every_leaf_proves_the_root_and_nothing_else_does() {
        for n in [1usize, 2, 3, 5, 8, 13, 100] {
            let (x, y, t) = tree(n);
            assert_eq!(t.len(), n);
            for i in 0..n {
                let p = t.proof(i).unwrap();
                assert_eq!(Some(p.len()), proof_len(n, i));
                assert!(p.len() <= (n as f64).log2().ceil() as usize, "n {n} i {i}");
                let leaf = sample_leaf(i as u32, &x[i * 3..i * 3 + 3], y[i]);
                assert_eq!(root_from_proof(n, 3, i, leaf, &p), Some(t.root()), "n {n} i {i}");
                // Another label, another index, a changed sibling or a short proof: no.
                let other = sample_leaf(i as u32, &x[i * 3..i * 3 + 3], y[i] + 1);
                assert_ne!(root_from_proof(n, 3, i, other, &p), Some(t.root()));
                if n > 1 {
                    let j = (i + 1) % n;
                    assert_ne!(
                        root_from_proof(n, 3, j, leaf, &t.proof(j).unwrap()),
                        Some(t.root())
                    );
                    let mut bad = p.clone();
                    bad[0].0[0] ^= 1;
                    assert_ne!(root_from_proof(n, 3, i, leaf, &bad), Some(t.root()));
                    assert_eq!(root_from_proof(n, 3, i, leaf, &p[1..]), None);
                }
            }
            assert_eq!(t.proof(n), None);
            assert_eq!(proof_len(n, n), None);
        }
    }

    #[test]
    fn the_root_fixes_the_sample_count_and_width() {
        let (_, _, five) = tree(5);
        let (x, y, _) = tree(6);
        assert_ne!(SegmentTree::new(&x[..15], &y[..5], 3).root(), tree(6).2.root());
        assert_eq!(SegmentTree::new(&x[..15], &y[..5], 3).root(), five.root());
        // The same values read as 5 samples of width 3 or 3 of width 5.
        assert_ne!(SegmentTree::new(&x[..15], &y[..3], 5).root(), five.root());
        assert!(SegmentTree::new(&[], &[], 3).is_empty());
    }
}
