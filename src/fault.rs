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
    Shared,
};
use core::fmt;
use kernel::{
    debugfs::{Dir, File},
    pci::{self, ResetLock},
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc,
    },
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

/// The debugfs directory and its files; removed when dropped (module unload). Each file holds a
/// reference to the module's shared state.
#[pin_data]
pub(crate) struct Knobs {
    #[pin]
    _corrupt: File<Arc<Shared>>,
    #[pin]
    _fail_reset: File<Arc<Shared>>,
    #[pin]
    _commands: File<Arc<Shared>>,
    #[pin]
    _list_identity: File<Arc<Shared>>,
    #[pin]
    _list_magic: File<Arc<Shared>>,
    _dir: Dir,
}

impl Knobs {
    pub(crate) fn new(shared: &Arc<Shared>) -> impl PinInit<Self> + '_ {
        let dir = Dir::new(c"vfio_pci_liveupdate");
        pin_init!(Self {
            _corrupt <- dir.read_write_callback_file(
                c"corrupt_next_preserve",
                shared.clone(),
                &show,
                &store
            ),
            _fail_reset <- dir.read_write_callback_file(
                c"fail_next_reset",
                shared.clone(),
                &show_reset_faults,
                &store_reset_fault
            ),
            _commands <- dir.read_callback_file(c"resets", shared.clone(), &show_resets),
            _list_identity <- dir.write_callback_file(
                c"corrupt_list_identity",
                shared.clone(),
                &store_list_identity
            ),
            _list_magic <- dir.write_callback_file(c"corrupt_list", shared.clone(), &store_list_magic),
            _dir: dir,
        })
    }
}

/// Slots of armed reset faults and of recorded command registers: 0 when empty, else
/// `SLOT_USED | value << 48 | key` with the key of [`key_of`].
const SLOTS: usize = 16;
const SLOT_USED: u64 = 1 << 63;
const KEY_MASK: u64 = (1 << 48) - 1;

/// What the tests armed, and what they read back: the state behind the knobs.
pub(crate) struct Faults {
    /// The armed corruption, as its index in [`NAMES`].
    armed: Atomic<i32>,
    /// The armed reset faults.
    reset_faults: [Atomic<u64>; SLOTS],
    /// The devices of `resets`, as in `reset_faults` with no value.
    reset_keys: [Atomic<u64>; SLOTS],
    /// The last reset of the device of the same slot of `reset_keys`: `seq << 33 | irqs << 32 |
    /// before << 16 | after`.
    resets: [Atomic<u64>; SLOTS],
    /// How many resets the module did.
    reset_seq: Atomic<u32>,
}

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

fn show_reset_faults(shared: &Arc<Shared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for slot in &shared.faults.reset_faults {
        let w = slot.load(Relaxed);
        if w & SLOT_USED != 0 {
            write_bdf(f, &loc_of(w & KEY_MASK))?;
            writeln!(f, " {}", fault_name((w >> 48) & 0xff))?;
        }
    }
    Ok(())
}

fn store_reset_fault(shared: &Arc<Shared>, reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 48];
    let s = read_text(reader, &mut buf)?;
    if s == "none" {
        for slot in &shared.faults.reset_faults {
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
    if !slot_set(&shared.faults.reset_faults, &loc, value) {
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

fn store_list_identity(shared: &Arc<Shared>, reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 32];
    let s = read_text(reader, &mut buf)?;
    let loc = parse_bdf(s).ok_or(EINVAL)?;
    shared.devices.corrupt_identity(&loc)?;
    pr_info!(
        "{}: live update: fault injection: another identity in the list of preserved devices\n",
        loc
    );
    Ok(())
}

fn store_list_magic(shared: &Arc<Shared>, _reader: &mut UserSliceReader) -> Result {
    shared.devices.corrupt_magic()?;
    pr_info!("live update: fault injection: the list of preserved devices has a bad magic\n");
    Ok(())
}

impl Faults {
    pub(crate) const fn new() -> Self {
        Self {
            armed: Atomic::new(0),
            reset_faults: [const { Atomic::new(0) }; SLOTS],
            reset_keys: [const { Atomic::new(0) }; SLOTS],
            resets: [const { Atomic::new(0) }; SLOTS],
            reset_seq: Atomic::new(0),
        }
    }

    /// The fault armed for the next reset of the device at `loc`, if any; disarms it.
    pub(crate) fn take_reset_fault(&self, loc: &Location) -> Option<Fault> {
        let key = key_of(loc);
        for slot in &self.reset_faults {
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

    /// Takes the locks of `pdev` for a reset and holds them as long as the returned guard lives,
    /// as another task would (fault `locked`).
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

    /// The state of `pdev` for [`Faults::record_reset`], when its reset begins.
    pub(crate) fn snapshot(&self, pdev: &pci::Device) -> Snapshot {
        Snapshot {
            command: pdev.command(),
            irqs: pdev.is_msi_or_msix_enabled(),
        }
    }

    /// Records a reset of `pdev` by this module: its command register and interrupts `before`
    /// the reset, and its command register now (after it).
    pub(crate) fn record_reset(&self, pdev: &pci::Device, before: Snapshot) {
        let seq = self.reset_seq.fetch_add(1, Relaxed).wrapping_add(1);
        let value = u64::from(seq) << 33
            | u64::from(before.irqs) << 32
            | u64::from(before.command) << 16
            | u64::from(pdev.command());
        if let Some(i) = slot_index(&self.reset_keys, &Location::of(pdev)) {
            self.resets[i].store(value, Relaxed);
        }
    }

    /// Corrupts `ser`, just written by preserve, if a corruption is armed, and disarms it.
    /// Returns whether the next kernel must get a bad handle for it ([`BAD_HANDLE`]).
    pub(crate) fn corrupt(&self, ser: &mut Ser) -> bool {
        let c = Corruption::from_index(self.armed.xchg(0, Relaxed));
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
}

/// What [`Faults::record_reset`] records of a device when its reset begins: its command
/// register, and whether MSI or MSI-X is enabled on it (the PCI core's own state of the
/// function).
pub(crate) struct Snapshot {
    command: u16,
    irqs: bool,
}

/// The slot of `loc` in `slots`, taken for it if it has none; [`None`] if all are taken.
fn slot_index(slots: &[Atomic<u64>; SLOTS], loc: &Location) -> Option<usize> {
    let word = SLOT_USED | key_of(loc);
    slots.iter().position(|slot| {
        let old = slot.load(Relaxed);
        old == word || (old == 0 && slot.cmpxchg(0, word, Relaxed).is_ok())
    })
}

fn show_resets(shared: &Arc<Shared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let faults = &shared.faults;
    for (key, value) in faults.reset_keys.iter().zip(&faults.resets) {
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

fn show(shared: &Arc<Shared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let armed = shared.faults.armed.load(Relaxed);
    writeln!(f, "{}", Corruption::from_index(armed).name())
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

fn store(shared: &Arc<Shared>, reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 16];
    let s = read_text(reader, &mut buf)?;
    let (c, _) = NAMES.iter().find(|(_, name)| *name == s).ok_or(EINVAL)?;
    shared.faults.armed.store(c.index(), Relaxed);
    pr_info!(
        "live update: fault injection: the next preserve corrupts its blob: {}\n",
        c.name()
    );
    Ok(())
}

/// The handle handed over in place of a blob's by the `handle` corruption: 1 PiB, beyond the
/// memory of any machine this runs on, so that KHO finds no page there (at an address of memory
/// that was not preserved, KHO would also refuse, but with a warning).
pub(crate) const BAD_HANDLE: u64 = 1 << 50;
