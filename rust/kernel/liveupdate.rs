// SPDX-License-Identifier: GPL-2.0

//! Live Update Orchestrator (LUO) file handlers.
//!
//! LUO lets userspace preserve file descriptors across a kexec-based live update: a file given to
//! a session with `LIVEUPDATE_SESSION_PRESERVE_FD` is handed to the registered file handler that
//! accepts it, which preserves what the next kernel needs; after the kexec the same handler
//! (matched by its compatible string) makes a new file from it for
//! `LIVEUPDATE_SESSION_RETRIEVE_FD`.
//!
//! A handler implements [`FileHandler`] and keeps a [`Registration`] alive while it is loaded.
//! What it preserves for a file is a typed [`kho::Preserved`] blob ([`FileHandler::Data`]) that
//! this module allocates, hands over, gives back in the next kernel and frees on every path:
//! unpreserve (the session was closed before the kexec) and finish. In the next kernel the blob
//! is read only after KHO checked that the handed-over handle names memory the previous kernel
//! preserved ([`kho::Incoming::restore`]).
//!
//! C header: [`include/linux/liveupdate.h`](srctree/include/linux/liveupdate.h)

use crate::{
    bindings,
    error::{from_result, to_result, VTABLE_DEFAULT_ERROR},
    fs::File,
    kho,
    module::this_module,
    prelude::*,
    sync::{aref::ARef, Arc, Mutex},
    types::{ForeignOwnable, Opaque},
};
use core::{marker::PhantomData, mem::ManuallyDrop};

/// Whether LUO is enabled on this boot (`liveupdate=on`).
pub fn is_enabled() -> bool {
    // SAFETY: `liveupdate_enabled` has no preconditions.
    unsafe { bindings::liveupdate_enabled() }
}

/// What happened to an incoming file's retrieve, as LUO reports it to `can_finish` and `finish`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrieveStatus {
    /// Userspace never asked for the file.
    NotAttempted,
    /// The file was retrieved.
    Retrieved,
    /// [`FileHandler::retrieve`] failed with this error; LUO does not retry it.
    Failed(Error),
}

impl RetrieveStatus {
    fn from_raw(status: c_int) -> Self {
        match status {
            0 => Self::NotAttempted,
            s if s > 0 => Self::Retrieved,
            s => Self::Failed(Error::from_errno(s)),
        }
    }
}

/// A LUO file handler.
///
/// Every callback runs in process context and may sleep. LUO serialises the callbacks of one
/// file; callbacks of different files may run concurrently.
#[vtable]
pub trait FileHandler: Sized + Send + Sync + 'static {
    /// The compatible string that names this handler's ABI in both kernels; it must be shorter
    /// than `LIVEUPDATE_HNDL_COMPAT_LENGTH`. Change it whenever [`Self::Data`] changes
    /// incompatibly.
    const COMPATIBLE: &'static CStr;

    /// What is preserved for each file: a zeroed KHO blob, filled by [`Self::preserve`].
    type Data: kho::Blob + Send + Sync;

    /// Runtime state of a preserved file in the outgoing kernel (not preserved).
    type State: Send + Sync;

    /// Whether this handler takes `file`. LUO asks every handler about every file given to
    /// `LIVEUPDATE_SESSION_PRESERVE_FD`, so this must be cheap and must not sleep.
    fn can_preserve(&self, file: &File) -> bool;

    /// What `file` gives access to, as an identifier that LUO keeps for every file it holds: LUO
    /// refuses to preserve a file whose identifier another file it holds has ([`EBUSY`], in any
    /// session, before [`Self::preserve`] is called), and a retrieved file holds its identifier
    /// until it is finished. Asked only of files that [`Self::can_preserve`] took or
    /// [`Self::retrieve`] made, and must not change while LUO holds the file. Without it, each
    /// file is its own identifier. LUO does not say which handler it asks, so this has no `self`.
    fn get_id(_file: &File) -> usize {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Preserves `file`: fills `data` (zeroed) and returns the file's runtime state.
    fn preserve(&self, file: &File, data: &mut Self::Data) -> Result<Self::State>;

    /// The file is no longer preserved (its session was closed before the kexec). `state` is
    /// dropped after this; the blob is unpreserved and freed.
    fn unpreserve(&self, _file: &File, _state: &Self::State, _data: &Self::Data) {}

    /// Last step before the kexec, inside `reboot(LINUX_REBOOT_CMD_KEXEC)`. An error cancels the
    /// kexec: LUO then unfreezes the files already frozen, and the reboot call returns the error.
    fn freeze(&self, _file: &File, _state: &mut Self::State, _data: &mut Self::Data) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Fault injection, for test builds: the handle that LUO hands to the next kernel for this
    /// frozen file in place of its blob's, or `None` to hand over the blob. Asked after every
    /// successful [`Self::freeze`] (so only of handlers that have one). A handle that does not
    /// name preserved memory makes the next kernel's retrieve of the file fail with [`EINVAL`];
    /// the blob itself stays preserved and is never restored, so its memory is lost to that
    /// boot. Drivers implement this only in builds with fault injection.
    fn handover_fault(&self, _file: &File, _state: &Self::State) -> Option<u64> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The kexec was cancelled after [`Self::freeze`] succeeded for this file: undo it.
    fn unfreeze(&self, _file: &File, _state: &mut Self::State, _data: &Self::Data) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// In the new kernel: makes the file that userspace gets back. LUO calls this at most once
    /// per incoming file and keeps the result, success or error.
    ///
    /// `data` is the blob the previous kernel preserved, taken over from KHO after it checked
    /// that the handed-over handle names preserved memory. When it does not, retrieve fails with
    /// [`EINVAL`] (logged with the handle) before this is called, [`Self::can_finish`] is not
    /// asked about the file and [`Self::finish`] is not called for it.
    fn retrieve(&self, data: &Self::Data) -> Result<ARef<File>>;

    /// Whether the session may finish as far as this file is concerned. `file` is the retrieved
    /// file, if any.
    fn can_finish(
        &self,
        _file: Option<&File>,
        _data: &Self::Data,
        _status: RetrieveStatus,
    ) -> bool {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The session finishes; the blob is freed after this returns.
    fn finish(&self, _file: Option<&File>, _data: &Self::Data, _status: RetrieveStatus) {}
}

/// Per-file state of the outgoing kernel, kept by LUO as the file's `private_data`.
struct Outgoing<H: FileHandler> {
    data: kho::Preserved<H::Data>,
    state: H::State,
}

struct VTable<H: FileHandler>(PhantomData<H>);

impl<H: FileHandler> VTable<H> {
    const OPS: bindings::liveupdate_file_ops = bindings::liveupdate_file_ops {
        can_preserve: Some(Self::can_preserve),
        preserve: Some(Self::preserve),
        unpreserve: Some(Self::unpreserve),
        freeze: if H::HAS_FREEZE {
            Some(Self::freeze)
        } else {
            None
        },
        unfreeze: if H::HAS_UNFREEZE {
            Some(Self::unfreeze)
        } else {
            None
        },
        retrieve: Some(Self::retrieve),
        can_finish: if H::HAS_CAN_FINISH {
            Some(Self::can_finish)
        } else {
            None
        },
        finish: Some(Self::finish),
        get_id: if H::HAS_GET_ID {
            Some(Self::get_id)
        } else {
            None
        },
        owner: this_module::<H::OwnerModule>().as_ptr(),
    };

    /// # Safety
    ///
    /// `fh` is the handler of a registered `Registration<H>`; `file` is a valid file that LUO
    /// holds a reference on for the duration of the call.
    unsafe extern "C" fn can_preserve(
        fh: *mut bindings::liveupdate_file_handler,
        file: *mut bindings::file,
    ) -> bool {
        // SAFETY: LUO asks only registered handlers, under its registration lock.
        let reg = unsafe { Self::registration(fh) };
        // SAFETY: By the safety requirements, `file` is valid for the duration of the call.
        reg.handler
            .can_preserve(unsafe { File::from_raw_file(file) })
    }

    /// # Safety
    ///
    /// `file` is a valid file that LUO holds a reference on for the duration of the call.
    unsafe extern "C" fn get_id(file: *mut bindings::file) -> c_ulong {
        // SAFETY: By the safety requirements, `file` is valid for the duration of the call.
        let id = H::get_id(unsafe { File::from_raw_file(file) });
        // CAST: `unsigned long` is as wide as a pointer, as `usize` is, in the kernel.
        id as c_ulong
    }

    /// # Safety
    ///
    /// `args` is valid, its `file` holds a reference for the duration of the call.
    unsafe extern "C" fn preserve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: By the safety requirements, `args` is valid and exclusively ours.
        let args = unsafe { &mut *args };
        // SAFETY: `args.handler` is the handler of the file LUO holds; a `Registration` keeps it
        // allocated while LUO holds a file of it.
        let reg = unsafe { Self::registration(args.handler) };
        // SAFETY: By the safety requirements, `args.file` is valid for the duration of the call.
        let file = unsafe { File::from_raw_file(args.file) };
        from_result(|| {
            let mut data = kho::Preserved::<H::Data>::new()?;
            // Allocated first: LUO does not call `unpreserve` for a file whose preserve failed.
            let slot = KBox::<Outgoing<H>>::new_uninit(GFP_KERNEL)?;
            let state = reg.handler.preserve(file, &mut data)?;
            let handle = data.handle();
            let out = slot.write(Outgoing::<H> { data, state });
            args.serialized_data = handle.as_raw();
            args.private_data = out.into_foreign();
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `args` is valid; its `private_data` was set by [`Self::preserve`] for this file and is not
    /// used by LUO after this call.
    unsafe extern "C" fn unpreserve(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &mut *args };
        // SAFETY: `args.handler` is the handler of the file LUO holds; a `Registration` keeps it
        // allocated while LUO holds a file of it.
        let reg = unsafe { Self::registration(args.handler) };
        // SAFETY: By the safety requirements, `args.file` is valid for the duration of the call.
        let file = unsafe { File::from_raw_file(args.file) };
        // SAFETY: `private_data` came from `into_foreign` in `preserve`, and ownership comes
        // back to us here, once.
        let out = unsafe { KBox::<Outgoing<H>>::from_foreign(args.private_data) };
        args.private_data = core::ptr::null_mut();
        reg.handler.unpreserve(file, &out.state, &out.data);
        // Dropping `out` drops the state and unpreserves and frees the blob.
    }

    /// # Safety
    ///
    /// `args` is valid; its `private_data` was set by [`Self::preserve`] for this file, and LUO
    /// serialises the callbacks of one file.
    unsafe extern "C" fn freeze(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &mut *args };
        // SAFETY: `args.handler` is the handler of the file LUO holds; a `Registration` keeps it
        // allocated while LUO holds a file of it.
        let reg = unsafe { Self::registration(args.handler) };
        // SAFETY: By the safety requirements, `args.file` is valid for the duration of the call.
        let file = unsafe { File::from_raw_file(args.file) };
        // SAFETY: `private_data` came from `into_foreign` in `preserve`; LUO holds the file's
        // mutex, so nothing else borrows it during the call.
        let out = unsafe { KBox::<Outgoing<H>>::borrow_mut(args.private_data) };
        from_result(|| {
            reg.handler.freeze(file, &mut out.state, &mut out.data)?;
            // LUO keeps what a successful freeze leaves here, also across an unfreeze: set it
            // every time, so that a fault injected in one freeze does not outlive it.
            args.serialized_data = out.data.handle().as_raw();
            if H::HAS_HANDOVER_FAULT {
                if let Some(raw) = reg.handler.handover_fault(file, &out.state) {
                    args.serialized_data = raw;
                }
            }
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Same as [`Self::freeze`].
    unsafe extern "C" fn unfreeze(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &mut *args };
        // SAFETY: `args.handler` is the handler of the file LUO holds; a `Registration` keeps it
        // allocated while LUO holds a file of it.
        let reg = unsafe { Self::registration(args.handler) };
        // SAFETY: By the safety requirements, `args.file` is valid for the duration of the call.
        let file = unsafe { File::from_raw_file(args.file) };
        // SAFETY: `private_data` came from `into_foreign` in `preserve` and is not freed before
        // `unpreserve`; LUO serialises the callbacks of one file, so nothing else borrows it
        // during the call.
        let out = unsafe { KBox::<Outgoing<H>>::borrow_mut(args.private_data) };
        reg.handler.unfreeze(file, &mut out.state, &out.data);
    }

    /// The handler's registration, from the handler pointer LUO passes to every callback.
    ///
    /// # Safety
    ///
    /// `fh` is the `fh` field of the [`Inner`] of a `Registration<H>`, which stays allocated for
    /// `'a`: it is registered, or LUO holds a file of it (see [`Registration`]).
    unsafe fn registration<'a>(fh: *mut bindings::liveupdate_file_handler) -> &'a Inner<H> {
        // SAFETY: By the safety requirements, `fh` is the `fh` field of an `Inner<H>`, which
        // lives for `'a`; `Opaque<T>` is transparent over `T`.
        unsafe {
            &*crate::container_of!(
                fh.cast::<Opaque<bindings::liveupdate_file_handler>>(),
                Inner<H>,
                fh
            )
        }
    }

    /// # Safety
    ///
    /// `args` is valid, for an incoming file of this handler.
    unsafe extern "C" fn retrieve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &mut *args };
        // SAFETY: `args.handler` is the handler of the file LUO holds; a `Registration` keeps it
        // allocated while LUO holds a file of it.
        let reg = unsafe { Self::registration(args.handler) };
        from_result(|| {
            let data = reg.incoming_data(args.serialized_data)?;
            let file = reg.handler.retrieve(&data)?;
            // LUO takes over the reference.
            args.file = ARef::into_raw(file).as_ptr().cast();
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `args` is valid, for an incoming file of this handler; its `file` is null or valid.
    unsafe extern "C" fn can_finish(args: *mut bindings::liveupdate_file_op_args) -> bool {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &*args };
        // SAFETY: `args.handler` is the handler of the file LUO holds; a `Registration` keeps it
        // allocated while LUO holds a file of it.
        let reg = unsafe { Self::registration(args.handler) };
        // Without usable preserved data the file cannot be retrieved: nothing to wait for.
        let Ok(data) = reg.incoming_data(args.serialized_data) else {
            return true;
        };
        // SAFETY: `file` is null or a file that LUO holds a reference on.
        let file = (!args.file.is_null()).then(|| unsafe { File::from_raw_file(args.file) });
        reg.handler
            .can_finish(file, &data, RetrieveStatus::from_raw(args.retrieve_status))
    }

    /// # Safety
    ///
    /// `args` is valid, for an incoming file of this handler; its `file` is null or valid. LUO
    /// calls this once per incoming file and forgets the serialized data after it.
    unsafe extern "C" fn finish(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &*args };
        // SAFETY: `args.handler` is the handler of the file LUO holds; a `Registration` keeps it
        // allocated while LUO holds a file of it.
        let reg = unsafe { Self::registration(args.handler) };
        let data = reg.incoming_data(args.serialized_data);
        reg.forget_incoming(args.serialized_data);
        let Ok(data) = data else {
            return;
        };
        // SAFETY: `file` is null or a file that LUO holds a reference on.
        let file = (!args.file.is_null()).then(|| unsafe { File::from_raw_file(args.file) });
        reg.handler
            .finish(file, &data, RetrieveStatus::from_raw(args.retrieve_status));
        // Dropping the last reference to `data` gives the blob back to the page allocator.
    }
}

/// Data shared by all the files of a handler, across all sessions: a File-Lifecycle-Bound object
/// (FLB) of LUO.
///
/// In the outgoing kernel the object exists while at least one file of the handler is preserved:
/// LUO calls [`Flb::preserve`] before the first file's [`FileHandler::preserve`] and drops it
/// after the last file's [`FileHandler::unpreserve`]. It is a typed KHO blob ([`Flb::Data`]) that
/// this module allocates, hands over with the files and frees on the abort path; the handler
/// updates it with [`FlbDef::with_outgoing`]. In the new kernel, the first
/// [`FlbDef::with_incoming`] makes [`Flb::Incoming`] from the handed-over blob, before any file is
/// retrieved if need be, and it lives until the last incoming file is finished.
#[vtable]
pub trait Flb: Sized + 'static {
    /// The compatible string that names the data's ABI in both kernels; it must be shorter than
    /// `LIVEUPDATE_FLB_COMPAT_LENGTH`.
    const COMPATIBLE: &'static CStr;

    /// What is handed over: a zeroed KHO blob, filled by [`Self::preserve`] and kept up to date.
    type Data: kho::Blob + Send + Unpin;

    /// The live object of the new kernel, made from the handed-over [`Self::Data`].
    type Incoming: Send + Sync;

    /// The first file of the handler is being preserved: initialise the zeroed `data`.
    fn preserve(data: &mut Self::Data) -> Result;

    /// Makes the live object of the new kernel from what the previous kernel handed over; the blob
    /// is freed after this returns. LUO keeps the result, an error included, and warns when the
    /// last file is finished after an error: prefer an object that records what was wrong.
    fn retrieve(data: &Self::Data) -> Result<Self::Incoming>;

    /// The last incoming file of the handler was finished; `obj` is dropped after this.
    fn finish(_obj: &Self::Incoming) {}
}

/// The outgoing object of an FLB: its blob, under a lock.
type FlbOutgoing<F> = crate::sync::Mutex<kho::Preserved<<F as Flb>::Data>>;

struct FlbVTable<F: Flb>(PhantomData<F>);

impl<F: Flb> FlbVTable<F> {
    const OPS: bindings::liveupdate_flb_ops = bindings::liveupdate_flb_ops {
        preserve: Some(Self::preserve),
        unpreserve: Some(Self::unpreserve),
        retrieve: Some(Self::retrieve),
        finish: Some(Self::finish),
        owner: this_module::<F::OwnerModule>().as_ptr(),
    };

    /// # Safety
    ///
    /// `args` is valid and exclusively ours for the duration of the call.
    unsafe extern "C" fn preserve(args: *mut bindings::liveupdate_flb_op_args) -> c_int {
        // SAFETY: By the safety requirements, `args` is valid and exclusively ours.
        let args = unsafe { &mut *args };
        from_result(|| {
            let mut data = kho::Preserved::<F::Data>::new()?;
            F::preserve(&mut data)?;
            let handle = data.handle();
            let obj = KBox::pin_init(crate::new_mutex!(data), GFP_KERNEL)?;
            args.data = handle.as_raw();
            args.obj = obj.into_foreign();
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `args` is valid; its `obj` was set by [`Self::preserve`] and LUO forgets it after this.
    unsafe extern "C" fn unpreserve(args: *mut bindings::liveupdate_flb_op_args) {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &mut *args };
        // SAFETY: `obj` came from `into_foreign` in `preserve`; ownership comes back here, once.
        drop(unsafe { Pin::<KBox<FlbOutgoing<F>>>::from_foreign(args.obj) });
        // Dropping the blob unpreserves and frees it.
    }

    /// # Safety
    ///
    /// `args` is valid; its `data` is what LUO found under this FLB's compatible string in the
    /// data handed over by the previous kernel.
    unsafe extern "C" fn retrieve(args: *mut bindings::liveupdate_flb_op_args) -> c_int {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &mut *args };
        // LUO calls `retrieve` at most once per boot for this FLB: it keeps the result while the
        // FLB is registered, and forgets the handed-over entry once it is consumed, so a reloaded
        // module does not get it again.
        let handle = kho::Handle::from_raw(args.data);
        from_result(|| {
            // SAFETY: LUO matched the data by the compatible string: if it is preserved memory,
            // it is the `kho::Preserved<F::Data>` that `preserve` made in the previous kernel, and
            // nothing else owns it (see above).
            let data = unsafe { kho::Incoming::<F::Data>::restore(handle) }.inspect_err(|e| {
                pr_err!(
                    "liveupdate: FLB {}: the handed-over data at {:#x} is not preserved memory: {:?}\n",
                    F::COMPATIBLE.to_str().unwrap_or("?"),
                    handle.as_raw(),
                    e
                )
            })?;
            let obj = KBox::new(F::retrieve(&data)?, GFP_KERNEL)?;
            args.obj = obj.into_foreign();
            Ok(0)
        })
        // Dropping `data` gives the blob back to the page allocator.
    }

    /// # Safety
    ///
    /// `args` is valid; its `obj` was set by [`Self::retrieve`] and LUO forgets it after this.
    unsafe extern "C" fn finish(args: *mut bindings::liveupdate_flb_op_args) {
        // SAFETY: By the safety requirements, `args` is valid.
        let args = unsafe { &mut *args };
        // SAFETY: `obj` came from `into_foreign` in `retrieve`; ownership comes back here, once.
        let obj = unsafe { KBox::<F::Incoming>::from_foreign(args.obj) };
        F::finish(&obj);
    }
}

/// The definition of an FLB, a pinned part of the handler that uses it; link it to the
/// handler's registration with [`Registration::add_flb`].
///
/// LUO keeps the FLB's state inside it, so it must stay where it is while it is linked: a pinned
/// field of the handler.
///
/// # Invariants
///
/// `inner` holds `FlbVTable::<F>::OPS` and `F::COMPATIBLE`; the rest is LUO's private state. A
/// definition is only ever made in place ([`FlbDef::new`] is an in-place initializer), so it
/// does not move once LUO has used it.
#[repr(transparent)]
#[pin_data]
pub struct FlbDef<F: Flb> {
    #[pin]
    inner: Opaque<bindings::liveupdate_flb>,
    _f: PhantomData<F>,
}

// SAFETY: LUO serialises all access to an FLB's state with its own locks, from any thread.
unsafe impl<F: Flb> Sync for FlbDef<F> {}
// SAFETY: See above.
unsafe impl<F: Flb> Send for FlbDef<F> {}

impl<F: Flb> FlbDef<F> {
    /// The C definition: ops and compatible string, the rest zeroed. Evaluated at compile time,
    /// so an [`Flb::COMPATIBLE`] that is too long fails the build.
    const RAW: bindings::liveupdate_flb = {
        // SAFETY: All zeros is a valid `liveupdate_flb`: null ops and an uninitialised private
        // part, which LUO initialises on first use.
        let mut flb: bindings::liveupdate_flb = unsafe { core::mem::zeroed() };
        let compat = F::COMPATIBLE.to_bytes_with_nul();
        assert!(
            compat.len() <= flb.compatible.len(),
            "FLB compatible string too long"
        );
        let mut i = 0;
        while i < compat.len() {
            // CAST: A byte of a C string.
            flb.compatible[i] = compat[i] as c_char;
            i += 1;
        }
        flb.ops = &FlbVTable::<F>::OPS;
        flb
    };

    /// The definition, initialised in place: LUO keeps state inside it that must not move once
    /// it is used.
    #[allow(clippy::new_without_default)]
    pub fn new() -> impl PinInit<Self> {
        // INVARIANT: `RAW` holds the ops and the compatible string.
        pin_init!(Self {
            inner: Opaque::new(Self::RAW),
            _f: PhantomData,
        })
    }

    fn as_raw(&self) -> *mut bindings::liveupdate_flb {
        self.inner.get()
    }

    /// Runs `f` on the outgoing blob, under its lock. Fails with [`ENOENT`] when no file of the
    /// handler is preserved (so there is no blob).
    pub fn with_outgoing<R>(&self, f: impl FnOnce(&mut F::Data) -> R) -> Result<R> {
        let mut obj = core::ptr::null_mut();
        // SAFETY: `self` is a valid FLB definition; `obj` is a valid out pointer.
        to_result(unsafe { bindings::liveupdate_flb_get_outgoing(self.as_raw(), &mut obj) })?;
        let ret = {
            // SAFETY: A non-null `obj` is the object `FlbVTable::preserve` made, and the reference
            // just taken keeps it from being unpreserved until the put below.
            let out = unsafe { <Pin<KBox<FlbOutgoing<F>>>>::borrow(obj) };
            let mut data = out.lock();
            f(&mut data)
        };
        // SAFETY: Paired with the get above.
        unsafe { bindings::liveupdate_flb_put_outgoing(self.as_raw()) };
        Ok(ret)
    }

    /// Runs `f` on the incoming object, made from the handed-over blob on first use. Fails with
    /// [`ENODATA`] when nothing was handed over or the object is finished, [`ENOENT`] when the
    /// previous kernel preserved no file of the handler, or with the error of [`Flb::retrieve`].
    pub fn with_incoming<R>(&self, f: impl FnOnce(&F::Incoming) -> R) -> Result<R> {
        let mut obj = core::ptr::null_mut();
        // SAFETY: `self` is a valid FLB definition; `obj` is a valid out pointer.
        to_result(unsafe { bindings::liveupdate_flb_get_incoming(self.as_raw(), &mut obj) })?;
        let ret = {
            // SAFETY: `obj` is the object `FlbVTable::retrieve` made, and the reference just
            // taken keeps it from being finished until the put below.
            let inc = unsafe { <KBox<F::Incoming>>::borrow(obj) };
            f(inc)
        };
        // SAFETY: Paired with the get above. If this was the last reference, LUO finishes the
        // object here, after `f` is done with it.
        unsafe { bindings::liveupdate_flb_put_incoming(self.as_raw()) };
        Ok(ret)
    }
}

/// The blob of an incoming file of handler `H`, by its serialized handle, or why it could not be
/// restored.
type IncomingBlob<H> = (u64, Result<Arc<kho::Incoming<<H as FileHandler>::Data>>>);

/// A registered LUO file handler, which owns the handler.
///
/// Registers on creation and unregisters on drop. What LUO points to (the C handler, and through
/// it the Rust one) lives in an allocation of its own: LUO keeps a pointer to the handler for
/// every file it holds, preserved or incoming, and calls back through it until the file is
/// unpreserved or finished, also after the handler is unregistered; what keeps that memory alive
/// is the reference LUO takes on the handler's owner module for each such file. So the drop
/// frees the allocation only when the owner module has no reference left (the module is going
/// away, or its initialisation failed before any file was preserved); otherwise it warns and
/// leaves the allocation to LUO.
///
/// # Invariants
///
/// `inner.fh` is registered with LUO from a successful [`Registration::register`] until drop.
pub struct Registration<H: FileHandler> {
    inner: ManuallyDrop<Pin<KBox<Inner<H>>>>,
}

/// What LUO points to: the C handler and the Rust one.
///
/// # Invariants
///
/// `fh` holds `VTable::<H>::OPS` and `H::COMPATIBLE`.
#[pin_data]
struct Inner<H: FileHandler> {
    /// What every callback of the handler gets as `&self`.
    #[pin]
    handler: H,
    /// The blobs of incoming files, by serialized handle: restored from KHO (which checks the
    /// handle) on first use, kept until the file is finished. A failed restore is kept too, so
    /// that the memory is restored at most once.
    #[pin]
    incoming: Mutex<KVec<IncomingBlob<H>>>,
    #[pin]
    fh: Opaque<bindings::liveupdate_file_handler>,
}

// SAFETY: LUO's registration functions may be called from any thread, and the handler is `Send`.
unsafe impl<H: FileHandler> Send for Registration<H> {}
// SAFETY: `&Registration` gives access to the handler, which is `Sync`, and to its incoming
// blobs, under a lock.
unsafe impl<H: FileHandler> Sync for Registration<H> {}

impl<H: FileHandler> Registration<H> {
    /// Initialises `handler` and registers it with LUO. Fails with `EOPNOTSUPP` when live update
    /// is disabled on this boot, and with `EEXIST` when a handler with the same compatible string
    /// is registered.
    pub fn register(handler: impl PinInit<H, Error>) -> Result<Self> {
        let compat = H::COMPATIBLE.to_bytes_with_nul();
        let inner = KBox::try_pin_init(
            try_pin_init!(Inner {
                handler <- handler,
                incoming <- crate::new_mutex!(KVec::new()),
                fh <- Opaque::try_ffi_init(|slot: *mut bindings::liveupdate_file_handler| {
                    let mut fh: bindings::liveupdate_file_handler = pin_init::zeroed();
                    if compat.len() > fh.compatible.len() {
                        return Err(EINVAL);
                    }
                    for (dst, src) in fh.compatible.iter_mut().zip(compat) {
                        // CAST: A byte of a C string.
                        *dst = *src as c_char;
                    }
                    fh.ops = &VTable::<H>::OPS;
                    // SAFETY: The initializer may write to `slot`.
                    // INVARIANT: The ops and compatible string are set above.
                    unsafe { slot.write(fh) };
                    Ok(())
                }),
            }),
            GFP_KERNEL,
        )?;
        // Registered once the handler is in place: LUO may call back as soon as it is.
        // SAFETY: `fh` is an initialised handler with `'static` ops, pinned in its allocation,
        // which is freed only as `drop` says.
        to_result(unsafe { bindings::liveupdate_register_file_handler(inner.fh.get()) })?;
        // INVARIANT: Registered above.
        Ok(Self {
            inner: ManuallyDrop::new(inner),
        })
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.inner.handler
    }

    /// Links an FLB of the handler, which `flb` picks from it, to the handler: from now on LUO
    /// preserves it with the handler's files, and the new kernel can get it back. Unregistering
    /// the handler unlinks it.
    pub fn add_flb<F: Flb>(&self, flb: impl for<'a> FnOnce(&'a H) -> &'a FlbDef<F>) -> Result {
        // The handler is pinned in its allocation and never given out mutably, so a definition
        // borrowed from it (or `'static`) stays valid and in place until `drop`, which
        // unregisters the handler, and with it unlinks the FLB, before the allocation can go.
        let flb = flb(&self.inner.handler);
        // SAFETY: By the type invariants `fh` is registered; `flb` outlives the link (above).
        to_result(unsafe { bindings::liveupdate_register_flb(self.inner.fh.get(), flb.as_raw()) })
    }
}

impl<H: FileHandler> Inner<H> {
    /// The blob of the incoming file whose serialized data is `raw`, restored on first use.
    fn incoming_data(&self, raw: u64) -> Result<Arc<kho::Incoming<H::Data>>> {
        let mut table = self.incoming.lock();
        if let Some((_, data)) = table.iter().find(|(h, _)| *h == raw) {
            return data.clone();
        }
        // Room first: once restored, the memory cannot be restored again.
        table.reserve(1, GFP_KERNEL)?;
        // SAFETY: LUO matched the file to this handler by its compatible string: if `raw` is
        // preserved memory, it is the `kho::Preserved<H::Data>` that `preserve` made in the
        // previous kernel (or a blob of the same ABI), which only this table restores.
        let data = unsafe { kho::Incoming::<H::Data>::restore(kho::Handle::from_raw(raw)) }
            .and_then(|d| Ok(Arc::new(d, GFP_KERNEL)?))
            .inspect_err(|e| {
                pr_err!(
                    "liveupdate: {}: the preserved data of an incoming file, at {:#x}, is not preserved memory: {:?}\n",
                    H::COMPATIBLE.to_str().unwrap_or("?"),
                    raw,
                    e
                )
            });
        table.push((raw, data.clone()), GFP_KERNEL)?;
        data
    }

    /// Drops this handler's reference to the blob of a finished incoming file.
    fn forget_incoming(&self, raw: u64) {
        self.incoming.lock().retain(|(h, _)| *h != raw);
    }
}

/// Whether LUO may still refer to a handler of `module`: the module is built in, or it has
/// references (LUO holds one for every file of the module's handlers).
fn module_in_use(module: *mut bindings::module) -> bool {
    #[cfg(CONFIG_MODULE_UNLOAD)]
    if !module.is_null() {
        // SAFETY: `module` is the module whose code runs this, so it is loaded.
        return unsafe { bindings::module_refcount(module) } > 0;
    }
    let _ = module;
    true
}

impl<H: FileHandler> Drop for Registration<H> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `fh` is registered.
        unsafe { bindings::liveupdate_unregister_file_handler(self.inner.fh.get()) };
        if module_in_use(VTable::<H>::OPS.owner) {
            // LUO may hold a file of the handler and call back through it: the allocation stays.
            pr_warn!(
                "liveupdate: {}: handler unregistered while its module is in use; its memory is kept\n",
                H::COMPATIBLE.to_str().unwrap_or("?")
            );
            return;
        }
        // SAFETY: Unregistered above, and LUO holds no file of the handler: it holds a reference
        // on the owner module for each, and there is none. Nothing else points to `inner`, and
        // it is not used after this.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}

#[kunit_tests(rust_kernel_liveupdate)]
mod tests {
    use super::*;

    #[test]
    fn retrieve_status_follows_luo_convention() {
        assert_eq!(RetrieveStatus::from_raw(0), RetrieveStatus::NotAttempted);
        assert_eq!(RetrieveStatus::from_raw(1), RetrieveStatus::Retrieved);
        assert_eq!(
            RetrieveStatus::from_raw(-19),
            RetrieveStatus::Failed(ENODEV)
        );
    }
}
