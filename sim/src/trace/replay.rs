//! Trace-driven VMs: a [`Trace`] prepared for replay by the simulator, and
//! the per-migration replay state (trace clock, exact dirty sets, the hashes
//! sent, the delta cache).
//!
//! **Preparation** ([`TracedVm::prepare`]). The snapshot and the epoch rows
//! are flattened into [`PageContent`] rows; epochs become `(end time, row
//! range)` in time order. With content-hash sampling (`k` bits,
//! [`sampling_keeps`]) only zero pages and pages whose content hash has its
//! top `k` bits zero are kept, and every kept non-zero page has the weight
//! `2^k` (a zero page weighs 1: zero pages are counted exactly).
//!
//! **Dirty sets** ([`TraceRun::advance`]). Each migration keeps a trace clock
//! in guest nanoseconds, starting at 0 when the migration starts. A pre-copy
//! round that let the guest run for `Δ` (wall time × auto-converge run
//! fraction) advances the clock from `g` to `g + Δ`; the pages to send next
//! are the distinct pages dirtied in the epochs whose end time, times
//! `trace_time_scale` and shifted by whole trace durations when the trace
//! loops, falls in `(g, g + Δ]`. Each keeps its latest content, and the
//! largest `delta_bytes` among its rows since it was last sent (its delta
//! against the copy last sent; the trace's deltas are against the previous
//! version, so this is exact for one re-write and a lower bound for several).

use super::{Trace, PAGE_SIZE};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Highest `trace_sampling_bits`.
pub const MAX_SAMPLING_BITS: u32 = 16;

/// Whether content-hash sampling with `bits` keeps a non-zero page of content
/// `hash`: its top `bits` bits are zero (a fixed 1/2^bits slice of the hash space).
pub fn sampling_keeps(hash: u128, bits: u32) -> bool {
    bits == 0 || hash >> (128 - bits) == 0
}

/// A page's content as the reduction model needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageContent {
    /// Guest page index.
    pub page: u64,
    /// xxh3-128 content hash.
    pub hash: u128,
    /// All-zero page.
    pub zero: bool,
    /// Delta against the previous version, bytes (snapshot rows: 4096).
    pub delta_bytes: u32,
    /// lz4 size, bytes (4096: incompressible).
    pub lz4_bytes: u32,
    /// zstd level-1 size, bytes (4096: incompressible).
    pub zstd_bytes: u32,
}

/// One epoch with rows: its end (trace ns) and its rows in [`TracedVm::rows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    /// End of the epoch, ns after the snapshot.
    pub end_ns: u64,
    /// First row.
    pub start: usize,
    /// One past the last row.
    pub end: usize,
}

/// A trace prepared for replay (after sampling).
#[derive(Debug, Clone, PartialEq)]
pub struct TracedVm {
    /// The trace directory (as resolved when loading).
    pub dir: PathBuf,
    /// Guest pages (all of them, sampled or not).
    pub pages: u64,
    /// Trace length, ns.
    pub duration_ns: u64,
    /// Sampling bits (0: every page).
    pub sampling_bits: u32,
    /// Kept snapshot pages, by page index.
    pub snapshot: Vec<PageContent>,
    /// Kept epoch rows, by epoch.
    pub rows: Vec<PageContent>,
    /// Epochs with kept rows, in time order.
    pub epochs: Vec<Epoch>,
}

impl TracedVm {
    /// Prepares `trace` (read from `dir`) with `sampling_bits` of sampling.
    pub fn prepare(trace: &Trace, dir: PathBuf, sampling_bits: u32) -> TracedVm {
        let keep = |hash: u128, zero: bool| zero || sampling_keeps(hash, sampling_bits);
        let snapshot = trace
            .snapshot
            .iter()
            .filter(|p| keep(p.hash.0, p.zero))
            .map(|p| PageContent {
                page: p.page_index,
                hash: p.hash.0,
                zero: p.zero,
                delta_bytes: PAGE_SIZE as u32,
                lz4_bytes: p.lz4_bytes,
                zstd_bytes: p.zstd_bytes,
            })
            .collect();
        let zero_hash = super::zero_page_hash().0;
        let mut rows = Vec::new();
        let mut epochs: Vec<Epoch> = Vec::new();
        for d in &trace.epochs {
            let zero = d.hash.0 == zero_hash;
            if !keep(d.hash.0, zero) {
                continue;
            }
            match epochs.last_mut() {
                Some(e) if e.end_ns == d.time_ns => e.end += 1,
                _ => epochs.push(Epoch { end_ns: d.time_ns, start: rows.len(), end: rows.len() + 1 }),
            }
            rows.push(PageContent {
                page: d.page_index,
                hash: d.hash.0,
                zero,
                delta_bytes: d.delta_bytes,
                lz4_bytes: d.lz4_bytes,
                zstd_bytes: d.zstd_bytes,
            });
        }
        TracedVm {
            dir,
            pages: trace.manifest.pages,
            duration_ns: trace.manifest.duration_ns,
            sampling_bits,
            snapshot,
            rows,
            epochs,
        }
    }

    /// Weight of a kept page: 1 for a zero page, `2^bits` otherwise.
    pub fn weight(&self, p: &PageContent) -> f64 {
        if p.zero {
            1.0
        } else {
            (1u64 << self.sampling_bits) as f64
        }
    }
}

/// A VM's trace settings (`trace`, `trace_time_scale`, `trace_loop`).
#[derive(Debug, Clone, PartialEq)]
pub struct VmTrace {
    /// The trace, as written in the scenario.
    pub path: String,
    /// xxh3-64 of its three files' bytes, 16 hex digits (provenance).
    pub files_hash: String,
    /// The prepared trace (shared by the VMs of a `count` and by variants).
    pub data: Arc<TracedVm>,
    /// Multiplies trace times.
    pub time_scale: f64,
    /// Replay from the start when the trace ends.
    pub looping: bool,
}

/// A page waiting to be re-sent: its latest row and the largest delta since
/// it was last sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Index of its latest row in [`TracedVm::rows`].
    pub row: usize,
    /// Largest `delta_bytes` of its rows since it was last sent.
    pub max_delta: u32,
}

/// Replay state of one migration of a traced VM.
#[derive(Debug, Clone, Default)]
pub struct TraceRun {
    /// Guest time advanced since the migration started, ns.
    pub clock_ns: f64,
    /// Next epoch to consume: (loop number, epoch index).
    cursor: (u64, usize),
    /// Pages dirtied since they were last sent.
    pub pending: BTreeMap<u64, Pending>,
}

impl TraceRun {
    /// Advances the trace clock by `guest_ns` of guest run time and adds
    /// the pages dirtied in the epochs that end in that window to
    /// [`TraceRun::pending`]. Returns the weighted count of pending pages.
    pub fn advance(&mut self, vm: &VmTrace, guest_ns: f64) -> f64 {
        let t = &vm.data;
        let until = self.clock_ns + guest_ns.max(0.0);
        self.clock_ns = until;
        let period = t.duration_ns as f64 * vm.time_scale;
        if !t.epochs.is_empty() && period > 0.0 {
            // Skip whole loops that end before the last complete loop of the
            // window: replaying a loop again dirties the same rows, so only
            // the last two matter for the latest content and largest delta.
            if vm.looping {
                let last_loop = (until / period).floor() as u64;
                if last_loop > self.cursor.0 + 2 {
                    self.cursor = (last_loop - 2, 0);
                }
            }
            loop {
                let (l, i) = self.cursor;
                if !vm.looping && l > 0 {
                    break;
                }
                let e = t.epochs[i];
                let end = (l as f64 * t.duration_ns as f64 + e.end_ns as f64) * vm.time_scale;
                if end > until {
                    break;
                }
                for row in e.start..e.end {
                    let r = &t.rows[row];
                    self.pending
                        .entry(r.page)
                        .and_modify(|p| {
                            p.row = row;
                            p.max_delta = p.max_delta.max(r.delta_bytes);
                        })
                        .or_insert(Pending { row, max_delta: r.delta_bytes });
                }
                self.cursor = if i + 1 == t.epochs.len() { (l + 1, 0) } else { (l, i + 1) };
            }
        }
        self.pending_weight(t)
    }

    /// Weighted count of pending pages.
    pub fn pending_weight(&self, t: &TracedVm) -> f64 {
        self.pending.values().map(|p| t.weight(&t.rows[p.row])).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_a_fixed_slice_of_the_hash_space() {
        assert!(sampling_keeps(u128::MAX, 0));
        assert!(sampling_keeps(1 << 121, 6));
        assert!(!sampling_keeps(1 << 122, 6));
        assert!(!sampling_keeps(u128::MAX, 1));
        let kept = (0..4096u128).filter(|i| sampling_keeps(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835), 4)).count();
        assert!((200..320).contains(&kept), "{kept} of 4096 with 4 bits");
    }
}
