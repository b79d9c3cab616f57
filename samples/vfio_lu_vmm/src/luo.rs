// SPDX-License-Identifier: GPL-2.0
//! The Live Update Orchestrator's uAPI (`include/uapi/linux/liveupdate.h`).
//!
//! No crate on crates.io covers `/dev/liveupdate` yet, so its few ioctls and
//! argument structures are written here, from the Linux 7.3 header. Every
//! structure starts with its own size, which the kernel uses to tell versions
//! apart.
//!
//! Lifetime rule that shapes a VMM: a session lives as long as its file. When
//! the session fd is closed before the kexec, LUO unpreserves everything in it,
//! so the process that owns the session must still hold it when
//! `reboot(LINUX_REBOOT_CMD_KEXEC)` is called.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use vmm_sys_util::ioctl::ioctl_with_mut_ref;
use vmm_sys_util::ioctl_io_nr;

/// `LIVEUPDATE_IOCTL_TYPE`.
const LIVEUPDATE_IOCTL_TYPE: u32 = 0xBA;
/// `LIVEUPDATE_SESSION_NAME_LENGTH`, the terminating NUL included.
pub const SESSION_NAME_LENGTH: usize = 64;

ioctl_io_nr!(LIVEUPDATE_IOCTL_CREATE_SESSION, LIVEUPDATE_IOCTL_TYPE, 0x00);
ioctl_io_nr!(
    LIVEUPDATE_IOCTL_RETRIEVE_SESSION,
    LIVEUPDATE_IOCTL_TYPE,
    0x01
);
ioctl_io_nr!(LIVEUPDATE_SESSION_PRESERVE_FD, LIVEUPDATE_IOCTL_TYPE, 0x40);
ioctl_io_nr!(LIVEUPDATE_SESSION_RETRIEVE_FD, LIVEUPDATE_IOCTL_TYPE, 0x41);
ioctl_io_nr!(LIVEUPDATE_SESSION_FINISH, LIVEUPDATE_IOCTL_TYPE, 0x42);

/// `struct liveupdate_ioctl_create_session` and
/// `struct liveupdate_ioctl_retrieve_session` (same layout).
#[repr(C)]
struct SessionArg {
    size: u32,
    fd: i32,
    name: [u8; SESSION_NAME_LENGTH],
}

/// `struct liveupdate_session_preserve_fd` and
/// `struct liveupdate_session_retrieve_fd` (same layout).
#[repr(C)]
struct FdArg {
    size: u32,
    fd: i32,
    token: u64,
}

/// `struct liveupdate_session_finish`.
#[repr(C)]
struct FinishArg {
    size: u32,
    reserved: u32,
}

const _: () = assert!(std::mem::size_of::<SessionArg>() == 72);
const _: () = assert!(std::mem::size_of::<FdArg>() == 16);
const _: () = assert!(std::mem::size_of::<FinishArg>() == 8);

/// Size of an argument structure, as its `size` field wants it.
fn size_of<T>() -> u32 {
    // The structures above are at most 72 bytes.
    std::mem::size_of::<T>() as u32
}

/// Runs one LUO ioctl on `file` and turns its status into a `Result`.
fn luo_ioctl<T>(file: &File, req: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: every LUO ioctl reads and writes at most `arg.size` bytes of its
    // argument, and each `T` used here is the `#[repr(C)]` structure of the
    // request, with `size` set to its own size; `arg` is valid for the call.
    let ret = unsafe { ioctl_with_mut_ref(file, req, arg) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `/dev/liveupdate`. Only one process may have it open at a time; sessions
/// made through it outlive it.
pub struct Orchestrator {
    file: File,
}

impl Orchestrator {
    /// Opens `/dev/liveupdate`.
    pub fn open() -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/liveupdate")?;
        Ok(Self { file })
    }

    fn session(&self, req: libc::c_ulong, name: &str) -> io::Result<Session> {
        let mut arg = SessionArg {
            size: size_of::<SessionArg>(),
            fd: -1,
            name: [0; SESSION_NAME_LENGTH],
        };
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= SESSION_NAME_LENGTH || bytes.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        arg.name[..bytes.len()].copy_from_slice(bytes);
        luo_ioctl(&self.file, req, &mut arg)?;
        // SAFETY: on success the kernel installed a new file descriptor in
        // `arg.fd` that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(arg.fd) };
        Ok(Session { file: fd.into() })
    }

    /// `LIVEUPDATE_IOCTL_CREATE_SESSION`: a new, empty session named `name`.
    pub fn create_session(&self, name: &str) -> io::Result<Session> {
        self.session(LIVEUPDATE_IOCTL_CREATE_SESSION(), name)
    }

    /// `LIVEUPDATE_IOCTL_RETRIEVE_SESSION`: the session of that name that the
    /// previous kernel handed over.
    pub fn retrieve_session(&self, name: &str) -> io::Result<Session> {
        self.session(LIVEUPDATE_IOCTL_RETRIEVE_SESSION(), name)
    }
}

/// A LUO session. Closing it before the kexec unpreserves its files; closing
/// it after the kexec without `finish()` leaves them to be cleaned up by the
/// kernel.
pub struct Session {
    file: File,
}

impl Session {
    /// `LIVEUPDATE_SESSION_PRESERVE_FD`: `fd` is to survive the next kexec,
    /// known by `token` (unique within the session).
    pub fn preserve_fd(&self, fd: &impl AsRawFd, token: u64) -> io::Result<()> {
        let mut arg = FdArg {
            size: size_of::<FdArg>(),
            fd: fd.as_raw_fd(),
            token,
        };
        luo_ioctl(&self.file, LIVEUPDATE_SESSION_PRESERVE_FD(), &mut arg)
    }

    /// `LIVEUPDATE_SESSION_RETRIEVE_FD`: the file preserved as `token`, as a
    /// new file descriptor of this process.
    pub fn retrieve_fd(&self, token: u64) -> io::Result<OwnedFd> {
        let mut arg = FdArg {
            size: size_of::<FdArg>(),
            fd: -1,
            token,
        };
        luo_ioctl(&self.file, LIVEUPDATE_SESSION_RETRIEVE_FD(), &mut arg)?;
        // SAFETY: on success the kernel installed a new file descriptor in
        // `arg.fd` that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(arg.fd) })
    }

    /// `LIVEUPDATE_SESSION_FINISH`: every file was retrieved and taken back
    /// into use; the handlers release what they kept of the old kernel.
    pub fn finish(&self) -> io::Result<()> {
        let mut arg = FinishArg {
            size: size_of::<FinishArg>(),
            reserved: 0,
        };
        luo_ioctl(&self.file, LIVEUPDATE_SESSION_FINISH(), &mut arg)
    }
}
