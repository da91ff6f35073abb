//! The plots say what they draw: legends for every colour and mark, the
//! downtime panel, outages and capacity changes in link plots, CJK names in a
//! font that has them, a notice instead of empty axes, and the distribution
//! plots. Checked on the SVG text (the PNGs draw the same figures).

mod common;

use common::scenario_path;
use memfabric_sim::{output, run, scenario};
use std::path::{Path, PathBuf};

/// Runs scenario text and writes its results with plots into a fresh folder.
fn results_of(text: &str, tag: &str) -> PathBuf {
    let sc = scenario::parse(text, &format!("{tag}.toml")).unwrap_or_else(|e| panic!("{e}"));
    let outs = run::run_all(&sc, None);
    let dir = std::env::temp_dir().join(format!("memfabric-plots-{tag}-{}", std::process::id()));
    output::write_results(&outs, &dir, true, false).unwrap();
    dir
}

fn svg(dir: &Path, stem: &str) -> String {
    std::fs::read_to_string(dir.join("plots").join(format!("{stem}.svg"))).unwrap_or_else(|e| panic!("{stem}.svg: {e}"))
}

fn quickstart() -> String {
    std::fs::read_to_string(scenario_path("quickstart")).unwrap()
}

#[test]
fn timeline_explains_rounds_and_shows_downtime_on_its_own_axis() {
    let dir = results_of(&quickstart(), "quick");
    let t = svg(&dir, "timeline");
    for text in [
        "alternates round by round",
        "VM paused: stop-and-copy",
        "marks each pause",
        "post-copy push",
        "downtime (ms, log scale)",
        // The cold migration's pause, on the downtime panel.
        " s\n</text>",
        "simulated time (s)",
    ] {
        assert!(t.contains(text), "timeline.svg lacks {text:?}");
    }
    let l = svg(&dir, "link_throughput");
    assert!(l.contains("capacity of the direction") && l.contains("throughput, par-fra"), "link legend");
    // No outage or capacity change in the quickstart: no legend entry for them.
    assert!(!l.contains("outage") && !l.contains("capacity change"));
    // Five migrations: no distribution plot.
    assert!(!dir.join("plots/downtime_distribution.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn link_plot_marks_outages_and_capacity_changes() {
    let text = std::fs::read_to_string(scenario_path("three-site")).unwrap();
    let dir = results_of(&text, "three");
    let l = svg(&dir, "link_throughput");
    assert!(l.contains("outage (capacity 0)"), "three-site has an outage on ber-waw");
    assert!(l.contains("capacity change"), "three-site drops ber-waw to 2 Gbit/s");
    assert!(l.contains("ber-waw (berlin → warsaw)"), "a panel per direction");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_without_migrations_says_so() {
    let q = quickstart();
    let text = &q[..q.find("[[migrations]]").expect("quickstart has migrations")];
    let dir = results_of(text, "empty");
    for stem in ["timeline", "link_throughput"] {
        let s = svg(&dir, stem);
        assert!(s.contains("no migrations in this run"), "{stem}");
        assert!(!s.contains("simulated time (s)"), "{stem} draws no axes");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cjk_names_use_the_cjk_font() {
    let text = quickstart().replace("\"idle\"", "\"待機\"").replace("\"quickstart\"", "\"東京\"");
    let dir = results_of(&text, "cjk");
    let t = svg(&dir, "timeline");
    assert!(t.contains("待機") && t.contains("東京"), "names kept");
    assert!(t.contains("font-family=\"WenQuanYi Micro Hei") && !t.contains("font-family=\"sans-serif\""), "one CJK font");
    let png = std::fs::read(dir.join("plots/timeline.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn comparisons_draw_cdfs_per_strategy_and_many_migrations_a_distribution() {
    let text = quickstart().replace("seed = 42", "seed = 42\ncompare_strategies = [\"zero\", \"zero+lz4\"]");
    let dir = results_of(&text, "cmp");
    let c = svg(&dir, "strategy_cdf");
    for text in ["total migration time (s)", "downtime (ms)", "zero+lz4", "share of completed migrations"] {
        assert!(c.contains(text), "strategy_cdf.svg lacks {text:?}");
    }
    assert!(svg(&dir, "strategy_comparison").contains("worst downtime (ms)"));
    let _ = std::fs::remove_dir_all(&dir);

    let text = std::fs::read_to_string(scenario_path("evacuation-1g-40ms")).unwrap();
    let dir = results_of(&text, "evac");
    let d = svg(&dir, "downtime_distribution");
    assert!(d.contains("median: ") && d.contains("99th percentile: "), "percentiles in the legend");
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("plots/downtime_distribution.png"), "listed in the manifest");
    let _ = std::fs::remove_dir_all(&dir);
}
