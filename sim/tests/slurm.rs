//! A real single-node Slurm cluster (Debian's slurm-wlm and munge, started by
//! scripts/slurm-cluster.sh in a scratch folder and stopped afterwards) runs a
//! sweep as job arrays of 4 shards, split over two arrays by --max-array 3,
//! and a merge job that depends on them; the merged points.parquet equals the
//! unsharded run byte for byte. Skips with a message only when the packages
//! are missing (scripts/test.sh installs them) or the daemons cannot start.

#[path = "common/study.rs"]
mod study_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use study_common::*;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(name)
}

/// Stops the cluster when the test ends, passing or not.
struct Cluster {
    dir: PathBuf,
    port: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script("slurm-cluster.sh")).args(["stop", self.dir.to_str().unwrap()]).env("SLURM_TEST_PORT", &self.port).status();
    }
}

fn missing_tools() -> Vec<&'static str> {
    ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol"]
        .into_iter()
        .filter(|t| !Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success()))
        .collect()
}

#[test]
fn slurm_array_and_merge_equal_the_unsharded_run() {
    let missing = missing_tools();
    if !missing.is_empty() {
        eprintln!("skipping: {} not installed (apt-get install slurm-wlm munge; scripts/test.sh does it)", missing.join(", "));
        return;
    }
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipping: slurmd must run as root to start jobs");
        return;
    }
    let dir = scratch("slurm");
    let port = (20000 + std::process::id() % 20000).to_string();
    let cluster = Cluster { dir: dir.join("cluster"), port: port.clone() };
    let start = Command::new(script("slurm-cluster.sh"))
        .args(["start", cluster.dir.to_str().unwrap()])
        .env("SLURM_TEST_PORT", &port)
        .output()
        .unwrap();
    if !start.status.success() {
        eprintln!(
            "skipping: the Slurm daemons did not start:\n{}\n{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(cluster.dir.join("slurmctld.log")).unwrap_or_default()
        );
        return;
    }
    let conf = cluster.dir.join("slurm.conf");
    let study = write_study(
        &dir,
        &evacuation(),
        "[7, 8]",
        "[axes]\nlinks.lyon-madrid.bandwidth = [\"500Mbit/s\", \"1Gbit/s\", \"4Gbit/s\"]\ndefaults.strategy = [\"none\", \"zero+lz4\"]\n",
    );
    let whole = dir.join("whole");
    memfabric_ok(&["sweep", study.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--no-plots"]);
    let out = dir.join("cluster-run");
    let submit = Command::new("timeout")
        .arg("300")
        .arg(script("slurm-sweep.sh"))
        .args(["--shards", "4", "--max-array", "3", "--wait", "--memfabric", env!("CARGO_BIN_EXE_memfabric")])
        .arg(&study)
        .arg(&out)
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&submit.stdout);
    assert!(submit.status.success(), "the cluster run failed:\n{stdout}\n{}", String::from_utf8_lossy(&submit.stderr));
    assert!(stdout.contains("2 arrays for 4 shards, at most 3 tasks each"), "{stdout}");
    // Every shard ran as an array task of the cluster.
    let logs = files(&dir.join("cluster-run.shards/logs"));
    assert_eq!(logs.iter().filter(|l| l.starts_with("shard-")).count(), 4, "{logs:?}");
    for k in 0..4 {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("cluster-run.shards/shard-{k}/manifest.json"))).unwrap()).unwrap();
        assert_eq!(m["shard"]["k"], k);
    }
    let merged = std::fs::read(out.join("points.parquet")).unwrap();
    let expected = std::fs::read(whole.join("points.parquet")).unwrap();
    assert!(merged == expected, "the cluster's merged result differs from the unsharded run");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
