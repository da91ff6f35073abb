//! The failure sections of a scenario: `[[failures]]`, the hosts' `mtbf` and
//! `mttr`, and `[ha]`, checked and resolved into [`crate::failure`] types.

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
