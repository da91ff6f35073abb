//! Helpers shared by the validator's migration tests: run `migrate` on a
//! small guest on loopback, one at a time, and read what it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::os::unix::process::CommandExt;
use std::process::Command;

use memfabric_sim::output::read_parquet;

/// What one `migrate` run printed and wrote.
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub manifest: serde_json::Value,
    pub out: PathBuf,
    /// Processes of the run's process group still alive after it exited
    /// (`pgrep -g`): should be none.
    pub leftover: String,
}

/// Whether `test` can run a migration over the emulated WAN: /dev/kvm and
/// the link's prerequisites (TUN, namespaces, root); else it says which is
/// missing and the test returns.
pub fn kvm_and_wan_or_skip(test: &str) -> bool {
    if !memfabric_validator::kvm::kvm_or_skip(test) {
        return false;
    }
    if let Err(e) = memfabric_validator::wan::check_prerequisites() {
        eprintln!("skipping {test}: {e}");
        return false;
    }
    true
}

pub fn migrate(name: &str, extra: &[&str]) -> Run {
    migrate_at(name, 3000, extra)
}

/// One migration at a time: each runs two VMMs (and maybe a WAN emulator)
/// on a 2-core machine, and the WAN test checks rates.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn migrate_at(name: &str, dirty_rate: u32, extra: &[&str]) -> Run {
    let rate = dirty_rate.to_string();
    migrate_with(name, &["--mem", "64MiB", "--workload", "web", "--dirty-rate", &rate], extra)
}

/// `migrate` with `base` arguments (memory, workload, ...), then `extra`.
pub fn migrate_with(name: &str, base: &[&str], extra: &[&str]) -> Run {
    let _serial = serial();
    let out = memfabric_testkit::scratch::owned_path("validator-test", name);
    // Its own process group, so that what it leaves behind can be found.
    let child = Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
        .arg("migrate")
        .args(base)
        // Defaults unless the test gives its own.
        .args(["--warmup", "300ms", "--watch", "500ms"].chunks(2).filter(|f| !extra.contains(&f[0])).flatten())
        .args(extra)
        .arg("--out")
        .arg(&out)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run memfabric-validator");
    let pgid = child.id();
    let o = child.wait_with_output().expect("wait for memfabric-validator");
    let leftover = Command::new("pgrep").args(["-g", &pgid.to_string()]).output().map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    let manifest = std::fs::read_to_string(out.join("manifest.json"))
        .map(|t| serde_json::from_str(&t).expect("manifest is JSON"))
        .unwrap_or(serde_json::Value::Null);
    Run {
        ok: o.status.success(),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
        manifest,
        out,
        leftover: leftover.unwrap_or_default(),
    }
}

pub fn column_u64(dir: &Path, table: &str, col: &str) -> Vec<u64> {
    let df = read_parquet(&dir.join(table)).unwrap();
    df.column(col).unwrap().u64().unwrap().into_no_null_iter().collect()
}

pub fn column_str(dir: &Path, table: &str, col: &str) -> Vec<String> {
    let df = read_parquet(&dir.join(table)).unwrap();
    let c = df.column(col).unwrap().str().unwrap().clone();
    (0..c.len()).map(|i| c.get(i).unwrap().to_string()).collect()
}

/// `migrate ARGS --out DIR` is refused up front: exit code 2, stderr says
/// `says`, nothing written at DIR (`name` makes DIR unique).
pub fn assert_refused(name: &str, args: &[&str], says: &str) {
    let out = memfabric_testkit::scratch::owned_path("validator-test", name);
    let o = Command::new(env!("CARGO_BIN_EXE_memfabric-validator")).arg("migrate").args(args).arg("--out").arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?} should say {says:?}: {stderr}");
    assert!(!out.exists(), "{args:?}: nothing is written");
}
