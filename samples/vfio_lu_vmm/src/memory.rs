// SPDX-License-Identifier: GPL-2.0
//! The sample's "guest memory": a memfd, mapped into the VMM and, through
//! iommufd, into the devices' IO address space.
//!
//! LUO preserves a memfd's pages across the kexec (the `memfd` file handler of
//! Linux 7.3), so the memory a guest had survives; the DMA mappings on top of
//! it do not and are made again in the new kernel. The first page holds a
//! header in which stage 1 records what stage 2 needs and checks: the devices,
//! their tokens, identities and live update modes, the IOVA and size of the
//! memory, and the state of the virtio-net devices the sample drives (see
//! [`VirtioRecord`]). The rest of the first MiB is filled with a pattern that
//! stage 2 checks byte by byte. After it comes the DMA area: one slot of
//! [`DMA_SLOT_SIZE`] bytes per driven virtio-net device, holding its transmit
//! queue's rings and frame buffers, which the device reads and writes.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use crate::vfio::Identity;

/// End of the part of the memory that only the VMM touches: the header, the
/// table of physical addresses and the pattern. The devices never write
/// below it.
pub const PATTERN_END: usize = 1 << 20;
/// The DMA area of the virtio-net devices starts where the pattern ends.
pub const DMA_AREA: usize = PATTERN_END;
/// One DMA slot per driven virtio-net device: its transmit queue's rings and
/// buffers.
pub const DMA_SLOT_SIZE: usize = 16 << 10;
/// At most this many virtio-net devices are driven (DMA slots).
pub const MAX_VIRTIO: usize = 8;
/// The receive queues' slots follow the transmit slots: one per virtio-net
/// device whose receive queue the VMM drives (`--rx`), for the first
/// `MAX_RX` of them. A receive slot holds the rings (pages 0 to
/// `RX_RING_PAGES - 1`, where the driver looks for physically contiguous
/// runs, see `rx.rs`) and then the buffers.
pub const RX_AREA: usize = DMA_AREA + MAX_VIRTIO * DMA_SLOT_SIZE;
pub const MAX_RX: usize = 4;
pub const PAGE: usize = 4096;
pub const RX_RING_PAGES: usize = 32;
pub const RX_BUF_PAGES: usize = 64;
pub const RX_SLOT_SIZE: usize = (RX_RING_PAGES + RX_BUF_PAGES) * PAGE;
/// Size of the guest memory.
pub const SIZE: usize = RX_AREA + MAX_RX * RX_SLOT_SIZE;
/// Pages of the DMA area (transmit and receive slots).
pub const DMA_PAGES: usize = (SIZE - DMA_AREA) / PAGE;
/// Where the devices see it (IO virtual address), before and after the kexec.
pub const IOVA: u64 = 0x4000_0000;
/// The header takes the first page.
pub const HEADER_SIZE: usize = 4096;
/// The second page: the physical address of every page of the DMA area, as
/// `IOMMU_IOAS_NOIOMMU_GET_PA` gave them in stage 1 (no-IOMMU mode; a count
/// of 0 otherwise). Stage 2 checks that the memory is where it was.
pub const PHYS_TABLE: usize = HEADER_SIZE;
const _: () = assert!(8 + DMA_PAGES * 8 <= PAGE);
/// The pattern fills the rest of the first MiB.
pub const PATTERN_START: usize = PHYS_TABLE + PAGE;
/// At most this many devices fit in the header.
pub const MAX_DEVICES: usize = 64;

const MAGIC: &[u8; 8] = b"VFIOLUVM";
/// Version 3: live update mode per device, virtio-net records, DMA area,
/// receive queues and the physical address table.
const VERSION: u32 = 3;
const FIXED: usize = 32;
const BDF_LEN: usize = 16;
const RECORD: usize = BDF_LEN + 8 + Identity::LEN + 4;
/// In a device record: its live update mode, and 1 + the index of its
/// virtio-net record (0: none).
const RECORD_MODE: usize = BDF_LEN + 8 + Identity::LEN;
const RECORD_VIRTIO: usize = RECORD_MODE + 1;
/// The virtio-net records follow the device records.
const VIRTIO_TABLE: usize = FIXED + MAX_DEVICES * RECORD;
/// The receive queue records follow, one per receive slot.
const RX_TABLE: usize = VIRTIO_TABLE + MAX_VIRTIO * VirtioRecord::LEN;
const _: () = assert!(RX_TABLE + MAX_RX * RxRecord::LEN <= HEADER_SIZE);

/// The byte the pattern has at offset `off` of the memory: it depends on
/// every bit of the offset, so that a page moved, lost or zeroed shows.
pub fn pattern(off: usize) -> u8 {
    let x = (off as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x >> 56) as u8) ^ ((off >> 12) as u8)
}

/// What stage 1 records about one device.
#[derive(Clone, Debug)]
pub struct DeviceRecord {
    pub bdf: String,
    pub token: u64,
    pub identity: Identity,
    /// The live update mode stage 1 chose (`VFIO_DEVICE_LIVEUPDATE_*`).
    pub mode: u32,
    /// The device's virtio-net record, if the sample drives it.
    pub virtio: Option<VirtioRecord>,
}

/// A virtio-net device the sample drives: how stage 1 set it up, and where
/// its transmit queue stands. Stage 2 checks the device against it (kept
/// device) and continues the ring indices (kept) or the sequence numbers
/// (reset device).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioRecord {
    /// Its DMA slot (0 to `MAX_VIRTIO - 1`).
    pub slot: u8,
    /// The source MAC address of its frames.
    pub mac: [u8; 6],
    /// The features the driver negotiated.
    pub features: u64,
    /// The transmit queue: index, size and ring addresses (IOVAs).
    pub queue: u16,
    pub queue_size: u16,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    /// The MSI-X vectors, as the device read them back.
    pub msix_config: u16,
    pub queue_msix_vector: u16,
    /// The next index of the driver (avail) ring, and the device (used)
    /// ring's index the driver has seen.
    pub next_avail: u16,
    pub last_used: u16,
    /// Sequence number of the next frame.
    pub next_seq: u64,
    /// The receive queue, if the VMM drives it (its slot is `slot`).
    pub rx: Option<RxRecord>,
}

/// A virtio-net device's receive queue (queue 0): its layout in the guest
/// memory (offsets; the device has the matching bus addresses) and where
/// the driver stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxRecord {
    pub queue_size: u16,
    /// Offsets in the guest memory of the three rings and of the buffers
    /// (`queue_size` buffers of `buf_len` bytes, none across a page).
    pub desc_off: u32,
    pub avail_off: u32,
    pub used_off: u32,
    pub buf_off: u32,
    pub buf_len: u16,
    /// The addresses the device was given for the rings.
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    /// The next index of the avail ring, and the used ring's index the
    /// driver has consumed.
    pub next_avail: u16,
    pub last_used: u16,
    /// Frames received so far (both stages).
    pub received: u64,
    /// The last of the host's frames received: its sequence number and
    /// send time (microseconds).
    pub last_seq: Option<u64>,
    pub last_sent_us: u64,
}

impl RxRecord {
    pub const LEN: usize = 80;

    fn encode(&self, r: &mut [u8]) {
        r[..Self::LEN].fill(0);
        r[0..2].copy_from_slice(&self.queue_size.to_le_bytes());
        r[2..4].copy_from_slice(&self.buf_len.to_le_bytes());
        r[4..8].copy_from_slice(&self.desc_off.to_le_bytes());
        r[8..12].copy_from_slice(&self.avail_off.to_le_bytes());
        r[12..16].copy_from_slice(&self.used_off.to_le_bytes());
        r[16..20].copy_from_slice(&self.buf_off.to_le_bytes());
        r[20..22].copy_from_slice(&self.next_avail.to_le_bytes());
        r[22..24].copy_from_slice(&self.last_used.to_le_bytes());
        r[24..32].copy_from_slice(&self.desc.to_le_bytes());
        r[32..40].copy_from_slice(&self.driver.to_le_bytes());
        r[40..48].copy_from_slice(&self.device.to_le_bytes());
        r[48..56].copy_from_slice(&self.received.to_le_bytes());
        // 0: none, else the sequence number + 1.
        let last = self.last_seq.map_or(0, |s| s + 1);
        r[56..64].copy_from_slice(&last.to_le_bytes());
        r[64..72].copy_from_slice(&self.last_sent_us.to_le_bytes());
    }

    fn decode(r: &[u8]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([r[i], r[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
        let u64_at = |i: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&r[i..i + 8]);
            u64::from_le_bytes(v)
        };
        Self {
            queue_size: u16_at(0),
            buf_len: u16_at(2),
            desc_off: u32_at(4),
            avail_off: u32_at(8),
            used_off: u32_at(12),
            buf_off: u32_at(16),
            next_avail: u16_at(20),
            last_used: u16_at(22),
            desc: u64_at(24),
            driver: u64_at(32),
            device: u64_at(40),
            received: u64_at(48),
            last_seq: u64_at(56).checked_sub(1),
            last_sent_us: u64_at(64),
        }
    }
}

/// The offset in the guest memory of receive slot `slot`.
pub fn rx_slot(slot: u8) -> usize {
    RX_AREA + slot as usize * RX_SLOT_SIZE
}

impl VirtioRecord {
    /// Size of the encoded form.
    pub const LEN: usize = 96;

    fn encode(&self, r: &mut [u8]) {
        r[..Self::LEN].fill(0);
        r[0] = self.slot;
        r[1] = u8::from(self.rx.is_some());
        r[2..8].copy_from_slice(&self.mac);
        r[8..16].copy_from_slice(&self.features.to_le_bytes());
        r[16..18].copy_from_slice(&self.queue.to_le_bytes());
        r[18..20].copy_from_slice(&self.queue_size.to_le_bytes());
        r[20..22].copy_from_slice(&self.msix_config.to_le_bytes());
        r[22..24].copy_from_slice(&self.queue_msix_vector.to_le_bytes());
        r[24..32].copy_from_slice(&self.desc.to_le_bytes());
        r[32..40].copy_from_slice(&self.driver.to_le_bytes());
        r[40..48].copy_from_slice(&self.device.to_le_bytes());
        r[48..50].copy_from_slice(&self.next_avail.to_le_bytes());
        r[50..52].copy_from_slice(&self.last_used.to_le_bytes());
        r[56..64].copy_from_slice(&self.next_seq.to_le_bytes());
    }

    fn decode(r: &[u8]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([r[i], r[i + 1]]);
        let u64_at = |i: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&r[i..i + 8]);
            u64::from_le_bytes(v)
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&r[2..8]);
        Self {
            slot: r[0],
            mac,
            features: u64_at(8),
            queue: u16_at(16),
            queue_size: u16_at(18),
            msix_config: u16_at(20),
            queue_msix_vector: u16_at(22),
            desc: u64_at(24),
            driver: u64_at(32),
            device: u64_at(40),
            next_avail: u16_at(48),
            last_used: u16_at(50),
            next_seq: u64_at(56),
            rx: None,
        }
    }
}

/// The offset in the guest memory of DMA slot `slot`.
pub fn dma_slot(slot: u8) -> usize {
    DMA_AREA + slot as usize * DMA_SLOT_SIZE
}

/// The header at offset 0 of the guest memory.
#[derive(Debug)]
pub struct Header {
    pub iova: u64,
    pub size: u64,
    pub devices: Vec<DeviceRecord>,
}

impl Header {
    /// Writes the header into `out` (at least `HEADER_SIZE` bytes). At most
    /// `MAX_VIRTIO` devices have a virtio-net record, each in its own slot.
    pub fn encode(&self, out: &mut [u8]) {
        out[..HEADER_SIZE].fill(0);
        out[0..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        // At most MAX_DEVICES, checked by the caller.
        out[12..16].copy_from_slice(&(self.devices.len() as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.iova.to_le_bytes());
        out[24..32].copy_from_slice(&self.size.to_le_bytes());
        for (i, d) in self.devices.iter().enumerate() {
            let r = &mut out[FIXED + i * RECORD..FIXED + (i + 1) * RECORD];
            let bdf = d.bdf.as_bytes();
            let n = bdf.len().min(BDF_LEN - 1);
            r[..n].copy_from_slice(&bdf[..n]);
            r[BDF_LEN..BDF_LEN + 8].copy_from_slice(&d.token.to_le_bytes());
            d.identity
                .encode(&mut r[BDF_LEN + 8..BDF_LEN + 8 + Identity::LEN]);
            // The two modes fit in a byte.
            r[RECORD_MODE] = d.mode as u8;
            if let Some(v) = &d.virtio {
                r[RECORD_VIRTIO] = v.slot + 1;
                let at = VIRTIO_TABLE + v.slot as usize * VirtioRecord::LEN;
                v.encode(&mut out[at..at + VirtioRecord::LEN]);
                if let Some(rx) = &v.rx {
                    // Only the first MAX_RX slots have a receive queue.
                    let at = RX_TABLE + v.slot as usize * RxRecord::LEN;
                    rx.encode(&mut out[at..at + RxRecord::LEN]);
                }
            }
        }
    }

    /// Reads the header stage 1 wrote; `EBADMSG` if there is none,
    /// `EPROTONOSUPPORT` if it is of another version.
    pub fn decode(b: &[u8]) -> io::Result<Self> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(v)
        };
        if b.len() < HEADER_SIZE || &b[0..8] != MAGIC {
            return Err(io::Error::from_raw_os_error(libc::EBADMSG));
        }
        if u32_at(8) != VERSION {
            return Err(io::Error::from_raw_os_error(libc::EPROTONOSUPPORT));
        }
        let n = u32_at(12) as usize;
        if n > MAX_DEVICES {
            return Err(io::Error::from_raw_os_error(libc::EBADMSG));
        }
        let mut devices = Vec::new();
        for i in 0..n {
            let r = &b[FIXED + i * RECORD..FIXED + (i + 1) * RECORD];
            let end = r[..BDF_LEN].iter().position(|&c| c == 0).unwrap_or(BDF_LEN);
            let virtio = match r[RECORD_VIRTIO] as usize {
                0 => None,
                s if s <= MAX_VIRTIO => {
                    let at = VIRTIO_TABLE + (s - 1) * VirtioRecord::LEN;
                    let mut v = VirtioRecord::decode(&b[at..at + VirtioRecord::LEN]);
                    if v.slot as usize != s - 1 {
                        return Err(io::Error::from_raw_os_error(libc::EBADMSG));
                    }
                    if b[at + 1] != 0 {
                        if v.slot as usize >= MAX_RX {
                            return Err(io::Error::from_raw_os_error(libc::EBADMSG));
                        }
                        let at = RX_TABLE + v.slot as usize * RxRecord::LEN;
                        v.rx = Some(RxRecord::decode(&b[at..at + RxRecord::LEN]));
                    }
                    Some(v)
                }
                _ => return Err(io::Error::from_raw_os_error(libc::EBADMSG)),
            };
            devices.push(DeviceRecord {
                bdf: String::from_utf8_lossy(&r[..end]).into_owned(),
                token: u64_at(FIXED + i * RECORD + BDF_LEN),
                identity: Identity::decode(&r[BDF_LEN + 8..BDF_LEN + 8 + Identity::LEN]),
                mode: u32::from(r[RECORD_MODE]),
                virtio,
            });
        }
        Ok(Self {
            iova: u64_at(16),
            size: u64_at(24),
            devices,
        })
    }
}

/// A memfd and a shared mapping of all of it in this process.
pub struct GuestMemory {
    file: File,
    addr: NonNull<u8>,
    len: usize,
    /// No-IOMMU mode: the physical address of each page of the DMA area,
    /// which is what the devices must be given. Empty: the devices go
    /// through an IOMMU and take `IOVA + offset`.
    phys: Vec<u64>,
}

impl AsRawFd for GuestMemory {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl GuestMemory {
    /// A new memfd of `len` bytes, mapped.
    pub fn create(name: &CStr, len: usize) -> io::Result<Self> {
        // SAFETY: `name` is a NUL-terminated string; memfd_create() only
        // reads it.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create() returned a new descriptor that nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(len as u64)?;
        Self::map(file, len)
    }

    /// A memfd handed back by LUO, mapped whole.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let file = File::from(fd);
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        Self::map(file, len)
    }

    fn map(file: File, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a new shared mapping of `len` bytes of `file` at an address
        // the kernel picks; no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        Ok(Self {
            file,
            addr,
            len,
            phys: Vec::new(),
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No-IOMMU mode: the physical address of each page of the DMA area
    /// (`DMA_PAGES` of them), from `IOMMU_IOAS_NOIOMMU_GET_PA`.
    pub fn set_phys(&mut self, phys: Vec<u64>) {
        self.phys = phys;
    }

    /// The physical addresses of the DMA area's pages; empty if the devices
    /// go through an IOMMU.
    pub fn phys(&self) -> &[u64] {
        &self.phys
    }

    /// The address a device must be given for offset `off` of the DMA area:
    /// its physical address in no-IOMMU mode, else its IOVA.
    pub fn bus(&self, off: usize) -> u64 {
        if self.phys.is_empty() || off < DMA_AREA {
            return IOVA + off as u64;
        }
        let page = (off - DMA_AREA) / PAGE;
        self.phys
            .get(page)
            .map_or(IOVA + off as u64, |pa| pa + (off % PAGE) as u64)
    }

    /// Writes the physical address table (page `PHYS_TABLE`): a count, then
    /// one address per page of the DMA area.
    pub fn write_phys_table(&mut self) {
        let phys = self.phys.clone();
        let t = &mut self.bytes_mut()[PHYS_TABLE..PHYS_TABLE + PAGE];
        t.fill(0);
        t[0..8].copy_from_slice(&(phys.len() as u64).to_le_bytes());
        for (i, pa) in phys.iter().enumerate() {
            t[8 + 8 * i..16 + 8 * i].copy_from_slice(&pa.to_le_bytes());
        }
    }

    /// The physical address table stage 1 wrote (empty: none).
    pub fn read_phys_table(&self) -> Vec<u64> {
        let t = &self.bytes()[PHYS_TABLE..PHYS_TABLE + PAGE];
        let u64_at = |i: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&t[i..i + 8]);
            u64::from_le_bytes(v)
        };
        let n = (u64_at(0) as usize).min(DMA_PAGES);
        (0..n).map(|i| u64_at(8 + 8 * i)).collect()
    }

    /// The user virtual address of the mapping, as `IOMMU_IOAS_MAP` takes it.
    pub fn user_va(&self) -> u64 {
        self.addr.as_ptr() as u64
    }

    /// Length of the part the devices never write: the header and the
    /// pattern, all of the memory before the DMA area.
    fn cpu_len(&self) -> usize {
        self.len.min(DMA_AREA)
    }

    /// The header and the pattern, to read.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` readable bytes until `self` is dropped.
        // The devices only write the DMA area, above `cpu_len()`, so nothing
        // else writes these bytes while the slice lives.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr(), self.cpu_len()) }
    }

    /// The header and the pattern, to write.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes()`, and `&mut self` makes this the only slice
        // of the mapping in this process.
        unsafe { std::slice::from_raw_parts_mut(self.addr.as_ptr(), self.cpu_len()) }
    }

    /// A pointer to `size` bytes at offset `off` of the DMA area, aligned
    /// to `align`; `ERANGE` if they are not all in it, `EINVAL` if not
    /// aligned.
    fn dma_ptr(&self, off: usize, size: usize, align: usize) -> io::Result<*mut u8> {
        if off < DMA_AREA || off.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(io::Error::from_raw_os_error(libc::ERANGE));
        }
        if !off.is_multiple_of(align) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `off + size <= len`, inside the mapping.
        Ok(unsafe { self.addr.as_ptr().add(off) })
    }

    /// Reads a little-endian `u16` at `off` of the DMA area, with one
    /// volatile access: a device may write it at any time.
    pub fn dma_read16(&self, off: usize) -> io::Result<u16> {
        let p = self.dma_ptr(off, 2, 2)?.cast::<u16>();
        // SAFETY: `p` is aligned and inside the mapping (dma_ptr()); no Rust
        // reference covers the DMA area, so a volatile read races with
        // nothing but the device.
        Ok(u16::from_le(unsafe { p.read_volatile() }))
    }

    /// Reads a little-endian `u32` at `off` of the DMA area (volatile).
    pub fn dma_read32(&self, off: usize) -> io::Result<u32> {
        let p = self.dma_ptr(off, 4, 4)?.cast::<u32>();
        // SAFETY: as in dma_read16().
        Ok(u32::from_le(unsafe { p.read_volatile() }))
    }

    /// Copies `buf.len()` bytes at `off` of the DMA area, byte by byte
    /// (volatile).
    pub fn dma_read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let p = self.dma_ptr(off, buf.len(), 1)?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `p + i` is inside the range dma_ptr() checked.
            *b = unsafe { p.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Writes `val` little-endian at `off` of the DMA area (volatile).
    pub fn dma_write16(&self, off: usize, val: u16) -> io::Result<()> {
        let p = self.dma_ptr(off, 2, 2)?.cast::<u16>();
        // SAFETY: as in dma_read16(); the devices read this memory, the
        // VMM alone writes it.
        unsafe { p.write_volatile(val.to_le()) };
        Ok(())
    }

    /// Writes `val` little-endian at `off` of the DMA area (volatile).
    pub fn dma_write32(&self, off: usize, val: u32) -> io::Result<()> {
        let p = self.dma_ptr(off, 4, 4)?.cast::<u32>();
        // SAFETY: as in dma_write16().
        unsafe { p.write_volatile(val.to_le()) };
        Ok(())
    }

    /// Writes `val` little-endian at `off` of the DMA area (volatile).
    pub fn dma_write64(&self, off: usize, val: u64) -> io::Result<()> {
        let p = self.dma_ptr(off, 8, 8)?.cast::<u64>();
        // SAFETY: as in dma_write16().
        unsafe { p.write_volatile(val.to_le()) };
        Ok(())
    }

    /// Copies `data` to `off` of the DMA area, byte by byte (volatile).
    pub fn dma_write(&self, off: usize, data: &[u8]) -> io::Result<()> {
        let p = self.dma_ptr(off, data.len(), 1)?;
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: `p + i` is inside the range dma_ptr() checked.
            unsafe { p.add(i).write_volatile(b) };
        }
        Ok(())
    }

    /// Zeroes `len` bytes at `off` of the DMA area (volatile).
    pub fn dma_zero(&self, off: usize, len: usize) -> io::Result<()> {
        let p = self.dma_ptr(off, len, 1)?;
        for i in 0..len {
            // SAFETY: `p + i` is inside the range dma_ptr() checked.
            unsafe { p.add(i).write_volatile(0) };
        }
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map()`, which no slice
        // outlives (they borrow `self`).
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}
