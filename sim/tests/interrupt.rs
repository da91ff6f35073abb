//! SIGINT and SIGTERM during `memfabric run` (issue 12, row 3): the process
//! removes its unfinished staging folder, says so, and exits 130 / 143;
//! nothing is left at `--out` or beside it. `--time-limit` stops a run the
//! same way (exit 124), and both say how far the simulation got (issue 15).

mod common;
use common::{entries, scratch};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tmp(name: &str) -> PathBuf {
    scratch("int", name)
}

/// Starts `memfabric run` of a site evacuation of `vms` VMs into `dir/out`.
fn start_run(dir: &Path, vms: usize) -> Child {
    start_run_with(dir, vms, &[])
}

fn start_run_with(dir: &Path, vms: usize, extra: &[&str]) -> Child {
    let scenario = dir.join("evac.toml");
    std::fs::write(&scenario, memfabric_sim::bench::evacuation_scenario(vms)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_memfabric"))
        .args(["run", scenario.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the child catches `signo` (its bit in `SigCgt` of
/// `/proc/<pid>/status`): a signal sent before `main` installed the handler
/// would kill it with the default action, which a loaded machine made
/// happen within the first 100 ms.
fn wait_for_handler(child: &Child, signo: u32) {
    let t0 = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signo - 1)) != 0);
        if caught {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the run never installed its handler for signal {signo}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends `sig` ("INT", "TERM") with the shell's built-in `kill` (no procps needed).
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("sh").args(["-c", &format!("kill -{sig} {}", child.id())]).status().unwrap().success();
    assert!(ok, "kill -{sig} failed");
}

#[test]
fn sigint_while_writing_removes_the_staging_folder_and_exits_130() {
    let dir = tmp("int");
    // Drawing the plots of 200 VMs takes about 2 s in a debug build; the
    // test fails (not skips) if it never saw the staging folder, so the
    // signal is known to have come mid-write.
    let mut child = start_run(&dir, 200);
    let t0 = Instant::now();
    let seen = loop {
        if entries(&dir).iter().any(|e| e.starts_with(".out.partial-")) {
            break true;
        }
        if child.try_wait().unwrap().is_some() || t0.elapsed() > Duration::from_secs(120) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(seen, "the run ended before its staging folder was seen; make the scenario larger");
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT: removed the unfinished folder") && stderr.contains(".out.partial-"), "{stderr}");
    // Interrupted while writing: the simulation had ended.
    let (_, ended, started, _) = how_far(&stderr).unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert_eq!((ended, started), (200, 200), "{stderr}");
    assert_eq!(entries(&dir), ["evac.toml"], "nothing but the scenario is left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_while_simulating_exits_143_and_writes_nothing() {
    let dir = tmp("term");
    let mut child = start_run(&dir, 200);
    wait_for_handler(&child, 15);
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "the run ended within 100 ms; make the scenario larger");
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert_eq!(entries(&dir), ["evac.toml"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Parses `stopped at simulated time S s, E of M migrations started so far
/// ended, N events` into (S, E, M, N).
fn how_far(stderr: &str) -> Option<(f64, u64, u64, u64)> {
    let line = stderr.lines().find_map(|l| l.strip_prefix("stopped at simulated time "))?;
    let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    // S s E of M migrations started so far ended N events
    Some((words[0].parse().ok()?, words[2].parse().ok()?, words[4].parse().ok()?, words[10].parse().ok()?))
}

#[test]
fn a_time_limit_stops_the_run_says_how_far_it_got_and_writes_nothing() {
    let dir = tmp("limit");
    // 2,000 VMs take tens of seconds in a debug build (the invariant check
    // runs after every event); the limit stops the run well inside it.
    let t0 = Instant::now();
    let child = start_run_with(&dir, 2000, &["--time-limit", "3s"]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(30), "stopped after {:?}", t0.elapsed());
    assert!(stderr.contains("stopped by --time-limit 3.000 s"), "{stderr}");
    let (simulated_s, ended, started, events) = how_far(&stderr).unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert!(events >= memfabric_sim::progress::PUBLISH_EVERY_EVENTS && simulated_s > 0.0, "{stderr}");
    assert!(started > 0 && ended <= started && started <= 2000, "{stderr}");
    assert_eq!(entries(&dir), ["evac.toml"], "nothing written");
    // The same scenario with a generous limit runs to the end and exits 0.
    let dir2 = tmp("limit-ok");
    let out = start_run_with(&dir2, 20, &["--time-limit", "10min", "--no-plots"]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir2.join("out/migrations.parquet").is_file());
    // A malformed limit is refused before anything runs.
    let out = start_run_with(&dir2, 20, &["--time-limit", "soon"]).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&dir2).unwrap();
}
