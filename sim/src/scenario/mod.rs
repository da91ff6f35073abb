//! Scenario files: loading, defaults, and every check that must pass before a
//! simulation runs.
//!
//! [`load`] reads a TOML file ([`schema`] is its exact shape), rejects unknown
//! keys and malformed values with the file, line, column and field, resolves
//! names into typed ids, applies archetype and built-in defaults, and checks
//! meaning (a VM bigger than its host, a route that does not exist, zero
//! bandwidth, …). Nothing is simulated and nothing is written unless all of
//! it passes.

pub mod json_schema;
mod fabric_sections;
pub mod schema;
mod sections;
mod vms;

use crate::fabric::{CapacityChange, Fabric, Host, HostId, Link, LinkId, Outage, Site, SiteId, VmId};
use crate::workload::{archetype, ContentMix, Popularity, WorkloadSpec};
use memfabric_migration::precopy::{NonConvergence, PrecopyConfig, DEFAULT_DOWNTIME_LIMIT, DEFAULT_MAX_ROUNDS};
use memfabric_migration::record::Mechanism;
use memfabric_migration::units::{Bytes, BytesPerSecond, Fraction, Nanos};
use schema::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

pub use schema::{DedupDomains, DirtySampling, EvacuationOrder};
use crate::reduction::profile::CpuProfile;
use memfabric_migration::strategy::Strategy;

/// Seed used when a scenario names none.
pub const DEFAULT_SEED: u64 = 1;
/// Simulated time after which a run stops when the scenario names no horizon.
pub const DEFAULT_HORIZON: Nanos = Nanos::from_secs(24 * 3600);
/// Rate of a migration between hosts of one site: a 10 Gbit/s LAN, a common
/// data-center host uplink.
pub const DEFAULT_LAN_BANDWIDTH: BytesPerSecond = BytesPerSecond(1.25e9);
/// vCPU and device state sent in the final stop-and-copy. QEMU's non-RAM
/// state (vCPU registers, APIC, virtio queues, device config) is typically
/// hundreds of KiB to a few MiB; 1 MiB is a middle value (reasoned, not measured).
pub const DEFAULT_DEVICE_STATE: Bytes = Bytes(1 << 20);
/// Virtual CPUs of a VM that names none.
pub const DEFAULT_VCPUS: u32 = 2;
/// Idle power of a host that names none: a two-socket server (reasoned).
pub const DEFAULT_IDLE_WATTS: f64 = 100.0;
/// Peak power of a host that names none (reasoned).
pub const DEFAULT_PEAK_WATTS: f64 = 300.0;
/// Default parallel streams per migration: QEMU migrates over one TCP
/// connection unless multifd is enabled.
pub const DEFAULT_STREAMS: u32 = 1;

/// Most hosts a scenario may define, counting `count` expansions: 100,000
/// (ten times the largest committed scenario's fabric; the engine keeps per-host
/// state, so this bounds memory before anything is allocated).
pub const HOSTS_MAX: u64 = 100_000;
/// Most VMs a scenario may define, counting `count` expansions: 1,000,000
/// (`memfabric bench` measures 100,000-VM evacuations in seconds).
pub const VMS_MAX: u64 = 1_000_000;
/// Most RAM of one host, and most memory of one VM: 64 TiB (the largest
/// shipping servers hold 32-48 TiB). With [`HOSTS_MAX`] it keeps every sum of
/// memory in a scenario below 2^63 bytes, so no byte count can overflow.
pub const MEMORY_BYTES_MAX: Bytes = Bytes(64 << 40);
/// Longest scenario name in bytes: 200, so that the results folder's name
/// and its hidden staging sibling (`.<name>.partial-<pid>-<n>`) fit the
/// 255-byte file-name limit of Linux filesystems.
pub const NAME_BYTES_MAX: usize = 200;

/// Why `name` cannot name a results folder, if it cannot: empty, longer than
/// [`NAME_BYTES_MAX`] bytes, holding `/`, `\`, NUL or another control
/// character (a newline, a tab), or starting with `.`.
pub fn folder_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("must not be empty".into())
    } else if name.len() > NAME_BYTES_MAX {
        Some(format!("is {} bytes long; at most {NAME_BYTES_MAX} bytes", name.len()))
    } else if let Some(c) = name.chars().find(|c| c.is_control() || matches!(c, '/' | '\\')) {
        Some(format!("must not contain {c:?}"))
    } else if name.starts_with('.') {
        Some("must not start with '.'".into())
    } else {
        None
    }
}

/// A scenario could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read (missing, not a regular file, too large,
    /// not UTF-8).
    #[error(transparent)]
    Read(#[from] crate::input::InputError),
    /// The file is malformed or means something impossible.
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted path of the offending field, e.g. `vms[2].memory`.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// Resolved settings of one migration.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationSettings {
    /// How memory moves.
    pub mechanism: Mechanism,
    /// The stop rule's parameters.
    pub precopy: PrecopyConfig,
    /// QEMU-style auto-converge throttling.
    pub auto_converge: bool,
    /// Parallel TCP streams.
    pub streams: u32,
    /// Per-migration rate limit.
    pub max_bandwidth: Option<BytesPerSecond>,
    /// Effective TCP window per stream.
    pub tcp_window: Bytes,
    /// TCP maximum segment size.
    pub mss: Bytes,
    /// How dirty-page counts are drawn.
    pub dirty_sampling: DirtySampling,
    /// Data-reduction strategy.
    pub strategy: Strategy,
    /// Reduction threads at each end (`None`: one per stream).
    pub cpu_threads: Option<u32>,
    /// XBZRLE cache size.
    pub xbzrle_cache: Bytes,
    /// Content hash for dedup.
    pub hash: memfabric_migration::pipeline::HashAlgo,
    /// How `dedup-site` learns the destination's content.
    pub site_index: SiteIndex,
    /// How a destination host is chosen at a site.
    pub placer: crate::placement::Placer,
}

/// How `dedup-site` learns what the destination site holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SiteIndex {
    /// An exact replica at the source, kept in sync outside the migration
    /// (idealised: no traffic, no false positives).
    Exact,
    /// The source asks the destination about each batch of pages' hashes:
    /// one query in flight, so a round trip per batch bounds the rate, and
    /// 16 bytes of hash per page go with the query.
    Query {
        /// Pages per query.
        batch_pages: u32,
    },
    /// The destination sends a Bloom filter of its resident pages before the
    /// migration starts; a false positive costs a reference and then the page.
    Summary {
        /// Filter bits per resident page.
        bits_per_item: f64,
    },
}

/// Default Bloom summary size: 10 bits per page (≈0.8% false positives with
/// 7 hashes), the pipeline's default.
pub const DEFAULT_SUMMARY_BITS_PER_ITEM: f64 = memfabric_migration::pipeline::DEFAULT_BLOOM_BITS_PER_ITEM as f64;
/// Default pages per index query (1 MiB of pages, 4 KiB of hashes).
pub const DEFAULT_QUERY_BATCH_PAGES: u32 = 256;

impl SiteIndex {
    /// The false-positive rate of the mode.
    pub fn false_positive_rate(&self) -> f64 {
        match self {
            SiteIndex::Summary { bits_per_item } => {
                use memfabric_migration::pipeline::BloomFilter;
                BloomFilter::expected_false_positive_rate(*bits_per_item, BloomFilter::optimal_hash_count(*bits_per_item))
            }
            _ => 0.0,
        }
    }
}

impl MigrationSettings {
    /// Reduction threads at each end.
    pub fn threads(&self) -> u32 {
        self.cpu_threads.unwrap_or(self.streams)
    }
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings {
            mechanism: Mechanism::PreCopy,
            precopy: PrecopyConfig {
                downtime_limit: DEFAULT_DOWNTIME_LIMIT,
                max_rounds: DEFAULT_MAX_ROUNDS,
                on_non_convergence: NonConvergence::Abort,
            },
            auto_converge: false,
            streams: DEFAULT_STREAMS,
            max_bandwidth: None,
            tcp_window: crate::network::tcp::DEFAULT_TCP_WINDOW,
            mss: crate::network::tcp::DEFAULT_MSS,
            dirty_sampling: DirtySampling::Binomial,
            strategy: Strategy::NONE,
            cpu_threads: None,
            xbzrle_cache: Bytes(crate::reduction::DEFAULT_XBZRLE_CACHE_BYTES),
            hash: memfabric_migration::pipeline::HashAlgo::Xxh3_128,
            site_index: SiteIndex::Summary { bits_per_item: DEFAULT_SUMMARY_BITS_PER_ITEM },
            placer: crate::placement::Placer::MostFreeRam,
        }
    }
}

/// A virtual machine.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Name.
    pub name: String,
    /// Host it starts on.
    pub host: HostId,
    /// Memory size.
    pub memory: Bytes,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// vCPU/device state sent during the pause.
    pub device_state: Bytes,
    /// Image it was booted from.
    pub image: Option<String>,
    /// Tenant (dedup domain when domains are per tenant).
    pub tenant: String,
    /// Workload parameters (with a trace: the archetype's, used only where
    /// the trace says nothing, e.g. post-copy faults).
    pub workload: WorkloadSpec,
    /// The memory trace driving its content and dirtying, if any.
    pub trace: Option<Box<crate::trace::replay::VmTrace>>,
    /// The CPU it sees (for live-migration compatibility).
    pub cpu: crate::cpu::VmCpu,
    /// HA restart priority.
    pub ha_priority: crate::failure::HaPriority,
    /// Fraction of its vCPUs it keeps busy (energy).
    pub cpu_load: f64,
}

/// Where a migration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Any host with room at the site.
    Site(SiteId),
    /// This host.
    Host(HostId),
}

/// A fabric operation.
#[derive(Debug, Clone)]
pub enum OperationSpec {
    /// Move one VM at a given time.
    Migrate {
        /// Name in results.
        name: String,
        /// The VM.
        vm: VmId,
        /// Where to.
        to: Destination,
        /// When.
        at: Nanos,
        /// How.
        settings: MigrationSettings,
        /// Boot time of a cold restart at the destination when live
        /// migration is refused as CPU-incompatible (no fallback if `None`).
        cold_fallback: Option<Nanos>,
    },
    /// Move every VM of a site to another site.
    Evacuate {
        /// Name in results.
        name: String,
        /// Site to empty.
        from: SiteId,
        /// Destination site.
        to: SiteId,
        /// When.
        at: Nanos,
        /// Migrations in flight at once.
        max_concurrent: Option<u32>,
        /// Order of VMs.
        order: EvacuationOrder,
        /// How.
        settings: MigrationSettings,
    },
}

impl OperationSpec {
    /// The operation's name.
    pub fn name(&self) -> &str {
        match self {
            OperationSpec::Migrate { name, .. } | OperationSpec::Evacuate { name, .. } => name,
        }
    }
}

/// A checked, resolved scenario, ready to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Seed of every random draw.
    pub seed: u64,
    /// Stop time.
    pub horizon: Nanos,
    /// Intra-site migration rate.
    pub lan_bandwidth: BytesPerSecond,
    /// Sites, hosts, links, routes.
    pub fabric: Fabric,
    /// VMs by [`VmId`].
    pub vms: Vec<Vm>,
    /// Operations in file order (migrations first, then evacuations).
    pub operations: Vec<OperationSpec>,
    /// xxh3-128 of the scenario text, hex.
    pub source_hash: String,
    /// CPU costs of the reduction stages.
    pub cpu_profile: CpuProfile,
    /// Which profile: "built-in profiles/default.toml" or the path as written
    /// in the scenario, with an xxh3-64 hash of its text.
    pub cpu_profile_source: String,
    /// Who may share content.
    pub dedup_domains: DedupDomains,
    /// Strategies to compare (empty: one run as written).
    pub compare_strategies: Vec<Strategy>,
    /// Content-hash sampling of traced VMs, bits (0: every page).
    pub trace_sampling_bits: u32,
    /// The traces the VMs replay, once each in file order: the path as
    /// written in the scenario and an xxh3-64 of the trace's three files.
    pub trace_sources: Vec<String>,
    /// The calibration applied (`[scenario] calibration` or `memfabric run
    /// --calibration`), if any: its downtime components are added at every
    /// pre-copy switchover.
    pub calibration: Option<crate::calibrate::profile::Calibration>,
    /// Where that calibration came from, when it came from a file (the
    /// result manifest's `calibration`).
    pub calibration_source: Option<crate::calibrate::profile::CalibrationSource>,
    /// Scheduled host and site failures, in file order.
    pub failures: Vec<crate::failure::ScheduledFailure>,
    /// Hosts with a random failure law.
    pub random_failures: Vec<crate::failure::RandomFailure>,
    /// HA restart, if the scenario has an `[ha]` section.
    pub ha: Option<crate::failure::HaSpec>,
    /// Energy accounting and power states, if the scenario has a `[power]` section.
    pub power: Option<crate::energy::PowerSpec>,
}

impl Scenario {
    /// Things that are legal but probably not meant, for `memfabric check`:
    /// a VM whose CPU model no host outside its start site accepts for live
    /// migration can never move off that site (except by a cold restart).
    pub fn warnings(&self) -> Vec<String> {
        let f = &self.fabric;
        let mut out = Vec::new();
        for vm in &self.vms {
            if vm.cpu == crate::cpu::VmCpu::Any {
                continue;
            }
            let src = &f.hosts[vm.host.index()];
            let elsewhere = f.hosts.iter().filter(|h| h.site != src.site && h.ram >= vm.memory);
            let reachable = elsewhere.filter(|h| f.route(src.site, h.site).is_some());
            if !reachable.into_iter().any(|h| crate::cpu::live_compatible(&vm.cpu, &src.cpu, &h.cpu)) {
                let model = match &vm.cpu {
                    crate::cpu::VmCpu::Model { name, .. } => name.as_str(),
                    _ => "host-passthrough",
                };
                out.push(format!(
                    "VM {:?} (cpu_model {model:?}) can never live-migrate off site {:?}: no host at another reachable site is CPU compatible",
                    vm.name, f.sites[src.site.index()].name
                ));
            }
        }
        out
    }
}

/// Tenant of VMs that name none.
pub const DEFAULT_TENANT: &str = "default";

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = crate::input::read_text(path, crate::input::SCENARIO_BYTES_MAX, "a scenario")?;
    parse_in(&text, &path.display().to_string(), path.parent())
}

/// [`load`], leaving out the profile the scenario's `calibration` key names
/// (not read, not applied): for `memfabric run --calibration`, which
/// overrides it.
pub fn load_uncalibrated(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = crate::input::read_text(path, crate::input::SCENARIO_BYTES_MAX, "a scenario")?;
    let ctx = Ctx { text: &text, label: &path.display().to_string(), base: path.parent(), calibration_key: false };
    parse_ctx(ctx)
}

/// Checks a scenario given as text; `label` names it in errors. Relative
/// paths inside it (a `cpu_profile`) are taken from the working directory.
pub fn parse(text: &str, label: &str) -> Result<Scenario, ScenarioError> {
    parse_in(text, label, None)
}

/// Checks a scenario given as text whose relative paths (a `cpu_profile`,
/// traces) are taken from `base`, as if the file were in that folder (a
/// sweep's variants of a scenario file).
pub fn parse_at(text: &str, label: &str, base: Option<&Path>) -> Result<Scenario, ScenarioError> {
    parse_in(text, label, base)
}

/// [`parse`] without the loader's cut at `[[vms]]` entries ([`sections`]):
/// the whole text as one TOML tree, as the loader parses a document whose
/// layout it does not cut, and any document it refuses. The same scenario
/// as [`parse`] (checked by tests); kept as the baseline of `memfabric bench
/// --workload load`: its memory peaks at about 30 bytes per byte of text.
pub fn parse_as_one_document(text: &str, label: &str) -> Result<Scenario, ScenarioError> {
    let ctx = Ctx { text, label, base: None, calibration_key: true };
    Ok(Scenario { source_hash: source_hash(text), ..parse_whole(ctx)? })
}

fn source_hash(text: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

fn parse_in(text: &str, label: &str, base: Option<&Path>) -> Result<Scenario, ScenarioError> {
    parse_ctx(Ctx { text, label, base, calibration_key: true })
}

/// Scenario texts up to this size are parsed as one document: its tree peaks
/// at about 30 bytes per byte of text, 2 MiB here. Larger ones are cut at
/// their `[[vms]]` entries ([`sections`]), which pays there but costs small
/// refused documents a second parse (docs/development.md).
const CUT_ABOVE_BYTES: usize = 64 << 10;

fn parse_ctx(ctx: Ctx<'_>) -> Result<Scenario, ScenarioError> {
    // A large scenario that lists VMs is parsed one `[[vms]]` entry at a
    // time (`sections`). If that path refuses anything, the whole document
    // is parsed as one, which finds the first problem in file order and
    // says where it is, as it always did.
    let cut = if ctx.text.len() > CUT_ABOVE_BYTES { sections::split(ctx.text) } else { None };
    let scenario = match cut.and_then(|split| parse_split(ctx, split)) {
        Some(scenario) => scenario,
        None => parse_whole(ctx)?,
    };
    Ok(Scenario { source_hash: source_hash(ctx.text), ..scenario })
}

/// The whole document parsed as one tree, then deserialized and checked.
fn parse_whole(ctx: Ctx<'_>) -> Result<Scenario, ScenarioError> {
    let deserializer = toml::Deserializer::parse(ctx.text).map_err(|e| ctx.toml_error(&e, "toml syntax".into()))?;
    let file: ScenarioFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // serde_spanned wraps values in an internal field; it is not the user's.
        let path = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        ctx.toml_error(e.inner(), if path == "." { "(top level)".into() } else { path })
    })?;
    Builder { ctx, file: &file, vm_entries: None }.build()
}

/// The document cut by [`sections::split`]: the rest parsed as one, each VM
/// entry parsed and resolved before the next (`None` if anything is refused).
fn parse_split(ctx: Ctx<'_>, split: sections::Split) -> Option<Scenario> {
    let sections::Split { rest, vm_entries } = split;
    let root = toml::de::DeTable::parse(&rest).ok()?;
    // `vms` given in the rest too (`vms = [...]`, a dotted key): the whole
    // document says what that means.
    if root.get_ref().keys().any(|k| k.get_ref() == "vms") {
        return None;
    }
    let file = ScenarioFile::deserialize(toml::Deserializer::from(root)).ok()?;
    drop(rest);
    Builder { ctx, file: &file, vm_entries: Some(&vm_entries) }.build().ok()
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    text: &'a str,
    label: &'a str,
    base: Option<&'a Path>,
    /// Whether the `calibration` key's profile is read and applied.
    calibration_key: bool,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn error(&self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
        let (line, column) = self.line_col(span.start);
        ScenarioError::Invalid {
            path: self.label.to_string(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error, field: String) -> ScenarioError {
        let span = e.span().unwrap_or(0..0);
        self.error(span, field, e.message().trim().to_string())
    }
}

fn sp<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

struct Builder<'a> {
    ctx: Ctx<'a>,
    /// The document, or with `vm_entries` the document without its VMs.
    file: &'a ScenarioFile,
    /// Byte ranges of the `[[vms]]` entries in the text, parsed one at a
    /// time ([`sections`]); `None`: the VMs are `file.vms`.
    vm_entries: Option<&'a [Range<usize>]>,
}

type Res<T> = Result<T, ScenarioError>;

/// The names of `count` entries called `name` (`name-0`, `name-1`, …), made
/// one at a time: the caller has bounded `count` before.
fn expand_names(name: &str, count: Option<u32>) -> Box<dyn Iterator<Item = String> + '_> {
    match count {
        None => Box::new(std::iter::once(name.to_string())),
        Some(n) => Box::new((0..n).map(move |i| format!("{name}-{i}"))),
    }
}

impl Builder<'_> {
    fn err(&self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
        self.ctx.error(span, field, message)
    }

    fn build(&self) -> Res<Scenario> {
        let f = self.file;
        let name = f.scenario.name.get_ref().trim().to_string();
        if let Some(problem) = folder_name_problem(&name) {
            return Err(self.err(
                sp(&f.scenario.name),
                "scenario.name",
                format!("{problem} (it names the results folder: no '/', '\\', control characters or leading '.')"),
            ));
        }
        let horizon = f.scenario.horizon.as_ref().map_or(DEFAULT_HORIZON, |h| *h.get_ref());
        if horizon.0 == 0 {
            return Err(self.err(sp(f.scenario.horizon.as_ref().unwrap()), "scenario.horizon", "must be positive"));
        }
        let lan_bandwidth = match &f.scenario.lan_bandwidth {
            Some(b) if b.get_ref().0 <= 0.0 => {
                return Err(self.err(sp(b), "scenario.lan_bandwidth", "must be positive, e.g. \"10Gbit/s\""))
            }
            Some(b) => *b.get_ref(),
            None => DEFAULT_LAN_BANDWIDTH,
        };
        // The profile is recorded as written in the scenario plus a hash of its
        // text, so results do not depend on the directory the run started in.
        let short_hash = |text: &str| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()));
        let (cpu_profile, cpu_profile_source) = match &f.scenario.cpu_profile {
            None => (
                CpuProfile::builtin(),
                format!("built-in profiles/default.toml (xxh3 {})", short_hash(crate::reduction::profile::DEFAULT_PROFILE_TOML)),
            ),
            Some(p) => {
                let path = match self.ctx.base {
                    Some(base) => base.join(p.get_ref()),
                    None => Path::new(p.get_ref()).to_path_buf(),
                };
                let text = crate::input::read_text(&path, crate::input::PROFILE_BYTES_MAX, "a CPU profile").map_err(|e| {
                    let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
                    self.err(sp(p), "scenario.cpu_profile", format!("cannot use {e}{cause}"))
                })?;
                let profile: CpuProfile = toml::from_str(&text).map_err(|e| {
                    self.err(sp(p), "scenario.cpu_profile", format!("{} is not a CPU profile: {}", path.display(), e.message()))
                })?;
                profile.check().map_err(|why| {
                    self.err(sp(p), "scenario.cpu_profile", format!("{}: {why}", path.display()))
                })?;
                (profile, format!("{} (xxh3 {})", p.get_ref(), short_hash(&text)))
            }
        };
        let mut compare_strategies = Vec::new();
        if let Some(list) = &f.scenario.compare_strategies {
            if list.get_ref().is_empty() {
                return Err(self.err(sp(list), "scenario.compare_strategies", "list at least one strategy, or leave the key out"));
            }
            for s in list.get_ref() {
                if compare_strategies.contains(s.get_ref()) {
                    return Err(self.err(sp(s), "scenario.compare_strategies", format!("{} is listed twice", s.get_ref())));
                }
                compare_strategies.push(*s.get_ref());
            }
        }
        let trace_sampling_bits = match &f.scenario.trace_sampling_bits {
            Some(b) if *b.get_ref() > crate::trace::replay::MAX_SAMPLING_BITS => {
                return Err(self.err(
                    sp(b),
                    "scenario.trace_sampling_bits",
                    format!("{} is out of range; expected 0..=16 (keep 1/2^k of the page contents)", b.get_ref()),
                ))
            }
            Some(b) => *b.get_ref(),
            None => 0,
        };
        let defaults = self.settings(&MigrationSettings::default(), &f.defaults, "defaults")?;
        let fabric = self.fabric(horizon)?;
        let vms = self.vms(&fabric, trace_sampling_bits)?;
        let mut trace_sources: Vec<String> = Vec::new();
        for v in &vms {
            if let Some(t) = &v.trace {
                let source = format!("{} (xxh3 {})", t.path, t.files_hash);
                if !trace_sources.contains(&source) {
                    trace_sources.push(source);
                }
            }
        }
        let operations = self.operations(&fabric, &vms, &defaults)?;
        let (failures, random_failures) = self.failures(&fabric)?;
        let ha = self.ha()?;
        let power = self.power()?;
        Ok(Scenario {
            power,
            failures,
            random_failures,
            ha,
            name,
            description: f.scenario.description.clone(),
            seed: f.scenario.seed.unwrap_or(DEFAULT_SEED),
            horizon,
            lan_bandwidth,
            fabric,
            vms,
            operations,
            source_hash: String::new(),
            cpu_profile,
            cpu_profile_source,
            dedup_domains: f.scenario.dedup_domains.unwrap_or_default(),
            compare_strategies,
            trace_sampling_bits,
            trace_sources,
            calibration: None,
            calibration_source: None,
        })
        .and_then(|mut sc| {
            self.calibrate(&mut sc)?;
            Ok(sc)
        })
    }

    /// Applies the profile the `calibration` key names (relative to the
    /// scenario file), recording its path, hash and name.
    fn calibrate(&self, sc: &mut Scenario) -> Res<()> {
        let Some(p) = &self.file.scenario.calibration else { return Ok(()) };
        if !self.ctx.calibration_key {
            return Ok(());
        }
        let path = match self.ctx.base {
            Some(base) => base.join(p.get_ref()),
            None => Path::new(p.get_ref()).to_path_buf(),
        };
        let (c, source) = crate::calibrate::profile::Calibration::load_with_source(&path, p.get_ref()).map_err(|e| {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
            self.err(sp(p), "scenario.calibration", format!("cannot use {e}{cause}"))
        })?;
        crate::calibrate::profile::apply_from_file(sc, &c, source);
        Ok(())
    }

    fn settings(&self, base: &MigrationSettings, s: &MigrationSettingsFile, at: &str) -> Res<MigrationSettings> {
        let mut out = base.clone();
        if let Some(m) = s.mechanism {
            out.mechanism = m;
        }
        if let Some(d) = &s.downtime_limit {
            out.precopy.downtime_limit = PrecopyConfig::check_downtime_limit(*d.get_ref())
                .map_err(|e| self.err(sp(d), format!("{at}.downtime_limit"), e.to_string()))?;
        }
        if let Some(r) = &s.max_rounds {
            out.precopy.max_rounds = PrecopyConfig::check_max_rounds(*r.get_ref())
                .map_err(|e| self.err(sp(r), format!("{at}.max_rounds"), e.to_string()))?;
        }
        if let Some(n) = s.on_non_convergence {
            out.precopy.on_non_convergence = n;
        }
        if let Some(a) = s.auto_converge {
            out.auto_converge = a;
        }
        if let Some(p) = s.placement {
            out.placer = p;
        }
        if let Some(n) = &s.streams {
            if *n.get_ref() == 0 || *n.get_ref() > 256 {
                return Err(self.err(sp(n), format!("{at}.streams"), "must be between 1 and 256"));
            }
            out.streams = *n.get_ref();
        }
        if let Some(b) = &s.max_bandwidth {
            if b.get_ref().0 <= 0.0 {
                return Err(self.err(sp(b), format!("{at}.max_bandwidth"), "must be positive; leave it out for no limit"));
            }
            out.max_bandwidth = Some(*b.get_ref());
        }
        if let Some(w) = &s.tcp_window {
            if w.get_ref().0 == 0 {
                return Err(self.err(sp(w), format!("{at}.tcp_window"), "must be positive, e.g. \"4MiB\""));
            }
            out.tcp_window = *w.get_ref();
        }
        if let Some(m) = &s.mss {
            if m.get_ref().0 < 64 || m.get_ref().0 > 65_535 {
                return Err(self.err(sp(m), format!("{at}.mss"), "must be between 64B and 65535B, e.g. \"1448B\""));
            }
            out.mss = *m.get_ref();
        }
        if let Some(d) = s.dirty_sampling {
            out.dirty_sampling = d;
        }
        if let Some(st) = &s.strategy {
            out.strategy = *st.get_ref();
        }
        if let Some(t) = &s.cpu_threads {
            if *t.get_ref() == 0 || *t.get_ref() > 256 {
                return Err(self.err(sp(t), format!("{at}.cpu_threads"), "must be between 1 and 256"));
            }
            out.cpu_threads = Some(*t.get_ref());
        }
        if let Some(c) = &s.xbzrle_cache {
            out.xbzrle_cache = *c.get_ref();
        }
        if let Some(mode) = s.site_index {
            out.site_index = match mode {
                schema::SiteIndexName::Exact => SiteIndex::Exact,
                schema::SiteIndexName::Query => SiteIndex::Query { batch_pages: DEFAULT_QUERY_BATCH_PAGES },
                schema::SiteIndexName::Summary => SiteIndex::Summary { bits_per_item: DEFAULT_SUMMARY_BITS_PER_ITEM },
            };
        }
        if let Some(b) = &s.summary_bits_per_item {
            let v = *b.get_ref();
            if !(v.is_finite() && (1.0..=64.0).contains(&v)) {
                return Err(self.err(sp(b), format!("{at}.summary_bits_per_item"), "must be between 1 and 64"));
            }
            match &mut out.site_index {
                SiteIndex::Summary { bits_per_item } => *bits_per_item = v,
                _ => return Err(self.err(sp(b), format!("{at}.summary_bits_per_item"), "only applies with site_index = \"summary\"")),
            }
        }
        if let Some(q) = &s.query_batch {
            if *q.get_ref() == 0 {
                return Err(self.err(sp(q), format!("{at}.query_batch"), "must be at least 1 page"));
            }
            match &mut out.site_index {
                SiteIndex::Query { batch_pages } => *batch_pages = *q.get_ref(),
                _ => return Err(self.err(sp(q), format!("{at}.query_batch"), "only applies with site_index = \"query\"")),
            }
        }
        if let Some(h) = s.hash {
            out.hash = match h {
                schema::HashName::Xxh3 => memfabric_migration::pipeline::HashAlgo::Xxh3_128,
                schema::HashName::Blake3 => memfabric_migration::pipeline::HashAlgo::Blake3,
            };
        }
        Ok(out)
    }

    /// A host's CPU from `cpu_model`, or `cpu_vendor` with `cpu_features`.
    fn host_cpu(&self, h: &HostFile, hf: &str) -> Res<crate::cpu::HostCpu> {
        use crate::cpu::HostCpu;
        match (&h.cpu_model, &h.cpu_vendor, &h.cpu_features) {
            (None, None, None) => Ok(HostCpu::default()),
            (Some(m), None, None) => HostCpu::named(m.get_ref()).ok_or_else(|| {
                self.err(sp(m), format!("{hf}.cpu_model"), format!("unknown CPU model {:?}; known models: {}", m.get_ref(), crate::cpu::model_names().join(", ")))
            }),
            (Some(m), _, _) => Err(self.err(sp(m), format!("{hf}.cpu_model"), "give either cpu_model or cpu_vendor with cpu_features, not both")),
            (None, Some(v), Some(f)) => {
                if f.get_ref().is_empty() || f.get_ref().iter().any(|x| x.trim().is_empty()) {
                    return Err(self.err(sp(f), format!("{hf}.cpu_features"), "must list at least one non-empty feature name, e.g. [\"avx2\", \"avx512f\"]"));
                }
                let features = f.get_ref().iter().map(|x| x.trim().to_string()).collect();
                Ok(HostCpu { declared: Some((*v.get_ref(), features)), model: None })
            }
            (None, Some(v), None) => Err(self.err(sp(v), format!("{hf}.cpu_vendor"), "needs cpu_features (or give a cpu_model instead)")),
            (None, None, Some(f)) => Err(self.err(sp(f), format!("{hf}.cpu_features"), "needs cpu_vendor = \"intel\" or \"amd\"")),
        }
    }

    fn fabric(&self, horizon: Nanos) -> Res<Fabric> {
        let f = self.file;
        let mut sites = Vec::new();
        let mut hosts = Vec::new();
        let mut site_ids: BTreeMap<&str, SiteId> = BTreeMap::new();
        let mut host_names: BTreeMap<String, ()> = BTreeMap::new();
        if f.sites.is_empty() {
            return Err(self.err(0..0, "sites", "a scenario needs at least one [[sites]] entry"));
        }
        for (si, s) in f.sites.iter().enumerate() {
            let field = format!("sites[{si}]");
            let sname = s.name.get_ref().as_str();
            if sname.is_empty() {
                return Err(self.err(sp(&s.name), format!("{field}.name"), "must not be empty"));
            }
            let id = SiteId(sites.len() as u32);
            if site_ids.insert(sname, id).is_some() {
                return Err(self.err(sp(&s.name), format!("{field}.name"), format!("site {sname:?} is defined twice")));
            }
            let mut site = Site { name: sname.to_string(), hosts: Vec::new() };
            for (hi, h) in s.hosts.iter().enumerate() {
                let hf = format!("{field}.hosts[{hi}]");
                if *h.cores.get_ref() == 0 {
                    return Err(self.err(sp(&h.cores), format!("{hf}.cores"), "must be at least 1"));
                }
                if h.ram.get_ref().0 == 0 {
                    return Err(self.err(sp(&h.ram), format!("{hf}.ram"), "must be positive, e.g. \"256GiB\""));
                }
                if *h.ram.get_ref() > MEMORY_BYTES_MAX {
                    return Err(self.err(sp(&h.ram), format!("{hf}.ram"), format!("{} is more than a host can hold; at most {MEMORY_BYTES_MAX}", h.ram.get_ref())));
                }
                let n = h.count.as_ref().map_or(1, |c| u64::from(*c.get_ref()));
                if let Some(c) = &h.count {
                    if n == 0 {
                        return Err(self.err(sp(c), format!("{hf}.count"), "must be at least 1"));
                    }
                    // Before the names are expanded.
                    if hosts.len() as u64 + n > HOSTS_MAX {
                        return Err(self.err(sp(c), format!("{hf}.count"), format!(
                            "{n} hosts would make {} in all; a scenario holds at most {HOSTS_MAX}",
                            hosts.len() as u64 + n
                        )));
                    }
                }
                if hosts.len() as u64 + n > HOSTS_MAX {
                    return Err(self.err(sp(&h.name), format!("{hf}.name"), format!("a scenario holds at most {HOSTS_MAX} hosts")));
                }
                let idle = h.idle_watts.as_ref().map_or(DEFAULT_IDLE_WATTS, |w| *w.get_ref());
                let peak = h.peak_watts.as_ref().map_or(DEFAULT_PEAK_WATTS.max(idle), |w| *w.get_ref());
                if !(idle.is_finite() && idle >= 0.0 && peak.is_finite() && peak >= idle) {
                    let span = h.peak_watts.as_ref().or(h.idle_watts.as_ref()).map_or(sp(&h.name), sp);
                    return Err(self.err(span, format!("{hf}.peak_watts"), "watts must satisfy 0 <= idle_watts <= peak_watts"));
                }
                let cpu = self.host_cpu(h, &hf)?;
                let power = self.power_model(h, &hf, idle, peak)?;
                for name in expand_names(h.name.get_ref(), h.count.as_ref().map(|c| *c.get_ref())) {
                    if host_names.insert(name.clone(), ()).is_some() {
                        return Err(self.err(sp(&h.name), format!("{hf}.name"), format!("host {name:?} is defined twice")));
                    }
                    site.hosts.push(HostId(hosts.len() as u32));
                    hosts.push(Host {
                        name,
                        site: id,
                        cores: *h.cores.get_ref(),
                        ram: *h.ram.get_ref(),
                        idle_watts: idle,
                        peak_watts: peak,
                        cpu: cpu.clone(),
                        power: power.clone(),
                    });
                }
            }
            sites.push(site);
        }
        let mut links = Vec::new();
        let mut link_names: BTreeMap<&str, LinkId> = BTreeMap::new();
        for (li, l) in f.links.iter().enumerate() {
            let field = format!("links[{li}]");
            let lname = l.name.get_ref().as_str();
            if link_names.insert(lname, LinkId(li as u32)).is_some() {
                return Err(self.err(sp(&l.name), format!("{field}.name"), format!("link {lname:?} is defined twice")));
            }
            let [a, b] = l.between.get_ref().as_slice() else {
                return Err(self.err(
                    sp(&l.between),
                    format!("{field}.between"),
                    format!("must list exactly 2 sites, e.g. [\"a\", \"b\"]; found {}", l.between.get_ref().len()),
                ));
            };
            let lookup = |n: &str| {
                site_ids.get(n).copied().ok_or_else(|| {
                    self.err(sp(&l.between), format!("{field}.between"), format!("unknown site {n:?}; sites are {:?}", site_ids.keys().collect::<Vec<_>>()))
                })
            };
            let (a, b) = (lookup(a)?, lookup(b)?);
            if a == b {
                return Err(self.err(sp(&l.between), format!("{field}.between"), "a link must join two different sites"));
            }
            if l.bandwidth.get_ref().0 <= 0.0 {
                return Err(self.err(sp(&l.bandwidth), format!("{field}.bandwidth"), "must be positive, e.g. \"10Gbit/s\" (model a dead link with [[links.outages]])"));
            }
            let loss = l.loss.as_ref().map_or(Fraction(0.0), |x| *x.get_ref());
            if loss.0 >= 1.0 {
                return Err(self.err(sp(l.loss.as_ref().unwrap()), format!("{field}.loss"), "must be below 100%"));
            }
            let mut changes = Vec::new();
            for (ci, c) in l.capacity_changes.iter().enumerate() {
                if c.bandwidth.get_ref().0 <= 0.0 {
                    return Err(self.err(sp(&c.bandwidth), format!("{field}.capacity_changes[{ci}].bandwidth"), "must be positive; model a dead link with [[links.outages]]"));
                }
                if *c.at.get_ref() > horizon {
                    return Err(self.err(sp(&c.at), format!("{field}.capacity_changes[{ci}].at"), format!("is after the scenario horizon ({horizon})")));
                }
                changes.push(CapacityChange { at: *c.at.get_ref(), bandwidth: *c.bandwidth.get_ref() });
            }
            changes.sort_by_key(|c| c.at);
            // (outage, index in the file), sorted by start.
            let mut outages: Vec<(Outage, usize)> = Vec::new();
            for (oi, o) in l.outages.iter().enumerate() {
                if o.duration.get_ref().0 == 0 {
                    return Err(self.err(sp(&o.duration), format!("{field}.outages[{oi}].duration"), "must be positive"));
                }
                if *o.at.get_ref() > horizon {
                    return Err(self.err(sp(&o.at), format!("{field}.outages[{oi}].at"), format!("is after the scenario horizon ({horizon})")));
                }
                outages.push((Outage { at: *o.at.get_ref(), duration: *o.duration.get_ref() }, oi));
            }
            outages.sort_by_key(|(o, i)| (o.at, *i));
            for w in outages.windows(2) {
                let ((prev, pi), (next, ni)) = (w[0], w[1]);
                if prev.at.0.saturating_add(prev.duration.0) > next.at.0 {
                    return Err(self.err(
                        sp(&l.outages[ni].at),
                        format!("{field}.outages[{ni}].at"),
                        format!("overlaps outages[{pi}] of the same link (outages of one link must not overlap)"),
                    ));
                }
            }
            let outages: Vec<Outage> = outages.into_iter().map(|(o, _)| o).collect();
            links.push(Link {
                name: lname.to_string(),
                a,
                b,
                bandwidth: *l.bandwidth.get_ref(),
                latency: *l.latency.get_ref(),
                loss,
                capacity_changes: changes,
                outages,
            });
        }
        Ok(Fabric::new(sites, hosts, links))
    }

    fn operations(&self, fabric: &Fabric, vms: &[Vm], defaults: &MigrationSettings) -> Res<Vec<OperationSpec>> {
        // Only `[[migrations]]` name VMs: no index of 100,000 names without them.
        let vm_by_name: BTreeMap<&str, VmId> = if self.file.migrations.is_empty() {
            BTreeMap::new()
        } else {
            vms.iter().enumerate().map(|(i, v)| (v.name.as_str(), VmId(i as u32))).collect()
        };
        let site_by_name: BTreeMap<&str, SiteId> =
            fabric.sites.iter().enumerate().map(|(i, s)| (s.name.as_str(), SiteId(i as u32))).collect();
        let host_by_name: BTreeMap<&str, HostId> =
            fabric.hosts.iter().enumerate().map(|(i, h)| (h.name.as_str(), HostId(i as u32))).collect();
        let mut ops = Vec::new();
        let mut op_names: BTreeMap<String, ()> = BTreeMap::new();
        for (mi, m) in self.file.migrations.iter().enumerate() {
            let field = format!("migrations[{mi}]");
            let vm = *vm_by_name.get(m.vm.get_ref().as_str()).ok_or_else(|| {
                self.err(sp(&m.vm), format!("{field}.vm"), format!("unknown VM {:?}", m.vm.get_ref()))
            })?;
            let src_host = vms[vm.index()].host;
            let src_site = fabric.hosts[src_host.index()].site;
            let target = m.to.get_ref().as_str();
            let to = if let Some(s) = site_by_name.get(target) {
                Destination::Site(*s)
            } else if let Some(h) = host_by_name.get(target) {
                if *h == src_host {
                    return Err(self.err(sp(&m.to), format!("{field}.to"), format!("VM {:?} already runs on host {target:?}", m.vm.get_ref())));
                }
                let host = &fabric.hosts[h.index()];
                if host.ram < vms[vm.index()].memory {
                    return Err(self.err(sp(&m.to), format!("{field}.to"), format!("host {target:?} ({}) is smaller than VM {:?} ({})", host.ram, m.vm.get_ref(), vms[vm.index()].memory)));
                }
                Destination::Host(*h)
            } else {
                return Err(self.err(sp(&m.to), format!("{field}.to"), format!("{target:?} is neither a site nor a host")));
            };
            let dst_site = match to {
                Destination::Site(s) => s,
                Destination::Host(h) => fabric.hosts[h.index()].site,
            };
            if fabric.route(src_site, dst_site).is_none() {
                return Err(self.err(sp(&m.to), format!("{field}.to"), format!(
                    "no route from site {:?} to site {:?}: no chain of [[links]] joins them",
                    fabric.sites[src_site.index()].name, fabric.sites[dst_site.index()].name
                )));
            }
            let settings = self.settings(defaults, &m.settings, &format!("{field}.settings"))?;
            let name = format!("migrate-{}", m.vm.get_ref());
            let name = unique_name(&mut op_names, name);
            let cold_fallback = m.cold_restart_fallback.as_ref().map(|b| *b.get_ref());
            ops.push(OperationSpec::Migrate { name, vm, to, at: m.at.as_ref().map_or(Nanos(0), |a| *a.get_ref()), settings, cold_fallback });
        }
        for (ei, e) in self.file.evacuations.iter().enumerate() {
            let field = format!("evacuations[{ei}]");
            let site = |s: &Spanned<String>, key: &str| {
                site_by_name.get(s.get_ref().as_str()).copied().ok_or_else(|| {
                    self.err(sp(s), format!("{field}.{key}"), format!("unknown site {:?}", s.get_ref()))
                })
            };
            let from = site(&e.from, "from")?;
            let to = site(&e.to, "to")?;
            if from == to {
                return Err(self.err(sp(&e.to), format!("{field}.to"), "must differ from `from`"));
            }
            if fabric.route(from, to).is_none() {
                return Err(self.err(sp(&e.to), format!("{field}.to"), format!(
                    "no route from site {:?} to site {:?}: no chain of [[links]] joins them",
                    e.from.get_ref(), e.to.get_ref()
                )));
            }
            if let Some(c) = &e.max_concurrent {
                if *c.get_ref() == 0 {
                    return Err(self.err(sp(c), format!("{field}.max_concurrent"), "must be at least 1; leave it out for no limit"));
                }
            }
            let settings = self.settings(defaults, &e.settings, &format!("{field}.settings"))?;
            let name = e.name.as_ref().map_or_else(|| format!("evacuate-{}", e.from.get_ref()), |n| n.get_ref().clone());
            let name = unique_name(&mut op_names, name);
            ops.push(OperationSpec::Evacuate {
                name,
                from,
                to,
                at: e.at.as_ref().map_or(Nanos(0), |a| *a.get_ref()),
                max_concurrent: e.max_concurrent.as_ref().map(|c| *c.get_ref()),
                order: e.order,
                settings,
            });
        }
        Ok(ops)
    }
}

fn unique_name(used: &mut BTreeMap<String, ()>, name: String) -> String {
    let mut candidate = name.clone();
    let mut i = 2;
    while used.contains_key(&candidate) {
        candidate = format!("{name}#{i}");
        i += 1;
    }
    used.insert(candidate.clone(), ());
    candidate
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod split_tests;
