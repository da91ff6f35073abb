//! `[scenario] calibration = "FILE"`: a scenario names its calibration
//! profile (relative to the scenario file); `memfabric run --calibration`
//! overrides it; the manifest records the profile's name, path and hash; a
//! missing or corrupt profile is a located error (exit 2, nothing written).

use std::path::{Path, PathBuf};
use std::process::Command;

use memfabric_sim::calibrate::profile::Calibration;

const RUN: &str = "../calibration/datasets/small-2026-12-07-v2/runs/web-w500-256MiB-100Mbit_s_25ms-zero+xbzrle+lz4-s1-r0";
const PROFILE: &str = "../calibration/profiles/small-2026-12-07-v2.toml";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memfabric-calkey-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("profiles")).unwrap();
    d
}

/// A validator run's scenario with `calibration = key` added to `[scenario]`
/// (no key when `None`), written as `dir/scenario.toml`.
fn scenario_with(dir: &Path, key: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(RUN).join("scenario.toml")).unwrap();
    let text = match key {
        Some(k) => text.replacen("[scenario]\n", &format!("[scenario]\ncalibration = {k:?}\n"), 1),
        None => text,
    };
    assert!(key.is_none() || text.contains("calibration ="), "the run's scenario has a [scenario] table");
    let p = dir.join("scenario.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn memfabric(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_memfabric")).args(args).output().unwrap()
}

fn hash_of(path: &Path) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&std::fs::read(path).unwrap()))
}

#[test]
fn a_scenario_names_its_profile_relative_to_itself_and_the_cli_overrides_it() {
    let dir = scratch("apply");
    std::fs::copy(PROFILE, dir.join("profiles/fit.toml")).unwrap();
    let named = scenario_with(&dir, Some("profiles/fit.toml"));
    // Loaded from another working directory: the path is the scenario's.
    let sc = memfabric_sim::scenario::load(&named).unwrap();
    let committed = Calibration::load(Path::new(PROFILE)).unwrap();
    assert_eq!(sc.calibration.as_ref(), Some(&committed));
    let src = sc.calibration_source.clone().expect("source recorded");
    assert_eq!((src.name.as_str(), src.path.as_str()), ("fit", "profiles/fit.toml"));
    assert_eq!(src.xxh3, hash_of(Path::new(PROFILE)));
    assert_eq!(sc.cpu_profile.size_factor.lz4, committed.size_factor.lz4.unwrap());

    // The same as naming it on the command line for a scenario without the key.
    let plain = scenario_with(&scratch("plain"), None);
    let cli = memfabric_sim::calibrate::cli::load_scenario(&plain, Some(Path::new(PROFILE))).unwrap();
    let uncal = memfabric_sim::scenario::load(&plain).unwrap();
    assert!(uncal.calibration.is_none() && uncal.calibration_source.is_none());
    assert_eq!(cli.calibration, sc.calibration);
    assert_eq!(cli.fabric.links[0].bandwidth, sc.fabric.links[0].bandwidth);
    assert!(sc.fabric.links[0].bandwidth.0 < uncal.fabric.links[0].bandwidth.0, "the WAN goodput applied once");
    let a = memfabric_sim::run::run(&sc, None);
    let b = memfabric_sim::run::run(&cli, None);
    assert_eq!(a.migrations[0].total_time_s, b.migrations[0].total_time_s);
    assert_eq!(a.migrations[0].bytes_on_wire, b.migrations[0].bytes_on_wire);

    // --calibration overrides the key: the key's file is not even read (here
    // it does not exist), and the CLI's profile is the one applied once.
    let missing = scenario_with(&scratch("override"), Some("profiles/nowhere.toml"));
    let over = memfabric_sim::calibrate::cli::load_scenario(&missing, Some(Path::new(PROFILE))).unwrap();
    assert_eq!(over.calibration, sc.calibration);
    assert_eq!(over.fabric.links[0].bandwidth, sc.fabric.links[0].bandwidth);
    assert_eq!(over.calibration_source.unwrap().path, PROFILE);
    for d in ["apply", "plain", "override"] {
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("memfabric-calkey-{}-{d}", std::process::id())));
    }
}

#[test]
fn the_manifest_records_the_profile_name_path_and_hash() {
    let dir = scratch("manifest");
    std::fs::copy(PROFILE, dir.join("profiles/fit.toml")).unwrap();
    let named = scenario_with(&dir, Some("profiles/fit.toml"));
    let out = dir.join("out");
    let o = memfabric(&["run", named.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-plots"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let c = &m["calibration"];
    assert_eq!(c["name"], "fit");
    assert_eq!(c["path"], "profiles/fit.toml");
    assert_eq!(c["xxh3"], hash_of(Path::new(PROFILE)).as_str());
    assert!(m["cpu_profile"].as_str().unwrap().contains("+ calibration profiles/fit.toml (xxh3 "), "{}", m["cpu_profile"]);
    // With --calibration, the manifest names that file.
    let out2 = dir.join("out2");
    let o = memfabric(&["run", named.to_str().unwrap(), "--out", out2.to_str().unwrap(), "--no-plots", "--calibration", PROFILE]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out2.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["calibration"]["path"], PROFILE);
    assert_eq!(m["calibration"]["name"], "small-2026-12-07-v2");
    // Without a calibration the key is absent.
    let plain_dir = scratch("manifest-plain");
    let plain = scenario_with(&plain_dir, None);
    let out3 = plain_dir.join("out");
    let o = memfabric(&["run", plain.to_str().unwrap(), "--out", out3.to_str().unwrap(), "--no-plots"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out3.join("manifest.json")).unwrap()).unwrap();
    assert!(m.get("calibration").is_none(), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&plain_dir);
}

#[test]
fn a_missing_or_corrupt_profile_is_a_located_error_and_nothing_is_written() {
    let dir = scratch("bad");
    let corrupt = "[about]\ncommand = \"x\"\ndataset = \"d\"\ntrain = \"all\"\ntrain_runs = 1\nversion = \"0\"\nloss = 0.0\n[link]\nwan_goodput_fraction = -1.0\n";
    std::fs::write(dir.join("profiles/corrupt.toml"), corrupt).unwrap();
    std::fs::write(dir.join("profiles/unknown.toml"), "[about]\nbogus = 1\n").unwrap();
    let cases: [(&str, &[&str]); 3] = [
        ("profiles/missing.toml", &["scenario.calibration", "profiles/missing.toml"]),
        ("profiles/corrupt.toml", &["scenario.calibration", "link.wan_goodput_fraction = -1", "expected a number in (0, 1.5]"]),
        ("profiles/unknown.toml", &["scenario.calibration", "unknown.toml", "bogus"]),
    ];
    for (key, needles) in cases {
        let sc = scenario_with(&dir, Some(key));
        let out = dir.join("out");
        let o = memfabric(&["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-plots"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{key}: {err}");
        // The scenario file and the line of the key.
        let text = std::fs::read_to_string(&sc).unwrap();
        let line = 1 + text.lines().position(|l| l.starts_with("calibration =")).unwrap();
        assert!(err.contains(&format!("scenario.toml:{line}:")), "{key}: line {line} in: {err}");
        for n in needles {
            assert!(err.contains(n), "{key}: expected {n:?} in: {err}");
        }
        assert!(!out.exists(), "{key}: nothing written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
