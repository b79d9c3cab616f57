// SPDX-License-Identifier: GPL-2.0
//! The sample's "guest memory": a memfd, mapped into the VMM and, through
//! iommufd, into the devices' IO address space.
//!
//! LUO preserves a memfd's pages across the kexec (the `memfd` file handler of
//! Linux 7.3), so the memory a guest had survives; the DMA mappings on top of
//! it do not and are made again in the new kernel. The first page holds a
//! header in which stage 1 records what stage 2 needs and checks: the devices,
//! their tokens and identities, the IOVA and size of the memory. The rest is
//! filled with a pattern that stage 2 checks byte by byte.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use crate::vfio::Identity;

/// Size of the guest memory.
pub const SIZE: usize = 1 << 20;
/// Where the devices see it (IO virtual address), before and after the kexec.
pub const IOVA: u64 = 0x4000_0000;
/// The header takes the first page; the pattern fills the rest.
pub const HEADER_SIZE: usize = 4096;
/// At most this many devices fit in the header.
pub const MAX_DEVICES: usize = 64;

const MAGIC: &[u8; 8] = b"VFIOLUVM";
const VERSION: u32 = 1;
const FIXED: usize = 32;
const BDF_LEN: usize = 16;
const RECORD: usize = BDF_LEN + 8 + Identity::LEN + 4;
const _: () = assert!(FIXED + MAX_DEVICES * RECORD <= HEADER_SIZE);

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
}

/// The header at offset 0 of the guest memory.
#[derive(Debug)]
pub struct Header {
    pub iova: u64,
    pub size: u64,
    pub devices: Vec<DeviceRecord>,
}

impl Header {
    /// Writes the header into `out` (at least `HEADER_SIZE` bytes).
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
        let devices = (0..n)
            .map(|i| {
                let r = &b[FIXED + i * RECORD..FIXED + (i + 1) * RECORD];
                let end = r[..BDF_LEN].iter().position(|&c| c == 0).unwrap_or(BDF_LEN);
                DeviceRecord {
                    bdf: String::from_utf8_lossy(&r[..end]).into_owned(),
                    token: u64_at(FIXED + i * RECORD + BDF_LEN),
                    identity: Identity::decode(&r[BDF_LEN + 8..BDF_LEN + 8 + Identity::LEN]),
                }
            })
            .collect();
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
        Ok(Self { file, addr, len })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The user virtual address of the mapping, as `IOMMU_IOAS_MAP` takes it.
    pub fn user_va(&self) -> u64 {
        self.addr.as_ptr() as u64
    }

    /// The memory, to read.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` readable bytes until `self` is dropped.
        // The sample never starts DMA on its devices, so nothing else writes
        // the memory while the slice lives.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr(), self.len) }
    }

    /// The memory, to write.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes()`, and `&mut self` makes this the only slice
        // of the mapping in this process.
        unsafe { std::slice::from_raw_parts_mut(self.addr.as_ptr(), self.len) }
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map()`, which no slice
        // outlives (they borrow `self`).
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}
