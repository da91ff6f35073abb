//! `migrate` refuses bad arguments before anything starts: exit code 2, a
//! message naming the flag and the rule, and nothing written. None of these
//! needs /dev/kvm: the checks run before the VMMs start.

use std::path::PathBuf;
use std::process::{Command, Output};

fn out_dir(name: &str) -> PathBuf {
    memfabric_testkit::scratch::owned_path("validator-bad", name)
}

/// Runs `migrate` with `args` and an `--out` that must stay absent.
fn refused(name: &str, args: &[&str]) -> String {
    let out = out_dir(name);
    let o: Output = Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
        .arg("migrate")
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run memfabric-validator");
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{args:?} must exit 2:\n{stderr}");
    assert!(o.stdout.is_empty(), "{args:?} printed {:?}", String::from_utf8_lossy(&o.stdout));
    assert!(!out.exists(), "{args:?} wrote {}", out.display());
    stderr
}

#[test]
fn zero_stop_rule_values_are_refused_with_the_simulators_rules() {
    let e = refused("max-rounds", &["--max-rounds", "0"]);
    assert!(e.contains("--max-rounds") && e.contains("at least 1 (round 0 is the full copy)"), "{e}");
    let e = refused("downtime", &["--downtime-limit", "0ms"]);
    assert!(e.contains("--downtime-limit") && e.contains("must be positive"), "{e}");
    // The same words as a scenario file gets, from the same check.
    assert!(e.contains(&memfabric_migration::precopy::PrecopyRangeError::DowntimeLimitZero.to_string()), "{e}");
}

#[test]
fn a_zero_io_timeout_is_refused() {
    let e = refused("io-timeout", &["--io-timeout", "0s"]);
    assert!(e.contains("--io-timeout") && e.contains("at least 1ms"), "{e}");
    let e = refused("io-timeout-us", &["--io-timeout", "500us"]);
    assert!(e.contains("at least 1ms"), "{e}");
}

#[test]
fn a_dest_ram_fault_beyond_the_guest_is_refused_up_front() {
    // 256 MiB = 65536 pages: page 65536 does not exist, so the fault could
    // never fire (it used to be reported as fired).
    let e = refused("dest-ram", &["--mem", "256MiB", "--fault", "dest-ram@65536"]);
    assert!(e.contains("dest-ram@65536") && e.contains("pages 0 to 65535") && e.contains("never fire"), "{e}");
}

#[test]
fn a_guest_larger_than_the_machine_is_refused() {
    let available_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    // 62 GiB fits the guest's layout (at most 63 GiB) but not two VMMs here.
    if available_kib * 1024 >= 124 << 30 {
        eprintln!("skipping a_guest_larger_than_the_machine_is_refused: this machine has {available_kib} KiB available");
        return;
    }
    let e = refused("mem", &["--mem", "62GiB"]);
    assert!(e.contains("--mem 63488 MiB") && e.contains("MemAvailable") && e.contains("126976 MiB in all"), "{e}");
    let e = refused("mem-layout", &["--mem", "3MiB"]);
    assert!(e.contains("memory") && e.contains("2 MiB"), "{e}");
}

#[test]
fn a_fault_with_a_link_is_refused() {
    let e = refused("fault-link", &["--fault", "cut-link@1MiB", "--link", "100Mbit/s,1ms"]);
    assert!(e.contains("--fault and --link cannot be combined"), "{e}");
}

#[test]
fn missing_tls_files_are_refused() {
    let e = refused("tls", &["--tls", "/nonexistent/memfabric-tls"]);
    assert!(e.contains("--tls") && e.contains("/nonexistent/memfabric-tls/ca.pem"), "{e}");
}

#[test]
fn the_encrypt_stage_needs_the_tls_channel() {
    let e = refused("encrypt", &["--pipeline", "zero+lz4+encrypt"]);
    assert!(e.contains("--pipeline zero+lz4+encrypt") && e.contains("--tls DIR"), "{e}");
}
