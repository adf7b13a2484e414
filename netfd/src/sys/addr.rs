//! Socket addresses in the kernel's layout.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A `sockaddr_storage` and its length.
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.as_inet(), self.as_unix_path()) {
            (Some(a), _) => write!(f, "{a}"),
            (None, Some(p)) => write!(f, "unix:{}", p.display()),
            _ => write!(f, "sockaddr(family {})", self.family()),
        }
    }
}

impl SockAddr {
    pub(crate) fn empty() -> SockAddr {
        SockAddr {
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    pub(crate) fn len(&self) -> libc::socklen_t {
        self.len
    }

    pub(crate) fn as_mut_ptr(&mut self) -> (*mut libc::sockaddr, *mut libc::socklen_t) {
        (
            (&mut self.storage as *mut libc::sockaddr_storage).cast(),
            &mut self.len,
        )
    }

    pub fn family(&self) -> i32 {
        i32::from(self.storage.ss_family)
    }

    pub fn from_inet(addr: SocketAddr) -> SockAddr {
        let mut out = SockAddr::empty();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write(
                        (&mut out.storage as *mut libc::sockaddr_storage).cast(),
                        sin,
                    )
                };
                out.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write(
                        (&mut out.storage as *mut libc::sockaddr_storage).cast(),
                        sin6,
                    )
                };
                out.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        out
    }

    pub fn from_unix_path(path: &Path) -> io::Result<SockAddr> {
        let bytes = path.as_os_str().as_bytes();
        let mut sun = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; 108],
        };
        if bytes.is_empty() || bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "unix socket path {} must be 1 to {} bytes with no NUL",
                    path.display(),
                    sun.sun_path.len() - 1
                ),
            ));
        }
        for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        let mut out = SockAddr::empty();
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_un.
        unsafe {
            std::ptr::write(
                (&mut out.storage as *mut libc::sockaddr_storage).cast(),
                sun,
            )
        };
        out.len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
        Ok(out)
    }

    /// A unix address of the family alone: bound, it asks Linux to pick a
    /// unique abstract name (autobind); received, it names an unbound peer.
    pub fn unix_unnamed() -> SockAddr {
        let mut out = SockAddr::empty();
        out.storage.ss_family = libc::AF_UNIX as libc::sa_family_t;
        out.len = std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t;
        out
    }

    /// A Linux abstract unix address: `name` without the leading NUL.
    pub fn from_abstract_name(name: &[u8]) -> io::Result<SockAddr> {
        let mut sun = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; 108],
        };
        if name.len() >= sun.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "abstract unix socket name of {} bytes: at most {}",
                    name.len(),
                    sun.sun_path.len() - 1
                ),
            ));
        }
        for (dst, src) in sun.sun_path[1..].iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        let mut out = SockAddr::empty();
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_un.
        unsafe {
            std::ptr::write(
                (&mut out.storage as *mut libc::sockaddr_storage).cast(),
                sun,
            )
        };
        out.len = (std::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
        Ok(out)
    }

    /// The name of an abstract unix address (without the leading NUL).
    pub fn as_abstract_name(&self) -> Option<Vec<u8>> {
        let path = self.unix_path_bytes()?;
        match path.first() {
            Some(0) => Some(path[1..].to_vec()),
            _ => None,
        }
    }

    /// Whether this is a unix address with no name (an unbound socket).
    pub fn is_unix_unnamed(&self) -> bool {
        self.unix_path_bytes().is_some_and(|p| p.is_empty())
    }

    /// The `sun_path` bytes the length covers, for a unix address.
    fn unix_path_bytes(&self) -> Option<Vec<u8>> {
        if self.family() != libc::AF_UNIX {
            return None;
        }
        // SAFETY: the family says the storage holds a sockaddr_un.
        let sun: libc::sockaddr_un = unsafe { std::ptr::read(self.as_ptr().cast()) };
        let max = (self.len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>());
        Some(
            sun.sun_path[..max.min(sun.sun_path.len())]
                .iter()
                .map(|&c| c as u8)
                .collect(),
        )
    }

    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin: libc::sockaddr_in = unsafe { std::ptr::read(self.as_ptr().cast()) };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read(self.as_ptr().cast()) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// The path of a named unix socket address; `None` for unnamed ones.
    pub fn as_unix_path(&self) -> Option<PathBuf> {
        if self.family() != libc::AF_UNIX {
            return None;
        }
        // SAFETY: the family says the storage holds a sockaddr_un.
        let sun: libc::sockaddr_un = unsafe { std::ptr::read(self.as_ptr().cast()) };
        let max = (self.len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>());
        let bytes: Vec<u8> = sun.sun_path[..max.min(sun.sun_path.len())]
            .iter()
            .map(|&c| c as u8)
            .take_while(|&b| b != 0)
            .collect();
        if bytes.is_empty() {
            return None;
        }
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)))
    }
}
