// SPDX-License-Identifier: GPL-2.0

//! The list of preserved devices, and what the new kernel does with it before the files are
//! retrieved.
//!
//! Besides a blob per file, the handler keeps one list of the devices it preserves, as LUO
//! File-Lifecycle-Bound data ([`DEVICES`], `struct vfio_pci_lu_devs_ser`):
//!
//! - old kernel: preserve adds the device and refuses one that is in the list already (a second
//!   file of the same device, in any session); unpreserve removes it;
//! - new kernel: the module reads the list when it loads. Until a device's retrieved file is
//!   bound (`VFIO_DEVICE_BIND_IOMMUFD`), or its file finished, opening the device any other way
//!   (its cdev, `VFIO_GROUP_GET_DEVICE_FD`) fails with `EBUSY` ([`vfio::Hold`]), so nobody
//!   initialises or resets it without its preserved state. With module parameter `bind_preserved`, the module also sets the
//!   devices' `driver_override` to vfio-pci and binds the ones that have no driver yet
//!   ([`bind_preserved`]).

use crate::{
    abi::{self, Identity, ListEntry, Location, ResetRecord},
    lu_abi::{self, DevsSer},
    vfio,
};
use kernel::{
    liveupdate::{self, FlbDef},
    new_mutex, pci,
    prelude::*,
    sync::{Arc, Mutex},
};

/// The list of preserved devices, linked to the handler when the module loads.
pub(crate) static DEVICES: FlbDef<Devices> = FlbDef::new();

/// The driver that [`bind_preserved`] makes the only one for the preserved devices.
const VFIO_PCI: &CStr = c"vfio-pci";

/// The FLB of the handler: the list of preserved devices.
pub(crate) struct Devices;

/// A device of the incoming list.
struct Entry {
    /// What the previous kernel listed.
    listed: ListEntry,
    /// The hold-off of its opens, until its file is bound, or finished; none if no PCI function
    /// is at its address.
    _hold: Option<vfio::Hold>,
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
            pr_info!(
                "{}: live update: preserved by the previous kernel ({}); opens refused until its file is retrieved or its session finished\n",
                listed.location,
                listed.reset.describe()
            );
            let hold = hold(&listed.location);
            entries.push(
                Entry {
                    listed,
                    _hold: hold,
                },
                GFP_KERNEL,
            )?;
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
            pr_info!(
                "live update: all preserved files finished; {} device(s) no longer held off\n",
                left
            );
        }
    }
}

/// Runs `f` on the incoming list, if there is one.
fn with_incoming<R>(f: impl FnOnce(&mut KVec<Entry>) -> R) -> Option<R> {
    // No list: nothing was preserved by the previous kernel, or all its files are finished.
    let inc = DEVICES.with_incoming(|inc| inc.clone()).ok()?;
    let mut entries = inc.entries.lock();
    Some(f(&mut entries))
}

/// Preserve of a file of the device at `loc`: adds it to the outgoing list, or fails with
/// [`EBUSY`] if another file of the device is preserved.
pub(crate) fn preserving(pdev: &pci::Device, loc: &Location, id: &Identity) -> Result {
    match DEVICES.with_outgoing(|devs| abi::devs_add(devs, loc, id))? {
        Err(e) if e == EBUSY => {
            dev_err!(
                pdev.as_ref(),
                "live update: cannot preserve: another file of this device is preserved already (in this or another session)\n"
            );
            Err(e)
        }
        Err(e) => {
            dev_err!(
                pdev.as_ref(),
                "live update: cannot preserve: the list of preserved devices is full ({} devices)\n",
                lu_abi::DEVS_MAX
            );
            Err(e)
        }
        Ok(()) => Ok(()),
    }
}

/// Unpreserve, or a failed preserve, of the device at `loc`: removes it from the outgoing list.
pub(crate) fn unpreserved(loc: &Location) {
    // No list means no file is preserved, so nothing to remove.
    let _ = DEVICES.with_outgoing(|devs| abi::devs_remove(devs, loc));
}

/// Records the outcome of the reset at freeze of the device at `loc`, for the next kernel. KHO
/// memory stays writable until the kexec jumps.
pub(crate) fn reset_outcome(loc: &Location, reset: ResetRecord) {
    // No list means no file is preserved, so nothing to record.
    let _ = DEVICES.with_outgoing(|devs| abi::devs_set_reset(devs, loc, reset));
}

/// Fault injection: gives the device at `loc` another device ID in the outgoing list.
#[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
pub(crate) fn corrupt_identity(loc: &Location) -> Result {
    if DEVICES.with_outgoing(|devs| abi::devs_corrupt_identity(devs, loc))? {
        Ok(())
    } else {
        Err(ENOENT)
    }
}

/// Fault injection: damages the magic of the outgoing list, which the next kernel must then
/// ignore as a whole.
#[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
pub(crate) fn corrupt_list_magic() -> Result {
    DEVICES.with_outgoing(|devs| devs.magic = !devs.magic)
}

/// What the previous kernel recorded of the reset of the device at `loc` (unknown when there is
/// no usable list, or the device is not in it).
pub(crate) fn reset_record(loc: &Location) -> ResetRecord {
    with_incoming(|entries| {
        entries
            .iter()
            .find(|e| e.listed.location == *loc)
            .map(|e| e.listed.reset)
    })
    .flatten()
    .unwrap_or(ResetRecord::Unknown)
}

/// Holds off the opens of the function at `loc`; logs why not when it cannot.
fn hold(loc: &Location) -> Option<vfio::Hold> {
    let Some(pdev) = pci::Device::find(loc.domain, loc.bus, loc.devfn) else {
        pr_err!(
            "{}: live update: preserved by the previous kernel, but no PCI device is at this address
",
            loc
        );
        return None;
    };
    vfio::Hold::new(pdev)
        .inspect_err(|e| {
            pr_err!(
                "{}: live update: the opens of this preserved device cannot be held off: {:?}
",
                loc,
                e
            )
        })
        .ok()
}

/// Retrieve of the file of `pdev` at `loc`: its opens must be held off for the file to be made
/// ([`vfio::PciDevice::open_file`]); they are, unless the list of preserved devices was not
/// usable. Then they are from now on, until the file is finished; or, without any list, only
/// while the caller keeps the returned hold.
pub(crate) fn hold_for_retrieve(pdev: &pci::Device, loc: &Location) -> Result<Option<vfio::Hold>> {
    let hold = || vfio::Hold::new(pdev.into());
    let Some(res) = with_incoming(|entries| -> Result {
        if entries.iter().any(|e| e.listed.location == *loc) {
            return Ok(());
        }
        let listed = ListEntry {
            location: *loc,
            reset: ResetRecord::Unknown,
            identity: None,
        };
        entries.push(
            Entry {
                listed,
                _hold: Some(hold()?),
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }) else {
        return hold().map(Some);
    };
    res.map(|()| None)
}

/// The file of the device at `loc` was finished: it leaves the list.
pub(crate) fn finished(loc: &Location) {
    with_incoming(|entries| entries.retain(|e| e.listed.location != *loc));
}

/// Reads the incoming list when the module loads, so that opens are held off from now on.
pub(crate) fn load() {
    if let Some(n) = with_incoming(|entries| entries.len()) {
        pr_info!(
            "live update: {} device(s) preserved by the previous kernel are held off until retrieved\n",
            n
        );
    }
}

/// Makes vfio-pci the only driver of the incoming devices (module parameter `bind_preserved`):
/// sets their `driver_override` and binds those that have no driver yet.
pub(crate) fn bind_preserved() {
    let Some(Ok(list)) = with_incoming(|entries| {
        let mut list = KVec::with_capacity(entries.len(), GFP_KERNEL)?;
        for e in entries.iter() {
            list.push(e.listed, GFP_KERNEL)?;
        }
        Ok::<_, Error>(list)
    }) else {
        pr_info!("live update: bind_preserved: the previous kernel preserved no device\n");
        return;
    };
    for listed in list {
        let loc = listed.location;
        let Some(pdev) = pci::Device::find(loc.domain, loc.bus, loc.devfn) else {
            pr_err!(
                "{}: live update: bind_preserved: no PCI device at this address\n",
                loc
            );
            continue;
        };
        let dev = pdev.as_ref();
        let have = Identity::of(&pdev);
        match listed.identity {
            Some(want) if want != have => {
                dev_err!(
                    dev,
                    "live update: bind_preserved: not bound: identity mismatch: preserved {}, found {}\n",
                    want,
                    have
                );
                continue;
            }
            Some(_) => {}
            None => dev_info!(
                dev,
                "live update: bind_preserved: listed without identity (version 1 list), not checked\n"
            ),
        }
        if let Err(e) = pdev.set_driver_override(VFIO_PCI) {
            dev_err!(
                dev,
                "live update: bind_preserved: driver_override not set: {:?}\n",
                e
            );
            continue;
        }
        let bound = pdev.attach_driver();
        match pdev.driver_name() {
            Ok(Some(name)) if name.to_bytes() == VFIO_PCI.to_bytes() => dev_info!(
                dev,
                "live update: bind_preserved: driver_override set to vfio-pci, bound to vfio-pci\n"
            ),
            Ok(Some(name)) => dev_warn!(
                dev,
                "live update: bind_preserved: driver_override set to vfio-pci, but {} was bound before the module loaded; left alone\n",
                name.to_str().unwrap_or("?")
            ),
            _ => dev_err!(
                dev,
                "live update: bind_preserved: driver_override set to vfio-pci, no driver bound ({:?})\n",
                bound
            ),
        }
    }
}
