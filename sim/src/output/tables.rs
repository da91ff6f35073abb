//! The simulator's own Parquet tables (`links`, `fabric_events`,
//! `vm_availability`, `energy`). Column order and names here are the schema
//! documented in `docs/results.md`; the `migrations` and `rounds` tables,
//! which the validator writes too, and the Parquet writer are in
//! `memfabric_formats::tables` and re-exported here.

use crate::run::{FabricEventRow, LinkRow, VmAvailabilityRow};
use memfabric_formats::column;
use memfabric_formats::tables::{flatten, frame};
use polars::prelude::*;

pub use memfabric_formats::tables::{migrations_frame, read_parquet, rounds_frame, write_parquet};

/// The `links` table of several variants.
pub fn links_frame(runs: &[(&str, &[LinkRow])]) -> DataFrame {
    let (variant, rows) = flatten(runs);
    frame(
        rows.len(),
        vec![
            variant,
            column!(rows, "time_s", |r| r.time_s),
            column!(rows, "link", |r| r.link.clone()),
            column!(rows, "from_site", |r| r.from_site.clone()),
            column!(rows, "to_site", |r| r.to_site.clone()),
            column!(rows, "capacity_bytes_per_s", |r| r.capacity_bytes_per_s),
            column!(rows, "throughput_bytes_per_s", |r| r.throughput_bytes_per_s),
            column!(rows, "utilisation", |r| r.utilisation),
            column!(rows, "flows", |r| r.flows),
        ],
    )
}

/// The `fabric_events` table of several variants.
pub fn fabric_events_frame(runs: &[(&str, &[FabricEventRow])]) -> DataFrame {
    let (variant, rows) = flatten(runs);
    frame(
        rows.len(),
        vec![
            variant,
            column!(rows, "time_s", |r| r.time_s),
            column!(rows, "kind", |r| r.kind.as_str().to_string()),
            column!(rows, "host", |r| r.host.clone()),
            column!(rows, "site", |r| r.site.clone()),
            column!(rows, "vm", |r| r.vm.clone()),
            column!(rows, "cause", |r| r.cause.clone()),
        ],
    )
}

/// The `vm_availability` table of several variants.
pub fn vm_availability_frame(runs: &[(&str, &[VmAvailabilityRow])]) -> DataFrame {
    let (variant, rows) = flatten(runs);
    frame(
        rows.len(),
        vec![
            variant,
            column!(rows, "vm", |r| r.vm.clone()),
            column!(rows, "failures", |r| r.failures),
            column!(rows, "restarts", |r| r.restarts),
            column!(rows, "downtime_s", |r| r.downtime_s),
            column!(rows, "lost_work_s", |r| r.lost_work_s),
            column!(rows, "final_state", |r| r.final_state.to_string()),
        ],
    )
}

/// The `energy` table of several variants.
pub fn energy_frame(runs: &[(&str, &[crate::energy::EnergyRow])]) -> DataFrame {
    let (variant, rows) = flatten(runs);
    frame(
        rows.len(),
        vec![
            variant,
            column!(rows, "time_s", |r| r.time_s),
            column!(rows, "host", |r| r.host.clone()),
            column!(rows, "site", |r| r.site.clone()),
            column!(rows, "power_state", |r| r.power_state.to_string()),
            column!(rows, "utilisation", |r| r.utilisation),
            column!(rows, "watts", |r| r.watts),
            column!(rows, "energy_j", |r| r.energy_j),
        ],
    )
}
