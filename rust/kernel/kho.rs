// SPDX-License-Identifier: GPL-2.0

//! Kexec HandOver (KHO): memory that survives a kexec.
//!
//! A [`Preserved<T>`] is a zeroed, typed allocation that KHO keeps across the next kexec. Its
//! [`Handle`] is what travels to the next kernel (through the Live Update Orchestrator, for
//! instance); there, [`Incoming<T>`] gives the same memory back, typed, and frees it when dropped.
//! Dropping a [`Preserved<T>`] before the kexec unpreserves and frees it: nothing leaks on an
//! abort path, and users never see a raw address. [`Incoming::restore`] lets KHO check a handle
//! before anything reads the memory behind it.
//!
//! C header: [`include/linux/kexec_handover.h`](srctree/include/linux/kexec_handover.h)

use crate::{
    bindings,
    error::from_err_ptr,
    page::PAGE_SIZE,
    prelude::*,
    transmute::{AsBytes, FromBytes},
};
use core::{
    marker::PhantomData,
    ops::{Deref, DerefMut},
    ptr::NonNull,
};

/// The handle of a KHO-preserved allocation: its physical address, as a `u64`.
///
/// A handle is only a number; it can be copied, logged and passed around freely. Turning it back
/// into memory is what needs care, see [`Incoming::restore`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Handle(u64);

impl Handle {
    /// Makes a handle from the raw value that was handed over.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value to hand over.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

/// Types that may be kept in KHO memory: plain old data, readable from any bytes (including the
/// all-zero bytes of a fresh allocation, and whatever another kernel wrote), writable as bytes,
/// and no larger than a page.
pub trait Blob: FromBytes + AsBytes + Sized {}

impl<T: FromBytes + AsBytes + Sized> Blob for T {}

const fn check_blob<T: Blob>() {
    // KHO allocates whole pages, so a type up to a page fits any allocation it made, including
    // one made by another kernel's writer for a smaller type of the same ABI.
    assert!(size_of::<T>() > 0 && size_of::<T>() <= PAGE_SIZE);
    assert!(align_of::<T>() <= PAGE_SIZE);
}

/// A zeroed allocation holding a `T`, preserved by KHO across the next kexec.
///
/// Dropping it unpreserves and frees the memory: that is the abort path, when the kexec does not
/// happen. Once the kexec happens the memory belongs to the next kernel, which gets it back with
/// [`Incoming::restore`].
///
/// # Invariants
///
/// `ptr` is the non-error return value of `kho_alloc_preserve(size_of::<T>())`, not yet passed to
/// `kho_unpreserve_free`, owned by this object alone; it is page aligned and holds a valid `T`.
pub struct Preserved<T: Blob> {
    ptr: NonNull<T>,
    _t: PhantomData<T>,
}

// SAFETY: The memory is owned by the object; `kho_unpreserve_free` may be called from any thread.
unsafe impl<T: Blob + Send> Send for Preserved<T> {}
// SAFETY: Shared references only give `&T`.
unsafe impl<T: Blob + Sync> Sync for Preserved<T> {}

impl<T: Blob> Preserved<T> {
    /// Allocates zeroed memory for a `T` and preserves it.
    pub fn new() -> Result<Self> {
        const { check_blob::<T>() };
        // SAFETY: `kho_alloc_preserve` accepts any size; it returns zeroed memory or an
        // `ERR_PTR`.
        let ptr = from_err_ptr(unsafe { bindings::kho_alloc_preserve(size_of::<T>()) })?;
        let ptr = NonNull::new(ptr.cast::<T>()).ok_or(ENOMEM)?;
        // INVARIANT: Returned by `kho_alloc_preserve`, page aligned; all zeros is a valid `T`
        // because `T: FromBytes`.
        Ok(Self {
            ptr,
            _t: PhantomData,
        })
    }

    /// The handle to hand over to the next kernel.
    pub fn handle(&self) -> Handle {
        // SAFETY: `ptr` is a valid direct-map address of memory from `kho_alloc_preserve`.
        Handle(unsafe { bindings::virt_to_phys(self.ptr.as_ptr().cast()) })
    }
}

impl<T: Blob> Deref for Preserved<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariants, `ptr` holds a valid `T` owned by `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Blob> DerefMut for Preserved<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariants, `ptr` holds a valid `T` owned by `self`, and `&mut self`
        // makes this access exclusive.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Blob> Drop for Preserved<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `ptr` came from `kho_alloc_preserve` and is still
        // preserved; it is not used after this.
        unsafe { bindings::kho_unpreserve_free(self.ptr.as_ptr().cast()) };
    }
}

/// Memory preserved by the previous kernel as a [`Preserved<T>`], received in this one.
///
/// [`Incoming::restore`] takes it over from KHO, which first checks that the handle names memory
/// the previous kernel preserved: a corrupted handle gives an error, not a dereference of
/// whatever memory it points to. Dropping it gives the memory back to the page allocator.
///
/// # Invariants
///
/// `folio` is a folio that `kho_restore_folio()` returned for the handle of a `Preserved<T>` of
/// the previous kernel, at least `size_of::<T>()` bytes long, owned by this object alone (one
/// reference, dropped on drop); `ptr` is its address.
pub struct Incoming<T: Blob> {
    folio: NonNull<bindings::folio>,
    ptr: NonNull<T>,
    _t: PhantomData<T>,
}

// SAFETY: The memory is owned by the object; `folio_put` may be called from any thread.
unsafe impl<T: Blob + Send> Send for Incoming<T> {}
// SAFETY: Shared references only give `&T`.
unsafe impl<T: Blob + Sync> Sync for Incoming<T> {}

impl<T: Blob> Incoming<T> {
    /// Takes over memory preserved by the previous kernel, after KHO checked that `handle` is
    /// the address of memory it preserved. Fails with [`EINVAL`] when it is not (a corrupted or
    /// foreign handle: the memory is not touched), and with [`EMSGSIZE`] when the preserved
    /// memory is smaller than a `T`.
    ///
    /// Any bytes are a valid `T` (`T: FromBytes`), so the content needs no trust.
    ///
    /// # Safety
    ///
    /// Nothing else may own the memory behind `handle`: if it is preserved memory, it is the
    /// handle of a `Preserved<T>` (or of a C writer of the same ABI) handed over to this caller,
    /// which restores it once.
    pub unsafe fn restore(handle: Handle) -> Result<Self> {
        const { check_blob::<T>() };
        // SAFETY: `kho_restore_folio` accepts any address: it returns null unless the address is
        // the start of memory that the previous kernel preserved, which it then hands over to
        // us. By the safety requirements, nobody else owns that memory.
        let folio = NonNull::new(unsafe { bindings::kho_restore_folio(handle.0) }).ok_or(EINVAL)?;
        // SAFETY: `folio` is a valid folio, referenced by us.
        if unsafe { bindings::folio_size(folio.as_ptr()) } < size_of::<T>() {
            // SAFETY: We own the reference that `kho_restore_folio` gave.
            unsafe { bindings::folio_put(folio.as_ptr()) };
            return Err(EMSGSIZE);
        }
        // SAFETY: `folio` is a valid folio of the direct map (KHO preserves such memory).
        let ptr = unsafe { bindings::folio_address(folio.as_ptr()) }.cast::<T>();
        // INVARIANT: Restored above, large enough, ours; a folio is page aligned.
        Ok(Self {
            folio,
            // SAFETY: The direct-map address of memory is never null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            _t: PhantomData,
        })
    }
}

impl<T: Blob> Deref for Incoming<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariants, `ptr` points to at least `size_of::<T>()` bytes owned by
        // `self`, suitably aligned, and any bytes are a valid `T`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Blob> Drop for Incoming<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, we own the only reference to the restored folio; the
        // memory is not used after this.
        unsafe { bindings::folio_put(self.folio.as_ptr()) };
    }
}

#[kunit_tests(rust_kernel_kho)]
mod tests {
    use super::*;

    #[test]
    fn preserved_memory_is_zeroed_page_aligned_and_writable() -> Result {
        let mut blob = Preserved::<[u64; 8]>::new()?;
        assert_eq!(*blob, [0u64; 8]);
        let handle = blob.handle().as_raw();
        assert_ne!(handle, 0);
        assert_eq!(handle % PAGE_SIZE as u64, 0);
        blob[3] = 0x1234;
        assert_eq!(blob[3], 0x1234);
        // Dropping it unpreserves and frees it: the abort path.
        Ok(())
    }

    #[test]
    fn memory_that_was_not_preserved_is_refused() {
        // Far beyond any memory of the machine: KHO finds no page there and touches nothing.
        // SAFETY: Nobody owns memory at that address.
        let res = unsafe { Incoming::<u64>::restore(Handle::from_raw(1 << 50)) };
        assert!(res.err() == Some(EINVAL));
    }

    #[test]
    fn handles_of_live_allocations_differ() -> Result {
        let a = Preserved::<u32>::new()?;
        let b = Preserved::<u32>::new()?;
        assert_ne!(a.handle(), b.handle());
        Ok(())
    }
}
