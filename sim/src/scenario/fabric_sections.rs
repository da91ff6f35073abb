//! The failure and power sections of a scenario: `[[failures]]`, the hosts'
//! `mtbf` and `mttr`, `[ha]`, the hosts' `power_table` and `[power]`, checked
//! and resolved into [`crate::failure`] and [`crate::energy`] types.

use super::*;
use crate::failure::{Admission, HaSpec, RandomFailure, ScheduledFailure};

impl Builder<'_> {
    /// Scheduled failures (`[[failures]]`) and the hosts' random failure laws.
    pub(super) fn failures(&self, fabric: &Fabric) -> Res<(Vec<ScheduledFailure>, Vec<RandomFailure>)> {
        let host_by_name: BTreeMap<&str, HostId> =
            fabric.hosts.iter().enumerate().map(|(i, h)| (h.name.as_str(), HostId(i as u32))).collect();
        let site_by_name: BTreeMap<&str, SiteId> =
            fabric.sites.iter().enumerate().map(|(i, s)| (s.name.as_str(), SiteId(i as u32))).collect();
        let mut scheduled = Vec::new();
        for (i, f) in self.file.failures.iter().enumerate() {
            let field = format!("failures[{i}]");
            let (hosts, site) = match (&f.host, &f.site) {
                (Some(h), None) => {
                    let id = host_by_name.get(h.get_ref().as_str()).ok_or_else(|| {
                        self.err(sp(h), format!("{field}.host"), format!("unknown host {:?}", h.get_ref()))
                    })?;
                    (vec![*id], None)
                }
                (None, Some(s)) => {
                    let id = site_by_name.get(s.get_ref().as_str()).ok_or_else(|| {
                        self.err(sp(s), format!("{field}.site"), format!("unknown site {:?}", s.get_ref()))
                    })?;
                    (fabric.sites[id.index()].hosts.clone(), Some(*id))
                }
                _ => return Err(self.err(sp(&f.at), field, "give exactly one of `host` or `site`")),
            };
            if let Some(r) = &f.repair_after {
                if r.get_ref().0 == 0 {
                    return Err(self.err(sp(r), format!("{field}.repair_after"), "must be positive; leave it out for a host that is never repaired"));
                }
            }
            scheduled.push(ScheduledFailure { hosts, site, at: *f.at.get_ref(), repair_after: f.repair_after.as_ref().map(|r| *r.get_ref()) });
        }
        let mut random = Vec::new();
        for (si, s) in self.file.sites.iter().enumerate() {
            for (hi, h) in s.hosts.iter().enumerate() {
                let hf = format!("sites[{si}].hosts[{hi}]");
                let (mtbf, mttr) = match (&h.mtbf, &h.mttr) {
                    (None, None) => continue,
                    (Some(b), Some(r)) => (b, r),
                    (Some(b), None) => return Err(self.err(sp(b), format!("{hf}.mttr"), "missing: `mtbf` needs `mttr` (mean time to repair), e.g. \"4h\"")),
                    (None, Some(r)) => return Err(self.err(sp(r), format!("{hf}.mtbf"), "missing: `mttr` needs `mtbf` (mean time between failures), e.g. \"2000h\"")),
                };
                for (v, key) in [(mtbf, "mtbf"), (mttr, "mttr")] {
                    if v.get_ref().0 == 0 {
                        return Err(self.err(sp(v), format!("{hf}.{key}"), "must be positive, e.g. \"2000h\""));
                    }
                }
                for name in expand_names(h.name.get_ref(), h.count.as_ref().map(|c| *c.get_ref())) {
                    let host = host_by_name[name.as_str()];
                    random.push(RandomFailure { host, mtbf: *mtbf.get_ref(), mttr: *mttr.get_ref() });
                }
            }
        }
        Ok((scheduled, random))
    }

    /// The `[ha]` section.
    pub(super) fn ha(&self) -> Res<Option<HaSpec>> {
        use crate::failure::{DEFAULT_BOOT_TIME, DEFAULT_DETECTION, DEFAULT_RETRY_INTERVAL};
        let Some(ha) = &self.file.ha else { return Ok(None) };
        let h = ha.get_ref();
        let admission = match (&h.admission_host_failures, &h.admission_percent) {
            (None, None) => Admission::None,
            (Some(n), None) => {
                if *n.get_ref() == 0 {
                    return Err(self.err(sp(n), "ha.admission_host_failures", "must be at least 1; leave it out for no reserve"));
                }
                Admission::HostFailures(*n.get_ref())
            }
            (None, Some(p)) => {
                if !(p.get_ref().0 > 0.0 && p.get_ref().0 < 1.0) {
                    return Err(self.err(sp(p), "ha.admission_percent", "must be between 0% and 100%, exclusive, e.g. \"25%\""));
                }
                Admission::Fraction(p.get_ref().0)
            }
            (Some(n), Some(_)) => {
                return Err(self.err(sp(n), "ha.admission_host_failures", "give admission_host_failures or admission_percent, not both"))
            }
        };
        let positive = |v: &Option<Spanned<Nanos>>, key: &str, default: Nanos| -> Res<Nanos> {
            match v {
                Some(x) if x.get_ref().0 == 0 && key == "retry_interval" => {
                    Err(self.err(sp(x), format!("ha.{key}"), "must be positive, e.g. \"60s\""))
                }
                Some(x) => Ok(*x.get_ref()),
                None => Ok(default),
            }
        };
        Ok(Some(HaSpec {
            detection: positive(&h.detection, "detection", DEFAULT_DETECTION)?,
            boot_time: positive(&h.boot_time, "boot_time", DEFAULT_BOOT_TIME)?,
            admission,
            scope: h.scope.unwrap_or_default(),
            retry_interval: positive(&h.retry_interval, "retry_interval", DEFAULT_RETRY_INTERVAL)?,
        }))
    }
}

impl Builder<'_> {
    /// A host's power model: `power_table` (11 non-decreasing points) or
    /// the linear `idle_watts`/`peak_watts`.
    pub(super) fn power_model(&self, h: &HostFile, hf: &str, idle: f64, peak: f64) -> Res<crate::energy::PowerModel> {
        use crate::energy::PowerModel;
        let Some(t) = &h.power_table else { return Ok(PowerModel::Linear { idle_watts: idle, peak_watts: peak }) };
        if let Some(w) = h.idle_watts.as_ref().or(h.peak_watts.as_ref()) {
            return Err(self.err(sp(w), format!("{hf}.power_table"), "give power_table or idle_watts/peak_watts, not both"));
        }
        let v = t.get_ref();
        if v.len() != 11 {
            return Err(self.err(sp(t), format!("{hf}.power_table"), format!("must have 11 points (watts at 0%, 10%, ..., 100% CPU), got {}", v.len())));
        }
        if let Some(i) = v.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(self.err(sp(t), format!("{hf}.power_table[{i}]"), "watts must be finite and non-negative"));
        }
        if let Some(i) = (1..11).find(|&i| v[i] < v[i - 1]) {
            return Err(self.err(sp(t), format!("{hf}.power_table[{i}]"), format!("must not decrease: {} W after {} W", v[i], v[i - 1])));
        }
        Ok(PowerModel::Table(v.as_slice().try_into().expect("11 points")))
    }

    /// The `[power]` section.
    pub(super) fn power(&self) -> Res<Option<crate::energy::PowerSpec>> {
        let Some(p) = &self.file.power else { return Ok(None) };
        let d = crate::energy::PowerSpec::default();
        let watts = |w: &Option<Spanned<f64>>, key: &str| -> Res<Option<f64>> {
            match w {
                Some(x) if !(x.get_ref().is_finite() && *x.get_ref() >= 0.0) => {
                    Err(self.err(sp(x), format!("power.{key}"), "watts must be finite and non-negative"))
                }
                Some(x) => Ok(Some(*x.get_ref())),
                None => Ok(None),
            }
        };
        Ok(Some(crate::energy::PowerSpec {
            boot_time: p.boot_time.as_ref().map_or(d.boot_time, |x| *x.get_ref()),
            shutdown_time: p.shutdown_time.as_ref().map_or(d.shutdown_time, |x| *x.get_ref()),
            off_watts: watts(&p.off_watts, "off_watts")?.unwrap_or(d.off_watts),
            boot_watts: watts(&p.boot_watts, "boot_watts")?,
            shutdown_watts: watts(&p.shutdown_watts, "shutdown_watts")?,
        }))
    }
}
