//! The run matrix of `calibrate-runs`: a strict TOML file, expanded into
//! one [`RunSpec`] per run.
//!
//! ```toml
//! [migration]                 # optional; applies to every run
//! downtime_limit = "300ms"
//! max_rounds = 30
//! on_non_convergence = "force-stop"   # or "abort"
//! warmup = "1s"
//! integrity_check = true
//!
//! [[block]]                   # one or more; each is a cartesian product
//! workloads = ["web"]
//! dirty_rates = [500, 3000]   # page writes per second
//! guest_sizes = ["256MiB", "1GiB"]
//! links = ["loopback", "100Mbit/s,25ms"]
//! pipelines = ["none", "zero+xbzrle+lz4"]
//! seeds = [1, 2]
//! repeats = 1                 # runs of each combination (default 1)
//! ```
//!
//! Every value is checked before anything runs; an error names the line and
//! the key. Two blocks may not produce the same run.

use std::collections::BTreeMap;
use std::path::Path;

use memfabric_migration::precopy::NonConvergence;
use memfabric_migration::strategy::Strategy;
use memfabric_migration::units::{Bytes, Nanos};
use serde::Deserialize;
use toml::Spanned;

use crate::guest::GuestWorkload;
use crate::wan::LinkSpec;

/// Guest RAM must be a multiple of this (the guest maps 2 MiB pages).
const GUEST_SIZE_ALIGN_BYTES: u64 = 2 << 20;

/// A matrix file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// Not a readable regular file, or larger than a matrix may be.
    #[error(transparent)]
    Input(#[from] memfabric_formats::input::InputError),
    /// TOML syntax or an unknown/missing key.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// toml's message (it has the line and column).
        message: String,
    },
    /// A value that parses as TOML but means nothing here.
    #[error("{path}:{line}: `{key}`: {message}")]
    Value {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The key.
        key: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    #[serde(default)]
    migration: Option<Spanned<MigrationFile>>,
    block: Vec<Spanned<BlockFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationFile {
    downtime_limit: Option<Spanned<String>>,
    max_rounds: Option<u32>,
    on_non_convergence: Option<Spanned<String>>,
    warmup: Option<Spanned<String>>,
    integrity_check: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockFile {
    workloads: Vec<Spanned<String>>,
    dirty_rates: Vec<Spanned<f64>>,
    guest_sizes: Vec<Spanned<String>>,
    links: Vec<Spanned<String>>,
    pipelines: Vec<Spanned<String>>,
    seeds: Vec<u64>,
    #[serde(default)]
    repeats: Option<Spanned<u32>>,
}

/// Settings shared by every run of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationSettings {
    /// Stop rule: downtime limit.
    pub downtime_limit: Nanos,
    /// Stop rule: round bound.
    pub max_rounds: u32,
    /// Stop rule: action at the bound.
    pub on_non_convergence: NonConvergence,
    /// Guest run time before migrating.
    pub warmup: Nanos,
    /// Hash RAM at switchover.
    pub integrity_check: bool,
}

/// One run of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Folder name (unique, derived from the parameters).
    pub id: String,
    /// Workload archetype.
    pub workload: String,
    /// Page writes per second.
    pub dirty_rate_pages_per_s: f64,
    /// Guest RAM.
    pub memory: Bytes,
    /// None: loopback.
    pub link: Option<LinkSpec>,
    /// Pipeline.
    pub pipeline: Strategy,
    /// Seed.
    pub seed: u64,
    /// Repetition index.
    pub repeat: u32,
}

/// A checked matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Shared settings.
    pub settings: MigrationSettings,
    /// Runs in file order (blocks, then workloads, rates, sizes, links, pipelines, seeds, repeats).
    pub runs: Vec<RunSpec>,
}

impl Matrix {
    /// Whether any run needs an emulated link (and so root).
    pub fn needs_link(&self) -> bool {
        self.runs.iter().any(|r| r.link.is_some())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// A file-system-safe slug: ASCII letters, digits, `+`, `.`, `-` kept, the rest `_`.
fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-') { c } else { '_' }).collect()
}

/// Reads and checks a matrix file.
pub fn load(path: &Path) -> Result<Matrix, MatrixError> {
    let text = memfabric_formats::input::read_text(path, memfabric_formats::input::SCENARIO_BYTES_MAX, "a calibration matrix")?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks matrix text (`path` names it in errors).
pub fn parse(text: &str, path: &str) -> Result<Matrix, MatrixError> {
    let file: MatrixFile =
        toml::from_str(text).map_err(|e| MatrixError::Syntax { path: path.into(), message: e.to_string().trim_end().into() })?;
    let err = |span: std::ops::Range<usize>, key: &'static str, message: String| MatrixError::Value {
        path: path.into(),
        line: line_of(text, span.start),
        key,
        message,
    };
    let m = file.migration.as_ref().map(|m| m.get_ref());
    let duration = |v: Option<&Spanned<String>>, key: &'static str, default: Nanos| match v {
        None => Ok(default),
        Some(s) => Nanos::parse(s.get_ref()).map_err(|e| err(s.span(), key, e.to_string())),
    };
    let on_non_convergence = match m.and_then(|m| m.on_non_convergence.as_ref()) {
        None => NonConvergence::ForceStop,
        Some(s) => match s.get_ref().as_str() {
            "force-stop" => NonConvergence::ForceStop,
            "abort" => NonConvergence::Abort,
            other => {
                return Err(err(s.span(), "on_non_convergence", format!("{other:?}: expected \"force-stop\" or \"abort\"")))
            }
        },
    };
    let settings = MigrationSettings {
        downtime_limit: duration(
            m.and_then(|m| m.downtime_limit.as_ref()),
            "downtime_limit",
            memfabric_migration::precopy::DEFAULT_DOWNTIME_LIMIT,
        )?,
        max_rounds: m.and_then(|m| m.max_rounds).unwrap_or(memfabric_migration::precopy::DEFAULT_MAX_ROUNDS),
        on_non_convergence,
        warmup: duration(m.and_then(|m| m.warmup.as_ref()), "warmup", Nanos::from_millis(1000))?,
        integrity_check: m.and_then(|m| m.integrity_check).unwrap_or(true),
    };
    if settings.max_rounds == 0 {
        let span = file.migration.as_ref().map(|m| m.span()).unwrap_or(0..0);
        return Err(err(span, "max_rounds", "must be at least 1".into()));
    }
    if file.block.is_empty() {
        return Err(MatrixError::Syntax { path: path.into(), message: "no [[block]]: the matrix has no runs".into() });
    }
    let mut runs = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (bi, block) in file.block.iter().enumerate() {
        let bspan = block.span();
        let b = block.get_ref();
        let nonempty = |len: usize, key: &'static str| {
            if len == 0 {
                Err(err(bspan.clone(), key, "is empty: list at least one value".into()))
            } else {
                Ok(())
            }
        };
        nonempty(b.workloads.len(), "workloads")?;
        nonempty(b.dirty_rates.len(), "dirty_rates")?;
        nonempty(b.guest_sizes.len(), "guest_sizes")?;
        nonempty(b.links.len(), "links")?;
        nonempty(b.pipelines.len(), "pipelines")?;
        nonempty(b.seeds.len(), "seeds")?;
        let repeats = match &b.repeats {
            None => 1,
            Some(r) if *r.get_ref() == 0 => return Err(err(r.span(), "repeats", "must be at least 1".into())),
            Some(r) => *r.get_ref(),
        };
        for w in &b.workloads {
            GuestWorkload::from_archetype(w.get_ref(), None, 1).map_err(|e| err(w.span(), "workloads", e.to_string()))?;
        }
        for r in &b.dirty_rates {
            let v = *r.get_ref();
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(r.span(), "dirty_rates", format!("{v}: expected page writes per second >= 0")));
            }
        }
        let mut sizes = Vec::new();
        for s in &b.guest_sizes {
            let bytes = Bytes::parse(s.get_ref()).map_err(|e| err(s.span(), "guest_sizes", e.to_string()))?;
            if bytes.0 == 0 || bytes.0 % GUEST_SIZE_ALIGN_BYTES != 0 {
                return Err(err(s.span(), "guest_sizes", format!("{:?}: expected a positive multiple of 2 MiB", s.get_ref())));
            }
            sizes.push(bytes);
        }
        let mut links = Vec::new();
        for l in &b.links {
            let spec = match l.get_ref().as_str() {
                "loopback" => None,
                t => Some(t.parse::<LinkSpec>().map_err(|e| err(l.span(), "links", format!("{e} (or \"loopback\")")))?),
            };
            links.push(spec);
        }
        let mut pipelines = Vec::new();
        for p in &b.pipelines {
            pipelines.push(p.get_ref().parse::<Strategy>().map_err(|e| err(p.span(), "pipelines", e.to_string()))?);
        }
        for w in &b.workloads {
            for rate in &b.dirty_rates {
                let rate = *rate.get_ref();
                GuestWorkload::from_archetype(w.get_ref(), Some(rate), 1)
                    .map_err(|e| err(w.span(), "dirty_rates", e.to_string()))?;
                for (si, mem) in sizes.iter().enumerate() {
                    GuestWorkload::from_archetype(w.get_ref(), Some(rate), 1)
                        .and_then(|g| g.layout(mem.0).map(|_| ()))
                        .map_err(|e| err(b.guest_sizes[si].span(), "guest_sizes", e.to_string()))?;
                    for (link, ltext) in links.iter().zip(&b.links) {
                        for pipeline in &pipelines {
                            for &seed in &b.seeds {
                                for repeat in 0..repeats {
                                    let id = format!(
                                        "{}-w{}-{}MiB-{}-{}-s{}-r{}",
                                        slug(w.get_ref()),
                                        rate,
                                        mem.0 >> 20,
                                        slug(ltext.get_ref()),
                                        slug(&pipeline.to_string()),
                                        seed,
                                        repeat
                                    );
                                    if let Some(prev) = seen.insert(id.clone(), bi) {
                                        return Err(err(
                                            bspan.clone(),
                                            "block",
                                            format!("run {id} is also produced by block {} (blocks count from 1)", prev + 1),
                                        ));
                                    }
                                    runs.push(RunSpec {
                                        id,
                                        workload: w.get_ref().clone(),
                                        dirty_rate_pages_per_s: rate,
                                        memory: *mem,
                                        link: link.clone(),
                                        pipeline: *pipeline,
                                        seed,
                                        repeat,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Matrix { settings, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[migration]
downtime_limit = "300ms"
[[block]]
workloads = ["web"]
dirty_rates = [500, 3000]
guest_sizes = ["256MiB"]
links = ["loopback", "100Mbit/s,25ms"]
pipelines = ["none", "zero+xbzrle+lz4"]
seeds = [1]
[[block]]
workloads = ["web"]
dirty_rates = [500]
guest_sizes = ["256MiB"]
links = ["loopback"]
pipelines = ["none"]
seeds = [7]
repeats = 3
"#;

    #[test]
    fn expands_the_product_in_order() {
        let m = parse(OK, "m.toml").unwrap();
        assert_eq!(m.runs.len(), 2 * 2 * 2 + 3);
        assert_eq!(m.runs[0].id, "web-w500-256MiB-loopback-none-s1-r0");
        assert_eq!(m.runs[3].id, "web-w500-256MiB-100Mbit_s_25ms-zero+xbzrle+lz4-s1-r0");
        assert_eq!(m.runs[10].repeat, 2);
        assert!(m.needs_link());
        assert_eq!(m.settings.max_rounds, 30);
    }

    fn value_error(text: &str) -> (usize, &'static str, String) {
        match parse(text, "m.toml").unwrap_err() {
            MatrixError::Value { line, key, message, .. } => (line, key, message),
            other => panic!("expected a value error, got {other}"),
        }
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let (line, key, _) = value_error(&OK.replace("\"100Mbit/s,25ms\"", "\"100Mbit/s\""));
        assert_eq!((line, key), (8, "links"));
        let (line, key, _) = value_error(&OK.replace("\"none\", \"zero", "\"gzip\", \"zero"));
        assert_eq!((line, key), (9, "pipelines"));
        let (line, key, msg) = value_error(&OK.replacen("\"256MiB\"", "\"255MiB\"", 1));
        assert_eq!((line, key), (7, "guest_sizes"));
        assert!(msg.contains("2 MiB"), "{msg}");
        let (line, key, _) = value_error(&OK.replacen("[\"web\"]", "[\"nosuch\"]", 1));
        assert_eq!((line, key), (5, "workloads"));
        let (line, key, _) = value_error(&OK.replace("\"300ms\"", "\"300\""));
        assert_eq!((line, key), (3, "downtime_limit"));
    }

    #[test]
    fn unknown_keys_and_duplicate_runs_are_errors() {
        let e = parse(&OK.replace("seeds = [1]", "seeds = [1]\ncolour = 3"), "m.toml").unwrap_err().to_string();
        assert!(e.contains("colour") && e.contains("m.toml"), "{e}");
        let dup = OK.replace("seeds = [7]", "seeds = [1]").replace("repeats = 3", "");
        let (_, key, msg) = value_error(&dup);
        assert_eq!(key, "block");
        assert!(msg.contains("web-w500-256MiB-loopback-none-s1-r0") && msg.contains("block 1"), "{msg}");
    }
}
