//! Hashing helpers: seeded draws from ids, and a streaming hasher with a
//! fixed algorithm. A leaf: it imports nothing of the crate.

/// Mixes two words into one well-distributed word (SplitMix64's finaliser).
/// Used to derive per-agent seeds and draws from `(seed, id)` pairs.
#[inline]
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in `[0, 1)` from a hashed word.
#[inline]
pub fn unit_f64(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A streaming 64-bit hasher with a fixed, documented algorithm (stable across
/// Rust versions and platforms, unlike `std`'s `DefaultHasher`).
#[derive(Clone, Debug)]
pub struct DigestHasher(u64);

impl Default for DigestHasher {
    fn default() -> Self {
        Self(0x636f_6e74_696e_7575) // "continuu"
    }
}

impl DigestHasher {
    /// Feeds one word.
    #[inline]
    pub fn word(&mut self, w: u64) -> &mut Self {
        self.0 = mix(self.0, w);
        self
    }

    /// Feeds a float by its exact bits.
    #[inline]
    pub fn f32(&mut self, x: f32) -> &mut Self {
        self.word(u64::from(x.to_bits()))
    }

    /// Feeds bytes, with their length (so that `"ab", "c"` and `"a", "bc"`
    /// differ).
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.word(bytes.len() as u64);
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
        self
    }

    /// The digest so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}
