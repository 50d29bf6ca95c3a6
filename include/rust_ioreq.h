/*
 * rust_ioreq.h - C interface of the rust-ioreq component (the staticlib built from arch/).
 *
 * Every function here is implemented in Rust (arch/src/entry.rs) and called from the Xen glue
 * in xen-patches/. Layout assertions for shared structures mirror the Rust ones.
 */
#ifndef RUST_IOREQ_H
#define RUST_IOREQ_H

#ifdef __XEN__
#include <xen/types.h>
#else
#include <stdint.h>
#endif

/*
 * Initialises the component from the host device tree (Xen's device_tree_flattened).
 * Called once at boot, before create_domUs(). Returns 0, or -EINVAL after printing what is
 * wrong with the device tree (node and property).
 */
int rust_ioreq_init(const void *host_fdt);

#endif /* RUST_IOREQ_H */
