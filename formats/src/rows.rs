//! The rows of the `migrations` and `rounds` result tables, shared by the
//! simulator (`memfabric run`) and the validator (`memfabric-validator
//! migrate`), so that calibration joins both on the same typed values.
//! Column meanings are documented in `docs/results.md`; [`crate::tables`]
//! turns rows into Parquet tables. Mechanisms, outcomes and phases are the
//! enums of `memfabric_migration::record`, written by their names.

use memfabric_migration::record::{Mechanism, Outcome, RoundPhase};

/// One row of the `migrations` table.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRow {
    /// Migration id (order of request).
    pub migration_id: u32,
    /// Operation name.
    pub operation: String,
    /// VM name.
    pub vm: String,
    /// How memory is moved.
    pub mechanism: Mechanism,
    /// Data-reduction strategy (canonical name).
    pub strategy: String,
    /// Reduction threads at each end.
    pub cpu_threads: u32,
    /// Source site.
    pub src_site: String,
    /// Destination site.
    pub dst_site: String,
    /// Source host.
    pub src_host: String,
    /// Destination host ("" when none was found).
    pub dst_host: String,
    /// VM memory.
    pub memory_bytes: u64,
    /// Parallel streams.
    pub streams: u32,
    /// Round-trip time of the route.
    pub rtt_ms: f64,
    /// Start (request) time.
    pub start_s: f64,
    /// End time.
    pub end_s: f64,
    /// End minus start.
    pub total_time_s: f64,
    /// Time the VM was paused.
    pub downtime_ms: f64,
    /// Pre-copy rounds (round 0 included).
    pub rounds: u32,
    /// All bytes on the wire.
    pub bytes_on_wire: u64,
    /// Bytes of pre-copy rounds.
    pub bytes_precopy: u64,
    /// Bytes of the stop-and-copy.
    pub bytes_stopcopy: u64,
    /// Bytes of post-copy.
    pub bytes_postcopy: u64,
    /// Bytes of the site-index summary sent from the destination to the source.
    pub bytes_index_sync: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether the pre-copy stop rule was met; null for stop-and-copy,
    /// post-copy and hybrid, which do not iterate, and for a pre-copy that
    /// ended before the rule decided.
    pub converged: Option<bool>,
    /// Largest auto-converge throttle, percent.
    pub throttle_pct_max: u32,
    /// Remote faults in post-copy.
    pub postcopy_faults: u64,
    /// vCPU time stalled on remote faults, summed over vCPUs.
    pub postcopy_fault_wait_ms: f64,
    /// Guest speed during the post-copy push, as a fraction of full speed (1 without post-copy).
    pub postcopy_guest_speed: f64,
    /// What bounded the rate for most bytes: a link name, or tcp-window,
    /// tcp-loss, max-bandwidth, lan, cpu, none ("" when nothing was sent).
    pub bottleneck: String,
    /// `bytes_on_wire / total_time_s` (the time includes connection set-up and the final propagation).
    pub mean_rate_bytes_per_s: f64,
    /// Bytes the same pages and device state would take without reduction
    /// (header + page for each page).
    pub bytes_unreduced: u64,
    /// Pages sent as zero-page headers.
    pub pages_zero: u64,
    /// Pages sent as references (dedup).
    pub pages_dedup: u64,
    /// Pages sent as deltas (XBZRLE).
    pub pages_delta: u64,
    /// Pages sent compressed.
    pub pages_compressed: u64,
    /// Pages sent raw.
    pub pages_raw: u64,
    /// Bytes on the wire of zero-page records.
    pub bytes_zero: u64,
    /// Bytes on the wire of references.
    pub bytes_dedup: u64,
    /// Bytes on the wire of deltas.
    pub bytes_delta: u64,
    /// Bytes on the wire of compressed pages.
    pub bytes_compressed: u64,
    /// Bytes on the wire of raw pages.
    pub bytes_raw: u64,
    /// Source CPU, seconds (all stages).
    pub cpu_s_source: f64,
    /// Source CPU in zero detection, seconds.
    pub cpu_s_zero: f64,
    /// Source CPU in hashing and dedup lookups, seconds.
    pub cpu_s_dedup: f64,
    /// Source CPU in delta encoding, seconds.
    pub cpu_s_delta: f64,
    /// Source CPU in compression, seconds.
    pub cpu_s_compress: f64,
    /// Destination CPU (decoding and writing pages), seconds.
    pub cpu_s_destination: f64,
}

/// One row of the `rounds` table: a pre-copy round, the stop-and-copy, the
/// post-copy switch or the post-copy push.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRow {
    /// Migration id.
    pub migration_id: u32,
    /// VM name.
    pub vm: String,
    /// Round number within the migration (0 = first full copy).
    pub round: u32,
    /// What the stage was.
    pub phase: RoundPhase,
    /// Start time.
    pub start_s: f64,
    /// End time.
    pub end_s: f64,
    /// Pages sent.
    pub pages: u64,
    /// Bytes on the wire.
    pub bytes_on_wire: u64,
    /// Mean rate.
    pub rate_bytes_per_s: f64,
    /// Distinct pages dirtied during the round (to send next).
    pub dirty_pages: u64,
    /// Auto-converge throttle in force during the round, percent.
    pub throttle_pct: u32,
    /// False when the round was cut short (link failure or horizon).
    pub complete: bool,
}
