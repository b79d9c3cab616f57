/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Tracepoints of the vfio-pci live update handler
 * (drivers/vfio/pci/liveupdate/): how long each phase of a live update
 * took, per device, for benchmarks and diagnosis.
 *
 * A PCI function is given by its segment, bus and devfn. Times are in
 * microseconds; ret is 0 or a negative errno.
 */

#undef TRACE_SYSTEM
#define TRACE_SYSTEM vfio_pci_liveupdate

#if !defined(_TRACE_VFIO_PCI_LIVEUPDATE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _TRACE_VFIO_PCI_LIVEUPDATE_H

#include <linux/tracepoint.h>

/*
 * vfio_pci_lu_freeze - the freeze of one preserved device ended
 * @reset: 0 if the freeze queued the device's reset (parallel, the
 *	default), 1 if it reset the device itself (module parameter
 *	serial_reset), 2 if it did not reset it (keep mode)
 */
TRACE_EVENT(vfio_pci_lu_freeze,
	    TP_PROTO(u32 domain, u8 bus, u8 devfn, u8 reset, u64 us,
		     int ret),
	    TP_ARGS(domain, bus, devfn, reset, us, ret),
	    TP_STRUCT__entry(__field(u32, domain)
			     __field(u8, bus)
			     __field(u8, devfn)
			     __field(u8, reset)
			     __field(u64, us)
			     __field(int, ret)),
	    TP_fast_assign(__entry->domain = domain;
			   __entry->bus = bus;
			   __entry->devfn = devfn;
			   __entry->reset = reset;
			   __entry->us = us;
			   __entry->ret = ret;),
	    TP_printk("%04x:%02x:%02x.%u reset=%s us=%llu ret=%d",
		      __entry->domain, __entry->bus, __entry->devfn >> 3,
		      __entry->devfn & 7,
		      __print_symbolic(__entry->reset, { 0, "parallel" },
				       { 1, "serial" }, { 2, "none" }),
		      __entry->us, __entry->ret)
);

/*
 * vfio_pci_lu_reset - a reset by the handler ended
 * @when: 0 in a freeze (serial mode), 1 queued by a freeze (parallel
 *	mode), 2 at retrieve in the new kernel
 * @waited_us: from the time the freeze queued it to its start (parallel)
 */
TRACE_EVENT(vfio_pci_lu_reset,
	    TP_PROTO(u32 domain, u8 bus, u8 devfn, u8 when, u64 us,
		     u64 waited_us, int ret),
	    TP_ARGS(domain, bus, devfn, when, us, waited_us, ret),
	    TP_STRUCT__entry(__field(u32, domain)
			     __field(u8, bus)
			     __field(u8, devfn)
			     __field(u8, when)
			     __field(u64, us)
			     __field(u64, waited_us)
			     __field(int, ret)),
	    TP_fast_assign(__entry->domain = domain;
			   __entry->bus = bus;
			   __entry->devfn = devfn;
			   __entry->when = when;
			   __entry->us = us;
			   __entry->waited_us = waited_us;
			   __entry->ret = ret;),
	    TP_printk("%04x:%02x:%02x.%u when=%s us=%llu waited_us=%llu ret=%d",
		      __entry->domain, __entry->bus, __entry->devfn >> 3,
		      __entry->devfn & 7,
		      __print_symbolic(__entry->when, { 0, "serial" },
				       { 1, "parallel" }, { 2, "retrieve" }),
		      __entry->us, __entry->waited_us, __entry->ret)
);

/*
 * vfio_pci_lu_freeze_all - every preserved device of a kexec is frozen and
 *	reset, as far as the reboot notifier waited for it
 * @devices: how many files froze
 * @us: from the start of the first freeze to the end of the last reset
 * @failed: resets that failed or did not finish in time
 */
TRACE_EVENT(vfio_pci_lu_freeze_all,
	    TP_PROTO(u32 devices, bool serial, u64 us, u32 failed),
	    TP_ARGS(devices, serial, us, failed),
	    TP_STRUCT__entry(__field(u32, devices)
			     __field(bool, serial)
			     __field(u64, us)
			     __field(u32, failed)),
	    TP_fast_assign(__entry->devices = devices;
			   __entry->serial = serial;
			   __entry->us = us;
			   __entry->failed = failed;),
	    TP_printk("devices=%u reset=%s us=%llu failed=%u",
		      __entry->devices,
		      __entry->serial ? "serial" : "parallel", __entry->us,
		      __entry->failed)
);

/*
 * vfio_pci_lu_retrieve - the retrieve of a preserved device's file ended,
 *	in the new kernel
 */
TRACE_EVENT(vfio_pci_lu_retrieve,
	    TP_PROTO(u32 domain, u8 bus, u8 devfn, u64 us, int ret),
	    TP_ARGS(domain, bus, devfn, us, ret),
	    TP_STRUCT__entry(__field(u32, domain)
			     __field(u8, bus)
			     __field(u8, devfn)
			     __field(u64, us)
			     __field(int, ret)),
	    TP_fast_assign(__entry->domain = domain;
			   __entry->bus = bus;
			   __entry->devfn = devfn;
			   __entry->us = us;
			   __entry->ret = ret;),
	    TP_printk("%04x:%02x:%02x.%u us=%llu ret=%d",
		      __entry->domain, __entry->bus, __entry->devfn >> 3,
		      __entry->devfn & 7, __entry->us, __entry->ret)
);

#endif /* _TRACE_VFIO_PCI_LIVEUPDATE_H */

/* This part must be outside protection */
#include <trace/define_trace.h>
