//! Bad command-line input and unreadable files (issue 12, rows 5, 11, 13):
//! every numeric flag is range-checked by clap with the flag's name (exit 2,
//! before any work), every file is read through one bounded reader (devices,
//! FIFOs and oversized files refused with the path and the cause), and the
//! `trace` commands treat bad input like the others.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

fn tmp(name: &str) -> PathBuf {
    scratch("badcli", name)
}

fn memfabric_in(cwd: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_memfabric")).current_dir(cwd).args(args).output().unwrap()
}

#[track_caller]
fn assert_bad(o: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}: {stderr}");
    }
}

#[test]
fn numeric_flags_out_of_range_exit_2_naming_the_flag() {
    let dir = tmp("flags");
    for (args, needles) in [
        (&["bench", "--vms", "0"][..], &["--vms", "0"][..]),
        (&["bench", "--vms", "1000,2000000"], &["--vms", "2000000"]),
        (&["bench", "--repeat", "0"], &["--repeat"]),
        (&["profile", "--min-ms", "0"], &["--min-ms"]),
        (&["trace", "gen", "--archetype", "web", "--memory", "1TiB", "--out", "t"], &["--memory", "64.00GiB"]),
        (&["trace", "gen", "--archetype", "web", "--memory", "4097B", "--out", "t"], &["--memory", "4 KiB pages"]),
        (&["trace", "gen", "--archetype", "web", "--epoch", "0s", "--out", "t"], &["--epoch", "must be positive"]),
        (&["trace", "gen", "--archetype", "web", "--duration", "2days", "--out", "t"], &["--duration", "unknown unit"]),
        (&["trace", "gen", "--archetype", "mainframe", "--out", "t"], &["--archetype", "mainframe"]),
        (&["trace", "gen", "--archetype", "web", "--memory", "1MiB", "--duration", "10s", "--epoch", "3s", "--out", "t"], &["whole number", "epochs"]),
        (&["trace", "gen", "--archetype", "web", "--memory", "1MiB", "--duration", "100000s", "--out", "t"], &["at most 86400"]),
        (&["run", "x.toml", "--seed=-1"], &["--seed"]),
    ] {
        let o = memfabric_in(&dir, args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: stderr lacks {n:?}: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(entries(&dir).is_empty(), "nothing written: {:?}", entries(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn devices_fifos_and_huge_files_are_refused_not_read() {
    let dir = tmp("files");
    // A scenario file that is a device, and one past the 64 MiB cap.
    assert_bad(&memfabric_in(&dir, &["check", "/dev/zero"]), &["/dev/zero: is a device, not a regular file"]);
    let big = dir.join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(memfabric_sim::input::SCENARIO_BYTES_MAX + 1).unwrap();
    assert_bad(&memfabric_in(&dir, &["check", "big.toml"]), &["big.toml: is larger than 67108864 bytes"]);
    // A CPU profile that is a device: a located error.
    let sc = two_sites("bandwidth = \"1Gbit/s\"\nlatency = \"10ms\"", "")
        .replace("seed = 1", "seed = 1\ncpu_profile = \"/dev/urandom\"");
    std::fs::write(dir.join("profile.toml"), &sc).unwrap();
    assert_bad(
        &memfabric_in(&dir, &["check", "profile.toml"]),
        &["profile.toml:4:", "scenario.cpu_profile", "/dev/urandom: is a device"],
    );
    // Not UTF-8.
    std::fs::write(dir.join("latin1.toml"), b"[scenario]\nname = \"caf\xe9\"\n").unwrap();
    assert_bad(&memfabric_in(&dir, &["check", "latin1.toml"]), &["latin1.toml: is not UTF-8 text (invalid byte at offset 22)"]);
    assert_eq!(entries(&dir), ["big.toml", "latin1.toml", "profile.toml"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trace_stats_skips_files_and_names_a_non_utf8_manifest() {
    let dir = tmp("stats");
    let o = memfabric_in(
        &dir,
        &["trace", "gen", "--archetype", "idle-linux", "--memory", "1MiB", "--duration", "2s", "--out", "t"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(dir.join("README.md"), "# traces\n").unwrap();
    // `trace stats traces/*` with a README among the traces.
    let o = memfabric_in(&dir, &["trace", "stats", "README.md", "t"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipping README.md: not a trace folder"));
    assert!(String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with('t') || l.contains(" t ")));
    // Only files: nothing to summarise is bad input.
    assert_bad(&memfabric_in(&dir, &["trace", "stats", "README.md"]), &["no trace folders"]);
    // A manifest that is not UTF-8 is named as such, not as an I/O error.
    let mut m = std::fs::read(dir.join("t/manifest.json")).unwrap();
    m.insert(1, 0xff);
    std::fs::write(dir.join("t/manifest.json"), m).unwrap();
    assert_bad(&memfabric_in(&dir, &["trace", "stats", "t"]), &["manifest.json: is not UTF-8 text (invalid byte at offset 1)"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
