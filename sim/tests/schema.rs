//! The JSON Schemas of the scenario and study formats (`memfabric schema`)
//! agree with the parsers: every committed scenario validates, the unit patterns accept what
//! the unit parser accepts and refuse what it refuses, and files the parser
//! refuses for their shape are refused by the schema too.

mod common;

use memfabric_migration::strategy::Strategy;
use memfabric_migration::units::{Bytes, BytesPerSecond, Fraction, Nanos};
use memfabric_sim::scenario::json_schema::{self, Duration, Rate, Share, Size, StrategyName};
use schemars::{schema_for, JsonSchema};
use serde_json::Value;

fn scenario_validator() -> jsonschema::Validator {
    named_validator("scenario")
}

fn named_validator(name: &str) -> jsonschema::Validator {
    let text = json_schema::schema_json(name).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn as_json(toml_text: &str) -> Value {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("not TOML: {e}"))
}

#[test]
fn every_committed_scenario_validates() {
    let v = scenario_validator();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let doc = as_json(&std::fs::read_to_string(&path).unwrap());
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "found {checked} scenarios in {}", dir.display());
}

#[test]
fn every_committed_study_validates_and_the_study_schema_is_strict() {
    let v = named_validator("study");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../studies");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // studies/ also holds the base scenarios of its studies.
        if path.extension().is_some_and(|e| e == "toml") && (text.starts_with("[study]") || text.contains("\n[study]")) {
            let doc = as_json(&text);
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "found {checked} studies in {}", dir.display());
    // Unknown keys and a missing base scenario are refused, as the loader refuses them.
    assert!(!v.is_valid(&as_json("[study]\nname = \"s\"\nscenario = \"x.toml\"\nsurprise = 1\n")));
    assert!(!v.is_valid(&as_json("[study]\nname = \"s\"\n")));
    assert!(v.is_valid(&as_json("[study]\nname = \"s\"\nscenario = \"x.toml\"\n[axes]\n\"links.wan.bandwidth\" = [\"1Gbit/s\"]\n")));
}

#[test]
fn the_schema_refuses_what_the_parser_refuses() {
    let v = scenario_validator();
    let good = std::fs::read_to_string(common::scenario_path("quickstart")).unwrap();
    assert!(v.is_valid(&as_json(&good)));
    for (from, to) in [
        ("latency = \"5ms\"", "latency = \"5 parsecs\""),
        ("bandwidth = \"10Gbit/s\"", "bandwidth = \"10\""),
        ("seed = 42", "seed = 42\ncolour = \"red\""),
        ("max_rounds = 30", "max_rounds = \"thirty\""),
        ("on_non_convergence = \"abort\"", "on_non_convergence = \"give-up\""),
        ("archetype = \"web\"", "archetyp = \"web\""),
    ] {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        assert!(!v.is_valid(&as_json(&bad)), "schema accepts {to:?}");
        assert!(memfabric_sim::scenario::parse(&bad, "bad.toml").is_err(), "parser accepts {to:?}");
    }
}

fn validator<T: JsonSchema>() -> jsonschema::Validator {
    jsonschema::validator_for(&serde_json::to_value(schema_for!(T)).unwrap()).unwrap()
}

/// Values the schema accepts parse; values it refuses do not.
fn agree<T: JsonSchema>(parses: impl Fn(&str) -> bool, good: &[&str], bad: &[&str]) {
    let v = validator::<T>();
    for s in good {
        assert!(v.is_valid(&Value::from(*s)), "schema refuses {s:?}");
        assert!(parses(s), "parser refuses {s:?}");
    }
    for s in bad {
        assert!(!v.is_valid(&Value::from(*s)), "schema accepts {s:?}");
        assert!(!parses(s), "parser accepts {s:?}");
    }
}

#[test]
fn unit_patterns_agree_with_the_unit_parser() {
    agree::<Size>(|s| Bytes::parse(s).is_ok(), &["64GiB", "1.5GB", "4096B", "4096", " 2 KiB "], &["64G", "64GiBs", "many", "-1B"]);
    agree::<Rate>(|s| BytesPerSecond::parse(s).is_ok(), &["10Gbit/s", "100Mbps", "125MB/s", "1GiB/s"], &["10Gb", "10", "fast"]);
    agree::<Duration>(|s| Nanos::parse(s).is_ok(), &["300ms", "2s", "1.5min", "2h", "10ns", "5µs"], &["300", "2 days", "ms"]);
    agree::<Share>(|s| Fraction::parse(s).is_ok(), &["2%", "0.01%", "0.25", "1"], &["2 percent", "x%"]);
    // Bare numbers: sizes in bytes and fractions in [0, 1].
    assert!(validator::<Size>().is_valid(&Value::from(4096)));
    assert!(validator::<Share>().is_valid(&Value::from(0.5)));
    assert!(!validator::<Duration>().is_valid(&Value::from(5)));
}

#[test]
fn strategy_pattern_agrees_with_the_strategy_parser() {
    agree::<StrategyName>(
        |s| s.parse::<Strategy>().is_ok(),
        &["none", "zero", "zero+lz4", "zero+xbzrle+zstd", "zero+dedup-site+zstd:3", "lz4"],
        &["", "gzip", "zero++lz4", "zero+"],
    );
}
