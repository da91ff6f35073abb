//! Host failures and HA restart: analytical downtime, admission control,
//! and what a failure does to a migration in flight (docs/model.md, failures).

use memfabric_sim::run::run;
use memfabric_sim::scenario::parse;
use memfabric_migration::record::Outcome;

/// Site `a` with hosts a-0..a-2 (16 GiB), site `b` with one host; VMs of
/// 4 GiB; `extra` appended.
fn scenario(extra: &str) -> String {
    format!(
        r#"
[scenario]
name = "failures"
[defaults]
dirty_sampling = "expected"
[[sites]]
name = "a"
hosts = [{{ name = "a", count = 3, cores = 16, ram = "16GiB" }}]
[[sites]]
name = "b"
hosts = [{{ name = "b", cores = 16, ram = "64GiB" }}]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "10ms"
[[vms]]
name = "vm"
count = 3
host = "a-0"
archetype = "web"
memory = "4GiB"
{extra}"#
    )
}

#[test]
fn each_restarted_vm_is_down_detection_plus_boot() {
    for (d, b) in [(15.0, 60.0), (0.0, 30.0), (7.5, 0.0)] {
        let text = scenario(&format!(
            "[[failures]]\nhost = \"a-0\"\nat = \"100s\"\n[ha]\ndetection = \"{d}s\"\nboot_time = \"{b}s\"\n"
        ));
        let out = run(&parse(&text, "f.toml").unwrap(), None);
        assert_eq!(out.vm_availability.len(), 3);
        for v in &out.vm_availability {
            assert!((v.downtime_s - (d + b)).abs() < 1e-9, "d={d} b={b}: {v:?}");
            assert_eq!((v.failures, v.restarts, v.final_state), (1, 1, "running"));
            assert!((v.lost_work_s - 100.0).abs() < 1e-9, "{v:?}");
        }
        let kinds: Vec<&str> = out.fabric_events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds[..4], ["host-down", "vm-down", "vm-down", "vm-down"]);
        assert_eq!(kinds.iter().filter(|k| **k == "vm-booted").count(), 3);
    }
}

#[test]
fn without_ha_vms_stay_down_until_the_end() {
    let text = scenario("[[failures]]\nhost = \"a-0\"\nat = \"100s\"\nrepair_after = \"1h\"\n[[migrations]]\nvm = \"vm-0\"\nto = \"b\"\nat = \"2h\"\n");
    let out = run(&parse(&text, "f.toml").unwrap(), None);
    for v in &out.vm_availability {
        assert_eq!((v.restarts, v.final_state), (0, "down"));
        assert!((v.downtime_s - (out.end_time.as_secs_f64() - 100.0)).abs() < 1e-9);
    }
    // A down VM cannot be migrated: refused without a row.
    assert!(out.migrations.is_empty());
}

#[test]
fn restarts_follow_priority_and_wait_for_room() {
    // a-1 and a-2 are full (3 GiB free each would need... make them hold 3 x 4 GiB).
    let text = scenario(
        "[[vms]]\nname = \"fill\"\ncount = 6\nsite = \"a\"\narchetype = \"idle-linux\"\nmemory = \"4GiB\"\n\
         [[failures]]\nhost = \"a-0\"\nat = \"10s\"\n[[failures]]\nhost = \"a-1\"\nat = \"10s\"\nrepair_after = \"300s\"\n\
         [ha]\ndetection = \"0s\"\nboot_time = \"10s\"\nretry_interval = \"1000s\"\n",
    )
    .replace("name = \"vm\"\ncount = 3", "name = \"vm\"\ncount = 3\nha_priority = \"low\"");
    let sc = parse(&text, "f.toml").unwrap();
    let hosts: Vec<&str> = sc.vms.iter().map(|v| sc.fabric.hosts[v.host.index()].name.as_str()).collect();
    // First fit: vm-* on a-0 (12 GiB), fill-0 on a-0, fill-1..4 on a-1, fill-5 on a-2.
    assert_eq!(hosts, ["a-0", "a-0", "a-0", "a-0", "a-1", "a-1", "a-1", "a-1", "a-2"]);
    let out = run(&sc, None);
    let restarts: Vec<(String, f64)> =
        out.fabric_events.iter().filter(|e| e.kind.as_str() == "vm-restart").map(|e| (e.vm.clone(), e.time_s)).collect();
    // At 10 s a-2 has 12 GiB free: the three medium-priority fill VMs first
    // (in VM order), then nothing fits until a-1 is repaired at 310 s.
    assert_eq!(restarts[..3], [("fill-0".into(), 10.0), ("fill-1".into(), 10.0), ("fill-2".into(), 10.0)]);
    assert!(restarts[3..].iter().all(|(_, t)| *t == 310.0), "{restarts:?}");
    assert_eq!(restarts[3..].iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(), ["fill-3", "fill-4", "vm-0", "vm-1", "vm-2"][..restarts.len() - 3]);
}

#[test]
fn admission_control_refuses_exactly_the_placement_that_breaks_the_reserve() {
    // Site b: two 16 GiB hosts; reserve one host's worth (16 GiB) of free RAM.
    // Moving 4 GiB VMs in: 32 - 4k >= 16 holds for k <= 4, fails for the 5th.
    let text = r#"
[scenario]
name = "admission"
[defaults]
dirty_sampling = "expected"
[[sites]]
name = "a"
hosts = [{ name = "a", cores = 16, ram = "64GiB" }]
[[sites]]
name = "b"
hosts = [{ name = "b", count = 2, cores = 16, ram = "16GiB" }]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "10Gbit/s"
latency = "1ms"
[[vms]]
name = "vm"
count = 6
host = "a"
archetype = "idle-linux"
memory = "4GiB"
[[evacuations]]
from = "a"
to = "b"
max_concurrent = 1
[ha]
admission_host_failures = 1
"#;
    let out = run(&parse(text, "adm.toml").unwrap(), None);
    let outcomes: Vec<Outcome> = out.migrations.iter().map(|m| m.outcome).collect();
    use Outcome::{AdmissionControl, Completed};
    assert_eq!(outcomes, [Completed, Completed, Completed, Completed, AdmissionControl, AdmissionControl]);
    let pct = text.replace("admission_host_failures = 1", "admission_percent = \"40%\"");
    // 40% of 32 GiB = 12.8 GiB must stay free: 32 - 4k >= 12.8 for k <= 4.
    let out = run(&parse(&pct, "adm.toml").unwrap(), None);
    assert_eq!(out.migrations.iter().filter(|m| m.outcome == Outcome::Completed).count(), 4);
}

/// One VM migrating a → b, and a failure of `host` at `at`.
fn migration_with_failure(mechanism: &str, host: &str, at: &str) -> memfabric_sim::run::RunOutput {
    let text = format!(
        r#"
[scenario]
name = "fate"
[defaults]
dirty_sampling = "expected"
mechanism = "{mechanism}"
[[sites]]
name = "a"
hosts = [{{ name = "a", cores = 16, ram = "16GiB" }}]
[[sites]]
name = "b"
hosts = [{{ name = "b", cores = 16, ram = "16GiB" }}]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "10ms"
[[vms]]
name = "vm"
host = "a"
archetype = "web"
memory = "4GiB"
[[migrations]]
vm = "vm"
to = "b"
[[failures]]
host = "{host}"
at = "{at}"
"#
    );
    run(&parse(&text, "fate.toml").unwrap(), None)
}

#[test]
fn a_failure_during_a_migration_follows_the_documented_fate() {
    // Pre-copy, destination fails: abort, the VM runs on at the source.
    let out = migration_with_failure("pre-copy", "b", "5s");
    assert_eq!(out.migrations[0].outcome, Outcome::AbortedHostFailure);
    assert!(out.vm_availability.is_empty(), "the VM never went down");
    // Pre-copy, source fails: abort, the VM is down with its host.
    let out = migration_with_failure("pre-copy", "a", "5s");
    assert_eq!(out.migrations[0].outcome, Outcome::AbortedHostFailure);
    assert_eq!(out.vm_availability[0].final_state, "down");
    // Post-copy after the switch (4 GiB at 1 Gbit/s takes > 30 s to push):
    // losing either end loses the VM's memory; it is down (HA may restart it).
    for end in ["a", "b"] {
        let out = migration_with_failure("post-copy", end, "5s");
        assert_eq!(out.migrations[0].outcome, Outcome::Lost, "{end}");
        assert_eq!(out.vm_availability[0].final_state, "down", "{end}");
        assert!(out.fabric_events.iter().any(|e| e.kind.as_str() == "vm-down"));
    }
    // A failure after the migration completed does not touch the row.
    let out = migration_with_failure("pre-copy", "a", "1000s");
    assert_eq!(out.migrations[0].outcome, Outcome::Completed);
    assert!(out.vm_availability.is_empty());
}

#[test]
fn random_failures_are_seeded_and_located_errors_name_the_field() {
    let text = scenario("").replace("count = 3, cores = 16, ram = \"16GiB\"", "count = 3, cores = 16, ram = \"16GiB\", mtbf = \"10h\", mttr = \"1h\"")
        .replace("[scenario]\nname = \"failures\"", "[scenario]\nname = \"failures\"\nhorizon = \"100h\"");
    let sc = parse(&text, "r.toml").unwrap();
    let a = run(&sc, Some(3));
    let b = run(&sc, Some(3));
    let c = run(&sc, Some(4));
    assert_eq!(a.fabric_events, b.fabric_events);
    assert_ne!(a.fabric_events, c.fabric_events);
    let downs = a.fabric_events.iter().filter(|e| e.kind.as_str() == "host-down").count();
    // 3 hosts x 100 h / (10 h + 1 h) ~ 27 failures expected; a loose bound.
    assert!((10..=50).contains(&downs), "{downs}");
    for (bad, want) in [
        ("mtbf = \"10h\", mttr = \"1h\"", "mtbf = \"0s\", mttr = \"1h\""),
        ("mtbf = \"10h\", mttr = \"1h\"", "mtbf = \"10h\""),
    ] {
        let e = parse(&text.replace(bad, want), "r.toml").unwrap_err().to_string();
        assert!(e.contains("sites[0].hosts[0].mt"), "{e}");
    }
    let e = parse(&scenario("[[failures]]\nhost = \"nope\"\nat = \"1s\"\n"), "f.toml").unwrap_err().to_string();
    assert!(e.contains("failures[0].host: unknown host \"nope\""), "{e}");
    let e = parse(&scenario("[[failures]]\nsite = \"zz\"\nat = \"1s\"\n"), "f.toml").unwrap_err().to_string();
    assert!(e.contains("failures[0].site: unknown site \"zz\""), "{e}");
    let e = parse(&scenario("[ha]\nadmission_percent = \"100%\"\n"), "f.toml").unwrap_err().to_string();
    assert!(e.contains("ha.admission_percent"), "{e}");
    let e = parse(&scenario("[ha]\ndetection = \"1s\"\nfoo = 1\n"), "f.toml").unwrap_err().to_string();
    assert!(e.contains("unknown field `foo`"), "{e}");
}

#[test]
fn a_host_at_constant_utilisation_uses_idle_plus_u_range_times_t_joules() {
    // Host "a" (10 cores, 100..300 W) runs one VM of 4 vCPUs at 50% load:
    // u = 0.2, so 140 W. Host "b" fails at 100 s, which ends the run; it drew
    // its idle 50 W until then (its table's 0% point).
    let text = r#"
[scenario]
name = "energy"
[[sites]]
name = "s"
hosts = [
  { name = "a", cores = 10, ram = "16GiB", idle_watts = 100, peak_watts = 300 },
  { name = "b", cores = 10, ram = "16GiB", power_table = [50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150] },
]
[[vms]]
name = "vm"
host = "a"
archetype = "idle-linux"
memory = "1GiB"
vcpus = 4
cpu_load = "50%"
[[failures]]
host = "b"
at = "100s"
[power]
off_watts = 0
"#;
    let out = run(&parse(text, "e.toml").unwrap(), None);
    assert_eq!(out.end_time.as_secs_f64(), 100.0);
    assert!((out.host_energy_j[0] - 140.0 * 100.0).abs() < 1e-6, "{:?}", out.host_energy_j);
    assert!((out.host_energy_j[1] - 50.0 * 100.0).abs() < 1e-6, "{:?}", out.host_energy_j);
    // The VM on b's table at u = 0.2 would draw 70 W: move it there and see.
    let moved = text.replace("host = \"a\"\narchetype", "host = \"b\"\narchetype").replace("host = \"b\"\nat", "host = \"a\"\nat");
    let out = run(&parse(&moved, "e.toml").unwrap(), None);
    assert!((out.host_energy_j[1] - 70.0 * 100.0).abs() < 1e-6, "{:?}", out.host_energy_j);
    assert!((out.host_energy_j[0] - 100.0 * 100.0).abs() < 1e-6);
    assert!(memfabric_sim::output::summary(&out).contains("energy: 0.017 MJ total; per site:\n  s 0.017 MJ\n"));
    let table = "[50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]";
    for (bad, want) in [
        ("[50, 60, 70, 80, 90, 100, 110, 120, 130, 140]", "must have 11 points"),
        ("[50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160]", "must have 11 points"),
        ("[50, 60, 70, 80, 90, 100, 110, 105, 130, 140, 150]", "power_table[7]: must not decrease"),
        ("[-1, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]", "power_table[0]: watts must be finite and non-negative"),
    ] {
        let e = parse(&text.replace(table, bad), "e.toml").unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("sites[0].hosts[1]"), "{bad}: {e}");
    }
}
