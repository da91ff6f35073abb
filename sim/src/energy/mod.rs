//! Energy: each host's power from its CPU utilisation and power state, and
//! the joules it uses over a run.
//!
//! A host's power model ([`PowerModel`]) is linear between idle and peak
//! watts in CPU utilisation `u`, or an 11-point table at u = 0 %, 10 %, …,
//! 100 % interpolated linearly, the form SPECpower_ssj2008 publishes and
//! CloudSim's power models use. `u` is the VMs' CPU demand (each VM keeps
//! `cpu_load` of its vCPUs busy) plus the migration pipeline's CPU at each
//! end (cores busy = flow rate × the stage's CPU seconds per wire byte),
//! divided by the host's cores and capped at 1. A host that is off, booting
//! or shutting down draws the [`PowerSpec`] watts of that state.
//!
//! [`EnergyMeter`] integrates power exactly: power is constant between
//! events, and the meter is told the new power of every host after each
//! event; each change is a row of the `energy` table.

use memfabric_migration::units::Nanos;

/// Default CPU load of a VM: the fraction of its vCPUs busy on average
/// (reasoned: enterprise servers commonly average 10–50 % CPU).
pub const DEFAULT_CPU_LOAD: f64 = 0.3;
/// Default time a host takes to boot (reasoned: server POST and OS boot).
pub const DEFAULT_BOOT_TIME: Nanos = Nanos::from_secs(180);
/// Default time a host takes to shut down (reasoned).
pub const DEFAULT_SHUTDOWN_TIME: Nanos = Nanos::from_secs(30);
/// Default power of a host that is off (BMC and fans; reasoned).
pub const DEFAULT_OFF_WATTS: f64 = 5.0;

/// How a host's power follows its CPU utilisation.
#[derive(Debug, Clone, PartialEq)]
pub enum PowerModel {
    /// `idle + u · (peak − idle)`.
    Linear {
        /// Watts at u = 0.
        idle_watts: f64,
        /// Watts at u = 1.
        peak_watts: f64,
    },
    /// Watts at u = 0, 0.1, …, 1, linear in between.
    Table([f64; 11]),
}

impl Default for PowerModel {
    fn default() -> Self {
        PowerModel::Linear { idle_watts: 100.0, peak_watts: 300.0 }
    }
}

impl PowerModel {
    /// Watts at utilisation `u` (clamped to [0, 1]).
    pub fn watts(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        match self {
            PowerModel::Linear { idle_watts, peak_watts } => idle_watts + u * (peak_watts - idle_watts),
            PowerModel::Table(t) => {
                let x = u * 10.0;
                let i = (x.floor() as usize).min(9);
                t[i] + (x - i as f64) * (t[i + 1] - t[i])
            }
        }
    }

    /// Watts when idle (u = 0).
    pub fn idle_watts(&self) -> f64 {
        self.watts(0.0)
    }
}

/// The `[power]` section: power states of hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSpec {
    /// Boot time (off → on).
    pub boot_time: Nanos,
    /// Shutdown time (on → off).
    pub shutdown_time: Nanos,
    /// Watts while off.
    pub off_watts: f64,
    /// Watts while booting (default: the host's peak).
    pub boot_watts: Option<f64>,
    /// Watts while shutting down (default: the host's idle).
    pub shutdown_watts: Option<f64>,
}

impl Default for PowerSpec {
    fn default() -> Self {
        PowerSpec { boot_time: DEFAULT_BOOT_TIME, shutdown_time: DEFAULT_SHUTDOWN_TIME, off_watts: DEFAULT_OFF_WATTS, boot_watts: None, shutdown_watts: None }
    }
}

/// One row of the `energy` table: a host's power from `time_s` until its next row.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyRow {
    /// When the power took this value.
    pub time_s: f64,
    /// Host name.
    pub host: String,
    /// Its site.
    pub site: String,
    /// Power state: on, off, booting, shutting-down.
    pub power_state: &'static str,
    /// CPU utilisation (0 unless on).
    pub utilisation: f64,
    /// Power drawn.
    pub watts: f64,
    /// Energy used by the host from the start of the run until `time_s`, joules.
    pub energy_j: f64,
}

/// Integrates each host's power over time.
#[derive(Debug, Clone)]
pub struct EnergyMeter {
    watts: Vec<f64>,
    since: Vec<Nanos>,
    joules: Vec<f64>,
    last: Vec<Option<(&'static str, f64, f64)>>,
    rows: Vec<(usize, Nanos, &'static str, f64, f64, f64)>,
}

impl EnergyMeter {
    /// A meter for `hosts` hosts at time zero, drawing nothing yet.
    pub fn new(hosts: usize) -> EnergyMeter {
        EnergyMeter {
            watts: vec![0.0; hosts],
            since: vec![Nanos(0); hosts],
            joules: vec![0.0; hosts],
            last: vec![None; hosts],
            rows: Vec::new(),
        }
    }

    /// Host `h` draws `watts` (in `state`, at utilisation `u`) from `now` on.
    pub fn set(&mut self, h: usize, now: Nanos, state: &'static str, u: f64, watts: f64) {
        if self.last[h] == Some((state, u, watts)) {
            return;
        }
        self.joules[h] += self.watts[h] * (now.0 - self.since[h].0) as f64 / 1e9;
        self.watts[h] = watts;
        self.since[h] = now;
        self.last[h] = Some((state, u, watts));
        self.rows.push((h, now, state, u, watts, self.joules[h]));
    }

    /// Joules of each host up to `end`.
    pub fn joules_until(&self, end: Nanos) -> Vec<f64> {
        (0..self.watts.len()).map(|h| self.joules[h] + self.watts[h] * end.0.saturating_sub(self.since[h].0) as f64 / 1e9).collect()
    }

    /// The rows so far: (host, time, state, utilisation, watts, joules until then).
    pub fn rows(&self) -> &[(usize, Nanos, &'static str, f64, f64, f64)] {
        &self.rows
    }

    /// Checks that energy is non-negative and equals the integral of the
    /// rows' power (recomputed independently from the rows).
    pub fn check(&self, now: Nanos) -> Result<(), String> {
        let mut integral = vec![0.0f64; self.watts.len()];
        let mut prev: Vec<Option<(Nanos, f64)>> = vec![None; self.watts.len()];
        for &(h, t, _, _, w, j) in &self.rows {
            if w < 0.0 || j < 0.0 {
                return Err(format!("host {h}: negative power {w} W or energy {j} J at {} ns", t.0));
            }
            if let Some((t0, w0)) = prev[h] {
                integral[h] += w0 * (t.0 - t0.0) as f64 / 1e9;
            }
            if (integral[h] - j).abs() > 1e-6 * j.max(1.0) {
                return Err(format!("host {h}: energy {j} J at {} ns, but its power integrates to {} J", t.0, integral[h]));
            }
            prev[h] = Some((t, w));
        }
        for (h, j) in self.joules_until(now).iter().enumerate() {
            if *j < 0.0 {
                return Err(format!("host {h}: negative energy {j} J"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_utilisation_gives_idle_plus_u_times_range_times_t() {
        let m = PowerModel::Linear { idle_watts: 100.0, peak_watts: 300.0 };
        for (u, t_s) in [(0.0, 10u64), (0.25, 3600), (0.5, 7), (1.0, 100)] {
            let mut e = EnergyMeter::new(1);
            e.set(0, Nanos(0), "on", u, m.watts(u));
            let j = e.joules_until(Nanos::from_secs(t_s))[0];
            assert!((j - (100.0 + u * 200.0) * t_s as f64).abs() < 1e-6, "u={u}: {j}");
            e.check(Nanos::from_secs(t_s)).unwrap();
        }
    }

    #[test]
    fn the_table_interpolates_linearly() {
        // A SPECpower-like table (HP ProLiant ML110 G4, as CloudSim ships it).
        let t = [86.0, 89.4, 92.6, 96.0, 99.5, 102.0, 106.0, 108.0, 112.0, 114.0, 117.0];
        let m = PowerModel::Table(t);
        for i in 0..=10 {
            assert_eq!(m.watts(i as f64 / 10.0), t[i]);
        }
        assert!((m.watts(0.05) - (86.0 + 89.4) / 2.0).abs() < 1e-12);
        assert!((m.watts(0.93) - (114.0 + 0.3 * 3.0)).abs() < 1e-9);
        assert_eq!(m.watts(2.0), 117.0);
    }

    #[test]
    fn the_meter_integrates_steps_and_the_checker_catches_a_wrong_total() {
        let mut e = EnergyMeter::new(2);
        e.set(0, Nanos(0), "on", 0.0, 100.0);
        e.set(1, Nanos(0), "off", 0.0, 5.0);
        e.set(0, Nanos::from_secs(10), "on", 0.5, 200.0);
        e.set(0, Nanos::from_secs(10), "on", 0.5, 200.0); // no change: no row
        e.set(1, Nanos::from_secs(20), "booting", 0.0, 300.0);
        assert_eq!(e.rows().len(), 4);
        let j = e.joules_until(Nanos::from_secs(30));
        assert!((j[0] - (1000.0 + 4000.0)).abs() < 1e-9);
        assert!((j[1] - (100.0 + 3000.0)).abs() < 1e-9);
        e.check(Nanos::from_secs(30)).unwrap();
        e.rows.last_mut().unwrap().5 += 1.0;
        assert!(e.check(Nanos::from_secs(30)).unwrap_err().contains("integrates"));
    }
}
