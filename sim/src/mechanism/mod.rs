//! Per-migration state and the records a migration leaves behind.
//!
//! The simulator ([`crate::run`]) drives each [`Migration`] through the phases
//! of [`memfabric_migration::state::MigrationPhase`]:
//!
//! - **pre-copy**: round 0 sends all memory; each later round sends the pages
//!   dirtied during the previous round (a distinct-page count drawn from the
//!   VM's [`crate::workload::DirtyModel`] over the round's duration, scaled by
//!   the auto-converge run fraction). After every round the shared stop rule
//!   [`memfabric_migration::precopy::precopy_decision`] decides: continue, stop
//!   and copy, or not converged (abort, force a stop, or switch to post-copy).
//! - **stop-and-copy**: the VM is paused; the remaining dirty pages and the
//!   device state are sent; the VM resumes at the destination when the last
//!   byte arrives (one one-way latency after it was sent).
//! - **post-copy**: the device state is sent during a short pause; the VM then
//!   runs at the destination while the pending pages are pushed in the
//!   background; a page the guest touches before it arrives is a remote fault
//!   that stalls a vCPU for a round trip plus one page's send time, and the
//!   guest's speed during the push follows from those stalls
//!   ([`crate::workload::DirtyModel::postcopy_guest_speed`]).
//! - **hybrid**: one pre-copy round (the full copy), then post-copy.

use crate::fabric::{HostId, Route, SiteId, VmId};
use crate::network::FlowId;
use crate::reduction::{Tally, VmReduction};
use crate::scenario::MigrationSettings;
use memfabric_migration::precopy::AutoConverge;
use memfabric_migration::record::{Outcome, RoundPhase};
use memfabric_migration::state::MigrationPhase;
use memfabric_migration::units::Nanos;

pub use memfabric_formats::rows::{MigrationRow, RoundRow};

crate::fabric::typed_id!(
    /// Index of a migration in a run's migration table.
    MigrationId
);

/// What a migration's current flow carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the connection to be set up.
    Connecting,
    /// The destination sends its site-index summary to the source.
    IndexSync,
    /// A pre-copy round.
    PreCopyRound,
    /// The final stop-and-copy of dirty pages and device state.
    StopCopy,
    /// The device state sent before switching to post-copy.
    PostCopySwitch,
    /// The background push of post-copy.
    PostCopyPush,
    /// The last bytes are propagating to the destination.
    Arriving,
    /// Finished.
    Done,
}

/// The live state of one migration.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Its id.
    pub id: MigrationId,
    /// The policy that asked for it.
    pub operation: crate::policy::OperationId,
    /// The VM.
    pub vm: VmId,
    /// Source host.
    pub src: HostId,
    /// Destination host (the source host when none was found).
    pub dst: HostId,
    /// Destination site (as requested, even when no host was found).
    pub dst_site: SiteId,
    /// Path through the fabric.
    pub route: Route,
    /// Settings.
    pub settings: MigrationSettings,
    /// Per-flow network rate cap (bytes/s) and what it is (TCP, limit, LAN).
    pub cap: (f64, CapKind),
    /// What the strategy does to this VM's pages, per page; released
    /// (`None`) when the migration ends, so that 100,000 ended migrations
    /// do not keep 800 bytes each.
    pub reduction: Option<Box<VmReduction>>,
    /// The delta cache's expected content (strategies with `xbzrle`).
    pub xbzrle_cache: Option<crate::reduction::cache::XbzrleCacheModel>,
    /// Expected outcome of the pages of the current flow.
    pub stage_tally: Tally,
    /// What the last stage that ended sent (the stop rule's evidence).
    pub last_stage_tally: Tally,
    /// Bytes of the current flow (to scale the tally of a cut flow).
    pub stage_bytes: f64,
    /// Device-state bytes in the current flow.
    pub stage_extra_bytes: f64,
    /// Device-state bytes sent so far.
    pub extra_bytes: f64,
    /// Sum of the tallies of everything sent.
    pub tally: Tally,
    /// State-machine phase.
    pub phase: MigrationPhase,
    /// What the current flow carries.
    pub stage: Stage,
    /// The current flow.
    pub flow: Option<FlowId>,
    /// Start time.
    pub start: Nanos,
    /// Start of the current round or stage.
    pub stage_start: Nanos,
    /// Pages the current round/stage sends (an expectation with expected
    /// dirty sampling, so possibly fractional).
    pub stage_pages: f64,
    /// Pre-copy rounds completed.
    pub rounds: u32,
    /// Pages waiting for post-copy (possibly fractional, as `stage_pages`).
    pub postcopy_pending: f64,
    /// Guest run time of the pre-copy round whose dirty pages post-copy must
    /// pull (`None` when post-copy pulls every page).
    pub postcopy_window_secs: Option<f64>,
    /// Guest speed during the post-copy push (fraction of full speed).
    pub postcopy_guest_speed: f64,
    /// Auto-converge throttle.
    pub throttle: AutoConverge,
    /// Largest throttle applied, percent.
    pub throttle_pct_max: u32,
    /// When the VM was paused.
    pub paused_at: Option<Nanos>,
    /// When the VM resumed (at the destination, or at the source after an abort).
    pub resumed_at: Option<Nanos>,
    /// Whether the pre-copy stop rule was met (`None` for mechanisms that do
    /// not iterate — stop-and-copy, post-copy, hybrid — and for a pre-copy
    /// that ended before the rule decided: link failure, horizon, no capacity).
    pub converged: Option<bool>,
    /// Bytes on the wire in pre-copy rounds.
    pub bytes_precopy: f64,
    /// Bytes on the wire in the stop-and-copy (dirty pages and device state).
    pub bytes_stopcopy: f64,
    /// Bytes on the wire in post-copy (the push; faulted pages travel in it).
    pub bytes_postcopy: f64,
    /// Bytes of the site-index summary (destination to source).
    pub bytes_index_sync: f64,
    /// Bytes sent while the migration's own cap (TCP or limit) bound it.
    pub bytes_cap_limited: f64,
    /// Remote faults during post-copy.
    pub postcopy_faults: u64,
    /// Time the guest waited on remote faults.
    pub postcopy_fault_wait: Nanos,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// When it ended.
    pub end: Option<Nanos>,
}

/// What a migration's own rate cap is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapKind {
    /// One window per RTT, times the streams.
    TcpWindow,
    /// The Mathis loss bound, times the streams.
    TcpLoss,
    /// The configured `max_bandwidth`.
    MaxBandwidth,
    /// The intra-site LAN rate.
    Lan,
    /// The reduction pipeline's CPU (source or destination threads).
    Cpu,
    /// The site-index query loop (one batch per round trip).
    IndexQuery,
    /// No cap.
    None,
}

impl Stage {
    /// The `phase` of the stage in the `rounds` table, if it moves data.
    pub fn round_phase(self) -> Option<RoundPhase> {
        match self {
            Stage::IndexSync => Some(RoundPhase::IndexSync),
            Stage::PreCopyRound => Some(RoundPhase::PreCopy),
            Stage::StopCopy => Some(RoundPhase::StopCopy),
            Stage::PostCopySwitch => Some(RoundPhase::PostCopySwitch),
            Stage::PostCopyPush => Some(RoundPhase::PostCopyPush),
            Stage::Connecting | Stage::Arriving | Stage::Done => None,
        }
    }
}

impl CapKind {
    /// Name used in the `bottleneck` column.
    pub fn as_str(self) -> &'static str {
        match self {
            CapKind::TcpWindow => "tcp-window",
            CapKind::TcpLoss => "tcp-loss",
            CapKind::MaxBandwidth => "max-bandwidth",
            CapKind::Lan => "lan",
            CapKind::Cpu => "cpu",
            CapKind::IndexQuery => "index-query",
            CapKind::None => "none",
        }
    }
}
