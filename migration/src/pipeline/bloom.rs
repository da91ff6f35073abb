//! A Bloom filter over content hashes: the compact summary of a site's
//! resident pages that a source can hold instead of the exact set.
//!
//! # False-positive rate
//!
//! With `m` bits, `k` hash functions and `n` items inserted, a query for an
//! absent item answers "present" with probability about
//! `p = (1 − e^(−k·n/m))^k`. Per item that is `b = m/n` bits, and the best
//! `k` is `b·ln 2`. Some values:
//!
//! | bits per item `b` | hashes `k` | false-positive rate |
//! |---|---|---|
//! | 4 | 3 | 14.7 % |
//! | 8 | 6 | 2.2 % |
//! | 10 | 7 | 0.82 % (the default) |
//! | 16 | 11 | 0.046 % |
//!
//! A false positive makes the source send a `Ref` the destination cannot
//! resolve; the pipeline then falls back to sending the page (see the
//! [module docs](super)), so `p` is a cost (one extra round trip and page per
//! false positive), never a correctness risk.
//!
//! # Hashing
//!
//! The `k` bit positions come from the 128-bit content hash by double
//! hashing (Kirsch–Mitzenmacher): `g_i = h1 + i·h2` with `h1`, `h2` the low and
//! high 64 bits (`h2` forced odd), each mapped to `0..m` by a multiply-shift.
//! The content hash is already uniform, so no page is hashed again; the
//! summary must therefore be built with the same [`HashAlgo`](super::HashAlgo)
//! as the encoder that queries it.

use super::hash::ContentHash;

/// Default bits per item of a site summary (0.82 % false positives with
/// [`DEFAULT_BLOOM_HASH_COUNT`]).
pub const DEFAULT_BLOOM_BITS_PER_ITEM: u32 = 10;

/// Default number of hash functions: `round(10 · ln 2)`.
pub const DEFAULT_BLOOM_HASH_COUNT: u32 = 7;

/// A Bloom filter could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BloomError {
    /// Zero bits.
    #[error("a Bloom filter needs at least one bit")]
    NoBits,
    /// Zero hash functions.
    #[error("a Bloom filter needs at least one hash function")]
    NoHashes,
    /// The words given cannot hold the declared number of bits.
    #[error("{words} words of 64 bits cannot hold {num_bits} bits")]
    WrongWordCount {
        /// Words given.
        words: usize,
        /// Bits declared.
        num_bits: u64,
    },
}

/// A Bloom filter over [`ContentHash`]es.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BloomFilter {
    words: Vec<u64>,
    num_bits: u64,
    hash_count: u32,
    items_inserted: u64,
}

impl BloomFilter {
    /// An empty filter sized for `expected_items` at `bits_per_item` bits
    /// each (at least 64 bits in all), probing `hash_count` bits per item.
    pub fn new(expected_items: u64, bits_per_item: u32, hash_count: u32) -> Result<BloomFilter, BloomError> {
        if bits_per_item == 0 {
            return Err(BloomError::NoBits);
        }
        let num_bits = expected_items.saturating_mul(u64::from(bits_per_item)).max(64);
        let words = vec![0u64; word_count(num_bits)];
        BloomFilter::from_words(words, num_bits, hash_count)
    }

    /// A filter from its parts, as sent over the network: `words` holds the
    /// bit array (bit `i` is bit `i % 64` of word `i / 64`).
    pub fn from_words(mut words: Vec<u64>, num_bits: u64, hash_count: u32) -> Result<BloomFilter, BloomError> {
        if num_bits == 0 {
            return Err(BloomError::NoBits);
        }
        if hash_count == 0 {
            return Err(BloomError::NoHashes);
        }
        if words.len() != word_count(num_bits) {
            return Err(BloomError::WrongWordCount { words: words.len(), num_bits });
        }
        // Bits past `num_bits` are never probed; keep them clear so that
        // `fill_ratio` counts only real bits.
        let tail = num_bits % 64;
        if let (Some(last), true) = (words.last_mut(), tail != 0) {
            *last &= (1u64 << tail) - 1;
        }
        Ok(BloomFilter { words, num_bits, hash_count, items_inserted: 0 })
    }

    /// The best number of hash functions for `bits_per_item`: `round(b·ln 2)`,
    /// at least 1.
    pub fn optimal_hash_count(bits_per_item: f64) -> u32 {
        ((bits_per_item * std::f64::consts::LN_2).round() as u32).max(1)
    }

    /// The false-positive rate expected at `bits_per_item` and `hash_count`:
    /// `(1 − e^(−k/b))^k`.
    pub fn expected_false_positive_rate(bits_per_item: f64, hash_count: u32) -> f64 {
        let k = f64::from(hash_count);
        (1.0 - (-k / bits_per_item).exp()).powf(k)
    }

    /// The false-positive rate of this filter once it holds `items` items.
    pub fn false_positive_rate(&self, items: u64) -> f64 {
        if items == 0 {
            return 0.0;
        }
        BloomFilter::expected_false_positive_rate(self.num_bits as f64 / items as f64, self.hash_count)
    }

    /// Adds `hash`.
    pub fn insert(&mut self, hash: ContentHash) {
        for bit in self.bits(hash) {
            // `bit < num_bits <= 64 * words.len()`, so the index is in range.
            if let Some(word) = self.words.get_mut((bit / 64) as usize) {
                *word |= 1 << (bit % 64);
            }
        }
        self.items_inserted += 1;
    }

    /// Whether `hash` may have been inserted (false: certainly not).
    pub fn contains(&self, hash: ContentHash) -> bool {
        self.bits(hash).all(|bit| self.words.get((bit / 64) as usize).is_some_and(|w| w & (1 << (bit % 64)) != 0))
    }

    /// The bit array.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Number of bits `m`.
    pub fn num_bits(&self) -> u64 {
        self.num_bits
    }

    /// Number of hash functions `k`.
    pub fn hash_count(&self) -> u32 {
        self.hash_count
    }

    /// How many times [`insert`](Self::insert) was called on this value
    /// (not carried by [`from_words`](Self::from_words)).
    pub fn items_inserted(&self) -> u64 {
        self.items_inserted
    }

    /// Fraction of bits set.
    pub fn fill_ratio(&self) -> f64 {
        let ones: u64 = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
        ones as f64 / self.num_bits as f64
    }

    fn bits(&self, hash: ContentHash) -> impl Iterator<Item = u64> {
        let h1 = hash.0 as u64;
        let h2 = ((hash.0 >> 64) as u64) | 1;
        let m = self.num_bits;
        (0..u64::from(self.hash_count)).map(move |i| {
            let g = h1.wrapping_add(i.wrapping_mul(h2));
            ((u128::from(g) * u128::from(m)) >> 64) as u64
        })
    }
}

fn word_count(num_bits: u64) -> usize {
    num_bits.div_ceil(64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests::gen::SplitMix;

    #[test]
    fn no_false_negatives_and_the_documented_rate() {
        let mut rng = SplitMix(42);
        let n = 20_000u64;
        let mut f = BloomFilter::new(n, DEFAULT_BLOOM_BITS_PER_ITEM, DEFAULT_BLOOM_HASH_COUNT).unwrap();
        let inserted: Vec<ContentHash> = (0..n).map(|_| ContentHash(rng.next_u128())).collect();
        for &h in &inserted {
            f.insert(h);
        }
        assert!(inserted.iter().all(|&h| f.contains(h)));
        let queries = 200_000;
        let fp = (0..queries).filter(|_| f.contains(ContentHash(rng.next_u128()))).count();
        let measured = fp as f64 / queries as f64;
        let expected = f.false_positive_rate(n);
        assert!((expected - 0.0082).abs() < 0.0005, "formula gives {expected}");
        assert!(measured > expected * 0.7 && measured < expected * 1.3, "measured {measured}, expected {expected}");
    }

    #[test]
    fn documented_table_values() {
        for (b, k, p) in [(4.0, 3, 0.147), (8.0, 6, 0.022), (10.0, 7, 0.0082), (16.0, 11, 0.00046)] {
            let got = BloomFilter::expected_false_positive_rate(b, k);
            assert!((got - p).abs() / p < 0.05, "b={b} k={k}: {got}");
            assert_eq!(BloomFilter::optimal_hash_count(b), k);
        }
    }

    #[test]
    fn parts_round_trip_and_are_checked() {
        let mut f = BloomFilter::new(100, 8, 3).unwrap();
        f.insert(ContentHash(5));
        let g = BloomFilter::from_words(f.words().to_vec(), f.num_bits(), f.hash_count()).unwrap();
        assert!(g.contains(ContentHash(5)));
        assert_eq!(
            BloomFilter::from_words(vec![0; 2], 64, 1),
            Err(BloomError::WrongWordCount { words: 2, num_bits: 64 })
        );
        assert_eq!(BloomFilter::from_words(vec![], 0, 1), Err(BloomError::NoBits));
        assert_eq!(BloomFilter::new(10, 8, 0), Err(BloomError::NoHashes));
        assert_eq!(BloomFilter::new(10, 0, 1), Err(BloomError::NoBits));
        let all = BloomFilter::from_words(vec![u64::MAX; 2], 100, 4).unwrap();
        assert!(all.contains(ContentHash(12345)));
        assert_eq!(all.fill_ratio(), 1.0);
    }
}
