// SPDX-License-Identifier: GPL-2.0

//! Encoding and decoding of what is preserved for a device (`struct vfio_pci_lu_ser`).
//!
//! The layout and its versioning rules are those of `include/linux/kho/abi/vfio_pci.h`.

use kernel::{
    fmt, pci,
    prelude::*,
    transmute::AsBytes,
    vfio::lu_abi::{
        DevsSer, Ser, DEVS_MAGIC, DEVS_MAX, DEVS_VERSION, EXT_MAGIC, EXT_MAX_LENGTH, EXT_VERSION,
    },
};

/// Where a PCI function sits: segment and bus/device/function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) domain: u32,
    pub(crate) bus: u8,
    pub(crate) devfn: u8,
}

impl Location {
    pub(crate) fn of(pdev: &pci::Device) -> Self {
        Self {
            domain: pdev.domain(),
            bus: pdev.bus_number(),
            devfn: pdev.devfn(),
        }
    }

    /// `PCI_DEVID(bus, devfn)`, the upstream `bdf` field.
    fn bdf(&self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.devfn)
    }

    fn from_raw(domain: u32, bdf: u16) -> Self {
        Self {
            domain,
            // CAST: The high and low bytes of the 16-bit value.
            bus: (bdf >> 8) as u8,
            devfn: bdf as u8,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain,
            self.bus,
            self.devfn >> 3,
            self.devfn & 7
        )
    }
}

/// What a PCI function is, as read from its configuration space at probe time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) vendor: u16,
    pub(crate) device: u16,
    pub(crate) subsystem_vendor: u16,
    pub(crate) subsystem_device: u16,
    pub(crate) class: u32,
    pub(crate) revision: u8,
}

impl Identity {
    pub(crate) fn of(pdev: &pci::Device) -> Self {
        Self {
            vendor: pdev.vendor_id().as_raw(),
            device: pdev.device_id(),
            subsystem_vendor: pdev.subsystem_vendor_id(),
            subsystem_device: pdev.subsystem_device_id(),
            class: pdev.pci_class().as_raw(),
            revision: pdev.revision_id(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:04x}:{:04x}] subsystem [{:04x}:{:04x}] class {:06x} rev {:02x}",
            self.vendor,
            self.device,
            self.subsystem_vendor,
            self.subsystem_device,
            self.class,
            self.revision
        )
    }
}

/// A preserved blob, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub(crate) location: Location,
    /// [`None`] for a blob in the upstream layout, which carries no identity.
    pub(crate) identity: Option<Identity>,
}

/// Why a blob was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The extension is not all zeros, and its magic is wrong.
    Magic(u32),
    /// A version this kernel does not know.
    Version(u16),
    /// A length shorter than the extension this kernel knows, or beyond the limit.
    Length(u16),
}

impl DecodeError {
    /// The errno that `LIVEUPDATE_SESSION_RETRIEVE_FD` returns for it.
    pub(crate) fn to_error(self) -> Error {
        match self {
            Self::Magic(_) => EBADMSG,
            Self::Version(_) => EPROTONOSUPPORT,
            Self::Length(_) => EMSGSIZE,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Magic(m) => write!(f, "bad magic {m:#010x} (expected {EXT_MAGIC:#010x})"),
            Self::Version(v) => {
                write!(f, "unknown version {v} (this kernel reads {EXT_VERSION})")
            }
            Self::Length(l) => write!(
                f,
                "bad length {l} (expected {}..={EXT_MAX_LENGTH})",
                size_of::<kernel::vfio::lu_abi::Ext>()
            ),
        }
    }
}

/// Writes `loc` and `id` into a zeroed blob.
pub(crate) fn encode(ser: &mut Ser, loc: &Location, id: &Identity) {
    ser.core.domain = loc.domain;
    ser.core.bdf = loc.bdf();
    ser.ext.magic = EXT_MAGIC;
    ser.ext.version = EXT_VERSION;
    // CAST: The extension is 24 bytes.
    ser.ext.length = size_of::<kernel::vfio::lu_abi::Ext>() as u16;
    ser.ext.id.vendor = id.vendor;
    ser.ext.id.device = id.device;
    ser.ext.id.subsystem_vendor = id.subsystem_vendor;
    ser.ext.id.subsystem_device = id.subsystem_device;
    ser.ext.id.class = id.class;
    ser.ext.id.revision = id.revision;
}

/// The device location of a blob, which every layout has.
pub(crate) fn decode_location(ser: &Ser) -> Location {
    Location::from_raw(ser.core.domain, ser.core.bdf)
}

/// Reads a blob written by this driver or by the upstream C handler.
pub(crate) fn decode(ser: &Ser) -> Result<Decoded, DecodeError> {
    let location = decode_location(ser);
    let ext = &ser.as_bytes()[size_of::<kernel::vfio::lu_abi::CoreSer>()..];
    if ext.iter().all(|b| *b == 0) {
        return Ok(Decoded {
            location,
            identity: None,
        });
    }
    let (magic, version, length) = (ser.ext.magic, ser.ext.version, ser.ext.length);
    if magic != EXT_MAGIC {
        return Err(DecodeError::Magic(magic));
    }
    if version != EXT_VERSION {
        return Err(DecodeError::Version(version));
    }
    if usize::from(length) < size_of::<kernel::vfio::lu_abi::Ext>() || length > EXT_MAX_LENGTH {
        return Err(DecodeError::Length(length));
    }
    let id = ser.ext.id;
    Ok(Decoded {
        location,
        identity: Some(Identity {
            vendor: id.vendor,
            device: id.device,
            subsystem_vendor: id.subsystem_vendor,
            subsystem_device: id.subsystem_device,
            class: id.class,
            revision: id.revision,
        }),
    })
}

/// Why a list of preserved devices was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DevsError {
    /// Not [`DEVS_MAGIC`].
    Magic(u32),
    /// A version this kernel does not know.
    Version(u16),
    /// More entries than the list holds.
    Count(u16),
}

impl fmt::Display for DevsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Magic(m) => write!(f, "bad magic {m:#010x} (expected {DEVS_MAGIC:#010x})"),
            Self::Version(v) => {
                write!(f, "unknown version {v} (this kernel reads {DEVS_VERSION})")
            }
            Self::Count(c) => write!(f, "{c} entries (at most {DEVS_MAX})"),
        }
    }
}

/// Initialises a zeroed list of preserved devices.
pub(crate) fn devs_init(devs: &mut DevsSer) {
    devs.magic = DEVS_MAGIC;
    devs.version = DEVS_VERSION;
    devs.count = 0;
}

/// The entries in use.
fn devs_used(devs: &DevsSer) -> &[kernel::vfio::lu_abi::DevSer] {
    &devs.devs[..usize::from(devs.count).min(DEVS_MAX)]
}

/// Adds `loc` to the list: [`EBUSY`] if it is there already, [`ENOSPC`] if the list is full.
pub(crate) fn devs_add(devs: &mut DevsSer, loc: &Location) -> Result {
    if devs_used(devs)
        .iter()
        .any(|d| Location::from_raw(d.domain, d.bdf) == *loc)
    {
        return Err(EBUSY);
    }
    let n = usize::from(devs.count);
    if n >= DEVS_MAX {
        return Err(ENOSPC);
    }
    devs.devs[n].domain = loc.domain;
    devs.devs[n].bdf = loc.bdf();
    devs.devs[n].reserved = 0;
    devs.count += 1;
    Ok(())
}

/// Removes `loc` from the list, if it is there (the last entry takes its place).
pub(crate) fn devs_remove(devs: &mut DevsSer, loc: &Location) {
    let n = usize::from(devs.count).min(DEVS_MAX);
    let Some(i) = devs.devs[..n]
        .iter()
        .position(|d| Location::from_raw(d.domain, d.bdf) == *loc)
    else {
        return;
    };
    devs.devs[i] = devs.devs[n - 1];
    devs.devs[n - 1] = Default::default();
    // CAST: `n - 1 < DEVS_MAX`, which fits in a `u16`.
    devs.count = (n - 1) as u16;
}

/// Reads a list written by the previous kernel.
pub(crate) fn devs_decode(devs: &DevsSer) -> Result<KVec<Location>, DevsError> {
    let (magic, version, count) = (devs.magic, devs.version, devs.count);
    if magic != DEVS_MAGIC {
        return Err(DevsError::Magic(magic));
    }
    if version != DEVS_VERSION {
        return Err(DevsError::Version(version));
    }
    if usize::from(count) > DEVS_MAX {
        return Err(DevsError::Count(count));
    }
    let mut out = KVec::new();
    for d in devs_used(devs) {
        let loc = Location::from_raw(d.domain, d.bdf);
        // The writer keeps the entries unique; a duplicate would only repeat a location.
        if !out.contains(&loc) && out.push(loc, GFP_KERNEL).is_err() {
            break;
        }
    }
    Ok(out)
}

#[kunit_tests(vfio_pci_liveupdate_abi)]
mod tests {
    use super::*;
    use kernel::transmute::FromBytes;

    const LOC: Location = Location {
        domain: 0x1234,
        bus: 0x5a,
        devfn: 0x13,
    };
    const ID: Identity = Identity {
        vendor: 0x8086,
        device: 0x10c9,
        subsystem_vendor: 0x8086,
        subsystem_device: 0xa03c,
        class: 0x020000,
        revision: 0x01,
    };

    fn encoded() -> Ser {
        let mut ser = Ser::default();
        encode(&mut ser, &LOC, &ID);
        ser
    }

    #[test]
    fn encode_then_decode_gives_location_and_identity() {
        assert_eq!(
            decode(&encoded()),
            Ok(Decoded {
                location: LOC,
                identity: Some(ID)
            })
        );
    }

    #[test]
    fn head_is_the_upstream_layout() {
        let ser = encoded();
        let bytes = ser.as_bytes();
        // u32 domain then u16 PCI_DEVID(bus, devfn), little endian, packed.
        assert_eq!(&bytes[..6], &[0x34, 0x12, 0, 0, 0x13, 0x5a]);
        assert_eq!(&bytes[6..10], &EXT_MAGIC.to_le_bytes());
    }

    #[test]
    fn upstream_blob_decodes_without_identity() {
        // What the upstream C handler writes: six bytes, the rest of its page zeroed.
        let mut bytes = [0u8; size_of::<Ser>()];
        bytes[..6].copy_from_slice(&[0x01, 0, 0, 0, 0x10, 0x03]);
        let ser = Ser::from_bytes(&bytes).unwrap();
        // (Built outside `assert_eq!`, whose KUnit expansion has a `Location` of its own.)
        let want = Decoded {
            location: Location {
                domain: 1,
                bus: 0x03,
                devfn: 0x10,
            },
            identity: None,
        };
        assert_eq!(decode(ser), Ok(want));
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut ser = encoded();
        ser.ext.magic = 0xdeadbeef;
        assert_eq!(decode(&ser), Err(DecodeError::Magic(0xdeadbeef)));
        assert_eq!(DecodeError::Magic(0).to_error(), EBADMSG);
    }

    #[test]
    fn identity_without_magic_is_refused() {
        let mut ser = Ser::default();
        ser.ext.id.vendor = 0x1af4;
        assert_eq!(decode(&ser), Err(DecodeError::Magic(0)));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut ser = encoded();
        ser.ext.version = EXT_VERSION + 1;
        assert_eq!(decode(&ser), Err(DecodeError::Version(EXT_VERSION + 1)));
        ser.ext.version = 0;
        assert_eq!(decode(&ser), Err(DecodeError::Version(0)));
        assert_eq!(DecodeError::Version(0).to_error(), EPROTONOSUPPORT);
    }

    #[test]
    fn bad_length_is_refused() {
        let mut ser = encoded();
        ser.ext.length = 8;
        assert_eq!(decode(&ser), Err(DecodeError::Length(8)));
        ser.ext.length = EXT_MAX_LENGTH + 1;
        assert_eq!(decode(&ser), Err(DecodeError::Length(EXT_MAX_LENGTH + 1)));
        assert_eq!(DecodeError::Length(0).to_error(), EMSGSIZE);
    }

    #[test]
    fn longer_extension_from_a_newer_writer_is_accepted() {
        let mut ser = encoded();
        ser.ext.length = 64;
        assert_eq!(decode(&ser).map(|d| d.identity), Ok(Some(ID)));
    }

    /// A zeroed list, on the heap (it is a page).
    fn zeroed_devs() -> KVec<u8> {
        KVec::from_elem(0u8, size_of::<DevsSer>(), GFP_KERNEL).unwrap()
    }

    const LOC2: Location = Location {
        domain: 0,
        bus: 0x01,
        devfn: 0x00,
    };

    #[test]
    fn device_list_keeps_unique_entries_and_round_trips() {
        let mut bytes = zeroed_devs();
        let devs = DevsSer::from_bytes_mut(&mut bytes).unwrap();
        devs_init(devs);
        assert_eq!(devs_add(devs, &LOC), Ok(()));
        assert_eq!(devs_add(devs, &LOC2), Ok(()));
        assert_eq!(devs_add(devs, &LOC), Err(EBUSY));
        let got = devs_decode(devs).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0] == LOC && got[1] == LOC2);
        devs_remove(devs, &LOC);
        devs_remove(devs, &LOC);
        let got = devs_decode(devs).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0] == LOC2);
        assert_eq!(devs_add(devs, &LOC), Ok(()));
    }

    #[test]
    fn device_list_is_bounded() {
        let mut bytes = zeroed_devs();
        let devs = DevsSer::from_bytes_mut(&mut bytes).unwrap();
        devs_init(devs);
        for i in 0..DEVS_MAX {
            let loc = Location {
                domain: 0,
                // CAST: `i < 511`: a bus and a devfn.
                bus: (i >> 8) as u8,
                devfn: i as u8,
            };
            assert_eq!(devs_add(devs, &loc), Ok(()));
        }
        assert_eq!(devs_add(devs, &LOC), Err(ENOSPC));
        assert_eq!(devs_decode(devs).map(|v| v.len()), Ok(DEVS_MAX));
    }

    #[test]
    fn damaged_device_list_is_refused() {
        let mut bytes = zeroed_devs();
        let devs = DevsSer::from_bytes_mut(&mut bytes).unwrap();
        assert_eq!(devs_decode(devs).err(), Some(DevsError::Magic(0)));
        devs_init(devs);
        devs.version = 2;
        assert_eq!(devs_decode(devs).err(), Some(DevsError::Version(2)));
        devs.version = DEVS_VERSION;
        devs.count = 512;
        assert_eq!(devs_decode(devs).err(), Some(DevsError::Count(512)));
    }

    #[test]
    fn location_prints_as_a_bdf() {
        let s = kernel::str::CString::try_from_fmt(fmt!("{}", LOC)).unwrap();
        assert_eq!(s.to_bytes(), b"1234:5a:02.3");
    }
}
