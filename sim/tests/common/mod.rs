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

/// Scratch folders (`<tmp>/memfabric-<group>-<pid>-<name>`): `scratch`
/// stays, `owned_scratch` is removed when its test passes
/// (`memfabric_testkit::scratch`).
#[allow(unused_imports)] // not every test crate uses both
pub use memfabric_testkit::scratch::{listing, owned_scratch, scratch};

/// The names in `dir` (hidden ones included), sorted.
pub fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

