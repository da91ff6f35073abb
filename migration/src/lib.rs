//! # memfabric-migration
//!
//! Logic shared by the simulator (`memfabric-sim`) and the validator: everything
//! that must mean *the same thing* in a simulated and in a real migration.
//!
//! This crate owns:
//! - [`units`]: typed quantities (bytes, bytes per second, nanoseconds, fractions)
//!   and the parsing of unit strings such as `"10Gbit/s"`, `"64GiB"`, `"50ms"`, `"2%"`;
//! - [`precopy`]: the pre-copy stop rule ([`precopy::precopy_decision`]) and QEMU's
//!   auto-converge throttle ([`precopy::AutoConverge`]);
//! - [`state`]: the migration state machine, which refuses bad transitions;
//! - [`record`]: the names of mechanisms and outcomes written into result tables;
//! - [`strategy`]: data-reduction strategy names (`zero+xbzrle+zstd`, …);
//! - [`tcp`]: the rate cap of TCP streams (window/RTT and Mathis' loss bound),
//!   which the simulator's flows and the validator's emulated link both use;
//! - [`pipeline`]: the data-reduction pipeline as real codecs on real pages
//!   (zero pages, content hashing, dedup with scopes and domains, Bloom
//!   summaries, XBZRLE-like delta, lz4/zstd), its versioned wire format and
//!   decoder;
//! - [`pagegen`]: deterministic page contents (zero, text, binary, random,
//!   small re-dirty changes) for benchmarks and profiles.
//!
//! It has no clock, no I/O, no randomness and no KVM: every function is a pure
//! function of its arguments (the page generators are seeded), so both halves
//! of memfabric can call it.

pub mod pagegen;
pub mod pipeline;
pub mod precopy;
pub mod record;
pub mod state;
pub mod strategy;
pub mod tcp;
pub mod units;

/// Size of a guest page in bytes (x86-64 base page).
pub const PAGE_SIZE_BYTES: u64 = 4096;

/// Bytes of framing that QEMU puts in front of every page record on the
/// migration stream (an 8-byte address+flags word, `ram_save_page`
/// in QEMU's `migration/ram.c`).
pub const PAGE_HEADER_BYTES: u64 = 8;

/// Bytes on the wire for one uncompressed page: header plus page.
pub const RAW_PAGE_WIRE_BYTES: u64 = PAGE_SIZE_BYTES + PAGE_HEADER_BYTES;
