// SPDX-License-Identifier: GPL-2.0

//! Live Update support for vfio-pci devices.
//!
//! A Live Update Orchestrator (LUO) file handler, compatible string `"vfio-pci-v1"`, for VFIO
//! device files of vfio-pci devices opened through `/dev/vfio/devices/vfioX`:
//!
//! - preserve: the device's segment, bus/device/function and identity go into a KHO blob;
//! - freeze (inside `reboot(LINUX_REBOOT_CMD_KEXEC)`): refused unless the device's interrupts are
//!   disabled and it is in D0; then bus mastering is cleared, the device is reset and its saved
//!   configuration state is restored;
//! - retrieve (new kernel): the vfio-pci device at the same address, with the same identity, gets
//!   a new device file, equivalent to opening its cdev;
//! - finish: refused until the file was retrieved and bound with `VFIO_DEVICE_BIND_IOMMUFD`.
//!
//! The module must be loaded before anything opens `/dev/liveupdate` in the new kernel, and the
//! devices bound to vfio-pci before they are retrieved.

use kernel::{
    fs::File,
    liveupdate::{self, RetrieveStatus},
    pci::PowerState,
    prelude::*,
    sync::aref::ARef,
    vfio::{self, lu_abi::Ser, IrqMode},
};

mod abi;

use abi::{Identity, Location};

module! {
    type: VfioPciLiveUpdate,
    name: "vfio_pci_liveupdate",
    authors: ["vfio-pci live update developers"],
    description: "Live Update support for vfio-pci devices (EXPERIMENTAL)",
    license: "GPL",
}

/// Name of the anonymous inode of a retrieved device file.
const RETRIEVED_FILE_NAME: &CStr = c"[vfio-device-liveupdate]";

/// The vfio-pci device behind a file this handler accepts.
fn vfio_pci_of(file: &File) -> Option<&vfio::PciCoreDevice> {
    vfio::Device::from_cdev_file(file)?.as_vfio_pci()
}

/// The LUO file handler for vfio-pci device files.
struct Handler;

#[vtable]
impl liveupdate::FileHandler for Handler {
    const COMPATIBLE: &'static CStr = vfio::lu_abi::COMPATIBLE;
    type Data = Ser;
    type State = ();

    fn can_preserve(file: &File) -> bool {
        let Some(core) = vfio_pci_of(file) else {
            return false;
        };
        let pdev = core.pci();
        if pdev.is_virtfn() {
            dev_info!(
                pdev.as_ref(),
                "live update: SR-IOV VFs cannot be preserved\n"
            );
            return false;
        }
        if pdev.is_intel_display() {
            dev_info!(
                pdev.as_ref(),
                "live update: Intel display devices cannot be preserved\n"
            );
            return false;
        }
        true
    }

    fn preserve(file: &File, data: &mut Ser) -> Result {
        let pdev = vfio_pci_of(file).ok_or(EINVAL)?.pci();
        let location = Location::of(pdev);
        let identity = Identity::of(pdev);
        abi::encode(data, &location, &identity);
        dev_info!(pdev.as_ref(), "live update: preserved, {}\n", identity);
        Ok(())
    }

    fn unpreserve(_file: &File, _state: &(), data: &Ser) {
        pr_info!(
            "{}: live update: no longer preserved\n",
            abi::decode_location(data)
        );
    }

    fn freeze(file: &File, _state: &(), _data: &mut Ser) -> Result {
        let core = vfio_pci_of(file).ok_or(EINVAL)?;
        let guard = core.lock();
        let pdev = core.pci();
        let dev = pdev.as_ref();

        let irqs = guard.irq_mode();
        if irqs != IrqMode::None {
            dev_err!(
                dev,
                "live update: cannot freeze: interrupts are enabled ({:?}); disable them with VFIO_DEVICE_SET_IRQS before the kexec\n",
                irqs
            );
            return Err(EBUSY);
        }
        let power = pdev.power_state();
        if power != PowerState::D0 {
            dev_err!(
                dev,
                "live update: cannot freeze: the device is in {:?}, not D0\n",
                power
            );
            return Err(EINVAL);
        }
        let Some(lock) = pdev.try_lock_for_reset() else {
            dev_err!(
                dev,
                "live update: cannot freeze: the device or its upstream bridge is locked by someone else\n"
            );
            return Err(EBUSY);
        };
        // Stop DMA first: a reset may wait for outstanding transactions to drain.
        lock.clear_master();
        if let Err(e) = lock.reset_function() {
            dev_err!(dev, "live update: cannot freeze: reset failed: {:?}\n", e);
            lock.restore_state();
            return Err(e);
        }
        lock.restore_state();
        dev_info!(
            dev,
            "live update: frozen (bus mastering off, reset, config restored)\n"
        );
        Ok(())
    }

    fn retrieve(data: &Ser) -> Result<ARef<File>> {
        let decoded = abi::decode(data).map_err(|e| {
            let location = abi::decode_location(data);
            pr_err!(
                "{}: live update: retrieve: the preserved data is not usable: {}\n",
                location,
                e
            );
            e.to_error()
        })?;
        let location = decoded.location;

        let Some(vdev) = vfio::Device::find_by_pci(|pdev| Location::of(pdev) == location) else {
            pr_err!(
                "{}: live update: retrieve: no such device bound to vfio-pci; bind it (driver_override) before retrieving\n",
                location
            );
            return Err(ENODEV);
        };
        let Some(core) = vdev.as_vfio_pci() else {
            pr_err!(
                "{}: live update: retrieve: the device is bound to a VFIO driver other than vfio-pci\n",
                location
            );
            return Err(ENODEV);
        };
        let dev = core.pci().as_ref();
        let have = Identity::of(core.pci());
        match decoded.identity {
            Some(want) if want != have => {
                dev_err!(
                    dev,
                    "live update: retrieve: identity mismatch: preserved {}, found {}\n",
                    want,
                    have
                );
                return Err(ESTALE);
            }
            Some(_) => {}
            None => dev_info!(
                dev,
                "live update: retrieve: preserved in the upstream layout, identity not checked\n"
            ),
        }
        let file = vdev.open_cdev_file(RETRIEVED_FILE_NAME)?;
        dev_info!(dev, "live update: retrieved, {}\n", have);
        Ok(file)
    }

    fn can_finish(file: Option<&File>, data: &Ser, status: RetrieveStatus) -> bool {
        let location = abi::decode_location(data);
        match (status, file) {
            (RetrieveStatus::Retrieved, Some(file)) => {
                let bound = vfio::Device::file_is_bound(file);
                if !bound {
                    pr_info!(
                        "{}: live update: cannot finish yet: the retrieved file is not bound (VFIO_DEVICE_BIND_IOMMUFD)\n",
                        location
                    );
                }
                bound
            }
            // Nothing is left to wait for; finish frees what was preserved.
            (RetrieveStatus::Failed(_), _) => true,
            _ => {
                pr_info!(
                    "{}: live update: cannot finish yet: the device file was not retrieved\n",
                    location
                );
                false
            }
        }
    }

    fn finish(_file: Option<&File>, data: &Ser, status: RetrieveStatus) {
        pr_info!(
            "{}: live update: finished ({:?})\n",
            abi::decode_location(data),
            status
        );
    }
}

#[pin_data(PinnedDrop)]
struct VfioPciLiveUpdate {
    #[pin]
    handler: liveupdate::Registration<Handler>,
}

impl kernel::InPlaceModule for VfioPciLiveUpdate {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        if !liveupdate::is_enabled() {
            pr_err!(
                "live update is disabled on this boot (no liveupdate=on): nothing to register\n"
            );
        }
        try_pin_init!(Self {
            handler <- liveupdate::Registration::register(),
        })
        .pin_chain(|_| {
            pr_info!(
                "registered the LUO file handler \"{}\"\n",
                vfio::lu_abi::COMPATIBLE.to_str().unwrap_or("?")
            );
            Ok(())
        })
    }
}

#[pinned_drop]
impl PinnedDrop for VfioPciLiveUpdate {
    fn drop(self: Pin<&mut Self>) {
        pr_info!("unregistering the LUO file handler\n");
    }
}
