//! Axes of a study: their values (numbers, or strings with a unit such as
//! `"1Gbit/s"`, `"30ms"`, `"4GiB"`, `"2%"`, or plain text such as a strategy),
//! ranges with linear or log steps, and applying a value to the base scenario
//! document by path.
//!
//! A path walks the scenario file's tables by key; a list of tables
//! (`links`, `vms`, `sites`, `sites.<s>.hosts`, `migrations`, `evacuations`)
//! is entered by an element's `name` (an evacuation without one is
//! `evacuate-<from>`, a migration is its `vm`), or by its index:
//! `links.wan.bandwidth`, `vms.web.count`, `sites.a.hosts.a-h.count`,
//! `evacuations.drain.settings.strategy`, `defaults.streams`. Missing tables
//! on the way are created; whether the key exists is for the scenario's own
//! strict parser to say.

use super::file::{field_name, Locator, Seg, StudyError};
use memfabric_migration::units::{Bytes, BytesPerSecond, Fraction, Nanos};
use serde::Deserialize;
use std::path::Path;

/// One axis: a scenario path and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Dotted path into the scenario, e.g. `links.wan.bandwidth`.
    pub path: String,
    /// Values in study order.
    pub values: Vec<AxisValue>,
}

/// What kind of quantity a value is (decides how a range is rendered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A TOML integer.
    Integer,
    /// A TOML float.
    Float,
    /// A rate string; `bits` when written in bit/s or bps.
    Rate {
        /// Written in bits.
        bits: bool,
    },
    /// A duration string.
    Duration,
    /// A size string.
    Size,
    /// A fraction string (`"2%"`).
    Fraction,
    /// Anything else (a strategy, a mechanism, a boolean, …): not numeric.
    Text,
}

/// One value of an axis.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisValue {
    /// As written (strings without quotes), also its column value.
    pub label: String,
    /// The TOML value put into the scenario.
    pub value: toml::Value,
    /// In base units (B/s, s, bytes, fraction, plain number); `None` when not numeric.
    pub number: Option<f64>,
    kind: ValueKind,
}

/// Step scale of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// Equal differences.
    #[default]
    Linear,
    /// Equal ratios.
    Log,
}

/// `{ from, to, steps, scale }` in `[axes]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeFile {
    from: toml::Value,
    to: toml::Value,
    steps: u32,
    #[serde(default)]
    scale: Scale,
}

impl AxisValue {
    /// A value as written in the study.
    pub fn from_toml(v: &toml::Value) -> AxisValue {
        let (label, number, kind) = match v {
            toml::Value::Integer(i) => (i.to_string(), Some(*i as f64), ValueKind::Integer),
            toml::Value::Float(f) => (f.to_string(), Some(*f), ValueKind::Float),
            toml::Value::String(s) => {
                let t = s.trim();
                let (number, kind) = if t.ends_with("bit/s") || t.ends_with("bps") || t.ends_with("B/s") {
                    (BytesPerSecond::parse(t).ok().map(|r| r.0), ValueKind::Rate { bits: !t.ends_with("B/s") })
                } else if t.ends_with('%') {
                    (Fraction::parse(t).ok().map(|f| f.0), ValueKind::Fraction)
                } else if t.ends_with('B') {
                    (Bytes::parse(t).ok().map(|b| b.0 as f64), ValueKind::Size)
                } else if let Ok(n) = Nanos::parse(t) {
                    (Some(n.as_secs_f64()), ValueKind::Duration)
                } else {
                    (None, ValueKind::Text)
                };
                let kind = if number.is_some() { kind } else { ValueKind::Text };
                (s.clone(), number, kind)
            }
            other => (other.to_string(), None, ValueKind::Text),
        };
        AxisValue { label, value: v.clone(), number, kind }
    }

    /// The kind of quantity.
    pub fn kind(&self) -> ValueKind {
        self.kind
    }

    /// Whether it is a TOML integer.
    pub fn is_integer(&self) -> bool {
        self.kind == ValueKind::Integer
    }

    /// The value of the same kind for `x` base units (integers rounded).
    pub fn with_number(&self, x: f64) -> AxisValue {
        let v = match self.kind {
            ValueKind::Integer => toml::Value::Integer(x.round() as i64),
            ValueKind::Float | ValueKind::Text => toml::Value::Float(sig(x).parse().unwrap_or(x)),
            ValueKind::Rate { bits: true } => {
                let (m, p) = prefix(x * 8.0);
                toml::Value::String(format!("{}{p}bit/s", sig(x * 8.0 / m)))
            }
            ValueKind::Rate { bits: false } => {
                let (m, p) = prefix(x);
                toml::Value::String(format!("{}{p}B/s", sig(x / m)))
            }
            ValueKind::Duration => toml::Value::String(if x >= 1.0 {
                format!("{}s", sig(x))
            } else if x >= 1e-3 {
                format!("{}ms", sig(x * 1e3))
            } else {
                format!("{}us", sig(x * 1e6))
            }),
            ValueKind::Size => {
                let (m, p) = binary_prefix(x);
                toml::Value::String(format!("{}{p}B", sig(x / m)))
            }
            ValueKind::Fraction => toml::Value::String(format!("{}%", sig(x * 100.0))),
        };
        AxisValue::from_toml(&v)
    }
}

/// `x` with six significant digits, without trailing zeros.
fn sig(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (5 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn prefix(x: f64) -> (f64, &'static str) {
    [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")].into_iter().find(|(m, _)| x >= *m).unwrap_or((1.0, ""))
}

fn binary_prefix(x: f64) -> (f64, &'static str) {
    const K: f64 = 1024.0;
    [(K * K * K * K, "Ti"), (K * K * K, "Gi"), (K * K, "Mi"), (K, "Ki")].into_iter().find(|(m, _)| x >= *m).unwrap_or((1.0, ""))
}

/// The values of a range: `steps` values from `from` to `to` inclusive.
pub fn range_values(from: &AxisValue, to: &AxisValue, steps: u32, scale: Scale) -> Vec<AxisValue> {
    let (lo, hi) = (from.number.unwrap_or(0.0), to.number.unwrap_or(0.0));
    let mut out: Vec<AxisValue> = Vec::new();
    for i in 0..steps {
        let t = i as f64 / (steps - 1) as f64;
        let x = match scale {
            Scale::Linear => lo + (hi - lo) * t,
            Scale::Log => lo * (hi / lo).powf(t),
        };
        let x = if i == 0 { lo } else if i + 1 == steps { hi } else { x };
        let v = if i == 0 { from.clone() } else if i + 1 == steps { to.clone() } else { from.with_number(x) };
        if !out.iter().any(|o| o.value == v.value) {
            out.push(v);
        }
    }
    out
}

/// Applies `value` at `path` in a scenario document.
pub fn apply(doc: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    if segs.iter().any(|s| s.trim().is_empty()) {
        return Err(format!("{path:?} has an empty segment; expected e.g. links.<name>.bandwidth"));
    }
    let (last, walk) = segs.split_last().expect("split gives at least one segment");
    let mut cur: &mut toml::Table = doc;
    let mut i = 0;
    while i < walk.len() {
        let seg = walk[i];
        let here = segs[..=i].join(".");
        match cur.get(seg) {
            None => {
                cur.insert(seg.to_string(), toml::Value::Table(toml::Table::new()));
                cur = cur.get_mut(seg).and_then(|v| v.as_table_mut()).expect("just inserted");
                i += 1;
            }
            Some(toml::Value::Table(_)) => {
                cur = cur.get_mut(seg).and_then(|v| v.as_table_mut()).expect("is a table");
                i += 1;
            }
            Some(toml::Value::Array(items)) => {
                let Some(sel) = walk.get(i + 1) else {
                    return Err(format!("{here} is a list: name an element and a key, e.g. {here}.<name>.{last}"));
                };
                let names: Vec<String> = items.iter().enumerate().map(|(n, v)| element_name(seg, v, n)).collect();
                let idx = names
                    .iter()
                    .position(|n| n == sel)
                    .or_else(|| sel.parse::<usize>().ok().filter(|n| *n < items.len()))
                    .ok_or_else(|| format!("no element {sel:?} in {here}; its elements are: {}", names.join(", ")))?;
                let item = cur.get_mut(seg).and_then(|v| v.as_array_mut()).and_then(|a| a.get_mut(idx)).expect("indexed");
                cur = item.as_table_mut().ok_or_else(|| format!("{here}[{idx}] is not a table"))?;
                i += 2;
            }
            Some(_) => return Err(format!("{here} is a value, not a table: the path ends there")),
        }
    }
    if matches!(cur.get(*last), Some(toml::Value::Array(a)) if a.iter().all(|v| v.is_table()) && !a.is_empty()) {
        return Err(format!("{path} is a list of tables: name an element and a key, e.g. {path}.<name>.<key>"));
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// The name an element of a list of tables is selected by.
fn element_name(list: &str, v: &toml::Value, index: usize) -> String {
    let get = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
    get("name")
        .or_else(|| if list == "evacuations" { get("from").map(|f| format!("evacuate-{f}")) } else { None })
        .or_else(|| if list == "migrations" { get("vm") } else { None })
        .unwrap_or_else(|| index.to_string())
}

/// Checks axis values against the base scenario.
pub(crate) struct Checker<'a> {
    pub(crate) doc: &'a toml::Table,
    pub(crate) dir: Option<&'a Path>,
    pub(crate) label: String,
}

impl Checker<'_> {
    /// Applies one value alone to the base scenario and parses it.
    pub(crate) fn check(&self, path: &str, value: &AxisValue) -> Result<(), String> {
        let mut doc = self.doc.clone();
        apply(&mut doc, path, value.value.clone())?;
        let text = toml::to_string(&doc).map_err(|e| format!("cannot encode the scenario: {e}"))?;
        match crate::scenario::parse_at(&text, &self.label, self.dir) {
            Ok(_) => Ok(()),
            Err(crate::scenario::ScenarioError::Invalid { field, message, .. }) if message.contains("unknown field") => {
                Err(format!("unknown axis path {path}: the scenario has no {field}: {message}"))
            }
            Err(crate::scenario::ScenarioError::Invalid { field, message, .. }) => Err(format!(
                "{} does not fit the scenario at {path}: {field}: {message}",
                value.label
            )),
            Err(e) => Err(format!("{} does not fit the scenario at {path}: {e}", value.label)),
        }
    }
}

/// Reads `[axes]` (nested tables are paths; a leaf is a list of values or a range).
pub(crate) fn read_axes(table: &toml::Table, loc: &Locator<'_>, checker: &Checker<'_>) -> Result<Vec<Axis>, StudyError> {
    let mut leaves = Vec::new();
    flatten(table, &mut vec![Seg::Key("axes".into())], &mut leaves);
    if leaves.is_empty() {
        let segs = [Seg::Key("axes".into())];
        return Err(loc.error(loc.span(&segs), "axes", "no axes: give at least one, e.g. links.<name>.bandwidth = [\"1Gbit/s\", \"10Gbit/s\"]"));
    }
    let mut axes = Vec::new();
    for (segs, v) in leaves {
        let path = axis_path(&segs[1..]);
        let field = field_name(&segs);
        let values = match v {
            toml::Value::Array(items) => {
                if items.is_empty() {
                    return Err(loc.error(loc.span(&segs), field, "empty axis: list at least one value"));
                }
                let mut values: Vec<AxisValue> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let mut at = segs.clone();
                    at.push(Seg::Index(i));
                    let value = AxisValue::from_toml(item);
                    if values.iter().any(|v| v.value == value.value) {
                        return Err(loc.error(loc.span(&at), field_name(&at), format!("{} is listed twice", value.label)));
                    }
                    checker.check(&path, &value).map_err(|m| loc.error(loc.span(&at), field_name(&at), m))?;
                    values.push(value);
                }
                values
            }
            toml::Value::Table(t) => {
                let span = loc.span(&segs);
                let r: RangeFile = toml::Value::Table(t.clone()).try_into().map_err(|e: toml::de::Error| {
                    loc.error(span.clone(), field.clone(), format!("a range is {{ from, to, steps, scale = \"linear\"|\"log\" }}: {}", e.message().trim()))
                })?;
                let (from, to) = (AxisValue::from_toml(&r.from), AxisValue::from_toml(&r.to));
                for v in [&from, &to] {
                    if v.number.is_none() {
                        return Err(loc.error(span.clone(), field.clone(), format!("{} is not numeric: a range runs over numbers, rates, sizes or durations", v.label)));
                    }
                }
                if from.kind() != to.kind() {
                    return Err(loc.error(span, field, format!("{} and {} are not of the same unit", from.label, to.label)));
                }
                if r.steps < 2 {
                    return Err(loc.error(span, field, "steps must be at least 2 (from and to)"));
                }
                if r.steps > super::file::POINTS_MAX {
                    return Err(loc.error(span, field, format!("steps must be at most {} (a study's points bound)", super::file::POINTS_MAX)));
                }
                if r.scale == Scale::Log && (from.number.unwrap_or(0.0) <= 0.0 || to.number.unwrap_or(0.0) <= 0.0) {
                    return Err(loc.error(span, field, "a log range needs positive ends"));
                }
                let values = range_values(&from, &to, r.steps, r.scale);
                for value in &values {
                    checker.check(&path, value).map_err(|m| loc.error(span.clone(), field.clone(), m))?;
                }
                values
            }
            other => {
                return Err(loc.error(
                    loc.span(&segs),
                    field,
                    format!("{other} is one value: an axis takes a list of values or a range {{ from, to, steps }}"),
                ))
            }
        };
        axes.push(Axis { path, values });
    }
    Ok(axes)
}

/// Reads `[[points]]`: axes are the paths the points set, in first-seen order.
pub(crate) fn read_points(
    points: &[toml::Table],
    loc: &Locator<'_>,
    checker: &Checker<'_>,
) -> Result<(Vec<Axis>, Vec<Vec<usize>>), StudyError> {
    if points.is_empty() {
        let segs = [Seg::Key("points".into())];
        return Err(loc.error(loc.span(&segs), "points", "empty list of points"));
    }
    let mut axes: Vec<Axis> = Vec::new();
    let mut per_point: Vec<Vec<(String, AxisValue, Vec<Seg>)>> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let mut leaves = Vec::new();
        flatten_all(p, &mut vec![Seg::Key("points".into()), Seg::Index(i)], &mut leaves);
        let mut row = Vec::new();
        for (segs, v) in leaves {
            let path = axis_path(&segs[2..]);
            let value = AxisValue::from_toml(&v);
            checker.check(&path, &value).map_err(|m| loc.error(loc.span(&segs), field_name(&segs), m))?;
            row.push((path, value, segs));
        }
        if row.is_empty() {
            let segs = [Seg::Key("points".into()), Seg::Index(i)];
            return Err(loc.error(loc.span(&segs), field_name(&segs), "a point sets no value"));
        }
        for (path, value, _) in &row {
            match axes.iter_mut().find(|a| &a.path == path) {
                Some(a) => {
                    if !a.values.iter().any(|v| v.value == value.value) {
                        a.values.push(value.clone());
                    }
                }
                None => axes.push(Axis { path: path.clone(), values: vec![value.clone()] }),
            }
        }
        per_point.push(row);
    }
    let mut list = Vec::new();
    for (i, row) in per_point.iter().enumerate() {
        let mut idx = Vec::new();
        for a in &axes {
            let Some((_, value, _)) = row.iter().find(|(p, _, _)| p == &a.path) else {
                let segs = [Seg::Key("points".into()), Seg::Index(i)];
                return Err(loc.error(
                    loc.span(&segs),
                    field_name(&segs),
                    format!("does not set {} (every point sets the same paths)", a.path),
                ));
            };
            idx.push(a.values.iter().position(|v| v.value == value.value).expect("collected above"));
        }
        if list.contains(&idx) {
            let segs = [Seg::Key("points".into()), Seg::Index(i)];
            return Err(loc.error(loc.span(&segs), field_name(&segs), "the same point is listed twice"));
        }
        list.push(idx);
    }
    Ok((axes, list))
}

fn axis_path(segs: &[Seg]) -> String {
    segs.iter()
        .map(|s| match s {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Leaves of `[axes]`: a table with `from` is a range leaf, other tables are paths.
fn flatten(t: &toml::Table, at: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, toml::Value)>) {
    for (k, v) in t {
        at.push(Seg::Key(k.clone()));
        match v {
            toml::Value::Table(inner) if !inner.contains_key("from") => flatten(inner, at, out),
            _ => out.push((at.clone(), v.clone())),
        }
        at.pop();
    }
}

/// Leaves of a point: every non-table value.
fn flatten_all(t: &toml::Table, at: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, toml::Value)>) {
    for (k, v) in t {
        at.push(Seg::Key(k.clone()));
        match v {
            toml::Value::Table(inner) => flatten_all(inner, at, out),
            _ => out.push((at.clone(), v.clone())),
        }
        at.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_know_their_units() {
        let v = AxisValue::from_toml(&toml::Value::String("1Gbit/s".into()));
        assert_eq!(v.number, Some(125e6));
        assert_eq!(v.kind(), ValueKind::Rate { bits: true });
        let d = AxisValue::from_toml(&toml::Value::String("30min".into()));
        assert_eq!(d.number, Some(1800.0));
        let s = AxisValue::from_toml(&toml::Value::String("zero+zstd".into()));
        assert_eq!(s.number, None);
        assert_eq!(AxisValue::from_toml(&toml::Value::String("4GiB".into())).number, Some(4.0 * 1024.0 * 1024.0 * 1024.0));
    }

    #[test]
    fn log_range_of_rates_has_equal_ratios_and_exact_ends() {
        let from = AxisValue::from_toml(&toml::Value::String("100Mbit/s".into()));
        let to = AxisValue::from_toml(&toml::Value::String("10Gbit/s".into()));
        let v = range_values(&from, &to, 3, Scale::Log);
        let labels: Vec<&str> = v.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(labels, ["100Mbit/s", "1Gbit/s", "10Gbit/s"]);
        let ints = range_values(&AxisValue::from_toml(&1.into()), &AxisValue::from_toml(&8.into()), 4, Scale::Log);
        let labels: Vec<&str> = ints.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(labels, ["1", "2", "4", "8"]);
        let lin = range_values(&AxisValue::from_toml(&1.into()), &AxisValue::from_toml(&3.into()), 5, Scale::Linear);
        assert_eq!(lin.len(), 3, "rounded integers are not repeated");
    }

    #[test]
    fn apply_walks_named_elements_and_creates_tables() {
        let mut doc: toml::Table = toml::from_str(
            "[[links]]\nname = \"wan\"\nbandwidth = \"1Gbit/s\"\n[[evacuations]]\nfrom = \"a\"\nto = \"b\"\n",
        )
        .unwrap();
        apply(&mut doc, "links.wan.bandwidth", "2Gbit/s".into()).unwrap();
        apply(&mut doc, "evacuations.evacuate-a.max_concurrent", 4.into()).unwrap();
        apply(&mut doc, "defaults.strategy", "zero".into()).unwrap();
        assert_eq!(doc["links"][0]["bandwidth"].as_str(), Some("2Gbit/s"));
        assert_eq!(doc["evacuations"][0]["max_concurrent"].as_integer(), Some(4));
        assert_eq!(doc["defaults"]["strategy"].as_str(), Some("zero"));
        let err = apply(&mut doc, "links.lan.bandwidth", "1Gbit/s".into()).unwrap_err();
        assert!(err.contains("no element \"lan\"") && err.contains("wan"), "{err}");
        let err = apply(&mut doc, "links.wan.bandwidth.x", 1.into()).unwrap_err();
        assert!(err.contains("is a value"), "{err}");
    }
}
