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

/// Expects `memfabric <command>` of a study whose text after `[study]` is
/// `rest` to fail with exit code 2, located at the line containing
/// `line_of`, with a message containing every needle, and to write nothing.
#[track_caller]
pub fn assert_bad_study(command: &str, rest: &str, line_of: &str, needles: &[&str]) {
    let dir = scratch(&format!("bad-{command}-{:x}", xxhash_rust::xxh3::xxh3_64(rest.as_bytes())));
    let study = write_study(&dir, &evacuation(), "[7]", rest);
    let text = std::fs::read_to_string(&study).unwrap();
    let line = text.lines().position(|l| l.contains(line_of)).unwrap() + 1;
    let out = memfabric(&[command, study.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("study.toml:{line}:")), "expected line {line}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in {stderr}");
    }
    assert_eq!(files(&dir), ["study.toml"], "nothing written for bad input");
    let _ = std::fs::remove_dir_all(&dir);
}
