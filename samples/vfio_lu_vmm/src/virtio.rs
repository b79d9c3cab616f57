// SPDX-License-Identifier: GPL-2.0
//! A minimal modern virtio-pci (virtio 1.x) driver for a virtio-net device's
//! transmit queue (queue 1) and, with `--rx`, its receive queue (queue 0;
//! the rings in memory are `rx.rs`'s), over its VFIO device file: the device
//! is set up and driven from userspace, as a VMM's guest would drive it, and
//! resumed after a live update.
//!
//! Everything goes through the device file with `pread`/`pwrite` (no mmap):
//! the configuration space through the VFIO config region (the capability
//! list, the Command register), the virtio structures through the BAR regions
//! the vendor capabilities name. The rings and frame buffers are in the
//! guest memory's DMA area (see `memory.rs`), which the device reaches at
//! `memory::IOVA + offset` through the IOMMU: the driver negotiates
//! `VIRTIO_F_ACCESS_PLATFORM`, without which the device (QEMU:
//! `iommu_platform=off`) would take those IOVAs as physical addresses. In
//! VFIO's no-IOMMU mode there is no translation: the device is given the
//! physical addresses of the memory (`GuestMemory::bus`) and
//! `VIRTIO_F_ACCESS_PLATFORM` is not needed. There are no interrupts: the
//! driver polls the used rings.
//!
//! A frame is a zeroed 12-byte `virtio_net_hdr_v1` followed by an Ethernet
//! frame: broadcast destination, the device's MAC as source (from its device
//! configuration; a fixed local one if it offers none), EtherType
//! [`ETHERTYPE`], then [`FRAME_MAGIC`] and a little-endian `u64` sequence
//! number, padded to the 60-byte minimum. The host side of the test
//! (`scripts/frames.py`) checks that every sequence number arrives once.
//! A marker frame has [`MARKER_MAGIC`] and a kind instead: it tells the
//! host's sender of the receive side when to start, and when the VMM leaves
//! for the kexec and is back.

use std::io;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use crate::memory::{self, GuestMemory, VirtioRecord};
use crate::rx::{self, RX_QUEUE};
use crate::vfio::{
    Device, Region, PCI_CAPABILITY_LIST, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY,
    PCI_STATUS, PCI_STATUS_CAP_LIST,
};

/// PCI IDs of virtio-net: the vendor, the modern (virtio 1.x only) device
/// and the transitional one (QEMU gives a device behind a PCIe port the
/// modern ID).
pub const VENDOR: u16 = 0x1af4;
pub const DEVICE_NET: u16 = 0x1041;
pub const DEVICE_NET_TRANSITIONAL: u16 = 0x1000;

/// Device status bits.
pub const ACKNOWLEDGE: u8 = 1;
pub const DRIVER: u8 = 2;
pub const DRIVER_OK: u8 = 4;
pub const FEATURES_OK: u8 = 8;
pub const NEEDS_RESET: u8 = 0x40;
pub const FAILED: u8 = 0x80;

/// The feature bits the driver takes: virtio 1.x, and DMA through the
/// platform's IOMMU.
pub const F_VERSION_1: u64 = 1 << 32;
pub const F_ACCESS_PLATFORM: u64 = 1 << 33;
/// virtio-net offers its MAC address in its device configuration.
const F_NET_MAC: u64 = 1 << 5;

/// The transmit queue of virtio-net's first queue pair.
pub const TX_QUEUE: u16 = 1;
/// The queue size the driver asks for (less if the device's maximum is).
pub const QUEUE_SIZE: u16 = 64;
/// The MSI-X vectors the driver writes, for a test to read back. MSI-X
/// itself stays off: the driver polls.
pub const MSIX_CONFIG_VECTOR: u16 = 0;
pub const TX_MSIX_VECTOR: u16 = 1;
pub const RX_MSIX_VECTOR: u16 = 2;
/// What the device says of a vector it did not accept.
pub const NO_VECTOR: u16 = 0xffff;

/// The frames' EtherType (IEEE 802 local experimental 1) and the magic that
/// starts their payload.
pub const ETHERTYPE: u16 = 0x88b5;
pub const FRAME_MAGIC: &[u8; 8] = b"VFIOLUTX";
/// The magic of a marker frame (`send_marker`): the VMM tells the host's
/// sender where it is (`MARKER_*` in the sequence number's place).
pub const MARKER_MAGIC: &[u8; 8] = b"VFIOLUMK";
/// The receive queue is set up: the host may start sending.
pub const MARKER_READY: u64 = 0;
/// Stage 1's last action before reboot(LINUX_REBOOT_CMD_KEXEC).
pub const MARKER_LEAVE: u64 = 1;
/// Stage 2: the device is back in the VMM's hands (sent as early as the
/// device can transmit: after its bind, and its resume or re-initialisation).
pub const MARKER_BACK: u64 = 2;
/// Source MAC of the frames when the device has none to offer
/// (locally administered).
const FALLBACK_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// `virtio_net_hdr_v1`, all zero: no offloads.
const NET_HDR_LEN: usize = 12;
/// Ethernet header, magic, sequence number, padded to the minimum frame.
const FRAME_LEN: usize = 60;

/// Layout of a DMA slot: the three rings of a queue of at most
/// `QUEUE_SIZE` entries, then one buffer per entry.
const DESC_OFF: usize = 0;
const AVAIL_OFF: usize = 1024;
const USED_OFF: usize = 2048;
const BUF_OFF: usize = 4096;
const BUF_LEN: usize = 128;
const _: () = assert!(QUEUE_SIZE as usize * 16 <= AVAIL_OFF - DESC_OFF);
const _: () = assert!(6 + 2 * QUEUE_SIZE as usize <= USED_OFF - AVAIL_OFF);
const _: () = assert!(6 + 8 * QUEUE_SIZE as usize <= BUF_OFF - USED_OFF);
const _: () = assert!(BUF_OFF + QUEUE_SIZE as usize * BUF_LEN <= memory::DMA_SLOT_SIZE);
const _: () = assert!(NET_HDR_LEN + FRAME_LEN <= BUF_LEN);

/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver polls.
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// How long the device may take to use what it was given (TCG is slow).
const USED_TIMEOUT: Duration = Duration::from_secs(10);

/// Vendor capability (`struct virtio_pci_cap`) types.
const PCI_CAP_ID_VNDR: u8 = 0x09;
const CAP_COMMON_CFG: u8 = 1;
const CAP_NOTIFY_CFG: u8 = 2;
const CAP_DEVICE_CFG: u8 = 4;

/// `struct virtio_pci_common_cfg`.
const COMMON_DEVICE_FEATURE_SELECT: u64 = 0x00;
const COMMON_DEVICE_FEATURE: u64 = 0x04;
const COMMON_DRIVER_FEATURE_SELECT: u64 = 0x08;
const COMMON_DRIVER_FEATURE: u64 = 0x0c;
const COMMON_MSIX_CONFIG: u64 = 0x10;
const COMMON_NUM_QUEUES: u64 = 0x12;
const COMMON_DEVICE_STATUS: u64 = 0x14;
const COMMON_QUEUE_SELECT: u64 = 0x16;
const COMMON_QUEUE_SIZE: u64 = 0x18;
const COMMON_QUEUE_MSIX_VECTOR: u64 = 0x1a;
const COMMON_QUEUE_ENABLE: u64 = 0x1c;
const COMMON_QUEUE_NOTIFY_OFF: u64 = 0x1e;
const COMMON_QUEUE_DESC: u64 = 0x20;
const COMMON_QUEUE_DRIVER: u64 = 0x28;
const COMMON_QUEUE_DEVICE: u64 = 0x30;
const COMMON_LEN: u64 = 0x38;

/// A failed step of the driver and its errno.
#[derive(Debug)]
pub struct Error {
    pub what: String,
    pub errno: i32,
}

impl Error {
    fn new(what: impl Into<String>, errno: i32) -> Self {
        Self {
            what: what.into(),
            errno,
        }
    }
}

type Result<T> = std::result::Result<T, Error>;

/// `map_err` adapter: the step `what` failed with an `io::Error`.
fn io_failed(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |e| Error::new(what, e.raw_os_error().unwrap_or(libc::EIO))
}

/// A virtio structure: where a vendor capability puts it.
#[derive(Clone, Copy, Debug)]
pub struct Location {
    pub region: Region,
    pub offset: u64,
    pub length: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BAR {} at {:#x} ({:#x} bytes)",
            self.region.index, self.offset, self.length
        )
    }
}

/// The transmit queue as the device has it: its size and where its
/// notifications go.
#[derive(Clone, Copy, Debug)]
pub struct TxQueue {
    /// Offset of its DMA slot in the guest memory.
    slot_off: usize,
    size: u16,
    /// Offset in the notify structure's region.
    notify: u64,
}

/// What the common configuration says of the device and its transmit queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommonState {
    pub status: u8,
    pub features: u64,
    pub msix_config: u16,
    pub queue_size: u16,
    pub queue_msix_vector: u16,
    pub queue_enable: u16,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    /// The receive queue (queue 0).
    pub rx_size: u16,
    pub rx_msix_vector: u16,
    pub rx_enable: u16,
    pub rx_desc: u64,
    pub rx_driver: u64,
    pub rx_device: u64,
}

/// A virtio-net device driven through its VFIO device file.
pub struct VirtioNet<'a> {
    dev: &'a Device,
    config: Region,
    pub common: Location,
    pub notify: Location,
    pub notify_multiplier: u32,
    pub device_cfg: Option<Location>,
}

impl<'a> VirtioNet<'a> {
    /// Finds the virtio structures by walking the capability list of `dev`'s
    /// configuration space (vfio-pci passes vendor capabilities through);
    /// `ENODEV` if there is no common or notify structure (not a modern
    /// virtio device).
    pub fn probe(dev: &'a Device) -> Result<Self> {
        let config = dev
            .config_region()
            .map_err(io_failed("VFIO_DEVICE_GET_REGION_INFO (config)"))?;
        let read = |off: u64, buf: &mut [u8]| {
            dev.read_region(&config, off, buf)
                .map_err(io_failed(format!("reading config space at {off:#x}")))
        };
        let mut b2 = [0u8; 2];
        read(PCI_STATUS, &mut b2)?;
        if u16::from_le_bytes(b2) & PCI_STATUS_CAP_LIST == 0 {
            return Err(Error::new("no capability list", libc::ENODEV));
        }
        let mut b1 = [0u8; 1];
        read(PCI_CAPABILITY_LIST, &mut b1)?;
        let (mut common, mut notify, mut device_cfg) = (None, None, None);
        let mut multiplier = 0;
        let mut pos = b1[0] & !3;
        // At most 48 capabilities fit in the 192 bytes after the header.
        for _ in 0..48 {
            if pos < 0x40 {
                break;
            }
            let mut cap = [0u8; 20];
            read(u64::from(pos), &mut cap)?;
            let next = cap[1] & !3;
            if cap[0] == PCI_CAP_ID_VNDR && cap[2] >= 16 {
                let (cfg_type, bar) = (cap[3], cap[4]);
                let offset = u32::from_le_bytes([cap[8], cap[9], cap[10], cap[11]]);
                let length = u32::from_le_bytes([cap[12], cap[13], cap[14], cap[15]]);
                // The first structure of each type is the one to use
                // (virtio 1.x, 4.1.4), and only those in a BAR (0 to 5).
                let slot = match cfg_type {
                    CAP_COMMON_CFG => Some(&mut common),
                    CAP_NOTIFY_CFG => Some(&mut notify),
                    CAP_DEVICE_CFG => Some(&mut device_cfg),
                    _ => None,
                };
                if let Some(slot) = slot.filter(|s| s.is_none() && bar < 6) {
                    let region = dev.region(u32::from(bar)).map_err(io_failed(format!(
                        "VFIO_DEVICE_GET_REGION_INFO (BAR {bar})"
                    )))?;
                    Device::check_rw(&region, u64::from(offset), u64::from(length)).map_err(
                        io_failed(format!(
                            "virtio capability type {cfg_type}: BAR {bar} at {offset:#x}, \
                             {length:#x} bytes: not a readable and writeable part of the region"
                        )),
                    )?;
                    *slot = Some(Location {
                        region,
                        offset: u64::from(offset),
                        length,
                    });
                    if cfg_type == CAP_NOTIFY_CFG && cap[2] >= 20 {
                        multiplier = u32::from_le_bytes([cap[16], cap[17], cap[18], cap[19]]);
                    }
                }
            }
            pos = next;
        }
        let (Some(common), Some(notify)) = (common, notify) else {
            return Err(Error::new(
                "no virtio common or notify capability: not a modern virtio-pci device",
                libc::ENODEV,
            ));
        };
        if u64::from(common.length) < COMMON_LEN {
            return Err(Error::new(
                format!("common config of {:#x} bytes, too short", common.length),
                libc::ENODEV,
            ));
        }
        Ok(Self {
            dev,
            config,
            common,
            notify,
            notify_multiplier: multiplier,
            device_cfg,
        })
    }

    fn common_read<const N: usize>(&self, off: u64, name: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.dev
            .read_region(&self.common.region, self.common.offset + off, &mut b)
            .map_err(io_failed(format!("reading common config {name}")))?;
        Ok(b)
    }

    fn common_write(&self, off: u64, name: &str, b: &[u8]) -> Result<()> {
        self.dev
            .write_region(&self.common.region, self.common.offset + off, b)
            .map_err(io_failed(format!("writing common config {name}")))
    }

    fn read8(&self, off: u64, name: &str) -> Result<u8> {
        Ok(self.common_read::<1>(off, name)?[0])
    }

    fn read16(&self, off: u64, name: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.common_read(off, name)?))
    }

    fn read32(&self, off: u64, name: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.common_read(off, name)?))
    }

    /// A 64-bit field as two 32-bit reads, low half first (virtio 1.x,
    /// 4.1.3.1).
    fn read64(&self, off: u64, name: &str) -> Result<u64> {
        let lo = self.read32(off, name)?;
        let hi = self.read32(off + 4, name)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    fn write8(&self, off: u64, name: &str, v: u8) -> Result<()> {
        self.common_write(off, name, &[v])
    }

    fn write16(&self, off: u64, name: &str, v: u16) -> Result<()> {
        self.common_write(off, name, &v.to_le_bytes())
    }

    fn write32(&self, off: u64, name: &str, v: u32) -> Result<()> {
        self.common_write(off, name, &v.to_le_bytes())
    }

    fn write64(&self, off: u64, name: &str, v: u64) -> Result<()> {
        self.write32(off, name, v as u32)?;
        self.write32(off + 4, name, (v >> 32) as u32)
    }

    /// The device status register.
    pub fn status(&self) -> Result<u8> {
        self.read8(COMMON_DEVICE_STATUS, "device_status")
    }

    fn set_status(&self, status: u8) -> Result<()> {
        self.write8(COMMON_DEVICE_STATUS, "device_status", status)
    }

    /// Sets `bits` in the device status, and checks that the device kept
    /// them and did not fail; returns the new status.
    fn add_status(&self, bits: u8, name: &str) -> Result<u8> {
        let status = self.status()? | bits;
        self.set_status(status)?;
        let now = self.status()?;
        if now & bits != bits || now & (NEEDS_RESET | FAILED) != 0 {
            return Err(Error::new(
                format!("device status {now:#04x} after {name} was set (wrote {status:#04x})"),
                libc::EIO,
            ));
        }
        Ok(now)
    }

    /// Resets the device: status 0, then waits until it reads 0.
    pub fn reset(&self) -> Result<()> {
        self.set_status(0)?;
        let start = Instant::now();
        while self.status()? != 0 {
            if start.elapsed() > Duration::from_secs(1) {
                return Err(Error::new(
                    "device status still not 0 a second after the reset",
                    libc::ETIMEDOUT,
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// The 64 feature bits the device offers.
    pub fn device_features(&self) -> Result<u64> {
        let mut features = 0;
        for word in 0..2u32 {
            self.write32(COMMON_DEVICE_FEATURE_SELECT, "device_feature_select", word)?;
            let bits = self.read32(COMMON_DEVICE_FEATURE, "device_feature")?;
            features |= u64::from(bits) << (32 * word);
        }
        Ok(features)
    }

    /// The feature bits the driver wrote, as the device has them.
    pub fn driver_features(&self) -> Result<u64> {
        let mut features = 0;
        for word in 0..2u32 {
            self.write32(COMMON_DRIVER_FEATURE_SELECT, "driver_feature_select", word)?;
            let bits = self.read32(COMMON_DRIVER_FEATURE, "driver_feature")?;
            features |= u64::from(bits) << (32 * word);
        }
        Ok(features)
    }

    fn set_driver_features(&self, features: u64) -> Result<()> {
        for word in 0..2u32 {
            self.write32(COMMON_DRIVER_FEATURE_SELECT, "driver_feature_select", word)?;
            self.write32(
                COMMON_DRIVER_FEATURE,
                "driver_feature",
                (features >> (32 * word)) as u32,
            )?;
        }
        Ok(())
    }

    /// The MAC address in the device configuration (virtio-net's first six
    /// bytes), if the device offers one.
    fn mac(&self, offered: u64) -> Result<Option<[u8; 6]>> {
        let Some(cfg) = self.device_cfg.filter(|c| c.length >= 6) else {
            return Ok(None);
        };
        if offered & F_NET_MAC == 0 {
            return Ok(None);
        }
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            let mut one = [0u8; 1];
            self.dev
                .read_region(&cfg.region, cfg.offset + i as u64, &mut one)
                .map_err(io_failed("reading the MAC address in the device config"))?;
            *b = one[0];
        }
        Ok(Some(mac))
    }

    /// The Command register.
    pub fn command(&self) -> Result<u16> {
        self.dev
            .config_read16(&self.config, PCI_COMMAND)
            .map_err(io_failed("reading the Command register"))
    }

    /// Turns Memory Space and Bus Master on in the Command register; returns
    /// its new value. Without Bus Master, the device does no DMA.
    pub fn bus_master_on(&self) -> Result<u16> {
        let cmd = self.command()? | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        self.dev
            .config_write16(&self.config, PCI_COMMAND, cmd)
            .map_err(io_failed("writing the Command register (Bus Master on)"))?;
        let now = self.command()?;
        if now & PCI_COMMAND_MASTER == 0 {
            return Err(Error::new(
                format!("Command register {now:#06x}: Bus Master did not stay on"),
                libc::EIO,
            ));
        }
        Ok(now)
    }

    /// Reads the common configuration: status, negotiated features, MSI-X
    /// vectors and the transmit queue's registers.
    pub fn common_state(&self) -> Result<CommonState> {
        let status = self.status()?;
        let features = self.driver_features()?;
        let msix_config = self.read16(COMMON_MSIX_CONFIG, "msix_config")?;
        self.write16(COMMON_QUEUE_SELECT, "queue_select", TX_QUEUE)?;
        Ok(CommonState {
            status,
            features,
            msix_config,
            queue_size: self.read16(COMMON_QUEUE_SIZE, "queue_size")?,
            queue_msix_vector: self.read16(COMMON_QUEUE_MSIX_VECTOR, "queue_msix_vector")?,
            queue_enable: self.read16(COMMON_QUEUE_ENABLE, "queue_enable")?,
            desc: self.read64(COMMON_QUEUE_DESC, "queue_desc")?,
            driver: self.read64(COMMON_QUEUE_DRIVER, "queue_driver")?,
            device: self.read64(COMMON_QUEUE_DEVICE, "queue_device")?,
            rx_size: {
                self.write16(COMMON_QUEUE_SELECT, "queue_select", RX_QUEUE)?;
                self.read16(COMMON_QUEUE_SIZE, "queue_size")?
            },
            rx_msix_vector: self.read16(COMMON_QUEUE_MSIX_VECTOR, "queue_msix_vector")?,
            rx_enable: self.read16(COMMON_QUEUE_ENABLE, "queue_enable")?,
            rx_desc: self.read64(COMMON_QUEUE_DESC, "queue_desc")?,
            rx_driver: self.read64(COMMON_QUEUE_DRIVER, "queue_driver")?,
            rx_device: self.read64(COMMON_QUEUE_DEVICE, "queue_device")?,
        })
    }

    /// Where a notification of queue `q` goes (offset in the notify
    /// structure's region).
    fn queue_notify(&self, q: u16) -> Result<u64> {
        self.write16(COMMON_QUEUE_SELECT, "queue_select", q)?;
        let notify_off = self.read16(COMMON_QUEUE_NOTIFY_OFF, "queue_notify_off")?;
        let notify = u64::from(notify_off) * u64::from(self.notify_multiplier);
        if notify + 2 > u64::from(self.notify.length) {
            return Err(Error::new(
                format!(
                    "queue {q}: notify offset {notify:#x} outside the notify structure ({:#x} bytes)",
                    self.notify.length
                ),
                libc::ERANGE,
            ));
        }
        Ok(self.notify.offset + notify)
    }

    /// The receive queue's notification address.
    pub fn rx_notify(&self) -> Result<u64> {
        self.queue_notify(RX_QUEUE)
    }

    /// Tells the device that the receive queue has new buffers.
    pub fn kick_rx(&self, notify: u64) -> Result<()> {
        self.dev
            .write_region(&self.notify.region, notify, &RX_QUEUE.to_le_bytes())
            .map_err(io_failed(format!(
                "notifying queue {RX_QUEUE} (notify region offset {notify:#x})"
            )))
    }

    /// Sets up the receive queue (queue 0) in receive slot `slot` of `mem`
    /// (before DRIVER_OK): fresh rings, every buffer available, MSI-X vector
    /// `RX_MSIX_VECTOR` written (MSI-X stays off), enabled.
    fn init_rx(&self, mem: &GuestMemory, slot: u8) -> Result<memory::RxRecord> {
        self.write16(COMMON_QUEUE_SELECT, "queue_select", RX_QUEUE)?;
        let max = self.read16(COMMON_QUEUE_SIZE, "queue_size")?;
        let rec = rx::setup(mem, slot, max)
            .map_err(io_failed(format!(
                "setting up the rings of queue {RX_QUEUE}"
            )))?
            .ok_or_else(|| {
                Error::new(
                    format!(
                        "queue {RX_QUEUE}: no layout fits (device maximum {max}; the rings need \
                         physically contiguous pages and at least 256 entries)"
                    ),
                    libc::ENOSPC,
                )
            })?;
        self.write16(COMMON_QUEUE_SIZE, "queue_size", rec.queue_size)?;
        self.write16(
            COMMON_QUEUE_MSIX_VECTOR,
            "queue_msix_vector",
            RX_MSIX_VECTOR,
        )?;
        self.write64(COMMON_QUEUE_DESC, "queue_desc", rec.desc)?;
        self.write64(COMMON_QUEUE_DRIVER, "queue_driver", rec.driver)?;
        self.write64(COMMON_QUEUE_DEVICE, "queue_device", rec.device)?;
        self.write16(COMMON_QUEUE_ENABLE, "queue_enable", 1)?;
        Ok(rec)
    }

    /// The transmit queue's notification address: notify structure +
    /// `queue_notify_off` x `notify_off_multiplier`.
    fn tx_notify(&self, slot_off: usize, size: u16) -> Result<TxQueue> {
        Ok(TxQueue {
            slot_off,
            size,
            notify: self.queue_notify(TX_QUEUE)?,
        })
    }

    /// Initialises the device from reset, as a guest driver does, with its
    /// transmit queue in DMA slot `slot` of `mem` (fresh, zeroed rings), and
    /// returns its record (ring indices 0, sequence numbers from
    /// `next_seq`) with the queue. `say` gets one line per step.
    ///
    /// `Ok(None)`: the device does not offer `VIRTIO_F_ACCESS_PLATFORM`, so
    /// its DMA would bypass the IOMMU; it is reset and left alone.
    pub fn init(
        &self,
        mem: &GuestMemory,
        slot: u8,
        next_seq: u64,
        with_rx: bool,
        say: &mut dyn FnMut(String),
    ) -> Result<Option<(VirtioRecord, TxQueue)>> {
        self.reset()?;
        say(format!(
            "virtio-net: reset (device status 0); common config in {}, notify in {} \
             (multiplier {}){}",
            self.common,
            self.notify,
            self.notify_multiplier,
            self.device_cfg
                .map(|d| format!(", device config in {d}"))
                .unwrap_or_default()
        ));
        self.add_status(ACKNOWLEDGE, "ACKNOWLEDGE")?;
        self.add_status(DRIVER, "DRIVER")?;
        let offered = self.device_features()?;
        // Without an IOMMU (physical addresses) the device need not go
        // through the platform's DMA translation: there is none.
        let phys = !mem.phys().is_empty();
        let wanted = F_VERSION_1 | (offered & F_ACCESS_PLATFORM);
        if offered & F_VERSION_1 == 0 {
            return Err(Error::new(
                format!(
                    "device features {offered:#x} lack VIRTIO_F_VERSION_1: not a virtio 1.x device"
                ),
                libc::EOPNOTSUPP,
            ));
        }
        if offered & F_ACCESS_PLATFORM == 0 && !phys {
            say(format!(
                "virtio-net: device features {offered:#x} lack VIRTIO_F_ACCESS_PLATFORM \
                 (QEMU: iommu_platform=off): its DMA would bypass the IOMMU, not driven"
            ));
            self.reset()?;
            return Ok(None);
        }
        let mac = self.mac(offered)?;
        self.set_driver_features(wanted)?;
        let status = self.add_status(FEATURES_OK, "FEATURES_OK")?;
        say(format!(
            "virtio-net: ACKNOWLEDGE, DRIVER; device offers features {offered:#x}, driver \
             takes {} ({wanted:#x}); FEATURES_OK kept (device status {status:#04x})",
            if wanted & F_ACCESS_PLATFORM != 0 {
                "VERSION_1 | ACCESS_PLATFORM"
            } else {
                "VERSION_1 (no IOMMU: physical addresses)"
            }
        ));

        let num_queues = self.read16(COMMON_NUM_QUEUES, "num_queues")?;
        if num_queues <= TX_QUEUE {
            return Err(Error::new(
                format!("{num_queues} queue(s): no transmit queue {TX_QUEUE}"),
                libc::ENODEV,
            ));
        }
        self.write16(COMMON_MSIX_CONFIG, "msix_config", MSIX_CONFIG_VECTOR)?;
        let msix_config = self.read16(COMMON_MSIX_CONFIG, "msix_config")?;
        self.write16(COMMON_QUEUE_SELECT, "queue_select", TX_QUEUE)?;
        let max = self.read16(COMMON_QUEUE_SIZE, "queue_size")?;
        if max == 0 {
            return Err(Error::new(
                format!("queue {TX_QUEUE} is not available (size 0)"),
                libc::ENODEV,
            ));
        }
        let size = QUEUE_SIZE.min(max);
        if !size.is_power_of_two() {
            return Err(Error::new(
                format!("queue {TX_QUEUE}: maximum size {max}, not a power of two"),
                libc::EINVAL,
            ));
        }
        let slot_off = memory::dma_slot(slot);
        mem.dma_zero(slot_off, memory::DMA_SLOT_SIZE)
            .map_err(io_failed(format!("zeroing DMA slot {slot}")))?;
        mem.dma_write16(slot_off + AVAIL_OFF, AVAIL_F_NO_INTERRUPT)
            .map_err(io_failed("writing avail.flags"))?;
        let iova = |off: usize| mem.bus(slot_off + off);
        let (desc, driver, device) = (iova(DESC_OFF), iova(AVAIL_OFF), iova(USED_OFF));
        self.write16(COMMON_QUEUE_SIZE, "queue_size", size)?;
        self.write16(
            COMMON_QUEUE_MSIX_VECTOR,
            "queue_msix_vector",
            TX_MSIX_VECTOR,
        )?;
        let queue_msix_vector = self.read16(COMMON_QUEUE_MSIX_VECTOR, "queue_msix_vector")?;
        self.write64(COMMON_QUEUE_DESC, "queue_desc", desc)?;
        self.write64(COMMON_QUEUE_DRIVER, "queue_driver", driver)?;
        self.write64(COMMON_QUEUE_DEVICE, "queue_device", device)?;
        self.write16(COMMON_QUEUE_ENABLE, "queue_enable", 1)?;
        let queue = self.tx_notify(slot_off, size)?;
        let status = self.status()?;
        if status & (NEEDS_RESET | FAILED) != 0 {
            return Err(Error::new(
                format!("device status {status:#04x} after queue {TX_QUEUE} was enabled"),
                libc::EIO,
            ));
        }
        let kind = if phys { "physical address" } else { "IOVA" };
        say(format!(
            "virtio-net: TX queue {TX_QUEUE}: size {size} (device maximum {max}), descriptors \
             at {kind} {desc:#x}, driver ring {driver:#x}, device ring {device:#x}; MSI-X vectors \
             written {MSIX_CONFIG_VECTOR}/{TX_MSIX_VECTOR}, read back {}/{} (config/queue; \
             MSI-X stays off, the driver polls); enabled",
            vector_text(msix_config),
            vector_text(queue_msix_vector)
        ));
        let rx = if with_rx {
            let r = self.init_rx(mem, slot)?;
            let max = {
                self.write16(COMMON_QUEUE_SELECT, "queue_select", RX_QUEUE)?;
                self.read16(COMMON_QUEUE_SIZE, "queue_size")?
            };
            say(format!(
                "virtio-net: RX queue {RX_QUEUE}: size {} ({} buffers of {} bytes, all \
                 available), descriptors at {kind} {:#x}, driver ring {:#x}, device ring {:#x} \
                 (each physically contiguous), buffers from offset {:#x}; MSI-X vector \
                 {RX_MSIX_VECTOR} written (MSI-X stays off); enabled{}",
                r.queue_size,
                r.queue_size,
                r.buf_len,
                r.desc,
                r.driver,
                r.device,
                r.buf_off,
                if max == r.queue_size {
                    String::new()
                } else {
                    format!(" (queue size register now {max})")
                }
            ));
            Some(r)
        } else {
            None
        };
        // Bus Master before DRIVER_OK: without it the device does no DMA
        // (QEMU accepts the queue set-up above with it off).
        let cmd = self.bus_master_on()?;
        say(format!("Bus Master on (Command register {cmd:#06x})"));
        let status = self.add_status(DRIVER_OK, "DRIVER_OK")?;
        let mac = mac.unwrap_or(FALLBACK_MAC);
        say(format!(
            "virtio-net: DRIVER_OK (device status {status:#04x}); frames from MAC {}",
            mac_text(&mac)
        ));
        Ok(Some((
            VirtioRecord {
                slot,
                mac,
                features: wanted,
                queue: TX_QUEUE,
                queue_size: size,
                desc,
                driver,
                device,
                msix_config,
                queue_msix_vector,
                next_avail: 0,
                last_used: 0,
                next_seq,
                rx,
            },
            queue,
        )))
    }

    /// The differences between the device's common configuration and
    /// what stage 1 recorded, device status aside (the caller judges it);
    /// empty if none.
    pub fn compare(&self, state: &CommonState, rec: &VirtioRecord) -> Vec<String> {
        let mut diffs = Vec::new();
        let mut check = |name: &str, now: u64, then: u64| {
            if now != then {
                diffs.push(format!("{name} {now:#x} (stage 1: {then:#x})"));
            }
        };
        check("features", state.features, rec.features);
        check(
            "msix_config",
            u64::from(state.msix_config),
            u64::from(rec.msix_config),
        );
        check(
            "queue_size",
            u64::from(state.queue_size),
            u64::from(rec.queue_size),
        );
        check(
            "queue_msix_vector",
            u64::from(state.queue_msix_vector),
            u64::from(rec.queue_msix_vector),
        );
        check("queue_enable", u64::from(state.queue_enable), 1);
        check("queue_desc", state.desc, rec.desc);
        check("queue_driver", state.driver, rec.driver);
        check("queue_device", state.device, rec.device);
        if let Some(rx) = &rec.rx {
            check(
                "rx queue_size",
                u64::from(state.rx_size),
                u64::from(rx.queue_size),
            );
            check(
                "rx queue_msix_vector",
                u64::from(state.rx_msix_vector),
                u64::from(RX_MSIX_VECTOR),
            );
            check("rx queue_enable", u64::from(state.rx_enable), 1);
            check("rx queue_desc", state.rx_desc, rx.desc);
            check("rx queue_driver", state.rx_driver, rx.driver);
            check("rx queue_device", state.rx_device, rx.device);
        }
        diffs
    }

    /// A kept device's transmit queue, as stage 1 left it in `mem`; checks
    /// that the rings' indices are those stage 1 recorded.
    pub fn resume_queue(&self, mem: &GuestMemory, rec: &VirtioRecord) -> Result<TxQueue> {
        let slot_off = memory::dma_slot(rec.slot);
        let avail = mem
            .dma_read16(slot_off + AVAIL_OFF + 2)
            .map_err(io_failed("reading avail.idx"))?;
        let used = mem
            .dma_read16(slot_off + USED_OFF + 2)
            .map_err(io_failed("reading used.idx"))?;
        if avail != rec.next_avail || used != rec.last_used {
            return Err(Error::new(
                format!(
                    "rings in the guest memory: avail.idx {avail}, used.idx {used}; stage 1 \
                     recorded {} and {}",
                    rec.next_avail, rec.last_used
                ),
                libc::ESTALE,
            ));
        }
        self.tx_notify(slot_off, rec.queue_size)
    }

    /// Sets DRIVER_OK again on a kept device (QEMU drops it when Bus Master
    /// is cleared); returns the new status.
    pub fn driver_ok(&self) -> Result<u8> {
        self.add_status(DRIVER_OK, "DRIVER_OK")
    }

    /// Transmits `count` frames on `queue`, with the sequence numbers from
    /// `rec.next_seq` on, then waits until the device has used every buffer
    /// it was given (`used.idx == avail.idx`). `rec` follows the ring indices
    /// and the sequence number.
    pub fn send(
        &self,
        mem: &GuestMemory,
        queue: &TxQueue,
        rec: &mut VirtioRecord,
        count: u64,
    ) -> Result<()> {
        self.transmit(mem, queue, rec, count, None)
    }

    /// Transmits one marker frame on `queue` (magic [`MARKER_MAGIC`], then
    /// `kind` and `info` as little-endian `u64`s) and waits until the device
    /// has used it: the host has it when this returns. Sequence numbers are
    /// not touched.
    pub fn send_marker(
        &self,
        mem: &GuestMemory,
        queue: &TxQueue,
        rec: &mut VirtioRecord,
        kind: u64,
        info: u64,
    ) -> Result<()> {
        self.transmit(mem, queue, rec, 1, Some((kind, info)))
    }

    fn transmit(
        &self,
        mem: &GuestMemory,
        queue: &TxQueue,
        rec: &mut VirtioRecord,
        count: u64,
        marker: Option<(u64, u64)>,
    ) -> Result<()> {
        for _ in 0..count {
            // A full ring: wait for the device to use the oldest buffer.
            if rec.next_avail.wrapping_sub(rec.last_used) >= queue.size {
                self.wait_used(mem, queue, rec, rec.next_avail.wrapping_sub(queue.size - 1))?;
            }
            let entry = rec.next_avail % queue.size;
            let buf = queue.slot_off + BUF_OFF + entry as usize * BUF_LEN;
            let mut frame = [0u8; NET_HDR_LEN + FRAME_LEN];
            let eth = &mut frame[NET_HDR_LEN..];
            eth[0..6].fill(0xff);
            eth[6..12].copy_from_slice(&rec.mac);
            eth[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
            match marker {
                None => {
                    eth[14..22].copy_from_slice(FRAME_MAGIC);
                    eth[22..30].copy_from_slice(&rec.next_seq.to_le_bytes());
                }
                Some((kind, info)) => {
                    eth[14..22].copy_from_slice(MARKER_MAGIC);
                    eth[22..30].copy_from_slice(&kind.to_le_bytes());
                    eth[30..38].copy_from_slice(&info.to_le_bytes());
                }
            }
            let ring_err = io_failed("writing the TX rings");
            let desc = queue.slot_off + DESC_OFF + entry as usize * 16;
            mem.dma_write(buf, &frame)
                .and_then(|()| mem.dma_write64(desc, mem.bus(buf)))
                .and_then(|()| mem.dma_write32(desc + 8, frame.len() as u32))
                // flags 0 (device-readable, no next), next 0.
                .and_then(|()| mem.dma_write32(desc + 12, 0))
                .and_then(|()| {
                    mem.dma_write16(queue.slot_off + AVAIL_OFF + 4 + 2 * entry as usize, entry)
                })
                .map_err(ring_err)?;
            // The descriptor and the ring entry before the index that
            // publishes them.
            fence(Ordering::SeqCst);
            rec.next_avail = rec.next_avail.wrapping_add(1);
            mem.dma_write16(queue.slot_off + AVAIL_OFF + 2, rec.next_avail)
                .map_err(io_failed("writing avail.idx"))?;
            // The index before the notification.
            fence(Ordering::SeqCst);
            self.dev
                .write_region(&self.notify.region, queue.notify, &TX_QUEUE.to_le_bytes())
                .map_err(io_failed(format!(
                    "notifying queue {TX_QUEUE} (notify region offset {:#x})",
                    queue.notify
                )))?;
            if marker.is_none() {
                rec.next_seq += 1;
            }
        }
        self.wait_used(mem, queue, rec, rec.next_avail)
    }

    /// Polls the used ring until its index reaches `target`, checks the
    /// entries it adds (each names the descriptor of its ring position),
    /// and moves `rec.last_used` to it.
    fn wait_used(
        &self,
        mem: &GuestMemory,
        queue: &TxQueue,
        rec: &mut VirtioRecord,
        target: u16,
    ) -> Result<()> {
        let start = Instant::now();
        let used_idx = queue.slot_off + USED_OFF + 2;
        let mut used = mem
            .dma_read16(used_idx)
            .map_err(io_failed("reading used.idx"))?;
        // Until `target` is no longer ahead of `used` (in ring index order).
        while target.wrapping_sub(used) != 0 && target.wrapping_sub(used) <= queue.size {
            if start.elapsed() > USED_TIMEOUT {
                let status = self
                    .status()
                    .map(|s| format!("{s:#04x}"))
                    .unwrap_or_else(|e| format!("unreadable: errno {}", e.errno));
                return Err(Error::new(
                    format!(
                        "TX queue {TX_QUEUE}: the device did not use the frames given to it in \
                         {} s: used.idx {used}, waiting for {target} (avail.idx {}); device \
                         status {status}",
                        USED_TIMEOUT.as_secs(),
                        rec.next_avail
                    ),
                    libc::ETIMEDOUT,
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
            used = mem
                .dma_read16(used_idx)
                .map_err(io_failed("reading used.idx"))?;
        }
        // The entries after the index that published them.
        fence(Ordering::SeqCst);
        while rec.last_used != used {
            let entry = rec.last_used % queue.size;
            let id = mem
                .dma_read32(queue.slot_off + USED_OFF + 4 + 8 * entry as usize)
                .map_err(io_failed("reading the used ring"))?;
            if id != u32::from(entry) {
                return Err(Error::new(
                    format!(
                        "used ring entry {}: descriptor {id}, expected {entry}",
                        rec.last_used
                    ),
                    libc::EPROTO,
                ));
            }
            rec.last_used = rec.last_used.wrapping_add(1);
        }
        Ok(())
    }
}

/// A MAC address, colon-separated.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An MSI-X vector register's value, `NO_VECTOR` by name.
pub fn vector_text(v: u16) -> String {
    if v == NO_VECTOR {
        "0xffff (NO_VECTOR)".into()
    } else {
        v.to_string()
    }
}
