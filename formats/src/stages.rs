//! The per-stage totals of a migration's source (`source.json`'s
//! `stages`): how many pages each stage of the reduction pipeline resolved,
//! the bytes they took on the wire, and the time spent encoding them. The
//! validator writes them (and sums them over its streams); the simulator's
//! calibration reads them back from a dataset.

use memfabric_migration::pipeline::Stage;
use serde::{Deserialize, Serialize};

/// Pages and real bytes (record header + payload) resolved at each stage,
/// and the encode time of the pages that ended as each record kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[allow(missing_docs)]
pub struct StageTotals {
    pub pages_zero: u64,
    pub pages_dedup: u64,
    pub pages_delta: u64,
    pub pages_compressed: u64,
    pub pages_raw: u64,
    pub bytes_zero: u64,
    pub bytes_dedup: u64,
    pub bytes_delta: u64,
    pub bytes_compressed: u64,
    pub bytes_raw: u64,
    /// Encode time of the pages that ended as each record kind, s (wall
    /// clock around the encoder, whose thread is CPU-bound: under load it
    /// includes preemption, alike for every stage; 0 when read from a file
    /// that predates it).
    #[serde(default)]
    pub cpu_s_zero: f64,
    #[serde(default)]
    pub cpu_s_dedup: f64,
    #[serde(default)]
    pub cpu_s_delta: f64,
    #[serde(default)]
    pub cpu_s_compress: f64,
    #[serde(default)]
    pub cpu_s_raw: f64,
}

impl StageTotals {
    /// Counts one page resolved at `stage`, `bytes` on the wire, encoded in
    /// `secs`.
    pub fn add(&mut self, stage: Stage, bytes: u64, secs: f64) {
        let (p, b, c) = match stage {
            Stage::Zero => (&mut self.pages_zero, &mut self.bytes_zero, &mut self.cpu_s_zero),
            Stage::Dedup => (&mut self.pages_dedup, &mut self.bytes_dedup, &mut self.cpu_s_dedup),
            Stage::Delta => (&mut self.pages_delta, &mut self.bytes_delta, &mut self.cpu_s_delta),
            Stage::Compress => (&mut self.pages_compressed, &mut self.bytes_compressed, &mut self.cpu_s_compress),
            Stage::Raw => (&mut self.pages_raw, &mut self.bytes_raw, &mut self.cpu_s_raw),
        };
        *p += 1;
        *b += bytes;
        *c += secs;
    }

    /// Adds `other`'s counters to these (e.g. one stream's to a migration's).
    pub fn merge(&mut self, other: &StageTotals) {
        self.pages_zero += other.pages_zero;
        self.pages_dedup += other.pages_dedup;
        self.pages_delta += other.pages_delta;
        self.pages_compressed += other.pages_compressed;
        self.pages_raw += other.pages_raw;
        self.bytes_zero += other.bytes_zero;
        self.bytes_dedup += other.bytes_dedup;
        self.bytes_delta += other.bytes_delta;
        self.bytes_compressed += other.bytes_compressed;
        self.bytes_raw += other.bytes_raw;
        self.cpu_s_zero += other.cpu_s_zero;
        self.cpu_s_dedup += other.cpu_s_dedup;
        self.cpu_s_delta += other.cpu_s_delta;
        self.cpu_s_compress += other.cpu_s_compress;
        self.cpu_s_raw += other.cpu_s_raw;
    }

    /// Pages sent.
    pub fn pages(&self) -> u64 {
        self.pages_zero + self.pages_dedup + self.pages_delta + self.pages_compressed + self.pages_raw
    }

    /// Encode time over every record kind, s.
    pub fn encode_s(&self) -> f64 {
        self.cpu_s_zero + self.cpu_s_dedup + self.cpu_s_delta + self.cpu_s_compress + self.cpu_s_raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_add_up_per_stage_and_merge_sums_every_counter() {
        let mut a = StageTotals::default();
        a.add(Stage::Zero, 8, 0.5);
        a.add(Stage::Compress, 900, 1.0);
        a.add(Stage::Compress, 1000, 2.0);
        assert_eq!((a.pages_zero, a.pages_compressed, a.bytes_compressed, a.pages()), (1, 2, 1900, 3));
        assert_eq!(a.encode_s(), 3.5);
        let mut b = StageTotals::default();
        b.add(Stage::Raw, 4104, 0.25);
        b.merge(&a);
        assert_eq!((b.pages(), b.bytes_raw, b.bytes_compressed, b.bytes_zero), (4, 4104, 1900, 8));
        assert_eq!(b.encode_s(), 3.75);
    }

    #[test]
    fn a_file_without_encode_times_reads_them_as_zero() {
        let t: StageTotals = serde_json::from_str(
            r#"{"pages_zero":1,"pages_dedup":0,"pages_delta":0,"pages_compressed":2,"pages_raw":0,
                "bytes_zero":8,"bytes_dedup":0,"bytes_delta":0,"bytes_compressed":1900,"bytes_raw":0}"#,
        )
        .unwrap();
        assert_eq!((t.pages(), t.encode_s()), (3, 0.0));
    }
}
