//! The blocked driver shared by every instruction set.
//!
//! A product is seen as two operands that both run along `p`: the *broadcast* operand `S`
//! (its index picks a row of the register tile) and the *vector* operand `V` (its index picks a
//! SIMD lane). Normally `S = A` and `V = B`; for shapes where that wastes lanes or needs a large
//! transposing pack, the roles swap and the tile is stored transposed. Multiplication commutes
//! exactly, so both orientations give the reference bits.
//!
//! Loops, outermost first: `k` in blocks of [`KC`] (partial sums go through `C`, exactly), pack
//! every `V` panel of the block (`NR` lanes per `p`, zero-padded), `S` in blocks of [`MC`]
//! rows (kept in L2, packed as runs of `MR` rows when enough panels reuse them), `V` panels,
//! `S` tiles of [`MR`] rows, then the tile kernel.

use std::cell::RefCell;

use super::{Isa, Op};

/// Rows of a register tile (broadcast operand).
pub(super) const MR: usize = 6;
/// Lanes of a register tile (vector operand): two 8-lane vectors.
pub(super) const NR: usize = 16;
/// Block of `p` per pass over the outputs: a packed panel is `KC × NR × 4` bytes = 16 KiB (L1).
const KC: usize = 256;
/// Rows of `S` per block: `MC × KC × 4` bytes = 144 KiB (L2).
const MC: usize = 144;

/// One register tile's job, shared by the tile kernels.
///
/// Reads `S(r, q) = s[r·s_rs + q·s_ps]` for `r < rows`, `q < k`, and `V(q, l) = v[q·NR + l]`;
/// writes (and, if `accumulate`, first reads) `out[r·o_s + l·o_v]` for `r < rows`, `l < nv`.
#[derive(Debug)]
pub(super) struct Tile {
    pub(super) k: usize,
    pub(super) s: *const f32,
    pub(super) s_rs: usize,
    pub(super) s_ps: usize,
    pub(super) v: *const f32,
    pub(super) out: *mut f32,
    pub(super) o_s: usize,
    pub(super) o_v: usize,
    /// Valid lanes, `1..=NR`; the padding lanes are computed or not, never stored.
    pub(super) nv: usize,
    /// Continue the chains from the values in `out` (a later block of `p`) instead of `+0.0`.
    pub(super) accumulate: bool,
}

/// A tile kernel: computes `rows` (`1..=MR`) rows of a [`Tile`].
///
/// # Safety
/// Every address described on [`Tile`] is valid, `out` is written by no one else meanwhile,
/// and the CPU supports the kernel's instruction set.
pub(super) type TileFn = unsafe fn(rows: usize, t: &Tile);

/// Element `(r, p)` of an operand is at `r·rs + p·ps`.
#[derive(Debug, Clone, Copy)]
struct Strides {
    rs: usize,
    ps: usize,
}

/// One product, oriented.
struct Problem<'a> {
    s: &'a [f32],
    s_st: Strides,
    v: &'a [f32],
    v_st: Strides,
    ns: usize,
    nv: usize,
    k: usize,
    out: *mut f32,
    o_s: usize,
    o_v: usize,
    tile: TileFn,
    isa: Isa,
}

// SAFETY: `out` is only written through disjoint output blocks, one per thread (see `run`), and
// the borrow of `C` it came from outlives the scope that uses it; the rest is shared read-only.
unsafe impl Sync for Problem<'_> {}

thread_local! {
    /// Packed `V` panels and `S` micro-panels, reused across calls on this thread.
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Rough cycle count of one orientation: multiply-adds (padding lanes included), packing `V`
/// (a gather when lanes are not contiguous) and scattering a transposed tile per block of `p`.
fn cost(ns: usize, nv: usize, k: usize, v_st: Strides, transposed: bool) -> usize {
    let compute = ns.div_ceil(MR) * MR * nv.div_ceil(NR) * NR * k / 16;
    let pack = if v_st.rs == 1 { nv * k / 4 } else { nv * k };
    let scatter = if transposed { ns * nv * 4 * k.div_ceil(KC) } else { 0 };
    compute + pack + scatter
}

/// The (row of C, p) strides of A and the (column of C, p) strides of B.
fn strides(op: Op, m: usize, k: usize, n: usize) -> (Strides, Strides) {
    match op {
        Op::AB => (Strides { rs: k, ps: 1 }, Strides { rs: 1, ps: n }),
        Op::AtB => (Strides { rs: 1, ps: m }, Strides { rs: 1, ps: n }),
        Op::ABt => (Strides { rs: k, ps: 1 }, Strides { rs: k, ps: 1 }),
    }
}

/// `C = op(A, B)` with `threads` disjoint output blocks; lengths are checked by the caller.
#[allow(clippy::too_many_arguments)] // the public product's arguments plus the two choices
pub(super) fn run(
    op: Op,
    isa: Isa,
    threads: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let (a_st, b_st) = strides(op, m, k, n);
    let transposed = cost(n, m, k, a_st, true) < cost(m, n, k, b_st, false);
    run_oriented(transposed, isa, threads, (a, a_st), (b, b_st), c, m, k, n);
}

/// [`run`] with the orientation chosen: `transposed` vectorizes over rows of C (`V = A`).
#[allow(clippy::too_many_arguments)] // as `run`
fn run_oriented(
    transposed: bool,
    isa: Isa,
    threads: usize,
    (a, a_st): (&[f32], Strides),
    (b, b_st): (&[f32], Strides),
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    let tile: TileFn = match isa {
        Isa::Portable => super::portable::tile,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => super::x86::tile_avx2_fma,
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2Fma => unreachable!("checked by Isa::is_available"),
    };
    let out = c.as_mut_ptr();
    let p = if transposed {
        Problem {
            s: b,
            s_st: b_st,
            v: a,
            v_st: a_st,
            ns: n,
            nv: m,
            k,
            out,
            o_s: 1,
            o_v: n,
            tile,
            isa,
        }
    } else {
        Problem {
            s: a,
            s_st: a_st,
            v: b,
            v_st: b_st,
            ns: m,
            nv: n,
            k,
            out,
            o_s: n,
            o_v: 1,
            tile,
            isa,
        }
    };

    let panels = p.nv.div_ceil(NR);
    let tiles = p.ns.div_ceil(MR);
    let split_v = panels >= threads && (panels % threads == 0 || panels >= tiles);
    let units = if split_v { panels } else { tiles };
    let chunks = threads.min(units);
    if chunks <= 1 {
        block(&p, 0, p.ns, 0, p.nv);
        return;
    }
    // Chunk `i` takes units [i·units/chunks, (i+1)·units/chunks): whole tiles or panels, so the
    // output blocks are disjoint.
    let chunk = |i: usize| {
        let (u0, u1) = (i * units / chunks, (i + 1) * units / chunks);
        if split_v {
            block(&p, 0, p.ns, u0 * NR, (u1 * NR).min(p.nv));
        } else {
            block(&p, u0 * MR, (u1 * MR).min(p.ns), 0, p.nv);
        }
    };
    rayon::in_place_scope(|scope| {
        for i in 1..chunks {
            let chunk = &chunk;
            scope.spawn(move |_| chunk(i));
        }
        chunk(0);
    });
}

/// Outputs `[s0, s1) × [v0, v1)` of `p`, on this thread.
fn block(p: &Problem<'_>, s0: usize, s1: usize, v0: usize, v1: usize) {
    PACK.with(|bufs| {
        let (vbuf, sbuf) = &mut *bufs.borrow_mut();
        let npanels = (v1 - v0).div_ceil(NR);
        let pack_s = should_pack_s(p.s_st, npanels);
        // Equal blocks of at most KC: no short last block paying a tile's fixed costs.
        let kc = p.k.div_ceil(p.k.div_ceil(KC));
        let mut pc = 0;
        while pc < p.k {
            let kb = kc.min(p.k - pc);
            let panel_len = kb * NR;
            let vpacked = aligned(vbuf, npanels * panel_len);
            for (jp, dst) in vpacked.chunks_exact_mut(panel_len).enumerate() {
                let lane0 = v0 + jp * NR;
                pack_panel(p.isa, p.v, p.v_st, lane0, NR.min(v1 - lane0), pc, kb, dst);
            }
            let mut ic = s0;
            while ic < s1 {
                let ie = (ic + MC).min(s1);
                let spacked = if pack_s {
                    let sp = aligned(sbuf, tile_rows(ie - ic).count() * MR * kb);
                    pack_rows(p.s, p.s_st, ic, ie, pc, kb, sp);
                    Some(&*sp)
                } else {
                    None
                };
                for (jp, panel) in vpacked.chunks_exact(panel_len).enumerate() {
                    let lane0 = v0 + jp * NR;
                    let mut i = ic;
                    for (t, rows) in tile_rows(ie - ic).enumerate() {
                        let (s, s_rs, s_ps) = match spacked {
                            Some(sp) => (sp[t * kb * MR..].as_ptr(), 1, MR),
                            None => (
                                p.s[i * p.s_st.rs + pc * p.s_st.ps..].as_ptr(),
                                p.s_st.rs,
                                p.s_st.ps,
                            ),
                        };
                        let t = Tile {
                            k: kb,
                            s,
                            s_rs,
                            s_ps,
                            v: panel.as_ptr(),
                            out: p.out.wrapping_add(i * p.o_s + lane0 * p.o_v),
                            o_s: p.o_s,
                            o_v: p.o_v,
                            nv: NR.min(v1 - lane0),
                            accumulate: pc > 0,
                        };
                        // SAFETY: S rows `i..i + rows` and `p` in `pc..pc + kb` lie in `p.s`
                        // (length `ns × k`, checked at the public entry) or in the packed run of
                        // this tile (`kb × MR` values); the panel holds `kb × NR` values;
                        // outputs `(i + r, lane0 + l)` with `l < nv` lie in C (`ns × nv`
                        // elements) and in this thread's block `[s0, s1) × [v0, v1)`, which no
                        // other thread touches; `p.tile` matches an instruction set checked by
                        // `Isa::is_available`.
                        unsafe { (p.tile)(rows, &t) };
                        i += rows;
                    }
                }
                ic = ie;
            }
            pc += kb;
        }
    });
}

/// Whether to pack `S` into tile-ordered runs, which costs about one more pass over `S`. Rows
/// contiguous in `p` (A of `A·B`) are read in place unless their stride is near a multiple of
/// 4 KiB, where the six rows of a tile would share an L1 set; strided `p` (Aᵀ) is packed once a
/// second panel reuses it.
fn should_pack_s(st: Strides, npanels: usize) -> bool {
    if st.ps == 1 {
        let offset = (st.rs * 4) % 4096;
        npanels >= 3 && !(256..=4096 - 256).contains(&offset)
    } else {
        npanels >= 2
    }
}

/// The first `len` values of `buf` from a 64-byte boundary (grown as needed).
fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + NR {
        buf.resize(len + NR, 0.0);
    }
    let off = buf.as_ptr().align_offset(64).min(NR);
    &mut buf[off..off + len]
}

/// Row counts of the tiles that cover `len` rows: sixes, but 7 to 9 last rows go as two tiles
/// of 3 to 5 (a tile of `r` rows runs `2r` chains; eight keep both FMA pipes busy, two do not).
fn tile_rows(len: usize) -> impl Iterator<Item = usize> {
    let mut left = len;
    std::iter::from_fn(move || {
        let rows = match left {
            0 => return None,
            7..=9 => left - left / 2,
            _ => MR.min(left),
        };
        left -= rows;
        Some(rows)
    })
}

/// Packs rows `i0..i1` of `S` for `p` in `pc..pc + kb`, one run of `kb × MR` values per tile of
/// [`tile_rows`]: row `r` of tile `t` at `dst[t · kb · MR + q · MR + r]`. Rows past a short
/// tile's count are left as they are (never read).
fn pack_rows(s: &[f32], st: Strides, i0: usize, i1: usize, pc: usize, kb: usize, dst: &mut [f32]) {
    let mut r0 = i0;
    for (run, rows) in dst.chunks_exact_mut(kb * MR).zip(tile_rows(i1 - i0)) {
        if st.rs == 1 && rows == MR {
            // MR rows contiguous for each p (Aᵀ stored [k×m]): a copy per p.
            for (q, dst) in run.chunks_exact_mut(MR).enumerate() {
                dst.copy_from_slice(&s[(pc + q) * st.ps + r0..][..MR]);
            }
        } else {
            if st.ps == 1 && rows == MR {
                // Rows contiguous in p (A stored [m×k]): six streams in, one out.
                let src: [&[f32]; MR] = std::array::from_fn(|r| &s[(r0 + r) * st.rs + pc..][..kb]);
                for (q, dst) in run.chunks_exact_mut(MR).enumerate() {
                    for (d, src) in dst.iter_mut().zip(&src) {
                        *d = src[q];
                    }
                }
            } else {
                for r in 0..rows {
                    for q in 0..kb {
                        run[q * MR + r] = s[(r0 + r) * st.rs + (pc + q) * st.ps];
                    }
                }
            }
        }
        r0 += rows;
    }
}

/// Packs lanes `lane0..lane0 + nvalid` of `V` for `p` in `pc..pc + kb` as `dst[q·NR + l]`,
/// zero in the padding lanes.
#[allow(clippy::too_many_arguments)] // the panel's coordinates
fn pack_panel(
    isa: Isa,
    v: &[f32],
    st: Strides,
    lane0: usize,
    nvalid: usize,
    pc: usize,
    kb: usize,
    dst: &mut [f32],
) {
    if st.rs == 1 {
        // Lanes contiguous (rows of a row-major B): a copy per p.
        for (q, row) in dst.chunks_exact_mut(NR).enumerate() {
            let src = &v[(pc + q) * st.ps + lane0..];
            if nvalid == NR {
                // Fixed length: a few vector moves, not a call to memcpy.
                row.copy_from_slice(&src[..NR]);
            } else {
                row[..nvalid].copy_from_slice(&src[..nvalid]);
                row[nvalid..].fill(0.0);
            }
        }
    } else {
        // Lanes strided (a transpose): walk each lane's run of p.
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx2Fma && st.ps == 1 && nvalid == NR {
            let src = &v[lane0 * st.rs + pc..][..(NR - 1) * st.rs + kb];
            let dst = &mut dst[..kb * NR];
            // SAFETY: AVX is part of the checked instruction set; lane `l < NR` reads
            // `src[l·rs + q]`, `q < kb`, inside `src`'s length, and writes `dst[..kb·NR]`.
            unsafe { super::x86::pack_transposed_panel(src.as_ptr(), st.rs, kb, dst.as_mut_ptr()) };
            return;
        }
        if st.ps == 1 && nvalid == NR {
            // Rows of Bᵀ contiguous in p: sixteen streams in, one out.
            let src: [&[f32]; NR] = std::array::from_fn(|l| &v[(lane0 + l) * st.rs + pc..][..kb]);
            for (q, row) in dst.chunks_exact_mut(NR).enumerate() {
                for (d, src) in row.iter_mut().zip(&src) {
                    *d = src[q];
                }
            }
        } else {
            for (l, lane) in (lane0..lane0 + nvalid).enumerate() {
                for q in 0..kb {
                    dst[q * NR + l] = v[lane * st.rs + (pc + q) * st.ps];
                }
            }
        }
        if nvalid < NR {
            for row in dst.chunks_exact_mut(NR) {
                row[nvalid..].fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference;

    /// Both orientations, both ways of splitting, every instruction set: the reference bits.
    #[test]
    fn every_orientation_and_split_matches_reference() {
        let mut seed = 0x1234_5678u32;
        let mut value = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mag = 2f32.powi((seed % 29) as i32 - 14);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * mag - mag / 2.0
        };
        let shapes = [(1, 1, 1), (7, 13, 5), (6, 600, 16), (40, 300, 9), (9, 520, 70), (70, 3, 40)];
        for (m, k, n) in shapes {
            for op in [Op::AB, Op::AtB, Op::ABt] {
                let a: Vec<f32> = (0..m * k).map(|_| value()).collect();
                let b: Vec<f32> = (0..k * n).map(|_| value()).collect();
                let mut want = vec![0.0; m * n];
                match op {
                    Op::AB => reference::matmul(&a, &b, &mut want, m, k, n),
                    Op::AtB => reference::matmul_at_b(&a, &b, &mut want, m, k, n),
                    Op::ABt => reference::matmul_a_bt(&a, &b, &mut want, m, k, n),
                }
                let want: Vec<u32> = want.iter().map(|x| x.to_bits()).collect();
                let (a_st, b_st) = strides(op, m, k, n);
                for isa in [Isa::Portable, Isa::Avx2Fma].into_iter().filter(|i| i.is_available()) {
                    for transposed in [false, true] {
                        for threads in [1, 2, 3, 5] {
                            let mut c = vec![f32::NAN; m * n];
                            run_oriented(
                                transposed,
                                isa,
                                threads,
                                (&a, a_st),
                                (&b, b_st),
                                &mut c,
                                m,
                                k,
                                n,
                            );
                            let got: Vec<u32> = c.iter().map(|x| x.to_bits()).collect();
                            assert!(
                                got == want,
                                "{op:?} {isa:?} transposed={transposed} threads={threads} \
                                 {m}x{k}x{n}"
                            );
                        }
                    }
                }
            }
        }
    }
}
