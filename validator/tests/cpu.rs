//! CPU baselines: the guest gets a CPU model or feature list through
//! KVM_SET_CPUID2, reports the CPUID it sees, and `migrate` refuses a
//! destination lacking one of its features before any page moves (typed
//! refusal, exit code 3, the guest runs on at the source), or migrates to one
//! that has them all. Feature lists are taken from what KVM offers on the
//! machine running the test. Needs /dev/kvm; skips with a message without.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use memfabric_validator::kvm::cpuid::{features_in, host_cpu};
use memfabric_validator::kvm::kvm_or_skip;

/// The table's features KVM offers here, in order.
fn offered() -> Vec<String> {
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let supported = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).unwrap();
    host_cpu(&supported).declared.map(|d| d.1.into_iter().collect()).unwrap_or_default()
}

/// The table's features of the physical CPU, as a process sees them.
fn native() -> BTreeSet<String> {
    let leaf = |l: u32, s: u32| {
        let r = core::arch::x86_64::__cpuid_count(l, s);
        Some([r.eax, r.ebx, r.ecx, r.edx])
    };
    features_in(leaf)
}

struct Out {
    code: Option<i32>,
    stderr: String,
    source: serde_json::Value,
    manifest: serde_json::Value,
    dest: serde_json::Value,
}

fn migrate(name: &str, args: &[&str]) -> Out {
    let _serial = common::serial();
    let out = memfabric_testkit::scratch::owned_path("validator-test-cpu", name);
    let o = Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
        .args(["migrate", "--mem", "16MiB", "--workload", "web", "--dirty-rate", "2000", "--warmup", "200ms", "--watch", "500ms"])
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let read = |f: &str| serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap_or_default()).unwrap_or(serde_json::Value::Null);
    let r = Out {
        code: o.status.code(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
        source: read("source.json"),
        manifest: read("manifest.json"),
        dest: read("destination.json"),
    };
    let _ = std::fs::remove_dir_all(&out);
    r
}

fn set(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
}

#[test]
fn a_destination_lacking_a_feature_is_refused_before_any_page_moves() {
    if !kvm_or_skip("a_destination_lacking_a_feature_is_refused_before_any_page_moves") {
        return;
    }
    let all = offered();
    let Some(last) = all.last().cloned() else {
        eprintln!("skipping a_destination_lacking_a_feature_is_refused_before_any_page_moves: KVM here offers none of the CPU model table's features");
        return;
    };
    let fewer = all[..all.len() - 1].join(",");
    let r = migrate("refused", &["--cpu-features", &all.join(","), "--dest-cpu-features", &fewer]);
    assert_eq!(r.code, Some(3), "a refusal exits 3: {}", r.stderr);
    assert!(r.stderr.contains("lacks features the guest was started with") && r.stderr.contains(&last), "{}", r.stderr);
    assert_eq!(r.source["outcome"], "cpu-incompatible");
    assert_eq!(r.manifest["outcome"], "cpu-incompatible");
    assert_eq!(r.source["cpu_incompatible"]["missing"], serde_json::json!([last]));
    // Before any page: no round, no page record.
    assert_eq!(r.source["rounds"], serde_json::json!([]));
    assert_eq!(r.dest["pages_received"], 0);
    assert!(r.source["stages"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with("pages_")).all(|(_, v)| v == 0));
    // The guest ran on at the source, never paused.
    let w = &r.source["guest_after_abort"];
    assert!(w["writes_after"].as_u64().unwrap() > w["writes_before"].as_u64().unwrap(), "{w}");
    assert!(r.source["pause_ns"].is_null());
}

#[test]
fn a_guest_migrates_to_a_destination_offering_its_features() {
    if !kvm_or_skip("a_guest_migrates_to_a_destination_offering_its_features") {
        return;
    }
    let all = offered();
    let Some(first) = all.first().cloned() else {
        eprintln!("skipping a_guest_migrates_to_a_destination_offering_its_features: KVM here offers none of the CPU model table's features");
        return;
    };
    let r = migrate("accepted", &["--cpu-features", &first, "--dest-cpu-features", &all.join(",")]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.manifest["integrity_held"], true);
    assert_eq!(set(&r.source["cpu"]["features"]), BTreeSet::from([first.clone()]));
    assert_eq!(set(&r.source["dest_cpu"]["features"]), all.iter().cloned().collect());
    // What the guest saw: exactly its features where KVM applies the CPUID
    // table; where it does not (kvm-pvm: the guest's CPUID is answered as
    // for the host's own processes) features of the physical CPU, and the
    // report and a warning say so.
    let seen = set(&r.source["guest_cpu_features"]);
    match r.source["cpuid_enforced"].as_bool().unwrap() {
        true => assert_eq!(seen, BTreeSet::from([first])),
        false => {
            assert_ne!(seen, BTreeSet::from([first]));
            assert!(seen.is_subset(&native()), "not the model: then the physical CPU's features, {seen:?} vs {:?}", native());
            assert!(r.stderr.contains("does not intercept CPUID"), "{}", r.stderr);
        }
    }
}

#[test]
fn a_model_kvm_cannot_offer_is_refused_up_front() {
    if !kvm_or_skip("a_model_kvm_cannot_offer_is_refused_up_front") {
        return;
    }
    let all: BTreeSet<String> = offered().into_iter().collect();
    // Any model needing a feature KVM here lacks: refused as bad input,
    // exit 2, nothing written.
    let Some(model) = memfabric_sim::cpu::model_names().into_iter().find(|m| {
        let (vendor, features) = memfabric_sim::cpu::named_model(m).unwrap();
        vendor == memfabric_sim::cpu::CpuVendor::Intel && !features.is_subset(&all)
    }) else {
        eprintln!("skipping a_model_kvm_cannot_offer_is_refused_up_front: KVM here offers every Intel model");
        return;
    };
    for flag in ["--cpu-model", "--dest-cpu-model"] {
        let r = migrate("unoffered", &[flag, model]);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(r.stderr.contains("needs features KVM does not offer on this host"), "{}", r.stderr);
        assert!(r.source.is_null(), "nothing written");
    }
}
