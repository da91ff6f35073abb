//! XBZRLE-like delta encoding of a re-sent page against the copy last sent.
//!
//! # Encoding
//!
//! The new page is XORed with the cached copy; the XOR is a sequence of
//! *zero runs* (unchanged bytes) and *literal runs* (changed bytes). The
//! delta is a list of pairs, with no header:
//!
//! ```text
//!  +-----------------+--------------------+-------------------------+
//!  | zero_run ULEB128| literal_len ULEB128| literal_len XOR bytes   |  ... repeated
//!  +-----------------+--------------------+-------------------------+
//! ```
//!
//! - `zero_run` (may be 0) counts bytes left unchanged before the literal;
//! - `literal_len` counts the bytes that follow, each the XOR of the new and
//!   the old byte at that position (so applying is `page[i] ^= literal`);
//! - unchanged bytes after the last literal are not encoded: an identical
//!   page encodes to the empty delta;
//! - ULEB128: 7 bits per byte, least significant group first, high bit set
//!   on every byte but the last; values up to 4096 take 1 or 2 bytes.
//!
//! A gap of fewer than [`MIN_ZERO_RUN_BYTES`] unchanged bytes between two
//! changes stays inside the literal: closing the literal and opening a new
//! pair costs at least two length bytes, so shorter gaps are cheaper to copy.
//! Changing `k` contiguous bytes therefore costs `k` plus at most 4 bytes,
//! and `k` isolated single-byte changes about 3 bytes each.
//!
//! Unlike QEMU (which sends the new bytes of a literal), the literal carries
//! XOR bytes; the size is the same.
//!
//! # Cache
//!
//! [`DeltaCache`] holds the last content *sent with its bytes* (as a delta,
//! compressed or raw page) for up to `capacity` page indexes, and evicts the
//! **least recently sent** page index when full. Zero pages and dedup
//! references do not touch it: the decoder cannot always resolve a reference
//! when it arrives, and both sides must change their caches on exactly the
//! same records. A delta may therefore be taken against an older version of
//! the page than the one the destination shows; both sides hold that same
//! version, so the result is exact.

use super::{Page, PAGE_SIZE};
use std::collections::{BTreeMap, HashMap};

/// Default delta-cache capacity in pages: 64 MiB of 4 KiB pages, QEMU's
/// default `xbzrle-cache-size`.
pub const DEFAULT_DELTA_CACHE_PAGES: usize = 64 * 1024 * 1024 / PAGE_SIZE;

/// Shortest run of unchanged bytes that ends a literal (see the module docs).
pub const MIN_ZERO_RUN_BYTES: usize = 3;

/// A delta could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The encoding is not a sequence of well-formed pairs.
    #[error("malformed delta at byte {offset}: {what}")]
    Malformed {
        /// Offset in the delta.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A run reaches past the end of the page.
    #[error("delta run ends at byte {end}, past the {PAGE_SIZE}-byte page")]
    Overrun {
        /// Where the run ends.
        end: u64,
    },
}

/// Encodes `new` against `old` into `out` (cleared first). Returns false, with
/// `out` holding a partial encoding, as soon as the encoding would exceed
/// `max_len` bytes.
pub fn xbzrle_encode(old: &Page, new: &Page, max_len: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut pos = 0;
    while let Some(start) = first_difference(old, new, pos) {
        let end = literal_end(old, new, start);
        write_uleb128(out, (start - pos) as u64);
        write_uleb128(out, (end - start) as u64);
        if out.len() + (end - start) > max_len {
            return false;
        }
        out.extend(old[start..end].iter().zip(&new[start..end]).map(|(a, b)| a ^ b));
        pos = end;
    }
    out.len() <= max_len
}

/// Applies `delta` to `page` in place (`page` holds the cached copy on entry
/// and the new content on success; on error it is partly modified).
pub fn xbzrle_apply(page: &mut Page, delta: &[u8]) -> Result<(), DeltaError> {
    let mut r = 0;
    let mut pos: u64 = 0;
    while r < delta.len() {
        let zero_run = read_uleb128(delta, &mut r)?;
        if r == delta.len() {
            return Err(DeltaError::Malformed { offset: r, what: "zero run without a literal length" });
        }
        let literal_len = read_uleb128(delta, &mut r)?;
        let start = pos + zero_run;
        let end = start + literal_len;
        if end > PAGE_SIZE as u64 {
            return Err(DeltaError::Overrun { end });
        }
        let (start, len) = (start as usize, literal_len as usize);
        let literal = delta
            .get(r..r + len)
            .ok_or(DeltaError::Malformed { offset: r, what: "literal runs past the end of the delta" })?;
        for (p, x) in page[start..start + len].iter_mut().zip(literal) {
            *p ^= x;
        }
        r += len;
        pos = end;
    }
    Ok(())
}

/// First index `>= from` where the pages differ, comparing 8 bytes at a time.
fn first_difference(old: &Page, new: &Page, from: usize) -> Option<usize> {
    let mut i = from;
    while i + 8 <= PAGE_SIZE {
        let x = word(old, i) ^ word(new, i);
        if x != 0 {
            return Some(i + (x.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    (i..PAGE_SIZE).find(|&j| old[j] != new[j])
}

/// End (exclusive) of the literal starting at `start` (where the pages
/// differ): the literal stops before the first run of at least
/// [`MIN_ZERO_RUN_BYTES`] equal bytes, or at the last difference before the
/// end of the page.
fn literal_end(old: &Page, new: &Page, start: usize) -> usize {
    let mut end = start + 1;
    let mut j = end;
    while j < PAGE_SIZE {
        if old[j] != new[j] {
            j += 1;
            end = j;
            continue;
        }
        let equal_from = j;
        while j < PAGE_SIZE && old[j] == new[j] && j - equal_from < MIN_ZERO_RUN_BYTES {
            j += 1;
        }
        if j == PAGE_SIZE || j - equal_from >= MIN_ZERO_RUN_BYTES {
            break;
        }
    }
    end
}

fn word(page: &Page, i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&page[i..i + 8]);
    u64::from_le_bytes(w)
}

fn write_uleb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a ULEB128 value of at most 32 bits at `*r`, advancing `*r`.
fn read_uleb128(bytes: &[u8], r: &mut usize) -> Result<u64, DeltaError> {
    let start = *r;
    let mut v: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*r).ok_or(DeltaError::Malformed { offset: *r, what: "truncated ULEB128" })?;
        *r += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return if v > u64::from(u32::MAX) {
                Err(DeltaError::Malformed { offset: start, what: "ULEB128 value over 32 bits" })
            } else {
                Ok(v)
            };
        }
    }
    Err(DeltaError::Malformed { offset: start, what: "ULEB128 value over 32 bits" })
}

/// The delta cache: last content sent per page index, bounded, evicting the
/// least recently sent page index (see the [module docs](self)).
///
/// Two caches that saw the same sequence of [`insert`](Self::insert)s are
/// equal (`==`), including their eviction order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaCache {
    capacity: usize,
    /// Increases by one per insert; orders entries by recency.
    clock: u64,
    /// Recency stamp -> page index, oldest first.
    by_recency: BTreeMap<u64, u64>,
    entries: HashMap<u64, CacheEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheEntry {
    stamp: u64,
    page: Box<Page>,
}

impl DeltaCache {
    /// An empty cache holding at most `capacity_pages` pages (0: holds
    /// nothing).
    pub fn new(capacity_pages: usize) -> DeltaCache {
        DeltaCache { capacity: capacity_pages, clock: 0, by_recency: BTreeMap::new(), entries: HashMap::new() }
    }

    /// The cached content of `page_index`.
    pub fn get(&self, page_index: u64) -> Option<&Page> {
        self.entries.get(&page_index).map(|e| &*e.page)
    }

    /// Records `page` as the content last sent for `page_index`, making it
    /// the most recently sent; evicts the least recently sent page index if
    /// the cache is full.
    pub fn insert(&mut self, page_index: u64, page: &Page) {
        if self.capacity == 0 {
            return;
        }
        self.clock += 1;
        let stamp = self.clock;
        if let Some(entry) = self.entries.get_mut(&page_index) {
            self.by_recency.remove(&entry.stamp);
            entry.stamp = stamp;
            entry.page.copy_from_slice(page);
            self.by_recency.insert(stamp, page_index);
            return;
        }
        let mut buffer = None;
        if self.entries.len() >= self.capacity {
            if let Some((_, oldest)) = self.by_recency.pop_first() {
                buffer = self.entries.remove(&oldest).map(|e| e.page);
            }
        }
        let mut buffer = buffer.unwrap_or_else(|| Box::new([0u8; PAGE_SIZE]));
        buffer.copy_from_slice(page);
        self.entries.insert(page_index, CacheEntry { stamp, page: buffer });
        self.by_recency.insert(stamp, page_index);
    }

    /// Changes the cached content of `page_index` in place with `f` and
    /// makes it the most recently sent, as [`insert`](Self::insert) of the
    /// changed content would (the decoder applies a delta to its base this
    /// way, without copying the base out). None if the page is not held.
    /// If `f` fails the entry is left as `f` left it: callers treat the
    /// stream as corrupt from then on.
    pub fn update<E>(&mut self, page_index: u64, f: impl FnOnce(&mut Page) -> Result<(), E>) -> Option<Result<&Page, E>> {
        let entry = self.entries.get_mut(&page_index)?;
        self.clock += 1;
        self.by_recency.remove(&entry.stamp);
        entry.stamp = self.clock;
        self.by_recency.insert(entry.stamp, page_index);
        Some(f(&mut entry.page).map(|()| &*entry.page))
    }

    /// Page indexes held, least recently sent first.
    pub fn page_indexes(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_recency.values().copied()
    }

    /// Number of pages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds no page.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Maximum number of pages held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(old: &Page, delta: &[u8]) -> Result<Box<Page>, DeltaError> {
        let mut p = Box::new(*old);
        xbzrle_apply(&mut p, delta)?;
        Ok(p)
    }

    #[test]
    fn identical_pages_encode_to_nothing() {
        let old = [3u8; PAGE_SIZE];
        let mut out = vec![1, 2, 3];
        assert!(xbzrle_encode(&old, &old, 0, &mut out));
        assert!(out.is_empty());
        assert_eq!(*apply(&old, &out).unwrap(), old);
    }

    #[test]
    fn exact_format_of_a_small_delta() {
        let old = [0u8; PAGE_SIZE];
        let mut new = old;
        new[200] = 0xAB; // zero run 200 = 0xC8 0x01
        new[201] = 0xCD;
        new[203] = 0x01; // gap of 1 < MIN_ZERO_RUN_BYTES: stays in the literal
        new[4095] = 0x10;
        let mut out = Vec::new();
        assert!(xbzrle_encode(&old, &new, PAGE_SIZE, &mut out));
        // (200, 4, AB CD 00 01), then zero run 4095 - 204 = 3891 = 0xB3 0x1E, (1, 10)
        assert_eq!(out, vec![0xC8, 0x01, 4, 0xAB, 0xCD, 0x00, 0x01, 0xB3, 0x1E, 1, 0x10]);
        assert_eq!(*apply(&old, &out).unwrap(), new);
    }

    #[test]
    fn a_gap_of_min_zero_run_splits_the_literal() {
        let old = [0u8; PAGE_SIZE];
        let mut new = old;
        new[0] = 1;
        new[1 + MIN_ZERO_RUN_BYTES] = 2;
        let mut out = Vec::new();
        assert!(xbzrle_encode(&old, &new, PAGE_SIZE, &mut out));
        assert_eq!(out, vec![0, 1, 1, MIN_ZERO_RUN_BYTES as u8, 1, 2]);
    }

    #[test]
    fn threshold_stops_the_encoding() {
        let old = [0u8; PAGE_SIZE];
        let new = [1u8; PAGE_SIZE];
        let mut out = Vec::new();
        assert!(!xbzrle_encode(&old, &new, PAGE_SIZE - 1, &mut out));
        assert!(xbzrle_encode(&old, &new, PAGE_SIZE + 3, &mut out));
        assert_eq!(out.len(), PAGE_SIZE + 3);
    }

    #[test]
    fn bad_deltas_are_errors() {
        let old = [0u8; PAGE_SIZE];
        let cases: [(&[u8], DeltaError); 5] = [
            (&[0x80, 0x20, 1, 0], DeltaError::Overrun { end: 4097 }),
            (&[0xFF, 0x1F, 2, 0, 0], DeltaError::Overrun { end: 4097 }),
            (&[5], DeltaError::Malformed { offset: 1, what: "zero run without a literal length" }),
            (&[0, 3, 1, 2], DeltaError::Malformed { offset: 2, what: "literal runs past the end of the delta" }),
            (
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                DeltaError::Malformed { offset: 0, what: "ULEB128 value over 32 bits" },
            ),
        ];
        for (delta, want) in cases {
            assert_eq!(apply(&old, delta).unwrap_err(), want, "{delta:?}");
        }
        assert!(matches!(apply(&old, &[0x80]), Err(DeltaError::Malformed { what: "truncated ULEB128", .. })));
    }

    #[test]
    fn update_in_place_equals_insert_of_the_result() {
        let (mut a, mut b) = (DeltaCache::new(2), DeltaCache::new(2));
        for c in [&mut a, &mut b] {
            c.insert(1, &[1; PAGE_SIZE]);
            c.insert(2, &[2; PAGE_SIZE]);
        }
        let mut changed = [1u8; PAGE_SIZE];
        changed[7] = 9;
        let mut delta = Vec::new();
        assert!(xbzrle_encode(&[1; PAGE_SIZE], &changed, PAGE_SIZE, &mut delta));
        let got = *a.update(1, |p| xbzrle_apply(p, &delta)).unwrap().unwrap();
        assert_eq!(got, changed);
        b.insert(1, &changed);
        assert_eq!(a, b, "same content and recency: 1 is now the most recent");
        a.insert(3, &[3; PAGE_SIZE]);
        assert_eq!(a.page_indexes().collect::<Vec<_>>(), vec![1, 3], "2 was the least recent");
        assert!(a.update(2, |_| Ok::<(), ()>(())).is_none());
    }

    #[test]
    fn cache_evicts_least_recently_sent() {
        let mut c = DeltaCache::new(2);
        let p = |b: u8| [b; PAGE_SIZE];
        c.insert(1, &p(1));
        c.insert(2, &p(2));
        c.insert(1, &p(11)); // 1 becomes most recent
        c.insert(3, &p(3)); // evicts 2
        assert_eq!(c.page_indexes().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(c.get(1), Some(&p(11)));
        assert_eq!(c.get(2), None);
        assert_eq!((c.len(), c.capacity()), (2, 2));
        let mut none = DeltaCache::new(0);
        none.insert(1, &p(1));
        assert!(none.is_empty());
    }
}
