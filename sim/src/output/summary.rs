//! The one-screen summary printed after a run.
//!
//! It is plain text built only from the run's results (no wall-clock figures),
//! so the same scenario and seed always print the same summary; the golden
//! tests compare it with `scenarios/expected/<name>.summary.txt`.

use crate::run::RunOutput;
use std::fmt::Write;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Migrations listed one by one when a run has at most this many.
const MAX_LISTED: usize = 24;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// One line on failures and restarts, only when a host failed (so runs
/// without host failures print what they always printed).
fn failures_line(s: &mut String, out: &RunOutput) {
    if !out.had_host_failures() {
        return;
    }
    let count = |k: crate::run::FabricEventKind| out.fabric_events.iter().filter(|e| e.kind == k).count();
    let mut down: Vec<f64> = out.vm_availability.iter().map(|v| v.downtime_s).collect();
    down.sort_by(f64::total_cmp);
    let lost: f64 = out.vm_availability.iter().map(|v| v.lost_work_s).sum();
    let _ = writeln!(
        s,
        "failures: {} host failures, {} VMs down, {} restarts, {} lost; VM downtime p50 {:.1} s, max {:.1} s; lost work {:.1} s",
        count(crate::run::FabricEventKind::HostDown),
        count(crate::run::FabricEventKind::VmDown),
        count(crate::run::FabricEventKind::VmRestart),
        count(crate::run::FabricEventKind::VmLost),
        percentile(&down, 50.0),
        down.last().copied().unwrap_or(0.0),
        lost
    );
}

/// Joules per site and in total, only with `[power]`.
fn energy_line(s: &mut String, out: &RunOutput) {
    if out.energy.is_empty() {
        return;
    }
    // Host order is declaration order, so sites come out in their order.
    let mut per_site: Vec<(&str, f64)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for r in &out.energy {
        if !seen.contains(&r.host.as_str()) {
            seen.push(&r.host);
            let j = out.host_energy_j[seen.len() - 1];
            match per_site.iter_mut().find(|(site, _)| *site == r.site) {
                Some((_, acc)) => *acc += j,
                None => per_site.push((&r.site, j)),
            }
        }
    }
    let total: f64 = out.host_energy_j.iter().sum();
    let list: Vec<String> = per_site.iter().map(|(site, j)| format!("{site} {:.3} MJ", j / 1e6)).collect();
    let _ = writeln!(s, "energy: {:.3} MJ total ({})", total / 1e6, list.join(", "));
}

/// The summary table of a run.
pub fn summary(out: &RunOutput) -> String {
    let mut s = String::new();
    let hash: String = out.scenario_hash.chars().take(12).collect();
    let _ = writeln!(
        s,
        "memfabric {} | scenario {} | seed {} | scenario hash {}",
        crate::VERSION,
        out.scenario,
        out.seed,
        hash
    );
    let _ = writeln!(s, "simulated {:.3} s, {} events", out.end_time.as_secs_f64(), out.events_processed);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<22} {:>5} {:>5} {:>6} {:>11} {:>11} {:>11} {:>11} {:>11} {:>9} {:>7}",
        "operation", "migr", "done", "failed", "makespan_s", "total_s_p50", "total_s_max", "down_ms_p50", "down_ms_max", "wire_GiB", "rounds"
    );
    let mut ops: Vec<&str> = Vec::new();
    for m in &out.migrations {
        if !ops.contains(&m.operation.as_str()) {
            ops.push(&m.operation);
        }
    }
    for op in ops {
        let rows: Vec<_> = out.migrations.iter().filter(|m| m.operation == op).collect();
        let done: Vec<_> = rows.iter().filter(|m| m.outcome == "completed").collect();
        let start = rows.iter().map(|m| m.start_s).fold(f64::INFINITY, f64::min);
        let end = rows.iter().map(|m| m.end_s).fold(0.0, f64::max);
        let mut totals: Vec<f64> = done.iter().map(|m| m.total_time_s).collect();
        totals.sort_by(f64::total_cmp);
        let mut downs: Vec<f64> = done.iter().map(|m| m.downtime_ms).collect();
        downs.sort_by(f64::total_cmp);
        let wire: f64 = rows.iter().map(|m| m.bytes_on_wire as f64).sum::<f64>() / GIB;
        let rounds = if done.is_empty() { 0.0 } else { done.iter().map(|m| m.rounds as f64).sum::<f64>() / done.len() as f64 };
        let _ = writeln!(
            s,
            "{:<22} {:>5} {:>5} {:>6} {:>11.3} {:>11.3} {:>11.3} {:>11.1} {:>11.1} {:>9.3} {:>7.2}",
            truncate(op, 22),
            rows.len(),
            done.len(),
            rows.len() - done.len(),
            end - start,
            percentile(&totals, 50.0),
            totals.last().copied().unwrap_or(0.0),
            percentile(&downs, 50.0),
            downs.last().copied().unwrap_or(0.0),
            wire,
            rounds
        );
    }
    let mut outcomes: Vec<(&str, usize)> = Vec::new();
    for m in &out.migrations {
        match outcomes.iter_mut().find(|(o, _)| *o == m.outcome) {
            Some((_, n)) => *n += 1,
            None => outcomes.push((m.outcome, 1)),
        }
    }
    outcomes.sort();
    let list: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
    let _ = writeln!(s);
    let _ = writeln!(s, "outcomes: {}", if list.is_empty() { "no migrations".to_string() } else { list.join(", ") });
    failures_line(&mut s, out);
    energy_line(&mut s, out);
    if !out.migrations.is_empty() && out.migrations.len() <= MAX_LISTED {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<16} {:<13} {:<20} {:>9} {:>10} {:>6} {:>9} {:>5} bottleneck",
            "vm", "mechanism", "outcome", "total_s", "down_ms", "rounds", "wire_GiB", "thr%"
        );
        for m in &out.migrations {
            let _ = writeln!(
                s,
                "{:<16} {:<13} {:<20} {:>9.3} {:>10.1} {:>6} {:>9.3} {:>5} {}",
                truncate(&m.vm, 16),
                m.mechanism,
                m.outcome,
                m.total_time_s,
                m.downtime_ms,
                m.rounds,
                m.bytes_on_wire as f64 / GIB,
                m.throttle_pct_max,
                m.bottleneck
            );
        }
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}


/// The summary of a run's variants: the plain summary for one, or a
/// comparison table (one line per strategy and operation) for several.
pub fn summary_all(outs: &[RunOutput]) -> String {
    if outs.len() == 1 {
        return summary(&outs[0]);
    }
    let mut s = String::new();
    let o = &outs[0];
    let hash: String = o.scenario_hash.chars().take(12).collect();
    let _ = writeln!(s, "memfabric {} | scenario {} | seed {} | scenario hash {}", crate::VERSION, o.scenario, o.seed, hash);
    let _ = writeln!(s, "strategy comparison over {} variants (wire_% = bytes on wire / bytes without reduction)", outs.len());
    let mut ops: Vec<&str> = Vec::new();
    for o in outs {
        for m in &o.migrations {
            if !ops.contains(&m.operation.as_str()) {
                ops.push(&m.operation);
            }
        }
    }
    for op in ops {
        let _ = writeln!(s);
        let _ = writeln!(s, "operation {op}");
        let _ = writeln!(
            s,
            "{:<26} {:>5} {:>5} {:>11} {:>9} {:>7} {:>11} {:>11} {:>10} {:>10} bottlenecks",
            "strategy", "migr", "done", "makespan_s", "wire_GiB", "wire_%", "total_s_p50", "down_ms_max", "cpu_src_s", "cpu_dst_s"
        );
        for o in outs {
            let rows: Vec<_> = o.migrations.iter().filter(|m| m.operation == op).collect();
            let done: Vec<_> = rows.iter().filter(|m| m.outcome == "completed").collect();
            let start = rows.iter().map(|m| m.start_s).fold(f64::INFINITY, f64::min);
            let end = rows.iter().map(|m| m.end_s).fold(0.0, f64::max);
            let wire: f64 = rows.iter().map(|m| m.bytes_on_wire as f64).sum();
            let unreduced: f64 = rows.iter().map(|m| m.bytes_unreduced as f64).sum();
            let mut totals: Vec<f64> = done.iter().map(|m| m.total_time_s).collect();
            totals.sort_by(f64::total_cmp);
            let down = done.iter().map(|m| m.downtime_ms).fold(0.0, f64::max);
            let mut bottlenecks: Vec<(&str, usize)> = Vec::new();
            for m in &rows {
                match bottlenecks.iter_mut().find(|(b, _)| *b == m.bottleneck) {
                    Some((_, n)) => *n += 1,
                    None => bottlenecks.push((&m.bottleneck, 1)),
                }
            }
            bottlenecks.sort();
            let b: Vec<String> = bottlenecks.iter().map(|(b, n)| format!("{b}:{n}")).collect();
            let _ = writeln!(
                s,
                "{:<26} {:>5} {:>5} {:>11.3} {:>9.3} {:>7.1} {:>11.3} {:>11.1} {:>10.2} {:>10.2} {}",
                truncate(&o.variant, 26),
                rows.len(),
                done.len(),
                (end - start).max(0.0),
                wire / GIB,
                if unreduced > 0.0 { 100.0 * wire / unreduced } else { 0.0 },
                percentile(&totals, 50.0),
                down,
                rows.iter().map(|m| m.cpu_s_source).sum::<f64>(),
                rows.iter().map(|m| m.cpu_s_destination).sum::<f64>(),
                b.join(" ")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.0);
        assert_eq!(percentile(&v, 99.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
