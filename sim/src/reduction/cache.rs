//! The XBZRLE cache as the analytical model sees it: which share of the
//! pages a migration re-sends has a cached base to be delta-encoded against.
//!
//! The pipeline's delta cache (`memfabric_migration::pipeline::DeltaCache`,
//! as QEMU's XBZRLE cache) holds the last `capacity` pages *sent with their
//! bytes* (delta, compressed or raw; not zero pages, not dedup references)
//! and evicts the least recently sent. It starts empty and fills as pages are
//! sent, so whether a re-sent page hits depends on the migration's history:
//!
//! - **Round 0** sends every page in address order. The working set is taken
//!   to occupy the lowest addresses (as in the validator's guest, whose
//!   workload writes the first `working_set` of its pages), so round 0 sends
//!   it first, and when the cache is smaller than the pages round 0 sends
//!   with bytes, the pages after the working set push it out: round 1 then
//!   finds no base for its pages (with a 64 MiB cache, any guest above about
//!   64 MiB / (1 − working set) of non-zero pages).
//! - **Later rounds** send the pages dirtied in the round before. Each one
//!   sent with bytes becomes the most recently sent; a page dirtied in a
//!   window is, by the Poisson dirty model (`crate::workload::DirtyModel`),
//!   independent of when it was last sent, so a page of popularity class `j`
//!   not yet sent this round hits with probability
//!   `cached_j / (n_j − sent_j)` (pages of the class in the cache from
//!   earlier sends, over the class's pages not yet re-sent this round).
//!
//! The state is a list of **cohorts**, oldest first, one per send (round 0
//! gives two: its working-set pages, then the rest), each holding expected
//! page counts per popularity class (and, for round 0, pages outside the
//! working set). Eviction takes the oldest cohort first, proportionally
//! across its classes. When a round inserts no more pages than the cache has
//! free, nothing is evicted during it and one step is exact; otherwise the
//! round is processed in [`EVICTING_ROUND_STEPS`] equal slices (send order),
//! evicting after each, which approaches the continuous LRU process (see the
//! unit tests for the closed form it converges to). At most [`MAX_COHORTS`]
//! cohorts are kept: beyond that the two oldest merge.
//!
//! The per-class dirty split of a round's `pages` is the model's expectation
//! for the window that dirties that many pages (`D(T) = pages`, solved for
//! `T` by bisection), so a sampled dirty count is split as its window would.

use crate::workload::DirtyModel;
use std::collections::VecDeque;

/// Slices of a round during which the cache evicts (send order).
pub const EVICTING_ROUND_STEPS: usize = 64;
/// Most cohorts kept; older ones merge.
pub const MAX_COHORTS: usize = 24;

/// Pages cached by one send.
#[derive(Debug, Clone, PartialEq)]
struct Cohort {
    /// Per popularity class of the working set, expected cached pages.
    working_set: Vec<f64>,
    /// Cached pages outside the working set (round 0 only).
    other: f64,
}

impl Cohort {
    fn total(&self) -> f64 {
        self.working_set.iter().sum::<f64>() + self.other
    }

    fn scale(&mut self, k: f64) {
        self.working_set.iter_mut().for_each(|x| *x *= k);
        self.other *= k;
    }
}

/// The expected content of one migration's XBZRLE cache (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct XbzrleCacheModel {
    capacity_pages: f64,
    /// `(pages, write rate per page per second)` per popularity class.
    classes: Vec<(f64, f64)>,
    /// Oldest first.
    cohorts: VecDeque<Cohort>,
}

impl XbzrleCacheModel {
    /// An empty cache of `capacity_pages` for a VM dirtied as `model` says.
    pub fn new(capacity_pages: u64, model: &DirtyModel) -> XbzrleCacheModel {
        XbzrleCacheModel {
            capacity_pages: capacity_pages as f64,
            classes: model.classes().iter().map(|&(n, r)| (n as f64, r)).collect(),
            cohorts: VecDeque::new(),
        }
    }

    /// Expected pages in the cache.
    pub fn cached_pages(&self) -> f64 {
        self.cohorts.iter().map(Cohort::total).sum()
    }

    /// Expected working-set pages in the cache.
    pub fn cached_working_set_pages(&self) -> f64 {
        self.cohorts.iter().map(|c| c.working_set.iter().sum::<f64>()).sum()
    }

    fn working_set_pages(&self) -> f64 {
        self.classes.iter().map(|c| c.0).sum()
    }

    /// A full copy of `pages` pages (the VM's memory) in address order, a
    /// share `bytes_share` of them sent with their bytes (the rest zero pages
    /// or references, which the cache does not take).
    pub fn full_copy(&mut self, pages: f64, bytes_share: f64) {
        let ws = self.working_set_pages().min(pages);
        let scale = if self.working_set_pages() > 0.0 { ws / self.working_set_pages() } else { 0.0 };
        let b = bytes_share.clamp(0.0, 1.0);
        // A page sent again leaves its old place: a full copy re-sends every page.
        self.cohorts.clear();
        self.cohorts.push_back(Cohort { working_set: self.classes.iter().map(|c| c.0 * scale * b).collect(), other: 0.0 });
        self.cohorts.push_back(Cohort { working_set: vec![0.0; self.classes.len()], other: (pages - ws).max(0.0) * b });
        self.evict();
    }

    /// Re-sends `pages` dirtied working-set pages, a share `bytes_share` of
    /// them with their bytes; returns the expected share of them that had a
    /// cached base when sent.
    pub fn resend(&mut self, pages: f64, bytes_share: f64) -> f64 {
        let dirty = self.dirty_split(pages);
        let total: f64 = dirty.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        let b = bytes_share.clamp(0.0, 1.0);
        let free = self.capacity_pages - self.cached_pages();
        let steps = if total * b <= free + 1e-9 { 1 } else { EVICTING_ROUND_STEPS };
        let k = self.classes.len();
        // This round's cohort, the most recently sent: evicted last.
        let mut newest = Cohort { working_set: vec![0.0; k], other: 0.0 };
        let mut sent = vec![0.0; k];
        let mut hits = 0.0;
        for _ in 0..steps {
            for j in 0..k {
                let d = dirty[j] / steps as f64;
                let candidates = (self.classes[j].0 - sent[j]).max(1e-12);
                let in_old: f64 = self.cohorts.iter().map(|c| c.working_set[j]).sum();
                let p = (in_old / candidates).min(1.0);
                hits += d * p;
                // The sent pages leave their cohorts (each in proportion to
                // its share of the class) and join the newest.
                let leave = (d * b / candidates).min(1.0);
                for c in self.cohorts.iter_mut() {
                    c.working_set[j] *= 1.0 - leave;
                }
                newest.working_set[j] += d * b;
                sent[j] += d;
            }
            let excess = self.cached_pages() + newest.total() - self.capacity_pages;
            let left = self.evict_old(excess);
            if left > 0.0 {
                let total = newest.total();
                newest.scale(if total > left { 1.0 - left / total } else { 0.0 });
            }
        }
        self.cohorts.push_back(newest);
        self.merge_oldest();
        hits / total
    }

    /// Per class, expected pages among `pages` dirtied ones: the split of the
    /// window that dirties `pages` pages in expectation.
    fn dirty_split(&self, pages: f64) -> Vec<f64> {
        let ws = self.working_set_pages();
        if pages <= 0.0 || ws <= 0.0 {
            return vec![0.0; self.classes.len()];
        }
        if pages >= ws {
            return self.classes.iter().map(|c| c.0).collect();
        }
        let dirtied = |t: f64| -> f64 { self.classes.iter().map(|&(n, r)| n * -(-r * t).exp_m1()).sum() };
        let mut hi = 1e-3;
        while dirtied(hi) < pages && hi < 1e12 {
            hi *= 2.0;
        }
        let mut lo = 0.0;
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if dirtied(mid) < pages {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let t = 0.5 * (lo + hi);
        let split: Vec<f64> = self.classes.iter().map(|&(n, r)| n * -(-r * t).exp_m1()).collect();
        // Scale away the bisection's last rounding so the split sums to `pages`.
        let sum: f64 = split.iter().sum();
        split.into_iter().map(|x| if sum > 0.0 { x * pages / sum } else { 0.0 }).collect()
    }

    /// Least recently sent first, until the cache fits its capacity.
    fn evict(&mut self) {
        let excess = self.cached_pages() - self.capacity_pages;
        self.evict_old(excess);
    }

    /// Evicts `excess` pages from the cohorts, oldest first; returns what
    /// could not be evicted from them.
    fn evict_old(&mut self, mut excess: f64) -> f64 {
        while excess > 1e-9 {
            let Some(oldest) = self.cohorts.front_mut() else { break };
            let total = oldest.total();
            if total <= excess {
                excess -= total;
                self.cohorts.pop_front();
            } else {
                oldest.scale(1.0 - excess / total);
                excess = 0.0;
            }
        }
        excess.max(0.0)
    }

    /// Keeps at most [`MAX_COHORTS`]: merges the oldest two while there are more.
    fn merge_oldest(&mut self) {
        while self.cohorts.len() > MAX_COHORTS {
            let a = self.cohorts.pop_front().expect("more than MAX_COHORTS");
            let b = self.cohorts.front_mut().expect("more than MAX_COHORTS");
            b.working_set.iter_mut().zip(&a.working_set).for_each(|(x, y)| *x += y);
            b.other += a.other;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{archetype, Popularity};
    use memfabric_migration::units::Fraction;

    /// A VM of `pages` pages whose working set is `ws` pages, written uniformly.
    fn uniform(pages: u64, ws: u64) -> DirtyModel {
        let mut w = archetype::lookup("web").unwrap();
        w.working_set = Fraction(ws as f64 / pages as f64);
        w.popularity = Popularity::Uniform;
        w.page_write_rate = 100.0;
        DirtyModel::new(&w, pages)
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn a_cache_holding_all_memory_gives_every_sent_page_a_base() {
        let mut c = XbzrleCacheModel::new(2000, &uniform(1000, 250));
        // A quarter of the pages were zero (not cached): a dirtied page has a
        // base with probability 0.75.
        c.full_copy(1000.0, 0.75);
        assert!(close(c.cached_pages(), 750.0, 1e-9));
        assert!(close(c.resend(100.0, 1.0), 0.75, 1e-9));
        // The re-sent pages are now cached too: 750 + 100·0.25 working-set pages.
        assert!(close(c.cached_working_set_pages(), 187.5 + 25.0, 1e-9));
        assert!(close(c.resend(100.0, 1.0), 212.5 / 250.0, 1e-9));
    }

    #[test]
    fn round_zero_leaves_the_working_set_out_of_a_small_cache() {
        // 1,000 pages, working set the first 250, cache 400: round 0 leaves
        // pages 600..999 in the cache, none of the working set.
        let mut c = XbzrleCacheModel::new(400, &uniform(1000, 250));
        c.full_copy(1000.0, 1.0);
        assert!(close(c.cached_pages(), 400.0, 1e-9));
        assert!(close(c.cached_working_set_pages(), 0.0, 1e-9));
        assert_eq!(c.resend(100.0, 1.0), 0.0, "round 1 finds no base");
        // Round 1 cached its 100 pages (evicting 100 of round 0's): a page
        // dirtied next is one of them with probability 100 / 250.
        assert!(close(c.cached_working_set_pages(), 100.0, 1e-9));
        assert!(close(c.resend(50.0, 1.0), 0.4, 1e-9));
    }

    #[test]
    fn a_cache_smaller_than_a_round_follows_continuous_lru() {
        // Cache C = 50 pages, all holding working-set pages of the previous
        // round; the round re-sends D = 100 of the W = 250. After x pages of
        // the round, the old entries left are C − x (each insert evicts one,
        // hits move one), and a page not yet sent has a base with
        // probability (C − x) / (W − x): hits = ∫₀^C (C − x)/(W − x) dx
        // = C − (W − C)·ln(W / (W − C)).
        let mut c = XbzrleCacheModel::new(50, &uniform(1000, 250));
        c.full_copy(1000.0, 1.0);
        c.resend(250.0, 1.0); // every working-set page; the cache keeps 50 of them
        assert!(close(c.cached_working_set_pages(), 50.0, 1e-9));
        let (cap, w, d) = (50.0f64, 250.0f64, 100.0);
        let expect = (cap - (w - cap) * (w / (w - cap)).ln()) / d;
        let got = c.resend(d, 1.0);
        assert!(close(got, expect, 0.03 * expect), "{got} vs {expect}");
    }

    #[test]
    fn references_do_not_enter_the_cache_and_hot_pages_hit_more() {
        let mut w = archetype::lookup("web").unwrap();
        w.working_set = Fraction(0.25);
        w.popularity = Popularity::HotCold { hot_set: Fraction(0.2), hot_write_share: Fraction(0.8) };
        w.page_write_rate = 100.0;
        let model = DirtyModel::new(&w, 4000);
        let mut c = XbzrleCacheModel::new(1 << 20, &model);
        c.full_copy(4000.0, 0.0); // everything sent as zero pages or references
        assert_eq!(c.resend(200.0, 0.5), 0.0);
        assert!(close(c.cached_pages(), 100.0, 1e-9), "half of the re-sent pages carried bytes");
        // The next round's pages are mostly hot, and hot pages were mostly
        // the ones re-sent: more than the working-set average of 100 / 1000.
        let hit = c.resend(200.0, 1.0);
        assert!(hit > 0.1 + 0.05, "{hit}");
    }
}
