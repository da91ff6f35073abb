//! Post-copy and hybrid migration (`migrate --mechanism post-copy|hybrid`,
//! docs/validator.md "Post-copy"): a dirtying 64 MiB guest resumes at the
//! destination on pages placed by userfaultfd, demand faults are served
//! and counted, every page is placed once and equals the source's at the
//! pause, the guest carries on, and the source never resumes. A cut link,
//! a killed destination or a killed source during post-copy loses the
//! guest (`lost`, the simulator's outcome), and no process is left. The
//! simulator replays the run from its scenario.toml. Needs /dev/kvm;
//! skips with a message without.

mod common;

use common::{column_str, column_u64, migrate_at, Run};
use memfabric_validator::kvm::kvm_or_skip;

fn report(r: &Run, name: &str) -> serde_json::Value {
    std::fs::read_to_string(r.out.join(name)).map(|t| serde_json::from_str(&t).unwrap()).unwrap_or(serde_json::Value::Null)
}

fn postcopy_run(name: &str, mechanism: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--mechanism", mechanism, "--pipeline", "zero+lz4", "--io-timeout", "2s"];
    args.extend_from_slice(extra);
    migrate_at(name, 5000, &args)
}

/// Checks a completed post-copy or hybrid run; returns what is wrong.
fn check_completed(mechanism: &str, r: &Run) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    check(r.ok, format!("exit status ok={}", r.ok));
    check(r.manifest["outcome"] == "completed", format!("outcome {}: {}", r.manifest["outcome"], r.manifest["error"]));
    check(r.manifest["integrity_held"] == true, format!("integrity_held {}", r.manifest["integrity_held"]));
    check(r.manifest["chunks_compared"].as_u64() > Some(0), "no chunk compared".into());
    check(r.manifest["chunks_differing"] == 0, format!("chunks differing {}", r.manifest["chunks_differing"]));
    let dest = report(r, "destination.json");
    let source = report(r, "source.json");
    let pc = &dest["postcopy"];
    let pending = pc["pending_pages"].as_u64().unwrap_or(0);
    check(pending > 0, format!("no page pending: {pc}"));
    // Every pending page placed exactly once: a second arrival fails the
    // run at the destination, and no placement found its page there.
    check(pc["pages_placed"].as_u64() == Some(pending), format!("placed {} of {pending}", pc["pages_placed"]));
    check(pc["pages_already_there"] == 0, format!("EEXIST placements {}", pc["pages_already_there"]));
    check(
        source["postcopy"]["pages_pushed"].as_u64().zip(source["postcopy"]["pages_requested"].as_u64()).map(|(a, b)| a + b) == Some(pending),
        format!("source sent {} + {} of {pending}", source["postcopy"]["pages_pushed"], source["postcopy"]["pages_requested"]),
    );
    let faults = pc["faults"].as_u64().unwrap_or(0);
    check(faults > 0, format!("no demand fault: {pc}"));
    check(pc["fault_latency_us"]["max"].as_f64() > Some(0.0), format!("fault latency {}", pc["fault_latency_us"]));
    // The guest carried on at the destination; the source never resumed.
    check(dest["guest_verify_errors_after"] == 0, format!("destination guest verify errors {}", dest["guest_verify_errors_after"]));
    check(dest["guest_failure"].is_null(), format!("guest failure {}", dest["guest_failure"]));
    check(
        dest["guest_writes_after"].as_u64() > dest["guest_writes_at_pause"].as_u64(),
        format!("guest writes {} -> {}", dest["guest_writes_at_pause"], dest["guest_writes_after"]),
    );
    check(source["guest_after_abort"].is_null(), "the source resumed its guest".into());
    // The simulator's columns and phases.
    check(column_str(&r.out, "migrations.parquet", "mechanism") == [mechanism], "migrations.mechanism".into());
    check(column_u64(&r.out, "migrations.parquet", "postcopy_faults") == [faults], "migrations.postcopy_faults".into());
    check(column_u64(&r.out, "migrations.parquet", "bytes_postcopy")[0] > 0, "migrations.bytes_postcopy is 0".into());
    let phases = column_str(&r.out, "rounds.parquet", "phase");
    let expected: &[&str] = if mechanism == "hybrid" { &["precopy", "postcopy-switch", "postcopy-push"] } else { &["postcopy-switch", "postcopy-push"] };
    check(phases == expected, format!("rounds phases {phases:?}"));
    check(r.stdout.contains("demand faults"), "stdout has no post-copy line".into());
    check(r.leftover.trim().is_empty(), format!("processes left: {}", r.leftover.trim()));
    wrong
}

#[test]
fn post_copy_and_hybrid_complete_with_integrity_and_counted_faults() {
    if !kvm_or_skip("post_copy_and_hybrid_complete_with_integrity_and_counted_faults") {
        return;
    }
    for mechanism in ["post-copy", "hybrid"] {
        // A paced guest idles between its writes, and a hybrid's few hundred
        // pending pages can all arrive while it idles: the hybrid guest is
        // CPU-bound, so that it touches its (hot, pending) pages at once.
        // Its pipeline has every stage: the pages round 0 sent are re-sent
        // as deltas, decoded from the destination decoder's cache.
        let r = if mechanism == "hybrid" {
            common::migrate_with(
                "complete-hybrid",
                &["--mem", "64MiB", "--workload", "web", "--cpu-bound"],
                &["--mechanism", mechanism, "--pipeline", "zero+dedup-vm+xbzrle+lz4", "--io-timeout", "2s"],
            )
        } else {
            postcopy_run(&format!("complete-{mechanism}"), mechanism, &[])
        };
        let mut wrong = check_completed(mechanism, &r);
        if mechanism == "hybrid" && column_u64(&r.out, "migrations.parquet", "pages_delta")[0] == 0 {
            wrong.push("no page went as a delta".into());
        }
        assert!(wrong.is_empty(), "{mechanism}: {}\n{}\n{}", wrong.join("; "), r.stdout, r.stderr);
        let pc = &report(&r, "destination.json")["postcopy"];
        eprintln!(
            "{mechanism}: {} pages pending, {} faults, latency median {} µs max {} µs, downtime {} ms",
            pc["pending_pages"], pc["faults"], pc["fault_latency_us"]["median"], pc["fault_latency_us"]["max"],
            column_f64(&r, "downtime_ms")
        );
        let _ = std::fs::remove_dir_all(&r.out);
    }
}

fn column_f64(r: &Run, col: &str) -> f64 {
    let df = memfabric_sim::output::read_parquet(&r.out.join("migrations.parquet")).unwrap();
    df.column(col).unwrap().f64().unwrap().get(0).unwrap()
}

#[test]
fn the_simulator_replays_a_post_copy_run() {
    if !kvm_or_skip("the_simulator_replays_a_post_copy_run") {
        return;
    }
    let r = postcopy_run("replay", "post-copy", &[]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let scenario = memfabric_sim::scenario::load(&r.out.join("scenario.toml")).expect("scenario.toml loads");
    let sim = memfabric_sim::run::run(&scenario, None);
    assert_eq!(sim.migrations.len(), 1);
    let s = &sim.migrations[0];
    assert_eq!(s.mechanism.as_str(), "post-copy", "the scenario carries the mechanism");
    let live_bytes = column_u64(&r.out, "migrations.parquet", "bytes_on_wire")[0] as f64;
    let live_downtime_ms = column_f64(&r, "downtime_ms");
    eprintln!(
        "replay: bytes {} (live {live_bytes}), downtime {:.2} ms (live {live_downtime_ms:.2} ms), faults {} (live {})",
        s.bytes_on_wire,
        s.downtime_ms,
        s.postcopy_faults,
        column_u64(&r.out, "migrations.parquet", "postcopy_faults")[0]
    );
    // Loosely: the same full copy after reduction (the simulator's lz4
    // factor is a profile's, not this guest's), and a pause of a few KiB of
    // state on both sides.
    let ratio = s.bytes_on_wire as f64 / live_bytes;
    assert!((0.5..2.0).contains(&ratio), "bytes: simulated {} vs live {live_bytes}", s.bytes_on_wire);
    assert!(s.downtime_ms < 50.0 && live_downtime_ms < 50.0, "downtime: simulated {} ms vs live {live_downtime_ms} ms", s.downtime_ms);
    let _ = std::fs::remove_dir_all(&r.out);
}

/// Pre-copy that does not converge falls back to post-copy for what is
/// still dirty (`--on-non-convergence post-copy`, as QEMU and the simulator
/// do), with integrity; the simulator replays the fallback.
#[test]
fn pre_copy_falls_back_to_post_copy() {
    if !kvm_or_skip("pre_copy_falls_back_to_post_copy") {
        return;
    }
    let r = migrate_at(
        "fallback",
        20_000,
        &["--pipeline", "zero+xbzrle+lz4", "--downtime-limit", "1us", "--max-rounds", "2", "--on-non-convergence", "post-copy"],
    );
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.manifest["integrity_held"], true);
    assert_eq!(column_str(&r.out, "rounds.parquet", "phase"), ["precopy", "precopy", "postcopy-switch", "postcopy-push"]);
    assert_eq!(column_str(&r.out, "migrations.parquet", "mechanism"), ["pre-copy"]);
    let source = report(&r, "source.json");
    assert_eq!(source["converged"], false);
    let pc = &report(&r, "destination.json")["postcopy"];
    assert!(pc["pending_pages"].as_u64() > Some(0) && pc["pages_placed"] == pc["pending_pages"], "{pc}");
    let scenario = memfabric_sim::scenario::load(&r.out.join("scenario.toml")).expect("scenario.toml loads");
    let sim = memfabric_sim::run::run(&scenario, None);
    assert!(sim.migrations[0].bytes_postcopy > 0, "the simulator falls back to post-copy too: {:?}", sim.migrations[0]);
    let _ = std::fs::remove_dir_all(&r.out);
}

/// A fault during post-copy: the guest is lost, said so everywhere, the
/// source never resumes, and no process is left.
#[test]
fn a_fault_during_post_copy_loses_the_guest() {
    if !kvm_or_skip("a_fault_during_post_copy_loses_the_guest") {
        return;
    }
    let mut failures = Vec::new();
    for kind in ["cut-link", "kill-dest", "kill-source"] {
        let t = std::time::Instant::now();
        let fault = format!("{kind}@postcopy");
        let r = postcopy_run(&format!("lost-{kind}"), "post-copy", &["--fault", &fault, "--watch", "1s"]);
        let mut wrong = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                wrong.push(what);
            }
        };
        check(!r.ok, "the run succeeded".into());
        check(r.manifest["fault_triggered"] == true, format!("fault_triggered {}", r.manifest["fault_triggered"]));
        check(r.manifest["outcome"] == "lost", format!("outcome {}: {}", r.manifest["outcome"], r.manifest["error"]));
        if r.out.join("migrations.parquet").exists() {
            check(column_str(&r.out, "migrations.parquet", "outcome") == ["lost"], "migrations.outcome".into());
        }
        let source = report(&r, "source.json");
        let dest = report(&r, "destination.json");
        // The source never resumes after the switch.
        check(source["guest_after_abort"].is_null(), format!("the source resumed: {}", source["guest_after_abort"]));
        check(source["arbiter_verdict"] != "resume", "the orchestrator had the source resume".into());
        match kind {
            "kill-source" => check(dest["outcome"] == "lost", format!("destination outcome {}", dest["outcome"])),
            "cut-link" => {
                check(dest["outcome"] == "lost", format!("destination outcome {}", dest["outcome"]));
                check(source["outcome"] == "lost", format!("source outcome {}", source["outcome"]));
            }
            _ => check(source["outcome"] == "lost", format!("source outcome {}", source["outcome"])),
        }
        eprintln!("| {fault} | {} | {:.1} s |", r.manifest["outcome"], t.elapsed().as_secs_f64());
        end_cell(&r, &fault, wrong, &mut failures);
    }
    assert!(failures.is_empty(), "{} cells failed:\n{}", failures.len(), failures.join("\n"));
}

/// A fault at the post-copy switch, before the destination resumed the
/// guest: the source resumes it (the simulator's link failure in a
/// post-copy switch), the destination resumes nothing.
#[test]
fn a_fault_at_the_post_copy_switch_leaves_the_guest_at_the_source() {
    if !kvm_or_skip("a_fault_at_the_post_copy_switch_leaves_the_guest_at_the_source") {
        return;
    }
    let mut failures = Vec::new();
    for kind in ["cut-link", "kill-dest"] {
        let fault = format!("{kind}@switchover");
        let r = postcopy_run(&format!("switch-{kind}"), "post-copy", &["--fault", &fault, "--watch", "1s"]);
        let source = report(&r, "source.json");
        let dest = report(&r, "destination.json");
        let mut wrong = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                wrong.push(what);
            }
        };
        check(!r.ok, "the run succeeded".into());
        check(r.manifest["fault_triggered"] == true, format!("fault_triggered {}", r.manifest["fault_triggered"]));
        check(r.manifest["outcome"] == "aborted", format!("outcome {}: {}", r.manifest["outcome"], r.manifest["error"]));
        let (before, after) = (source["guest_after_abort"]["writes_before"].as_u64(), source["guest_after_abort"]["writes_after"].as_u64());
        check(matches!((before, after), (Some(b), Some(a)) if a > b), format!("the source guest did not run on: {}", source["guest_after_abort"]));
        check(source["guest_after_abort"]["verify_errors"] == 0, format!("source guest {}", source["guest_after_abort"]));
        check(dest["resume_ns"].is_null(), format!("the destination resumed at {}", dest["resume_ns"]));
        end_cell(&r, &fault, wrong, &mut failures);
    }
    assert!(failures.is_empty(), "{} cells failed:\n{}", failures.len(), failures.join("\n"));
}

/// Ends one fault cell: no process of the run may be left; the cell's
/// failed checks (`wrong`) join `failures` with the run's output, so that
/// every cell runs before the test fails; the run's folder goes.
fn end_cell(r: &Run, fault: &str, mut wrong: Vec<String>, failures: &mut Vec<String>) {
    if !r.leftover.trim().is_empty() {
        wrong.push(format!("processes left: {}", r.leftover.trim()));
    }
    if !wrong.is_empty() {
        failures.push(format!("{fault}: {}\n{}\n{}", wrong.join("; "), r.stdout, r.stderr));
    }
    let _ = std::fs::remove_dir_all(&r.out);
}

/// The end-of-post-copy integrity check catches a page that differs at
/// the destination (flipped as it arrived, before it was hashed and placed).
#[test]
fn a_page_that_differs_after_post_copy_is_caught() {
    if !kvm_or_skip("a_page_that_differs_after_post_copy_is_caught") {
        return;
    }
    let r = postcopy_run("integrity", "post-copy", &["--fault", "dest-ram@5000"]);
    assert!(!r.ok, "the run must fail:\n{}", r.stdout);
    assert_eq!(r.manifest["fault_triggered"], true, "{}", r.stderr);
    assert_eq!(r.manifest["outcome"], "failed", "{}", r.manifest["error"]);
    assert_eq!(r.manifest["integrity_held"], false);
    assert_eq!(r.manifest["chunks_differing"], 1, "one page flipped: one chunk differs");
    let dest = report(&r, "destination.json");
    assert_eq!(dest["first_differing_page"], 5000 / 1024 * 1024);
    assert!(r.stdout.contains("integrity held: NO"), "{}", r.stdout);
    let _ = std::fs::remove_dir_all(&r.out);
}

#[test]
fn post_copy_refuses_what_it_does_not_support() {
    for (extra, expect) in [
        (&["--auto-converge"][..], "--auto-converge with --mechanism post-copy"),
        (&["--guests", "2"][..], "a gang migrates with pre-copy only"),
        (&["--streams", "2"][..], "post-copy's requests and push run on one connection"),
        (&["--tls", "/nonexistent-certs"][..], "--tls"),
    ] {
        let out = memfabric_testkit::scratch::owned_path("postcopy", "refused");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
            .args(["migrate", "--mem", "64MiB", "--mechanism", "post-copy"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(expect), "{extra:?}: {stderr}");
        assert!(!out.exists(), "{extra:?}: nothing is written");
    }
}
