//! Every raw syscall netfd makes, in one place, each wrapped by the probe.
//!
//! Functions take the number to pass to the kernel and the [`OwnerId`] on
//! whose behalf the call is made, so an observer can check every call against
//! who owns the number at that moment. Nothing above this module calls libc.

mod addr;

pub use addr::SockAddr;

use crate::probe::{self, OwnerId, SysOp, Syscall};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Run `raw` (a libc call returning -1 on error) between the probe's hooks.
#[inline]
fn probed(
    op: SysOp,
    fd: RawFd,
    owner: OwnerId,
    new_owner: OwnerId,
    raw: impl FnOnce() -> i64,
) -> io::Result<i64> {
    let call = Syscall {
        op,
        fd,
        owner,
        new_owner,
    };
    probe::before_syscall(&call);
    let ret = raw();
    let result = if ret < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret)
    };
    probe::after_syscall(&call, result);
    result.map_err(io::Error::from_raw_os_error)
}

fn as_fd(ret: i64) -> RawFd {
    // Descriptor numbers always fit: the kernel returned an int.
    ret as RawFd
}

/// Whether `err` is the kernel's "try again".
#[inline]
pub fn is_would_block(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN))
}

/// Whether `err` is an interrupted call to repeat.
#[inline]
pub fn is_interrupted(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EINTR))
}

/// A non-blocking, close-on-exec socket.
pub fn socket(domain: i32, ty: i32, new_owner: OwnerId) -> io::Result<RawFd> {
    probed(SysOp::Socket, -1, OwnerId::NONE, new_owner, || {
        // SAFETY: plain syscall with integer arguments.
        i64::from(unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })
    })
    .map(as_fd)
}

/// Accept one connection as a non-blocking, close-on-exec descriptor.
pub fn accept(fd: RawFd, owner: OwnerId, new_owner: OwnerId) -> io::Result<(RawFd, SockAddr)> {
    let mut addr = SockAddr::empty();
    let n = probed(SysOp::Accept, fd, owner, new_owner, || {
        let (ptr, len) = addr.as_mut_ptr();
        // SAFETY: `ptr`/`len` describe `addr`'s storage, which outlives the call.
        i64::from(unsafe { libc::accept4(fd, ptr, len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) })
    })?;
    Ok((as_fd(n), addr))
}

pub fn connect(fd: RawFd, owner: OwnerId, addr: &SockAddr) -> io::Result<()> {
    probed(SysOp::Connect, fd, owner, OwnerId::NONE, || {
        // SAFETY: `addr` points to a valid sockaddr of the given length.
        i64::from(unsafe { libc::connect(fd, addr.as_ptr(), addr.len()) })
    })
    .map(drop)
}

pub fn bind(fd: RawFd, owner: OwnerId, addr: &SockAddr) -> io::Result<()> {
    probed(SysOp::Bind, fd, owner, OwnerId::NONE, || {
        // SAFETY: `addr` points to a valid sockaddr of the given length.
        i64::from(unsafe { libc::bind(fd, addr.as_ptr(), addr.len()) })
    })
    .map(drop)
}

pub fn listen(fd: RawFd, owner: OwnerId, backlog: i32) -> io::Result<()> {
    probed(SysOp::Listen, fd, owner, OwnerId::NONE, || {
        // SAFETY: plain syscall with integer arguments.
        i64::from(unsafe { libc::listen(fd, backlog) })
    })
    .map(drop)
}

pub fn read(fd: RawFd, owner: OwnerId, buf: &mut [u8]) -> io::Result<usize> {
    probed(SysOp::Read, fd, owner, OwnerId::NONE, || {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) as i64 }
    })
    .map(|n| n as usize)
}

pub fn write(fd: RawFd, owner: OwnerId, buf: &[u8]) -> io::Result<usize> {
    probed(SysOp::Write, fd, owner, OwnerId::NONE, || {
        // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
        // MSG_NOSIGNAL: a write to a reset peer returns EPIPE, not SIGPIPE.
        unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) as i64 }
    })
    .map(|n| n as usize)
}

pub fn recv_from(fd: RawFd, owner: OwnerId, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    let mut addr = SockAddr::empty();
    let n = probed(SysOp::RecvFrom, fd, owner, OwnerId::NONE, || {
        let (ptr, len) = addr.as_mut_ptr();
        // SAFETY: `buf` and `addr` are valid for writes of their lengths.
        unsafe { libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, ptr, len) as i64 }
    })?;
    Ok((n as usize, addr))
}

pub fn send_to(fd: RawFd, owner: OwnerId, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
    probed(SysOp::SendTo, fd, owner, OwnerId::NONE, || {
        // SAFETY: `buf` and `addr` are valid for reads of their lengths.
        unsafe {
            libc::sendto(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
                addr.as_ptr(),
                addr.len(),
            ) as i64
        }
    })
    .map(|n| n as usize)
}

pub fn shutdown(fd: RawFd, owner: OwnerId, how: std::net::Shutdown) -> io::Result<()> {
    let how = match how {
        std::net::Shutdown::Read => libc::SHUT_RD,
        std::net::Shutdown::Write => libc::SHUT_WR,
        std::net::Shutdown::Both => libc::SHUT_RDWR,
    };
    probed(SysOp::Shutdown, fd, owner, OwnerId::NONE, || {
        // SAFETY: plain syscall with integer arguments.
        i64::from(unsafe { libc::shutdown(fd, how) })
    })
    .map(drop)
}

/// recv(2) with `flags` (`MSG_PEEK` for a peek, 0 for a connected
/// datagram socket's recv). Reported as a read.
pub fn recv(fd: RawFd, owner: OwnerId, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    probed(SysOp::Read, fd, owner, OwnerId::NONE, || {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) as i64 }
    })
    .map(|n| n as usize)
}

/// recvfrom(2) with `flags` (`MSG_PEEK` for `peek_from`).
pub fn recv_from_flags(
    fd: RawFd,
    owner: OwnerId,
    buf: &mut [u8],
    flags: i32,
) -> io::Result<(usize, SockAddr)> {
    let mut addr = SockAddr::empty();
    let n = probed(SysOp::RecvFrom, fd, owner, OwnerId::NONE, || {
        let (ptr, len) = addr.as_mut_ptr();
        // SAFETY: `buf` and `addr` are valid for writes of their lengths.
        unsafe { libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), flags, ptr, len) as i64 }
    })?;
    Ok((n as usize, addr))
}

/// readv(2) into `bufs`. Reported as a read.
pub fn readv(fd: RawFd, owner: OwnerId, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(libc::c_int::MAX as usize) as libc::c_int;
    probed(SysOp::Read, fd, owner, OwnerId::NONE, || {
        // SAFETY: `IoSliceMut` is ABI-compatible with `iovec` on Unix, and
        // each one describes a buffer valid for writes for the call.
        unsafe { libc::readv(fd, bufs.as_mut_ptr().cast(), count) as i64 }
    })
    .map(|n| n as usize)
}

/// sendmsg(2) of `bufs` with MSG_NOSIGNAL (writev(2) would raise SIGPIPE on
/// a reset peer). Reported as a write.
pub fn writev(fd: RawFd, owner: OwnerId, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::c_int::MAX as usize) as _;
    probed(SysOp::Write, fd, owner, OwnerId::NONE, || {
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; `msg`
        // points at `bufs`, valid for reads for the call; the kernel does not
        // write through `msg_iov`.
        unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) as i64 }
    })
    .map(|n| n as usize)
}

/// A second, close-on-exec number for the socket behind `fd`, handed to
/// `new_owner` (reported as a call that creates a descriptor, as socket(2)).
pub fn dup(fd: RawFd, owner: OwnerId, new_owner: OwnerId) -> io::Result<RawFd> {
    let call = Syscall {
        op: SysOp::Socket,
        fd,
        owner,
        new_owner,
    };
    probe::before_syscall(&call);
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    let result = if ret < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(i64::from(ret))
    };
    probe::after_syscall(&call, result);
    result.map(as_fd).map_err(io::Error::from_raw_os_error)
}

/// A second number for the socket behind `fd`, leaving netfd as an
/// `OwnedFd` (reported as created for no owner).
pub fn dup_owned(fd: RawFd, owner: OwnerId) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let n = dup(fd, owner, OwnerId::NONE)?;
    // SAFETY: `n` came from the kernel just now and nobody else has it: the
    // OwnedFd is its only owner.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}

/// A never-connected Unix stream socket that leaves netfd as an `OwnedFd`
/// (`as_fd`'s placeholder on a closed socket; its calls fail ENOTCONN).
pub fn placeholder_socket() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let n = socket(libc::AF_UNIX, libc::SOCK_STREAM, OwnerId::NONE)?;
    // SAFETY: `n` came from the kernel just now and nobody else has it: the
    // OwnedFd is its only owner.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}

/// Lend `fd` to `f` as a `BorrowedFd`. Only for a caller that holds a
/// reference on the number under its lifetime protocol (`with_fd`): the
/// number stays open until `f` returns, and `f`'s signature keeps the borrow
/// from escaping.
pub(crate) fn with_borrowed<T>(fd: RawFd, f: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> T) -> T {
    // SAFETY: the caller's reference keeps `fd` open for the duration of `f`,
    // and the higher-ranked lifetime in `f` ends the borrow with the call.
    f(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
}

/// Set or clear O_NONBLOCK on the open file behind `fd` (shared by every
/// number for it). Reported as a socket option.
pub fn set_nonblocking(fd: RawFd, owner: OwnerId, on: bool) -> io::Result<()> {
    probed(SysOp::SetSockOpt, fd, owner, OwnerId::NONE, || {
        // SAFETY: plain syscalls with integer arguments.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return -1;
        }
        let want = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if want == flags {
            return 0;
        }
        // SAFETY: plain syscall with integer arguments.
        i64::from(unsafe { libc::fcntl(fd, libc::F_SETFL, want) })
    })
    .map(drop)
}

/// Whether O_NONBLOCK is set on `fd` (a descriptor being adopted: netfd
/// keeps what it had as the socket's `set_nonblocking` flag).
pub fn is_nonblocking(fd: RawFd, owner: OwnerId) -> io::Result<bool> {
    let flags = probed(SysOp::GetSockOpt, fd, owner, OwnerId::NONE, || {
        // SAFETY: plain syscall with integer arguments.
        i64::from(unsafe { libc::fcntl(fd, libc::F_GETFL) })
    })?;
    Ok(flags & i64::from(libc::O_NONBLOCK) != 0)
}

/// A connected pair of Unix sockets of type `ty`, non-blocking and
/// close-on-exec, for `owners`.
pub fn socketpair(ty: i32, owners: [OwnerId; 2]) -> io::Result<[RawFd; 2]> {
    let mut fds = [-1 as libc::c_int; 2];
    let call = Syscall {
        op: SysOp::Socket,
        fd: -1,
        owner: OwnerId::NONE,
        new_owner: owners[0],
    };
    probe::before_syscall(&call);
    // SAFETY: `fds` is valid for writes of two ints for the call.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if ret < 0 {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        probe::after_syscall(&call, Err(errno));
        return Err(io::Error::from_raw_os_error(errno));
    }
    // Two numbers, two owners: report each as its own creation.
    probe::after_syscall(&call, Ok(i64::from(fds[0])));
    let second = Syscall {
        new_owner: owners[1],
        ..call
    };
    probe::before_syscall(&second);
    probe::after_syscall(&second, Ok(i64::from(fds[1])));
    Ok(fds)
}

/// Release the number. Linux releases it even when close reports EINTR, so
/// the call is never repeated.
pub fn close(fd: RawFd, owner: OwnerId) -> io::Result<()> {
    probed(SysOp::Close, fd, owner, OwnerId::NONE, || {
        // SAFETY: plain syscall; the caller gives up the number.
        i64::from(unsafe { libc::close(fd) })
    })
    .map(drop)
}

pub fn setsockopt_int(
    fd: RawFd,
    owner: OwnerId,
    level: i32,
    name: i32,
    value: i32,
) -> io::Result<()> {
    probed(SysOp::SetSockOpt, fd, owner, OwnerId::NONE, || {
        // SAFETY: `value` is a valid c_int for the duration of the call.
        i64::from(unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        })
    })
    .map(drop)
}

pub fn getsockopt_int(fd: RawFd, owner: OwnerId, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    probed(SysOp::GetSockOpt, fd, owner, OwnerId::NONE, || {
        // SAFETY: `value`/`len` are valid for writes for the duration of the call.
        i64::from(unsafe {
            libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len)
        })
    })?;
    Ok(value)
}

/// IP_ADD_MEMBERSHIP (`join`) or IP_DROP_MEMBERSHIP: the IPv4 multicast
/// group `group` on the interface with address `interface` (std's
/// `join_multicast_v4`).
pub fn multicast_membership_v4(
    fd: RawFd,
    owner: OwnerId,
    join: bool,
    group: std::net::Ipv4Addr,
    interface: std::net::Ipv4Addr,
) -> io::Result<()> {
    let mreq = libc::ip_mreq {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from_ne_bytes(group.octets()),
        },
        imr_interface: libc::in_addr {
            s_addr: u32::from_ne_bytes(interface.octets()),
        },
    };
    let name = if join {
        libc::IP_ADD_MEMBERSHIP
    } else {
        libc::IP_DROP_MEMBERSHIP
    };
    probed(SysOp::SetSockOpt, fd, owner, OwnerId::NONE, || {
        // SAFETY: `mreq` is a valid ip_mreq for the duration of the call and
        // the length passed is its size.
        i64::from(unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                name,
                (&mreq as *const libc::ip_mreq).cast(),
                std::mem::size_of::<libc::ip_mreq>() as libc::socklen_t,
            )
        })
    })
    .map(drop)
}

/// IPV6_ADD_MEMBERSHIP (`join`) or IPV6_DROP_MEMBERSHIP: the IPv6 multicast
/// group `group` on interface index `interface` (0: the kernel chooses; std's
/// `join_multicast_v6`).
pub fn multicast_membership_v6(
    fd: RawFd,
    owner: OwnerId,
    join: bool,
    group: std::net::Ipv6Addr,
    interface: u32,
) -> io::Result<()> {
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: interface as libc::c_uint,
    };
    let name = if join {
        libc::IPV6_ADD_MEMBERSHIP
    } else {
        libc::IPV6_DROP_MEMBERSHIP
    };
    probed(SysOp::SetSockOpt, fd, owner, OwnerId::NONE, || {
        // SAFETY: `mreq` is a valid ipv6_mreq for the duration of the call
        // and the length passed is its size.
        i64::from(unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                name,
                (&mreq as *const libc::ipv6_mreq).cast(),
                std::mem::size_of::<libc::ipv6_mreq>() as libc::socklen_t,
            )
        })
    })
    .map(drop)
}

/// SO_LINGER: `None` turns lingering off.
pub fn set_linger(fd: RawFd, owner: OwnerId, linger: Option<Duration>) -> io::Result<()> {
    let value = libc::linger {
        l_onoff: i32::from(linger.is_some()),
        l_linger: linger.map_or(0, |d| d.as_secs().min(i32::MAX as u64) as i32),
    };
    probed(SysOp::SetSockOpt, fd, owner, OwnerId::NONE, || {
        // SAFETY: `value` is a valid linger struct for the duration of the call.
        i64::from(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&value as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        })
    })
    .map(drop)
}

pub fn getsockname(fd: RawFd, owner: OwnerId) -> io::Result<SockAddr> {
    let mut addr = SockAddr::empty();
    probed(SysOp::GetSockName, fd, owner, OwnerId::NONE, || {
        let (ptr, len) = addr.as_mut_ptr();
        // SAFETY: `ptr`/`len` describe `addr`'s storage.
        i64::from(unsafe { libc::getsockname(fd, ptr, len) })
    })?;
    Ok(addr)
}

pub fn getpeername(fd: RawFd, owner: OwnerId) -> io::Result<SockAddr> {
    let mut addr = SockAddr::empty();
    probed(SysOp::GetPeerName, fd, owner, OwnerId::NONE, || {
        let (ptr, len) = addr.as_mut_ptr();
        // SAFETY: `ptr`/`len` describe `addr`'s storage.
        i64::from(unsafe { libc::getpeername(fd, ptr, len) })
    })?;
    Ok(addr)
}

/// What a waiter polls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// Outcome of [`poll_with_wake`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// The socket is ready (or in error / hung up).
    pub ready: bool,
    /// The wake descriptor was signalled.
    pub woken: bool,
}

/// Wait until `fd` is ready for `interest`, `wake` (an eventfd) is
/// signalled, or `timeout` passes. EINTR counts as a spurious wake-up.
pub fn poll_with_wake(
    fd: RawFd,
    owner: OwnerId,
    interest: Interest,
    wake: RawFd,
    timeout: Option<Duration>,
) -> io::Result<PollOutcome> {
    let events = match interest {
        Interest::Read => libc::POLLIN | libc::POLLRDHUP,
        Interest::Write => libc::POLLOUT,
    };
    let mut fds = [
        libc::pollfd {
            fd,
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let r = probed(SysOp::Poll, fd, owner, OwnerId::NONE, || {
        // SAFETY: `fds` is a valid array of two pollfds; `ts_ptr` is null or
        // points to `ts`, both live for the call.
        i64::from(unsafe { libc::ppoll(fds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) })
    });
    match r {
        Ok(_) => Ok(PollOutcome {
            ready: fds[0].revents != 0,
            woken: fds[1].revents != 0,
        }),
        Err(e) if is_interrupted(&e) => Ok(PollOutcome::default()),
        Err(e) => Err(e),
    }
}

/// A non-blocking, close-on-exec eventfd owned by netfd itself.
pub fn eventfd() -> io::Result<RawFd> {
    probed(SysOp::EventFd, -1, OwnerId::NONE, OwnerId::INTERNAL, || {
        // SAFETY: plain syscall with integer arguments.
        i64::from(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
    })
    .map(as_fd)
}

/// Add one to an eventfd's counter, making it readable.
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // An eventfd write fails only when the counter would overflow, and then
    // it is readable already: the signal is not lost.
    let _ = probed(SysOp::Write, fd, OwnerId::INTERNAL, OwnerId::NONE, || {
        // SAFETY: writes 8 bytes from `one`, which lives for the call.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) as i64 }
    });
}

/// Reset an eventfd's counter to zero.
pub fn eventfd_drain(fd: RawFd) {
    let mut value: u64 = 0;
    // EAGAIN means already drained.
    let _ = probed(SysOp::Read, fd, OwnerId::INTERNAL, OwnerId::NONE, || {
        // SAFETY: reads 8 bytes into `value`, which lives for the call.
        unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) as i64 }
    });
}

pub fn epoll_create() -> io::Result<RawFd> {
    probed(SysOp::EventFd, -1, OwnerId::NONE, OwnerId::INTERNAL, || {
        // SAFETY: plain syscall with integer arguments.
        i64::from(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
    })
    .map(as_fd)
}

/// Register `fd` edge-triggered for read and write readiness, tagged `data`.
pub fn epoll_add(epfd: RawFd, fd: RawFd, owner: OwnerId, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: data,
    };
    probed(SysOp::EpollCtl, fd, owner, OwnerId::NONE, || {
        // SAFETY: `ev` is a valid epoll_event for the call.
        i64::from(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) })
    })
    .map(drop)
}

pub fn epoll_del(epfd: RawFd, fd: RawFd, owner: OwnerId) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    probed(SysOp::EpollCtl, fd, owner, OwnerId::NONE, || {
        // SAFETY: `ev` is a valid (ignored) epoll_event for the call.
        i64::from(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, &mut ev) })
    })
    .map(drop)
}

/// Wait for events on `epfd`; returns how many of `events` were filled.
/// Not probed: it names no socket's number.
pub fn epoll_wait(
    epfd: RawFd,
    events: &mut [libc::epoll_event],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // epoll_pwait2 (Linux 5.11) takes nanoseconds; epoll_wait only whole
    // milliseconds, which would make every deadline up to 1 ms late.
    static NO_PWAIT2: AtomicBool = AtomicBool::new(false);
    let n = match timeout {
        Some(d) if !NO_PWAIT2.load(Ordering::Relaxed) => {
            let ts = libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            // SAFETY: `events` is valid for writes of `events.len()` entries
            // and `ts` lives for the call; a null sigmask keeps the mask.
            let n = unsafe {
                libc::epoll_pwait2(
                    epfd,
                    events.as_mut_ptr(),
                    events.len() as i32,
                    &ts,
                    std::ptr::null(),
                )
            };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                NO_PWAIT2.store(true, Ordering::Relaxed);
                return epoll_wait(epfd, events, timeout);
            }
            n
        }
        _ => {
            let ms = match timeout {
                None => -1,
                // Round up so a timer is never fired early.
                Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
            };
            // SAFETY: `events` is valid for writes of `events.len()` entries.
            unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, ms) }
        }
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if is_interrupted(&e) {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// A 32-bit futex word laid out for `FUTEX2_NUMA`: the value, then the NUMA
/// node the kernel files its waiters under (`u32::MAX` until the kernel
/// picks one on first use).
#[repr(C, align(8))]
pub struct FutexWord {
    pub value: std::sync::atomic::AtomicU32,
    node: std::sync::atomic::AtomicU32,
}

impl FutexWord {
    pub const fn new(value: u32) -> FutexWord {
        FutexWord {
            value: std::sync::atomic::AtomicU32::new(value),
            node: std::sync::atomic::AtomicU32::new(u32::MAX),
        }
    }
}

/// Which hash table the kernel files a parked thread's futex in.
///
/// Since Linux 6.16 a process's private futexes share a private hash sized
/// from its CPUs (16 buckets on 2 CPUs), and a wake walks its whole bucket:
/// with N threads parked each wake costs O(N / 16). The global hash has
/// 256 × CPUs buckets (512 on 2 CPUs). `FUTEX2_NUMA` (6.16) files a private futex in the
/// global hash of its node without the page lookup a shared futex costs;
/// where it is missing, a shared (non-private) futex lands in the global
/// hash on every kernel. Chosen once per process, so a waiter and its
/// waker always agree on the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexHash {
    GlobalNuma,
    GlobalShared,
}

const SYS_FUTEX_WAKE: libc::c_long = 454;
const SYS_FUTEX_WAIT: libc::c_long = 455;
const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX2_NUMA: u32 = 0x04;
const FUTEX2_PRIVATE: u32 = 128;
const FUTEX2_FLAGS: u32 = FUTEX2_SIZE_U32 | FUTEX2_NUMA | FUTEX2_PRIVATE;
const FUTEX_BITSET_MATCH_ANY: u64 = 0xffff_ffff;

/// The futex hash this process parks threads in (probed once).
pub fn futex_hash() -> FutexHash {
    static HASH: std::sync::OnceLock<FutexHash> = std::sync::OnceLock::new();
    *HASH.get_or_init(|| {
        static PROBE: FutexWord = FutexWord::new(0);
        // SAFETY: `PROBE` is a static, 8-aligned FutexWord (value, node), as
        // FUTEX2_NUMA requires; waking nobody changes no memory but the node.
        let r = unsafe {
            libc::syscall(
                SYS_FUTEX_WAKE,
                PROBE.value.as_ptr(),
                FUTEX_BITSET_MATCH_ANY,
                1,
                FUTEX2_FLAGS,
            )
        };
        if r >= 0 {
            FutexHash::GlobalNuma
        } else {
            FutexHash::GlobalShared
        }
    })
}

/// Block while `word.value == expected`, until a [`futex_wake`], a signal or
/// a spurious wake-up; the caller re-checks its condition. Not probed: it
/// names no descriptor.
pub fn futex_wait(word: &FutexWord, expected: u32) {
    futex_wait_in(futex_hash(), word, expected)
}

/// [`futex_wait`] in a given hash (tests exercise both).
pub fn futex_wait_in(hash: FutexHash, word: &FutexWord, expected: u32) {
    let addr = word.value.as_ptr();
    // Errors (EAGAIN: the value changed; EINTR) all mean "look again".
    match hash {
        // SAFETY: `word` is a live, 8-aligned FutexWord for the call; a null
        // timeout blocks without a time limit.
        FutexHash::GlobalNuma => unsafe {
            libc::syscall(
                SYS_FUTEX_WAIT,
                addr,
                u64::from(expected),
                FUTEX_BITSET_MATCH_ANY,
                FUTEX2_FLAGS,
                std::ptr::null::<libc::timespec>(),
                libc::CLOCK_MONOTONIC,
            );
        },
        // SAFETY: `word` is live for the call; a null timeout blocks without
        // a time limit.
        FutexHash::GlobalShared => unsafe {
            libc::syscall(
                libc::SYS_futex,
                addr,
                libc::FUTEX_WAIT,
                expected,
                std::ptr::null::<libc::timespec>(),
            );
        },
    }
}

/// Wake one thread blocked in [`futex_wait`] on `word`. Not probed.
pub fn futex_wake(word: &FutexWord) {
    futex_wake_in(futex_hash(), word)
}

/// [`futex_wake`] in a given hash; it must be the one the waiter used.
pub fn futex_wake_in(hash: FutexHash, word: &FutexWord) {
    let addr = word.value.as_ptr();
    match hash {
        // SAFETY: `word` is a live, 8-aligned FutexWord for the call.
        FutexHash::GlobalNuma => unsafe {
            libc::syscall(
                SYS_FUTEX_WAKE,
                addr,
                FUTEX_BITSET_MATCH_ANY,
                1,
                FUTEX2_FLAGS,
            );
        },
        // SAFETY: `word` is live for the call.
        FutexHash::GlobalShared => unsafe {
            libc::syscall(libc::SYS_futex, addr, libc::FUTEX_WAKE, 1);
        },
    }
}

/// The kernel's identity of the open file behind `fd` (device, inode), or
/// `None` when the number is not open. Evidence for observers: two owners
/// that saw different inodes behind one number were given different sockets.
pub fn file_identity(fd: RawFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writes of one `stat`.
    let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// The calling thread's kernel id (`gettid`): what `/proc/self/task/ID`
/// names it by.
pub fn thread_id() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// The process's soft limit on open descriptors.
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is valid for writes for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur
}

/// Raise the process's soft limit on open descriptors to its hard limit.
/// Returns (old soft limit, new soft limit). For benches and tools that own
/// their process; the library never calls it.
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is valid for writes for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((old, lim.rlim_cur))
}
