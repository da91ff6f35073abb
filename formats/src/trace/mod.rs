//! Memory traces: what a VM's pages hold and which pages it dirties over time,
//! as a versioned on-disk format (`docs/trace-format.md` is the reference).
//!
//! A trace is a directory:
//!
//! ```text
//! <trace>/
//! ├── manifest.json      format name and version, page size, VM, memory size,
//! │                      epochs, duration, source (synthetic or captured)
//! ├── snapshot.parquet   one row per page at time 0:
//! │                      page_index u64 | hash_hi u64 | hash_lo u64 | zero bool
//! │                      | lz4_bytes u32 | zstd_bytes u32
//! └── epochs.parquet     one row per page dirtied in an epoch:
//!                        epoch u32 | time_ns u64 | page_index u64 | hash_hi u64
//!                        | hash_lo u64 | delta_bytes u32 | lz4_bytes u32 | zstd_bytes u32
//! ```
//!
//! Every Parquet file carries the key-value metadata
//! `memfabric.trace_format_version`, so a file copied on its own still says
//! which format it follows.
//!
//! **Versioning.** [`FORMAT_VERSION`] names one exact layout of all three
//! files. Any change a version-1 reader would misread — a new, removed,
//! renamed or retyped column or manifest field, a new meaning for a value —
//! bumps it. Readers accept exactly the versions they list and refuse any
//! other, saying which they found and which they support; there is no
//! "ignore what you do not know".
//!
//! - [`Trace::read`] checks everything ([`TraceError`] lists every class of
//!   bad input; each names the file) and never panics on bad input.
//! - [`Trace::write`] validates first, then writes into a hidden sibling
//!   directory that is renamed into place, so no half-written trace exists.
//!
//! The simulator adds, under `memfabric_sim::trace`, the synthetic generator
//! (`gen`, `memfabric trace gen`), trace statistics and plots (`stats`) and
//! replay; the validator's `capture` writes captured traces with this module.

mod io;

use crate::workload::{Popularity, WorkloadSpec};
use memfabric_migration::pipeline::hash::{hash_page, ContentHash, HashAlgo};
use memfabric_migration::units::Fraction;
use memfabric_migration::PAGE_SIZE_BYTES;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default trace length of a synthetic trace or a capture: 60 s.
pub const DEFAULT_DURATION_NS: u64 = 60_000_000_000;
/// Default epoch length: 1 s (a typical dirty-log sync interval).
pub const DEFAULT_EPOCH_NS: u64 = 1_000_000_000;

/// The `format` field of every trace manifest.
pub const FORMAT_NAME: &str = "memfabric-trace";
/// The trace format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Format versions [`Trace::read`] accepts.
pub const SUPPORTED_VERSIONS: [u32; 1] = [FORMAT_VERSION];
/// Page size of every trace of this version, bytes.
pub const PAGE_SIZE: u64 = PAGE_SIZE_BYTES;
/// Parquet key-value metadata key holding the format version.
pub const METADATA_VERSION_KEY: &str = "memfabric.trace_format_version";
/// The manifest's file name.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The snapshot table's file name.
pub const SNAPSHOT_FILE: &str = "snapshot.parquet";
/// The epochs table's file name.
pub const EPOCHS_FILE: &str = "epochs.parquet";

/// The content hash of an all-zero page (xxh3-128, the hash every trace uses).
pub fn zero_page_hash() -> ContentHash {
    hash_page(HashAlgo::Xxh3_128, &[0u8; PAGE_SIZE_BYTES as usize])
}

/// `manifest.json`: what the trace is and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this code.
    pub format_version: u32,
    /// Bytes per page; always [`PAGE_SIZE`].
    pub page_size: u64,
    /// Name of the VM the trace describes.
    pub vm: String,
    /// Guest memory, bytes (`pages × page_size`).
    pub memory_bytes: u64,
    /// Pages of guest memory (rows of the snapshot).
    pub pages: u64,
    /// Number of dirty-tracking epochs after the snapshot.
    pub epochs: u32,
    /// End of the last epoch, nanoseconds after the snapshot.
    pub duration_ns: u64,
    /// How the trace was made.
    pub source: Source,
}

/// How a trace was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// Made by the simulator's generator (`memfabric trace gen`) from a workload model.
    Synthetic(SyntheticSource),
    /// Captured from a running guest (written by the validator).
    Captured(CapturedSource),
}

/// Everything the synthetic generator used, enough to make the trace again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSource {
    /// Archetype the workload started from.
    pub archetype: String,
    /// Image name the shared-image page hashes derive from.
    pub image: String,
    /// Seed of every random draw.
    pub seed: u64,
    /// memfabric version that generated it.
    pub memfabric_version: String,
    /// Length of every epoch, nanoseconds.
    pub epoch_ns: u64,
    /// The workload parameters.
    pub workload: WorkloadParams,
    /// The codec size factors used (from the CPU profile).
    pub size_factors: SizeFactorParams,
}

/// A captured trace's provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapturedSource {
    /// Machine it was captured on.
    pub machine: String,
    /// What the guest ran.
    pub workload: String,
    /// Tool and version that captured it.
    pub tool: String,
}

/// The [`WorkloadSpec`] parameters as plain numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadParams {
    /// Fraction of zero pages.
    pub zero: f64,
    /// Fraction of pages shared with VMs of the same image.
    pub shared_image: f64,
    /// Fraction of pages duplicating another page of the VM.
    pub duplicate: f64,
    /// Mean zstd-1 size fraction of a non-zero page.
    pub unique_compressed_mean: f64,
    /// Standard deviation of that fraction.
    pub unique_compressed_sd: f64,
    /// Fraction of memory the VM writes.
    pub working_set: f64,
    /// Page writes per second, re-writes included.
    pub page_write_rate: f64,
    /// Popularity law over the working set.
    pub popularity: PopularityParams,
    /// Mean fraction of a page's bytes a changing re-write changes.
    pub redirty_change: f64,
    /// Fraction of re-writes that leave the content unchanged.
    pub redirty_unchanged: f64,
}

/// [`Popularity`] as plain numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PopularityParams {
    /// Every working-set page equally likely.
    Uniform,
    /// A hot set receiving a share of the writes.
    HotCold {
        /// Fraction of the working set that is hot.
        hot_set: f64,
        /// Fraction of writes to it.
        hot_write_share: f64,
    },
    /// Zipf over page ranks.
    Zipf {
        /// The exponent.
        exponent: f64,
    },
}

/// Codec size factors the generator used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeFactorParams {
    /// lz4 size / zstd-1 size.
    pub lz4: f64,
    /// XBZRLE bytes per changed byte.
    pub xbzrle_per_changed_byte: f64,
    /// lz4 size of a zero page, bytes.
    pub lz4_zero_page_bytes: f64,
    /// zstd size of a zero page, bytes.
    pub zstd_zero_page_bytes: f64,
}

impl WorkloadParams {
    /// The parameters of a workload spec.
    pub fn from_spec(spec: &WorkloadSpec) -> WorkloadParams {
        let c = &spec.content;
        WorkloadParams {
            zero: c.zero.0,
            shared_image: c.shared_image.0,
            duplicate: c.duplicate.0,
            unique_compressed_mean: c.unique_compressed_mean.0,
            unique_compressed_sd: c.unique_compressed_sd,
            working_set: spec.working_set.0,
            page_write_rate: spec.page_write_rate,
            popularity: match &spec.popularity {
                Popularity::Uniform => PopularityParams::Uniform,
                Popularity::HotCold { hot_set, hot_write_share } => {
                    PopularityParams::HotCold { hot_set: hot_set.0, hot_write_share: hot_write_share.0 }
                }
                Popularity::Zipf { exponent } => PopularityParams::Zipf { exponent: *exponent },
            },
            redirty_change: spec.redirty_change.0,
            redirty_unchanged: spec.redirty_unchanged.0,
        }
    }

    /// The workload spec these parameters describe (named `archetype`).
    pub fn to_spec(&self, archetype: &str) -> WorkloadSpec {
        WorkloadSpec {
            archetype: archetype.to_string(),
            content: crate::workload::ContentMix {
                zero: Fraction(self.zero),
                shared_image: Fraction(self.shared_image),
                duplicate: Fraction(self.duplicate),
                unique_compressed_mean: Fraction(self.unique_compressed_mean),
                unique_compressed_sd: self.unique_compressed_sd,
            },
            working_set: Fraction(self.working_set),
            page_write_rate: self.page_write_rate,
            popularity: match self.popularity {
                PopularityParams::Uniform => Popularity::Uniform,
                PopularityParams::HotCold { hot_set, hot_write_share } => {
                    Popularity::HotCold { hot_set: Fraction(hot_set), hot_write_share: Fraction(hot_write_share) }
                }
                PopularityParams::Zipf { exponent } => Popularity::Zipf { exponent },
            },
            redirty_change: Fraction(self.redirty_change),
            redirty_unchanged: Fraction(self.redirty_unchanged),
        }
    }
}

/// One row of `snapshot.parquet`: a page at time 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPage {
    /// Guest page frame number, `0..pages`.
    pub page_index: u64,
    /// xxh3-128 of the page's bytes (columns `hash_hi`, `hash_lo`).
    pub hash: ContentHash,
    /// Whether the page is all zero.
    pub zero: bool,
    /// lz4 size of the page, bytes (4096: incompressible).
    pub lz4_bytes: u32,
    /// zstd level-1 size of the page, bytes (4096: incompressible).
    pub zstd_bytes: u32,
}

/// One row of `epochs.parquet`: a page dirtied in an epoch, as it is at the
/// epoch's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirtyPage {
    /// Epoch number, from 0.
    pub epoch: u32,
    /// End of the epoch, nanoseconds after the snapshot.
    pub time_ns: u64,
    /// Guest page frame number.
    pub page_index: u64,
    /// Content hash at the end of the epoch.
    pub hash: ContentHash,
    /// Size of an XBZRLE-like delta against the page's previous version
    /// (0: content unchanged).
    pub delta_bytes: u32,
    /// lz4 size of the new content, bytes.
    pub lz4_bytes: u32,
    /// zstd level-1 size of the new content, bytes.
    pub zstd_bytes: u32,
}

/// A memory trace in memory: manifest, snapshot (in page order) and dirtied
/// pages (in epoch order).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `manifest.json`.
    pub manifest: Manifest,
    /// `snapshot.parquet`, one row per page, sorted by page index.
    pub snapshot: Vec<SnapshotPage>,
    /// `epochs.parquet`, sorted by epoch (and by page index within an epoch
    /// when written by memfabric).
    pub epochs: Vec<DirtyPage>,
}

/// A trace could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A file of the trace does not exist.
    #[error("{file}: missing (a trace directory holds manifest.json, snapshot.parquet and epochs.parquet)")]
    Missing {
        /// The file.
        file: PathBuf,
    },
    /// A file of the trace is not a regular file, too large or not UTF-8.
    #[error(transparent)]
    Input(crate::input::InputError),
    /// `--out` names something that must not be replaced.
    #[error(transparent)]
    Out(#[from] crate::atomic_dir::OutDirError),
    /// A file or directory could not be read or written.
    #[error("{file}: I/O error")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not valid JSON or does not match the manifest schema.
    #[error("{file}: bad manifest JSON")]
    Json {
        /// The manifest.
        file: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest's `format` is not [`FORMAT_NAME`].
    #[error("{file}: unknown format {found:?}, expected \"memfabric-trace\"")]
    UnknownFormat {
        /// The manifest.
        file: PathBuf,
        /// The `format` found.
        found: String,
    },
    /// The format version is not one this reader supports.
    #[error("{file}: format version {found} is not supported (this memfabric reads version {supported:?})")]
    UnsupportedVersion {
        /// The manifest or Parquet file.
        file: PathBuf,
        /// The version found (as written).
        found: String,
        /// The versions supported.
        supported: Vec<u32>,
    },
    /// The page size is not [`PAGE_SIZE`].
    #[error("{file}: page_size {found} is not supported (only 4096)")]
    PageSize {
        /// The manifest.
        file: PathBuf,
        /// The page size found.
        found: u64,
    },
    /// A table's bytes do not match the checksum its manifest records.
    #[error("{file}: corrupt: its xxh3 is {found}, the manifest records {expected}")]
    TableChecksum {
        /// The table.
        file: PathBuf,
        /// From the manifest's `tables_xxh3`.
        expected: String,
        /// Of the bytes read.
        found: String,
    },
    /// A Parquet file is truncated, corrupt or not Parquet.
    #[error("{file}: cannot read Parquet (truncated or corrupt file?)")]
    Parquet {
        /// The file.
        file: PathBuf,
        /// The reader's error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A Parquet file lacks its `memfabric.trace_format_version` metadata.
    #[error("{file}: no memfabric.trace_format_version key-value metadata (not a memfabric trace table)")]
    NoVersionMetadata {
        /// The file.
        file: PathBuf,
    },
    /// A required column is missing.
    #[error("{file}: missing column {column} ({expected})")]
    MissingColumn {
        /// The file.
        file: PathBuf,
        /// The column.
        column: &'static str,
        /// Its type.
        expected: &'static str,
    },
    /// A column has the wrong type.
    #[error("{file}: column {column} has type {found}, expected {expected}")]
    ColumnType {
        /// The file.
        file: PathBuf,
        /// The column.
        column: &'static str,
        /// The expected type.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// A column holds nulls.
    #[error("{file}: column {column} has {nulls} null values (nulls are not allowed)")]
    Nulls {
        /// The file.
        file: PathBuf,
        /// The column.
        column: &'static str,
        /// How many.
        nulls: usize,
    },
    /// A column not in the schema.
    #[error("{file}: unexpected column {column} (format version 1 has exactly the documented columns)")]
    UnexpectedColumn {
        /// The file.
        file: PathBuf,
        /// The column.
        column: String,
    },
    /// A page index is not below the manifest's page count.
    #[error("{file}: row {row}: page_index {page_index} out of range (the VM has {pages} pages)")]
    PageOutOfRange {
        /// The file.
        file: PathBuf,
        /// Row number, from 0.
        row: usize,
        /// The page index.
        page_index: u64,
        /// Pages of the VM.
        pages: u64,
    },
    /// A page appears twice in the snapshot.
    #[error("{file}: row {row}: duplicate page_index {page_index}")]
    DuplicatePage {
        /// The file.
        file: PathBuf,
        /// Row number of the second occurrence.
        row: usize,
        /// The page index.
        page_index: u64,
    },
    /// The snapshot does not have one row per page.
    #[error("{file}: {rows} rows, but the manifest says the VM has {pages} pages (one row per page)")]
    RowCount {
        /// The file.
        file: PathBuf,
        /// Rows found.
        rows: usize,
        /// Pages in the manifest.
        pages: u64,
    },
    /// Epoch rows are not in non-decreasing epoch and time order.
    #[error("{file}: row {row}: epochs out of order: {problem}")]
    EpochOrder {
        /// The file.
        file: PathBuf,
        /// Row number, from 0.
        row: usize,
        /// What is wrong.
        problem: String,
    },
    /// A page appears twice in one epoch.
    #[error("{file}: row {row}: page {page_index} dirtied twice in epoch {epoch}")]
    DirtiedTwice {
        /// The file.
        file: PathBuf,
        /// Row number of the second occurrence.
        row: usize,
        /// The epoch.
        epoch: u32,
        /// The page.
        page_index: u64,
    },
    /// Any other value that breaks the format's rules.
    #[error("{file}: {problem}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl Trace {
    /// Reads and validates the trace in `dir`.
    pub fn read(dir: &Path) -> Result<Trace, TraceError> {
        io::read(dir)
    }

    /// Validates the trace and writes it to `dir`, replacing a previous
    /// trace there atomically; any other non-empty `dir` is refused (see
    /// [`crate::atomic_dir`]).
    pub fn write(&self, dir: &Path) -> Result<(), TraceError> {
        self.write_replacing(dir, false)
    }

    /// [`Trace::write`], with `force` letting another memfabric folder (a
    /// run result, or a trace with extra files) be replaced.
    pub fn write_replacing(&self, dir: &Path, force: bool) -> Result<(), TraceError> {
        self.validate(dir)?;
        io::write(self, dir, force)
    }

    /// Checks every rule of the format; errors name the files under `dir`.
    pub fn validate(&self, dir: &Path) -> Result<(), TraceError> {
        validate_manifest(&self.manifest, &dir.join(MANIFEST_FILE))?;
        self.validate_snapshot(&dir.join(SNAPSHOT_FILE))?;
        self.validate_epochs(&dir.join(EPOCHS_FILE))
    }

    fn validate_snapshot(&self, file: &Path) -> Result<(), TraceError> {
        let pages = self.manifest.pages;
        // The row count first: it bounds the memory the checks below take,
        // whatever page count a bad manifest claims.
        if self.snapshot.len() as u64 != pages {
            return Err(TraceError::RowCount { file: file.into(), rows: self.snapshot.len(), pages });
        }
        let zero_hash = zero_page_hash();
        let mut seen = vec![false; self.snapshot.len()];
        for (row, p) in self.snapshot.iter().enumerate() {
            if p.page_index >= pages {
                return Err(TraceError::PageOutOfRange { file: file.into(), row, page_index: p.page_index, pages });
            }
            let slot = &mut seen[p.page_index as usize];
            if *slot {
                return Err(TraceError::DuplicatePage { file: file.into(), row, page_index: p.page_index });
            }
            *slot = true;
            check_sizes(file, row, &[("lz4_bytes", p.lz4_bytes), ("zstd_bytes", p.zstd_bytes)], 1)?;
            if p.zero != (p.hash == zero_hash) {
                return Err(TraceError::Invalid {
                    file: file.into(),
                    problem: format!(
                        "row {row}: page {}: zero = {} but its hash {} the hash of the all-zero page",
                        p.page_index,
                        p.zero,
                        if p.zero { "is not" } else { "is" }
                    ),
                });
            }
        }
        Ok(())
    }

    fn validate_epochs(&self, file: &Path) -> Result<(), TraceError> {
        let m = &self.manifest;
        // For each page, 1 + the last epoch it was dirtied in (0: never).
        // (The snapshot check has bounded `pages` by the rows actually read.)
        let mut last = vec![0u64; self.snapshot.len()];
        let mut prev: Option<(u32, u64)> = None;
        for (row, d) in self.epochs.iter().enumerate() {
            if d.page_index >= m.pages {
                return Err(TraceError::PageOutOfRange {
                    file: file.into(),
                    row,
                    page_index: d.page_index,
                    pages: m.pages,
                });
            }
            if let Some((e, t)) = prev {
                let problem = if d.epoch < e {
                    Some(format!("epoch {} follows epoch {e}", d.epoch))
                } else if d.time_ns < t {
                    Some(format!("time_ns {} follows time_ns {t}", d.time_ns))
                } else if d.epoch == e && d.time_ns != t {
                    Some(format!("epoch {e} has two end times, {t} and {}", d.time_ns))
                } else if d.epoch > e && d.time_ns == t {
                    Some(format!("epochs {e} and {} end at the same time_ns {t}", d.epoch))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(TraceError::EpochOrder { file: file.into(), row, problem });
                }
            }
            prev = Some((d.epoch, d.time_ns));
            if d.epoch >= m.epochs {
                return Err(TraceError::Invalid {
                    file: file.into(),
                    problem: format!("row {row}: epoch {} but the manifest has {} epochs", d.epoch, m.epochs),
                });
            }
            if d.time_ns > m.duration_ns {
                return Err(TraceError::Invalid {
                    file: file.into(),
                    problem: format!(
                        "row {row}: time_ns {} after the manifest's duration_ns {}",
                        d.time_ns, m.duration_ns
                    ),
                });
            }
            let slot = &mut last[d.page_index as usize];
            if *slot == u64::from(d.epoch) + 1 {
                return Err(TraceError::DirtiedTwice {
                    file: file.into(),
                    row,
                    epoch: d.epoch,
                    page_index: d.page_index,
                });
            }
            *slot = u64::from(d.epoch) + 1;
            check_sizes(file, row, &[("lz4_bytes", d.lz4_bytes), ("zstd_bytes", d.zstd_bytes)], 1)?;
            check_sizes(file, row, &[("delta_bytes", d.delta_bytes)], 0)?;
        }
        Ok(())
    }
}

/// Sizes must lie in `min..=4096`.
fn check_sizes(file: &Path, row: usize, sizes: &[(&str, u32)], min: u32) -> Result<(), TraceError> {
    for &(column, v) in sizes {
        if v < min || u64::from(v) > PAGE_SIZE {
            return Err(TraceError::Invalid {
                file: file.into(),
                problem: format!("row {row}: {column} = {v} outside {min}..=4096"),
            });
        }
    }
    Ok(())
}

fn validate_manifest(m: &Manifest, file: &Path) -> Result<(), TraceError> {
    if m.format != FORMAT_NAME {
        return Err(TraceError::UnknownFormat { file: file.into(), found: m.format.clone() });
    }
    if !SUPPORTED_VERSIONS.contains(&m.format_version) {
        return Err(TraceError::UnsupportedVersion {
            file: file.into(),
            found: m.format_version.to_string(),
            supported: SUPPORTED_VERSIONS.to_vec(),
        });
    }
    if m.page_size != PAGE_SIZE {
        return Err(TraceError::PageSize { file: file.into(), found: m.page_size });
    }
    let invalid = |problem: String| Err(TraceError::Invalid { file: file.into(), problem });
    if m.pages.checked_mul(PAGE_SIZE) != Some(m.memory_bytes) {
        return invalid(format!("memory_bytes {} is not pages ({}) × page_size (4096)", m.memory_bytes, m.pages));
    }
    if usize::try_from(m.pages).is_err() {
        return invalid(format!("pages {} is too large for this machine", m.pages));
    }
    if m.epochs > 0 && m.duration_ns == 0 {
        return invalid(format!("{} epochs but duration_ns is 0", m.epochs));
    }
    Ok(())
}

