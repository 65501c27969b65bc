//! x86-64 tile kernel: AVX2 + FMA, 6 × 16 outputs in 12 `ymm` accumulators.
//!
//! Per `p`: two aligned loads of the packed `V` row, six broadcasts of `S`, twelve
//! `vfmadd231ps` (`acc = s · v + acc`, one rounding), the same operation as `f32::mul_add`.

use std::arch::x86_64::{
    __m256i, _mm256_cmpgt_epi32, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_maskload_ps,
    _mm256_maskstore_ps, _mm256_permute2f128_ps, _mm256_set1_epi32, _mm256_set1_ps,
    _mm256_setr_epi32, _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps,
    _mm256_unpacklo_ps,
};

use super::gemm::{Tile, MR, NR};

/// [`super::gemm::TileFn`] for AVX2 + FMA.
///
/// # Safety
/// As for [`super::gemm::TileFn`]; the CPU supports AVX2 and FMA.
pub(super) unsafe fn tile_avx2_fma(rows: usize, t: &Tile) {
    debug_assert!((1..=MR).contains(&rows) && (1..=NR).contains(&t.nv));
    // SAFETY: forwarded from the caller.
    unsafe {
        match rows {
            6 => tile::<6>(t),
            5 => tile::<5>(t),
            4 => tile::<4>(t),
            3 => tile::<3>(t),
            2 => tile::<2>(t),
            _ => tile::<1>(t),
        }
    }
}

/// Packs a full panel of 16 lanes whose values run contiguously in `p` (rows of Bᵀ stored
/// `[n×k]`): `dst[q·NR + l] = src[l·rs + q]` for `q < kb`, `l < 16`, by 8 × 8 transposes.
/// Pure data movement: no arithmetic, so no effect on the bits.
///
/// # Safety
/// The CPU supports AVX; `src[l·rs + q]` is readable and `dst[..kb·NR]` writable for those `q`, `l`.
#[target_feature(enable = "avx")]
pub(super) unsafe fn pack_transposed_panel(src: *const f32, rs: usize, kb: usize, dst: *mut f32) {
    // SAFETY (whole body): every address is one of those in the contract above.
    unsafe {
        let mut q = 0;
        while q + 8 <= kb {
            for half in 0..2 {
                let row = |r: usize| _mm256_loadu_ps(src.add((half * 8 + r) * rs + q));
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                // Column j of the 8 × 8 block: p = q + j, lanes half·8 .. half·8 + 8.
                let cols = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (j, col) in cols.into_iter().enumerate() {
                    _mm256_storeu_ps(dst.add((q + j) * NR + half * 8), col);
                }
            }
            q += 8;
        }
        for q in q..kb {
            for l in 0..NR {
                *dst.add(q * NR + l) = *src.add(l * rs + q);
            }
        }
    }
}

/// Lane masks for the first `nv` of 16 lanes (all ones = lane on).
#[target_feature(enable = "avx2")]
fn masks(nv: usize) -> (__m256i, __m256i) {
    let n = _mm256_set1_epi32(nv as i32);
    let lo = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let hi = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
    (lo, hi)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(t: &Tile) {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let full = t.nv == NR;
    let (m0, m1) = masks(t.nv);
    // SAFETY (whole body): the addresses are those described on `Tile`, valid by the caller's
    // contract; masked loads and stores touch only lanes `< nv` (the address of a fully masked
    // half may lie past C: it is formed with `wrapping_add` and never accessed).
    unsafe {
        if t.accumulate {
            if t.o_v == 1 {
                for (r, acc) in acc.iter_mut().enumerate() {
                    let row = t.out.add(r * t.o_s);
                    if full {
                        *acc = [_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))];
                    } else {
                        *acc = [
                            _mm256_maskload_ps(row, m0),
                            _mm256_maskload_ps(row.wrapping_add(8), m1),
                        ];
                    }
                }
            } else {
                let mut tmp = [[0.0f32; NR]; R];
                for (r, tmp) in tmp.iter_mut().enumerate() {
                    for (l, x) in tmp[..t.nv].iter_mut().enumerate() {
                        *x = *t.out.add(r * t.o_s + l * t.o_v);
                    }
                }
                for (acc, tmp) in acc.iter_mut().zip(&tmp) {
                    *acc = [_mm256_loadu_ps(tmp.as_ptr()), _mm256_loadu_ps(tmp.as_ptr().add(8))];
                }
            }
        }

        let mut s = t.s;
        let mut v = t.v;
        for _ in 0..t.k {
            let v0 = _mm256_loadu_ps(v);
            let v1 = _mm256_loadu_ps(v.add(8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_ps(*s.add(r * t.s_rs));
                acc[0] = _mm256_fmadd_ps(x, v0, acc[0]);
                acc[1] = _mm256_fmadd_ps(x, v1, acc[1]);
            }
            // Wrapping: after the last `p` these point past the operands, and are never read.
            s = s.wrapping_add(t.s_ps);
            v = v.wrapping_add(NR);
        }

        if t.o_v == 1 {
            for (r, acc) in acc.iter().enumerate() {
                let row = t.out.add(r * t.o_s);
                if full {
                    _mm256_storeu_ps(row, acc[0]);
                    _mm256_storeu_ps(row.add(8), acc[1]);
                } else {
                    _mm256_maskstore_ps(row, m0, acc[0]);
                    _mm256_maskstore_ps(row.wrapping_add(8), m1, acc[1]);
                }
            }
        } else {
            let mut tmp = [[0.0f32; NR]; R];
            for (acc, tmp) in acc.iter().zip(tmp.iter_mut()) {
                _mm256_storeu_ps(tmp.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), acc[1]);
            }
            for (r, tmp) in tmp.iter().enumerate() {
                for (l, &x) in tmp[..t.nv].iter().enumerate() {
                    *t.out.add(r * t.o_s + l * t.o_v) = x;
                }
            }
        }
    }
}
