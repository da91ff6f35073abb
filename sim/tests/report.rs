//! report.html: `run`, `sweep` and `plan` write it; `memfabric report DIR`
//! writes it for any results folder; it is one file with inline SVG plots,
//! the tables, the manifest and the study/scenario texts; headless Chromium
//! renders it (non-blank, the plots' colours on screen).

#[path = "common/browser.rs"]
mod browser;
#[path = "common/study.rs"]
mod study_common;

use std::path::Path;
use study_common::*;

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{name}.toml")).display().to_string()
}

/// A sweep with two numeric axes and two strategies (so every plot kind), into `dir/sweep`.
fn sweep_with_plots(dir: &Path) -> std::path::PathBuf {
    let study = write_study(
        dir,
        &evacuation(),
        "[7]",
        "[axes]\nlinks.lyon-madrid.bandwidth = [\"500Mbit/s\", \"1Gbit/s\", \"2Gbit/s\"]\nevacuations.drain-lyon.max_concurrent = [2, 4]\ndefaults.strategy = [\"none\", \"zero+lz4\"]\n",
    );
    let sweep = dir.join("sweep");
    memfabric_ok(&["sweep", study.to_str().unwrap(), "--out", sweep.to_str().unwrap()]);
    sweep
}

/// Checks what every report holds and returns its text.
#[track_caller]
fn check_report(dir: &Path, title: &str, svgs_at_least: usize) -> String {
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains(&format!("<title>{title}</title>")), "title {title:?} missing");
    assert!(html.matches("<svg").count() >= svgs_at_least, "fewer than {svgs_at_least} inline plots");
    assert!(html.contains("<h2>Manifest</h2>"));
    // Self-contained: no external resource, no script.
    for bad in ["src=\"http", "href=\"http", "<script", "<link"] {
        assert!(!html.contains(bad), "{bad} in the report");
    }
    html
}

#[test]
fn run_sweep_plan_and_report_write_one_file_each() {
    let dir = scratch("report-kinds");
    // A plain run and a strategy comparison.
    let run = dir.join("run");
    memfabric_ok(&["run", &scenario("quickstart"), "--out", run.to_str().unwrap()]);
    let html = check_report(&run, "memfabric run quickstart", 1);
    assert!(html.contains("<h2>Summary</h2>"));
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["files"].as_array().unwrap().iter().any(|f| f == "report.html"));
    let cmp = dir.join("cmp");
    memfabric_ok(&["run", &scenario("strategy-comparison"), "--out", cmp.to_str().unwrap(), "--no-plots"]);
    let html = check_report(&cmp, "memfabric comparison strategy-comparison", 0);
    assert!(html.matches("<tr><td class=\"l\">").count() >= 2, "one summary row per strategy");
    // A sweep and a plan.
    let sweep = sweep_with_plots(&dir);
    let html = check_report(&sweep, "memfabric sweep test", 3);
    assert!(html.contains("id=\"plot-heatmap-makespan_s\"") && html.contains("id=\"plot-lines-makespan_s\""));
    assert!(html.contains("<h2>Study (study.toml)</h2>") && html.contains("<h2>Scenario (scenario.toml)</h2>"));
    assert!(html.contains("zero+lz4") && html.contains("1Gbit/s"), "points table with axis values");
    let plan_study = dir.join("plan.toml");
    std::fs::write(
        &plan_study,
        format!(
            "[study]\nname = \"p\"\nscenario = {:?}\n[plan]\naxis = \"links.lyon-madrid.bandwidth\"\nfind = \"min\"\nfrom = \"100Mbit/s\"\nto = \"10Gbit/s\"\nscale = \"log\"\ntargets = [{{ metric = \"makespan_s\", max = 1800 }}]\n",
            evacuation().display().to_string()
        ),
    )
    .unwrap();
    let plan = dir.join("plan");
    memfabric_ok(&["plan", plan_study.to_str().unwrap(), "--out", plan.to_str().unwrap()]);
    let html = check_report(&plan, "memfabric plan p", 1);
    assert!(html.contains("<h2>Plan: min links.lyon-madrid.bandwidth</h2>") && html.contains(">found<"));
    // `memfabric report` writes it again for an existing folder.
    std::fs::remove_file(sweep.join("report.html")).unwrap();
    let out = memfabric_ok(&["report", sweep.to_str().unwrap()]);
    assert!(out.contains("report.html"));
    check_report(&sweep, "memfabric sweep test", 3);
    // A folder that is not a results folder is bad input, and gets no file.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = memfabric(&["report", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a results folder"));
    assert!(files(&empty).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pixels of the PNG close to `rgb`, and the share of non-white pixels.
fn pixels(png_path: &Path, rgb: (u8, u8, u8)) -> (usize, f64) {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let near = |a: u8, b: u8| (a as i32 - b as i32).abs() <= 12;
    let matching = px.iter().filter(|p| near(p[0], rgb.0) && near(p[1], rgb.1) && near(p[2], rgb.2)).count();
    let inked = px.iter().filter(|p| p[0] < 235 || p[1] < 235 || p[2] < 235).count();
    (matching, inked as f64 / px.len() as f64)
}

#[test]
fn chromium_renders_the_sweep_report() {
    let Some(_) = browser::chromium() else { return };
    let dir = scratch("report-browser");
    let sweep = sweep_with_plots(&dir);
    let html = std::fs::read_to_string(sweep.join("report.html")).unwrap();
    assert!(html.contains("<title>memfabric sweep test</title>"));
    let png = dir.join("report.png");
    browser::screenshot(&sweep.join("report.html"), &png, 1280, 2400).unwrap();
    let (blue, inked) = pixels(&png, (0x1f, 0x77, 0xb4));
    let (red, _) = pixels(&png, (0xd6, 0x27, 0x28));
    assert!(inked > 0.02, "the page looks blank ({:.1}% inked)", inked * 100.0);
    assert!(blue > 100 && red > 100, "the plot lines are not on screen (blue {blue}, red {red} pixels)");
    // A blank page renders white: the check can fail.
    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><head><title>x</title></head><body></body></html>").unwrap();
    browser::screenshot(&blank, &dir.join("blank.png"), 400, 300).unwrap();
    let (_, inked) = pixels(&dir.join("blank.png"), (0, 0, 0));
    assert!(inked < 0.001, "a blank page is {inked} inked");
    let _ = std::fs::remove_dir_all(&dir);
}
