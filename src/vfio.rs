// SPDX-License-Identifier: GPL-2.0

//! vfio-pci devices, as a live update handler uses them.
//!
//! The few operations that VFIO and vfio-pci offer a live update handler: the vfio-pci device of
//! a device file opened through the VFIO character device (`/dev/vfio/devices/vfioX`), whether
//! that file is bound to iommufd, the vfio-pci device of a PCI function, the freeze, unfreeze
//! and reset of a device under vfio-pci's own locks, and, in the kernel after a live update, the
//! hold-off of the opens of a preserved device ([`Hold`]) and the one file through which it may
//! be opened again ([`PciDevice::open_file`]).
//!
//! The driver's own abstraction, not the kernel crate's: VFIO, vfio-pci-core and vfio-pci may be
//! modules, and the kernel crate, part of vmlinux, cannot call into them. Only the driver logic
//! uses it; every C call of the driver into VFIO is here.
//!
//! C headers: [`include/linux/vfio.h`](srctree/include/linux/vfio.h),
//! [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h)

use core::ptr::NonNull;
use kernel::{
    bindings,
    error::{from_err_ptr, to_result},
    fs::File,
    pci,
    prelude::*,
    sync::aref::ARef,
    types::Opaque,
};

/// The raw `struct pci_dev` of `pdev`.
pub(crate) fn raw_pci(pdev: &pci::Device) -> *mut bindings::pci_dev {
    // `pci::Device` is a transparent wrapper of `struct pci_dev` (rust/kernel/pci.rs).
    core::ptr::from_ref(pdev).cast_mut().cast()
}

/// A device of the vfio-pci driver itself (`struct vfio_pci_core_device` whose ops are vfio-pci's,
/// not a variant driver's).
///
/// # Invariants
///
/// A `&PciDevice` is only made for a device whose registration is held (by an open device file,
/// or by a [`Registered`]) for at least the lifetime of the reference: the device is registered,
/// and vfio-pci stays bound to its PCI function.
#[repr(transparent)]
pub(crate) struct PciDevice(Opaque<bindings::vfio_pci_core_device>);

// SAFETY: The methods of `PciDevice` may be called from any thread; the C side locks what needs
// it.
unsafe impl Sync for PciDevice {}
// SAFETY: See above.
unsafe impl Send for PciDevice {}

impl PciDevice {
    fn as_raw(&self) -> *mut bindings::vfio_pci_core_device {
        self.0.get()
    }

    /// # Safety
    ///
    /// `ptr` is a vfio-pci device whose registration is held for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::vfio_pci_core_device) -> &'a Self {
        // SAFETY: `PciDevice` is a transparent wrapper; the caller guarantees the invariants.
        unsafe { &*ptr.cast() }
    }

    /// The vfio-pci device of `file`, if it is a VFIO device file opened through the device's
    /// character device (or made by [`PciDevice::open_file`]) of a device of vfio-pci itself.
    /// Device files obtained with `VFIO_GROUP_GET_DEVICE_FD`, files of variant drivers and all
    /// other files give [`None`].
    pub(crate) fn from_file(file: &File) -> Option<&PciDevice> {
        // SAFETY: `file` is a valid file.
        let dev = unsafe { bindings::vfio_pci_device_from_file(file.as_ptr()) };
        // SAFETY: An open VFIO device file holds the device's registration until it is released,
        // which cannot happen while `file` is borrowed.
        (!dev.is_null()).then(|| unsafe { PciDevice::from_raw(dev) })
    }

    /// The vfio-pci device of `pdev`, if vfio-pci is bound to it, with a registration reference.
    pub(crate) fn get(pdev: &pci::Device) -> Option<Registered> {
        // SAFETY: `pdev` is a valid PCI function; the call takes its device lock.
        let dev = unsafe { bindings::vfio_pci_device_get(raw_pci(pdev)) };
        // INVARIANT: `vfio_pci_device_get` returns the device with a registration reference.
        NonNull::new(dev).map(Registered)
    }

    /// The PCI function.
    pub(crate) fn pci(&self) -> &pci::Device {
        // SAFETY: vfio-pci sets `pdev` before registering the device, and the function outlives
        // the VFIO device; `pci::Device` is a transparent wrapper of `struct pci_dev`.
        unsafe { &*(*self.as_raw()).pdev.cast() }
    }

    /// Quiesces the device and blocks its user for a live update: clears bus mastering (in the run
    /// mode, has the PCI core keep it on through the kexec instead), zaps the BAR mmaps, revokes the dma-bufs, and makes the device's ioctls, reads, writes and mmaps fail
    /// with `EIO` until [`PciDevice::unfreeze`]. Returns whether bus mastering was on.
    ///
    /// Fails, and changes nothing, with [`EBUSY`] if userspace has interrupts enabled (checked
    /// under the lock with which `VFIO_DEVICE_SET_IRQS` enables them) and with [`EINVAL`] if the
    /// device is not in D0. Takes vfio-pci's locks; may sleep.
    pub(crate) fn freeze(&self) -> Result<bool> {
        let mut master = false;
        // SAFETY: By the type invariants, the device is registered; it is open, through the file
        // being frozen; `master` is valid for writes.
        to_result(unsafe { bindings::vfio_pci_core_lu_freeze(self.as_raw(), &mut master) })?;
        Ok(master)
    }

    /// Gives user access back after [`PciDevice::freeze`] (a cancelled kexec), and sets bus
    /// mastering back on if `master`, as [`PciDevice::freeze`] found it.
    pub(crate) fn unfreeze(&self, master: bool) {
        // SAFETY: By the type invariants, the device is registered; it was frozen.
        unsafe { bindings::vfio_pci_core_lu_unfreeze(self.as_raw(), master) };
    }

    /// Resets the function with bus mastering off (cleared, the configuration saved, the function
    /// reset and its configuration restored), under vfio-pci's locks. Fails with [`EAGAIN`] if one
    /// of the locks is taken (vfio-pci's device set lock, the function's or its upstream bridge's),
    /// without waiting for it. Sleeps for the reset (100 ms or more).
    pub(crate) fn reset(&self) -> Result {
        // SAFETY: By the type invariants, the device is registered.
        to_result(unsafe { bindings::vfio_pci_core_lu_reset(self.as_raw()) })
    }

    /// The live update preserves a file of the device: returns the mode that its user chose with
    /// `VFIO_DEVICE_FEATURE_LIVEUPDATE` (`VFIO_DEVICE_LIVEUPDATE_RESET`, `_KEEP` or `_RUN`), which
    /// cannot change from now on until [`PciDevice::lu_unpreserve`]. Fails with [`EBUSY`] if a
    /// file of the device is preserved already, or in the run mode while interrupts are enabled,
    /// and with [`EOPNOTSUPP`] if the device's state can no longer be kept.
    pub(crate) fn lu_preserve(&self) -> Result<u8> {
        // SAFETY: By the type invariants, the device is registered; the call takes its device set
        // lock.
        let mode = unsafe { bindings::vfio_pci_lu_preserve(self.as_raw()) };
        to_result(mode)?;
        // CAST: vfio-pci's modes are 0, 1 and 2.
        Ok(mode as u8)
    }

    /// Ends [`PciDevice::lu_preserve`]: unpreserve, or a preserve that failed after it.
    pub(crate) fn lu_unpreserve(&self) {
        // SAFETY: By the type invariants, the device is registered.
        unsafe { bindings::vfio_pci_lu_unpreserve(self.as_raw()) };
    }

    /// Tells vfio-pci what `VFIO_DEVICE_FEATURE_LIVEUPDATE` reports on the retrieved file of the
    /// device: the mode it was preserved with, whether its state was kept, and whether its DMA
    /// went on (the first open then leaves bus mastering on). Returns whether vfio-pci reports the
    /// DMA as going on: it stops a running device that it does not drive in no-IOMMU mode.
    pub(crate) fn lu_retrieved(&self, mode: u8, kept: bool, running: bool) -> bool {
        // SAFETY: By the type invariants, the device is registered.
        let flags = unsafe { bindings::vfio_pci_lu_retrieved(self.as_raw(), mode, kept, running) };
        flags & bindings::VFIO_DEVICE_LIVEUPDATE_RUNNING != 0
    }

    /// Opens the one file through which a device that [`Hold`] holds off may be opened: a file
    /// equivalent to one opened through the character device (device access blocked until
    /// `VFIO_DEVICE_BIND_IOMMUFD`), whose bind ends the hold-off. Fails with [`ENOENT`] if the
    /// device is not held (or its hold-off is over), and with [`EBUSY`] if it has such a file
    /// already.
    pub(crate) fn open_file(&self) -> Result<ARef<File>> {
        // SAFETY: By the type invariants, the device is registered; `vdev` is its VFIO device.
        let file = from_err_ptr(unsafe {
            bindings::vfio_liveupdate_open_file(&raw mut (*self.as_raw()).vdev)
        })?;
        // SAFETY: A new file with one reference, which we own.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) })
    }
}

/// Whether the device has been opened through `file`: `VFIO_DEVICE_BIND_IOMMUFD` succeeded on
/// this cdev file (or it came from `VFIO_GROUP_GET_DEVICE_FD`). False for non-VFIO files.
pub(crate) fn file_is_bound(file: &File) -> bool {
    // SAFETY: `file` is a valid file.
    unsafe { bindings::vfio_device_file_is_bound(file.as_ptr()) }
}

/// A registration reference on a vfio-pci device, from [`PciDevice::get`].
///
/// # Invariants
///
/// The pointer is a vfio-pci device whose registration reference this object owns.
pub(crate) struct Registered(NonNull<bindings::vfio_pci_core_device>);

// SAFETY: A registration reference may be dropped from any thread.
unsafe impl Send for Registered {}
// SAFETY: `&Registered` only gives `&PciDevice`, which is `Sync`.
unsafe impl Sync for Registered {}

impl core::ops::Deref for Registered {
    type Target = PciDevice;

    fn deref(&self) -> &PciDevice {
        // SAFETY: By the type invariants, the registration is held while `self` lives.
        unsafe { PciDevice::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, we own one registration reference of `vdev`.
        unsafe { bindings::vfio_device_put_registration(&raw mut (*self.0.as_ptr()).vdev) };
    }
}

/// The hold-off of the opens of a device that the previous kernel preserved: until the file from
/// [`PciDevice::open_file`] is bound, or this is dropped, every other open of the VFIO device of
/// the function fails with `EBUSY` (through its character device, `VFIO_GROUP_GET_DEVICE_FD` or
/// the bind of another file), whether vfio-pci is bound to the function yet or not.
///
/// # Invariants
///
/// `pdev` is held by VFIO (`vfio_liveupdate_hold`) from [`Hold::new`] until drop.
pub(crate) struct Hold {
    pdev: ARef<pci::Device>,
}

impl Hold {
    /// Holds off the opens of `pdev`. Fails with [`EEXIST`] if it is held already.
    pub(crate) fn new(pdev: ARef<pci::Device>) -> Result<Self> {
        // SAFETY: `pdev` is a valid PCI function, referenced by `pdev` for as long as `Self`.
        to_result(unsafe { bindings::vfio_liveupdate_hold(&raw mut (*raw_pci(&pdev)).dev) })?;
        // INVARIANT: Held, above.
        Ok(Self { pdev })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `pdev` is held.
        unsafe { bindings::vfio_liveupdate_unhold(&raw mut (*raw_pci(&self.pdev)).dev) };
    }
}
