//! `memfabric plan`: the value of one axis that meets targets on metrics —
//! the minimum link bandwidth for which an evacuation ends within 30 minutes
//! with nothing failed, the maximum `max_concurrent` that keeps every
//! downtime under 300 ms.
//!
//! The search assumes the feasible values form one interval ending at a side
//! of the range (`find = "min"`: feasible above the answer; `"max"`: below).
//! It evaluates both ends of the range, then bisects the bracket (at the
//! geometric mean on a log scale) until its width is within `tolerance` of
//! the answer (adjacent integers for an integer axis). A value is feasible
//! when, for every target, the metric's quantile over the seeds meets the
//! bound; in a point with several operations or variants, the worst of them
//! counts.
//!
//! Monotonicity is checked on every evaluated value: each target's metric
//! must move towards its bound as the value moves away from the feasible
//! side. When it does not, the bisection's answer cannot be trusted, and the
//! plan evaluates a grid over the range and reports the feasible set found.
//! When the axes of the study list other axes, each of their combinations is
//! solved on its own (e.g. the minimum bandwidth per strategy).

use super::axes::{AxisValue, Scale};
use super::points::{point_hash, Point};
use super::table::PointRecord;
use super::Study;
use serde::{Deserialize, Serialize};

/// Which end of the feasible set is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Find {
    /// The smallest feasible value (feasible above it).
    Min,
    /// The largest feasible value (feasible below it).
    Max,
}

/// A bound on a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    /// metric ≤ value.
    Max(f64),
    /// metric ≥ value.
    Min(f64),
}

/// A target: a bound on a metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// A metric of the points table.
    pub metric: String,
    /// Its bound.
    pub bound: Bound,
}

/// The `[plan]` section, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSpec {
    /// The axis searched.
    pub axis: String,
    /// Minimum or maximum.
    pub find: Find,
    /// Range start.
    pub from: AxisValue,
    /// Range end.
    pub to: AxisValue,
    /// Bisection at arithmetic or geometric means.
    pub scale: Scale,
    /// Final bracket width relative to the answer.
    pub tolerance: f64,
    /// Fraction of seeds that must meet each target (1: every seed).
    pub quantile: f64,
    /// Values of the fallback grid.
    pub grid: u32,
    /// Targets, all of which must hold.
    pub targets: Vec<Target>,
    /// Whether the axis takes integers.
    pub integer: bool,
}

/// One evaluated value of the searched axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluated {
    /// As written into the scenario.
    pub label: String,
    /// In base units.
    pub value: f64,
    /// Whether every target is met.
    pub feasible: bool,
    /// Each target's metric at the quantile (NaN when a seed failed).
    pub metrics: Vec<f64>,
    /// Why a seed failed, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The bracket narrowed to the tolerance.
    Found,
    /// The range's feasible end is already feasible at the other end: the answer is that end.
    WholeRange,
    /// No value of the range meets the targets.
    NoneInRange,
    /// A metric was not monotone: see the feasible set.
    NotMonotone,
}

/// The answer for one combination of the other axes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Solution {
    /// Values of the other axes (path, label).
    pub combination: Vec<(String, String)>,
    /// How the search ended.
    pub status: Status,
    /// The value found (feasible), when there is one.
    pub answer: Option<Evaluated>,
    /// The infeasible value at the other side of the final bracket.
    pub neighbour: Option<Evaluated>,
    /// Per target: bound minus metric at the answer (≥ 0 means met), in the metric's unit.
    pub margins: Vec<f64>,
    /// Every value evaluated, in order.
    pub evaluated: Vec<Evaluated>,
    /// Without monotonicity: the feasible grid values, as intervals (labels).
    pub feasible_set: Vec<(String, String)>,
}

/// Whether a metric value meets a bound, and by how much.
fn margin(bound: Bound, v: f64) -> f64 {
    if v.is_nan() {
        return f64::NEG_INFINITY;
    }
    match bound {
        Bound::Max(m) => m - v,
        Bound::Min(m) => v - m,
    }
}

/// Each target's metric over the records (one per seed) at the quantile.
pub fn judge(spec: &PlanSpec, label: String, value: f64, records: &[PointRecord]) -> Evaluated {
    let error = records.iter().find_map(|r| r.error.clone());
    let metrics: Vec<f64> = spec
        .targets
        .iter()
        .map(|t| {
            let mut per_seed: Vec<f64> = records
                .iter()
                .map(|r| {
                    if r.error.is_some() || r.ops.is_empty() {
                        return f64::NAN;
                    }
                    let vals = r.ops.iter().map(|o| o.metric(&t.metric).unwrap_or(f64::NAN));
                    match t.bound {
                        Bound::Max(_) => vals.fold(f64::NEG_INFINITY, f64::max),
                        Bound::Min(_) => vals.fold(f64::INFINITY, f64::min),
                    }
                })
                .collect();
            if per_seed.iter().any(|v| v.is_nan()) {
                return f64::NAN;
            }
            // Worst-last order, then the nearest-rank quantile.
            per_seed.sort_by(f64::total_cmp);
            if matches!(t.bound, Bound::Min(_)) {
                per_seed.reverse();
            }
            let rank = ((spec.quantile * per_seed.len() as f64).ceil() as usize).clamp(1, per_seed.len());
            per_seed[rank - 1]
        })
        .collect();
    let feasible = error.is_none() && spec.targets.iter().zip(&metrics).all(|(t, v)| margin(t.bound, *v) >= 0.0);
    Evaluated { label, value, feasible, metrics, error }
}

/// The bisection and its checks, over an evaluation function of a value in
/// base units (which the function may round, e.g. to an integer).
pub fn solve(spec: &PlanSpec, eval: &mut dyn FnMut(&[f64]) -> Vec<Evaluated>) -> (Status, Option<Evaluated>, Option<Evaluated>, Vec<Evaluated>) {
    let (lo, hi) = (spec.from.number.unwrap_or(0.0), spec.to.number.unwrap_or(0.0));
    let mut seen: Vec<Evaluated> = eval(&[lo, hi]);
    // `good` is the feasible end of the bracket, `bad` the infeasible one.
    let (mut good, mut bad) = match spec.find {
        Find::Min => (seen[1].clone(), seen[0].clone()),
        Find::Max => (seen[0].clone(), seen[1].clone()),
    };
    if bad.feasible {
        return (Status::WholeRange, Some(bad), None, seen);
    }
    if !good.feasible {
        return (Status::NoneInRange, None, None, seen);
    }
    loop {
        let (a, b) = (bad.value.min(good.value), bad.value.max(good.value));
        let converged = if spec.integer { b - a <= 1.0 } else { b - a <= spec.tolerance * good.value.abs() };
        if converged {
            break;
        }
        let mid = match spec.scale {
            Scale::Log if a > 0.0 => (a * b).sqrt(),
            _ => (a + b) / 2.0,
        };
        let mid = if spec.integer { mid.floor().max(a + 1.0).min(b - 1.0) } else { mid };
        let e = eval(&[mid]).remove(0);
        seen.push(e.clone());
        if e.feasible {
            good = e;
        } else {
            bad = e;
        }
    }
    (Status::Found, Some(good), Some(bad), seen)
}

/// Whether every target's metric moves towards its bound as the value moves
/// away from the feasible side, over the evaluated values.
pub fn monotone(spec: &PlanSpec, seen: &[Evaluated]) -> bool {
    let mut sorted: Vec<&Evaluated> = seen.iter().filter(|e| e.metrics.iter().all(|m| !m.is_nan())).collect();
    sorted.sort_by(|a, b| a.value.total_cmp(&b.value));
    // Feasibility must be a step.
    let flags: Vec<bool> = sorted.iter().map(|e| e.feasible).collect();
    let step = match spec.find {
        Find::Min => flags.windows(2).all(|w| w[0] <= w[1]),
        Find::Max => flags.windows(2).all(|w| w[0] >= w[1]),
    };
    step && spec.targets.iter().enumerate().all(|(t, target)| {
        sorted.windows(2).all(|w| {
            // Margin gained by moving up the axis.
            let up = margin(target.bound, w[1].metrics[t]) - margin(target.bound, w[0].metrics[t]);
            let slack = 1e-9 * (w[0].metrics[t].abs() + w[1].metrics[t].abs()).max(1.0);
            match spec.find {
                Find::Min => up >= -slack,
                Find::Max => up <= slack,
            }
        })
    })
}

/// Grid values of the range (integers deduplicated).
pub fn grid(spec: &PlanSpec) -> Vec<f64> {
    let (lo, hi) = (spec.from.number.unwrap_or(0.0), spec.to.number.unwrap_or(0.0));
    let n = spec.grid.max(2);
    let mut out: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 / (n - 1) as f64;
            let x = match spec.scale {
                Scale::Log => lo * (hi / lo).powf(t),
                Scale::Linear => lo + (hi - lo) * t,
            };
            if spec.integer { x.round() } else { x }
        })
        .collect();
    out.dedup();
    out
}

/// Feasible grid values as intervals of labels.
pub fn feasible_intervals(evals: &[Evaluated]) -> Vec<(String, String)> {
    let mut sorted: Vec<&Evaluated> = evals.iter().collect();
    sorted.sort_by(|a, b| a.value.total_cmp(&b.value));
    let mut out: Vec<(String, String)> = Vec::new();
    let mut open: Option<(String, String)> = None;
    for e in sorted {
        match (&mut open, e.feasible) {
            (Some(iv), true) => iv.1 = e.label.clone(),
            (None, true) => open = Some((e.label.clone(), e.label.clone())),
            (Some(_), false) => out.extend(open.take()),
            (None, false) => {}
        }
    }
    out.extend(open);
    out
}

/// Runs a plan: every combination of the other axes, points run on `jobs`
/// threads (the seeds of a value, and the two ends of the range, together).
pub fn run_plan(study: &Study, jobs: usize) -> (Vec<String>, Vec<PointRecord>, Vec<Solution>) {
    let spec = study.plan.as_ref().expect("a study with [plan]");
    let mut paths: Vec<String> = study.axes.iter().map(|a| a.path.clone()).collect();
    paths.push(spec.axis.clone());
    let mut combos: Vec<Vec<AxisValue>> = vec![Vec::new()];
    for a in &study.axes {
        combos = combos
            .into_iter()
            .flat_map(|c| a.values.iter().map(move |v| {
                let mut c = c.clone();
                c.push(v.clone());
                c
            }))
            .collect();
    }
    if let Some(list) = &study.list {
        combos = list.iter().map(|idx| idx.iter().zip(&study.axes).map(|(&i, a)| a.values[i].clone()).collect()).collect();
    }
    let mut records: Vec<PointRecord> = Vec::new();
    let mut solutions = Vec::new();
    for combo in combos {
        let mut eval = |xs: &[f64]| -> Vec<Evaluated> {
            let mut points = Vec::new();
            let mut values = Vec::new();
            for &x in xs {
                let v = if x == spec.from.number.unwrap_or(f64::NAN) {
                    spec.from.clone()
                } else if x == spec.to.number.unwrap_or(f64::NAN) {
                    spec.to.clone()
                } else {
                    spec.from.with_number(x)
                };
                let mut vals = combo.clone();
                vals.push(v.clone());
                for &seed in &study.seeds {
                    let index = (records.len() + points.len()) as u64;
                    points.push(Point { index, values: vals.clone(), seed, hash: point_hash(study, &paths, &vals, seed) });
                }
                values.push(v);
            }
            let mut done = super::runner::run_points(study, &paths, &points, jobs, None, false, &|_| {});
            done.sort_by_key(|r| r.index);
            let n = study.seeds.len();
            let out = values
                .iter()
                .enumerate()
                .map(|(i, v)| judge(spec, v.label.clone(), v.number.unwrap_or(f64::NAN), &done[i * n..(i + 1) * n]))
                .collect();
            records.extend(done);
            out
        };
        let (mut status, answer, neighbour, mut seen) = solve(spec, &mut eval);
        let mut feasible_set = Vec::new();
        if !monotone(spec, &seen) {
            status = Status::NotMonotone;
            let g = grid(spec);
            let known: Vec<f64> = seen.iter().map(|e| e.value).collect();
            let todo: Vec<f64> = g.iter().copied().filter(|x| !known.contains(x)).collect();
            if !todo.is_empty() {
                seen.extend(eval(&todo));
            }
            let on_grid: Vec<Evaluated> = seen.iter().filter(|e| g.contains(&e.value)).cloned().collect();
            feasible_set = feasible_intervals(&on_grid);
        }
        let margins = match &answer {
            Some(a) => spec.targets.iter().zip(&a.metrics).map(|(t, v)| margin(t.bound, *v)).collect(),
            None => Vec::new(),
        };
        let combination = study.axes.iter().zip(&combo).map(|(a, v)| (a.path.clone(), v.label.clone())).collect();
        solutions.push(Solution { combination, status, answer, neighbour, margins, evaluated: seen, feasible_set });
    }
    (paths, records, solutions)
}

/// The plan's answer as text (what `memfabric plan` prints).
pub fn format_solutions(spec: &PlanSpec, solutions: &[Solution]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let targets: Vec<String> = spec
        .targets
        .iter()
        .map(|t| match t.bound {
            Bound::Max(m) => format!("{} ≤ {m}", t.metric),
            Bound::Min(m) => format!("{} ≥ {m}", t.metric),
        })
        .collect();
    let tol = if spec.integer { "adjacent integers".to_string() } else { format!("{}%", spec.tolerance * 100.0) };
    let _ = writeln!(
        s,
        "plan: {} {} with {} at quantile {} of the seeds (tolerance {tol})",
        match spec.find {
            Find::Min => "minimum",
            Find::Max => "maximum",
        },
        spec.axis,
        targets.join(" and "),
        spec.quantile
    );
    for sol in solutions {
        let _ = writeln!(s);
        if !sol.combination.is_empty() {
            let c: Vec<String> = sol.combination.iter().map(|(p, v)| format!("{p} = {v}")).collect();
            let _ = writeln!(s, "with {}", c.join(", "));
        }
        match (&sol.status, &sol.answer) {
            (Status::NotMonotone, _) => {
                let set: Vec<String> = sol.feasible_set.iter().map(|(a, b)| if a == b { a.clone() } else { format!("{a} … {b}") }).collect();
                let _ = writeln!(s, "answer: none — a metric is not monotone in {} over the evaluated values", spec.axis);
                let _ = writeln!(s, "feasible on a grid of {} values: {}", spec.grid, if set.is_empty() { "nothing".into() } else { set.join(", ") });
            }
            (Status::NoneInRange, _) => {
                let _ = writeln!(s, "answer: none — no value in {} … {} meets the targets", spec.from.label, spec.to.label);
            }
            (status, Some(a)) => {
                let _ = writeln!(s, "answer: {} = {}{}", spec.axis, a.label, if *status == Status::WholeRange { " (the end of the range already meets the targets)" } else { "" });
                if let Some(n) = &sol.neighbour {
                    let _ = writeln!(s, "just {} it, {} misses", if spec.find == Find::Min { "below" } else { "above" }, n.label);
                }
                let m: Vec<String> = spec.targets.iter().zip(&sol.margins).map(|(t, m)| format!("{} {m:+.6}", t.metric)).collect();
                let _ = writeln!(s, "margin at the answer: {}", m.join(", "));
            }
            (_, None) => {}
        }
        let _ = writeln!(s, "{:<22} {:>9} {}", "value", "feasible", spec.targets.iter().map(|t| format!("{:>16}", t.metric)).collect::<String>());
        for e in &sol.evaluated {
            let _ = writeln!(
                s,
                "{:<22} {:>9} {}",
                e.label,
                if e.feasible { "yes" } else { "no" },
                e.metrics.iter().map(|m| format!("{m:>16.6}")).collect::<String>()
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(find: Find, integer: bool) -> PlanSpec {
        let v = |x: i64| AxisValue::from_toml(&toml::Value::Integer(x));
        PlanSpec {
            axis: "x".into(),
            find,
            from: v(1),
            to: v(1000),
            scale: Scale::Linear,
            tolerance: 0.001,
            quantile: 1.0,
            grid: 8,
            targets: vec![Target { metric: "m".into(), bound: Bound::Max(100.0) }],
            integer,
        }
    }

    fn eval_with<'a>(f: impl Fn(f64) -> f64 + 'a, spec: &'a PlanSpec) -> impl FnMut(&[f64]) -> Vec<Evaluated> + 'a {
        move |xs: &[f64]| {
            xs.iter()
                .map(|&x| {
                    let m = f(x);
                    let feasible = margin(spec.targets[0].bound, m) >= 0.0;
                    Evaluated { label: x.to_string(), value: x, feasible, metrics: vec![m], error: None }
                })
                .collect()
        }
    }

    #[test]
    fn bisection_finds_the_minimum_of_a_decreasing_metric() {
        // m(x) = 20000 / x ≤ 100 ⇔ x ≥ 200.
        let s = spec(Find::Min, false);
        let mut eval = eval_with(|x| 20000.0 / x, &s);
        let (status, answer, below, seen) = solve(&s, &mut eval);
        assert_eq!(status, Status::Found);
        let (a, b) = (answer.unwrap().value, below.unwrap().value);
        assert!(a >= 200.0 && a <= 200.0 * 1.001 && b < 200.0, "{a} {b}");
        assert!(monotone(&s, &seen));
    }

    #[test]
    fn integer_maximum_stops_at_adjacent_values() {
        // m(x) = x ≤ 100 ⇔ x ≤ 100.
        let s = spec(Find::Max, true);
        let mut eval = eval_with(|x| x, &s);
        let (status, answer, above, _) = solve(&s, &mut eval);
        assert_eq!(status, Status::Found);
        assert_eq!((answer.unwrap().value, above.unwrap().value), (100.0, 101.0));
    }

    #[test]
    fn a_non_monotone_metric_is_detected_and_the_grid_shows_two_intervals() {
        // Feasible on [1, 300] and [700, 1000]: bisection sees a step but the
        // metric rises and falls.
        let s = spec(Find::Min, true);
        let f = |x: f64| if x <= 300.0 || x >= 700.0 { 50.0 + (x - 500.0).abs() / 100.0 } else { 150.0 + x / 1000.0 };
        let mut eval = eval_with(f, &s);
        let (status, _, _, seen) = solve(&s, &mut eval);
        assert_eq!(status, Status::WholeRange, "x = 1 is already feasible");
        let g = grid(&s);
        let evals = eval(&g);
        let mut all = seen.clone();
        all.extend(evals.clone());
        assert!(!monotone(&s, &all));
        assert_eq!(feasible_intervals(&evals).len(), 2, "{:?}", feasible_intervals(&evals));
    }

    #[test]
    fn quantile_over_seeds_takes_the_nearest_rank() {
        let mut s = spec(Find::Min, false);
        s.targets[0].metric = "makespan_s".into();
        let rec = |m: f64| PointRecord {
            index: 0,
            hash: String::new(),
            seed: 0,
            values: vec![],
            numbers: vec![],
            error: None,
            ops: vec![super::super::table::OpMetrics {
                variant: "scenario".into(),
                operation: "op".into(),
                migrations: 1,
                completed: 1,
                failed: 0,
                not_converged: 0,
                aborted_link_failure: 0,
                lost: 0,
                no_capacity: 0,
                unfinished: 0,
                makespan_s: m,
                total_s_p50: 0.0,
                total_s_p95: 0.0,
                total_s_max: 0.0,
                downtime_ms_p50: 0.0,
                downtime_ms_p95: 0.0,
                downtime_ms_max: 0.0,
                bytes_on_wire: 0,
                bytes_unreduced: 0,
            }],
        };
        let recs: Vec<PointRecord> = [90.0, 95.0, 99.0, 130.0].iter().map(|&m| rec(m)).collect();
        s.quantile = 0.75;
        let e = judge(&s, "x".into(), 1.0, &recs);
        assert!(e.feasible && e.metrics[0] == 99.0, "{e:?}");
        s.quantile = 1.0;
        assert!(!judge(&s, "x".into(), 1.0, &recs).feasible);
    }
}
