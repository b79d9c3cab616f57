// SPDX-License-Identifier: GPL-2.0

//! Fault injection for the tests (`CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT`, off by default).
//!
//! `/sys/kernel/debug/vfio_pci_liveupdate/corrupt_next_preserve` arms one corruption of the blob
//! of the next file preserved: write `magic`, `version`, `length`, `identity` (another device
//! ID) or `bdf` (a bus that does not exist), or `none` to disarm. The next preserve writes its
//! blob as usual, then corrupts it and disarms; the next kernel's retrieve of that file must fail
//! with the errno of the corruption and a log line. Reading the file shows what is armed.

use crate::abi;
use core::fmt;
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
    uaccess::UserSliceReader,
    vfio::lu_abi::Ser,
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
}

const NAMES: [(Corruption, &str); 6] = [
    (Corruption::None, "none"),
    (Corruption::Magic, "magic"),
    (Corruption::Version, "version"),
    (Corruption::Length, "length"),
    (Corruption::Identity, "identity"),
    (Corruption::Bdf, "bdf"),
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
        // CAST: `NAMES` has six entries.
        NAMES.iter().position(|(c, _)| *c == self).unwrap_or(0) as i32
    }
}

/// The armed corruption, as its index in [`NAMES`].
static ARMED: Atomic<i32> = Atomic::new(0);

/// The debugfs directory and its file; removed when dropped (module unload).
#[pin_data]
pub(crate) struct Knobs {
    #[pin]
    _corrupt: File<()>,
    _dir: Dir,
}

impl Knobs {
    pub(crate) fn new() -> impl PinInit<Self> {
        let dir = Dir::new(c"vfio_pci_liveupdate");
        pin_init!(Self {
            _corrupt <- dir.read_write_callback_file(c"corrupt_next_preserve", (), &show, &store),
            _dir: dir,
        })
    }
}

fn show(_: &(), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "{}", Corruption::from_index(ARMED.load(Relaxed)).name())
}

fn store(_: &(), reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 16];
    let n = reader.len();
    if n > buf.len() {
        return Err(EINVAL);
    }
    reader.read_slice(&mut buf[..n])?;
    let s = core::str::from_utf8(&buf[..n]).map_err(|_| EINVAL)?.trim();
    let (c, _) = NAMES.iter().find(|(_, name)| *name == s).ok_or(EINVAL)?;
    ARMED.store(c.index(), Relaxed);
    pr_info!(
        "live update: fault injection: the next preserve corrupts its blob: {}\n",
        c.name()
    );
    Ok(())
}

/// Corrupts `ser`, just written by preserve, if a corruption is armed, and disarms it.
pub(crate) fn corrupt(ser: &mut Ser) {
    let c = Corruption::from_index(ARMED.xchg(0, Relaxed));
    match c {
        Corruption::None => return,
        Corruption::Magic => ser.ext.magic = !ser.ext.magic,
        Corruption::Version => ser.ext.version = ser.ext.version.wrapping_add(100),
        Corruption::Length => ser.ext.length = 8,
        Corruption::Identity => ser.ext.id.device = !ser.ext.id.device,
        // Bus 0xff: no device of this machine is there.
        Corruption::Bdf => ser.core.bdf |= 0xff00,
    }
    pr_info!(
        "{}: live update: fault injection: preserved blob corrupted: {}\n",
        abi::decode_location(ser),
        c.name()
    );
}
