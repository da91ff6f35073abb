//! Per-stage counters of the pipeline.
//!
//! Bytes out are counted as [`Record::model_wire_bytes`](super::Record::model_wire_bytes):
//! payload plus [`PAGE_HEADER_BYTES`](crate::PAGE_HEADER_BYTES) per record, as
//! QEMU frames pages. CPU time is not measured here (this crate has no
//! clock): time the public stage functions instead.

use crate::{PAGE_SIZE_BYTES, RAW_PAGE_WIRE_BYTES};
use std::fmt;
use std::ops::AddAssign;

/// A pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Zero-page elimination.
    Zero,
    /// Deduplication.
    Dedup,
    /// Delta encoding.
    Delta,
    /// Compression.
    Compress,
    /// Sent as is.
    Raw,
}

impl Stage {
    /// All stages, in pipeline order.
    pub const ALL: [Stage; 5] = [Stage::Zero, Stage::Dedup, Stage::Delta, Stage::Compress, Stage::Raw];
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Zero => "zero",
            Stage::Dedup => "dedup",
            Stage::Delta => "delta",
            Stage::Compress => "compress",
            Stage::Raw => "raw",
        })
    }
}

/// Counters of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageStats {
    /// Pages that reached the stage.
    pub pages_in: u64,
    /// Pages the stage resolved (they go no further).
    pub pages_resolved: u64,
    /// Page bytes that reached the stage (`pages_in × 4096`).
    pub bytes_in: u64,
    /// Wire bytes of the records the stage emitted (payload + header each).
    pub bytes_out: u64,
}

impl StageStats {
    /// Counts one page reaching the stage.
    pub(crate) fn enter(&mut self) {
        self.pages_in += 1;
        self.bytes_in += PAGE_SIZE_BYTES;
    }

    /// Counts one page resolved with a record of `wire_bytes`.
    pub(crate) fn resolve(&mut self, wire_bytes: u64) {
        self.pages_resolved += 1;
        self.bytes_out += wire_bytes;
    }

    /// What the resolved pages would have cost sent raw.
    pub fn raw_equivalent_bytes(&self) -> u64 {
        self.pages_resolved * RAW_PAGE_WIRE_BYTES
    }

    /// Wire bytes this stage saved compared with sending its pages raw.
    pub fn saved_bytes(&self) -> u64 {
        self.raw_equivalent_bytes().saturating_sub(self.bytes_out)
    }
}

impl AddAssign for StageStats {
    fn add_assign(&mut self, o: StageStats) {
        self.pages_in += o.pages_in;
        self.pages_resolved += o.pages_resolved;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// Counters of an encoder, per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipelineStats {
    /// Zero-page stage (all zeros if the strategy has none).
    pub zero: StageStats,
    /// Dedup stage.
    pub dedup: StageStats,
    /// Delta stage: every page that reached it, cached or not.
    pub delta: StageStats,
    /// Compression stage.
    pub compress: StageStats,
    /// Pages sent raw.
    pub raw: StageStats,
    /// Pages re-sent by [`Encoder::resolve_missing`](super::Encoder::resolve_missing)
    /// because a reference could not be resolved (not counted in the stages
    /// above, which already counted the reference).
    pub fallback: StageStats,
    /// Dedup hits on content sent during this operation.
    pub dedup_hits_sent: u64,
    /// Dedup hits on the destination site's content (exact or summary).
    pub dedup_hits_site: u64,
    /// Pages that reached the delta stage with a cached previous version.
    pub delta_cache_hits: u64,
}

impl PipelineStats {
    /// The counters of `stage`.
    pub fn stage(&self, stage: Stage) -> &StageStats {
        match stage {
            Stage::Zero => &self.zero,
            Stage::Dedup => &self.dedup,
            Stage::Delta => &self.delta,
            Stage::Compress => &self.compress,
            Stage::Raw => &self.raw,
        }
    }

    /// Mutable counters of `stage`.
    pub(crate) fn stage_mut(&mut self, stage: Stage) -> &mut StageStats {
        match stage {
            Stage::Zero => &mut self.zero,
            Stage::Dedup => &mut self.dedup,
            Stage::Delta => &mut self.delta,
            Stage::Compress => &mut self.compress,
            Stage::Raw => &mut self.raw,
        }
    }

    /// Pages encoded (each resolved by exactly one stage; fallbacks excluded).
    pub fn pages(&self) -> u64 {
        Stage::ALL.iter().map(|&s| self.stage(s).pages_resolved).sum()
    }

    /// Wire bytes of all records, fallbacks included.
    pub fn wire_bytes(&self) -> u64 {
        Stage::ALL.iter().map(|&s| self.stage(s).bytes_out).sum::<u64>() + self.fallback.bytes_out
    }

    /// Wire bytes had every page been sent raw.
    pub fn raw_wire_bytes(&self) -> u64 {
        self.pages() * RAW_PAGE_WIRE_BYTES
    }
}

impl AddAssign for PipelineStats {
    fn add_assign(&mut self, o: PipelineStats) {
        for s in Stage::ALL {
            *self.stage_mut(s) += *o.stage(s);
        }
        self.fallback += o.fallback;
        self.dedup_hits_sent += o.dedup_hits_sent;
        self.dedup_hits_site += o.dedup_hits_site;
        self.delta_cache_hits += o.delta_cache_hits;
    }
}
