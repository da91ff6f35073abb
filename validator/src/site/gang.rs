//! `migrate --guests N`: a gang of guests of one image migrating together
//! from a source site to a destination site, over one link they share.
//!
//! Three processes: the orchestrator (this `migrate`), the destination site
//! (hidden `site-dest`: starts the `--warm-guests`, fills the site's content
//! store with their pages, prepares each migrating guest's RAM, accepts one
//! connection per guest) and the source site (hidden `site-source`: boots
//! every guest, waits until all have filled their memory, then migrates all
//! of them at once, each on its own connection and thread, with one shared
//! dedup index). Both read the gang's [`Plan`] from a file the orchestrator
//! writes. With `--link`, the two sites run in the WAN emulator's two
//! namespaces and every connection crosses the one emulated link.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use memfabric_migration::pipeline::{is_zero_page, ContentHash, ContentStore, DomainId, PipelineConfig, PAGE_SIZE};
use memfabric_migration::strategy::DedupScope;
use serde::{Deserialize, Serialize};

use super::{lock, DestSite, DestSiteStats, Gate, SiteHello, SiteIndexMode, SourceSite, SourceSiteStats};
use crate::guest::{abi, GuestWorkload};
use crate::machine::Machine;
use crate::migrate::dest::{run_dest, DestConfig, DestReport};
use crate::migrate::fault::{FaultKind, FaultProxy, FaultSpec};
use crate::migrate::orchestrate::{self, GuestArgs, MigrateArgs, MigrateOutcome, Reaped};
use crate::migrate::source::{run_source, SourceReport};
use crate::migrate::write_json;
use crate::wan::{Side, WanLink};

/// Default seed of the image's content (shared by every guest of the gang
/// and by the warm guests): the guest's built-in image seed.
pub const DEFAULT_IMAGE_SEED: u64 = 0x1e4a_6e5e_ed00_0001;

/// Most guests in a gang (each has its own VM and threads on each side).
pub const MAX_GUESTS: u32 = 64;

/// `migrate`'s gang options.
#[derive(Debug, Clone, clap::Args)]
pub struct GangArgs {
    /// Migrate this many guests of the same image together (a gang), each
    /// with its own VMM, over one shared link. Guest i runs the workload
    /// with seed `--seed + i` and shares the image's pages with the others.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_GUESTS as i64))]
    pub guests: u32,
    /// Tenants of the guests, in turn (guest i gets the i-th, modulo the
    /// list): each tenant is a dedup domain, and no reference crosses them.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub tenants: Vec<String>,
    /// Guests of the same image (and the first tenant) started at the
    /// destination site before the migration: its content store holds their
    /// pages (what `dedup-site` can reference).
    #[arg(long = "warm-guests", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=MAX_GUESTS as i64))]
    pub warm_guests: u32,
    /// How `dedup-site` learns what the destination site holds: exact,
    /// query or summary (the simulator's `site_index`).
    #[arg(long = "site-index", value_enum, default_value = "summary")]
    pub site_index: SiteIndexMode,
    /// Seed of the image's content.
    #[arg(long = "image-seed", default_value_t = DEFAULT_IMAGE_SEED)]
    pub image_seed: u64,
    /// Fault injection (tests): the destination's summary and query replies
    /// claim every content.
    #[arg(long = "corrupt-site-index", hide = true)]
    pub corrupt_site_index: bool,
}

impl Default for GangArgs {
    /// One guest on its own (what `migrate` does without gang options).
    fn default() -> GangArgs {
        GangArgs {
            guests: 1,
            tenants: vec!["default".into()],
            warm_guests: 0,
            site_index: SiteIndexMode::Summary,
            image_seed: DEFAULT_IMAGE_SEED,
            corrupt_site_index: false,
        }
    }
}

impl GangArgs {
    /// Whether `migrate` runs as a gang (several guests, or a warm site).
    pub fn is_gang(&self) -> bool {
        self.guests > 1 || self.warm_guests > 0 || self.tenants.len() > 1 || self.corrupt_site_index
    }
}

/// One guest of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedGuest {
    /// Name (`guest-0`, …, `warm-0`, …).
    pub name: String,
    /// Seed of its own pages and dirtying.
    pub seed: u64,
    /// Tenant.
    pub tenant: String,
    /// Its dedup domain (the tenant's position in the sorted tenant list).
    pub domain: u32,
}

/// What both site processes need to know about the gang.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The migrating guests.
    pub guests: Vec<PlannedGuest>,
    /// The guests started at the destination first.
    pub warm: Vec<PlannedGuest>,
    /// `dedup-site`'s index mode.
    pub site_index: SiteIndexMode,
    /// Seed of the image's content.
    pub image_seed: u64,
    /// Fault injection: lie in the summary and the query replies.
    pub corrupt_site_index: bool,
}

impl Plan {
    /// The plan of `migrate`'s arguments.
    pub fn of_args(guest: &GuestArgs, gang: &GangArgs) -> Plan {
        let mut tenants = gang.tenants.clone();
        tenants.sort();
        tenants.dedup();
        let domain = |t: &str| tenants.iter().position(|x| x == t).unwrap_or(0) as u32;
        let planned = |name: String, seed: u64, tenant: &str| PlannedGuest { name, seed, tenant: tenant.to_string(), domain: domain(tenant) };
        let guests = (0..gang.guests as u64)
            .map(|i| planned(format!("guest-{i}"), guest.seed.wrapping_add(i), &gang.tenants[i as usize % gang.tenants.len()]))
            .collect();
        // Warm guests have seeds of their own, after the gang's.
        let warm = (0..gang.warm_guests as u64)
            .map(|k| planned(format!("warm-{k}"), guest.seed.wrapping_add(gang.guests as u64 + k), &gang.tenants[0]))
            .collect();
        Plan { guests, warm, site_index: gang.site_index, image_seed: gang.image_seed, corrupt_site_index: gang.corrupt_site_index }
    }

    /// The workload of a guest of the plan.
    pub fn workload(&self, args: &GuestArgs, g: &PlannedGuest) -> anyhow::Result<GuestWorkload> {
        let mut w = GuestWorkload::from_archetype(&args.workload, args.dirty_rate, g.seed)?;
        w.image_seed = self.image_seed;
        w.ram_split = args.ram_split.0;
        Ok(w)
    }
}

/// Options of the hidden `site-source` and `site-dest` commands.
#[derive(Debug, Clone, clap::Args)]
pub struct SiteProcArgs {
    /// The guests and the migration.
    #[command(flatten)]
    pub guest: GuestArgs,
    /// The gang's plan (JSON).
    #[arg(long)]
    pub plan: PathBuf,
    /// Folder for the reports (`source-<guest>.json`, `destination-<k>.json`).
    #[arg(long = "report-dir")]
    pub report_dir: PathBuf,
    /// Source: the destination address of each guest, in plan order.
    #[arg(long, value_delimiter = ',')]
    pub connect: Vec<SocketAddr>,
    /// Destination: address to listen on (port 0: any).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// A source guest's report with its site counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceGuestReport {
    /// The guest.
    pub guest: String,
    /// What its source VMM measured.
    pub report: SourceReport,
    /// What it did for the site protocol.
    pub site: SourceSiteStats,
}

/// A destination connection's report with its site counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestGuestReport {
    /// What the destination VMM measured.
    pub report: DestReport,
    /// The site counters (with the guest's name).
    pub site: DestSiteStats,
}

/// The file holding the destination site's exact index (for a source that
/// keeps a replica, `site_index = exact`): records of a domain (u32) and a
/// content hash (u128), little-endian.
pub const RESIDENT_INDEX_FILE: &str = "resident-index.bin";

fn write_resident(path: &std::path::Path, resident: &std::collections::BTreeMap<DomainId, Vec<ContentHash>>) -> std::io::Result<()> {
    let mut out = Vec::new();
    for (d, hashes) in resident {
        for h in hashes {
            out.extend_from_slice(&d.0.to_le_bytes());
            out.extend_from_slice(&h.to_le_bytes());
        }
    }
    std::fs::write(path, out)
}

fn read_resident(path: &std::path::Path) -> anyhow::Result<Vec<(DomainId, ContentHash)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() % 20 != 0 {
        bail!("{}: {} bytes is not a whole number of 20-byte records", path.display(), bytes.len());
    }
    Ok(bytes
        .chunks_exact(20)
        .map(|r| (DomainId(u32::from_le_bytes(r[..4].try_into().expect("4 bytes"))), ContentHash::from_le_bytes(r[4..].try_into().expect("16 bytes"))))
        .collect())
}

fn plan_of(args: &SiteProcArgs) -> anyhow::Result<Plan> {
    orchestrate::read_json(&args.plan)
}

/// Hidden `site-dest`: warms the site, then receives every guest of the plan.
pub fn site_dest_main(args: &SiteProcArgs) -> anyhow::Result<()> {
    let plan = plan_of(args)?;
    let mem = args.guest.mem.0;
    let algo = PipelineConfig::new(args.guest.pipeline).hash_algo;
    let mut store = ContentStore::new();
    let mut resident: std::collections::BTreeMap<DomainId, Vec<ContentHash>> = Default::default();
    // Warm guests run here first; the store keeps a copy of their pages (a
    // site's content cache) and they are stopped before the migration so
    // that they take no CPU from it.
    let t = Instant::now();
    let warm: Vec<Machine> = plan
        .warm
        .iter()
        .map(|g| Machine::boot(mem, &plan.workload(&args.guest, g)?).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<_>>()?;
    let mut page = [0u8; PAGE_SIZE];
    for (m, g) in warm.iter().zip(&plan.warm) {
        m.wait_for_phase(abi::GUEST_PHASE_FILLED as u64, Duration::from_secs(600)).map_err(anyhow::Error::msg)?;
        let hashes = resident.entry(DomainId(g.domain)).or_default();
        for i in 0..m.ram().pages() {
            m.ram().read_page(i, &mut page);
            if !is_zero_page(&page) {
                hashes.push(store.insert_page(DomainId(g.domain), algo, &page));
            }
        }
    }
    for m in warm {
        let _ = m.vcpu.stop();
    }
    for v in resident.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    if !plan.warm.is_empty() {
        eprintln!("site-dest: {} warm guests, {} distinct pages resident, in {:.1} s", plan.warm.len(), resident.values().map(Vec::len).sum::<usize>(), t.elapsed().as_secs_f64());
    }
    // The exact index, for a source that keeps a replica (no link traffic).
    write_resident(&args.report_dir.join(RESIDENT_INDEX_FILE), &resident)?;
    let site = DestSite { store: Arc::new(Mutex::new(store)), resident: Arc::new(resident), corrupt_index: plan.corrupt_site_index, stats: Default::default() };
    let vms: Vec<crate::kvm::Vm> = (0..plan.guests.len())
        .map(|_| crate::kvm::Vm::with_split(mem, args.guest.ram_split.0, true))
        .collect::<Result<_, _>>()
        .context("preparing guest RAM")?;
    let listener = TcpListener::bind(args.listen).with_context(|| format!("listening on {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    let listener = Arc::new(listener);
    let threads: Vec<_> = vms
        .into_iter()
        .enumerate()
        .map(|(k, vm)| {
            let cfg = DestConfig {
                io_timeout: Duration::from_nanos(args.guest.io_timeout.0),
                watch_after_resume: Duration::from_nanos(args.guest.watch.0),
                max_memory_bytes: abi::GUEST_RAM_LIMIT,
                corrupt_page: None,
                announce_resume: false,
                tls: None,
                cpu: Default::default(),
                site: DestSite { stats: Default::default(), ..site.clone() },
            };
            let (listener, dir, split) = (listener.clone(), args.report_dir.clone(), args.guest.ram_split.0);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let report = run_dest(&cfg, &listener, Some((vm, split)));
                let site = lock(&cfg.site.stats).clone();
                write_json(&dir.join(format!("destination-{k}.json")), &DestGuestReport { report, site })?;
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow!("a destination thread panicked"))??;
    }
    Ok(())
}

/// Hidden `site-source`: boots every guest of the plan and migrates them together.
pub fn site_source_main(args: &SiteProcArgs) -> anyhow::Result<()> {
    let plan = plan_of(args)?;
    if args.connect.len() != plan.guests.len() {
        bail!("--connect: {} addresses for {} guests", args.connect.len(), plan.guests.len());
    }
    let index = Arc::new(Mutex::new(memfabric_migration::pipeline::DedupIndex::new()));
    let site_scope = args.guest.pipeline.dedup == Some(DedupScope::Site);
    if site_scope && plan.site_index == SiteIndexMode::Exact {
        let exact = read_resident(&args.report_dir.join(RESIDENT_INDEX_FILE))?;
        let mut ix = lock(&index);
        for (d, h) in exact {
            ix.insert_resident(d, h);
        }
    }
    let gate = Arc::new(Gate::new(plan.guests.len()));
    let threads: Vec<_> = plan
        .guests
        .iter()
        .zip(&args.connect)
        .map(|(g, &addr)| -> anyhow::Result<_> {
            let mut cfg = args.guest.source_config()?;
            cfg.workload = plan.workload(&args.guest, g)?;
            // One index for the gang with gang or site scope; with dedup-vm
            // each guest references only what it sent itself.
            let shared = matches!(args.guest.pipeline.dedup, Some(DedupScope::Gang | DedupScope::Site));
            cfg.site = SourceSite {
                index: if shared { index.clone() } else { Default::default() },
                hello: Some(SiteHello { guest: g.name.clone(), domain: g.domain, index: site_scope.then_some(plan.site_index) }),
                gate: Some(gate.clone()),
                stats: Default::default(),
            };
            let (name, dir, gate) = (g.name.clone(), args.report_dir.clone(), gate.clone());
            Ok(std::thread::spawn(move || -> anyhow::Result<()> {
                let timeout = cfg.io_timeout;
                let result = run_source(&cfg, || TcpStream::connect_timeout(&addr, timeout));
                let report = match result {
                    Ok(r) => r,
                    Err(e) => {
                        gate.give_up();
                        return Err(e.context(format!("guest {name}")));
                    }
                };
                let site = *lock(&cfg.site.stats);
                write_json(&dir.join(format!("source-{name}.json")), &SourceGuestReport { guest: name, report, site })?;
                Ok(())
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut first_error = None;
    for t in threads {
        if let Err(e) = t.join().map_err(|_| anyhow!("a source thread panicked"))? {
            eprintln!("site-source: {e:#}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// What a gang migration learned: one outcome per guest, in plan order.
#[derive(Debug, Clone)]
pub struct GangOutcome {
    /// The plan.
    pub plan: Plan,
    /// Per guest.
    pub guests: Vec<MigrateOutcome>,
    /// Source-side site counters per guest.
    pub source_site: Vec<SourceSiteStats>,
    /// Destination-side site counters per guest (default when missing).
    pub dest_site: Vec<DestSiteStats>,
    /// Wall time from the first guest's start to the last guest's end, s.
    pub makespan_s: f64,
}

/// `migrate` with gang options: runs the gang, writes the result folder.
pub fn migrate_gang(args: &MigrateArgs) -> anyhow::Result<GangOutcome> {
    let plan = Plan::of_args(&args.guest, &args.gang);
    check_gang_args(args, &plan)?;
    memfabric_formats::atomic_dir::check_target(&args.out, memfabric_formats::atomic_dir::DirKind::ValidatorResult, args.force)?;
    crate::interrupt::install()?;
    crate::kvm::kvm_available().map_err(|e| anyhow!("{e}: the validator needs /dev/kvm"))?;
    let work = orchestrate::tempdir()?;
    let plan_path = work.0.join("plan.json");
    write_json(&plan_path, &plan)?;
    let link = match &args.link {
        Some(spec) => Some(WanLink::up(spec, args.guest.seed).context("bringing up the emulated WAN link")?),
        None => None,
    };
    let command_on = |side: Side| -> anyhow::Result<Command> {
        Ok(match &link {
            Some(l) => l.command(side, orchestrate::exe()?),
            None => Command::new(orchestrate::exe()?),
        })
    };
    let listen = match &link {
        Some(l) => SocketAddr::new(l.address(Side::B).into(), 0),
        None => "127.0.0.1:0".parse().expect("loopback address"),
    };
    let common = |c: &mut Command| {
        c.args(args.guest.to_cli()).arg("--plan").arg(&plan_path).arg("--report-dir").arg(&work.0);
    };
    let mut dest = command_on(Side::B)?;
    dest.arg("site-dest").args(["--listen", &listen.to_string()]).stdout(Stdio::piped()).stderr(Stdio::inherit());
    common(&mut dest);
    let mut dest = Reaped(Some(dest.spawn().context("starting the destination site")?));
    let dest_pid = dest.0.as_ref().map_or(0, |c| c.id());
    let dest_stdout = dest.0.as_mut().and_then(|c| c.stdout.take()).ok_or_else(|| anyhow!("no destination stdout"))?;
    let mut line = String::new();
    BufReader::new(dest_stdout).read_line(&mut line).context("reading the destination site's address")?;
    let dest_addr: SocketAddr = match line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok()) {
        Some(a) => a,
        None => {
            let status = dest.0.as_mut().and_then(|c| c.wait().ok()).map(|s| s.to_string()).unwrap_or_default();
            if crate::interrupt::interrupted() {
                return Err(orchestrate::interrupted(link.is_some()));
            }
            bail!("the destination site did not start ({status}); see its messages above");
        }
    };
    // A fault goes through one proxy per guest connection with the same
    // spec (a link cut reaches every connection at its byte count; the
    // first to reach a kill point kills the destination site).
    let source_pid = Arc::new(AtomicU32::new(0));
    let proxies: Vec<FaultProxy> = match args.fault {
        Some(spec) => (0..plan.guests.len())
            .map(|_| FaultProxy::start(dest_addr, spec, orchestrate::killer(source_pid.clone(), dest_pid)))
            .collect::<std::io::Result<_>>()?,
        None => Vec::new(),
    };
    let connect: Vec<String> = if proxies.is_empty() {
        vec![dest_addr.to_string(); plan.guests.len()]
    } else {
        proxies.iter().map(|p| p.addr.to_string()).collect()
    };
    let mut source = command_on(Side::A)?;
    source.arg("site-source").args(["--connect", &connect.join(",")]).stdin(Stdio::null());
    common(&mut source);
    let mut source = Reaped(Some(source.spawn().context("starting the source site")?));
    source_pid.store(source.0.as_ref().map_or(0, |c| c.id()), Ordering::SeqCst);
    let source_status = wait_child(&mut source, None, link.is_some())?;
    source.0 = None;
    // The destination watches its resumed guests, then exits; a destination
    // whose guests never connected is stopped after the I/O timeout.
    let grace = Duration::from_nanos(args.guest.watch.0 + args.guest.io_timeout.0) + Duration::from_secs(5);
    let _ = wait_child(&mut dest, Some(grace), link.is_some())?;
    let fault_triggered = proxies.iter().any(FaultProxy::triggered);
    drop(proxies);
    drop(dest);
    let link_stats = match link {
        Some(l) => Some(l.down().context("tearing down the WAN link")?),
        None => None,
    };
    let source_killed = args.fault.is_some_and(|f| f.kind == FaultKind::KillSource) && fault_triggered;
    if !source_status.success() && !source_killed {
        // Guests whose VMM failed before migrating write no report.
        eprintln!("the source site exited with {source_status}");
    }

    let mut dests: Vec<DestGuestReport> = (0..plan.guests.len())
        .filter_map(|k| orchestrate::read_json::<DestGuestReport>(&work.0.join(format!("destination-{k}.json"))).ok())
        .collect();
    let mut outcomes = Vec::new();
    let (mut source_site, mut dest_site) = (Vec::new(), Vec::new());
    for g in &plan.guests {
        let src: Option<SourceGuestReport> = orchestrate::read_json(&work.0.join(format!("source-{}.json", g.name))).ok();
        let (report, site) = match src {
            Some(s) => (s.report, s.site),
            None if source_killed => (
                SourceReport::lost(args.guest.mem.0, args.guest.pipeline.to_string(), format!("the source site was killed by the injected fault ({source_status})")),
                SourceSiteStats::default(),
            ),
            None => bail!("the source site wrote no report for {} ({source_status}); see its messages above", g.name),
        };
        let d = dests.iter().position(|d| d.site.guest.as_deref() == Some(g.name.as_str())).map(|i| dests.swap_remove(i));
        dest_site.push(d.as_ref().map(|d| d.site.clone()).unwrap_or_default());
        source_site.push(site);
        outcomes.push(MigrateOutcome {
            fault: args.fault,
            fault_triggered,
            link: args.link.clone(),
            link_stats,
            ..MigrateOutcome::of_reports(report, d.map(|d| d.report), !args.guest.no_integrity_check)
        });
    }
    let start = outcomes.iter().map(|o| o.source.start_ns).filter(|&s| s > 0).min().unwrap_or(0);
    let end = outcomes.iter().map(|o| o.source.end_ns).max().unwrap_or(0);
    let outcome = GangOutcome { plan, guests: outcomes, source_site, dest_site, makespan_s: end.saturating_sub(start) as f64 * 1e-9 };
    super::report::write_gang(&args.out, args.force, &args.guest, &outcome)?;
    Ok(outcome)
}

/// `migrate` with gang options, as the command line runs it: the gang, its
/// table on stdout, an error when a guest did not complete.
pub fn migrate_main(args: &MigrateArgs) -> anyhow::Result<()> {
    let o = migrate_gang(args)?;
    super::report::print_gang(&o);
    println!("results: {}", args.out.display());
    let failed: Vec<String> = o.summaries().into_iter().filter(|s| s.outcome != "completed").map(|s| format!("{}: {}", s.guest, s.error.unwrap_or(s.outcome))).collect();
    if !failed.is_empty() {
        bail!("{} of {} guests did not complete: {}", failed.len(), o.guests.len(), failed.join("; "));
    }
    Ok(())
}

/// Waits for `child` to exit (killing it after `limit`), failing on an interrupt.
fn wait_child(child: &mut Reaped, limit: Option<Duration>, link: bool) -> anyhow::Result<std::process::ExitStatus> {
    let t = Instant::now();
    loop {
        if crate::interrupt::interrupted() {
            return Err(orchestrate::interrupted(link));
        }
        let c = child.0.as_mut().ok_or_else(|| anyhow!("no child"))?;
        if let Some(status) = c.try_wait()? {
            return Ok(status);
        }
        if limit.is_some_and(|l| t.elapsed() > l) {
            let _ = c.kill();
            return Ok(c.wait()?);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `migrate --guests` arguments that cannot work: refused before anything starts (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum GangInputError {
    /// The workload or the memory size is invalid for the guest.
    #[error(transparent)]
    Workload(#[from] crate::guest::WorkloadError),
    /// Not enough RAM for every VM of both sites.
    #[error(
        "--guests {guests} --warm-guests {warm} --mem {mem_mib} MiB: the sites map {need_mib} MiB of guest RAM \
         (each guest on both sides, each warm guest twice: its RAM and the store's copy, \
         and with dedup the store's copy of what the gang sends), \
         but this machine has {available_mib} MiB available (MemAvailable in /proc/meminfo)"
    )]
    MemoryExceedsMachine {
        /// Guests.
        guests: u32,
        /// Warm guests.
        warm: u32,
        /// One guest's RAM, MiB.
        mem_mib: u64,
        /// What both sites need, MiB.
        need_mib: u64,
        /// What the machine has, MiB.
        available_mib: u64,
    },
    /// An option of single-guest `migrate` a gang does not support.
    #[error("{0} cannot be combined with --guests/--warm-guests/--tenants (a gang runs plain TCP, one proxy per connection)")]
    Unsupported(&'static str),
    /// An empty tenant name.
    #[error("--tenants: tenant {0} is empty")]
    EmptyTenant(usize),
    /// A fault a gang cannot inject.
    #[error("--fault {0}: a gang injects cut-link, kill-dest, kill-source or corrupt (dest-ram is for one guest)")]
    Fault(FaultSpec),
}

/// Checks a gang's arguments against each other and the machine.
pub fn check_gang_args(args: &MigrateArgs, plan: &Plan) -> Result<(), GangInputError> {
    for g in plan.guests.iter().chain(&plan.warm) {
        plan.workload(&args.guest, g).map_err(|e| match e.downcast::<crate::guest::WorkloadError>() {
            Ok(w) => GangInputError::Workload(w),
            Err(e) => GangInputError::Workload(crate::guest::WorkloadError::Invalid { field: "workload", message: e.to_string() }),
        })?
        .layout(args.guest.mem.0)?;
    }
    if args.tls.is_some() || args.guest.pipeline.encrypt {
        return Err(GangInputError::Unsupported("--tls (or an encrypt stage)"));
    }
    if let Some(i) = args.gang.tenants.iter().position(|t| t.trim().is_empty()) {
        return Err(GangInputError::EmptyTenant(i));
    }
    if let Some(f) = args.fault {
        if f.kind == FaultKind::DestRam {
            return Err(GangInputError::Fault(f));
        }
        if args.link.is_some() {
            return Err(GangInputError::Unsupported("--fault with --link"));
        }
    }
    let mem = args.guest.mem.0;
    // Each guest on both sides; each warm guest and its copy in the store;
    // with dedup, the store's copy of what the gang sends (at most its RAM).
    let stored = if args.guest.pipeline.dedup.is_some() { args.gang.guests as u64 } else { 0 };
    let need = mem * (2 * args.gang.guests as u64 + 2 * args.gang.warm_guests as u64 + stored);
    if let Some(available) = orchestrate::available_memory_bytes() {
        if need > available {
            return Err(GangInputError::MemoryExceedsMachine {
                guests: args.gang.guests,
                warm: args.gang.warm_guests,
                mem_mib: mem >> 20,
                need_mib: need >> 20,
                available_mib: available >> 20,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_gives_each_guest_its_seed_and_tenant_domain() {
        let guest = GuestArgs {
            mem: memfabric_migration::units::Bytes(32 << 20),
            workload: "web".into(),
            dirty_rate: None,
            seed: 10,
            pipeline: "zero+dedup-gang+lz4".parse().unwrap(),
            downtime_limit: memfabric_migration::units::Nanos::from_millis(300),
            max_rounds: 30,
            on_non_convergence: memfabric_migration::precopy::NonConvergence::ForceStop,
            warmup: memfabric_migration::units::Nanos(0),
            io_timeout: memfabric_migration::units::Nanos::from_millis(1000),
            watch: memfabric_migration::units::Nanos(0),
            no_integrity_check: false,
            ram_split: memfabric_migration::units::Bytes(3 << 30),
            cpu_bound: false,
            auto_converge: false,
            cpu: Default::default(),
            mechanism: memfabric_migration::record::Mechanism::PreCopy,
            multifd: Default::default(),
        };
        let gang = GangArgs {
            guests: 3,
            tenants: vec!["zeta".into(), "acme".into()],
            warm_guests: 1,
            site_index: SiteIndexMode::Query,
            image_seed: 5,
            corrupt_site_index: false,
        };
        let plan = Plan::of_args(&guest, &gang);
        let got: Vec<(&str, u64, &str, u32)> = plan.guests.iter().map(|g| (g.name.as_str(), g.seed, g.tenant.as_str(), g.domain)).collect();
        assert_eq!(got, vec![("guest-0", 10, "zeta", 1), ("guest-1", 11, "acme", 0), ("guest-2", 12, "zeta", 1)]);
        assert_eq!((plan.warm[0].seed, plan.warm[0].domain, plan.warm[0].tenant.as_str()), (13, 1, "zeta"));
        let w = plan.workload(&guest, &plan.guests[1]).unwrap();
        assert_eq!((w.seed, w.image_seed), (11, 5));
        assert!(gang.is_gang());
    }
}
