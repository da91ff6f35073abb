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
    let rows: Vec<(&str, &str)> = out.migrations.iter().map(|m| (m.vm.as_str(), m.outcome)).collect();
    assert_eq!(rows, [("small", "cancelled"), ("big", "no-capacity")]);
    assert_eq!(out.migrations[0].operation, "probe");
    assert!((out.migrations[0].end_s - 0.5).abs() < 1e-9);
    assert_eq!(out.migrations[0].outcome, Outcome::Cancelled.as_str());
}
