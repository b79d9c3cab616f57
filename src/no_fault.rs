// SPDX-License-Identifier: GPL-2.0

//! No fault injection (`CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT` off): nothing is armed, nothing
//! recorded, and the calls compile to nothing.

use crate::{abi::Location, lu_abi::Ser, reset::Fault};
use kernel::pci;

/// Nothing to arm or record.
pub(crate) struct Faults;

/// Nothing recorded of a reset.
pub(crate) struct Snapshot;

impl Faults {
    pub(crate) const fn new() -> Self {
        Self
    }

    /// No reset fault is ever armed.
    #[inline]
    pub(crate) fn take_reset_fault(&self, _loc: &Location) -> Option<Fault> {
        None
    }

    /// Never called: no `locked` fault is armed.
    #[inline]
    pub(crate) fn hold_reset_lock(_pdev: &pci::Device) -> Option<()> {
        None
    }

    #[inline]
    pub(crate) fn snapshot(&self, _pdev: &pci::Device) -> Snapshot {
        Snapshot
    }

    #[inline]
    pub(crate) fn record_reset(&self, _pdev: &pci::Device, _before: Snapshot) {}

    /// No blob is corrupted.
    #[inline]
    pub(crate) fn corrupt(&self, _ser: &mut Ser) -> bool {
        false
    }
}
