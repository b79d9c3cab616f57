// SPDX-License-Identifier: GPL-2.0

//! The device resets of a freeze, one after another or all at once.
//!
//! PCIe gives a function 100 ms to come back from a Function Level Reset, and `pcie_flr()` waits
//! that long; a bus reset waits longer. LUO calls the freeze of each preserved file in turn, so
//! resetting in each freeze costs N such waits for N devices, all of it blackout for the VMs.
//!
//! In parallel mode (the default) a freeze still does synchronously everything that can refuse
//! the kexec (interrupts, power state, locks) and stops the device's DMA, then queues the reset on
//! the module's own unbound workqueue, where the resets of all devices run at the same time. The
//! reboot notifier of the module waits for all of them, [`WAIT_ALL_MS`] at most ([`Resets::wait_all`]).
//! A reset cannot refuse the kexec any more: its outcome goes into the list of preserved devices
//! (KHO memory, writable until the jump), and the next kernel resets at retrieve a device whose
//! reset is not recorded as done. In serial mode (module parameter `serial_reset`) the freeze
//! resets the device itself, as the upstream C proposal does, and a failed reset refuses the kexec.
//!
//! Why the reboot notifier: in 7.3 `kernel_kexec()` calls `liveupdate_reboot()`, whose
//! `luo_session_serialize()` is LUO's freeze loop, and once every file froze it calls
//! `kernel_restart_prepare()`. That runs the reboot notifier chain first, then `device_shutdown()`,
//! which shuts down the PCIe ports above our devices and takes the device locks a reset holds;
//! then the CPUs stop and the new kernel starts. The notifier chain is the first point after the
//! last freeze and before anything else touches the devices, and LUO has no callback of its own
//! after the freeze loop. A kexec that LUO cancels after some freezes (a later file refused)
//! never gets there: LUO calls unfreeze for the files already frozen, and unfreeze waits for its
//! device's reset ([`Resets::unfrozen`]).

use crate::{
    abi::{Location, ResetRecord},
    devices::DeviceList,
    fault::Faults,
    trace::{self, ResetBy},
    vfio,
};
use kernel::{
    device,
    fs::File,
    impl_has_work, new_mutex, new_work,
    prelude::*,
    reboot,
    sync::{
        aref::ARef,
        atomic::{Acquire, Atomic, Relaxed, Release},
        Arc, Completion, Mutex,
    },
    time::{delay::fsleep, Delta, Instant, Monotonic},
    workqueue::{OwnedQueue, Work, WorkItem},
};

/// How long a queued reset tries to take the lock of its VFIO device set, then the locks of its
/// device and upstream bridge, before it gives up: 3 s. The freeze took them a moment earlier;
/// now the resets of the other functions behind the same bridge, or of the same device set,
/// hold them in turn (about 100 ms each), or a newcomer does.
pub(crate) const LOCK_WAIT_MS: i64 = 3_000;
/// How long [`retry_locked`] sleeps between two tries.
const LOCK_RETRY_MS: i64 = 10;

/// How long the reboot notifier waits for the queued resets before it lets the kexec go on. A
/// reset that has not finished by then is recorded as not done, and the new kernel resets the
/// device at retrieve. PCIe allows a function up to a second to come back from a reset, and the
/// PCI core waits up to a minute for one that says it is not ready.
const WAIT_ALL_MS: i64 = 10_000;
/// How often the reboot notifier looks at the queued resets.
const WAIT_POLL_US: i64 = 200;

/// Which of the two modes is in use: serial resets in freeze, or parallel ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Each freeze resets its device before it returns.
    Serial,
    /// Each freeze queues its device's reset; the reboot notifier waits for them all.
    Parallel,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Serial => "serial",
            Self::Parallel => "parallel",
        }
    }
}

/// Who resets a device.
#[derive(Clone, Copy)]
pub(crate) enum When {
    /// A freeze in serial mode, itself.
    Serial,
    /// A job that a freeze queued at this time, in parallel mode.
    Parallel(Instant<Monotonic>),
    /// The new kernel's retrieve, because the previous kernel's reset was not done.
    Retrieve,
}

/// A fault of a device's next reset, injected by the tests (`CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The reset is not done and fails with `EIO`.
    Error,
    /// Someone holds the device's locks past the reset's give-up.
    Locked,
}

/// Resets the device of `core` under vfio-pci's locks ([`vfio::PciDevice::reset`]: bus mastering
/// off, the configuration as it was just before the reset written back), trying the locks for
/// [`LOCK_WAIT_MS`] ([`retry_locked`]), and logs the outcome with the time the reset
/// took. Fails with [`EAGAIN`] if the locks stayed taken, or with the error of the reset. `fault`
/// is the reset fault that the tests armed for the device ([`Faults::take_reset_fault`]), and
/// `faults` records the reset for them.
pub(crate) fn reset(
    core: &vfio::PciDevice,
    when: When,
    fault: Option<Fault>,
    faults: &Faults,
) -> Result {
    let pdev = core.pci();
    let dev: &device::Device = pdev.as_ref();
    // A test holding the device's locks past the give-up, as another task might.
    let _held = (fault == Some(Fault::Locked))
        .then(|| Faults::hold_reset_lock(pdev))
        .flatten();
    let start = Instant::<Monotonic>::now();
    let before = faults.snapshot(pdev);
    let res = if fault == Some(Fault::Error) {
        dev_err!(dev, "live update: fault injection: the reset fails\n");
        Err(EIO)
    } else {
        retry_locked(|| core.reset())
    };
    faults.record_reset(pdev, before);
    let us = start.elapsed().as_micros_ceil();
    let (mode, by, waited) = match when {
        When::Parallel(q) => ("parallel", ResetBy::Parallel, (start - q).as_micros_ceil()),
        When::Serial => ("serial", ResetBy::Serial, 0),
        When::Retrieve => ("at retrieve", ResetBy::Retrieve, 0),
    };
    trace::reset(
        &Location::of(pdev),
        by,
        us.unsigned_abs(),
        waited.unsigned_abs(),
        &res,
    );
    match res {
        Ok(()) => dev_dbg!(
            dev,
            "live update: reset done in {} us ({}, began {} us after it was queued), config restored, bus mastering off\n",
            us,
            mode,
            waited
        ),
        Err(e) => dev_err!(
            dev,
            "live update: reset failed after {} us ({}): {}\n",
            us,
            mode,
            describe_failure(e)
        ),
    }
    res
}

/// What a failure of [`reset`] means, for a log line.
pub(crate) fn describe_failure(e: Error) -> impl kernel::fmt::Display {
    struct Why(Error);
    impl kernel::fmt::Display for Why {
        fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
            if self.0 == EAGAIN {
                write!(
                    f,
                    "the device, its upstream bridge or its VFIO device set stayed locked by someone else for {} ms",
                    LOCK_WAIT_MS
                )
            } else {
                write!(f, "the reset did not work ({:?})", self.0)
            }
        }
    }
    Why(e)
}

/// A reset queued by a freeze in parallel mode.
#[pin_data]
struct Job {
    /// The preserved file: it keeps the VFIO device registered while the reset runs.
    file: ARef<File>,
    /// Where the device is, as in the list of preserved devices.
    location: Location,
    #[pin]
    work: Work<Job>,
    /// Completed when the reset is over, whatever its outcome.
    #[pin]
    done: Completion,
    /// 0, or the negative errno of the failed reset; read once `done` completed.
    result: Atomic<i32>,
    /// Set (release) when the reset is over, with `result`; what the reboot notifier polls.
    finished: Atomic<bool>,
    /// When the freeze queued it.
    queued: Instant<Monotonic>,
    /// The reset fault that the tests armed for the device.
    fault: Option<Fault>,
    /// Where the tests see the reset.
    faults: Arc<Faults>,
}

impl_has_work! {
    impl HasWork<Self> for Job { self.work }
}

/// Calls `f` while it fails with [`EAGAIN`], [`LOCK_RETRY_MS`] apart, until [`LOCK_WAIT_MS`] have
/// passed since the first call. The limit is a time, not a number of tries: on a loaded machine a
/// sleep lasts longer than asked, and the wait must still end well before the reboot notifier's
/// ([`WAIT_ALL_MS`]).
pub(crate) fn retry_locked(mut f: impl FnMut() -> Result) -> Result {
    let start = Instant::<Monotonic>::now();
    loop {
        match f() {
            Err(e) if e == EAGAIN => {}
            res => return res,
        }
        if start.elapsed() >= Delta::from_millis(LOCK_WAIT_MS) {
            return Err(EAGAIN);
        }
        fsleep(Delta::from_millis(LOCK_RETRY_MS));
    }
}

impl Job {
    fn run_reset(&self) -> Result {
        let core = vfio::PciDevice::from_file(&self.file).ok_or(ENODEV)?;
        reset(core, When::Parallel(self.queued), self.fault, &self.faults)
    }

    /// The outcome of the reset, once `finished` is set.
    fn outcome(&self) -> Result {
        match self.result.load(Relaxed) {
            0 => Ok(()),
            e => Err(Error::from_errno(e)),
        }
    }
}

impl WorkItem for Job {
    type Pointer = Arc<Job>;

    fn run(this: Arc<Job>) {
        let res = this.run_reset();
        this.result
            .store(res.err().map_or(0, |e| e.to_errno()), Relaxed);
        this.finished.store(true, Release);
        this.done.complete_all();
    }
}

/// A reset queued by a freeze in parallel mode, kept with its preserved file's state until the
/// kexec, or the unfreeze that waits for it.
pub(crate) struct Queued(Arc<Job>);

/// The freezes of the current kexec attempt.
struct Pending {
    /// The resets queued by them (parallel mode).
    jobs: KVec<Arc<Job>>,
    /// When the first successful freeze began.
    first_freeze: Option<Instant<Monotonic>>,
    /// How many files froze.
    frozen: usize,
}

/// The resets of the freezes, and the workqueue they run on.
#[pin_data]
pub(crate) struct Resets {
    /// Where the resets run; the module's own, so that none of them runs after the module is
    /// unloaded ([`Resets::exit`] destroys it, which waits for them).
    #[pin]
    queue: Mutex<Option<OwnedQueue>>,
    #[pin]
    pending: Mutex<Pending>,
    /// Serial or parallel, for this load of the module.
    mode: Mode,
}

impl Resets {
    pub(crate) fn new(mode: Mode) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            queue <- new_mutex!(Some(OwnedQueue::new_unbound(c"vfio_pci_lu_reset")?)),
            pending <- new_mutex!(Pending {
                jobs: KVec::new(),
                first_freeze: None,
                frozen: 0,
            }),
            mode,
        })
    }

    /// How the freezes reset their devices.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Destroys the workqueue when the module is unloaded, after waiting for any reset still
    /// running on it (the end of one that an unfreeze already waited for).
    pub(crate) fn exit(&self) {
        let queue = self.queue.lock().take();
        drop(queue);
        drop(core::mem::take(&mut self.pending.lock().jobs));
    }

    /// Queues the reset of the device of `file` at `location`, whose freeze did the checks and
    /// stopped its DMA; `fault` is the reset fault the tests armed for it.
    pub(crate) fn start(
        &self,
        file: &File,
        location: Location,
        fault: Option<Fault>,
        faults: &Arc<Faults>,
    ) -> Result<Queued> {
        let job = Arc::pin_init(
            pin_init!(Job {
                file: file.into(),
                location,
                work <- new_work!("vfio_pci_liveupdate::reset"),
                done <- Completion::new(),
                result: Atomic::new(0),
                finished: Atomic::new(false),
                queued: Instant::now(),
                fault,
                faults: faults.clone(),
            }),
            GFP_KERNEL,
        )?;
        let queue = self.queue.lock();
        let queue = queue.as_ref().ok_or(ENODEV)?;
        // Tracked before it runs: a freeze that fails here must not leave a reset running.
        self.pending.lock().jobs.push(job.clone(), GFP_KERNEL)?;
        // A new job is in no queue yet, so it is queued now.
        let _ = queue.enqueue(job.clone());
        Ok(Queued(job))
    }

    /// Counts a successful freeze, which began at `began`.
    pub(crate) fn frozen(&self, began: Instant<Monotonic>) {
        let mut pending = self.pending.lock();
        pending.first_freeze.get_or_insert(began);
        pending.frozen += 1;
    }

    /// The kexec was cancelled after a freeze: waits for its queued reset, if any, and forgets
    /// the freeze. Returns the reset's outcome in parallel mode.
    pub(crate) fn unfrozen(&self, queued: Option<Queued>) -> Option<Result> {
        {
            let mut pending = self.pending.lock();
            pending.frozen = pending.frozen.saturating_sub(1);
            if pending.frozen == 0 {
                pending.first_freeze = None;
            }
            if let Some(Queued(job)) = &queued {
                pending.jobs.retain(|j| !Arc::ptr_eq(j, job));
            }
        }
        let Queued(job) = queued?;
        job.done.wait_for_completion();
        Some(job.outcome())
    }

    /// Waits for every queued reset, [`WAIT_ALL_MS`] at most, records their outcomes in the
    /// list of preserved devices for the next kernel, and logs how long the freeze of all devices
    /// took: from the beginning of the first freeze to the end of the last reset. A reset that
    /// did not finish in time is logged with its device and left recorded as not done.
    pub(crate) fn wait_all(&self, devices: &DeviceList) {
        let (jobs, first, frozen) = {
            let mut pending = self.pending.lock();
            let first = pending.first_freeze.take();
            let frozen = core::mem::replace(&mut pending.frozen, 0);
            (core::mem::take(&mut pending.jobs), first, frozen)
        };
        let Some(first) = first else {
            return;
        };
        let waiting = Instant::<Monotonic>::now();
        let mut failed = 0;
        for job in &jobs {
            while !job.finished.load(Acquire) && waiting.elapsed().as_millis() < WAIT_ALL_MS {
                fsleep(Delta::from_micros(WAIT_POLL_US));
            }
            if !job.finished.load(Acquire) {
                failed += 1;
                pr_err!(
                    "{}: live update: reset not finished {} ms after the freezes; the kexec goes on and the next kernel resets the device at retrieve\n",
                    job.location,
                    WAIT_ALL_MS
                );
                continue;
            }
            let outcome = if job.outcome().is_ok() {
                ResetRecord::Done
            } else {
                failed += 1;
                ResetRecord::Failed
            };
            // KHO memory stays writable until the jump.
            devices.reset_outcome(&job.location, outcome);
        }
        let us = first.elapsed().as_micros_ceil();
        trace::freeze_all(
            u32::try_from(frozen).unwrap_or(u32::MAX),
            self.mode == Mode::Serial,
            us.unsigned_abs(),
            failed,
        );
        pr_debug!(
            "live update: freeze of {} device(s) took {} us from the first freeze to the last reset done ({} resets, {} failed or unfinished)\n",
            frozen,
            us,
            self.mode.name(),
            failed
        );
    }
}

/// The module's reboot notifier: the last point before the kexec at which resets can be waited
/// for (see the module documentation).
pub(crate) struct Waiter(pub(crate) Arc<crate::Shared>);

impl reboot::Handler for Waiter {
    fn notify(&self, _action: reboot::Action) {
        self.0.resets.wait_all(&self.0.devices);
    }
}
