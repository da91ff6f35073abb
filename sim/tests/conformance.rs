//! The two halves agree: the simulator's reduction model, given a workload
//! content mix and codec factors measured on the same pages, predicts the
//! bytes that the real pipeline (`memfabric_migration::pipeline`) puts on the
//! wire for a memory image built to that mix.

use memfabric_migration::pagegen::{self, PageKind};
use memfabric_migration::pipeline::{DedupIndex, Encoder, Page, PageCompressor, PipelineConfig};
use memfabric_migration::strategy::{Codec, Strategy};
use memfabric_migration::units::Fraction;
use memfabric_sim::reduction::profile::CpuProfile;
use memfabric_sim::reduction::{VmInputs, VmReduction};
use memfabric_sim::workload::archetype;

const PAGES: usize = 2048;
const ZERO: f64 = 0.25;
const DUP: f64 = 0.05;
const UNCHANGED: f64 = 0.3;
const CHANGE: f64 = 0.05;

/// A memory image: 25% zero pages, 5% copies of unique pages, the rest
/// distinct binary-like pages (in a shuffled but fixed order).
fn image() -> Vec<Page> {
    let zero = (PAGES as f64 * ZERO) as usize;
    let dup = (PAGES as f64 * DUP) as usize;
    let unique = PAGES - zero - dup;
    let mut pages: Vec<Page> = Vec::with_capacity(PAGES);
    for i in 0..unique {
        let mut p = [0u8; 4096];
        pagegen::fill(&mut p, PageKind::Binary, 77 + i as u64);
        pages.push(p);
    }
    for i in 0..dup {
        pages.push(pages[i * 7 % unique]);
    }
    pages.extend(std::iter::repeat_n([0u8; 4096], zero));
    // Interleave deterministically so zero and duplicate pages are spread out.
    let mut rng = pagegen::SplitMix64::new(5);
    for i in (1..pages.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        pages.swap(i, j);
    }
    pages
}

/// Mean and s.d. of the size fraction of unique pages under a codec.
fn ratio_stats(pages: &[Page], codec: Codec) -> (f64, f64) {
    let mut c = PageCompressor::new(codec).unwrap();
    let mut buf = Vec::new();
    let r: Vec<f64> = pages
        .iter()
        .filter(|p| p.iter().any(|&b| b != 0))
        .map(|p| if c.compress(p, &mut buf).unwrap() { buf.len() as f64 / 4096.0 } else { 1.0 })
        .collect();
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / r.len() as f64;
    (mean, var.sqrt())
}

fn model(strategy: &str, pages: &[Page]) -> (VmReduction, Strategy) {
    let (zstd_mean, zstd_sd) = ratio_stats(pages, Codec::Zstd { level: 1 });
    let (lz4_mean, _) = ratio_stats(pages, Codec::Lz4);
    let mut w = archetype::lookup("web").unwrap();
    w.content.zero = Fraction(ZERO);
    w.content.duplicate = Fraction(DUP);
    w.content.shared_image = Fraction(0.0);
    w.content.unique_compressed_mean = Fraction(zstd_mean);
    w.content.unique_compressed_sd = zstd_sd;
    w.redirty_unchanged = Fraction(UNCHANGED);
    w.redirty_change = Fraction(CHANGE);
    // Calibrate the codec factor on these pages, as `memfabric profile` does on its mixes.
    let mut profile = CpuProfile::builtin();
    profile.size_factor.lz4 = lz4_mean / zstd_mean;
    let strategy: Strategy = strategy.parse().unwrap();
    let inputs = VmInputs {
        workload: &w,
        has_image: false,
        working_set_pages: PAGES as u64,
        xbzrle_cache_pages: PAGES as u64,
        hash: Default::default(),
        site_false_positive_rate: 0.0,
        site_query: false,
    };
    (VmReduction::new(&strategy, inputs, &profile), strategy)
}

fn real_wire(strategy: Strategy, rounds: &[Round]) -> Vec<u64> {
    let mut enc = Encoder::new(PipelineConfig::new(strategy)).unwrap();
    let mut idx = DedupIndex::new();
    let mut out = Vec::new();
    for round in rounds {
        let before = enc.stats().wire_bytes();
        enc.encode_batch(&mut idx, round.iter().map(|(i, p)| (*i, &p[..]))).unwrap();
        out.push(enc.stats().wire_bytes() - before);
    }
    out
}

#[track_caller]
fn assert_close(got: f64, want: f64, rel: f64, what: &str) {
    let err = (got - want).abs() / want;
    assert!(err <= rel, "{what}: pipeline {got:.0} B, model {want:.0} B (error {:.1}% > {:.1}%)", err * 100.0, rel * 100.0);
}

#[test]
fn full_copy_bytes_match_the_pipeline() {
    let pages = image();
    let round: Vec<(u64, Page)> = pages.iter().enumerate().map(|(i, p)| (i as u64, *p)).collect();
    for s in ["none", "zero", "zero+lz4", "zero+zstd", "zero+dedup-vm", "zero+dedup-vm+zstd", "lz4"] {
        let (m, strategy) = model(s, &pages);
        let real = real_wire(strategy, std::slice::from_ref(&round))[0] as f64;
        assert_close(real, m.full_copy.wire_bytes * PAGES as f64, 0.03, s);
    }
}

/// The first transfer, and a second one of the non-zero pages: 30% unchanged,
/// the rest changed by `change` (`None`: rewritten with new content of the
/// same kind; `Some(f)`: a fraction `f` of 8-byte words overwritten at random).
/// Pages of one transfer round: (page index, content).
type Round = Vec<(u64, Page)>;

fn two_rounds(pages: &[Page], change: Option<f64>) -> (Round, Round) {
    let first: Vec<(u64, Page)> = pages.iter().enumerate().map(|(i, p)| (i as u64, *p)).collect();
    let mut rng = pagegen::SplitMix64::new(9);
    let second = first
        .iter()
        .filter(|(_, p)| p.iter().any(|&b| b != 0))
        .map(|(i, p)| {
            let mut q = *p;
            if rng.below(1000) as f64 >= UNCHANGED * 1000.0 {
                match change {
                    Some(f) => pagegen::redirty(&mut q, f, *i),
                    None => pagegen::fill(&mut q, PageKind::Binary, 1_000_000 + *i),
                }
            }
            (*i, q)
        })
        .collect();
    (first, second)
}

#[test]
fn small_rewrites_match_the_pipeline_with_xbzrle() {
    let pages = image();
    let (first, second) = two_rounds(&pages, Some(CHANGE));
    let n = second.len() as f64;
    for s in ["zero+xbzrle", "zero+xbzrle+zstd", "zero+dedup-vm+xbzrle"] {
        let (m, strategy) = model(s, &pages);
        let real = real_wire(strategy, &[first.clone(), second.clone()]);
        assert_close(real[1] as f64, m.resend.wire_bytes * n, 0.05, &format!("{s} re-send"));
    }
}

#[test]
fn rewritten_pages_match_the_pipeline_with_compression_and_dedup() {
    let pages = image();
    let (first, second) = two_rounds(&pages, None);
    let n = second.len() as f64;
    for s in ["zero+zstd", "zero+lz4", "zero+dedup-vm+zstd", "zero"] {
        let (m, strategy) = model(s, &pages);
        let real = real_wire(strategy, &[first.clone(), second.clone()]);
        // 5%: which pages change is a random draw, the model uses its expectation.
        assert_close(real[1] as f64, m.resend.wire_bytes * n, 0.05, &format!("{s} re-send"));
    }
}

/// A documented limit of the model: it assumes a re-dirtied page compresses
/// like the workload's pages, but small random rewrites make binary pages
/// compress worse. Measured here: the pipeline sends 15-30% more than the
/// model predicts for zero+dedup-vm+zstd (docs/model.md, "Data reduction").
#[test]
fn small_random_rewrites_compress_worse_than_the_model_assumes() {
    let pages = image();
    let (first, second) = two_rounds(&pages, Some(CHANGE));
    let (m, strategy) = model("zero+dedup-vm+zstd", &pages);
    let real = real_wire(strategy, &[first, second.clone()])[1] as f64;
    let predicted = m.resend.wire_bytes * second.len() as f64;
    let bias = real / predicted - 1.0;
    assert!((0.15..=0.30).contains(&bias), "bias {:.1}%", bias * 100.0);
}
