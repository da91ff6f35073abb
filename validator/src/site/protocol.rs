//! Payloads of the site frames (binary, little-endian; each frame also
//! carries the stream's xxh3 trailer, [`crate::migrate::wire`]).
//!
//! ```text
//! SiteSummary  (dest → source, after HelloAck, site_index = summary)
//!   num_bits u64 | hash_count u32 | items u64 | words: ceil(num_bits/64) × u64
//! IndexQuery   (source → dest, before a batch, site_index = query)
//!   n × content hash (u128)
//! IndexReply   (dest → source)
//!   ceil(n/8) bytes: bit i set = the site holds hash i
//! ResolveRefs  (source → dest, after a round's or the stop-and-copy's pages)
//!   empty
//! MissingRefs  (dest → source)
//!   n × (page index u64 | content hash u128)
//! ```
//!
//! A summary or a reply that decodes but lies (bits flipped on purpose,
//! [`super::DestSite::corrupt_index`]) only changes which pages the source
//! sends as references: a reference the destination cannot resolve comes
//! back in `MissingRefs` and is answered with the page, so a wrong index
//! costs bytes and never yields a wrong page.

use memfabric_migration::pipeline::{BloomFilter, ContentHash, MissingReference};

/// A site payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload's length does not fit its format.
    #[error("{what}: {len} bytes, expected {expected}")]
    Length {
        /// Which payload.
        what: &'static str,
        /// Bytes received.
        len: usize,
        /// What the format needs.
        expected: String,
    },
    /// The summary's parameters are unusable.
    #[error("site summary: {0}")]
    Bloom(#[from] memfabric_migration::pipeline::BloomError),
}

const HASH: usize = ContentHash::WIRE_BYTES;

/// Encodes a Bloom summary.
pub fn encode_summary(b: &BloomFilter) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + 8 * b.words().len());
    out.extend_from_slice(&b.num_bits().to_le_bytes());
    out.extend_from_slice(&b.hash_count().to_le_bytes());
    out.extend_from_slice(&b.items_inserted().to_le_bytes());
    for w in b.words() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// Decodes a Bloom summary.
pub fn decode_summary(p: &[u8]) -> Result<BloomFilter, PayloadError> {
    let len_err = |expected: String| PayloadError::Length { what: "site summary", len: p.len(), expected };
    if p.len() < 20 || (p.len() - 20) % 8 != 0 {
        return Err(len_err("20 + 8·words".into()));
    }
    let num_bits = u64::from_le_bytes(p[0..8].try_into().expect("8 bytes"));
    let hash_count = u32::from_le_bytes(p[8..12].try_into().expect("4 bytes"));
    let words: Vec<u64> = p[20..].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    if words.len() as u64 != num_bits.div_ceil(64) {
        return Err(len_err(format!("{} words for {num_bits} bits", num_bits.div_ceil(64))));
    }
    Ok(BloomFilter::from_words(words, num_bits, hash_count)?)
}

/// Encodes a list of content hashes (an index query).
pub fn encode_hashes(hashes: &[ContentHash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.to_le_bytes()).collect()
}

/// Decodes a list of content hashes.
pub fn decode_hashes(p: &[u8]) -> Result<Vec<ContentHash>, PayloadError> {
    if p.len() % HASH != 0 {
        return Err(PayloadError::Length { what: "index query", len: p.len(), expected: format!("a multiple of {HASH}") });
    }
    Ok(p.chunks_exact(HASH).map(|c| ContentHash::from_le_bytes(c.try_into().expect("16 bytes"))).collect())
}

/// Encodes an index reply: one bit per queried hash.
pub fn encode_reply(present: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; present.len().div_ceil(8)];
    for (i, _) in present.iter().enumerate().filter(|(_, p)| **p) {
        out[i / 8] |= 1 << (i % 8);
    }
    out
}

/// Decodes an index reply to `n` queried hashes.
pub fn decode_reply(p: &[u8], n: usize) -> Result<Vec<bool>, PayloadError> {
    if p.len() != n.div_ceil(8) {
        return Err(PayloadError::Length { what: "index reply", len: p.len(), expected: format!("{} for {n} hashes", n.div_ceil(8)) });
    }
    Ok((0..n).map(|i| p[i / 8] & (1 << (i % 8)) != 0).collect())
}

/// Encodes the references a destination could not resolve.
pub fn encode_missing(missing: &[MissingReference]) -> Vec<u8> {
    let mut out = Vec::with_capacity(missing.len() * (8 + HASH));
    for m in missing {
        out.extend_from_slice(&m.page_index.to_le_bytes());
        out.extend_from_slice(&m.hash.to_le_bytes());
    }
    out
}

/// Decodes a list of missing references.
pub fn decode_missing(p: &[u8]) -> Result<Vec<MissingReference>, PayloadError> {
    if p.len() % (8 + HASH) != 0 {
        return Err(PayloadError::Length { what: "missing references", len: p.len(), expected: format!("a multiple of {}", 8 + HASH) });
    }
    Ok(p
        .chunks_exact(8 + HASH)
        .map(|c| MissingReference {
            page_index: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
            hash: ContentHash::from_le_bytes(c[8..].try_into().expect("16 bytes")),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let mut b = BloomFilter::new(100, 10, 7).unwrap();
        for i in 0..100u128 {
            b.insert(ContentHash(i * 7919));
        }
        let back = decode_summary(&encode_summary(&b)).unwrap();
        assert_eq!((back.words(), back.num_bits(), back.hash_count()), (b.words(), b.num_bits(), b.hash_count()));
        assert!((0..100u128).all(|i| back.contains(ContentHash(i * 7919))));

        let hashes = vec![ContentHash(1), ContentHash(u128::MAX), ContentHash(42)];
        assert_eq!(decode_hashes(&encode_hashes(&hashes)).unwrap(), hashes);
        let present = vec![true, false, true, true, false, false, false, false, true];
        assert_eq!(decode_reply(&encode_reply(&present), present.len()).unwrap(), present);
        let missing = vec![MissingReference { page_index: 7, hash: ContentHash(9) }, MissingReference { page_index: u64::MAX, hash: ContentHash(0) }];
        assert_eq!(decode_missing(&encode_missing(&missing)).unwrap(), missing);
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert!(matches!(decode_summary(&[0u8; 19]), Err(PayloadError::Length { .. })));
        // 64 bits declared, two words given.
        let mut p = 64u64.to_le_bytes().to_vec();
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&[0u8; 16]);
        assert!(matches!(decode_summary(&p), Err(PayloadError::Length { .. })));
        assert!(decode_hashes(&[0u8; 17]).is_err());
        assert!(decode_reply(&[0u8; 2], 9).is_ok());
        assert!(decode_reply(&[0u8; 1], 9).is_err());
        assert!(decode_missing(&[0u8; 23]).is_err());
    }
}
