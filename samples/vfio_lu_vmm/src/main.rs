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
mod vfio;

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use iommufd_bindings::iommufd::{
    iommu_ioas_map, iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE,
};
use iommufd_ioctls::{IommuFd, IommufdError, IommufdIoas};

use luo::{Orchestrator, Session};
use memory::{DeviceRecord, GuestMemory, Header};
use vfio::{Device, IrqOff};

/// Token of the guest memory memfd in the session.
const MEMFD_TOKEN: u64 = 0x6775_6573_746d_656d; // "guestmem"
/// Token of the i-th device in the session.
const fn device_token(i: usize) -> u64 {
    0x7666_696f_0000_0000 | i as u64 // "vfio" << 32 | i
}

const LONG_ABOUT: &str = "\
The VMM side of a vfio-pci Live Update (Linux 7.3 LUO + the vfio_pci_liveupdate \
handler): assigned PCI devices and guest memory survive a kexec of the host kernel.

stage1 (old kernel): opens each device's VFIO cdev (/dev/vfio/devices/vfioN, found \
through /sys/bus/pci/devices/<bdf>/vfio-dev), binds it to iommufd \
(VFIO_DEVICE_BIND_IOMMUFD), attaches it to a new IOAS, creates the guest memory \
(a 1 MiB memfd, filled with a test pattern) and maps it at IOVA 0x40000000 \
(IOMMU_IOAS_MAP), reads each device's IDs through the VFIO config region, creates \
a named LUO session on /dev/liveupdate, preserves every device file and the memfd \
in it (LIVEUPDATE_SESSION_PRESERVE_FD), turns interrupts off (VFIO_DEVICE_SET_IRQS), \
unmaps the IOVA and calls reboot(LINUX_REBOOT_CMD_KEXEC) itself, with the session \
still open: a session closed before the kexec is unpreserved. A kexec kernel must \
be loaded already (kexec_file_load, e.g. `kexec -s -l`).

stage2 (new kernel, vfio_pci_liveupdate loaded before /dev/liveupdate is first \
opened, the devices bound to vfio-pci): retrieves the session by name \
(LIVEUPDATE_IOCTL_RETRIEVE_SESSION), the memfd and every device file by token \
(LIVEUPDATE_SESSION_RETRIEVE_FD), binds each device to a new iommufd, attaches it \
to a new IOAS, maps the same memfd at the same IOVA, checks the memory still holds \
the pattern and the devices the IDs stage 1 read (stage 1 records them in the \
memfd's first page), and finishes the session (LIVEUPDATE_SESSION_FINISH).

What is not carried over: DMA mappings and device state. The handler resets each \
device at freeze, so DMA stops at the kexec and the VMM maps its memory again \
afterwards; only the device files (the same devices, still owned by the VMM) and \
the memory contents survive.

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
    },
    /// New kernel: retrieve the devices and memory, map again, check, finish
    Stage2,
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

fn stage1(session_name: &str, bdfs: Vec<String>, no_kexec: bool) -> Result<()> {
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
        "stage 1 (old kernel): {} device(s): {}, LUO session '{session_name}'",
        bdfs.len(),
        bdfs.join(" ")
    );

    // The devices, through their VFIO cdevs.
    let mut devs = Vec::new();
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
        devs.push(dev);
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
        });
    }

    // Guest memory: a memfd with the pattern and, in its first page, what
    // stage 2 needs to find and check everything.
    let mut mem = GuestMemory::create(c"vfio-lu-vmm-guest-ram", memory::SIZE)
        .map_err(failed("guest memory memfd"))?;
    let header = Header {
        iova: memory::IOVA,
        size: memory::SIZE as u64,
        devices: records,
    };
    {
        let bytes = mem.bytes_mut();
        header.encode(bytes);
        for (off, b) in bytes.iter_mut().enumerate().skip(memory::HEADER_SIZE) {
            *b = memory::pattern(off);
        }
    }
    say!(
        "guest memory: memfd of {} KiB, test pattern written, device records in its first page",
        mem.len() / 1024
    );
    map_dma(&iommufd, &ioas, &mem)?;
    say!(
        "guest memory mapped for DMA at IOVA {:#x} (IOMMU_IOAS_MAP of the VA {:#x})",
        memory::IOVA,
        mem.user_va()
    );

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
    for (dev, rec) in devs.iter().zip(&header.devices) {
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
    session
        .preserve_fd(&mem, MEMFD_TOKEN)
        .map_err(failed("guest memory: LIVEUPDATE_SESSION_PRESERVE_FD"))?;
    say!("guest memory memfd preserved in the session (token {MEMFD_TOKEN:#x})");

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

    // DMA mappings do not survive the kexec: the handler resets the device
    // when it freezes it, and the new kernel starts with no IOAS. Stop DMA
    // now; stage 2 maps the same memory again.
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

fn stage2(session_name: &str) -> Result<()> {
    say!("stage 2 (new kernel): retrieving LUO session '{session_name}'");
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
    say!("retrieved LUO session '{session_name}'");

    // The guest memory first: its header lists the devices.
    let mfd = session
        .retrieve_fd(MEMFD_TOKEN)
        .map_err(failed("guest memory: LIVEUPDATE_SESSION_RETRIEVE_FD"))?;
    let mem = GuestMemory::from_fd(mfd).map_err(failed("guest memory: mmap"))?;
    let header = Header::decode(mem.bytes())
        .map_err(failed("guest memory: no stage 1 header in the memfd"))?;
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

    // The memory as stage 1 left it.
    let bytes = mem.bytes();
    let mut bad = bytes
        .iter()
        .enumerate()
        .skip(memory::HEADER_SIZE)
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
        bytes.len() - memory::HEADER_SIZE
    );

    session.finish().map_err(|e| {
        failed(format!("LIVEUPDATE_SESSION_FINISH '{session_name}'"))(e)
            .hint("EBUSY: a preserved file was not retrieved, or a device not bound again")
    })?;
    say!("finished LUO session '{session_name}': the devices and memory are the VMM's again");
    say!(
        "live update done: {} device(s) and {} KiB of guest memory carried across the kexec",
        devs.len(),
        mem.len() / 1024
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.stage {
        Stage::Stage1 { bdfs, no_kexec } => stage1(&cli.session, bdfs, no_kexec),
        Stage::Stage2 => stage2(&cli.session),
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
