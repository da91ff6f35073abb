//! `memfabric bench`: how fast the simulator runs many concurrent migrations.
//!
//! Three workloads ([`Workload`]) that run: today's evacuation of dirtying
//! web VMs over one 100 Gbit/s link; the evacuation SimGrid's live-migration
//! model was measured on (one shared 10 Gbit/s, 1 ms link, VM sizes spread
//! evenly over 0.5–1.5 GiB, uniform dirtying at 10 % of each VM's fair share,
//! 30 ms downtime limit, no reduction); and a multi-site fabric (50 sites in a
//! ring, a third of the VMs evacuated over routes of four links that overlap).
//! A fourth, `load`, only loads a scenario that lists every VM in its own
//! `[[vms]]` entry, and measures the loader's time and peak memory against
//! the whole-document parse ([`crate::scenario::parse_as_one_document`]) in
//! the same process ([`run_load_bench`]).
//!
//! Each scenario is generated as TOML text and goes through the same loader as
//! any file. Wall time and the thread's CPU time are read here, around the
//! run, and never by model code. On a machine shared with other work the CPU
//! time is the steadier figure: wall time counts the time other processes
//! held the cores.

use crate::run::run;
use memfabric_migration::record::Outcome;
use crate::scenario;
use std::time::Instant;

/// Which scenario `memfabric bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// N 1 GiB web VMs over one 100 Gbit/s, 20 ms link, 4 streams each.
    Evacuation,
    /// SimGrid's comparison: N VMs of 0.5–1.5 GiB over one 10 Gbit/s, 1 ms link.
    Simgrid,
    /// 50 sites in a ring; N VMs spread over them, a third evacuated 4 hops away.
    Multisite,
    /// Loading only: N VMs listed one `[[vms]]` entry each (about 166 bytes of text per VM).
    Load,
}

impl Workload {
    /// The scenario text for `n` VMs.
    pub fn scenario(self, n: usize) -> String {
        match self {
            Workload::Evacuation => evacuation_scenario(n),
            Workload::Simgrid => simgrid_scenario(n),
            Workload::Multisite => multisite_scenario(n),
            Workload::Load => listed_scenario(n),
        }
    }
}

/// `memfabric bench`: the table of `workload` at each size, or with
/// `print_scenario` the workload's scenario for that many VMs.
pub fn execute(workload: Workload, sizes: &[usize], repeat: usize, print_scenario: Option<usize>) -> Result<String, scenario::ScenarioError> {
    Ok(match (print_scenario, workload) {
        (Some(n), _) => workload.scenario(n),
        (None, Workload::Load) => format_load_table(&run_load_bench(sizes, repeat)?),
        (None, _) => format_table(&run_bench(workload, sizes, repeat)?),
    })
}

/// Distinct VM sizes of the SimGrid workload (fewer when N is smaller): the
/// sizes are spread evenly over 0.5–1.5 GiB in this many steps, so that the
/// scenario has a bounded number of `[[vms]]` entries.
const SIMGRID_SIZE_STEPS: usize = 1000;

/// SimGrid's evacuation: `n` VMs whose sizes are spread evenly over
/// 0.5–1.5 GiB (whole MiB), all migrated at once from site `a` to `b` over
/// one shared 10 Gbit/s, 1 ms link; pre-copy with one stream, no reduction,
/// 30 ms downtime limit; uniform dirtying of the whole memory at 10 % of each
/// VM's fair share of the link (`10 Gbit/s / n / 10`).
pub fn simgrid_scenario(n: usize) -> String {
    let n = n.max(1);
    let steps = SIMGRID_SIZE_STEPS.min(n);
    // Each host holds VMs_PER_HOST VMs of at most 1.5 GiB.
    let hosts = n.div_ceil(VMS_PER_HOST).max(1) + steps;
    let dirty_bytes_per_s = 10e9 / 8.0 / n as f64 / 10.0;
    let mut s = format!(
        r#"[scenario]
name = "bench-simgrid-{n}"
seed = 7
horizon = "720h"
[defaults]
mechanism = "pre-copy"
strategy = "none"
streams = 1
downtime_limit = "30ms"
on_non_convergence = "force-stop"
"#
    );
    s += &two_sites(hosts, "10Gbit/s", "1ms");
    for i in 0..steps {
        // Entry i holds the VMs of size 512 MiB + i/(steps-1) GiB.
        let count = n / steps + usize::from(i < n % steps);
        let mib = if steps == 1 { 1024 } else { 512 + (1024 * i + (steps - 1) / 2) / (steps - 1) };
        s += &format!(
            r#"[[vms]]
name = "vm{i}"
count = {count}
site = "a"
archetype = "idle-linux"
memory = "{mib}MiB"
[vms.workload]
popularity = "uniform"
working_set = "100%"
page_write_rate = "{dirty_bytes_per_s}B/s"
"#
        );
    }
    s += "[[evacuations]]\nfrom = \"a\"\nto = \"b\"\n";
    s
}

/// The loader's workload: `n` VMs at site `a`, each in its own `[[vms]]`
/// entry with a `[vms.workload]` table (about 166 bytes of text per VM,
/// 16.6 MB for 100,000 VMs), 32 per host, sizes
/// 512–1,535 MiB, three archetypes and ten tenants in turn; one evacuation
/// to site `b`.
pub fn listed_scenario(n: usize) -> String {
    let hosts = n / VMS_PER_HOST + 1;
    let mut s = format!("[scenario]\nname = \"bench-load-{n}\"\nseed = 7\n");
    s += &two_sites(hosts, "10Gbit/s", "1ms");
    let archetypes = ["web", "idle-linux", "oltp-db"];
    for i in 0..n {
        s += &format!(
            "[[vms]]\nname = \"vm-{i:06}\"\nhost = \"a-h-{}\"\narchetype = \"{}\"\nmemory = \"{}MiB\"\ntenant = \"t{}\"\n[vms.workload]\npage_write_rate = \"{}pages/s\"\nworking_set = \"50%\"\n",
            i / VMS_PER_HOST,
            archetypes[i % 3],
            512 + i % 1024,
            i % 10,
            1000 + i % 5000
        );
    }
    s += "[[evacuations]]\nfrom = \"a\"\nto = \"b\"\n";
    s
}

/// Sites of the multi-site workload, in a ring.
const MULTISITE_SITES: usize = 50;

/// The multi-site workload: `n` VMs spread over 50 sites (one host per 10
/// VMs: 10,000 hosts for 100,000 VMs) joined in a ring of links of
/// alternating 100 and 40 Gbit/s and 5–15 ms latency. Sites 0, 3, 6, …, 45
/// (16 of 50: about a third of the VMs) are evacuated at once to the site four
/// hops further on, so each evacuation's route crosses four links and shares
/// its first and last with the neighbouring evacuations.
pub fn multisite_scenario(n: usize) -> String {
    let per_site = n.div_ceil(MULTISITE_SITES).max(1);
    let hosts = per_site.div_ceil(10).max(1);
    let mut s = String::from("[scenario]\nname = \"bench-multisite\"\nseed = 7\nhorizon = \"720h\"\n[defaults]\nmechanism = \"pre-copy\"\nstreams = 2\non_non_convergence = \"force-stop\"\n");
    for i in 0..MULTISITE_SITES {
        s += &format!("[[sites]]\nname = \"s{i}\"\nhosts = [{{ name = \"s{i}-h\", count = {hosts}, cores = 128, ram = \"64GiB\" }}]\n");
    }
    for i in 0..MULTISITE_SITES {
        let j = (i + 1) % MULTISITE_SITES;
        let gbit = if i % 2 == 0 { 100 } else { 40 };
        let ms = 5 + (i * 7) % 11;
        s += &format!("[[links]]\nname = \"l{i}\"\nbetween = [\"s{i}\", \"s{j}\"]\nbandwidth = \"{gbit}Gbit/s\"\nlatency = \"{ms}ms\"\n");
    }
    let archetypes = ["web", "idle-linux", "oltp-db"];
    let mut left = n;
    for i in 0..MULTISITE_SITES {
        let here = per_site.min(left);
        left -= here;
        // Three entries per site: sizes 0.5, 1 and 1.5 GiB, one archetype each.
        for (k, arch) in archetypes.iter().enumerate() {
            let count = here / 3 + usize::from(k < here % 3);
            if count == 0 {
                continue;
            }
            let mib = 512 * (k + 1);
            s += &format!("[[vms]]\nname = \"s{i}-{arch}\"\ncount = {count}\nsite = \"s{i}\"\narchetype = \"{arch}\"\nmemory = \"{mib}MiB\"\n");
        }
    }
    for i in (0..MULTISITE_SITES).step_by(3).take(16) {
        let j = (i + 4) % MULTISITE_SITES;
        s += &format!("[[evacuations]]\nname = \"evacuate-s{i}\"\nfrom = \"s{i}\"\nto = \"s{j}\"\n");
    }
    s
}

/// Sites `a` and `b` of `hosts` hosts each, joined by one link `a-b`.
fn two_sites(hosts: usize, bandwidth: &str, latency: &str) -> String {
    format!(
        r#"[[sites]]
name = "a"
hosts = [{{ name = "a-h", count = {hosts}, cores = 128, ram = "64GiB" }}]
[[sites]]
name = "b"
hosts = [{{ name = "b-h", count = {hosts}, cores = 128, ram = "64GiB" }}]
[[links]]
name = "a-b"
between = ["a", "b"]
bandwidth = "{bandwidth}"
latency = "{latency}"
"#
    )
}

/// Hosts hold this many VMs each in the benchmark fabric.
const VMS_PER_HOST: usize = 32;

/// The benchmark scenario: `n` web VMs of 1 GiB at site `a`, all evacuated to
/// site `b` at once over one 100 Gbit/s, 20 ms link.
pub fn evacuation_scenario(n: usize) -> String {
    let hosts = n.div_ceil(VMS_PER_HOST).max(1);
    let fabric = two_sites(hosts, "100Gbit/s", "20ms");
    format!(
        r#"[scenario]
name = "bench-evacuation-{n}"
seed = 7
{fabric}[[vms]]
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
    /// VMs in the scenario.
    pub vms: usize,
    /// Migrations started.
    pub migrations: usize,
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
    /// Best CPU time of the repeats on the running thread, seconds (load + run).
    pub cpu_s: f64,
    /// Peak resident memory of the process so far, MiB (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
}

/// CPU time the calling thread has used, seconds: the first field of
/// `/proc/thread-self/schedstat` (nanoseconds on a CPU). `NaN` where it
/// cannot be read (off Linux), shown as `n/a`.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// The process's peak resident set size (`VmHWM` in `/proc/self/status`), MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One line of the `load` table: the loader against the whole-document parse.
#[derive(Debug, Clone)]
pub struct LoadRow {
    /// VMs in the scenario (one `[[vms]]` entry each).
    pub vms: usize,
    /// Bytes of scenario text.
    pub text_bytes: usize,
    /// Best wall time of the loader ([`scenario::parse`]), seconds.
    pub load_s: f64,
    /// Best wall time of [`scenario::parse_as_one_document`], seconds.
    pub whole_s: f64,
    /// Growth of the process's peak resident memory while the loader ran
    /// (first repeat), bytes; `None` where it cannot be measured.
    pub load_peak_bytes: Option<u64>,
    /// The same for the whole-document parse, measured after the loader.
    pub whole_peak_bytes: Option<u64>,
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// How much `f` raised the process's resident memory at its peak, bytes:
/// the peak (`VmHWM`) is first reset to the current size by writing `5` to
/// `/proc/self/clear_refs` (Linux 4.0 and later). `None` off Linux or where
/// the reset is refused.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_bytes("VmRSS");
    let out = f();
    let growth = match (reset, before, status_bytes("VmHWM")) {
        (true, Some(before), Some(peak)) => Some(peak.saturating_sub(before)),
        _ => None,
    };
    (out, growth)
}

/// Loads the `load` workload's scenario for each size with the loader and
/// then with the whole-document parse, `repeat` times each (the best time is
/// kept; memory is measured on the first repeat of each, the loader first,
/// so memory the loader freed and the process kept can only make the
/// whole-document figure smaller). Both must give the same scenario. Only
/// the first size's memory is measured in a fresh process: later sizes can
/// reuse what earlier ones freed ([`format_load_table`] says so).
pub fn run_load_bench(sizes: &[usize], repeat: usize) -> Result<Vec<LoadRow>, scenario::ScenarioError> {
    let mut rows = Vec::new();
    for &n in sizes {
        let text = listed_scenario(n);
        let timed = |parse: &dyn Fn() -> Result<scenario::Scenario, scenario::ScenarioError>| {
            let mut best = f64::INFINITY;
            let mut first = None;
            for i in 0..repeat.max(1) {
                let t0 = Instant::now();
                let (sc, peak) = if i == 0 { peak_growth(parse) } else { (parse(), None) };
                best = best.min(t0.elapsed().as_secs_f64());
                let sc = sc?;
                if i == 0 {
                    first = Some((sc.vms.len(), peak));
                }
            }
            Ok::<_, scenario::ScenarioError>((best, first.expect("ran at least once")))
        };
        let (load_s, (vms, load_peak_bytes)) = timed(&|| scenario::parse(&text, "bench"))?;
        let (whole_s, (whole_vms, whole_peak_bytes)) = timed(&|| scenario::parse_as_one_document(&text, "bench"))?;
        assert_eq!(vms, whole_vms, "the loader and the whole-document parse disagree");
        rows.push(LoadRow { vms, text_bytes: text.len(), load_s, whole_s, load_peak_bytes, whole_peak_bytes });
    }
    Ok(rows)
}

/// The `load` table: per size the text, both times, both peak memory
/// growths, those per VM entry and as multiples of the text, and the
/// loader's peak as a fraction of the whole-document parse's.
pub fn format_load_table(rows: &[LoadRow]) -> String {
    let mut s = format!(
        "{:>7} {:>11} {:>12} {:>9} {:>10} {:>13} {:>14} {:>12} {:>13} {:>11} {:>12} {:>10}\n",
        "vms",
        "text_bytes",
        "text_per_vm",
        "load_ms",
        "whole_ms",
        "load_peak_mib",
        "whole_peak_mib",
        "load_per_vm",
        "whole_per_vm",
        "load_x_text",
        "whole_x_text",
        "peak_ratio"
    );
    for r in rows {
        let na = || "n/a".to_string();
        let mib = |b: Option<u64>| b.map_or_else(na, |b| format!("{:.1}", b as f64 / 1048576.0));
        let per_vm = |b: Option<u64>| b.map_or_else(na, |b| format!("{:.0}", b as f64 / r.vms.max(1) as f64));
        let x_text = |b: Option<u64>| b.map_or_else(na, |b| format!("{:.2}", b as f64 / r.text_bytes.max(1) as f64));
        let ratio = match (r.load_peak_bytes, r.whole_peak_bytes) {
            (Some(a), Some(b)) if b > 0 => format!("{:.3}", a as f64 / b as f64),
            _ => na(),
        };
        s += &format!(
            "{:>7} {:>11} {:>12.0} {:>9.1} {:>10.1} {:>13} {:>14} {:>12} {:>13} {:>11} {:>12} {:>10}\n",
            r.vms,
            r.text_bytes,
            r.text_bytes as f64 / r.vms.max(1) as f64,
            r.load_s * 1e3,
            r.whole_s * 1e3,
            mib(r.load_peak_bytes),
            mib(r.whole_peak_bytes),
            per_vm(r.load_peak_bytes),
            per_vm(r.whole_peak_bytes),
            x_text(r.load_peak_bytes),
            x_text(r.whole_peak_bytes),
            ratio
        );
    }
    if rows.len() > 1 {
        s += "note: memory after the first size reuses what earlier sizes freed; measure one size per process\n";
    }
    s
}

/// Runs `workload` for each size, `repeat` times each (at least once),
/// keeping the best time. A size the scenario rules refuse (0 VMs, more than
/// [`scenario::VMS_MAX`]) is an error; the CLI refuses it earlier
/// ([`crate::cli_args::vm_count`]).
pub fn run_bench(workload: Workload, sizes: &[usize], repeat: usize) -> Result<Vec<BenchRow>, scenario::ScenarioError> {
    sizes
        .iter()
        .map(|&n| {
            let text = workload.scenario(n);
            let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
            let mut last = None;
            for _ in 0..repeat.max(1) {
                let (t0, cpu0) = (Instant::now(), thread_cpu_s());
                let sc = scenario::parse(&text, "bench")?;
                let out = run(&sc, None);
                best = best.min(t0.elapsed().as_secs_f64());
                best_cpu = best_cpu.min(thread_cpu_s() - cpu0);
                // Only the counts are kept: a repeat's results are freed
                // before the next repeat runs, so the peak is one run's.
                last = Some(BenchRow {
                    vms: sc.vms.len(),
                    migrations: out.migrations.len(),
                    completed: out.migrations.iter().filter(|m| m.outcome == Outcome::Completed).count(),
                    events: out.events_processed,
                    solves: out.flow_solves,
                    simulated_s: out.end_time.as_secs_f64(),
                    wall_s: 0.0,
                    cpu_s: 0.0,
                    peak_rss_mib: None,
                });
            }
            let row = last.expect("ran at least once");
            Ok(BenchRow { wall_s: best, cpu_s: best_cpu, peak_rss_mib: peak_rss_mib(), ..row })
        })
        .collect()
}

/// The log-log slope of a cost against migrations between two rows: 1 for
/// cost linear in N, 2 for quadratic (`None` if undefined).
fn loglog_slope_of(a: &BenchRow, b: &BenchRow, cost: impl Fn(&BenchRow) -> f64) -> Option<f64> {
    let (na, nb) = (a.migrations as f64, b.migrations as f64);
    let (ca, cb) = (cost(a), cost(b));
    (na > 0.0 && nb > 0.0 && na != nb && ca > 0.0 && cb > 0.0 && ca.is_finite() && cb.is_finite()).then(|| (cb / ca).ln() / (nb / na).ln())
}

/// The log-log slope of wall time against migrations between two rows.
pub fn loglog_slope(a: &BenchRow, b: &BenchRow) -> Option<f64> {
    loglog_slope_of(a, b, |r| r.wall_s)
}

/// The log-log slope of CPU time against migrations between two rows.
pub fn loglog_slope_cpu(a: &BenchRow, b: &BenchRow) -> Option<f64> {
    loglog_slope_of(a, b, |r| r.cpu_s)
}

/// The benchmark table as text. `bytes_per_vm` and `bytes_per_migration`
/// are the peak resident memory divided by the scenario's VMs and by the
/// migrations; `slope` and `cpu_slope` are [`loglog_slope`] and
/// [`loglog_slope_cpu`] from the row above (`-` on the first row);
/// `events_per_cpu_s` is events per second of CPU time.
pub fn format_table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:>7} {:>10} {:>9} {:>9} {:>9} {:>12} {:>10} {:>10} {:>12} {:>16} {:>14} {:>13} {:>12} {:>19} {:>6} {:>9}\n",
        "vms",
        "migrations",
        "completed",
        "events",
        "solves",
        "simulated_s",
        "wall_ms",
        "cpu_ms",
        "events_per_s",
        "events_per_cpu_s",
        "vms_per_wall_s",
        "peak_rss_mib",
        "bytes_per_vm",
        "bytes_per_migration",
        "slope",
        "cpu_slope"
    );
    for (i, r) in rows.iter().enumerate() {
        let slope = i.checked_sub(1).and_then(|j| loglog_slope(&rows[j], r));
        let cpu_slope = i.checked_sub(1).and_then(|j| loglog_slope_cpu(&rows[j], r));
        let cpu = |text: String| if r.cpu_s.is_finite() { text } else { "n/a".to_string() };
        let per = |count: usize| r.peak_rss_mib.map_or("n/a".to_string(), |m| format!("{:.0}", m * 1048576.0 / count.max(1) as f64));
        s += &format!(
            "{:>7} {:>10} {:>9} {:>9} {:>9} {:>12.3} {:>10.1} {:>10} {:>12.0} {:>16} {:>14.0} {:>13} {:>12} {:>19} {:>6} {:>9}\n",
            r.vms,
            r.migrations,
            r.completed,
            r.events,
            r.solves,
            r.simulated_s,
            r.wall_s * 1e3,
            cpu(format!("{:.1}", r.cpu_s * 1e3)),
            r.events as f64 / r.wall_s,
            cpu(format!("{:.0}", r.events as f64 / r.cpu_s)),
            r.migrations as f64 / r.wall_s,
            r.peak_rss_mib.map_or("n/a".to_string(), |m| format!("{m:.1}")),
            per(r.vms),
            per(r.migrations),
            slope.map_or("-".to_string(), |x| format!("{x:.2}")),
            cpu_slope.map_or("-".to_string(), |x| format!("{x:.2}"))
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_scenario_runs_and_completes() {
        let rows = run_bench(Workload::Evacuation, &[40], 1).unwrap();
        assert_eq!(rows[0].vms, 40);
        assert_eq!(rows[0].completed, 40);
        assert!(rows[0].events > 40 && rows[0].solves > 0);
        let table = format_table(&rows);
        assert!(table.lines().count() == 2 && table.contains("events_per_s"));
    }

    #[test]
    fn the_simgrid_workload_spreads_sizes_and_completes() {
        let sc = scenario::parse(&simgrid_scenario(30), "bench").unwrap();
        assert_eq!(sc.vms.len(), 30);
        let mib = |i: usize| sc.vms[i].memory.0 >> 20;
        // 30 sizes evenly over 512..=1536 MiB, in declaration order.
        assert_eq!((mib(0), mib(29)), (512, 1536));
        assert_eq!(mib(1), 512 + (1024 + 14) / 29);
        let rows = run_bench(Workload::Simgrid, &[30], 1).unwrap();
        assert_eq!((rows[0].migrations, rows[0].completed), (30, 30));
    }

    #[test]
    fn the_multisite_workload_evacuates_a_third_over_four_links() {
        let sc = scenario::parse(&multisite_scenario(1500), "bench").unwrap();
        assert_eq!((sc.vms.len(), sc.fabric.sites.len(), sc.fabric.hosts.len()), (1500, 50, 150));
        let rows = run_bench(Workload::Multisite, &[1500], 1).unwrap();
        // 16 sites of 30 VMs each.
        assert_eq!(rows[0].migrations, 480);
        assert_eq!(rows[0].completed, 480);
    }

    #[test]
    fn the_load_workload_lists_every_vm_and_compares_two_parses() {
        let text = execute(Workload::Load, &[], 1, Some(40)).unwrap();
        assert_eq!(text.matches("[[vms]]").count(), 40);
        let sc = scenario::parse(&text, "bench").unwrap();
        assert_eq!((sc.vms.len(), sc.vms[39].name.as_str(), sc.vms[39].memory.0 >> 20), (40, "vm-000039", 512 + 39));
        let rows = run_load_bench(&[40, 80], 1).unwrap();
        assert_eq!((rows[0].vms, rows[0].text_bytes, rows[1].vms), (40, text.len(), 80));
        let table = format_load_table(&rows);
        assert!(table.lines().next().unwrap().contains("load_x_text") && table.lines().count() == 4, "{table}");
        assert!(table.lines().last().unwrap().starts_with("note: "), "{table}");
    }

    #[test]
    fn slope_is_the_log_log_ratio() {
        let row = |migrations: usize, wall_s: f64| BenchRow {
            vms: migrations,
            migrations,
            completed: migrations,
            events: 0,
            solves: 0,
            simulated_s: 0.0,
            wall_s,
            cpu_s: wall_s / 2.0,
            peak_rss_mib: None,
        };
        // 10x the migrations at 100x the time: quadratic.
        assert!((loglog_slope(&row(1000, 0.1), &row(10_000, 10.0)).unwrap() - 2.0).abs() < 1e-12);
        assert!((loglog_slope(&row(1000, 1.0), &row(10_000, 10.0)).unwrap() - 1.0).abs() < 1e-12);
        assert!((loglog_slope_cpu(&row(1000, 0.1), &row(10_000, 10.0)).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(loglog_slope(&row(1000, 1.0), &row(1000, 2.0)), None);
    }
}
