//! JSON Schemas of the input files, for editors (`memfabric schema`).
//!
//! The schemas are generated with schemars from the same structs the parser
//! deserializes ([`super::schema`]), so they cannot drift from it. Quantities
//! written with units get a schema of their own here ([`Size`], [`Rate`],
//! [`Duration`], [`Share`], [`PageRate`], [`StrategyName`]) whose `pattern` is
//! the grammar of `memfabric_migration::units`; enums of the migration crate
//! get their names ([`MechanismName`], [`NonConvergenceName`]).
//! `sim/tests/schema.rs` checks that the patterns accept what the parser
//! accepts and refuse what it refuses, and that every committed scenario
//! validates.
//!
//! Adding a file format is one line in [`SCHEMAS`]: its name and
//! `schema_for!(ItsFileStruct)` (the struct derives `JsonSchema`).

use schemars::{json_schema, schema_for, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// The file formats with a schema: name (as `memfabric schema NAME` takes it)
/// and how to build its schema.
pub const SCHEMAS: &[(&str, fn() -> Schema)] = &[
    ("scenario", || schema_for!(super::schema::ScenarioFile)),
    ("study", || schema_for!(crate::study::file::StudyFile)),
];

/// The schema of the named file format, as pretty JSON.
pub fn schema_json(name: &str) -> Option<String> {
    SCHEMAS.iter().find(|(n, _)| *n == name).map(|(_, make)| {
        let mut text = serde_json::to_string_pretty(&make()).expect("a schema serializes");
        text.push('\n');
        text
    })
}

/// A decimal number as the unit parser reads it.
const NUMBER: &str = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)";
/// SI (powers of 1000) and IEC (powers of 1024) prefixes.
const PREFIX: &str = "(?:[kKMGT]|Ki|Mi|Gi|Ti)?";

fn unit_pattern(units: &str) -> String {
    format!(r"^\s*{NUMBER}\s*{units}\s*$")
}

/// A string quantity: description, pattern and examples; `number` also
/// allows a bare TOML number (with its own description).
fn quantity(description: &str, pattern: &str, examples: &[&str], number: Option<&str>) -> Schema {
    let text = json_schema!({
        "type": "string",
        "pattern": pattern,
        "description": description,
        "examples": examples,
    });
    match number {
        None => text,
        Some(number) => json_schema!({
            "description": description,
            "anyOf": [text, { "type": "number", "minimum": 0, "description": number }],
        }),
    }
}

macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident => $body:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $body
            }
        }
    };
}

schema_type!(
    /// A size: `"64GiB"`, `"1.5GB"`, `"4096B"`, or a number of bytes.
    Size => quantity(
        "size: a number and a unit B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)",
        &unit_pattern(&format!("(?:{PREFIX}B)?")),
        &["64GiB", "512MB", "4096B"],
        Some("bytes"),
    )
);
schema_type!(
    /// A rate: `"10Gbit/s"`, `"100Mbps"`, `"125MB/s"`.
    Rate => quantity(
        "rate: a number and a unit in bit/s, bps (bits, divided by 8) or B/s, with an SI or IEC prefix",
        &unit_pattern(&format!("{PREFIX}(?:bit/s|bps|B/s)")),
        &["10Gbit/s", "100Mbps", "125MB/s", "1GiB/s"],
        None,
    )
);
schema_type!(
    /// A duration: `"50ms"`, `"2s"`, `"1.5min"`.
    Duration => quantity(
        "duration: a number and a unit ns, us, µs, ms, s, min or h",
        &unit_pattern("(?:ns|us|µs|ms|s|min|h)"),
        &["300ms", "2s", "1.5min", "2h"],
        None,
    )
);
schema_type!(
    /// A fraction: `"2%"` or a number in [0, 1].
    Share => quantity(
        "fraction: a percentage (\"2%\") or a number between 0 and 1",
        &unit_pattern("%?"),
        &["2%", "0.01%", "0.25"],
        Some("a fraction between 0 and 1"),
    )
);
schema_type!(
    /// A page write rate: `"5000pages/s"` or a byte rate.
    PageRateSchema => json_schema!({
        "description": "page writes per second (\"5000pages/s\") or a byte rate (\"20MB/s\")",
        "anyOf": [
            { "type": "string", "pattern": unit_pattern("pages/s") },
            { "type": "string", "pattern": unit_pattern(&format!("{PREFIX}(?:bit/s|bps|B/s)")) },
        ],
        "examples": ["5000pages/s", "20MB/s"],
    })
);

impl JsonSchema for super::schema::PageRate {
    fn schema_name() -> Cow<'static, str> {
        "PageRate".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        PageRateSchema::json_schema(generator)
    }
}

/// Stage names of a strategy.
const STAGE: &str = r"(?:zero|dedup-vm|dedup-gang|dedup-site|xbzrle|lz4|zstd(?::[0-9]+)?)";

schema_type!(
    /// A data-reduction strategy: stage names joined by `+`.
    StrategyName => json_schema!({
        "type": "string",
        "description": "data-reduction strategy: `none`, or stages joined by `+` (zero, dedup-vm, dedup-gang, dedup-site, xbzrle, lz4, zstd, zstd:N); at most one dedup scope and one codec",
        "pattern": format!("^(?:none|{STAGE}(?:\\+{STAGE})*)$"),
        "examples": ["zero+lz4", "zero+xbzrle+zstd", "zero+dedup-site+zstd:3"],
    })
);
schema_type!(
    /// A migration mechanism.
    MechanismName => json_schema!({
        "type": "string",
        "description": "migration mechanism",
        "enum": MECHANISMS,
    })
);
schema_type!(
    /// What pre-copy does when it does not converge.
    NonConvergenceName => json_schema!({
        "type": "string",
        "description": "what pre-copy does at its round bound without converging",
        "enum": NON_CONVERGENCE,
    })
);

/// Names of [`memfabric_migration::record::Mechanism`] (a test checks each parses).
const MECHANISMS: [&str; 4] = ["pre-copy", "post-copy", "hybrid", "stop-and-copy"];
/// Names of [`memfabric_migration::precopy::NonConvergence`] (a test checks each parses).
const NON_CONVERGENCE: [&str; 3] = ["abort", "force-stop", "post-copy"];

#[cfg(test)]
mod tests {
    use super::*;
    use memfabric_migration::precopy::NonConvergence;
    use memfabric_migration::record::Mechanism;

    #[test]
    fn enum_names_are_the_parsers() {
        for m in MECHANISMS {
            serde_json::from_value::<Mechanism>(m.into()).unwrap_or_else(|e| panic!("{m}: {e}"));
        }
        for n in NON_CONVERGENCE {
            serde_json::from_value::<NonConvergence>(n.into()).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn every_listed_schema_builds() {
        for (name, _) in SCHEMAS {
            let text = schema_json(name).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
        }
        assert!(schema_json("nothing").is_none());
    }
}
