// SPDX-License-Identifier: GPL-2.0

//! Live Update support for vfio-pci devices.
//!
//! A Live Update Orchestrator (LUO) file handler, compatible string `"vfio-pci-v1"`, for VFIO
//! device files of vfio-pci devices opened through `/dev/vfio/devices/vfioX`:
//!
//! - preserve: only a file bound to iommufd (`VFIO_DEVICE_BIND_IOMMUFD`), which holds the device
//!   open; the device's segment, bus/device/function and identity go into a KHO blob, and the
//!   device into the handler's list of preserved devices (see [`devices`]); a device has at most
//!   one preserved file (LUO refuses a second one, by the handler's `get_id`);
//! - freeze (inside `reboot(LINUX_REBOOT_CMD_KEXEC)`): refused unless the device's interrupts are
//!   disabled (checked under vfio-pci's interrupt lock) and it is in D0; then user access to the
//!   device is blocked (BAR mmaps zapped, `EIO` on the old file), bus mastering is cleared, the
//!   device is reset under vfio-pci's locks and its configuration as it was just before, bus
//!   mastering off, restored; any failure undoes the freeze of the device. A device whose VMM
//!   chose to keep it (`VFIO_DEVICE_FEATURE_LIVEUPDATE`, read at preserve) is not reset: its
//!   configuration space goes into the blob instead (see [`keep`]).
//!   The resets of all devices run in parallel, on the module's own workqueue, and are waited for
//!   (10 s at most) before the kexec (see [`reset`]); module parameter `serial_reset` resets in
//!   each freeze. Each reset's outcome goes into the list of preserved devices;
//! - unfreeze (the kexec was cancelled after this file's freeze): the reset is waited for, bus
//!   mastering is set back as it was and user access is given back;
//! - retrieve (new kernel): the vfio-pci device at the same address, with the same identity, gets
//!   a new device file, equivalent to opening its cdev; unless the previous kernel recorded its
//!   reset as done, the device is reset first, and the retrieve fails with `EIO` if it cannot be;
//!   a kept device is compared with its recorded configuration space, and reset only if its state
//!   was lost;
//! - finish: refused until the file was retrieved and bound with `VFIO_DEVICE_BIND_IOMMUFD`.
//!
//! In the new kernel, the module reads the list of preserved devices when it loads; until a
//! device's retrieved file is bound, or its file finished, nobody else can open the device
//! (`EBUSY`), and with module parameter `bind_preserved` the module makes vfio-pci its only driver
//! (see [`holdoff`]).
//!
//! The module must be loaded before anything opens `/dev/liveupdate` or a preserved device in the
//! new kernel, and the devices bound to vfio-pci before they are retrieved. Errors are logged, one
//! line with the device and the reason; success at debug level; the time each phase took comes
//! from the tracepoints of [`trace`]. Test kernels can corrupt preserved blobs on purpose
//! (`CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT`, see `fault.rs`).

use kernel::{
    fs::File,
    liveupdate::{self, RetrieveStatus},
    pci,
    prelude::*,
    reboot,
    sync::{aref::ARef, Arc},
    time::{Instant, Monotonic},
    types::ScopeGuard,
};

mod abi;
mod binding;
mod devices;
#[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
mod fault;
#[cfg(not(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT))]
#[path = "no_fault.rs"]
mod fault;
mod holdoff;
mod keep;
mod lu_abi;
mod reset;
mod trace;
mod vfio;

use abi::{DeviceMode, Identity, Location, ResetRecord};
use devices::DeviceList;
use fault::Faults;
use lu_abi::Ser;
use reset::{Mode, Resets, When};

module! {
    type: VfioPciLiveUpdate,
    name: "vfio_pci_liveupdate",
    authors: ["vfio-pci live update developers"],
    description: "Live Update support for vfio-pci devices (EXPERIMENTAL)",
    license: "GPL",
    params: {
        serial_reset: bool {
            default: false,
            description: "Reset each preserved device in its own freeze, one after another, instead of all at once (for comparison)",
        },
        bind_preserved: bool {
            default: false,
            description: "After a live update, set driver_override to vfio-pci for the devices the previous kernel preserved and bind them, when the module loads (off: binding is left to userspace)",
        },
    },
}

/// How this load of the module resets devices at freeze.
fn reset_mode() -> Mode {
    if module_parameters::serial_reset.value() {
        Mode::Serial
    } else {
        Mode::Parallel
    }
}

/// The vfio-pci device behind a file this handler accepts.
pub(crate) fn vfio_pci_of(file: &File) -> Option<&vfio::PciDevice> {
    vfio::PciDevice::from_file(file)
}

/// Logs why retrieve found no vfio-pci device at `location`.
fn log_not_vfio_pci(location: &Location) {
    let Some(pdev) = location.find_pci("retrieve") else {
        return;
    };
    let dev = pdev.as_ref();
    match binding::driver_name(&pdev) {
        Ok(None) => dev_err!(
            dev,
            "live update: retrieve: the device is not bound to a driver; bind it to vfio-pci (driver_override) before retrieving\n"
        ),
        Ok(Some(name)) if name.to_bytes() != b"vfio-pci" => dev_err!(
            dev,
            "live update: retrieve: the device is bound to {}, not vfio-pci; bind it to vfio-pci before retrieving\n",
            name.to_str().unwrap_or("?")
        ),
        Ok(Some(_)) => dev_err!(
            dev,
            "live update: retrieve: the device is bound to vfio-pci but not registered with VFIO (yet)\n"
        ),
        Err(_) => dev_err!(
            dev,
            "live update: retrieve: no vfio-pci device here, and a driver is being bound or unbound\n"
        ),
    }
}

/// What the handler's callbacks, the reboot notifier and the fault injection knobs share.
#[pin_data]
pub(crate) struct Shared {
    /// The list of preserved devices, handed over to the next kernel.
    #[pin]
    pub(crate) devices: DeviceList,
    /// The resets of the freezes of the current kexec attempt.
    #[pin]
    pub(crate) resets: Resets,
    /// Fault injection, in test builds.
    pub(crate) faults: Arc<Faults>,
}

impl Shared {
    fn new(mode: Mode) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            devices <- DeviceList::new(),
            resets <- Resets::new(mode),
            faults: Arc::new(Faults::new(), GFP_KERNEL)?,
        })
    }

    /// Resets a retrieved device whose reset by the previous kernel was not done (`record`),
    /// before its file is handed out; fails with [`EIO`] if that reset cannot be done either.
    fn reset_at_retrieve(
        &self,
        core: &vfio::PciDevice,
        loc: &Location,
        record: ResetRecord,
    ) -> Result {
        let dev = core.pci().as_ref();
        dev_info!(
            dev,
            "live update: retrieve: {}; resetting the device before handing it out\n",
            record.describe()
        );
        // Nobody opens the device meanwhile: it is held off until its retrieved file is bound.
        let fault = self.faults.take_reset_fault(loc);
        reset::reset(core, When::Retrieve, fault, &self.faults).map_err(|e| {
            dev_err!(
                dev,
                "live update: retrieve: refused (EIO): {}, and the reset at retrieve failed: {}\n",
                record.describe(),
                reset::describe_failure(e)
            );
            EIO
        })
    }
}

/// The LUO file handler for vfio-pci device files.
struct Handler {
    shared: Arc<Shared>,
}

/// A preserved device, in the outgoing kernel: what the handler keeps of its file besides the
/// KHO blob.
struct Preserved {
    /// Where the device is, as it went into the list of preserved devices.
    location: Location,
    /// What the freeze does to the device, as its user chose before the preserve.
    mode: DeviceMode,
    /// Whether bus mastering was on when the freeze cleared it, to set back on unfreeze.
    master: bool,
    /// The reset that the freeze queued (parallel mode), until the kexec or the unfreeze.
    reset: Option<reset::Queued>,
    /// Fault injection: hand the next kernel a handle that names no preserved memory.
    #[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
    bad_handle: bool,
}

/// Stops the DMA of a device of the run mode (the previous kernel's `data`) that no VMM drives:
/// clears bus mastering in its command register. Other modes' devices stopped at the freeze.
fn stop_running(data: &Ser, why: &str) {
    if !matches!(abi::decode(data), Ok(d) if d.mode == DeviceMode::Run) {
        return;
    }
    let location = abi::decode_location(data);
    let Some(pdev) = location.find_pci("stop a running device") else {
        return;
    };
    match keep::stop_bus_master(&pdev) {
        Ok(true) => dev_warn!(
            pdev.as_ref(),
            "live update: the device's DMA went on through the kexec, and {}: bus mastering cleared to stop it\n",
            why
        ),
        Ok(false) => {}
        Err(e) => dev_err!(
            pdev.as_ref(),
            "live update: the device's DMA went on through the kexec, and {}; bus mastering cannot be cleared: {:?}\n",
            why,
            e
        ),
    }
}

/// Logs why the freeze of `pdev` was refused by vfio-pci.
fn log_freeze_refused(pdev: &pci::Device, e: Error) {
    let dev = pdev.as_ref();
    match e {
        e if e == EBUSY => dev_err!(
            dev,
            "live update: cannot freeze: interrupts are enabled; disable them with VFIO_DEVICE_SET_IRQS before the kexec\n"
        ),
        e if e == EINVAL => dev_err!(
            dev,
            "live update: cannot freeze: the device is in {:?}, not D0 (or is runtime-suspended)\n",
            pdev.power_state()
        ),
        e => dev_err!(dev, "live update: cannot freeze: {:?}\n", e),
    }
}

impl Handler {
    /// Makes the file of the device that `data` names, after checking the device.
    fn retrieve_device(&self, data: &Ser) -> Result<ARef<File>> {
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

        let Some(core) = pci::Device::find(location.domain, location.bus, location.devfn)
            .and_then(|pdev| vfio::PciDevice::get(&pdev))
        else {
            log_not_vfio_pci(&location);
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
        let devices = &self.shared.devices;
        // Held off until the file is bound: nobody can open, and so reset, the device meanwhile.
        devices
            .hold_for_retrieve(core.pci(), &location)
            .inspect_err(|e| {
                dev_err!(
                    dev,
                    "live update: retrieve: the opens of the device cannot be held off: {:?}\n",
                    e
                )
            })?;
        let run = decoded.mode == DeviceMode::Run;
        let (kept, running) = match decoded.mode {
            DeviceMode::Keep | DeviceMode::Run => {
                match keep::check_at_retrieve(core.pci(), abi::kept_config(data), run) {
                    Ok(master) => {
                        if run && !master {
                            dev_warn!(
                                dev,
                                "live update: retrieve: the device's DMA did not go on through the kexec: Bus Master is off; its state is kept\n"
                            );
                        }
                        (true, run && master)
                    }
                    Err(lost) => {
                        dev_warn!(
                            dev,
                            "live update: retrieve: the state of the kept device was lost ({}); resetting it, its VMM must initialise it again\n",
                            lost
                        );
                        self.shared
                            .reset_at_retrieve(&core, &location, ResetRecord::NotReset)?;
                        (false, false)
                    }
                }
            }
            DeviceMode::Reset => {
                let record = devices.reset_record(&location);
                if record != ResetRecord::Done {
                    self.shared.reset_at_retrieve(&core, &location, record)?;
                }
                (false, false)
            }
        };
        let file = core.open_file().inspect_err(|e| {
            dev_err!(
                dev,
                "live update: retrieve: no file could be made for the device: {:?}\n",
                e
            )
        })?;
        // Only now: with a file made, nobody else has the device open (EBUSY otherwise).
        let running = core.lu_retrieved(decoded.mode.to_uapi(), kept, running);
        dev_dbg!(
            dev,
            "live update: retrieved, {}, mode {}{}{}\n",
            have,
            decoded.mode.name(),
            if kept { ", state kept" } else { "" },
            if running { ", DMA running" } else { "" }
        );
        Ok(file)
    }

    /// Check, quiesce, then reset (or, in keep mode, record the configuration space); any
    /// failure undoes what was done, and the kexec is cancelled.
    fn freeze_device(
        &self,
        file: &File,
        state: &mut Preserved,
        data: &mut Ser,
        began: Instant<Monotonic>,
    ) -> Result {
        let shared = &*self.shared;
        let core = vfio_pci_of(file).ok_or(EINVAL)?;
        let pdev = core.pci();
        let dev = pdev.as_ref();

        // Check and quiesce, both by vfio-pci under its own locks: refused with interrupts on or
        // out of D0; then the old file gets EIO, its BAR mmaps are gone and bus mastering is off
        // (in the run mode kept on through the kexec).
        let master = core
            .freeze()
            .inspect_err(|e| log_freeze_refused(pdev, *e))?;
        // The one undo path: LUO unfreezes only the files frozen before this one, so a failure
        // from here on gives this device back to its user as it was.
        let undo = ScopeGuard::new(|| core.unfreeze(master));

        let done = match state.mode {
            // No reset: the configuration space goes to the next kernel, bus mastering off (keep
            // mode) or on (run mode: the DMA goes on).
            DeviceMode::Keep | DeviceMode::Run => {
                let cfg = keep::capture(pdev).inspect_err(|e| {
                    dev_err!(
                        dev,
                        "live update: cannot freeze: the configuration space of the kept device cannot be read: {:?}\n",
                        e
                    )
                })?;
                abi::encode_config(data, &cfg);
                "state kept"
            }
            DeviceMode::Reset => self.reset_at_freeze(file, core, state)?,
        };
        undo.dismiss();
        state.master = master;
        shared.resets.frozen(began);
        let bus_master = if state.mode == DeviceMode::Run {
            "kept on"
        } else {
            "off"
        };
        dev_dbg!(
            dev,
            "live update: frozen in {} us (interrupts off, D0, user access blocked, bus mastering {}, {})\n",
            began.elapsed().as_micros_ceil(),
            bus_master,
            done
        );
        Ok(())
    }

    /// The reset of a frozen device (reset mode): done here (serial mode) or queued (parallel
    /// mode), once the locks it needs are seen free. Says which, for the log.
    fn reset_at_freeze(
        &self,
        file: &File,
        core: &vfio::PciDevice,
        state: &mut Preserved,
    ) -> Result<&'static str> {
        let shared = &*self.shared;
        let mode = shared.resets.mode();
        let pdev = core.pci();
        let dev = pdev.as_ref();
        let loc = state.location;

        // The reset needs the locks of the function and of its bridge (after vfio-pci's, which
        // the freeze just took): refuse now if someone holds them, rather than let the kexec go
        // on with a reset that will not get them.
        let fault = shared.faults.take_reset_fault(&loc);
        {
            // A test holding the device's locks, as another task might.
            let _held = (mode == Mode::Serial && fault == Some(reset::Fault::Locked))
                .then(|| Faults::hold_reset_lock(pdev))
                .flatten();
            // The reset of a function behind the same bridge, queued by an earlier freeze, may
            // hold them for a moment: try as long as a reset would.
            if reset::retry_locked(|| pdev.try_lock_for_reset().map(drop).ok_or(EAGAIN)).is_err() {
                dev_err!(
                    dev,
                    "live update: cannot freeze: the device or its upstream bridge is locked by someone else (for {} ms)\n",
                    reset::LOCK_WAIT_MS
                );
                return Err(EBUSY);
            }
        }

        // Reset: here (serial mode), or queued to run with the others' (parallel mode).
        match mode {
            Mode::Serial => {
                reset::reset(core, When::Serial, fault, &shared.faults).map_err(|e| {
                    dev_err!(
                        dev,
                        "live update: cannot freeze: {}\n",
                        reset::describe_failure(e)
                    );
                    if e == EAGAIN {
                        EBUSY
                    } else {
                        e
                    }
                })?;
                shared.devices.reset_outcome(&loc, ResetRecord::Done);
                Ok("reset done")
            }
            Mode::Parallel => {
                let queued = shared
                    .resets
                    .start(file, loc, fault, &shared.faults)
                    .inspect_err(|e| {
                        dev_err!(
                            dev,
                            "live update: cannot freeze: reset not queued: {:?}\n",
                            e
                        )
                    })?;
                // Until the reboot notifier records the reset's outcome, the next kernel takes
                // the device as not reset.
                shared.devices.reset_outcome(&loc, ResetRecord::Queued);
                state.reset = Some(queued);
                Ok("reset started")
            }
        }
    }
}

#[vtable]
impl liveupdate::FileHandler for Handler {
    const COMPATIBLE: &'static CStr = lu_abi::COMPATIBLE;
    type Data = Ser;
    type State = Preserved;

    fn can_preserve(&self, file: &File) -> bool {
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

    /// The PCI function: LUO then refuses a second file of a device with `EBUSY`, in any session.
    fn get_id(file: &File) -> usize {
        vfio_pci_of(file).map_or(file.as_ptr() as usize, |core| {
            vfio::raw_pci(core.pci()) as usize
        })
    }

    fn preserve(&self, file: &File, data: &mut Ser) -> Result<Preserved> {
        let core = vfio_pci_of(file).ok_or(EINVAL)?;
        let pdev = core.pci();
        // A file that is not bound does not hold the device open: another process may drive the
        // device through a file of its own, and the freeze would reset it under that process.
        if !vfio::file_is_bound(file) {
            dev_err!(
                pdev.as_ref(),
                "live update: cannot preserve: the file is not bound to iommufd (VFIO_DEVICE_BIND_IOMMUFD first)\n"
            );
            return Err(EBADFD);
        }
        let location = Location::of(pdev);
        let identity = Identity::of(pdev);
        // From here on the user cannot change the mode (VFIO_DEVICE_FEATURE_LIVEUPDATE: EBUSY).
        let mode = DeviceMode::from_uapi(core.lu_preserve().inspect_err(|e| match *e {
            e if e == EOPNOTSUPP => dev_err!(
                pdev.as_ref(),
                "live update: cannot preserve: the keep or run mode was chosen, but the device's state can no longer be kept (it shares a reset with another device now, or has VFs)\n"
            ),
            // LUO's get_id keeps a second file of a device out before this, so in practice it is
            // the run mode's check of the interrupts.
            e if e == EBUSY => dev_err!(
                pdev.as_ref(),
                "live update: cannot preserve: the run mode was chosen and interrupts are enabled, which cannot go on through the kexec (turn them off with VFIO_DEVICE_SET_IRQS); or vfio-pci has the device preserved already\n"
            ),
            e => dev_err!(
                pdev.as_ref(),
                "live update: cannot preserve: vfio-pci has the device preserved already: {:?}\n",
                e
            ),
        })?);
        let preserved = ScopeGuard::new(|| core.lu_unpreserve());
        self.shared
            .devices
            .preserving(pdev, &location, &identity, mode)?;
        preserved.dismiss();
        abi::encode(data, &location, &identity, mode);
        dev_dbg!(
            pdev.as_ref(),
            "live update: preserved, {}, mode {}\n",
            identity,
            mode.name()
        );
        // Fault injection only: `false` without it.
        let _bad_handle = self.shared.faults.corrupt(data);
        Ok(Preserved {
            location,
            mode,
            master: false,
            reset: None,
            #[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
            bad_handle: _bad_handle,
        })
    }

    fn unpreserve(&self, file: &File, state: &Preserved, _data: &Ser) {
        self.shared.devices.unpreserved(&state.location);
        if let Some(core) = vfio_pci_of(file) {
            core.lu_unpreserve();
        }
        pr_debug!("{}: live update: no longer preserved\n", state.location);
    }

    fn freeze(&self, file: &File, state: &mut Preserved, data: &mut Ser) -> Result {
        let began = Instant::<Monotonic>::now();
        let res = self.freeze_device(file, state, data, began);
        trace::freeze(
            &state.location,
            match (state.mode, self.shared.resets.mode()) {
                (DeviceMode::Keep | DeviceMode::Run, _) => trace::FreezeReset::None,
                (DeviceMode::Reset, Mode::Serial) => trace::FreezeReset::Serial,
                (DeviceMode::Reset, Mode::Parallel) => trace::FreezeReset::Parallel,
            },
            began.elapsed().as_micros_ceil().unsigned_abs(),
            &res,
        );
        res
    }

    #[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
    fn handover_fault(&self, _file: &File, state: &Preserved) -> Option<u64> {
        state.bad_handle.then_some(fault::BAD_HANDLE)
    }

    fn unfreeze(&self, file: &File, state: &mut Preserved, _data: &Ser) {
        let reset = self.shared.resets.unfrozen(state.reset.take());
        // The device goes back to its user: a next freeze resets it again.
        self.shared
            .devices
            .reset_outcome(&state.location, ResetRecord::NotReset);
        let Some(core) = vfio_pci_of(file) else {
            return;
        };
        core.unfreeze(state.master);
        let dev = core.pci().as_ref();
        let master = if state.master { "on" } else { "off" };
        match reset {
            Some(Err(e)) => dev_err!(
                dev,
                "live update: unfrozen, the kexec was cancelled: the reset failed ({}); bus mastering {} as before, user access back\n",
                reset::describe_failure(e),
                master
            ),
            _ => dev_dbg!(
                dev,
                "live update: unfrozen, the kexec was cancelled: {}, bus mastering {} as before, user access back\n",
                match state.mode {
                    DeviceMode::Keep => "not reset (keep mode)",
                    DeviceMode::Run => "not reset (run mode)",
                    DeviceMode::Reset => "reset done and config restored",
                },
                master
            ),
        }
    }

    fn retrieve(&self, data: &Ser) -> Result<ARef<File>> {
        let began = Instant::<Monotonic>::now();
        let res = self.retrieve_device(data);
        if res.is_err() {
            // Nobody will drive it: its DMA must not go on into memory that will be freed.
            stop_running(data, "its retrieve failed");
        }
        trace::retrieve(
            &abi::decode_location(data),
            began.elapsed().as_micros_ceil().unsigned_abs(),
            &res.as_ref().map(|_| ()).map_err(|e| *e),
        );
        res
    }

    fn can_finish(&self, file: Option<&File>, data: &Ser, status: RetrieveStatus) -> bool {
        let location = abi::decode_location(data);
        match (status, file) {
            (RetrieveStatus::Retrieved, Some(file)) => {
                let bound = vfio::file_is_bound(file);
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

    fn finish(&self, file: Option<&File>, data: &Ser, status: RetrieveStatus) {
        let location = abi::decode_location(data);
        // A session that ends without its VMM having bound the device (one that died, say) frees
        // the memory the device writes to: a device whose DMA went on must stop first.
        match (status, file) {
            (RetrieveStatus::Retrieved, Some(file)) if vfio::file_is_bound(file) => {}
            (RetrieveStatus::Failed(_), _) => {}
            _ => stop_running(data, "its session ended before its VMM bound it"),
        }
        self.shared.devices.finished(&location);
        match status {
            RetrieveStatus::Retrieved => {
                pr_debug!("{}: live update: finished ({:?})\n", location, status)
            }
            // What was preserved for a file that was never handed out is gone now.
            _ => pr_info!("{}: live update: finished ({:?})\n", location, status),
        }
    }
}

#[pin_data(PinnedDrop)]
struct VfioPciLiveUpdate {
    /// Waits for the resets that freezes queued; registered before the handler, so that it is
    /// there for every freeze.
    #[pin]
    reset_waiter: reboot::Registration<reset::Waiter>,
    handler: liveupdate::Registration<Handler>,
    /// The test builds' fault injection knobs in debugfs.
    #[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
    #[pin]
    fault: fault::Knobs,
}

impl kernel::InPlaceModule for VfioPciLiveUpdate {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        if !liveupdate::is_enabled() {
            pr_err!(
                "live update is disabled on this boot (no liveupdate=on): the handler cannot be registered (EOPNOTSUPP)\n"
            );
        }
        let shared = Arc::pin_init(Shared::new(reset_mode()), GFP_KERNEL);
        try_pin_init!(Self {
            // Early in the chain: the resets are waited for before other notifiers run.
            reset_waiter <- reboot::Registration::register(shared.clone().map(reset::Waiter), i32::MAX),
            handler: liveupdate::Registration::register(
                shared.clone().map(|shared| Handler { shared })
            )?,
            #[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
            fault <- fault::Knobs::new(shared.as_ref().map_err(|e| *e)?),
        })
        .pin_chain(|this| {
            this.handler.add_flb(|h| h.shared.devices.flb())?;
            let devices = &this.handler.handler().shared.devices;
            // From here on the opens of the devices a previous kernel preserved are held off.
            let incoming = devices.incoming();
            if !incoming.is_empty() {
                pr_debug!(
                    "live update: {} device(s) preserved by the previous kernel are held off until retrieved\n",
                    incoming.len()
                );
            }
            // Only vfio-pci can hand a kept device's state back: it is the only driver of kept
            // devices; of the others only with bind_preserved.
            holdoff::bind_preserved(&incoming, module_parameters::bind_preserved.value());
            pr_debug!(
                "registered the LUO file handler \"{}\" (resets at freeze: {})\n",
                lu_abi::COMPATIBLE.to_str().unwrap_or("?"),
                reset_mode().name()
            );
            Ok(())
        })
    }
}

#[pinned_drop]
impl PinnedDrop for VfioPciLiveUpdate {
    fn drop(self: Pin<&mut Self>) {
        pr_debug!("unregistering the LUO file handler\n");
        // No file is preserved any more (each holds a reference on the module): no reset can be
        // queued now, and the last ones finish before their workqueue is gone.
        self.handler.handler().shared.resets.exit();
    }
}
