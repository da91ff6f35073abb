//! What the source and destination VMMs do for a site, called from
//! [`crate::migrate::source`] and [`crate::migrate::dest`] at a few points:
//!
//! ```text
//! source                                         destination
//!   | -- Hello {.., site: {guest, domain, index}} -> |
//!   | <-------------------------------- HelloAck --- |
//!   | <------------ SiteSummary (index = summary) -- |  Bloom filter of the
//!   |                                                |  resident pages (domain)
//!   |  per batch (index = query):                    |
//!   | -- IndexQuery [hashes not known yet] --------> |
//!   | <------------------- IndexReply [bits] ------- |
//!   | -- Pages (may hold Refs) --------------------> |  a Ref the store lacks
//!   |  ...                                           |  is kept unresolved
//!   |  after a round's / the stop-and-copy's pages:  |
//!   | -- ResolveRefs ------------------------------> |  unresolved: now in the
//!   | <-------- MissingRefs [(page, hash)] --------- |  store (another guest's
//!   | -- Pages (fallback: the pages themselves) ---> |  stream)? else missing
//! ```
//!
//! A `Ref` can reach the destination before its content: guest B references
//! content guest A sent, and A's frame is still on its way over A's own
//! connection; or a summary claimed content the site lacks (a false positive
//! or a corrupted summary), or a query reply lied. The destination never
//! writes anything for such a page until it has the content under the hash
//! it computed itself ([`ContentStore`]), and the exchange after each round
//! (and before the switchover) gets every page still missing from the
//! source: the integrity check at switchover then compares every page.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use memfabric_migration::pipeline::{
    hash_page, is_zero_page, BloomFilter, ContentHash, Decoder, Encoder, MissingReference, PageTarget, PipelineConfig,
    DEFAULT_BLOOM_BITS_PER_ITEM, DEFAULT_BLOOM_HASH_COUNT, PAGE_SIZE,
};
use memfabric_migration::strategy::{DedupScope, Strategy};

use super::{lock, protocol, DestSite, SiteHello, SiteIndexMode, SourceSite};
use crate::kvm::GuestRam;
use crate::migrate::wire::{FrameReader, FrameWriter, Kind};
use crate::migrate::{Abort, PageHashes};

/// Receives the next frame, which must be `kind` (an `Abort` gives its reason).
fn expect<R: Read>(reader: &mut FrameReader<R>, kind: Kind) -> Result<Vec<u8>, String> {
    let f = reader.recv().map_err(|e| format!("waiting for {kind:?}: {e}"))?;
    if f.kind == Kind::Abort {
        let a: Abort = serde_json::from_slice(&f.payload).unwrap_or(Abort { reason: "(unreadable)".into() });
        return Err(format!("the peer aborted: {}", a.reason));
    }
    if f.kind != kind {
        return Err(format!("expected {kind:?}, got {:?}", f.kind));
    }
    Ok(f.payload)
}

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {}", crate::migrate::source::describe_io(&e))
}

/// The pipeline of a guest of a site: the strategy in the guest's domain.
pub fn pipeline(strategy: Strategy, hello: Option<&SiteHello>) -> PipelineConfig {
    PipelineConfig { domain: memfabric_migration::pipeline::DomainId(hello.map_or(0, |h| h.domain)), ..PipelineConfig::new(strategy) }
}

/// Whether a stream with this strategy can carry references the
/// destination cannot resolve on arrival (gang or site scope on a site).
fn needs_resolve(strategy: Strategy, hello: Option<&SiteHello>) -> bool {
    hello.is_some() && matches!(strategy.dedup, Some(DedupScope::Gang | DedupScope::Site))
}

/// Source, after `HelloAck`: with `site_index = summary`, receives the
/// site's Bloom summary of the guest's domain.
pub fn source_after_ack<R: Read>(site: &SourceSite, strategy: Strategy, reader: &mut FrameReader<R>) -> Result<(), String> {
    if strategy.dedup != Some(DedupScope::Site) || site.hello.as_ref().and_then(|h| h.index) != Some(SiteIndexMode::Summary) {
        return Ok(());
    }
    let before = reader.bytes;
    let payload = expect(reader, Kind::SiteSummary)?;
    let summary = protocol::decode_summary(&payload).map_err(|e| e.to_string())?;
    lock(&site.index).set_site_summary(site.domain(), summary);
    lock(&site.stats).summary_bytes += reader.bytes - before;
    Ok(())
}

/// Source, before encoding the batch of `pages` (`site_index = query`):
/// asks the destination which of their contents it holds, for the hashes
/// the index does not know yet, and records the answer in the index.
pub fn source_query<R: Read, W: Write>(
    site: &SourceSite,
    encoder: &Encoder,
    ram: &GuestRam,
    pages: &[u64],
    writer: &mut FrameWriter<W>,
    reader: &mut FrameReader<R>,
) -> Result<(), String> {
    let config = encoder.config();
    if config.strategy.dedup != Some(DedupScope::Site) || site.hello.as_ref().and_then(|h| h.index) != Some(SiteIndexMode::Query) {
        return Ok(());
    }
    let domain = site.domain();
    let mut page = [0u8; PAGE_SIZE];
    let mut hashes: Vec<ContentHash> = Vec::with_capacity(pages.len());
    for &p in pages {
        ram.read_page(p, &mut page);
        if !(config.strategy.zero && is_zero_page(&page)) {
            hashes.push(hash_page(config.hash_algo, &page));
        }
    }
    hashes.sort_unstable();
    hashes.dedup();
    {
        let index = lock(&site.index);
        hashes.retain(|h| index.lookup(domain, *h, DedupScope::Site).is_none());
    }
    if hashes.is_empty() {
        return Ok(());
    }
    let sent = writer.send(Kind::IndexQuery, &protocol::encode_hashes(&hashes)).map_err(io("sending an index query"))?;
    writer.flush().map_err(io("sending an index query"))?;
    let before = reader.bytes;
    let reply = expect(reader, Kind::IndexReply)?;
    let held = protocol::decode_reply(&reply, hashes.len()).map_err(|e| e.to_string())?;
    let mut index = lock(&site.index);
    let mut n_held = 0;
    for (h, _) in hashes.iter().zip(&held).filter(|(_, held)| **held) {
        index.insert_resident(domain, *h);
        n_held += 1;
    }
    drop(index);
    let mut stats = lock(&site.stats);
    stats.queries += 1;
    stats.query_bytes += sent;
    stats.reply_bytes += reader.bytes - before;
    stats.hashes_queried += hashes.len() as u64;
    stats.hashes_held += n_held;
    Ok(())
}

/// Source, after a round's (or the stop-and-copy's) pages: asks which
/// references the destination could not resolve and sends those pages
/// (a fallback batch of their current content). Returns the pages sent.
pub fn source_resolve<R: Read, W: Write>(
    site: &SourceSite,
    encoder: &mut Encoder,
    ram: &GuestRam,
    writer: &mut FrameWriter<W>,
    reader: &mut FrameReader<R>,
) -> Result<u64, String> {
    if !needs_resolve(encoder.config().strategy, site.hello.as_ref()) {
        return Ok(0);
    }
    writer.send(Kind::ResolveRefs, &[]).map_err(io("asking for missing references"))?;
    writer.flush().map_err(io("asking for missing references"))?;
    let missing = protocol::decode_missing(&expect(reader, Kind::MissingRefs)?).map_err(|e| e.to_string())?;
    let mut stats = lock(&site.stats);
    stats.resolve_exchanges += 1;
    if missing.is_empty() {
        return Ok(0);
    }
    let pages: BTreeMap<u64, Box<[u8; PAGE_SIZE]>> = missing
        .iter()
        .map(|m| {
            let mut p = Box::new([0u8; PAGE_SIZE]);
            if m.page_index < ram.pages() {
                ram.read_page(m.page_index, &mut p);
            }
            (m.page_index, p)
        })
        .collect();
    if let Some(m) = missing.iter().find(|m| m.page_index >= ram.pages()) {
        return Err(format!("the destination asked for page {} of a guest of {} pages", m.page_index, ram.pages()));
    }
    let batch = {
        let mut index = lock(&site.index);
        encoder
            .resolve_missing(&mut index, &missing, |i| pages.get(&i).map(|p| &p[..]))
            .map_err(|e| format!("answering missing references: {e}"))?
    };
    let wire = batch.to_wire().map_err(|e| format!("fallback batch: {e}"))?;
    let n = writer.send(Kind::Pages, &wire).map_err(io("sending missing pages"))?;
    stats.refs_missing += missing.len() as u64;
    stats.fallback_bytes += n;
    Ok(missing.len() as u64)
}

/// A [`PageTarget`] that remembers which pages it was given.
struct WrittenPages<'a, T> {
    inner: &'a mut T,
    written: Vec<u64>,
}

impl<T: PageTarget> PageTarget for WrittenPages<'_, T> {
    fn page_mut(&mut self, page_index: u64) -> Option<&mut memfabric_migration::pipeline::Page> {
        self.inner.page_mut(page_index)
    }

    fn written(&mut self, page_index: u64) {
        self.inner.written(page_index);
        self.written.push(page_index);
    }
}

/// The destination's state of one connection of a site.
#[derive(Debug, Default)]
pub struct DestSession {
    /// The site.
    pub site: DestSite,
    /// The guest's site Hello (None: a migration on its own, no site protocol).
    pub hello: Option<SiteHello>,
    /// The strategy of the stream.
    pub strategy: Option<Strategy>,
    /// References not resolved on arrival, by page (a newer record for the
    /// page removes it).
    unresolved: BTreeMap<u64, ContentHash>,
}

impl DestSession {
    /// A session for the stream announced by `hello` on `site`.
    pub fn new(site: &DestSite, strategy: Strategy, hello: Option<SiteHello>) -> DestSession {
        lock(&site.stats).guest = hello.as_ref().map(|h| h.guest.clone());
        DestSession { site: site.clone(), hello, strategy: Some(strategy), unresolved: BTreeMap::new() }
    }

    fn domain(&self) -> memfabric_migration::pipeline::DomainId {
        memfabric_migration::pipeline::DomainId(self.hello.as_ref().map_or(0, |h| h.domain))
    }

    /// After `HelloAck`: with `site_index = summary`, sends the summary of
    /// the resident pages of the guest's domain.
    pub fn after_ack<W: Write>(&self, writer: &mut FrameWriter<W>) -> Result<(), String> {
        let summary_mode = self.hello.as_ref().and_then(|h| h.index) == Some(SiteIndexMode::Summary);
        if !summary_mode || self.strategy.and_then(|s| s.dedup) != Some(DedupScope::Site) {
            return Ok(());
        }
        let resident = self.site.resident.get(&self.domain()).map_or(&[][..], |v| &v[..]);
        let mut bloom = BloomFilter::new(resident.len().max(1) as u64, DEFAULT_BLOOM_BITS_PER_ITEM, DEFAULT_BLOOM_HASH_COUNT)
            .map_err(|e| e.to_string())?;
        for h in resident {
            bloom.insert(*h);
        }
        if self.site.corrupt_index {
            bloom = BloomFilter::from_words(vec![u64::MAX; bloom.words().len()], bloom.num_bits(), bloom.hash_count())
                .map_err(|e| e.to_string())?;
        }
        writer.send(Kind::SiteSummary, &protocol::encode_summary(&bloom)).map_err(io("sending the site summary"))?;
        writer.flush().map_err(io("sending the site summary"))
    }

    /// Decodes a `Pages` payload straight into `target` (the guest's RAM)
    /// against the site's store, and returns the references it could not
    /// resolve. Without the site protocol a missing reference is an error
    /// (as for one guest); with it the page waits for
    /// [`resolve`](Self::resolve).
    pub fn decode_into(
        &mut self,
        decoder: &mut Decoder,
        payload: &[u8],
        target: &mut impl PageTarget,
    ) -> Result<Vec<MissingReference>, String> {
        let mut tracking = WrittenPages { inner: target, written: Vec::new() };
        let missing = {
            let mut store = lock(&self.site.store);
            decoder.decode_wire_into(&mut store, payload, &mut tracking).map_err(|e| format!("page batch: {e}"))?
        };
        if self.hello.is_none() {
            if let Some(m) = missing.first() {
                return Err(format!(
                    "page {} refers to content this destination does not hold ({} missing references)",
                    m.page_index,
                    missing.len()
                ));
            }
        }
        for p in tracking.written {
            self.unresolved.remove(&p);
        }
        for m in &missing {
            self.unresolved.insert(m.page_index, m.hash);
        }
        Ok(missing)
    }

    /// Answers an index query from the site's store.
    pub fn answer_query<W: Write>(&mut self, payload: &[u8], writer: &mut FrameWriter<W>) -> Result<(), String> {
        let hashes = protocol::decode_hashes(payload).map_err(|e| e.to_string())?;
        let held: Vec<bool> = {
            let store = lock(&self.site.store);
            hashes.iter().map(|h| self.site.corrupt_index || store.contains(self.domain(), *h)).collect()
        };
        lock(&self.site.stats).queries += 1;
        writer.send(Kind::IndexReply, &protocol::encode_reply(&held)).map_err(io("answering an index query"))?;
        writer.flush().map_err(io("answering an index query"))
    }

    /// Answers `ResolveRefs`: writes the unresolved pages whose content the
    /// store now holds, and reports the others missing.
    pub fn resolve<W: Write>(&mut self, ram: &GuestRam, hashes: &mut PageHashes, writer: &mut FrameWriter<W>) -> Result<(), String> {
        let mut missing = Vec::new();
        let mut late = 0;
        let mut readback = [0u8; PAGE_SIZE];
        {
            let store = lock(&self.site.store);
            for (page_index, hash) in std::mem::take(&mut self.unresolved) {
                match store.get(self.domain(), hash) {
                    Some(page) if page_index < ram.pages() => {
                        ram.write_page(page_index, &page[..]);
                        ram.read_page(page_index, &mut readback);
                        hashes.set(page_index, &readback);
                        late += 1;
                    }
                    Some(_) => return Err(format!("page {page_index} is outside guest RAM ({} pages)", ram.pages())),
                    None => missing.push(MissingReference { page_index, hash }),
                }
            }
        }
        {
            let mut stats = lock(&self.site.stats);
            stats.refs_resolved_late += late;
            stats.refs_missing += missing.len() as u64;
        }
        writer.send(Kind::MissingRefs, &protocol::encode_missing(&missing)).map_err(io("reporting missing references"))?;
        writer.flush().map_err(io("reporting missing references"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::wire::FrameReader;
    use memfabric_migration::pipeline::{Batch, DedupIndex, PageRecord, Record};
    use std::sync::{Arc, Mutex};

    /// A scratch page for the decoder and the indices of the pages it wrote.
    struct Pages(Box<memfabric_migration::pipeline::Page>, Vec<u64>);

    impl Default for Pages {
        fn default() -> Self {
            Pages(Box::new([0u8; PAGE_SIZE]), Vec::new())
        }
    }

    impl PageTarget for Pages {
        fn page_mut(&mut self, _page_index: u64) -> Option<&mut memfabric_migration::pipeline::Page> {
            Some(&mut self.0)
        }

        fn written(&mut self, page_index: u64) {
            self.1.push(page_index);
        }
    }

    /// Decodes `wire` through `session`: (pages written, missing references).
    fn decode(session: &mut DestSession, decoder: &mut Decoder, wire: &[u8]) -> (Pages, Vec<MissingReference>) {
        let mut pages = Pages::default();
        let missing = session.decode_into(decoder, wire, &mut pages).unwrap();
        (pages, missing)
    }

    fn hello(guest: &str, domain: u32) -> Option<SiteHello> {
        Some(SiteHello { guest: guest.into(), domain, index: None })
    }

    /// Frames written by `writer`, read back.
    fn frames(writer: FrameWriter<Vec<u8>>) -> Vec<crate::migrate::wire::Frame> {
        let bytes = writer.into_inner();
        let mut reader = FrameReader::new(&bytes[..]);
        let mut out = Vec::new();
        while let Ok(f) = reader.recv() {
            out.push(f);
        }
        out
    }

    #[test]
    fn a_page_of_one_tenant_is_never_referenced_by_another() {
        let strategy: Strategy = "zero+dedup-gang+lz4".parse().unwrap();
        let index = Arc::new(Mutex::new(DedupIndex::new()));
        let mut acme = Encoder::new(pipeline(strategy, hello("a", 0).as_ref())).unwrap();
        let mut acme2 = Encoder::new(pipeline(strategy, hello("a2", 0).as_ref())).unwrap();
        let mut globex = Encoder::new(pipeline(strategy, hello("g", 1).as_ref())).unwrap();
        let page = [7u8; PAGE_SIZE];
        let first = acme.encode_page(&mut lock(&index), 0, &page).unwrap();
        assert!(!matches!(first.record, Record::Ref(_)));
        // The same tenant's other guest references it; the other tenant does not.
        assert!(matches!(acme2.encode_page(&mut lock(&index), 0, &page).unwrap().record, Record::Ref(_)));
        assert!(!matches!(globex.encode_page(&mut lock(&index), 0, &page).unwrap().record, Record::Ref(_)));
    }

    #[test]
    fn a_forged_cross_tenant_reference_is_reported_missing_not_resolved() {
        let strategy: Strategy = "zero+dedup-gang+lz4".parse().unwrap();
        let site = DestSite::default();
        let page = [7u8; PAGE_SIZE];
        // Tenant 0's guest sends the page; it is in the site's store under domain 0.
        let mut d0 = DestSession::new(&site, strategy, hello("a", 0));
        let mut dec0 = Decoder::new(pipeline(strategy, hello("a", 0).as_ref()));
        let raw = Batch { fallback: false, records: vec![PageRecord { page_index: 3, record: Record::Raw(Box::new(page)) }] };
        let (pages, _) = decode(&mut d0, &mut dec0, &raw.to_wire().unwrap());
        assert_eq!(pages.1, [3]);
        // Tenant 1's stream references that content: nothing is written,
        // and the resolve exchange reports it missing.
        let hash = hash_page(pipeline(strategy, None).hash_algo, &page);
        let mut d1 = DestSession::new(&site, strategy, hello("g", 1));
        let mut dec1 = Decoder::new(pipeline(strategy, hello("g", 1).as_ref()));
        let forged = Batch { fallback: false, records: vec![PageRecord { page_index: 5, record: Record::Ref(hash) }] };
        let (pages, missing) = decode(&mut d1, &mut dec1, &forged.to_wire().unwrap());
        assert!(pages.1.is_empty());
        assert_eq!(missing, vec![MissingReference { page_index: 5, hash }]);
        let ram = GuestRam::new(16 * PAGE_SIZE as u64, false).unwrap();
        let mut hashes = PageHashes::zeroed(16);
        let mut w = FrameWriter::new(Vec::new());
        d1.resolve(&ram, &mut hashes, &mut w).unwrap();
        let f = frames(w);
        assert_eq!(f[0].kind, Kind::MissingRefs);
        assert_eq!(protocol::decode_missing(&f[0].payload).unwrap(), vec![MissingReference { page_index: 5, hash }]);
        let mut back = [1u8; PAGE_SIZE];
        ram.read_page(5, &mut back);
        assert_eq!(back, [0u8; PAGE_SIZE], "nothing written for the unresolved page");
        assert_eq!(lock(&site.stats).refs_missing, 1);
        // The same tenant's reference resolves from the store after the fact.
        let mut d0b = DestSession::new(&site, strategy, hello("a2", 0));
        let mut dec0b = Decoder::new(pipeline(strategy, hello("a2", 0).as_ref()));
        let (pages, _) = decode(&mut d0b, &mut dec0b, &forged.to_wire().unwrap());
        assert_eq!(pages.1, [5], "resolved on arrival: the store holds it in domain 0");
    }

    #[test]
    fn a_corrupted_summary_claims_everything_and_a_query_reply_lies() {
        let strategy: Strategy = "zero+dedup-site+lz4".parse().unwrap();
        let site = DestSite { corrupt_index: true, ..DestSite::default() };
        let h = Some(SiteHello { guest: "a".into(), domain: 0, index: Some(SiteIndexMode::Summary) });
        let s = DestSession::new(&site, strategy, h);
        let mut w = FrameWriter::new(Vec::new());
        s.after_ack(&mut w).unwrap();
        let f = frames(w);
        assert_eq!(f[0].kind, Kind::SiteSummary);
        let bloom = protocol::decode_summary(&f[0].payload).unwrap();
        assert!((0..100u128).all(|i| bloom.contains(ContentHash(i * 0x9e37_79b9_7f4a_7c15))), "a corrupted summary claims every content");
        let mut q = DestSession::new(&site, strategy, None);
        let mut w = FrameWriter::new(Vec::new());
        q.answer_query(&protocol::encode_hashes(&[ContentHash(1), ContentHash(2)]), &mut w).unwrap();
        let f = frames(w);
        assert_eq!(protocol::decode_reply(&f[0].payload, 2).unwrap(), vec![true, true]);
    }
}
