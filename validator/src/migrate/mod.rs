//! Live migration between two VMM processes over one TCP connection.
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | framing: magic, version, kind, sequence number, xxh3 trailer |
//! | [`source`] | the source VMM: boot, pre-copy rounds with the shared stop rule, stop-and-copy, handover |
//! | [`dest`] | the destination VMM: receive and decode pages straight into guest RAM, verify, restore the vCPU, resume |
//! | [`orchestrate`] | `migrate`: starts both processes (optionally across a WAN link or a fault proxy), gathers their reports, writes results |
//! | [`fault`] | fault injection at a byte count or a named phase: the proxy (link cut, corruption, killing either VMM) and the destination's page flip |
//! | [`tls`] | the authenticated, encrypted channel (mutual TLS 1.3) and the connection type frames go through |
//! | [`tls_bench`] | `tls-bench`: the CPU cost of TLS record protection against memcpy |
//! | [`datapath_bench`] | `datapath-bench`: source and destination CPU per GiB per pipeline on loopback, against memcpy |
//! | [`arbiter`] | who runs the guest when the source cannot tell: the orchestrator's verdict from the destination's announcement |
//! | [`cpu`] | CPU baselines: the guest's CPU in `Hello`, the destination's offer in `HelloAck`, the simulator's compatibility rule |
//! | [`throttle`] | auto-converge at the source: the shared trigger drives the vCPU throttle round by round |
//! | [`postcopy`] | post-copy and hybrid: the switch, userfaultfd at the destination, demand requests and the push |
//! | [`multifd`] | several TCP streams per migration (`--streams`, `--cpu-threads`): which stream carries which page, the fan-out at the source, the reassembly at the destination |
//!
//! This module itself owns what both ends share: the control messages, the
//! integrity digests ([`chunk_digests`], [`PageHashes`]), the report writer
//! ([`write_json`]) and the CPU clock ([`thread_cpu_s`]).
//!
//! The exchange (docs/validator.md has the full diagram):
//!
//! ```text
//! source                                   destination
//!   | -- Hello {memory, strategy, ...} -------> |  check RAM (prepared before listening)
//!   | <------------------------ HelloAck ------ |
//!   | -- Pages (round 0: every page) ---------> |  decode, write
//!   | -- RoundEnd ----------------------------> |
//!   | -- Pages (round i: pages dirtied) ------> |  ...until the stop rule says stop
//!   |  pause vCPU                               |
//!   | -- Pages (stop-and-copy) ---------------> |
//!   | -- Switchover {pause time, chunk hashes}  |
//!   | -- VcpuState ---------------------------> |  compare digests, restore, resume
//!   | <--------------- Resumed {resume time} -- |
//!   |  source VM discarded                      |  guest runs on
//! ```
//!
//! Either side may send `Abort {reason}` and close. Until `Resumed` arrives
//! the source keeps its VM: on any failure before the state went out, or an
//! `Abort` after it, the source resumes its guest (if paused) and reports the
//! failure; if the connection fails after the state went out it cannot know
//! whether the destination resumed: it asks the orchestrator ([`arbiter`]),
//! and without an answer leaves its guest paused (`unknown`).

pub mod arbiter;
pub mod cpu;
pub mod datapath_bench;
pub mod dest;
pub mod fault;
pub mod multifd;
pub mod orchestrate;
pub mod postcopy;
pub mod source;
pub mod throttle;
pub mod tls;
pub mod tls_bench;
pub mod wire;

use serde::{Deserialize, Serialize};

/// Pages per integrity chunk: the switchover carries one xxh3-64 per chunk.
pub const CHUNK_PAGES: u64 = 1024;

/// Source → destination: what is coming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`wire::VERSION`].
    pub protocol: u8,
    /// Guest RAM.
    pub memory_bytes: u64,
    /// Bytes per page.
    pub page_size: u64,
    /// Canonical strategy name of the pipeline.
    pub strategy: String,
    /// The guest's TSC rate.
    pub tsc_hz: u64,
    /// RAM offsets from here on are mapped at 4 GiB ([`crate::guest::abi::Layout`]).
    pub ram_split: u64,
    /// The guest's CPU: the model (or `host`) and the features it was
    /// started with ([`cpu`]); the destination gives its vCPU the same.
    #[serde(default)]
    pub cpu: Option<cpu::CpuWire>,
    /// The guest belongs to a site migrating several guests ([`crate::site`]).
    #[serde(default)]
    pub site: Option<crate::site::SiteHello>,
    /// Post-copy or hybrid ([`postcopy`]); None: pre-copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<memfabric_migration::record::Mechanism>,
    /// Several streams ([`multifd`]; absent with one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multifd: Option<multifd::StreamPlan>,
}

/// Destination → source: ready to receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloAck {
    /// Time to map and pre-fault guest RAM, ms.
    pub prefault_ms: f64,
    /// The CPU the destination's host offers ([`cpu`]).
    #[serde(default)]
    pub cpu: Option<cpu::CpuWire>,
}

/// Source → destination: a round ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundEnd {
    /// Round number (0 = full copy).
    pub round: u32,
    /// Pages sent in it.
    pub pages: u64,
}

/// Source → destination: the guest is paused and every page is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switchover {
    /// When the source vCPU stopped (CLOCK_MONOTONIC ns).
    pub pause_ns: u64,
    /// [`chunk_digests`] of guest RAM at the pause (None: the integrity
    /// check is off, `--no-integrity-check`).
    pub chunk_hashes: Option<Vec<u64>>,
    /// The guest's write count at the pause.
    pub guest_writes: u64,
    /// The guest's hash chain at the pause.
    pub guest_checksum: u64,
}

/// Destination → source: the guest runs at the destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resumed {
    /// When the destination vCPU entered KVM_RUN (CLOCK_MONOTONIC ns).
    pub resume_ns: u64,
    /// Time to hash the destination's RAM and compare, ms.
    pub verify_ms: f64,
}

/// Either way: giving up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Abort {
    /// Why.
    pub reason: String,
}

/// The integrity digest of each [`CHUNK_PAGES`]-page chunk: xxh3-64 over
/// the xxh3-64 hashes of its pages, in order.
///
/// Both ends combine running per-page hashes ([`PageHashes`]), so the check
/// costs the pause about half a millisecond per GiB at each end instead of
/// a pass over RAM. The source hashes each page as it sends it (the copy it encodes),
/// the stop-and-copy included: at the pause every page holds what it held
/// when last sent, since the dirty log reports every page written after
/// its read (KVM's dirty log is exact; a page read while the guest wrote it
/// is dirty again and re-sent). The destination hashes each page where it
/// lies in RAM right after decoding it, and nothing else writes its RAM
/// before the resume. Equal digests therefore mean every destination page
/// equals the source's at the pause; a page lost, misdecoded, reordered
/// across rounds or changed after it was written shows as a differing
/// chunk. What it no longer sees is a guest write the dirty log missed (the
/// full hash of the source's RAM at the pause that it replaces did, at
/// 90–250 ms of downtime per GiB): the check trusts KVM's dirty log.
pub fn chunk_digests(page_hashes: &[u64]) -> Vec<u64> {
    page_hashes
        .chunks(CHUNK_PAGES as usize)
        .map(|c| {
            let bytes: Vec<u8> = c.iter().flat_map(|h| h.to_le_bytes()).collect();
            xxhash_rust::xxh3::xxh3_64(&bytes)
        })
        .collect()
}

/// xxh3-64 of one page (the integrity hash).
pub fn page_hash(page: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(page)
}

/// A running record of the hash of every page of guest RAM: at the source,
/// of each page as last sent; at the destination, of each page as last
/// written.
#[derive(Debug, Clone)]
pub struct PageHashes(pub Vec<u64>);

impl PageHashes {
    /// RAM of `pages` zero pages.
    pub fn zeroed(pages: u64) -> PageHashes {
        PageHashes(vec![page_hash(&[0u8; memfabric_migration::pipeline::PAGE_SIZE]); pages as usize])
    }

    /// Page `index` now holds `page`.
    pub fn set(&mut self, index: u64, page: &[u8]) {
        self.0[index as usize] = page_hash(page);
    }
}

/// CPU time of the calling thread, seconds.
pub fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Writes `report` as JSON to `path` (atomically: temp file, then rename).
pub fn write_json<T: Serialize>(path: &std::path::Path, report: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer_pretty(&mut f, report)?;
    std::io::Write::write_all(&mut f, b"\n")?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}
