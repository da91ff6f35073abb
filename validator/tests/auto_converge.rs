//! Auto-converge on a real guest: a CPU-bound guest (it dirties as fast as
//! its vCPU runs) over an emulated 50 Mbit/s link does not converge without
//! auto-converge, and converges with it; the throttle of every round is the
//! one the shared trigger (`migration::precopy::AutoConverge`) gives for the
//! rounds before it, the vCPU really slept under it, and the simulator
//! replays the case from scenario.toml. Also: the vCPU throttle alone sleeps
//! the asked share of the time.
//!
//! Needs /dev/kvm, and root with TUN and network namespaces for the link;
//! skips with a message without them. Each migration is time-boxed.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memfabric_migration::precopy::AutoConverge;
use memfabric_validator::guest::{DirtyPace, GuestWorkload};
use memfabric_validator::kvm::kvm_or_skip;
use memfabric_validator::machine::Machine;

/// A migration that takes longer is killed and the test fails.
const TIME_BOX: Duration = Duration::from_secs(240);

struct Run {
    source: serde_json::Value,
    manifest: serde_json::Value,
    out: PathBuf,
    stdout: String,
}

/// A 16 MiB `hpc` guest (uniform writes over 60 % of its pages), CPU-bound,
/// over 50 Mbit/s with a 20 ms downtime limit: its 1,500-page working set
/// takes about a second to send, while the guest re-dirties it in well under
/// that, so the rounds never shrink to the 61 pages the limit allows unless
/// the vCPU is throttled.
fn migrate(name: &str, extra: &[&str]) -> Run {
    let _serial = common::serial();
    let out = memfabric_testkit::scratch::owned_path("validator-test-ac", name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
        .args(["migrate", "--mem", "16MiB", "--workload", "hpc", "--cpu-bound", "--pipeline", "zero"])
        .args(["--link", "50Mbit/s,5ms", "--downtime-limit", "20ms", "--warmup", "300ms", "--watch", "500ms"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run memfabric-validator");
    let t = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t.elapsed() > TIME_BOX {
            // Its own process group: the VMMs and the link go with it.
            // SAFETY: kill(2) on the process group this test created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
            let _ = child.wait();
            panic!("{name}: migrate ran longer than {TIME_BOX:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().expect("output");
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{name}: {f}: {e}"))).unwrap()
    };
    Run { source: read("source.json"), manifest: read("manifest.json"), out, stdout: String::from_utf8_lossy(&o.stdout).into() }
}

fn precopy_rounds(r: &Run) -> Vec<&serde_json::Value> {
    r.source["rounds"].as_array().unwrap().iter().filter(|r| r["phase"] == "precopy").collect()
}

#[test]
fn a_cpu_bound_guest_converges_only_with_auto_converge() {
    if !common::kvm_and_wan_or_skip("a_cpu_bound_guest_converges_only_with_auto_converge") {
        return;
    }
    // Without auto-converge: the round bound is reached, the stop-and-copy
    // is forced, and nothing was throttled.
    let without = migrate("off", &["--max-rounds", "4"]);
    assert_eq!(without.source["converged"], false, "{}", without.stdout);
    assert_eq!(precopy_rounds(&without).len(), 4, "{}", without.stdout);
    assert_eq!(without.source["throttle_pct_max"], 0);
    assert!(precopy_rounds(&without).iter().all(|r| r["throttle_pct"] == 0 && r["throttled_ms"] == 0.0));
    assert_eq!(without.manifest["integrity_held"], true, "{}", without.stdout);

    // With it: the stop rule is met before the bound.
    let with = migrate("on", &["--auto-converge", "--max-rounds", "30"]);
    assert_eq!(with.source["outcome"], "completed", "{}", with.stdout);
    assert_eq!(with.source["converged"], true, "{}", with.stdout);
    assert_eq!(with.manifest["integrity_held"], true, "{}", with.stdout);
    let rounds = precopy_rounds(&with);
    assert!(rounds.len() < 30);
    // Each round's throttle is what the shared trigger gives for the rounds
    // before it (bytes dirtied = dirty pages × 4 KiB against bytes sent).
    let mut rule = AutoConverge::new();
    for r in &rounds {
        assert_eq!(r["throttle_pct"].as_u64().unwrap() as u32, rule.throttle_pct(), "round {}: {}", r["round"], with.stdout);
        rule.on_round(r["dirty_pages"].as_u64().unwrap() * 4096, r["bytes_on_wire"].as_u64().unwrap());
    }
    let max = with.source["throttle_pct_max"].as_u64().unwrap();
    assert!(max >= 20, "converged only once throttled: max {max} %");
    assert_eq!(max as u32, rule.throttle_pct(), "the last round's decision is the largest");
    // The throttle fired: over the throttled rounds the vCPU slept at least
    // a third of the share asked (sleeps run across round ends, and a kick
    // that comes late on a loaded host lets the vCPU run longer).
    let throttled: Vec<_> = rounds.iter().filter(|r| r["throttle_pct"].as_u64().unwrap() > 0).collect();
    let asked_ms: f64 = throttled
        .iter()
        .map(|r| r["throttle_pct"].as_f64().unwrap() / 100.0 * (r["end_ns"].as_u64().unwrap() - r["start_ns"].as_u64().unwrap()) as f64 * 1e-6)
        .sum();
    let slept_ms: f64 = throttled.iter().map(|r| r["throttled_ms"].as_f64().unwrap()).sum();
    assert!(slept_ms >= asked_ms / 3.0, "the vCPU slept {slept_ms:.0} ms of the {asked_ms:.0} ms asked");
    // The result tables carry the throttle in the simulator's columns.
    let rounds_pq = common::column_str(&with.out, "rounds.parquet", "phase");
    assert_eq!(rounds_pq.len(), rounds.len() + 1, "pre-copy rounds and the stop-and-copy");
    let df = memfabric_sim::output::read_parquet(&with.out.join("rounds.parquet")).unwrap();
    let pct: Vec<u32> = df.column("throttle_pct").unwrap().u32().unwrap().into_no_null_iter().collect();
    assert_eq!(pct.iter().copied().max().unwrap(), max as u32);
    let df = memfabric_sim::output::read_parquet(&with.out.join("migrations.parquet")).unwrap();
    assert_eq!(df.column("throttle_pct_max").unwrap().u32().unwrap().get(0), Some(max as u32));

    // scenario.toml replays the case: auto-converge on, the guest's measured
    // round-0 write rate in place of a paced one.
    let scenario = memfabric_sim::scenario::load(&with.out.join("scenario.toml")).expect("scenario.toml loads");
    match &scenario.operations[0] {
        memfabric_sim::scenario::OperationSpec::Migrate { settings, .. } => assert!(settings.auto_converge, "auto_converge = true"),
        other => panic!("expected the migration, got {other:?}"),
    }
    assert!(with.manifest["parameters"]["cpu_bound"] == true && with.manifest["parameters"]["auto_converge"] == true);
    let rate = with.manifest["parameters"]["workload"]["page_write_rate"].as_f64().unwrap();
    assert!(rate > 1000.0, "measured CPU-bound write rate {rate} pages/s");
    let sim = memfabric_sim::run::run(&scenario, None);
    assert_eq!(sim.migrations.len(), 1);
    assert!(sim.migrations[0].throttle_pct_max > 0, "the simulator throttles the replayed guest too");
    for r in [without, with] {
        let _ = std::fs::remove_dir_all(&r.out);
    }
}

#[test]
fn the_vcpu_throttle_sleeps_the_asked_share_of_the_time() {
    if !kvm_or_skip("the_vcpu_throttle_sleeps_the_asked_share_of_the_time") {
        return;
    }
    let _serial = common::serial();
    let mut w = GuestWorkload::from_archetype("hpc", None, 5).unwrap();
    w.pace = DirtyPace::CpuBound;
    let m = Machine::boot(16 << 20, &w).unwrap();
    m.wait_for_phase(memfabric_validator::guest::abi::GUEST_PHASE_FILLED as u64, Duration::from_secs(120)).unwrap();
    assert_eq!(m.vcpu.progress().idle_ns, 0, "a CPU-bound guest never asks to idle");
    assert!(m.vcpu.set_throttle(100).is_err());
    for pct in [50u32, 90] {
        m.vcpu.set_throttle(pct).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let (p0, t0) = (m.vcpu.progress(), Instant::now());
        std::thread::sleep(Duration::from_millis(3000));
        let (p1, secs) = (m.vcpu.progress(), t0.elapsed().as_secs_f64());
        let slept = (p1.throttled_ns - p0.throttled_ns) as f64 * 1e-9 / secs;
        // Sleeps overshoot on a loaded host, and a kick that comes late
        // lets the vCPU run longer: allow 20 points either way.
        assert!((slept - pct as f64 / 100.0).abs() < 0.2, "throttle {pct} %: the vCPU slept {:.0} % of the time", slept * 100.0);
        assert!(p1.writes > p0.writes, "throttle {pct} %: the guest still runs");
    }
    m.vcpu.set_throttle(0).unwrap();
    // A sleep begun before (at most 900 ms at 90 %) ends first.
    std::thread::sleep(Duration::from_millis(1000));
    let p0 = m.vcpu.progress();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(m.vcpu.progress().throttled_ns, p0.throttled_ns, "no sleep once the throttle is lifted");
    m.vcpu.stop().unwrap();
}
