// SPDX-License-Identifier: GPL-2.0

//! Fault injection for the tests (`CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT`, off by default).
//!
//! `/sys/kernel/debug/vfio_pci_liveupdate/corrupt_next_preserve` arms one corruption of the blob
//! of the next file preserved: write `magic`, `version`, `length`, `identity` (another device
//! ID), `bdf` (a bus that does not exist), `upstream` (the extension zeroed: the upstream C
//! proposal's layout) or `handle` (the blob is intact, but the next kernel gets a handle that
//! names no preserved memory), or `none` to disarm. The next preserve writes its blob as usual,
//! then corrupts it and disarms; the next kernel's retrieve of that file must fail with the errno
//! of the corruption and a log line (`upstream`: succeed without an identity check). Reading the
//! file shows what is armed.
//!
//! `fail_next_reset` arms a fault of the next reset of one device, by its address: write
//! `<domain>:<bus>:<dev>.<fn> error` (the reset is not done and fails with `EIO`) or `... locked`
//! (the device's locks are held, as by another task, until the reset gives up), or `none` to
//! disarm all. The next reset of that device, at freeze or at retrieve, takes the fault.
//!
//! `corrupt_list_identity` gives a preserved device another device ID in the list of preserved
//! devices: write `<domain>:<bus>:<dev>.<fn>` after its file is preserved. The next kernel's
//! `bind_preserved` must then leave that device alone.
//!
//! `corrupt_list` (write anything) damages the magic of the list of preserved devices, once a
//! file is preserved: the next kernel must ignore the list (no hold-off, every device reset at
//! retrieve) and still retrieve the files.
//!
//! `resets` shows, for every device reset by this module since it loaded, its last reset: a
//! sequence number counting the module's resets, the command register read from the device
//! when the reset began (before the reset clears bus mastering once more) and right after the
//! reset and the restore of its configuration, and whether userspace had interrupts enabled
//! then: `<bdf> seq=<n> before=0x<hex> after=0x<hex> irqs=<0|1>`.

use crate::{
    abi::{self, Location},
    lu_abi::Ser,
    reset::Fault,
};
use core::fmt;
use kernel::{
    debugfs::{Dir, File},
    pci::{self, ResetLock},
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
    uaccess::UserSliceReader,
};

/// A corruption of a preserved blob.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Corruption {
    None,
    /// The extension's magic; retrieve: `EBADMSG`.
    Magic,
    /// A version no kernel writes; retrieve: `EPROTONOSUPPORT`.
    Version,
    /// A length shorter than the extension; retrieve: `EMSGSIZE`.
    Length,
    /// Another device ID in the identity; retrieve: `ESTALE`.
    Identity,
    /// A bus number no device has; retrieve: `ENODEV`.
    Bdf,
    /// The upstream C proposal's layout: the six bytes of the address, zeros after them;
    /// retrieve takes it without an identity check.
    Upstream,
    /// Not the blob but its handle: the next kernel gets one that names no preserved memory;
    /// retrieve: `EINVAL`.
    Handle,
}

const NAMES: [(Corruption, &str); 8] = [
    (Corruption::None, "none"),
    (Corruption::Magic, "magic"),
    (Corruption::Version, "version"),
    (Corruption::Length, "length"),
    (Corruption::Identity, "identity"),
    (Corruption::Bdf, "bdf"),
    (Corruption::Upstream, "upstream"),
    (Corruption::Handle, "handle"),
];

impl Corruption {
    fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("?", |(_, n)| n)
    }

    fn from_index(i: i32) -> Self {
        usize::try_from(i)
            .ok()
            .and_then(|i| NAMES.get(i))
            .map_or(Corruption::None, |(c, _)| *c)
    }

    fn index(self) -> i32 {
        // CAST: `NAMES` has eight entries.
        NAMES.iter().position(|(c, _)| *c == self).unwrap_or(0) as i32
    }
}

/// The armed corruption, as its index in [`NAMES`].
static ARMED: Atomic<i32> = Atomic::new(0);

/// The debugfs directory and its files; removed when dropped (module unload).
#[pin_data]
pub(crate) struct Knobs {
    #[pin]
    _corrupt: File<()>,
    #[pin]
    _fail_reset: File<()>,
    #[pin]
    _commands: File<()>,
    #[pin]
    _list_identity: File<()>,
    #[pin]
    _list_magic: File<()>,
    _dir: Dir,
}

impl Knobs {
    pub(crate) fn new() -> impl PinInit<Self> {
        let dir = Dir::new(c"vfio_pci_liveupdate");
        pin_init!(Self {
            _corrupt <- dir.read_write_callback_file(c"corrupt_next_preserve", (), &show, &store),
            _fail_reset <- dir.read_write_callback_file(
                c"fail_next_reset",
                (),
                &show_reset_faults,
                &store_reset_fault
            ),
            _commands <- dir.read_callback_file(c"resets", (), &show_resets),
            _list_identity <- dir.write_callback_file(
                c"corrupt_list_identity",
                (),
                &store_list_identity
            ),
            _list_magic <- dir.write_callback_file(c"corrupt_list", (), &store_list_magic),
            _dir: dir,
        })
    }
}

/// Slots of armed reset faults and of recorded command registers: 0 when empty, else
/// `SLOT_USED | value << 48 | key` with the key of [`key_of`].
const SLOTS: usize = 16;
const SLOT_USED: u64 = 1 << 63;
const KEY_MASK: u64 = (1 << 48) - 1;

static RESET_FAULTS: [Atomic<u64>; SLOTS] = [const { Atomic::new(0) }; SLOTS];
/// The devices of [`RESETS`], as in [`RESET_FAULTS`] with no value.
static RESET_KEYS: [Atomic<u64>; SLOTS] = [const { Atomic::new(0) }; SLOTS];
/// The last reset of the device of the same slot of [`RESET_KEYS`]: `seq << 33 | irqs << 32 |
/// before << 16 | after`.
static RESETS: [Atomic<u64>; SLOTS] = [const { Atomic::new(0) }; SLOTS];
/// How many resets the module did.
static RESET_SEQ: Atomic<u32> = Atomic::new(0);

fn key_of(loc: &Location) -> u64 {
    u64::from(loc.domain) << 16 | u64::from(loc.bus) << 8 | u64::from(loc.devfn)
}

fn loc_of(key: u64) -> Location {
    // CAST: The fields of `key_of`.
    Location {
        domain: (key >> 16) as u32,
        bus: (key >> 8) as u8,
        devfn: key as u8,
    }
}

/// Puts `value` for `loc` in the slot of `loc`, or in a free one; false if all are taken.
fn slot_set(slots: &[Atomic<u64>; SLOTS], loc: &Location, value: u16) -> bool {
    let key = key_of(loc);
    let word = SLOT_USED | u64::from(value) << 48 | key;
    for slot in slots {
        let old = slot.load(Relaxed);
        if old & SLOT_USED != 0 && old & KEY_MASK == key {
            slot.store(word, Relaxed);
            return true;
        }
    }
    slots
        .iter()
        .any(|slot| slot.cmpxchg(0, word, Relaxed).is_ok())
}

/// Parses `<domain>:<bus>:<dev>.<fn>`.
fn parse_bdf(s: &str) -> Option<Location> {
    let (domain, rest) = s.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let dev = u8::from_str_radix(dev, 16).ok().filter(|d| *d < 32)?;
    let func = func.parse::<u8>().ok().filter(|f| *f < 8)?;
    Some(Location {
        domain: u32::from_str_radix(domain, 16).ok()?,
        bus: u8::from_str_radix(bus, 16).ok()?,
        devfn: dev << 3 | func,
    })
}

/// Writes `loc` as sysfs names PCI functions.
fn write_bdf(f: &mut fmt::Formatter<'_>, loc: &Location) -> fmt::Result {
    write!(
        f,
        "{:04x}:{:02x}:{:02x}.{}",
        loc.domain,
        loc.bus,
        loc.devfn >> 3,
        loc.devfn & 7
    )
}

fn fault_name(value: u64) -> &'static str {
    match value {
        1 => "error",
        _ => "locked",
    }
}

fn show_reset_faults(_: &(), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for slot in &RESET_FAULTS {
        let w = slot.load(Relaxed);
        if w & SLOT_USED != 0 {
            write_bdf(f, &loc_of(w & KEY_MASK))?;
            writeln!(f, " {}", fault_name((w >> 48) & 0xff))?;
        }
    }
    Ok(())
}

fn store_reset_fault(_: &(), reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 48];
    let s = read_text(reader, &mut buf)?;
    if s == "none" {
        for slot in &RESET_FAULTS {
            slot.store(0, Relaxed);
        }
        return Ok(());
    }
    let (bdf, what) = s.split_once(' ').ok_or(EINVAL)?;
    let loc = parse_bdf(bdf.trim()).ok_or(EINVAL)?;
    let value = match what.trim() {
        "error" => 1,
        "locked" => 2,
        _ => return Err(EINVAL),
    };
    if !slot_set(&RESET_FAULTS, &loc, value) {
        return Err(ENOSPC);
    }
    let what = if value == 1 {
        "fails"
    } else {
        "finds the device locked"
    };
    pr_info!(
        "{}: live update: fault injection: the next reset {}\n",
        loc,
        what
    );
    Ok(())
}

fn store_list_identity(_: &(), reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 32];
    let s = read_text(reader, &mut buf)?;
    let loc = parse_bdf(s).ok_or(EINVAL)?;
    crate::incoming::corrupt_identity(&loc)?;
    pr_info!(
        "{}: live update: fault injection: another identity in the list of preserved devices\n",
        loc
    );
    Ok(())
}

fn store_list_magic(_: &(), _reader: &mut UserSliceReader) -> Result {
    crate::incoming::corrupt_list_magic()?;
    pr_info!("live update: fault injection: the list of preserved devices has a bad magic\n");
    Ok(())
}

/// The fault armed for the next reset of the device at `loc`, if any; disarms it.
pub(crate) fn take_reset_fault(loc: &Location) -> Option<Fault> {
    let key = key_of(loc);
    for slot in &RESET_FAULTS {
        let w = slot.load(Relaxed);
        if w & SLOT_USED != 0 && w & KEY_MASK == key && slot.cmpxchg(w, 0, Relaxed).is_ok() {
            return Some(if (w >> 48) & 0xff == 1 {
                Fault::Error
            } else {
                Fault::Locked
            });
        }
    }
    None
}

/// Takes the locks of `pdev` for a reset and holds them as long as the returned guard lives, as
/// another task would (fault `locked`).
pub(crate) fn hold_reset_lock(pdev: &pci::Device) -> Option<ResetLock<'_>> {
    let held = pdev.try_lock_for_reset();
    dev_info!(
        pdev.as_ref(),
        "live update: fault injection: {} the device's locks during its reset\n",
        if held.is_some() {
            "holding"
        } else {
            "could not take"
        }
    );
    held
}

/// What [`record_reset`] records of a device when its reset begins: its command register, and
/// whether MSI or MSI-X is enabled on it (the PCI core's own state of the function).
pub(crate) struct Snapshot {
    command: u16,
    irqs: bool,
}

/// The state of `pdev` for [`record_reset`], when its reset begins.
pub(crate) fn snapshot(pdev: &pci::Device) -> Snapshot {
    let raw = crate::vfio::raw_pci(pdev);
    // SAFETY: `pdev` is a valid PCI function; the PCI core changes these bits when it enables or
    // disables MSI or MSI-X, and a racy read of them is only a snapshot, as documented.
    let irqs = unsafe { (*raw).msi_enabled() != 0 || (*raw).msix_enabled() != 0 };
    Snapshot {
        command: pdev.command(),
        irqs,
    }
}

/// Records a reset of `pdev` by this module: its command register and interrupts `before` the
/// reset, and its command register now (after it).
pub(crate) fn record_reset(pdev: &pci::Device, before: Snapshot) {
    let seq = RESET_SEQ.fetch_add(1, Relaxed).wrapping_add(1);
    let value = u64::from(seq) << 33
        | u64::from(before.irqs) << 32
        | u64::from(before.command) << 16
        | u64::from(pdev.command());
    if let Some(i) = slot_index(&RESET_KEYS, &Location::of(pdev)) {
        RESETS[i].store(value, Relaxed);
    }
}

/// The slot of `loc` in `slots`, taken for it if it has none; [`None`] if all are taken.
fn slot_index(slots: &[Atomic<u64>; SLOTS], loc: &Location) -> Option<usize> {
    let word = SLOT_USED | key_of(loc);
    slots.iter().position(|slot| {
        let old = slot.load(Relaxed);
        old == word || (old == 0 && slot.cmpxchg(0, word, Relaxed).is_ok())
    })
}

fn show_resets(_: &(), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (key, value) in RESET_KEYS.iter().zip(&RESETS) {
        let (k, v) = (key.load(Relaxed), value.load(Relaxed));
        if k & SLOT_USED != 0 && v != 0 {
            write_bdf(f, &loc_of(k & KEY_MASK))?;
            writeln!(
                f,
                " seq={} before={:#06x} after={:#06x} irqs={}",
                v >> 33,
                (v >> 16) & 0xffff,
                v & 0xffff,
                (v >> 32) & 1
            )?;
        }
    }
    Ok(())
}

fn show(_: &(), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "{}", Corruption::from_index(ARMED.load(Relaxed)).name())
}

/// Reads what userspace wrote to a knob, at most `N` bytes, as trimmed text.
fn read_text<'a, const N: usize>(
    reader: &mut UserSliceReader,
    buf: &'a mut [u8; N],
) -> Result<&'a str> {
    let n = reader.len();
    if n > N {
        return Err(EINVAL);
    }
    reader.read_slice(&mut buf[..n])?;
    Ok(core::str::from_utf8(&buf[..n]).map_err(|_| EINVAL)?.trim())
}

fn store(_: &(), reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 16];
    let s = read_text(reader, &mut buf)?;
    let (c, _) = NAMES.iter().find(|(_, name)| *name == s).ok_or(EINVAL)?;
    ARMED.store(c.index(), Relaxed);
    pr_info!(
        "live update: fault injection: the next preserve corrupts its blob: {}\n",
        c.name()
    );
    Ok(())
}

/// Corrupts `ser`, just written by preserve, if a corruption is armed, and disarms it.
pub(crate) fn corrupt(ser: &mut Ser) -> bool {
    let c = Corruption::from_index(ARMED.xchg(0, Relaxed));
    match c {
        Corruption::None => return false,
        Corruption::Magic => ser.ext.magic = !ser.ext.magic,
        Corruption::Version => ser.ext.version = ser.ext.version.wrapping_add(100),
        Corruption::Length => ser.ext.length = 8,
        Corruption::Identity => ser.ext.id.device = !ser.ext.id.device,
        // Bus 0xff: no device of this machine is there.
        Corruption::Bdf => ser.core.bdf |= 0xff00,
        Corruption::Upstream => ser.ext = Default::default(),
        Corruption::Handle => (),
    }
    pr_info!(
        "{}: live update: fault injection: preserved blob corrupted: {}\n",
        abi::decode_location(ser),
        c.name()
    );
    c == Corruption::Handle
}

/// The handle handed over in place of a blob's by the `handle` corruption: 1 PiB, beyond the
/// memory of any machine this runs on, so that KHO finds no page there (at an address of memory
/// that was not preserved, KHO would also refuse, but with a warning).
pub(crate) const BAD_HANDLE: u64 = 1 << 50;
