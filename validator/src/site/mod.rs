//! Sites of several guests: gang migration (`migrate --guests N`) and
//! deduplication against the destination site (`dedup-gang`, `dedup-site`)
//! on real guests.
//!
//! | module | owns |
//! |---|---|
//! | [`protocol`] | the payloads of the site frames (summary, index query and reply, missing references) |
//! | [`hooks`] | what the source and destination VMMs do for a site: shared dedup index and content store, the summary, queries, the missing-reference exchange |
//! | [`gang`] | the orchestrator of a gang migration and the two site processes (`site-source`, `site-dest`) |
//! | [`report`] | the gang's result folder: per-guest rows, the gang summary, the scenario the simulator replays |
//!
//! A *site* is one process hosting several guests, each with its own KVM VM,
//! vCPU thread and migration connection (the VMM of one guest is as in a
//! one-guest migration); what the guests of a site share is the dedup state:
//!
//! - the source site's [`DedupIndex`] (one for the gang: with `dedup-gang`
//!   and `dedup-site` a content sent by one guest is referenced by the others);
//! - the destination site's [`ContentStore`] (every content page received, and
//!   with `--warm-guests K` the pages of K guests started there first).
//!
//! Both are partitioned by dedup domain ([`DomainId`], one per tenant): no
//! reference ever crosses tenants, exactly as in the simulator
//! (`dedup_domains = "tenant"`).
//!
//! The source learns what the destination site holds in one of the
//! simulator's three `site_index` modes ([`SiteIndexMode`]).

pub mod gang;
pub mod hooks;
pub mod protocol;
pub mod report;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use memfabric_migration::pipeline::{ContentHash, ContentStore, DedupIndex, DomainId};
use serde::{Deserialize, Serialize};

/// How `dedup-site` learns what the destination site holds (the simulator's
/// `site_index`, docs/scenario.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SiteIndexMode {
    /// The source holds the site's exact index before the copy (a replica
    /// kept out of band): no traffic, no false positives.
    Exact,
    /// Per batch of pages the source sends the hashes it does not know and
    /// the destination answers which it holds: one round trip per batch.
    Query,
    /// The destination sends a Bloom summary of its resident pages first;
    /// a false positive costs a reference and the page sent after all.
    Summary,
}

impl SiteIndexMode {
    /// The simulator's name.
    pub fn name(self) -> &'static str {
        match self {
            SiteIndexMode::Exact => "exact",
            SiteIndexMode::Query => "query",
            SiteIndexMode::Summary => "summary",
        }
    }
}

/// What the source tells the destination about a guest of a site (inside
/// [`crate::migrate::Hello`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteHello {
    /// The guest's name in the gang.
    pub guest: String,
    /// Its dedup domain.
    pub domain: u32,
    /// How the source learns the site's content (None: no site index).
    pub index: Option<SiteIndexMode>,
}

/// What one guest's source did for the site protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceSiteStats {
    /// Frame bytes of the Bloom summary received (index sync, destination → source).
    pub summary_bytes: u64,
    /// Index queries sent.
    pub queries: u64,
    /// Frame bytes of the queries (source → destination).
    pub query_bytes: u64,
    /// Frame bytes of the replies (destination → source).
    pub reply_bytes: u64,
    /// Hashes the queries asked about, and how many the site held.
    pub hashes_queried: u64,
    /// Of those, held by the site.
    pub hashes_held: u64,
    /// Missing-reference exchanges (one per round and one in the stop-and-copy).
    pub resolve_exchanges: u64,
    /// References the destination could not resolve (answered with the page).
    pub refs_missing: u64,
    /// Frame bytes of the pages sent for them.
    pub fallback_bytes: u64,
}

/// The source side of a guest of a site: the gang's shared index and what
/// this guest uses of it. `Default` is a guest on its own (a fresh index,
/// domain 0, no site protocol), as `migrate` without `--guests`.
#[derive(Debug, Clone, Default)]
pub struct SourceSite {
    /// The gang's dedup index (shared by every guest of the source site).
    pub index: Arc<Mutex<DedupIndex>>,
    /// What the destination learns about this guest; None: no site protocol.
    pub hello: Option<SiteHello>,
    /// All guests of the gang wait here before starting to migrate.
    pub gate: Option<Arc<Gate>>,
    /// This guest's site counters.
    pub stats: Arc<Mutex<SourceSiteStats>>,
}

impl SourceSite {
    /// The guest's dedup domain.
    pub fn domain(&self) -> DomainId {
        DomainId(self.hello.as_ref().map_or(0, |h| h.domain))
    }
}

/// What one connection of the destination site did for the site protocol.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestSiteStats {
    /// The guest (from its Hello).
    pub guest: Option<String>,
    /// References resolved from the site's store after their batch (the
    /// content arrived on another guest's connection meanwhile).
    pub refs_resolved_late: u64,
    /// References reported missing to the source.
    pub refs_missing: u64,
    /// Index queries answered.
    pub queries: u64,
}

/// The destination side of a site. `Default` is a destination on its own
/// (a fresh store, no site protocol).
#[derive(Debug, Clone, Default)]
pub struct DestSite {
    /// The site's content store (shared by every connection).
    pub store: Arc<Mutex<ContentStore>>,
    /// The resident content per domain (pages of the guests started here
    /// first), from which the summary is built.
    pub resident: Arc<BTreeMap<DomainId, Vec<ContentHash>>>,
    /// Fault injection (tests): the summary claims every content and every
    /// query is answered "held".
    pub corrupt_index: bool,
    /// This connection's counters.
    pub stats: Arc<Mutex<DestSiteStats>>,
}

/// Where the guests of a gang meet before migrating: each arrives once
/// (ready, or given up before it could be), and all go on once every one
/// has, or after [`Gate::TIMEOUT`].
#[derive(Debug)]
pub struct Gate {
    expected: usize,
    arrived: Mutex<usize>,
    all: Condvar,
}

impl Gate {
    /// Longest wait for the others (booting and filling a guest included).
    pub const TIMEOUT: Duration = Duration::from_secs(600);

    /// A gate for `expected` guests.
    pub fn new(expected: usize) -> Gate {
        Gate { expected, arrived: Mutex::new(0), all: Condvar::new() }
    }

    /// Arrives and waits for the others.
    pub fn arrive(&self) {
        let mut n = lock(&self.arrived);
        *n += 1;
        self.all.notify_all();
        let _ = self.all.wait_timeout_while(n, Self::TIMEOUT, |n| *n < self.expected);
    }

    /// Arrives without waiting (a guest that will not migrate).
    pub fn give_up(&self) {
        *lock(&self.arrived) += 1;
        self.all.notify_all();
    }
}

/// Locks `m`, recovering the data if a thread panicked while holding it
/// (the index and store are only ever extended, so they stay consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_when_every_guest_arrived_or_gave_up() {
        let gate = Arc::new(Gate::new(3));
        let passed = Arc::new(Mutex::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (g, p) = (gate.clone(), passed.clone());
                std::thread::spawn(move || {
                    g.arrive();
                    *lock(&p) += 1;
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(*lock(&passed), 0, "two of three arrived: nobody goes yet");
        gate.give_up();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(*lock(&passed), 2);
    }
}
