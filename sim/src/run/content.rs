//! The destination content index: what memory content is resident at each
//! site, per dedup domain, and what a gang of migrations has already sent.
//! `dedup-site` looks content up here; `dedup-gang` records and looks up what
//! its operation sent. Keys are typed ([`SiteId`], [`DomainId`], [`ImageId`],
//! [`OperationId`]); domains and images are interned once per run.
//!
//! It also owns the exact-reduction state of traced VMs' migrations
//! ([`Traced`]) and the tally of their pages against the index.

use super::*;
use crate::fabric::SiteId;
use crate::policy::OperationId;

/// A dedup domain (a tenant, or the one global domain), interned per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct DomainId(u32);

/// A VM image name, interned per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct ImageId(u32);

/// Content of one domain at one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SiteDomain {
    site: SiteId,
    domain: DomainId,
}

/// One image's content in one domain at one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SiteImage {
    at: SiteDomain,
    image: ImageId,
}

/// What one operation's gang sends to one site, per domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct GangKey {
    op: OperationId,
    at: SiteDomain,
}

/// The content index of a run.
#[derive(Debug, Default)]
pub(super) struct ContentIndex {
    /// Each VM's dedup domain.
    vm_domain: Vec<DomainId>,
    /// Each VM's image, if it names one.
    vm_image: Vec<Option<ImageId>>,
    /// VMs running at each (site, domain, image): content resident there.
    site_images: BTreeMap<SiteImage, u32>,
    /// Non-zero pages resident at each (site, domain): what a site index
    /// (summary) must describe.
    site_pages: BTreeMap<SiteDomain, u64>,
    /// (operation, destination site, domain, image) whose shared content a
    /// VM of the gang has started sending.
    gang_sent: BTreeSet<(GangKey, ImageId)>,
    /// Content hashes (of traced VMs) sent by the gang. Only looked up, never iterated.
    gang_hashes: BTreeMap<GangKey, HashSet<u128>>,
    /// Content hashes of traced VMs' snapshots resident at each (site,
    /// domain), with multiplicity. Only looked up, never iterated.
    site_hashes: BTreeMap<SiteDomain, HashMap<u128, u32>>,
}

impl ContentIndex {
    /// An empty index with the scenario's domains and images interned.
    pub(super) fn new(sc: &Scenario) -> ContentIndex {
        let mut domains: BTreeMap<&str, DomainId> = BTreeMap::new();
        let mut images: BTreeMap<&str, ImageId> = BTreeMap::new();
        let mut ix = ContentIndex::default();
        for v in &sc.vms {
            let d = match sc.dedup_domains {
                DedupDomains::Tenant => v.tenant.as_str(),
                DedupDomains::Global => "",
            };
            let n = domains.len() as u32;
            ix.vm_domain.push(*domains.entry(d).or_insert(DomainId(n)));
            ix.vm_image.push(v.image.as_deref().map(|i| {
                let n = images.len() as u32;
                *images.entry(i).or_insert(ImageId(n))
            }));
        }
        ix
    }

    fn at(&self, vm: VmId, site: SiteId) -> SiteDomain {
        SiteDomain { site, domain: self.vm_domain[vm.index()] }
    }

    fn image_key(&self, vm: VmId, site: SiteId) -> Option<SiteImage> {
        self.vm_image[vm.index()].map(|image| SiteImage { at: self.at(vm, site), image })
    }

    /// Non-zero pages resident at `site` in `vm`'s domain.
    pub(super) fn resident_pages(&self, vm: VmId, site: SiteId) -> u64 {
        self.site_pages.get(&self.at(vm, site)).copied().unwrap_or(0)
    }
}

/// Replay and exact-reduction state of one migration of a traced VM.
pub(super) struct Traced {
    /// The VM's trace.
    pub(super) vm: VmTrace,
    /// Trace clock and pending dirty pages.
    pub(super) run: TraceRun,
    /// Hashes this migration sent (dedup-vm). Only looked up, never iterated.
    pub(super) sent: HashSet<u128>,
    /// Delta cache (with `xbzrle`).
    pub(super) cache: DeltaCache,
    /// The tally of the pending pages, computed when the round that dirtied
    /// them ended (the next stage sends exactly them).
    pub(super) prepared: Option<Tally>,
}

impl Sim<'_> {
    /// Non-zero pages of a VM (what it adds to its site's resident content).
    pub(super) fn content_pages(&self, vm: VmId) -> u64 {
        let v = &self.sc.vms[vm.index()];
        if let Some(t) = &v.trace {
            let d = &t.data;
            return d.snapshot.iter().filter(|p| !p.zero).map(|p| d.weight(p)).sum::<f64>().round() as u64;
        }
        (self.vm_pages[vm.index()] as f64 * (1.0 - v.workload.content.zero.0)).round() as u64
    }

    /// Moves a VM's content (its image and its pages) between sites' resident sets.
    pub(super) fn move_image(&mut self, vm: VmId, from: Option<SiteId>, to: Option<SiteId>) {
        let pages = self.content_pages(vm);
        let v = &self.sc.vms[vm.index()];
        let ix = &mut self.content;
        if let Some(site) = from {
            if let Some(n) = ix.site_pages.get_mut(&ix.at(vm, site)) {
                *n = n.saturating_sub(pages);
            }
        }
        if let Some(site) = to {
            *ix.site_pages.entry(ix.at(vm, site)).or_insert(0) += pages;
        }
        if let Some(key) = from.and_then(|s| ix.image_key(vm, s)) {
            if let Some(n) = ix.site_images.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    ix.site_images.remove(&key);
                }
            }
        }
        if let Some(key) = to.and_then(|s| ix.image_key(vm, s)) {
            *ix.site_images.entry(key).or_insert(0) += 1;
        }
        if let Some(t) = &v.trace {
            if let Some(set) = from.and_then(|s| ix.site_hashes.get_mut(&ix.at(vm, s))) {
                for p in t.data.snapshot.iter().filter(|p| !p.zero) {
                    if let Some(n) = set.get_mut(&p.hash) {
                        *n -= 1;
                        if *n == 0 {
                            set.remove(&p.hash);
                        }
                    }
                }
            }
            if let Some(site) = to {
                let set = ix.site_hashes.entry(ix.at(vm, site)).or_default();
                for p in t.data.snapshot.iter().filter(|p| !p.zero) {
                    *set.entry(p.hash).or_insert(0) += 1;
                }
            }
        }
    }

    /// The exact tally of a traced VM's pages: its snapshot (`full`) or its
    /// pending dirty pages (which are then no longer pending).
    pub(super) fn traced_tally(&mut self, m: MigrationId, full: bool) -> Tally {
        use memfabric_migration::strategy::DedupScope;
        let mig = &self.migs[m.index()];
        let strategy = mig.settings.strategy;
        let scope = strategy.dedup;
        let rules = ExactReduction::new(&strategy, mig.settings.hash, &self.sc.cpu_profile);
        let intra = self.sc.fabric.hosts[mig.src.index()].site == mig.dst_site;
        let at = self.content.at(mig.vm, mig.dst_site);
        let gang_key = GangKey { op: mig.operation, at };
        let (fp, query) = (mig.settings.site_index.false_positive_rate(), matches!(mig.settings.site_index, SiteIndex::Query { .. }));
        let tr = self.traced[m.index()].as_mut().expect("a traced VM's migration");
        let data = tr.vm.data.clone();
        // A VM moving within its site must not find its own content there.
        let own: HashMap<u128, u32> = if intra && scope == Some(DedupScope::Site) {
            let mut own = HashMap::new();
            for p in data.snapshot.iter().filter(|p| !p.zero) {
                *own.entry(p.hash).or_insert(0) += 1;
            }
            own
        } else {
            HashMap::new()
        };
        let empty = HashMap::new();
        let site = if scope == Some(DedupScope::Site) {
            self.content.site_hashes.get(&at).unwrap_or(&empty)
        } else {
            &empty
        };
        let mut gang = (scope >= Some(DedupScope::Gang)).then(|| self.content.gang_hashes.entry(gang_key).or_default());
        let pending = if full { BTreeMap::new() } else { std::mem::take(&mut tr.run.pending) };
        let pages: Box<dyn Iterator<Item = (&PageContent, Option<u32>)>> = if full {
            Box::new(data.snapshot.iter().map(|p| (p, None)))
        } else {
            Box::new(pending.values().map(|p| (&data.rows[p.row], Some(p.max_delta))))
        };
        let mut t = Tally::default();
        for (c, delta) in pages {
            let w = data.weight(c);
            let known = scope.is_some()
                && (tr.sent.contains(&c.hash)
                    || gang.as_ref().is_some_and(|g| g.contains(&c.hash))
                    || site.get(&c.hash).copied().unwrap_or(0) > own.get(&c.hash).copied().unwrap_or(0));
            let base = delta.filter(|_| strategy.delta && tr.cache.contains(c.page));
            let sent = rules.page(&mut t, w, c, known, base);
            if scope.is_some() && sent != Sent::Zero {
                tr.sent.insert(c.hash);
                if let Some(g) = gang.as_mut() {
                    g.insert(c.hash);
                }
            }
            if strategy.delta && sent == Sent::Bytes {
                tr.cache.insert(c.page, w);
            }
        }
        crate::reduction::site_index_overhead(&mut t, scope == Some(DedupScope::Site), fp, query);
        t
    }

    /// Whether the destination already has (or is being sent by the gang) the
    /// VM's image content, and marks the gang as sending it.
    pub(super) fn image_hit(&mut self, m: MigrationId) -> bool {
        let mig = &self.migs[m.index()];
        let ix = &mut self.content;
        let Some(key) = ix.image_key(mig.vm, mig.dst_site) else { return false };
        let gang = (GangKey { op: mig.operation, at: key.at }, key.image);
        // A VM moving within its own site must not count its own image content.
        let own = u32::from(self.sc.fabric.hosts[mig.src.index()].site == mig.dst_site);
        let hit = match mig.settings.strategy.dedup {
            Some(memfabric_migration::strategy::DedupScope::Site) => {
                ix.site_images.get(&key).copied().unwrap_or(0) > own || ix.gang_sent.contains(&gang)
            }
            Some(memfabric_migration::strategy::DedupScope::Gang) => ix.gang_sent.contains(&gang),
            _ => false,
        };
        ix.gang_sent.insert(gang);
        hit
    }

}
