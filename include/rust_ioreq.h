/*
 * rust_ioreq.h - C interface of the rust-ioreq component (the staticlib built from arch/).
 *
 * rust_ioreq_* functions are implemented in Rust (arch/src/entry.rs) and called by the Xen
 * glue in xen-patches/. rust_xen_* functions are implemented by that glue
 * (xen/arch/arm/rust_ioreq.c) and called from Rust. Every structure's layout is asserted
 * here and, identically, in arch/src/abi_c.rs and rust-ioreq/src/abi.rs.
 */
#ifndef RUST_IOREQ_H
#define RUST_IOREQ_H

#ifdef __XEN__
#include <xen/types.h>
#else
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#endif

struct domain;
struct cpu_user_regs;

/* --- Backend ABI (docs/backend-abi.md) --------------------------------------------------- */

/* Capacities of the configuration (rust-ioreq/src/config.rs; asserted in arch/src/abi_c.rs). */
#define RUST_IOREQ_MAX_DOMAINS                 16
#define RUST_IOREQ_MAX_FRONTENDS_PER_BACKEND   8

#define RUST_IOREQ_DOORBELL_GPA     0x3e000000ULL
#define RUST_IOREQ_DOORBELL_SIZE    0x1000ULL
#define RUST_IOREQ_IOREQ_PAGES_GPA  0x3e001000ULL
#define RUST_IOREQ_TRANSPORT_PAGE_GPA 0x3e009000ULL  /* version 2: written by the backend */
#define RUST_IOREQ_NOTIFY_PAGE_GPA    0x3e00a000ULL  /* version 2: read-only to the backend */

/*
 * The pages Xen shares with a backend, as the glue indexes them: the ioreq page of frontend k
 * at k, then the transport and the notify page (arch/src/state.rs: PAGES).
 */
#define RUST_IOREQ_BACKEND_PAGES   10
#define RUST_IOREQ_TRANSPORT_PAGE  8
#define RUST_IOREQ_NOTIFY_PAGE     9

/* One slot of an ioreq page: Xen's ioreq_t (public/hvm/ioreq.h), bit-fields as one byte. */
struct rust_ioreq_slot {
    uint64_t addr;
    uint64_t data;
    uint32_t count;
    uint32_t size;
    uint32_t vp_eport;
    uint16_t pad0;
    uint8_t  flags;     /* state:4, data_is_ptr:1, dir:1, df:1, pad:1 */
    uint8_t  type;
};
_Static_assert(sizeof(struct rust_ioreq_slot) == 32, "ioreq_t is 32 bytes");
_Static_assert(offsetof(struct rust_ioreq_slot, data) == 8, "ioreq_t.data");
_Static_assert(offsetof(struct rust_ioreq_slot, count) == 16, "ioreq_t.count");
_Static_assert(offsetof(struct rust_ioreq_slot, size) == 20, "ioreq_t.size");
_Static_assert(offsetof(struct rust_ioreq_slot, vp_eport) == 24, "ioreq_t.vp_eport");
_Static_assert(offsetof(struct rust_ioreq_slot, flags) == 30, "ioreq_t state byte");
_Static_assert(offsetof(struct rust_ioreq_slot, type) == 31, "ioreq_t.type");

/* Version 2: the transport page's header (offset 0) and device records (0x40 + i * 0x40). */
struct rust_ioreq_transport_header {
    uint32_t version;           /* 2 to use the page */
    uint32_t wakeup;            /* 1: send the notify SPI at the next posted notify */
    uint32_t polling;           /* non-zero: no notify SPI at all */
    uint32_t reserved[13];
};
_Static_assert(sizeof(struct rust_ioreq_transport_header) == 0x40, "transport header");
_Static_assert(offsetof(struct rust_ioreq_transport_header, wakeup) == 0x04, "header.wakeup");
_Static_assert(offsetof(struct rust_ioreq_transport_header, polling) == 0x08, "header.polling");

struct rust_ioreq_transport_record {
    uint32_t published;         /* 1: the fields below are valid */
    uint32_t device_id;
    uint32_t vendor_id;
    uint32_t num_queues;        /* at most 16 */
    uint32_t queue_num_max;
    uint32_t config_generation;
    uint32_t device_features[4];
    uint32_t reserved[6];
};
_Static_assert(sizeof(struct rust_ioreq_transport_record) == 0x40, "transport record");
_Static_assert(offsetof(struct rust_ioreq_transport_record, device_id) == 0x04, "record.device_id");
_Static_assert(offsetof(struct rust_ioreq_transport_record, num_queues) == 0x0c, "record.num_queues");
_Static_assert(offsetof(struct rust_ioreq_transport_record, config_generation) == 0x14,
               "record.config_generation");
_Static_assert(offsetof(struct rust_ioreq_transport_record, device_features) == 0x18,
               "record.device_features");

/* --- Trap path --------------------------------------------------------------------------- */

#define RUST_IOREQ_DECODE_SYNDROME     0  /* ISV set: the syndrome says everything */
#define RUST_IOREQ_DECODE_POST_INDEXED 1  /* Xen decoded a post-indexed LDR/STR */
#define RUST_IOREQ_DECODE_CACHE        2  /* cache maintenance on the address */

struct rust_ioreq_trap {
    uint64_t gpa;
    uint32_t hsr;        /* ESR_EL2 as taken */
    uint32_t dabt;       /* mmio_info_t.dabt after Xen's decoder */
    uint32_t vcpu;
    uint16_t domid;
    uint8_t  decode;     /* RUST_IOREQ_DECODE_* */
    uint8_t  post_rn;
    int16_t  post_imm9;
    uint16_t pad0;
    uint32_t pad1;
};
_Static_assert(sizeof(struct rust_ioreq_trap) == 32, "rust_ioreq_trap size");
_Static_assert(offsetof(struct rust_ioreq_trap, hsr) == 8, "rust_ioreq_trap.hsr");
_Static_assert(offsetof(struct rust_ioreq_trap, dabt) == 12, "rust_ioreq_trap.dabt");
_Static_assert(offsetof(struct rust_ioreq_trap, vcpu) == 16, "rust_ioreq_trap.vcpu");
_Static_assert(offsetof(struct rust_ioreq_trap, domid) == 20, "rust_ioreq_trap.domid");
_Static_assert(offsetof(struct rust_ioreq_trap, decode) == 22, "rust_ioreq_trap.decode");
_Static_assert(offsetof(struct rust_ioreq_trap, post_rn) == 23, "rust_ioreq_trap.post_rn");
_Static_assert(offsetof(struct rust_ioreq_trap, post_imm9) == 24, "rust_ioreq_trap.post_imm9");

#define RUST_IOREQ_MMIO_NOT_MINE 0  /* not a configured region: stock handling */
#define RUST_IOREQ_MMIO_RETRY    1  /* posted to the backend: the vCPU waits */
#define RUST_IOREQ_MMIO_HANDLED  2  /* done (nothing to emulate, or answered): advance the PC */
#define RUST_IOREQ_MMIO_ABORT    3  /* refused: inject a data abort */

struct rust_ioreq_completion {
    uint64_t value;      /* value for `reg` when write_reg */
    uint32_t hsr;        /* ESR_EL2 of the trap, for advance_pc() */
    uint8_t  write_reg;
    uint8_t  reg;
    uint8_t  post_index; /* base write-back of a post-indexed access */
    uint8_t  post_rn;
    int16_t  post_imm9;
    uint16_t pad0;
    uint32_t pad1;
};
_Static_assert(sizeof(struct rust_ioreq_completion) == 24, "rust_ioreq_completion size");
_Static_assert(offsetof(struct rust_ioreq_completion, hsr) == 8, "completion.hsr");
_Static_assert(offsetof(struct rust_ioreq_completion, write_reg) == 12, "completion.write_reg");
_Static_assert(offsetof(struct rust_ioreq_completion, reg) == 13, "completion.reg");
_Static_assert(offsetof(struct rust_ioreq_completion, post_index) == 14, "completion.post_index");
_Static_assert(offsetof(struct rust_ioreq_completion, post_rn) == 15, "completion.post_rn");
_Static_assert(offsetof(struct rust_ioreq_completion, post_imm9) == 16, "completion.post_imm9");

#define RUST_IOREQ_WORK_IDLE     0
#define RUST_IOREQ_WORK_WAITING  1
#define RUST_IOREQ_WORK_COMPLETE 2

/* --- Implemented in Rust ----------------------------------------------------------------- */

/*
 * Boot: reads and validates the configuration (before create_domUs()), given the SPIs a domU
 * gets by default and the IPA size of every domain (p2m_ipa_bits). 0 or -EINVAL.
 */
int rust_ioreq_init(const void *host_fdt, unsigned int gic_spis, unsigned int ipa_bits);
/*
 * Boot: a dom0less domain was created from the node whose full path (dt_node_full_name(),
 * unit address included) is `path`. 0 or -errno.
 */
int rust_ioreq_domain_created(struct domain *d, const char *path, uint16_t domid);
/*
 * Boot: adds the component's nodes under the open root of domain domid's generated DT; their
 * interrupts name the guest GIC node `gic_phandle` (Xen's GUEST_PHANDLE_GIC, or the GIC of a
 * passthrough DT).
 */
int rust_ioreq_make_dt_nodes(uint16_t domid, void *fdt, uint32_t gic_phandle);
/*
 * Boot: every dom0less domain is built; freezes the tables, grows backends' P2M pools, maps
 * their ioreq pages and RAM windows.
 */
int rust_ioreq_domains_built(void);
/* Trap: a frontend's stage-2 data abort. Returns RUST_IOREQ_MMIO_*. */
int rust_ioreq_handle_mmio(const struct rust_ioreq_trap *trap, struct cpu_user_regs *regs);
/*
 * Return to guest: returns RUST_IOREQ_WORK_*; fills *out for COMPLETE. With spin, a vCPU
 * waiting on a polling backend spins up to its xen,ioreq-poll-us first.
 */
int rust_ioreq_vcpu_work(uint16_t domid, uint32_t vcpu, bool spin,
                         struct rust_ioreq_completion *out);
/* Domain domid shuts down or crashed; a backend's frontends stop waiting for it. */
void rust_ioreq_domain_shutdown(uint16_t domid);
/* Domain domid is being destroyed (domain_relinquish_resources()): forget it, drop references. */
void rust_ioreq_domain_destroyed(uint16_t domid);
/* Timer softirq: the response timer of vCPU `vcpu` of configured frontend `index` fired. */
void rust_ioreq_timeout(unsigned int index, unsigned int vcpu);
/* A backend's doorbell access. 0, or -EINVAL to inject a data abort. */
int rust_ioreq_doorbell(uint16_t domid, uint64_t gpa, unsigned int size_log2, bool is_write,
                        uint64_t *value);

/* --- Implemented by the Xen glue --------------------------------------------------------- */

bool rust_xen_hold_domain(unsigned int index, struct domain *d);
void rust_xen_mark_frontend(struct domain *d);
bool rust_xen_reserve_spi(struct domain *d, unsigned int spi);
void *rust_xen_map_backend_page(unsigned int index, unsigned int page, struct domain *d,
                                uint64_t gpa, bool writable);
int rust_xen_register_doorbell(struct domain *d, uint64_t gpa, uint64_t size);
int rust_xen_map_ram(struct domain *backend, struct domain *frontend, uint64_t gpa,
                     uint64_t size, uint64_t at);
int rust_xen_unmap_ram(struct domain *backend, struct domain *frontend, uint64_t gpa,
                       uint64_t size, uint64_t at);
int rust_xen_grow_p2m_pool(struct domain *d, uint64_t pages);
int rust_xen_init_timers(unsigned int index);
void rust_xen_set_timer(unsigned int index, unsigned int vcpu, uint64_t deadline);
uint64_t rust_xen_now(void);
void rust_xen_release_domain(unsigned int index);
void rust_xen_inject_spi(struct domain *d, unsigned int spi);
void rust_xen_wake_vcpu(struct domain *d, unsigned int vcpu);
void rust_xen_domain_crash(struct domain *d);
uint64_t rust_xen_guest_reg(const struct cpu_user_regs *regs, unsigned int n);
void rust_xen_set_guest_reg(struct cpu_user_regs *regs, unsigned int n, uint64_t value);
bool rust_xen_softirq_pending(void);

#endif /* RUST_IOREQ_H */
