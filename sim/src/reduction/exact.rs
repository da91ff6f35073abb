//! The exact reduction of a traced VM's pages: the same stage rules and CPU
//! charges as the analytical model ([`super::VmReduction`]), applied to each
//! page's real content (zero flag, content hash, trace sizes) instead of the
//! content mix's expectations, so the result is the same [`Tally`].
//!
//! Per page, in pipeline order (`memfabric_migration::pipeline`):
//! - **zero**: with the zero stage, an all-zero page is a zero record;
//! - **dedup**: with a dedup scope, the page is hashed and looked up; it is a
//!   reference when the caller says its hash is at the destination (sent
//!   by this migration, by the gang, or resident at the site, by scope);
//! - **delta**: with `xbzrle`, a re-sent page whose index is in the delta
//!   cache ([`DeltaCache`], least recently sent evicted) is a delta of its
//!   `delta_bytes` (0: an empty delta, header only) when smaller than a
//!   page; otherwise the encode was paid and the page goes on;
//! - **compression**: the trace's size for the codec (`lz4_bytes`;
//!   `zstd_bytes` for zstd level 1, times the profile's size factor for other
//!   levels), sent compressed when smaller than a page, else raw.
//!
//! - **encrypt**: with `encrypt`, the record's bytes are encrypted and
//!   decrypted (`tls_encrypt`, `tls_decrypt` per 4 KiB of wire bytes).
//!
//! Each page has a weight (1, or `2^k` for a kept page under content-hash
//! sampling) that multiplies everything it adds to the tally.

use super::profile::CpuProfile;
use super::{delta, hash_lookup, raw, read_and_zero_check, reference, Tally, HDR, PAGE};
use crate::trace::replay::PageContent;
use memfabric_migration::strategy::{Codec, Strategy};
use std::collections::BTreeMap;

/// How a page was sent (what the delta cache learns from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A zero-page record.
    Zero,
    /// A reference to content the destination has.
    Reference,
    /// Its bytes: a delta, compressed or raw (the delta cache takes it).
    Bytes,
}

/// The per-page rules of a strategy with a CPU profile.
#[derive(Debug, Clone, Copy)]
pub struct ExactReduction<'a> {
    strategy: &'a Strategy,
    profile: &'a CpuProfile,
    hash_ns: f64,
}

impl<'a> ExactReduction<'a> {
    /// The rules of `strategy` with content hash `hash`.
    pub fn new(strategy: &'a Strategy, hash: memfabric_migration::pipeline::HashAlgo, profile: &'a CpuProfile) -> Self {
        ExactReduction { strategy, profile, hash_ns: super::hash_ns(hash, profile) }
    }

    /// Adds one page of weight `w` to `t`. `known`: its hash is at the
    /// destination (only consulted with a dedup scope). `delta_base`: for a
    /// re-sent page whose index is in the delta cache, its delta size.
    pub fn page(&self, t: &mut Tally, w: f64, c: &PageContent, known: bool, delta_base: Option<u32>) -> Sent {
        let wire0 = t.wire_bytes;
        let sent = self.reduce_page(t, w, c, known, delta_base);
        if self.strategy.encrypt {
            super::encrypt(t, t.wire_bytes - wire0, self.profile);
        }
        sent
    }

    /// The stages before encryption.
    fn reduce_page(&self, t: &mut Tally, w: f64, c: &PageContent, known: bool, delta_base: Option<u32>) -> Sent {
        let (s, p) = (self.strategy, self.profile);
        t.pages += w;
        read_and_zero_check(t, w, if c.zero { w } else { 0.0 }, s, p);
        if c.zero && s.zero {
            t.pages_zero += w;
            t.wire_bytes += w * HDR;
            t.wire_zero += w * HDR;
            return Sent::Zero;
        }
        if s.dedup.is_some() {
            hash_lookup(t, w, self.hash_ns, p);
            if known {
                reference(t, w, p);
                return Sent::Reference;
            }
        }
        if let (true, Some(d)) = (s.delta, delta_base) {
            if f64::from(d) < PAGE {
                delta(t, w, f64::from(d), p);
                return Sent::Bytes;
            }
            // Tried and fell back: the encode was paid.
            t.cpu_ns_delta += w * p.ns_per_page.xbzrle_encode;
        }
        match s.codec {
            Some(codec) => {
                let (size, cost) = if c.zero {
                    let size = match codec {
                        Codec::Lz4 => c.lz4_bytes,
                        Codec::Zstd { .. } => c.zstd_bytes,
                    };
                    (f64::from(size), p.compress_zero_page_ns(codec))
                } else {
                    let size = match codec {
                        Codec::Lz4 => f64::from(c.lz4_bytes),
                        Codec::Zstd { level } if level <= 1 => f64::from(c.zstd_bytes),
                        Codec::Zstd { .. } => (f64::from(c.zstd_bytes) * p.size_factor(codec)).round(),
                    };
                    let cost = if size < PAGE { p.compress_ns(codec) } else { p.compress_incompressible_ns(codec) };
                    (size, cost)
                };
                t.cpu_ns_compress += w * cost;
                if size < PAGE {
                    t.pages_compressed += w;
                    t.wire_bytes += w * (HDR + size);
                    t.wire_compressed += w * (HDR + size);
                    t.cpu_ns_destination += w * p.decompress_ns(codec);
                } else {
                    raw(t, w, p);
                }
            }
            None => raw(t, w, p),
        }
        Sent::Bytes
    }
}

/// An XBZRLE-like delta cache of page indexes: holds up to `capacity`
/// pages (weighted: a sampled page counts `2^k`), evicting the least
/// recently sent.
#[derive(Debug, Clone, Default)]
pub struct DeltaCache {
    capacity: f64,
    used: f64,
    clock: u64,
    by_page: BTreeMap<u64, (u64, f64)>,
    by_stamp: BTreeMap<u64, u64>,
}

impl DeltaCache {
    /// An empty cache of `capacity` pages.
    pub fn new(capacity: f64) -> DeltaCache {
        DeltaCache { capacity, ..Default::default() }
    }

    /// Whether `page` is cached.
    pub fn contains(&self, page: u64) -> bool {
        self.by_page.contains_key(&page)
    }

    /// Records that `page` (of weight `w`) was sent with its bytes.
    pub fn insert(&mut self, page: u64, w: f64) {
        if let Some((stamp, old)) = self.by_page.remove(&page) {
            self.by_stamp.remove(&stamp);
            self.used -= old;
        }
        self.clock += 1;
        self.by_page.insert(page, (self.clock, w));
        self.by_stamp.insert(self.clock, page);
        self.used += w;
        while self.used > self.capacity + 1e-9 {
            let Some((_, victim)) = self.by_stamp.pop_first() else { break };
            if let Some((_, vw)) = self.by_page.remove(&victim) {
                self.used -= vw;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_cache_evicts_the_least_recently_sent() {
        let mut c = DeltaCache::new(2.0);
        c.insert(1, 1.0);
        c.insert(2, 1.0);
        c.insert(1, 1.0); // 1 is now the most recent
        c.insert(3, 1.0); // evicts 2
        assert!(c.contains(1) && c.contains(3) && !c.contains(2));
        // A weighted page takes its weight.
        c.insert(4, 2.0);
        assert!(c.contains(4) && !c.contains(1) && !c.contains(3));
    }

    #[test]
    fn page_outcomes_follow_the_stage_order() {
        let profile = CpuProfile::builtin();
        let s: Strategy = "zero+dedup-vm+xbzrle+lz4".parse().unwrap();
        let r = ExactReduction::new(&s, memfabric_migration::pipeline::HashAlgo::Xxh3_128, &profile);
        let page = PageContent { page: 0, hash: 7, zero: false, delta_bytes: 100, lz4_bytes: 1000, zstd_bytes: 800 };
        let mut t = Tally::default();
        assert_eq!(r.page(&mut t, 1.0, &PageContent { zero: true, ..page }, false, None), Sent::Zero);
        assert_eq!(r.page(&mut t, 1.0, &page, true, None), Sent::Reference);
        assert_eq!(r.page(&mut t, 1.0, &page, false, Some(100)), Sent::Bytes);
        assert_eq!(r.page(&mut t, 2.0, &page, false, None), Sent::Bytes);
        assert_eq!(r.page(&mut t, 1.0, &PageContent { lz4_bytes: 4096, ..page }, false, None), Sent::Bytes);
        assert_eq!((t.pages, t.pages_zero, t.pages_dedup, t.pages_delta, t.pages_compressed, t.pages_raw), (6.0, 1.0, 1.0, 1.0, 2.0, 1.0));
        let hdr = HDR;
        let expected = hdr + (hdr + 16.0) + (hdr + 100.0) + 2.0 * (hdr + 1000.0) + (hdr + PAGE);
        assert!((t.wire_bytes - expected).abs() < 1e-9, "{} vs {expected}", t.wire_bytes);
        assert_eq!(t.dedup_lookups, 5.0);
    }
}
