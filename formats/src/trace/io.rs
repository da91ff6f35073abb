//! Reading and writing the three files of a trace.

use super::{
    validate_manifest, DirtyPage, Manifest, SnapshotPage, Trace, TraceError, EPOCHS_FILE, FORMAT_NAME, FORMAT_VERSION,
    MANIFEST_FILE, METADATA_VERSION_KEY, SNAPSHOT_FILE, SUPPORTED_VERSIONS,
};
use memfabric_migration::pipeline::hash::ContentHash;
use polars::prelude::*;
use std::path::Path;

/// Columns of `snapshot.parquet`, in order.
pub(super) const SNAPSHOT_COLUMNS: [(&str, DataType); 6] = [
    ("page_index", DataType::UInt64),
    ("hash_hi", DataType::UInt64),
    ("hash_lo", DataType::UInt64),
    ("zero", DataType::Boolean),
    ("lz4_bytes", DataType::UInt32),
    ("zstd_bytes", DataType::UInt32),
];

/// Columns of `epochs.parquet`, in order.
pub(super) const EPOCHS_COLUMNS: [(&str, DataType); 8] = [
    ("epoch", DataType::UInt32),
    ("time_ns", DataType::UInt64),
    ("page_index", DataType::UInt64),
    ("hash_hi", DataType::UInt64),
    ("hash_lo", DataType::UInt64),
    ("delta_bytes", DataType::UInt32),
    ("lz4_bytes", DataType::UInt32),
    ("zstd_bytes", DataType::UInt32),
];

fn type_name(t: &DataType) -> &'static str {
    match t {
        DataType::UInt64 => "u64",
        DataType::UInt32 => "u32",
        DataType::Boolean => "bool",
        _ => "other",
    }
}

fn io_err(file: &Path) -> impl FnOnce(std::io::Error) -> TraceError + '_ {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TraceError::Missing { file: file.into() }
        } else {
            TraceError::Io { file: file.into(), source }
        }
    }
}

fn input_err(e: crate::input::InputError) -> TraceError {
    match e {
        crate::input::InputError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            TraceError::Missing { file: path }
        }
        e => TraceError::Input(e),
    }
}

/// Key of the manifest holding the xxh3-64 of each table file's bytes
/// (`{"snapshot": "<16 hex>", "epochs": "<16 hex>"}`): written by [`write`],
/// checked by [`read`] before a table is decoded, so a corrupt table is
/// refused here rather than handed to the Parquet decoder (which aborts the
/// process on some corrupt pages; docs/development.md, Reliability). It is a
/// property of the files, not of the trace, so it never reaches [`Manifest`];
/// traces written before it existed have none and are read unchecked.
pub(super) const TABLES_XXH3_KEY: &str = "tables_xxh3";

pub(super) fn read(dir: &Path) -> Result<Trace, TraceError> {
    let (manifest, sums) = read_manifest(&dir.join(MANIFEST_FILE))?;
    let snapshot = read_snapshot(&dir.join(SNAPSHOT_FILE), sums.as_ref().map(|s| s.snapshot.as_str()))?;
    let epochs = read_epochs(&dir.join(EPOCHS_FILE), sums.as_ref().map(|s| s.epochs.as_str()))?;
    let mut trace = Trace { manifest, snapshot, epochs };
    trace.validate(dir)?;
    trace.snapshot.sort_unstable_by_key(|p| p.page_index);
    Ok(trace)
}

/// Reads the manifest, checking the format name and version before the rest
/// of the schema so that a newer trace is refused for its version, not for a
/// field this reader does not know.
fn read_manifest(file: &Path) -> Result<(Manifest, Option<TableSums>), TraceError> {
    let text = crate::input::read_text(file, crate::input::TRACE_MANIFEST_BYTES_MAX, "a trace manifest").map_err(input_err)?;
    let json = |source| TraceError::Json { file: file.into(), source };
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(json)?;
    if let Some(format) = value.get("format") {
        if format.as_str() != Some(FORMAT_NAME) {
            return Err(TraceError::UnknownFormat {
                file: file.into(),
                found: format.to_string().trim_matches('"').into(),
            });
        }
    }
    if let Some(version) = value.get("format_version") {
        if !version.as_u64().is_some_and(|v| SUPPORTED_VERSIONS.iter().any(|&s| u64::from(s) == v)) {
            return Err(TraceError::UnsupportedVersion {
                file: file.into(),
                found: version.to_string(),
                supported: SUPPORTED_VERSIONS.to_vec(),
            });
        }
    }
    let sums = match value.as_object_mut().and_then(|m| m.remove(TABLES_XXH3_KEY)) {
        Some(v) => Some(serde_json::from_value::<TableSums>(v).map_err(json)?),
        None => None,
    };
    let manifest: Manifest = serde_json::from_value(value).map_err(json)?;
    validate_manifest(&manifest, file)?;
    Ok((manifest, sums))
}

/// The value of [`TABLES_XXH3_KEY`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSums {
    snapshot: String,
    epochs: String,
}

fn xxh3_hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Reads a Parquet table, checks its version metadata and its columns
/// (exactly `columns`, with those types, without nulls).
fn read_table(file: &Path, columns: &[(&'static str, DataType)], xxh3: Option<&str>) -> Result<DataFrame, TraceError> {
    let bytes = crate::input::read_bytes(file, crate::input::TRACE_TABLE_BYTES_MAX, "a trace table").map_err(input_err)?;
    if let Some(expected) = xxh3 {
        let found = xxh3_hex(&bytes);
        if found != expected {
            return Err(TraceError::TableChecksum { file: file.into(), expected: expected.to_string(), found });
        }
    }
    let parquet = |source| TraceError::Parquet { file: file.into(), source };
    let mut reader = ParquetReader::new(std::io::Cursor::new(bytes));
    let version =
        reader.get_metadata().map_err(parquet)?.key_value_metadata.as_ref().and_then(|kv| {
            kv.iter().find(|k| k.key == METADATA_VERSION_KEY).map(|k| k.value.clone().unwrap_or_default())
        });
    match version {
        None => return Err(TraceError::NoVersionMetadata { file: file.into() }),
        Some(v) if v.parse::<u32>().is_ok_and(|v| SUPPORTED_VERSIONS.contains(&v)) => {}
        Some(v) => {
            return Err(TraceError::UnsupportedVersion {
                file: file.into(),
                found: v,
                supported: SUPPORTED_VERSIONS.to_vec(),
            })
        }
    }
    let df = reader.finish().map_err(parquet)?;
    for &(column, ref dtype) in columns {
        let expected = type_name(dtype);
        let c = df.column(column).map_err(|_| TraceError::MissingColumn { file: file.into(), column, expected })?;
        if c.dtype() != dtype {
            return Err(TraceError::ColumnType { file: file.into(), column, expected, found: c.dtype().to_string() });
        }
        if c.null_count() > 0 {
            return Err(TraceError::Nulls { file: file.into(), column, nulls: c.null_count() });
        }
    }
    if let Some(extra) = df.columns().iter().find(|c| !columns.iter().any(|(n, _)| c.name().as_str() == *n)) {
        return Err(TraceError::UnexpectedColumn { file: file.into(), column: extra.name().to_string() });
    }
    Ok(df)
}

/// The values of a checked column (type and nulls were checked by [`read_table`]).
fn values<T>(df: &DataFrame, name: &str, get: impl Fn(&Column) -> PolarsResult<Vec<T>>) -> Vec<T> {
    get(df.column(name).expect("checked")).expect("checked")
}

fn u64s(df: &DataFrame, name: &str) -> Vec<u64> {
    values(df, name, |c| Ok(c.u64()?.into_no_null_iter().collect()))
}

fn u32s(df: &DataFrame, name: &str) -> Vec<u32> {
    values(df, name, |c| Ok(c.u32()?.into_no_null_iter().collect()))
}

fn hashes(df: &DataFrame) -> Vec<ContentHash> {
    let hi = u64s(df, "hash_hi");
    let lo = u64s(df, "hash_lo");
    hi.iter().zip(&lo).map(|(&h, &l)| ContentHash((u128::from(h) << 64) | u128::from(l))).collect()
}

fn read_snapshot(file: &Path, xxh3: Option<&str>) -> Result<Vec<SnapshotPage>, TraceError> {
    let df = read_table(file, &SNAPSHOT_COLUMNS, xxh3)?;
    let page_index = u64s(&df, "page_index");
    let hash = hashes(&df);
    let zero: Vec<bool> =
        values(&df, "zero", |c| Ok(c.bool()?.downcast_iter().flat_map(|a| a.values_iter()).collect()));
    let lz4 = u32s(&df, "lz4_bytes");
    let zstd = u32s(&df, "zstd_bytes");
    Ok((0..df.height())
        .map(|i| SnapshotPage {
            page_index: page_index[i],
            hash: hash[i],
            zero: zero[i],
            lz4_bytes: lz4[i],
            zstd_bytes: zstd[i],
        })
        .collect())
}

fn read_epochs(file: &Path, xxh3: Option<&str>) -> Result<Vec<DirtyPage>, TraceError> {
    let df = read_table(file, &EPOCHS_COLUMNS, xxh3)?;
    let epoch = u32s(&df, "epoch");
    let time_ns = u64s(&df, "time_ns");
    let page_index = u64s(&df, "page_index");
    let hash = hashes(&df);
    let delta = u32s(&df, "delta_bytes");
    let lz4 = u32s(&df, "lz4_bytes");
    let zstd = u32s(&df, "zstd_bytes");
    Ok((0..df.height())
        .map(|i| DirtyPage {
            epoch: epoch[i],
            time_ns: time_ns[i],
            page_index: page_index[i],
            hash: hash[i],
            delta_bytes: delta[i],
            lz4_bytes: lz4[i],
            zstd_bytes: zstd[i],
        })
        .collect())
}

fn col<T, P>(name: &str, values: T) -> Column
where
    Series: NamedFrom<T, P>,
    P: ?Sized,
{
    Column::new(name.into(), values)
}

fn hash_columns(hashes: impl Iterator<Item = ContentHash> + Clone) -> [Column; 2] {
    [
        col("hash_hi", hashes.clone().map(|h| (h.0 >> 64) as u64).collect::<Vec<_>>()),
        col("hash_lo", hashes.map(|h| h.0 as u64).collect::<Vec<_>>()),
    ]
}

fn snapshot_frame(snapshot: &[SnapshotPage]) -> PolarsResult<DataFrame> {
    let mut rows: Vec<&SnapshotPage> = snapshot.iter().collect();
    rows.sort_unstable_by_key(|p| p.page_index);
    let [hi, lo] = hash_columns(rows.iter().map(|p| p.hash));
    DataFrame::new(
        rows.len(),
        vec![
            col("page_index", rows.iter().map(|p| p.page_index).collect::<Vec<_>>()),
            hi,
            lo,
            col("zero", rows.iter().map(|p| p.zero).collect::<Vec<_>>()),
            col("lz4_bytes", rows.iter().map(|p| p.lz4_bytes).collect::<Vec<_>>()),
            col("zstd_bytes", rows.iter().map(|p| p.zstd_bytes).collect::<Vec<_>>()),
        ],
    )
}

fn epochs_frame(epochs: &[DirtyPage]) -> PolarsResult<DataFrame> {
    let [hi, lo] = hash_columns(epochs.iter().map(|d| d.hash));
    DataFrame::new(
        epochs.len(),
        vec![
            col("epoch", epochs.iter().map(|d| d.epoch).collect::<Vec<_>>()),
            col("time_ns", epochs.iter().map(|d| d.time_ns).collect::<Vec<_>>()),
            col("page_index", epochs.iter().map(|d| d.page_index).collect::<Vec<_>>()),
            hi,
            lo,
            col("delta_bytes", epochs.iter().map(|d| d.delta_bytes).collect::<Vec<_>>()),
            col("lz4_bytes", epochs.iter().map(|d| d.lz4_bytes).collect::<Vec<_>>()),
            col("zstd_bytes", epochs.iter().map(|d| d.zstd_bytes).collect::<Vec<_>>()),
        ],
    )
}

/// Writes `df` as Parquet (zstd, single-threaded so that the bytes are the
/// same on every run) with the format version as key-value metadata.
fn write_table(df: PolarsResult<DataFrame>, file: &Path) -> Result<(), TraceError> {
    let parquet = |source| TraceError::Parquet { file: file.into(), source };
    let mut df = df.map_err(parquet)?;
    let f = std::fs::File::create(file).map_err(io_err(file))?;
    let meta = vec![
        (METADATA_VERSION_KEY.to_string(), FORMAT_VERSION.to_string()),
        ("memfabric.version".to_string(), crate::VERSION.to_string()),
    ];
    ParquetWriter::new(f)
        .set_parallel(false)
        .with_key_value_metadata(Some(KeyValueMetadata::from_static(meta)))
        .finish(&mut df)
        .map_err(parquet)?;
    Ok(())
}

fn write_into(trace: &Trace, dir: &Path) -> Result<(), TraceError> {
    // Tables first: the manifest records their checksums.
    let (snapshot, epochs) = (dir.join(SNAPSHOT_FILE), dir.join(EPOCHS_FILE));
    write_table(snapshot_frame(&trace.snapshot), &snapshot)?;
    write_table(epochs_frame(&trace.epochs), &epochs)?;
    let sum = |f: &Path| std::fs::read(f).map(|b| xxh3_hex(&b)).map_err(io_err(f));
    let sums = TableSums { snapshot: sum(&snapshot)?, epochs: sum(&epochs)? };
    let file = dir.join(MANIFEST_FILE);
    let json = |source| TraceError::Json { file: file.clone(), source };
    let mut value = serde_json::to_value(&trace.manifest).map_err(json)?;
    if let Some(m) = value.as_object_mut() {
        m.insert(TABLES_XXH3_KEY.to_string(), serde_json::to_value(&sums).map_err(json)?);
    }
    let mut text = serde_json::to_string_pretty(&value).map_err(json)?;
    text.push('\n');
    std::fs::write(&file, text).map_err(io_err(&file))
}

/// Writes into a hidden staging folder next to `dir`, then swaps it into place.
pub(super) fn write(trace: &Trace, dir: &Path, force: bool) -> Result<(), TraceError> {
    crate::atomic_dir::replace_dir(dir, crate::atomic_dir::DirKind::Trace, force, |staging| write_into(trace, staging))
}
