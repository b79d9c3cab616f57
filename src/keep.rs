// SPDX-License-Identifier: GPL-2.0

//! Keep mode: the configuration space of a device whose state a live update keeps.
//!
//! The freeze of a kept device does not reset it; it records the device's configuration space
//! (the first [`CFG_SIZE`] bytes, bus mastering already off, or on in run mode) in the preserved blob
//! ([`capture`]). At retrieve, the new kernel compares the device with that record
//! ([`check_at_retrieve`]): a device that is not in D0 or does not answer lost its state, and is
//! reset like a device of the reset mode, and so is one whose decoding went off or whose BARs
//! changed since the freeze (what a reset that the PCI core did not restore leaves); the decoding
//! bits of the command register are written back if they differ; any other difference is logged,
//! and the device handed out all the same.

use crate::lu_abi::CFG_SIZE;
use kernel::{bindings, fmt, pci, prelude::*};

/// Why the state of a kept device is taken as lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lost {
    /// The previous kernel wrote no configuration space.
    NotRecorded,
    /// The device is not in D0: it went through a low power state, which may reset it.
    PowerState(pci::PowerState),
    /// The configuration space cannot be read, or reads as all ones.
    NoAnswer,
    /// Memory or I/O decoding was on at freeze and is off now, as after a reset.
    DecodingOff,
    /// A base address register differs from the one recorded: the device was reset, and the
    /// new kernel assigned its BARs again.
    Bar(usize),
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRecorded => write!(f, "the previous kernel recorded no configuration space"),
            Self::PowerState(s) => write!(f, "the device is in {s:?}, not D0"),
            Self::NoAnswer => write!(f, "the configuration space cannot be read"),
            Self::DecodingOff => write!(
                f,
                "memory and I/O decoding were on at freeze and are off now, as after a reset"
            ),
            Self::Bar(off) => write!(f, "the base address register at {off:#04x} changed"),
        }
    }
}

/// Reads the first [`CFG_SIZE`] bytes of the configuration space of `pdev`.
pub(crate) fn capture(pdev: &pci::Device) -> Result<[u8; CFG_SIZE]> {
    let mut cfg = [0u8; CFG_SIZE];
    for (off, dw) in (0u16..).step_by(4).zip(cfg.chunks_exact_mut(4)) {
        dw.copy_from_slice(&pdev.read_config_dword(off)?.to_le_bytes());
    }
    Ok(cfg)
}

// CAST: Offsets and bits of the standard header, all within `u16`.
const COMMAND: usize = bindings::PCI_COMMAND as usize;
const BARS: core::ops::Range<usize> =
    bindings::PCI_BASE_ADDRESS_0 as usize..bindings::PCI_BASE_ADDRESS_5 as usize + 4;
const STATUS: usize = bindings::PCI_STATUS as usize;
const INTERRUPT_LINE: usize = bindings::PCI_INTERRUPT_LINE as usize;
const DECODE: u16 = (bindings::PCI_COMMAND_IO | bindings::PCI_COMMAND_MEMORY) as u16;
const MASTER: u16 = bindings::PCI_COMMAND_MASTER as u16;

/// Whether the byte at `off` of the configuration space is one that the comparison skips: the
/// status register (bits the device sets by itself, cleared by writing them) and the interrupt
/// line (the new kernel's interrupt routing writes it).
fn ignored(off: usize) -> bool {
    matches!(off, STATUS | 0x07) || off == INTERRUPT_LINE
}

/// The differences between `saved` and `now` beyond the ignored bytes: (first offset, count).
fn differences(saved: &[u8], now: &[u8]) -> (Option<usize>, usize) {
    let mut first = None;
    let mut n = 0;
    for (off, (a, b)) in saved.iter().zip(now).enumerate() {
        if a != b && !ignored(off) {
            first.get_or_insert(off);
            n += 1;
        }
    }
    (first, n)
}

/// Why `now`, read from the device at retrieve, shows a reset since `saved` was recorded: a
/// reset turns decoding off and clears the BARs, which the new kernel's enumeration then assigns
/// again. (A reset that restored the configuration space, as the PCI core's resets do, does not
/// show here: only the device's own registers would tell.)
fn reset_since(saved: &[u8], now: &[u8]) -> Option<Lost> {
    let cmd = |cfg: &[u8]| u16::from_le_bytes([cfg[COMMAND], cfg[COMMAND + 1]]);
    if cmd(saved) & DECODE != 0 && cmd(now) & DECODE == 0 {
        return Some(Lost::DecodingOff);
    }
    BARS.step_by(4)
        .find(|&off| saved[off..off + 4] != now[off..off + 4])
        .map(Lost::Bar)
}

/// Clears bus mastering of `pdev`, which no driver has enabled (a device of the run mode that no
/// VMM drives): whether it was on.
pub(crate) fn stop_bus_master(pdev: &pci::Device) -> Result<bool> {
    // CAST: The command register's offset and its low half.
    let cmd = pdev.read_config_dword(COMMAND as u16)? as u16;
    if cmd & MASTER == 0 {
        return Ok(false);
    }
    // The status half of the dword is written as 0, which clears no status bit.
    pdev.write_config_dword(COMMAND as u16, u32::from(cmd & !MASTER))?;
    Ok(true)
}

/// The command register to write back when its decoding bits `have` differ from the recorded
/// `want`: the recorded decoding bits, bus mastering off, or, for a device of the run mode
/// (`running`), as it is.
fn restored_command(want: u16, have: u16, running: bool) -> u16 {
    let master = if running { have & MASTER } else { 0 };
    have & !DECODE & !MASTER | master | want & DECODE
}

/// At retrieve, before the file is handed out: compares the kept device `pdev` with `saved`,
/// its configuration space as the previous kernel's freeze recorded it. Gives why its state is
/// taken as lost, if it is (see [`reset_since`]); otherwise writes the decoding bits of the
/// command register back if they differ (bus mastering stays off, or, with `running`, for a
/// device of the run mode, as it is), logs any other difference, and gives whether bus mastering
/// is on.
pub(crate) fn check_at_retrieve(
    pdev: &pci::Device,
    saved: Option<&[u8]>,
    running: bool,
) -> Result<bool, Lost> {
    let saved = saved
        .filter(|s| s.len() == CFG_SIZE)
        .ok_or(Lost::NotRecorded)?;
    match pdev.power_state() {
        pci::PowerState::D0 => {}
        s => return Err(Lost::PowerState(s)),
    }
    let now = capture(pdev).map_err(|_| Lost::NoAnswer)?;
    if now[..4] == [0xff; 4] {
        return Err(Lost::NoAnswer);
    }
    if let Some(lost) = reset_since(saved, &now) {
        return Err(lost);
    }
    let dev = pdev.as_ref();
    let cmd = |cfg: &[u8]| u16::from_le_bytes([cfg[COMMAND], cfg[COMMAND + 1]]);
    let (want, have) = (cmd(saved), cmd(&now));
    let master = have & MASTER != 0;
    if (want ^ have) & DECODE != 0 {
        let fixed = restored_command(want, have, running);
        // The status half of the dword is written as 0, which clears no status bit.
        match pdev.write_config_dword(COMMAND as u16, u32::from(fixed)) {
            Ok(()) => dev_info!(
                dev,
                "live update: retrieve: command register {:#06x}, kept as {:#06x}: decoding restored\n",
                have,
                want
            ),
            Err(e) => dev_warn!(
                dev,
                "live update: retrieve: command register {:#06x}, kept as {:#06x}, not restored: {:?}\n",
                have,
                want,
                e
            ),
        }
    }
    let mut now = now;
    now[COMMAND..COMMAND + 2].copy_from_slice(&saved[COMMAND..COMMAND + 2]);
    if let (Some(first), n) = differences(saved, &now) {
        dev_warn!(
            dev,
            "live update: retrieve: {} byte(s) of the configuration space differ from the kept one, the first at {:#04x} ({:#04x}, kept {:#04x}); handed out as it is\n",
            n,
            first,
            now[first],
            saved[first]
        );
    }
    Ok(master)
}

#[kunit_tests(vfio_pci_liveupdate_keep)]
mod tests {
    use super::*;

    #[test]
    fn status_and_interrupt_line_are_not_compared() {
        let saved = [0u8; CFG_SIZE];
        let mut now = saved;
        now[STATUS] = 0x10;
        now[STATUS + 1] = 0x80;
        now[INTERRUPT_LINE] = 11;
        assert_eq!(differences(&saved, &now), (None, 0));
    }

    #[test]
    fn decoding_turned_off_or_a_bar_changed_means_a_reset() {
        let mut saved = [0u8; CFG_SIZE];
        saved[COMMAND] = 0x06; // memory decoding, bus master
        saved[0x10] = 0x0c;
        saved[0x11] = 0xe0;
        let mut now = saved;
        now[COMMAND] = 0x02; // bus master cleared by the freeze: still kept
        assert_eq!(reset_since(&saved, &now), None);
        now[COMMAND] = 0;
        assert_eq!(reset_since(&saved, &now), Some(Lost::DecodingOff));
        now[COMMAND] = 0x02;
        now[0x21] = 0x10;
        assert_eq!(reset_since(&saved, &now), Some(Lost::Bar(0x20)));
        // Decoding off at freeze: nothing to tell from it.
        saved[COMMAND] = 0;
        now = saved;
        assert_eq!(reset_since(&saved, &now), None);
    }

    #[test]
    fn decoding_is_restored_and_bus_mastering_left_on_only_in_run_mode() {
        let want = 0x0106; // memory decoding, bus master, SERR
        let have = 0x0104; // decoding lost, bus master on
        assert_eq!(restored_command(want, have, true), 0x0106);
        assert_eq!(restored_command(want, have, false), 0x0102);
        // Bus mastering off stays off in both modes.
        assert_eq!(restored_command(want, 0x0100, true), 0x0102);
        assert_eq!(restored_command(0x0001, 0x0002, false), 0x0001);
    }

    #[test]
    fn other_differences_are_counted_from_the_first() {
        let saved = [0u8; CFG_SIZE];
        let mut now = saved;
        now[0x10] = 0x04;
        now[0x98] = 0x01;
        now[0x99] = 0x02;
        assert_eq!(differences(&saved, &now), (Some(0x10), 3));
    }
}
