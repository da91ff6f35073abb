//! Memory traces: write/read round trip, determinism, the generator against
//! the workload model, one test per class of malformed trace, and the CLI.

mod common;

use memfabric_sim::reduction::compress_outcome;
use memfabric_sim::trace::gen::{generate, GenConfig};
use memfabric_sim::trace::stats::stats;
use memfabric_sim::trace::{CapturedSource, Source, Trace, TraceError, EPOCHS_FILE, MANIFEST_FILE, SNAPSHOT_FILE};
use memfabric_sim::workload::DirtyModel;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// A fresh directory for one test.
fn tmp(name: &str) -> PathBuf {
    common::owned_scratch("trace", name)
}

fn config(archetype: &str, memory: u64, epochs: u64) -> GenConfig {
    let mut cfg = GenConfig::for_archetype(archetype).unwrap();
    cfg.memory_bytes = memory;
    cfg.duration_ns = epochs * cfg.epoch_ns;
    cfg
}

/// A valid small trace (1 MiB web VM, 5 epochs) written to `<tmp>/trace`.
fn fixture(name: &str) -> PathBuf {
    let dir = tmp(name).join("trace");
    generate(&config("web", 1 << 20, 5)).unwrap().write(&dir).unwrap();
    dir
}

/// The whole error chain of reading `dir`.
fn read_err(dir: &Path) -> String {
    let e = Trace::read(dir).expect_err("bad trace was accepted");
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        s.push_str(&format!(" / {c}"));
        cause = c.source();
    }
    s
}

fn assert_err(dir: &Path, file: &str, needles: &[&str]) -> TraceError {
    let msg = read_err(dir);
    let path = dir.join(file).display().to_string();
    assert!(msg.starts_with(&path), "error does not start with the file {path}: {msg}");
    for n in needles {
        assert!(msg.contains(n), "error lacks {n:?}: {msg}");
    }
    Trace::read(dir).unwrap_err()
}

fn read_df(file: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(file).unwrap()).finish().unwrap()
}

/// Rewrites a Parquet table with `edit`, with `version` as format metadata (none: no metadata).
fn rewrite(file: &Path, version: Option<&str>, edit: impl FnOnce(DataFrame) -> DataFrame) {
    let mut df = edit(read_df(file));
    let meta = version
        .map(|v| KeyValueMetadata::from_static(vec![("memfabric.trace_format_version".to_string(), v.to_string())]));
    ParquetWriter::new(std::fs::File::create(file).unwrap()).with_key_value_metadata(meta).finish(&mut df).unwrap();
    reseal(file.parent().unwrap());
}

/// Records the tables' current checksums in the manifest, so that a test's
/// edit reaches the checks behind the checksum.
fn reseal(dir: &Path) {
    let sum = |f: &str| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&std::fs::read(dir.join(f)).unwrap()));
    let (snapshot, epochs) = (sum(SNAPSHOT_FILE), sum(EPOCHS_FILE));
    edit_manifest(dir, |v| v["tables_xxh3"] = serde_json::json!({ "snapshot": snapshot, "epochs": epochs }));
}

fn set_column(mut df: DataFrame, c: Column) -> DataFrame {
    df.with_column(c).unwrap();
    df
}

fn u64_column(df: &DataFrame, name: &str) -> Vec<u64> {
    df.column(name).unwrap().u64().unwrap().into_no_null_iter().collect()
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let file = dir.join(MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&file, serde_json::to_string(&v).unwrap()).unwrap();
}

// ---------------------------------------------------------------- round trip

#[test]
fn write_then_read_is_equal() {
    let dir = tmp("roundtrip");
    let t = generate(&config("web", 4 << 20, 10)).unwrap();
    t.write(&dir.join("web")).unwrap();
    assert_eq!(Trace::read(&dir.join("web")).unwrap(), t);
    // A captured source round-trips too, and rewriting replaces the directory.
    let mut c = t.clone();
    c.manifest.source = Source::Captured(CapturedSource {
        machine: "test machine".into(),
        workload: "stress-ng --vm 1".into(),
        tool: "memfabric-validator 0.1.0".into(),
    });
    c.write(&dir.join("web")).unwrap();
    assert_eq!(Trace::read(&dir.join("web")).unwrap(), c);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["web"], "no staging directories are left behind");
}

#[test]
fn an_invalid_trace_is_not_written() {
    let dir = tmp("invalid-write");
    let mut t = generate(&config("web", 1 << 20, 2)).unwrap();
    t.snapshot[1].page_index = 0;
    let e = t.write(&dir.join("t")).unwrap_err();
    assert!(matches!(e, TraceError::DuplicatePage { .. }), "{e}");
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "nothing was written");
}

#[test]
fn same_seed_gives_identical_files_and_another_seed_differs() {
    let dir = tmp("det");
    let cfg = config("oltp-db", 2 << 20, 5);
    generate(&cfg).unwrap().write(&dir.join("a")).unwrap();
    generate(&cfg).unwrap().write(&dir.join("b")).unwrap();
    let other = GenConfig { seed: 2, ..cfg };
    generate(&other).unwrap().write(&dir.join("c")).unwrap();
    for f in [MANIFEST_FILE, SNAPSHOT_FILE, EPOCHS_FILE] {
        let a = std::fs::read(dir.join("a").join(f)).unwrap();
        assert_eq!(a, std::fs::read(dir.join("b").join(f)).unwrap(), "{f} differs for the same seed");
        assert_ne!(a, std::fs::read(dir.join("c").join(f)).unwrap(), "{f} is the same for another seed");
    }
}

// ------------------------------------------------------- generator vs model

#[test]
fn generator_matches_the_content_model() {
    let cfg = config("web", 64 << 20, 2);
    let t = generate(&cfg).unwrap();
    let s = &stats(&[("web".into(), t)])[0];
    let c = &cfg.spec.content;
    // Class counts are rounded fractions of the pages: exact to a page.
    let page = 1.0 / s.pages as f64;
    assert!((s.zero_fraction - c.zero.0).abs() <= page, "{}", s.zero_fraction);
    assert!((s.duplicate_fraction - c.duplicate.0).abs() <= page, "{}", s.duplicate_fraction);
    // Sizes: zstd fraction ~ Beta(0.45, 0.15) over ~12k non-zero pages
    // (standard error 0.0014); lz4 = min(1, f·X), whose mean the reduction
    // model computes by quadrature.
    assert!((s.zstd_fraction_mean - c.unique_compressed_mean.0).abs() < 0.01, "{}", s.zstd_fraction_mean);
    let f = cfg.profile.size_factor.lz4;
    let o = compress_outcome(c.unique_compressed_mean.0, c.unique_compressed_sd, f);
    let lz4 = o.p_compressed * o.compressed_fraction + (1.0 - o.p_compressed);
    assert!((s.lz4_fraction_mean - lz4).abs() < 0.01, "lz4 {} vs model {lz4}", s.lz4_fraction_mean);
}

#[test]
fn same_image_pages_are_shared_across_vms() {
    let a = GenConfig { vm: "a".into(), ..config("web", 16 << 20, 1) };
    let b = GenConfig { vm: "b".into(), ..a.clone() };
    let c = GenConfig { vm: "c".into(), image: "other".into(), ..a.clone() };
    let ts: Vec<(String, Trace)> = [a, b, c].iter().map(|g| (g.vm.clone(), generate(g).unwrap())).collect();
    let s = stats(&ts);
    assert_eq!(s[0].cross_duplicate_fraction, 0.0);
    // b shares exactly its shared-image pages with a (its unique pages are its own).
    let shared = (s[1].pages as f64 * 0.10).round() / s[1].pages as f64;
    assert!((s[1].cross_duplicate_fraction - shared).abs() < 1e-9, "{}", s[1].cross_duplicate_fraction);
    assert_eq!(s[2].cross_duplicate_fraction, 0.0, "another image shares nothing");
}

/// Standard deviation of the distinct pages dirtied in `secs`: a sum of
/// independent binomials, one per popularity class.
fn dirty_sd(model: &DirtyModel, secs: f64) -> f64 {
    model
        .classes()
        .iter()
        .map(|&(n, rate)| {
            let p = -(-rate * secs).exp_m1();
            n as f64 * p * (1.0 - p)
        })
        .sum::<f64>()
        .sqrt()
}

/// Mean dirty pages per epoch and the distinct pages dirtied by the end
/// match the dirty model's expectations, within 4 standard deviations.
fn check_dirtying(archetype: &str, memory: u64, epochs: u64) {
    let cfg = config(archetype, memory, epochs);
    let t = generate(&cfg).unwrap();
    let model = DirtyModel::new(&cfg.spec, memory / 4096);
    let secs = cfg.epoch_ns as f64 / 1e9;
    let mean = t.epochs.len() as f64 / epochs as f64;
    let expected = model.expected_dirty_pages(secs);
    let sd = dirty_sd(&model, secs) / (epochs as f64).sqrt();
    assert!(
        (mean - expected).abs() < 4.0 * sd + 0.5,
        "{archetype}: {mean} dirty pages per epoch, model {expected} ± {sd}"
    );
    let s = &stats(&[(archetype.into(), t.clone())])[0];
    let (end, distinct) = *s.growth_curve.last().unwrap();
    let expected = model.expected_dirty_pages(end);
    let sd = dirty_sd(&model, end);
    assert!(
        (distinct as f64 - expected).abs() < 4.0 * sd + 0.5,
        "{archetype}: {distinct} distinct, model {expected} ± {sd}"
    );
    // Re-dirtied pages: unchanged with probability redirty_unchanged.
    let q = cfg.spec.redirty_unchanged.0;
    let n = t.epochs.len() as f64;
    let unchanged = t.epochs.iter().filter(|d| d.delta_bytes == 0).count() as f64 / n;
    assert!((unchanged - q).abs() < 4.0 * (q * (1.0 - q) / n).sqrt(), "{archetype}: unchanged {unchanged}");
    // A changed page's delta is redirty_change · 4096 · xbzrle_per_changed_byte, capped.
    let delta = (cfg.spec.redirty_change.0 * 4096.0 * cfg.profile.size_factor.xbzrle_per_changed_byte)
        .round()
        .min(4096.0) as u32;
    assert!(t.epochs.iter().all(|d| d.delta_bytes == 0 || d.delta_bytes == delta));
}

#[test]
fn dirtying_matches_the_dirty_model() {
    check_dirtying("idle-linux", 64 << 20, 20);
    check_dirtying("web", 64 << 20, 10);
    check_dirtying("oltp-db", 64 << 20, 10);
    check_dirtying("hpc", 16 << 20, 5);
}

// ------------------------------------------------------------- bad traces

#[test]
fn missing_files() {
    for f in [MANIFEST_FILE, SNAPSHOT_FILE, EPOCHS_FILE] {
        let dir = fixture(&format!("missing-{f}"));
        std::fs::remove_file(dir.join(f)).unwrap();
        assert!(matches!(assert_err(&dir, f, &["missing"]), TraceError::Missing { .. }));
    }
}

#[test]
fn bad_json() {
    let dir = fixture("json");
    std::fs::write(dir.join(MANIFEST_FILE), "{ \"format\": ").unwrap();
    assert_err(&dir, MANIFEST_FILE, &["bad manifest JSON", "EOF"]);
    let dir = fixture("json-field");
    edit_manifest(&dir, |v| v["colour"] = "red".into());
    assert_err(&dir, MANIFEST_FILE, &["bad manifest JSON", "unknown field `colour`"]);
    let dir = fixture("json-type");
    edit_manifest(&dir, |v| v["pages"] = "many".into());
    assert_err(&dir, MANIFEST_FILE, &["bad manifest JSON", "invalid type"]);
}

#[test]
fn unknown_format_name() {
    let dir = fixture("format");
    edit_manifest(&dir, |v| v["format"] = "qemu-dirty-log".into());
    assert_err(&dir, MANIFEST_FILE, &["unknown format \"qemu-dirty-log\""]);
}

#[test]
fn unsupported_version() {
    let dir = fixture("version");
    // A newer manifest with a field version 1 does not know: refused for its version.
    edit_manifest(&dir, |v| {
        v["format_version"] = 2.into();
        v["compression"] = "zstd".into();
    });
    assert_err(&dir, MANIFEST_FILE, &["format version 2 is not supported", "reads version [1]"]);
    let dir = fixture("version-parquet");
    rewrite(&dir.join(SNAPSHOT_FILE), Some("7"), |df| df);
    assert_err(&dir, SNAPSHOT_FILE, &["format version 7 is not supported"]);
    let dir = fixture("version-none");
    rewrite(&dir.join(EPOCHS_FILE), None, |df| df);
    assert_err(&dir, EPOCHS_FILE, &["no memfabric.trace_format_version"]);
}

#[test]
fn page_size_other_than_4096() {
    let dir = fixture("pagesize");
    edit_manifest(&dir, |v| v["page_size"] = 2097152.into());
    assert_err(&dir, MANIFEST_FILE, &["page_size 2097152 is not supported (only 4096)"]);
}

#[test]
fn truncated_or_corrupt_parquet() {
    let dir = fixture("truncated");
    let f = dir.join(SNAPSHOT_FILE);
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    // Caught by the manifest's checksum first, then (resealed) by the decoder.
    assert!(matches!(assert_err(&dir, SNAPSHOT_FILE, &["corrupt: its xxh3 is"]), TraceError::TableChecksum { .. }));
    reseal(&dir);
    assert!(matches!(assert_err(&dir, SNAPSHOT_FILE, &["cannot read Parquet"]), TraceError::Parquet { .. }));
    let dir = fixture("garbage");
    std::fs::write(dir.join(EPOCHS_FILE), b"this is not parquet").unwrap();
    assert_err(&dir, EPOCHS_FILE, &["corrupt: its xxh3 is", "the manifest records"]);
    reseal(&dir);
    assert_err(&dir, EPOCHS_FILE, &["cannot read Parquet"]);
    // Damage in the middle (the data pages), footer intact.
    let dir = fixture("corrupt");
    let f = dir.join(SNAPSHOT_FILE);
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&f, &bytes).unwrap();
    assert_err(&dir, SNAPSHOT_FILE, &["corrupt: its xxh3 is"]);
    reseal(&dir);
    assert_err(&dir, SNAPSHOT_FILE, &[]);
}

/// Fuzzing finding 1 (sim/tests/fuzz_trace.rs): one byte changed in a data
/// page of `snapshot.parquet` made the Parquet decoder ask for 2^61 bytes
/// and abort the process. The checksum in the manifest now refuses the table
/// before it is decoded. The input is kept in sim/tests/data/fuzz-trace-1/.
#[test]
fn fuzz_finding_1_a_corrupt_page_is_refused_by_checksum_not_an_abort() {
    // The fuzzed trace: a 16-page web VM, 3 epochs (manifest as generated,
    // with its checksums), and the crashing tables.
    let dir = tmp("fuzz-1").join("trace");
    let crash = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-trace-1");
    generate(&config("web", 16 * 4096, 3)).unwrap().write(&dir).unwrap_or_else(|e| panic!("{e}"));
    for f in [SNAPSHOT_FILE, EPOCHS_FILE] {
        std::fs::copy(crash.join(f), dir.join(f)).unwrap();
    }
    let msg = read_err(&dir);
    assert!(msg.contains("corrupt: its xxh3 is"), "{msg}");
}

#[test]
fn missing_or_mistyped_columns() {
    let dir = fixture("nocol");
    rewrite(&dir.join(SNAPSHOT_FILE), Some("1"), |df| df.drop("zstd_bytes").unwrap());
    assert_err(&dir, SNAPSHOT_FILE, &["missing column zstd_bytes (u32)"]);
    let dir = fixture("type");
    rewrite(&dir.join(SNAPSHOT_FILE), Some("1"), |df| {
        let c = df.column("page_index").unwrap().cast(&DataType::Int64).unwrap();
        set_column(df, c)
    });
    assert_err(&dir, SNAPSHOT_FILE, &["column page_index has type i64, expected u64"]);
    let dir = fixture("type-epochs");
    rewrite(&dir.join(EPOCHS_FILE), Some("1"), |df| {
        let c = df.column("delta_bytes").unwrap().cast(&DataType::Float64).unwrap();
        set_column(df, c)
    });
    assert_err(&dir, EPOCHS_FILE, &["column delta_bytes has type f64, expected u32"]);
    let dir = fixture("extra");
    rewrite(&dir.join(EPOCHS_FILE), Some("1"), |df| {
        let n = df.height();
        set_column(df, Column::new("colour".into(), vec![1u32; n]))
    });
    assert_err(&dir, EPOCHS_FILE, &["unexpected column colour"]);
    let dir = fixture("nulls");
    rewrite(&dir.join(SNAPSHOT_FILE), Some("1"), |df| {
        let mut v: Vec<Option<u32>> =
            df.column("lz4_bytes").unwrap().u32().unwrap().into_no_null_iter().map(Some).collect();
        v[3] = None;
        set_column(df, Column::new("lz4_bytes".into(), v))
    });
    assert_err(&dir, SNAPSHOT_FILE, &["column lz4_bytes has 1 null values"]);
}

#[test]
fn snapshot_page_index_out_of_range_duplicated_or_rows_missing() {
    let dir = fixture("range");
    rewrite(&dir.join(SNAPSHOT_FILE), Some("1"), |df| {
        let mut v = u64_column(&df, "page_index");
        v[7] = 1 << 40;
        set_column(df, Column::new("page_index".into(), v))
    });
    assert_err(&dir, SNAPSHOT_FILE, &["row 7: page_index 1099511627776 out of range (the VM has 256 pages)"]);
    let dir = fixture("dup");
    rewrite(&dir.join(SNAPSHOT_FILE), Some("1"), |df| {
        let mut v = u64_column(&df, "page_index");
        v[9] = 3;
        set_column(df, Column::new("page_index".into(), v))
    });
    assert_err(&dir, SNAPSHOT_FILE, &["row 9: duplicate page_index 3"]);
    let dir = fixture("rows");
    rewrite(&dir.join(SNAPSHOT_FILE), Some("1"), |df| df.slice(0, 200));
    assert_err(&dir, SNAPSHOT_FILE, &["200 rows, but the manifest says the VM has 256 pages"]);
    let dir = fixture("epochs-range");
    rewrite(&dir.join(EPOCHS_FILE), Some("1"), |df| {
        let mut v = u64_column(&df, "page_index");
        v[0] = 256;
        set_column(df, Column::new("page_index".into(), v))
    });
    assert_err(&dir, EPOCHS_FILE, &["row 0: page_index 256 out of range"]);
}

#[test]
fn epochs_out_of_order() {
    let dir = fixture("order");
    rewrite(&dir.join(EPOCHS_FILE), Some("1"), |df| df.reverse());
    assert_err(&dir, EPOCHS_FILE, &["epochs out of order", "follows epoch 4"]);
    let dir = fixture("order-time");
    rewrite(&dir.join(EPOCHS_FILE), Some("1"), |df| {
        let mut v = u64_column(&df, "time_ns");
        let last = v.len() - 1;
        v[last] = 1;
        set_column(df, Column::new("time_ns".into(), v))
    });
    assert_err(&dir, EPOCHS_FILE, &["epochs out of order", "time_ns 1 follows"]);
}

#[test]
fn page_dirtied_twice_in_an_epoch() {
    let dir = fixture("twice");
    rewrite(&dir.join(EPOCHS_FILE), Some("1"), |df| {
        let mut v = u64_column(&df, "page_index");
        v[1] = v[0];
        set_column(df, Column::new("page_index".into(), v))
    });
    assert_err(&dir, EPOCHS_FILE, &["row 1: page", "dirtied twice in epoch 0"]);
}

// -------------------------------------------------------------------- CLI

fn memfabric(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_memfabric")).args(args).output().unwrap()
}

#[test]
fn cli_generates_summarises_and_plots() {
    let dir = tmp("cli");
    let a = dir.join("a");
    let b = dir.join("b");
    let s = |p: &Path| p.display().to_string();
    for (out, vm) in [(&a, "a"), (&b, "b")] {
        let o = memfabric(&[
            "trace",
            "gen",
            "--archetype",
            "idle-linux",
            "--memory",
            "2MiB",
            "--duration",
            "3s",
            "--epoch",
            "500ms",
            "--vm",
            vm,
            "--out",
            &s(out),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let t = Trace::read(&a).unwrap();
    assert_eq!((t.manifest.pages, t.manifest.epochs, t.manifest.duration_ns), (512, 6, 3_000_000_000));
    let o = memfabric(&["trace", "stats", &s(&a), &s(&b), "--plot", &s(&dir.join("plots"))]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.lines().next().unwrap().contains("dup_set"), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains(&s(&a)) || l.contains(&s(&b))).count(), 2, "{out}");
    for ext in ["png", "svg"] {
        assert!(dir.join("plots").join(format!("working_set_growth.{ext}")).metadata().unwrap().len() > 1000);
    }
}

#[test]
fn cli_fails_clearly_on_bad_input() {
    let dir = fixture("cli-bad");
    std::fs::remove_file(dir.join(EPOCHS_FILE)).unwrap();
    let o = memfabric(&["trace", "stats", &dir.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "bad input exits 2");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}: missing", dir.join(EPOCHS_FILE).display())), "{err}");
    let o = memfabric(&["trace", "gen", "--archetype", "mainframe", "--out", &dir.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "bad arguments exit 2");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("'mainframe'") && err.contains("--archetype") && err.contains("idle-linux"), "{err}");
    let o = memfabric(&[
        "trace",
        "gen",
        "--archetype",
        "web",
        "--duration",
        "10s",
        "--epoch",
        "3s",
        "--out",
        "/nonexistent/x",
    ]);
    assert_eq!(o.status.code(), Some(2), "bad arguments exit 2");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a positive whole number (at most 86400) of epochs"));
}

// ------------------------------------------------------- committed traces

#[test]
fn committed_traces_are_valid_and_reproducible() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces");
    // (directory, archetype, memory, epochs): the commands in traces/README.md.
    for (name, archetype, memory, epochs) in
        [("idle-linux-64mib", "idle-linux", 64 << 20, 60), ("web-64mib", "web", 64 << 20, 20)]
    {
        let dir = root.join(name);
        let t = Trace::read(&dir).unwrap_or_else(|e| panic!("{e}"));
        for f in [SNAPSHOT_FILE, EPOCHS_FILE] {
            assert!(dir.join(f).metadata().unwrap().len() < 1 << 20, "{name}/{f} is over 1 MiB");
        }
        assert!(
            generate(&config(archetype, memory, epochs)).unwrap() == t,
            "traces/{name} is not what its command in traces/README.md makes now (generator or profile changed?): regenerate it"
        );
    }
}

#[test]
fn working_set_growth_counts_epochs_that_end_just_after_the_second() {
    // A captured trace ends its epochs when the dirty log was read, a little
    // after each whole second; they still count for ws@1s.
    let mut t = generate(&config("web", 4 << 20, 2)).unwrap();
    let late = 300_000; // 0.3 ms
    for d in t.epochs.iter_mut() {
        d.time_ns += late;
    }
    t.manifest.duration_ns += late;
    let first_epoch: std::collections::HashSet<u64> = t.epochs.iter().filter(|d| d.epoch == 0).map(|d| d.page_index).collect();
    let s = stats(&[("late".into(), t)]);
    assert_eq!(s[0].working_set_growth[0], Some(first_epoch.len() as u64));
    assert!(first_epoch.len() > 0);
}
