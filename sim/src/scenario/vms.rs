//! The `[[vms]]` entries of a scenario: each resolved into [`Vm`]s
//! (archetype defaults and overrides, trace, CPU model, `count` expansion)
//! and placed first-fit on its host or site, one entry at a time, so that the
//! loader can parse and drop each entry before the next
//! ([`super::sections`]).

use super::*;
use std::collections::HashSet;

/// A `[[vms]]` entry cut out of its document: alone, it is a document whose
/// `vms` holds one element.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VmEntryDocument {
    vms: Vec<VmFile>,
}

/// The VMs resolved so far and what placing the next ones needs.
pub(super) struct Placed<'f> {
    vms: Vec<Vm>,
    /// xxh3-64 of every VM name so far; a hit is confirmed by comparing
    /// names (membership only: never iterated).
    name_hashes: HashSet<u64>,
    /// RAM taken on each host by the VMs so far.
    used_ram: Vec<u64>,
    host_by_name: BTreeMap<&'f str, HostId>,
    site_by_name: BTreeMap<&'f str, SiteId>,
}

impl Builder<'_> {
    pub(super) fn workload(&self, v: &VmFile, field: &str) -> Res<WorkloadSpec> {
        let name = v.archetype.get_ref();
        let mut w = archetype::lookup(name).ok_or_else(|| {
            self.err(sp(&v.archetype), format!("{field}.archetype"), format!("unknown archetype {name:?}; expected one of {:?}", archetype::NAMES))
        })?;
        let o = &v.workload;
        let wf = format!("{field}.workload");
        if let Some(r) = &o.page_write_rate {
            w.page_write_rate = r.get_ref().0;
        }
        if let Some(x) = &o.working_set {
            w.working_set = *x.get_ref();
        }
        let set = |dst: &mut Fraction, src: &Option<Spanned<Fraction>>| {
            if let Some(x) = src {
                *dst = *x.get_ref();
            }
        };
        set(&mut w.content.zero, &o.zero);
        set(&mut w.content.shared_image, &o.shared_image);
        set(&mut w.content.duplicate, &o.duplicate);
        set(&mut w.content.unique_compressed_mean, &o.unique_compressed_mean);
        set(&mut w.redirty_change, &o.redirty_change);
        set(&mut w.redirty_unchanged, &o.redirty_unchanged);
        if let Some(sd) = &o.unique_compressed_sd {
            if !(sd.get_ref().is_finite() && *sd.get_ref() >= 0.0 && *sd.get_ref() <= 0.5) {
                return Err(self.err(sp(sd), format!("{wf}.unique_compressed_sd"), "must be between 0 and 0.5"));
            }
            w.content.unique_compressed_sd = *sd.get_ref();
        }
        let c: ContentMix = w.content;
        if c.zero.0 + c.shared_image.0 + c.duplicate.0 > 1.0 + 1e-9 {
            let span = o.zero.as_ref().or(o.shared_image.as_ref()).or(o.duplicate.as_ref()).map_or(sp(&v.archetype), sp);
            return Err(self.err(span, wf, format!(
                "zero ({}) + shared_image ({}) + duplicate ({}) exceed 100% of memory",
                c.zero, c.shared_image, c.duplicate
            )));
        }
        let pop_name = o.popularity.as_ref().map(|p| p.get_ref().as_str());
        match pop_name {
            None => {}
            Some("uniform") => w.popularity = Popularity::Uniform,
            // Switching law: start from its defaults (an archetype that already
            // uses the law keeps its own parameters).
            Some("hot-cold") if !matches!(w.popularity, Popularity::HotCold { .. }) => {
                w.popularity = Popularity::HotCold {
                    hot_set: archetype::DEFAULT_HOT_SET,
                    hot_write_share: archetype::DEFAULT_HOT_WRITE_SHARE,
                };
            }
            Some("zipf") if !matches!(w.popularity, Popularity::Zipf { .. }) => {
                w.popularity = Popularity::Zipf { exponent: archetype::YCSB_ZIPF_EXPONENT };
            }
            Some("hot-cold" | "zipf") => {}
            Some(other) => {
                return Err(self.err(sp(o.popularity.as_ref().unwrap()), format!("{wf}.popularity"), format!("unknown popularity {other:?}; expected \"uniform\", \"hot-cold\" or \"zipf\"")))
            }
        }
        match &mut w.popularity {
            Popularity::HotCold { hot_set, hot_write_share } => {
                set(hot_set, &o.hot_set);
                set(hot_write_share, &o.hot_write_share);
                if let Some(z) = &o.zipf_exponent {
                    return Err(self.err(sp(z), format!("{wf}.zipf_exponent"), "only applies with popularity = \"zipf\""));
                }
            }
            Popularity::Zipf { exponent } => {
                if let Some(z) = &o.zipf_exponent {
                    let v = *z.get_ref();
                    if !(v.is_finite() && v > 0.0 && v <= 5.0) {
                        return Err(self.err(sp(z), format!("{wf}.zipf_exponent"), "must be in (0, 5]"));
                    }
                    *exponent = v;
                }
                if let Some(h) = o.hot_set.as_ref().or(o.hot_write_share.as_ref()) {
                    return Err(self.err(sp(h), wf, "hot_set and hot_write_share only apply with popularity = \"hot-cold\""));
                }
            }
            Popularity::Uniform => {
                if let Some(h) = o.hot_set.as_ref().or(o.hot_write_share.as_ref()) {
                    return Err(self.err(sp(h), wf, "hot_set and hot_write_share only apply with popularity = \"hot-cold\""));
                }
                if let Some(z) = &o.zipf_exponent {
                    return Err(self.err(sp(z), format!("{wf}.zipf_exponent"), "only applies with popularity = \"zipf\""));
                }
            }
        }
        Ok(w)
    }

    /// Reads, validates and prepares a VM's trace (errors at its `trace` key).
    fn vm_trace(&self, v: &VmFile, field: &str, sampling_bits: u32) -> Res<Option<Box<crate::trace::replay::VmTrace>>> {
        use crate::trace::replay::{TracedVm, VmTrace};
        let Some(t) = &v.trace else {
            for (key, span) in [
                ("trace_time_scale", v.trace_time_scale.as_ref().map(sp)),
                ("trace_loop", v.trace_loop.as_ref().map(sp)),
            ] {
                if let Some(span) = span {
                    return Err(self.err(span, format!("{field}.{key}"), "only applies with `trace`"));
                }
            }
            return Ok(None);
        };
        let time_scale = match &v.trace_time_scale {
            Some(x) if !(x.get_ref().is_finite() && *x.get_ref() > 0.0) => {
                return Err(self.err(sp(x), format!("{field}.trace_time_scale"), "must be a positive number"))
            }
            Some(x) => *x.get_ref(),
            None => 1.0,
        };
        let dir = match self.ctx.base {
            Some(base) => base.join(t.get_ref()),
            None => Path::new(t.get_ref()).to_path_buf(),
        };
        let trace = crate::trace::Trace::read(&dir).map_err(|e| {
            let mut msg = format!("cannot use trace {}: {e}", dir.display());
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            self.err(sp(t), format!("{field}.trace"), msg)
        })?;
        // Provenance: a hash of the files as read (they were just validated).
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for file in [crate::trace::MANIFEST_FILE, crate::trace::SNAPSHOT_FILE, crate::trace::EPOCHS_FILE] {
            let cap = if file == crate::trace::MANIFEST_FILE {
                crate::input::TRACE_MANIFEST_BYTES_MAX
            } else {
                crate::input::TRACE_TABLE_BYTES_MAX
            };
            let bytes = crate::input::read_bytes(&dir.join(file), cap, "a trace file").map_err(|e| {
                self.err(sp(t), format!("{field}.trace"), format!("cannot use trace {}: {file}: {e}", dir.display()))
            })?;
            hasher.update(&bytes);
        }
        let files_hash = format!("{:016x}", hasher.digest());
        let data = std::sync::Arc::new(TracedVm::prepare(&trace, dir, sampling_bits));
        Ok(Some(Box::new(VmTrace {
            files_hash,
            path: t.get_ref().clone(),
            data,
            time_scale,
            looping: v.trace_loop.as_ref().is_none_or(|l| *l.get_ref()),
        })))
    }

    /// The VMs of every `[[vms]]` entry, in file order, each placed first-fit
    /// on its host or site.
    pub(super) fn vms(&self, fabric: &Fabric, sampling_bits: u32) -> Res<Vec<Vm>> {
        let mut sofar = Placed {
            vms: Vec::new(),
            name_hashes: HashSet::new(),
            used_ram: vec![0; fabric.hosts.len()],
            host_by_name: fabric.hosts.iter().enumerate().map(|(i, h)| (h.name.as_str(), HostId(i as u32))).collect(),
            site_by_name: fabric.sites.iter().enumerate().map(|(i, s)| (s.name.as_str(), SiteId(i as u32))).collect(),
        };
        match self.vm_entries {
            None => {
                for (vi, v) in self.file.vms.iter().enumerate() {
                    self.vm_entry(fabric, sampling_bits, &mut sofar, vi, v)?;
                }
            }
            Some(entries) => {
                // One entry's tree at a time.
                sofar.vms.reserve(entries.len());
                for (vi, range) in entries.iter().enumerate() {
                    let v = self.vm_entry_file(vi, range.clone())?;
                    self.vm_entry(fabric, sampling_bits, &mut sofar, vi, &v)?;
                }
            }
        }
        sofar.vms.shrink_to_fit();
        Ok(sofar.vms)
    }

    /// Parses a `[[vms]]` entry cut out of the text (errors located in the
    /// whole text; the loader reports those of the whole-document parse).
    fn vm_entry_file(&self, vi: usize, range: Range<usize>) -> Res<VmFile> {
        let shift = |span: Range<usize>| span.start + range.start..span.end + range.start;
        let doc: VmEntryDocument = toml::from_str(&self.ctx.text[range.clone()])
            .map_err(|e| self.err(shift(e.span().unwrap_or(0..0)), format!("vms[{vi}]"), e.message().trim().to_string()))?;
        let n = doc.vms.len();
        <[VmFile; 1]>::try_from(doc.vms)
            .map(|[v]| v)
            .map_err(|_| self.err(range, format!("vms[{vi}]"), format!("holds {n} entries; expected one")))
    }

    /// Resolves entry `vi` of `[[vms]]` into its VMs and places them.
    fn vm_entry(&self, fabric: &Fabric, sampling_bits: u32, sofar: &mut Placed<'_>, vi: usize, v: &VmFile) -> Res<()> {
        let field = format!("vms[{vi}]");
        let workload = self.workload(v, &field)?;
        let arch = v.archetype.get_ref();
        let trace = self.vm_trace(v, &field, sampling_bits)?;
        let memory = match (&v.memory, &trace) {
            (Some(m), Some(t)) if m.get_ref().0 != t.data.pages * crate::trace::PAGE_SIZE => {
                return Err(self.err(sp(m), format!("{field}.memory"), format!(
                    "memory {} disagrees with the trace {} ({}); leave `memory` out to take the trace's",
                    m.get_ref(), t.path, Bytes(t.data.pages * crate::trace::PAGE_SIZE)
                )))
            }
            (_, Some(t)) => Bytes(t.data.pages * crate::trace::PAGE_SIZE),
            (m, None) => match m {
            Some(m) if m.get_ref().0 == 0 => {
                return Err(self.err(sp(m), format!("{field}.memory"), "must be positive, e.g. \"8GiB\""))
            }
            Some(m) if *m.get_ref() > MEMORY_BYTES_MAX => {
                return Err(self.err(sp(m), format!("{field}.memory"), format!("{} is more than a VM can have; at most {MEMORY_BYTES_MAX}", m.get_ref())))
            }
            Some(m) => *m.get_ref(),
            None => Bytes(archetype::default_memory_gib(arch).expect("archetype checked") << 30),
            },
        };
        let vcpus = match &v.vcpus {
            Some(c) if *c.get_ref() == 0 => return Err(self.err(sp(c), format!("{field}.vcpus"), "must be at least 1")),
            Some(c) => *c.get_ref(),
            None => DEFAULT_VCPUS,
        };
        let device_state = v.device_state.as_ref().map_or(DEFAULT_DEVICE_STATE, |d| *d.get_ref());
        let n = v.count.as_ref().map_or(1, |c| u64::from(*c.get_ref()));
        let cpu = match &v.cpu_model {
            None => crate::cpu::VmCpu::Any,
            Some(m) if m.get_ref() == "host-passthrough" => crate::cpu::VmCpu::HostPassthrough,
            Some(m) => crate::cpu::VmCpu::named(m.get_ref()).ok_or_else(|| {
                self.err(sp(m), format!("{field}.cpu_model"), format!("unknown CPU model {:?}; expected \"host-passthrough\" or one of: {}", m.get_ref(), crate::cpu::model_names().join(", ")))
            })?,
        };
        if let Some(c) = &v.count {
            if n == 0 {
                return Err(self.err(sp(c), format!("{field}.count"), "must be at least 1"));
            }
        }
        if sofar.vms.len() as u64 + n > VMS_MAX {
            let span = v.count.as_ref().map_or(sp(&v.name), sp);
            return Err(self.err(span, format!("{field}.count"), format!(
                "{n} VMs would make {} in all; a scenario holds at most {VMS_MAX}",
                sofar.vms.len() as u64 + n
            )));
        }
        let candidates: Vec<HostId> = match (&v.host, &v.site) {
            (Some(h), None) => vec![*sofar.host_by_name.get(h.get_ref().as_str()).ok_or_else(|| {
                self.err(sp(h), format!("{field}.host"), format!("unknown host {:?}", h.get_ref()))
            })?],
            (None, Some(s)) => {
                let id = sofar.site_by_name.get(s.get_ref().as_str()).ok_or_else(|| {
                    self.err(sp(s), format!("{field}.site"), format!("unknown site {:?}", s.get_ref()))
                })?;
                fabric.sites[id.index()].hosts.clone()
            }
            _ => return Err(self.err(sp(&v.name), field, "give exactly one of `host` or `site`")),
        };
        let place_span = v.host.as_ref().or(v.site.as_ref()).map_or(sp(&v.name), sp);
        // Bound the expansion by what the hosts can still hold, before
        // anything is allocated: first fit places exactly this many.
        if let (Some(c), true) = (&v.count, memory.0 > 0) {
            let room: u64 = candidates
                .iter()
                .map(|h| (&fabric.hosts[h.index()], sofar.used_ram[h.index()]))
                .filter(|(host, _)| vcpus <= host.cores)
                .map(|(host, used)| host.ram.0.saturating_sub(used) / memory.0)
                .fold(0u64, u64::saturating_add);
            if room > 0 && n > room {
                return Err(self.err(sp(c), format!("{field}.count"), format!(
                    "no room for {n} VMs of {memory}: the hosts left for them hold {room} more"
                )));
            }
        }
        for name in expand_names(v.name.get_ref(), v.count.as_ref().map(|c| *c.get_ref())) {
            if !sofar.name_hashes.insert(xxhash_rust::xxh3::xxh3_64(name.as_bytes())) && sofar.vms.iter().any(|vm| vm.name == name) {
                return Err(self.err(sp(&v.name), format!("{field}.name"), format!("VM {name:?} is defined twice")));
            }
            // First fit among the candidate hosts.
            let demand = crate::placement::Demand { memory_bytes: memory.0, vcpus };
            let runs = |h: HostId| if cpu.runs_on(&fabric.hosts[h.index()].cpu) { Ok(()) } else { Err(crate::policy::Refusal::CpuIncompatible) };
            let placed = crate::placement::Placer::FirstFit.choose(fabric, candidates.iter().copied(), &sofar.used_ram, demand, runs);
            if placed == Err(crate::policy::Refusal::CpuIncompatible) {
                let span = v.cpu_model.as_ref().map_or(place_span.clone(), sp);
                let h = &fabric.hosts[candidates[0].index()];
                let vendor = h.cpu.declared.as_ref().map_or("generic", |d| d.0.as_str());
                return Err(self.err(span, format!("{field}.cpu_model"), format!(
                    "VM {name:?} cannot run on {}: the host ({vendor}) lacks the model's vendor or features {:?}",
                    if candidates.len() == 1 { format!("host {:?}", h.name) } else { "any host of its site".to_string() },
                    cpu.missing_on(&h.cpu)
                )));
            }
            let Ok(host) = placed else {
                let biggest = candidates.iter().map(|h| fabric.hosts[h.index()].ram).max().unwrap_or_default();
                let memory_span = v.memory.as_ref().map_or(place_span.clone(), sp);
                let vcpus_span = v.vcpus.as_ref().map_or(place_span.clone(), sp);
                let (key, span, msg) = if candidates.is_empty() {
                    ("memory", place_span.clone(), "the site has no hosts".to_string())
                } else if memory > biggest {
                    ("memory", memory_span, format!("VM {name:?} needs {memory} of memory, more than its host's RAM ({biggest})"))
                } else if candidates.iter().all(|h| vcpus > fabric.hosts[h.index()].cores) {
                    let cores = candidates.iter().map(|h| fabric.hosts[h.index()].cores).max().unwrap_or(0);
                    ("vcpus", vcpus_span, format!("VM {name:?} has {vcpus} vCPUs, more than its host's cores ({cores})"))
                } else {
                    ("memory", place_span.clone(), format!("no room for VM {name:?} ({memory}): the hosts' RAM is already taken by earlier VMs"))
                };
                return Err(self.err(span, format!("{field}.{key}"), msg));
            };
            sofar.used_ram[host.index()] += memory.0;
            sofar.vms.push(Vm {
                name,
                host,
                memory,
                vcpus,
                device_state,
                image: v.image.clone(),
                tenant: v.tenant.clone().unwrap_or_else(|| DEFAULT_TENANT.to_string()),
                workload: workload.clone(),
                trace: trace.clone(),
                cpu: cpu.clone(),
                ha_priority: v.ha_priority.unwrap_or_default(),
                cpu_load: v.cpu_load.as_ref().map_or(crate::energy::DEFAULT_CPU_LOAD, |c| c.get_ref().0),
            });
        }
        Ok(())
    }
}
