//! The synthetic trace generator: a trace drawn from a [`WorkloadSpec`],
//! deterministic for a seed.
//!
//! **Content (snapshot).** The page counts of each class are the mix's
//! fractions of the pages, rounded (unique pages take the rest); the classes
//! are then spread over the page indices by a seeded shuffle (stream
//! `trace/content/<vm>` of [`RngStreams`]: the seed and the VM name together
//! fix the content, so two VMs generated with the same seed but different
//! names share only zero and same-image pages):
//! - *zero* pages: `zero = true`, the xxh3-128 hash of the all-zero page, and
//!   the profile's compressed sizes of a zero page;
//! - *shared-image* pages: slot `s = 0, 1, …` gets the hash
//!   `xxh3-128("memfabric-trace/image\0" ‖ image ‖ "\0" ‖ s as u64 LE)` and compressed sizes
//!   drawn from a generator seeded by that hash, so two VMs of the same image
//!   share these pages (all of them when they have the same size and mix);
//! - *duplicate* pages: a copy (hash and sizes) of a uniformly chosen unique
//!   page of the VM (of a shared-image page if the VM has no unique page);
//! - *unique* pages: a fresh random 128-bit hash.
//!
//! A non-zero page's zstd size is `round(4096·X)` with `X ~ Beta` of the
//! mix's `unique_compressed_mean` and `unique_compressed_sd` (method of
//! moments; a point mass at the mean when the s.d. is 0 or too wide for a
//! Beta), at least 1 byte and at most 4096 (incompressible); its lz4 size is
//! `min(4096, round(zstd · f_lz4))` with the profile's lz4 size factor.
//!
//! **Dirtying (epochs).** The writable working set is pages
//! `0 .. W` (`W` = the [`DirtyModel`]'s working-set pages; the content
//! shuffle makes it a random sample of the content). Popularity class `c` of
//! the model (in the model's order: hot before cold, Zipf ranks from the most
//! popular) is the contiguous slice of `n_c` pages after the classes before
//! it. In an epoch of length `T`, class `c` dirties
//! `k ~ Binomial(n_c, 1 − e^{−λ_c·T})` distinct pages chosen uniformly without
//! replacement from its slice (stream `trace/dirty/<vm>`). A dirtied page keeps its
//! content with probability `redirty_unchanged` (`delta_bytes = 0`, same hash
//! and sizes); otherwise it gets a fresh hash, fresh compressed sizes, and
//! `delta_bytes = min(4096, round(redirty_change · 4096 ·
//! xbzrle_per_changed_byte))`. Rows are written by epoch, then page index.

use super::{
    zero_page_hash, DirtyPage, Manifest, SizeFactorParams, SnapshotPage, Source, SyntheticSource, Trace,
    WorkloadParams, FORMAT_NAME, FORMAT_VERSION, PAGE_SIZE,
};
use crate::engine::RngStreams;
use crate::reduction::profile::CpuProfile;
use crate::workload::{archetype, DirtyModel, WorkloadSpec};
use memfabric_migration::pipeline::hash::ContentHash;
use memfabric_migration::strategy::Codec;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Binomial, Distribution};

pub use super::{DEFAULT_DURATION_NS, DEFAULT_EPOCH_NS};
/// Default seed.
pub const DEFAULT_SEED: u64 = 1;
/// Most guest memory generated: 64 GiB (16 Mi pages; the snapshot alone
/// then takes about 0.7 GB of memory while it is built).
pub const MEMORY_BYTES_MAX: u64 = 64 << 30;
/// Most epochs generated (a day of 1 s epochs).
pub const EPOCHS_MAX: u64 = 86_400;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// VM name in the manifest.
    pub vm: String,
    /// The workload.
    pub spec: WorkloadSpec,
    /// Guest memory, bytes (a whole number of pages).
    pub memory_bytes: u64,
    /// Trace length, nanoseconds (a whole number of epochs).
    pub duration_ns: u64,
    /// Epoch length, nanoseconds.
    pub epoch_ns: u64,
    /// Seed of all draws.
    pub seed: u64,
    /// Image name the shared-image pages derive from.
    pub image: String,
    /// Source of the codec size factors.
    pub profile: CpuProfile,
}

impl GenConfig {
    /// The defaults for archetype `name`: its memory, 60 s of 1 s epochs,
    /// seed 1, image and VM named after the archetype, the built-in profile.
    pub fn for_archetype(name: &str) -> Option<GenConfig> {
        Some(GenConfig {
            vm: name.to_string(),
            spec: archetype::lookup(name)?,
            memory_bytes: archetype::default_memory_gib(name)? << 30,
            duration_ns: DEFAULT_DURATION_NS,
            epoch_ns: DEFAULT_EPOCH_NS,
            seed: DEFAULT_SEED,
            image: name.to_string(),
            profile: CpuProfile::builtin(),
        })
    }
}

/// A generator configuration that cannot make a trace.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenError {
    /// Memory is empty, not a whole number of pages, or above [`MEMORY_BYTES_MAX`].
    #[error("memory {0} bytes is not a positive multiple of 4096 of at most 64 GiB")]
    Memory(u64),
    /// The epoch is zero or does not divide the duration.
    #[error("duration {duration_ns} ns is not a positive whole number (at most 86400) of epochs of {epoch_ns} ns")]
    Epochs {
        /// Trace length.
        duration_ns: u64,
        /// Epoch length.
        epoch_ns: u64,
    },
}

/// Draws compressed sizes of non-zero pages.
struct Sizer {
    beta: Option<Beta<f64>>,
    mean: f64,
    lz4_factor: f64,
}

impl Sizer {
    fn new(spec: &WorkloadSpec, profile: &CpuProfile) -> Sizer {
        let m = spec.content.unique_compressed_mean.0.clamp(1e-6, 1.0 - 1e-6);
        let var = spec.content.unique_compressed_sd.powi(2);
        let beta = (var > 1e-12 && var < m * (1.0 - m))
            .then(|| {
                let common = m * (1.0 - m) / var - 1.0;
                Beta::new(m * common, (1.0 - m) * common).ok()
            })
            .flatten();
        Sizer { beta, mean: m, lz4_factor: profile.size_factor(Codec::Lz4) }
    }

    /// `(lz4_bytes, zstd_bytes)` of a new non-zero page.
    fn draw<R: Rng>(&self, rng: &mut R) -> (u32, u32) {
        let x = self.beta.as_ref().map_or(self.mean, |b| b.sample(rng));
        let zstd = (PAGE_SIZE as f64 * x.clamp(0.0, 1.0)).round().clamp(1.0, PAGE_SIZE as f64);
        let lz4 = (zstd * self.lz4_factor).round().clamp(1.0, PAGE_SIZE as f64);
        (lz4 as u32, zstd as u32)
    }
}

/// Hash of shared-image slot `slot` of image `image`.
pub fn image_page_hash(image: &str, slot: u64) -> ContentHash {
    let mut input = Vec::with_capacity(image.len() + 32);
    input.extend_from_slice(b"memfabric-trace/image\0");
    input.extend_from_slice(image.as_bytes());
    input.push(0);
    input.extend_from_slice(&slot.to_le_bytes());
    ContentHash(xxhash_rust::xxh3::xxh3_128(&input))
}

/// Page content classes, in the order their counts are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Zero,
    Shared,
    Duplicate,
    Unique,
}

/// The snapshot of a VM of `pages` pages.
fn snapshot(cfg: &GenConfig, pages: u64, sizer: &Sizer, streams: &RngStreams) -> Vec<SnapshotPage> {
    let mut rng = streams.stream(&format!("trace/content/{}", cfg.vm));
    let c = &cfg.spec.content;
    let count = |f: f64| ((pages as f64) * f).round() as u64;
    let n_zero = count(c.zero.0).min(pages);
    let n_shared = count(c.shared_image.0).min(pages - n_zero);
    let n_dup = count(c.duplicate.0).min(pages - n_zero - n_shared);
    let n_unique = pages - n_zero - n_shared - n_dup;
    let mut classes: Vec<Class> =
        [(Class::Zero, n_zero), (Class::Shared, n_shared), (Class::Duplicate, n_dup), (Class::Unique, n_unique)]
            .iter()
            .flat_map(|&(class, n)| std::iter::repeat_n(class, n as usize))
            .collect();
    classes.shuffle(&mut rng);

    let p = cfg.profile.size_factor.clone();
    let zero = SnapshotPage {
        page_index: 0,
        hash: zero_page_hash(),
        zero: true,
        lz4_bytes: p.lz4_zero_page_bytes.round().clamp(1.0, PAGE_SIZE as f64) as u32,
        zstd_bytes: p.zstd_zero_page_bytes.round().clamp(1.0, PAGE_SIZE as f64) as u32,
    };
    let mut shared_slot = 0u64;
    let mut out: Vec<SnapshotPage> = Vec::with_capacity(pages as usize);
    for (i, class) in classes.iter().enumerate() {
        let page_index = i as u64;
        out.push(match class {
            Class::Zero => SnapshotPage { page_index, ..zero },
            Class::Shared => {
                let hash = image_page_hash(&cfg.image, shared_slot);
                shared_slot += 1;
                let (lz4_bytes, zstd_bytes) = sizer.draw(&mut ChaCha8Rng::seed_from_u64(hash.0 as u64));
                SnapshotPage { page_index, hash, zero: false, lz4_bytes, zstd_bytes }
            }
            // Filled below, once the originals exist.
            Class::Duplicate => SnapshotPage { page_index, ..zero },
            Class::Unique => {
                let hash = ContentHash(rng.random());
                let (lz4_bytes, zstd_bytes) = sizer.draw(&mut rng);
                SnapshotPage { page_index, hash, zero: false, lz4_bytes, zstd_bytes }
            }
        });
    }
    let originals: Vec<usize> = {
        let unique: Vec<usize> = (0..classes.len()).filter(|&i| classes[i] == Class::Unique).collect();
        if unique.is_empty() {
            (0..classes.len()).filter(|&i| classes[i] == Class::Shared).collect()
        } else {
            unique
        }
    };
    for i in 0..classes.len() {
        if classes[i] == Class::Duplicate && !originals.is_empty() {
            let o = out[originals[rng.random_range(0..originals.len())]];
            out[i] = SnapshotPage { page_index: i as u64, ..o };
        }
    }
    out
}

/// Generates the trace `cfg` describes.
pub fn generate(cfg: &GenConfig) -> Result<Trace, GenError> {
    if cfg.memory_bytes == 0
        || cfg.memory_bytes % PAGE_SIZE != 0
        || cfg.memory_bytes > MEMORY_BYTES_MAX
    {
        return Err(GenError::Memory(cfg.memory_bytes));
    }
    let epochs_err = GenError::Epochs { duration_ns: cfg.duration_ns, epoch_ns: cfg.epoch_ns };
    if cfg.epoch_ns == 0 || cfg.duration_ns == 0 || cfg.duration_ns % cfg.epoch_ns != 0 {
        return Err(epochs_err);
    }
    if cfg.duration_ns / cfg.epoch_ns > EPOCHS_MAX {
        return Err(epochs_err);
    }
    let epochs = (cfg.duration_ns / cfg.epoch_ns) as u32;
    let pages = cfg.memory_bytes / PAGE_SIZE;
    let streams = RngStreams::new(cfg.seed);
    let sizer = Sizer::new(&cfg.spec, &cfg.profile);
    let snapshot = snapshot(cfg, pages, &sizer, &streams);

    let model = DirtyModel::new(&cfg.spec, pages);
    let secs = cfg.epoch_ns as f64 / 1e9;
    let unchanged = cfg.spec.redirty_unchanged.0;
    let delta_bytes = (cfg.spec.redirty_change.0 * PAGE_SIZE as f64 * cfg.profile.size_factor.xbzrle_per_changed_byte)
        .round()
        .clamp(0.0, PAGE_SIZE as f64) as u32;
    // Current content (hash, lz4, zstd) of each working-set page.
    let mut current: Vec<(ContentHash, u32, u32)> =
        snapshot[..model.working_set_pages() as usize].iter().map(|p| (p.hash, p.lz4_bytes, p.zstd_bytes)).collect();
    let mut rng = streams.stream(&format!("trace/dirty/{}", cfg.vm));
    let mut rows = Vec::new();
    let mut dirtied: Vec<u64> = Vec::new();
    for epoch in 0..epochs {
        let time_ns = (u64::from(epoch) + 1) * cfg.epoch_ns;
        dirtied.clear();
        let mut start = 0u64;
        for &(n, rate) in model.classes() {
            let p = (-(-rate * secs).exp_m1()).clamp(0.0, 1.0);
            let k = Binomial::new(n, p).map_or(0, |b| b.sample(&mut rng));
            let picked = rand::seq::index::sample(&mut rng, n as usize, k as usize);
            dirtied.extend(picked.iter().map(|j| start + j as u64));
            start += n;
        }
        dirtied.sort_unstable();
        for &page_index in &dirtied {
            let cur = &mut current[page_index as usize];
            let delta = if rng.random_bool(unchanged.clamp(0.0, 1.0)) {
                0
            } else {
                let (lz4, zstd) = sizer.draw(&mut rng);
                *cur = (ContentHash(rng.random()), lz4, zstd);
                delta_bytes
            };
            rows.push(DirtyPage {
                epoch,
                time_ns,
                page_index,
                hash: cur.0,
                delta_bytes: delta,
                lz4_bytes: cur.1,
                zstd_bytes: cur.2,
            });
        }
    }

    let p = &cfg.profile.size_factor;
    Ok(Trace {
        manifest: Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            page_size: PAGE_SIZE,
            vm: cfg.vm.clone(),
            memory_bytes: cfg.memory_bytes,
            pages,
            epochs,
            duration_ns: cfg.duration_ns,
            source: Source::Synthetic(SyntheticSource {
                archetype: cfg.spec.archetype.clone(),
                image: cfg.image.clone(),
                seed: cfg.seed,
                memfabric_version: crate::VERSION.into(),
                epoch_ns: cfg.epoch_ns,
                workload: WorkloadParams::from_spec(&cfg.spec),
                size_factors: SizeFactorParams {
                    lz4: p.lz4,
                    xbzrle_per_changed_byte: p.xbzrle_per_changed_byte,
                    lz4_zero_page_bytes: p.lz4_zero_page_bytes,
                    zstd_zero_page_bytes: p.zstd_zero_page_bytes,
                },
            }),
        },
        snapshot,
        epochs: rows,
    })
}
