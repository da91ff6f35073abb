//! `--out` never deletes or moves what memfabric did not write (issue 12,
//! rows 1 and 2): `run` and `trace gen` refuse a user's folder, a file, a
//! device, a path without a folder name, a mount point and a folder of
//! another kind, exit 2, and leave everything as it was (no staging folder);
//! a previous result of the same kind is replaced; `--force` replaces another
//! memfabric folder but never a user's.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

fn tmp(name: &str) -> PathBuf {
    scratch("out", name)
}

fn memfabric_in(cwd: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_memfabric")).current_dir(cwd).args(args).output().unwrap()
}

fn quickstart() -> String {
    scenario_path("quickstart").canonicalize().unwrap().display().to_string()
}

fn run_to(cwd: &Path, out: &str, extra: &[&str]) -> Output {
    let sc = quickstart();
    let mut args = vec!["run", sc.as_str(), "--no-plots", "--out", out];
    args.extend_from_slice(extra);
    memfabric_in(cwd, &args)
}

fn trace_gen_to(cwd: &Path, out: &str, extra: &[&str]) -> Output {
    let mut args = vec!["trace", "gen", "--archetype", "idle-linux", "--memory", "1MiB", "--duration", "2s", "--out", out];
    args.extend_from_slice(extra);
    memfabric_in(cwd, &args)
}

#[track_caller]
fn assert_refused(o: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
}

#[test]
fn a_users_folder_is_refused_and_kept_even_with_force() {
    let base = tmp("user");
    std::fs::create_dir(base.join("d")).unwrap();
    std::fs::write(base.join("d/thesis.txt"), "x").unwrap();
    for extra in [&[][..], &["--force"][..]] {
        assert_refused(&run_to(&base, "d", extra), "not a memfabric result");
        assert_refused(&trace_gen_to(&base, "d", extra), "not a memfabric result");
    }
    assert_eq!(listing(&base), ["d", "d/thesis.txt"]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_file_or_device_is_never_replaced() {
    let base = tmp("file");
    std::fs::write(base.join("f"), "keep").unwrap();
    for extra in [&[][..], &["--force"][..]] {
        assert_refused(&run_to(&base, "f", extra), "is a file, not a folder");
        assert_refused(&trace_gen_to(&base, "f", extra), "is a file, not a folder");
        assert_refused(&run_to(&base, "/dev/null", extra), "is a device");
    }
    assert_eq!(std::fs::read_to_string(base.join("f")).unwrap(), "keep");
    assert_eq!(listing(&base), ["f"]);
    assert!(Path::new("/dev/null").exists());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn paths_that_cannot_be_renamed_are_refused_without_leftovers() {
    let base = tmp("names");
    std::fs::create_dir_all(base.join("d/sub")).unwrap();
    for out in [".", "..", "d/sub/..", "d/."] {
        assert_refused(&run_to(&base.join("d"), out, &[]), "must end in a folder name");
    }
    assert_eq!(listing(&base), ["d", "d/sub"]);
    // A mount point cannot be renamed: refused before anything is staged
    // beside it. /dev/shm is one wherever /dev is a separate tmpfs.
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata("/dev/shm"), std::fs::metadata("/dev")) {
        (Ok(shm), Ok(dev)) if shm.dev() != dev.dev() => {
            let before = listing(Path::new("/dev")).into_iter().filter(|e| e.starts_with(".shm")).count();
            assert_refused(&run_to(&base, "/dev/shm", &[]), "is a mount point");
            let after = listing(Path::new("/dev")).into_iter().filter(|e| e.starts_with(".shm")).count();
            assert_eq!(before, after, "no staging folder beside the mount point");
        }
        _ => eprintln!("skipping the mount-point case: /dev/shm is not a separate mount here"),
    }
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_previous_result_is_replaced_and_another_kind_needs_force() {
    let base = tmp("kinds");
    // run into a new folder, then again: replaced, nothing else left.
    for _ in 0..2 {
        let o = run_to(&base, "r", &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(listing(&base).iter().filter(|e| !e.starts_with("r")).count(), 0, "{:?}", listing(&base));
    }
    let result_files = listing(&base.join("r"));
    assert!(result_files.contains(&"manifest.json".to_string()), "{result_files:?}");
    // A trace over a run result, and a run over a trace: refused without --force.
    let o = trace_gen_to(&base, "t", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_refused(&trace_gen_to(&base, "r", &[]), "holds a memfabric run result, not a memfabric trace");
    assert_refused(&run_to(&base, "t", &[]), "holds a memfabric trace, not a memfabric run result");
    assert_eq!(listing(&base.join("r")), result_files);
    // A note added to a result is the user's: refused, kept.
    std::fs::write(base.join("r/notes.txt"), "mine").unwrap();
    assert_refused(&run_to(&base, "r", &[]), "holds \"notes.txt\", which memfabric did not write");
    assert_eq!(std::fs::read_to_string(base.join("r/notes.txt")).unwrap(), "mine");
    // --force replaces another memfabric folder.
    let o = run_to(&base, "t", &["--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(listing(&base.join("t")), result_files);
    assert!(listing(&base).iter().all(|e| !e.contains("partial")), "{:?}", listing(&base));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn an_empty_folder_is_filled_and_missing_parents_are_created() {
    let base = tmp("empty");
    std::fs::create_dir(base.join("e")).unwrap();
    let o = run_to(&base, "e", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = trace_gen_to(&base, "x/y/t", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let l = listing(&base);
    assert!(l.contains(&"e/manifest.json".to_string()) && l.contains(&"x/y/t/manifest.json".to_string()), "{l:?}");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn profile_out_replaces_only_an_earlier_profile() {
    let base = tmp("profile");
    std::fs::write(base.join("thesis.txt"), "mine").unwrap();
    let o = memfabric_in(&base, &["profile", "--min-ms", "1", "--out", "thesis.txt"]);
    assert_refused(&o, "thesis.txt: exists and is not a memfabric CPU profile");
    assert_eq!(std::fs::read_to_string(base.join("thesis.txt")).unwrap(), "mine");
    for _ in 0..2 {
        let o = memfabric_in(&base, &["profile", "--min-ms", "1", "--out", "p.toml"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(std::fs::read_to_string(base.join("p.toml")).unwrap().starts_with("# CPU-cost profile"));
    assert_eq!(listing(&base), ["p.toml", "thesis.txt"]);
    std::fs::remove_dir_all(&base).unwrap();
}
