//! `memfabric bench`: how fast the simulator runs a site evacuation of many
//! concurrently migrating, dirtying VMs across one shared WAN link.
//!
//! The scenario is generated as TOML text and goes through the same loader as
//! any file. Wall time is read here, around the run, and never by model code.

use crate::run::run;
use crate::scenario;
use std::time::Instant;

/// Hosts hold this many VMs each in the benchmark fabric.
const VMS_PER_HOST: usize = 32;

/// The benchmark scenario: `n` web VMs of 1 GiB at site `a`, all evacuated to
/// site `b` at once over one 100 Gbit/s, 20 ms link.
pub fn evacuation_scenario(n: usize) -> String {
    let hosts = n.div_ceil(VMS_PER_HOST).max(1);
    format!(
        r#"[scenario]
name = "bench-evacuation-{n}"
seed = 7
[[sites]]
name = "a"
hosts = [{{ name = "a-h", count = {hosts}, cores = 128, ram = "64GiB" }}]
[[sites]]
name = "b"
hosts = [{{ name = "b-h", count = {hosts}, cores = 128, ram = "64GiB" }}]
[[links]]
name = "a-b"
between = ["a", "b"]
bandwidth = "100Gbit/s"
latency = "20ms"
[[vms]]
name = "vm"
count = {n}
site = "a"
archetype = "web"
memory = "1GiB"
[[evacuations]]
from = "a"
to = "b"
[evacuations.settings]
on_non_convergence = "force-stop"
streams = 4
"#
    )
}

/// One line of the benchmark table.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// VMs evacuated.
    pub vms: usize,
    /// Migrations completed.
    pub completed: usize,
    /// Events processed.
    pub events: u64,
    /// Network solves.
    pub solves: u64,
    /// Simulated time, seconds.
    pub simulated_s: f64,
    /// Best wall time of the repeats, seconds (load + run).
    pub wall_s: f64,
    /// Peak resident memory of the process so far, MiB (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
}

/// The process's peak resident set size (`VmHWM` in `/proc/self/status`), MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the benchmark for each size, `repeat` times each (at least once),
/// keeping the best time. A size the scenario rules refuse (0 VMs, more than
/// [`scenario::VMS_MAX`]) is an error; the CLI refuses it earlier
/// ([`crate::cli_args::vm_count`]).
pub fn run_bench(sizes: &[usize], repeat: usize) -> Result<Vec<BenchRow>, scenario::ScenarioError> {
    sizes
        .iter()
        .map(|&n| {
            let text = evacuation_scenario(n);
            let mut best = f64::INFINITY;
            let mut last = None;
            for _ in 0..repeat.max(1) {
                let t0 = Instant::now();
                let sc = scenario::parse(&text, "bench")?;
                let out = run(&sc, None);
                best = best.min(t0.elapsed().as_secs_f64());
                last = Some(out);
            }
            let out = last.expect("ran at least once");
            Ok(BenchRow {
                vms: n,
                completed: out.migrations.iter().filter(|m| m.outcome == "completed").count(),
                events: out.events_processed,
                solves: out.flow_solves,
                simulated_s: out.end_time.as_secs_f64(),
                wall_s: best,
                peak_rss_mib: peak_rss_mib(),
            })
        })
        .collect()
}

/// The benchmark table as text.
pub fn format_table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:>7} {:>9} {:>9} {:>9} {:>12} {:>10} {:>12} {:>14} {:>13}\n",
        "vms", "completed", "events", "solves", "simulated_s", "wall_ms", "events_per_s", "vms_per_wall_s", "peak_rss_mib"
    );
    for r in rows {
        s += &format!(
            "{:>7} {:>9} {:>9} {:>9} {:>12.3} {:>10.1} {:>12.0} {:>14.0} {:>13}\n",
            r.vms,
            r.completed,
            r.events,
            r.solves,
            r.simulated_s,
            r.wall_s * 1e3,
            r.events as f64 / r.wall_s,
            r.vms as f64 / r.wall_s,
            r.peak_rss_mib.map_or("n/a".to_string(), |m| format!("{m:.1}"))
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_scenario_runs_and_completes() {
        let rows = run_bench(&[40], 1).unwrap();
        assert_eq!(rows[0].vms, 40);
        assert_eq!(rows[0].completed, 40);
        assert!(rows[0].events > 40 && rows[0].solves > 0);
        let table = format_table(&rows);
        assert!(table.lines().count() == 2 && table.contains("events_per_s"));
    }
}
