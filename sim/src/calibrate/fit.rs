//! Fitting a [`Calibration`] to measured runs, and predicting runs with it.
//!
//! The fit goes in five steps, each on the training runs only:
//!
//! D. **Dirty model** (`[dirty.<workload>]`): write-rate and working-set
//!    factors per workload archetype from the pages dirtied in each measured
//!    round ([`super::dirty`]); every later step replays runs with them.
//! 0. **WAN goodput and round cost** (`link.wan_goodput_fraction`,
//!    `link.wan_rate_cap_bytes_per_s`, `round.fixed_ms`): each complete
//!    pre-copy round over a WAN link is modelled as taking
//!    `bytes / min(fraction × link rate, cap) + fixed`; bounded Nelder–Mead
//!    on the squared log error of the round times.
//! 1. **Size factors** (`size_factor.lz4`, `size_factor.xbzrle_per_changed_byte`):
//!    the simulator is nonlinear in them (a page's compressed size is
//!    `min(1, f·X)`, `X` Beta-distributed), so a bounded Nelder–Mead search
//!    ([`nelder_mead`], deterministic start) minimises the sum of squared
//!    relative errors of the per-stage wire bytes per page (compressed and
//!    delta records, measured by the validator from the guest's own pages)
//!    and of the bytes on the wire, each run replayed by the simulator.
//! 2. **Per-page CPU costs**: `ns_per_page.lz4_compress` by linear least
//!    squares (through the origin) of the source thread's measured CPU
//!    seconds, less the profile's page read and zero check, on the pages
//!    compressed, over runs without delta encoding. `ns_per_page.xbzrle_encode`
//!    from the runs with delta pages: delta pages are a few percent of a
//!    run's pages, so a residual of the thread's CPU seconds would be mostly
//!    noise; instead the thread's CPU seconds less the page reads are split
//!    between record kinds in proportion to the validator's per-kind encode
//!    times (wall clock, inflated alike for every kind when the machine is
//!    loaded), and the delta share, less the zero check of its pages, is
//!    fitted by least squares through the origin on the delta pages.
//! 3. **Downtime components** ([`fit_downtime`]): `integrity_ms_per_gib`
//!    from the source's measured hash time at the pause (least squares
//!    through the origin on RAM), then `fixed_ms` as the median residual
//!    `measured − simulated` downtime; without the measurement, non-negative
//!    least squares of the residual on `fixed + per_gib · RAM`.
//!
//! The reported loss ([`loss`]) is the mean over runs of
//! `e_time² + e_bytes² + e_downtime²`, relative errors with the downtime's
//! taken against `max(measured, 50 ms)`.

use super::dataset::MeasuredRun;
use super::profile::{
    Calibration, CalibrationAbout, CostOverrides, DowntimeComponents, LinkCalibration, RoundCosts, SizeFactorOverrides,
    WAN_LATENCY_MIN_NS,
};

/// Bounds of the round-time search: (goodput fraction, log10 of the cap in
/// bytes/s, per-round fixed cost in s).
pub const GOODPUT_BOUNDS: [(f64, f64); 3] = [(0.05, 1.5), (5.0, 11.0), (0.0, 1.0)];

/// Bounds of the size-factor search: (lz4, xbzrle bytes per changed byte).
pub const SIZE_FACTOR_BOUNDS: [(f64, f64); 2] = [(0.05, 4.0), (0.05, 8.0)];

/// Downtime below which the loss takes errors in absolute terms (ms).
pub const DOWNTIME_LOSS_FLOOR_MS: f64 = 50.0;

/// What the simulator predicts for one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// s.
    pub total_time_s: f64,
    /// ms.
    pub downtime_ms: f64,
    /// Bytes on the wire.
    pub bytes_on_wire: f64,
    /// Rounds, stop-and-copy included.
    pub rounds: u32,
    /// Compressed pages and their wire bytes.
    pub pages_compressed: f64,
    /// Wire bytes of compressed records.
    pub bytes_compressed: f64,
    /// Delta pages.
    pub pages_delta: f64,
    /// Wire bytes of delta records.
    pub bytes_delta: f64,
}

/// Replays `run` in the simulator, with `calibration` applied when given.
pub fn predict(run: &MeasuredRun, calibration: Option<&Calibration>) -> Prediction {
    let mut sc = run.scenario.clone();
    if let Some(c) = calibration {
        super::profile::apply(&mut sc, c, "(fit)");
    }
    let out = crate::run::run(&sc, None);
    let m = &out.migrations[0];
    Prediction {
        total_time_s: m.total_time_s,
        downtime_ms: m.downtime_ms,
        bytes_on_wire: m.bytes_on_wire as f64,
        rounds: m.rounds,
        pages_compressed: m.pages_compressed as f64,
        bytes_compressed: m.bytes_compressed as f64,
        pages_delta: m.pages_delta as f64,
        bytes_delta: m.bytes_delta as f64,
    }
}

/// Relative error of a prediction.
pub fn rel(predicted: f64, measured: f64) -> f64 {
    if measured == 0.0 {
        if predicted == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (predicted - measured) / measured
    }
}

/// The loss term of one run (see the module docs).
pub fn run_loss(run: &MeasuredRun, p: &Prediction) -> f64 {
    let h = &run.record.headline;
    let et = rel(p.total_time_s, h.total_time_s);
    let eb = rel(p.bytes_on_wire, h.bytes_on_wire as f64);
    let ed = (p.downtime_ms - h.downtime_ms) / h.downtime_ms.max(DOWNTIME_LOSS_FLOOR_MS);
    et * et + eb * eb + ed * ed
}

/// Mean [`run_loss`] over `runs` with `calibration`.
pub fn loss(runs: &[&MeasuredRun], calibration: Option<&Calibration>) -> f64 {
    if runs.is_empty() {
        return 0.0;
    }
    runs.iter().map(|r| run_loss(r, &predict(r, calibration))).sum::<f64>() / runs.len() as f64
}

/// Minimises `f` over the box `bounds` with Nelder–Mead (reflection 1,
/// expansion 2, contraction ½, shrink ½), points clamped into the box.
/// Deterministic: the start simplex is `x0` and `x0` moved by 10 % of each
/// box width along each axis. Stops after `max_evals` evaluations or when
/// the simplex's values differ by less than `tol`.
pub fn nelder_mead(f: &mut dyn FnMut(&[f64]) -> f64, x0: &[f64], bounds: &[(f64, f64)], max_evals: usize, tol: f64) -> (Vec<f64>, f64) {
    let n = x0.len();
    let clamp = |x: &mut Vec<f64>| {
        for (v, (lo, hi)) in x.iter_mut().zip(bounds) {
            *v = v.clamp(*lo, *hi);
        }
    };
    let mut evals = 0usize;
    let mut eval = |x: &[f64], evals: &mut usize| {
        *evals += 1;
        f(x)
    };
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    let mut start = x0.to_vec();
    clamp(&mut start);
    let fx = eval(&start, &mut evals);
    simplex.push((start.clone(), fx));
    for i in 0..n {
        let mut x = start.clone();
        let step = 0.1 * (bounds[i].1 - bounds[i].0);
        x[i] = if x[i] + step <= bounds[i].1 { x[i] + step } else { x[i] - step };
        let fx = eval(&x, &mut evals);
        simplex.push((x, fx));
    }
    while evals < max_evals {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if (simplex[n].1 - simplex[0].1).abs() < tol {
            break;
        }
        let centroid: Vec<f64> = (0..n).map(|j| simplex[..n].iter().map(|p| p.0[j]).sum::<f64>() / n as f64).collect();
        let along = |t: f64| -> Vec<f64> {
            let mut x: Vec<f64> = (0..n).map(|j| centroid[j] + t * (simplex[n].0[j] - centroid[j])).collect();
            clamp(&mut x);
            x
        };
        let xr = along(-1.0);
        let fr = eval(&xr, &mut evals);
        if fr < simplex[0].1 {
            let xe = along(-2.0);
            let fe = eval(&xe, &mut evals);
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let xc = if fr < simplex[n].1 { along(-0.5) } else { along(0.5) };
            let fc = eval(&xc, &mut evals);
            if fc < simplex[n].1.min(fr) {
                simplex[n] = (xc, fc);
            } else {
                let best = simplex[0].0.clone();
                for p in simplex.iter_mut().skip(1) {
                    let mut x: Vec<f64> = p.0.iter().zip(&best).map(|(v, b)| b + 0.5 * (v - b)).collect();
                    clamp(&mut x);
                    p.1 = eval(&x, &mut evals);
                    p.0 = x;
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0)
}

fn with_sizes(base: &Calibration, x: &[f64]) -> Calibration {
    let mut c = base.clone();
    c.size_factor = SizeFactorOverrides { lz4: Some(x[0]), xbzrle_per_changed_byte: Some(x[1]) };
    c
}

/// Sum of squared relative errors of per-stage bytes per page and of total bytes.
fn size_loss(runs: &[&MeasuredRun], c: &Calibration) -> f64 {
    let mut sum = 0.0;
    for r in runs {
        let p = predict(r, Some(c));
        let s = &r.stages;
        if s.pages_compressed > 0 && p.pages_compressed > 0.0 {
            let e = rel(p.bytes_compressed / p.pages_compressed, s.bytes_compressed as f64 / s.pages_compressed as f64);
            sum += e * e;
        }
        if s.pages_delta > 0 && p.pages_delta > 0.0 {
            let e = rel(p.bytes_delta / p.pages_delta, s.bytes_delta as f64 / s.pages_delta as f64);
            sum += e * e;
        }
        let e = rel(p.bytes_on_wire, r.record.headline.bytes_on_wire as f64);
        sum += e * e;
    }
    sum
}

/// Non-negative least squares of `y ≈ a + b·x` (two parameters).
pub fn nonneg_line(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let (sx, sy) = (xs.iter().sum::<f64>(), ys.iter().sum::<f64>());
    let sxx = xs.iter().map(|x| x * x).sum::<f64>();
    let sxy = xs.iter().zip(ys).map(|(x, y)| x * y).sum::<f64>();
    let det = n * sxx - sx * sx;
    let (a, b) = if det.abs() > 1e-12 { ((sy * sxx - sx * sxy) / det, (n * sxy - sx * sy) / det) } else { (sy / n, 0.0) };
    if a >= 0.0 && b >= 0.0 {
        return (a, b);
    }
    // One bound active: the better of intercept-only and slope-only.
    let a_only = (sy / n).max(0.0);
    let b_only = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
    let sse = |a: f64, b: f64| xs.iter().zip(ys).map(|(x, y)| (y - a - b * x).powi(2)).sum::<f64>();
    if sse(a_only, 0.0) <= sse(0.0, b_only) {
        (a_only, 0.0)
    } else {
        (0.0, b_only)
    }
}

/// Step 3 of the fit: the downtime components, given steps 0–2 in `c`.
///
/// Where the runs carry the source's own timing of its integrity hash at the
/// pause (`source_verify_ms`), that measurement fits `integrity_ms_per_gib`
/// directly (least squares through the origin on RAM in GiB), and
/// `fixed_ms` is the median residual `measured − simulated` of the
/// downtime with it in place, at least 0: the median, because in runs
/// stopped by `max_rounds` the model's error in the last round's pages
/// dwarfs the fixed part and a mean would follow them. Without the
/// measurement (datasets made before it was recorded, synthetic runs), both
/// come from the residuals: non-negative least squares of
/// `fixed + per_gib · RAM`.
pub fn fit_downtime(train: &[&MeasuredRun], c: &Calibration) -> DowntimeComponents {
    let gib = |r: &MeasuredRun| r.record.params.memory_bytes as f64 / (1u64 << 30) as f64;
    let integrity = train.iter().any(|r| r.record.params.integrity_check);
    let verified: Vec<(f64, f64)> = train
        .iter()
        .filter(|r| r.record.params.integrity_check)
        .filter_map(|r| r.record.headline.source_verify_ms.map(|ms| (gib(r), ms)))
        .collect();
    if integrity && !verified.is_empty() {
        let sxx: f64 = verified.iter().map(|(x, _)| x * x).sum();
        let sxy: f64 = verified.iter().map(|(x, y)| x * y).sum();
        let per_gib = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
        let mut with = c.clone();
        with.downtime = DowntimeComponents { fixed_ms: 0.0, integrity_ms_per_gib: per_gib };
        let resid: Vec<f64> = train.iter().map(|r| r.record.headline.downtime_ms - predict(r, Some(&with)).downtime_ms).collect();
        let fixed = super::evaluate::median(resid);
        return DowntimeComponents { fixed_ms: fixed.max(0.0), integrity_ms_per_gib: per_gib };
    }
    let xs: Vec<f64> = train.iter().map(|r| gib(r)).collect();
    let resid: Vec<f64> = train.iter().map(|r| r.record.headline.downtime_ms - predict(r, Some(c)).downtime_ms).collect();
    let (fixed, per_gib) = if integrity { nonneg_line(&xs, &resid) } else { (nonneg_line(&xs, &resid).0, 0.0) };
    DowntimeComponents { fixed_ms: fixed, integrity_ms_per_gib: per_gib }
}

/// Fits a calibration to `train` (see the module docs). `about` is filled
/// in except for the loss, which this sets.
pub fn fit(train: &[&MeasuredRun], about: CalibrationAbout) -> Calibration {
    let mut c = Calibration {
        about,
        size_factor: SizeFactorOverrides::default(),
        ns_per_page: CostOverrides::default(),
        link: LinkCalibration::default(),
        round: RoundCosts::default(),
        downtime: DowntimeComponents::default(),
        dirty: super::dirty::fit_dirty(train),
    };
    // 0. WAN goodput and the per-round fixed cost: each complete pre-copy
    // round over a WAN link takes bytes / min(fraction × link rate, cap) +
    // fixed; bounded Nelder–Mead on the squared log error of round times
    // over fraction, log10 cap and fixed.
    let obs: Vec<(f64, f64, f64)> = train
        .iter()
        .filter_map(|r| r.scenario.fabric.links.first().filter(|l| l.latency.0 >= WAN_LATENCY_MIN_NS).map(|l| (r, l.bandwidth.0)))
        .flat_map(|(r, rate)| {
            r.rounds
                .iter()
                .filter(|x| x.phase == "precopy" && x.complete && x.pages > 0 && x.secs() > 0.0)
                .map(move |x| (rate, x.bytes_on_wire as f64, x.secs()))
        })
        .collect();
    if !obs.is_empty() {
        let round_secs = |x: &[f64], rate: f64, bytes: f64| bytes / (x[0] * rate).min(10f64.powf(x[1])) + x[2];
        let mut f = |x: &[f64]| obs.iter().map(|(rate, bytes, secs)| (secs.ln() - round_secs(x, *rate, *bytes).ln()).powi(2)).sum::<f64>();
        // Deterministic starts (the cap at the fastest round seen or at no
        // cap; fixed costs of 1, 30 and 300 ms), each search restarted once
        // from its end; the best end wins.
        let fastest_seen = obs.iter().map(|(_, b, s)| b / s).fold(0.0, f64::max).log10();
        let mut best = (vec![1.0, GOODPUT_BOUNDS[1].1, 0.0], f64::INFINITY);
        for cap in [fastest_seen, GOODPUT_BOUNDS[1].1] {
            for fixed in [0.001, 0.03, 0.3] {
                let x0 = [0.95, cap.clamp(GOODPUT_BOUNDS[1].0, GOODPUT_BOUNDS[1].1), fixed];
                let (x, _) = nelder_mead(&mut f, &x0, &GOODPUT_BOUNDS, 1500, 1e-16);
                let (x, fx) = nelder_mead(&mut f, &x, &GOODPUT_BOUNDS, 1500, 1e-16);
                if fx < best.1 {
                    best = (x, fx);
                }
            }
        }
        let x = best.0;
        // A cap above every link seen is no cap the data supports.
        let fastest_link = obs.iter().map(|o| o.0 * x[0]).fold(0.0, f64::max);
        let cap = 10f64.powf(x[1]);
        c.link = LinkCalibration { wan_goodput_fraction: x[0], wan_rate_cap_bytes_per_s: (cap < fastest_link).then_some(cap) };
        c.round = RoundCosts { fixed_ms: x[2] * 1e3 };
    }
    // 1. Size factors, on the runs that reduce.
    let reduced: Vec<&MeasuredRun> =
        train.iter().copied().filter(|r| r.stages.pages_compressed > 0 || r.stages.pages_delta > 0).collect();
    if !reduced.is_empty() {
        let builtin = crate::reduction::profile::CpuProfile::builtin();
        let x0 = [builtin.size_factor.lz4.clamp(0.05, 4.0), builtin.size_factor.xbzrle_per_changed_byte.clamp(0.05, 8.0)];
        let base = c.clone();
        let mut f = |x: &[f64]| size_loss(&reduced, &with_sizes(&base, x));
        let (x, _) = nelder_mead(&mut f, &x0, &SIZE_FACTOR_BOUNDS, 200, 1e-9);
        let has_lz4 = reduced.iter().any(|r| r.stages.pages_compressed > 0);
        let has_delta = reduced.iter().any(|r| r.stages.pages_delta > 0);
        c.size_factor = SizeFactorOverrides {
            lz4: has_lz4.then_some(x[0]),
            xbzrle_per_changed_byte: has_delta.then_some(x[1]),
        };
    }
    // 2. CPU costs from the source thread's CPU seconds.
    let profile = crate::reduction::profile::CpuProfile::builtin();
    let base_ns = |r: &MeasuredRun| r.stages.pages() as f64 * (profile.ns_per_page.memcpy + profile.ns_per_page.zero_check);
    let lz4_only: Vec<&MeasuredRun> = train.iter().copied().filter(|r| r.stages.pages_compressed > 0 && r.stages.pages_delta == 0).collect();
    let (num, den) = lz4_only.iter().fold((0.0, 0.0), |(n, d), r| {
        let pc = r.stages.pages_compressed as f64;
        (n + (r.cpu_s_source * 1e9 - base_ns(r)) * pc, d + pc * pc)
    });
    if den > 0.0 && num > 0.0 {
        c.ns_per_page.lz4_compress = Some(num / den);
    }
    let with_delta: Vec<&MeasuredRun> = train.iter().copied().filter(|r| r.stages.pages_delta > 0 && r.stages.encode_s() > 0.0).collect();
    let (num, den) = with_delta.iter().fold((0.0, 0.0), |(n, d), r| {
        let pd = r.stages.pages_delta as f64;
        let encode_ns = (r.cpu_s_source * 1e9 - r.stages.pages() as f64 * profile.ns_per_page.memcpy).max(0.0);
        let delta_ns = encode_ns * r.stages.cpu_s_delta / r.stages.encode_s() - pd * profile.ns_per_page.zero_check;
        (n + delta_ns * pd, d + pd * pd)
    });
    if den > 0.0 && num > 0.0 {
        c.ns_per_page.xbzrle_encode = Some(num / den);
    }
    // 3. Downtime components.
    c.downtime = fit_downtime(train, &c);
    c.about.loss = loss(train, Some(&c));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nelder_mead_finds_a_bounded_minimum() {
        // Rosenbrock: minimum at (1, 1).
        let mut f = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let (x, fx) = nelder_mead(&mut f, &[-1.0, 2.0], &[(-2.0, 2.0), (-1.0, 3.0)], 2000, 1e-14);
        assert!((x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3 && fx < 1e-6, "{x:?} {fx}");
        // The unconstrained minimum (3, -2) lies outside: the box's corner is found.
        let mut g = |x: &[f64]| (x[0] - 3.0).powi(2) + (x[1] + 2.0).powi(2);
        let (x, _) = nelder_mead(&mut g, &[0.0, 0.0], &[(-1.0, 1.0), (-1.0, 1.0)], 500, 1e-14);
        assert!((x[0] - 1.0).abs() < 1e-6 && (x[1] + 1.0).abs() < 1e-6, "{x:?}");
    }

    #[test]
    fn nonneg_line_fits_and_respects_bounds() {
        let xs = [0.25, 0.5, 1.0];
        let (a, b) = nonneg_line(&xs, &xs.map(|x| 8.0 + 95.0 * x));
        assert!((a - 8.0).abs() < 1e-9 && (b - 95.0).abs() < 1e-9);
        // A falling line: the slope is held at 0.
        let (a, b) = nonneg_line(&xs, &xs.map(|x| 100.0 - 20.0 * x));
        assert_eq!(b, 0.0);
        assert!(a > 0.0);
    }
}
