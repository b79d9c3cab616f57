// SPDX-License-Identifier: GPL-2.0-only
/*
 * The tracepoints of the vfio-pci live update handler, created here for
 * its Rust code (trace.rs).
 */

#define CREATE_TRACE_POINTS
#define CREATE_RUST_TRACE_POINTS
#include <trace/events/vfio_pci_liveupdate.h>
