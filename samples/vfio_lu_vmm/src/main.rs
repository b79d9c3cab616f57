// SPDX-License-Identifier: GPL-2.0
//! vfio_lu_vmm: the VMM side of a vfio-pci Live Update, as a sample.
//!
//! A VMM keeps its assigned PCI devices and its guest memory across a kexec
//! of the host kernel: before, it preserves the device files
//! (`/dev/vfio/devices/vfioN`) and the guest memory (a memfd) in a named LUO
//! session and kexecs with the session open; after, it retrieves them by
//! token, binds the devices to iommufd again, maps the same memory at the same
//! IOVA and finishes the session. See `--help` for the steps.

mod luo;
mod memory;
mod rx;
mod vfio;
mod virtio;

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use iommufd_bindings::iommufd::{
    iommu_ioas_map, iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE,
};
use iommufd_ioctls::{IommuFd, IommufdError, IommufdIoas};

use luo::{Orchestrator, Session};
use memory::{DeviceRecord, GuestMemory, Header, RxRecord, VirtioRecord};
use vfio::{
    Device, IrqOff, VFIO_DEVICE_LIVEUPDATE_KEEP, VFIO_DEVICE_LIVEUPDATE_KEPT,
    VFIO_DEVICE_LIVEUPDATE_RESET, VFIO_DEVICE_LIVEUPDATE_RETRIEVED, VFIO_DEVICE_LIVEUPDATE_RUN,
    VFIO_DEVICE_LIVEUPDATE_RUNNING,
};
use virtio::{TxQueue, VirtioNet};

/// Token of the guest memory memfd in the session.
const MEMFD_TOKEN: u64 = 0x6775_6573_746d_656d; // "guestmem"
/// Token of the i-th device in the session.
const fn device_token(i: usize) -> u64 {
    0x7666_696f_0000_0000 | i as u64 // "vfio" << 32 | i
}
/// Frames each virtio-net device sends in stage 1, and again in stage 2.
const FRAMES_PER_STAGE: u64 = 16;

const LONG_ABOUT: &str = "\
The VMM side of a vfio-pci Live Update (Linux 7.3 LUO + the vfio_pci_liveupdate \
handler): assigned PCI devices and guest memory survive a kexec of the host kernel.

stage1 (old kernel): opens each device's VFIO cdev (/dev/vfio/devices/vfioN, found \
through /sys/bus/pci/devices/<bdf>/vfio-dev), binds it to iommufd \
(VFIO_DEVICE_BIND_IOMMUFD), attaches it to a new IOAS, creates the guest memory \
(a memfd: a header page, a test pattern up to 1 MiB, then a DMA area) and maps it \
at IOVA 0x40000000 (IOMMU_IOAS_MAP), reads each device's IDs through the VFIO \
config region. Each virtio-net device (1af4:1041, or the transitional 1af4:1000) \
is then driven from userspace as a guest driver would (pread/pwrite on its BARs \
through the device file, no mmap): reset, Bus Master on, ACKNOWLEDGE and DRIVER, \
features VIRTIO_F_VERSION_1 and VIRTIO_F_ACCESS_PLATFORM (a device that does not \
offer the latter, QEMU's iommu_platform=off, would bypass the IOMMU: it is left \
alone), FEATURES_OK, transmit queue 1 (64 entries, rings in the DMA area, MSI-X \
vectors 0 and 1 written for a test to read back, MSI-X itself off), DRIVER_OK, and \
it sends 16 Ethernet frames (EtherType 0x88b5, a magic and sequence numbers 0 to \
15), polling the used ring until the device has used them all. The ring indices \
and the next sequence number go into the memfd's header. On each igb (8086:10c9), \
stage 1 sets receive address 1 (RAL/RAH(1) in BAR 0), a register a reset clears. \
Then stage 1 creates a \
named LUO session on /dev/liveupdate; with --mode keep it asks each device to be \
kept across the update (VFIO_DEVICE_FEATURE SET of VFIO_DEVICE_FEATURE_LIVEUPDATE, \
mode KEEP; --mode reset, the default, leaves the kernel's default, a reset at \
freeze); it preserves every device file and the memfd in the session \
(LIVEUPDATE_SESSION_PRESERVE_FD), turns interrupts off (VFIO_DEVICE_SET_IRQS), \
unmaps the IOVA (reset mode only: in keep mode the freeze's clearing of Bus Master \
stops DMA) and calls reboot(LINUX_REBOOT_CMD_KEXEC) itself, with the session still \
open: a session closed before the kexec is unpreserved. A kexec kernel must be \
loaded already (kexec_file_load, e.g. `kexec -s -l`).

stage2 (new kernel, vfio_pci_liveupdate loaded before /dev/liveupdate is first \
opened, the devices bound to vfio-pci): retrieves the session by name \
(LIVEUPDATE_IOCTL_RETRIEVE_SESSION), the memfd and every device file by token \
(LIVEUPDATE_SESSION_RETRIEVE_FD), binds each device to a new iommufd, attaches it \
to a new IOAS, maps the same memfd at the same IOVA, checks the memory still holds \
the pattern and the devices the IDs stage 1 read (stage 1 records them in the \
memfd's first page), and asks each device what the update did \
(VFIO_DEVICE_FEATURE GET of VFIO_DEVICE_FEATURE_LIVEUPDATE; ENOTTY, a kernel \
without it, counts as a reset). A virtio-net device that was kept is checked \
against what stage 1 recorded (device status ACKNOWLEDGE|DRIVER|FEATURES_OK: QEMU \
drops DRIVER_OK when Bus Master is cleared; the negotiated features, the queue's \
size, ring addresses, enable and MSI-X vectors, the ring indices in memory; Bus \
Master off), then gets Bus Master and DRIVER_OK again and sends 16 more frames \
from the same queue, ring indices and sequence numbers continued. A device that was \
reset is initialised again with fresh rings and sends its 16 frames with the \
sequence numbers continued (16 to 31). An igb's receive address 1 must read as \
stage 1 set it if the device was kept, and as 0 if it was reset. Last, stage 2 \
finishes the session \
(LIVEUPDATE_SESSION_FINISH).

With --rx (issue 16), each virtio-net device's receive queue is driven too: \
queue 0, up to 1024 buffers in the guest memory; in VFIO no-IOMMU mode \
(noiommu-vfioN cdevs) the device is given physical addresses \
(IOMMU_IOAS_NOIOMMU_GET_PA), each ring part physically contiguous, and stage 1 \
records them. Stage 1 sends a READY marker frame on the transmit queue (the \
host's sender starts), receives for --rx-secs giving the buffers back, and \
sends a LEAVE marker as its last action before reboot(). --mode run (or --run \
BDF) keeps a device running through the kexec (VFIO_DEVICE_LIVEUPDATE_RUN: \
Bus Master stays on, no-IOMMU devices only). Stage 2's first action, before \
any device is retrieved, reads each receive queue's used ring in the preserved \
memfd: what a running device wrote while no VMM ran; then it checks that the \
physical addresses are those recorded, that a running device says \
RETRIEVED|KEPT|RUNNING with DRIVER_OK, Bus Master and every register as stage \
1 left them, resumes kept devices and re-initialises reset ones, sends a BACK \
marker and receives for --rx-secs.

What is not carried over: DMA mappings, and in reset mode the device state. The \
handler resets each device at freeze unless it was asked to keep it; either way \
Bus Master goes off, so DMA stops at the kexec, and the VMM maps its memory again \
afterwards.

Every step prints a line starting with \"vmm: \"; on a failure the program says \
which step, for which device (BDF), with the errno, and exits with status 1.";

#[derive(Parser)]
#[command(name = "vfio_lu_vmm", version, about = "Sample VMM: keep VFIO devices and guest memory across a kexec (Linux Live Update)", long_about = LONG_ABOUT)]
struct Cli {
    /// Name of the LUO session (at most 63 bytes)
    #[arg(long, global = true, default_value = "vfio-lu-vmm")]
    session: String,
    #[command(subcommand)]
    stage: Stage,
}

#[derive(Subcommand)]
enum Stage {
    /// Old kernel: set up the devices and memory, preserve them, kexec
    Stage1 {
        /// PCI addresses (dddd:bb:dd.f) of devices bound to vfio-pci;
        /// default: every device bound to vfio-pci
        bdfs: Vec<String>,
        /// Do not call reboot(): keep the session open and wait, so that the
        /// kexec can be started from elsewhere (e.g. `kexec -e`)
        #[arg(long)]
        no_kexec: bool,
        /// What the live update does to the devices: reset them at freeze
        /// (the kernel's default) or keep their state
        /// (VFIO_DEVICE_FEATURE_LIVEUPDATE, set before each device file is
        /// preserved)
        #[arg(long, value_enum, default_value_t = Mode::Reset)]
        mode: Mode,
        /// A device (dddd:bb:dd.f) to reset whatever --mode says (repeatable)
        #[arg(long = "reset", value_name = "BDF")]
        reset_bdfs: Vec<String>,
        /// A device to keep whatever --mode says (repeatable)
        #[arg(long = "keep", value_name = "BDF")]
        keep_bdfs: Vec<String>,
        /// A device to keep running whatever --mode says (repeatable)
        #[arg(long = "run", value_name = "BDF")]
        run_bdfs: Vec<String>,
        /// Drive each virtio-net device's receive queue too (queue 0, for
        /// the first 4 of them): tell the host's sender to start (a marker
        /// frame on the transmit queue), receive for --rx-secs, and mark
        /// the moment of the kexec with another marker frame, instead of
        /// sending the 16 numbered frames
        #[arg(long)]
        rx: bool,
        /// How long to receive before the kexec (with --rx), in seconds
        #[arg(long, default_value_t = 2.0)]
        rx_secs: f64,
    },
    /// New kernel: retrieve the devices and memory, map again, check, finish
    Stage2 {
        /// Fail if a device that stage 1 asked to keep was reset (by default
        /// the VMM initialises it again and goes on)
        #[arg(long)]
        require_kept: bool,
        /// How long to receive after the devices are back (receive queues
        /// that stage 1 set up), in seconds
        #[arg(long, default_value_t = 3.0)]
        rx_secs: f64,
    },
}

/// What the live update does to a device.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Reset at freeze (the kernel's default; nothing is asked)
    Reset,
    /// Keep the device's state (VFIO_DEVICE_LIVEUPDATE_KEEP)
    Keep,
    /// Keep the device running, its DMA on, through the update
    /// (VFIO_DEVICE_LIVEUPDATE_RUN; VFIO no-IOMMU devices only)
    Run,
}

impl Mode {
    /// The uAPI's value.
    fn uapi(self) -> u32 {
        match self {
            Mode::Reset => VFIO_DEVICE_LIVEUPDATE_RESET,
            Mode::Keep => VFIO_DEVICE_LIVEUPDATE_KEEP,
            Mode::Run => VFIO_DEVICE_LIVEUPDATE_RUN,
        }
    }
}

/// A uAPI mode by name.
fn mode_name(mode: u32) -> &'static str {
    match mode {
        VFIO_DEVICE_LIVEUPDATE_RESET => "reset",
        VFIO_DEVICE_LIVEUPDATE_KEEP => "keep",
        VFIO_DEVICE_LIVEUPDATE_RUN => "run",
        _ => "unknown",
    }
}

/// A failed step: what was done, to what, and the errno.
struct Failure {
    what: String,
    err: io::Error,
    hint: Option<&'static str>,
}

impl Failure {
    fn new(what: impl Into<String>, errno: i32) -> Self {
        Self {
            what: what.into(),
            err: io::Error::from_raw_os_error(errno),
            hint: None,
        }
    }

    fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

/// `map_err` adapter: the step `what` failed with an `io::Error`.
fn failed(what: impl Into<String>) -> impl FnOnce(io::Error) -> Failure {
    let what = what.into();
    move |err| Failure {
        what,
        err,
        hint: None,
    }
}

/// `map_err` adapter for `iommufd-ioctls`, whose errors wrap the errno.
fn iommufd_failed(what: impl Into<String>) -> impl FnOnce(IommufdError) -> Failure {
    let what = what.into();
    move |e| {
        let source = std::error::Error::source(&e);
        let errno = source.and_then(|s| {
            s.downcast_ref::<vmm_sys_util::errno::Error>()
                .map(|se| se.errno())
                .or_else(|| s.downcast_ref::<io::Error>()?.raw_os_error())
        });
        Failure {
            what,
            err: match errno {
                Some(n) => io::Error::from_raw_os_error(n),
                None => io::Error::other(e.to_string()),
            },
            hint: None,
        }
    }
}

/// `map_err` adapter for the virtio-net driver of device `bdf`.
fn virtio_failed(bdf: &str) -> impl FnOnce(virtio::Error) -> Failure + '_ {
    move |e| Failure::new(format!("{bdf}: virtio-net: {}", e.what), e.errno)
}

/// The symbolic name of the errnos a VMM meets here.
fn errno_name(n: i32) -> &'static str {
    match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::EBADMSG => "EBADMSG",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ESTALE => "ESTALE",
        libc::ERANGE => "ERANGE",
        libc::EPROTO => "EPROTO",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => "?",
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.err.raw_os_error() {
            Some(n) => {
                let text = io::Error::from_raw_os_error(n).to_string();
                let text = text.split(" (os error").next().unwrap_or_default();
                write!(
                    f,
                    "{}: errno {} ({}): {}",
                    self.what,
                    n,
                    errno_name(n),
                    text
                )?
            }
            None => write!(f, "{}: {}", self.what, self.err)?,
        }
        if let Some(hint) = self.hint {
            write!(f, "\nvmm: hint: {hint}")?;
        }
        Ok(())
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// One step done: a line on stdout, flushed at once.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("vmm: {}", format_args!($($arg)*))
    };
}

/// `IOMMU_IOAS_MAP` of the whole guest memory, by its user virtual address,
/// at the fixed IOVA, readable and writeable by the devices.
fn map_dma(iommufd: &IommuFd, ioas: &IommufdIoas, mem: &GuestMemory) -> Result<()> {
    let map = iommu_ioas_map {
        size: std::mem::size_of::<iommu_ioas_map>() as u32,
        flags: iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA
            | iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE
            | iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: ioas.id(),
        __reserved: 0,
        user_va: mem.user_va(),
        length: mem.len() as u64,
        iova: memory::IOVA,
    };
    iommufd.map_iommu_ioas(&map).map_err(iommufd_failed(format!(
        "IOMMU_IOAS_MAP at IOVA {:#x}",
        memory::IOVA
    )))
}

/// `/dev/iommu` and a new IO address space in it.
fn new_ioas() -> Result<(Arc<IommuFd>, IommufdIoas)> {
    let iommufd = Arc::new(IommuFd::new().map_err(iommufd_failed("open /dev/iommu"))?);
    say!("opened /dev/iommu");
    let ioas = IommufdIoas::new(iommufd.clone()).map_err(iommufd_failed("IOMMU_IOAS_ALLOC"))?;
    say!("allocated IOAS {}", ioas.id());
    Ok((iommufd, ioas))
}

/// Binds `dev` to `iommufd` and attaches it to `ioas`.
fn bind_and_attach(dev: &Device, iommufd: &IommuFd, ioas: &IommufdIoas) -> Result<()> {
    let devid = dev
        .bind_iommufd(iommufd)
        .map_err(failed(format!("{}: VFIO_DEVICE_BIND_IOMMUFD", dev.bdf)))?;
    say!("{}: bound to iommufd (device id {devid})", dev.bdf);
    dev.attach(ioas.id()).map_err(failed(format!(
        "{}: VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        dev.bdf
    )))?;
    say!("{}: attached to IOAS {}", dev.bdf, ioas.id());
    Ok(())
}

/// Time since boot, seconds, and the TSC, which keeps counting across a
/// kexec on the same machine: the host of the test bed times the kexec with it.
fn timestamp() -> (f64, u64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime() to fill.
    let up = if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    } else {
        0.0
    };
    // SAFETY: RDTSC has no preconditions on x86_64 (it is never disabled for
    // user space by Linux unless a process asks with prctl(PR_SET_TSC)).
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    (up, tsc)
}

/// Waits (at most a second) until whoever reads our standard output, if it is
/// a pipe, has read everything: the lines printed just before the kexec must
/// not be lost with this kernel.
fn drain_stdout() {
    let _ = io::stdout().flush();
    // SAFETY: fstat() of descriptor 1 into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for fstat() to fill.
    if unsafe { libc::fstat(libc::STDOUT_FILENO, &mut st) } != 0
        || st.st_mode & libc::S_IFMT != libc::S_IFIFO
    {
        return;
    }
    for _ in 0..100 {
        let mut pending: libc::c_int = 0;
        // SAFETY: FIONREAD stores an int in `pending`.
        let ret = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::FIONREAD, &mut pending) };
        if ret != 0 || pending == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Give the reader a moment to write the last line out.
    std::thread::sleep(std::time::Duration::from_millis(20));
}

/// Whether a device's IDs are those of a virtio-net device.
fn is_virtio_net(identity: &vfio::Identity) -> bool {
    identity.vendor == virtio::VENDOR
        && matches!(
            identity.device,
            virtio::DEVICE_NET | virtio::DEVICE_NET_TRANSITIONAL
        )
}

/// Sends `FRAMES_PER_STAGE` frames on a virtio-net device's transmit queue
/// and says so, with what the host side checks (sequence numbers, MAC).
fn send_frames(
    net: &VirtioNet,
    bdf: &str,
    mem: &GuestMemory,
    queue: &virtio::TxQueue,
    rec: &mut VirtioRecord,
) -> Result<()> {
    let first = rec.next_seq;
    net.send(mem, queue, rec, FRAMES_PER_STAGE)
        .map_err(virtio_failed(bdf))?;
    say!(
        "{bdf}: virtio-net: sent {} frame(s), seq {first}..{}, from MAC {}; the device used \
         them all (used.idx {} = avail.idx {})",
        FRAMES_PER_STAGE,
        rec.next_seq - 1,
        virtio::mac_text(&rec.mac),
        rec.last_used,
        rec.next_avail
    );
    Ok(())
}

/// The live update mode of each device: a default and the exceptions.
struct Modes {
    default: Mode,
    reset: Vec<String>,
    keep: Vec<String>,
    run: Vec<String>,
}

impl Modes {
    fn of(&self, bdf: &str) -> Mode {
        let has = |l: &[String]| l.iter().any(|b| b == bdf);
        if has(&self.reset) {
            Mode::Reset
        } else if has(&self.keep) {
            Mode::Keep
        } else if has(&self.run) {
            Mode::Run
        } else {
            self.default
        }
    }
}

/// A virtio-net device whose receive queue the VMM drives.
struct RxDev<'a> {
    /// Its index in the device list (and the header's records).
    index: usize,
    net: VirtioNet<'a>,
    txq: TxQueue,
    /// Where the receive queue's notifications go.
    notify: u64,
    stats: rx::Stats,
}

/// The receive record of device `index` of `header`.
fn rx_record(header: &mut Header, index: usize) -> &mut RxRecord {
    header.devices[index]
        .virtio
        .as_mut()
        .and_then(|v| v.rx.as_mut())
        .expect("an RxDev has a receive record")
}

/// Receives on every device of `rxs` for `secs` seconds: polls the used
/// rings every 2 ms, gives each buffer back at once and notifies the
/// device. The records in `header` follow.
fn receive(mem: &GuestMemory, header: &mut Header, rxs: &mut [RxDev], secs: f64) -> Result<()> {
    let end = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    loop {
        for r in rxs.iter_mut() {
            let bdf = header.devices[r.index].bdf.clone();
            let rec = rx_record(header, r.index);
            let (ids, frames) =
                rx::poll(mem, rec).map_err(failed(format!("{bdf}: rx: reading the used ring")))?;
            if !ids.is_empty() {
                rx::give_back(mem, rec, &ids)
                    .map_err(failed(format!("{bdf}: rx: giving buffers back")))?;
                r.net.kick_rx(r.notify).map_err(virtio_failed(&bdf))?;
                r.stats.add(&frames);
            }
        }
        if Instant::now() >= end {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `IOMMU_IOAS_NOIOMMU_GET_PA` (include/uapi/linux/iommufd.h).
#[repr(C)]
struct NoiommuGetPa {
    size: u32,
    flags: u32,
    ioas_id: u32,
    reserved: u32,
    iova: u64,
    length: u64,
    out_phys: u64,
}
const _: () = assert!(std::mem::size_of::<NoiommuGetPa>() == 40);
vmm_sys_util::ioctl_io_nr!(
    IOMMU_IOAS_NOIOMMU_GET_PA,
    iommufd_bindings::iommufd::IOMMUFD_TYPE as u32,
    0x95
);

/// No-IOMMU mode: the physical address of every page of the guest memory's
/// DMA area, mapped in `ioas` at `memory::IOVA`
/// (`IOMMU_IOAS_NOIOMMU_GET_PA`, one call per physically contiguous run);
/// and the number of runs.
fn phys_table(iommufd: &IommuFd, ioas: &IommufdIoas) -> Result<(Vec<u64>, usize)> {
    let mut phys = Vec::with_capacity(memory::DMA_PAGES);
    let mut runs = 0;
    let mut off = memory::DMA_AREA;
    while off < memory::SIZE {
        let mut arg = NoiommuGetPa {
            size: std::mem::size_of::<NoiommuGetPa>() as u32,
            flags: 0,
            ioas_id: ioas.id(),
            reserved: 0,
            iova: memory::IOVA + off as u64,
            length: (memory::SIZE - off) as u64,
            out_phys: 0,
        };
        // SAFETY: the argument is the #[repr(C)] structure of the request,
        // `size` its size; the kernel writes `length` and `out_phys` within it.
        let ret = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ref(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA(), &mut arg)
        };
        if ret < 0 {
            return Err(
                failed(format!("IOMMU_IOAS_NOIOMMU_GET_PA at IOVA {:#x}", arg.iova))(
                    io::Error::last_os_error(),
                )
                .hint("EOPNOTSUPP: the IOAS is not a no-IOMMU one; EPERM: CAP_SYS_RAWIO needed"),
            );
        }
        let pages = (arg.length as usize / memory::PAGE).max(1);
        phys.extend((0..pages).map(|k| arg.out_phys + (k * memory::PAGE) as u64));
        off += pages * memory::PAGE;
        runs += 1;
    }
    phys.truncate(memory::DMA_PAGES);
    Ok((phys, runs))
}

fn stage1(
    session_name: &str,
    bdfs: Vec<String>,
    no_kexec: bool,
    modes: Modes,
    rx_secs: Option<f64>,
) -> Result<()> {
    let mode = modes.default;
    let mode_of = |bdf: &str| modes.of(bdf);
    let bdfs = if bdfs.is_empty() {
        vfio::vfio_pci_devices().map_err(failed(format!("listing {}", vfio::VFIO_PCI_DRIVER)))?
    } else {
        bdfs
    };
    if bdfs.is_empty() {
        return Err(Failure::new("no device is bound to vfio-pci", libc::ENODEV)
            .hint("bind the devices first: echo vfio-pci > /sys/bus/pci/devices/<bdf>/driver_override, unbind, echo <bdf> > /sys/bus/pci/drivers_probe"));
    }
    if bdfs.len() > memory::MAX_DEVICES {
        return Err(Failure::new(
            format!("{} devices; at most {}", bdfs.len(), memory::MAX_DEVICES),
            libc::E2BIG,
        ));
    }
    say!(
        "stage 1 (old kernel): {} device(s): {}, LUO session '{session_name}', live update \
         mode {}",
        bdfs.len(),
        bdfs.join(" "),
        mode_name(mode.uapi())
    );
    for (list, name) in [
        (&modes.reset, "reset"),
        (&modes.keep, "keep"),
        (&modes.run, "run"),
    ] {
        if !list.is_empty() {
            say!("{name} mode, whatever --mode says: {}", list.join(" "));
        }
    }

    // The devices, through their VFIO cdevs.
    let mut devs = Vec::new();
    let mut noiommu = Vec::new();
    for bdf in &bdfs {
        if !vfio::is_bdf(bdf) {
            return Err(Failure::new(
                format!("'{bdf}' is not a PCI address (dddd:bb:dd.f)"),
                libc::EINVAL,
            ));
        }
        match vfio::driver_of(bdf) {
            Some(drv) if drv == "vfio-pci" => {}
            drv => {
                return Err(Failure::new(
                    format!(
                        "{bdf}: bound to {}, not vfio-pci",
                        drv.as_deref().unwrap_or("no driver")
                    ),
                    libc::ENODEV,
                ))
            }
        }
        let (dev, path) = Device::open(bdf).map_err(failed(format!("{bdf}: open VFIO cdev")))?;
        say!("{bdf}: opened {}", path.display());
        noiommu.push(
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(vfio::NOIOMMU_PREFIX)),
        );
        devs.push(dev);
    }
    // No-IOMMU mode (vfio.enable_unsafe_noiommu_mode=1, devices without an
    // IOMMU): the devices take physical addresses, all of them or none.
    let phys_mode = noiommu.iter().all(|&n| n);
    if !phys_mode && noiommu.iter().any(|&n| n) {
        return Err(Failure::new(
            "some devices are in VFIO no-IOMMU mode, others behind an IOMMU: one IOAS cannot \
             serve both",
            libc::EINVAL,
        ));
    }
    if phys_mode {
        say!(
            "VFIO no-IOMMU mode (noiommu-vfioN cdevs): no DMA translation, the devices are \
             given physical addresses (IOMMU_IOAS_NOIOMMU_GET_PA)"
        );
    }

    // iommufd: one IO address space for all devices.
    let (iommufd, ioas) = new_ioas()?;
    let mut records = Vec::new();
    for (i, dev) in devs.iter().enumerate() {
        bind_and_attach(dev, &iommufd, &ioas)?;
        let identity = dev
            .identity()
            .map_err(failed(format!("{}: read config space", dev.bdf)))?;
        say!("{}: config space: {identity}", dev.bdf);
        records.push(DeviceRecord {
            bdf: dev.bdf.clone(),
            token: device_token(i),
            identity,
            mode: mode_of(&dev.bdf).uapi(),
            virtio: None,
        });
    }

    // Guest memory: a memfd with the pattern and, in its first page, what
    // stage 2 needs to find and check everything.
    let mut mem = GuestMemory::create(c"vfio-lu-vmm-guest-ram", memory::SIZE)
        .map_err(failed("guest memory memfd"))?;
    let mut header = Header {
        iova: memory::IOVA,
        size: memory::SIZE as u64,
        devices: records,
    };
    {
        let bytes = mem.bytes_mut();
        header.encode(bytes);
        for (off, b) in bytes
            .iter_mut()
            .enumerate()
            .take(memory::PATTERN_END)
            .skip(memory::PATTERN_START)
        {
            *b = memory::pattern(off);
        }
    }
    say!(
        "guest memory: memfd of {} KiB, test pattern written up to {} KiB, device records in \
         its first page, DMA area of {} KiB for the virtio-net rings after the pattern",
        mem.len() / 1024,
        memory::PATTERN_END / 1024,
        (memory::SIZE - memory::DMA_AREA) / 1024
    );
    map_dma(&iommufd, &ioas, &mem)?;
    say!(
        "guest memory mapped for DMA at IOVA {:#x} (IOMMU_IOAS_MAP of the VA {:#x})",
        memory::IOVA,
        mem.user_va()
    );
    if phys_mode {
        let (phys, runs) = phys_table(&iommufd, &ioas)?;
        say!(
            "physical addresses of the DMA area (IOMMU_IOAS_NOIOMMU_GET_PA): {} pages from \
             {:#x}, in {runs} physically contiguous run(s); recorded in the guest memory",
            phys.len(),
            phys.first().copied().unwrap_or_default()
        );
        mem.set_phys(phys);
        mem.write_phys_table();
    }

    // The virtio-net devices: set up and transmitting, as a guest would
    // leave them when the VMM starts the live update.
    let mut slots = 0;
    let mut rxs: Vec<RxDev> = Vec::new();
    for (index, (dev, rec)) in devs.iter().zip(header.devices.iter_mut()).enumerate() {
        if !is_virtio_net(&rec.identity) {
            continue;
        }
        if slots == memory::MAX_VIRTIO {
            say!(
                "{}: virtio-net: not driven, the {} DMA slots of the guest memory are taken",
                dev.bdf,
                memory::MAX_VIRTIO
            );
            continue;
        }
        let net = VirtioNet::probe(dev).map_err(virtio_failed(&dev.bdf))?;
        let bdf = dev.bdf.as_str();
        let with_rx = rx_secs.is_some() && slots < memory::MAX_RX;
        let Some((mut vrec, queue)) = net
            .init(&mem, slots as u8, 0, with_rx, &mut |line| {
                say!("{bdf}: {line}")
            })
            .map_err(virtio_failed(bdf))?
        else {
            continue;
        };
        slots += 1;
        if with_rx {
            let notify = net.rx_notify().map_err(virtio_failed(bdf))?;
            net.kick_rx(notify).map_err(virtio_failed(bdf))?;
            net.send_marker(&mem, &queue, &mut vrec, virtio::MARKER_READY, 0)
                .map_err(virtio_failed(bdf))?;
            say!(
                "{bdf}: rx: marker frame READY sent from MAC {} (the host's sender starts \
                 feeding the receive queue)",
                virtio::mac_text(&vrec.mac)
            );
            rxs.push(RxDev {
                index,
                net,
                txq: queue,
                notify,
                stats: rx::Stats::after(None),
            });
        } else {
            send_frames(&net, bdf, &mem, &queue, &mut vrec)?;
        }
        rec.virtio = Some(vrec);
    }
    if slots > 0 {
        header.encode(mem.bytes_mut());
        say!(
            "{slots} virtio-net device(s): setup, ring indices and next sequence numbers \
             recorded in the guest memory header"
        );
    }

    // igb: a register that a reset clears, set as a guest's driver would.
    for (dev, rec) in devs.iter().zip(&header.devices) {
        if is_igb(&rec.identity) {
            igb_set_mark(dev)?;
        }
    }

    // LUO: a named session holding every device file and the memfd.
    let session = {
        let luo = Orchestrator::open().map_err(failed("open /dev/liveupdate"))?;
        luo.create_session(session_name).map_err(failed(format!(
            "LIVEUPDATE_IOCTL_CREATE_SESSION '{session_name}'"
        )))?
        // /dev/liveupdate itself is closed here (one opener at a time); the
        // session lives as long as its own fd.
    };
    say!("created LUO session '{session_name}'");
    // The memory first: LUO finishes a session's files in the reverse order,
    // so that a session that ends without a VMM (one that died) stops a
    // running device before it frees the memory the device writes to.
    session
        .preserve_fd(&mem, MEMFD_TOKEN)
        .map_err(failed("guest memory: LIVEUPDATE_SESSION_PRESERVE_FD"))?;
    say!("guest memory memfd preserved in the session (token {MEMFD_TOKEN:#x})");
    for (dev, rec) in devs.iter().zip(&header.devices) {
        // The choice must come before the preserve; reset, the kernel's
        // default, needs no call (and works on kernels without the feature).
        let m = mode_of(&dev.bdf);
        if m != Mode::Reset {
            dev.set_liveupdate_mode(m.uapi()).map_err(|e| {
                failed(format!(
                    "{}: VFIO_DEVICE_FEATURE SET VFIO_DEVICE_FEATURE_LIVEUPDATE ({})",
                    dev.bdf,
                    mode_name(m.uapi())
                ))(e)
                .hint(
                    "ENOTTY: the kernel has no live update feature; EOPNOTSUPP: this \
                     device's state cannot be kept (e.g. it shares a reset with \
                     another), or run mode on a device that is not in VFIO no-IOMMU mode or \
                     a kernel without it; EINVAL: an unknown mode; EBUSY: the file is already \
                     preserved",
                )
            })?;
            say!(
                "{}: live update mode {} (VFIO_DEVICE_FEATURE_LIVEUPDATE SET)",
                dev.bdf,
                mode_name(m.uapi())
            );
        } else {
            say!(
                "{}: live update mode reset (the default: nothing to set)",
                dev.bdf
            );
        }
        session.preserve_fd(dev, rec.token).map_err(|e| {
            failed(format!("{}: LIVEUPDATE_SESSION_PRESERVE_FD", dev.bdf))(e).hint(
                "ENOENT: no handler took the file (module vfio_pci_liveupdate not loaded, \
                 or not a plain vfio-pci cdev); EBUSY: already preserved",
            )
        })?;
        say!(
            "{}: preserved in the session (token {:#x})",
            dev.bdf,
            rec.token
        );
    }

    // Interrupts must be off for the freeze of a VFIO device.
    for dev in &devs {
        let states = dev.interrupts_off().map_err(failed(format!(
            "{}: VFIO_DEVICE_SET_IRQS (interrupts off)",
            dev.bdf
        )))?;
        let text: Vec<String> = states
            .iter()
            .map(|(name, s)| {
                let what = match s {
                    IrqOff::Absent => "none",
                    IrqOff::Disabled => "disabled",
                    IrqOff::WasOff => "off",
                };
                format!("{name} {what}")
            })
            .collect();
        say!("{}: interrupts off ({})", dev.bdf, text.join(", "));
    }

    // DMA mappings do not survive the kexec: the new kernel starts with no
    // IOAS, and stage 2 maps the same memory again. In reset mode, the
    // handler resets the devices at freeze anyway: stop DMA now. In keep
    // mode, a device may work until the freeze, which clears its Bus Master:
    // the mapping stays until then.
    let any_kept = devs.iter().any(|d| mode_of(&d.bdf) != Mode::Reset);
    match if any_kept { Mode::Keep } else { Mode::Reset } {
        Mode::Reset => {
            ioas.unmap(memory::IOVA, mem.len() as u64)
                .map_err(iommufd_failed(format!(
                    "IOMMU_IOAS_UNMAP at IOVA {:#x}",
                    memory::IOVA
                )))?;
            say!(
                "guest memory unmapped from IOVA {:#x}: IOMMU mappings are not preserved \
                 (the devices are reset at freeze), stage 2 maps it again",
                memory::IOVA
            );
        }
        _ => say!(
            "guest memory left mapped at IOVA {:#x} (keep or run mode): the freeze clears each \
             kept device's Bus Master, which stops its DMA, and leaves a running one's on; \
             stage 2 maps the memory again",
            memory::IOVA
        ),
    }

    // The receive queues at work until the kexec.
    if let Some(secs) = rx_secs {
        if !rxs.is_empty() {
            let start = Instant::now();
            receive(&mem, &mut header, &mut rxs, secs)?;
            let took = start.elapsed().as_secs_f64();
            for r in &rxs {
                let d = &header.devices[r.index];
                let rec = d.virtio.as_ref().and_then(|v| v.rx).unwrap_or_default();
                say!(
                    "{}: rx: stage 1: received {} frame(s) in {took:.1} s: seq {}; {}{}; ring \
                     indices avail {} used {}",
                    d.bdf,
                    r.stats.seqs.len(),
                    r.stats.runs(),
                    r.stats.gap_text(),
                    r.stats.other_text(),
                    rec.next_avail,
                    rec.last_used
                );
            }
        }
        header.encode(mem.bytes_mut());
    }

    if no_kexec {
        say!(
            "holding session '{session_name}' open (pid {}); start the kexec from elsewhere, e.g. `kexec -e`",
            std::process::id()
        );
        drain_stdout();
        loop {
            // SAFETY: pause() only waits for a signal.
            unsafe { libc::pause() };
        }
    }

    // The kexec, from the process that holds the session: were the session
    // closed first, LUO would unpreserve everything in it.
    drain_stdout();
    let (up, tsc) = timestamp();
    say!(
        "kexec: calling reboot(LINUX_REBOOT_CMD_KEXEC) with session '{session_name}' open, \
         {} device(s) and the guest memory preserved (uptime {up:.6} s, TSC {tsc})",
        devs.len()
    );
    drain_stdout();
    // The host's mark of the moment: a marker frame from each receiving
    // device, the last thing before reboot() (the host has it once the device
    // has used it). Frames the devices receive from now on stay in the rings
    // for stage 2.
    for r in rxs.iter_mut() {
        let d = &mut header.devices[r.index];
        let Some(v) = d.virtio.as_mut() else {
            continue;
        };
        let received = v.rx.map_or(0, |x| x.received);
        r.net
            .send_marker(&mem, &r.txq, v, virtio::MARKER_LEAVE, received)
            .map_err(virtio_failed(&d.bdf))?;
    }
    if !rxs.is_empty() {
        header.encode(mem.bytes_mut());
    }
    // SAFETY: sync() has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot() with LINUX_REBOOT_CMD_KEXEC either does not return or
    // fails with an errno; it touches no memory of this process.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    let err = io::Error::last_os_error();
    Err(failed("reboot(LINUX_REBOOT_CMD_KEXEC)")(err).hint(
        "EBUSY: a device has interrupts on or is locked, EINVAL: not in D0 or no kexec \
         kernel loaded, other: the device reset failed; the kernel log names the device",
    ))
}

/// Stage 2's first read of a receive queue: what the device wrote into the
/// guest memory while no VMM ran.
struct FirstRead {
    index: usize,
    /// The used ring's index as stage 1 left it, and as the first read found it.
    before: u16,
    used: u16,
    /// The descriptors taken, to give back once the device is back.
    ids: Vec<u16>,
    stats: rx::Stats,
}

fn stage2(session_name: &str, require_kept: bool, rx_secs: f64) -> Result<()> {
    // The first actions: the session, the guest memory and what the
    // receive queues hold; the lines are printed afterwards.
    let session: Session = {
        let luo = Orchestrator::open().map_err(|e| {
            failed("open /dev/liveupdate")(e).hint(
                "no /dev/liveupdate: the kernel lacks CONFIG_LIVEUPDATE or liveupdate=on; \
                 ENOENT/EIO from an existing /dev/liveupdate: a preserved file had no handler \
                 when it was first opened (load vfio_pci_liveupdate before anything opens it)",
            )
        })?;
        luo.retrieve_session(session_name).map_err(failed(format!(
            "LIVEUPDATE_IOCTL_RETRIEVE_SESSION '{session_name}'"
        )))?
    };
    // The guest memory first: its header lists the devices.
    let mfd = session
        .retrieve_fd(MEMFD_TOKEN)
        .map_err(failed("guest memory: LIVEUPDATE_SESSION_RETRIEVE_FD"))?;
    let mut mem = GuestMemory::from_fd(mfd).map_err(failed("guest memory: mmap"))?;
    let mut header = Header::decode(mem.bytes())
        .map_err(failed("guest memory: no stage 1 header in the memfd"))?;
    // What the receive queues got while no VMM ran, from the memory alone:
    // the devices are not even retrieved yet.
    let mut first = Vec::new();
    for (index, d) in header.devices.iter_mut().enumerate() {
        let Some(rec) = d.virtio.as_mut().and_then(|v| v.rx.as_mut()) else {
            continue;
        };
        let before = rec.last_used;
        let mut stats = rx::Stats::after(rec.last_seq.map(|s| (s, rec.last_sent_us)));
        let (ids, frames) = rx::poll(&mem, rec).map_err(failed(format!(
            "{}: rx: first read of the used ring in the guest memory",
            d.bdf
        )))?;
        stats.add(&frames);
        first.push(FirstRead {
            index,
            before,
            used: rec.last_used,
            ids,
            stats,
        });
    }
    let (first_up, _) = timestamp();
    say!("stage 2 (new kernel): retrieved LUO session '{session_name}'");
    for f in &first {
        let d = &header.devices[f.index];
        say!(
            "{}: rx: first read (uptime {first_up:.3} s; right after the session and the \
             memfd, before any device is retrieved): used.idx {} (stage 1 consumed up to {}): \
             {} frame(s) written into the guest memory while no VMM ran: seq {}; {}",
            d.bdf,
            f.used,
            f.before,
            f.stats.seqs.len(),
            f.stats.runs(),
            f.stats.gap_text()
        );
    }
    say!(
        "guest memory memfd retrieved ({} KiB); stage 1 recorded {} device(s), IOVA {:#x}",
        mem.len() / 1024,
        header.devices.len(),
        header.iova
    );
    if header.size != mem.len() as u64 {
        return Err(Failure::new(
            format!(
                "guest memory: {} bytes, stage 1 had {}",
                mem.len(),
                header.size
            ),
            libc::EMSGSIZE,
        ));
    }

    // Every device file, by token. The device must already be bound to
    // vfio-pci: LUO does not retry a failed retrieve.
    let mut devs = Vec::new();
    for rec in &header.devices {
        match vfio::driver_of(&rec.bdf) {
            Some(drv) if drv == "vfio-pci" => {}
            drv => {
                return Err(Failure::new(
                    format!(
                        "{}: bound to {}, not vfio-pci",
                        rec.bdf,
                        drv.as_deref().unwrap_or("no driver")
                    ),
                    libc::ENODEV,
                )
                .hint("bind it to vfio-pci (driver_override) before retrieving it"))
            }
        }
        let fd = session.retrieve_fd(rec.token).map_err(|e| {
            failed(format!(
                "{}: LIVEUPDATE_SESSION_RETRIEVE_FD (token {:#x})",
                rec.bdf, rec.token
            ))(e)
            .hint("ENODEV: not bound to vfio-pci; ESTALE: another device at that address")
        })?;
        let dev = Device::from_fd(&rec.bdf, fd);
        say!(
            "{}: retrieved from the session (token {:#x}): {}",
            rec.bdf,
            rec.token,
            dev.file_name()
        );
        if let Some(bdf) = dev.fdinfo_bdf() {
            if bdf != rec.bdf {
                return Err(Failure::new(
                    format!("{}: the retrieved file is for device {bdf}", rec.bdf),
                    libc::ESTALE,
                ));
            }
        }
        devs.push(dev);
    }

    // A new iommufd and IOAS, the devices in it, the same memory at the same IOVA.
    let (iommufd, ioas) = new_ioas()?;
    for (dev, rec) in devs.iter().zip(&header.devices) {
        bind_and_attach(dev, &iommufd, &ioas)?;
        let info = dev
            .info()
            .map_err(failed(format!("{}: VFIO_DEVICE_GET_INFO", dev.bdf)))?;
        let identity = dev
            .identity()
            .map_err(failed(format!("{}: read config space", dev.bdf)))?;
        if identity != rec.identity {
            return Err(Failure::new(
                format!(
                    "{}: config space says {identity}, stage 1 read {}",
                    dev.bdf, rec.identity
                ),
                libc::ESTALE,
            ));
        }
        say!(
            "{}: config space: {identity}, same as before the kexec ({} regions, {} irq types)",
            dev.bdf,
            info.num_regions,
            info.num_irqs
        );
    }
    map_dma(&iommufd, &ioas, &mem)?;
    say!(
        "guest memory mapped again at IOVA {:#x} (IOMMU_IOAS_MAP of the VA {:#x})",
        memory::IOVA,
        mem.user_va()
    );
    let recorded = mem.read_phys_table();
    if !recorded.is_empty() {
        let (phys, runs) = phys_table(&iommufd, &ioas)?;
        if let Some(p) = (0..recorded.len()).find(|&p| phys.get(p) != recorded.get(p)) {
            return Err(Failure::new(
                format!(
                    "guest memory: page {p} of the DMA area at physical address {:#x}, stage 1 \
                     recorded {:#x}",
                    phys.get(p).copied().unwrap_or_default(),
                    recorded[p]
                ),
                libc::ESTALE,
            ));
        }
        say!(
            "physical addresses of the DMA area (IOMMU_IOAS_NOIOMMU_GET_PA): {} pages from \
             {:#x} in {runs} run(s), the same as stage 1 recorded: the memory the devices write \
             is where it was",
            phys.len(),
            phys.first().copied().unwrap_or_default()
        );
        mem.set_phys(phys);
    }

    // The memory as stage 1 left it.
    let bytes = &mem.bytes()[..memory::PATTERN_END];
    let mut bad = bytes
        .iter()
        .enumerate()
        .skip(memory::PATTERN_START)
        .filter(|&(off, &b)| b != memory::pattern(off));
    if let Some((off, &b)) = bad.next() {
        let count = 1 + bad.count();
        return Err(Failure::new(
            format!(
                "guest memory: {count} byte(s) differ from the pattern, the first at offset {off:#x} ({b:#04x}, expected {:#04x})",
                memory::pattern(off)
            ),
            libc::EIO,
        ));
    }
    say!(
        "guest memory intact: {} bytes of the test pattern as stage 1 wrote them",
        bytes.len() - memory::PATTERN_START
    );

    // What the live update did to each device, and the virtio-net devices
    // back at work.
    let mut frames = 0;
    let mut rxs: Vec<RxDev> = Vec::new();
    for (index, (dev, rec)) in devs.iter().zip(header.devices.iter_mut()).enumerate() {
        let outcome = live_update_outcome(dev, rec.mode, require_kept)?;
        if is_igb(&rec.identity) {
            igb_check_mark(dev, outcome != Outcome::Reset)?;
        }
        let Some(vrec) = rec.virtio.as_mut() else {
            continue;
        };
        let bdf = dev.bdf.as_str();
        let fr = first.iter().find(|f| f.index == index);
        let (net, txq) = match outcome {
            Outcome::Running => resume_running(dev, &mem, vrec, fr.map(|f| f.used))?,
            Outcome::Kept => resume_virtio_net(dev, &mem, vrec, fr.map(|f| f.used))?,
            Outcome::Reset => reinit_virtio_net(dev, &mem, vrec)?,
        };
        let Some(rxrec) = vrec.rx.as_mut() else {
            send_frames(&net, bdf, &mem, &txq, vrec)?;
            frames += vrec.next_seq;
            continue;
        };
        if outcome != Outcome::Reset {
            // The buffers the first read took, available again.
            if let Some(f) = fr {
                rx::give_back(&mem, rxrec, &f.ids)
                    .map_err(failed(format!("{bdf}: rx: giving buffers back")))?;
            }
        }
        let prev = rxrec.last_seq.map(|s| (s, rxrec.last_sent_us));
        let received = rxrec.received;
        let notify = net.rx_notify().map_err(virtio_failed(bdf))?;
        net.kick_rx(notify).map_err(virtio_failed(bdf))?;
        net.send_marker(&mem, &txq, vrec, virtio::MARKER_BACK, received)
            .map_err(virtio_failed(bdf))?;
        let (up, _) = timestamp();
        say!(
            "{bdf}: rx: marker frame BACK sent (uptime {up:.3} s), the device {}",
            match outcome {
                Outcome::Running => "still running",
                Outcome::Kept => "resumed",
                Outcome::Reset => "re-initialised",
            }
        );
        rxs.push(RxDev {
            index,
            net,
            txq,
            notify,
            stats: rx::Stats::after(prev),
        });
    }
    if !rxs.is_empty() {
        let start = Instant::now();
        receive(&mem, &mut header, &mut rxs, rx_secs)?;
        let took = start.elapsed().as_secs_f64();
        for r in &rxs {
            let d = &header.devices[r.index];
            let rec = d.virtio.as_ref().and_then(|v| v.rx).unwrap_or_default();
            say!(
                "{}: rx: stage 2: received {} frame(s) after the first read, in {took:.1} s: \
                 seq {}; {}{}; {} frame(s) over both stages; ring indices avail {} used {}",
                d.bdf,
                r.stats.seqs.len(),
                r.stats.runs(),
                r.stats.gap_text(),
                r.stats.other_text(),
                rec.received,
                rec.next_avail,
                rec.last_used
            );
        }
    }
    if frames > 0 || !rxs.is_empty() {
        header.encode(mem.bytes_mut());
    }

    session.finish().map_err(|e| {
        failed(format!("LIVEUPDATE_SESSION_FINISH '{session_name}'"))(e)
            .hint("EBUSY: a preserved file was not retrieved, or a device not bound again")
    })?;
    say!("finished LUO session '{session_name}': the devices and memory are the VMM's again");
    say!(
        "live update done: {} device(s) and {} KiB of guest memory carried across the kexec{}",
        devs.len(),
        mem.len() / 1024,
        if frames > 0 {
            format!("; {frames} frame(s) sent by the virtio-net devices in both stages")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// igb (82576): the receive address registers of entry 1, which the reset
/// clears (entry 0 holds the MAC address from the EEPROM).
const IGB_VENDOR: u16 = 0x8086;
const IGB_DEVICE: u16 = 0x10c9;
const IGB_RAL1: u64 = 0x5408;
const IGB_RAH1: u64 = 0x540c;
/// What stage 1 writes there: a unicast address, without the Address Valid
/// bit (so the device does not filter on it).
const IGB_MARK: [u32; 2] = [0x5678_4c55, 0x0000_1234];

fn is_igb(identity: &vfio::Identity) -> bool {
    identity.vendor == IGB_VENDOR && identity.device == IGB_DEVICE
}

/// RAL(1) and RAH(1) of an igb, through its BAR 0 region.
fn igb_read_mark(dev: &Device) -> io::Result<[u32; 2]> {
    let bar0 = dev.region(0)?;
    let mut out = [0u32; 2];
    for (reg, v) in [IGB_RAL1, IGB_RAH1].into_iter().zip(out.iter_mut()) {
        let mut b = [0u8; 4];
        dev.read_region(&bar0, reg, &mut b)?;
        *v = u32::from_le_bytes(b);
    }
    Ok(out)
}

fn igb_set_mark(dev: &Device) -> Result<()> {
    let bar0 = dev
        .region(0)
        .map_err(failed(format!("{}: igb: BAR 0 region", dev.bdf)))?;
    for (reg, v) in [IGB_RAL1, IGB_RAH1].into_iter().zip(IGB_MARK) {
        dev.write_region(&bar0, reg, &v.to_le_bytes())
            .map_err(failed(format!("{}: igb: write register {reg:#x}", dev.bdf)))?;
    }
    let got = igb_read_mark(dev).map_err(failed(format!("{}: igb: read RAL/RAH(1)", dev.bdf)))?;
    if got != IGB_MARK {
        return Err(Failure::new(
            format!(
                "{}: igb: RAL/RAH(1) read {:#010x}/{:#010x} after writing {:#010x}/{:#010x}",
                dev.bdf, got[0], got[1], IGB_MARK[0], IGB_MARK[1]
            ),
            libc::EIO,
        ));
    }
    say!(
        "{}: igb: receive address 1 set (RAL/RAH(1) {:#010x}/{:#010x}), a register a reset clears",
        dev.bdf,
        got[0],
        got[1]
    );
    Ok(())
}

/// After the live update: a kept igb still has stage 1's receive address 1; a
/// reset one has none.
fn igb_check_mark(dev: &Device, kept: bool) -> Result<()> {
    let got = igb_read_mark(dev).map_err(failed(format!("{}: igb: read RAL/RAH(1)", dev.bdf)))?;
    let (want, what) = if kept {
        (IGB_MARK, "as stage 1 set it: kept")
    } else {
        ([0, 0], "cleared: reset")
    };
    if got != want {
        return Err(Failure::new(
            format!(
                "{}: igb: RAL/RAH(1) read {:#010x}/{:#010x}, expected {:#010x}/{:#010x} ({})",
                dev.bdf,
                got[0],
                got[1],
                want[0],
                want[1],
                if kept { "kept" } else { "reset" }
            ),
            libc::EIO,
        ));
    }
    say!(
        "{}: igb: receive address 1 {:#010x}/{:#010x}, {what}",
        dev.bdf,
        got[0],
        got[1]
    );
    Ok(())
}

/// What the live update did to a device, as its retrieved file says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Reset (or its state lost).
    Reset,
    /// Kept, its DMA stopped (Bus Master off).
    Kept,
    /// Kept running: Bus Master stayed on, DMA never stopped.
    Running,
}

/// Asks the retrieved device what the live update did to it (stage 1 chose
/// `mode`). A kernel without the feature (`ENOTTY`) resets every device.
/// With `require_kept`, a device that did not get the mode stage 1 asked
/// for (kept, or running) fails the VMM.
fn live_update_outcome(dev: &Device, mode: u32, require_kept: bool) -> Result<Outcome> {
    let lu = match dev.get_liveupdate() {
        Ok(lu) => lu,
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
            say!(
                "{}: VFIO_DEVICE_FEATURE_LIVEUPDATE GET: ENOTTY, this kernel has no such \
                 feature: the device was reset (stage 1 chose {})",
                dev.bdf,
                mode_name(mode)
            );
            return Ok(Outcome::Reset);
        }
        Err(e) => {
            return Err(failed(format!(
                "{}: VFIO_DEVICE_FEATURE GET VFIO_DEVICE_FEATURE_LIVEUPDATE",
                dev.bdf
            ))(e))
        }
    };
    let kept = lu.flags & VFIO_DEVICE_LIVEUPDATE_KEPT != 0;
    let running = lu.flags & VFIO_DEVICE_LIVEUPDATE_RUNNING != 0;
    let mut flags = Vec::new();
    if lu.flags & VFIO_DEVICE_LIVEUPDATE_RETRIEVED != 0 {
        flags.push("RETRIEVED");
    }
    if kept {
        flags.push("KEPT");
    }
    if running {
        flags.push("RUNNING");
    }
    say!(
        "{}: VFIO_DEVICE_FEATURE_LIVEUPDATE GET: mode {}, flags {:#x} ({}), supported {:#x} \
         (stage 1 chose {})",
        dev.bdf,
        mode_name(lu.mode),
        lu.flags,
        if flags.is_empty() {
            "none".to_owned()
        } else {
            flags.join("|")
        },
        lu.supported,
        mode_name(mode)
    );
    if lu.flags & VFIO_DEVICE_LIVEUPDATE_RETRIEVED == 0 {
        return Err(Failure::new(
            format!(
                "{}: the retrieved file does not say it came from a live update (flags {:#x})",
                dev.bdf, lu.flags
            ),
            libc::EPROTO,
        ));
    }
    if kept && mode == VFIO_DEVICE_LIVEUPDATE_RESET {
        return Err(Failure::new(
            format!(
                "{}: the device was kept, stage 1 chose {}",
                dev.bdf,
                mode_name(mode)
            ),
            libc::EPROTO,
        ));
    }
    if running && (mode != VFIO_DEVICE_LIVEUPDATE_RUN || !kept) {
        return Err(Failure::new(
            format!(
                "{}: flags {:#x}: RUNNING, but stage 1 chose {}{}",
                dev.bdf,
                lu.flags,
                mode_name(mode),
                if kept { "" } else { " and KEPT is missing" }
            ),
            libc::EPROTO,
        ));
    }
    let wanted = match mode {
        VFIO_DEVICE_LIVEUPDATE_RUN => Some(("keep the device running", running)),
        VFIO_DEVICE_LIVEUPDATE_KEEP => Some(("keep the device", kept)),
        _ => None,
    };
    if let Some((what, false)) = wanted {
        if require_kept {
            return Err(Failure::new(
                format!(
                    "{}: stage 1 asked to {what}, the live update did not (flags {:#x})",
                    dev.bdf, lu.flags
                ),
                libc::EPROTO,
            )
            .hint("the kernel log says why the state of the kept device was lost"));
        }
        say!(
            "{}: stage 1 asked to {what}, the live update did not (flags {:#x})",
            dev.bdf,
            lu.flags
        );
    }
    Ok(if running {
        Outcome::Running
    } else if kept {
        Outcome::Kept
    } else {
        Outcome::Reset
    })
}

/// A receive queue's device ring after the live update, against what the
/// first read found (`first_used`): a running device moves it on (or not),
/// a stopped one must not have.
fn check_rx_used(
    bdf: &str,
    mem: &GuestMemory,
    rec: &VirtioRecord,
    first_used: Option<u16>,
    running: bool,
) -> Result<Option<(u16, u16)>> {
    let (Some(rx), Some(first)) = (rec.rx.as_ref(), first_used) else {
        return Ok(None);
    };
    let used = rx::used_idx(mem, rx).map_err(failed(format!("{bdf}: rx: reading used.idx")))?;
    let avail = rx::avail_idx(mem, rx).map_err(failed(format!("{bdf}: rx: reading avail.idx")))?;
    let moved = used.wrapping_sub(first);
    if avail != rx.next_avail || (!running && moved != 0) || moved > rx.queue_size {
        return Err(Failure::new(
            format!(
                "{bdf}: rx: avail.idx {avail} (stage 1 left {}), used.idx {used} (the first \
                 read found {first}){}",
                rx.next_avail,
                if running {
                    ""
                } else {
                    ": a device whose DMA the update stopped wrote into the ring"
                }
            ),
            libc::ESTALE,
        ));
    }
    Ok(Some((first, used)))
}

/// The common configuration of a kept or running virtio-net device against
/// what stage 1 recorded: ESTALE with every difference.
fn config_unchanged(
    net: &VirtioNet<'_>,
    state: &virtio::CommonState,
    rec: &VirtioRecord,
    bdf: &str,
) -> Result<()> {
    let diffs = net.compare(state, rec);
    if diffs.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        format!(
            "{bdf}: virtio-net: common config changed by the live update: {}",
            diffs.join(", ")
        ),
        libc::ESTALE,
    ))
}

/// A virtio-net device the live update kept: its common configuration as
/// stage 1 left it, Bus Master off; then Bus Master and DRIVER_OK again; its
/// transmit queue resumed, ring indices and sequence numbers continued.
fn resume_virtio_net<'a>(
    dev: &'a Device,
    mem: &GuestMemory,
    rec: &mut VirtioRecord,
    first_used: Option<u16>,
) -> Result<(VirtioNet<'a>, TxQueue)> {
    let bdf = dev.bdf.as_str();
    let net = VirtioNet::probe(dev).map_err(virtio_failed(bdf))?;
    let state = net.common_state().map_err(virtio_failed(bdf))?;
    // QEMU drops DRIVER_OK when Bus Master is cleared, as the freeze does.
    let expected = virtio::ACKNOWLEDGE | virtio::DRIVER | virtio::FEATURES_OK;
    if state.status & !virtio::DRIVER_OK != expected {
        return Err(Failure::new(
            format!(
                "{bdf}: virtio-net: device status {:#04x} after the live update, expected \
                 {expected:#04x} (ACKNOWLEDGE|DRIVER|FEATURES_OK)",
                state.status
            ),
            libc::ESTALE,
        ));
    }
    config_unchanged(&net, &state, rec, bdf)?;
    say!(
        "{bdf}: virtio-net: kept: device status {:#04x}{}, features {:#x}, TX queue {} size {} \
         at {:#x}/{:#x}/{:#x}, enabled, MSI-X vectors {}/{}{}: as stage 1 left them",
        state.status,
        if state.status & virtio::DRIVER_OK == 0 {
            " (DRIVER_OK dropped with Bus Master)"
        } else {
            ""
        },
        state.features,
        rec.queue,
        state.queue_size,
        state.desc,
        state.driver,
        state.device,
        virtio::vector_text(state.msix_config),
        virtio::vector_text(state.queue_msix_vector),
        rx_regs_text(&state, rec)
    );
    let queue = net.resume_queue(mem, rec).map_err(virtio_failed(bdf))?;
    let cmd = net.command().map_err(virtio_failed(bdf))?;
    if cmd & vfio::PCI_COMMAND_MASTER != 0 {
        return Err(Failure::new(
            format!(
                "{bdf}: Command register {cmd:#06x}: Bus Master on after the live update, \
                 which should have cleared it"
            ),
            libc::EPROTO,
        ));
    }
    say!(
        "{bdf}: Bus Master off after the live update (Command register {cmd:#06x}); ring \
         indices in the guest memory as recorded (avail.idx {}, used.idx {})",
        rec.next_avail,
        rec.last_used
    );
    if let Some((first, used)) = check_rx_used(bdf, mem, rec, first_used, false)? {
        say!(
            "{bdf}: rx: used.idx {used}, as the first read found it ({first}): the device \
             wrote nothing since the kexec"
        );
    }
    let cmd = net.bus_master_on().map_err(virtio_failed(bdf))?;
    let status = net.driver_ok().map_err(virtio_failed(bdf))?;
    say!(
        "{bdf}: Bus Master on (Command register {cmd:#06x}), DRIVER_OK again (device status \
         {status:#04x}): resumed without re-initialisation"
    );
    Ok((net, queue))
}

/// ", RX queue 0 size N at a/b/c, enabled" for a device with a receive queue.
fn rx_regs_text(state: &virtio::CommonState, rec: &VirtioRecord) -> String {
    if rec.rx.is_none() {
        return String::new();
    }
    format!(
        ", RX queue {} size {} at {:#x}/{:#x}/{:#x}, enabled {}, MSI-X vector {}",
        rx::RX_QUEUE,
        state.rx_size,
        state.rx_desc,
        state.rx_driver,
        state.rx_device,
        state.rx_enable,
        virtio::vector_text(state.rx_msix_vector)
    )
}

/// A virtio-net device the live update kept running (mode RUN): DRIVER_OK
/// still set, Bus Master still on, every register as stage 1 left it, and
/// its receive queue moved on by itself; nothing to do to resume it.
fn resume_running<'a>(
    dev: &'a Device,
    mem: &GuestMemory,
    rec: &mut VirtioRecord,
    first_used: Option<u16>,
) -> Result<(VirtioNet<'a>, TxQueue)> {
    let bdf = dev.bdf.as_str();
    let net = VirtioNet::probe(dev).map_err(virtio_failed(bdf))?;
    let state = net.common_state().map_err(virtio_failed(bdf))?;
    let expected = virtio::ACKNOWLEDGE | virtio::DRIVER | virtio::FEATURES_OK | virtio::DRIVER_OK;
    if state.status != expected {
        return Err(Failure::new(
            format!(
                "{bdf}: virtio-net: device status {:#04x} after a live update that kept it \
                 running, expected {expected:#04x} (ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK)",
                state.status
            ),
            libc::ESTALE,
        ));
    }
    config_unchanged(&net, &state, rec, bdf)?;
    let cmd = net.command().map_err(virtio_failed(bdf))?;
    if cmd & vfio::PCI_COMMAND_MASTER == 0 {
        return Err(Failure::new(
            format!(
                "{bdf}: Command register {cmd:#06x}: Bus Master off after a live update that \
                 kept the device running"
            ),
            libc::EPROTO,
        ));
    }
    let queue = net.resume_queue(mem, rec).map_err(virtio_failed(bdf))?;
    say!(
        "{bdf}: virtio-net: running: device status {:#04x} (DRIVER_OK kept), Bus Master on \
         (Command register {cmd:#06x}), features {:#x}, TX queue {} size {} at \
         {:#x}/{:#x}/{:#x}, enabled, MSI-X vectors {}/{}{}, TX ring indices avail {} used {}: \
         as stage 1 left them, never stopped nor reset",
        state.status,
        state.features,
        rec.queue,
        state.queue_size,
        state.desc,
        state.driver,
        state.device,
        virtio::vector_text(state.msix_config),
        virtio::vector_text(state.queue_msix_vector),
        rx_regs_text(&state, rec),
        rec.next_avail,
        rec.last_used
    );
    if let Some((first, used)) = check_rx_used(bdf, mem, rec, first_used, true)? {
        say!(
            "{bdf}: rx: used.idx {used}: {} more frame(s) written since the first read \
             ({first}), the device still receiving",
            used.wrapping_sub(first)
        );
    }
    Ok((net, queue))
}

/// A virtio-net device the live update reset: initialised again with fresh
/// rings in its DMA slots; its frames continue the sequence numbers, its
/// receive counts go on.
fn reinit_virtio_net<'a>(
    dev: &'a Device,
    mem: &GuestMemory,
    rec: &mut VirtioRecord,
) -> Result<(VirtioNet<'a>, TxQueue)> {
    let bdf = dev.bdf.as_str();
    let net = VirtioNet::probe(dev).map_err(virtio_failed(bdf))?;
    let status = net.status().map_err(virtio_failed(bdf))?;
    say!("{bdf}: virtio-net: device status {status:#04x} after the live update");
    say!("{bdf}: device was reset by the live update: re-initialising virtio-net");
    let Some((mut fresh, queue)) = net
        .init(mem, rec.slot, rec.next_seq, rec.rx.is_some(), &mut |line| {
            say!("{bdf}: {line}")
        })
        .map_err(virtio_failed(bdf))?
    else {
        return Err(Failure::new(
            format!("{bdf}: virtio-net: no longer offers VIRTIO_F_ACCESS_PLATFORM"),
            libc::ESTALE,
        ));
    };
    if fresh.mac != rec.mac {
        return Err(Failure::new(
            format!(
                "{bdf}: virtio-net: MAC {}, stage 1 had {}",
                virtio::mac_text(&fresh.mac),
                virtio::mac_text(&rec.mac)
            ),
            libc::ESTALE,
        ));
    }
    if let (Some(new), Some(old)) = (fresh.rx.as_mut(), rec.rx.as_ref()) {
        new.received = old.received;
        new.last_seq = old.last_seq;
        new.last_sent_us = old.last_sent_us;
    }
    *rec = fresh;
    Ok((net, queue))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.stage {
        Stage::Stage1 {
            bdfs,
            no_kexec,
            mode,
            reset_bdfs,
            keep_bdfs,
            run_bdfs,
            rx,
            rx_secs,
        } => stage1(
            &cli.session,
            bdfs,
            no_kexec,
            Modes {
                default: mode,
                reset: reset_bdfs,
                keep: keep_bdfs,
                run: run_bdfs,
            },
            rx.then_some(rx_secs),
        ),
        Stage::Stage2 {
            require_kept,
            rx_secs,
        } => stage2(&cli.session, require_kept, rx_secs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let _ = io::stdout().flush();
            eprintln!("vmm: FAILED: {f}");
            ExitCode::FAILURE
        }
    }
}
