use super::*;

const BASE: &str = r#"
[scenario]
name = "unit"
[defaults]
streams = 2
downtime_limit = "100ms"
[[sites]]
name = "a"
hosts = [{ name = "h", count = 2, cores = 8, ram = "16GiB" }]
[[sites]]
name = "b"
hosts = [{ name = "g", cores = 8, ram = "16GiB" }]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "1ms"
[[vms]]
name = "vm"
count = 3
site = "a"
archetype = "web"
memory = "6GiB"
[[migrations]]
vm = "vm-2"
to = "b"
settings = { streams = 8 }
[[evacuations]]
from = "a"
to = "b"
"#;

#[test]
fn counts_expand_names_and_vms_are_placed_first_fit() {
    let sc = parse(BASE, "unit.toml").unwrap();
    let hosts: Vec<&str> = sc.fabric.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(hosts, ["h-0", "h-1", "g"]);
    let vms: Vec<(&str, &str)> =
        sc.vms.iter().map(|v| (v.name.as_str(), sc.fabric.hosts[v.host.index()].name.as_str())).collect();
    // Two 6 GiB VMs fit in h-0 (16 GiB), the third goes to h-1.
    assert_eq!(vms, [("vm-0", "h-0"), ("vm-1", "h-0"), ("vm-2", "h-1")]);
}

#[test]
fn settings_layer_builtin_then_defaults_then_operation() {
    let sc = parse(BASE, "unit.toml").unwrap();
    let OperationSpec::Migrate { settings, name, .. } = &sc.operations[0] else { panic!("migration first") };
    assert_eq!(name, "migrate-vm-2");
    assert_eq!(settings.streams, 8, "operation overrides defaults");
    assert_eq!(settings.precopy.downtime_limit, Nanos::from_millis(100), "defaults override built-ins");
    assert_eq!(settings.precopy.max_rounds, DEFAULT_MAX_ROUNDS, "built-in");
    let OperationSpec::Evacuate { settings, name, max_concurrent, .. } = &sc.operations[1] else { panic!() };
    assert_eq!(name, "evacuate-a");
    assert_eq!((settings.streams, *max_concurrent), (2, None));
}

#[test]
fn switching_popularity_starts_from_the_law_defaults() {
    let text = BASE.replace("memory = \"6GiB\"", "memory = \"6GiB\"\nworkload = { popularity = \"hot-cold\", hot_set = \"5%\" }");
    let sc = parse(&text, "unit.toml").unwrap();
    assert_eq!(
        sc.vms[0].workload.popularity,
        Popularity::HotCold { hot_set: Fraction(0.05), hot_write_share: archetype::DEFAULT_HOT_WRITE_SHARE }
    );
    let text = BASE.replace("archetype = \"web\"", "archetype = \"oltp-db\"").replace("memory = \"6GiB\"", "memory = \"6GiB\"\nworkload = { zipf_exponent = 1.2 }");
    let sc = parse(&text, "unit.toml").unwrap();
    assert_eq!(sc.vms[0].workload.popularity, Popularity::Zipf { exponent: 1.2 });
    let text = BASE.replace("memory = \"6GiB\"", "memory = \"6GiB\"\nworkload = { zipf_exponent = 1.2 }");
    let e = parse(&text, "unit.toml").unwrap_err().to_string();
    assert!(e.contains("only applies with popularity = \"zipf\""), "{e}");
}

#[test]
fn hash_follows_the_text() {
    let a = parse(BASE, "unit.toml").unwrap().source_hash;
    let b = parse(&format!("{BASE}\n# a comment\n"), "unit.toml").unwrap().source_hash;
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    assert_eq!(a, parse(BASE, "other-name.toml").unwrap().source_hash);
}

#[test]
fn error_locations_are_one_based() {
    let ctx = Ctx { text: "ab\ncd\nef", label: "x", base: None, calibration_key: true };
    assert_eq!(ctx.line_col(0), (1, 1));
    assert_eq!(ctx.line_col(4), (2, 2));
    assert_eq!(ctx.line_col(6), (3, 1));
    assert_eq!(ctx.line_col(100), (3, 3));
}
