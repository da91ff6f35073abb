//! The policy seam, driven by test policies: answers to commands, typed
//! refusals, timers and cancellation, under the invariant checker (debug build).

use memfabric_migration::record::Outcome;
use memfabric_migration::units::Nanos;
use memfabric_sim::fabric::{HostId, SiteId, VmId};
use memfabric_sim::policy::{FabricEvent, MigrationRequest, Policy, PolicyCtx, Refusal};
use memfabric_sim::run::{run_with, ExtraPolicy};
use memfabric_sim::scenario::{parse, Destination, MigrationSettings};
use std::cell::RefCell;
use std::rc::Rc;

const FABRIC: &str = r#"
[scenario]
name = "policy"
[[sites]]
name = "a"
hosts = [{ name = "a-h", cores = 8, ram = "8GiB" }]
[[sites]]
name = "b"
hosts = [{ name = "b-h", cores = 8, ram = "4GiB" }]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "5ms"
[[vms]]
name = "small"
host = "a-h"
archetype = "idle-linux"
memory = "1GiB"
[[vms]]
name = "big"
host = "a-h"
archetype = "idle-linux"
memory = "6GiB"
"#;

/// Records every event it hears; runs a script at start and on the first timer.
struct Probe {
    log: Rc<RefCell<Vec<FabricEvent>>>,
}

impl Policy for Probe {
    fn start(&mut self, ctx: &mut PolicyCtx<'_>) {
        let to_b = |vm| MigrationRequest { vm: VmId(vm), to: Destination::Site(SiteId(1)), settings: MigrationSettings::default() };
        ctx.migrate(to_b(0)); // accepted
        ctx.migrate(to_b(0)); // the same VM again: busy
        ctx.migrate(to_b(1)); // 6 GiB does not fit b's 4 GiB host
        ctx.set_timer(Nanos::from_millis(500), 7);
    }
    fn on_event(&mut self, ctx: &mut PolicyCtx<'_>, event: &FabricEvent) {
        self.log.borrow_mut().push(event.clone());
        if let FabricEvent::Timer { tag: 7 } = event {
            assert_eq!(ctx.now(), Nanos::from_millis(500));
            // Cancel our migration in flight; host b holds its reservation until then.
            assert_eq!(ctx.view().state.host_ram_used(HostId(1)), 1 << 30);
            let started = self.log.borrow().iter().find_map(|e| match e {
                FabricEvent::MigrationStarted { migration, .. } => Some(*migration),
                _ => None,
            });
            ctx.cancel(started.expect("a migration started"));
        }
    }
}

#[test]
fn commands_are_answered_refused_by_type_timed_and_cancelled() {
    let sc = parse(FABRIC, "policy.toml").unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let probe = ExtraPolicy { name: "probe".into(), start: Nanos(0), policy: Box::new(Probe { log: log.clone() }) };
    let out = run_with(&sc, None, vec![probe]);
    let log = log.borrow();
    let kinds: Vec<String> = log
        .iter()
        .map(|e| match e {
            FabricEvent::MigrationStarted { vm, .. } => format!("started {}", vm.0),
            FabricEvent::Refused { vm, refusal, .. } => format!("refused {} {refusal}", vm.unwrap().0),
            FabricEvent::Timer { tag } => format!("timer {tag}"),
            FabricEvent::MigrationEnded { vm, outcome, .. } => format!("ended {} {}", vm.0, outcome.as_str()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["started 0", "refused 0 busy", "refused 1 no-capacity", "timer 7", "ended 0 cancelled"]);
    assert!(matches!(log[2], FabricEvent::Refused { refusal: Refusal::NoCapacity, .. }));
    // Rows: the cancelled migration and the refused one (no row for "busy").
    let rows: Vec<(&str, Outcome)> = out.migrations.iter().map(|m| (m.vm.as_str(), m.outcome)).collect();
    assert_eq!(rows, [("small", Outcome::Cancelled), ("big", Outcome::NoCapacity)]);
    assert_eq!(out.migrations[0].operation, "probe");
    assert!((out.migrations[0].end_s - 0.5).abs() < 1e-9);
    assert_eq!(out.migrations[0].outcome, Outcome::Cancelled);
}

/// Switches host b off at start, and asks again (refused: not on).
struct PowerDown;

impl Policy for PowerDown {
    fn start(&mut self, ctx: &mut PolicyCtx<'_>) {
        ctx.power_off(HostId(0)); // holds VMs: refused
        ctx.power_off(HostId(1));
        ctx.set_timer(Nanos::from_secs(100), 1);
    }
    fn on_event(&mut self, ctx: &mut PolicyCtx<'_>, event: &FabricEvent) {
        if let FabricEvent::Timer { tag: 1 } = event {
            ctx.power_on(HostId(1));
        }
    }
}

#[test]
fn power_states_take_their_durations_and_draw_their_watts() {
    let text = format!("{FABRIC}\n[power]\nshutdown_time = \"10s\"\nboot_time = \"20s\"\noff_watts = 4\nboot_watts = 250\nshutdown_watts = 90\n");
    let sc = parse(&text, "power.toml").unwrap();
    let p = ExtraPolicy { name: "power".into(), start: Nanos(0), policy: Box::new(PowerDown) };
    let out = run_with(&sc, None, vec![p]);
    let b: Vec<(f64, &str, f64)> =
        out.energy.iter().filter(|r| r.host == "b-h").map(|r| (r.time_s, r.power_state, r.watts)).collect();
    assert_eq!(b, [(0.0, "on", 100.0), (0.0, "shutting-down", 90.0), (10.0, "off", 4.0), (100.0, "booting", 250.0), (120.0, "on", 100.0)]);
    // b: 90 W x 10 s + 4 W x 90 s + 250 W x 20 s, and the run ends at 120 s.
    assert_eq!(out.end_time, Nanos::from_secs(120));
    assert!((out.host_energy_j[1] - (900.0 + 360.0 + 5000.0)).abs() < 1e-6, "{:?}", out.host_energy_j);
}
