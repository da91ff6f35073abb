//! Golden summaries: every committed scenario's summary table must match
//! `scenarios/expected/<name>.summary.txt`. After a deliberate model change,
//! regenerate them with `MEMFABRIC_BLESS=1 cargo test -p memfabric-sim --test golden`
//! and review the diff.

mod common;
use common::*;
use memfabric_sim::{output, scenario};

fn check(name: &str) {
    let sc = scenario::load(&scenario_path(name)).unwrap_or_else(|e| panic!("{e}"));
    let got = output::summary_all(&memfabric_sim::run::run_all(&sc, None));
    let wide: Vec<&str> = got.lines().filter(|l| l.chars().count() > output::SUMMARY_WIDTH).collect();
    assert!(wide.is_empty(), "summary of {name} has lines over {} columns: {wide:#?}", output::SUMMARY_WIDTH);
    let path = scenario_path(name).parent().unwrap().join("expected").join(format!("{name}.summary.txt"));
    if std::env::var_os("MEMFABRIC_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with MEMFABRIC_BLESS=1 to create it", path.display()));
    assert_eq!(
        got, want,
        "summary of {name} changed.\nReproduce: cargo run -p memfabric-sim -- run scenarios/{name}.toml\n--- got ---\n{got}\n--- expected ---\n{want}"
    );
}

#[test]
fn quickstart() {
    check("quickstart");
}

#[test]
fn evacuation_1g_40ms() {
    check("evacuation-1g-40ms");
}

#[test]
fn three_site() {
    check("three-site");
}

#[test]
fn strategy_comparison() {
    check("strategy-comparison");
}

#[test]
fn trace_replay() {
    check("trace-replay");
}

#[test]
fn heterogeneous() {
    check("heterogeneous");
}

#[test]
fn host_failure() {
    check("host-failure");
}

#[test]
fn every_committed_scenario_has_a_golden_summary() {
    let dir = scenario_path("quickstart").parent().unwrap().to_path_buf();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        assert!(dir.join("expected").join(format!("{name}.summary.txt")).exists(), "scenarios/{name}.toml has no golden summary");
        check(&name);
    }
}
