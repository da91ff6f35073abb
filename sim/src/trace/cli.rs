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
        #[arg(long, value_parser = crate::cli_args::archetype())]
        archetype: String,
        /// Guest memory, e.g. "64MiB", at most 64GiB (default: the archetype's).
        #[arg(long, value_parser = crate::cli_args::trace_memory())]
        memory: Option<Bytes>,
        /// Trace length, a whole number of epochs (at most 86400 epochs).
        #[arg(long, default_value = "60s", value_parser = crate::cli_args::positive_duration())]
        duration: Nanos,
        /// Epoch length (dirty-log sync interval).
        #[arg(long, default_value = "1s", value_parser = crate::cli_args::positive_duration())]
        epoch: Nanos,
        /// Seed of every random draw.
        #[arg(long, default_value_t = super::gen::DEFAULT_SEED)]
        seed: u64,
        /// Image name shared-image pages derive from (default: the archetype).
        #[arg(long)]
        image: Option<String>,
        /// VM name in the manifest (default: the archetype).
        #[arg(long)]
        vm: Option<String>,
        /// Trace directory to write: new, empty, or a previous trace (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// Also replace a memfabric folder of another kind, or a trace holding extra files.
        #[arg(long)]
        force: bool,
    },
    /// Print statistics of traces (duplicates across the set count earlier traces).
    Stats {
        /// Trace directories (files among them, such as a README, are skipped with a note).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Also draw the working-set growth plot (PNG and SVG) into this directory.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

/// `trace stats` was given nothing to summarise.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Every path given was a file.
    #[error("no trace folders among the paths given")]
    NoTraces,
}

/// Runs a `trace` subcommand.
pub fn execute(command: TraceCommand) -> anyhow::Result<()> {
    match command {
        TraceCommand::Gen { archetype, memory, duration, epoch, seed, image, vm, out, force } => {
            crate::atomic_dir::check_target(&out, crate::atomic_dir::DirKind::Trace, force)?;
            let mut cfg = GenConfig::for_archetype(&archetype).ok_or_else(|| {
                anyhow!(
                    "unknown archetype {archetype:?}; expected one of {}",
                    crate::workload::archetype::NAMES.join(", ")
                )
            })?;
            if let Some(m) = memory {
                cfg.memory_bytes = m.0;
            }
            cfg.duration_ns = duration.0;
            cfg.epoch_ns = epoch.0;
            cfg.seed = seed;
            if let Some(i) = image {
                cfg.image = i;
            }
            if let Some(v) = vm {
                cfg.vm = v;
            }
            let trace = generate(&cfg)?;
            trace.write_replacing(&out, force).with_context(|| format!("writing trace {}", out.display()))?;
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
                // A shell glob such as `traces/*` also names the README.
                if std::fs::metadata(&d).is_ok_and(|m| !m.is_dir()) {
                    eprintln!("note: skipping {}: not a trace folder", d.display());
                    continue;
                }
                let t = Trace::read(&d).with_context(|| format!("reading trace {}", d.display()))?;
                traces.push((d.display().to_string(), t));
            }
            if traces.is_empty() {
                return Err(StatsError::NoTraces.into());
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
