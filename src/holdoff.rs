// SPDX-License-Identifier: GPL-2.0

//! What the new kernel does with a preserved device before its file is retrieved.
//!
//! Until a device's retrieved file is bound (`VFIO_DEVICE_BIND_IOMMUFD`), or its file finished,
//! opening the device any other way (its cdev, `VFIO_GROUP_GET_DEVICE_FD`) fails with `EBUSY`
//! ([`vfio::Hold`]), so nobody initialises or resets it without its preserved state. For the
//! devices whose state was kept, and with module parameter `bind_preserved` for all, the module
//! also sets the devices' `driver_override` to vfio-pci and binds the ones that have no driver
//! yet ([`bind_preserved`]): no other driver can take a kept state over.

use crate::{
    abi::{Identity, ListEntry, Location},
    binding, vfio,
};
use kernel::prelude::*;

/// The driver that [`bind_preserved`] makes the only one for the preserved devices.
const VFIO_PCI: &CStr = c"vfio-pci";

/// Holds off the opens of the function at `loc`; logs why not when it cannot.
pub(crate) fn hold(loc: &Location) -> Option<vfio::Hold> {
    let pdev = loc.find_pci("hold-off of a device the previous kernel preserved")?;
    vfio::Hold::new(pdev)
        .inspect_err(|e| {
            pr_err!(
                "{}: live update: the opens of this preserved device cannot be held off: {:?}\n",
                loc,
                e
            )
        })
        .ok()
}

/// Makes vfio-pci the only driver of the kept devices of `list`, and with `all` (module parameter
/// `bind_preserved`) of all of them: sets their `driver_override` and binds those that have no
/// driver yet.
pub(crate) fn bind_preserved(list: &[ListEntry], all: bool) {
    for listed in list.iter().filter(|l| all || l.mode.keeps_state()) {
        let loc = listed.location;
        let Some(pdev) = loc.find_pci("bind_preserved") else {
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
            None => dev_dbg!(
                dev,
                "live update: bind_preserved: listed without identity (version 1 list), not checked\n"
            ),
        }
        if let Err(e) = binding::set_driver_override(&pdev, VFIO_PCI) {
            dev_err!(
                dev,
                "live update: bind_preserved: driver_override not set: {:?}\n",
                e
            );
            continue;
        }
        let bound = binding::attach_driver(&pdev);
        match binding::driver_name(&pdev) {
            Ok(Some(name)) if name.to_bytes() == VFIO_PCI.to_bytes() => dev_dbg!(
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
