//! multifd: one migration over several TCP connections (`migrate --streams
//! N`), with `--cpu-threads T` reduction threads at each end, as the
//! simulator models `streams` and `cpu_threads` (docs/model.md §4, §10).
//!
//! This module owns which stream carries which page ([`StreamPlan`]), the
//! options, the reduction permits and the per-stream reports; `source.rs`
//! the stream fan-out at the source ([`SourceStreams`]), `dest.rs` the
//! reassembly at the destination ([`DestStreams`]).
//!
//! ```text
//! source                                          destination
//!   | == stream 0 (the migration connection) ====== |
//!   | -- Hello {.., multifd: {streams, cpu_threads}}>|  RAM ready
//!   | <---------------------------------- HelloAck --|
//!   | == streams 1..N-1 (one TCP connection each) == |  accepted on the same
//!   | -- StreamHello {stream, streams} ------------> |  listener, one thread each
//!   |  per round, on every stream at once:          |
//!   | -- Pages (pages this stream owns) -----------> |  decode into RAM
//!   | -- RoundEnd ---------------------------------> |
//!   |  (the round ends when every stream's bytes    |
//!   |   are acknowledged: a barrier per round)      |
//!   |  pause; stop-and-copy on every stream, then   |
//!   | -- RoundEnd (FLAG_GUEST_PAUSED) on 1..N-1 ---> |  that stream is done
//!   | -- Switchover, VcpuState on stream 0 --------> |  join every stream, merge
//!   |                                               |  page hashes, check, resume
//! ```
//!
//! **Reassembly is safe by construction.** A page is pinned to one stream
//! for the whole migration: stream `(page / 256) mod N` ([`StreamPlan::owner`],
//! 256 = the pages of a batch, so a batch never spans streams). Every version
//! of a page therefore travels on the same TCP connection, in order, and an
//! older version can never arrive after a newer one; the destination refuses
//! a page that arrives on a stream that does not own it. Each stream has its
//! own encoder and decoder: its own XBZRLE delta cache (the migration's cache
//! split evenly, `DEFAULT_DELTA_CACHE_PAGES / N` pages each, so the total is
//! the one cache the simulator models) and its own dedup index and content
//! store, so a reference only ever names content sent earlier on the same
//! stream and is always resolvable on arrival (a duplicate of content that
//! another stream sent is sent again: that is the price, see
//! docs/validator.md "multifd"). A round ends when every stream has sent its
//! share and the destination's kernel has acknowledged all of it (the
//! per-round barrier, before the dirty log is read). The stop-and-copy's
//! pages go out on every stream; the destination joins every stream before
//! it compares the chunk hashes at switchover, which still cover every page
//! (each stream keeps the running hashes of the pages it owns; both ends
//! merge them by owner).
//!
//! `--cpu-threads T` below `N` makes the streams take turns for `T` permits
//! around each batch's encoding (source) and decoding (destination); `T`
//! above `N` is refused (a stream's pipeline state is sequential). With
//! `--streams 1` nothing here runs: the wire format and the behaviour are
//! those of a one-connection migration. TLS and gangs are refused with
//! `--streams` above 1 ([`check_args`]).

use std::sync::{Arc, Condvar, Mutex};

use memfabric_migration::pipeline::{PipelineConfig, DEFAULT_DELTA_CACHE_PAGES};
use serde::{Deserialize, Serialize};

use crate::migrate::source::{StageTotals, BATCH_PAGES};
use crate::kvm::DirtyBitmap;

mod dest;
mod source;

pub use dest::DestStreams;
pub use source::{RoundJob, SourceStreams};

/// Most streams per migration.
pub const STREAMS_MAX: u32 = 64;

/// `--streams` and `--cpu-threads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct MultifdArgs {
    /// TCP connections per migration, 1 to 64 (multifd); page batches are
    /// spread across them, each page always on the same one.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub streams: u32,
    /// Reduction threads at each end (encode at the source, decode at the
    /// destination), 1 to --streams; default: --streams (the simulator's
    /// default for `cpu_threads`).
    #[arg(long = "cpu-threads", value_parser = parse_count)]
    pub cpu_threads: Option<u32>,
}

impl Default for MultifdArgs {
    fn default() -> MultifdArgs {
        MultifdArgs { streams: 1, cpu_threads: None }
    }
}

fn parse_count(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e} (expected a whole number from 1 to {STREAMS_MAX})"))?;
    if !(1..=STREAMS_MAX).contains(&n) {
        return Err(format!("{n}: must be from 1 to {STREAMS_MAX}"));
    }
    Ok(n)
}

impl MultifdArgs {
    /// The plan these arguments ask for.
    pub fn plan(&self) -> StreamPlan {
        StreamPlan { streams: self.streams, cpu_threads: self.cpu_threads.unwrap_or(self.streams) }
    }

    /// The arguments again, for the source VMM's command line (nothing
    /// when they are the defaults).
    pub fn to_cli(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.streams != 1 {
            v.extend(["--streams".to_string(), self.streams.to_string()]);
        }
        if let Some(t) = self.cpu_threads {
            v.extend(["--cpu-threads".to_string(), t.to_string()]);
        }
        v
    }
}

/// `--streams` / `--cpu-threads` do not fit the other arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultifdInputError {
    /// More reduction threads than streams.
    #[error("--cpu-threads {threads} exceeds --streams {streams}: each stream's pipeline (delta cache, dedup index) is sequential, so at most one thread per stream can work on it")]
    ThreadsAboveStreams {
        /// `--cpu-threads`.
        threads: u32,
        /// `--streams`.
        streams: u32,
    },
    /// Several streams of a gang.
    #[error("--streams {0} with --guests: a gang migrates each guest over one connection (use --streams 1)")]
    Gang(u32),
    /// Several streams over TLS.
    #[error("--streams {0} with --tls: the validator's TLS channel is one connection (use --streams 1)")]
    Tls(u32),
}

/// Checks `--streams` and `--cpu-threads` against each other, `--tls` and
/// a gang (before anything starts: exit code 2, nothing written).
pub fn check_args(m: &MultifdArgs, gang: bool, tls: bool) -> Result<(), MultifdInputError> {
    let plan = m.plan();
    if plan.cpu_threads > plan.streams {
        return Err(MultifdInputError::ThreadsAboveStreams { threads: plan.cpu_threads, streams: plan.streams });
    }
    if plan.streams > 1 && gang {
        return Err(MultifdInputError::Gang(plan.streams));
    }
    if plan.streams > 1 && tls {
        return Err(MultifdInputError::Tls(plan.streams));
    }
    Ok(())
}

/// How many streams a migration uses, how many reduction threads work at
/// each end, and which stream carries which page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPlan {
    /// TCP connections.
    pub streams: u32,
    /// Reduction threads at each end (at most `streams`).
    pub cpu_threads: u32,
}

impl Default for StreamPlan {
    fn default() -> StreamPlan {
        StreamPlan { streams: 1, cpu_threads: 1 }
    }
}

impl StreamPlan {
    /// The stream that carries page `page` for the whole migration: its
    /// batch-aligned block of [`BATCH_PAGES`] pages, round robin.
    pub fn owner(&self, page: u64) -> u32 {
        ((page / BATCH_PAGES as u64) % self.streams as u64) as u32
    }

    /// More than one stream.
    pub fn is_multi(&self) -> bool {
        self.streams > 1
    }

    /// The pipeline of one stream: `config` with the migration's delta
    /// cache split evenly between the streams.
    pub fn stream_pipeline(&self, config: PipelineConfig) -> PipelineConfig {
        if !self.is_multi() {
            return config;
        }
        PipelineConfig { delta_cache_pages: (DEFAULT_DELTA_CACHE_PAGES / self.streams as usize).max(1), ..config }
    }

    /// Permits for the reduction threads when there are fewer than streams.
    pub fn permits(&self) -> Option<Arc<Permits>> {
        (self.cpu_threads < self.streams).then(|| Arc::new(Permits::new(self.cpu_threads)))
    }

    /// The pages of `to` that this stream owns.
    fn owned<'a>(&self, stream: u32, pages: &'a DirtyBitmap) -> impl Iterator<Item = u64> + 'a {
        let plan = *self;
        pages.iter().filter(move |&p| plan.owner(p) == stream)
    }
}

/// Which pages a receiving stream may write: those its stream owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The migration's plan.
    pub plan: StreamPlan,
    /// This stream.
    pub stream: u32,
}

impl Route {
    /// The one stream of a single-stream migration: every page.
    pub fn single() -> Route {
        Route { plan: StreamPlan::default(), stream: 0 }
    }

    /// Whether this stream may carry `page`.
    pub fn carries(&self, page: u64) -> bool {
        self.plan.owner(page) == self.stream
    }
}

/// Counting permits: at most `n` holders at once (the reduction threads).
#[derive(Debug)]
pub struct Permits {
    free: Mutex<u32>,
    released: Condvar,
}

/// A held permit, returned on drop.
#[derive(Debug)]
pub struct Permit<'a>(&'a Permits);

impl Permits {
    /// `n` permits.
    pub fn new(n: u32) -> Permits {
        Permits { free: Mutex::new(n), released: Condvar::new() }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> Permit<'_> {
        let mut free = crate::site::lock(&self.free);
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *crate::site::lock(&self.0.free) += 1;
        self.0.released.notify_one();
    }
}

/// First frame of a data stream (streams 1..N-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHello {
    /// This stream.
    pub stream: u32,
    /// The migration's streams.
    pub streams: u32,
}

/// What one stream carried (in `source.json` and `destination.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    /// The stream (0 is the migration connection, which also carries the
    /// control frames and the vCPU state).
    pub stream: u32,
    /// Pages sent (source) or written (destination).
    pub pages: u64,
    /// Frame bytes sent (source) or received (destination).
    pub bytes_on_wire: u64,
    /// Source: frame bytes of each round, stop-and-copy last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_bytes: Vec<u64>,
    /// Source: wall time spent on this stream's share of the rounds
    /// (reading, encoding, sending, waiting for the acknowledgements), s.
    #[serde(default)]
    pub busy_s: f64,
    /// CPU time of the stream's thread, s.
    pub cpu_s: f64,
}

/// The multifd part of a report (None with one stream).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MultifdReport {
    /// TCP connections.
    pub streams: u32,
    /// Reduction threads at each end.
    pub cpu_threads: u32,
    /// Each stream, stream 0 first.
    pub per_stream: Vec<StreamReport>,
}

/// Pages, bytes, stage counters and CPU of one round on the data streams.
#[derive(Debug, Clone, Default)]
pub struct RoundSent {
    /// Pages sent.
    pub pages: u64,
    /// Frame bytes sent.
    pub bytes: u64,
    /// Per-stage counters.
    pub stages: StageTotals,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_page_has_one_owner_and_batches_never_span_streams() {
        let plan = StreamPlan { streams: 3, cpu_threads: 3 };
        assert_eq!((plan.owner(0), plan.owner(255), plan.owner(256), plan.owner(512), plan.owner(768)), (0, 0, 1, 2, 0));
        let single = StreamPlan::default();
        assert!((0..10_000).all(|p| single.owner(p) == 0));
        // Each stream owns a third of a large RAM, within one block.
        let mut counts = [0u64; 3];
        for p in 0..100_000 {
            counts[plan.owner(p) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c.abs_diff(100_000 / 3) <= 256), "{counts:?}");
    }

    #[test]
    fn the_delta_cache_is_split_between_streams() {
        let config = PipelineConfig::new("zero+xbzrle+lz4".parse().unwrap());
        assert_eq!(StreamPlan::default().stream_pipeline(config), config);
        let four = StreamPlan { streams: 4, cpu_threads: 4 }.stream_pipeline(config);
        assert_eq!(four.delta_cache_pages * 4, DEFAULT_DELTA_CACHE_PAGES);
    }

    #[test]
    fn arguments_are_checked() {
        let m = |streams, cpu_threads| MultifdArgs { streams, cpu_threads };
        assert_eq!(check_args(&m(2, Some(3)), false, false), Err(MultifdInputError::ThreadsAboveStreams { threads: 3, streams: 2 }));
        assert_eq!(check_args(&m(2, None), true, false), Err(MultifdInputError::Gang(2)));
        assert_eq!(check_args(&m(2, None), false, true), Err(MultifdInputError::Tls(2)));
        assert_eq!(check_args(&m(1, None), true, true), Ok(()));
        assert_eq!(check_args(&m(4, Some(2)), false, false), Ok(()));
        assert!(parse_count("0").is_err() && parse_count("65").is_err() && parse_count("x").is_err());
        assert_eq!(m(4, Some(2)).to_cli(), ["--streams", "4", "--cpu-threads", "2"]);
        assert!(MultifdArgs::default().to_cli().is_empty());
    }

    #[test]
    fn permits_bound_the_holders() {
        let p = Arc::new(Permits::new(2));
        let peak = Arc::new(Mutex::new((0u32, 0u32)));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (p, peak) = (p.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _g = p.acquire();
                        {
                            let mut k = peak.lock().unwrap();
                            k.0 += 1;
                            k.1 = k.1.max(k.0);
                        }
                        std::thread::sleep(Duration::from_micros(200));
                        peak.lock().unwrap().0 -= 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.lock().unwrap().1, 2, "at most two holders at once, and two did hold at once");
    }
}
