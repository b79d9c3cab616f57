// SPDX-License-Identifier: GPL-2.0

//! Encoding and decoding of what is preserved for a device (`struct vfio_pci_lu_ser`).
//!
//! The layout and its versioning rules are those of `include/linux/kho/abi/vfio_pci.h`.

use crate::lu_abi::{
    CoreSer, DevSer, DevsSer, DevsV1Ser, Ext, IdentitySer, KeepSer, Ser, CFG_SIZE, DEVS_MAGIC,
    DEVS_MAX, DEVS_V1_MAX, DEVS_V1_VERSION, DEVS_VERSION, EXT_KEEP_VERSION, EXT_MAGIC,
    EXT_MAX_LENGTH, EXT_VERSION, MODE_KEEP, MODE_RESET, MODE_RUN, RESET_DONE, RESET_FAILED,
    RESET_NONE, RESET_QUEUED,
};
use kernel::{
    bindings, fmt, pci,
    prelude::*,
    sync::aref::ARef,
    transmute::{AsBytes, FromBytes},
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

    /// The PCI function at this address; when there is none, logs so, for `step` (what was
    /// looking for it), and gives [`None`].
    pub(crate) fn find_pci(&self, step: &str) -> Option<ARef<pci::Device>> {
        let pdev = pci::Device::find(self.domain, self.bus, self.devfn);
        if pdev.is_none() {
            pr_err!(
                "{}: live update: {}: no PCI device at this address\n",
                self,
                step
            );
        }
        pdev
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

impl Identity {
    fn to_raw(self) -> IdentitySer {
        IdentitySer {
            vendor: self.vendor,
            device: self.device,
            subsystem_vendor: self.subsystem_vendor,
            subsystem_device: self.subsystem_device,
            class: self.class,
            revision: self.revision,
            ..Default::default()
        }
    }

    fn from_raw(id: &IdentitySer) -> Self {
        let id = *id;
        Self {
            vendor: id.vendor,
            device: id.device,
            subsystem_vendor: id.subsystem_vendor,
            subsystem_device: id.subsystem_device,
            class: id.class,
            revision: id.revision,
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

/// What a live update does to a device, as its VMM chose (`VFIO_DEVICE_FEATURE_LIVEUPDATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceMode {
    /// Reset at freeze (the default).
    Reset,
    /// Not reset: the device keeps its state through the kexec, bus mastering off.
    Keep,
    /// Not reset, not stopped: the device keeps its state, and its DMA goes on through the
    /// kexec, bus mastering on (VFIO no-IOMMU mode only).
    Run,
}

impl DeviceMode {
    /// The mode from `VFIO_DEVICE_FEATURE_LIVEUPDATE`'s value, which vfio-pci checked.
    pub(crate) fn from_uapi(mode: u8) -> Self {
        match u32::from(mode) {
            bindings::VFIO_DEVICE_LIVEUPDATE_KEEP => Self::Keep,
            bindings::VFIO_DEVICE_LIVEUPDATE_RUN => Self::Run,
            _ => Self::Reset,
        }
    }

    /// The value of `VFIO_DEVICE_FEATURE_LIVEUPDATE` for the mode.
    pub(crate) fn to_uapi(self) -> u8 {
        // CAST: The uAPI's modes are 0, 1 and 2.
        (match self {
            Self::Reset => bindings::VFIO_DEVICE_LIVEUPDATE_RESET,
            Self::Keep => bindings::VFIO_DEVICE_LIVEUPDATE_KEEP,
            Self::Run => bindings::VFIO_DEVICE_LIVEUPDATE_RUN,
        }) as u8
    }

    /// The mode of a list entry (an unknown value, from a newer writer, as reset).
    fn from_raw(raw: u8) -> Self {
        match raw {
            MODE_KEEP => Self::Keep,
            MODE_RUN => Self::Run,
            _ => Self::Reset,
        }
    }

    fn to_raw(self) -> u8 {
        match self {
            Self::Reset => MODE_RESET,
            Self::Keep => MODE_KEEP,
            Self::Run => MODE_RUN,
        }
    }

    /// Whether the device keeps its state through the kexec (not reset at freeze).
    pub(crate) fn keeps_state(self) -> bool {
        matches!(self, Self::Keep | Self::Run)
    }

    /// How the mode reads in a log line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Keep => "keep",
            Self::Run => "run",
        }
    }
}

/// A preserved blob, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub(crate) location: Location,
    /// [`None`] for a blob in the upstream layout, which carries no identity.
    pub(crate) identity: Option<Identity>,
    pub(crate) mode: DeviceMode,
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
    /// A version 2 extension whose mode is neither [`MODE_KEEP`] nor [`MODE_RUN`], or whose
    /// configuration size is beyond what it holds.
    Keep(u8, u16),
}

impl DecodeError {
    /// The errno that `LIVEUPDATE_SESSION_RETRIEVE_FD` returns for it.
    pub(crate) fn to_error(self) -> Error {
        match self {
            Self::Magic(_) | Self::Keep(..) => EBADMSG,
            Self::Version(_) => EPROTONOSUPPORT,
            Self::Length(_) => EMSGSIZE,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Magic(m) => write!(f, "bad magic {m:#010x} (expected {EXT_MAGIC:#010x})"),
            Self::Version(v) => write!(
                f,
                "unknown version {v} (this kernel reads {EXT_VERSION} and {EXT_KEEP_VERSION})"
            ),
            Self::Length(l) => write!(
                f,
                "bad length {l} (expected {}..={EXT_MAX_LENGTH} for its version)",
                size_of::<Ext>()
            ),
            Self::Keep(m, s) => write!(
                f,
                "bad kept-device data: mode {m} (expected {MODE_KEEP} or {MODE_RUN}), configuration size {s} (at most {CFG_SIZE})"
            ),
        }
    }
}

/// Writes `loc`, `id` and `mode` into a zeroed blob: a version 1 extension in [`DeviceMode::Reset`],
/// a version 2 one, with room for the configuration space ([`encode_config`]), in
/// [`DeviceMode::Keep`] and [`DeviceMode::Run`].
pub(crate) fn encode(ser: &mut Ser, loc: &Location, id: &Identity, mode: DeviceMode) {
    ser.core.domain = loc.domain;
    ser.core.bdf = loc.bdf();
    ser.ext.magic = EXT_MAGIC;
    ser.ext.id = id.to_raw();
    match mode {
        DeviceMode::Reset => {
            ser.ext.version = EXT_VERSION;
            // CAST: The extension is 24 bytes.
            ser.ext.length = size_of::<Ext>() as u16;
        }
        DeviceMode::Keep | DeviceMode::Run => {
            ser.ext.version = EXT_KEEP_VERSION;
            // CAST: 24 + 260 bytes.
            ser.ext.length = (size_of::<Ext>() + size_of::<KeepSer>()) as u16;
            ser.keep.mode = mode.to_raw();
        }
    }
}

/// Writes the configuration space of a kept device (its first [`CFG_SIZE`] bytes) into its blob.
pub(crate) fn encode_config(ser: &mut Ser, cfg: &[u8; CFG_SIZE]) {
    ser.keep.cfg = *cfg;
    // CAST: 256.
    ser.keep.cfg_size = CFG_SIZE as u16;
}

/// The configuration space that the blob of a kept device holds (empty if the freeze did not
/// write it); [`None`] for any other blob. Only for a blob that [`decode`] accepted.
pub(crate) fn kept_config(ser: &Ser) -> Option<&[u8]> {
    (ser.ext.version == EXT_KEEP_VERSION)
        .then(|| &ser.keep.cfg[..usize::from(ser.keep.cfg_size).min(CFG_SIZE)])
}

/// The device location of a blob, which every layout has.
pub(crate) fn decode_location(ser: &Ser) -> Location {
    Location::from_raw(ser.core.domain, ser.core.bdf)
}

/// Reads a blob written by this driver or by the upstream C handler.
pub(crate) fn decode(ser: &Ser) -> Result<Decoded, DecodeError> {
    let location = decode_location(ser);
    let ext = &ser.as_bytes()[size_of::<CoreSer>()..];
    if ext.iter().all(|b| *b == 0) {
        return Ok(Decoded {
            location,
            identity: None,
            mode: DeviceMode::Reset,
        });
    }
    let (magic, version, length) = (ser.ext.magic, ser.ext.version, ser.ext.length);
    if magic != EXT_MAGIC {
        return Err(DecodeError::Magic(magic));
    }
    let (min, mode) = match version {
        EXT_VERSION => (size_of::<Ext>(), DeviceMode::Reset),
        EXT_KEEP_VERSION => (size_of::<Ext>() + size_of::<KeepSer>(), DeviceMode::Keep),
        _ => return Err(DecodeError::Version(version)),
    };
    if usize::from(length) < min || length > EXT_MAX_LENGTH {
        return Err(DecodeError::Length(length));
    }
    let (keep_mode, cfg_size) = (ser.keep.mode, ser.keep.cfg_size);
    let mode = match (mode, keep_mode) {
        (DeviceMode::Reset, _) => mode,
        (_, MODE_KEEP | MODE_RUN) if usize::from(cfg_size) <= CFG_SIZE => {
            DeviceMode::from_raw(keep_mode)
        }
        _ => return Err(DecodeError::Keep(keep_mode, cfg_size)),
    };
    Ok(Decoded {
        location,
        identity: Some(Identity::from_raw(&ser.ext.id)),
        mode,
    })
}

/// What the previous kernel recorded of a device's reset at freeze (`reset` of its list entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResetRecord {
    /// Preserved, not reset (not frozen yet, or unfrozen after a cancelled kexec).
    NotReset,
    /// The freeze started the reset; its end was not seen before the kexec.
    Queued,
    /// Reset, and its configuration restored.
    Done,
    /// The reset failed, or did not get the device's locks in time.
    Failed,
    /// Nothing usable was recorded: a version 1 list, or an unknown value.
    Unknown,
}

impl ResetRecord {
    fn to_raw(self) -> u8 {
        match self {
            Self::NotReset | Self::Unknown => RESET_NONE,
            Self::Queued => RESET_QUEUED,
            Self::Done => RESET_DONE,
            Self::Failed => RESET_FAILED,
        }
    }

    fn from_raw(raw: u8) -> Self {
        match raw {
            RESET_NONE => Self::NotReset,
            RESET_QUEUED => Self::Queued,
            RESET_DONE => Self::Done,
            RESET_FAILED => Self::Failed,
            _ => Self::Unknown,
        }
    }

    /// How the record reads in a log line.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::NotReset => "the previous kernel did not reset it",
            Self::Queued => "the previous kernel's reset did not complete before the kexec",
            Self::Done => "reset by the previous kernel",
            Self::Failed => "the previous kernel's reset failed",
            Self::Unknown => "the previous kernel recorded no reset outcome",
        }
    }
}

/// A device of a list of preserved devices, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListEntry {
    pub(crate) location: Location,
    /// [`None`] in a version 1 list.
    pub(crate) identity: Option<Identity>,
    pub(crate) reset: ResetRecord,
    /// [`DeviceMode::Reset`] in a version 1 list, and in lists of writers that had no modes.
    pub(crate) mode: DeviceMode,
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
            Self::Version(v) => write!(
                f,
                "unknown version {v} (this kernel reads {DEVS_V1_VERSION} and {DEVS_VERSION})"
            ),
            Self::Count(c) => write!(f, "{c} entries (more than the list holds)"),
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
fn devs_used(devs: &DevsSer) -> &[DevSer] {
    &devs.devs[..usize::from(devs.count).min(DEVS_MAX)]
}

/// The entry of `loc`, if it is in the list.
fn devs_find<'a>(devs: &'a mut DevsSer, loc: &Location) -> Option<&'a mut DevSer> {
    let n = usize::from(devs.count).min(DEVS_MAX);
    devs.devs[..n]
        .iter_mut()
        .find(|d| Location::from_raw(d.domain, d.bdf) == *loc)
}

/// Adds `loc`, with identity `id`, to the list: [`EBUSY`] if it is there already, [`ENOSPC`] if
/// the list is full.
pub(crate) fn devs_add(
    devs: &mut DevsSer,
    loc: &Location,
    id: &Identity,
    mode: DeviceMode,
) -> Result {
    if devs_find(devs, loc).is_some() {
        return Err(EBUSY);
    }
    let n = usize::from(devs.count);
    if n >= DEVS_MAX {
        return Err(ENOSPC);
    }
    devs.devs[n] = DevSer {
        domain: loc.domain,
        bdf: loc.bdf(),
        reset: RESET_NONE,
        mode: mode.to_raw(),
        id: id.to_raw(),
    };
    devs.count += 1;
    Ok(())
}

/// Records the outcome of the reset of `loc` at freeze, if it is in the list.
pub(crate) fn devs_set_reset(devs: &mut DevsSer, loc: &Location, reset: ResetRecord) {
    if let Some(d) = devs_find(devs, loc) {
        d.reset = reset.to_raw();
    }
}

/// Fault injection: gives the entry of `loc` another device ID; false if `loc` is not listed.
#[cfg(CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT)]
pub(crate) fn devs_corrupt_identity(devs: &mut DevsSer, loc: &Location) -> bool {
    devs_find(devs, loc)
        .map(|d| d.id.device = !d.id.device)
        .is_some()
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

/// Adds `e` to `out` unless its location is there already (a writer keeps the entries unique; a
/// duplicate would only repeat a location).
fn push_unique(out: &mut KVec<ListEntry>, e: ListEntry) -> bool {
    out.iter().any(|o| o.location == e.location) || out.push(e, GFP_KERNEL).is_ok()
}

/// Reads a list written by the previous kernel: version 2, or version 1 (no identity, no reset
/// outcome).
pub(crate) fn devs_decode(devs: &DevsSer) -> Result<KVec<ListEntry>, DevsError> {
    let (magic, version, count) = (devs.magic, devs.version, devs.count);
    if magic != DEVS_MAGIC {
        return Err(DevsError::Magic(magic));
    }
    let mut out = KVec::new();
    match version {
        DEVS_VERSION => {
            if usize::from(count) > DEVS_MAX {
                return Err(DevsError::Count(count));
            }
            for d in devs_used(devs) {
                let e = ListEntry {
                    location: Location::from_raw(d.domain, d.bdf),
                    identity: Some(Identity::from_raw(&d.id)),
                    reset: ResetRecord::from_raw(d.reset),
                    mode: DeviceMode::from_raw(d.mode),
                };
                if !push_unique(&mut out, e) {
                    break;
                }
            }
        }
        DEVS_V1_VERSION => {
            if usize::from(count) > DEVS_V1_MAX {
                return Err(DevsError::Count(count));
            }
            // Both layouts are one page of plain integers.
            let Some(v1) = DevsV1Ser::from_bytes(devs.as_bytes()) else {
                return Err(DevsError::Version(version));
            };
            for d in &v1.devs[..usize::from(count)] {
                let e = ListEntry {
                    location: Location::from_raw(d.domain, d.bdf),
                    identity: None,
                    reset: ResetRecord::Unknown,
                    mode: DeviceMode::Reset,
                };
                if !push_unique(&mut out, e) {
                    break;
                }
            }
        }
        _ => return Err(DevsError::Version(version)),
    }
    Ok(out)
}

#[kunit_tests(vfio_pci_liveupdate_abi)]
mod tests {
    use super::*;

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
        encode(&mut ser, &LOC, &ID, DeviceMode::Reset);
        ser
    }

    #[test]
    fn encode_then_decode_gives_location_and_identity() {
        assert_eq!(
            decode(&encoded()),
            Ok(Decoded {
                location: LOC,
                identity: Some(ID),
                mode: DeviceMode::Reset,
            })
        );
    }

    #[test]
    fn head_is_the_upstream_layout() {
        let ser = encoded();
        let bytes = ser.as_bytes();
        // u32 domain then u16 PCI_DEVID(bus, devfn), in the CPU's byte order, packed.
        assert_eq!(&bytes[..4], &0x1234u32.to_ne_bytes());
        assert_eq!(&bytes[4..6], &0x5a13u16.to_ne_bytes());
        assert_eq!(&bytes[6..10], &EXT_MAGIC.to_ne_bytes());
    }

    #[test]
    fn upstream_blob_decodes_without_identity() {
        // What the upstream C handler writes: six bytes, the rest of its page zeroed.
        let mut bytes = [0u8; size_of::<Ser>()];
        bytes[..4].copy_from_slice(&1u32.to_ne_bytes());
        bytes[4..6].copy_from_slice(&0x0310u16.to_ne_bytes());
        let ser = Ser::from_bytes(&bytes).unwrap();
        // (Built outside `assert_eq!`, whose KUnit expansion has a `Location` of its own.)
        let want = Decoded {
            location: Location {
                domain: 1,
                bus: 0x03,
                devfn: 0x10,
            },
            identity: None,
            mode: DeviceMode::Reset,
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
        ser.ext.version = EXT_KEEP_VERSION + 1;
        assert_eq!(
            decode(&ser),
            Err(DecodeError::Version(EXT_KEEP_VERSION + 1))
        );
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

    fn encoded_keep() -> Ser {
        let mut ser = Ser::default();
        encode(&mut ser, &LOC, &ID, DeviceMode::Keep);
        ser
    }

    #[test]
    fn kept_device_round_trips_with_its_configuration() {
        let mut ser = encoded_keep();
        assert_eq!(ser.ext.version, EXT_KEEP_VERSION);
        // Nothing captured yet: a freeze writes it.
        assert_eq!(kept_config(&ser).map(<[u8]>::len), Some(0));
        let mut cfg = [0u8; CFG_SIZE];
        cfg[0] = 0xf4;
        cfg[CFG_SIZE - 1] = 0x5a;
        encode_config(&mut ser, &cfg);
        assert_eq!(decode(&ser).map(|d| d.mode), Ok(DeviceMode::Keep));
        assert_eq!(decode(&ser).map(|d| d.identity), Ok(Some(ID)));
        assert_eq!(kept_config(&ser), Some(&cfg[..]));
    }

    #[test]
    fn running_device_round_trips_as_version_2_with_its_mode() {
        let mut ser = Ser::default();
        encode(&mut ser, &LOC, &ID, DeviceMode::Run);
        assert_eq!(ser.ext.version, EXT_KEEP_VERSION);
        assert_eq!(ser.keep.mode, MODE_RUN);
        let cfg = [0x5au8; CFG_SIZE];
        encode_config(&mut ser, &cfg);
        assert_eq!(decode(&ser).map(|d| d.mode), Ok(DeviceMode::Run));
        assert_eq!(kept_config(&ser), Some(&cfg[..]));
        // A mode beyond the ones this kernel knows is refused, not taken for another.
        ser.keep.mode = MODE_RUN + 1;
        assert_eq!(decode(&ser), Err(DecodeError::Keep(MODE_RUN + 1, 256)));
    }

    #[test]
    fn modes_map_to_the_uapi_and_the_list() {
        for mode in [DeviceMode::Reset, DeviceMode::Keep, DeviceMode::Run] {
            assert_eq!(DeviceMode::from_uapi(mode.to_uapi()), mode);
            assert_eq!(DeviceMode::from_raw(mode.to_raw()), mode);
        }
        assert!(!DeviceMode::Reset.keeps_state());
        assert!(DeviceMode::Keep.keeps_state() && DeviceMode::Run.keeps_state());
    }

    #[test]
    fn reset_device_is_version_1_without_configuration() {
        let ser = encoded();
        assert_eq!(ser.ext.version, EXT_VERSION);
        assert_eq!(usize::from(ser.ext.length), size_of::<Ext>());
        assert_eq!(kept_config(&ser), None);
        // A kernel that knows no modes reads it as before: the bytes after the extension are 0.
        assert!(ser.as_bytes()[size_of::<CoreSer>() + size_of::<Ext>()..]
            .iter()
            .all(|b| *b == 0));
    }

    #[test]
    fn damaged_kept_device_is_refused() {
        let mut ser = encoded_keep();
        ser.ext.length = 24;
        assert_eq!(decode(&ser), Err(DecodeError::Length(24)));
        let mut ser = encoded_keep();
        ser.keep.mode = MODE_RESET;
        assert_eq!(decode(&ser), Err(DecodeError::Keep(MODE_RESET, 0)));
        let mut ser = encoded_keep();
        ser.keep.cfg_size = 4096;
        assert_eq!(decode(&ser), Err(DecodeError::Keep(MODE_KEEP, 4096)));
        assert_eq!(DecodeError::Keep(0, 0).to_error(), EBADMSG);
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
        assert_eq!(devs_add(devs, &LOC, &ID, DeviceMode::Reset), Ok(()));
        assert_eq!(devs_add(devs, &LOC2, &ID, DeviceMode::Reset), Ok(()));
        assert_eq!(devs_add(devs, &LOC, &ID, DeviceMode::Reset), Err(EBUSY));
        let got = devs_decode(devs).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].location == LOC && got[1].location == LOC2);
        assert!(got[0].identity == Some(ID));
        assert!(got[0].reset == ResetRecord::NotReset);
        devs_remove(devs, &LOC);
        devs_remove(devs, &LOC);
        let got = devs_decode(devs).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].location == LOC2);
        assert_eq!(devs_add(devs, &LOC, &ID, DeviceMode::Reset), Ok(()));
    }

    #[test]
    fn device_list_records_reset_outcomes() {
        let mut bytes = zeroed_devs();
        let devs = DevsSer::from_bytes_mut(&mut bytes).unwrap();
        devs_init(devs);
        assert_eq!(devs_add(devs, &LOC, &ID, DeviceMode::Reset), Ok(()));
        assert_eq!(devs_add(devs, &LOC2, &ID, DeviceMode::Reset), Ok(()));
        devs_set_reset(devs, &LOC, ResetRecord::Queued);
        devs_set_reset(devs, &LOC2, ResetRecord::Done);
        devs_set_reset(devs, &LOC, ResetRecord::Failed);
        let got = devs_decode(devs).unwrap();
        assert!(got[0].reset == ResetRecord::Failed && got[1].reset == ResetRecord::Done);
        // The byte of the second entry, at 8 + 24 + 6: the ABI's value for "done".
        assert_eq!(bytes[8 + 24 + 6], RESET_DONE);
        bytes[8 + 6] = 0x77;
        let devs = DevsSer::from_bytes(&bytes).unwrap();
        assert!(devs_decode(devs).unwrap()[0].reset == ResetRecord::Unknown);
    }

    #[test]
    fn device_list_records_modes() {
        let mut bytes = zeroed_devs();
        let devs = DevsSer::from_bytes_mut(&mut bytes).unwrap();
        devs_init(devs);
        assert_eq!(devs_add(devs, &LOC, &ID, DeviceMode::Keep), Ok(()));
        assert_eq!(devs_add(devs, &LOC2, &ID, DeviceMode::Reset), Ok(()));
        let got = devs_decode(devs).unwrap();
        assert!(got[0].mode == DeviceMode::Keep && got[1].mode == DeviceMode::Reset);
        // The mode is the entry's byte 7, which writers without modes left zero: reset.
        assert_eq!(bytes[8 + 7], MODE_KEEP);
        bytes[8 + 7] = 0;
        let devs = DevsSer::from_bytes(&bytes).unwrap();
        assert!(devs_decode(devs).unwrap()[0].mode == DeviceMode::Reset);
    }

    #[test]
    fn version_1_list_is_read_without_identity_or_reset() {
        let mut bytes = zeroed_devs();
        // magic, version 1, count 2, then {u32 domain, u16 bdf, u16 0} entries, CPU byte order.
        bytes[..4].copy_from_slice(&DEVS_MAGIC.to_ne_bytes());
        bytes[4..6].copy_from_slice(&DEVS_V1_VERSION.to_ne_bytes());
        bytes[6..8].copy_from_slice(&2u16.to_ne_bytes());
        bytes[8..12].copy_from_slice(&LOC.domain.to_ne_bytes());
        bytes[12..14].copy_from_slice(&0x5a13u16.to_ne_bytes());
        bytes[16..20].copy_from_slice(&0u32.to_ne_bytes());
        bytes[20..22].copy_from_slice(&0x0100u16.to_ne_bytes());
        let devs = DevsSer::from_bytes(&bytes).unwrap();
        let got = devs_decode(devs).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].location == LOC && got[1].location == LOC2);
        assert!(got[0].identity.is_none() && got[0].reset == ResetRecord::Unknown);
    }

    #[test]
    fn device_list_is_bounded() {
        let mut bytes = zeroed_devs();
        let devs = DevsSer::from_bytes_mut(&mut bytes).unwrap();
        devs_init(devs);
        for i in 0..DEVS_MAX {
            let loc = Location {
                domain: 0,
                // CAST: `i < 170`: a devfn.
                bus: 1,
                devfn: i as u8,
            };
            assert_eq!(devs_add(devs, &loc, &ID, DeviceMode::Reset), Ok(()));
        }
        assert_eq!(devs_add(devs, &LOC, &ID, DeviceMode::Reset), Err(ENOSPC));
        assert_eq!(devs_decode(devs).map(|v| v.len()), Ok(DEVS_MAX));
    }

    #[test]
    fn damaged_device_list_is_refused() {
        let mut bytes = zeroed_devs();
        let devs = DevsSer::from_bytes_mut(&mut bytes).unwrap();
        assert_eq!(devs_decode(devs).err(), Some(DevsError::Magic(0)));
        devs_init(devs);
        devs.version = 3;
        assert_eq!(devs_decode(devs).err(), Some(DevsError::Version(3)));
        devs.version = DEVS_VERSION;
        devs.count = 171;
        assert_eq!(devs_decode(devs).err(), Some(DevsError::Count(171)));
        devs.version = DEVS_V1_VERSION;
        devs.count = 512;
        assert_eq!(devs_decode(devs).err(), Some(DevsError::Count(512)));
    }

    #[test]
    fn location_prints_as_a_bdf() {
        let s = kernel::str::CString::try_from_fmt(fmt!("{}", LOC)).unwrap();
        assert_eq!(s.to_bytes(), b"1234:5a:02.3");
    }
}
