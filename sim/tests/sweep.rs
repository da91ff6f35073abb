//! `memfabric sweep`: every point runs and lands in points.parquet with the
//! values it ran with; a point equals a plain run of the same scenario; the
//! thread count does not change a byte; a failing point is recorded and the
//! others go on; bad study files are located errors that write nothing.

#[path = "common/study.rs"]
mod study_common;

use memfabric_sim::output::read_parquet;
use memfabric_sim::study::table::op_metrics;
use polars::prelude::*;
use std::path::Path;
use study_common::*;

const AXES: &str = r#"[axes]
links.lyon-madrid.bandwidth = ["500Mbit/s", "1Gbit/s", "4Gbit/s"]
defaults.strategy = ["none", "zero+lz4"]
"#;

fn strings(df: &DataFrame, name: &str) -> Vec<String> {
    let c = df.column(name).unwrap().str().unwrap().clone();
    (0..c.len()).map(|i| c.get(i).unwrap_or("").to_string()).collect()
}

fn floats(df: &DataFrame, name: &str) -> Vec<f64> {
    let c = df.column(name).unwrap().f64().unwrap().clone();
    (0..c.len()).map(|i| c.get(i).unwrap_or(f64::NAN)).collect()
}

#[test]
fn every_point_runs_and_equals_a_plain_run_of_its_scenario() {
    let dir = scratch("every-point");
    let study = write_study(&dir, &evacuation(), "[7, 8]", AXES);
    let out = dir.join("out");
    let stdout = sweep(&study, &out, &["--jobs", "2"]);
    assert!(stdout.contains("12 points (12 run now, 0 failed)"), "{stdout}");
    let df = read_parquet(&out.join("points.parquet")).unwrap();
    assert_eq!(df.height(), 12, "3 bandwidths × 2 strategies × 2 seeds, one operation each");
    for c in ["point", "point_hash", "seed", "links.lyon-madrid.bandwidth", "links.lyon-madrid.bandwidth:value", "defaults.strategy", "operation", "makespan_s", "downtime_ms_p95", "bytes_on_wire", "failed", "error"] {
        assert!(df.column(c).is_ok(), "column {c} missing");
    }
    assert!(df.column("defaults.strategy:value").is_err(), "a text axis has no number column");
    // Points are numbered in product order, seeds innermost.
    let points: Vec<u64> = df.column("point").unwrap().u64().unwrap().into_no_null_iter().collect();
    assert_eq!(points, (0..12).collect::<Vec<u64>>());
    let strategies = strings(&df, "defaults.strategy");
    let bandwidths = strings(&df, "links.lyon-madrid.bandwidth");
    assert_eq!((strategies[0].as_str(), bandwidths[0].as_str()), ("none", "500Mbit/s"));
    assert_eq!((strategies[11].as_str(), bandwidths[11].as_str()), ("zero+lz4", "4Gbit/s"));
    let values = floats(&df, "links.lyon-madrid.bandwidth:value");
    assert_eq!(values[2], 125e6, "1Gbit/s in bytes per second");
    // The point (none, 1Gbit/s, seed 7) is the committed scenario as written: same results.
    let sc = memfabric_sim::scenario::load(&evacuation()).unwrap();
    let plain = op_metrics(&memfabric_sim::run::run_all(&sc, Some(7)));
    let makespan = floats(&df, "makespan_s");
    assert_eq!(makespan[2], plain[0].makespan_s);
    assert_eq!(floats(&df, "downtime_ms_max")[2], plain[0].downtime_ms_max);
    // More bandwidth, shorter evacuation.
    assert!(makespan[0] > makespan[2] && makespan[2] > makespan[4], "{makespan:?}");
    for f in ["manifest.json", "points.jsonl", "report.html", "study.toml", "scenario.toml", "plots/lines-makespan_s.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!dir.join(".out.journal").exists(), "the journal is removed once the results are complete");
    let _ = std::fs::remove_dir_all(&dir);
}

fn sweep(study: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["sweep", study.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    memfabric_ok(&args)
}

#[test]
fn thread_count_does_not_change_a_byte() {
    let dir = scratch("jobs");
    let study = write_study(&dir, &evacuation(), "[1, 2]", AXES);
    sweep(&study, &dir.join("one"), &["--jobs", "1", "--no-plots"]);
    sweep(&study, &dir.join("two"), &["--jobs", "2", "--no-plots"]);
    let a = std::fs::read(dir.join("one/points.parquet")).unwrap();
    let b = std::fs::read(dir.join("two/points.parquet")).unwrap();
    assert!(a == b, "points.parquet differs between --jobs 1 and --jobs 2");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_point_is_recorded_and_the_others_go_on() {
    // 40 web VMs of 32 GiB do not fit the three 128 GiB hosts of lyon; each
    // value alone does.
    let dir = scratch("failing");
    let study = write_study(
        &dir,
        &evacuation(),
        "[7]",
        "[axes]\nvms.web.count = [4, 40]\nvms.web.memory = [\"4GiB\", \"32GiB\"]\n",
    );
    let out = dir.join("out");
    let stdout = sweep(&study, &out, &["--no-plots"]);
    assert!(stdout.contains("4 points (4 run now, 1 failed)"), "{stdout}");
    let df = read_parquet(&out.join("points.parquet")).unwrap();
    let errors = df.column("error").unwrap().str().unwrap().clone();
    let failed: Vec<usize> = (0..df.height()).filter(|&i| errors.get(i).is_some()).collect();
    assert_eq!(failed.len(), 1);
    let i = failed[0];
    assert_eq!(strings(&df, "vms.web.count")[i], "40");
    assert_eq!(strings(&df, "vms.web.memory")[i], "32GiB");
    assert!(errors.get(i).unwrap().contains("vms"), "{}", errors.get(i).unwrap());
    assert!(df.column("makespan_s").unwrap().f64().unwrap().get(i).is_none(), "a failed point has no metrics");
    let ok = (0..df.height()).filter(|&r| r != i).count();
    assert_eq!(ok, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dry_run_counts_points_and_writes_nothing() {
    let dir = scratch("dry");
    let study = write_study(&dir, &evacuation(), "[1, 2, 3]", AXES);
    let out = dir.join("out");
    let stdout = sweep(&study, &out, &["--dry-run"]);
    assert!(stdout.contains("18 points (6 variants × 3 seeds)"), "{stdout}");
    assert!(stdout.contains("timed sample: 3 points") && stdout.contains("estimate"), "{stdout}");
    assert_eq!(files(&dir), ["study.toml"], "a dry run writes nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[track_caller]
fn bad(text: &str, line_of: &str, needles: &[&str]) {
    assert_bad_study("sweep", text, line_of, needles);
}

#[test]
fn bad_studies_are_located_errors_that_write_nothing() {
    // An unknown key at the end of a path: the scenario's strict parser names it.
    bad("[axes]\nlinks.lyon-madrid.bandwith = [\"1Gbit/s\"]\n", "bandwith", &["unknown field `bandwith`", "bandwidth"]);
    // An element that does not exist.
    bad("[axes]\nlinks.wan.bandwidth = [\"1Gbit/s\"]\n", "wan", &["no element \"wan\"", "lyon-madrid"]);
    // A value of the wrong unit for the path.
    bad("[axes]\nlinks.lyon-madrid.bandwidth = [\"1Gbit/s\", \"10ms\"]\n", "10ms", &["10ms", "links[0].bandwidth", "bit/s"]);
    // An empty axis.
    bad("[axes]\ndefaults.strategy = []\n", "strategy", &["empty axis"]);
    // A strategy that does not exist.
    bad("[axes]\ndefaults.strategy = [\"none\", \"zero+gzip\"]\n", "gzip", &["zero+gzip"]);
    // A range over text, and a key the study does not know.
    bad("[axes]\ndefaults.strategy = { from = \"none\", to = \"zero\", steps = 2 }\n", "strategy", &["not numeric"]);
    bad("[axes]\ndefaults.streams = [1]\n[study2]\nx = 1\n", "[study2]", &["unknown field `study2`"]);
    // Sizes bounded before any point is made: one range's steps, and the product of the axes.
    bad(
        "[axes]\nlinks.lyon-madrid.bandwidth = { from = \"1Gbit/s\", to = \"10Gbit/s\", steps = 4000000000 }\n",
        "bandwidth",
        &["steps must be at most 1000000"],
    );
    bad(
        "[axes]\nlinks.lyon-madrid.bandwidth = { from = \"1Gbit/s\", to = \"10Gbit/s\", steps = 2000 }\nlinks.lyon-madrid.latency = { from = \"1ms\", to = \"100ms\", steps = 1000 }\n",
        "[axes]",
        &["2000000 points", "at most 1000000"],
    );
}

#[test]
fn committed_studies_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../studies");
    let mut studies = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("\n[study]") || text.starts_with("[study]") {
            let s = memfabric_sim::study::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!s.axes.is_empty() || s.plan.is_some(), "{}", path.display());
            studies += 1;
        } else {
            memfabric_sim::scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert!(studies >= 3);
    let bench = memfabric_sim::study::load(&dir.join("bench-1000.toml")).unwrap();
    assert_eq!(memfabric_sim::study::points::expand(&bench).len(), 6000, "1,000 scenarios × 6 strategies");
}

#[test]
fn a_list_of_points_with_repetitions_and_per_point_tables() {
    let dir = scratch("list");
    let p = dir.join("study.toml");
    std::fs::write(
        &p,
        format!(
            "[study]\nname = \"list\"\nscenario = {:?}\nrepetitions = 2\n\n[[points]]\nlinks.lyon-madrid.bandwidth = \"2Gbit/s\"\ndefaults.strategy = \"zero+lz4\"\n\n[[points]]\nlinks.lyon-madrid.bandwidth = \"500Mbit/s\"\ndefaults.strategy = \"none\"\n",
            evacuation().display().to_string()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    sweep(&p, &out, &["--tables", "--no-plots"]);
    let df = read_parquet(&out.join("points.parquet")).unwrap();
    assert_eq!(strings(&df, "links.lyon-madrid.bandwidth"), ["2Gbit/s", "2Gbit/s", "500Mbit/s", "500Mbit/s"], "points in list order");
    let seeds: Vec<u64> = df.column("seed").unwrap().u64().unwrap().into_no_null_iter().collect();
    assert_eq!(seeds, [7, 8, 7, 8], "repetitions count up from the scenario's seed 7");
    // Each point's own tables, named by its hash, hold its migrations.
    let hashes = strings(&df, "point_hash");
    let migrations: Vec<u32> = df.column("migrations").unwrap().u32().unwrap().into_no_null_iter().collect();
    for (h, n) in hashes.iter().zip(&migrations) {
        let t = read_parquet(&out.join("tables").join(h).join("migrations.parquet")).unwrap();
        assert_eq!(t.height() as u32, *n);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
