// SPDX-License-Identifier: GPL-2.0

//! The list of preserved devices, in both kernels.
//!
//! Besides a blob per file, the handler keeps one list of the devices it preserves, as LUO
//! File-Lifecycle-Bound data (`struct vfio_pci_lu_devs_ser`):
//!
//! - old kernel: preserve adds the device, unpreserve removes it, and the freeze records the
//!   outcome of its reset there, for the next kernel;
//! - new kernel: the module reads the list when it loads and holds off the opens of every listed
//!   device until its retrieved file is bound, or its file finished (see [`crate::holdoff`]).
//!   A device leaves the list when its file is finished.

use crate::{
    abi::{self, DeviceMode, Identity, ListEntry, Location, ResetRecord},
    holdoff,
    lu_abi::{self, DevsSer},
    vfio,
};
use kernel::{
    liveupdate::{self, FlbDef},
    new_mutex, pci,
    prelude::*,
    sync::{Arc, Mutex},
};

/// The FLB of the handler: the list of preserved devices.
pub(crate) struct Devices;

/// A device of the incoming list.
struct Entry {
    /// What the previous kernel listed.
    listed: ListEntry,
    /// The hold-off of its opens, until its file is bound, or finished; none if no PCI function
    /// was at its address when the list was read, or the hold failed.
    hold: Option<vfio::Hold>,
}

/// The incoming list, in the new kernel.
#[pin_data]
pub(crate) struct IncomingList {
    /// The devices whose files are not finished yet, retrieved or not.
    #[pin]
    entries: Mutex<KVec<Entry>>,
}

#[vtable]
impl liveupdate::Flb for Devices {
    const COMPATIBLE: &'static CStr = lu_abi::FLB_COMPATIBLE;
    type Data = DevsSer;
    type Incoming = Arc<IncomingList>;

    fn preserve(data: &mut DevsSer) -> Result {
        abi::devs_init(data);
        Ok(())
    }

    fn retrieve(data: &DevsSer) -> Result<Arc<IncomingList>> {
        let list = abi::devs_decode(data).unwrap_or_else(|e| {
            // The files themselves are still retrieved as usual; only the protection is lost.
            pr_err!(
                "live update: the list of preserved devices is not usable ({}): opens of preserved devices are not held off\n",
                e
            );
            KVec::new()
        });
        let mut entries = KVec::with_capacity(list.len(), GFP_KERNEL)?;
        for listed in list {
            pr_debug!(
                "{}: live update: preserved by the previous kernel ({}); opens refused until its file is retrieved and bound\n",
                listed.location,
                listed.reset.describe()
            );
            let hold = holdoff::hold(&listed.location);
            entries.push(Entry { listed, hold }, GFP_KERNEL)?;
        }
        Arc::pin_init(
            pin_init!(IncomingList {
                entries <- new_mutex!(entries),
            }),
            GFP_KERNEL,
        )
    }

    fn finish(obj: &Arc<IncomingList>) {
        let left = obj.entries.lock().len();
        if left > 0 {
            pr_debug!(
                "live update: all preserved files finished; {} device(s) no longer held off\n",
                left
            );
        }
    }
}

/// The list of preserved devices: in the old kernel the one being handed over, in the new one
/// the one the previous kernel handed over.
///
/// LUO keeps the list's state in [`DeviceList::flb`], linked to the handler's registration.
#[pin_data]
pub(crate) struct DeviceList {
    #[pin]
    flb: FlbDef<Devices>,
    /// Without a usable incoming list: the hold-offs that retrieve started, until the file's
    /// bind or finish, as a listed device's would be.
    #[pin]
    unlisted: Mutex<KVec<Entry>>,
}

impl DeviceList {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            flb <- FlbDef::new(),
            unlisted <- new_mutex!(KVec::new()),
        })
    }

    /// The FLB to link to the handler.
    pub(crate) fn flb(&self) -> &FlbDef<Devices> {
        &self.flb
    }

    /// Runs `f` on the incoming list, if there is one.
    fn with_incoming<R>(&self, f: impl FnOnce(&mut KVec<Entry>) -> R) -> Option<R> {
        // No list: nothing was preserved by the previous kernel, or all its files are finished.
        let inc = self.flb.with_incoming(|inc| inc.clone()).ok()?;
        let mut entries = inc.entries.lock();
        Some(f(&mut entries))
    }

    /// Preserve of a file of `pdev` at `loc`: adds it to the outgoing list. Fails with [`ENOSPC`]
    /// when the list is full, or with [`EBUSY`] if the device is listed already (LUO refuses a
    /// second file of a device before that, through the handler's `get_id`).
    pub(crate) fn preserving(
        &self,
        pdev: &pci::Device,
        loc: &Location,
        id: &Identity,
        mode: DeviceMode,
    ) -> Result {
        self.flb
            .with_outgoing(|devs| abi::devs_add(devs, loc, id, mode))
            .inspect_err(|e| {
                dev_err!(
                    pdev.as_ref(),
                    "live update: cannot preserve: the list of preserved devices is not there: {:?}\n",
                    e
                )
            })?
            .inspect_err(|e| {
                if *e == EBUSY {
                    dev_err!(
                        pdev.as_ref(),
                        "live update: cannot preserve: the device is in the list of preserved devices already\n"
                    );
                } else {
                    dev_err!(
                        pdev.as_ref(),
                        "live update: cannot preserve: the list of preserved devices is full ({} devices)\n",
                        lu_abi::DEVS_MAX
                    );
                }
            })
    }

    /// Unpreserve, or a failed preserve, of the device at `loc`: removes it from the outgoing
    /// list.
    pub(crate) fn unpreserved(&self, loc: &Location) {
        // No list means no file is preserved, so nothing to remove.
        let _ = self.flb.with_outgoing(|devs| abi::devs_remove(devs, loc));
    }

    /// Records the outcome of the reset at freeze of the device at `loc`, for the next kernel.
    /// KHO memory stays writable until the kexec jumps.
    pub(crate) fn reset_outcome(&self, loc: &Location, reset: ResetRecord) {
        // No list means no file is preserved, so nothing to record.
        let _ = self
            .flb
            .with_outgoing(|devs| abi::devs_set_reset(devs, loc, reset));
    }

    /// Fault injection: gives the device at `loc` another device ID in the outgoing list.
    #[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
    pub(crate) fn corrupt_identity(&self, loc: &Location) -> Result {
        if self
            .flb
            .with_outgoing(|devs| abi::devs_corrupt_identity(devs, loc))?
        {
            Ok(())
        } else {
            Err(ENOENT)
        }
    }

    /// Fault injection: damages the magic of the outgoing list, which the next kernel must then
    /// ignore as a whole.
    #[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
    pub(crate) fn corrupt_magic(&self) -> Result {
        self.flb.with_outgoing(|devs| devs.magic = !devs.magic)
    }

    /// What the previous kernel recorded of the reset of the device at `loc` (unknown when there
    /// is no usable list, or the device is not in it).
    pub(crate) fn reset_record(&self, loc: &Location) -> ResetRecord {
        self.with_incoming(|entries| {
            entries
                .iter()
                .find(|e| e.listed.location == *loc)
                .map(|e| e.listed.reset)
        })
        .flatten()
        .unwrap_or(ResetRecord::Unknown)
    }

    /// Retrieve of the file of `pdev` at `loc`: its opens must be held off for the file to be
    /// made ([`vfio::PciDevice::open_file`]); they are, unless the list of preserved devices was
    /// not usable. Then they are from now on, until the file is bound or finished.
    pub(crate) fn hold_for_retrieve(&self, pdev: &pci::Device, loc: &Location) -> Result {
        let hold = || vfio::Hold::new(pdev.into());
        let entry = |hold| Entry {
            listed: ListEntry {
                location: *loc,
                reset: ResetRecord::Unknown,
                identity: None,
                mode: DeviceMode::Reset,
            },
            hold: Some(hold),
        };
        let Some(res) = self.with_incoming(|entries| -> Result {
            if let Some(e) = entries.iter_mut().find(|e| e.listed.location == *loc) {
                // Listed, but not held off when the list was read (no PCI function was at its
                // address then, or the hold failed): it is now.
                if e.hold.is_none() {
                    e.hold = Some(hold()?);
                }
                return Ok(());
            }
            entries.push(entry(hold()?), GFP_KERNEL)?;
            Ok(())
        }) else {
            // No usable list: a hold of its own, dropped at finish (or at unload).
            let mut unlisted = self.unlisted.lock();
            if !unlisted.iter().any(|e| e.listed.location == *loc) {
                unlisted.push(entry(hold()?), GFP_KERNEL)?;
            }
            return Ok(());
        };
        res
    }

    /// The file of the device at `loc` was finished: it leaves the list, and its hold-off ends.
    pub(crate) fn finished(&self, loc: &Location) {
        self.with_incoming(|entries| entries.retain(|e| e.listed.location != *loc));
        self.unlisted.lock().retain(|e| e.listed.location != *loc);
    }

    /// The devices of the incoming list (none without a list): reads the list, so that from now
    /// on their opens are held off. Cannot fail once the list is read: without memory for the
    /// copy, it logs why and gives none (the devices stay held off all the same).
    pub(crate) fn incoming(&self) -> KVec<ListEntry> {
        self.with_incoming(|entries| {
            let mut list = KVec::new();
            for e in entries.iter() {
                if list.push(e.listed, GFP_KERNEL).is_err() {
                    pr_err!(
                        "live update: no memory for a copy of the list of preserved devices: bind_preserved binds none of them\n"
                    );
                    return KVec::new();
                }
            }
            list
        })
        .unwrap_or_default()
    }
}
