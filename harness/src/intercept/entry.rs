//! The libc entry points this library defines. Each one makes its kernel
//! call as a raw `syscall(2)` (see [`super::raw`]); when a case is
//! observing this thread it goes through [`observed`] first.
//!
//! Variadic prototypes: stable Rust cannot define a C variadic function, so
//! `fcntl`, `ioctl` and `open`/`openat` are defined with their optional
//! argument as a fixed parameter of register width. On x86_64 (System V)
//! and aarch64 Linux (AAPCS64 as Linux uses it), the first six (x86_64) or
//! eight (aarch64) integer and pointer arguments of a call travel in the
//! same registers whether the prototype is variadic or not, so the callee
//! finds the optional argument exactly where a variadic callee's `va_arg`
//! would read it. When the caller passed none (`fcntl(fd, F_GETFL)`), the
//! register holds an unspecified integer: reading it as an integer is
//! defined, and it is only handed to the kernel, which ignores it for such
//! commands (glibc's own `fcntl` reads it unconditionally the same way).
//! The `al` register x86_64 variadic callers set is ignored by a
//! non-variadic callee. This does not hold on Apple's arm64 ABI (variadic
//! arguments on the stack), which is why this module is compiled only for
//! Linux on these two architectures.

// Safety of every entry point: the contract of the libc function of the
// same name (valid pointers and lengths for the call), which the caller
// already upholds for libc's definition.
#![allow(clippy::missing_safety_doc)]

use super::raw::{errno, set_errno};
use super::{enter, Active, Call, Kind};
use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void, size_t, sockaddr, socklen_t, ssize_t};
use std::os::fd::RawFd;

/// The entry points defined here.
pub const ENTRY_POINTS: &[&str] = &[
    "socket",
    "socketpair",
    "accept",
    "accept4",
    "connect",
    "bind",
    "listen",
    "read",
    "write",
    "readv",
    "writev",
    "recv",
    "recvfrom",
    "recvmsg",
    "send",
    "sendto",
    "sendmsg",
    "shutdown",
    "close",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "fcntl64",
    "ioctl",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "getpeername",
    "poll",
    "ppoll",
    "epoll_ctl",
    "eventfd",
    "pipe",
    "pipe2",
    "open",
    "open64",
    "openat",
    "openat64",
];

/// Whether and how a call may block in the kernel.
enum Block {
    Never,
    /// On `fd`, until it has `events`.
    On(RawFd, i16),
    /// A poll over the caller's array (a raw pointer: the kernel writes
    /// `revents` there during the call, so no reference may cover it) with
    /// a timeout that is not zero.
    Poll(*const libc::pollfd, usize),
}

/// The numbers a successful call created.
type Created = fn(i64, *mut c_int) -> ([RawFd; 2], usize);

fn none(_: i64, _: *mut c_int) -> ([RawFd; 2], usize) {
    ([-1, -1], 0)
}

fn returned(ret: i64, _: *mut c_int) -> ([RawFd; 2], usize) {
    ([ret as RawFd, -1], 1)
}

fn pair(_: i64, fds: *mut c_int) -> ([RawFd; 2], usize) {
    // SAFETY: only called after socketpair/pipe2 succeeded, which wrote two
    // ints at `fds` (the caller's array, valid for them).
    unsafe { ([*fds, *fds.add(1)], 2) }
}

/// Run `raw` as `call` would: straight through, or observed.
#[inline(always)]
fn observed(
    name: &'static str,
    kind: Kind,
    fds: &[RawFd],
    block: Block,
    pair_out: *mut c_int,
    created: Created,
    raw: impl FnOnce() -> c_long,
) -> c_long {
    match enter() {
        None => raw(),
        Some(active) => slow(active, name, kind, fds, block, pair_out, created, raw),
    }
}

#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn slow(
    active: Active,
    name: &'static str,
    kind: Kind,
    fds: &[RawFd],
    block: Block,
    pair_out: *mut c_int,
    created: Created,
    raw: impl FnOnce() -> c_long,
) -> c_long {
    let call = Call { name, kind, fds };
    let observer = active.observer();
    let scope = active.scope();
    if !observer.before(&call, scope) {
        return raw();
    }
    let parks = match block {
        Block::Never => false,
        Block::On(fd, events) => super::raw::would_block(fd, events),
        // SAFETY: `p` and `n` are the caller's poll array (poll's contract).
        Block::Poll(p, n) => unsafe { super::raw::none_ready(p, n) },
    };
    if parks {
        observer.parking();
    }
    let ret = raw();
    let saved = errno();
    let (made, n) = if ret >= 0 {
        created(ret, pair_out)
    } else {
        ([-1, -1], 0)
    };
    observer.after(
        &call,
        scope,
        ret,
        if ret < 0 { saved } else { 0 },
        &made[..n],
        parks,
    );
    drop(active);
    set_errno(saved);
    ret
}

macro_rules! sys {
    ($n:expr $(, $a:expr)*) => {
        // SAFETY: a raw system call with the caller's arguments, exactly as
        // the libc wrapper would make it; the caller's contract for the
        // libc function (valid pointers and lengths) is the kernel's.
        unsafe { libc::syscall($n $(, $a)*) }
    };
}

// SAFETY (all entry points below): each has the C prototype of the libc
// function it replaces and forwards its arguments unchanged to the kernel;
// the caller upholds the libc function's contract for them.

#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    observed(
        "socket",
        Kind::Create,
        &[],
        Block::Never,
        std::ptr::null_mut(),
        returned,
        || sys!(libc::SYS_socket, domain, ty, protocol),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn socketpair(
    domain: c_int,
    ty: c_int,
    protocol: c_int,
    sv: *mut c_int,
) -> c_int {
    observed(
        "socketpair",
        Kind::Create,
        &[],
        Block::Never,
        sv,
        pair,
        || sys!(libc::SYS_socketpair, domain, ty, protocol, sv),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    observed(
        "accept",
        Kind::Accept,
        &[fd],
        Block::On(fd, libc::POLLIN),
        std::ptr::null_mut(),
        returned,
        || sys!(libc::SYS_accept4, fd, addr, len, 0),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    observed(
        "accept4",
        Kind::Accept,
        &[fd],
        Block::On(fd, libc::POLLIN),
        std::ptr::null_mut(),
        returned,
        || sys!(libc::SYS_accept4, fd, addr, len, flags),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    observed(
        "connect",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_connect, fd, addr, len),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    observed(
        "bind",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_bind, fd, addr, len),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    observed(
        "listen",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_listen, fd, backlog),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    observed(
        "read",
        Kind::Read,
        &[fd],
        Block::On(fd, libc::POLLIN),
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_read, fd, buf, n),
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    observed(
        "write",
        Kind::Write,
        &[fd],
        Block::On(fd, libc::POLLOUT),
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_write, fd, buf, n),
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> ssize_t {
    observed(
        "readv",
        Kind::Read,
        &[fd],
        Block::On(fd, libc::POLLIN),
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_readv, fd, iov, cnt),
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> ssize_t {
    observed(
        "writev",
        Kind::Write,
        &[fd],
        Block::On(fd, libc::POLLOUT),
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_writev, fd, iov, cnt),
    ) as ssize_t
}

fn blocks_unless_dontwait(fd: c_int, flags: c_int, events: i16) -> Block {
    if flags & libc::MSG_DONTWAIT != 0 {
        Block::Never
    } else {
        Block::On(fd, events)
    }
}

#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    let block = blocks_unless_dontwait(fd, flags, libc::POLLIN);
    observed(
        "recv",
        Kind::Read,
        &[fd],
        block,
        std::ptr::null_mut(),
        none,
        || {
            sys!(
                libc::SYS_recvfrom,
                fd,
                buf,
                n,
                flags,
                std::ptr::null_mut::<sockaddr>(),
                std::ptr::null_mut::<socklen_t>()
            )
        },
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    let block = blocks_unless_dontwait(fd, flags, libc::POLLIN);
    observed(
        "recvfrom",
        Kind::Read,
        &[fd],
        block,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_recvfrom, fd, buf, n, flags, addr, len),
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
    let block = blocks_unless_dontwait(fd, flags, libc::POLLIN);
    observed(
        "recvmsg",
        Kind::Read,
        &[fd],
        block,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_recvmsg, fd, msg, flags),
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    let block = blocks_unless_dontwait(fd, flags, libc::POLLOUT);
    observed(
        "send",
        Kind::Write,
        &[fd],
        block,
        std::ptr::null_mut(),
        none,
        || {
            sys!(
                libc::SYS_sendto,
                fd,
                buf,
                n,
                flags,
                std::ptr::null::<sockaddr>(),
                0
            )
        },
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    let block = blocks_unless_dontwait(fd, flags, libc::POLLOUT);
    observed(
        "sendto",
        Kind::Write,
        &[fd],
        block,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_sendto, fd, buf, n, flags, addr, len),
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t {
    let block = blocks_unless_dontwait(fd, flags, libc::POLLOUT);
    observed(
        "sendmsg",
        Kind::Write,
        &[fd],
        block,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_sendmsg, fd, msg, flags),
    ) as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    observed(
        "shutdown",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_shutdown, fd, how),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    observed(
        "close",
        Kind::Close,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_close, fd),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    observed(
        "dup",
        Kind::Create,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        returned,
        || sys!(libc::SYS_dup, fd),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    observed(
        "dup2",
        Kind::Create,
        &[old],
        Block::Never,
        std::ptr::null_mut(),
        returned,
        || {
            if old == new {
                // dup3 refuses equal numbers; dup2 returns the number if open.
                let r = sys!(libc::SYS_fcntl, old, libc::F_GETFD, 0);
                if r < 0 {
                    r
                } else {
                    c_long::from(new)
                }
            } else {
                sys!(libc::SYS_dup3, old, new, 0)
            }
        },
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    observed(
        "dup3",
        Kind::Create,
        &[old],
        Block::Never,
        std::ptr::null_mut(),
        returned,
        || sys!(libc::SYS_dup3, old, new, flags),
    ) as c_int
}

fn fcntl_impl(name: &'static str, fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let (kind, created): (Kind, Created) = match cmd {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => (Kind::Create, returned),
        _ => (Kind::Use, none),
    };
    observed(
        name,
        kind,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        created,
        || sys!(libc::SYS_fcntl, fd, cmd, arg),
    ) as c_int
}

/// `int fcntl(int fd, int cmd, ...)`: the optional argument read as a
/// register-width integer (see the module docs for why that is sound).
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    fcntl_impl("fcntl", fd, cmd, arg)
}

/// glibc's large-file name for `fcntl` (the same on 64-bit targets).
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    fcntl_impl("fcntl", fd, cmd, arg)
}

/// `int ioctl(int fd, unsigned long request, ...)`: the optional argument
/// read as a pointer-width value (see the module docs).
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    observed(
        "ioctl",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_ioctl, fd, request, arg),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    observed(
        "setsockopt",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_setsockopt, fd, level, name, val, len),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    observed(
        "getsockopt",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_getsockopt, fd, level, name, val, len),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    observed(
        "getsockname",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_getsockname, fd, addr, len),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    observed(
        "getpeername",
        Kind::Use,
        &[fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_getpeername, fd, addr, len),
    ) as c_int
}

/// At most this many numbers of one poll are judged (the rest pass).
const POLL_JUDGED: usize = 8;

fn poll_fds(fds: *const libc::pollfd, n: libc::nfds_t) -> ([RawFd; POLL_JUDGED], usize) {
    let mut out = [-1; POLL_JUDGED];
    if fds.is_null() {
        return (out, 0);
    }
    let k = (n as usize).min(POLL_JUDGED);
    for (i, o) in out.iter_mut().enumerate().take(k) {
        // SAFETY: the caller of poll/ppoll passes `n` valid pollfds at
        // `fds`; each is read by value, no reference to the array is made.
        *o = unsafe { std::ptr::read(fds.add(i)) }.fd;
    }
    (out, k)
}

#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    let (named, k) = poll_fds(fds, n);
    let block = if timeout == 0 || fds.is_null() {
        Block::Never
    } else {
        Block::Poll(fds, n as usize)
    };
    observed(
        "poll",
        Kind::Use,
        &named[..k],
        block,
        std::ptr::null_mut(),
        none,
        || {
            let ts = libc::timespec {
                tv_sec: c_long::from(timeout / 1000),
                tv_nsec: c_long::from(timeout % 1000) * 1_000_000,
            };
            let tp = if timeout < 0 {
                std::ptr::null()
            } else {
                &ts as *const libc::timespec
            };
            sys!(
                libc::SYS_ppoll,
                fds,
                n,
                tp,
                std::ptr::null::<libc::sigset_t>(),
                8
            )
        },
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let (named, k) = poll_fds(fds, n);
    // SAFETY: a non-null `ts` points to a timespec (ppoll's contract).
    let zero = !ts.is_null() && unsafe { (*ts).tv_sec == 0 && (*ts).tv_nsec == 0 };
    let block = if zero || fds.is_null() {
        Block::Never
    } else {
        Block::Poll(fds, n as usize)
    };
    observed(
        "ppoll",
        Kind::Use,
        &named[..k],
        block,
        std::ptr::null_mut(),
        none,
        || {
            // The kernel's sigset is 8 bytes (glibc passes _NSIG / 8 too).
            sys!(libc::SYS_ppoll, fds, n, ts, sigmask, 8)
        },
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut libc::epoll_event,
) -> c_int {
    observed(
        "epoll_ctl",
        Kind::Use,
        &[epfd, fd],
        Block::Never,
        std::ptr::null_mut(),
        none,
        || sys!(libc::SYS_epoll_ctl, epfd, op, fd, ev),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn eventfd(initval: c_uint, flags: c_int) -> c_int {
    observed(
        "eventfd",
        Kind::Create,
        &[],
        Block::Never,
        std::ptr::null_mut(),
        returned,
        || sys!(libc::SYS_eventfd2, initval, flags),
    ) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn pipe(fds: *mut c_int) -> c_int {
    observed("pipe", Kind::Create, &[], Block::Never, fds, pair, || {
        sys!(libc::SYS_pipe2, fds, 0)
    }) as c_int
}

#[no_mangle]
pub unsafe extern "C" fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    observed("pipe2", Kind::Create, &[], Block::Never, fds, pair, || {
        sys!(libc::SYS_pipe2, fds, flags)
    }) as c_int
}

fn openat_impl(
    name: &'static str,
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    observed(
        name,
        Kind::Create,
        &[],
        Block::Never,
        std::ptr::null_mut(),
        returned,
        || sys!(libc::SYS_openat, dirfd, path, flags, mode),
    ) as c_int
}

/// `int open(const char *path, int flags, ...)`: the optional mode read as
/// an unsigned int from its register (see the module docs).
#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    openat_impl("open", libc::AT_FDCWD, path, flags, mode)
}

#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    openat_impl("open", libc::AT_FDCWD, path, flags, mode)
}

#[no_mangle]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    openat_impl("openat", dirfd, path, flags, mode)
}

#[no_mangle]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    openat_impl("openat", dirfd, path, flags, mode)
}
