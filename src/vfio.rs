// SPDX-License-Identifier: GPL-2.0

//! VFIO devices, and the vfio-pci devices among them.
//!
//! What a live update handler needs of VFIO: the device behind a device file opened through the
//! VFIO character device (`/dev/vfio/devices/vfioX`), the PCI function behind a vfio-pci device,
//! a search of the registered devices, and a new device file equivalent to opening the cdev.
//!
//! The driver's own abstraction of VFIO, not the kernel crate's: VFIO, vfio-pci-core and vfio-pci
//! may be modules, and the kernel crate, part of vmlinux, cannot call into them. Only the driver
//! logic uses it; every C call is here.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h)

use kernel::{
    bindings, device,
    error::{from_err_ptr, to_result},
    fs::File,
    pci,
    prelude::*,
    sync::aref::ARef,
    types::Opaque,
};
use core::ptr::NonNull;

/// A registered VFIO device (`struct vfio_device`).
///
/// # Invariants
///
/// A `&Device` is only made for a `struct vfio_device` whose registration is held (by an open
/// device file, or by a [`Registered`]) for at least the lifetime of the reference: the device is
/// registered, and the driver that registered it stays bound to the parent device.
#[repr(transparent)]
pub(crate) struct Device(Opaque<bindings::vfio_device>);

// SAFETY: The methods of `Device` may be called from any thread; the C side locks what needs it.
unsafe impl Sync for Device {}
// SAFETY: See above.
unsafe impl Send for Device {}

impl Device {
    fn as_raw(&self) -> *mut bindings::vfio_device {
        self.0.get()
    }

    /// # Safety
    ///
    /// `ptr` is a `struct vfio_device` whose registration is held for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::vfio_device) -> &'a Self {
        // SAFETY: `Device` is a transparent wrapper; the caller guarantees the invariants.
        unsafe { &*ptr.cast() }
    }

    /// The VFIO device of `file`, if it is a VFIO device file opened through the device's
    /// character device (or made by [`Device::open_cdev_file`]). Device files obtained with
    /// `VFIO_GROUP_GET_DEVICE_FD`, and all other files, give [`None`].
    pub(crate) fn from_cdev_file(file: &File) -> Option<&Device> {
        // SAFETY: `file` is a valid file.
        let dev = unsafe { bindings::vfio_device_from_cdev_file(file.as_ptr()) };
        // SAFETY: An open VFIO device file holds the device's registration until it is released,
        // which cannot happen while `file` is borrowed.
        (!dev.is_null()).then(|| unsafe { Device::from_raw(dev) })
    }

    /// Whether the device has been opened through `file`: `VFIO_DEVICE_BIND_IOMMUFD` succeeded on
    /// this cdev file (or it came from `VFIO_GROUP_GET_DEVICE_FD`). False for non-VFIO files.
    pub(crate) fn file_is_bound(file: &File) -> bool {
        // SAFETY: `file` is a valid file.
        unsafe { bindings::vfio_device_file_is_bound(file.as_ptr()) }
    }

    /// Finds a registered VFIO device whose parent is a PCI function accepted by `pred`.
    ///
    /// `pred` runs for registered devices in turn, with no lock held; it must not sleep.
    pub(crate) fn find_by_pci<F: Fn(&pci::Device) -> bool>(pred: F) -> Option<Registered> {
        /// # Safety
        ///
        /// `dev` is a `struct vfio_device` in the VFIO device class, with a reference held, and
        /// `data` points to an `F`.
        unsafe extern "C" fn matcher<F: Fn(&pci::Device) -> bool>(
            dev: *mut bindings::vfio_device,
            data: *const c_void,
        ) -> bool {
            // SAFETY: By the safety requirements, `dev` is valid and holds a reference on its
            // parent for the duration of the call.
            let Some(pdev) = (unsafe { parent_pci(dev) }) else {
                return false;
            };
            // SAFETY: By the safety requirements, `data` points to the `F` below.
            let pred = unsafe { &*data.cast::<F>() };
            pred(pdev)
        }

        // SAFETY: `matcher::<F>` has the expected signature and `pred` outlives the call.
        let dev = unsafe {
            bindings::vfio_find_device(Some(matcher::<F>), (&raw const pred).cast::<c_void>())
        };
        // INVARIANT: `vfio_find_device` returns the device with a registration reference.
        NonNull::new(dev).map(Registered)
    }

    /// The PCI function behind this device, if its parent is one.
    pub(crate) fn pci_dev(&self) -> Option<&pci::Device> {
        // SAFETY: By the type invariants, the device is registered, so it is valid and holds a
        // reference on its parent for as long as `self` is borrowed.
        unsafe { parent_pci(self.as_raw()) }
    }

    /// The vfio-pci device, if this device was registered by the vfio-pci driver itself (not by
    /// a variant driver built on vfio-pci-core).
    pub(crate) fn as_vfio_pci(&self) -> Option<&PciCoreDevice> {
        // A PCI function's, first.
        self.pci_dev()?;
        // SAFETY: By the type invariants, the device is registered, so `ops` is valid.
        let ops_name = unsafe { (*(*self.as_raw()).ops).name };
        // SAFETY: By the type invariants, the driver that registered this device is bound to its
        // parent for the lifetime of `self`, so the parent's `driver` is
        // stable and valid.
        let drv = unsafe { (*(*self.as_raw()).dev).driver };
        if ops_name.is_null() || drv.is_null() {
            return None;
        }
        // SAFETY: `ops_name` and the driver's name are valid NUL-terminated strings.
        let (ops_name, drv_name) = unsafe {
            (
                CStr::from_char_ptr(ops_name),
                CStr::from_char_ptr((*drv).name),
            )
        };
        // Driver names are unique on a bus, so the function is bound to vfio-pci proper; its
        // device ops are vfio-pci's own, not a variant driver's.
        if drv_name != c"vfio-pci" || ops_name != c"vfio-pci" {
            return None;
        }
        // SAFETY: vfio-pci allocates every VFIO device it registers as the `vdev` member of a
        // `struct vfio_pci_core_device`, which lives as long as the VFIO device.
        Some(unsafe {
            &*kernel::container_of!(self.as_raw(), bindings::vfio_pci_core_device, vdev).cast()
        })
    }

    /// Opens a new file for the device, equivalent to opening its character device: device
    /// access through it stays blocked until `VFIO_DEVICE_BIND_IOMMUFD`. `name` is the name of
    /// its anonymous inode.
    pub(crate) fn open_cdev_file(&self, name: &'static CStr) -> Result<ARef<File>> {
        // SAFETY: By the type invariants, the device is registered; `name` is a static string.
        let file = from_err_ptr(unsafe {
            bindings::vfio_device_cdev_open_file(self.as_raw(), name.as_char_ptr())
        })?;
        // SAFETY: A new file with one reference, which we own.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) })
    }
}

/// A check of every open of a VFIO device by userspace.
///
/// Registered with [`OpenGateRegistration`], [`OpenGate::check`] runs for every open of a
/// registered device through its character device or `VFIO_GROUP_GET_DEVICE_FD`; an error refuses
/// the open with it. Opens made with [`Device::open_cdev_file`] are not checked.
pub(crate) trait OpenGate: Send + Sync {
    /// Whether `dev` may be opened. Runs in process context and may sleep; it must not call into
    /// VFIO.
    fn check(&self, dev: &Device) -> Result;
}

/// A registered [`OpenGate`]: registers on creation, unregisters on drop (waiting for the checks
/// that are running). VFIO takes one gate at a time.
///
/// # Invariants
///
/// `gate` is registered with VFIO from a successful [`OpenGateRegistration::register`] until drop.
#[pin_data(PinnedDrop)]
pub(crate) struct OpenGateRegistration<T: OpenGate> {
    #[pin]
    gate: Opaque<bindings::vfio_open_gate>,
    data: T,
}

// SAFETY: VFIO's gate functions may be called from any thread; `T` is `Send`.
unsafe impl<T: OpenGate> Send for OpenGateRegistration<T> {}
// SAFETY: `&OpenGateRegistration` only gives `&T`, and `T` is `Sync`.
unsafe impl<T: OpenGate> Sync for OpenGateRegistration<T> {}

impl<T: OpenGate> OpenGateRegistration<T> {
    /// Registers `data` as VFIO's open gate. Fails with [`EBUSY`] if another gate is registered.
    pub(crate) fn register(data: T) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            data,
            gate <- Opaque::try_ffi_init(|slot: *mut bindings::vfio_open_gate| {
                // SAFETY: The initializer may write to `slot`.
                unsafe {
                    slot.write(bindings::vfio_open_gate {
                        check: Some(Self::check),
                    })
                };
                // SAFETY: `slot` is initialised and pinned; it is unregistered in `drop` before
                // its memory goes away, and `data` is initialised before it.
                // INVARIANT: On success the gate is registered.
                to_result(unsafe { bindings::vfio_register_open_gate(slot) })
            }),
        })
    }

    /// # Safety
    ///
    /// `gate` is the `gate` field of a registered `Self`; `device` is a VFIO device whose
    /// registration is held for the duration of the call.
    unsafe extern "C" fn check(
        gate: *mut bindings::vfio_open_gate,
        device: *mut bindings::vfio_device,
    ) -> c_int {
        // SAFETY: By the safety requirements, `gate` is the `gate` field of a `Self`, which stays
        // alive while registered; `Opaque<T>` is transparent over `T`.
        let this = unsafe {
            &*kernel::container_of!(gate.cast::<Opaque<bindings::vfio_open_gate>>(), Self, gate)
        };
        // SAFETY: By the safety requirements, the device's registration is held during the call.
        let dev = unsafe { Device::from_raw(device) };
        match this.data.check(dev) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
}

#[pinned_drop]
impl<T: OpenGate> PinnedDrop for OpenGateRegistration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants, `gate` is registered.
        unsafe { bindings::vfio_unregister_open_gate(self.gate.get()) };
    }
}

/// The PCI function that is the parent of a VFIO device, if its parent is one.
///
/// # Safety
///
/// `dev` is a valid `struct vfio_device` whose parent device (`dev->dev`, set before
/// registration, referenced while the VFIO device lives) stays valid for `'a`.
unsafe fn parent_pci<'a>(dev: *mut bindings::vfio_device) -> Option<&'a pci::Device> {
    // SAFETY: By the safety requirements, `dev` and its parent are valid for `'a`.
    let parent: &device::Device = unsafe { device::Device::from_raw((*dev).dev) };
    <&pci::Device>::try_from(parent).ok()
}

/// A registration reference on a VFIO device, from [`Device::find_by_pci`].
///
/// # Invariants
///
/// The pointer is a `struct vfio_device` whose registration reference this object owns.
pub(crate) struct Registered(NonNull<bindings::vfio_device>);

// SAFETY: A registration reference may be dropped from any thread.
unsafe impl Send for Registered {}
// SAFETY: `&Registered` only gives `&Device`, which is `Sync`.
unsafe impl Sync for Registered {}

impl core::ops::Deref for Registered {
    type Target = Device;

    fn deref(&self) -> &Device {
        // SAFETY: By the type invariants, the registration is held while `self` lives.
        unsafe { Device::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, we own one registration reference.
        unsafe { bindings::vfio_device_put_registration(self.0.as_ptr()) };
    }
}

/// How userspace has set up the interrupts of a vfio-pci device (`irq_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IrqMode {
    /// No interrupts enabled.
    None,
    /// Legacy INTx.
    Intx,
    /// MSI.
    Msi,
    /// MSI-X.
    Msix,
}

/// A device of the vfio-pci driver (`struct vfio_pci_core_device`).
///
/// # Invariants
///
/// Only made by [`Device::as_vfio_pci`], from a [`Device`] whose invariants it shares.
#[repr(transparent)]
pub(crate) struct PciCoreDevice(Opaque<bindings::vfio_pci_core_device>);

impl PciCoreDevice {
    fn as_raw(&self) -> *mut bindings::vfio_pci_core_device {
        self.0.get()
    }

    /// The PCI function.
    pub(crate) fn pci(&self) -> &pci::Device {
        // SAFETY: vfio-pci sets `pdev` before registering the device, and the function outlives
        // the VFIO device.
        unsafe { &*(*self.as_raw()).pdev.cast() }
    }

    /// Takes the lock of the device's VFIO device set, which vfio-pci holds across open, close
    /// and reset of the devices of the set.
    pub(crate) fn lock(&self) -> PciCoreGuard<'_> {
        // SAFETY: By the type invariants, the device is registered, so `dev_set` is valid.
        unsafe { bindings::mutex_lock(&raw mut (*(*self.as_raw()).vdev.dev_set).lock) };
        // INVARIANT: The lock is held.
        PciCoreGuard(self)
    }

    /// Takes the lock of the device's VFIO device set if it is free, without sleeping.
    pub(crate) fn try_lock(&self) -> Option<PciCoreGuard<'_>> {
        // SAFETY: By the type invariants, the device is registered, so `dev_set` is valid.
        let locked =
            unsafe { bindings::mutex_trylock(&raw mut (*(*self.as_raw()).vdev.dev_set).lock) };
        if locked == 0 {
            return None;
        }
        // INVARIANT: `mutex_trylock` returned 1: the lock is held. (A guard is made only then:
        // dropping one unlocks.)
        Some(PciCoreGuard(self))
    }
}

/// A vfio-pci device with its device-set lock held.
///
/// # Invariants
///
/// The device set lock of the device is held by this object and released on drop.
pub(crate) struct PciCoreGuard<'a>(&'a PciCoreDevice);

impl PciCoreGuard<'_> {
    /// The interrupt mode userspace has set with `VFIO_DEVICE_SET_IRQS`, as a snapshot for
    /// messages: vfio-pci changes it under its `igate` lock, which this does not take
    /// ([`PciCoreGuard::freeze_user_access`] checks it under that lock).
    pub(crate) fn irq_mode(&self) -> IrqMode {
        // SAFETY: The device is valid; `irq_type` is an `int`, read once, without the lock that
        // covers its changes (a snapshot, as documented).
        let t = unsafe { core::ptr::read_volatile(&raw const (*self.0.as_raw()).irq_type) };
        // CAST: The IRQ indices are small constants.
        match t as u32 {
            bindings::VFIO_PCI_INTX_IRQ_INDEX => IrqMode::Intx,
            bindings::VFIO_PCI_MSI_IRQ_INDEX => IrqMode::Msi,
            bindings::VFIO_PCI_MSIX_IRQ_INDEX => IrqMode::Msix,
            _ => IrqMode::None,
        }
    }

    /// Blocks user access to the device before a live update resets it: zaps the BAR mmaps,
    /// revokes the dma-bufs, and makes the device's ioctls, reads, writes and mmaps fail with
    /// `EIO` until [`PciCoreGuard::unfreeze_user_access`]. Fails with [`EBUSY`], and blocks
    /// nothing, if userspace has interrupts enabled; vfio-pci checks that under the lock with
    /// which `VFIO_DEVICE_SET_IRQS` enables them, so no call racing with this one enables them
    /// after it.
    pub(crate) fn freeze_user_access(&self) -> Result {
        // SAFETY: The device is valid and, by the type invariants, its set lock is held, as the
        // function requires.
        to_result(unsafe { bindings::vfio_pci_core_lu_freeze(self.0.as_raw()) })
    }

    /// Gives user access back after [`PciCoreGuard::freeze_user_access`] (a cancelled kexec).
    pub(crate) fn unfreeze_user_access(&self) {
        // SAFETY: As in `freeze_user_access`.
        unsafe { bindings::vfio_pci_core_lu_unfreeze(self.0.as_raw()) };
    }
}

impl Drop for PciCoreGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, we hold the lock.
        unsafe { bindings::mutex_unlock(&raw mut (*(*self.0.as_raw()).vdev.dev_set).lock) };
    }
}
