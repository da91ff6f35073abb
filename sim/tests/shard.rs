//! Shards and merges give exactly the unsharded result (byte-identical
//! points.parquet for several N); `--resume` after a killed run gives exactly
//! an uninterrupted run; merging incomplete or foreign shards is refused.

#[path = "common/study.rs"]
mod study_common;

use std::path::{Path, PathBuf};
use study_common::*;

const AXES: &str = r#"[axes]
links.lyon-madrid.bandwidth = { from = "300Mbit/s", to = "3Gbit/s", steps = 4, scale = "log" }
evacuations.drain-lyon.max_concurrent = [1, 4]
defaults.strategy = ["none", "zero+lz4"]
"#;

fn sweep(study: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["sweep", study.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-plots"];
    args.extend_from_slice(extra);
    memfabric_ok(&args)
}

fn parquet(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("points.parquet")).unwrap()
}

#[test]
fn merged_shards_equal_the_unsharded_run() {
    let dir = scratch("merge");
    let study = write_study(&dir, &evacuation(), "[7, 8]", AXES);
    let whole = dir.join("whole");
    sweep(&study, &whole, &[]);
    let expected = parquet(&whole);
    for n in [1u32, 2, 3, 5] {
        let shards: Vec<PathBuf> = (0..n).map(|k| dir.join(format!("n{n}-shard{k}"))).collect();
        for (k, s) in shards.iter().enumerate() {
            sweep(&study, s, &["--shard", &format!("{k}/{n}"), "--jobs", "1"]);
        }
        let merged = dir.join(format!("n{n}-merged"));
        let mut args = vec!["merge".to_string()];
        // Shard order on the command line does not matter.
        args.extend(shards.iter().rev().map(|s| s.display().to_string()));
        args.extend(["--out".to_string(), merged.display().to_string(), "--no-plots".to_string()]);
        memfabric_ok(&args);
        assert!(parquet(&merged) == expected, "{n} shards merged differ from the unsharded run");
        if n == 3 {
            // A missing shard, a repeated shard.
            let out = memfabric(&["merge", shards[0].to_str().unwrap(), shards[1].to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&out.stderr).contains("a shard is missing"));
            let out = memfabric(&["merge", shards[0].to_str().unwrap(), shards[0].to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&out.stderr).contains("more than one folder"));
            assert!(!dir.join("x").exists());
        }
    }
    // A shard of another study is refused.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = write_study(&other_dir, &evacuation(), "[9]", AXES);
    sweep(&other, &dir.join("other-shard"), &["--shard", "1/2"]);
    let out = memfabric(&["merge", dir.join("n2-shard0").to_str().unwrap(), dir.join("other-shard").to_str().unwrap(), "--out", dir.join("y").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another study"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_merge_carries_every_points_tables_and_leaves_the_shards_as_they_were() {
    let dir = scratch("merge-tables");
    let study = write_study(&dir, &evacuation(), "[7]", AXES);
    let shards: Vec<PathBuf> = (0..2).map(|k| dir.join(format!("shard{k}"))).collect();
    for (k, s) in shards.iter().enumerate() {
        sweep(&study, s, &["--shard", &format!("{k}/2"), "--jobs", "1", "--tables"]);
    }
    let listing = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.join("tables")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    let before: Vec<Vec<String>> = shards.iter().map(|s| listing(s)).collect();
    assert!(before.iter().all(|l| !l.is_empty()), "each shard wrote tables: {before:?}");
    let merged = dir.join("merged");
    memfabric_ok(&["merge", shards[0].to_str().unwrap(), shards[1].to_str().unwrap(), "--out", merged.to_str().unwrap(), "--no-plots"]);
    let mut all: Vec<String> = before.concat();
    all.sort();
    assert_eq!(listing(&merged), all, "the merge holds every point's tables");
    let after: Vec<Vec<String>> = shards.iter().map(|s| listing(s)).collect();
    assert_eq!(after, before, "the shards keep their tables");
    // The copied tables are the shard's, byte for byte, and the manifest lists them.
    let one = &before[0][0];
    let table = std::fs::read_dir(shards[0].join("tables").join(one)).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "parquet")).unwrap();
    let copied = merged.join("tables").join(one).join(table.file_name().unwrap());
    assert_eq!(std::fs::read(&table).unwrap(), std::fs::read(&copied).unwrap());
    let manifest = std::fs::read_to_string(merged.join("manifest.json")).unwrap();
    assert!(manifest.contains(&format!("tables/{one}/")), "{manifest}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_after_a_killed_run_equals_an_uninterrupted_run() {
    let dir = scratch("resume");
    // 8 strategies-and-bandwidth variants × 30 seeds = 240 points, one thread:
    // long enough to kill half-way.
    let seeds: Vec<String> = (1..=30).map(|s| s.to_string()).collect();
    let study = write_study(&dir, &evacuation(), &format!("[{}]", seeds.join(", ")), AXES.replace("evacuations.drain-lyon.max_concurrent = [1, 4]\n", "").as_str());
    let whole = dir.join("whole");
    sweep(&study, &whole, &["--jobs", "1"]);
    let out = dir.join("killed");
    let journal = dir.join(".killed.journal/points.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_memfabric"))
        .args(["sweep", study.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-plots", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let lines = std::fs::read_to_string(&journal).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= 20 {
            break;
        }
        assert!(start.elapsed().as_secs() < 120, "the sweep wrote no journal");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed before it finished (make the study longer if this fails)");
    assert!(!out.exists(), "a killed run leaves no results folder");
    let done_before = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(done_before < 240);
    let stdout = sweep(&study, &out, &["--resume", "--jobs", "2"]);
    let ran: usize = stdout
        .split("points (")
        .nth(1)
        .and_then(|s| s.split(" run now").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(ran <= 240 - done_before + 1 && ran < 240, "resume ran {ran} points after {done_before} were done");
    assert!(parquet(&out) == parquet(&whole), "resumed run differs from the uninterrupted one");
    assert!(!dir.join(".killed.journal").exists());
    // Resuming a complete folder runs nothing and changes nothing.
    let stdout = sweep(&study, &out, &["--resume"]);
    assert!(stdout.contains("240 points (0 run now"), "{stdout}");
    assert!(parquet(&out) == parquet(&whole));
    let _ = std::fs::remove_dir_all(&dir);
}
