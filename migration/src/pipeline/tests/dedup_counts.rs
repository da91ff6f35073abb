//! Dedup on inputs of known structure: exact reference counts per scope, and
//! no reference across domains.

use super::gen::{random_page, SplitMix};
use super::harness::{Fleet, Site};
use crate::pipeline::{
    hash_page, BloomFilter, ContentStore, DecodeError, Decoder, DedupIndex, DomainId, Encoder, HashAlgo, Page,
    PageRecord, PipelineConfig, Record,
};
use std::collections::BTreeSet;

fn pages(seed: u64, n: usize) -> Vec<Box<Page>> {
    (0..n as u64).map(|i| random_page(seed + i)).collect()
}

fn shuffled(mut v: Vec<Box<Page>>, seed: u64) -> Vec<Box<Page>> {
    let mut rng = SplitMix(seed);
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

struct World {
    a: Vec<Box<Page>>,
    b: Vec<Box<Page>>,
    c: Vec<Box<Page>>,
    site: Vec<Box<Page>>,
}

/// - VM A (domain 1): 60 unique pages and 10 distinct pages present 4 times
///   each: 100 pages, 30 of them copies.
/// - VM B (domain 1): 20 of A's unique pages and 30 of its own: 50 pages.
/// - The destination site holds 15 of B's own pages (domain 1).
/// - VM C (domain 2): 10 of A's pages, 10 of the site's pages, 15 unique pages
///   and 5 copies of those: 40 pages.
fn world() -> World {
    let ua = pages(10_000, 60);
    let d = pages(20_000, 10);
    let ub = pages(30_000, 30);
    let uc = pages(40_000, 15);
    let mut a = ua.clone();
    for _ in 0..4 {
        a.extend(d.iter().cloned());
    }
    let mut b: Vec<_> = ua[..20].to_vec();
    b.extend(ub.iter().cloned());
    let mut c: Vec<_> = ua[20..30].to_vec();
    c.extend(ub[..10].iter().cloned());
    c.extend(uc.iter().cloned());
    c.extend(uc[..5].iter().cloned());
    World { a: shuffled(a, 1), b: shuffled(b, 2), c: shuffled(c, 3), site: ub[..15].to_vec() }
}

/// Sends A, then B, then C, 25 pages per batch; returns each VM's
/// (references, missing references).
fn migrate(strategy: &str, site: Site) -> [(u64, u64); 3] {
    let w = world();
    let mut fleet =
        Fleet::new(strategy.parse().unwrap(), HashAlgo::Xxh3_128, 64, &[DomainId(1), DomainId(1), DomainId(2)], &site);
    for (vm, vm_pages) in [&w.a, &w.b, &w.c].into_iter().enumerate() {
        let indexed: Vec<(u64, Box<Page>)> = vm_pages.iter().cloned().enumerate().map(|(i, p)| (i as u64, p)).collect();
        for batch in indexed.chunks(25) {
            fleet.send(vm, batch);
        }
    }
    [0, 1, 2].map(|vm| (fleet.report(vm).refs, fleet.report(vm).missing))
}

#[test]
fn reference_counts_match_the_structure_for_each_scope() {
    let site = || Site::Exact { domain: DomainId(1), pages: world().site };
    assert_eq!(migrate("zero+dedup-vm+lz4", site()), [(30, 0), (0, 0), (5, 0)]);
    assert_eq!(migrate("zero+dedup-gang+lz4", site()), [(30, 0), (20, 0), (5, 0)]);
    assert_eq!(migrate("zero+dedup-site+lz4", site()), [(30, 0), (35, 0), (5, 0)]);
    // Without site content, site scope is gang scope.
    assert_eq!(migrate("zero+dedup-site+lz4", Site::Empty), [(30, 0), (20, 0), (5, 0)]);
}

#[test]
fn a_site_summary_refers_to_what_it_claims_and_repairs_false_positives() {
    let w = world();
    for (bits, hashes) in [(10, 7), (1, 1)] {
        // The summary the harness builds, queried directly to predict refs.
        let mut summary = BloomFilter::new(w.site.len() as u64, bits, hashes).unwrap();
        for p in &w.site {
            summary.insert(hash_page(HashAlgo::Xxh3_128, &p[..]));
        }
        let mut seen = BTreeSet::new();
        let mut expected = [0u64; 2];
        let mut false_positives = 0;
        for (vm, vm_pages) in [&w.a, &w.b].into_iter().enumerate() {
            for p in vm_pages {
                let h = hash_page(HashAlgo::Xxh3_128, &p[..]);
                let claimed = summary.contains(h);
                if seen.contains(&h) || claimed {
                    expected[vm] += 1;
                }
                if claimed && !seen.contains(&h) && !w.site.contains(p) {
                    false_positives += 1;
                }
                seen.insert(h);
            }
        }
        let site = Site::Summary {
            domain: DomainId(1),
            summarized: w.site.clone(),
            held: w.site.clone(),
            bits_per_item: bits,
            hash_count: hashes,
        };
        let [a, b, c] = migrate("zero+dedup-site+zstd", site);
        assert_eq!((a.0, b.0, c), (expected[0], expected[1], (5, 0)), "bits {bits}, hashes {hashes}");
        // Each false positive was reported missing (copies of its page sent in
        // the same batch are missing too) and repaired by the harness's checks.
        assert!(a.1 + b.1 >= false_positives);
        assert!(expected[0] >= 30 && expected[1] >= 35);
        if bits == 1 {
            assert!(false_positives > 0, "a one-bit-per-item summary should yield false positives");
        }
    }
}

#[test]
fn a_reference_never_resolves_in_another_domain() {
    let page = random_page(5);
    let (one, two) = (DomainId(1), DomainId(2));
    let mut store = ContentStore::new();
    let h = store.insert_page(one, HashAlgo::Xxh3_128, &page);
    // A (wrong) index entry in domain 2 makes an encoder of domain 2 refer to it...
    let mut index = DedupIndex::new();
    index.insert_sent(two, h);
    let config = PipelineConfig { domain: two, ..PipelineConfig::new("dedup-gang".parse().unwrap()) };
    let mut encoder = Encoder::new(config).unwrap();
    let record = encoder.encode_page(&mut index, 0, &page[..]).unwrap();
    assert_eq!(record.record, Record::Ref(h));
    // ...but the destination, holding it only in domain 1, reports it missing.
    let mut decoder = Decoder::new(config);
    assert!(
        matches!(decoder.decode_record(&mut store, &record), Err(DecodeError::MissingReference { page_index: 0, hash }) if hash == h)
    );
    // In domain 1 it resolves.
    let mut decoder = Decoder::new(PipelineConfig { domain: one, ..config });
    let rec = PageRecord { page_index: 0, record: Record::Ref(hash_page(HashAlgo::Xxh3_128, &page[..])) };
    assert_eq!(decoder.decode_record(&mut store, &rec).unwrap(), page);
}
