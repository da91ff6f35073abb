//! `memfabric trace gen` and `memfabric trace stats` (the binary's edge, so
//! errors are `anyhow`).

use super::gen::{generate, GenConfig};
use super::stats::{format_table, plot_growth, stats};
use super::Trace;
use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use memfabric_migration::units::{Bytes, Nanos};
use std::path::PathBuf;

/// The `trace` subcommands.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Generate a synthetic trace from a workload archetype (deterministic for a seed).
    Gen {
        /// Archetype (see `memfabric archetypes`).
        #[arg(long)]
        archetype: String,
        /// Guest memory, e.g. "64MiB" (default: the archetype's).
        #[arg(long)]
        memory: Option<String>,
        /// Trace length, a whole number of epochs.
        #[arg(long, default_value = "60s")]
        duration: String,
        /// Epoch length (dirty-log sync interval).
        #[arg(long, default_value = "1s")]
        epoch: String,
        /// Seed of every random draw.
        #[arg(long, default_value_t = super::gen::DEFAULT_SEED)]
        seed: u64,
        /// Image name shared-image pages derive from (default: the archetype).
        #[arg(long)]
        image: Option<String>,
        /// VM name in the manifest (default: the archetype).
        #[arg(long)]
        vm: Option<String>,
        /// Trace directory to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print statistics of traces (duplicates across the set count earlier traces).
    Stats {
        /// Trace directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Also draw the working-set growth plot (PNG and SVG) into this directory.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

/// Runs a `trace` subcommand.
pub fn execute(command: TraceCommand) -> anyhow::Result<()> {
    match command {
        TraceCommand::Gen { archetype, memory, duration, epoch, seed, image, vm, out } => {
            let mut cfg = GenConfig::for_archetype(&archetype).ok_or_else(|| {
                anyhow!(
                    "unknown archetype {archetype:?}; expected one of {}",
                    crate::workload::archetype::NAMES.join(", ")
                )
            })?;
            if let Some(m) = memory {
                cfg.memory_bytes = Bytes::parse(&m).context("--memory")?.0;
            }
            cfg.duration_ns = Nanos::parse(&duration).context("--duration")?.0;
            cfg.epoch_ns = Nanos::parse(&epoch).context("--epoch")?.0;
            cfg.seed = seed;
            if let Some(i) = image {
                cfg.image = i;
            }
            if let Some(v) = vm {
                cfg.vm = v;
            }
            let trace = generate(&cfg)?;
            trace.write(&out).with_context(|| format!("writing trace {}", out.display()))?;
            println!(
                "{}: {} pages, {} epochs, {} dirtied-page rows (seed {seed})",
                out.display(),
                trace.manifest.pages,
                trace.manifest.epochs,
                trace.epochs.len()
            );
            Ok(())
        }
        TraceCommand::Stats { dirs, plot } => {
            let mut traces = Vec::with_capacity(dirs.len());
            for d in dirs {
                let t = Trace::read(&d).with_context(|| format!("reading trace {}", d.display()))?;
                traces.push((d.display().to_string(), t));
            }
            let s = stats(&traces);
            print!("{}", format_table(&s));
            if let Some(dir) = plot {
                if s.is_empty() {
                    bail!("no traces to plot");
                }
                plot_growth(&s, &dir)?;
                println!("\nplot: {}", dir.join(super::stats::PLOT_STEM).display());
            }
            Ok(())
        }
    }
}
