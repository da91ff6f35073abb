//! CPU compatibility of live migration across heterogeneous hosts.
//!
//! A host declares a CPU vendor and either a named model or a feature list
//! ([`HostCpu`]); a host that declares nothing is *generic* and accepts every
//! VM (the behaviour of scenarios written before CPUs existed). A VM runs
//! with a named CPU model, with `host-passthrough`, or unrestricted
//! ([`VmCpu`]). The live-migration rule ([`live_compatible`]):
//!
//! - a named model may go to a host of the same vendor that offers every
//!   feature of the model;
//! - `host-passthrough` exposes the source host's CPU as it is, so it may
//!   only go to an identical host (same vendor and feature set);
//! - an unrestricted VM may go anywhere.
//!
//! The named models are abridged from QEMU's x86 CPU model definitions
//! (`target/i386/cpu.c`, recalled): each list keeps only features that tell
//! the models apart, so that what matters here — which model's features
//! include which — is as in QEMU. [`baseline`] computes the common model of
//! a set of hosts, as `virsh cpu-baseline` does.

use std::collections::BTreeSet;

/// A CPU vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CpuVendor {
    /// Intel.
    Intel,
    /// AMD.
    Amd,
}

impl CpuVendor {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuVendor::Intel => "intel",
            CpuVendor::Amd => "amd",
        }
    }
}

/// A host's CPU: vendor and features, or generic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostCpu {
    /// Vendor and feature set; `None`: generic (accepts every VM).
    pub declared: Option<(CpuVendor, BTreeSet<String>)>,
    /// The named model, when the host gave one.
    pub model: Option<String>,
}

/// The CPU a VM sees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VmCpu {
    /// Unrestricted: migrates anywhere.
    #[default]
    Any,
    /// A named model.
    Model {
        /// Its name.
        name: String,
        /// Its vendor.
        vendor: CpuVendor,
        /// Its features.
        features: BTreeSet<String>,
    },
    /// The host's CPU as it is.
    HostPassthrough,
}

const HASWELL: &[&str] = &["sse4.2", "avx", "avx2", "fma", "bmi1", "bmi2", "aes", "pclmulqdq", "movbe"];
const SKYLAKE_SERVER: &[&str] = &["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "clwb", "xsavec"];
const CASCADELAKE_SERVER: &[&str] = &["avx512vnni"];
const ICELAKE_SERVER: &[&str] = &["avx512vbmi", "avx512vbmi2", "gfni", "vaes", "vpclmulqdq", "sha-ni"];
const SAPPHIRE_RAPIDS: &[&str] = &["amx-tile", "amx-int8", "amx-bf16", "avx512-fp16"];
const EPYC: &[&str] = &["sse4.2", "avx", "avx2", "fma", "bmi1", "bmi2", "aes", "pclmulqdq", "movbe", "sha-ni", "clzero"];
const EPYC_ROME: &[&str] = &["clwb", "wbnoinvd"];
const EPYC_MILAN: &[&str] = &["pku", "vaes", "vpclmulqdq", "invpcid"];
const EPYC_GENOA: &[&str] = &["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512vnni", "avx512-bf16", "gfni"];

/// Named models: name, vendor, and the feature groups it has (each model
/// has its predecessors' features).
const MODELS: &[(&str, CpuVendor, &[&[&str]])] = &[
    ("Haswell", CpuVendor::Intel, &[HASWELL]),
    ("Skylake-Server", CpuVendor::Intel, &[HASWELL, SKYLAKE_SERVER]),
    ("Cascadelake-Server", CpuVendor::Intel, &[HASWELL, SKYLAKE_SERVER, CASCADELAKE_SERVER]),
    ("Icelake-Server", CpuVendor::Intel, &[HASWELL, SKYLAKE_SERVER, CASCADELAKE_SERVER, ICELAKE_SERVER]),
    ("SapphireRapids", CpuVendor::Intel, &[HASWELL, SKYLAKE_SERVER, CASCADELAKE_SERVER, ICELAKE_SERVER, SAPPHIRE_RAPIDS]),
    ("EPYC", CpuVendor::Amd, &[EPYC]),
    ("EPYC-Rome", CpuVendor::Amd, &[EPYC, EPYC_ROME]),
    ("EPYC-Milan", CpuVendor::Amd, &[EPYC, EPYC_ROME, EPYC_MILAN]),
    ("EPYC-Genoa", CpuVendor::Amd, &[EPYC, EPYC_ROME, EPYC_MILAN, EPYC_GENOA]),
];

/// Names of the built-in models, in table order.
pub fn model_names() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.0).collect()
}

/// Every feature some named model has: the features that tell the models
/// apart (what a VMM must be able to set and read back to emulate them).
pub fn model_features() -> BTreeSet<&'static str> {
    MODELS.iter().flat_map(|m| m.2.iter().flat_map(|g| g.iter().copied())).collect()
}

/// The vendor and features of a named model.
pub fn named_model(name: &str) -> Option<(CpuVendor, BTreeSet<String>)> {
    let (_, vendor, groups) = MODELS.iter().find(|m| m.0 == name)?;
    Some((*vendor, groups.iter().flat_map(|g| g.iter().map(|f| f.to_string())).collect()))
}

impl HostCpu {
    /// A host with a named model.
    pub fn named(name: &str) -> Option<HostCpu> {
        named_model(name).map(|d| HostCpu { declared: Some(d), model: Some(name.to_string()) })
    }
}

impl VmCpu {
    /// A VM with a named model.
    pub fn named(name: &str) -> Option<VmCpu> {
        named_model(name).map(|(vendor, features)| VmCpu::Model { name: name.to_string(), vendor, features })
    }

    /// Whether the VM may run on `host` at all (where it starts or boots):
    /// a named model needs its vendor and features; passthrough runs anywhere.
    pub fn runs_on(&self, host: &HostCpu) -> bool {
        match (self, &host.declared) {
            (VmCpu::Model { vendor, features, .. }, Some((hv, hf))) => vendor == hv && features.is_subset(hf),
            _ => true,
        }
    }

    /// Features of the model missing on `host` (empty when it runs there).
    pub fn missing_on(&self, host: &HostCpu) -> Vec<String> {
        match (self, &host.declared) {
            (VmCpu::Model { features, .. }, Some((_, hf))) => features.difference(hf).cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// Whether a VM with CPU `vm`, running on `src`, may live-migrate to `dst`.
pub fn live_compatible(vm: &VmCpu, src: &HostCpu, dst: &HostCpu) -> bool {
    match vm {
        VmCpu::Any => true,
        VmCpu::Model { .. } => vm.runs_on(dst),
        VmCpu::HostPassthrough => src.declared == dst.declared,
    }
}

/// The common baseline of `hosts`: their shared vendor and the features all
/// of them offer (a VM with exactly this model may live-migrate among them).
/// `None` when they mix vendors or one is generic.
pub fn baseline<'a>(hosts: impl IntoIterator<Item = &'a HostCpu>) -> Option<(CpuVendor, BTreeSet<String>)> {
    let mut acc: Option<(CpuVendor, BTreeSet<String>)> = None;
    for h in hosts {
        let (v, f) = h.declared.as_ref()?;
        acc = Some(match acc {
            None => (*v, f.clone()),
            Some((av, _)) if av != *v => return None,
            Some((av, af)) => (av, af.intersection(f).cloned().collect()),
        });
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_nest_and_vendors_differ() {
        let m = |n| named_model(n).unwrap().1;
        assert!(m("Haswell").is_subset(&m("Skylake-Server")));
        assert!(m("Cascadelake-Server").is_subset(&m("Icelake-Server")));
        assert!(m("EPYC-Rome").is_subset(&m("EPYC-Milan")));
        let vm = VmCpu::named("Cascadelake-Server").unwrap();
        let (sky, ice, milan) = (HostCpu::named("Skylake-Server").unwrap(), HostCpu::named("Icelake-Server").unwrap(), HostCpu::named("EPYC-Milan").unwrap());
        assert!(live_compatible(&vm, &ice, &ice));
        assert!(!live_compatible(&vm, &ice, &sky), "Skylake lacks avx512vnni");
        assert_eq!(vm.missing_on(&sky), ["avx512vnni"]);
        assert!(!live_compatible(&vm, &ice, &milan), "another vendor");
        // Passthrough: identical hosts only; unrestricted: anywhere; generic hosts take all.
        assert!(live_compatible(&VmCpu::HostPassthrough, &ice, &ice));
        assert!(!live_compatible(&VmCpu::HostPassthrough, &ice, &HostCpu::named("SapphireRapids").unwrap()));
        assert!(live_compatible(&VmCpu::Any, &ice, &milan));
        assert!(live_compatible(&vm, &ice, &HostCpu::default()));
    }

    #[test]
    fn model_features_are_the_union_of_the_models() {
        let all = model_features();
        for name in model_names() {
            assert!(named_model(name).unwrap().1.iter().all(|f| all.contains(f.as_str())), "{name}");
        }
        assert!(all.contains("avx512-bf16") && all.contains("clzero"), "the last group of each vendor");
        assert_eq!(all.len(), 32);
    }

    #[test]
    fn baseline_is_the_intersection_of_one_vendor() {
        let hosts = [HostCpu::named("Icelake-Server").unwrap(), HostCpu::named("Skylake-Server").unwrap(), HostCpu::named("SapphireRapids").unwrap()];
        assert_eq!(baseline(&hosts), named_model("Skylake-Server"));
        let mixed = [HostCpu::named("Icelake-Server").unwrap(), HostCpu::named("EPYC").unwrap()];
        assert_eq!(baseline(&mixed), None);
        assert_eq!(baseline(&[HostCpu::default()]), None);
    }
}
