//! Trace capture (`memfabric-validator capture`): runs the workload guest and
//! records its memory and the pages it dirties as a memory trace in the
//! simulator's format (`docs/trace-format.md`, [`memfabric_formats::trace`]), so
//! the simulator can replay a real guest next to its synthetic model.
//!
//! This module owns the capture loop ([`capture`]), the per-page
//! measurements, the trace's provenance (`source.captured` in the manifest)
//! and the `capture` subcommand ([`CaptureArgs`], [`capture_main`]).
//!
//! # How a capture runs
//!
//! ```text
//!  boot ─ fill ─ warmup ─┬─ dirty logging on
//!                        ├─ copy all RAM to the shadow             (guest running)
//!                        ├─ take log, re-copy those pages          (guest running)
//!                        ├─ pause ─ take log ─ re-copy those ─ resume     ← t = 0
//!                        ├─ at t0 + k·epoch, k = 1, 2, …: take log,
//!                        │    copy the dirty pages                 (guest running)
//!                        │  between deadlines: hash, compress, delta the copies
//!                        └─ last deadline: pause, take log, copy, stop the guest
//! ```
//!
//! **Snapshot.** A running guest cannot be copied atomically, so the copy is
//! made exact the way pre-copy migration is: dirty logging goes on, all of
//! RAM is copied into a shadow buffer while the guest runs, the pages it
//! wrote during that copy are copied again (still running), then the vCPU
//! is paused, the pages written during the second pass are copied a third
//! time, and it resumes. The shadow then equals guest memory at the pause,
//! and the pause lasts only as long as re-copying the few pages of the last
//! milliseconds ([`CaptureStats::snapshot_pause_ms`]). Time 0 of the trace
//! is the resume.
//!
//! **Epochs.** Log reads are scheduled at absolute deadlines `t0 + k·epoch`
//! (so lateness does not accumulate), and each epoch's `time_ns` is when
//! its `KVM_GET_DIRTY_LOG` returned, not the deadline. The dirty pages are
//! copied right after the read, with the guest running: a page the guest
//! writes again between the read and its copy is recorded with that newer
//! content, and since that write is also in the next log, the page appears
//! again in the next epoch (with `delta_bytes` 0 if nothing else changed).
//! A page torn by a concurrent write is corrected the same way. The last
//! epoch is read with the vCPU paused, so the trace ends exactly.
//!
//! **Measurements**, the same as the migration pipeline's, so that captured
//! and synthetic traces (whose sizes come from `memfabric profile`'s
//! measurements of the same code) compare:
//! - hash: xxh3-128 of the page ([`hash_page`] with [`HashAlgo::Xxh3_128`]);
//!   `zero` is set exactly for all-zero pages;
//! - `lz4_bytes`, `zstd_bytes`: the output size of the pipeline's
//!   [`PageCompressor`] for lz4 (block) and zstd level 1 (one frame), or 4096
//!   when it is not smaller than a page (the page would go raw);
//! - `delta_bytes`: the size of [`xbzrle_encode`] of the new content against
//!   the page's previous version (the shadow, updated as epochs are
//!   processed in order) with the pipeline's limit
//!   ([`DEFAULT_DELTA_MAX_BYTES`]), 4096 when the delta does not fit, and 0
//!   when the content is unchanged. The guest's unchanged re-writes are real
//!   writes: they appear in the dirty log and become rows with
//!   `delta_bytes` 0.
//!
//! The work is single-threaded and interleaved with the log reads: copies
//! wait in a queue (their size is [`CaptureStats::backlog_pages_max`]) and
//! are measured between deadlines, snapshot first, then epochs in order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use memfabric_migration::pipeline::{
    hash_page, is_zero_page, xbzrle_encode, CompressError, ContentHash, HashAlgo, Page, PageCompressor,
    DEFAULT_DELTA_MAX_BYTES,
};
use memfabric_migration::strategy::Codec;
use memfabric_migration::units::{Bytes, Nanos};
use memfabric_migration::PAGE_SIZE_BYTES;
use memfabric_formats::trace::{DEFAULT_DURATION_NS, DEFAULT_EPOCH_NS};
use memfabric_formats::trace::{
    zero_page_hash, CapturedSource, DirtyPage, Manifest, SnapshotPage, Source, Trace, FORMAT_NAME, FORMAT_VERSION,
};
use memfabric_formats::workload::Popularity;

use crate::guest::abi;
use crate::guest::GuestWorkload;
use crate::kvm::{monotonic_ns, DirtyBitmap, GuestRam};
use crate::machine::Machine;
use crate::migrate::thread_cpu_s;

const PAGE: usize = PAGE_SIZE_BYTES as usize;

/// The manifest's `vm` for every captured trace.
pub const CAPTURED_VM_NAME: &str = "validator-guest";

/// How long the guest may take to boot and to fill its memory (the fill of a
/// 4 GiB guest takes a few seconds; nested KVM is far slower).
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);
const FILL_TIMEOUT: Duration = Duration::from_secs(600);

/// What to capture.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    /// Guest memory, bytes (see [`abi::Layout::with_split`] for the sizes allowed).
    pub memory_bytes: u64,
    /// What the guest runs.
    pub workload: GuestWorkload,
    /// Trace length after the snapshot: a whole number of epochs.
    pub duration: Duration,
    /// Interval between dirty-log reads.
    pub epoch: Duration,
    /// How long the guest dirties memory after filling it before the
    /// snapshot is taken (the copy of RAM adds its own time).
    pub warmup: Duration,
}

/// What happened during a capture.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CaptureStats {
    /// Guest pages (rows of the snapshot).
    pub pages: u64,
    /// All-zero pages in the snapshot.
    pub zero_pages: u64,
    /// Epochs captured.
    pub epochs: u32,
    /// Dirty pages (rows) of each epoch, in epoch order.
    pub dirty_pages_by_epoch: Vec<u64>,
    /// Page writes the guest counted in each epoch (its status block, read
    /// right after each log read; the guest updates it after each burst of
    /// writes, so an epoch may be credited with a few writes of the next).
    pub guest_writes_by_epoch: Vec<u64>,
    /// Dirty-page rows whose content was unchanged (`delta_bytes` 0).
    pub unchanged_dirty_pages: u64,
    /// Page writes of the guest from the snapshot to the last log read.
    pub guest_writes: u64,
    /// Of those, writes that changed the page's content.
    pub guest_changed_writes: u64,
    /// Copying all of RAM into the shadow and then the pages written
    /// meanwhile, with the guest running, seconds.
    pub snapshot_copy_s: f64,
    /// The vCPU pause that makes the snapshot exact (from the pause to the
    /// vCPU's re-entry into the guest), milliseconds.
    pub snapshot_pause_ms: f64,
    /// Pages the guest wrote during the second copy, copied again in the pause.
    pub snapshot_pause_pages: u64,
    /// Time spent measuring the snapshot's pages (hash, sizes), seconds.
    pub snapshot_measure_s: f64,
    /// Latest log read after its deadline, milliseconds (the last epoch,
    /// read at a pause, included).
    pub log_read_late_ms_max: f64,
    /// Most copied pages waiting to be measured at one time.
    pub backlog_pages_max: u64,
    /// From the last log read until every page was measured, seconds.
    pub drain_s: f64,
    /// CPU time of the capturing thread from dirty logging on to the trace
    /// in memory (not the vCPU's), seconds.
    pub cpu_s: f64,
    /// Wall time from dirty logging on to the trace in memory, seconds.
    pub capture_s: f64,
    /// Wall time from the start to the guest's memory filled (and the
    /// shadow allocated), seconds.
    pub boot_s: f64,
}

impl CaptureStats {
    /// Fraction of the snapshot's pages that are zero.
    pub fn zero_fraction(&self) -> f64 {
        if self.pages == 0 {
            0.0
        } else {
            self.zero_pages as f64 / self.pages as f64
        }
    }

    /// Mean dirty pages per epoch.
    pub fn dirty_pages_per_epoch_mean(&self) -> f64 {
        let n = self.dirty_pages_by_epoch.len();
        if n == 0 {
            0.0
        } else {
            self.dirty_pages_by_epoch.iter().sum::<u64>() as f64 / n as f64
        }
    }

    /// Most dirty pages in one epoch.
    pub fn dirty_pages_per_epoch_max(&self) -> u64 {
        self.dirty_pages_by_epoch.iter().copied().max().unwrap_or(0)
    }
}

/// A page's recorded content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageInfo {
    hash: ContentHash,
    lz4_bytes: u32,
    zstd_bytes: u32,
}

/// Measures pages as the trace records them (see the module docs).
struct Meter {
    lz4: PageCompressor,
    zstd: PageCompressor,
    buf: Vec<u8>,
    zero: PageInfo,
}

impl Meter {
    fn new() -> Result<Meter, CompressError> {
        let mut m = Meter {
            lz4: PageCompressor::new(Codec::Lz4)?,
            zstd: PageCompressor::new(Codec::Zstd { level: 1 })?,
            buf: Vec::new(),
            zero: PageInfo { hash: zero_page_hash(), lz4_bytes: 0, zstd_bytes: 0 },
        };
        m.zero = m.measure_bytes(&[0u8; PAGE])?;
        Ok(m)
    }

    fn measure(&mut self, page: &Page) -> Result<PageInfo, CompressError> {
        if is_zero_page(page) {
            return Ok(self.zero);
        }
        self.measure_bytes(page)
    }

    fn measure_bytes(&mut self, page: &Page) -> Result<PageInfo, CompressError> {
        Ok(PageInfo {
            hash: hash_page(HashAlgo::Xxh3_128, page),
            lz4_bytes: compressed_bytes(&mut self.lz4, page, &mut self.buf)?,
            zstd_bytes: compressed_bytes(&mut self.zstd, page, &mut self.buf)?,
        })
    }

    /// `delta_bytes` of `new` against `old` (which differ).
    fn delta_bytes(&mut self, old: &Page, new: &Page) -> u32 {
        if xbzrle_encode(old, new, DEFAULT_DELTA_MAX_BYTES, &mut self.buf) {
            self.buf.len() as u32
        } else {
            PAGE as u32
        }
    }
}

/// The compressed size of `page`, 4096 when not smaller than a page.
fn compressed_bytes(c: &mut PageCompressor, page: &Page, buf: &mut Vec<u8>) -> Result<u32, CompressError> {
    Ok(if c.compress(page, buf)? { buf.len() as u32 } else { PAGE as u32 })
}

fn page_of(bytes: &[u8], i: usize) -> &Page {
    bytes[i * PAGE..(i + 1) * PAGE].try_into().expect("a page")
}

/// An epoch's dirty pages, copied, waiting to be measured.
struct PendingEpoch {
    epoch: u32,
    time_ns: u64,
    pages: Vec<u64>,
    data: Vec<u8>,
    /// Pages measured so far.
    done: usize,
}

/// The state of a capture after the snapshot.
struct Recorder {
    meter: Meter,
    /// Guest memory as last recorded: at the snapshot, then as of the epochs
    /// processed so far.
    shadow: Vec<u8>,
    /// Pages of the snapshot measured so far.
    snapshot: Vec<SnapshotPage>,
    /// Latest recorded content of each page (filled with the snapshot).
    latest: Vec<PageInfo>,
    pending: VecDeque<PendingEpoch>,
    rows: Vec<DirtyPage>,
    stats: CaptureStats,
}

impl Recorder {
    fn pages(&self) -> u64 {
        (self.shadow.len() / PAGE) as u64
    }

    fn backlog_pages(&self) -> u64 {
        let snapshot_left = self.pages() - self.snapshot.len() as u64;
        snapshot_left + self.pending.iter().map(|e| (e.pages.len() - e.done) as u64).sum::<u64>()
    }

    /// Measures one page: the next of the snapshot, else the next of the
    /// oldest pending epoch. Returns false when there is nothing to do.
    fn step(&mut self) -> Result<bool, CompressError> {
        let next = self.snapshot.len();
        if (next as u64) < self.pages() {
            let t = Instant::now();
            let info = self.meter.measure(page_of(&self.shadow, next))?;
            self.snapshot.push(SnapshotPage {
                page_index: next as u64,
                hash: info.hash,
                zero: info.hash == self.meter.zero.hash,
                lz4_bytes: info.lz4_bytes,
                zstd_bytes: info.zstd_bytes,
            });
            self.latest.push(info);
            self.stats.snapshot_measure_s += t.elapsed().as_secs_f64();
            return Ok(true);
        }
        let Some(e) = self.pending.front_mut() else { return Ok(false) };
        let page = e.pages[e.done];
        let new = page_of(&e.data, e.done);
        let old: &mut Page = (&mut self.shadow[page as usize * PAGE..(page as usize + 1) * PAGE])
            .try_into()
            .expect("a page");
        let (info, delta_bytes) = if old == new {
            self.stats.unchanged_dirty_pages += 1;
            (self.latest[page as usize], 0)
        } else {
            let delta = self.meter.delta_bytes(old, new);
            let info = self.meter.measure(new)?;
            old.copy_from_slice(new);
            self.latest[page as usize] = info;
            (info, delta)
        };
        self.rows.push(DirtyPage {
            epoch: e.epoch,
            time_ns: e.time_ns,
            page_index: page,
            hash: info.hash,
            delta_bytes,
            lz4_bytes: info.lz4_bytes,
            zstd_bytes: info.zstd_bytes,
        });
        e.done += 1;
        if e.done == e.pages.len() {
            self.pending.pop_front();
        }
        Ok(true)
    }
}

/// Copies the pages marked in `dirty` from guest RAM into `shadow`.
fn copy_pages(ram: &GuestRam, dirty: &DirtyBitmap, shadow: &mut [u8]) {
    for p in dirty.iter() {
        let at = p as usize * PAGE;
        ram.read(p * PAGE_SIZE_BYTES, &mut shadow[at..at + PAGE]);
    }
}

/// Boots the guest, captures `cfg.duration` of it and returns the trace (in
/// memory; [`Trace::write`] stores it) with what happened.
pub fn capture(cfg: &CaptureConfig) -> anyhow::Result<(Trace, CaptureStats)> {
    let epoch_ns = u64::try_from(cfg.epoch.as_nanos()).context("epoch too long")?;
    let duration_ns = u64::try_from(cfg.duration.as_nanos()).context("duration too long")?;
    if epoch_ns < 1_000_000 || duration_ns == 0 || duration_ns % epoch_ns != 0 {
        bail!(
            "duration {:?} must be a positive whole number of epochs, and the epoch ({:?}) at least 1 ms",
            cfg.duration,
            cfg.epoch
        );
    }
    let epochs = u32::try_from(duration_ns / epoch_ns).context("too many epochs")?;
    let layout = cfg.workload.layout(cfg.memory_bytes)?;

    let start = Instant::now();
    // The shadow is faulted in while the guest boots and fills: faulting a
    // GiB in 4 KiB pages takes seconds on a nested host, which would
    // otherwise lengthen the snapshot copy and the pages to re-copy.
    let shadow = std::thread::spawn(move || {
        let mut shadow = vec![0u8; layout.memory_bytes as usize];
        for page in shadow.chunks_mut(PAGE) {
            page[0] = 1;
        }
        shadow
    });
    let mut m = Machine::boot(layout.memory_bytes, &cfg.workload).context("booting the guest")?;
    m.wait_for_phase(abi::GUEST_PHASE_BOOT as u64, BOOT_TIMEOUT).map_err(anyhow::Error::msg)?;
    m.wait_for_phase(abi::GUEST_PHASE_FILLED as u64, FILL_TIMEOUT).map_err(anyhow::Error::msg)?;
    let mut shadow = shadow.join().map_err(|_| anyhow::anyhow!("allocating the shadow copy of guest RAM failed"))?;
    let boot_s = start.elapsed().as_secs_f64();
    std::thread::sleep(cfg.warmup);

    // Snapshot: copy all of RAM with the guest running, re-copy what it
    // wrote meanwhile, then re-copy the last few pages with the vCPU paused.
    let capture_start = Instant::now();
    let cpu0 = thread_cpu_s();
    m.vm.set_dirty_logging(true).context("turning dirty logging on")?;
    let ram = m.ram().clone();
    ram.read(0, &mut shadow);
    // One more pass over what the guest wrote meanwhile, still running,
    // leaves only the writes of a few milliseconds for the pause.
    let written = m.vm.take_dirty_log().context("reading the dirty log")?;
    copy_pages(&ram, &written, &mut shadow);
    let snapshot_copy_s = capture_start.elapsed().as_secs_f64();
    let paused = m.vcpu.pause().map_err(|e| anyhow::anyhow!("pausing the guest for the snapshot: {e}"))?;
    let written = m.vm.take_dirty_log().context("reading the dirty log")?;
    copy_pages(&ram, &written, &mut shadow);
    let status0 = crate::kvm::vcpu::read_guest_status(&ram);
    let t0 = m.vcpu.resume().map_err(|e| anyhow::anyhow!("resuming the guest after the snapshot: {e}"))?;

    let pages = ram.pages();
    let mut r = Recorder {
        meter: Meter::new().context("creating the compressors")?,
        shadow,
        snapshot: Vec::with_capacity(pages as usize),
        latest: Vec::with_capacity(pages as usize),
        pending: VecDeque::new(),
        rows: Vec::new(),
        stats: CaptureStats {
            pages,
            epochs,
            boot_s,
            snapshot_copy_s,
            snapshot_pause_ms: t0.saturating_sub(paused.at_monotonic_ns) as f64 / 1e6,
            snapshot_pause_pages: written.count(),
            ..CaptureStats::default()
        },
    };

    let mut status_before = status0;
    let mut last_time_ns = 0u64;
    let mut last_read = Instant::now();
    for epoch in 0..epochs {
        let deadline = t0 + (u64::from(epoch) + 1) * epoch_ns;
        // Measure copies until the deadline.
        loop {
            let now = monotonic_ns();
            if now >= deadline {
                break;
            }
            if !r.step().context("compressing a page")? {
                std::thread::sleep(Duration::from_nanos(deadline - now));
            }
        }
        if let Some(f) = m.vcpu.failure() {
            bail!("the guest failed during the capture: {f}");
        }
        let last = epoch + 1 == epochs;
        let (dirty, read_ns) = if last {
            let p = m.vcpu.pause().map_err(|e| anyhow::anyhow!("pausing the guest at the end: {e}"))?;
            (m.vm.take_dirty_log().context("reading the dirty log")?, p.at_monotonic_ns)
        } else {
            let d = m.vm.take_dirty_log().context("reading the dirty log")?;
            (d, monotonic_ns())
        };
        last_read = Instant::now();
        let status = crate::kvm::vcpu::read_guest_status(&ram);
        let dirty_pages: Vec<u64> = dirty.iter().collect();
        let mut data = vec![0u8; dirty_pages.len() * PAGE];
        for (i, &p) in dirty_pages.iter().enumerate() {
            ram.read(p * PAGE_SIZE_BYTES, &mut data[i * PAGE..(i + 1) * PAGE]);
        }
        // Strictly increasing end times, as the format requires.
        let time_ns = (read_ns - t0).max(last_time_ns + 1);
        last_time_ns = time_ns;
        let s = &mut r.stats;
        s.log_read_late_ms_max = s.log_read_late_ms_max.max(read_ns.saturating_sub(deadline) as f64 / 1e6);
        s.dirty_pages_by_epoch.push(dirty_pages.len() as u64);
        s.guest_writes_by_epoch.push(status.writes.wrapping_sub(status_before.writes));
        status_before = status;
        if !dirty_pages.is_empty() {
            r.pending.push_back(PendingEpoch { epoch, time_ns, pages: dirty_pages, data, done: 0 });
        }
        let backlog = r.backlog_pages();
        r.stats.backlog_pages_max = r.stats.backlog_pages_max.max(backlog);
    }
    let status_end = status_before;
    m.vcpu.stop().map_err(|f| anyhow::anyhow!("stopping the guest: {f}"))?;
    while r.step().context("compressing a page")? {}

    let mut stats = r.stats;
    stats.drain_s = last_read.elapsed().as_secs_f64();
    stats.zero_pages = r.snapshot.iter().filter(|p| p.zero).count() as u64;
    stats.guest_writes = status_end.writes - status0.writes;
    stats.guest_changed_writes = status_end.changed_writes - status0.changed_writes;
    stats.cpu_s = thread_cpu_s() - cpu0;
    stats.capture_s = capture_start.elapsed().as_secs_f64();
    let trace = Trace {
        manifest: Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            page_size: PAGE_SIZE_BYTES,
            vm: CAPTURED_VM_NAME.into(),
            memory_bytes: layout.memory_bytes,
            pages,
            epochs,
            duration_ns: last_time_ns,
            source: Source::Captured(CapturedSource {
                machine: machine_description(),
                workload: workload_description(&cfg.workload),
                tool: format!("memfabric-validator {}", env!("CARGO_PKG_VERSION")),
            }),
        },
        snapshot: r.snapshot,
        epochs: r.rows,
    };
    Ok((trace, stats))
}

/// `<hostname> (<CPU model>)`, from /proc.
pub fn machine_description() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    format!(
        "{} ({})",
        host.unwrap_or_else(|_| "unknown host".into()),
        cpu.unwrap_or_else(|| "unknown CPU".into())
    )
}

/// The guest workload as one line: archetype, every parameter, seed.
pub fn workload_description(w: &GuestWorkload) -> String {
    let s = &w.spec;
    let c = &s.content;
    let popularity = match &s.popularity {
        Popularity::Uniform => "uniform".to_string(),
        Popularity::HotCold { hot_set, hot_write_share } => format!("hot-cold {}/{}", hot_set.0, hot_write_share.0),
        Popularity::Zipf { exponent } => format!("zipf {exponent}"),
    };
    format!(
        "{}: {} page writes/s, working set {}, {popularity}, redirty change {} unchanged {}, \
         content zero {} shared {} duplicate {} compressed {}±{}, seed {}",
        s.archetype,
        s.page_write_rate,
        s.working_set.0,
        s.redirty_change.0,
        s.redirty_unchanged.0,
        c.zero.0,
        c.shared_image.0,
        c.duplicate.0,
        c.unique_compressed_mean.0,
        c.unique_compressed_sd,
        w.seed
    )
}

/// `memfabric-validator capture`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Guest memory (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = Bytes::parse)]
    pub mem: Bytes,
    /// Workload archetype of the simulator (uniform or hot/cold ones).
    #[arg(long, default_value = "web")]
    pub workload: String,
    /// Page writes per second (overrides the archetype's).
    #[arg(long)]
    pub dirty_rate: Option<f64>,
    /// Trace length after the snapshot, a whole number of epochs (the
    /// default is `memfabric trace gen`'s).
    #[arg(long, default_value_t = Nanos(DEFAULT_DURATION_NS), value_parser = Nanos::parse)]
    pub duration: Nanos,
    /// Interval between dirty-log reads (the default is `memfabric trace gen`'s).
    #[arg(long, default_value_t = Nanos(DEFAULT_EPOCH_NS), value_parser = Nanos::parse)]
    pub epoch: Nanos,
    /// How long the guest dirties memory after filling it, before the snapshot.
    #[arg(long, default_value = "0s", value_parser = Nanos::parse)]
    pub warmup: Nanos,
    /// Seed of the guest's content and dirtying.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trace directory to write: new, empty, or a previous trace (replaced
    /// atomically); anything else is refused before the capture starts.
    #[arg(long)]
    pub out: PathBuf,
    /// Also replace a memfabric folder of another kind, or a trace holding
    /// extra files; never a user's folder or file.
    #[arg(long)]
    pub force: bool,
}

/// Runs `capture`, writes the trace and prints a summary.
pub fn capture_main(args: &CaptureArgs) -> anyhow::Result<()> {
    memfabric_formats::atomic_dir::check_target(&args.out, memfabric_formats::atomic_dir::DirKind::Trace, args.force)?;
    let cfg = CaptureConfig {
        memory_bytes: args.mem.0,
        workload: GuestWorkload::from_archetype(&args.workload, args.dirty_rate, args.seed)?,
        duration: Duration::from_nanos(args.duration.0),
        epoch: Duration::from_nanos(args.epoch.0),
        warmup: Duration::from_nanos(args.warmup.0),
    };
    let (trace, s) = capture(&cfg)?;
    trace.write_replacing(&args.out, args.force).with_context(|| format!("writing the trace to {}", args.out.display()))?;
    println!(
        "snapshot: {} pages ({} MiB), {:.1}% zero; copied in {:.2} s with the guest running, then a {:.1} ms pause to re-copy {} pages; measured in {:.2} s",
        s.pages,
        (s.pages * PAGE_SIZE_BYTES) >> 20,
        100.0 * s.zero_fraction(),
        s.snapshot_copy_s,
        s.snapshot_pause_ms,
        s.snapshot_pause_pages,
        s.snapshot_measure_s
    );
    let rows: u64 = s.dirty_pages_by_epoch.iter().sum();
    println!(
        "epochs: {} of {}: dirty pages per epoch mean {:.0}, max {} ({:.1}% unchanged); guest writes {} ({} changing)",
        s.epochs,
        args.epoch,
        s.dirty_pages_per_epoch_mean(),
        s.dirty_pages_per_epoch_max(),
        100.0 * s.unchanged_dirty_pages as f64 / rows.max(1) as f64,
        s.guest_writes,
        s.guest_changed_writes
    );
    println!(
        "timing: log reads at most {:.2} ms late, backlog at most {} pages, {:.2} s to drain after the last read; capture {:.2} s wall, {:.2} s CPU; boot and fill {:.2} s",
        s.log_read_late_ms_max, s.backlog_pages_max, s.drain_s, s.capture_s, s.cpu_s, s.boot_s
    );
    println!("trace: {}", args.out.display());
    Ok(())
}
