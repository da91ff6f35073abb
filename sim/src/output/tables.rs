//! The Parquet tables. Column order and names here are the schema documented
//! in `docs/results.md`; the validator writes the same `migrations` and
//! `rounds` columns.

use super::OutputError;
use crate::mechanism::{MigrationRow, RoundRow};
use crate::run::LinkRow;
use polars::prelude::*;
use std::path::Path;

fn col<T, P>(name: &str, values: T) -> Column
where
    Series: NamedFrom<T, P>,
    P: ?Sized,
{
    Column::new(name.into(), values)
}

fn frame(height: usize, columns: Vec<Column>) -> DataFrame {
    DataFrame::new(height, columns).expect("columns have equal length")
}

/// The `migrations` table of several variants (`variant` is the first column).
pub fn migrations_frame(runs: &[(&str, &[MigrationRow])]) -> DataFrame {
    let variant: Vec<String> = runs.iter().flat_map(|(v, r)| std::iter::repeat_n(v.to_string(), r.len())).collect();
    let rows: Vec<&MigrationRow> = runs.iter().flat_map(|(_, r)| r.iter()).collect();
    macro_rules! c {
        ($name:literal, $f:expr) => {
            col($name, rows.iter().copied().map($f).collect::<Vec<_>>())
        };
    }
    frame(
        rows.len(),
        vec![
            col("variant", variant),
            c!("migration_id", |r| r.migration_id),
            c!("operation", |r| r.operation.clone()),
            c!("vm", |r| r.vm.clone()),
            c!("mechanism", |r| r.mechanism.to_string()),
            c!("strategy", |r| r.strategy.clone()),
            c!("cpu_threads", |r| r.cpu_threads),
            c!("src_site", |r| r.src_site.clone()),
            c!("dst_site", |r| r.dst_site.clone()),
            c!("src_host", |r| r.src_host.clone()),
            c!("dst_host", |r| r.dst_host.clone()),
            c!("memory_bytes", |r| r.memory_bytes),
            c!("streams", |r| r.streams),
            c!("rtt_ms", |r| r.rtt_ms),
            c!("start_s", |r| r.start_s),
            c!("end_s", |r| r.end_s),
            c!("total_time_s", |r| r.total_time_s),
            c!("downtime_ms", |r| r.downtime_ms),
            c!("rounds", |r| r.rounds),
            c!("bytes_on_wire", |r| r.bytes_on_wire),
            c!("bytes_precopy", |r| r.bytes_precopy),
            c!("bytes_stopcopy", |r| r.bytes_stopcopy),
            c!("bytes_postcopy", |r| r.bytes_postcopy),
            c!("bytes_index_sync", |r| r.bytes_index_sync),
            c!("outcome", |r| r.outcome.to_string()),
            c!("converged", |r| r.converged),
            c!("throttle_pct_max", |r| r.throttle_pct_max),
            c!("postcopy_faults", |r| r.postcopy_faults),
            c!("postcopy_fault_wait_ms", |r| r.postcopy_fault_wait_ms),
            c!("postcopy_guest_speed", |r| r.postcopy_guest_speed),
            c!("bottleneck", |r| r.bottleneck.clone()),
            c!("mean_rate_bytes_per_s", |r| r.mean_rate_bytes_per_s),
            c!("bytes_unreduced", |r| r.bytes_unreduced),
            c!("pages_zero", |r| r.pages_zero),
            c!("pages_dedup", |r| r.pages_dedup),
            c!("pages_delta", |r| r.pages_delta),
            c!("pages_compressed", |r| r.pages_compressed),
            c!("pages_raw", |r| r.pages_raw),
            c!("bytes_zero", |r| r.bytes_zero),
            c!("bytes_dedup", |r| r.bytes_dedup),
            c!("bytes_delta", |r| r.bytes_delta),
            c!("bytes_compressed", |r| r.bytes_compressed),
            c!("bytes_raw", |r| r.bytes_raw),
            c!("cpu_s_source", |r| r.cpu_s_source),
            c!("cpu_s_zero", |r| r.cpu_s_zero),
            c!("cpu_s_dedup", |r| r.cpu_s_dedup),
            c!("cpu_s_delta", |r| r.cpu_s_delta),
            c!("cpu_s_compress", |r| r.cpu_s_compress),
            c!("cpu_s_destination", |r| r.cpu_s_destination),
        ],
    )
}

/// The `rounds` table of several variants.
pub fn rounds_frame(runs: &[(&str, &[RoundRow])]) -> DataFrame {
    let variant: Vec<String> = runs.iter().flat_map(|(v, r)| std::iter::repeat_n(v.to_string(), r.len())).collect();
    let rows: Vec<&RoundRow> = runs.iter().flat_map(|(_, r)| r.iter()).collect();
    macro_rules! c {
        ($name:literal, $f:expr) => {
            col($name, rows.iter().copied().map($f).collect::<Vec<_>>())
        };
    }
    frame(
        rows.len(),
        vec![
            col("variant", variant),
            c!("migration_id", |r| r.migration_id),
            c!("vm", |r| r.vm.clone()),
            c!("round", |r| r.round),
            c!("phase", |r| r.phase.to_string()),
            c!("start_s", |r| r.start_s),
            c!("end_s", |r| r.end_s),
            c!("pages", |r| r.pages),
            c!("bytes_on_wire", |r| r.bytes_on_wire),
            c!("rate_bytes_per_s", |r| r.rate_bytes_per_s),
            c!("dirty_pages", |r| r.dirty_pages),
            c!("throttle_pct", |r| r.throttle_pct),
            c!("complete", |r| r.complete),
        ],
    )
}

/// The `links` table of several variants.
pub fn links_frame(runs: &[(&str, &[LinkRow])]) -> DataFrame {
    let variant: Vec<String> = runs.iter().flat_map(|(v, r)| std::iter::repeat_n(v.to_string(), r.len())).collect();
    let rows: Vec<&LinkRow> = runs.iter().flat_map(|(_, r)| r.iter()).collect();
    macro_rules! c {
        ($name:literal, $f:expr) => {
            col($name, rows.iter().copied().map($f).collect::<Vec<_>>())
        };
    }
    frame(
        rows.len(),
        vec![
            col("variant", variant),
            c!("time_s", |r| r.time_s),
            c!("link", |r| r.link.clone()),
            c!("from_site", |r| r.from_site.clone()),
            c!("to_site", |r| r.to_site.clone()),
            c!("capacity_bytes_per_s", |r| r.capacity_bytes_per_s),
            c!("throughput_bytes_per_s", |r| r.throughput_bytes_per_s),
            c!("utilisation", |r| r.utilisation),
            c!("flows", |r| r.flows),
        ],
    )
}

/// Writes a frame as Parquet (zstd, single-threaded so the bytes are the same
/// on every run), with `provenance` as the file's key-value metadata so that a
/// table on its own still says which run made it.
pub fn write_parquet(df: &mut DataFrame, path: &Path, provenance: &[(String, String)]) -> Result<(), OutputError> {
    let file = std::fs::File::create(path).map_err(|source| OutputError::Io { path: path.display().to_string(), source })?;
    ParquetWriter::new(file)
        .set_parallel(false)
        .with_key_value_metadata(Some(KeyValueMetadata::from_static(provenance.to_vec())))
        .finish(df)
        .map_err(|source| OutputError::Table { path: path.display().to_string(), source })?;
    Ok(())
}

/// Reads a Parquet table (for tests, notebooks-in-Rust and the validator).
pub fn read_parquet(path: &Path) -> PolarsResult<DataFrame> {
    let file = std::fs::File::open(path)?;
    ParquetReader::new(file).finish()
}
