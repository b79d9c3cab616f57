// SPDX-License-Identifier: GPL-2.0

//! Live Update support for vfio-pci devices.
//!
//! This module will register a file handler with the Live Update Orchestrator
//! (LUO) so that the VFIO device file of a vfio-pci device can be preserved
//! across a kexec-based live update. For now it only reports itself: it proves
//! the in-tree Rust build and the module layout.

use kernel::prelude::*;

module! {
    type: VfioPciLiveUpdate,
    name: "vfio_pci_liveupdate",
    authors: ["vfio-pci live update developers"],
    description: "Live Update support for vfio-pci devices (EXPERIMENTAL)",
    license: "GPL",
}

struct VfioPciLiveUpdate;

impl kernel::Module for VfioPciLiveUpdate {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!(
            "vfio-pci live update (Rust) loaded, {}\n",
            if cfg!(MODULE) {
                "as a module"
            } else {
                "built in"
            }
        );
        Ok(Self)
    }
}

impl Drop for VfioPciLiveUpdate {
    fn drop(&mut self) {
        pr_info!("vfio-pci live update (Rust) unloaded\n");
    }
}
