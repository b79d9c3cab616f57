// SPDX-License-Identifier: GPL-2.0

//! Driver binding of a PCI function, as the driver core's sysfs files do it: the name of the bound
//! driver, `driver_override` and a driver probe.
//!
//! Only this driver needs these, to make vfio-pci the driver of the devices a previous kernel
//! preserved (module parameter `bind_preserved`) and to say why retrieve found no vfio-pci
//! device; they are the driver's own abstraction, kept apart from its logic.
//!
//! C header: [`include/linux/device.h`](srctree/include/linux/device.h)

use crate::vfio::raw_pci;
use kernel::{bindings, error::to_result, pci, prelude::*, str::CString};

/// The `struct device` of `pdev`.
fn raw_dev(pdev: &pci::Device) -> *mut bindings::device {
    // SAFETY: `raw_pci` is a valid `struct pci_dev`; only the address of its field is taken.
    unsafe { &raw mut (*raw_pci(pdev)).dev }
}

/// A copy of the name of the driver bound to `pdev`, or [`None`] if there is none, read under
/// the device lock; [`EBUSY`] if someone else holds that lock.
pub(crate) fn driver_name(pdev: &pci::Device) -> Result<Option<CString>> {
    let raw = raw_pci(pdev);
    // SAFETY: `raw` is a valid `struct pci_dev`.
    if unsafe { bindings::pci_dev_trylock(raw) } == 0 {
        return Err(EBUSY);
    }
    // SAFETY: The device lock is held: the driver stays bound, and its name valid, until the
    // unlock below.
    let name = unsafe {
        let drv = (*raw).dev.driver;
        (!drv.is_null()).then(|| CString::try_from(CStr::from_char_ptr((*drv).name)))
    };
    // SAFETY: Locked above.
    unsafe { bindings::pci_dev_unlock(raw) };
    Ok(name.transpose()?)
}

/// Sets the `driver_override` of `pdev`: from now on only the driver called `name` binds to it.
/// A driver already bound stays bound.
pub(crate) fn set_driver_override(pdev: &pci::Device, name: &CStr) -> Result {
    // SAFETY: `raw_dev` is a valid `struct device`; `name` is valid for `len` bytes, and the
    // function copies it.
    to_result(unsafe {
        bindings::__device_set_driver_override(
            raw_dev(pdev),
            name.as_char_ptr(),
            name.to_bytes().len(),
        )
    })
}

/// Binds `pdev` to a driver that matches it, if it has none, as a write of its address to
/// `/sys/bus/pci/drivers_probe` does. Returns whether a driver is bound afterwards.
pub(crate) fn attach_driver(pdev: &pci::Device) -> Result<bool> {
    // SAFETY: `raw_dev` is a valid `struct device`; `device_attach` takes the device lock.
    let ret = unsafe { bindings::device_attach(raw_dev(pdev)) };
    to_result(ret.min(0))?;
    Ok(ret > 0)
}
