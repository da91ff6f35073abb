//! `memfabric calibrate`: the fit recovers known parameters from synthetic
//! runs made by the simulator; bad datasets, selectors and splits are
//! located errors that write nothing; the committed dataset reproduces the
//! committed profile.

use std::path::{Path, PathBuf};
use std::process::Command;

use memfabric_sim::calibrate::profile::{
    self, Calibration, CalibrationAbout, CostOverrides, DirtyFactors, DowntimeComponents, LinkCalibration, RoundCosts,
    SizeFactorOverrides,
};
use memfabric_sim::calibrate::record::{RunHeadline, RunParams, RunRecord};
use memfabric_sim::calibrate::{dataset, fit, selector::Selector, split};
use memfabric_migration::record::Outcome;

/// The simulator's description of a validator run (as `results.rs` writes it).
fn scenario_text(mem_mib: u64, rate_bytes_per_s: f64, delay_ms: f64, pipeline: &str, writes: f64, seed: u64) -> String {
    format!(
        r#"[scenario]
name = "synthetic"
seed = {seed}
[defaults]
downtime_limit = "300ms"
max_rounds = 30
on_non_convergence = "force-stop"
dirty_sampling = "expected"
strategy = "{pipeline}"
cpu_threads = 1
streams = 1
[[sites]]
name = "source"
hosts = [{{ name = "source-h", cores = 2, ram = "24GiB" }}]
[[sites]]
name = "destination"
hosts = [{{ name = "destination-h", cores = 2, ram = "24GiB" }}]
[[links]]
name = "validator-link"
between = ["source", "destination"]
bandwidth = "{rate_bytes_per_s}B/s"
latency = "{delay_ns}ns"
loss = "0%"
[[vms]]
name = "guest"
host = "source-h"
archetype = "web"
memory = "{mem}B"
vcpus = 1
[vms.workload]
page_write_rate = "{writes}pages/s"
[[migrations]]
vm = "guest"
to = "destination"
at = "0s"
"#,
        delay_ns = (delay_ms * 1e6) as u64,
        mem = mem_mib << 20,
    )
}

fn truth() -> Calibration {
    Calibration {
        about: CalibrationAbout { command: "truth".into(), dataset: "-".into(), train: "-".into(), train_runs: 0, version: "-".into(), loss: 0.0 },
        size_factor: SizeFactorOverrides { lz4: Some(0.9), xbzrle_per_changed_byte: Some(1.1) },
        ns_per_page: CostOverrides { lz4_compress: Some(5000.0), xbzrle_encode: Some(2000.0) },
        link: LinkCalibration { wan_goodput_fraction: 0.9, wan_rate_cap_bytes_per_s: None },
        round: RoundCosts { fixed_ms: 40.0 },
        downtime: DowntimeComponents { fixed_ms: 20.0, integrity_ms_per_gib: 90.0 },
        dirty: [("web".to_string(), DirtyFactors { write_rate_factor: 0.7, working_set_factor: 1.2 })].into(),
    }
}

/// Writes one run folder whose "measurements" are the simulator's
/// prediction with `truth` applied.
fn write_synthetic_run(runs: &Path, id: &str, p: RunParams, rate: f64, delay_ms: f64, truth: &Calibration) {
    let text = scenario_text(p.memory_bytes >> 20, rate, delay_ms, &p.pipeline, p.dirty_rate_pages_per_s, p.seed);
    let mut sc = memfabric_sim::scenario::parse(&text, "synthetic.toml").unwrap();
    profile::apply(&mut sc, truth, "truth");
    let out = memfabric_sim::run::run(&sc, None);
    let dir = runs.join(id);
    memfabric_sim::output::write_results(std::slice::from_ref(&out), &dir, false, false).unwrap();
    let m = &out.migrations[0];
    let rounds: Vec<serde_json::Value> = out
        .rounds
        .iter()
        .map(|r| {
            serde_json::json!({
                "phase": r.phase, "pages": r.pages, "bytes_on_wire": r.bytes_on_wire,
                "start_ns": (r.start_s * 1e9) as u64, "end_ns": (r.end_s * 1e9) as u64, "complete": r.complete,
                "dirty_pages": r.dirty_pages
            })
        })
        .collect();
    // Encode time by the kind of record each page became, as the validator
    // attributes it: a non-zero page's zero check is in its own kind's time.
    let zc = sc.cpu_profile.ns_per_page.zero_check * 1e-9;
    let checked = if m.strategy.starts_with("zero") { 1.0 } else { 0.0 };
    let source = serde_json::json!({
        "stages": {
            "pages_zero": m.pages_zero, "pages_dedup": m.pages_dedup, "pages_delta": m.pages_delta,
            "pages_compressed": m.pages_compressed, "pages_raw": m.pages_raw,
            "bytes_zero": m.bytes_zero, "bytes_dedup": m.bytes_dedup, "bytes_delta": m.bytes_delta,
            "bytes_compressed": m.bytes_compressed, "bytes_raw": m.bytes_raw,
            "cpu_s_zero": m.cpu_s_zero - checked * zc * (m.pages_delta + m.pages_compressed + m.pages_raw) as f64,
            "cpu_s_delta": m.cpu_s_delta + checked * zc * m.pages_delta as f64,
            "cpu_s_compress": m.cpu_s_compress + checked * zc * m.pages_compressed as f64,
            "cpu_s_raw": checked * zc * m.pages_raw as f64,
        },
        "cpu_s_source": m.cpu_s_source,
        "rounds": rounds,
    });
    std::fs::write(dir.join("source.json"), serde_json::to_string(&source).unwrap()).unwrap();
    std::fs::write(dir.join("scenario.toml"), &text).unwrap();
    let verify_ms = p.integrity_check.then(|| truth.integrity_hash_ns(p.memory_bytes) as f64 / 1e6);
    let rec = RunRecord {
        run_id: id.into(),
        params: p,
        load_avg_1m_at_start: 0.0,
        headline: RunHeadline {
            outcome: m.outcome,
            total_time_s: m.total_time_s,
            downtime_ms: m.downtime_ms,
            bytes_on_wire: m.bytes_on_wire,
            rounds: m.rounds,
            cpu_s_source: m.cpu_s_source,
            cpu_s_destination: m.cpu_s_destination,
            // As the validator measures it: the source's hash of RAM at the pause.
            source_verify_ms: verify_ms,
        },
    };
    std::fs::write(dir.join("run.json"), serde_json::to_string_pretty(&rec).unwrap()).unwrap();
}

fn params(mem_mib: u64, link: &str, pipeline: &str, writes: f64, seed: u64) -> RunParams {
    RunParams {
        workload: "web".into(),
        dirty_rate_pages_per_s: writes,
        memory_bytes: mem_mib << 20,
        link: link.into(),
        pipeline: pipeline.into(),
        seed,
        repeat: 0,
        integrity_check: true,
    }
}

/// A synthetic dataset: 2 sizes × 2 links × 3 pipelines × 2 seeds.
fn synthetic_dataset(dir: &Path) {
    let runs = dir.join("runs");
    for mem in [64, 128] {
        for (link, rate, delay) in [("100Mbit/s,25ms", 12.5e6, 25.0), ("50Mbit/s,40ms", 6.25e6, 40.0)] {
            for pipeline in ["none", "zero+lz4", "zero+xbzrle+lz4"] {
                for seed in [1, 2] {
                    let id = format!("m{mem}-{}-{}-s{seed}", link.replace(['/', ','], "_"), pipeline.replace('+', "_"));
                    write_synthetic_run(&runs, &id, params(mem, link, pipeline, 2000.0, seed), rate, delay, &truth());
                }
            }
        }
    }
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memfabric-calibrate-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_fit_recovers_known_parameters_from_synthetic_runs() {
    let dir = tempdir("recover");
    synthetic_dataset(&dir);
    let runs = dataset::load(&dir).unwrap();
    assert_eq!(runs.len(), 24);
    let (train, test) = split(&runs, &Selector::parse("seed=1").unwrap(), &Selector::parse("seed=2").unwrap()).unwrap();
    let about = CalibrationAbout { command: "test".into(), dataset: "-".into(), train: "seed=1".into(), train_runs: train.len(), version: "-".into(), loss: 0.0 };
    let c = fit::fit(&train, about);
    let close = |name: &str, got: f64, want: f64, tol: f64| {
        assert!((got - want).abs() <= tol * want.abs(), "{name}: fitted {got}, true {want} (tolerance {tol})\n{c:#?}");
    };
    close("wan_goodput_fraction", c.link.wan_goodput_fraction, 0.9, 0.01);
    assert_eq!(c.link.wan_rate_cap_bytes_per_s, None, "no link was capped");
    close("round.fixed_ms", c.round.fixed_ms, 40.0, 0.05);
    close("size_factor.lz4", c.size_factor.lz4.unwrap(), 0.9, 0.02);
    close("size_factor.xbzrle_per_changed_byte", c.size_factor.xbzrle_per_changed_byte.unwrap(), 1.1, 0.05);
    close("ns_per_page.lz4_compress", c.ns_per_page.lz4_compress.unwrap(), 5000.0, 0.05);
    close("ns_per_page.xbzrle_encode", c.ns_per_page.xbzrle_encode.unwrap(), 2000.0, 0.05);
    let web = c.dirty["web"];
    close("dirty.web.write_rate_factor", web.write_rate_factor, 0.7, 0.05);
    close("dirty.web.working_set_factor", web.working_set_factor, 1.2, 0.05);
    close("downtime.integrity_ms_per_gib", c.downtime.integrity_ms_per_gib, 90.0, 0.05);
    assert!((c.downtime.fixed_ms - 20.0).abs() < 2.0, "fixed_ms {}", c.downtime.fixed_ms);
    // And the held-out runs are predicted as made.
    let loss = fit::loss(&test, Some(&c));
    assert!(loss < 1e-3, "held-out loss {loss}");
    assert!(fit::loss(&test, None) > 10.0 * loss, "the built-in model should do worse");
    let _ = std::fs::remove_dir_all(&dir);
}

fn calibrate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_memfabric")).arg("calibrate").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn bad_input_is_a_located_error_and_writes_nothing() {
    let dir = tempdir("bad");
    synthetic_dataset(&dir);
    let ds = dir.to_str().unwrap().to_string();
    let out = dir.join("out.toml");
    let report = dir.join("report");
    let o = out.to_str().unwrap();
    let r = report.to_str().unwrap();
    let check = |args: &[&str], needles: &[&str]| {
        let (code, err) = calibrate(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
        }
        assert!(!out.exists() && !report.exists(), "{args:?} wrote something");
    };
    // Selectors: nothing selected, malformed, overlapping cases.
    check(&[&ds, "--train", "seed=1", "--test", "seed=9", "--out", o, "--report", r], &["seed=9", "selects no completed run"]);
    check(&[&ds, "--train", "colour=red", "--test", "seed=2", "--out", o], &["unknown key"]);
    check(
        &[&ds, "--train", "seed=1", "--test", "seed=1|2 & pipeline=none", "--out", o, "--report", r],
        &["train run", "test run", "seed=1", "`seed`"],
    );
    // A run missing a file.
    let victim = dir.join("runs").join("m64-100Mbit_s_25ms-none-s1");
    std::fs::rename(victim.join("source.json"), dir.join("source.json.bak")).unwrap();
    check(&[&ds, "--train", "seed=1", "--test", "seed=2", "--out", o, "--report", r], &["m64-100Mbit_s_25ms-none-s1", "source.json"]);
    std::fs::rename(dir.join("source.json.bak"), victim.join("source.json")).unwrap();
    // A corrupt record.
    let rec = std::fs::read_to_string(victim.join("run.json")).unwrap();
    std::fs::write(victim.join("run.json"), &rec[..rec.len() / 2]).unwrap();
    check(&[&ds, "--train", "seed=1", "--test", "seed=2", "--out", o], &["m64-100Mbit_s_25ms-none-s1", "run.json"]);
    std::fs::write(victim.join("run.json"), &rec).unwrap();
    // Parameters the simulator cannot express.
    let sc = std::fs::read_to_string(victim.join("scenario.toml")).unwrap();
    std::fs::write(victim.join("scenario.toml"), sc.replace("strategy = \"none\"", "strategy = \"gzip\"")).unwrap();
    check(&[&ds, "--train", "seed=1", "--test", "seed=2", "--out", o], &["m64-100Mbit_s_25ms-none-s1", "scenario.toml", "cannot express", "gzip"]);
    std::fs::write(victim.join("scenario.toml"), &sc).unwrap();
    // Repaired, the same command works and writes both.
    let (code, err) = calibrate(&[&ds, "--train", "seed=1", "--test", "seed=2", "--out", o, "--report", r]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_file() && report.join("evaluation.md").is_file() && report.join("predicted_vs_measured-time.svg").is_file());
    let c = Calibration::load(&out).unwrap();
    assert!((c.link.wan_goodput_fraction - 0.9).abs() < 0.01);
    let _ = std::fs::remove_dir_all(&dir);
}


#[test]
fn the_simgrid_peer_predicts_an_idle_vm_at_the_link_rate() {
    let out = std::env::temp_dir().join(format!("memfabric-simgrid-driver-{}", std::process::id()));
    let build = Command::new("sh").arg("../calibration/simgrid/build.sh").arg(&out).output().unwrap();
    if build.status.code() == Some(3) {
        eprintln!("skipping: {}", String::from_utf8_lossy(&build.stderr).trim());
        return;
    }
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    // 256 MiB, nothing dirtied, 100 Mbit/s: SimGrid sends the RAM once at
    // its TCP model's goodput (measured: 24.2 s, 0.89 of the link).
    let run = Command::new(&out).args(["268435456", "12500000", "0.025", "0", "0"]).output().unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    let t: f64 = text.trim().strip_prefix("total_time_s=").unwrap_or_else(|| panic!("{text:?}")).parse().unwrap();
    let floor = 268435456.0 / 12.5e6;
    assert!(t > floor && t < floor * 1.2, "SimGrid {t} s, link floor {floor} s");
    // Dirtying adds rounds: it takes longer (here it never meets SimGrid's
    // fixed 30 ms target: the driver's guard reports inf).
    let busy = Command::new(&out).args(["268435456", "12500000", "0.025", "2048000", "67108864"]).output().unwrap();
    let tb: f64 = String::from_utf8_lossy(&busy.stdout).trim().trim_start_matches("total_time_s=").parse().unwrap();
    assert!(tb > t, "{tb} <= {t}");
    let bad = Command::new(&out).args(["-1", "12500000", "0.025", "0", "0"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let _ = std::fs::remove_file(&out);
}

/// The committed dataset and the profile fitted on it.
const COMMITTED_DATASET: &str = "../calibration/datasets/small-2026-12-07-v2";
const COMMITTED_PROFILE: &str = "../calibration/profiles/small-2026-12-07-v2.toml";

#[test]
fn the_fit_on_the_committed_dataset_reproduces_the_committed_profile() {
    let committed = Calibration::load(Path::new(COMMITTED_PROFILE)).unwrap();
    let runs = dataset::load(Path::new(COMMITTED_DATASET)).unwrap();
    let train_sel = Selector::parse(&committed.about.train).unwrap();
    let train: Vec<&dataset::MeasuredRun> =
        runs.iter().filter(|r| train_sel.matches(&r.record.params) && r.record.headline.outcome == Outcome::Completed).collect();
    assert_eq!(train.len(), committed.about.train_runs);
    let c = fit::fit(&train, committed.about.clone());
    let same = |name: &str, a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-9), "{name}: refitted {a}, committed {b}"),
        (a, b) => assert_eq!(a, b, "{name}"),
    };
    same("link.wan_goodput_fraction", Some(c.link.wan_goodput_fraction), Some(committed.link.wan_goodput_fraction));
    same("link.wan_rate_cap_bytes_per_s", c.link.wan_rate_cap_bytes_per_s, committed.link.wan_rate_cap_bytes_per_s);
    same("size_factor.lz4", c.size_factor.lz4, committed.size_factor.lz4);
    same("size_factor.xbzrle_per_changed_byte", c.size_factor.xbzrle_per_changed_byte, committed.size_factor.xbzrle_per_changed_byte);
    same("ns_per_page.lz4_compress", c.ns_per_page.lz4_compress, committed.ns_per_page.lz4_compress);
    same("round.fixed_ms", Some(c.round.fixed_ms), Some(committed.round.fixed_ms));
    same("downtime.fixed_ms", Some(c.downtime.fixed_ms), Some(committed.downtime.fixed_ms));
    same("downtime.integrity_ms_per_gib", Some(c.downtime.integrity_ms_per_gib), Some(committed.downtime.integrity_ms_per_gib));
    same("about.loss", Some(c.about.loss), Some(committed.about.loss));
}
