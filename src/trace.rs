// SPDX-License-Identifier: GPL-2.0

//! The tracepoints of the driver (`include/trace/events/vfio_pci_liveupdate.h`, created in
//! `vfio_pci_liveupdate_events.c`): how long each phase took, per device. `make bench` reads them.

use crate::abi::Location;
use kernel::{prelude::*, tracepoint::declare_trace};

declare_trace! {
    /// # Safety
    ///
    /// Always safe to call.
    unsafe fn vfio_pci_lu_freeze(domain: u32, bus: u8, devfn: u8, reset: u8, us: u64, ret: c_int);
    /// # Safety
    ///
    /// Always safe to call.
    unsafe fn vfio_pci_lu_reset(
        domain: u32,
        bus: u8,
        devfn: u8,
        when: u8,
        us: u64,
        waited_us: u64,
        ret: c_int
    );
    /// # Safety
    ///
    /// Always safe to call.
    unsafe fn vfio_pci_lu_freeze_all(devices: u32, serial: bool, us: u64, failed: u32);
    /// # Safety
    ///
    /// Always safe to call.
    unsafe fn vfio_pci_lu_retrieve(domain: u32, bus: u8, devfn: u8, us: u64, ret: c_int);
}

fn ret_of(res: &Result) -> c_int {
    res.as_ref().err().map_or(0, |e| e.to_errno())
}

/// What a freeze did about the device's reset.
#[derive(Clone, Copy)]
pub(crate) enum FreezeReset {
    /// Queued it (parallel mode).
    Parallel = 0,
    /// Did it (serial mode).
    Serial = 1,
    /// None: the device keeps its state.
    None = 2,
}

/// The freeze of the device at `loc` ended with `res` after `us` microseconds; `reset` says what
/// it did about the device's reset.
pub(crate) fn freeze(loc: &Location, reset: FreezeReset, us: u64, res: &Result) {
    // SAFETY: Always safe to call.
    unsafe { vfio_pci_lu_freeze(loc.domain, loc.bus, loc.devfn, reset as u8, us, ret_of(res)) }
}

/// Who reset a device, for [`reset`].
#[derive(Clone, Copy)]
pub(crate) enum ResetBy {
    /// A freeze in serial mode.
    Serial = 0,
    /// A job that a freeze queued (parallel mode).
    Parallel = 1,
    /// The new kernel's retrieve.
    Retrieve = 2,
}

/// A reset of the device at `loc` ended with `res` after `us` microseconds; it began `waited_us`
/// after it was queued.
pub(crate) fn reset(loc: &Location, by: ResetBy, us: u64, waited_us: u64, res: &Result) {
    // SAFETY: Always safe to call.
    unsafe {
        vfio_pci_lu_reset(
            loc.domain,
            loc.bus,
            loc.devfn,
            by as u8,
            us,
            waited_us,
            ret_of(res),
        )
    }
}

/// The freezes and resets of `devices` devices took `us` microseconds in all; `failed` resets
/// failed or did not finish.
pub(crate) fn freeze_all(devices: u32, serial: bool, us: u64, failed: u32) {
    // SAFETY: Always safe to call.
    unsafe { vfio_pci_lu_freeze_all(devices, serial, us, failed) }
}

/// The retrieve of the device at `loc` ended with `res` after `us` microseconds.
pub(crate) fn retrieve(loc: &Location, us: u64, res: &Result) {
    // SAFETY: Always safe to call.
    unsafe { vfio_pci_lu_retrieve(loc.domain, loc.bus, loc.devfn, us, ret_of(res)) }
}
