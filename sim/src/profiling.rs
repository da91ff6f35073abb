//! `memfabric profile`: measures what each reduction stage costs per page on
//! this machine, with the real codecs of `memfabric_migration::pipeline`, on
//! the page mixes of `memfabric_migration::pagegen`, and memcpy of the same
//! pages in the same run as the physical reference. It prints the table and
//! writes the [`CpuProfile`] the simulator reads.
//!
//! Wall-clock time is read here, in a measuring tool; the simulator itself
//! only ever reads the committed profile, so its runs stay deterministic.

use crate::reduction::profile::{CpuProfile, ProfileAbout, SizeFactors, StageCosts};
use memfabric_migration::pagegen::{self, PageKind};
use memfabric_migration::pipeline::{
    hash_page, is_zero_page, xbzrle_apply, xbzrle_encode, CodecKind, DedupIndex, DomainId, HashAlgo, Page,
    PageCompressor, PageDecompressor, DEFAULT_DELTA_MAX_BYTES,
};
use memfabric_migration::strategy::{Codec, DedupScope};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Fraction of bytes changed in the re-dirty mix.
pub const REDIRTY_FRACTION: f64 = 0.05;

/// One measured cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Stage name.
    pub stage: &'static str,
    /// Page mix.
    pub mix: &'static str,
    /// Nanoseconds per 4 KiB page, one core (best of the repeats).
    pub ns_per_page: f64,
    /// memcpy's ns/page on the same mix divided by this stage's: 1 = as fast as memcpy.
    pub vs_memcpy: f64,
    /// Output bytes / input bytes, for stages that produce output (compression, delta).
    pub size_ratio: Option<f64>,
}

impl Measurement {
    /// Throughput in GiB/s of page data.
    pub fn gib_per_s(&self) -> f64 {
        4096.0 / self.ns_per_page / 1.073_741_824
    }
}

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct ProfileSettings {
    /// Distinct pages per mix (256 pages = 1 MiB: cache-resident, as pages
    /// just read by the migration thread are).
    pub pages: usize,
    /// Minimum time per repeat.
    pub min_time: Duration,
    /// Repeats (the fastest is kept).
    pub repeats: usize,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        ProfileSettings { pages: 256, min_time: Duration::from_millis(100), repeats: 5 }
    }
}

fn pages_of(kind: PageKind, n: usize) -> Vec<Page> {
    (0..n)
        .map(|i| {
            let mut p = [0u8; 4096];
            pagegen::fill(&mut p, kind, 1000 + i as u64);
            p
        })
        .collect()
}

/// Times `f` over all pages; returns the best ns per page.
fn time_per_page(s: &ProfileSettings, n: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..s.repeats.max(1) {
        let start = Instant::now();
        let mut iterations = 0u64;
        while iterations == 0 || start.elapsed() < s.min_time {
            f();
            iterations += 1;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / (iterations as f64 * n as f64));
    }
    best
}

/// Measures every stage on every mix.
pub fn measure(s: &ProfileSettings) -> Vec<Measurement> {
    let mut out = Vec::new();
    let mixes: Vec<(&'static str, Vec<Page>)> =
        PageKind::ALL.iter().map(|k| (k.name(), pages_of(*k, s.pages))).collect();
    let mut dst = vec![[0u8; 4096]; s.pages];
    for (mix, pages) in &mixes {
        let n = pages.len();
        let memcpy = time_per_page(s, n, || {
            for (d, p) in dst.iter_mut().zip(pages) {
                d.copy_from_slice(black_box(p));
            }
            black_box(&dst);
        });
        let mut push = |stage: &'static str, ns: f64, size_ratio: Option<f64>| {
            out.push(Measurement { stage, mix, ns_per_page: ns, vs_memcpy: memcpy / ns, size_ratio })
        };
        push("memcpy", memcpy, None);
        push("zero_check", time_per_page(s, n, || {
            for p in pages {
                black_box(is_zero_page(black_box(p)));
            }
        }), None);
        for (stage, algo) in [("hash_xxh3", HashAlgo::Xxh3_128), ("hash_blake3", HashAlgo::Blake3)] {
            push(stage, time_per_page(s, n, || {
                for p in pages {
                    black_box(hash_page(algo, black_box(p)));
                }
            }), None);
        }
        for (stage, dstage, codec) in [
            ("lz4_compress", "lz4_decompress", Codec::Lz4),
            ("zstd1_compress", "zstd1_decompress", Codec::Zstd { level: 1 }),
            ("zstd3_compress", "zstd3_decompress", Codec::Zstd { level: 3 }),
        ] {
            let mut c = PageCompressor::new(codec).expect("codec context");
            let mut buf = Vec::new();
            let compressed: Vec<Option<Vec<u8>>> = pages
                .iter()
                .map(|p| {
                    let smaller = c.compress(p, &mut buf).expect("compress");
                    smaller.then(|| buf.clone())
                })
                .collect();
            let sent: usize = compressed.iter().map(|c| c.as_ref().map_or(4096, |b| b.len())).sum();
            let ratio = sent as f64 / (4096.0 * n as f64);
            push(stage, time_per_page(s, n, || {
                for p in pages {
                    black_box(c.compress(black_box(p), &mut buf).expect("compress"));
                }
            }), Some(ratio));
            let kind = match codec {
                Codec::Lz4 => CodecKind::Lz4,
                Codec::Zstd { .. } => CodecKind::Zstd,
            };
            let mut d = PageDecompressor::new();
            let mut page = [0u8; 4096];
            let payloads: Vec<&Vec<u8>> = compressed.iter().flatten().collect();
            if !payloads.is_empty() {
                push(dstage, time_per_page(s, payloads.len(), || {
                    for b in &payloads {
                        d.decompress(kind, black_box(b), &mut page).expect("decompress");
                    }
                    black_box(&page);
                }), None);
            }
        }
    }
    // Dedup index lookups and inserts of precomputed hashes.
    let hashes: Vec<_> = mixes[1].1.iter().map(|p| hash_page(HashAlgo::Xxh3_128, p)).collect();
    let dedup = time_per_page(s, hashes.len(), || {
        let mut idx = DedupIndex::new();
        for h in &hashes {
            if idx.lookup(DomainId(0), *h, DedupScope::Vm).is_none() {
                idx.insert_sent(DomainId(0), *h);
            }
        }
        black_box(&idx);
    });
    out.push(Measurement { stage: "dedup_lookup", mix: "text", ns_per_page: dedup, vs_memcpy: f64::NAN, size_ratio: None });
    // XBZRLE on re-dirtied pages.
    for (mix, kind) in [("redirty-text", PageKind::Text), ("redirty-binary", PageKind::Binary)] {
        let old = pages_of(kind, s.pages);
        let new: Vec<Page> = old
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut q = *p;
                pagegen::redirty(&mut q, REDIRTY_FRACTION, i as u64);
                q
            })
            .collect();
        let changed: usize = old.iter().zip(&new).map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count()).sum();
        let mut buf = Vec::new();
        let deltas: Vec<Vec<u8>> = old
            .iter()
            .zip(&new)
            .map(|(a, b)| {
                assert!(xbzrle_encode(a, b, DEFAULT_DELTA_MAX_BYTES, &mut buf), "5% change fits a delta");
                buf.clone()
            })
            .collect();
        let bytes: usize = deltas.iter().map(Vec::len).sum();
        let memcpy = out.iter().find(|m| m.stage == "memcpy" && m.mix == kind.name()).map_or(f64::NAN, |m| m.ns_per_page);
        let enc = time_per_page(s, old.len(), || {
            for (a, b) in old.iter().zip(&new) {
                black_box(xbzrle_encode(black_box(a), black_box(b), DEFAULT_DELTA_MAX_BYTES, &mut buf));
            }
        });
        out.push(Measurement {
            stage: "xbzrle_encode",
            mix,
            ns_per_page: enc,
            vs_memcpy: memcpy / enc,
            size_ratio: Some(bytes as f64 / (4096.0 * old.len() as f64)),
        });
        out.push(Measurement {
            stage: "xbzrle_per_changed_byte",
            mix,
            ns_per_page: f64::NAN,
            vs_memcpy: f64::NAN,
            size_ratio: Some(bytes as f64 / changed.max(1) as f64),
        });
        let mut page = [0u8; 4096];
        let dec = time_per_page(s, old.len(), || {
            for (a, d) in old.iter().zip(&deltas) {
                page.copy_from_slice(a);
                xbzrle_apply(&mut page, black_box(d)).expect("delta applies");
            }
            black_box(&page);
        });
        out.push(Measurement { stage: "xbzrle_decode", mix, ns_per_page: dec, vs_memcpy: memcpy / dec, size_ratio: None });
    }
    out
}

fn find(ms: &[Measurement], stage: &str, mix: &str) -> Option<f64> {
    ms.iter().find(|m| m.stage == stage && m.mix == mix).map(|m| m.ns_per_page)
}

fn ratio(ms: &[Measurement], stage: &str, mix: &str) -> Option<f64> {
    ms.iter().find(|m| m.stage == stage && m.mix == mix).and_then(|m| m.size_ratio)
}

/// Mean of a stage over the "typical content" mixes (text and binary).
fn typical(ms: &[Measurement], stage: &str) -> f64 {
    let v: Vec<f64> = ["text", "binary"].iter().filter_map(|mix| find(ms, stage, mix)).collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Builds the simulator's profile from measurements: costs are the means over
/// text-like and binary-like pages (typical non-zero memory), size factors the
/// ratios of the codecs' output sizes on those pages.
pub fn profile_from(ms: &[Measurement], machine: &str, command: &str) -> CpuProfile {
    let mean_ratio = |stage: &str| {
        let v: Vec<f64> = ["text", "binary"].iter().filter_map(|mix| ratio(ms, stage, mix)).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let redirty = |stage: &str| {
        let v: Vec<f64> = ["redirty-text", "redirty-binary"].iter().filter_map(|mix| find(ms, stage, mix)).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let per_changed = ["redirty-text", "redirty-binary"]
        .iter()
        .filter_map(|mix| ratio(ms, "xbzrle_per_changed_byte", mix))
        .sum::<f64>()
        / 2.0;
    let zstd1 = mean_ratio("zstd1_compress");
    CpuProfile {
        about: ProfileAbout { machine: machine.to_string(), command: command.to_string(), version: crate::VERSION.to_string() },
        ns_per_page: StageCosts {
            memcpy: typical(ms, "memcpy"),
            zero_check: typical(ms, "zero_check"),
            zero_check_zero_page: find(ms, "zero_check", "zero").unwrap_or(f64::NAN),
            hash_xxh3: typical(ms, "hash_xxh3"),
            hash_blake3: typical(ms, "hash_blake3"),
            dedup_lookup: find(ms, "dedup_lookup", "text").unwrap_or(f64::NAN),
            xbzrle_encode: redirty("xbzrle_encode"),
            xbzrle_decode: redirty("xbzrle_decode"),
            lz4_compress: typical(ms, "lz4_compress"),
            lz4_compress_incompressible: find(ms, "lz4_compress", "random").unwrap_or(f64::NAN),
            lz4_compress_zero_page: find(ms, "lz4_compress", "zero").unwrap_or(f64::NAN),
            lz4_decompress: typical(ms, "lz4_decompress"),
            zstd1_compress: typical(ms, "zstd1_compress"),
            zstd1_compress_incompressible: find(ms, "zstd1_compress", "random").unwrap_or(f64::NAN),
            zstd1_compress_zero_page: find(ms, "zstd1_compress", "zero").unwrap_or(f64::NAN),
            zstd1_decompress: typical(ms, "zstd1_decompress"),
            zstd3_compress: typical(ms, "zstd3_compress"),
            // Not measured here (no TLS stack in the simulator): the validator's figure.
            tls_encrypt: crate::reduction::profile::DEFAULT_TLS_ENCRYPT_NS,
            tls_decrypt: crate::reduction::profile::DEFAULT_TLS_DECRYPT_NS,
        },
        size_factor: SizeFactors {
            lz4: mean_ratio("lz4_compress") / zstd1,
            zstd3: mean_ratio("zstd3_compress") / zstd1,
            xbzrle_per_changed_byte: per_changed,
            lz4_zero_page_bytes: ratio(ms, "lz4_compress", "zero").unwrap_or(f64::NAN) * 4096.0,
            zstd_zero_page_bytes: ratio(ms, "zstd1_compress", "zero").unwrap_or(f64::NAN) * 4096.0,
        },
    }
}

/// The measurement table as text.
pub fn format_table(ms: &[Measurement]) -> String {
    let mut s = format!("{:<24} {:<15} {:>10} {:>9} {:>10} {:>10}\n", "stage", "mix", "ns_per_page", "GiB_per_s", "vs_memcpy", "size_ratio");
    for m in ms {
        let f = |v: f64, prec: usize| if v.is_finite() { format!("{v:.prec$}") } else { "-".to_string() };
        s += &format!(
            "{:<24} {:<15} {:>10} {:>9} {:>10} {:>10}\n",
            m.stage,
            m.mix,
            f(m.ns_per_page, 1),
            f(if m.ns_per_page.is_finite() { m.gib_per_s() } else { f64::NAN }, 2),
            f(m.vs_memcpy, 3),
            m.size_ratio.map_or("-".to_string(), |r| format!("{r:.3}"))
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_profile_is_complete_and_sensible() {
        let s = ProfileSettings { pages: 8, min_time: Duration::from_micros(200), repeats: 1 };
        let ms = measure(&s);
        let p = profile_from(&ms, "test", "test");
        let c = &p.ns_per_page;
        assert!(p.check().is_ok(), "{:?}", p.check());
        for v in [c.memcpy, c.zero_check, c.hash_xxh3, c.hash_blake3, c.dedup_lookup, c.xbzrle_encode, c.xbzrle_decode, c.lz4_compress, c.lz4_decompress, c.zstd1_compress, c.zstd1_decompress, c.zstd3_compress] {
            assert!(v.is_finite() && v > 0.0, "{c:?}");
        }
        // Random pages do not compress; text does.
        assert_eq!(ratio(&ms, "lz4_compress", "random"), Some(1.0));
        assert!(ratio(&ms, "zstd1_compress", "text").unwrap() < 0.6);
        // zstd compresses at least as well as lz4 on typical content.
        assert!(p.size_factor.lz4 >= 1.0, "{:?}", p.size_factor);
        // A 5% re-dirty costs a bit more than the changed bytes.
        assert!(p.size_factor.xbzrle_per_changed_byte > 1.0 && p.size_factor.xbzrle_per_changed_byte < 2.0);
        assert!(p.size_factor.lz4_zero_page_bytes < 64.0 && p.size_factor.zstd_zero_page_bytes < 64.0);
        // The profile survives its file format.
        let text = toml::to_string(&p).unwrap();
        let back: CpuProfile = toml::from_str(&text).unwrap();
        assert_eq!(back, p);
        assert!(format_table(&ms).lines().count() > 20);
    }
}
