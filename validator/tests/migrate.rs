//! End-to-end live migrations between two VMM processes on loopback:
//! integrity with several pipelines, and the three faults (link cut,
//! destination killed, corrupted frame) leaving the source guest running.
//! Needs /dev/kvm; skips with a message where it is missing.

mod common;

use std::process::Command;

use common::{column_str, column_u64, migrate, migrate_at, serial, Run};
use memfabric_sim::output::read_parquet;
use memfabric_validator::kvm::kvm_or_skip;
use memfabric_migration::record::Outcome;

fn assert_completed(r: &Run) -> u64 {
    assert!(r.ok, "migration failed:\n{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.manifest["integrity_held"], true, "{}", r.stdout);
    assert_eq!(r.manifest["chunks_differing"], 0);
    assert_eq!(r.manifest["chunks_compared"], 16, "64 MiB = 16 chunks of 1024 pages");
    assert!(r.stdout.contains("integrity held: yes"), "{}", r.stdout);
    assert_eq!(column_str(&r.out, "migrations.parquet", "outcome"), ["completed"]);
    // The guest carried on at the destination from where it paused.
    let at_pause = r.manifest["guest_writes_at_pause"].as_u64().unwrap();
    let after = r.manifest["guest_writes_after_resume"].as_u64().unwrap();
    assert!(at_pause > 0 && after > at_pause, "guest writes {at_pause} at pause, {after} after resume");
    // Rounds add up to the migration's bytes.
    let rounds = column_u64(&r.out, "rounds.parquet", "bytes_on_wire");
    let total = column_u64(&r.out, "migrations.parquet", "bytes_on_wire")[0];
    assert!(rounds.len() >= 2, "at least one pre-copy round and the stop-and-copy");
    let control_frames = total - rounds.iter().sum::<u64>();
    assert!(control_frames < 64 << 10, "everything but a few control frames is in the rounds ({control_frames} bytes left)");
    let round0_pages = column_u64(&r.out, "rounds.parquet", "pages")[0];
    assert_eq!(round0_pages, 16384, "round 0 sends every page");
    total
}

#[test]
fn migrates_with_integrity_across_pipelines() {
    if !kvm_or_skip("migrates_with_integrity_across_pipelines") {
        return;
    }
    let raw = assert_completed(&migrate("none", &["--pipeline", "none"]));
    // Every page raw: at least 64 MiB plus record headers.
    assert!(raw >= (64 << 20) + 16384 * 13, "raw sent {raw} bytes");
    let zero_run = migrate("zero", &["--pipeline", "zero"]);
    let zero = assert_completed(&zero_run);
    // The result folder carries the simulator's scenario for the same case;
    // the simulator replays it, and its bytes land near the real ones.
    let scenario = memfabric_sim::scenario::load(&zero_run.out.join("scenario.toml")).expect("scenario.toml loads");
    let sim = memfabric_sim::run::run(&scenario, None);
    assert_eq!(sim.migrations.len(), 1);
    assert_eq!(sim.migrations[0].outcome, Outcome::Completed);
    let ratio = sim.migrations[0].bytes_on_wire as f64 / zero as f64;
    assert!((0.7..1.4).contains(&ratio), "simulated bytes {} vs real {zero}", sim.migrations[0].bytes_on_wire);
    let best = assert_completed(&migrate("best", &["--pipeline", "zero+dedup-vm+xbzrle+lz4"]));
    // web: 25% zero pages, 5% duplicates, compressible unique pages.
    assert!((zero as f64) < 0.85 * raw as f64, "zero pages save at least 15%: {zero} vs {raw}");
    assert!((best as f64) < 0.7 * zero as f64, "dedup + delta + lz4 save more: {best} vs {zero}");
}

fn assert_aborted_source_running(r: &Run, expect_in_error: &str) {
    assert!(!r.ok, "the migration should have failed:\n{}", r.stdout);
    assert!(r.stderr.contains("migration failed"), "{}", r.stderr);
    let error = r.manifest["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains(expect_in_error), "error {error:?} should mention {expect_in_error:?}");
    assert_eq!(r.manifest["outcome"], "aborted");
    assert_eq!(r.manifest["fault_triggered"], true);
    assert_ne!(r.manifest["integrity_held"], true, "nothing was resumed");
    let dest = std::fs::read_to_string(r.out.join("destination.json")).unwrap();
    assert!(!dest.contains("\"resumed\""), "the destination must not resume: {dest}");
    let (before, after) = (&r.manifest["source_guest_after_abort"][0], &r.manifest["source_guest_after_abort"][1]);
    assert!(after.as_u64().unwrap() > before.as_u64().unwrap(), "the source guest keeps running: {before} -> {after}");
}

#[test]
fn link_cut_aborts_and_the_source_guest_runs_on() {
    if !kvm_or_skip("link_cut_aborts_and_the_source_guest_runs_on") {
        return;
    }
    let r = migrate("cut", &["--fault", "cut-link@8MiB", "--io-timeout", "1s"]);
    assert_aborted_source_running(&r, "timed out");
}

#[test]
fn killed_destination_aborts_and_the_source_guest_runs_on() {
    if !kvm_or_skip("killed_destination_aborts_and_the_source_guest_runs_on") {
        return;
    }
    let r = migrate("kill", &["--fault", "kill-dest@8MiB", "--io-timeout", "2s"]);
    assert_aborted_source_running(&r, "connection");
    assert!(r.manifest["error"].as_str().unwrap().contains("destination"), "{}", r.manifest["error"]);
}

#[test]
fn corrupted_frame_aborts_and_the_source_guest_runs_on() {
    if !kvm_or_skip("corrupted_frame_aborts_and_the_source_guest_runs_on") {
        return;
    }
    let r = migrate("corrupt", &["--fault", "corrupt@8MiB", "--io-timeout", "2s"]);
    assert_aborted_source_running(&r, "checksum");
}

#[test]
fn bad_arguments_fail_before_anything_starts() {
    let o = Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
        .args(["migrate", "--mem", "3MiB", "--out", "/nonexistent/never-written"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("memory") && e.contains("2 MiB"), "{e}");
    let o = Command::new(env!("CARGO_BIN_EXE_memfabric-validator")).args(["migrate", "--workload", "oltp-db"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("Zipf"));
    let o = Command::new(env!("CARGO_BIN_EXE_memfabric-validator")).args(["migrate", "--fault", "melt@1MiB"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("cut-link, kill-dest, kill-source, corrupt"));
}

#[test]
fn non_convergence_with_abort_leaves_the_guest_at_the_source() {
    if !kvm_or_skip("non_convergence_with_abort_leaves_the_guest_at_the_source") {
        return;
    }
    // A 1 µs downtime limit cannot be met while the guest dirties pages
    // without pause (100000 writes/s: it never idles). On a loaded machine
    // the guest's vCPU can be starved for a whole short round, which then
    // ends with nothing dirty and the migration rightly converges: such a
    // run does not test this case and is repeated (at most 3 runs).
    let mut attempt = 0;
    let r = loop {
        attempt += 1;
        let r = migrate_at(
            &format!("nonconv-{attempt}"),
            100_000,
            &["--downtime-limit", "1us", "--max-rounds", "3", "--on-non-convergence", "abort"],
        );
        let source: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r.out.join("source.json")).unwrap()).unwrap();
        // The dirty log is the ground truth: a pre-copy round after which
        // nothing is dirty saw no guest write.
        let starved = source["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|round| round["phase"] == "precopy" && round["dirty_pages"] == 0);
        if !starved || attempt == 3 {
            break r;
        }
        eprintln!("a pre-copy round left nothing dirty (the guest's vCPU starved of CPU): running the case again");
    };
    assert!(!r.ok, "{}", r.stdout);
    assert_eq!(r.manifest["outcome"], "not-converged", "{}", r.stdout);
    let df = read_parquet(&r.out.join("rounds.parquet")).unwrap();
    let rounds: Vec<u32> = df.column("round").unwrap().u32().unwrap().into_no_null_iter().collect();
    assert_eq!(rounds, [0, 1, 2], "stops after max-rounds pre-copy rounds, no stop-and-copy");
    let (before, after) = (&r.manifest["source_guest_after_abort"][0], &r.manifest["source_guest_after_abort"][1]);
    assert!(after.as_u64().unwrap() > before.as_u64().unwrap(), "the guest runs on at the source");
    let dest = std::fs::read_to_string(r.out.join("destination.json")).unwrap();
    assert!(dest.contains("aborted-by-source"), "{dest}");
}

#[test]
fn migrates_across_the_emulated_wan_at_the_links_rate() {
    if !common::kvm_and_wan_or_skip("migrates_across_the_emulated_wan_at_the_links_rate") {
        return;
    }
    let r = migrate("wan", &["--link", "200Mbit/s,5ms", "--pipeline", "zero+lz4"]);
    let bytes = assert_completed(&r);
    assert_eq!(r.manifest["parameters"]["link_delay_ns"], 5_000_000);
    let df = read_parquet(&r.out.join("migrations.parquet")).unwrap();
    let rtt = df.column("rtt_ms").unwrap().f64().unwrap().get(0).unwrap();
    assert_eq!(rtt, 10.0);
    // Round 0 cannot beat the link by more than what the socket buffers hold
    // when the source's round ends (a few MB); TCP over it reaches most of it.
    let pages0 = column_u64(&r.out, "rounds.parquet", "bytes_on_wire")[0] as f64;
    let rounds = read_parquet(&r.out.join("rounds.parquet")).unwrap();
    let t0 = rounds.column("end_s").unwrap().f64().unwrap().get(0).unwrap() - rounds.column("start_s").unwrap().f64().unwrap().get(0).unwrap();
    let rate = pages0 / t0;
    let link = 200e6 / 8.0;
    assert!(rate < 1.15 * link && rate > 0.6 * link, "round 0 at {:.1} MB/s over a {:.1} MB/s link", rate / 1e6, link / 1e6);
    // The whole migration cannot: every byte crossed the link.
    let total_s = df.column("total_time_s").unwrap().f64().unwrap().get(0).unwrap();
    assert!(total_s >= bytes as f64 / link, "{bytes} bytes in {total_s} s over a {link} B/s link");
    // The link forwarded the whole stream (plus TCP/IP headers) and was torn down.
    let fwd = r.manifest["link_stats"]["a_to_b"]["bytes_forwarded"].as_u64().unwrap();
    assert!(fwd as f64 > bytes as f64 && (fwd as f64) < 1.1 * bytes as f64, "forwarded {fwd} for {bytes} stream bytes");
    let leftover = String::from_utf8(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    assert!(!leftover.contains(&format!("mfwan-{}-", std::process::id())), "namespaces left behind: {leftover}");
}

#[test]
fn a_page_that_differs_at_the_destination_is_caught_and_nothing_resumes() {
    if !kvm_or_skip("a_page_that_differs_at_the_destination_is_caught_and_nothing_resumes") {
        return;
    }
    // Page 5000 of 16384, in chunk 4; the destination flips one bit of it
    // just before the check, as a page lost or mis-decoded would differ.
    let r = migrate("destram", &["--fault", "dest-ram@5000"]);
    assert!(!r.ok, "{}", r.stdout);
    let error = r.manifest["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("integrity check failed: 1 of 16 chunks"), "{error}");
    assert!(error.contains("first at page 4096"), "{error}");
    assert_eq!(r.manifest["chunks_differing"], 1);
    assert_eq!(r.manifest["outcome"], "aborted", "the destination said no: the source keeps the guest");
    let (before, after) = (&r.manifest["source_guest_after_abort"][0], &r.manifest["source_guest_after_abort"][1]);
    assert!(after.as_u64().unwrap() > before.as_u64().unwrap(), "the source resumed its paused guest: {before} -> {after}");
    let dest = std::fs::read_to_string(r.out.join("destination.json")).unwrap();
    assert!(!dest.contains("\"resumed\""), "{dest}");
}

#[test]
fn sigterm_stops_both_vmms_and_tears_the_link_down() {
    if !common::kvm_and_wan_or_skip("sigterm_stops_both_vmms_and_tears_the_link_down") {
        return;
    }
    let _serial = serial();
    let out = memfabric_testkit::scratch::owned_path("validator-test", "sigterm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
        .args(["migrate", "--mem", "64MiB", "--link", "20Mbit/s,10ms", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("mfwan-{}-", child.id());
    let netns = || String::from_utf8(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    let t = std::time::Instant::now();
    while !netns().contains(&prefix) && t.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(netns().contains(&prefix), "the link came up");
    // Let the migration start (64 MiB at 20 Mbit/s takes ~25 s), then stop it.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pid = child.id().to_string();
    let vmms = String::from_utf8(Command::new("pgrep").args(["-P", &pid]).output().unwrap().stdout).unwrap();
    assert_eq!(vmms.lines().count(), 2, "source and destination VMMs run: {vmms:?}");
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!netns().contains(&prefix), "namespaces removed: {}", netns());
    for vmm in vmms.lines() {
        assert!(!std::path::Path::new(&format!("/proc/{vmm}")).exists(), "VMM {vmm} still running");
    }
    assert!(!out.join("manifest.json").exists(), "nothing written for an interrupted migration");
}

#[test]
fn migrates_ram_on_both_sides_of_the_split() {
    if !kvm_or_skip("migrates_ram_on_both_sides_of_the_split") {
        return;
    }
    // The second memory slot (RAM above 4 GiB in guest-physical space) with a
    // small guest: the split at 16 MiB puts 48 of its 64 MiB, and part of
    // its working set, above 4 GiB.
    let r = migrate("split", &["--ram-split", "16MiB", "--pipeline", "zero+xbzrle+lz4"]);
    assert_completed(&r);
}

#[test]
fn without_the_integrity_check_the_guest_still_carries_on() {
    if !kvm_or_skip("without_the_integrity_check_the_guest_still_carries_on") {
        return;
    }
    let r = migrate("nocheck", &["--no-integrity-check"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("integrity held: not checked"), "{}", r.stdout);
    assert_eq!(r.manifest["integrity_checked"], false);
    assert_eq!(r.manifest["chunks_compared"], 0);
    assert!(r.manifest["source_verify_ms"].is_null(), "no hashing at the pause");
    let at_pause = r.manifest["guest_writes_at_pause"].as_u64().unwrap();
    assert!(r.manifest["guest_writes_after_resume"].as_u64().unwrap() > at_pause);
}

#[test]
fn ctrl_c_after_the_source_finished_writes_nothing_and_says_interrupted() {
    if !kvm_or_skip("ctrl_c_after_the_source_finished_writes_nothing_and_says_interrupted") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let _serial = serial();
    let out = memfabric_testkit::scratch::owned_path("validator-test", "late-int");
    // Its own process group, as a shell gives a foreground job: Ctrl-C is
    // SIGINT to the whole group, the two VMMs included.
    let child = Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
        .args(["migrate", "--mem", "64MiB", "--warmup", "300ms", "--watch", "5s", "--out"])
        .arg(&out)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id();
    // The source VMM writes its report when the migration is over; the
    // destination then watches the guest for 5 s: interrupt in between.
    let work_prefix = format!("memfabric-validator-{pgid}-");
    let source_done = || {
        std::fs::read_dir(std::env::temp_dir()).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(&work_prefix) && e.path().join("source.json").exists()
        })
    };
    let t = std::time::Instant::now();
    while !source_done() && t.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(source_done(), "the source finished its migration");
    Command::new("kill").args(["-INT", "--", &format!("-{pgid}")]).status().unwrap();
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success(), "{stdout}");
    assert!(stderr.contains("interrupted") && stderr.contains("nothing written"), "{stderr}");
    assert!(!stdout.contains("outcome:"), "stdout must not report an outcome: {stdout}");
    assert!(!out.exists(), "nothing written for an interrupted migration");
    let left = Command::new("pgrep").args(["-g", &pgid.to_string()]).output().unwrap();
    assert!(left.stdout.is_empty(), "VMMs left: {}", String::from_utf8_lossy(&left.stdout));
}
