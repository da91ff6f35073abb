//! Delta encoding inside the encoder/decoder pair.

use super::gen::{mutate, random_page, text_page};
use crate::pipeline::{ContentStore, Decoder, DedupIndex, Encoder, Page, PipelineConfig, Record, PAGE_SIZE};
use crate::PAGE_HEADER_BYTES;

struct Pair {
    encoder: Encoder,
    decoder: Decoder,
    index: DedupIndex,
    store: ContentStore,
}

impl Pair {
    fn new(strategy: &str, cache_pages: usize, delta_max_bytes: usize) -> Pair {
        let config = PipelineConfig {
            delta_cache_pages: cache_pages,
            delta_max_bytes,
            ..PipelineConfig::new(strategy.parse().unwrap())
        };
        Pair {
            encoder: Encoder::new(config).unwrap(),
            decoder: Decoder::new(config),
            index: DedupIndex::new(),
            store: ContentStore::new(),
        }
    }

    /// Sends one page through the wire and checks it arrives intact.
    fn send(&mut self, page_index: u64, page: &Page) -> Record {
        let batch = self.encoder.encode_batch(&mut self.index, [(page_index, &page[..])]).unwrap();
        let out = self.decoder.decode_wire(&mut self.store, &batch.to_wire().unwrap()).unwrap();
        assert_eq!(out.pages.len(), 1);
        assert_eq!(*out.pages[0].page, *page);
        assert_eq!(self.encoder.delta_cache(), self.decoder.delta_cache());
        batch.records[0].record.clone()
    }
}

#[test]
fn k_changed_bytes_cost_about_k() {
    for k in [1, 2, 10, 100, 1000] {
        let mut pair = Pair::new("zero+xbzrle+zstd", 16, PAGE_SIZE - 1);
        let base = random_page(1);
        assert!(matches!(pair.send(5, &base), Record::Raw(_)));
        let mut changed = base.clone();
        for b in &mut changed[1000..1000 + k] {
            *b ^= 0x5A;
        }
        let Record::Delta(d) = pair.send(5, &changed) else { panic!("k={k}: not a delta") };
        // Zero run 1000 (2 bytes), length (1-2 bytes), then the k bytes.
        assert!(d.len() >= k && d.len() <= k + 4, "k={k}: {} bytes", d.len());
        let stats = pair.encoder.stats();
        assert_eq!(stats.delta.pages_resolved, 1);
        assert_eq!(stats.delta.bytes_out, PAGE_HEADER_BYTES + d.len() as u64);
        assert_eq!(stats.delta_cache_hits, 1);
    }
}

#[test]
fn scattered_changes_cost_a_few_bytes_each() {
    let mut pair = Pair::new("zero+xbzrle", 16, PAGE_SIZE - 1);
    let base = text_page(3);
    pair.send(0, &base);
    let mut changed = base.clone();
    for i in (0..PAGE_SIZE).step_by(100) {
        changed[i] ^= 1;
    }
    let Record::Delta(d) = pair.send(0, &changed) else { panic!("not a delta") };
    let k = PAGE_SIZE.div_ceil(100);
    assert!(d.len() <= 3 * k + 1, "{k} changes took {} bytes", d.len());
}

#[test]
fn eviction_makes_a_resend_fall_back_and_caches_stay_in_step() {
    let mut pair = Pair::new("zero+xbzrle+lz4", 2, PAGE_SIZE - 1);
    let pages: Vec<Box<Page>> = (0..3).map(text_page).collect();
    for (i, p) in pages.iter().enumerate() {
        assert!(matches!(pair.send(i as u64, p), Record::Compressed { .. }));
    }
    // Capacity 2, least recently sent first: page 0 was evicted.
    let cache: Vec<u64> = pair.encoder.delta_cache().unwrap().page_indexes().collect();
    assert_eq!(cache, vec![1, 2]);
    assert!(matches!(pair.send(0, &mutate(&pages[0], 1, 3)), Record::Compressed { .. }));
    // Page 0 is back, page 1 evicted; page 2 still gives a delta.
    assert!(matches!(pair.send(2, &mutate(&pages[2], 2, 3)), Record::Delta(_)));
    assert!(matches!(pair.send(1, &mutate(&pages[1], 3, 3)), Record::Compressed { .. }));
    assert_eq!(pair.decoder.delta_cache().unwrap().page_indexes().collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(pair.encoder.stats().delta.pages_in, 6);
    assert_eq!(pair.encoder.stats().delta_cache_hits, 1);
}

#[test]
fn a_delta_over_the_threshold_goes_to_the_next_stage() {
    let mut pair = Pair::new("zero+xbzrle", 16, 100);
    let base = random_page(9);
    pair.send(1, &base);
    let mut changed = base.clone();
    for b in &mut changed[..200] {
        *b ^= 0xFF;
    }
    assert!(matches!(pair.send(1, &changed), Record::Raw(_)));
    // The cache now holds the new content: a small change is a delta again.
    assert!(matches!(pair.send(1, &mutate(&changed, 4, 2)), Record::Delta(_)));
}

#[test]
fn zero_pages_and_references_leave_the_cache_alone() {
    let mut pair = Pair::new("zero+dedup-vm+xbzrle", 16, PAGE_SIZE - 1);
    let a = random_page(1);
    let b = random_page(2);
    pair.send(0, &a);
    pair.send(1, &b);
    assert!(matches!(pair.send(0, &[0u8; PAGE_SIZE]), Record::Zero));
    assert!(matches!(pair.send(0, &b), Record::Ref(_)));
    // Page 0's cached copy is still `a`: a small change to `a` is a delta against it.
    assert_eq!(pair.encoder.delta_cache().unwrap().get(0), Some(&*a));
    assert!(matches!(pair.send(0, &mutate(&a, 5, 1)), Record::Delta(_)));
}

#[test]
fn delta_max_beyond_a_page_is_refused() {
    use crate::pipeline::{EncodeError, Encoder, PipelineConfig};
    let mut cfg = PipelineConfig::new("zero+xbzrle".parse().unwrap());
    cfg.delta_max_bytes = 4097;
    assert!(matches!(Encoder::new(cfg), Err(EncodeError::DeltaMaxTooLarge(4097))));
    cfg.delta_max_bytes = 4096;
    assert!(Encoder::new(cfg).is_ok());
}
