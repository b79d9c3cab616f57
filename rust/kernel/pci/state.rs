// SPDX-License-Identifier: GPL-2.0

//! Where a PCI function sits, what state it is in, and the locks of a reset.
//!
//! C header: [`include/linux/pci.h`](srctree/include/linux/pci.h)

use super::{Device, Vendor};
use crate::{
    bindings,
    error::{code::*, Result},
    ffi::c_int,
    sync::aref::ARef, //
};
use core::ptr::NonNull;

/// PCI power state of a function (`pci_power_t`), as the PCI core last recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// D0, fully on.
    D0,
    /// D1.
    D1,
    /// D2.
    D2,
    /// D3hot.
    D3Hot,
    /// D3cold.
    D3Cold,
    /// Unknown, or an error reading it.
    Unknown,
}

impl PowerState {
    // The values of `PCI_D0` .. `PCI_D3cold` in `include/linux/pci.h`, which bindgen cannot
    // see through their `__force` casts.
    fn from_raw(state: bindings::pci_power_t) -> Self {
        match state {
            0 => Self::D0,
            1 => Self::D1,
            2 => Self::D2,
            3 => Self::D3Hot,
            4 => Self::D3Cold,
            _ => Self::Unknown,
        }
    }
}

impl Device {
    /// Returns the PCI segment (domain) number of the function.
    #[inline]
    pub fn domain(&self) -> u32 {
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`, whose `bus` is
        // valid for the device's lifetime.
        let domain = unsafe { bindings::pci_domain_nr((*self.as_raw()).bus) };
        // CAST: Domain numbers are never negative.
        domain as u32
    }

    /// Returns the number of the bus the function sits on.
    #[inline]
    pub fn bus_number(&self) -> u8 {
        // CAST: The high byte of the 16-bit bus/devfn value is the bus number.
        (self.dev_id() >> 8) as u8
    }

    /// Returns the device and function number, `PCI_DEVFN(slot, func)`.
    #[inline]
    pub fn devfn(&self) -> u8 {
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`.
        unsafe { (*self.as_raw()).devfn as u8 }
    }

    /// Returns the power state the PCI core last recorded for the function.
    #[inline]
    pub fn power_state(&self) -> PowerState {
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`; the field is
        // read once.
        PowerState::from_raw(unsafe { core::ptr::read_volatile(&(*self.as_raw()).current_state) })
    }

    /// Returns whether the function is an SR-IOV virtual function.
    #[inline]
    pub fn is_virtfn(&self) -> bool {
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`; `is_virtfn`
        // is set before the device is added and never changes.
        unsafe { (*self.as_raw()).is_virtfn() != 0 }
    }

    /// Returns whether this is an Intel display device (integrated graphics).
    #[inline]
    pub fn is_intel_display(&self) -> bool {
        self.vendor_id() == Vendor::INTEL
            // The base class is the top byte of the 24-bit class code.
            && self.pci_class().as_raw() >> 16 == bindings::PCI_BASE_CLASS_DISPLAY
    }

    /// Reads the function's command register from the device (`0xffff` if the read fails).
    ///
    /// Read from the device, not from the PCI core's record of it: a user of the function (a VMM
    /// through vfio-pci) may have changed it with a configuration write.
    pub fn command(&self) -> u16 {
        let mut cmd: u16 = 0;
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`; `cmd` is a
        // valid `u16` to write to.
        let ret = unsafe {
            bindings::pci_read_config_word(self.as_raw(), bindings::PCI_COMMAND as i32, &mut cmd)
        };
        if ret == 0 {
            cmd
        } else {
            u16::MAX
        }
    }

    /// Reads the configuration dword at `offset` from the device: whoever drives the function,
    /// in any context where the PCI core may access its configuration space.
    ///
    /// Fails with [`EINVAL`] for an offset that is not dword aligned or beyond the function's
    /// configuration space, and with [`EIO`] if the access fails (the device is gone, for
    /// example). Unlike userspace's accesses, it is not held off while the PCI core resets the
    /// function.
    pub fn read_config_dword(&self, offset: u16) -> Result<u32> {
        self.check_config_offset(offset)?;
        let mut val: u32 = 0;
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`; `val` is a
        // valid `u32` to write to.
        let ret = unsafe {
            bindings::pci_read_config_dword(self.as_raw(), c_int::from(offset), &mut val)
        };
        if ret == 0 {
            Ok(val)
        } else {
            Err(EIO)
        }
    }

    /// Writes the configuration dword at `offset` of the device: as [`Device::read_config_dword`].
    ///
    /// The PCI core and the function's driver may have the register cached; only the caller
    /// knows whether that matters.
    pub fn write_config_dword(&self, offset: u16, val: u32) -> Result {
        self.check_config_offset(offset)?;
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`.
        let ret =
            unsafe { bindings::pci_write_config_dword(self.as_raw(), c_int::from(offset), val) };
        if ret == 0 {
            Ok(())
        } else {
            Err(EIO)
        }
    }

    fn check_config_offset(&self, offset: u16) -> Result {
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`; `cfg_size` is
        // set at enumeration and never changes.
        let size = unsafe { (*self.as_raw()).cfg_size };
        if offset % 4 != 0 || i32::from(offset) + 4 > size {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Returns whether MSI or MSI-X is enabled, as the PCI core last recorded it.
    #[inline]
    pub fn is_msi_or_msix_enabled(&self) -> bool {
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`; the bits are
        // read once, a racing enable or disable gives either value.
        unsafe { (*self.as_raw()).msi_enabled() != 0 || (*self.as_raw()).msix_enabled() != 0 }
    }

    /// Looks up the PCI function at `domain`, `bus` and `devfn`, if the PCI core knows one.
    pub fn find(domain: u32, bus: u8, devfn: u8) -> Option<ARef<Device>> {
        // CAST: PCI segment numbers fit in an `int`, which `pci_domain_nr()` returns.
        let domain = domain as c_int;
        // SAFETY: Any numbers may be looked up; a non-null result carries a reference for us.
        let pdev =
            unsafe { bindings::pci_get_domain_bus_and_slot(domain, bus.into(), devfn.into()) };
        // SAFETY: A non-null `pdev` is a valid `struct pci_dev`, and we own the reference that
        // `pci_get_domain_bus_and_slot()` took on it.
        NonNull::new(pdev).map(|p| unsafe { ARef::from_raw(p.cast()) })
    }

    /// Returns the bridge directly upstream of this function, if any.
    #[inline]
    pub fn upstream_bridge(&self) -> Option<&Device> {
        // SAFETY: By its type invariant `self.as_raw` is a valid `struct pci_dev`.
        let bridge = unsafe { bindings::pci_upstream_bridge(self.as_raw()) };
        // SAFETY: A function holds a reference on its parent device, the bridge, so the bridge
        // is a valid `struct pci_dev` for at least as long as `self`.
        (!bridge.is_null()).then(|| unsafe { &*bridge.cast::<Device>() })
    }

    /// Takes the locks a reset of this function needs, without sleeping on contention: first
    /// the bridge upstream of it (a bus reset goes through the bridge), then the function
    /// itself, as `pci_reset_function()` does. Returns [`None`] if either lock is taken.
    pub fn try_lock_for_reset(&self) -> Option<ResetLock<'_>> {
        let bridge = self.upstream_bridge();
        if let Some(b) = bridge {
            // SAFETY: `b` is a valid `struct pci_dev`.
            if unsafe { bindings::pci_dev_trylock(b.as_raw()) } == 0 {
                return None;
            }
        }
        // SAFETY: `self` is a valid `struct pci_dev`.
        if unsafe { bindings::pci_dev_trylock(self.as_raw()) } == 0 {
            if let Some(b) = bridge {
                // SAFETY: We locked `b` above.
                unsafe { bindings::pci_dev_unlock(b.as_raw()) };
            }
            return None;
        }
        // INVARIANT: Both locks are held.
        Some(ResetLock { dev: self, bridge })
    }
}

/// A PCI function locked as for a reset, with the bridge upstream of it: while it is held,
/// nobody else can reset the function, bind or unbind its driver.
///
/// # Invariants
///
/// The device lock (`pci_dev_lock`) of `dev`, and of `bridge` if there is one, is held by this
/// object and released on drop.
pub struct ResetLock<'a> {
    dev: &'a Device,
    bridge: Option<&'a Device>,
}

impl Drop for ResetLock<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, this object holds the lock of `dev`.
        unsafe { bindings::pci_dev_unlock(self.dev.as_raw()) };
        if let Some(b) = self.bridge {
            // SAFETY: By the type invariants, this object holds the lock of `b`.
            unsafe { bindings::pci_dev_unlock(b.as_raw()) };
        }
    }
}
