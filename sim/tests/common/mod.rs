//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod browser;
pub mod process;

use memfabric_sim::run::{run, RunOutput};
use memfabric_sim::scenario::{self, Scenario};

/// Two sites `a` and `b` (one big host each) joined by one link with the given
/// TOML key/values, plus extra TOML (VMs, operations, defaults).
pub fn two_sites(link: &str, rest: &str) -> String {
    format!(
        r#"[scenario]
name = "test"
seed = 1
[[sites]]
name = "a"
hosts = [{{ name = "a-h", count = 4, cores = 256, ram = "4TiB" }}]
[[sites]]
name = "b"
hosts = [{{ name = "b-h", count = 4, cores = 256, ram = "4TiB" }}]
[[links]]
name = "ab"
between = ["a", "b"]
{link}
{rest}
"#
    )
}

/// Parses a scenario or panics with its error.
pub fn parse(text: &str) -> Scenario {
    scenario::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}\n--- scenario ---\n{text}"))
}

/// Parses and runs.
pub fn run_text(text: &str) -> RunOutput {
    run(&parse(text), None)
}

/// Asserts `a` is within `rel` relative error of `b`.
#[track_caller]
pub fn assert_close(a: f64, b: f64, rel: f64, what: &str) {
    let err = (a - b).abs() / b.abs().max(1e-12);
    assert!(err <= rel, "{what}: got {a}, expected {b} (relative error {err:.2e} > {rel:.1e})");
}

/// Path of a committed scenario.
pub fn scenario_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{name}.toml"))
}

/// A fresh, empty scratch folder for one test: `<tmp>/memfabric-<group>-<pid>-<name>`.
pub fn scratch(group: &str, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("memfabric-{group}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Set by the panic hook [`owned_scratch`] installs: a test failed.
static A_TEST_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Scratch folders of the test running on this thread, removed when the
/// thread ends (libtest runs each test on its own thread) unless a test
/// failed, so that a failure's files can be looked at.
struct ThreadScratch(Vec<std::path::PathBuf>);

impl Drop for ThreadScratch {
    fn drop(&mut self) {
        if !A_TEST_FAILED.load(std::sync::atomic::Ordering::SeqCst) {
            for d in &self.0 {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

thread_local! {
    static THREAD_SCRATCH: std::cell::RefCell<ThreadScratch> = const { std::cell::RefCell::new(ThreadScratch(Vec::new())) };
}

/// A fresh, empty scratch folder, `<tmp>/memfabric-<group>-<pid>-<name>`,
/// removed when the test that asked for it ends if every test so far
/// passed (kept after a failure, to be looked at).
pub fn owned_scratch(group: &str, name: &str) -> std::path::PathBuf {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            A_TEST_FAILED.store(true, std::sync::atomic::Ordering::SeqCst);
            default_hook(info)
        }));
    });
    let d = scratch(group, name);
    THREAD_SCRATCH.with(|t| t.borrow_mut().0.push(d.clone()));
    d
}

/// The names in `dir` (hidden ones included), sorted.
pub fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Everything under `dir`, as paths relative to it, sorted.
pub fn listing(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, rel: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            out.push(r.display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, std::path::Path::new(""), &mut out);
    out.sort();
    out
}
