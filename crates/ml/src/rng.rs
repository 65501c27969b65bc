//! A small portable PRNG: xoshiro256** seeded through SplitMix64 or a BLAKE3-derived key.
//!
//! Everything here is integer arithmetic plus exactly specified integer → float conversions, so
//! every machine draws the same numbers. Exact definitions:
//! - [`SplitMix64`]: `s += 0x9E3779B97F4A7C15; z = s; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
//!   z = (z ^ z>>27) * 0x94D049BB133111EB; z ^ z>>31` (wrapping arithmetic).
//! - [`Rng`] (xoshiro256**): `result = rotl(s1 * 5, 7) * 9`, then the reference state update.
//!   [`Rng::from_u64`] fills the four state words with four SplitMix64 outputs;
//!   [`Rng::from_key`] takes them from a 32-byte key as four little-endian `u64`.
//! - [`Rng::next_f32`] = `(next_u64() >> 40) as f32 * 2^-24`: exact, uniform on the 2^24 values
//!   `k / 2^24` in `[0, 1)`.
//! - [`Rng::below`]`(n)`: Lemire's multiply-shift with rejection: draw `x`, `m = x as u128 * n`;
//!   if `(m as u64) < (2^64 - n) % n` draw again; return `m >> 64`. Unbiased.
//! - [`Rng::shuffle`]: Fisher–Yates from the end: for `i` in `(1..len).rev()`, swap `i` with
//!   `below(i + 1)`.

/// SplitMix64, used to expand a `u64` seed into a xoshiro256** state.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// xoshiro256**: the engine's only random source.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds from a `u64` through four SplitMix64 outputs (the reference seeding).
    pub fn from_u64(seed: u64) -> Self {
        let mut sm = SplitMix64(seed);
        Self { s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()] }
    }

    /// Seeds from a 32-byte key (four little-endian `u64`). An all-zero key, the one state
    /// xoshiro cannot leave, is replaced by [`Rng::from_u64`]`(0)`.
    pub fn from_key(key: [u8; 32]) -> Self {
        let mut s = [0u64; 4];
        for (word, chunk) in s.iter_mut().zip(key.chunks_exact(8)) {
            *word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact(8)"));
        }
        if s == [0; 4] {
            return Self::from_u64(0);
        }
        Self { s }
    }

    /// Seeds from a key derived with BLAKE3 `derive_key(context, seed || stream as u64 LE)`, so
    /// that independent uses of one on-chain seed (segment shuffle, batch order of epoch e, …)
    /// get independent streams.
    pub fn derived(context: &str, seed: &[u8; 32], stream: u64) -> Self {
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(seed);
        h.update(&stream.to_le_bytes());
        Self::from_key(*h.finalize().as_bytes())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform on `{k / 2^24 : 0 <= k < 2^24}`; every step is exact.
    pub fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) * (1.0 / 16_777_216.0)
    }

    /// Uniform on `[-a, a)`: `(2 * next_f32() - 1) * a`; only the final product rounds.
    pub fn uniform_sym(&mut self, a: f32) -> f32 {
        (2.0 * self.next_f32() - 1.0) * a
    }

    /// Uniform integer in `0..n` (unbiased). `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fisher–Yates shuffle in place (see the module docs for the exact order).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // Reference outputs of SplitMix64 from seed 0 (Vigna's splitmix64.c).
        let mut sm = SplitMix64(0);
        assert_eq!(sm.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(sm.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn xoshiro_reference_values() {
        // xoshiro256** from state [1, 2, 3, 4] (reference implementation).
        let mut r = Rng { s: [1, 2, 3, 4] };
        assert_eq!(r.next_u64(), 11520);
        assert_eq!(r.next_u64(), 0);
        assert_eq!(r.next_u64(), 1509978240);
        assert_eq!(r.next_u64(), 1215971899390074240);
    }

    #[test]
    fn f32_in_unit_interval_and_below_in_range() {
        let mut r = Rng::from_u64(7);
        for _ in 0..10_000 {
            let x = r.next_f32();
            assert!((0.0..1.0).contains(&x));
            assert!(r.below(10) < 10);
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..100).collect();
        Rng::from_u64(1).shuffle(&mut v);
        let mut s = v.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }
}
