//! Deduplication state: the source's [`DedupIndex`] (which content the
//! destination is known to hold) and the destination's [`ContentStore`]
//! (the content itself, by hash).
//!
//! Both are owned by the caller and partitioned by [`DomainId`]: a lookup in
//! one domain never sees another domain's content.
//!
//! How the [`DedupScope`] maps onto an index:
//!
//! - `Vm`: give each encoder its own, empty index. The encoder then only
//!   references content it sent itself in this migration.
//! - `Gang`: give the encoders of VMs migrating together to the same site one
//!   shared index (pass the same `&mut DedupIndex` to each in turn), and their
//!   decoders one shared [`ContentStore`].
//! - `Site`: as `Gang`, and pre-fill the index with the destination site's
//!   resident content, exactly ([`DedupIndex::insert_resident`]) or as a
//!   summary ([`DedupIndex::set_site_summary`]); the destination's store holds
//!   that content ([`ContentStore::insert_page`]).
//!
//! Resident entries and summaries are consulted only by encoders whose scope
//! is `Site`; an encoder with scope `Vm` or `Gang` sees only content sent
//! during this operation.

use super::bloom::BloomFilter;
use super::hash::{hash_page, ContentHash, ContentHashBuild, HashAlgo};
use super::Page;
use crate::strategy::DedupScope;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A dedup domain, typically one tenant. Content never deduplicates across
/// domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DomainId(pub u32);

/// Why the index believes the destination holds some content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DedupSource {
    /// An encoder sharing this index sent it during this operation.
    Sent,
    /// It is in the destination site's exact resident set.
    SiteExact,
    /// The destination site's summary claims it (may be a false positive).
    SiteSummary,
}

#[derive(Debug, Clone, Default)]
struct DomainIndex {
    sent: HashSet<ContentHash, ContentHashBuild>,
    resident: HashSet<ContentHash, ContentHashBuild>,
    summary: Option<BloomFilter>,
}

/// Content hashes known to be present at the destination, per domain.
#[derive(Debug, Clone, Default)]
pub struct DedupIndex {
    domains: BTreeMap<DomainId, DomainIndex>,
}

impl DedupIndex {
    /// An empty index.
    pub fn new() -> DedupIndex {
        DedupIndex::default()
    }

    /// Records that `hash` was sent to the destination in `domain`. Returns
    /// whether it was new.
    pub fn insert_sent(&mut self, domain: DomainId, hash: ContentHash) -> bool {
        self.domains.entry(domain).or_default().sent.insert(hash)
    }

    /// Records that the destination site holds `hash` in `domain` (exact
    /// site index). Returns whether it was new.
    pub fn insert_resident(&mut self, domain: DomainId, hash: ContentHash) -> bool {
        self.domains.entry(domain).or_default().resident.insert(hash)
    }

    /// Sets the summary of the destination site's content in `domain`,
    /// replacing any previous one.
    pub fn set_site_summary(&mut self, domain: DomainId, summary: BloomFilter) {
        self.domains.entry(domain).or_default().summary = Some(summary);
    }

    /// Whether an encoder with `scope` in `domain` may reference `hash`, and
    /// why. Sent content is preferred over resident, resident over summary.
    pub fn lookup(&self, domain: DomainId, hash: ContentHash, scope: DedupScope) -> Option<DedupSource> {
        let d = self.domains.get(&domain)?;
        if d.sent.contains(&hash) {
            return Some(DedupSource::Sent);
        }
        if scope != DedupScope::Site {
            return None;
        }
        if d.resident.contains(&hash) {
            return Some(DedupSource::SiteExact);
        }
        match &d.summary {
            Some(summary) if summary.contains(hash) => Some(DedupSource::SiteSummary),
            _ => None,
        }
    }

    /// Number of distinct hashes sent in `domain`.
    pub fn sent_len(&self, domain: DomainId) -> usize {
        self.domains.get(&domain).map_or(0, |d| d.sent.len())
    }

    /// Number of distinct hashes in `domain`'s exact resident set.
    pub fn resident_len(&self, domain: DomainId) -> usize {
        self.domains.get(&domain).map_or(0, |d| d.resident.len())
    }
}

/// The destination's pages by content hash, per domain.
///
/// Content enters only through [`insert_page`](Self::insert_page), which
/// hashes it: an entry's bytes always hash to its key, so a reference to a
/// hash the store lacks is reported as missing instead of resolving to
/// other content.
#[derive(Debug, Clone, Default)]
pub struct ContentStore {
    domains: BTreeMap<DomainId, HashMap<ContentHash, Box<Page>, ContentHashBuild>>,
}

impl ContentStore {
    /// An empty store.
    pub fn new() -> ContentStore {
        ContentStore::default()
    }

    /// Stores `page` in `domain` under its `algo` hash, and returns the hash.
    pub fn insert_page(&mut self, domain: DomainId, algo: HashAlgo, page: &Page) -> ContentHash {
        let hash = hash_page(algo, page);
        self.domains.entry(domain).or_default().entry(hash).or_insert_with(|| Box::new(*page));
        hash
    }

    /// The page stored under `hash` in `domain`.
    pub fn get(&self, domain: DomainId, hash: ContentHash) -> Option<&Page> {
        self.domains.get(&domain)?.get(&hash).map(|p| &**p)
    }

    /// Whether `domain` holds `hash`.
    pub fn contains(&self, domain: DomainId, hash: ContentHash) -> bool {
        self.get(domain, hash).is_some()
    }

    /// Number of distinct pages stored in `domain`.
    pub fn len(&self, domain: DomainId) -> usize {
        self.domains.get(&domain).map_or(0, HashMap::len)
    }

    /// Whether no domain holds any page.
    pub fn is_empty(&self) -> bool {
        self.domains.values().all(HashMap::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_see_what_they_should() {
        let (d, other) = (DomainId(1), DomainId(2));
        let mut idx = DedupIndex::new();
        idx.insert_sent(d, ContentHash(1));
        idx.insert_resident(d, ContentHash(2));
        let mut summary = BloomFilter::new(10, 10, 3).unwrap();
        summary.insert(ContentHash(3));
        idx.set_site_summary(d, summary);
        for scope in [DedupScope::Vm, DedupScope::Gang, DedupScope::Site] {
            assert_eq!(idx.lookup(d, ContentHash(1), scope), Some(DedupSource::Sent));
            assert_eq!(idx.lookup(other, ContentHash(1), scope), None);
        }
        assert_eq!(idx.lookup(d, ContentHash(2), DedupScope::Gang), None);
        assert_eq!(idx.lookup(d, ContentHash(2), DedupScope::Site), Some(DedupSource::SiteExact));
        assert_eq!(idx.lookup(d, ContentHash(3), DedupScope::Vm), None);
        assert_eq!(idx.lookup(d, ContentHash(3), DedupScope::Site), Some(DedupSource::SiteSummary));
        assert_eq!((idx.sent_len(d), idx.resident_len(d), idx.sent_len(other)), (1, 1, 0));
    }

    #[test]
    fn store_is_keyed_by_its_own_hash_and_domain() {
        let mut store = ContentStore::new();
        assert!(store.is_empty());
        let page = [9u8; 4096];
        let h = store.insert_page(DomainId(1), HashAlgo::Xxh3_128, &page);
        assert_eq!(h, hash_page(HashAlgo::Xxh3_128, &page));
        assert_eq!(store.get(DomainId(1), h), Some(&page));
        assert!(!store.contains(DomainId(2), h));
        assert_eq!(store.len(DomainId(1)), 1);
        store.insert_page(DomainId(1), HashAlgo::Xxh3_128, &page);
        assert_eq!(store.len(DomainId(1)), 1);
    }
}
