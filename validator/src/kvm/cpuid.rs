//! The guest's CPU model: which CPUID feature bits the VMM gives its vCPU
//! (KVM_SET_CPUID2), and which features a CPUID dump shows.
//!
//! The models and their features are the simulator's (`memfabric_formats::cpu`,
//! abridged from QEMU's): this module only knows *where* each of those
//! features lives in CPUID ([`FEATURE_BITS`], from the Intel SDM vol. 2A
//! "CPUID" and AMD APM vol. 3 E.3, recalled), so that the table of models is
//! written once. A guest with a model sees, of the features that tell models
//! apart, exactly the model's; every other CPUID bit is KVM's supported
//! value. A model whose features KVM cannot offer on this host is refused,
//! as QEMU's `enforce` does. A guest without a model ([`GuestCpu::Host`])
//! sees what KVM supports.

use std::collections::BTreeSet;

use kvm_bindings::CpuId;
use memfabric_formats::cpu::{model_features, model_names, named_model, CpuVendor, HostCpu, VmCpu};

/// A CPUID output register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    /// EAX.
    Eax,
    /// EBX.
    Ebx,
    /// ECX.
    Ecx,
    /// EDX.
    Edx,
}

/// Where a feature's bit is: (name, leaf, subleaf, register, bit).
pub const FEATURE_BITS: &[(&str, u32, u32, Reg, u8)] = &[
    ("pclmulqdq", 1, 0, Reg::Ecx, 1),
    ("fma", 1, 0, Reg::Ecx, 12),
    ("sse4.2", 1, 0, Reg::Ecx, 20),
    ("movbe", 1, 0, Reg::Ecx, 22),
    ("aes", 1, 0, Reg::Ecx, 25),
    ("avx", 1, 0, Reg::Ecx, 28),
    ("bmi1", 7, 0, Reg::Ebx, 3),
    ("avx2", 7, 0, Reg::Ebx, 5),
    ("bmi2", 7, 0, Reg::Ebx, 8),
    ("invpcid", 7, 0, Reg::Ebx, 10),
    ("avx512f", 7, 0, Reg::Ebx, 16),
    ("avx512dq", 7, 0, Reg::Ebx, 17),
    ("clwb", 7, 0, Reg::Ebx, 24),
    ("avx512cd", 7, 0, Reg::Ebx, 28),
    ("sha-ni", 7, 0, Reg::Ebx, 29),
    ("avx512bw", 7, 0, Reg::Ebx, 30),
    ("avx512vl", 7, 0, Reg::Ebx, 31),
    ("avx512vbmi", 7, 0, Reg::Ecx, 1),
    ("pku", 7, 0, Reg::Ecx, 3),
    ("avx512vbmi2", 7, 0, Reg::Ecx, 6),
    ("gfni", 7, 0, Reg::Ecx, 8),
    ("vaes", 7, 0, Reg::Ecx, 9),
    ("vpclmulqdq", 7, 0, Reg::Ecx, 10),
    ("avx512vnni", 7, 0, Reg::Ecx, 11),
    ("amx-bf16", 7, 0, Reg::Edx, 22),
    ("avx512-fp16", 7, 0, Reg::Edx, 23),
    ("amx-tile", 7, 0, Reg::Edx, 24),
    ("amx-int8", 7, 0, Reg::Edx, 25),
    ("avx512-bf16", 7, 1, Reg::Eax, 5),
    ("xsavec", 0xd, 1, Reg::Eax, 1),
    ("clzero", 0x8000_0008, 0, Reg::Ebx, 0),
    ("wbnoinvd", 0x8000_0008, 0, Reg::Ebx, 9),
];

/// The (leaf, subleaf) pairs the guest dumps for the VMM (abi.h's
/// `GUEST_CPUID_LEAVES`): the vendor leaf and every leaf of [`FEATURE_BITS`].
pub const DUMPED_LEAVES: [(u32, u32); 5] = [(0, 0), (1, 0), (7, 0), (7, 1), (0xd, 1)];
/// The extended leaf the guest dumps (after checking 0x80000000).
pub const DUMPED_EXT_LEAF: (u32, u32) = (0x8000_0008, 0);

/// What CPU the guest gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GuestCpu {
    /// What KVM supports on this host (no model).
    #[default]
    Host,
    /// A named model of the simulator's table (`--cpu-model`).
    Model(String),
    /// An explicit feature list of the host's vendor (`--cpu-features`).
    Features(BTreeSet<String>),
}

/// The CPU asked for cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuError {
    /// No model of that name.
    #[error("CPU model {0:?} is unknown: expected one of {names}", names = model_names().join(", "))]
    UnknownModel(String),
    /// A feature the table does not know.
    #[error("CPU feature {0:?} is unknown: expected some of {names}", names = model_features().into_iter().collect::<Vec<_>>().join(", "))]
    UnknownFeature(String),
    /// The model is of another vendor than this host.
    #[error("CPU model {model} is {model_vendor}, this host is {host_vendor}: KVM cannot present another vendor's CPU")]
    Vendor {
        /// The model.
        model: String,
        /// Its vendor.
        model_vendor: &'static str,
        /// This host's.
        host_vendor: String,
    },
    /// KVM on this host cannot offer every feature of the model.
    #[error("CPU model {model} needs features KVM does not offer on this host: {}", missing.join(", "))]
    Unsupported {
        /// The model (or `features` for a list).
        model: String,
        /// What is missing.
        missing: Vec<String>,
    },
}

/// Where `name`'s bit is.
fn bit_of(name: &str) -> Option<(u32, u32, Reg, u8)> {
    FEATURE_BITS.iter().find(|f| f.0 == name).map(|f| (f.1, f.2, f.3, f.4))
}

fn reg(e: &[u32; 4], r: Reg) -> u32 {
    e[r as usize]
}

/// The features of [`FEATURE_BITS`] that CPUID values show; `leaf(l, s)`
/// gives EAX, EBX, ECX, EDX of leaf `l` subleaf `s` (None: absent).
pub fn features_in(leaf: impl Fn(u32, u32) -> Option<[u32; 4]>) -> BTreeSet<String> {
    FEATURE_BITS
        .iter()
        .filter(|(_, l, s, r, bit)| leaf(*l, *s).is_some_and(|e| reg(&e, *r) >> bit & 1 == 1))
        .map(|f| f.0.to_string())
        .collect()
}

/// The vendor a leaf-0 dump names (None: neither Intel nor AMD).
pub fn vendor_in(leaf0: [u32; 4]) -> Option<CpuVendor> {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&leaf0[1].to_le_bytes());
    id[4..8].copy_from_slice(&leaf0[3].to_le_bytes());
    id[8..].copy_from_slice(&leaf0[2].to_le_bytes());
    match &id {
        b"GenuineIntel" => Some(CpuVendor::Intel),
        b"AuthenticAMD" => Some(CpuVendor::Amd),
        _ => None,
    }
}

fn lookup(cpuid: &CpuId, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == leaf && (e.index == subleaf || e.flags & kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0))
        .map(|e| [e.eax, e.ebx, e.ecx, e.edx])
}

/// This host's CPU as KVM offers it: vendor and the features of the table.
pub fn host_cpu(supported: &CpuId) -> HostCpu {
    let declared = lookup(supported, 0, 0).and_then(vendor_in).map(|v| (v, features_in(|l, s| lookup(supported, l, s))));
    HostCpu { declared, model: None }
}

/// The guest CPU as the simulator's compatibility rule sees it: the model's
/// (or the list's, or the host's) vendor and features.
pub fn vm_cpu(cpu: &GuestCpu, supported: &CpuId) -> Result<VmCpu, CpuError> {
    let host = host_cpu(supported);
    let host_vendor = host.declared.as_ref().map(|d| d.0);
    let (name, vendor, features) = match cpu {
        GuestCpu::Host => {
            let (vendor, features) = host.declared.clone().ok_or_else(|| CpuError::Vendor {
                model: "host".into(),
                model_vendor: "unknown",
                host_vendor: "neither Intel nor AMD".into(),
            })?;
            ("host".to_string(), vendor, features)
        }
        GuestCpu::Model(name) => {
            let (vendor, features) = named_model(name).ok_or_else(|| CpuError::UnknownModel(name.clone()))?;
            (name.clone(), vendor, features)
        }
        GuestCpu::Features(list) => {
            if let Some(f) = list.iter().find(|f| bit_of(f).is_none()) {
                return Err(CpuError::UnknownFeature(f.clone()));
            }
            ("features".to_string(), host_vendor.unwrap_or(CpuVendor::Intel), list.clone())
        }
    };
    if host_vendor != Some(vendor) {
        return Err(CpuError::Vendor {
            model: name,
            model_vendor: vendor.as_str(),
            host_vendor: host_vendor.map_or_else(|| "neither Intel nor AMD".to_string(), |v| v.as_str().to_string()),
        });
    }
    let vm = VmCpu::Model { name: name.clone(), vendor, features };
    let missing = vm.missing_on(&host);
    if !missing.is_empty() {
        return Err(CpuError::Unsupported { model: name, missing });
    }
    Ok(vm)
}

/// The CPUID table for a guest with `vm`: KVM's `supported` values, with
/// every feature of [`FEATURE_BITS`] cleared and the model's set.
pub fn cpuid_for(vm: &VmCpu, supported: &CpuId) -> CpuId {
    let mut table = supported.clone();
    let features = match vm {
        VmCpu::Model { features, .. } => features,
        _ => return table,
    };
    for entry in table.as_mut_slice() {
        for (name, leaf, subleaf, r, bit) in FEATURE_BITS {
            let indexed = entry.flags & kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0;
            if entry.function != *leaf || (indexed && entry.index != *subleaf) {
                continue;
            }
            let word = match r {
                Reg::Eax => &mut entry.eax,
                Reg::Ebx => &mut entry.ebx,
                Reg::Ecx => &mut entry.ecx,
                Reg::Edx => &mut entry.edx,
            };
            if features.contains(*name) {
                *word |= 1 << bit;
            } else {
                *word &= !(1 << bit);
            }
        }
    }
    table
}

/// Parses `--cpu-features`: comma-separated names of [`FEATURE_BITS`].
pub fn parse_feature_list(s: &str) -> Result<BTreeSet<String>, CpuError> {
    let set: BTreeSet<String> = s.split(',').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect();
    match set.iter().find(|f| bit_of(f).is_none()) {
        Some(f) => Err(CpuError::UnknownFeature(f.clone())),
        None => Ok(set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_of_every_model_has_a_cpuid_bit_and_bits_differ() {
        for f in model_features() {
            assert!(bit_of(f).is_some(), "{f} has no CPUID bit");
        }
        let mut seen = BTreeSet::new();
        for (name, l, s, r, b) in FEATURE_BITS {
            assert!(seen.insert((*l, *s, *r as u8, *b)), "{name} shares its bit");
            assert!(model_features().contains(name), "{name} is in no model");
        }
    }

    fn table(entries: &[(u32, u32, [u32; 4])]) -> CpuId {
        let v: Vec<kvm_bindings::kvm_cpuid_entry2> = entries
            .iter()
            .map(|(l, s, r)| kvm_bindings::kvm_cpuid_entry2 {
                function: *l,
                index: *s,
                flags: if *l == 7 || *l == 0xd { kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX } else { 0 },
                eax: r[0],
                ebx: r[1],
                ecx: r[2],
                edx: r[3],
                ..Default::default()
            })
            .collect();
        CpuId::from_entries(&v).unwrap()
    }

    fn intel_with_everything() -> CpuId {
        let genuine = [0x16, u32::from_le_bytes(*b"Genu"), u32::from_le_bytes(*b"ntel"), u32::from_le_bytes(*b"ineI")];
        table(&[(0, 0, genuine), (1, 0, [0, 0, !0, 0]), (7, 0, [1, !0, !0, !0]), (7, 1, [!0, 0, 0, 0]), (0xd, 1, [!0, 0, 0, 0]), (0x8000_0008, 0, [0, !0, 0, 0])])
    }

    #[test]
    fn a_model_sees_exactly_its_features_and_keeps_other_bits() {
        let supported = intel_with_everything();
        let vm = vm_cpu(&GuestCpu::Model("Haswell".into()), &supported).unwrap();
        let t = cpuid_for(&vm, &supported);
        let seen = features_in(|l, s| lookup(&t, l, s));
        assert_eq!(seen, named_model("Haswell").unwrap().1);
        // Bits no model uses are KVM's (leaf 1 ECX bit 0, SSE3, stays set).
        assert_eq!(lookup(&t, 1, 0).unwrap()[2] & 1, 1);
        assert_eq!(vendor_in(lookup(&t, 0, 0).unwrap()), Some(CpuVendor::Intel));
        // The host offers every table feature (of both vendors here).
        assert_eq!(host_cpu(&supported).declared.unwrap().1.len(), FEATURE_BITS.len());
    }

    #[test]
    fn models_the_host_cannot_offer_are_refused() {
        let supported = intel_with_everything();
        assert!(matches!(vm_cpu(&GuestCpu::Model("EPYC".into()), &supported), Err(CpuError::Vendor { .. })));
        assert!(matches!(vm_cpu(&GuestCpu::Model("Pentium".into()), &supported), Err(CpuError::UnknownModel(_))));
        // A host without AVX-512: Skylake-Server needs it.
        let genuine = [0x16, u32::from_le_bytes(*b"Genu"), u32::from_le_bytes(*b"ntel"), u32::from_le_bytes(*b"ineI")];
        let small = table(&[(0, 0, genuine), (1, 0, [0, 0, !0, 0]), (7, 0, [1, 0x128, 0, 0])]);
        match vm_cpu(&GuestCpu::Model("Skylake-Server".into()), &small) {
            Err(CpuError::Unsupported { missing, .. }) => assert!(missing.contains(&"avx512f".to_string()), "{missing:?}"),
            other => panic!("{other:?}"),
        }
        // Leaf 7 EBX 0x128 is BMI1, AVX2 and BMI2: all Haswell needs there.
        assert!(vm_cpu(&GuestCpu::Model("Haswell".into()), &small).is_ok());
    }

    #[test]
    fn feature_lists_parse_strictly() {
        assert_eq!(parse_feature_list("avx2, aes").unwrap(), ["aes", "avx2"].iter().map(|s| s.to_string()).collect());
        assert_eq!(parse_feature_list("avx2,mmx"), Err(CpuError::UnknownFeature("mmx".into())));
        assert!(CpuError::UnknownFeature("mmx".into()).to_string().contains("avx512f"));
    }
}
