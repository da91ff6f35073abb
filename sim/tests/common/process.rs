//! Running a child process with a time limit, for tests that call outside
//! programs (Python, Chromium, documented shell commands).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` to completion, or kills it after `limit`; returns whether it
/// succeeded and its stdout followed by its stderr.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let (ok, stdout, stderr) = run_split(cmd, limit);
    (ok, format!("{stdout}{stderr}"))
}

/// As [`run_with_timeout`], with stdout and stderr apart.
pub fn run_split(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "");
    let out_path = std::env::temp_dir().join(format!("memfabric-test-out-{tag}"));
    let err_path = std::env::temp_dir().join(format!("memfabric-test-err-{tag}"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let mut stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {limit:?})"));
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}
