//! Run selectors: `TERM { "&" TERM }`, a term `KEY=VALUE` or `KEY!=VALUE`,
//! a value one or more alternatives joined by `|`; `all` selects every run.
//!
//! Keys: `workload`, `dirty_rate` (page writes/s), `mem` (e.g. `256MiB`),
//! `link` (`loopback` or the link spec as in the matrix, e.g.
//! `100Mbit/s,25ms`), `pipeline`, `seed`, `repeat`.
//!
//! Example: `link=100Mbit/s,25ms|50Mbit/s,40ms & pipeline!=none & seed=1`.

use memfabric_migration::units::{Bytes, BytesPerSecond, Nanos};

use super::record::RunParams;
use super::CalibrateError;

const KEYS: &str = "workload, dirty_rate, mem, link, pipeline, seed, repeat";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Workload,
    DirtyRate,
    Mem,
    Link,
    Pipeline,
    Seed,
    Repeat,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Number(f64),
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    key: Key,
    negated: bool,
    alternatives: Vec<Value>,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    text: String,
    terms: Vec<Term>,
}

/// A link spec in a canonical form for comparison: rate in bytes/s and the
/// delay in ns, then the rest of the spec as written.
fn canonical_link(s: &str) -> String {
    let s = s.trim();
    if s == "loopback" {
        return s.into();
    }
    let mut parts = s.split(',').map(str::trim);
    let rate = parts.next().and_then(|r| BytesPerSecond::parse(r).ok()).map(|r| format!("{}", r.0));
    let delay = parts.next().and_then(|d| Nanos::parse(d).ok()).map(|d| d.0.to_string());
    match (rate, delay) {
        (Some(r), Some(d)) => std::iter::once(r).chain(std::iter::once(d)).chain(parts.map(String::from)).collect::<Vec<_>>().join(","),
        _ => s.into(),
    }
}

impl Selector {
    /// Parses a selector.
    pub fn parse(text: &str) -> Result<Selector, CalibrateError> {
        let err = |message: String| CalibrateError::Selector { selector: text.to_string(), message };
        let trimmed = text.trim();
        if trimmed == "all" {
            return Ok(Selector { text: text.into(), terms: vec![] });
        }
        if trimmed.is_empty() {
            return Err(err("empty: write `all` to select every run".into()));
        }
        let mut terms = Vec::new();
        for raw in trimmed.split('&') {
            let raw = raw.trim();
            let (k, v, negated) = match (raw.find("!="), raw.find('=')) {
                (Some(i), _) => (&raw[..i], &raw[i + 2..], true),
                (None, Some(i)) => (&raw[..i], &raw[i + 1..], false),
                _ => return Err(err(format!("term {raw:?}: expected KEY=VALUE or KEY!=VALUE"))),
            };
            let key = match k.trim() {
                "workload" => Key::Workload,
                "dirty_rate" => Key::DirtyRate,
                "mem" => Key::Mem,
                "link" => Key::Link,
                "pipeline" => Key::Pipeline,
                "seed" => Key::Seed,
                "repeat" => Key::Repeat,
                other => return Err(err(format!("unknown key {other:?}; keys: {KEYS}"))),
            };
            let mut alternatives = Vec::new();
            for alt in v.split('|').map(str::trim) {
                if alt.is_empty() {
                    return Err(err(format!("term {raw:?}: empty value")));
                }
                let value = match key {
                    Key::Workload => Value::Text(alt.into()),
                    Key::Pipeline => Value::Text(
                        alt.parse::<memfabric_migration::strategy::Strategy>().map_err(|e| err(e.to_string()))?.to_string(),
                    ),
                    Key::Link => Value::Text(canonical_link(alt)),
                    Key::Mem => Value::Number(Bytes::parse(alt).map_err(|e| err(e.to_string()))?.0 as f64),
                    Key::DirtyRate | Key::Seed | Key::Repeat => {
                        Value::Number(alt.parse::<f64>().map_err(|_| err(format!("term {raw:?}: {alt:?} is not a number")))?)
                    }
                };
                alternatives.push(value);
            }
            terms.push(Term { key, negated, alternatives });
        }
        Ok(Selector { text: text.into(), terms })
    }

    /// The selector as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a run with these parameters is selected.
    pub fn matches(&self, p: &RunParams) -> bool {
        self.terms.iter().all(|t| {
            let actual = match t.key {
                Key::Workload => Value::Text(p.workload.clone()),
                Key::Pipeline => Value::Text(p.pipeline.clone()),
                Key::Link => Value::Text(canonical_link(&p.link)),
                Key::Mem => Value::Number(p.memory_bytes as f64),
                Key::DirtyRate => Value::Number(p.dirty_rate_pages_per_s),
                Key::Seed => Value::Number(p.seed as f64),
                Key::Repeat => Value::Number(p.repeat as f64),
            };
            t.alternatives.contains(&actual) != t.negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(link: &str, pipeline: &str, seed: u64) -> RunParams {
        RunParams {
            workload: "web".into(),
            dirty_rate_pages_per_s: 3000.0,
            memory_bytes: 256 << 20,
            link: link.into(),
            pipeline: pipeline.into(),
            seed,
            repeat: 0,
            integrity_check: true,
        }
    }

    #[test]
    fn terms_alternatives_and_negation() {
        let s = Selector::parse("link=100Mbit/s,25ms|loopback & pipeline!=none & seed=1").unwrap();
        assert!(s.matches(&params("100Mbit/s,25ms", "zero+lz4", 1)));
        // The link compares by value: 12.5MB/s is 100Mbit/s.
        assert!(s.matches(&params("12.5MB/s,25ms", "zero+lz4", 1)));
        assert!(s.matches(&params("loopback", "zero+lz4", 1)));
        assert!(!s.matches(&params("100Mbit/s,25ms", "none", 1)));
        assert!(!s.matches(&params("100Mbit/s,25ms", "zero+lz4", 2)));
        assert!(!s.matches(&params("50Mbit/s,25ms", "zero+lz4", 1)));
        assert!(Selector::parse("all").unwrap().matches(&params("loopback", "none", 9)));
        assert!(Selector::parse("mem=256MiB").unwrap().matches(&params("loopback", "none", 9)));
        assert!(!Selector::parse("mem=1GiB").unwrap().matches(&params("loopback", "none", 9)));
    }

    #[test]
    fn bad_selectors_say_why() {
        for (text, needle) in [("colour=red", "unknown key"), ("seed", "KEY=VALUE"), ("seed=x", "not a number"), ("", "empty"), ("pipeline=gzip", "gzip"), ("seed=1|", "empty value")] {
            let e = Selector::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
