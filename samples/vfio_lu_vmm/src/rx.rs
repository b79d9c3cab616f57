// SPDX-License-Identifier: GPL-2.0
//! The receive queue (queue 0) of a virtio-net device, in the guest memory:
//! its layout, its rings and buffers, and what the device wrote there.
//!
//! Everything here works on the memory alone, without the device file: in
//! the new kernel the VMM reads what a device that kept running wrote into
//! the preserved memfd while no VMM ran, before it even has the device back.
//! Giving the buffers back (the avail ring) is memory too; only the
//! notification that follows needs the device (`virtio.rs`).
//!
//! Without an IOMMU the device takes physical addresses, and each part of a
//! split virtqueue (descriptor table, driver ring, device ring) must be
//! physically contiguous, which a memfd's pages need not be. The layout is
//! chosen from the physical addresses of the receive slot's ring pages
//! (`IOMMU_IOAS_NOIOMMU_GET_PA`): the largest queue (1024 entries, down to
//! 256, whose parts each fit in one page) whose three parts find runs of
//! contiguous pages there. The buffers are `BUF_LEN` bytes each, never
//! across a page boundary.

use std::io;
use std::sync::atomic::{fence, Ordering};

use crate::memory::{self, GuestMemory, RxRecord, PAGE};

/// Queue 0 of virtio-net: the receive queue of the first pair.
pub const RX_QUEUE: u16 = 0;
/// The largest queue the driver asks for (QEMU's virtio-net takes
/// `rx_queue_size` up to 1024).
pub const MAX_QUEUE_SIZE: u16 = 1024;
/// The smallest: each ring part in one page, so any page will do.
const MIN_QUEUE_SIZE: u16 = 256;
/// One buffer per descriptor, enough for the 12-byte `virtio_net_hdr_v1` and
/// a minimum-size Ethernet frame of the host's sender, with room to spare.
pub const BUF_LEN: usize = 256;
const _: () = assert!(PAGE.is_multiple_of(BUF_LEN));
const _: () = assert!(MAX_QUEUE_SIZE as usize * BUF_LEN <= memory::RX_BUF_PAGES * PAGE);
/// `VIRTQ_DESC_F_WRITE`: a buffer the device writes.
const DESC_F_WRITE: u16 = 2;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver polls.
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `virtio_net_hdr_v1`.
const NET_HDR_LEN: usize = 12;

/// The host's frames (scripts/frames.py feed): EtherType 0x88b5 (as the
/// transmit side), this magic, a little-endian `u64` sequence number and the
/// host's send time (`u64`, microseconds since the epoch, CLOCK_REALTIME).
pub const RX_MAGIC: &[u8; 8] = b"VFIOLURX";
const ETHERTYPE: u16 = 0x88b5;

/// Bytes of each part of a split virtqueue of `size` entries (no event
/// index): descriptor table, driver (avail) ring, device (used) ring.
fn ring_bytes(size: u16) -> [usize; 3] {
    let n = size as usize;
    [16 * n, 6 + 2 * n, 6 + 8 * n]
}

/// Whether pages `start..start + n` of the receive slot's ring area are
/// physically contiguous (always, through an IOMMU: the IOVA is).
fn contiguous(mem: &GuestMemory, slot_off: usize, start: usize, n: usize) -> bool {
    let phys = mem.phys();
    if phys.is_empty() {
        return true;
    }
    let first = (slot_off - memory::DMA_AREA) / PAGE + start;
    (first..first + n - 1).all(|p| phys[p + 1] == phys[p] + PAGE as u64)
}

/// Pages of the ring area for each part of a queue of `size` entries, if
/// each finds a physically contiguous run there: offsets (in the guest
/// memory) of the descriptor table, the driver ring and the device ring.
fn place(mem: &GuestMemory, slot_off: usize, size: u16) -> Option<[usize; 3]> {
    let bytes = ring_bytes(size);
    let pages = bytes.map(|b| b.div_ceil(PAGE));
    let mut taken = [false; memory::RX_RING_PAGES];
    let mut at = [0usize; 3];
    // The largest parts first: the descriptor table, the device ring.
    for part in [0, 2, 1] {
        let n = pages[part];
        let start = (0..=memory::RX_RING_PAGES - n)
            .find(|&s| taken[s..s + n].iter().all(|t| !t) && contiguous(mem, slot_off, s, n))?;
        taken[start..start + n].fill(true);
        at[part] = slot_off + start * PAGE;
    }
    Some(at)
}

/// Lays out a fresh receive queue in receive slot `slot`: the largest size
/// up to `max` (the device's maximum) whose rings fit physically contiguous;
/// zeroes the rings, fills the descriptor table with one buffer per entry and
/// makes every buffer available. Returns its record; `None` if no layout
/// fits (not even one page per part) or the device's queue is smaller than
/// 256.
pub fn setup(mem: &GuestMemory, slot: u8, max: u16) -> io::Result<Option<RxRecord>> {
    let slot_off = memory::rx_slot(slot);
    let mut size = MAX_QUEUE_SIZE.min(max);
    if !size.is_power_of_two() {
        size = size.next_power_of_two() / 2;
    }
    let at = loop {
        if size < MIN_QUEUE_SIZE {
            return Ok(None);
        }
        if let Some(at) = place(mem, slot_off, size) {
            break at;
        }
        size /= 2;
    };
    mem.dma_zero(slot_off, memory::RX_RING_PAGES * PAGE)?;
    let buf_off = slot_off + memory::RX_RING_PAGES * PAGE;
    for i in 0..size as usize {
        let desc = at[0] + 16 * i;
        mem.dma_write64(desc, mem.bus(buf_off + i * BUF_LEN))?;
        mem.dma_write32(desc + 8, BUF_LEN as u32)?;
        mem.dma_write16(desc + 12, DESC_F_WRITE)?;
        mem.dma_write16(desc + 14, 0)?;
        mem.dma_write16(at[1] + 4 + 2 * i, i as u16)?;
    }
    mem.dma_write16(at[1], AVAIL_F_NO_INTERRUPT)?;
    // The entries before the index that publishes them.
    fence(Ordering::SeqCst);
    mem.dma_write16(at[1] + 2, size)?;
    Ok(Some(RxRecord {
        queue_size: size,
        desc_off: at[0] as u32,
        avail_off: at[1] as u32,
        used_off: at[2] as u32,
        buf_off: buf_off as u32,
        buf_len: BUF_LEN as u16,
        desc: mem.bus(at[0]),
        driver: mem.bus(at[1]),
        device: mem.bus(at[2]),
        next_avail: size,
        last_used: 0,
        received: 0,
        last_seq: None,
        last_sent_us: 0,
    }))
}

/// One of the host's frames, as the device wrote it: its sequence number and
/// the host's send time. `seq` is `None` for anything else the device
/// received.
#[derive(Clone, Copy, Debug)]
pub struct RxFrame {
    pub seq: Option<u64>,
    pub sent_us: u64,
}

/// The device ring's index, as the device last wrote it.
pub fn used_idx(mem: &GuestMemory, rec: &RxRecord) -> io::Result<u16> {
    mem.dma_read16(rec.used_off as usize + 2)
}

/// The avail ring's index, as the driver last wrote it.
pub fn avail_idx(mem: &GuestMemory, rec: &RxRecord) -> io::Result<u16> {
    mem.dma_read16(rec.avail_off as usize + 2)
}

/// The frames of the used ring's entries `from..to` (ring indices) and
/// the descriptors they name, without consuming them.
pub fn read(
    mem: &GuestMemory,
    rec: &RxRecord,
    from: u16,
    to: u16,
) -> io::Result<Vec<(u16, RxFrame)>> {
    let n = to.wrapping_sub(from);
    if n > rec.queue_size {
        // More than the ring holds: not a ring this driver set up.
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    // The entries after the index that published them.
    fence(Ordering::SeqCst);
    let mut out = Vec::with_capacity(n as usize);
    for k in 0..n {
        let e = from.wrapping_add(k) % rec.queue_size;
        let entry = rec.used_off as usize + 4 + 8 * e as usize;
        let id = mem.dma_read32(entry)?;
        let len = mem.dma_read32(entry + 4)? as usize;
        if id >= u32::from(rec.queue_size) || len > rec.buf_len as usize {
            return Err(io::Error::from_raw_os_error(libc::EPROTO));
        }
        let mut buf = [0u8; NET_HDR_LEN + 38];
        let frame = if len >= buf.len() {
            mem.dma_read(
                rec.buf_off as usize + id as usize * rec.buf_len as usize,
                &mut buf,
            )?;
            parse(&buf[NET_HDR_LEN..])
        } else {
            RxFrame {
                seq: None,
                sent_us: 0,
            }
        };
        out.push((id as u16, frame));
    }
    Ok(out)
}

/// The host's sequence number and send time in an Ethernet frame.
fn parse(eth: &[u8]) -> RxFrame {
    let u64_at = |i: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&eth[i..i + 8]);
        u64::from_le_bytes(v)
    };
    if eth[12..14] != ETHERTYPE.to_be_bytes() || &eth[14..22] != RX_MAGIC {
        return RxFrame {
            seq: None,
            sent_us: 0,
        };
    }
    RxFrame {
        seq: Some(u64_at(22)),
        sent_us: u64_at(30),
    }
}

/// Takes what the device added to the used ring since `rec.last_used`:
/// the descriptors (to give back with [`give_back`]) and the frames. `rec`
/// follows the index and the counts.
pub fn poll(mem: &GuestMemory, rec: &mut RxRecord) -> io::Result<(Vec<u16>, Vec<RxFrame>)> {
    let used = used_idx(mem, rec)?;
    let got = read(mem, rec, rec.last_used, used)?;
    rec.last_used = used;
    let (ids, frames): (Vec<u16>, Vec<RxFrame>) = got.into_iter().unzip();
    account(rec, &frames);
    Ok((ids, frames))
}

/// Makes the buffers of descriptors `ids` available again, in that order
/// (the device then wants a notification).
pub fn give_back(mem: &GuestMemory, rec: &mut RxRecord, ids: &[u16]) -> io::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    for id in ids {
        let e = rec.next_avail % rec.queue_size;
        mem.dma_write16(rec.avail_off as usize + 4 + 2 * e as usize, *id)?;
        rec.next_avail = rec.next_avail.wrapping_add(1);
    }
    // The entries before the index that publishes them.
    fence(Ordering::SeqCst);
    mem.dma_write16(rec.avail_off as usize + 2, rec.next_avail)?;
    // The index before the notification.
    fence(Ordering::SeqCst);
    Ok(())
}

/// Counts `frames` into `rec`.
pub fn account(rec: &mut RxRecord, frames: &[RxFrame]) {
    rec.received += frames.len() as u64;
    if let Some(last) = frames.iter().rev().find(|f| f.seq.is_some()) {
        rec.last_seq = last.seq;
        rec.last_sent_us = last.sent_us;
    }
}

/// Statistics of a run of received frames, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Sequence numbers in arrival order.
    pub seqs: Vec<u64>,
    /// Frames that were not the host's.
    pub other: u64,
    /// The longest gap between two consecutive frames' send times (µs) and
    /// the sequence numbers around it.
    pub max_gap: Option<(u64, u64, u64)>,
    prev: Option<(u64, u64)>,
}

impl Stats {
    /// Starts after the frame `prev` (sequence number, send time), if any.
    pub fn after(prev: Option<(u64, u64)>) -> Self {
        Self {
            prev,
            ..Default::default()
        }
    }

    pub fn add(&mut self, frames: &[RxFrame]) {
        for f in frames {
            let Some(seq) = f.seq else {
                self.other += 1;
                continue;
            };
            if let Some((pseq, psent)) = self.prev {
                let gap = f.sent_us.saturating_sub(psent);
                if self.max_gap.is_none_or(|(g, _, _)| gap > g) {
                    self.max_gap = Some((gap, pseq, seq));
                }
            }
            self.prev = Some((seq, f.sent_us));
            self.seqs.push(seq);
        }
    }

    /// The sequence numbers in arrival order, runs of consecutive numbers
    /// collapsed: "3-7, 9, 8" ("none" if empty).
    pub fn runs(&self) -> String {
        runs(&self.seqs)
    }

    /// "longest gap between consecutive frames' send times: X ms (seq a to b)".
    pub fn gap_text(&self) -> String {
        match self.max_gap {
            Some((g, a, b)) => format!(
                "longest gap between consecutive frames' host send times {:.1} ms (seq {a} to {b})",
                g as f64 / 1000.0
            ),
            None => "no gap measured (fewer than two frames)".into(),
        }
    }

    /// "; N other frame(s)" for frames that were not the host's numbered
    /// ones, empty if none.
    pub fn other_text(&self) -> String {
        if self.other > 0 {
            format!("; {} other frame(s)", self.other)
        } else {
            String::new()
        }
    }
}

/// Sequence numbers in the order given, runs of consecutive numbers
/// collapsed.
pub fn runs(seqs: &[u64]) -> String {
    if seqs.is_empty() {
        return "none".into();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    out.join(", ")
}
