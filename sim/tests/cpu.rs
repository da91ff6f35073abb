//! CPU compatibility: a VM pinned to a named model is refused live migration
//! to exactly the hosts that lack one of the model's features (or are of
//! another vendor), and accepted by every other.

use memfabric_migration::record::Outcome;
use memfabric_sim::cpu::named_model;
use memfabric_sim::scenario::parse;

#[test]
fn a_pinned_vm_is_refused_exactly_the_hosts_lacking_a_feature() {
    let (_, features) = named_model("Cascadelake-Server").unwrap();
    let features: Vec<String> = features.into_iter().collect();
    let quoted = |fs: &[String]| fs.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ");
    // Host i (i < n) lacks feature i; host n has all of them plus one more;
    // host n+1 has all of them but is AMD.
    let n = features.len();
    let mut hosts = String::new();
    let mut expected = Vec::new();
    for i in 0..n + 2 {
        let (vendor, fs): (&str, Vec<String>) = match i {
            i if i < n => ("intel", features.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, f)| f.clone()).collect()),
            i if i == n => ("intel", features.iter().cloned().chain(["amx-tile".to_string()]).collect()),
            _ => ("amd", features.clone()),
        };
        hosts.push_str(&format!(
            "[[sites.hosts]]\nname = \"h{i}\"\ncores = 8\nram = \"16GiB\"\ncpu_vendor = \"{vendor}\"\ncpu_features = [{}]\n",
            quoted(&fs)
        ));
        expected.push((format!("h{i}"), if i == n { Outcome::Completed } else { Outcome::CpuIncompatible }));
    }
    let migrations: String =
        (0..n + 2).map(|i| format!("[[migrations]]\nvm = \"vm\"\nto = \"h{i}\"\nat = \"{}s\"\n", 100 * i)).collect();
    let text = format!(
        r#"
[scenario]
name = "cpu"
[defaults]
dirty_sampling = "expected"
[[sites]]
name = "a"
[[sites.hosts]]
name = "src"
cores = 8
ram = "16GiB"
cpu_model = "Cascadelake-Server"
{hosts}
[[vms]]
name = "vm"
host = "src"
archetype = "idle-linux"
memory = "256MiB"
cpu_model = "Cascadelake-Server"
{migrations}"#
    );
    let sc = parse(&text, "cpu.toml").unwrap_or_else(|e| panic!("{e}"));
    let out = memfabric_sim::run::run(&sc, None);
    // After the one success the VM sits on h{n}; later migrations start from
    // there (a superset host), which changes nothing for a named model.
    let got: Vec<(String, Outcome)> = out
        .migrations
        .iter()
        .map(|m| (if m.dst_host.is_empty() { String::new() } else { m.dst_host.clone() }, m.outcome))
        .collect();
    let want: Vec<(String, Outcome)> =
        expected.iter().map(|(h, o)| (if *o == Outcome::Completed { h.clone() } else { String::new() }, *o)).collect();
    assert_eq!(got, want);
}

#[test]
fn a_vm_that_cannot_run_on_its_host_is_a_located_error() {
    let text = r#"
[scenario]
name = "cpu"
[[sites]]
name = "a"
hosts = [{ name = "h", cores = 8, ram = "16GiB", cpu_model = "Skylake-Server" }]
[[vms]]
name = "vm"
host = "h"
archetype = "idle-linux"
cpu_model = "Icelake-Server"
"#;
    let e = parse(text, "cpu.toml").unwrap_err().to_string();
    assert!(e.starts_with("cpu.toml:11:13: vms[0].cpu_model: VM \"vm\" cannot run on host \"h\""), "{e}");
    assert!(e.contains("avx512vnni"), "{e}");
    for (bad, want) in [
        ("cpu_model = \"Skylake-Server\"", "unknown CPU model \"Pentium\""),
        ("cpu_vendor = \"intel\"", "needs cpu_features"),
        ("cpu_features = [\"avx\"]", "needs cpu_vendor"),
        ("cpu_vendor = \"via\"", "unknown variant `via`"),
    ] {
        let t = text.replace("cpu_model = \"Skylake-Server\"", &bad.replace("Skylake-Server", "Pentium"));
        let e = parse(&t, "cpu.toml").unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("sites[0].hosts[0]"), "{bad}: {e}");
    }
}

#[test]
fn check_warns_about_a_vm_that_can_never_leave_its_site() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/heterogeneous.toml");
    let sc = memfabric_sim::scenario::load(&path).unwrap();
    let w = sc.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("\"pinned\"") && w[0].contains("\"lyon\""), "{w:?}");
}

#[test]
fn a_refused_migration_can_fall_back_to_a_cold_restart_across_vendors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/heterogeneous.toml");
    let sc = memfabric_sim::scenario::load(&path).unwrap();
    let out = memfabric_sim::run::run(&sc, None);
    // The live attempt is refused (a row, nothing sent); the VM is stopped at
    // 60 s and boots in Madrid for 45 s.
    let row = out.migrations.iter().find(|m| m.vm == "portable" && m.dst_site == "madrid").unwrap();
    assert_eq!((row.outcome, row.bytes_on_wire), (Outcome::CpuIncompatible, 0));
    let v = out.vm_availability.iter().find(|v| v.vm == "portable").unwrap();
    assert_eq!((v.failures, v.restarts, v.final_state), (0, 1, "running"));
    assert!((v.downtime_s - 45.0).abs() < 1e-9, "{v:?}");
    assert!(out.end_time.as_secs_f64() >= 105.0);
}
