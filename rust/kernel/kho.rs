// SPDX-License-Identifier: GPL-2.0

//! Kexec HandOver (KHO): memory that survives a kexec.
//!
//! A [`Preserved<T>`] is a zeroed, typed allocation that KHO keeps across the next kexec. Its
//! [`Handle`] is what travels to the next kernel (through the Live Update Orchestrator, for
//! instance); there, [`Incoming<T>`] gives the same memory back, typed, and frees it when dropped.
//! Dropping a [`Preserved<T>`] before the kexec unpreserves and frees it: nothing leaks on an
//! abort path, and users never see a raw address.
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
/// into memory is what needs care, see [`Incoming::from_handle`].
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
/// [`Incoming::from_handle`].
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
/// Dropping it gives the memory back to the page allocator (`kho_restore_free`).
///
/// # Invariants
///
/// `ptr` is the direct-map address of the handle of a `Preserved<T>` of the previous kernel,
/// owned by this object alone and not yet passed to `kho_restore_free`.
pub struct Incoming<T: Blob> {
    ptr: NonNull<T>,
    _t: PhantomData<T>,
}

// SAFETY: The memory is owned by the object; `kho_restore_free` may be called from any thread.
unsafe impl<T: Blob + Send> Send for Incoming<T> {}
// SAFETY: Shared references only give `&T`.
unsafe impl<T: Blob + Sync> Sync for Incoming<T> {}

impl<T: Blob> Incoming<T> {
    /// Takes ownership of preserved memory handed over by the previous kernel.
    ///
    /// Any bytes are a valid `T` (`T: FromBytes`), so the content needs no trust; the handle does.
    ///
    /// # Safety
    ///
    /// `handle` must be the [`Preserved::handle`] of memory that the previous kernel allocated with
    /// `kho_alloc_preserve` (by [`Preserved`] or by a C writer of the same ABI) and handed over
    /// preserved, and nothing else may own that memory: no other [`Incoming`] for it may exist
    /// at the same time, and nobody else may restore or free it.
    pub unsafe fn from_handle(handle: Handle) -> Self {
        const { check_blob::<T>() };
        // SAFETY: The caller guarantees that `handle` is the physical address of preserved memory,
        // which is in the direct map.
        let ptr = unsafe { bindings::phys_to_virt(handle.0) }.cast::<T>();
        // INVARIANT: The caller guarantees the origin and the exclusive ownership of the memory;
        // KHO allocates whole pages, so it spans at least `size_of::<T>() <= PAGE_SIZE` bytes and
        // is page aligned.
        Self {
            // SAFETY: The direct-map address of memory is never null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            _t: PhantomData,
        }
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
        // SAFETY: By the type invariants, `ptr` is preserved memory from the previous kernel that
        // nobody restored yet; it is not used after this.
        unsafe { bindings::kho_restore_free(self.ptr.as_ptr().cast()) };
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
    fn handles_of_live_allocations_differ() -> Result {
        let a = Preserved::<u32>::new()?;
        let b = Preserved::<u32>::new()?;
        assert_ne!(a.handle(), b.handle());
        Ok(())
    }
}
