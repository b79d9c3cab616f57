/* SPDX-License-Identifier: GPL-2.0 */
/*
 * KHO ABI of the vfio-pci Live Update file handler.
 *
 * What the outgoing kernel writes for every preserved vfio-pci device file,
 * in memory preserved with kho_alloc_preserve(). LUO hands the physical
 * address of this memory to the next kernel as the file's serialized data,
 * next to the handler's compatible string.
 */
#ifndef _LINUX_KHO_ABI_VFIO_PCI_H
#define _LINUX_KHO_ABI_VFIO_PCI_H

#include <linux/build_bug.h>
#include <linux/types.h>

/**
 * DOC: vfio-pci live update ABI and its versioning
 *
 * The blob starts with &struct vfio_pci_core_device_ser, the layout of the
 * upstream C handler for the same compatible string: the PCI segment and
 * the bus/device/function of the device. Those six bytes never change under
 * this compatible string, so either kernel can read what the other wrote.
 *
 * After them comes a self-describing extension, &struct vfio_pci_lu_ext,
 * that carries the device's identity (IDs, class, revision) so that the new
 * kernel can check it is handing back the same device:
 *
 * - @magic is %VFIO_PCI_LU_EXT_MAGIC;
 * - @version is %VFIO_PCI_LU_EXT_VERSION; it changes only when a field
 *   changes meaning, and a reader refuses a version it does not know;
 * - @length is the number of bytes of the extension, header included. New
 *   fields are only ever appended, without a version change: a reader
 *   accepts a length at least as large as the extension it knows (and at
 *   most %VFIO_PCI_LU_EXT_MAX_LENGTH) and ignores the bytes it does not
 *   know.
 *
 * KHO memory is zeroed when allocated, and the upstream handler writes only
 * the first six bytes, so an extension that is all zeros means "written by
 * the upstream layout": the reader accepts it without an identity check.
 * Any other extension with a wrong magic, version or length is refused.
 * Version 2 (%VFIO_PCI_LU_EXT_KEEP_VERSION) is written for a device whose
 * state the live update keeps (VFIO_DEVICE_FEATURE_LIVEUPDATE): the
 * extension is followed by &struct vfio_pci_lu_keep, and @length covers
 * both. A device that is reset keeps version 1, which older kernels read; a
 * kept one gets a version that they refuse, rather than hand the device out
 * as if it had been reset.
 *
 * All structures are packed and in the CPU's byte order (both kernels run on
 * the same machine). The blob, &struct vfio_pci_lu_ser, is 290 bytes at the
 * start of a zeroed page; a version 1 extension leaves the last 260 zero.
 *
 * A change that breaks the rules above needs a new compatible string.
 */

/**
 * define VFIO_PCI_LUO_FH_COMPATIBLE - Compatible string of the file handler
 *
 * Names the handler, and so the layout of its blobs, in both kernels; the
 * same as the upstream C proposal's.
 */
#define VFIO_PCI_LUO_FH_COMPATIBLE	"vfio-pci-v1"

/**
 * struct vfio_pci_core_device_ser - Upstream-compatible head of the blob
 * @domain: PCI segment (domain) number of the device
 * @bdf: bus number << 8 | devfn, as PCI_DEVID() builds it
 */
struct vfio_pci_core_device_ser {
	u32 domain;
	u16 bdf;
} __packed;

/**
 * define VFIO_PCI_LU_EXT_MAGIC - &vfio_pci_lu_ext.magic, "VFLU" read as a
 * little-endian u32
 */
#define VFIO_PCI_LU_EXT_MAGIC		0x554c4656
/**
 * define VFIO_PCI_LU_EXT_VERSION - &vfio_pci_lu_ext.version of a device
 * that is reset at freeze
 */
#define VFIO_PCI_LU_EXT_VERSION		1
/**
 * define VFIO_PCI_LU_EXT_KEEP_VERSION - &vfio_pci_lu_ext.version of a device
 * whose state is kept, with &struct vfio_pci_lu_keep
 */
#define VFIO_PCI_LU_EXT_KEEP_VERSION	2
/**
 * define VFIO_PCI_LU_EXT_MAX_LENGTH - Upper bound of &vfio_pci_lu_ext.length
 * that a reader accepts; the blob is one page
 */
#define VFIO_PCI_LU_EXT_MAX_LENGTH	1024

/**
 * struct vfio_pci_lu_identity - What the device is, read from the device
 * @vendor: PCI vendor ID
 * @device: PCI device ID
 * @subsystem_vendor: PCI subsystem vendor ID
 * @subsystem_device: PCI subsystem device ID
 * @class: 24-bit class code (base class, subclass, programming interface)
 * @revision: PCI revision ID
 * @reserved: zero
 */
struct vfio_pci_lu_identity {
	u16 vendor;
	u16 device;
	u16 subsystem_vendor;
	u16 subsystem_device;
	u32 class;
	u8 revision;
	u8 reserved[3];
} __packed;

/**
 * struct vfio_pci_lu_ext - Self-describing extension after the upstream head
 * @magic: %VFIO_PCI_LU_EXT_MAGIC
 * @version: %VFIO_PCI_LU_EXT_VERSION
 * @length: bytes of the extension, this header included
 * @id: identity of the preserved device
 */
struct vfio_pci_lu_ext {
	u32 magic;
	u16 version;
	u16 length;
	struct vfio_pci_lu_identity id;
} __packed;

/**
 * define VFIO_PCI_LU_MODE_RESET - The device is reset at freeze
 */
#define VFIO_PCI_LU_MODE_RESET		0
/**
 * define VFIO_PCI_LU_MODE_KEEP - The device keeps its state through the kexec
 */
#define VFIO_PCI_LU_MODE_KEEP		1
/**
 * define VFIO_PCI_LU_MODE_RUN - The device keeps its state, and its DMA goes
 * on through the kexec (Bus Master on; VFIO no-IOMMU mode only)
 */
#define VFIO_PCI_LU_MODE_RUN		2
/**
 * define VFIO_PCI_LU_CFG_SIZE - Bytes of configuration space that
 * &struct vfio_pci_lu_keep holds: the standard header and capabilities
 */
#define VFIO_PCI_LU_CFG_SIZE		256

/**
 * struct vfio_pci_lu_keep - What a version 2 extension adds for a kept device
 * @mode: %VFIO_PCI_LU_MODE_KEEP or %VFIO_PCI_LU_MODE_RUN
 * @reserved: zero
 * @cfg_size: bytes of @cfg that were read from the device,
 *	      %VFIO_PCI_LU_CFG_SIZE
 * @cfg: the device's configuration space at freeze, after Bus Master was
 *	 cleared (%VFIO_PCI_LU_MODE_KEEP) or kept on (%VFIO_PCI_LU_MODE_RUN),
 *	 which the new kernel compares with the device at retrieve
 */
struct vfio_pci_lu_keep {
	u8 mode;
	u8 reserved;
	u16 cfg_size;
	u8 cfg[VFIO_PCI_LU_CFG_SIZE];
} __packed;

/**
 * struct vfio_pci_lu_ser - Everything preserved for one device file
 * @core: upstream layout, always first
 * @ext: extension, right after it (offset 6)
 * @keep: version 2 only (zero in version 1), right after @ext (offset 30)
 */
struct vfio_pci_lu_ser {
	struct vfio_pci_core_device_ser core;
	struct vfio_pci_lu_ext ext;
	struct vfio_pci_lu_keep keep;
} __packed;

static_assert(sizeof(struct vfio_pci_core_device_ser) == 6);
static_assert(sizeof(struct vfio_pci_lu_identity) == 16);
static_assert(sizeof(struct vfio_pci_lu_ext) == 24);
static_assert(sizeof(struct vfio_pci_lu_keep) == 260);
static_assert(sizeof(struct vfio_pci_lu_ser) == 290);

/**
 * DOC: the list of preserved devices
 *
 * Besides one blob per file, the handler keeps one list of all the devices
 * it preserves, as LUO File-Lifecycle-Bound data under the compatible string
 * %VFIO_PCI_LUO_FLB_COMPATIBLE: &struct vfio_pci_lu_devs_ser, one page made
 * when the first device file is preserved, updated as files are preserved,
 * frozen, reset and unpreserved, and handed over with the files. The new
 * kernel reads it when the handler's module loads, before any file is
 * retrieved, to keep other openers (and, if asked, other drivers) away from
 * those devices, and to learn whether the previous kernel's reset of each
 * device completed. The old kernel uses it to refuse a second file of a
 * preserved device.
 *
 * @magic is %VFIO_PCI_LU_DEVS_MAGIC. Version 2 (%VFIO_PCI_LU_DEVS_VERSION,
 * &struct vfio_pci_lu_dev_ser entries) adds the device's identity and the
 * outcome of its reset at freeze; version 1 (&struct vfio_pci_lu_dev_v1_ser
 * entries, location only) is still read, and its devices count as not reset.
 * A reader that finds another magic or version, or a @count above the
 * version's maximum, ignores the list (the files themselves are still
 * retrieved, and reset at retrieve). The first @count entries are in use and
 * the others are zero; each device is in the list once, and the order of the
 * entries means nothing (an unpreserved device's entry is replaced by the
 * last one). Before the new kernel changes the driver binding of a listed
 * device (the handler's bind_preserved parameter), it compares the entry's
 * identity with the device at its address, and leaves a device that differs
 * alone.
 *
 * An entry's @mode is the device's mode (version 2 lists written before the
 * modes existed have zero there, which is the reset mode): the new kernel
 * makes vfio-pci the only driver of a kept device when it loads, whatever
 * bind_preserved says, since no other driver can take its state over, and
 * a kept device is not reset whatever @reset says.
 * The reset outcome (@reset of an entry) is written by the old kernel until
 * the kexec jumps: %VFIO_PCI_LU_RESET_NONE when the device was preserved,
 * %VFIO_PCI_LU_RESET_QUEUED when its freeze started the reset,
 * %VFIO_PCI_LU_RESET_DONE once the reset and the restore of its
 * configuration completed, %VFIO_PCI_LU_RESET_FAILED when the reset failed
 * or could not take the device's locks in time. The new kernel trusts only
 * %VFIO_PCI_LU_RESET_DONE and resets the device itself at retrieve for any
 * other value. An unfreeze (a cancelled kexec) sets it back to
 * %VFIO_PCI_LU_RESET_NONE.
 */

/**
 * define VFIO_PCI_LUO_FLB_COMPATIBLE - Compatible string of the list of
 * preserved devices, the handler's File-Lifecycle-Bound data
 */
#define VFIO_PCI_LUO_FLB_COMPATIBLE	"vfio-pci-devices-v1"

/**
 * define VFIO_PCI_LU_DEVS_MAGIC - &vfio_pci_lu_devs_ser.magic (both
 * versions), "VFDL" read as a little-endian u32
 */
#define VFIO_PCI_LU_DEVS_MAGIC		0x4c444656
/**
 * define VFIO_PCI_LU_DEVS_VERSION - Version of the list this kernel writes
 */
#define VFIO_PCI_LU_DEVS_VERSION	2
/**
 * define VFIO_PCI_LU_DEVS_MAX - Entries of a version 2 list: those that fit
 * in one 4 KiB page after the header
 */
#define VFIO_PCI_LU_DEVS_MAX		170
/**
 * define VFIO_PCI_LU_DEVS_V1_VERSION - Version of the older list, still read
 */
#define VFIO_PCI_LU_DEVS_V1_VERSION	1
/**
 * define VFIO_PCI_LU_DEVS_V1_MAX - Entries of a version 1 list
 */
#define VFIO_PCI_LU_DEVS_V1_MAX		511

/**
 * define VFIO_PCI_LU_RESET_NONE - &vfio_pci_lu_dev_ser.reset: not reset
 */
#define VFIO_PCI_LU_RESET_NONE		0
/**
 * define VFIO_PCI_LU_RESET_QUEUED - &vfio_pci_lu_dev_ser.reset: the freeze
 * queued the reset, which was not seen to finish
 */
#define VFIO_PCI_LU_RESET_QUEUED	1
/**
 * define VFIO_PCI_LU_RESET_DONE - &vfio_pci_lu_dev_ser.reset: the reset and
 * the restore of the configuration are done
 */
#define VFIO_PCI_LU_RESET_DONE		2
/**
 * define VFIO_PCI_LU_RESET_FAILED - &vfio_pci_lu_dev_ser.reset: the reset
 * failed, or gave up on the device's locks
 */
#define VFIO_PCI_LU_RESET_FAILED	3

/**
 * struct vfio_pci_lu_dev_ser - One preserved device in the list (version 2)
 * @domain: PCI segment (domain) number of the device
 * @bdf: bus number << 8 | devfn, as PCI_DEVID() builds it
 * @reset: outcome of the reset at freeze, a %VFIO_PCI_LU_RESET_* value
 * @mode: %VFIO_PCI_LU_MODE_RESET, %VFIO_PCI_LU_MODE_KEEP or
 *	  %VFIO_PCI_LU_MODE_RUN (zero, reset,
 *	  from writers that did not know the modes)
 * @id: identity of the device when it was preserved
 */
struct vfio_pci_lu_dev_ser {
	u32 domain;
	u16 bdf;
	u8 reset;
	u8 mode;
	struct vfio_pci_lu_identity id;
} __packed;

/**
 * struct vfio_pci_lu_devs_ser - The list of preserved devices (version 2)
 * @magic: %VFIO_PCI_LU_DEVS_MAGIC
 * @version: %VFIO_PCI_LU_DEVS_VERSION
 * @count: entries of @devs in use, the first @count
 * @devs: the preserved devices
 * @reserved: zero
 */
struct vfio_pci_lu_devs_ser {
	u32 magic;
	u16 version;
	u16 count;
	struct vfio_pci_lu_dev_ser devs[VFIO_PCI_LU_DEVS_MAX];
	u8 reserved[8];
} __packed;

/**
 * struct vfio_pci_lu_dev_v1_ser - One preserved device in a version 1 list
 * @domain: PCI segment (domain) number of the device
 * @bdf: bus number << 8 | devfn, as PCI_DEVID() builds it
 * @reserved: zero
 */
struct vfio_pci_lu_dev_v1_ser {
	u32 domain;
	u16 bdf;
	u16 reserved;
} __packed;

/**
 * struct vfio_pci_lu_devs_v1_ser - The list of preserved devices (version 1)
 * @magic: %VFIO_PCI_LU_DEVS_MAGIC
 * @version: %VFIO_PCI_LU_DEVS_V1_VERSION
 * @count: entries of @devs in use, the first @count
 * @devs: the preserved devices
 */
struct vfio_pci_lu_devs_v1_ser {
	u32 magic;
	u16 version;
	u16 count;
	struct vfio_pci_lu_dev_v1_ser devs[VFIO_PCI_LU_DEVS_V1_MAX];
} __packed;

static_assert(sizeof(struct vfio_pci_lu_dev_ser) == 24);
static_assert(sizeof(struct vfio_pci_lu_devs_ser) == 4096);
static_assert(sizeof(struct vfio_pci_lu_dev_v1_ser) == 8);
static_assert(sizeof(struct vfio_pci_lu_devs_v1_ser) == 4096);

#endif /* _LINUX_KHO_ABI_VFIO_PCI_H */
