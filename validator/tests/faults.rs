//! Faults in every phase of a live migration (docs/validator.md, "Faults"):
//! link cut, destination killed, source killed and a corrupted byte, each at
//! round 0, a later round, the stop-and-copy, the switchover message and
//! after the destination resumed. Per cell: at most one side runs the guest,
//! and exactly one unless the host that held it was killed; the other side
//! holds nothing it will resume; no page is lost; no process is left; the
//! result folder carries the outcome the docs promise. And a fault that
//! never fires fails the run. Needs /dev/kvm; skips with a message without.

mod common;

use common::{column_str, migrate_at, Run};
use memfabric_validator::kvm::kvm_or_skip;

/// Who runs the guest after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    Source,
    Destination,
    /// The host holding the guest was killed: nobody can run it.
    Nobody,
}

/// The documented outcome of one cell: (migrations.outcome, who runs the guest).
fn expected(kind: &str, phase: &str) -> (&'static str, Runner) {
    let resumed = phase == "resumed";
    match (kind, resumed) {
        // The destination took over; only its confirmation was lost, and
        // the orchestrator told the source so.
        ("cut-link" | "corrupt", true) => ("completed", Runner::Destination),
        // The destination host died after it took the guest over.
        ("kill-dest", true) => ("failed", Runner::Nobody),
        ("kill-source", true) => ("source-lost", Runner::Destination),
        // The source host died before the destination had the guest.
        ("kill-source", false) => ("source-lost", Runner::Nobody),
        _ => ("aborted", Runner::Source),
    }
}

fn source_runs(r: &Run) -> bool {
    let (before, after) = (&r.manifest["source_guest_after_abort"][0], &r.manifest["source_guest_after_abort"][1]);
    matches!((before.as_u64(), after.as_u64()), (Some(b), Some(a)) if a > b)
}

fn report(r: &Run, name: &str) -> serde_json::Value {
    std::fs::read_to_string(r.out.join(name)).map(|t| serde_json::from_str(&t).unwrap()).unwrap_or(serde_json::Value::Null)
}

/// Checks one cell; returns what is wrong.
fn check_cell(kind: &str, phase: &str, r: &Run) -> Vec<String> {
    let (outcome, runner) = expected(kind, phase);
    if !r.out.join("migrations.parquet").exists() {
        return vec![format!("no result folder written (exit ok={})", r.ok)];
    }
    let mut wrong = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    check(r.manifest["fault_triggered"] == true, format!("fault_triggered is {}", r.manifest["fault_triggered"]));
    check(r.manifest["outcome"] == outcome, format!("outcome {} (expected {outcome}): {}", r.manifest["outcome"], r.manifest["error"]));
    let table = column_str(&r.out, "migrations.parquet", "outcome");
    check(table == [outcome], format!("migrations.outcome {table:?}"));
    check(r.ok == (outcome == "completed"), format!("exit status ok={} for outcome {outcome}", r.ok));
    let dest = report(r, "destination.json");
    let source = report(r, "source.json");
    let dest_runs = dest["outcome"] == "resumed" && r.manifest["integrity_held"] == true;
    check(
        source_runs(r) == (runner == Runner::Source),
        format!("source runs the guest: {} ({})", source_runs(r), source["guest_after_abort"]),
    );
    check(dest_runs == (runner == Runner::Destination), format!("destination runs the guest: {dest_runs} ({})", dest["outcome"]));
    // The other side holds nothing it will resume.
    if runner != Runner::Destination {
        check(dest["resume_ns"].is_null(), format!("the destination resumed at {}", dest["resume_ns"]));
    }
    if runner == Runner::Destination {
        check(source["guest_after_abort"].is_null(), "the source resumed its copy too".into());
    }
    // No page lost: where the guest runs, every page checks.
    if runner == Runner::Source {
        let errors = source["guest_after_abort"]["verify_errors"].as_u64();
        check(errors == Some(0), format!("source guest verify errors {errors:?}; source report {source}"));
    }
    if runner == Runner::Destination {
        check(r.manifest["chunks_differing"] == 0, format!("chunks differing {}", r.manifest["chunks_differing"]));
        check(dest["guest_verify_errors_after"] == 0, format!("destination guest verify errors {}", dest["guest_verify_errors_after"]));
    }
    check(r.leftover.trim().is_empty(), format!("processes left: {}", r.leftover.trim()));
    wrong
}

const KINDS: [&str; 4] = ["cut-link", "kill-dest", "kill-source", "corrupt"];
const PHASES: [&str; 5] = ["round0", "round2", "stop-and-copy", "switchover", "resumed"];

/// Rounds that never converge (a 1 µs limit); short timeouts. The `round2`
/// cells take three rounds so that a later round exists. The others stop
/// after round 0: its writes (hundreds of milliseconds of them) are what the
/// stop-and-copy sends, whereas after three rounds the last one can be so
/// short on a quiet machine (about 1 ms) that the guest dirtied no page in
/// it, and a stop-and-copy without pages has no frame for the fault.
fn run_cell(kind: &str, phase: &str) -> Run {
    let fault = format!("{kind}@{phase}");
    let max_rounds = if phase == "round2" { "3" } else { "1" };
    migrate_at(
        &format!("matrix-{kind}-{phase}"),
        20_000,
        &["--fault", &fault, "--downtime-limit", "1us", "--max-rounds", max_rounds, "--io-timeout", "1s", "--warmup", "100ms", "--watch", "1s"],
    )
}

#[test]
fn every_fault_in_every_phase_leaves_the_guest_on_one_side() {
    if !kvm_or_skip("every_fault_in_every_phase_leaves_the_guest_on_one_side") {
        return;
    }
    let t = std::time::Instant::now();
    let mut failures = Vec::new();
    eprintln!("| fault | phase | outcome | guest runs at | seconds |");
    for kind in KINDS {
        for phase in PHASES {
            let t_cell = std::time::Instant::now();
            let r = run_cell(kind, phase);
            let (outcome, runner) = expected(kind, phase);
            let wrong = check_cell(kind, phase, &r);
            eprintln!("| {kind} | {phase} | {} | {runner:?} | {:.1} |", r.manifest["outcome"], t_cell.elapsed().as_secs_f64());
            if !wrong.is_empty() {
                failures.push(format!("{kind}@{phase} (expected {outcome}, {runner:?}): {}\n{}", wrong.join("; "), r.stderr));
            }
        }
    }
    eprintln!("matrix: {} cells in {:.1} s", KINDS.len() * PHASES.len(), t.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{} cells failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_fault_that_never_fires_fails_the_run() {
    if !kvm_or_skip("a_fault_that_never_fires_fails_the_run") {
        return;
    }
    // Past the end of the stream, and a round that never comes.
    for fault in ["corrupt@1TiB", "cut-link@round9"] {
        let r = migrate_at(&format!("never-{fault}"), 3000, &["--fault", fault, "--max-rounds", "3"]);
        assert!(!r.ok, "{fault}: the run must fail:\n{}", r.stdout);
        assert_eq!(r.manifest["fault_triggered"], false, "{fault}");
        assert_eq!(r.manifest["outcome"], "failed", "{fault}");
        let error = r.manifest["error"].as_str().unwrap_or_default();
        assert!(error.contains("never injected"), "{fault}: {error}");
        assert!(r.stdout.contains("outcome: failed"), "{fault}: stdout agrees with the folder: {}", r.stdout);
    }
}
