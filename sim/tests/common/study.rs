//! Helpers of the study tests (sweep, plan, shard, report, slurm): scratch
//! folders, the binary, study files next to the committed scenarios.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memfabric-study-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `memfabric` with `args`.
pub fn memfabric<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_memfabric")).args(args).output().unwrap()
}

/// Runs `memfabric` and panics with its output unless it succeeds.
pub fn memfabric_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = memfabric(args);
    assert!(
        out.status.success(),
        "memfabric failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The committed evacuation scenario.
pub fn evacuation() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/evacuation-1g-40ms.toml")
}

/// Writes `study.toml` into `dir` with `[study]` naming `scenario`, followed by `rest`.
pub fn write_study(dir: &Path, scenario: &Path, seeds: &str, rest: &str) -> PathBuf {
    let p = dir.join("study.toml");
    std::fs::write(
        &p,
        format!("[study]\nname = \"test\"\nscenario = {:?}\nseeds = {seeds}\n\n{rest}", scenario.display().to_string()),
    )
    .unwrap();
    p
}

/// Files of a folder, recursively, sorted (relative paths).
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
