//! Points of a study: one scenario variant (a value per axis) and one seed.
//!
//! The product puts the first axis outermost and the seeds innermost, so
//! point numbers are stable for a given study file. A point's hash covers
//! the base scenario's text, every (path, value) and the seed: results are
//! keyed by it (`--resume`, `merge`). A shard `K/N` holds the points whose
//! number is `K` modulo `N` (K from 0, as Slurm array and Kubernetes
//! indexed-job indices are), which spreads costly and cheap regions of the
//! axes over the shards.

use super::axes::{apply, AxisValue};
use super::Study;

/// One point of a study.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Number in the study (row order of `points.parquet`).
    pub index: u64,
    /// One value per column path (see [`Study::axes`], or a plan's columns).
    pub values: Vec<AxisValue>,
    /// Seed of the run.
    pub seed: u64,
    /// xxh3-64 of the base scenario text, the values and the seed, hex.
    pub hash: String,
}

/// The hash of a point.
pub fn point_hash(study: &Study, paths: &[String], values: &[AxisValue], seed: u64) -> String {
    let mut key = format!("{:032x}\n", xxhash_rust::xxh3::xxh3_128(study.scenario_text.as_bytes()));
    for (p, v) in paths.iter().zip(values) {
        key.push_str(&format!("{p}={}\n", v.value));
    }
    key.push_str(&format!("seed={seed}\n"));
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
}

/// Every point of a sweep, in order.
pub fn expand(study: &Study) -> Vec<Point> {
    let paths: Vec<String> = study.axes.iter().map(|a| a.path.clone()).collect();
    let combos: Vec<Vec<usize>> = match &study.list {
        Some(list) => list.clone(),
        None => {
            let mut combos = vec![Vec::new()];
            for a in &study.axes {
                combos = combos
                    .into_iter()
                    .flat_map(|c| (0..a.values.len()).map(move |i| {
                        let mut c = c.clone();
                        c.push(i);
                        c
                    }))
                    .collect();
            }
            combos
        }
    };
    let mut out = Vec::with_capacity(combos.len() * study.seeds.len());
    for c in combos {
        let values: Vec<AxisValue> = c.iter().zip(&study.axes).map(|(&i, a)| a.values[i].clone()).collect();
        for &seed in &study.seeds {
            let hash = point_hash(study, &paths, &values, seed);
            out.push(Point { index: out.len() as u64, values: values.clone(), seed, hash });
        }
    }
    out
}

/// The scenario text of a point.
pub fn scenario_text(study: &Study, paths: &[String], values: &[AxisValue]) -> Result<String, String> {
    let mut doc = study.scenario_doc.clone();
    for (p, v) in paths.iter().zip(values) {
        apply(&mut doc, p, v.value.clone())?;
    }
    toml::to_string(&doc).map_err(|e| format!("cannot encode the scenario: {e}"))
}

/// A deterministic slice of the points: number `k` of `n`, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// This shard, `0 ≤ k < n`.
    pub k: u32,
    /// Number of shards.
    pub n: u32,
}

impl Shard {
    /// Parses `K/N`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let err = || format!("invalid shard {s:?}; expected K/N with 0 ≤ K < N, e.g. 0/4");
        let (k, n) = s.split_once('/').ok_or_else(err)?;
        let (k, n): (u32, u32) = (k.trim().parse().map_err(|_| err())?, n.trim().parse().map_err(|_| err())?);
        if n == 0 || k >= n {
            return Err(err());
        }
        Ok(Shard { k, n })
    }

    /// Whether point number `index` is in this shard.
    pub fn holds(&self, index: u64) -> bool {
        index % self.n as u64 == self.k as u64
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_points() {
        let shards: Vec<Shard> = (0..3).map(|k| Shard::parse(&format!("{k}/3")).unwrap()).collect();
        for i in 0..20u64 {
            assert_eq!(shards.iter().filter(|s| s.holds(i)).count(), 1);
        }
        assert!(Shard::parse("3/3").is_err() && Shard::parse("1/0").is_err() && Shard::parse("x").is_err());
    }
}
