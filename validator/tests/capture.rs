//! `capture` against a live guest: the trace it writes reads back equal, its
//! snapshot and dirty pages agree with what the guest was told to do
//! (content mix, write rate, working set, change window), and the simulator
//! replays it. Skips when /dev/kvm is unusable.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use memfabric_migration::PAGE_SIZE_BYTES;
use memfabric_sim::trace::{stats::stats, Trace};
use memfabric_sim::workload::DirtyModel;
use memfabric_validator::capture::{capture, CaptureConfig};
use memfabric_validator::guest::abi::{self, Layout};
use memfabric_validator::guest::GuestWorkload;
use memfabric_validator::kvm::kvm_or_skip;

const MEM: u64 = 64 << 20;
const EPOCH: Duration = Duration::from_millis(250);
const WRITE_RATE: f64 = 2000.0;

fn page(gpa: u64) -> u64 {
    gpa / PAGE_SIZE_BYTES
}

/// Where the guest writes, as page ranges (start, end exclusive) by name.
fn write_regions(workload: &GuestWorkload) -> BTreeMap<&'static str, (u64, u64)> {
    let layout = Layout::new(MEM).unwrap();
    let p = workload.params(MEM, 1).unwrap();
    // The guest's own formula (validator/guest/workload.c).
    let ws = p.work_pages * p.working_set_ppm / abi::GUEST_PPM;
    let work = page(layout.work_gpa);
    BTreeMap::from([
        ("working set", (work, work + ws)),
        // One u32 version per page, bumped by each changing write.
        ("version table", (page(layout.meta_gpa), page(layout.meta_gpa + ws * 4 - 1) + 1)),
        ("status block", (page(abi::GUEST_STATUS_GPA), page(abi::GUEST_STATUS_GPA) + 1)),
        // Its static data (parameter copy, verify scratch page) lives in the image.
        ("guest image", (page(abi::GUEST_IMAGE_GPA), page(abi::GUEST_IMAGE_GPA + abi::GUEST_IMAGE_MAX))),
        // The ring-3 stack, growing down from its top.
        ("user stack", (page(abi::GUEST_USTACK_TOP) - 4, page(abi::GUEST_USTACK_TOP))),
    ])
}

#[test]
fn captured_trace_matches_the_guest_and_replays() {
    if !kvm_or_skip("captured_trace_matches_the_guest_and_replays") {
        return;
    }
    let workload = GuestWorkload::from_archetype("web", Some(WRITE_RATE), 1).unwrap();
    let spec = workload.spec.clone();
    let cfg = CaptureConfig {
        memory_bytes: MEM,
        workload: workload.clone(),
        duration: Duration::from_millis(1500),
        epoch: EPOCH,
        warmup: Duration::ZERO,
    };
    let (trace, s) = capture(&cfg).unwrap();
    println!("{s:#?}");

    // Round trip.
    let dir = memfabric_testkit::scratch::owned_path("capture-test", "trace");
    trace.write(&dir).unwrap();
    let back = Trace::read(&dir).unwrap();
    assert!(back == trace, "the trace read back differs from the one written");
    let m = &trace.manifest;
    assert_eq!((m.pages, m.epochs, m.vm.as_str()), (MEM / 4096, 6, "validator-guest"));
    assert_eq!(s.epochs, 6);

    // Snapshot content: the workload pages follow the archetype's mix; the
    // pages below them (page tables, image, version table) are nearly all zero.
    let layout = Layout::new(MEM).unwrap();
    let low_pages = page(layout.work_gpa);
    let c = &spec.content;
    let expected_zero = (low_pages as f64 + layout.work_pages as f64 * c.zero.0) / m.pages as f64;
    let zero = trace.snapshot.iter().filter(|p| p.zero).count() as f64 / m.pages as f64;
    assert!((zero - expected_zero).abs() < 0.02, "zero fraction {zero:.4}, expected {expected_zero:.4}");
    assert_eq!(s.zero_pages, trace.snapshot.iter().filter(|p| p.zero).count() as u64);
    // Non-zero workload pages are `r` random bytes then a 32-byte periodic
    // pattern, `r` drawn around the archetype's compressed mean: real codec
    // sizes are `r` plus what the pattern costs (measured: about 130 bytes
    // with lz4, 340 with zstd-1, which handles this pattern worse).
    let nonzero: Vec<_> = trace.snapshot.iter().filter(|p| !p.zero && p.page_index >= low_pages).collect();
    let mean = |f: fn(&&memfabric_sim::trace::SnapshotPage) -> u32| {
        nonzero.iter().map(|p| f64::from(f(p))).sum::<f64>() / nonzero.len() as f64 / 4096.0
    };
    let (lz4_mean, zstd_mean) = (mean(|p| p.lz4_bytes), mean(|p| p.zstd_bytes));
    let r = c.unique_compressed_mean.0;
    assert!((r..r + 0.06).contains(&lz4_mean), "lz4 mean size {lz4_mean:.3} of a page, random part {r}");
    assert!((r..r + 0.12).contains(&zstd_mean), "zstd-1 mean size {zstd_mean:.3} of a page, random part {r}");

    // Every dirtied page is one the guest writes.
    let regions = write_regions(&workload);
    let region_of = |p: u64| regions.iter().find(|(_, r)| (r.0..r.1).contains(&p)).map(|(name, _)| *name);
    let mut by_region: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &trace.epochs {
        let r = region_of(d.page_index).unwrap_or_else(|| panic!("page {} dirtied outside the guest's write regions {regions:?}", d.page_index));
        *by_region.entry(r).or_default() += 1;
    }
    println!("dirty rows by region: {by_region:?}");

    // Distinct working-set pages per epoch: at most the guest's writes, and
    // what the simulator's dirty model predicts for the guest's working set.
    let ws = regions["working set"];
    let model = DirtyModel::new(&spec, layout.work_pages);
    let (mut got, mut want, mut prev_ns) = (0u64, 0.0, 0u64);
    for e in 0..m.epochs {
        let rows: Vec<_> = trace.epochs.iter().filter(|d| d.epoch == e).collect();
        let end_ns = rows.first().map(|d| d.time_ns).expect("every epoch dirties pages");
        let deadline_ns = (u64::from(e) + 1) * EPOCH.as_nanos() as u64;
        assert!(end_ns.abs_diff(deadline_ns) < 25_000_000, "epoch {e} read at {end_ns} ns, deadline {deadline_ns} ns");
        let in_ws = rows.iter().filter(|d| (ws.0..ws.1).contains(&d.page_index)).count() as u64;
        let writes = s.guest_writes_by_epoch[e as usize];
        // (The guest publishes its count after each burst: allow one.)
        assert!(in_ws > 0 && in_ws <= writes + 20, "epoch {e}: {in_ws} working-set pages dirtied, {writes} guest writes");
        assert!(rows.len() as u64 - in_ws <= 16, "epoch {e}: {} pages outside the working set", rows.len() as u64 - in_ws);
        assert_eq!(rows.len() as u64, s.dirty_pages_by_epoch[e as usize]);
        got += in_ws;
        want += model.expected_dirty_pages((end_ns - prev_ns) as f64 / 1e9);
        prev_ns = end_ns;
    }
    let rel = got as f64 / want - 1.0;
    println!("working-set pages dirtied: {got}, dirty model {want:.0} ({:+.1}%)", 100.0 * rel);
    assert!(rel.abs() < 0.15, "dirtied {got} working-set pages, the dirty model expects {want:.0}");
    let rate = s.guest_writes as f64 / (m.duration_ns as f64 / 1e9);
    assert!((rate / WRITE_RATE - 1.0).abs() < 0.1, "guest wrote {rate:.0} pages/s, configured {WRITE_RATE}");

    // A changing write rewrites a fixed window of redirty_change × 4096 bytes
    // (rounded down to 8): the delta is about that window. Unchanged
    // re-writes show up as dirty pages with delta 0.
    let window = (spec.redirty_change.0 * 4096.0) as u32 & !7;
    let ws_rows: Vec<_> = trace.epochs.iter().filter(|d| (ws.0..ws.1).contains(&d.page_index)).collect();
    let mut deltas: Vec<u32> = ws_rows.iter().map(|d| d.delta_bytes).filter(|&d| d > 0).collect();
    assert!(deltas.iter().all(|&d| d < 4096), "a changed page's delta did not fit");
    deltas.sort_unstable();
    let median = deltas[deltas.len() / 2];
    assert!((window..window + 16).contains(&median), "median delta {median} bytes, change window {window} bytes");
    let unchanged = ws_rows.iter().filter(|d| d.delta_bytes == 0).count() as f64 / ws_rows.len() as f64;
    println!("unchanged working-set rows: {:.1}% (redirty_unchanged {})", 100.0 * unchanged, spec.redirty_unchanged.0);
    assert!((0.1..0.4).contains(&unchanged), "unchanged fraction {unchanged:.3}");
    for d in trace.epochs.iter().filter(|d| d.delta_bytes == 0) {
        // Same content as its previous version: the hash it had before.
        let before = trace.epochs.iter().rev().find(|p| p.page_index == d.page_index && p.epoch < d.epoch).map_or(trace.snapshot[d.page_index as usize].hash, |p| p.hash);
        assert_eq!(d.hash, before, "page {} unchanged in epoch {} but its hash changed", d.page_index, d.epoch);
    }

    // The simulator reads it: its statistics and a migration replaying it.
    let st = &stats(&[("captured".into(), back)])[0];
    assert!((st.zero_fraction - zero).abs() < 1e-12);
    assert!(st.dirty_pages_per_s > 0.0);
    let out = memfabric_sim::run::run(&replay_scenario(&dir), None);
    let mig = &out.migrations[0];
    println!("replay: {} in {:.3} s, {} bytes on the wire, {} rounds", mig.operation, mig.total_time_s, mig.bytes_on_wire, mig.rounds);
    assert_eq!(mig.memory_bytes, MEM);
    assert!(mig.bytes_on_wire > 0 && mig.bytes_on_wire < MEM, "zero pages and lz4 reduce the copy: {} bytes", mig.bytes_on_wire);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One VM replaying the trace in `dir`, migrated over 1 Gbit/s.
fn replay_scenario(dir: &Path) -> memfabric_sim::scenario::Scenario {
    let text = format!(
        r#"[scenario]
name = "captured-replay"
seed = 1
[defaults]
strategy = "zero+xbzrle+lz4"
[[sites]]
name = "a"
hosts = [{{ name = "a-h", count = 1, cores = 32, ram = "64GiB" }}]
[[sites]]
name = "b"
hosts = [{{ name = "b-h", count = 1, cores = 32, ram = "64GiB" }}]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "10ms"
[[vms]]
name = "vm"
host = "a-h-0"
archetype = "web"
trace = "{}"
[[migrations]]
vm = "vm"
to = "b"
"#,
        dir.display()
    );
    memfabric_sim::scenario::parse(&text, "captured-replay.toml").unwrap_or_else(|e| panic!("{e}"))
}

