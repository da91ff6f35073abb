//! The one-screen summary printed after a run.
//!
//! It is plain text built only from the run's results (no wall-clock figures),
//! so the same scenario and seed always print the same summary; the golden
//! tests compare it with `scenarios/expected/<name>.summary.txt`. Every line
//! fits [`WIDTH`] columns: tables have a two-line header (quantity, then unit
//! and statistic), and the last, free-text column is cut to what is left.

use crate::run::RunOutput;
use memfabric_migration::record::Outcome;
use std::fmt::Write;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Widest line of a summary, in characters.
pub const WIDTH: usize = 100;
/// Migrations listed one by one when a run has at most this many.
const MAX_LISTED: usize = 24;

/// Nearest-rank percentile `p` (0–100) of sorted values; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
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
        "failures: {} host failures, {} VMs down, {} restarts, {} lost",
        count(crate::run::FabricEventKind::HostDown),
        count(crate::run::FabricEventKind::VmDown),
        count(crate::run::FabricEventKind::VmRestart),
        count(crate::run::FabricEventKind::VmLost),
    );
    let _ = writeln!(
        s,
        "  VM downtime p50 {:.1} s, max {:.1} s; lost work {:.1} s",
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
    let _ = writeln!(s, "energy: {:.3} MJ total; per site:", total / 1e6);
    // Sites as "name J", as many to a line as fit the summary's width.
    let mut line = String::from(" ");
    for (site, j) in &per_site {
        let item = format!(" {site} {:.3} MJ", j / 1e6);
        if line.len() > 1 && line.len() + item.len() + 1 > WIDTH {
            let _ = writeln!(s, "{line}");
            line = String::from(" ");
        }
        if line.len() > 1 {
            line.push(',');
        }
        line.push_str(&item);
    }
    let _ = writeln!(s, "{line}");
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
    let table = Table(&[
        l("operation", "", 18),
        r("migr", "", 4),
        r("done", "", 4),
        r("fail", "", 4),
        r("makespan", "s", 9),
        r("total", "p50 s", 9),
        r("total", "max s", 9),
        r("down", "p50 ms", 9),
        r("down", "max ms", 9),
        r("wire", "GiB", 8),
        r("rounds", "mean", 7),
    ]);
    s.push_str(&table.header());
    for op in super::op_metrics(std::slice::from_ref(out)) {
        let done: Vec<_> = out.migrations.iter().filter(|m| m.operation == op.operation && m.outcome == Outcome::Completed).collect();
        let rounds = if done.is_empty() { 0.0 } else { done.iter().map(|m| m.rounds as f64).sum::<f64>() / done.len() as f64 };
        s.push_str(&table.row(&[
            op.operation.clone(),
            op.migrations.to_string(),
            op.completed.to_string(),
            op.failed.to_string(),
            format!("{:.3}", op.makespan_s),
            format!("{:.3}", op.total_s_p50),
            format!("{:.3}", op.total_s_max),
            format!("{:.1}", op.downtime_ms_p50),
            format!("{:.1}", op.downtime_ms_max),
            format!("{:.3}", op.bytes_on_wire as f64 / GIB),
            format!("{rounds:.2}"),
        ]));
    }
    let mut outcomes: Vec<(&str, usize)> = Vec::new();
    for m in &out.migrations {
        match outcomes.iter_mut().find(|(o, _)| *o == m.outcome.as_str()) {
            Some((_, n)) => *n += 1,
            None => outcomes.push((m.outcome.as_str(), 1)),
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
        let table = Table(&[
            l("vm", "", 14),
            l("mechanism", "", 13),
            l("outcome", "", 20),
            r("total", "s", 8),
            r("down", "ms", 8),
            r("rounds", "", 6),
            r("wire", "GiB", 7),
            r("thr", "%", 3),
            l("bottleneck", "", 0),
        ]);
        s.push_str(&table.header());
        for m in &out.migrations {
            s.push_str(&table.row(&[
                m.vm.clone(),
                m.mechanism.to_string(),
                m.outcome.to_string(),
                format!("{:.3}", m.total_time_s),
                format!("{:.1}", m.downtime_ms),
                m.rounds.to_string(),
                format!("{:.3}", m.bytes_on_wire as f64 / GIB),
                m.throttle_pct_max.to_string(),
                m.bottleneck.clone(),
            ]));
        }
    }
    s
}

/// A column of a text table: quantity, unit and statistic, width, and
/// whether it is left-aligned (text) or right-aligned (numbers). A column of
/// width 0 is the last, free text wrapped at spaces to what is left of
/// [`WIDTH`], continuation lines starting under the column.
struct Col {
    name: &'static str,
    unit: &'static str,
    width: usize,
    left: bool,
}

/// A left-aligned column.
const fn l(name: &'static str, unit: &'static str, width: usize) -> Col {
    Col { name, unit, width, left: true }
}

/// A right-aligned column.
const fn r(name: &'static str, unit: &'static str, width: usize) -> Col {
    Col { name, unit, width, left: false }
}

/// A text table of columns.
struct Table<'a>(&'a [Col]);

impl Table<'_> {
    fn line(&self, cells: &[String]) -> String {
        let mut line = String::new();
        for (i, (col, cell)) in self.0.iter().zip(cells).enumerate() {
            if i > 0 {
                line.push(' ');
            }
            let width = col.width;
            if width == 0 {
                line.push_str(&wrap(cell, line.chars().count()));
            } else if col.left {
                let _ = write!(line, "{:<width$}", truncate(cell, width));
            } else {
                let _ = write!(line, "{:>width$}", truncate(cell, width));
            }
        }
        let mut line = line.trim_end().to_string();
        line.push('\n');
        line
    }

    /// The two header lines.
    fn header(&self) -> String {
        let names: Vec<String> = self.0.iter().map(|c| c.name.to_string()).collect();
        let units: Vec<String> = self.0.iter().map(|c| c.unit.to_string()).collect();
        self.line(&names) + &self.line(&units)
    }

    /// One row.
    fn row(&self, cells: &[String]) -> String {
        self.line(cells)
    }
}

/// Words of `text` in lines that fit [`WIDTH`] when the first starts at
/// column `start` and the others are indented to it (a word longer than the
/// room is cut).
fn wrap(text: &str, start: usize) -> String {
    let room = WIDTH.saturating_sub(start).max(8);
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let word = truncate(word, room);
        let last = lines.last_mut().expect("one line at least");
        if last.is_empty() {
            last.push_str(&word);
        } else if last.chars().count() + 1 + word.chars().count() <= room {
            last.push(' ');
            last.push_str(&word);
        } else {
            lines.push(word);
        }
    }
    lines.join(&format!("\n{}", " ".repeat(start)))
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
    let _ = writeln!(s, "strategy comparison over {} variants (wire % = bytes on wire / bytes without reduction)", outs.len());
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
        let table = Table(&[
            l("strategy", "", 20),
            r("migr", "", 4),
            r("done", "", 4),
            r("makespan", "s", 8),
            r("wire", "GiB", 7),
            r("wire", "%", 5),
            r("total", "p50 s", 8),
            r("down", "max ms", 7),
            r("cpu", "src s", 6),
            r("cpu", "dst s", 6),
            l("bottlenecks", "", 0),
        ]);
        s.push_str(&table.header());
        for o in outs {
            let rows: Vec<_> = o.migrations.iter().filter(|m| m.operation == op).collect();
            let done: Vec<_> = rows.iter().filter(|m| m.outcome == Outcome::Completed).collect();
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
            s.push_str(&table.row(&[
                o.variant.clone(),
                rows.len().to_string(),
                done.len().to_string(),
                format!("{:.3}", (end - start).max(0.0)),
                format!("{:.3}", wire / GIB),
                format!("{:.1}", if unreduced > 0.0 { 100.0 * wire / unreduced } else { 0.0 }),
                format!("{:.3}", percentile(&totals, 50.0)),
                format!("{down:.1}"),
                format!("{:.2}", rows.iter().map(|m| m.cpu_s_source).sum::<f64>()),
                format!("{:.2}", rows.iter().map(|m| m.cpu_s_destination).sum::<f64>()),
                b.join(" "),
            ]));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{percentile, wrap, WIDTH};

    #[test]
    fn nearest_rank_percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.0);
        assert_eq!(percentile(&v, 99.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn free_text_wraps_under_its_column() {
        let start = WIDTH - 12;
        let got = wrap("dc-hub:1 tcp-window:1 cpu:3", start);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines[0], "dc-hub:1");
        assert_eq!(lines[1], format!("{}tcp-window:1", " ".repeat(start)));
        assert_eq!(lines[2].trim_start(), "cpu:3");
        assert!(lines.iter().skip(1).all(|l| start + l.trim_start().len() <= WIDTH));
        assert_eq!(wrap("", 10), "");
    }
}
