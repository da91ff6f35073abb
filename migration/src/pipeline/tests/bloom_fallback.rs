//! A summary false positive never yields a wrong page.

use super::gen::{random_page, text_page};
use crate::pipeline::{
    exchange_batch, hash_page, BloomFilter, ContentStore, DecodeError, Decoder, DedupIndex, DomainId, Encoder,
    PipelineConfig, Record, PAGE_SIZE,
};
use std::collections::BTreeMap;

#[test]
fn a_summary_claiming_everything_falls_back_to_the_right_bytes() {
    let d = DomainId(3);
    let config = PipelineConfig { domain: d, ..PipelineConfig::new("zero+dedup-site+zstd".parse().unwrap()) };
    let mut encoder = Encoder::new(config).unwrap();
    let mut decoder = Decoder::new(config);
    let mut index = DedupIndex::new();
    // Every bit set: the summary claims every hash.
    index.set_site_summary(d, BloomFilter::from_words(vec![u64::MAX; 16], 1024, 4).unwrap());
    let mut store = ContentStore::new();

    let pages: BTreeMap<u64, Box<[u8; PAGE_SIZE]>> =
        (0..20u64).map(|i| (i, if i % 2 == 0 { text_page(i) } else { random_page(i) })).collect();
    let batch = encoder.encode_batch(&mut index, pages.iter().map(|(i, p)| (*i, &p[..]))).unwrap();
    assert!(batch.records.iter().all(|r| matches!(r.record, Record::Ref(_))), "every page became a reference");

    let ex =
        exchange_batch(&mut encoder, &mut index, &mut decoder, &mut store, &batch, |i| pages.get(&i).map(|p| &p[..]))
            .unwrap();
    assert_eq!(ex.missing.len(), 20);
    assert!(ex.missing.iter().all(|m| m.hash == hash_page(config.hash_algo, &pages[&m.page_index][..])));
    assert_eq!(ex.pages.len(), 20);
    for p in &ex.pages {
        assert_eq!(p.page, pages[&p.page_index], "page {}", p.page_index);
    }
    assert!(ex.fallback_wire_bytes > 0);
    // Counted on both sides.
    assert_eq!(encoder.stats().dedup_hits_site, 20);
    assert_eq!(encoder.stats().fallback.pages_resolved, 20);
    assert!(encoder.stats().fallback.bytes_out > 0);
    assert_eq!(decoder.stats().missing_refs, 20);
    assert_eq!(decoder.stats().fallback_applied, 20);

    // The content is now at the destination: re-sending it resolves.
    let again = encoder.encode_batch(&mut index, pages.iter().map(|(i, p)| (*i + 100, &p[..]))).unwrap();
    let ex = exchange_batch(&mut encoder, &mut index, &mut decoder, &mut store, &again, |_| None).unwrap();
    assert!(ex.missing.is_empty());
    assert!(ex.pages.iter().all(|p| p.page == pages[&(p.page_index - 100)]));
}

#[test]
fn a_missing_reference_writes_nothing_and_a_newer_record_supersedes_the_fallback() {
    let d = DomainId(0);
    let config = PipelineConfig::new("dedup-site".parse().unwrap());
    let mut decoder = Decoder::new(config);
    let mut store = ContentStore::new();
    let old = text_page(1);
    let new = random_page(2);
    let h = hash_page(config.hash_algo, &old[..]);

    let single = crate::pipeline::PageRecord { page_index: 9, record: Record::Ref(h) };
    assert!(
        matches!(decoder.decode_record(&mut store, &single), Err(DecodeError::MissingReference { page_index: 9, hash }) if hash == h)
    );

    // Ref(9) missing, then a newer Raw(9) in the same batch.
    let batch = crate::pipeline::Batch {
        fallback: false,
        records: vec![single.clone(), crate::pipeline::PageRecord { page_index: 9, record: Record::Raw(new.clone()) }],
    };
    let out = decoder.decode_batch(&mut store, &batch).unwrap();
    assert_eq!(out.missing.len(), 1);
    assert_eq!(out.pages.len(), 1);
    assert_eq!(out.pages[0].page, new);
    assert_eq!(decoder.pending().count(), 0);
    // The late fallback (old content) must not overwrite the newer page.
    let fb = crate::pipeline::Batch {
        fallback: true,
        records: vec![crate::pipeline::PageRecord { page_index: 9, record: Record::Raw(old.clone()) }],
    };
    let out = decoder.decode_batch(&mut store, &fb).unwrap();
    assert!(out.pages.is_empty());
    assert_eq!(decoder.stats().fallback_superseded, 1);
    // But its content is now held.
    assert!(store.contains(d, h));

    // A fallback cannot carry a reference.
    let bad = crate::pipeline::Batch { fallback: true, records: vec![single] };
    assert!(matches!(
        decoder.decode_batch(&mut store, &bad),
        Err(DecodeError::InvalidFallbackRecord { page_index: 9, kind: "ref" })
    ));
}
