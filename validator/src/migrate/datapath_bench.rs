//! `memfabric-validator datapath-bench`: the CPU cost of the migration data
//! path per pipeline, against memcpy measured in the same run.
//!
//! It copies guest-sized memory with one thread (the baseline: GiB per CPU
//! second of `copy_from_slice` between two buffers larger than any cache),
//! then runs `migrate` on loopback `--runs` times per pipeline (as child
//! processes of this binary, each into its own result folder under
//! `--out`), keeps each pipeline's best run (least source + destination
//! CPU: the machine may be shared) and prints a markdown table: CPU
//! seconds per GiB of pages moved at each end, and each end's throughput
//! per CPU second as a fraction of memcpy's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use memfabric_migration::strategy::Strategy;
use memfabric_migration::units::Bytes;

use super::dest::DestReport;
use super::source::SourceReport;
use super::thread_cpu_s;

/// `datapath-bench`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct DatapathBenchArgs {
    /// Guest memory.
    #[arg(long, default_value = "1GiB", value_parser = Bytes::parse)]
    pub mem: Bytes,
    /// Pipelines, comma-separated.
    #[arg(long, default_value = "none,zero+lz4,zero+xbzrle+lz4,zstd", value_delimiter = ',')]
    pub pipelines: Vec<Strategy>,
    /// Page writes per second of the guest.
    #[arg(long = "dirty-rate", default_value_t = 5000.0)]
    pub dirty_rate: f64,
    /// Runs per pipeline (the best is kept).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// Extra arguments for every `migrate` (e.g. `--no-integrity-check`).
    #[arg(long = "migrate-arg", allow_hyphen_values = true)]
    pub migrate_args: Vec<String>,
    /// Run the migrations with this build of `memfabric-validator` instead
    /// of this one (to measure a baseline build in the same run).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Folder of the runs' result folders (each replaced by its next run).
    #[arg(long, default_value = "results/datapath-bench")]
    pub out: PathBuf,
}

/// One pipeline's best run.
#[derive(Debug, Clone, PartialEq)]
pub struct DatapathRow {
    /// Pipeline.
    pub pipeline: String,
    /// GiB of pages sent (all rounds).
    pub gib_moved: f64,
    /// Source CPU seconds per GiB moved.
    pub source_cpu_s_per_gib: f64,
    /// Destination CPU seconds per GiB moved.
    pub dest_cpu_s_per_gib: f64,
    /// Migration wall time, seconds.
    pub total_s: f64,
    /// Bytes on the wire.
    pub bytes_on_wire: u64,
}

/// GiB per CPU second of a one-thread memcpy between two buffers of
/// `bytes` (at most 256 MiB each; copied until `bytes` were moved).
pub fn memcpy_gib_per_cpu_s(bytes: u64) -> f64 {
    let len = bytes.clamp(4096, 256 << 20) as usize;
    let src: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
    let mut dst = vec![1u8; len];
    let mut moved = 0u64;
    let t0 = thread_cpu_s();
    while moved < bytes.max(len as u64) {
        dst.copy_from_slice(&src);
        moved += len as u64;
    }
    let secs = thread_cpu_s() - t0;
    std::hint::black_box(&dst);
    moved as f64 / (1u64 << 30) as f64 / secs.max(1e-9)
}

/// Reads one migration's result folder into a row.
pub fn row_from(dir: &Path) -> anyhow::Result<DatapathRow> {
    let read = |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("{}", dir.join(name).display()));
    let s: SourceReport = serde_json::from_slice(&read("source.json")?).context("source.json")?;
    let d: Option<DestReport> = serde_json::from_slice(&read("destination.json")?).context("destination.json")?;
    let Some(d) = d.filter(|d| d.outcome == "resumed") else {
        bail!("{}: the migration did not complete ({}: {})", dir.display(), s.outcome, s.error.unwrap_or_default());
    };
    let pages: u64 = s.rounds.iter().map(|r| r.pages).sum();
    let gib = (pages * memfabric_migration::PAGE_SIZE_BYTES) as f64 / (1u64 << 30) as f64;
    Ok(DatapathRow {
        pipeline: s.strategy,
        gib_moved: gib,
        source_cpu_s_per_gib: s.cpu_s_source / gib,
        dest_cpu_s_per_gib: d.cpu_s_destination / gib,
        total_s: (s.end_ns - s.start_ns) as f64 * 1e-9,
        bytes_on_wire: s.bytes_on_wire,
    })
}

/// The markdown table.
pub fn table(memcpy: f64, rows: &[DatapathRow]) -> String {
    let mut t = String::from(
        "| pipeline | GiB moved | source CPU s/GiB | dest CPU s/GiB | dest / source | source vs memcpy | dest vs memcpy | total s | bytes on wire |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        // Throughput per CPU second, as a fraction of memcpy's.
        let vs = |cpu_s_per_gib: f64| 1.0 / cpu_s_per_gib / memcpy;
        t += &format!(
            "| {} | {:.2} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} | {:.2} | {} |\n",
            r.pipeline,
            r.gib_moved,
            r.source_cpu_s_per_gib,
            r.dest_cpu_s_per_gib,
            r.dest_cpu_s_per_gib / r.source_cpu_s_per_gib,
            vs(r.source_cpu_s_per_gib),
            vs(r.dest_cpu_s_per_gib),
            r.total_s,
            r.bytes_on_wire
        );
    }
    t
}

/// Runs the benchmark and prints its table.
pub fn run(args: &DatapathBenchArgs) -> anyhow::Result<()> {
    let exe = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locating this binary")?,
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let memcpy = (0..args.runs).map(|_| memcpy_gib_per_cpu_s(args.mem.0)).fold(0.0, f64::max);
    let mut rows = Vec::new();
    for p in &args.pipelines {
        let mut best: Option<DatapathRow> = None;
        for run in 0..args.runs {
            let dir = args.out.join(format!("{}-{run}", p.to_string().replace('+', "_")));
            let status = Command::new(&exe)
                .arg("migrate")
                .args(["--mem", &format!("{}B", args.mem.0), "--pipeline", &p.to_string()])
                .args(["--dirty-rate", &args.dirty_rate.to_string()])
                .args(&args.migrate_args)
                .arg("--out")
                .arg(&dir)
                .stdout(Stdio::null())
                .status()
                .context("starting migrate")?;
            if !status.success() {
                bail!("migrate --pipeline {p} into {} failed ({status})", dir.display());
            }
            let row = row_from(&dir)?;
            eprintln!("{p} run {run}: source {:.3} dest {:.3} CPU s/GiB", row.source_cpu_s_per_gib, row.dest_cpu_s_per_gib);
            let cost = |r: &DatapathRow| r.source_cpu_s_per_gib + r.dest_cpu_s_per_gib;
            if best.as_ref().is_none_or(|b| cost(&row) < cost(b)) {
                best = Some(row);
            }
        }
        rows.extend(best);
    }
    println!("memcpy: {memcpy:.2} GiB per CPU second (one thread, best of {})\n", args.runs);
    print!("{}", table(memcpy, &rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcpy_baseline_is_a_plausible_rate() {
        let r = memcpy_gib_per_cpu_s(64 << 20);
        assert!(r > 0.1 && r < 1000.0, "{r} GiB/s");
    }

    #[test]
    fn table_shows_ratios_against_memcpy() {
        let row = DatapathRow {
            pipeline: "zero+lz4".into(),
            gib_moved: 1.0,
            source_cpu_s_per_gib: 0.5,
            dest_cpu_s_per_gib: 0.25,
            total_s: 1.5,
            bytes_on_wire: 42,
        };
        let t = table(2.0, &[row]);
        // dest: 4 GiB per CPU second = 2 × memcpy's 2; source: 2 = 1 ×.
        assert!(t.contains("| zero+lz4 | 1.00 | 0.500 | 0.250 | 0.50 | 1.000 | 2.000 | 1.50 | 42 |"), "{t}");
    }
}
