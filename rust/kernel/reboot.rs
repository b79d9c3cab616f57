// SPDX-License-Identifier: GPL-2.0

//! Reboot notifiers.
//!
//! A reboot notifier runs when the system goes down, in the task that asked for it, before the
//! devices are shut down: `kernel_restart_prepare()`, `kernel_halt()` and `kernel_power_off()`
//! call the chain first thing. A kexec reboot goes through `kernel_restart_prepare()` too, after
//! the Live Update Orchestrator has frozen the preserved files, so a notifier is where work that
//! a freeze started can be waited for.
//!
//! C header: [`include/linux/reboot.h`](srctree/include/linux/reboot.h)

use crate::{bindings, error::to_result, prelude::*, types::Opaque};

/// Why the system goes down, as the reboot notifier chain says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A restart, including a kexec reboot (`SYS_RESTART`).
    Restart,
    /// A halt (`SYS_HALT`).
    Halt,
    /// A power off (`SYS_POWER_OFF`).
    PowerOff,
    /// Any other value.
    Other(usize),
}

impl Action {
    fn from_raw(action: usize) -> Self {
        // CAST: The `SYS_*` constants are small.
        match action {
            a if a == bindings::SYS_RESTART as usize => Self::Restart,
            a if a == bindings::SYS_HALT as usize => Self::Halt,
            a if a == bindings::SYS_POWER_OFF as usize => Self::PowerOff,
            a => Self::Other(a),
        }
    }
}

/// What a reboot notifier does.
pub trait Handler: Send + Sync + 'static {
    /// Called when the system goes down, in process context; it may sleep. The system goes down
    /// whatever this does.
    fn notify(&self, action: Action);
}

/// A registered reboot notifier, which owns its handler.
///
/// Registers on creation and unregisters on drop, before the handler is dropped.
///
/// # Invariants
///
/// `nb` is registered on the reboot notifier chain, calling `Self::call`, from a successful
/// [`Registration::register`] until drop; `handler` is initialised before and dropped after.
#[pin_data(PinnedDrop)]
pub struct Registration<H: Handler> {
    /// What [`Handler::notify`] gets as `&self`.
    #[pin]
    handler: H,
    #[pin]
    nb: Opaque<bindings::notifier_block>,
}

// SAFETY: The notifier chain functions may be called from any thread, and the handler is `Send`.
unsafe impl<H: Handler> Send for Registration<H> {}
// SAFETY: `&Registration` gives access to the handler only, which is `Sync`.
unsafe impl<H: Handler> Sync for Registration<H> {}

impl<H: Handler> Registration<H> {
    /// Initialises `handler` and registers it on the reboot notifier chain, with the given
    /// priority (higher runs first).
    pub fn register(handler: impl PinInit<H, Error>, priority: i32) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            // Before the registration: the chain may call it as soon as it is registered.
            handler <- handler,
            nb <- Opaque::try_ffi_init(move |slot: *mut bindings::notifier_block| {
                let mut nb: bindings::notifier_block = pin_init::zeroed();
                nb.notifier_call = Some(Self::call);
                nb.priority = priority;
                // SAFETY: The initializer may write to `slot`.
                unsafe { slot.write(nb) };
                // SAFETY: `slot` is an initialised notifier block, pinned, and unregistered in
                // `drop` before its memory goes away.
                // INVARIANT: On success the notifier is registered.
                to_result(unsafe { bindings::register_reboot_notifier(slot) })
            }),
        })
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// # Safety
    ///
    /// Called by the notifier chain, for the notifier block `nb` of a registered
    /// `Registration<H>`.
    unsafe extern "C" fn call(
        nb: *mut bindings::notifier_block,
        action: usize,
        _data: *mut c_void,
    ) -> c_int {
        // SAFETY: By the safety requirements, `nb` is the `nb` field of a `Registration<H>`, which
        // stays registered, and so in place with its handler, until the chain's call returns (see
        // `drop`); `Opaque<T>` is transparent over `T`.
        let this = unsafe {
            &*crate::container_of!(nb.cast::<Opaque<bindings::notifier_block>>(), Self, nb)
        };
        this.handler.notify(Action::from_raw(action));
        // CAST: `NOTIFY_DONE` is 0.
        bindings::NOTIFY_DONE as c_int
    }
}

#[pinned_drop]
impl<H: Handler> PinnedDrop for Registration<H> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants, `nb` is registered. The chain's rwsem waits for a
        // running call to return before this does.
        unsafe { bindings::unregister_reboot_notifier(self.nb.get()) };
    }
}
