//! CPU baselines in a migration: the guest's CPU (`--cpu-model` /
//! `--cpu-features`) travels in `Hello`, the destination says in `HelloAck`
//! which CPU its host offers (`--dest-cpu-model` / `--dest-cpu-features` on
//! `migrate` emulate a destination host of that model), and the source
//! refuses, before any page moves and with its guest running on, a
//! destination that lacks a feature the guest was started with: the
//! simulator's rule (`memfabric_formats::cpu::live_compatible`), a typed
//! [`CpuIncompatible`].

use std::collections::BTreeSet;

use memfabric_formats::cpu::{live_compatible, CpuVendor, HostCpu, VmCpu};
use serde::{Deserialize, Serialize};

use crate::kvm::cpuid::{self, parse_feature_list, CpuError, GuestCpu};

/// `--cpu-model` / `--cpu-features`: the CPU a VMM gives its guest (the
/// source) or offers as a host (the destination).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CpuArgs {
    /// Named CPU model of the simulator's table (Haswell, Skylake-Server,
    /// Cascadelake-Server, Icelake-Server, SapphireRapids, EPYC, ...); the
    /// vCPU's CPUID shows exactly its features of those that tell models
    /// apart. Default: what KVM supports on this host.
    #[arg(long = "cpu-model", value_parser = parse_model, conflicts_with = "cpu_features")]
    pub cpu_model: Option<String>,
    /// Explicit feature list (comma-separated names of the model table's
    /// features, e.g. avx2,aes,bmi2) of this host's vendor.
    #[arg(long = "cpu-features", value_parser = parse_features)]
    pub cpu_features: Option<BTreeSet<String>>,
}

/// `--cpu-model`: a model of the table.
pub fn parse_model(s: &str) -> Result<String, String> {
    memfabric_formats::cpu::named_model(s).map(|_| s.to_string()).ok_or_else(|| CpuError::UnknownModel(s.into()).to_string())
}

/// `--cpu-features`: names of the table's features.
pub fn parse_features(s: &str) -> Result<BTreeSet<String>, String> {
    parse_feature_list(s).map_err(|e| e.to_string())
}

impl CpuArgs {
    /// The CPU asked for.
    pub fn guest_cpu(&self) -> GuestCpu {
        match (&self.cpu_model, &self.cpu_features) {
            (Some(m), _) => GuestCpu::Model(m.clone()),
            (None, Some(f)) => GuestCpu::Features(f.clone()),
            (None, None) => GuestCpu::Host,
        }
    }

    /// The same flags for a child VMM process.
    pub fn to_cli(&self) -> Vec<String> {
        match (&self.cpu_model, &self.cpu_features) {
            (Some(m), _) => vec!["--cpu-model".into(), m.clone()],
            (None, Some(f)) => vec!["--cpu-features".into(), f.iter().cloned().collect::<Vec<_>>().join(",")],
            (None, None) => Vec::new(),
        }
    }
}

/// A VMM's CPU as it goes over the wire: the guest's in `Hello`, the
/// destination host's offer in `HelloAck`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuWire {
    /// Model name (`host` for KVM's own CPU, `features` for a list).
    pub model: String,
    /// `intel` or `amd`.
    pub vendor: String,
    /// Features, of those that tell models apart.
    pub features: BTreeSet<String>,
}

impl CpuWire {
    /// The wire form of a guest or host CPU with these parts.
    pub fn new(model: &str, vendor: CpuVendor, features: BTreeSet<String>) -> CpuWire {
        CpuWire { model: model.to_string(), vendor: vendor.as_str().to_string(), features }
    }

    fn vendor(&self) -> Option<CpuVendor> {
        [CpuVendor::Intel, CpuVendor::Amd].into_iter().find(|v| v.as_str() == self.vendor)
    }

    /// As the simulator's guest CPU: a model with these features.
    pub fn as_vm(&self) -> Option<VmCpu> {
        Some(VmCpu::Model { name: self.model.clone(), vendor: self.vendor()?, features: self.features.clone() })
    }

    /// As the simulator's host CPU.
    pub fn as_host(&self) -> Option<HostCpu> {
        Some(HostCpu { declared: Some((self.vendor()?, self.features.clone())), model: Some(self.model.clone()) })
    }

    /// What a VMM asked for `cpu` presents, given KVM's `supported` CPUID:
    /// the model's vendor and features, or the host's.
    pub fn of(cpu: &GuestCpu, supported: &kvm_bindings::CpuId) -> Result<CpuWire, CpuError> {
        match cpuid::vm_cpu(cpu, supported)? {
            VmCpu::Model { name, vendor, features } => Ok(CpuWire::new(&name, vendor, features)),
            _ => unreachable!("vm_cpu returns a model"),
        }
    }
}

/// The destination lacks features the guest was started with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("the destination's CPU ({dest_model}) lacks features the guest was started with ({guest_model}): {}", missing.join(", "))]
pub struct CpuIncompatible {
    /// The guest's model.
    pub guest_model: String,
    /// The destination host's model.
    pub dest_model: String,
    /// Features the guest has and the destination does not (or, for
    /// another vendor, `vendor intel` / `vendor amd`).
    pub missing: Vec<String>,
}

/// The simulator's live-migration rule for a guest `guest` going to a
/// destination offering `dest`.
pub fn check_destination(guest: &CpuWire, dest: &CpuWire) -> Result<(), CpuIncompatible> {
    let refuse = |missing: Vec<String>| CpuIncompatible { guest_model: guest.model.clone(), dest_model: dest.model.clone(), missing };
    let (Some(vm), Some(host)) = (guest.as_vm(), dest.as_host()) else {
        return Err(refuse(vec![format!("vendor {} (destination: {})", guest.vendor, dest.vendor)]));
    };
    if live_compatible(&vm, &HostCpu::default(), &host) {
        return Ok(());
    }
    let missing = vm.missing_on(&host);
    Err(refuse(if missing.is_empty() { vec![format!("vendor {}", guest.vendor)] } else { missing }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(model: &str) -> CpuWire {
        let (vendor, features) = memfabric_formats::cpu::named_model(model).unwrap();
        CpuWire::new(model, vendor, features)
    }

    #[test]
    fn newer_destinations_accept_older_guests_and_not_the_reverse() {
        assert_eq!(check_destination(&wire("Haswell"), &wire("Skylake-Server")), Ok(()));
        assert_eq!(check_destination(&wire("Haswell"), &wire("Haswell")), Ok(()));
        let e = check_destination(&wire("Cascadelake-Server"), &wire("Haswell")).unwrap_err();
        assert_eq!(e.missing, ["avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl", "avx512vnni", "clwb", "xsavec"]);
        assert!(e.to_string().contains("Haswell") && e.to_string().contains("avx512vnni"), "{e}");
        let e = check_destination(&wire("Haswell"), &wire("EPYC")).unwrap_err();
        assert_eq!(e.missing, ["vendor intel"], "EPYC has every Haswell feature but is AMD");
    }

    #[test]
    fn flags_round_trip_to_the_child_process() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            cpu: CpuArgs,
        }
        let t = T::try_parse_from(["t", "--cpu-features", "avx2,aes"]).unwrap();
        assert_eq!(t.cpu.to_cli(), ["--cpu-features", "aes,avx2"]);
        let t = T::try_parse_from(["t", "--cpu-model", "Haswell"]).unwrap();
        assert_eq!(t.cpu.guest_cpu(), GuestCpu::Model("Haswell".into()));
        let e = T::try_parse_from(["t", "--cpu-model", "Pentium"]).err().unwrap().to_string();
        assert!(e.contains("Skylake-Server"), "{e}");
        assert!(T::try_parse_from(["t", "--cpu-model", "Haswell", "--cpu-features", "aes"]).is_err());
    }
}
