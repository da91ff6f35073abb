//! Criterion benchmarks of every reduction stage on each page mix, with memcpy
//! of the same pages in the same group as the physical reference.
//!
//! `cargo bench -p memfabric-migration` (throughput is reported per 4 KiB
//! pages processed; compare each stage with `memcpy` in its group). The
//! simulator's profile comes from `memfabric profile`, which measures the same
//! functions and prints ratios to memcpy directly.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use memfabric_migration::pagegen::{self, PageKind};
use memfabric_migration::pipeline::{
    hash_page, is_zero_page, xbzrle_apply, xbzrle_encode, HashAlgo, Page, PageCompressor, DEFAULT_DELTA_MAX_BYTES,
};
use memfabric_migration::strategy::Codec;

const PAGES: usize = 256;

fn pages(kind: PageKind) -> Vec<Page> {
    (0..PAGES)
        .map(|i| {
            let mut p = [0u8; 4096];
            pagegen::fill(&mut p, kind, i as u64);
            p
        })
        .collect()
}

fn stages(c: &mut Criterion) {
    for kind in PageKind::ALL {
        let input = pages(kind);
        let mut g = c.benchmark_group(format!("mix-{}", kind.name()));
        g.throughput(Throughput::Bytes((PAGES * 4096) as u64));
        let mut dst = vec![[0u8; 4096]; PAGES];
        g.bench_function("memcpy", |b| {
            b.iter(|| {
                for (d, p) in dst.iter_mut().zip(&input) {
                    d.copy_from_slice(black_box(p));
                }
            })
        });
        g.bench_function("zero_check", |b| b.iter(|| input.iter().filter(|p| is_zero_page(black_box(*p))).count()));
        for (name, algo) in [("xxh3_128", HashAlgo::Xxh3_128), ("blake3", HashAlgo::Blake3)] {
            g.bench_function(name, |b| b.iter(|| input.iter().map(|p| hash_page(algo, black_box(p)).0).fold(0, u128::wrapping_add)));
        }
        for (name, codec) in [("lz4", Codec::Lz4), ("zstd1", Codec::Zstd { level: 1 }), ("zstd3", Codec::Zstd { level: 3 })] {
            let mut comp = PageCompressor::new(codec).expect("codec");
            let mut out = Vec::new();
            g.bench_function(name, |b| {
                b.iter(|| {
                    for p in &input {
                        black_box(comp.compress(black_box(p), &mut out).expect("compress"));
                    }
                })
            });
        }
        g.finish();
    }
    let old = pages(PageKind::Binary);
    let new: Vec<Page> = old
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut q = *p;
            pagegen::redirty(&mut q, 0.05, i as u64);
            q
        })
        .collect();
    let mut g = c.benchmark_group("mix-redirty-5pct");
    g.throughput(Throughput::Bytes((PAGES * 4096) as u64));
    let mut buf = Vec::new();
    g.bench_function("xbzrle_encode", |b| {
        b.iter(|| {
            for (a, n) in old.iter().zip(&new) {
                black_box(xbzrle_encode(a, black_box(n), DEFAULT_DELTA_MAX_BYTES, &mut buf));
            }
        })
    });
    let deltas: Vec<Vec<u8>> = old
        .iter()
        .zip(&new)
        .map(|(a, n)| {
            xbzrle_encode(a, n, DEFAULT_DELTA_MAX_BYTES, &mut buf);
            buf.clone()
        })
        .collect();
    let mut page = [0u8; 4096];
    g.bench_function("xbzrle_decode", |b| {
        b.iter(|| {
            for (a, d) in old.iter().zip(&deltas) {
                page.copy_from_slice(a);
                xbzrle_apply(&mut page, black_box(d)).expect("applies");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
