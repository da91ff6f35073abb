//! The scenario file format, as written (TOML, strict: unknown keys are errors).
//!
//! These structs mirror the file one to one; [`super::load`] resolves names,
//! applies archetype defaults and checks meaning. The reference with an example
//! of every key is `docs/scenario.md`.

use memfabric_migration::precopy::NonConvergence;
use memfabric_migration::record::Mechanism;
use memfabric_migration::units::{Bytes, BytesPerSecond, Fraction, Nanos};
use super::json_schema::{Duration, MechanismName, NonConvergenceName, Rate, Share, Size, StrategyName};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// A whole scenario file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Identity and run settings.
    pub scenario: ScenarioSection,
    /// Defaults for every migration.
    #[serde(default)]
    pub defaults: MigrationSettingsFile,
    /// Sites with their hosts.
    #[serde(default)]
    pub sites: Vec<SiteFile>,
    /// WAN links.
    #[serde(default)]
    pub links: Vec<LinkFile>,
    /// Virtual machines.
    #[serde(default)]
    pub vms: Vec<VmFile>,
    /// Explicitly scheduled migrations.
    #[serde(default)]
    pub migrations: Vec<MigrationFile>,
    /// Site evacuations.
    #[serde(default)]
    pub evacuations: Vec<EvacuationFile>,
    /// Scheduled host and site failures.
    #[serde(default)]
    pub failures: Vec<FailureFile>,
    /// HA restart of VMs whose host failed.
    #[serde(default)]
    #[schemars(with = "Option<HaFile>")]
    pub ha: Option<Spanned<HaFile>>,
    /// Energy accounting and host power states (present: energy is reported).
    #[serde(default)]
    pub power: Option<PowerFile>,
}

/// `[power]`: report energy; power-state durations and watts.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerFile {
    /// Time to boot a host (default 180 s).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub boot_time: Option<Spanned<Nanos>>,
    /// Time to shut a host down (default 30 s).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub shutdown_time: Option<Spanned<Nanos>>,
    /// Watts of a host that is off (default 5).
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub off_watts: Option<Spanned<f64>>,
    /// Watts while booting (default: the host's peak).
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub boot_watts: Option<Spanned<f64>>,
    /// Watts while shutting down (default: the host's idle).
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub shutdown_watts: Option<Spanned<f64>>,
}

/// `[[failures]]`: a host or a whole site fails at a time.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureFile {
    /// The host that fails.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// Or the site whose every host fails.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub site: Option<Spanned<String>>,
    /// When.
    #[schemars(with = "Duration")]
    pub at: Spanned<Nanos>,
    /// Repaired after this long (never, if absent).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub repair_after: Option<Spanned<Nanos>>,
}

/// `[ha]`: restart VMs of failed hosts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HaFile {
    /// Time from a failure until HA acts (default 15 s).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub detection: Option<Spanned<Nanos>>,
    /// Boot time of a restarted VM (default 60 s).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub boot_time: Option<Spanned<Nanos>>,
    /// Admission control: keep room for this many host failures per site.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub admission_host_failures: Option<Spanned<u32>>,
    /// Admission control: keep this fraction of each site's RAM free.
    #[serde(default)]
    #[schemars(with = "Option<Share>")]
    pub admission_percent: Option<Spanned<Fraction>>,
    /// "site" (default) or "fabric".
    #[serde(default)]
    pub scope: Option<crate::failure::HaScope>,
    /// Retry interval for VMs waiting for room (default 60 s).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub retry_interval: Option<Spanned<Nanos>>,
}

/// `[scenario]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    /// Name; also the default results folder.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Seed of every random draw.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Simulated time after which the run stops.
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub horizon: Option<Spanned<Nanos>>,
    /// Rate of a migration between two hosts of the same site.
    #[serde(default)]
    #[schemars(with = "Option<Rate>")]
    pub lan_bandwidth: Option<Spanned<BytesPerSecond>>,
    /// CPU-cost profile (TOML written by `memfabric profile`), relative to the scenario file.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cpu_profile: Option<Spanned<String>>,
    /// Calibration profile (TOML written by `memfabric calibrate`), relative
    /// to the scenario file; `memfabric run --calibration` overrides it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub calibration: Option<Spanned<String>>,
    /// Who may share content by deduplication: "tenant" (default) or "global".
    #[serde(default)]
    pub dedup_domains: Option<DedupDomains>,
    /// Run the scenario once per strategy and compare (overrides every migration's strategy).
    #[serde(default)]
    #[schemars(with = "Option<Vec<StrategyName>>")]
    pub compare_strategies: Option<Spanned<Vec<Spanned<memfabric_migration::strategy::Strategy>>>>,
    /// Content-hash sampling of traced VMs: keep non-zero pages whose hash
    /// falls in a 1/2^k slice and scale them by 2^k (0..=16, default 0).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub trace_sampling_bits: Option<Spanned<u32>>,
}

/// Boundaries of deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DedupDomains {
    /// Content is shared only between VMs of the same tenant (cross-tenant
    /// dedup is a side channel).
    #[default]
    Tenant,
    /// Any VMs may share content.
    Global,
}

/// How a re-dirtied page count is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DirtySampling {
    /// Binomial draws per popularity class (default).
    Binomial,
    /// The expected value, no randomness (for analytical comparisons).
    Expected,
}

/// Migration settings; every field is optional and overrides the level above
/// (built-in defaults ← `[defaults]` ← an operation's `settings`).
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationSettingsFile {
    /// pre-copy, post-copy, hybrid or stop-and-copy.
    #[schemars(with = "Option<MechanismName>")]
    pub mechanism: Option<Mechanism>,
    /// Pre-copy downtime limit.
    #[schemars(with = "Option<Duration>")]
    pub downtime_limit: Option<Spanned<Nanos>>,
    /// Bound on pre-copy rounds.
    #[schemars(with = "Option<u32>")]
    pub max_rounds: Option<Spanned<u32>>,
    /// abort, force-stop or post-copy.
    #[schemars(with = "Option<NonConvergenceName>")]
    pub on_non_convergence: Option<NonConvergence>,
    /// Enable QEMU-style auto-converge throttling.
    pub auto_converge: Option<bool>,
    /// Parallel TCP streams (QEMU multifd channels).
    #[schemars(with = "Option<u32>")]
    pub streams: Option<Spanned<u32>>,
    /// Per-migration bandwidth limit (QEMU `max-bandwidth`).
    #[schemars(with = "Option<Rate>")]
    pub max_bandwidth: Option<Spanned<BytesPerSecond>>,
    /// Effective TCP window per stream.
    #[schemars(with = "Option<Size>")]
    pub tcp_window: Option<Spanned<Bytes>>,
    /// TCP maximum segment size.
    #[schemars(with = "Option<Size>")]
    pub mss: Option<Spanned<Bytes>>,
    /// binomial or expected.
    pub dirty_sampling: Option<DirtySampling>,
    /// Data-reduction strategy, e.g. "zero+xbzrle+zstd".
    #[schemars(with = "Option<StrategyName>")]
    pub strategy: Option<Spanned<memfabric_migration::strategy::Strategy>>,
    /// Threads of the reduction pipeline at each end (default: one per stream).
    #[schemars(with = "Option<u32>")]
    pub cpu_threads: Option<Spanned<u32>>,
    /// XBZRLE cache size.
    #[schemars(with = "Option<Size>")]
    pub xbzrle_cache: Option<Spanned<Bytes>>,
    /// Content hash for dedup: "xxh3" (default) or "blake3".
    pub hash: Option<HashName>,
    /// How `dedup-site` learns what the destination holds: "exact", "query" or "summary".
    pub site_index: Option<SiteIndexName>,
    /// Bloom summary size, bits per resident page ("summary").
    #[schemars(with = "Option<f64>")]
    pub summary_bits_per_item: Option<Spanned<f64>>,
    /// Pages per index query ("query").
    #[schemars(with = "Option<u32>")]
    pub query_batch: Option<Spanned<u32>>,
    /// How a destination host is chosen at a site: "most-free-ram" (default) or "first-fit".
    pub placement: Option<crate::placement::Placer>,
}

/// Site index modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SiteIndexName {
    /// An exact replica kept in sync outside the migration (idealised, free).
    Exact,
    /// Ask the destination per batch of pages (one round trip per batch).
    Query,
    /// A Bloom-filter summary sent to the source first (sync traffic, false positives).
    Summary,
}

/// Content hash names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HashName {
    /// xxh3-128: fast, not collision-resistant against an adversary.
    Xxh3,
    /// BLAKE3 truncated to 128 bits: cryptographic.
    Blake3,
}

/// `[[sites]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// Unique site name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Host groups.
    #[serde(default)]
    pub hosts: Vec<HostFile>,
}

/// `[[sites.hosts]]`: one host, or `count` identical ones named `name-0`, `name-1`, ….
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    /// Host name (or prefix when `count` > 1).
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// How many identical hosts.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub count: Option<Spanned<u32>>,
    /// Physical cores.
    #[schemars(with = "u32")]
    pub cores: Spanned<u32>,
    /// Memory.
    #[schemars(with = "Size")]
    pub ram: Spanned<Bytes>,
    /// Idle power draw, watts.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub idle_watts: Option<Spanned<f64>>,
    /// Full-load power draw, watts.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub peak_watts: Option<Spanned<f64>>,
    /// CPU vendor ("intel" or "amd"), with `cpu_features`.
    #[serde(default)]
    #[schemars(with = "Option<crate::cpu::CpuVendor>")]
    pub cpu_vendor: Option<Spanned<crate::cpu::CpuVendor>>,
    /// A named CPU model (vendor and features follow from it).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cpu_model: Option<Spanned<String>>,
    /// CPU feature flags (with `cpu_vendor`), instead of a named model.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub cpu_features: Option<Spanned<Vec<String>>>,
    /// Watts at 0 %, 10 %, …, 100 % CPU (11 points, SPECpower style),
    /// instead of `idle_watts` and `peak_watts`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<f64>>")]
    pub power_table: Option<Spanned<Vec<f64>>>,
    /// Mean time between random failures (with `mttr`).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub mtbf: Option<Spanned<Nanos>>,
    /// Mean time to repair (with `mtbf`).
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub mttr: Option<Spanned<Nanos>>,
}

/// `[[links]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkFile {
    /// Unique link name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The two sites it joins (exactly two; checked when the fabric is built).
    #[schemars(with = "[String; 2]")]
    pub between: Spanned<Vec<String>>,
    /// Capacity of each direction.
    #[schemars(with = "Rate")]
    pub bandwidth: Spanned<BytesPerSecond>,
    /// One-way latency.
    #[schemars(with = "Duration")]
    pub latency: Spanned<Nanos>,
    /// Packet loss probability.
    #[serde(default)]
    #[schemars(with = "Option<Share>")]
    pub loss: Option<Spanned<Fraction>>,
    /// Scheduled capacity changes.
    #[serde(default)]
    pub capacity_changes: Vec<CapacityChangeFile>,
    /// Scheduled outages.
    #[serde(default)]
    pub outages: Vec<OutageFile>,
}

/// `[[links.capacity_changes]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityChangeFile {
    /// When.
    #[schemars(with = "Duration")]
    pub at: Spanned<Nanos>,
    /// New capacity of each direction.
    #[schemars(with = "Rate")]
    pub bandwidth: Spanned<BytesPerSecond>,
}

/// `[[links.outages]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutageFile {
    /// Start.
    #[schemars(with = "Duration")]
    pub at: Spanned<Nanos>,
    /// Length.
    #[schemars(with = "Duration")]
    pub duration: Spanned<Nanos>,
}

/// `[[vms]]`: one VM, or `count` identical ones named `name-0`, ….
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmFile {
    /// VM name (or prefix when `count` > 1).
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// How many identical VMs.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub count: Option<Spanned<u32>>,
    /// The host it starts on.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// Or the site it starts on (placed first-fit on its hosts).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub site: Option<Spanned<String>>,
    /// Workload archetype.
    #[schemars(with = "String")]
    pub archetype: Spanned<String>,
    /// Memory (default: the archetype's).
    #[serde(default)]
    #[schemars(with = "Option<Size>")]
    pub memory: Option<Spanned<Bytes>>,
    /// Virtual CPUs.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub vcpus: Option<Spanned<u32>>,
    /// vCPU and device state sent in the stop-and-copy.
    #[serde(default)]
    #[schemars(with = "Option<Size>")]
    pub device_state: Option<Spanned<Bytes>>,
    /// Image it was booted from (same-image VMs share content).
    #[serde(default)]
    pub image: Option<String>,
    /// Tenant (dedup domain).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Overrides of the archetype's parameters.
    #[serde(default)]
    pub workload: WorkloadFile,
    /// Memory trace directory (relative to the scenario file): the VM's
    /// memory size, content and dirtying come from it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub trace: Option<Spanned<String>>,
    /// Multiplies the trace's times (default 1).
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub trace_time_scale: Option<Spanned<f64>>,
    /// Replay the trace from its start when it ends (default true).
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub trace_loop: Option<Spanned<bool>>,
    /// CPU model the VM sees: a named model or "host-passthrough" (default: unrestricted).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cpu_model: Option<Spanned<String>>,
    /// Fraction of its vCPUs the VM keeps busy (energy; default 30%).
    #[serde(default)]
    #[schemars(with = "Option<Share>")]
    pub cpu_load: Option<Spanned<Fraction>>,
    /// HA restart priority: "high", "medium" (default), "low" or "disabled".
    #[serde(default)]
    pub ha_priority: Option<crate::failure::HaPriority>,
}

/// Page write rate: `"5000pages/s"` or a byte rate such as `"20MB/s"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageRate(pub f64);

impl<'de> Deserialize<'de> for PageRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(num) = s.trim().strip_suffix("pages/s") {
            let v: f64 = num
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("invalid page rate {s:?}; expected e.g. \"5000pages/s\" or \"20MB/s\"")))?;
            if !(v.is_finite() && v >= 0.0) {
                return Err(serde::de::Error::custom(format!("invalid page rate {s:?}: must be a non-negative number")));
            }
            Ok(PageRate(v))
        } else {
            let r = BytesPerSecond::parse(&s).map_err(serde::de::Error::custom)?;
            Ok(PageRate(r.0 / memfabric_migration::PAGE_SIZE_BYTES as f64))
        }
    }
}

/// `[vms.workload]`: overrides of an archetype.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    /// Page writes per second.
    #[schemars(with = "Option<PageRate>")]
    pub page_write_rate: Option<Spanned<PageRate>>,
    /// Fraction of memory ever written.
    #[schemars(with = "Option<Share>")]
    pub working_set: Option<Spanned<Fraction>>,
    /// uniform, hot-cold or zipf.
    #[schemars(with = "Option<String>")]
    pub popularity: Option<Spanned<String>>,
    /// Hot fraction of the working set (hot-cold).
    #[schemars(with = "Option<Share>")]
    pub hot_set: Option<Spanned<Fraction>>,
    /// Share of writes to hot pages (hot-cold).
    #[schemars(with = "Option<Share>")]
    pub hot_write_share: Option<Spanned<Fraction>>,
    /// Zipf exponent (zipf).
    #[schemars(with = "Option<f64>")]
    pub zipf_exponent: Option<Spanned<f64>>,
    /// Zero pages.
    #[schemars(with = "Option<Share>")]
    pub zero: Option<Spanned<Fraction>>,
    /// Pages shared with same-image VMs.
    #[schemars(with = "Option<Share>")]
    pub shared_image: Option<Spanned<Fraction>>,
    /// Pages duplicated within the VM.
    #[schemars(with = "Option<Share>")]
    pub duplicate: Option<Spanned<Fraction>>,
    /// Mean compressed size of unique pages.
    #[schemars(with = "Option<Share>")]
    pub unique_compressed_mean: Option<Spanned<Fraction>>,
    /// Standard deviation of that size fraction.
    #[schemars(with = "Option<f64>")]
    pub unique_compressed_sd: Option<Spanned<f64>>,
    /// Mean fraction of bytes a re-write changes.
    #[schemars(with = "Option<Share>")]
    pub redirty_change: Option<Spanned<Fraction>>,
    /// Fraction of writes that leave a page unchanged.
    #[schemars(with = "Option<Share>")]
    pub redirty_unchanged: Option<Spanned<Fraction>>,
}

/// `[[migrations]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationFile {
    /// The VM to move.
    #[schemars(with = "String")]
    pub vm: Spanned<String>,
    /// Destination site or host.
    #[schemars(with = "String")]
    pub to: Spanned<String>,
    /// Start time.
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub at: Option<Spanned<Nanos>>,
    /// If live migration is refused as CPU-incompatible, restart the VM cold
    /// at the destination instead, booting for this long.
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub cold_restart_fallback: Option<Spanned<Nanos>>,
    /// Overrides of the defaults.
    #[serde(default)]
    pub settings: MigrationSettingsFile,
}

/// Order in which an evacuation moves VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EvacuationOrder {
    /// Scenario order.
    #[default]
    Declared,
    /// Largest memory first (ties: scenario order).
    LargestFirst,
    /// Smallest memory first (ties: scenario order).
    SmallestFirst,
}

/// `[[evacuations]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvacuationFile {
    /// Name in results (default `evacuate-<from>`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// Site to empty.
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    /// Site to move to.
    #[schemars(with = "String")]
    pub to: Spanned<String>,
    /// Start time.
    #[serde(default)]
    #[schemars(with = "Option<Duration>")]
    pub at: Option<Spanned<Nanos>>,
    /// Migrations in flight at once (default: unbounded).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_concurrent: Option<Spanned<u32>>,
    /// Order of VMs.
    #[serde(default)]
    pub order: EvacuationOrder,
    /// Overrides of the defaults.
    #[serde(default)]
    pub settings: MigrationSettingsFile,
}
