//! The study file: TOML, strict (unknown keys are errors), every error located
//! at the file, line, column and key.
//!
//! ```toml
//! [study]
//! name = "wan-sizing"
//! scenario = "../scenarios/evacuation-1g-40ms.toml"   # relative to this file
//! seeds = [1, 2, 3]                # or: repetitions = 3 (seeds s, s+1, s+2 from the scenario's seed)
//!
//! [axes]                           # cartesian product of every axis
//! links.lyon-madrid.bandwidth = ["100Mbit/s", "1Gbit/s", "10Gbit/s"]
//! defaults.strategy = ["none", "zero+zstd"]
//! evacuations.drain-lyon.max_concurrent = { from = 1, to = 8, steps = 4, scale = "log" }
//!
//! # or, instead of [axes], an explicit list of points:
//! # [[points]]
//! # links.lyon-madrid.bandwidth = "1Gbit/s"
//! # defaults.strategy = "none"
//!
//! [plan]                           # only for `memfabric plan`
//! axis = "links.lyon-madrid.bandwidth"
//! find = "min"
//! from = "10Mbit/s"
//! to = "10Gbit/s"
//! scale = "log"
//! tolerance = "1%"
//! targets = [{ metric = "makespan_s", max = 1800 }, { metric = "failed", max = 0 }]
//! ```
//!
//! Every axis value is applied alone to the base scenario and checked when the
//! study loads, so an unknown path or a value of the wrong unit is reported at
//! the study's line, not at the first point that uses it.

use super::axes::{self, Axis, AxisValue, Scale};
use super::plan::{Find, PlanSpec, Target};
use super::table::METRICS;
use memfabric_migration::units::Fraction;
use schemars::JsonSchema;
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A study could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A file could not be read (missing, not a regular file, too large,
    /// not UTF-8).
    #[error(transparent)]
    Read(#[from] crate::input::InputError),
    /// The study file is malformed or means something impossible.
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The study file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key of the offending value, e.g. `axes.links.wan.bandwidth[1]`.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A request that cannot be carried out as given (a study without
    /// `[plan]` for `plan`, shard folders of different studies for `merge`).
    #[error("{message}")]
    Input {
        /// What is wrong.
        message: String,
    },
    /// The base scenario is invalid.
    #[error("base scenario of {study}")]
    Scenario {
        /// The study file.
        study: String,
        /// The scenario's own located error.
        #[source]
        source: crate::scenario::ScenarioError,
    },
}

/// A checked study.
#[derive(Debug, Clone)]
pub struct Study {
    /// Name (names the default output folder).
    pub name: String,
    /// The study file as given.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// xxh3-128 of the study text and the base scenario text, hex.
    pub hash: String,
    /// The base scenario file (resolved against the study's folder).
    pub scenario_path: PathBuf,
    /// Its text.
    pub scenario_text: String,
    /// Its document, to which axis values are applied.
    pub scenario_doc: toml::Table,
    /// Seeds each point runs with.
    pub seeds: Vec<u64>,
    /// Axes, in file order.
    pub axes: Vec<Axis>,
    /// An explicit list of points (value index per axis), instead of the product.
    pub list: Option<Vec<Vec<usize>>>,
    /// The `[plan]` section.
    pub plan: Option<PlanSpec>,
}

impl Study {
    /// The folder relative paths of the base scenario are taken from.
    pub fn scenario_dir(&self) -> Option<&Path> {
        self.scenario_path.parent().filter(|p| !p.as_os_str().is_empty())
    }
}

/// A study file, as written (`docs/capacity-planning.md`); also the source of
/// its JSON Schema (`memfabric schema study`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StudyFile {
    /// Identity, base scenario and seeds.
    study: StudySection,
    /// Axes: a scenario value path (`links.wan.bandwidth`) to a list of
    /// values or a range table (`from`, `to`, `step` or `steps`, `scale`).
    #[serde(default)]
    #[schemars(with = "Option<std::collections::BTreeMap<String, serde_json::Value>>")]
    axes: Option<toml::Table>,
    /// An explicit list of points instead of the axes' product: path to value.
    #[serde(default)]
    #[schemars(with = "Option<Vec<std::collections::BTreeMap<String, serde_json::Value>>>")]
    points: Option<Vec<toml::Table>>,
    /// The inverse question `memfabric plan` solves.
    #[serde(default)]
    plan: Option<PlanFile>,
}

/// `[study]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StudySection {
    /// Name; also the default results folder.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// The base scenario file, relative to the study file.
    #[schemars(with = "String")]
    scenario: Spanned<String>,
    /// Seeds each point runs with.
    #[serde(default)]
    #[schemars(with = "Option<Vec<u64>>")]
    seeds: Option<Spanned<Vec<u64>>>,
    /// Or this many repetitions (seeds derived from the scenario's).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    repetitions: Option<Spanned<u32>>,
}

/// `[plan]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    /// The axis path solved for.
    #[schemars(with = "String")]
    axis: Spanned<String>,
    /// The minimum or the maximum value meeting the targets.
    find: Find,
    /// One end of the searched range (a value of the axis's unit).
    #[schemars(with = "serde_json::Value")]
    from: Spanned<toml::Value>,
    /// The other end.
    #[schemars(with = "serde_json::Value")]
    to: Spanned<toml::Value>,
    /// Linear or log bisection.
    #[serde(default)]
    scale: Option<Scale>,
    /// Relative width of the final bracket.
    #[serde(default)]
    #[schemars(with = "Option<crate::scenario::json_schema::Share>")]
    tolerance: Option<Spanned<Fraction>>,
    /// Quantile over seeds at which targets must hold.
    #[serde(default)]
    #[schemars(with = "Option<crate::scenario::json_schema::Share>")]
    quantile: Option<Spanned<Fraction>>,
    /// Points of the fallback grid when the metric is not monotone.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    grid: Option<Spanned<u32>>,
    /// Targets on metrics (all must hold).
    #[schemars(with = "Vec<TargetFile>")]
    targets: Spanned<Vec<TargetFile>>,
}

/// One `[[plan.targets]]` entry.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    /// A metric of `points.parquet`.
    #[schemars(with = "String")]
    metric: Spanned<String>,
    /// The metric must be at most this.
    #[serde(default)]
    max: Option<f64>,
    /// The metric must be at least this.
    #[serde(default)]
    min: Option<f64>,
}

/// Most points a study may have (axis values × seeds), checked before any
/// point is made; also the most steps of one range.
pub const POINTS_MAX: u32 = 1_000_000;

/// Default relative width of a plan's final bracket.
pub const DEFAULT_TOLERANCE: f64 = 0.01;
/// Default points of a plan's fallback grid when the metric is not monotone.
pub const DEFAULT_GRID: u32 = 16;

/// Reads and checks a study file and its base scenario.
pub fn load(path: &Path) -> Result<Study, StudyError> {
    let text = crate::input::read_text(path, crate::input::SCENARIO_BYTES_MAX, "a study")?;
    parse(&text, path)
}

/// One segment of a key path into the study document, for locating errors.
#[derive(Debug, Clone)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Locates errors in the study text.
pub(crate) struct Locator<'a> {
    text: &'a str,
    label: String,
}

impl Locator<'_> {
    pub(crate) fn error(&self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> StudyError {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        StudyError::Invalid { path: self.label.clone(), line, column, field: field.into(), message: message.into() }
    }

    /// The span of the value at `segs` (the whole file when it cannot be found).
    pub(crate) fn span(&self, segs: &[Seg]) -> Range<usize> {
        let Ok(doc) = toml::de::DeTable::parse(self.text) else { return 0..0 };
        let mut span = doc.span();
        let mut table = Some(doc.get_ref());
        let mut array: Option<&toml::de::DeArray<'_>> = None;
        for seg in segs {
            let value = match (seg, table, array) {
                (Seg::Key(k), Some(t), _) => t.iter().find(|(key, _)| key.get_ref().as_ref() == k.as_str()).map(|(_, v)| v),
                (Seg::Index(i), _, Some(a)) => a.get(*i),
                _ => None,
            };
            let Some(value) = value else { break };
            span = value.span();
            table = None;
            array = None;
            match value.get_ref() {
                toml::de::DeValue::Table(t) => table = Some(t),
                toml::de::DeValue::Array(a) => array = Some(a),
                _ => {}
            }
        }
        span
    }
}

/// Dotted name of a key path, e.g. `axes.links.wan.bandwidth[1]`.
pub(crate) fn field_name(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn keys(path: &[&str]) -> Vec<Seg> {
    path.iter().map(|k| Seg::Key(k.to_string())).collect()
}

/// Checks a study given as text; `path` is the study file (its folder
/// resolves the base scenario).
pub fn parse(text: &str, path: &Path) -> Result<Study, StudyError> {
    let loc = Locator { text, label: path.display().to_string() };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        loc.error(e.span().unwrap_or(0..0), "toml syntax", e.message().trim().to_string())
    })?;
    let file: StudyFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let field = if field == "." { "(top level)".to_string() } else { field };
        loc.error(e.inner().span().unwrap_or(0..0), field, e.inner().message().trim().to_string())
    })?;
    let s = &file.study;
    let name = s.name.get_ref().trim().to_string();
    if let Some(problem) = crate::scenario::folder_name_problem(&name) {
        return Err(loc.error(s.name.span(), "study.name", format!("{problem} (it names the results folder: no '/', '\\', control characters or leading '.')")));
    }
    let base = path.parent().filter(|p| !p.as_os_str().is_empty());
    let scenario_path = base.map_or_else(|| PathBuf::from(s.scenario.get_ref()), |b| b.join(s.scenario.get_ref()));
    let scenario_text = crate::input::read_text(&scenario_path, crate::input::SCENARIO_BYTES_MAX, "a scenario").map_err(|e| {
        let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
        loc.error(s.scenario.span(), "study.scenario", format!("cannot use {e}{cause}"))
    })?;
    let base_scenario = crate::scenario::load(&scenario_path)
        .map_err(|source| StudyError::Scenario { study: path.display().to_string(), source })?;
    let scenario_doc: toml::Table = toml::from_str(&scenario_text).expect("a scenario that loaded is a TOML table");
    let seeds = match (&s.seeds, &s.repetitions) {
        (Some(_), Some(r)) => return Err(loc.error(r.span(), "study.repetitions", "give seeds or repetitions, not both")),
        (Some(list), None) => {
            if list.get_ref().is_empty() {
                return Err(loc.error(list.span(), "study.seeds", "list at least one seed, or leave the key out"));
            }
            let mut seen = Vec::new();
            for &seed in list.get_ref() {
                if seen.contains(&seed) {
                    return Err(loc.error(list.span(), "study.seeds", format!("seed {seed} is listed twice")));
                }
                seen.push(seed);
            }
            seen
        }
        (None, Some(r)) => {
            if *r.get_ref() == 0 {
                return Err(loc.error(r.span(), "study.repetitions", "must be at least 1"));
            }
            (0..*r.get_ref() as u64).map(|i| base_scenario.seed.wrapping_add(i)).collect()
        }
        (None, None) => vec![base_scenario.seed],
    };
    let checker = axes::Checker { doc: &scenario_doc, dir: base, label: scenario_path.display().to_string() };
    let (axes, list) = match (&file.axes, &file.points) {
        (Some(_), Some(_)) => {
            return Err(loc.error(loc.span(&keys(&["points"])), "points", "give [axes] (a product) or [[points]] (a list), not both"))
        }
        (Some(table), None) => (axes::read_axes(table, &loc, &checker)?, None),
        (None, Some(points)) => {
            let (axes, list) = axes::read_points(points, &loc, &checker)?;
            (axes, Some(list))
        }
        (None, None) => (Vec::new(), None),
    };
    // Bound the study's size before any point is made: axis values times
    // seeds (or list entries times seeds).
    let per_seed = match &list {
        Some(l) => Some(l.len() as u64),
        None => axes.iter().try_fold(1u64, |n, a| n.checked_mul(a.values.len() as u64)),
    };
    match per_seed.and_then(|n| n.checked_mul(seeds.len() as u64)) {
        Some(n) if n <= u64::from(POINTS_MAX) => {}
        n => {
            let what = n.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
            let key = if list.is_some() { "points" } else { "axes" };
            return Err(loc.error(loc.span(&keys(&[key])), key, format!("{what} points (values × seeds); a study holds at most {POINTS_MAX}")));
        }
    }
    let plan = match &file.plan {
        None => None,
        Some(p) => Some(read_plan(p, &axes, &loc, &checker)?),
    };
    let hash = format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(format!("{}\u{0}{}", text, scenario_text).as_bytes())
    );
    Ok(Study {
        name,
        path: path.to_path_buf(),
        text: text.to_string(),
        hash,
        scenario_path,
        scenario_text,
        scenario_doc,
        seeds,
        axes,
        list,
        plan,
    })
}

fn read_plan(p: &PlanFile, axes: &[Axis], loc: &Locator<'_>, checker: &axes::Checker<'_>) -> Result<PlanSpec, StudyError> {
    let axis = p.axis.get_ref().trim().to_string();
    if axes.iter().any(|a| a.path == axis) {
        return Err(loc.error(p.axis.span(), "plan.axis", format!("{axis} is also an axis of [axes]: the plan searches it, so leave it out there")));
    }
    let bound = |v: &Spanned<toml::Value>, key: &str| -> Result<AxisValue, StudyError> {
        let field = format!("plan.{key}");
        let value = AxisValue::from_toml(v.get_ref());
        if value.number.is_none() {
            return Err(loc.error(
                v.span(),
                field,
                format!("{} is not numeric: a plan searches a number, a rate, a size or a duration", value.label),
            ));
        }
        checker.check(&axis, &value).map_err(|m| loc.error(v.span(), format!("plan.{key}"), m))?;
        Ok(value)
    };
    let from = bound(&p.from, "from")?;
    let to = bound(&p.to, "to")?;
    if from.kind() != to.kind() {
        return Err(loc.error(p.to.span(), "plan.to", format!("{} and {} are not of the same unit", from.label, to.label)));
    }
    let (lo, hi) = (from.number.unwrap_or(0.0), to.number.unwrap_or(0.0));
    if lo >= hi {
        return Err(loc.error(p.to.span(), "plan.to", format!("must be above plan.from ({})", from.label)));
    }
    let scale = p.scale.unwrap_or(Scale::Linear);
    if scale == Scale::Log && lo <= 0.0 {
        return Err(loc.error(p.from.span(), "plan.from", "a log scale needs a positive start"));
    }
    let tolerance = p.tolerance.as_ref().map_or(DEFAULT_TOLERANCE, |t| t.get_ref().0);
    if let Some(t) = &p.tolerance {
        if t.get_ref().0 <= 0.0 {
            return Err(loc.error(t.span(), "plan.tolerance", "must be positive, e.g. \"1%\""));
        }
    }
    let quantile = p.quantile.as_ref().map_or(1.0, |q| q.get_ref().0);
    if let Some(q) = &p.quantile {
        if q.get_ref().0 <= 0.0 {
            return Err(loc.error(q.span(), "plan.quantile", "must be above 0, e.g. 0.9 (90% of the seeds meet the targets)"));
        }
    }
    let grid = p.grid.as_ref().map_or(DEFAULT_GRID, |g| *g.get_ref());
    if let Some(g) = &p.grid {
        if *g.get_ref() < 2 {
            return Err(loc.error(g.span(), "plan.grid", "must be at least 2"));
        }
    }
    if p.targets.get_ref().is_empty() {
        return Err(loc.error(p.targets.span(), "plan.targets", "list at least one target, e.g. { metric = \"makespan_s\", max = 1800 }"));
    }
    let mut targets = Vec::new();
    for (i, t) in p.targets.get_ref().iter().enumerate() {
        let metric = t.metric.get_ref().trim();
        if !METRICS.contains(&metric) {
            return Err(loc.error(
                t.metric.span(),
                format!("plan.targets[{i}].metric"),
                format!("no metric {metric:?}; expected one of {}", METRICS.join(", ")),
            ));
        }
        let bound = match (t.max, t.min) {
            (Some(max), None) if max.is_finite() => super::plan::Bound::Max(max),
            (None, Some(min)) if min.is_finite() => super::plan::Bound::Min(min),
            _ => {
                return Err(loc.error(
                    t.metric.span(),
                    format!("plan.targets[{i}]"),
                    "give exactly one finite bound: max = … (metric ≤ max) or min = … (metric ≥ min)",
                ))
            }
        };
        targets.push(Target { metric: metric.to_string(), bound });
    }
    let integer = from.is_integer() && to.is_integer();
    Ok(PlanSpec { axis, find: p.find, from, to, scale, tolerance, quantile, grid, targets, integer })
}
