//! The FreeBSD backend's kernel operations, one function per call. This is
//! the crate's only module with `unsafe`; every block says why it is sound.
//! Only the single-threaded supervisor helper and its forked children call
//! the jail and mount functions; the daemon calls the read-only ones
//! (sysctl, getfsstat, rctl usage) and, in `cleanup`, the removals.

use std::ffi::{CStr, CString, c_char, c_int};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::{MntFlags, Nmount};

use crate::kernel_args::JailIov;

/// A `jail_set(2)`/`jail_get(2)` failure: the errno and the kernel's
/// `errmsg`, which names the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{errno}{}", if .errmsg.is_empty() { String::new() } else { format!(" ({})", .errmsg) })]
pub struct JailError {
    /// errno.
    pub errno: Errno,
    /// The kernel's message, possibly empty.
    pub errmsg: String,
}

fn errmsg_of(buf: &[u8]) -> String {
    CStr::from_bytes_until_nul(buf)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `jail_set(2)` with `JAIL_CREATE`: creates the jail from `params` and
/// returns its jid.
pub fn jail_create(params: &[JailIov]) -> Result<i32, JailError> {
    let mut errmsg = [0u8; 256];
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(params.len() * 2 + 2);
    for p in params {
        iov.push(libc::iovec {
            iov_base: p.name.as_ptr().cast_mut().cast(),
            iov_len: p.name.as_bytes_with_nul().len(),
        });
        iov.push(match &p.value {
            Some(v) => libc::iovec {
                iov_base: v.as_ptr().cast_mut().cast(),
                iov_len: v.len(),
            },
            None => libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        });
    }
    iov.push(libc::iovec {
        iov_base: c"errmsg".as_ptr().cast_mut().cast(),
        iov_len: c"errmsg".to_bytes_with_nul().len(),
    });
    iov.push(libc::iovec {
        iov_base: errmsg.as_mut_ptr().cast(),
        iov_len: errmsg.len(),
    });
    let n = libc::c_uint::try_from(iov.len()).map_err(|_| JailError {
        errno: Errno::E2BIG,
        errmsg: String::new(),
    })?;
    // SAFETY: every iovec points into `params` (borrowed for the whole call)
    // or `errmsg` (a live local the kernel writes at most its length into);
    // the kernel only reads the names and values (JAIL_CREATE without
    // JAIL_ATTACH does not touch the caller otherwise).
    let jid = unsafe { libc::jail_set(iov.as_mut_ptr(), n, libc::JAIL_CREATE) };
    if jid < 0 {
        return Err(JailError {
            errno: Errno::last(),
            errmsg: errmsg_of(&errmsg),
        });
    }
    Ok(jid)
}

/// `jail_get(2)` by name: the jid of the jail called `name`, or `None` if
/// there is none (a dying jail, whose processes are still exiting, counts as
/// gone: it can no longer be attached to).
pub fn jail_find(name: &str) -> Result<Option<i32>, JailError> {
    let cname = CString::new(name).map_err(|_| JailError {
        errno: Errno::EINVAL,
        errmsg: "name contains NUL".into(),
    })?;
    let mut errmsg = [0u8; 256];
    let mut iov = [
        libc::iovec {
            iov_base: c"name".as_ptr().cast_mut().cast(),
            iov_len: c"name".to_bytes_with_nul().len(),
        },
        libc::iovec {
            iov_base: cname.as_ptr().cast_mut().cast(),
            iov_len: cname.as_bytes_with_nul().len(),
        },
        libc::iovec {
            iov_base: c"errmsg".as_ptr().cast_mut().cast(),
            iov_len: c"errmsg".to_bytes_with_nul().len(),
        },
        libc::iovec {
            iov_base: errmsg.as_mut_ptr().cast(),
            iov_len: errmsg.len(),
        },
    ];
    // SAFETY: the iovecs point at live NUL-terminated strings and at
    // `errmsg`, which the kernel writes at most its length into; jail_get
    // with only "name" as input writes nothing else.
    let jid = unsafe { libc::jail_get(iov.as_mut_ptr(), 4, 0) };
    if jid >= 0 {
        return Ok(Some(jid));
    }
    match Errno::last() {
        Errno::ENOENT => Ok(None),
        errno => Err(JailError {
            errno,
            errmsg: errmsg_of(&errmsg),
        }),
    }
}

/// `jail_attach(2)`: the calling process enters jail `jid`; its root and
/// working directory become the jail's path.
pub fn jail_attach(jid: i32) -> Result<(), std::io::Error> {
    jail::RunningJail::from_jid_unchecked(jid)
        .attach()
        .map_err(|e| match e {
            jail::JailError::JailAttachError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
}

/// `jail_remove(2)`: kills every process of jail `jid` and removes it
/// (persistent or not).
pub fn jail_remove(jid: i32) -> Result<(), Errno> {
    // SAFETY: jail_remove takes an integer and touches no memory of ours.
    Errno::result(unsafe { libc::jail_remove(jid) }).map(drop)
}

/// An `nmount(2)` failure, with the kernel's `errmsg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{errno}{}", if .errmsg.is_empty() { String::new() } else { format!(" ({})", .errmsg) })]
pub struct MountError {
    /// errno.
    pub errno: Errno,
    /// The kernel's message, possibly empty.
    pub errmsg: String,
}

/// `nmount(2)` with the given name/value pairs (a name alone for a flag
/// option such as "ro"), plus `MNT_UPDATE` for an update of an existing
/// mount.
pub fn nmount(pairs: &[(String, Option<String>)], update: bool) -> Result<(), MountError> {
    let nul = |_| MountError {
        errno: Errno::EINVAL,
        errmsg: "mount option contains NUL".into(),
    };
    let owned: Vec<(CString, Option<CString>)> = pairs
        .iter()
        .map(|(k, v)| {
            Ok((
                CString::new(k.as_str()).map_err(nul)?,
                v.as_deref().map(CString::new).transpose().map_err(nul)?,
            ))
        })
        .collect::<Result<_, MountError>>()?;
    let mut m = Nmount::new();
    for (k, v) in &owned {
        match v {
            Some(v) => m.str_opt(k, v),
            None => m.null_opt(k),
        };
    }
    let flags = if update {
        MntFlags::MNT_UPDATE
    } else {
        MntFlags::empty()
    };
    m.nmount(flags).map_err(|e| MountError {
        errno: e.error(),
        errmsg: e.errmsg().unwrap_or_default().to_owned(),
    })
}

/// `unmount(2)` of the filesystem with id `fsid` (`MNT_BYFSID`, so no path
/// is looked up, and a symlink planted inside the jail cannot redirect it),
/// with `MNT_FORCE` when `force`.
pub fn unmount_fsid(fsid: [i32; 2], force: bool) -> Result<(), Errno> {
    let name = format!("FSID:{}:{}", fsid[0], fsid[1]);
    let mut flags = MntFlags::MNT_BYFSID;
    if force {
        flags |= MntFlags::MNT_FORCE;
    }
    nix::mount::unmount(name.as_str(), flags)
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// Filesystem id (for [`unmount_fsid`]).
    pub fsid: [i32; 2],
    /// Filesystem type ("nullfs").
    pub fstype: String,
}

fn c_chars(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `getfsstat(2)` with `MNT_NOWAIT`: every mount of the system, oldest
/// first, by mount point.
pub fn mounts() -> Result<Vec<(PathBuf, Mounted)>, Errno> {
    let size = std::mem::size_of::<libc::statfs>();
    for _ in 0..8 {
        // SAFETY: a null buffer asks only for the number of mounts.
        let count =
            Errno::result(unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) })?;
        // Room for a few mounts made meanwhile; a full buffer means we may
        // have missed some: try again.
        let room = usize::try_from(count).unwrap_or(0) + 16;
        // SAFETY: statfs is plain old data; all-zero is a valid value.
        let mut buf: Vec<libc::statfs> = vec![unsafe { std::mem::zeroed() }; room];
        let bytes = libc::c_long::try_from(room * size).map_err(|_| Errno::EOVERFLOW)?;
        // SAFETY: the kernel writes at most `bytes` bytes of statfs records
        // into `buf`, which holds exactly that many.
        let got =
            Errno::result(unsafe { libc::getfsstat(buf.as_mut_ptr(), bytes, libc::MNT_NOWAIT) })?;
        let got = usize::try_from(got).unwrap_or(0);
        if got == room {
            continue;
        }
        return Ok(buf
            .iter()
            .take(got)
            .map(|s| {
                (
                    PathBuf::from(c_chars(&s.f_mntonname)),
                    Mounted {
                        // SAFETY: fsid_t is `struct { int32_t val[2]; }`
                        // (<sys/_types.h>); libc keeps the field private.
                        fsid: unsafe { std::ptr::read((&raw const s.f_fsid).cast::<[i32; 2]>()) },
                        fstype: c_chars(&s.f_fstypename),
                    },
                )
            })
            .collect());
    }
    Err(Errno::EAGAIN)
}

/// `fstatfs(2)`: the mount point of the filesystem `fd` lives on.
pub fn mount_point_of(fd: BorrowedFd<'_>) -> Result<PathBuf, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs fills one statfs at the pointer, a live local.
    Errno::result(unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatfs succeeded, so the record is initialised.
    let st = unsafe { st.assume_init() };
    Ok(PathBuf::from(c_chars(&st.f_mntonname)))
}

unsafe extern "C" {
    // <sys/rctl.h>, in FreeBSD's libc (the libc crate does not bind them).
    fn rctl_add_rule(
        inbufp: *const c_char,
        inbuflen: libc::size_t,
        outbufp: *mut c_char,
        outbuflen: libc::size_t,
    ) -> c_int;
    fn rctl_remove_rule(
        inbufp: *const c_char,
        inbuflen: libc::size_t,
        outbufp: *mut c_char,
        outbuflen: libc::size_t,
    ) -> c_int;
    fn rctl_get_racct(
        inbufp: *const c_char,
        inbuflen: libc::size_t,
        outbufp: *mut c_char,
        outbuflen: libc::size_t,
    ) -> c_int;
}

/// `rctl_add_rule(2)`: adds one rule ("jail:NAME:vmemoryuse:deny=N").
pub fn rctl_add(rule: &str) -> Result<(), Errno> {
    let rule = CString::new(rule).map_err(|_| Errno::EINVAL)?;
    let len = rule.as_bytes_with_nul().len();
    // SAFETY: the input is a live NUL-terminated string of `len` bytes
    // (rctl(8) passes the NUL too); there is no output buffer.
    Errno::result(unsafe { rctl_add_rule(rule.as_ptr(), len, std::ptr::null_mut(), 0) }).map(drop)
}

/// `rctl_remove_rule(2)`: removes every rule matching `filter`
/// ("jail:NAME"). ESRCH when none matched; ENOSYS when racct is off.
pub fn rctl_remove(filter: &str) -> Result<(), Errno> {
    let filter = CString::new(filter).map_err(|_| Errno::EINVAL)?;
    let len = filter.as_bytes_with_nul().len();
    // SAFETY: as for rctl_add.
    Errno::result(unsafe { rctl_remove_rule(filter.as_ptr(), len, std::ptr::null_mut(), 0) })
        .map(drop)
}

/// `rctl_get_racct(2)`: the resource usage of `filter` ("jail:NAME:") as
/// "resource=amount,..." text.
pub fn rctl_usage(filter: &str) -> Result<String, Errno> {
    let filter = CString::new(filter).map_err(|_| Errno::EINVAL)?;
    let len = filter.as_bytes_with_nul().len();
    let mut out = vec![0u8; 4096];
    loop {
        // SAFETY: the input is a live NUL-terminated string; the kernel
        // writes at most `out.len()` bytes into `out`.
        let rc =
            unsafe { rctl_get_racct(filter.as_ptr(), len, out.as_mut_ptr().cast(), out.len()) };
        match Errno::result(rc) {
            Ok(_) => return Ok(crate::kernel_args::sysctl_string(&out)),
            Err(Errno::ERANGE) if out.len() < 1 << 20 => out.resize(out.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// `sysctlbyname(3)`: the raw value of `name`.
pub fn sysctl(name: &str) -> Result<Vec<u8>, Errno> {
    let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
    let mut len: libc::size_t = 0;
    // SAFETY: a null old pointer asks only for the size, written to `len`.
    Errno::result(unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            std::ptr::null_mut(),
            &raw mut len,
            std::ptr::null(),
            0,
        )
    })?;
    let mut buf = vec![0u8; len + 16];
    let mut len = buf.len();
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which holds
    // that many, and stores the written size in `len`.
    Errno::result(unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            &raw mut len,
            std::ptr::null(),
            0,
        )
    })?;
    buf.truncate(len);
    Ok(buf)
}

/// `struct in_aliasreq` from <netinet/in_var.h>.
#[repr(C)]
struct InAliasReq {
    ifra_name: [c_char; libc::IFNAMSIZ],
    ifra_addr: libc::sockaddr_in,
    ifra_broadaddr: libc::sockaddr_in,
    ifra_mask: libc::sockaddr_in,
    ifra_vhid: c_int,
}

/// `_IOW('i', 43, struct in_aliasreq)`.
const SIOCAIFADDR: libc::c_ulong = 0x8000_0000
    | ((std::mem::size_of::<InAliasReq>() as libc::c_ulong & 0x1fff) << 16)
    | ((b'i' as libc::c_ulong) << 8)
    | 43;
fn ifname(name: &str) -> [c_char; libc::IFNAMSIZ] {
    let mut out = [0 as c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *o = b as c_char;
    }
    out
}

fn sockaddr_v4(a: Ipv4Addr) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is valid.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_len = std::mem::size_of::<libc::sockaddr_in>() as u8;
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_addr = libc::in_addr {
        s_addr: u32::from_ne_bytes(a.octets()),
    };
    s
}

fn inet_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) takes integers and returns a new descriptor.
    let fd = Errno::result(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(SIOCAIFADDR)`: adds IPv4 address `addr` with netmask `mask` to
/// interface `ifname` of the caller's network stack (the host's, or a vnet
/// jail's after `jail_attach`). On a loopback interface this also marks it
/// up.
pub fn add_inet_address(ifname_: &str, addr: Ipv4Addr, mask: Ipv4Addr) -> Result<(), Errno> {
    let sock = inet_socket()?;
    let req = InAliasReq {
        ifra_name: ifname(ifname_),
        ifra_addr: sockaddr_v4(addr),
        // SAFETY: sockaddr_in is plain old data; all-zero means "none".
        ifra_broadaddr: unsafe { std::mem::zeroed() },
        ifra_mask: sockaddr_v4(mask),
        ifra_vhid: 0,
    };
    // SAFETY: SIOCAIFADDR reads one in_aliasreq from the pointer, a live
    // local of exactly the size encoded in the request number.
    Errno::result(unsafe { libc::ioctl(sock.as_fd().as_raw_fd(), SIOCAIFADDR, &raw const req) })
        .map(drop)
}
