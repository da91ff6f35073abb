//! The data-reduction model: what a strategy does to a VM's pages on average,
//! in wire bytes and CPU time, per page class.
//!
//! The simulator does not push bytes through codecs; it applies the pipeline's
//! rules (the same stage order as `memfabric_migration::pipeline`: zero →
//! dedup → delta → compression) to the workload's content model, with costs
//! and codec size factors from a measured [`profile::CpuProfile`]:
//!
//! **Full copy** (pre-copy round 0, cold copy, a pure post-copy push) of a
//! page that is
//! - *zero*: a header with `zero`; else a reference with dedup (all zero pages
//!   share one content); else a compressed zero page; else raw;
//! - *shared with same-image VMs*: a reference when the image's content is
//!   already at the destination in the dedup domain: with `dedup-gang`, sent
//!   by a VM of the same operation; with `dedup-site`, that or resident at the
//!   destination site (another VM of the image runs there); else like a
//!   unique page;
//! - *duplicate within the VM*: a reference with any dedup scope (its
//!   original travels with the unique pages); else like a unique page;
//! - *unique*: compressed to `min(1, f·X)` of a page, `X` the workload's
//!   zstd-1 size fraction (a Beta distribution with the workload's mean and
//!   s.d.) and `f` the codec's size factor; raw when that is not smaller.
//!
//! **Re-sent page** (later pre-copy rounds, stop-and-copy, post-copy of a
//! dirty set): unchanged with probability `redirty_unchanged` (a reference
//! with dedup, since its hash was sent before; else an empty delta with
//! `xbzrle` on a cache hit); otherwise `redirty_change` of its bytes changed:
//! with `xbzrle` and a cache hit (its probability follows the cache's
//! filling over the migration, [`cache::XbzrleCacheModel`]: the cache starts
//! empty, holds the last pages sent with their bytes, and after round 0 of a
//! VM larger than the cache it holds the pages after the working set), a delta of
//! `change · 4096 · xbzrle_per_changed_byte` bytes when smaller than a page;
//! otherwise compressed like a unique page. (A re-dirtied page is assumed to
//! compress like the workload's pages; small random rewrites compress worse,
//! see `sim/tests/conformance.rs`.)
//!
//! Every record carries the 8-byte page header; a reference adds the 16-byte
//! content hash. CPU: the source pays a page read (`memcpy`) and each stage it
//! runs; the destination pays the page write and each decoder it runs.

pub mod cache;
pub mod exact;
pub mod profile;

use crate::workload::WorkloadSpec;
use memfabric_migration::strategy::{Codec, Strategy};
use memfabric_migration::{PAGE_HEADER_BYTES, PAGE_SIZE_BYTES};
use profile::CpuProfile;

/// Bytes of a content hash in a reference record (128-bit hash).
pub const REF_HASH_BYTES: f64 = 16.0;
/// Payload bytes of an empty XBZRLE delta (an unchanged page): the pipeline
/// omits trailing unchanged bytes, so nothing follows the record header.
pub const EMPTY_DELTA_BYTES: f64 = 0.0;
/// QEMU's XBZRLE cache size in code (`migration/options.c`), 64 MiB.
pub const DEFAULT_XBZRLE_CACHE_BYTES: u64 = 64 << 20;

pub(crate) const PAGE: f64 = PAGE_SIZE_BYTES as f64;
pub(crate) const HDR: f64 = PAGE_HEADER_BYTES as f64;

/// Expected outcome of sending some pages, by stage (all counts are expected
/// values and may be fractional).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Pages that entered the pipeline.
    pub pages: f64,
    /// Pages sent as zero-page headers.
    pub pages_zero: f64,
    /// Pages sent as references to content the destination has.
    pub pages_dedup: f64,
    /// Pages sent as deltas.
    pub pages_delta: f64,
    /// Pages sent compressed.
    pub pages_compressed: f64,
    /// Pages sent raw.
    pub pages_raw: f64,
    /// Bytes on the wire.
    pub wire_bytes: f64,
    /// Of those, bytes of zero-page records.
    pub wire_zero: f64,
    /// Of those, bytes of reference records.
    pub wire_dedup: f64,
    /// Of those, bytes of delta records.
    pub wire_delta: f64,
    /// Of those, bytes of compressed records.
    pub wire_compressed: f64,
    /// Of those, bytes of raw records.
    pub wire_raw: f64,
    /// Source CPU for zero detection, ns.
    pub cpu_ns_zero: f64,
    /// Source CPU for hashing and index lookups, ns.
    pub cpu_ns_dedup: f64,
    /// Source CPU for delta encoding, ns.
    pub cpu_ns_delta: f64,
    /// Source CPU for compression, ns.
    pub cpu_ns_compress: f64,
    /// Source CPU for reading pages (every strategy), ns.
    pub cpu_ns_read: f64,
    /// Source CPU for encrypting what goes on the wire (`encrypt`), ns.
    pub cpu_ns_encrypt: f64,
    /// Destination CPU (decoding and writing pages), ns.
    pub cpu_ns_destination: f64,
    /// Pages looked up in a dedup index.
    pub dedup_lookups: f64,
}

impl Tally {
    /// Share of the pages sent with their bytes (delta, compressed, raw):
    /// the pages the delta cache takes (1 when no page entered).
    pub fn bytes_share(&self) -> f64 {
        if self.pages <= 0.0 {
            return 1.0;
        }
        ((self.pages_delta + self.pages_compressed + self.pages_raw) / self.pages).clamp(0.0, 1.0)
    }

    /// Source CPU, ns.
    pub fn source_ns(&self) -> f64 {
        self.cpu_ns_read + self.cpu_ns_zero + self.cpu_ns_dedup + self.cpu_ns_delta + self.cpu_ns_compress + self.cpu_ns_encrypt
    }

    /// This tally scaled by `k` (e.g. per-page expectations times a page count).
    pub fn scaled(&self, k: f64) -> Tally {
        Tally {
            pages: self.pages * k,
            pages_zero: self.pages_zero * k,
            pages_dedup: self.pages_dedup * k,
            pages_delta: self.pages_delta * k,
            pages_compressed: self.pages_compressed * k,
            pages_raw: self.pages_raw * k,
            wire_bytes: self.wire_bytes * k,
            wire_zero: self.wire_zero * k,
            wire_dedup: self.wire_dedup * k,
            wire_delta: self.wire_delta * k,
            wire_compressed: self.wire_compressed * k,
            wire_raw: self.wire_raw * k,
            cpu_ns_zero: self.cpu_ns_zero * k,
            cpu_ns_dedup: self.cpu_ns_dedup * k,
            cpu_ns_delta: self.cpu_ns_delta * k,
            cpu_ns_compress: self.cpu_ns_compress * k,
            cpu_ns_read: self.cpu_ns_read * k,
            cpu_ns_encrypt: self.cpu_ns_encrypt * k,
            cpu_ns_destination: self.cpu_ns_destination * k,
            dedup_lookups: self.dedup_lookups * k,
        }
    }

    /// Adds `other` into this tally.
    pub fn add(&mut self, other: &Tally) {
        *self = Tally {
            pages: self.pages + other.pages,
            pages_zero: self.pages_zero + other.pages_zero,
            pages_dedup: self.pages_dedup + other.pages_dedup,
            pages_delta: self.pages_delta + other.pages_delta,
            pages_compressed: self.pages_compressed + other.pages_compressed,
            pages_raw: self.pages_raw + other.pages_raw,
            wire_bytes: self.wire_bytes + other.wire_bytes,
            wire_zero: self.wire_zero + other.wire_zero,
            wire_dedup: self.wire_dedup + other.wire_dedup,
            wire_delta: self.wire_delta + other.wire_delta,
            wire_compressed: self.wire_compressed + other.wire_compressed,
            wire_raw: self.wire_raw + other.wire_raw,
            cpu_ns_zero: self.cpu_ns_zero + other.cpu_ns_zero,
            cpu_ns_dedup: self.cpu_ns_dedup + other.cpu_ns_dedup,
            cpu_ns_delta: self.cpu_ns_delta + other.cpu_ns_delta,
            cpu_ns_compress: self.cpu_ns_compress + other.cpu_ns_compress,
            cpu_ns_read: self.cpu_ns_read + other.cpu_ns_read,
            cpu_ns_encrypt: self.cpu_ns_encrypt + other.cpu_ns_encrypt,
            cpu_ns_destination: self.cpu_ns_destination + other.cpu_ns_destination,
            dedup_lookups: self.dedup_lookups + other.dedup_lookups,
        };
    }

    /// The highest rate, in wire bytes per second, at which `src_threads`
    /// source and `dst_threads` destination threads can process pages with
    /// this mix (infinite when nothing costs CPU).
    pub fn cpu_cap_bytes_per_s(&self, src_threads: u32, dst_threads: u32) -> f64 {
        if self.pages <= 0.0 || self.wire_bytes <= 0.0 {
            return f64::INFINITY;
        }
        let src_pages_per_s = src_threads as f64 * 1e9 * self.pages / self.source_ns().max(1e-9);
        let dst_pages_per_s = dst_threads as f64 * 1e9 * self.pages / self.cpu_ns_destination.max(1e-9);
        src_pages_per_s.min(dst_pages_per_s) * self.wire_bytes / self.pages
    }
}

/// Expected size, as a fraction of a page, of a unique page under a codec:
/// `E[min(1, f·X)]` with `X ~ Beta(mean, sd)` (zstd-1 size fraction), and the
/// probability that compression does not help (`f·X >= 1`, sent raw).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressOutcome {
    /// Mean size fraction of pages sent compressed (0 if none are).
    pub compressed_fraction: f64,
    /// Probability that a page is sent compressed.
    pub p_compressed: f64,
}

/// Integration points for the Beta expectation.
const BETA_GRID: usize = 256;

/// [`CompressOutcome`] of a size distribution with `mean` and `sd` under size factor `factor`.
pub fn compress_outcome(mean: f64, sd: f64, factor: f64) -> CompressOutcome {
    let m = mean.clamp(1e-6, 1.0 - 1e-6);
    let var = sd * sd;
    // Beta parameters by the method of moments; a degenerate or too-wide s.d.
    // falls back to the mean as a point mass.
    let weights: Vec<(f64, f64)> = if var > 1e-12 && var < m * (1.0 - m) {
        let common = m * (1.0 - m) / var - 1.0;
        let (a, b) = (m * common, (1.0 - m) * common);
        // Log-density on the grid, normalised by its maximum before exp so
        // that narrow distributions (large a, b) do not overflow.
        let log_pts: Vec<(f64, f64)> = (0..BETA_GRID)
            .map(|i| {
                let x = (i as f64 + 0.5) / BETA_GRID as f64;
                (x, (a - 1.0) * x.ln() + (b - 1.0) * (1.0 - x).ln())
            })
            .collect();
        let max = log_pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let pts: Vec<(f64, f64)> = log_pts.into_iter().map(|(x, l)| (x, (l - max).exp())).collect();
        let total: f64 = pts.iter().map(|p| p.1).sum();
        pts.into_iter().map(|(x, w)| (x, w / total)).collect()
    } else {
        vec![(m, 1.0)]
    };
    let mut p = 0.0;
    let mut size = 0.0;
    for (x, w) in weights {
        let s = factor * x;
        if s < 1.0 {
            p += w;
            size += w * s;
        }
    }
    CompressOutcome { compressed_fraction: if p > 0.0 { size / p } else { 0.0 }, p_compressed: p.min(1.0) }
}

/// What a strategy does to one VM's pages: precomputed per-page expectations.
#[derive(Debug, Clone, PartialEq)]
pub struct VmReduction {
    /// Per-page tally of a full copy when same-image content is NOT at the destination.
    pub full_copy: Tally,
    /// Per-page tally of a full copy when it is.
    pub full_copy_image_hit: Tally,
    /// Per-page tally of a re-sent (dirtied) page in the steady state: a
    /// share `min(1, cache / working set)` of the working set cached (less
    /// pages last sent as references). The simulator follows the cache's
    /// filling instead ([`Self::resend_with_hit`]); this is the long-run
    /// expectation, used where no history exists (conformance tests).
    pub resend: Tally,
    /// Per-page tally of a re-sent page that has a base in the delta cache.
    pub resend_cached: Tally,
    /// Per-page tally of a re-sent page that has none.
    pub resend_uncached: Tally,
}

/// The reduction model's inputs for one VM.
#[derive(Debug, Clone, Copy)]
pub struct VmInputs<'a> {
    /// Workload (content mix, re-dirty behaviour).
    pub workload: &'a WorkloadSpec,
    /// Whether the VM has an image whose content other VMs may share.
    pub has_image: bool,
    /// Pages in the writable working set.
    pub working_set_pages: u64,
    /// XBZRLE cache size, pages.
    pub xbzrle_cache_pages: u64,
    /// Content hash used for dedup.
    pub hash: memfabric_migration::pipeline::HashAlgo,
    /// With `dedup-site`: the index's false-positive rate (a Bloom summary).
    pub site_false_positive_rate: f64,
    /// With `dedup-site`: whether each looked-up page's hash travels in a query.
    pub site_query: bool,
}

impl VmReduction {
    /// Precomputes the expectations of `strategy` for a VM.
    pub fn new(strategy: &Strategy, vm: VmInputs<'_>, profile: &CpuProfile) -> VmReduction {
        let c = &vm.workload.content;
        let site = strategy.dedup == Some(memfabric_migration::strategy::DedupScope::Site);
        let hash_ns = hash_ns(vm.hash, profile);
        let codec_outcome = strategy.codec.map(|codec| {
            (codec, compress_outcome(c.unique_compressed_mean.0, c.unique_compressed_sd, profile.size_factor(codec)))
        });
        let unique_send = |t: &mut Tally, weight: f64| send_unique(t, weight, codec_outcome, profile);
        let full = |image_hit: bool| {
            let mut t = Tally { pages: 1.0, ..Default::default() };
            read_and_zero_check(&mut t, 1.0, c.zero.0, strategy, profile);
            // Zero pages.
            let z = c.zero.0;
            if strategy.zero {
                t.pages_zero += z;
                t.wire_bytes += z * HDR;
                t.wire_zero += z * HDR;
            } else if strategy.dedup.is_some() {
                hash_lookup(&mut t, z, hash_ns, profile);
                reference(&mut t, z, profile);
            } else if let Some((codec, _)) = codec_outcome {
                t.pages_compressed += z;
                t.wire_bytes += z * (HDR + profile.zero_page_bytes(codec));
                t.wire_compressed += z * (HDR + profile.zero_page_bytes(codec));
                t.cpu_ns_compress += z * profile.compress_zero_page_ns(codec);
                t.cpu_ns_destination += z * profile.decompress_ns(codec);
            } else {
                raw(&mut t, z, profile);
            }
            // Same-image pages.
            let shared = if vm.has_image { c.shared_image.0 } else { 0.0 };
            let shared_hit = image_hit && matches!(strategy.dedup, Some(d) if d >= memfabric_migration::strategy::DedupScope::Gang);
            let dup = c.duplicate.0;
            let mut unique = c.unique() + if vm.has_image { 0.0 } else { c.shared_image.0 };
            if strategy.dedup.is_some() {
                hash_lookup(&mut t, shared + dup + unique, hash_ns, profile);
                reference(&mut t, dup, profile);
                if shared_hit {
                    reference(&mut t, shared, profile);
                } else {
                    unique += shared;
                }
            } else {
                unique += shared + dup;
            }
            unique_send(&mut t, unique);
            site_index_overhead(&mut t, site, vm.site_false_positive_rate, vm.site_query);
            t
        };
        // Re-sent pages, when a share `hit` of them has a base in the delta cache.
        let q = vm.workload.redirty_unchanged.0;
        let resend_with = |hit: f64| {
            let mut r = Tally { pages: 1.0, ..Default::default() };
            read_and_zero_check(&mut r, 1.0, 0.0, strategy, profile);
            if strategy.dedup.is_some() {
                hash_lookup(&mut r, 1.0, hash_ns, profile);
            }
            let mut to_compress = 0.0;
            // Unchanged pages.
            if strategy.dedup.is_some() {
                reference(&mut r, q, profile);
            } else if strategy.delta {
                delta(&mut r, q * hit, EMPTY_DELTA_BYTES, profile);
                to_compress += q * (1.0 - hit);
            } else {
                to_compress += q;
            }
            // Changed pages.
            let changed = 1.0 - q;
            let delta_bytes = vm.workload.redirty_change.0 * PAGE * profile.size_factor.xbzrle_per_changed_byte;
            if strategy.delta && delta_bytes < PAGE {
                delta(&mut r, changed * hit, delta_bytes, profile);
                to_compress += changed * (1.0 - hit);
            } else {
                if strategy.delta {
                    // Tried and fell back: the encode was paid.
                    r.cpu_ns_delta += changed * hit * profile.ns_per_page.xbzrle_encode;
                }
                to_compress += changed;
            }
            unique_send(&mut r, to_compress);
            site_index_overhead(&mut r, site, vm.site_false_positive_rate, vm.site_query);
            r
        };
        let cached = if vm.working_set_pages == 0 {
            1.0
        } else {
            (vm.xbzrle_cache_pages as f64 / vm.working_set_pages as f64).min(1.0)
        };
        // Pages last sent as references never entered the delta cache (the
        // pipeline caches only pages whose bytes it sent), so with dedup the
        // duplicates among non-zero pages have no delta base.
        let sent_as_ref = if strategy.dedup.is_some() { (c.duplicate.0 / (1.0 - c.zero.0).max(1e-9)).min(1.0) } else { 0.0 };
        let (mut r, mut resend_cached, mut resend_uncached) = (resend_with(cached * (1.0 - sent_as_ref)), resend_with(1.0), resend_with(0.0));
        let (mut full_copy, mut full_copy_image_hit) = (full(false), full(true));
        if strategy.encrypt {
            for t in [&mut full_copy, &mut full_copy_image_hit, &mut r, &mut resend_cached, &mut resend_uncached] {
                let wire = t.wire_bytes;
                encrypt(t, wire, profile);
            }
        }
        VmReduction { full_copy, full_copy_image_hit, resend: r, resend_cached, resend_uncached }
    }

    /// Per-page tally of a re-sent page when a share `hit` of the re-sent
    /// pages has a base in the delta cache (from [`cache::XbzrleCacheModel`]).
    /// The tally is linear in `hit`.
    pub fn resend_with_hit(&self, hit: f64) -> Tally {
        let h = hit.clamp(0.0, 1.0);
        let mut t = self.resend_uncached.scaled(1.0 - h);
        t.add(&self.resend_cached.scaled(h));
        t
    }
}

/// The `encrypt` stage: `wire_bytes` of records encrypted at the source and
/// decrypted at the destination (TLS 1.3 records of up to 16 KiB; their
/// 22 bytes of framing, 0.13 %, are not counted in the wire bytes).
pub(crate) fn encrypt(t: &mut Tally, wire_bytes: f64, p: &CpuProfile) {
    t.cpu_ns_encrypt += wire_bytes / PAGE * p.ns_per_page.tls_encrypt;
    t.cpu_ns_destination += wire_bytes / PAGE * p.ns_per_page.tls_decrypt;
}

/// Cost of hashing a page with `hash`, ns.
pub(crate) fn hash_ns(hash: memfabric_migration::pipeline::HashAlgo, profile: &CpuProfile) -> f64 {
    match hash {
        memfabric_migration::pipeline::HashAlgo::Xxh3_128 => profile.ns_per_page.hash_xxh3,
        memfabric_migration::pipeline::HashAlgo::Blake3 => profile.ns_per_page.hash_blake3,
    }
}

/// Every page is read at the source and written at the destination; with the
/// zero stage, `zero_weight` of them are all-zero pages (a full scan) and the
/// rest exit the check early.
pub(crate) fn read_and_zero_check(t: &mut Tally, weight: f64, zero_weight: f64, s: &Strategy, p: &CpuProfile) {
    t.cpu_ns_read += weight * p.ns_per_page.memcpy;
    t.cpu_ns_destination += weight * p.ns_per_page.memcpy;
    if s.zero {
        t.cpu_ns_zero +=
            zero_weight * p.ns_per_page.zero_check_zero_page + (weight - zero_weight) * p.ns_per_page.zero_check;
    }
}

pub(crate) fn hash_lookup(t: &mut Tally, weight: f64, hash_ns: f64, p: &CpuProfile) {
    t.cpu_ns_dedup += weight * (hash_ns + p.ns_per_page.dedup_lookup);
    t.dedup_lookups += weight;
}

/// Index overheads of `dedup-site`: query hashes for every lookup, and for a
/// summary's false positives a reference that the destination cannot resolve
/// (the page itself then follows as usual).
pub(crate) fn site_index_overhead(t: &mut Tally, site: bool, fp: f64, query: bool) {
    if !site {
        return;
    }
    let misses = (t.dedup_lookups - t.pages_dedup).max(0.0);
    let extra = if query { t.dedup_lookups * REF_HASH_BYTES } else { 0.0 } + fp * misses * (HDR + REF_HASH_BYTES);
    t.wire_bytes += extra;
    t.wire_dedup += extra;
}

pub(crate) fn reference(t: &mut Tally, weight: f64, _p: &CpuProfile) {
    t.pages_dedup += weight;
    t.wire_bytes += weight * (HDR + REF_HASH_BYTES);
    t.wire_dedup += weight * (HDR + REF_HASH_BYTES);
}

pub(crate) fn raw(t: &mut Tally, weight: f64, _p: &CpuProfile) {
    t.pages_raw += weight;
    t.wire_bytes += weight * (HDR + PAGE);
    t.wire_raw += weight * (HDR + PAGE);
}

pub(crate) fn delta(t: &mut Tally, weight: f64, bytes: f64, p: &CpuProfile) {
    t.pages_delta += weight;
    t.wire_bytes += weight * (HDR + bytes);
    t.wire_delta += weight * (HDR + bytes);
    t.cpu_ns_delta += weight * p.ns_per_page.xbzrle_encode;
    t.cpu_ns_destination += weight * p.ns_per_page.xbzrle_decode;
}

fn send_unique(t: &mut Tally, weight: f64, codec: Option<(Codec, CompressOutcome)>, p: &CpuProfile) {
    match codec {
        Some((codec, o)) => {
            let compressed = weight * o.p_compressed;
            // Pages that end up raw are the incompressible ones, which the
            // codec gives up on quickly.
            t.cpu_ns_compress += compressed * p.compress_ns(codec) + (weight - compressed) * p.compress_incompressible_ns(codec);
            t.pages_compressed += compressed;
            t.wire_bytes += compressed * (HDR + o.compressed_fraction * PAGE);
            t.wire_compressed += compressed * (HDR + o.compressed_fraction * PAGE);
            t.cpu_ns_destination += compressed * p.decompress_ns(codec);
            raw(t, weight - compressed, p);
        }
        None => raw(t, weight, p),
    }
}

#[cfg(test)]
mod tests;
