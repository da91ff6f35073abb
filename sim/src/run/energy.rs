//! Energy in the engine: after every event, each host's utilisation (its
//! VMs' CPU load plus the migration pipelines' CPU at each end) and power
//! state give its power, which the [`EnergyMeter`] integrates; power-state
//! transitions (booting, shutting down) take their durations here.

use super::*;
use crate::energy::{EnergyMeter, EnergyRow};
use crate::state::PowerState;

impl Sim<'_> {
    /// Cores busy on each host now.
    fn cores_busy(&self) -> Vec<f64> {
        let mut busy = vec![0.0; self.sc.fabric.hosts.len()];
        for (i, v) in self.sc.vms.iter().enumerate() {
            let vm = VmId(i as u32);
            if self.state.vm_state(vm).holds_host() {
                busy[self.state.vm_host(vm).index()] += v.vcpus as f64 * v.cpu_load;
            }
        }
        for m in self.migs.iter().filter(|m| m.outcome.is_none()) {
            let Some(flow) = m.flow else { continue };
            if m.stage_bytes <= 0.0 {
                continue;
            }
            // Cores = wire bytes/s × CPU seconds per wire byte of the stage.
            let per_byte_s = |ns: f64| ns / m.stage_bytes / 1e9;
            let rate = self.net.rate(flow);
            busy[m.src.index()] += rate * per_byte_s(m.stage_tally.source_ns());
            busy[m.dst.index()] += rate * per_byte_s(m.stage_tally.cpu_ns_destination);
        }
        busy
    }

    /// Tells the meter every host's power now (no-op without `[power]`).
    pub(super) fn update_power(&mut self) {
        let Some(spec) = &self.sc.power else { return };
        let busy = self.cores_busy();
        let now = self.now();
        let meter = self.meter.get_or_insert_with(|| EnergyMeter::new(self.sc.fabric.hosts.len()));
        for (h, host) in self.sc.fabric.hosts.iter().enumerate() {
            let id = HostId(h as u32);
            let state = if self.state.host_up(id) { self.state.host_power(id) } else { PowerState::Off };
            let u = if state == PowerState::On { (busy[h] / host.cores as f64).min(1.0) } else { 0.0 };
            let watts = match state {
                PowerState::On => host.power.watts(u),
                PowerState::Off => spec.off_watts,
                PowerState::Booting => spec.boot_watts.unwrap_or_else(|| host.power.watts(1.0)),
                PowerState::ShuttingDown => spec.shutdown_watts.unwrap_or_else(|| host.power.idle_watts()),
            };
            let name = if self.state.host_up(id) { state.as_str() } else { "failed" };
            meter.set(h, now, name, u, watts);
        }
    }

    /// Starts a power transition: off → booting → on, on → shutting down → off.
    pub(super) fn begin_power_change(&mut self, host: HostId, on: bool) {
        let spec = self.sc.power.clone().unwrap_or_default();
        let (now_state, then, after) = if on {
            (PowerState::Booting, PowerState::On, spec.boot_time)
        } else {
            (PowerState::ShuttingDown, PowerState::Off, spec.shutdown_time)
        };
        self.set_power(host, now_state);
        self.q.schedule_in(after, Event::PowerDone(host, then));
    }

    /// A power transition ended (unless another one replaced it).
    pub(super) fn power_done(&mut self, host: HostId, to: PowerState) {
        let expected = if to == PowerState::On { PowerState::Booting } else { PowerState::ShuttingDown };
        if self.state.host_power(host) == expected {
            self.set_power(host, to);
        }
    }

    /// The `energy` rows and each host's joules until `end` (empty without `[power]`).
    pub(super) fn energy_rows(&self, end: Nanos) -> (Vec<EnergyRow>, Vec<f64>) {
        let Some(meter) = &self.meter else { return (Vec::new(), Vec::new()) };
        if cfg!(debug_assertions) {
            if let Err(e) = meter.check(end) {
                panic!("invariant broken in scenario {:?}: energy: {e}", self.sc.name);
            }
        }
        let f = &self.sc.fabric;
        let rows = meter
            .rows()
            .iter()
            .map(|&(h, t, state, u, watts, energy_j)| EnergyRow {
                time_s: t.as_secs_f64(),
                host: f.hosts[h].name.clone(),
                site: f.sites[f.hosts[h].site.index()].name.clone(),
                power_state: state,
                utilisation: u,
                watts,
                energy_j,
            })
            .collect();
        (rows, meter.joules_until(end))
    }
}
