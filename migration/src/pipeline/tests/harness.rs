//! A fleet of VMs migrating through encoder → wire → decoder pairs, checked
//! after every batch.

use crate::pipeline::{
    exchange_batch, hash_page, BloomFilter, ContentHash, ContentStore, Decoder, DecoderStats, DedupIndex, DomainId,
    Encoder, HashAlgo, MissingReference, Page, PipelineConfig, PipelineStats, Record,
};
use crate::strategy::{DedupScope, Strategy};
use std::collections::{BTreeMap, BTreeSet};

/// Content the destination site holds before the migration.
#[derive(Debug, Clone, Default)]
pub(super) enum Site {
    /// Nothing (or the scope is not `site`).
    #[default]
    Empty,
    /// These pages, in `domain`, known exactly to the source.
    Exact { domain: DomainId, pages: Vec<Box<Page>> },
    /// The source has a Bloom summary of `summarized`; the destination holds
    /// only `held`. Summarized pages not held are false positives by
    /// construction; the filter's own rate adds more.
    Summary { domain: DomainId, summarized: Vec<Box<Page>>, held: Vec<Box<Page>>, bits_per_item: u32, hash_count: u32 },
}

/// Per-VM results.
#[derive(Debug, Clone, Default)]
pub(super) struct VmReport {
    /// Ref records emitted.
    pub refs: u64,
    /// References reported missing and answered by a fallback.
    pub missing: u64,
    /// Records emitted, in order.
    pub records: u64,
    /// Encoder counters.
    pub encoder: PipelineStats,
    /// Decoder counters.
    pub decoder: DecoderStats,
}

/// VMs migrating together to one destination.
pub(super) struct Fleet {
    encoders: Vec<Encoder>,
    decoders: Vec<Decoder>,
    indexes: Vec<DedupIndex>,
    stores: Vec<ContentStore>,
    /// Which index and store each VM uses.
    slot: Vec<usize>,
    memory: Vec<BTreeMap<u64, Box<Page>>>,
    dest: Vec<BTreeMap<u64, Box<Page>>>,
    /// Content each domain's destination may legitimately reference.
    known: BTreeMap<DomainId, BTreeSet<ContentHash>>,
    /// Domains whose references may come from a summary (and so may be
    /// false positives).
    summarized: BTreeSet<DomainId>,
    reports: Vec<VmReport>,
}

impl Fleet {
    /// One VM per entry of `domains`. Scopes `gang` and `site` share one
    /// index and one store; other strategies give each VM its own.
    pub(super) fn new(
        strategy: Strategy,
        hash_algo: HashAlgo,
        delta_cache_pages: usize,
        domains: &[DomainId],
        site: &Site,
    ) -> Fleet {
        let shared = matches!(strategy.dedup, Some(DedupScope::Gang | DedupScope::Site));
        let slots = if shared { 1 } else { domains.len() };
        let mut indexes = vec![DedupIndex::new(); slots];
        let mut stores = vec![ContentStore::new(); slots];
        let mut known: BTreeMap<DomainId, BTreeSet<ContentHash>> = BTreeMap::new();
        let mut summarized_domains = BTreeSet::new();
        // Site content is given to every dedup scope: scopes other than
        // `site` must ignore it.
        if strategy.dedup.is_some() {
            for (index, store) in indexes.iter_mut().zip(&mut stores) {
                match site {
                    Site::Empty => {}
                    Site::Exact { domain, pages } => {
                        for p in pages {
                            let h = store.insert_page(*domain, hash_algo, p);
                            index.insert_resident(*domain, h);
                            known.entry(*domain).or_default().insert(h);
                        }
                    }
                    Site::Summary { domain, summarized, held, bits_per_item, hash_count } => {
                        let mut summary =
                            BloomFilter::new(summarized.len() as u64, *bits_per_item, *hash_count).unwrap();
                        for p in summarized.iter() {
                            summary.insert(hash_page(hash_algo, &p[..]));
                        }
                        for p in held {
                            let h = store.insert_page(*domain, hash_algo, p);
                            known.entry(*domain).or_default().insert(h);
                        }
                        index.set_site_summary(*domain, summary);
                        summarized_domains.insert(*domain);
                    }
                }
            }
        }
        let mut encoders = Vec::new();
        let mut decoders = Vec::new();
        for &domain in domains {
            let config = PipelineConfig { hash_algo, domain, delta_cache_pages, ..PipelineConfig::new(strategy) };
            encoders.push(Encoder::new(config).unwrap());
            decoders.push(Decoder::new(config));
        }
        let n = domains.len();
        Fleet {
            encoders,
            decoders,
            indexes,
            stores,
            slot: (0..n).map(|vm| if shared { 0 } else { vm }).collect(),
            memory: vec![BTreeMap::new(); n],
            dest: vec![BTreeMap::new(); n],
            known,
            summarized: summarized_domains,
            reports: vec![VmReport::default(); n],
        }
    }

    /// VM `vm` writes `pages` (in order) and sends them as one batch; checks
    /// that the destination then equals the source, that every reference
    /// names content of the VM's own domain (or a summary false positive,
    /// which must have been reported missing), and that the delta caches of
    /// both ends are equal.
    pub(super) fn send(&mut self, vm: usize, pages: &[(u64, Box<Page>)]) {
        let s = self.slot[vm];
        let domain = self.encoders[vm].config().domain;
        let algo = self.encoders[vm].config().hash_algo;
        for (i, p) in pages {
            self.memory[vm].insert(*i, p.clone());
        }
        let batch =
            self.encoders[vm].encode_batch(&mut self.indexes[s], pages.iter().map(|(i, p)| (*i, &p[..]))).unwrap();
        assert_eq!(batch.records.len(), pages.len());
        let mut unheld = Vec::new();
        for (r, (_, p)) in batch.records.iter().zip(pages) {
            let h = hash_page(algo, &p[..]);
            if let Record::Ref(hash) = r.record {
                assert_eq!(hash, h, "a reference names the page's own hash");
                let known = self.known.get(&domain).is_some_and(|k| k.contains(&hash));
                assert!(
                    known || self.summarized.contains(&domain),
                    "page {} references content foreign to {domain:?}",
                    r.page_index
                );
                if !known {
                    unheld.push(MissingReference { page_index: r.page_index, hash });
                }
                self.reports[vm].refs += 1;
            } else if !matches!(r.record, Record::Zero) {
                self.known.entry(domain).or_default().insert(h);
            }
        }
        let memory = &self.memory[vm];
        let ex = exchange_batch(
            &mut self.encoders[vm],
            &mut self.indexes[s],
            &mut self.decoders[vm],
            &mut self.stores[s],
            &batch,
            |i| memory.get(&i).map(|p| &p[..]),
        )
        .unwrap();
        for m in &unheld {
            assert!(ex.missing.contains(m), "a reference to unheld content is not reported missing: {m:?}");
        }
        assert_eq!(ex.fallback_wire_bytes > 0, !ex.missing.is_empty());
        // The fallback delivered the current content of those pages.
        for m in &ex.missing {
            let h = hash_page(algo, &memory[&m.page_index][..]);
            self.known.entry(domain).or_default().insert(h);
        }
        for p in ex.pages {
            self.dest[vm].insert(p.page_index, p.page);
        }
        assert_eq!(self.dest[vm], self.memory[vm], "destination of VM {vm} differs from its source");
        assert_eq!(self.decoders[vm].pending().count(), 0);
        assert_eq!(self.encoders[vm].delta_cache(), self.decoders[vm].delta_cache(), "delta caches out of step");
        let report = &mut self.reports[vm];
        report.missing += ex.missing.len() as u64;
        report.records += batch.records.len() as u64;
        report.encoder = *self.encoders[vm].stats();
        report.decoder = *self.decoders[vm].stats();
        // Statistics agree with the records.
        assert_eq!(report.encoder.pages(), report.records);
        assert_eq!(report.encoder.dedup.pages_resolved, report.refs);
        assert_eq!(report.encoder.fallback.pages_resolved, report.missing);
        assert_eq!(report.decoder.missing_refs, report.missing);
        assert_eq!(report.decoder.fallback_applied + report.decoder.fallback_superseded, report.missing);
    }

    /// Results of VM `vm`.
    pub(super) fn report(&self, vm: usize) -> &VmReport {
        &self.reports[vm]
    }
}
