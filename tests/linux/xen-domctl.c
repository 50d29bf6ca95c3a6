/*
 * xen-domctl: the few domain-control hypercalls a toolstack issues to destroy a domain, for the
 * dom0 of tests/scenarios/dom0-destroy.toml (tests/linux/dom0-init runs it).
 *
 * Usage: xen-domctl info|pause|unpause|destroy|create <domid>
 *        xen-domctl wait-gone <domid> <milliseconds>
 *        xen-domctl free
 *
 *   info       prints the domain's state; exit 0 if it exists (dying or not), 2 if not
 *   pause      XEN_DOMCTL_pausedomain (what `xl destroy` does first)
 *   destroy    XEN_DOMCTL_destroydomain (domain_kill(); Xen restarts it internally until done)
 *   create     XEN_DOMCTL_createdomain of an empty domain (1 vCPU, no memory, never started)
 *              with exactly this domid: exit 0, or 3 when Xen says EEXIST (the domid is taken,
 *              e.g. by a destroyed domain that still holds pages: a zombie)
 *   wait-gone  polls `info` until the domain no longer exists; exit 0 and prints how long it
 *              took, or 1 with its last state after the given time
 *   free       prints Xen's free memory in pages (XEN_SYSCTL_physinfo free_pages)
 * Any other failure: a message naming the hypercall and errno, exit 1.
 *
 * Every hypercall goes through Linux's /dev/xen/privcmd (IOCTL_PRIVCMD_HYPERCALL), whose result
 * is the hypercall's: negative Xen errno values come back as errno, and Xen's errno values are
 * Linux's for everything seen here.
 *
 * The structures below are this program's own minimal definitions of the Xen 4.17 ABI, checked
 * against build/xen-4.17.5-pristine/xen/include/public/ (after `make xen-source`), and of what
 * Xen 4.22 changed (build/xen-4.22.0-pristine; see "Xen 4.22" below):
 * (the sizes and offsets the _Static_asserts pin are those of the Xen headers compiled with
 * aarch64-linux-gnu-gcc and __XEN_TOOLS__):
 *   xen.h           __HYPERVISOR_domctl = 36, __HYPERVISOR_sysctl = 35; domid_t = uint16_t;
 *                   xen_domain_handle_t = 16 bytes
 *   domctl.h        XEN_DOMCTL_INTERFACE_VERSION 0x00000015; commands createdomain 1,
 *                   destroydomain 2, pausedomain 3, unpausedomain 4, getdomaininfo 5;
 *                   struct xen_domctl = cmd, interface_version, domain, _pad[3], then a union
 *                   whose largest member is uint8_t pad[128] (144 bytes in all);
 *                   struct xen_domctl_getdomaininfo and struct xen_domctl_createdomain, field by
 *                   field as below; XEN_DOMINF_* bits; XEN_DOMCTL_CDF_hvm|hap (required on Arm,
 *                   arch/arm/domain.c arch_sanitise_domain_config); XEN_DOMCTL_GRANT_version(1)
 *   sysctl.h        XEN_SYSCTL_INTERFACE_VERSION 0x00000015; XEN_SYSCTL_physinfo 3;
 *                   struct xen_sysctl = cmd, interface_version, then a union whose largest
 *                   member is uint8_t pad[128] (136 bytes); struct xen_sysctl_physinfo
 *   arch-arm.h      struct xen_arch_domainconfig = gic_version (u8), tee_type (u16), nr_spis,
 *                   clock_frequency (u32); XEN_DOMCTL_CONFIG_GIC_NATIVE 0, TEE_NONE 0
 * Xen 4.22 (domctl interface 0x18, sysctl 0x16): xen_domctl_createdomain has a 4-byte altp2m
 * struct after grant_opts (arch at 60, 76 bytes in all), xen_arch_domainconfig grew to 16 bytes
 * (sve_vl in gic_version's padding; arm_sci_type, v8r_el1_msa, pad at the end), so
 * getdomaininfo's arch_config too (still 120 bytes in all: it fills the old tail padding);
 * xen_domctl and xen_sysctl keep their
 * sizes, and physinfo and the getdomaininfo fields read here are where they were (checked with
 * _Static_asserts against the 4.22 headers).
 * Xen refuses a domctl or sysctl of another interface version with EACCES: the program tries
 * 4.17's versions first, then 4.22's, and keeps the first Xen accepts.
 * Xen reads and writes the buffer through the caller's page tables (copy_{from,to}_guest on Arm
 * translate the guest virtual address), so it is locked in memory before each call.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/*
 * Linux include/uapi/xen/privcmd.h (not usable as it is: it includes <xen/interface/xen.h>,
 * which the UAPI headers do not ship): struct privcmd_hypercall and IOCTL_PRIVCMD_HYPERCALL.
 */
struct privcmd_hypercall {
    uint64_t op;
    uint64_t arg[5];
};
#define IOCTL_PRIVCMD_HYPERCALL _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))

#define HYPERVISOR_DOMCTL 36
#define HYPERVISOR_SYSCTL 35
/* Xen 4.17's interface versions, then 4.22's. */
static const uint32_t domctl_versions[] = { 0x00000015u, 0x00000018u };
static const uint32_t sysctl_versions[] = { 0x00000015u, 0x00000016u };
#define XEN_4_22 1
/* Indexes of the versions Xen accepted (probe_versions()). */
static unsigned int domctl_abi, sysctl_abi;
#define SYSCTL_PHYSINFO 3

#define DOMCTL_CREATEDOMAIN 1
#define DOMCTL_DESTROYDOMAIN 2
#define DOMCTL_PAUSEDOMAIN 3
#define DOMCTL_UNPAUSEDOMAIN 4
#define DOMCTL_GETDOMAININFO 5

#define CDF_HVM (1u << 0)
#define CDF_HAP (1u << 1)
#define GRANT_VERSION_1 1u
/* An event-channel limit as libxl's default; any value works for a domain never started. */
#define MAX_EVTCHN_PORT 1023u

#define DOMID_FIRST_RESERVED 0x7ff0u

struct arch_domainconfig {
    uint8_t gic_version;
    uint16_t tee_type;
    uint32_t nr_spis;
    uint32_t clock_frequency;
};

struct domctl_createdomain {
    uint32_t ssidref;
    uint8_t handle[16];
    uint32_t flags;
    uint32_t iommu_opts;
    uint32_t max_vcpus;
    uint32_t max_evtchn_port;
    int32_t max_grant_frames;
    int32_t max_maptrack_frames;
    uint32_t grant_opts;
    uint32_t vmtrace_size;
    uint32_t cpupool_id;
    struct arch_domainconfig arch;
};

#define DOMINF_DYING (1u << 0)
#define DOMINF_SHUTDOWN (1u << 2)
#define DOMINF_PAUSED (1u << 3)
#define DOMINF_BLOCKED (1u << 4)
#define DOMINF_RUNNING (1u << 5)
#define DOMINF_SHUTDOWN_SHIFT 16
#define DOMINF_SHUTDOWN_MASK 255u

struct domctl_getdomaininfo {
    uint16_t domain;
    uint16_t pad1;
    uint32_t flags;
    uint64_t tot_pages;
    uint64_t max_pages;
    uint64_t outstanding_pages;
    uint64_t shr_pages;
    uint64_t paged_pages;
    uint64_t shared_info_frame;
    uint64_t cpu_time;
    uint32_t nr_online_vcpus;
    uint32_t max_vcpu_id;
    uint32_t ssidref;
    uint8_t handle[16];
    uint32_t cpupool;
    uint8_t gpaddr_bits;
    uint8_t pad2[7];
    struct arch_domainconfig arch_config;
};

/* Xen 4.22's createdomain: altp2m after grant_opts, a 16-byte arch config. */
struct domctl_createdomain_4_22 {
    uint32_t ssidref;
    uint8_t handle[16];
    uint32_t flags;
    uint32_t iommu_opts;
    uint32_t max_vcpus;
    uint32_t max_evtchn_port;
    int32_t max_grant_frames;
    int32_t max_maptrack_frames;
    uint32_t grant_opts;
    uint16_t altp2m_opts;
    uint16_t altp2m_nr;
    uint32_t vmtrace_size;
    uint32_t cpupool_id;
    uint8_t arch[16];
};

struct domctl {
    uint32_t cmd;
    uint32_t interface_version;
    uint16_t domain;
    uint16_t pad[3];
    union {
        struct domctl_createdomain createdomain;
        struct domctl_createdomain_4_22 createdomain_4_22;
        struct domctl_getdomaininfo getdomaininfo;
        uint8_t pad[128];
    } u;
};

struct sysctl_physinfo {
    uint32_t threads_per_core;
    uint32_t cores_per_socket;
    uint32_t nr_cpus;
    uint32_t max_cpu_id;
    uint32_t nr_nodes;
    uint32_t max_node_id;
    uint32_t cpu_khz;
    uint32_t capabilities;
    uint32_t arch_capabilities;
    uint32_t pad;
    uint64_t total_pages;
    uint64_t free_pages;
    uint64_t scrub_pages;
    uint64_t outstanding_pages;
    uint64_t max_mfn;
    uint32_t hw_cap[8];
};

struct sysctl {
    uint32_t cmd;
    uint32_t interface_version;
    union {
        struct sysctl_physinfo physinfo;
        uint8_t pad[128];
    } u;
};

_Static_assert(sizeof(struct sysctl_physinfo) == 112, "xen_sysctl_physinfo");
_Static_assert(__builtin_offsetof(struct sysctl_physinfo, free_pages) == 48, "free_pages");
_Static_assert(__builtin_offsetof(struct sysctl, u) == 8, "xen_sysctl.u");
_Static_assert(sizeof(struct sysctl) == 136, "xen_sysctl");
_Static_assert(sizeof(struct arch_domainconfig) == 12, "xen_arch_domainconfig");
_Static_assert(sizeof(struct domctl_createdomain) == 68, "xen_domctl_createdomain");
_Static_assert(__builtin_offsetof(struct domctl_createdomain, arch) == 56, "createdomain.arch");
_Static_assert(sizeof(struct domctl_getdomaininfo) == 120, "xen_domctl_getdomaininfo");
_Static_assert(__builtin_offsetof(struct domctl_getdomaininfo, tot_pages) == 8, "tot_pages");
_Static_assert(__builtin_offsetof(struct domctl_getdomaininfo, cpupool) == 92, "cpupool");
_Static_assert(sizeof(struct domctl_createdomain_4_22) == 76, "4.22 xen_domctl_createdomain");
_Static_assert(__builtin_offsetof(struct domctl_createdomain_4_22, altp2m_opts) == 48, "altp2m");
_Static_assert(__builtin_offsetof(struct domctl_createdomain_4_22, arch) == 60, "4.22 arch");
_Static_assert(__builtin_offsetof(struct domctl, u) == 16, "xen_domctl.u");
_Static_assert(sizeof(struct domctl) == 144, "xen_domctl");

static int privcmd = -1;
/* The hypercall buffers, locked in memory for Xen's copy_from/to_guest (one page). */
static struct {
    struct domctl domctl;
    struct sysctl sys;
} buffers __attribute__((aligned(4096)));

/* Issues domctl `cmd` on `domid` with `buffers.domctl.u` as the caller prepared it; returns 0
 * or -errno. */
static int domctl(uint32_t cmd, uint16_t domid)
{
    struct privcmd_hypercall call = {
        .op = HYPERVISOR_DOMCTL,
        .arg = { (uint64_t)(uintptr_t)&buffers.domctl },
    };

    buffers.domctl.cmd = cmd;
    buffers.domctl.interface_version = domctl_versions[domctl_abi];
    buffers.domctl.domain = domid;
    if (ioctl(privcmd, IOCTL_PRIVCMD_HYPERCALL, &call) < 0)
        return -errno;
    return 0;
}

/* Reads Xen's physinfo into buffers.sys.u.physinfo; returns 0 or -errno. */
static int physinfo(void)
{
    struct privcmd_hypercall call = {
        .op = HYPERVISOR_SYSCTL,
        .arg = { (uint64_t)(uintptr_t)&buffers.sys },
    };

    memset(&buffers.sys, 0, sizeof(buffers.sys));
    buffers.sys.cmd = SYSCTL_PHYSINFO;
    buffers.sys.interface_version = sysctl_versions[sysctl_abi];
    if (ioctl(privcmd, IOCTL_PRIVCMD_HYPERCALL, &call) < 0)
        return -errno;
    return 0;
}

/*
 * Finds the interface versions Xen speaks: getdomaininfo of domain 0 (this program runs in a
 * dom0) and physinfo are the same in every version; EACCES means "not my version".
 */
static int probe_versions(void)
{
    int rc;

    for (domctl_abi = 0;; domctl_abi++) {
        memset(&buffers.domctl.u, 0, sizeof(buffers.domctl.u));
        rc = domctl(DOMCTL_GETDOMAININFO, 0);
        if (rc != -EACCES || domctl_abi + 1 == sizeof(domctl_versions) / sizeof(domctl_versions[0]))
            break;
    }
    if (rc < 0) {
        printf("getdomaininfo: %s (errno %d) with domctl interface 0x%x\n", strerror(-rc), -rc,
               domctl_versions[domctl_abi]);
        return rc;
    }
    for (sysctl_abi = 0;; sysctl_abi++) {
        rc = physinfo();
        if (rc != -EACCES || sysctl_abi + 1 == sizeof(sysctl_versions) / sizeof(sysctl_versions[0]))
            break;
    }
    if (rc < 0)
        printf("sysctl physinfo: %s (errno %d) with sysctl interface 0x%x\n", strerror(-rc), -rc,
               sysctl_versions[sysctl_abi]);
    return rc;
}

/* Reads domain `domid`'s info into buffers.domctl.u.getdomaininfo: 1 if it exists, 0 if not,
 * or -errno. */
static int getinfo(uint16_t domid)
{
    int rc;

    memset(&buffers.domctl.u, 0, sizeof(buffers.domctl.u));
    rc = domctl(DOMCTL_GETDOMAININFO, domid);
    if (rc == -ESRCH)
        return 0;
    if (rc < 0)
        return rc;
    /* Xen answers with the first domain at or above `domid`: another one means none. */
    return buffers.domctl.u.getdomaininfo.domain == domid;
}

static void print_info(uint16_t domid)
{
    const struct domctl_getdomaininfo *i = &buffers.domctl.u.getdomaininfo;
    uint32_t f = i->flags;
    char shutdown[32] = "";

    if (f & DOMINF_SHUTDOWN)
        snprintf(shutdown, sizeof(shutdown), "shutdown (code %u) ",
                 (f >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK);
    printf("d%u: %s%s%s%s%s, %u vCPU(s) online, %llu pages, cpu time %llu ms\n", domid,
           f & DOMINF_DYING ? "dying " : "", shutdown, f & DOMINF_PAUSED ? "paused " : "",
           f & DOMINF_BLOCKED ? "blocked " : "", f & DOMINF_RUNNING ? "running" : "not running",
           i->nr_online_vcpus, (unsigned long long)i->tot_pages,
           (unsigned long long)(i->cpu_time / 1000000));
}

static long long now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int fail(const char *what, uint16_t domid, int rc)
{
    printf("d%u: %s: %s (errno %d)\n", domid, what, strerror(-rc), -rc);
    return 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: xen-domctl info|pause|unpause|destroy|create <domid>\n"
                    "       xen-domctl wait-gone <domid> <milliseconds>\n"
                    "       xen-domctl free\n");
    return 1;
}

int main(int argc, char **argv)
{
    char *end;
    unsigned long domid;
    int rc;

    if (argc < 2)
        return usage();
    privcmd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
    if (privcmd < 0) {
        printf("open /dev/xen/privcmd: %s\n", strerror(errno));
        return 1;
    }
    if (mlock(&buffers, sizeof(buffers)) < 0) {
        printf("mlock: %s\n", strerror(errno));
        return 1;
    }
    if (probe_versions() < 0)
        return 1;
    if (strcmp(argv[1], "free") == 0 && argc == 2) {
        rc = physinfo();
        if (rc < 0) {
            printf("sysctl physinfo: %s (errno %d)\n", strerror(-rc), -rc);
            return 1;
        }
        printf("%llu\n", (unsigned long long)buffers.sys.u.physinfo.free_pages);
        return 0;
    }
    if (argc < 3)
        return usage();
    domid = strtoul(argv[2], &end, 0);
    if (*argv[2] == '\0' || *end != '\0' || domid >= DOMID_FIRST_RESERVED)
        return usage();

    if (strcmp(argv[1], "info") == 0 && argc == 3) {
        rc = getinfo(domid);
        if (rc < 0)
            return fail("getdomaininfo", domid, rc);
        if (rc == 0) {
            printf("d%lu: no such domain\n", domid);
            return 2;
        }
        print_info(domid);
        return 0;
    }
    if (strcmp(argv[1], "wait-gone") == 0 && argc == 4) {
        long long limit = strtoll(argv[3], &end, 0), start = now_ms(), waited;

        if (*argv[3] == '\0' || *end != '\0' || limit < 0)
            return usage();
        for (;;) {
            rc = getinfo(domid);
            waited = now_ms() - start;
            if (rc < 0)
                return fail("getdomaininfo", domid, rc);
            if (rc == 0) {
                printf("d%lu: gone after %lld ms\n", domid, waited);
                return 0;
            }
            if (waited > limit) {
                printf("still there after %lld ms: ", waited);
                print_info(domid);
                return 1;
            }
            usleep(10000);
        }
    }
    if (argc != 3)
        return usage();
    memset(&buffers.domctl.u, 0, sizeof(buffers.domctl.u));
    if (strcmp(argv[1], "pause") == 0) {
        rc = domctl(DOMCTL_PAUSEDOMAIN, domid);
        return rc < 0 ? fail("pausedomain", domid, rc) : 0;
    }
    if (strcmp(argv[1], "unpause") == 0) {
        rc = domctl(DOMCTL_UNPAUSEDOMAIN, domid);
        return rc < 0 ? fail("unpausedomain", domid, rc) : 0;
    }
    if (strcmp(argv[1], "destroy") == 0) {
        rc = domctl(DOMCTL_DESTROYDOMAIN, domid);
        return rc < 0 ? fail("destroydomain", domid, rc) : 0;
    }
    if (strcmp(argv[1], "create") == 0) {
        if (domctl_abi == XEN_4_22) {
            struct domctl_createdomain_4_22 *c = &buffers.domctl.u.createdomain_4_22;

            c->flags = CDF_HVM | CDF_HAP;
            c->max_vcpus = 1;
            c->max_evtchn_port = MAX_EVTCHN_PORT;
            c->max_grant_frames = -1;
            c->max_maptrack_frames = -1;
            c->grant_opts = GRANT_VERSION_1;
        } else {
            struct domctl_createdomain *c = &buffers.domctl.u.createdomain;

            c->flags = CDF_HVM | CDF_HAP;
            c->max_vcpus = 1;
            c->max_evtchn_port = MAX_EVTCHN_PORT;
            c->max_grant_frames = -1;
            c->max_maptrack_frames = -1;
            c->grant_opts = GRANT_VERSION_1;
        }
        rc = domctl(DOMCTL_CREATEDOMAIN, domid);
        if (rc == -EEXIST) {
            printf("d%lu: createdomain: the domid is taken (EEXIST)\n", domid);
            return 3;
        }
        if (rc < 0)
            return fail("createdomain", domid, rc);
        if (buffers.domctl.domain != domid) {
            printf("d%lu: createdomain made d%u instead\n", domid, buffers.domctl.domain);
            return 1;
        }
        printf("d%lu: created (empty, never started)\n", domid);
        return 0;
    }
    return usage();
}
