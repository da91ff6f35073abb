//! CPU-cost profiles: what each reduction stage costs per 4 KiB page on one
//! core, and how the codecs' compression ratios relate. `memfabric profile`
//! measures them with the real codecs of `memfabric-migration` and writes
//! this TOML; scenarios name a profile with `[scenario] cpu_profile`, and the
//! built-in default is `profiles/default.toml`, measured on the project's
//! reference machine.

use serde::{Deserialize, Serialize};

/// The built-in profile (measured; see its header for how).
pub const DEFAULT_PROFILE_TOML: &str = include_str!("../../../profiles/default.toml");

/// Costs in nanoseconds per 4 KiB page on one core, and codec ratio factors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuProfile {
    /// Where and how it was measured.
    pub about: ProfileAbout,
    /// Per-page costs, nanoseconds.
    pub ns_per_page: StageCosts,
    /// Compression size factors relative to the workload model's reference
    /// codec (zstd level 1): a unique page whose zstd-1 size is fraction `c`
    /// compresses to `c × factor` (capped at a raw page) with another codec.
    pub size_factor: SizeFactors,
}

/// Provenance of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileAbout {
    /// Machine description.
    pub machine: String,
    /// Command that produced it.
    pub command: String,
    /// memfabric version that measured it.
    pub version: String,
}

/// Nanoseconds per 4 KiB page on one core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageCosts {
    /// Copying a page (the physical reference: every strategy at least reads pages).
    pub memcpy: f64,
    /// Checking whether a non-zero page is all zero (it exits at the first non-zero block).
    pub zero_check: f64,
    /// Checking an all-zero page (a full scan).
    pub zero_check_zero_page: f64,
    /// xxh3-128 of a page.
    pub hash_xxh3: f64,
    /// BLAKE3 of a page.
    pub hash_blake3: f64,
    /// One dedup index lookup and insert.
    pub dedup_lookup: f64,
    /// XBZRLE encode of a re-sent page (XOR with the cached copy and run
    /// encoding; the cache update, a page copy, is charged as `memcpy`).
    pub xbzrle_encode: f64,
    /// XBZRLE decode.
    pub xbzrle_decode: f64,
    /// lz4 compress of typical (text-like and binary-like) pages.
    pub lz4_compress: f64,
    /// lz4 compress of an incompressible (random) page.
    pub lz4_compress_incompressible: f64,
    /// lz4 compress of an all-zero page.
    pub lz4_compress_zero_page: f64,
    /// lz4 decompress.
    pub lz4_decompress: f64,
    /// zstd level 1 compress of typical pages.
    pub zstd1_compress: f64,
    /// zstd level 1 compress of an incompressible page.
    pub zstd1_compress_incompressible: f64,
    /// zstd level 1 compress of an all-zero page.
    pub zstd1_compress_zero_page: f64,
    /// zstd level 1 decompress.
    pub zstd1_decompress: f64,
    /// zstd level 3 compress (levels in between are interpolated, above are scaled).
    pub zstd3_compress: f64,
    /// Encrypting 4 KiB of stream bytes with TLS 1.3 (AES-256-GCM, rustls
    /// with ring). `memfabric profile` does not measure it (the simulator
    /// has no TLS stack); the default is the validator's measurement
    /// ([`DEFAULT_TLS_ENCRYPT_NS`]).
    #[serde(default = "default_tls_encrypt")]
    pub tls_encrypt: f64,
    /// Decrypting 4 KiB of stream bytes (as `tls_encrypt`).
    #[serde(default = "default_tls_decrypt")]
    pub tls_decrypt: f64,
}

/// `tls_encrypt` measured by the validator: `memfabric-validator tls-bench`
/// (AES-256-GCM records of 16 KiB, one thread, mean of 3 runs of 512 MiB;
/// docs/validator.md, "The encrypted channel").
pub const DEFAULT_TLS_ENCRYPT_NS: f64 = 1077.0;
/// `tls_decrypt` measured the same way at the destination.
pub const DEFAULT_TLS_DECRYPT_NS: f64 = 1263.0;

fn default_tls_encrypt() -> f64 {
    DEFAULT_TLS_ENCRYPT_NS
}

fn default_tls_decrypt() -> f64 {
    DEFAULT_TLS_DECRYPT_NS
}

/// Compressed-size factors relative to zstd level 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeFactors {
    /// lz4 size / zstd-1 size on the same pages.
    pub lz4: f64,
    /// zstd-3 size / zstd-1 size.
    pub zstd3: f64,
    /// XBZRLE encoded bytes per changed byte (run-length overhead) on scattered small changes.
    pub xbzrle_per_changed_byte: f64,
    /// Compressed size of an all-zero page with lz4, bytes.
    pub lz4_zero_page_bytes: f64,
    /// Compressed size of an all-zero page with zstd, bytes.
    pub zstd_zero_page_bytes: f64,
}

impl CpuProfile {
    /// Checks that every cost and factor is a positive finite number; the
    /// error names the first field that is not.
    pub fn check(&self) -> Result<(), String> {
        let c = &self.ns_per_page;
        let f = &self.size_factor;
        let fields = [
            ("ns_per_page.memcpy", c.memcpy),
            ("ns_per_page.zero_check", c.zero_check),
            ("ns_per_page.zero_check_zero_page", c.zero_check_zero_page),
            ("ns_per_page.lz4_compress_incompressible", c.lz4_compress_incompressible),
            ("ns_per_page.lz4_compress_zero_page", c.lz4_compress_zero_page),
            ("ns_per_page.zstd1_compress_incompressible", c.zstd1_compress_incompressible),
            ("ns_per_page.zstd1_compress_zero_page", c.zstd1_compress_zero_page),
            ("ns_per_page.hash_xxh3", c.hash_xxh3),
            ("ns_per_page.hash_blake3", c.hash_blake3),
            ("ns_per_page.dedup_lookup", c.dedup_lookup),
            ("ns_per_page.xbzrle_encode", c.xbzrle_encode),
            ("ns_per_page.xbzrle_decode", c.xbzrle_decode),
            ("ns_per_page.lz4_compress", c.lz4_compress),
            ("ns_per_page.lz4_decompress", c.lz4_decompress),
            ("ns_per_page.zstd1_compress", c.zstd1_compress),
            ("ns_per_page.zstd1_decompress", c.zstd1_decompress),
            ("ns_per_page.zstd3_compress", c.zstd3_compress),
            ("ns_per_page.tls_encrypt", c.tls_encrypt),
            ("ns_per_page.tls_decrypt", c.tls_decrypt),
            ("size_factor.lz4", f.lz4),
            ("size_factor.zstd3", f.zstd3),
            ("size_factor.xbzrle_per_changed_byte", f.xbzrle_per_changed_byte),
            ("size_factor.lz4_zero_page_bytes", f.lz4_zero_page_bytes),
            ("size_factor.zstd_zero_page_bytes", f.zstd_zero_page_bytes),
        ];
        match fields.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            Some((name, v)) => Err(format!("{name} = {v} must be a positive number")),
            None => Ok(()),
        }
    }

    /// The built-in profile.
    pub fn builtin() -> CpuProfile {
        toml::from_str(DEFAULT_PROFILE_TOML).expect("profiles/default.toml is valid")
    }

    /// Compress cost of a codec, ns per page.
    pub fn compress_ns(&self, codec: memfabric_migration::strategy::Codec) -> f64 {
        use memfabric_migration::strategy::Codec;
        let c = &self.ns_per_page;
        match codec {
            Codec::Lz4 => c.lz4_compress,
            Codec::Zstd { level } if level <= 1 => c.zstd1_compress,
            // Between level 1 and 3, interpolate; above, zstd's cost grows
            // roughly geometrically per level (reasoned, not measured).
            Codec::Zstd { level } if level <= 3 => {
                c.zstd1_compress + (c.zstd3_compress - c.zstd1_compress) * (level - 1) as f64 / 2.0
            }
            Codec::Zstd { level } => c.zstd3_compress * 1.3f64.powi(level - 3),
        }
    }

    /// Compress cost of an incompressible page (about level-independent: the
    /// codec gives up quickly), ns per page.
    pub fn compress_incompressible_ns(&self, codec: memfabric_migration::strategy::Codec) -> f64 {
        match codec {
            memfabric_migration::strategy::Codec::Lz4 => self.ns_per_page.lz4_compress_incompressible,
            memfabric_migration::strategy::Codec::Zstd { .. } => self.ns_per_page.zstd1_compress_incompressible,
        }
    }

    /// Compress cost of an all-zero page, ns per page.
    pub fn compress_zero_page_ns(&self, codec: memfabric_migration::strategy::Codec) -> f64 {
        match codec {
            memfabric_migration::strategy::Codec::Lz4 => self.ns_per_page.lz4_compress_zero_page,
            memfabric_migration::strategy::Codec::Zstd { .. } => self.ns_per_page.zstd1_compress_zero_page,
        }
    }

    /// Decompress cost of a codec, ns per page (about level-independent for zstd).
    pub fn decompress_ns(&self, codec: memfabric_migration::strategy::Codec) -> f64 {
        use memfabric_migration::strategy::Codec;
        match codec {
            Codec::Lz4 => self.ns_per_page.lz4_decompress,
            Codec::Zstd { .. } => self.ns_per_page.zstd1_decompress,
        }
    }

    /// Size factor of a codec relative to zstd level 1.
    pub fn size_factor(&self, codec: memfabric_migration::strategy::Codec) -> f64 {
        use memfabric_migration::strategy::Codec;
        match codec {
            Codec::Lz4 => self.size_factor.lz4,
            Codec::Zstd { level } if level <= 1 => 1.0,
            Codec::Zstd { level } if level <= 3 => 1.0 + (self.size_factor.zstd3 - 1.0) * (level - 1) as f64 / 2.0,
            // Higher levels gain little on 4 KiB pages (reasoned).
            Codec::Zstd { .. } => self.size_factor.zstd3 * 0.97,
        }
    }

    /// Compressed size of an all-zero page, bytes.
    pub fn zero_page_bytes(&self, codec: memfabric_migration::strategy::Codec) -> f64 {
        match codec {
            memfabric_migration::strategy::Codec::Lz4 => self.size_factor.lz4_zero_page_bytes,
            memfabric_migration::strategy::Codec::Zstd { .. } => self.size_factor.zstd_zero_page_bytes,
        }
    }
}
