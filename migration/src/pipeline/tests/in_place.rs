//! Decoding straight into the destination's memory ([`PageTarget`]) gives
//! exactly what decoding into owned pages gives, over several rounds of
//! every kind of record.

use super::gen::{mutate, random_page, text_page};
use crate::pipeline::{
    BloomFilter, ContentStore, DecodeError, Decoder, DedupIndex, DomainId, Encoder, Page, PageTarget, PipelineConfig,
    Record, PAGE_SIZE,
};

/// Guest memory of `pages` pages, recording every page written.
struct Memory {
    pages: Vec<Page>,
    written: Vec<u64>,
}

impl PageTarget for Memory {
    fn page_mut(&mut self, page_index: u64) -> Option<&mut Page> {
        self.pages.get_mut(page_index as usize)
    }

    fn written(&mut self, page_index: u64) {
        self.written.push(page_index);
    }
}

/// Round `r`'s content of page `i`: zero, text, random, or a small change
/// of the previous round's, so that every stage resolves some pages.
fn content(i: u64, r: u64, prev: &Page) -> Box<Page> {
    match (i + r) % 5 {
        0 => Box::new([0u8; PAGE_SIZE]),
        1 => text_page(i % 3),
        2 => random_page(i * 100 + r),
        _ => mutate(prev, i * 7 + r, 5),
    }
}

#[test]
fn in_place_decoding_equals_owned_decoding_over_rounds() {
    for strategy in ["none", "zero+lz4", "zero+xbzrle+lz4", "zero+dedup-vm+xbzrle+zstd", "zstd"] {
        let config = PipelineConfig::new(strategy.parse().unwrap());
        let mut encoder = Encoder::new(config).unwrap();
        let mut index = DedupIndex::new();
        let (mut owned, mut in_place) = (Decoder::new(config), Decoder::new(config));
        let (mut store_a, mut store_b) = (ContentStore::new(), ContentStore::new());
        let n = 40u64;
        let mut source: Vec<Box<Page>> = (0..n).map(|_| Box::new([0u8; PAGE_SIZE])).collect();
        // The destination's memory starts as garbage: every page must be rewritten.
        let mut memory = Memory { pages: vec![[0xA5; PAGE_SIZE]; n as usize], written: Vec::new() };
        let mut mirror = memory.pages.clone();
        let mut kinds = [0usize; 5];
        for round in 0..4u64 {
            // Round 0 sends every page; later rounds a changing subset.
            let sent: Vec<u64> = (0..n).filter(|i| round == 0 || (i + round) % 3 != 0).collect();
            for &i in &sent {
                source[i as usize] = content(i, round, &source[i as usize]);
            }
            let batch = encoder.encode_batch(&mut index, sent.iter().map(|&i| (i, &source[i as usize][..]))).unwrap();
            for r in &batch.records {
                kinds[r.record.stage() as usize] += 1;
            }
            let wire = batch.to_wire().unwrap();
            let decoded = owned.decode_wire(&mut store_a, &wire).unwrap();
            for p in &decoded.pages {
                mirror[p.page_index as usize] = *p.page;
            }
            memory.written.clear();
            let missing = in_place.decode_wire_into(&mut store_b, &wire, &mut memory).unwrap();
            assert!(missing.is_empty() && decoded.missing.is_empty());
            assert_eq!(memory.written, sent, "{strategy} round {round}: every page written once, in order");
            for i in 0..n as usize {
                assert_eq!(memory.pages[i], mirror[i], "{strategy} round {round} page {i}");
                if round == 0 || sent.contains(&(i as u64)) {
                    assert_eq!(memory.pages[i], *source[i], "{strategy} round {round} page {i} equals the source");
                }
            }
            assert_eq!(owned.delta_cache(), in_place.delta_cache(), "{strategy}: caches in step");
            assert_eq!(owned.stats(), in_place.stats());
        }
        if strategy == "zero+dedup-vm+xbzrle+zstd" {
            assert!(kinds.iter().all(|&k| k > 0), "every stage resolved pages: {kinds:?}");
        }
    }
}

#[test]
fn a_page_outside_the_target_is_an_error() {
    let config = PipelineConfig::new("zero+lz4".parse().unwrap());
    let mut encoder = Encoder::new(config).unwrap();
    let batch = encoder.encode_batch(&mut DedupIndex::new(), [(7u64, &random_page(1)[..])]).unwrap();
    let mut memory = Memory { pages: vec![[0; PAGE_SIZE]; 7], written: Vec::new() };
    let err = Decoder::new(config).decode_wire_into(&mut ContentStore::new(), &batch.to_wire().unwrap(), &mut memory);
    assert!(matches!(err, Err(DecodeError::OutsideTarget { page_index: 7 })), "{err:?}");
    assert!(memory.written.is_empty());
}

#[test]
fn an_unresolved_reference_leaves_the_page_untouched_until_its_fallback() {
    let d = DomainId(1);
    let config = PipelineConfig { domain: d, ..PipelineConfig::new("zero+dedup-site+lz4".parse().unwrap()) };
    let mut encoder = Encoder::new(config).unwrap();
    let mut index = DedupIndex::new();
    index.set_site_summary(d, BloomFilter::from_words(vec![u64::MAX; 16], 1024, 4).unwrap());
    let page = random_page(9);
    let batch = encoder.encode_batch(&mut index, [(2u64, &page[..])]).unwrap();
    assert!(matches!(batch.records[0].record, Record::Ref(_)));
    let mut memory = Memory { pages: vec![[0x11; PAGE_SIZE]; 4], written: Vec::new() };
    let mut decoder = Decoder::new(config);
    let mut store = ContentStore::new();
    let missing = decoder.decode_wire_into(&mut store, &batch.to_wire().unwrap(), &mut memory).unwrap();
    assert_eq!(missing.len(), 1);
    assert!(memory.written.is_empty() && memory.pages[2] == [0x11; PAGE_SIZE], "nothing written for it");
    let fallback = encoder.resolve_missing(&mut index, &missing, |i| (i == 2).then_some(&page[..])).unwrap();
    decoder.decode_wire_into(&mut store, &fallback.to_wire().unwrap(), &mut memory).unwrap();
    assert_eq!(memory.written, vec![2]);
    assert_eq!(memory.pages[2], *page);
    // A second fallback for the same page is superseded: not written again.
    decoder.decode_wire_into(&mut store, &fallback.to_wire().unwrap(), &mut memory).unwrap();
    assert_eq!(memory.written, vec![2]);
    assert_eq!(decoder.stats().fallback_superseded, 1);
}
