//! Content hashing for deduplication.
//!
//! # Collision assumption
//!
//! Deduplication treats two pages with the same 128-bit [`ContentHash`] as
//! identical, without comparing bytes. That is sound only while collisions
//! are negligible:
//!
//! - [`HashAlgo::Xxh3_128`] is fast and non-cryptographic. Against
//!   *accidental* collisions it behaves like a random 128-bit function: by the
//!   birthday bound, the probability of any collision among `n` distinct
//!   pages is about `n² / 2^129`, i.e. about 2^-65 for 2^32 pages (16 TiB of
//!   distinct memory). It is **not** adversary-resistant: a guest that can
//!   choose page contents can construct collisions, and with them make
//!   another VM's page resolve to its content if both share a dedup domain.
//! - [`HashAlgo::Blake3`] (BLAKE3 truncated to 128 bits) keeps the same
//!   accidental bound and resists constructed collisions up to the 2^64
//!   birthday work of a 128-bit output. Use it when a dedup domain spans
//!   parties that may attack each other; it costs more CPU per page.

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Which function computes a page's [`ContentHash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlgo {
    /// XXH3, 128-bit variant: fast, non-cryptographic.
    #[default]
    Xxh3_128,
    /// BLAKE3, first 128 bits of the 256-bit digest: cryptographic.
    Blake3,
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgo::Xxh3_128 => "xxh3-128",
            HashAlgo::Blake3 => "blake3-128",
        })
    }
}

/// A 128-bit digest of a page's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub u128);

impl ContentHash {
    /// Size of a hash on the wire.
    pub const WIRE_BYTES: usize = 16;

    /// Little-endian bytes, as written on the wire.
    pub fn to_le_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// Reads the little-endian wire form.
    pub fn from_le_bytes(bytes: [u8; 16]) -> ContentHash {
        ContentHash(u128::from_le_bytes(bytes))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Hashes `bytes` (normally one page) with `algo`.
pub fn hash_page(algo: HashAlgo, bytes: &[u8]) -> ContentHash {
    match algo {
        HashAlgo::Xxh3_128 => ContentHash(xxhash_rust::xxh3::xxh3_128(bytes)),
        HashAlgo::Blake3 => {
            let digest = blake3::hash(bytes);
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest.as_bytes()[..16]);
            ContentHash(u128::from_le_bytes(first))
        }
    }
}

/// A `Hasher` for hash tables keyed by [`ContentHash`]: the key is already a
/// uniform digest, so folding its two halves is enough (SipHash would hash it
/// a second time). Other keys go through a multiplicative mix.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ContentHasher(u64);

/// Multiplier of the fallback mix (a 64-bit odd constant with good avalanche).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for ContentHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(MIX);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }
}

/// Builds [`ContentHasher`]s.
pub(crate) type ContentHashBuild = BuildHasherDefault<ContentHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_is_the_truncated_digest() {
        let page = [7u8; 4096];
        let full = blake3::hash(&page);
        let h = hash_page(HashAlgo::Blake3, &page);
        assert_eq!(&h.to_le_bytes()[..], &full.as_bytes()[..16]);
    }

    #[test]
    fn one_bit_changes_the_hash_and_algos_differ() {
        let a = [0u8; 4096];
        let mut b = a;
        b[4095] ^= 1;
        for algo in [HashAlgo::Xxh3_128, HashAlgo::Blake3] {
            assert_ne!(hash_page(algo, &a), hash_page(algo, &b), "{algo}");
            assert_eq!(hash_page(algo, &a), hash_page(algo, &a.clone()), "{algo}");
        }
        assert_ne!(hash_page(HashAlgo::Xxh3_128, &a), hash_page(HashAlgo::Blake3, &a));
    }

    #[test]
    fn wire_bytes_round_trip() {
        let h = ContentHash(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(ContentHash::from_le_bytes(h.to_le_bytes()), h);
        assert_eq!(h.to_string(), "0123456789abcdeffedcba9876543210");
    }
}
