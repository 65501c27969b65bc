//! Portable tile kernel: `f32::mul_add` (hardware FMA where the target has it, the exact
//! software `fmaf` elsewhere). Same tiles and order as the SIMD kernels, so the same bits.

use super::gemm::{Tile, MR, NR};

/// [`super::gemm::TileFn`] for any CPU.
///
/// # Safety
/// As for [`super::gemm::TileFn`].
pub(super) unsafe fn tile(rows: usize, t: &Tile) {
    debug_assert!((1..=MR).contains(&rows) && (1..=NR).contains(&t.nv));
    // SAFETY: forwarded from the caller.
    unsafe {
        match rows {
            6 => tile_rows::<6>(t),
            5 => tile_rows::<5>(t),
            4 => tile_rows::<4>(t),
            3 => tile_rows::<3>(t),
            2 => tile_rows::<2>(t),
            _ => tile_rows::<1>(t),
        }
    }
}

unsafe fn tile_rows<const R: usize>(t: &Tile) {
    let nv = t.nv;
    let mut acc = [[0.0f32; NR]; R];
    // SAFETY (whole body): the addresses are those described on `Tile`, valid by the caller's
    // contract; only lanes `< nv` are read from or written to `out`.
    unsafe {
        if t.accumulate {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (l, x) in acc[..nv].iter_mut().enumerate() {
                    *x = *t.out.add(r * t.o_s + l * t.o_v);
                }
            }
        }
        for q in 0..t.k {
            let v = std::slice::from_raw_parts(t.v.add(q * NR), nv);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = *t.s.add(r * t.s_rs + q * t.s_ps);
                for (acc, &y) in acc[..nv].iter_mut().zip(v) {
                    *acc = x.mul_add(y, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (l, &x) in acc[..nv].iter().enumerate() {
                *t.out.add(r * t.o_s + l * t.o_v) = x;
            }
        }
    }
}
