/*
 * The ABI between the validator's VMM and its workload guest: guest-physical
 * layout, I/O ports, and the parameter and status blocks. The Rust side
 * (validator/src/guest/abi.rs) mirrors every constant here; a test parses
 * this header and checks that both agree.
 */
#ifndef MEMFABRIC_GUEST_ABI_H
#define MEMFABRIC_GUEST_ABI_H

/* Guest-physical layout (identity-mapped, 2 MiB pages, user-accessible).
 * RAM is one range of offsets; offsets below ram_split are at the same GPA,
 * the rest at GUEST_HIGH_RAM_GPA onwards, so RAM never overlaps the I/O
 * APIC / local APIC range below 4 GiB. work_gpa and meta_gpa are below the
 * split. */
#define GUEST_GDT_GPA        0x1000
#define GUEST_IDT_GPA        0x2000
#define GUEST_TSS_GPA        0x20000  /* 104 bytes + I/O bitmap: up to 0x22069 */
#define GUEST_PARAMS_GPA     0x4000
#define GUEST_STATUS_GPA     0x5000
#define GUEST_CPUID_GPA      0x6000
#define GUEST_PML4_GPA       0x8000
#define GUEST_PDPT_GPA       0x9000
#define GUEST_PD_GPA         0x40000  /* up to 64 page directories (64 GiB of GPA), to 0x7FFFF */
#define GUEST_PD_MAX         64
#define GUEST_HIGH_RAM_GPA   0x100000000ULL  /* RAM above the split continues here, past the APIC hole */
#define GUEST_KSTACK_TOP     0x10000
#define GUEST_IMAGE_GPA      0x100000
#define GUEST_IMAGE_MAX      0x100000
#define GUEST_USTACK_TOP     0x400000
#define GUEST_META_GPA       0x400000

/* Segment selectors. */
#define GUEST_SEL_KCODE      0x08
#define GUEST_SEL_KDATA      0x10
#define GUEST_SEL_UDATA      0x1b
#define GUEST_SEL_UCODE      0x23
#define GUEST_SEL_TSS        0x28

/* I/O ports the guest writes (32-bit OUT). */
#define PORT_PROGRESS        0x5f0  /* value: low 32 bits of writes; status block updated */
#define PORT_PHASE           0x5f1  /* value: a GUEST_PHASE_* */
#define PORT_EXCEPTION       0x5f2  /* value: exception vector; frame at RSP */
#define PORT_IDLE            0x5f3  /* value: microseconds the vCPU may sleep */
#define PORT_VERIFY_FAIL     0x5f4  /* value: low 32 bits of the page that failed */

#define GUEST_PHASE_BOOT     1      /* ring 3 reached, parameters accepted */
#define GUEST_PHASE_FILLED   2      /* memory filled with the content mix; dirtying starts */
#define GUEST_PHASE_BAD_PARAMS 0xbad

#define GUEST_PARAMS_MAGIC   0x314d524150474d46ULL /* "FMGPARM1" little-endian */
#define GUEST_STATUS_MAGIC   0x3154415453474d46ULL /* "FMGSTAT1" */
#define GUEST_CPUID_MAGIC    0x314449555043474dULL /* "MGCPUID1" */
#define GUEST_CPUID_ENTRIES  6      /* leaves 0, 1, 7.0, 7.1, 0xd.1, 0x80000008 */
#define GUEST_ABI_VERSION    3

#define GUEST_PPM            1000000

/* write_rate_pages_per_s of a CPU-bound guest: it dirties as fast as its
 * CPU lets it, never idles, and is slowed down only by the VMM (throttling). */
#define GUEST_WRITE_RATE_UNPACED 0xffffffffffffffffULL

#ifndef __ASSEMBLER__
/* Written by the VMM before the first instruction; read-only for the guest. */
struct guest_params {
    unsigned long long magic;
    unsigned long long abi_version;
    unsigned long long seed;               /* per-VM content and dirtying */
    unsigned long long image_seed;         /* content of shared-image pages */
    unsigned long long meta_gpa;           /* u32 version per workload page */
    unsigned long long work_gpa;           /* first workload page */
    unsigned long long work_pages;
    unsigned long long tsc_hz;
    unsigned long long write_rate_pages_per_s;  /* page writes per second, re-writes included; GUEST_WRITE_RATE_UNPACED: CPU-bound */
    unsigned long long zero_ppm;
    unsigned long long shared_image_ppm;
    unsigned long long duplicate_ppm;
    unsigned long long compressed_mean_ppm;     /* fraction of a unique page that is random bytes */
    unsigned long long compressed_sd_ppm;
    unsigned long long working_set_ppm;
    unsigned long long hot_set_ppm;             /* of the working set */
    unsigned long long hot_write_share_ppm;
    unsigned long long redirty_change_ppm;      /* bytes a changing re-write changes */
    unsigned long long redirty_unchanged_ppm;   /* re-writes that keep the content */
    unsigned long long duplicate_templates;     /* distinct contents among duplicate pages */
    unsigned long long report_interval_us;
    unsigned long long verify_pages_per_report;
    unsigned long long idle_min_us;             /* only idle when ahead by at least this */
    unsigned long long ram_split;               /* RAM offsets from here live at GUEST_HIGH_RAM_GPA + (offset - ram_split) */
};

/* Written by the guest before each OUT to PORT_PROGRESS. */
struct guest_status {
    unsigned long long magic;
    unsigned long long phase;
    unsigned long long writes;            /* page writes since dirtying started */
    unsigned long long changed_writes;    /* of which changed the content */
    unsigned long long checksum;          /* hash chain over (page, version) of every write */
    unsigned long long filled_pages;
    unsigned long long verified_pages;
    unsigned long long verify_errors;
    unsigned long long tsc;               /* guest TSC at the report */
    unsigned long long reports;
};
/* Written by the guest's ring-0 entry before it enters ring 3: CPUID as its
 * kernel sees it, one row per leaf (leaf, subleaf, eax, ebx, ecx, edx); a
 * leaf above the CPU's highest reads as zeros. */
struct guest_cpuid {
    unsigned long long magic;
    unsigned int entry[GUEST_CPUID_ENTRIES][6];
};
#endif /* __ASSEMBLER__ */

#endif
