// SPDX-License-Identifier: GPL-2.0

//! The KHO ABI of the vfio-pci live update handler.
//!
//! The bindgen types of the C header, which documents the layout and its versioning rules, with
//! the layout checked at compile time. The driver's own: the kernel crate knows nothing of it.
//!
//! C header: [`include/linux/kho/abi/vfio_pci.h`](srctree/include/linux/kho/abi/vfio_pci.h)

use core::{
    mem::offset_of,
    ops::{Deref, DerefMut},
};
use kernel::{
    bindings,
    prelude::*,
    static_assert,
    transmute::{AsBytes, FromBytes},
};

pub(crate) use bindings::{
    vfio_pci_core_device_ser as CoreSer,
    vfio_pci_lu_dev_ser as DevSer,
    vfio_pci_lu_dev_v1_ser as DevV1Ser,
    vfio_pci_lu_ext as Ext,
    vfio_pci_lu_identity as IdentitySer,
    vfio_pci_lu_keep as KeepSer, //
};

/// Declares a blob type of the ABI: the C struct, in a type of the driver's own so that it can
/// be read from and written as bytes (the kernel crate's `FromBytes` and `AsBytes`, which only
/// the crate of a type may implement for it), with the C struct's fields through `Deref`.
///
/// # Safety
///
/// The C struct is packed and made of integers and arrays of them: every bit pattern is valid,
/// and it has no padding and no interior mutability.
macro_rules! blob {
    ($(#[$meta:meta])* $name:ident = $c:ty) => {
        $(#[$meta])*
        #[repr(transparent)]
        pub(crate) struct $name($c);

        impl Deref for $name {
            type Target = $c;

            fn deref(&self) -> &$c {
                &self.0
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $c {
                &mut self.0
            }
        }

        // SAFETY: Safety comments written in the macro invocation; `$name` is a transparent
        // wrapper of the C struct.
        unsafe impl FromBytes for $name {}
        // SAFETY: Safety comments written in the macro invocation.
        unsafe impl AsBytes for $name {}
    };
}

// SAFETY: The three C structs are packed (`__packed` in the header; sizes checked below) and
// made of integers and arrays of integers: every bit pattern is valid, there are no padding bytes
// and no interior mutability.
blob!(
    /// What is preserved for a file: the upstream layout, then the extension.
    #[derive(Default)]
    Ser = bindings::vfio_pci_lu_ser
);
// SAFETY: As for `Ser`.
blob!(
    /// The list of preserved devices, version 2.
    DevsSer = bindings::vfio_pci_lu_devs_ser
);
// SAFETY: As for `Ser`.
blob!(
    /// The list of preserved devices, version 1, which is still read.
    DevsV1Ser = bindings::vfio_pci_lu_devs_v1_ser
);

/// The handler's compatible string, `"vfio-pci-v1"`.
pub(crate) const COMPATIBLE: &CStr =
    match CStr::from_bytes_with_nul(bindings::VFIO_PCI_LUO_FH_COMPATIBLE) {
        Ok(s) => s,
        Err(_) => panic!("VFIO_PCI_LUO_FH_COMPATIBLE is not a C string"),
    };
/// The compatible string of the list of preserved devices, `"vfio-pci-devices-v1"`.
pub(crate) const FLB_COMPATIBLE: &CStr =
    match CStr::from_bytes_with_nul(bindings::VFIO_PCI_LUO_FLB_COMPATIBLE) {
        Ok(s) => s,
        Err(_) => panic!("VFIO_PCI_LUO_FLB_COMPATIBLE is not a C string"),
    };
/// `magic` of the list of preserved devices.
pub(crate) const DEVS_MAGIC: u32 = bindings::VFIO_PCI_LU_DEVS_MAGIC;
/// The list version this kernel writes and reads.
// CAST: A small constant.
pub(crate) const DEVS_VERSION: u16 = bindings::VFIO_PCI_LU_DEVS_VERSION as u16;
/// How many devices the list holds.
// CAST: A small constant.
pub(crate) const DEVS_MAX: usize = bindings::VFIO_PCI_LU_DEVS_MAX as usize;
/// The version of the older list, which is still read.
// CAST: A small constant.
pub(crate) const DEVS_V1_VERSION: u16 = bindings::VFIO_PCI_LU_DEVS_V1_VERSION as u16;
/// How many devices the older list holds.
// CAST: A small constant.
pub(crate) const DEVS_V1_MAX: usize = bindings::VFIO_PCI_LU_DEVS_V1_MAX as usize;
/// `reset` of a list entry: the device was not reset (preserved, or unfrozen).
// CAST: A small constant.
pub(crate) const RESET_NONE: u8 = bindings::VFIO_PCI_LU_RESET_NONE as u8;
/// `reset` of a list entry: the freeze started the reset, its end was not seen.
// CAST: A small constant.
pub(crate) const RESET_QUEUED: u8 = bindings::VFIO_PCI_LU_RESET_QUEUED as u8;
/// `reset` of a list entry: the reset and the restore of the configuration completed.
// CAST: A small constant.
pub(crate) const RESET_DONE: u8 = bindings::VFIO_PCI_LU_RESET_DONE as u8;
/// `reset` of a list entry: the reset failed or did not get the device's locks in time.
// CAST: A small constant.
pub(crate) const RESET_FAILED: u8 = bindings::VFIO_PCI_LU_RESET_FAILED as u8;

/// `magic` of the extension.
pub(crate) const EXT_MAGIC: u32 = bindings::VFIO_PCI_LU_EXT_MAGIC;
/// The extension version this kernel writes and reads.
// CAST: A small constant.
pub(crate) const EXT_VERSION: u16 = bindings::VFIO_PCI_LU_EXT_VERSION as u16;
pub(crate) const EXT_KEEP_VERSION: u16 = bindings::VFIO_PCI_LU_EXT_KEEP_VERSION as u16;
pub(crate) const MODE_RESET: u8 = bindings::VFIO_PCI_LU_MODE_RESET as u8;
pub(crate) const MODE_KEEP: u8 = bindings::VFIO_PCI_LU_MODE_KEEP as u8;
pub(crate) const MODE_RUN: u8 = bindings::VFIO_PCI_LU_MODE_RUN as u8;
pub(crate) const CFG_SIZE: usize = bindings::VFIO_PCI_LU_CFG_SIZE as usize;
/// The largest extension `length` a reader accepts.
// CAST: A small constant.
pub(crate) const EXT_MAX_LENGTH: u16 = bindings::VFIO_PCI_LU_EXT_MAX_LENGTH as u16;

// The upstream layout first, exactly; then the extension right after it.
static_assert!(size_of::<CoreSer>() == 6);
static_assert!(offset_of!(CoreSer, domain) == 0);
static_assert!(offset_of!(CoreSer, bdf) == 4);
static_assert!(offset_of!(bindings::vfio_pci_lu_ser, core) == 0);
static_assert!(offset_of!(bindings::vfio_pci_lu_ser, ext) == 6);
static_assert!(offset_of!(Ext, magic) == 0);
static_assert!(offset_of!(Ext, version) == 4);
static_assert!(offset_of!(Ext, length) == 6);
static_assert!(offset_of!(Ext, id) == 8);
static_assert!(size_of::<IdentitySer>() == 16);
static_assert!(size_of::<Ext>() == 24);
static_assert!(offset_of!(bindings::vfio_pci_lu_ser, keep) == 30);
static_assert!(offset_of!(KeepSer, mode) == 0);
static_assert!(offset_of!(KeepSer, cfg_size) == 2);
static_assert!(offset_of!(KeepSer, cfg) == 4);
static_assert!(size_of::<KeepSer>() == 4 + CFG_SIZE);
static_assert!(size_of::<Ser>() == 290);
static_assert!(align_of::<Ser>() == 1);

static_assert!(size_of::<DevSer>() == 24);
static_assert!(offset_of!(DevSer, reset) == 6);
static_assert!(offset_of!(DevSer, mode) == 7);
static_assert!(offset_of!(DevSer, id) == 8);
static_assert!(offset_of!(bindings::vfio_pci_lu_devs_ser, devs) == 8);
static_assert!(size_of::<DevsSer>() == 4096);
static_assert!(8 + 24 * DEVS_MAX <= 4096);
static_assert!(size_of::<DevV1Ser>() == 8);
static_assert!(offset_of!(bindings::vfio_pci_lu_devs_v1_ser, devs) == 8);
static_assert!(size_of::<DevsV1Ser>() == 8 + 8 * DEVS_V1_MAX);

static_assert!(size_of::<Ser>() == size_of::<bindings::vfio_pci_lu_ser>());
static_assert!(size_of::<DevsSer>() == size_of::<bindings::vfio_pci_lu_devs_ser>());
static_assert!(size_of::<DevsV1Ser>() == size_of::<bindings::vfio_pci_lu_devs_v1_ser>());
