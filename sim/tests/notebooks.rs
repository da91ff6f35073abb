//! Executes every notebook in `notebooks/` with nbclient on results this test
//! has just produced with the `memfabric` binary, and fails on any error in
//! any cell, so that the notebooks cannot rot.
//!
//! The pinned packages of `notebooks/requirements.txt` are installed once
//! into a virtual environment under the cargo target folder (reinstalled
//! when the file changes). The test skips, saying why, only when there is no
//! Python 3 with `venv` (scripts/test.sh installs it on Debian).

mod common;

use common::process::run_with_timeout as run;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PIP_TIMEOUT: Duration = Duration::from_secs(900);
const NOTEBOOK_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The venv's python with the pinned packages, or None (with the reason
/// printed) when Python 3 with venv is not to be had. Made once per process.
fn notebook_python() -> Option<PathBuf> {
    static PYTHON: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_venv).clone()
}

fn make_venv() -> Option<PathBuf> {
    let python = std::env::var_os("MEMFABRIC_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("python3"));
    let probe = Command::new(&python).args(["-c", "import venv, ensurepip"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no {} with the venv and ensurepip modules (Debian: apt-get install python3 python3-venv)", python.display());
        return None;
    }
    let requirements = std::fs::read_to_string(repo().join("notebooks/requirements.txt")).unwrap();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("notebook-venv");
    let stamp = venv.join("memfabric-requirements.txt");
    let bin = venv.join("bin/python");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(requirements.as_str()) || !bin.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        let (ok, log) = run(Command::new(&python).arg("-m").arg("venv").arg(&venv), Duration::from_secs(120));
        assert!(ok, "python3 -m venv {} failed:\n{log}", venv.display());
        let (ok, log) = run(
            Command::new(&bin)
                .args(["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r"])
                .arg(repo().join("notebooks/requirements.txt")),
            PIP_TIMEOUT,
        );
        assert!(ok, "installing notebooks/requirements.txt failed:\n{log}");
        std::fs::write(&stamp, &requirements).unwrap();
    }
    Some(bin)
}

/// Runs a scenario with the binary into `out`.
fn memfabric_run(scenario: &Path, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_memfabric"))
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .arg("--no-plots")
        .output()
        .unwrap();
    assert!(o.status.success(), "memfabric run {}: {}", scenario.display(), String::from_utf8_lossy(&o.stderr));
}

const EXECUTE: &str = r#"
import sys, nbformat, nbclient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
nbclient.NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
print("executed", path, "cells:", len(nb.cells))
"#;

#[test]
fn every_notebook_runs_on_fresh_results() {
    let Some(python) = notebook_python() else { return };
    let tmp = std::env::temp_dir().join(format!("memfabric-notebooks-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    // A single run and a strategy comparison, as the notebooks' metadata ask.
    let quickstart = repo().join("scenarios/quickstart.toml");
    memfabric_run(&quickstart, &tmp.join("run"));
    let text = std::fs::read_to_string(&quickstart).unwrap();
    let cmp = tmp.join("comparison.toml");
    std::fs::write(&cmp, text.replacen("seed = 42", "seed = 42\ncompare_strategies = [\"zero\", \"zero+lz4\", \"zero+xbzrle+zstd\"]", 1))
        .unwrap();
    memfabric_run(&cmp, &tmp.join("comparison"));

    let dir = repo().join("notebooks");
    let mut notebooks: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "ipynb")).collect();
    notebooks.sort();
    assert!(notebooks.len() >= 2, "notebooks in {}: {notebooks:?}", dir.display());
    for nb in &notebooks {
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(nb).unwrap()).unwrap();
        let kind = doc["metadata"]["memfabric"]["results"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: metadata.memfabric.results (run or comparison) says which results it reads", nb.display()));
        let results = match kind {
            "run" => tmp.join("run"),
            "comparison" => tmp.join("comparison"),
            other => panic!("{}: no results of kind {other:?} are produced here; add them to this test", nb.display()),
        };
        let (ok, log) = run(
            Command::new(&python)
                .args(["-c", EXECUTE])
                .arg(nb)
                .arg(&dir)
                .env("MEMFABRIC_RESULTS", &results)
                .env("MPLBACKEND", "Agg"),
            NOTEBOOK_TIMEOUT,
        );
        assert!(ok && log.contains("executed"), "{} failed on {}:\n{log}", nb.display(), results.display());
        eprintln!("{}", log.trim());
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn a_failing_cell_fails_the_run() {
    // The runner must report errors, not swallow them: a notebook pointed at
    // a folder without results fails.
    let Some(python) = notebook_python() else { return };
    let dir = repo().join("notebooks");
    let (ok, log) = run(
        Command::new(&python)
            .args(["-c", EXECUTE])
            .arg(dir.join("explore_results.ipynb"))
            .arg(&dir)
            .env("MEMFABRIC_RESULTS", "/nonexistent/memfabric-results")
            .env("MPLBACKEND", "Agg"),
        NOTEBOOK_TIMEOUT,
    );
    assert!(!ok, "a notebook on a missing folder succeeded:\n{log}");
    assert!(log.contains("manifest.json"), "the error names the missing file:\n{log}");
}
