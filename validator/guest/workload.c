/*
 * The workload guest: runs in ring 3 and implements the simulator's synthetic
 * workload model (sim/src/workload) from the parameters the VMM wrote at
 * GUEST_PARAMS_GPA.
 *
 * 1. Fill: every workload page gets the content of its class, chosen by a
 *    hash of (image seed, page) for shared-image pages (content from the
 *    image seed: the same pages with the same content in every VM of that
 *    image) and of (seed, page) for the others: zero, duplicate (one of a few template
 *    contents) or unique. A non-zero page is `r` random bytes followed by a
 *    low-entropy pattern, `r` drawn per page around compressed_mean with
 *    compressed_sd, so that its compressed size is about `r` of a page.
 * 2. Dirty: page writes at write_rate_pages_per_s, paced by the TSC (or, with
 *    GUEST_WRITE_RATE_UNPACED, as fast as the vCPU runs: CPU-bound), to the
 *    first working_set pages of the workload; hot_write_share of the writes go
 *    to the first hot_set of those. A write either keeps the content
 *    (redirty_unchanged) or bumps the page's version, which rewrites a window
 *    of redirty_change bytes at a fixed per-page offset with new random bytes.
 *
 * A page's content is a pure function of (seed, page, version), and versions
 * live in guest memory (the meta table), so the guest re-checks random pages
 * against what they must hold: a page lost or corrupted by a migration is
 * reported on PORT_VERIFY_FAIL. Progress (writes, a hash chain over every
 * write, verified pages) goes to the status block and PORT_PROGRESS.
 * (The ring-0 entry dumps CPUID for the VMM before this runs: entry.S.)
 * When ahead of its pace the guest asks the VMM to idle it (PORT_IDLE), as a
 * real guest would halt until its next timer tick.
 */
#include "abi.h"

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define PAGE 4096

static volatile struct guest_params *const params = (volatile struct guest_params *)GUEST_PARAMS_GPA;
static volatile struct guest_status *const status = (volatile struct guest_status *)GUEST_STATUS_GPA;

static struct guest_params p;
static u8 scratch[PAGE] __attribute__((aligned(64)));

void *memset(void *d, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);
void *memset(void *d, int c, unsigned long n) { u8 *q = d; while (n--) *q++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, unsigned long n) { u8 *q = d; const u8 *r = s; while (n--) *q++ = *r++; return d; }

static inline void outl(unsigned short port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }

static inline u64 mix64(u64 z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline u64 key2(u64 a, u64 b) { return mix64(a ^ mix64(b)); }

/* xorshift64* stream. */
struct rng { u64 s; };
static inline u64 rng_next(struct rng *r) {
    u64 x = r->s; x ^= x >> 12; x ^= x << 25; x ^= x >> 27; r->s = x; return x * 0x2545f4914f6cdd1dULL;
}
static inline struct rng rng_from(u64 key) { struct rng r = { mix64(key) | 1 }; return r; }

enum cls { CLS_ZERO, CLS_SHARED, CLS_DUP, CLS_UNIQUE };

/* Which pages hold the image's content is a function of (image seed, page),
 * so every VM of one image holds the same shared pages at the same places
 * (the simulator's `shared_image` pages, shared in full by same-image VMs).
 * The other pages are split by the VM's own seed among zero, duplicate and
 * unique, with shares rescaled so that each class keeps its fraction of
 * all pages. */
static enum cls page_class(u64 page) {
    if (key2(p.image_seed ^ 0x1a6e5, page) % GUEST_PPM < p.shared_image_ppm) return CLS_SHARED;
    u64 rest = GUEST_PPM - p.shared_image_ppm;
    if (rest == 0) return CLS_SHARED;
    u64 u = key2(p.seed ^ 0xc1a55, page) % GUEST_PPM * rest / GUEST_PPM;
    if (u < p.zero_ppm) return CLS_ZERO;
    u -= p.zero_ppm;
    if (u < p.duplicate_ppm) return CLS_DUP;
    return CLS_UNIQUE;
}

/* Key of a page's base content (equal keys: equal content). */
static u64 content_key(u64 page, enum cls c) {
    switch (c) {
    case CLS_SHARED: return key2(p.image_seed ^ 0x5a4ed, page);
    case CLS_DUP: return key2(p.seed ^ 0xd0b, key2(p.seed, page) % p.duplicate_templates);
    default: return key2(p.seed ^ 0x0419e, page);
    }
}

/* Random bytes at the start of a page with this content key. */
static u64 random_bytes(u64 key) {
    u64 a = mix64(key ^ 1) % GUEST_PPM, b = mix64(key ^ 2) % GUEST_PPM;
    u64 c = mix64(key ^ 3) % GUEST_PPM, d = mix64(key ^ 4) % GUEST_PPM;
    /* Irwin-Hall(4) standardised: (sum - 2) * sqrt(3), in ppm. */
    long long z = ((long long)(a + b + c + d) - 2 * GUEST_PPM) * 1732 / 1000;
    long long r = (long long)p.compressed_mean_ppm + (long long)p.compressed_sd_ppm * z / GUEST_PPM;
    if (r < 0) r = 0;
    if (r > GUEST_PPM) r = GUEST_PPM;
    return ((u64)r * PAGE / GUEST_PPM) & ~7ULL;
}

static u64 window_len(void) {
    u64 n = (p.redirty_change_ppm * PAGE / GUEST_PPM) & ~7ULL;
    return n < 8 ? 8 : (n > PAGE ? PAGE : n);
}
static u64 window_offset(u64 page) { u64 n = window_len(); return n >= PAGE ? 0 : (mix64(p.seed ^ page ^ 0x0ff) % (PAGE - n + 1)) & ~7ULL; }

/* Writes the content (page, version) into dst. */
static void render(u64 page, u32 version, u64 *dst) {
    enum cls c = page_class(page);
    u64 i;
    if (c == CLS_ZERO) {
        for (i = 0; i < PAGE / 8; i++) dst[i] = 0;
    } else {
        u64 key = content_key(page, c);
        u64 nrand = random_bytes(key) / 8;
        struct rng r = rng_from(key);
        for (i = 0; i < nrand; i++) dst[i] = rng_next(&r);
        u64 pattern = mix64(key ^ 0x7e7) & 0x3f3f3f3f3f3f3f3fULL;
        for (; i < PAGE / 8; i++) dst[i] = pattern + (i & 3);
    }
    if (version) {
        struct rng r = rng_from(key2(key2(p.seed ^ 0x5e5, page), version));
        u64 off = window_offset(page) / 8, n = window_len() / 8;
        for (i = 0; i < n; i++) dst[off + i] = rng_next(&r);
    }
}

static inline u64 ram_gpa(u64 offset) { return offset < p.ram_split ? offset : GUEST_HIGH_RAM_GPA + (offset - p.ram_split); }
static inline u64 *page_ptr(u64 page) { return (u64 *)ram_gpa(p.work_gpa + page * PAGE); }
static inline volatile u32 *version_ptr(u64 page) { return (volatile u32 *)(p.meta_gpa + page * 4); }

static void report(void) {
    status->tsc = rdtsc();
    status->reports = status->reports + 1;
    outl(PORT_PROGRESS, (u32)status->writes);
}

static u64 verify_rng_state;

static void verify_some(u64 count, u64 limit) {
    struct rng r = { verify_rng_state };
    for (u64 k = 0; k < count; k++) {
        u64 page = rng_next(&r) % limit;
        u32 v = *version_ptr(page);
        render(page, v, (u64 *)scratch);
        const u64 *have = page_ptr(page), *want = (const u64 *)scratch;
        int bad = 0;
        for (u64 i = 0; i < PAGE / 8; i++) bad |= have[i] != want[i];
        status->verified_pages = status->verified_pages + 1;
        if (bad) {
            status->verify_errors = status->verify_errors + 1;
            outl(PORT_VERIFY_FAIL, (u32)page);
        }
    }
    verify_rng_state = r.s;
}

void workload_main(void);
void workload_main(void) {
    p = *(const struct guest_params *)params;
    status->magic = GUEST_STATUS_MAGIC;
    if (p.magic != GUEST_PARAMS_MAGIC || p.abi_version != GUEST_ABI_VERSION || p.tsc_hz == 0 ||
        p.work_pages == 0 || p.duplicate_templates == 0 || p.ram_split < p.work_gpa ||
        p.zero_ppm + p.shared_image_ppm + p.duplicate_ppm > GUEST_PPM) {
        status->phase = GUEST_PHASE_BAD_PARAMS;
        outl(PORT_PHASE, GUEST_PHASE_BAD_PARAMS);
        for (;;) __asm__ volatile("pause");
    }
    status->phase = GUEST_PHASE_BOOT;
    outl(PORT_PHASE, GUEST_PHASE_BOOT);

    const u64 report_tsc = p.tsc_hz / 1000000 * (p.report_interval_us ? p.report_interval_us : 10000);
    u64 last = rdtsc();
    for (u64 page = 0; page < p.work_pages; page++) {
        if (page_class(page) != CLS_ZERO) render(page, 0, page_ptr(page));
        if ((page & 1023) == 1023) {
            status->filled_pages = page + 1;
            u64 now = rdtsc();
            if (now - last >= report_tsc) { report(); last = now; }
        }
    }
    status->filled_pages = p.work_pages;
    status->phase = GUEST_PHASE_FILLED;
    outl(PORT_PHASE, GUEST_PHASE_FILLED);

    u64 ws = p.work_pages * p.working_set_ppm / GUEST_PPM;
    if (ws == 0) ws = 1;
    u64 hot = ws * p.hot_set_ppm / GUEST_PPM;
    if (hot == 0) hot = 1;
    struct rng r = rng_from(p.seed ^ 0xd1e7);
    verify_rng_state = mix64(p.seed ^ 0x7e51f) | 1;
    const int unpaced = p.write_rate_pages_per_s == GUEST_WRITE_RATE_UNPACED;
    const u64 tsc_per_write = unpaced ? 0 : p.write_rate_pages_per_s ? (p.tsc_hz / p.write_rate_pages_per_s ? p.tsc_hz / p.write_rate_pages_per_s : 1) : 0;
    const u64 idle_tsc = p.tsc_hz / 1000000 * p.idle_min_us;
    const u64 off_len = window_len() / 8;
    const u64 t0 = rdtsc();
    u64 checksum = 0, writes = 0, changed = 0;
    last = t0;
    for (;;) {
        u64 now = rdtsc();
        /* At most one report interval of writes per burst, so reports keep
         * coming; a CPU-bound guest looks at the clock every few ms. */
        const u64 burst_max = unpaced ? 256 : 65536;
        /* CPU-bound: always a full burst due; only the VMM's throttle slows it. */
        u64 due = unpaced ? writes + burst_max : tsc_per_write ? (now - t0) / tsc_per_write : 0;
        u64 burst = 0;
        while (writes < due && burst < burst_max) {
            u64 x = rng_next(&r);
            u64 page = (x % GUEST_PPM < p.hot_write_share_ppm) ? (rng_next(&r) % hot)
                       : (ws > hot ? hot + rng_next(&r) % (ws - hot) : rng_next(&r) % hot);
            volatile u32 *vp = version_ptr(page);
            u32 v = *vp;
            if (rng_next(&r) % GUEST_PPM < p.redirty_unchanged_ppm) {
                volatile u64 *q = (volatile u64 *)page_ptr(page);
                *q = *q;
            } else {
                v += 1;
                *vp = v;
                struct rng w = rng_from(key2(key2(p.seed ^ 0x5e5, page), v));
                u64 *dst = page_ptr(page) + window_offset(page) / 8;
                for (u64 i = 0; i < off_len; i++) dst[i] = rng_next(&w);
                changed++;
            }
            checksum = mix64(checksum ^ (page << 24) ^ v);
            writes++;
            burst++;
        }
        status->writes = writes;
        status->changed_writes = changed;
        status->checksum = checksum;
        now = rdtsc();
        if (now - last >= report_tsc) {
            verify_some(p.verify_pages_per_report, ws);
            report();
            last = now;
        }
        if (unpaced) {
            /* Never idles. */
        } else if (!tsc_per_write) {
            u64 left = report_tsc - (now - last);
            outl(PORT_IDLE, (u32)(left / (p.tsc_hz / 1000000) + 1));
        } else {
            /* Caught up: sleep until the next write is due, but at least
             * idle_min (the writes due meanwhile then go in one burst, as
             * after a timer tick), and never past the next report. */
            u64 next = t0 + (writes + 1) * tsc_per_write;
            if (next > now) {
                u64 ahead = next - now, until_report = report_tsc - (now - last);
                if (ahead < idle_tsc) ahead = idle_tsc;
                if (ahead > until_report) ahead = until_report;
                outl(PORT_IDLE, (u32)(ahead / (p.tsc_hz / 1000000) + 1));
            }
        }
    }
}
