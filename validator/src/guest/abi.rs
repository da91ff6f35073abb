//! The VMM side of validator/guest/abi.h: guest-physical layout, ports and
//! the parameter and status blocks. `tests::constants_match_the_header`
//! parses the header and checks every constant and field order.

use memfabric_migration::PAGE_SIZE_BYTES;

/// GDT (null, kernel code/data, user data/code, TSS).
pub const GUEST_GDT_GPA: u64 = 0x1000;
/// IDT (filled by the guest's ring-0 entry).
pub const GUEST_IDT_GPA: u64 = 0x2000;
/// 64-bit TSS.
pub const GUEST_TSS_GPA: u64 = 0x20000;
/// [`GuestParams`].
pub const GUEST_PARAMS_GPA: u64 = 0x4000;
/// [`GuestStatus`].
pub const GUEST_STATUS_GPA: u64 = 0x5000;
/// [`GuestCpuid`].
pub const GUEST_CPUID_GPA: u64 = 0x6000;
/// Page-map level 4.
pub const GUEST_PML4_GPA: u64 = 0x8000;
/// Page-directory-pointer table.
pub const GUEST_PDPT_GPA: u64 = 0x9000;
/// Page directories (2 MiB pages), one per GiB of guest-physical space.
pub const GUEST_PD_GPA: u64 = 0x40000;
/// At most this many page directories: 64 GiB of guest-physical space.
pub const GUEST_PD_MAX: u64 = 64;
/// Where RAM above the split continues (past the APIC range below 4 GiB).
pub const GUEST_HIGH_RAM_GPA: u64 = 0x1_0000_0000;
/// Top of the ring-0 stack.
pub const GUEST_KSTACK_TOP: u64 = 0x10000;
/// Where the guest image is loaded; also the ring-0 entry point.
pub const GUEST_IMAGE_GPA: u64 = 0x100000;
/// Largest guest image.
pub const GUEST_IMAGE_MAX: u64 = 0x100000;
/// Top of the ring-3 stack.
pub const GUEST_USTACK_TOP: u64 = 0x400000;
/// Start of the version table (one u32 per workload page).
pub const GUEST_META_GPA: u64 = 0x400000;
/// Kernel code selector.
pub const GUEST_SEL_KCODE: u16 = 0x08;
/// Kernel data selector.
pub const GUEST_SEL_KDATA: u16 = 0x10;
/// User data selector (RPL 3).
pub const GUEST_SEL_UDATA: u16 = 0x1b;
/// User code selector (RPL 3).
pub const GUEST_SEL_UCODE: u16 = 0x23;
/// TSS selector.
pub const GUEST_SEL_TSS: u16 = 0x28;
/// Progress report (status block updated).
pub const PORT_PROGRESS: u16 = 0x5f0;
/// Phase change.
pub const PORT_PHASE: u16 = 0x5f1;
/// CPU exception (ring-0 handler; frame at RSP).
pub const PORT_EXCEPTION: u16 = 0x5f2;
/// Idle request, microseconds.
pub const PORT_IDLE: u16 = 0x5f3;
/// A page failed the guest's content check.
pub const PORT_VERIFY_FAIL: u16 = 0x5f4;
/// Ring 3 reached, parameters accepted.
pub const GUEST_PHASE_BOOT: u32 = 1;
/// Memory filled; dirtying started.
pub const GUEST_PHASE_FILLED: u32 = 2;
/// The guest rejected its parameters.
pub const GUEST_PHASE_BAD_PARAMS: u32 = 0xbad;
/// [`GuestParams::magic`].
pub const GUEST_PARAMS_MAGIC: u64 = 0x314d_5241_5047_4d46;
/// [`GuestStatus::magic`].
pub const GUEST_STATUS_MAGIC: u64 = 0x3154_4154_5347_4d46;
/// [`GuestCpuid::magic`].
pub const GUEST_CPUID_MAGIC: u64 = 0x3144_4955_5043_474d;
/// Rows of [`GuestCpuid`].
pub const GUEST_CPUID_ENTRIES: u64 = 6;
/// ABI version the VMM speaks.
pub const GUEST_ABI_VERSION: u64 = 3;
/// Parts per million: the unit of every fraction in [`GuestParams`].
pub const GUEST_PPM: u64 = 1_000_000;
/// [`GuestParams::write_rate_pages_per_s`] of a CPU-bound guest: it dirties
/// as fast as its vCPU runs and never idles (only a VMM throttle slows it).
pub const GUEST_WRITE_RATE_UNPACED: u64 = u64::MAX;

/// Default split: RAM below 3 GiB sits at the same guest-physical address,
/// the rest from [`GUEST_HIGH_RAM_GPA`] on. The local APIC page at
/// 0xFEE00000 exits as MMIO even under a memory slot (kvm-pvm), and the
/// I/O APIC at 0xFEC00000 is kept clear as well, as on PCs.
pub const DEFAULT_RAM_SPLIT: u64 = 0xC000_0000;

/// Largest guest RAM: the page tables map [`GUEST_PD_MAX`] GiB of
/// guest-physical space, less the hole above a 3 GiB split.
pub const GUEST_RAM_LIMIT: u64 = (GUEST_PD_MAX << 30) - (GUEST_HIGH_RAM_GPA - DEFAULT_RAM_SPLIT);

/// `struct guest_params`, field for field (all u64, little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct GuestParams {
    pub magic: u64,
    pub abi_version: u64,
    pub seed: u64,
    pub image_seed: u64,
    pub meta_gpa: u64,
    pub work_gpa: u64,
    pub work_pages: u64,
    pub tsc_hz: u64,
    pub write_rate_pages_per_s: u64,
    pub zero_ppm: u64,
    pub shared_image_ppm: u64,
    pub duplicate_ppm: u64,
    pub compressed_mean_ppm: u64,
    pub compressed_sd_ppm: u64,
    pub working_set_ppm: u64,
    pub hot_set_ppm: u64,
    pub hot_write_share_ppm: u64,
    pub redirty_change_ppm: u64,
    pub redirty_unchanged_ppm: u64,
    pub duplicate_templates: u64,
    pub report_interval_us: u64,
    pub verify_pages_per_report: u64,
    pub idle_min_us: u64,
    pub ram_split: u64,
}

/// The field names of [`GuestParams`] in order (checked against the header).
pub const GUEST_PARAMS_FIELDS: [&str; 24] = [
    "magic", "abi_version", "seed", "image_seed", "meta_gpa", "work_gpa", "work_pages", "tsc_hz",
    "write_rate_pages_per_s", "zero_ppm", "shared_image_ppm", "duplicate_ppm", "compressed_mean_ppm",
    "compressed_sd_ppm", "working_set_ppm", "hot_set_ppm", "hot_write_share_ppm", "redirty_change_ppm",
    "redirty_unchanged_ppm", "duplicate_templates", "report_interval_us", "verify_pages_per_report", "idle_min_us",
    "ram_split",
];

impl GuestParams {
    /// The block's bytes as the guest reads them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let v = [
            self.magic, self.abi_version, self.seed, self.image_seed, self.meta_gpa, self.work_gpa,
            self.work_pages, self.tsc_hz, self.write_rate_pages_per_s, self.zero_ppm,
            self.shared_image_ppm, self.duplicate_ppm, self.compressed_mean_ppm, self.compressed_sd_ppm,
            self.working_set_ppm, self.hot_set_ppm, self.hot_write_share_ppm, self.redirty_change_ppm,
            self.redirty_unchanged_ppm, self.duplicate_templates, self.report_interval_us,
            self.verify_pages_per_report, self.idle_min_us, self.ram_split,
        ];
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

/// `struct guest_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct GuestStatus {
    pub magic: u64,
    pub phase: u64,
    pub writes: u64,
    pub changed_writes: u64,
    pub checksum: u64,
    pub filled_pages: u64,
    pub verified_pages: u64,
    pub verify_errors: u64,
    pub tsc: u64,
    pub reports: u64,
}

/// The field names of [`GuestStatus`] in order (checked against the header).
pub const GUEST_STATUS_FIELDS: [&str; 10] =
    ["magic", "phase", "writes", "changed_writes", "checksum", "filled_pages", "verified_pages", "verify_errors", "tsc", "reports"];

impl GuestStatus {
    /// Bytes of the block.
    pub const SIZE: usize = 80;

    /// Parses the block.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> GuestStatus {
        let f = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        GuestStatus {
            magic: f(0),
            phase: f(1),
            writes: f(2),
            changed_writes: f(3),
            checksum: f(4),
            filled_pages: f(5),
            verified_pages: f(6),
            verify_errors: f(7),
            tsc: f(8),
            reports: f(9),
        }
    }
}

/// `struct guest_cpuid`: the CPUID leaves the guest saw at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestCpuid {
    /// [`GUEST_CPUID_MAGIC`] once written.
    pub magic: u64,
    /// Rows of (leaf, subleaf, eax, ebx, ecx, edx).
    pub entries: [[u32; 6]; GUEST_CPUID_ENTRIES as usize],
}

impl GuestCpuid {
    /// Bytes of the block.
    pub const SIZE: usize = 8 + GUEST_CPUID_ENTRIES as usize * 24;

    /// Parses the block.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> GuestCpuid {
        let u = |i: usize| u32::from_le_bytes(b[8 + i * 4..12 + i * 4].try_into().expect("4 bytes"));
        let mut entries = [[0u32; 6]; GUEST_CPUID_ENTRIES as usize];
        for (r, row) in entries.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = u(r * 6 + c);
            }
        }
        GuestCpuid { magic: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")), entries }
    }

    /// EAX..EDX of `leaf`/`subleaf`, if dumped.
    pub fn leaf(&self, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        self.entries.iter().find(|e| e[0] == leaf && e[1] == subleaf).map(|e| [e[2], e[3], e[4], e[5]])
    }
}

/// Where guest RAM lies in guest-physical space, and where the version
/// table and the workload pages go, for a guest of a given memory size.
///
/// RAM is addressed by *offset* (what the VMM maps, what migrations and
/// traces call page `offset / 4096`); offsets below `ram_split` are at the
/// same guest-physical address, the rest at [`GUEST_HIGH_RAM_GPA`] onwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Guest RAM, bytes.
    pub memory_bytes: u64,
    /// RAM offsets from here on live above 4 GiB.
    pub ram_split: u64,
    /// Version table (a RAM offset below the split, same GPA).
    pub meta_gpa: u64,
    /// First workload page (a RAM offset below the split, 2 MiB aligned).
    pub work_gpa: u64,
    /// Workload pages.
    pub work_pages: u64,
}

impl Layout {
    /// Smallest guest: 16 MiB.
    pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

    /// The layout for `memory_bytes` of RAM with the default 3 GiB split.
    pub fn new(memory_bytes: u64) -> Result<Layout, String> {
        Layout::with_split(memory_bytes, DEFAULT_RAM_SPLIT)
    }

    /// The layout with RAM above `ram_split` moved past 4 GiB (a split lower
    /// than 3 GiB lets tests exercise two memory slots with a small guest).
    pub fn with_split(memory_bytes: u64, ram_split: u64) -> Result<Layout, String> {
        let align = 2u64 << 20;
        if memory_bytes < Self::MIN_MEMORY_BYTES || memory_bytes % align != 0 {
            return Err(format!("{memory_bytes} bytes: expected a multiple of 2 MiB, at least 16 MiB"));
        }
        if ram_split < Self::MIN_MEMORY_BYTES || ram_split % align != 0 || ram_split > DEFAULT_RAM_SPLIT {
            return Err(format!("RAM split {ram_split:#x}: expected a multiple of 2 MiB from 16 MiB to 3 GiB"));
        }
        let top_gpa = if memory_bytes <= ram_split { memory_bytes } else { GUEST_HIGH_RAM_GPA + (memory_bytes - ram_split) };
        if top_gpa > GUEST_PD_MAX << 30 {
            return Err(format!(
                "{memory_bytes} bytes: the validator maps at most {} GiB of guest-physical space ({} MiB of RAM with a 3 GiB split)",
                GUEST_PD_MAX,
                GUEST_RAM_LIMIT >> 20
            ));
        }
        let total_pages = memory_bytes / PAGE_SIZE_BYTES;
        let meta_bytes = total_pages * 4;
        let work_gpa = (GUEST_META_GPA + meta_bytes).div_ceil(align) * align;
        if work_gpa >= memory_bytes.min(ram_split) {
            return Err(format!("{memory_bytes} bytes leave no room for workload pages below the RAM split"));
        }
        Ok(Layout { memory_bytes, ram_split, meta_gpa: GUEST_META_GPA, work_gpa, work_pages: (memory_bytes - work_gpa) / PAGE_SIZE_BYTES })
    }

    /// The guest-physical address of RAM offset `offset`.
    pub fn gpa(&self, offset: u64) -> u64 {
        if offset < self.ram_split {
            offset
        } else {
            GUEST_HIGH_RAM_GPA + (offset - self.ram_split)
        }
    }

    /// The highest guest-physical address of RAM, plus one.
    pub fn top_gpa(&self) -> u64 {
        self.gpa(self.memory_bytes - 1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = include_str!("../../guest/abi.h");

    fn define(name: &str) -> u64 {
        let line = HEADER
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name) && l.starts_with("#define"))
            .unwrap_or_else(|| panic!("{name} not in abi.h"));
        let v = line.split_whitespace().nth(2).unwrap().trim_end_matches("ULL");
        if let Some(hex) = v.strip_prefix("0x") {
            u64::from_str_radix(hex, 16).unwrap()
        } else {
            v.parse().unwrap()
        }
    }

    fn fields(strukt: &str) -> Vec<String> {
        let start = HEADER.find(&format!("struct {strukt} {{")).unwrap();
        let body = &HEADER[start..start + HEADER[start..].find("};").unwrap()];
        body.lines()
            .filter_map(|l| l.trim().strip_prefix("unsigned long long "))
            .map(|l| l.split(';').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn constants_match_the_header() {
        let pairs: [(&str, u64); 36] = [
            ("GUEST_GDT_GPA", GUEST_GDT_GPA),
            ("GUEST_IDT_GPA", GUEST_IDT_GPA),
            ("GUEST_TSS_GPA", GUEST_TSS_GPA),
            ("GUEST_PARAMS_GPA", GUEST_PARAMS_GPA),
            ("GUEST_STATUS_GPA", GUEST_STATUS_GPA),
            ("GUEST_PML4_GPA", GUEST_PML4_GPA),
            ("GUEST_PDPT_GPA", GUEST_PDPT_GPA),
            ("GUEST_PD_GPA", GUEST_PD_GPA),
            ("GUEST_PD_MAX", GUEST_PD_MAX),
            ("GUEST_HIGH_RAM_GPA", GUEST_HIGH_RAM_GPA),
            ("GUEST_KSTACK_TOP", GUEST_KSTACK_TOP),
            ("GUEST_IMAGE_GPA", GUEST_IMAGE_GPA),
            ("GUEST_IMAGE_MAX", GUEST_IMAGE_MAX),
            ("GUEST_USTACK_TOP", GUEST_USTACK_TOP),
            ("GUEST_META_GPA", GUEST_META_GPA),
            ("GUEST_SEL_KCODE", GUEST_SEL_KCODE as u64),
            ("GUEST_SEL_KDATA", GUEST_SEL_KDATA as u64),
            ("GUEST_SEL_UDATA", GUEST_SEL_UDATA as u64),
            ("GUEST_SEL_UCODE", GUEST_SEL_UCODE as u64),
            ("GUEST_SEL_TSS", GUEST_SEL_TSS as u64),
            ("PORT_PROGRESS", PORT_PROGRESS as u64),
            ("PORT_PHASE", PORT_PHASE as u64),
            ("PORT_EXCEPTION", PORT_EXCEPTION as u64),
            ("PORT_IDLE", PORT_IDLE as u64),
            ("PORT_VERIFY_FAIL", PORT_VERIFY_FAIL as u64),
            ("GUEST_PHASE_BOOT", GUEST_PHASE_BOOT as u64),
            ("GUEST_PHASE_FILLED", GUEST_PHASE_FILLED as u64),
            ("GUEST_PHASE_BAD_PARAMS", GUEST_PHASE_BAD_PARAMS as u64),
            ("GUEST_PARAMS_MAGIC", GUEST_PARAMS_MAGIC),
            ("GUEST_STATUS_MAGIC", GUEST_STATUS_MAGIC),
            ("GUEST_ABI_VERSION", GUEST_ABI_VERSION),
            ("GUEST_PPM", GUEST_PPM),
            ("GUEST_WRITE_RATE_UNPACED", GUEST_WRITE_RATE_UNPACED),
            ("GUEST_CPUID_GPA", GUEST_CPUID_GPA),
            ("GUEST_CPUID_MAGIC", GUEST_CPUID_MAGIC),
            ("GUEST_CPUID_ENTRIES", GUEST_CPUID_ENTRIES),
        ];
        for (name, value) in pairs {
            assert_eq!(define(name), value, "{name}");
        }
        assert_eq!(fields("guest_params"), GUEST_PARAMS_FIELDS);
        assert_eq!(fields("guest_status"), GUEST_STATUS_FIELDS);
        assert_eq!(GuestParams::default().to_bytes().len(), GUEST_PARAMS_FIELDS.len() * 8);
        assert_eq!(GuestStatus::SIZE, GUEST_STATUS_FIELDS.len() * 8);
    }

    #[test]
    fn layout_of_one_gib() {
        let l = Layout::new(1 << 30).unwrap();
        // 262144 pages × 4 bytes = 1 MiB of versions from 4 MiB, rounded up to 6 MiB.
        assert_eq!(l.work_gpa, 6 << 20);
        assert_eq!(l.work_pages, ((1 << 30) - (6 << 20)) / 4096);
        assert!(Layout::new(15 << 20).is_err());
        assert!(Layout::new((1 << 30) + 4096).is_err());
        assert_eq!(l.top_gpa(), 1 << 30, "all below the split");
    }

    #[test]
    fn ram_above_the_split_moves_past_4_gib() {
        let l = Layout::new(8 << 30).unwrap();
        assert_eq!(l.gpa((3 << 30) - 4096), (3 << 30) - 4096);
        assert_eq!(l.gpa(3 << 30), 4 << 30);
        assert_eq!(l.top_gpa(), 9 << 30);
        let small = Layout::with_split(64 << 20, 48 << 20).unwrap();
        assert_eq!(small.gpa(48 << 20), GUEST_HIGH_RAM_GPA);
        assert_eq!(small.top_gpa(), GUEST_HIGH_RAM_GPA + (16 << 20));
        assert!(Layout::new(GUEST_RAM_LIMIT).is_ok());
        assert!(Layout::new(GUEST_RAM_LIMIT + (2 << 20)).is_err());
        assert!(Layout::with_split(64 << 20, 5 << 20).is_err(), "split below 16 MiB");
        assert!(Layout::with_split(64 << 20, (3 << 30) + (2 << 20)).is_err(), "split above 3 GiB");
    }

    #[test]
    fn magics_spell_their_names() {
        assert_eq!(&GUEST_PARAMS_MAGIC.to_le_bytes(), b"FMGPARM1");
        assert_eq!(&GUEST_STATUS_MAGIC.to_le_bytes(), b"FMGSTAT1");
        assert_eq!(&GUEST_CPUID_MAGIC.to_le_bytes(), b"MGCPUID1");
    }
}
