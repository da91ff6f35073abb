//! The `migrations` and `rounds` Parquet tables that the simulator and the
//! validator both write, the helpers every result table is built with
//! ([`col`], [`frame`], [`flatten`], [`column!`](crate::column)), and the
//! one Parquet writer ([`write_parquet`]) with its error ([`OutputError`]).
//! Column order and names here are the schema documented in
//! `docs/results.md`.

use crate::rows::{MigrationRow, RoundRow};
use memfabric_migration::record::UnknownName;
use polars::prelude::*;
use std::path::Path;
use std::str::FromStr;

/// Writing results failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file or folder could not be written.
    #[error("{path}: cannot write")]
    Io {
        /// What was being written.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A table could not be built or encoded.
    #[error("{path}: cannot write table")]
    Table {
        /// The table file.
        path: String,
        /// Why.
        #[source]
        source: polars::error::PolarsError,
    },
    /// `--out` names something that must not be replaced.
    #[error(transparent)]
    Out(#[from] crate::atomic_dir::OutDirError),
    /// A plot could not be drawn.
    #[error("{path}: cannot draw plot: {message}")]
    Plot {
        /// The plot file.
        path: String,
        /// Why.
        message: String,
    },
}


/// A named column from a vector of values.
pub fn col<T, P>(name: &str, values: T) -> Column
where
    Series: NamedFrom<T, P>,
    P: ?Sized,
{
    Column::new(name.into(), values)
}

/// A frame of columns of equal length `height`.
pub fn frame(height: usize, columns: Vec<Column>) -> DataFrame {
    DataFrame::new(height, columns).expect("columns have equal length")
}

/// Rows of several variants, flattened, and the `variant` column for them.
pub fn flatten<'a, R>(runs: &[(&str, &'a [R])]) -> (Column, Vec<&'a R>) {
    let variant: Vec<String> = runs.iter().flat_map(|(v, r)| std::iter::repeat_n(v.to_string(), r.len())).collect();
    let rows = runs.iter().flat_map(|(_, r)| r.iter()).collect();
    (col("variant", variant), rows)
}

/// A column named `$name` from a closure over the rows (as returned by [`flatten`]).
#[macro_export]
macro_rules! column {
    ($rows:expr, $name:literal, $f:expr) => {
        $crate::tables::col($name, $rows.iter().copied().map($f).collect::<Vec<_>>())
    };
}

/// The `migrations` table of several variants (`variant` is the first column).
pub fn migrations_frame(runs: &[(&str, &[MigrationRow])]) -> DataFrame {
    let (variant, rows) = flatten(runs);
    frame(
        rows.len(),
        vec![
            variant,
            column!(rows, "migration_id", |r| r.migration_id),
            column!(rows, "operation", |r| r.operation.clone()),
            column!(rows, "vm", |r| r.vm.clone()),
            column!(rows, "mechanism", |r| r.mechanism.to_string()),
            column!(rows, "strategy", |r| r.strategy.clone()),
            column!(rows, "cpu_threads", |r| r.cpu_threads),
            column!(rows, "src_site", |r| r.src_site.clone()),
            column!(rows, "dst_site", |r| r.dst_site.clone()),
            column!(rows, "src_host", |r| r.src_host.clone()),
            column!(rows, "dst_host", |r| r.dst_host.clone()),
            column!(rows, "memory_bytes", |r| r.memory_bytes),
            column!(rows, "streams", |r| r.streams),
            column!(rows, "rtt_ms", |r| r.rtt_ms),
            column!(rows, "start_s", |r| r.start_s),
            column!(rows, "end_s", |r| r.end_s),
            column!(rows, "total_time_s", |r| r.total_time_s),
            column!(rows, "downtime_ms", |r| r.downtime_ms),
            column!(rows, "rounds", |r| r.rounds),
            column!(rows, "bytes_on_wire", |r| r.bytes_on_wire),
            column!(rows, "bytes_precopy", |r| r.bytes_precopy),
            column!(rows, "bytes_stopcopy", |r| r.bytes_stopcopy),
            column!(rows, "bytes_postcopy", |r| r.bytes_postcopy),
            column!(rows, "bytes_index_sync", |r| r.bytes_index_sync),
            column!(rows, "outcome", |r| r.outcome.to_string()),
            column!(rows, "converged", |r| r.converged),
            column!(rows, "throttle_pct_max", |r| r.throttle_pct_max),
            column!(rows, "postcopy_faults", |r| r.postcopy_faults),
            column!(rows, "postcopy_fault_wait_ms", |r| r.postcopy_fault_wait_ms),
            column!(rows, "postcopy_guest_speed", |r| r.postcopy_guest_speed),
            column!(rows, "bottleneck", |r| r.bottleneck.clone()),
            column!(rows, "mean_rate_bytes_per_s", |r| r.mean_rate_bytes_per_s),
            column!(rows, "bytes_unreduced", |r| r.bytes_unreduced),
            column!(rows, "pages_zero", |r| r.pages_zero),
            column!(rows, "pages_dedup", |r| r.pages_dedup),
            column!(rows, "pages_delta", |r| r.pages_delta),
            column!(rows, "pages_compressed", |r| r.pages_compressed),
            column!(rows, "pages_raw", |r| r.pages_raw),
            column!(rows, "bytes_zero", |r| r.bytes_zero),
            column!(rows, "bytes_dedup", |r| r.bytes_dedup),
            column!(rows, "bytes_delta", |r| r.bytes_delta),
            column!(rows, "bytes_compressed", |r| r.bytes_compressed),
            column!(rows, "bytes_raw", |r| r.bytes_raw),
            column!(rows, "cpu_s_source", |r| r.cpu_s_source),
            column!(rows, "cpu_s_zero", |r| r.cpu_s_zero),
            column!(rows, "cpu_s_dedup", |r| r.cpu_s_dedup),
            column!(rows, "cpu_s_delta", |r| r.cpu_s_delta),
            column!(rows, "cpu_s_compress", |r| r.cpu_s_compress),
            column!(rows, "cpu_s_destination", |r| r.cpu_s_destination),
        ],
    )
}

/// The `rounds` table of several variants.
pub fn rounds_frame(runs: &[(&str, &[RoundRow])]) -> DataFrame {
    let (variant, rows) = flatten(runs);
    frame(
        rows.len(),
        vec![
            variant,
            column!(rows, "migration_id", |r| r.migration_id),
            column!(rows, "vm", |r| r.vm.clone()),
            column!(rows, "round", |r| r.round),
            column!(rows, "phase", |r| r.phase.to_string()),
            column!(rows, "start_s", |r| r.start_s),
            column!(rows, "end_s", |r| r.end_s),
            column!(rows, "pages", |r| r.pages),
            column!(rows, "bytes_on_wire", |r| r.bytes_on_wire),
            column!(rows, "rate_bytes_per_s", |r| r.rate_bytes_per_s),
            column!(rows, "dirty_pages", |r| r.dirty_pages),
            column!(rows, "throttle_pct", |r| r.throttle_pct),
            column!(rows, "complete", |r| r.complete),
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

/// A result table read back does not hold what its schema says.
#[derive(Debug, thiserror::Error)]
pub enum TableReadError {
    /// The column is missing or not a string column.
    #[error("{path}: column `{column}`: {message}")]
    Column {
        /// The table file.
        path: String,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A value is not one of the column's names (or is null).
    #[error("{path}: row {row}: column `{column}`: {detail}")]
    Value {
        /// The table file.
        path: String,
        /// Row index, from 0.
        row: usize,
        /// The column.
        column: &'static str,
        /// The value and the names accepted.
        detail: UnknownName,
    },
}

/// The values of an enum-valued string column (`outcome`, `mechanism`,
/// `phase`), each parsed by its name; an unknown name or a null is an error
/// naming the file, the row and the column, the value and every accepted
/// name. `path` is only for the messages.
pub fn enum_column<T>(df: &DataFrame, column: &'static str, path: &Path) -> Result<Vec<T>, TableReadError>
where
    T: FromStr<Err = UnknownName>,
{
    let path_s = || path.display().to_string();
    let bad = |message: String| TableReadError::Column { path: path_s(), column, message };
    let ca = df.column(column).map_err(|e| bad(e.to_string()))?.str().map_err(|e| bad(e.to_string()))?;
    (0..ca.len())
        .map(|row| {
            let v = ca.get(row);
            // A null parses as "", which is no enum's name, and says "(null)".
            v.unwrap_or("").parse::<T>().map_err(|detail| {
                let detail = if v.is_none() { UnknownName { value: "(null)".into(), ..detail } } else { detail };
                TableReadError::Value { path: path_s(), row, column, detail }
            })
        })
        .collect()
}

/// Reads a Parquet table (for tests, notebooks-in-Rust and the validator).
pub fn read_parquet(path: &Path) -> PolarsResult<DataFrame> {
    let file = std::fs::File::open(path)?;
    ParquetReader::new(file).finish()
}

#[cfg(test)]
mod tests;
