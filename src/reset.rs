// SPDX-License-Identifier: GPL-2.0

//! The device resets of a freeze, one after another or all at once.
//!
//! PCIe gives a function 100 ms to come back from a Function Level Reset, and `pcie_flr()` waits
//! that long; a bus reset waits longer. LUO calls the freeze of each preserved file in turn, so
//! resetting in each freeze costs N such waits for N devices, all of it blackout for the VMs.
//!
//! In parallel mode (the default) a freeze still does synchronously everything that can refuse
//! the kexec (interrupts, power state, locks) and stops the device's DMA, then queues the reset on
//! the unbound workqueue, where the resets of all devices run at the same time. The reboot
//! notifier of the module waits for all of them ([`wait_all`]). In serial mode (module parameter
//! `serial_reset`) the freeze resets the device itself, as the upstream C proposal does.
//!
//! Why the reboot notifier: in 7.3 `kernel_kexec()` calls `liveupdate_reboot()`, whose
//! `luo_session_serialize()` is LUO's freeze loop, and once every file froze it calls
//! `kernel_restart_prepare()`. That runs the reboot notifier chain first, then `device_shutdown()`,
//! which shuts down the PCIe ports above our devices and takes the device locks a reset holds;
//! then the CPUs stop and the new kernel starts. The notifier chain is the first point after the
//! last freeze and before anything else touches the devices, and LUO has no callback of its own
//! after the freeze loop. A kexec that LUO cancels after some freezes (a later file refused)
//! never gets there: LUO calls unfreeze for the files already frozen, and unfreeze waits for its
//! device's reset ([`unfrozen`]).

use kernel::{
    device,
    fs::File,
    impl_has_work, new_work,
    pci::{self, ResetLock},
    prelude::*,
    reboot,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        global_lock, Arc, Completion,
    },
    time::{delay::fsleep, Delta, Instant, Monotonic},
    workqueue::{self, Work, WorkItem},
};

/// How long a queued reset tries to take the locks of its device and upstream bridge before it
/// gives up; the freeze took them a moment earlier, so only a newcomer can hold them now.
const LOCK_ATTEMPTS: i64 = 100;
const LOCK_RETRY_MS: i64 = 10;

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

/// Resets a locked function whose DMA is already off, then writes back its saved configuration
/// state, and logs the outcome with the time the reset took. `queued` is when a freeze queued
/// the reset (parallel mode), [`None`] when the freeze does it itself (serial mode).
pub(crate) fn reset_locked(
    pdev: &pci::Device,
    lock: &ResetLock<'_>,
    queued: Option<Instant<Monotonic>>,
) -> Result {
    let dev: &device::Device = pdev.as_ref();
    let start = Instant::<Monotonic>::now();
    let res = lock.reset_function();
    lock.restore_state();
    let us = start.elapsed().as_micros_ceil();
    let (mode, waited) = match queued {
        Some(q) => (Mode::Parallel, (start - q).as_micros_ceil()),
        None => (Mode::Serial, 0),
    };
    match res {
        Ok(()) => dev_info!(
            dev,
            "live update: reset done in {} us ({}, began {} us after it was queued), config restored\n",
            us,
            mode.name(),
            waited
        ),
        Err(e) => dev_err!(
            dev,
            "live update: reset failed after {} us ({}): {:?}\n",
            us,
            mode.name(),
            e
        ),
    }
    res
}

/// A reset queued by a freeze in parallel mode.
#[pin_data]
struct Job {
    /// The preserved file: it keeps the VFIO device registered while the reset runs.
    file: ARef<File>,
    #[pin]
    work: Work<Job>,
    /// Completed when the reset is over, whatever its outcome.
    #[pin]
    done: Completion,
    /// 0, or the negative errno of the failed reset; read once `done` completed.
    result: Atomic<i32>,
    /// When the freeze queued it.
    queued: Instant<Monotonic>,
}

impl_has_work! {
    impl HasWork<Self> for Job { self.work }
}

impl Job {
    fn run_reset(&self) -> Result {
        let core = crate::vfio_pci_of(&self.file).ok_or(ENODEV)?;
        let _set = core.lock();
        let pdev = core.pci();
        let mut attempts = 0;
        let lock = loop {
            if let Some(lock) = pdev.try_lock_for_reset() {
                break lock;
            }
            attempts += 1;
            if attempts == LOCK_ATTEMPTS {
                dev_err!(
                    pdev.as_ref(),
                    "live update: reset not done: the device or its upstream bridge stayed locked by someone else for {} ms\n",
                    LOCK_ATTEMPTS * LOCK_RETRY_MS
                );
                return Err(EBUSY);
            }
            fsleep(Delta::from_millis(LOCK_RETRY_MS));
        };
        reset_locked(pdev, &lock, Some(self.queued))
    }
}

impl WorkItem for Job {
    type Pointer = Arc<Job>;

    fn run(this: Arc<Job>) {
        let errno = match this.run_reset() {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
        this.result.store(errno, Relaxed);
        this.done.complete_all();
    }
}

/// The freezes of the current kexec attempt.
struct Pending {
    /// The resets queued by them (parallel mode).
    jobs: KVec<Arc<Job>>,
    /// When the first successful freeze began.
    first_freeze: Option<Instant<Monotonic>>,
    /// How many files froze.
    frozen: usize,
}

global_lock! {
    // SAFETY: `init()` initialises it in the module initializer, before any file is preserved.
    unsafe(uninit) static PENDING: Mutex<Pending> = Pending {
        jobs: KVec::new(),
        first_freeze: None,
        frozen: 0,
    };
}

/// Initialises the state of this module.
///
/// # Safety
///
/// Called once, from the module initializer, before any other function of this module.
pub(crate) unsafe fn init() {
    // SAFETY: By the safety requirements, this is the only call; a module's statics are new at
    // every load.
    unsafe { PENDING.init() };
}

/// Queues the reset of the device of `file`, whose freeze did the checks and stopped its DMA.
pub(crate) fn start(file: &File) -> Result {
    let job = Arc::pin_init(
        pin_init!(Job {
            file: file.into(),
            work <- new_work!("vfio_pci_liveupdate::reset"),
            done <- Completion::new(),
            result: Atomic::new(0),
            queued: Instant::now(),
        }),
        GFP_KERNEL,
    )?;
    PENDING.lock().jobs.push(job.clone(), GFP_KERNEL)?;
    // A new job is in no queue yet, so it is queued now.
    let _ = workqueue::system_unbound().enqueue(job);
    Ok(())
}

/// Counts a successful freeze, which began at `began`.
pub(crate) fn frozen(began: Instant<Monotonic>) {
    let mut pending = PENDING.lock();
    pending.first_freeze.get_or_insert(began);
    pending.frozen += 1;
}

/// The kexec was cancelled after the freeze of `file`: waits for its queued reset, if any, and
/// forgets the freeze. Returns the reset's outcome in parallel mode.
pub(crate) fn unfrozen(file: &File) -> Option<Result> {
    let job = {
        let mut pending = PENDING.lock();
        pending.frozen = pending.frozen.saturating_sub(1);
        if pending.frozen == 0 {
            pending.first_freeze = None;
        }
        let idx = pending
            .jobs
            .iter()
            .position(|j| core::ptr::eq(j.file.as_ptr(), file.as_ptr()))?;
        pending.jobs.remove(idx).ok()?
    };
    job.done.wait_for_completion();
    Some(match job.result.load(Relaxed) {
        0 => Ok(()),
        e => Err(Error::from_errno(e)),
    })
}

/// Waits for every queued reset, and logs how long the freeze of all devices took: from the
/// beginning of the first freeze to the end of the last reset.
pub(crate) fn wait_all() {
    let (jobs, first, frozen) = {
        let mut pending = PENDING.lock();
        let first = pending.first_freeze.take();
        let frozen = core::mem::replace(&mut pending.frozen, 0);
        (core::mem::take(&mut pending.jobs), first, frozen)
    };
    let Some(first) = first else {
        return;
    };
    let mut failed = 0;
    for job in &jobs {
        job.done.wait_for_completion();
        if job.result.load(Relaxed) != 0 {
            failed += 1;
        }
    }
    pr_info!(
        "live update: freeze of {} device(s) took {} us from the first freeze to the last reset done ({} resets, {} failed)\n",
        frozen,
        first.elapsed().as_micros_ceil(),
        crate::reset_mode().name(),
        failed
    );
}

/// The module's reboot notifier: the last point before the kexec at which resets can be waited
/// for (see the module documentation).
pub(crate) struct ResetWaiter;

impl reboot::Handler for ResetWaiter {
    fn notify(_action: reboot::Action) {
        wait_all();
    }
}
