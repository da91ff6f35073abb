use super::*;
use memfabric_migration::record::{Mechanism, Outcome, RoundPhase};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("memfabric-formats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn migration(id: u32, mechanism: Mechanism, outcome: Outcome) -> MigrationRow {
    MigrationRow {
        migration_id: id,
        operation: "op".into(),
        vm: format!("vm{id}"),
        mechanism,
        strategy: "none".into(),
        cpu_threads: 1,
        src_site: "a".into(),
        dst_site: "b".into(),
        src_host: "a-h".into(),
        dst_host: "b-h".into(),
        memory_bytes: 1 << 30,
        streams: 1,
        rtt_ms: 10.0,
        start_s: 0.0,
        end_s: 1.0,
        total_time_s: 1.0,
        downtime_ms: 1.0,
        rounds: 1,
        bytes_on_wire: 1,
        bytes_precopy: 1,
        bytes_stopcopy: 0,
        bytes_postcopy: 0,
        bytes_index_sync: 0,
        outcome,
        converged: None,
        throttle_pct_max: 0,
        postcopy_faults: 0,
        postcopy_fault_wait_ms: 0.0,
        postcopy_guest_speed: 1.0,
        bottleneck: String::new(),
        mean_rate_bytes_per_s: 1.0,
        bytes_unreduced: 1,
        pages_zero: 0,
        pages_dedup: 0,
        pages_delta: 0,
        pages_compressed: 0,
        pages_raw: 0,
        bytes_zero: 0,
        bytes_dedup: 0,
        bytes_delta: 0,
        bytes_compressed: 0,
        bytes_raw: 0,
        cpu_s_source: 0.0,
        cpu_s_zero: 0.0,
        cpu_s_dedup: 0.0,
        cpu_s_delta: 0.0,
        cpu_s_compress: 0.0,
        cpu_s_destination: 0.0,
    }
}

fn round(round: u32, phase: RoundPhase) -> RoundRow {
    RoundRow {
        migration_id: 0,
        vm: "vm".into(),
        round,
        phase,
        start_s: 0.0,
        end_s: 1.0,
        pages: 1,
        bytes_on_wire: 1,
        rate_bytes_per_s: 1.0,
        dirty_pages: 0,
        throttle_pct: 0,
        complete: true,
    }
}

fn strings(df: &DataFrame, column: &str) -> Vec<String> {
    let ca = df.column(column).unwrap().str().unwrap();
    (0..ca.len()).map(|i| ca.get(i).unwrap().to_string()).collect()
}

/// Every outcome, mechanism and phase is written by its name (the strings
/// the committed results and datasets hold) and reads back as itself.
#[test]
fn enums_round_trip_through_parquet_by_name() {
    let dir = scratch("round-trip");
    let rows: Vec<MigrationRow> = Outcome::ALL
        .iter()
        .enumerate()
        .map(|(i, &o)| migration(i as u32, Mechanism::ALL[i % Mechanism::ALL.len()], o))
        .collect();
    let rounds: Vec<RoundRow> = RoundPhase::ALL.iter().enumerate().map(|(i, &p)| round(i as u32, p)).collect();
    let (m_path, r_path) = (dir.join("migrations.parquet"), dir.join("rounds.parquet"));
    write_parquet(&mut migrations_frame(&[("v", &rows)]), &m_path, &[]).unwrap();
    write_parquet(&mut rounds_frame(&[("v", &rounds)]), &r_path, &[]).unwrap();
    let (m, r) = (read_parquet(&m_path).unwrap(), read_parquet(&r_path).unwrap());

    assert_eq!(strings(&m, "outcome"), Outcome::ALL.map(|o| o.as_str().to_string()));
    assert_eq!(strings(&r, "phase"), ["index-sync", "precopy", "stopcopy", "postcopy-switch", "postcopy-push"]);
    assert_eq!(strings(&m, "mechanism")[..4], ["pre-copy", "post-copy", "hybrid", "stop-and-copy"]);

    assert_eq!(enum_column::<Outcome>(&m, "outcome", &m_path).unwrap(), Outcome::ALL);
    assert_eq!(enum_column::<Mechanism>(&m, "mechanism", &m_path).unwrap(), rows.iter().map(|r| r.mechanism).collect::<Vec<_>>());
    assert_eq!(enum_column::<RoundPhase>(&r, "phase", &r_path).unwrap(), RoundPhase::ALL);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_name_is_located() {
    let df = df!("outcome" => ["completed", "source-lost", "interrupted"]).unwrap();
    let e = enum_column::<Outcome>(&df, "outcome", Path::new("r/migrations.parquet")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("r/migrations.parquet: row 2: column `outcome`: unknown outcome \"interrupted\"; expected one of: completed,"),
        "{msg}"
    );
    assert!(msg.contains("aborted, failed, unknown, source-lost"), "{msg}");
}

#[test]
fn a_null_or_a_missing_or_mistyped_column_is_located() {
    let df = df!("phase" => [Some("precopy"), None], "n" => [1u32, 2]).unwrap();
    let msg = enum_column::<RoundPhase>(&df, "phase", Path::new("rounds.parquet")).unwrap_err().to_string();
    assert!(msg.starts_with("rounds.parquet: row 1: column `phase`: unknown round phase \"(null)\"; expected one of: index-sync,"), "{msg}");
    let missing = enum_column::<Outcome>(&df, "outcome", Path::new("m.parquet")).unwrap_err();
    assert!(matches!(&missing, TableReadError::Column { column: "outcome", .. }), "{missing}");
    assert!(missing.to_string().starts_with("m.parquet: column `outcome`: "), "{missing}");
    let mistyped = enum_column::<Outcome>(&df, "n", Path::new("m.parquet")).unwrap_err();
    assert!(mistyped.to_string().starts_with("m.parquet: column `n`: "), "{mistyped}");
}

/// serde (manifests, `run.json`) writes the same names as the tables.
#[test]
fn serde_names_are_the_table_names() {
    for o in Outcome::ALL {
        assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{o}\""));
        assert_eq!(serde_json::from_str::<Outcome>(&format!("\"{o}\"")).unwrap(), o);
    }
    for m in Mechanism::ALL {
        assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
    }
    for p in RoundPhase::ALL {
        assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        assert_eq!(serde_json::from_str::<RoundPhase>(&format!("\"{p}\"")).unwrap(), p);
    }
}
