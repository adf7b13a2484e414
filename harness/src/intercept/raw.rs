//! The kernel calls the entry points make, as raw `syscall(2)`: never
//! through a libc symbol this library replaces, so nothing recurses.

use std::os::fd::RawFd;

/// errno of the calling thread.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Set errno of the calling thread.
pub fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot,
    // valid for the thread's life.
    unsafe { *libc::__errno_location() = value }
}

/// Whether a call on `fd` waiting for `events` would block now: the
/// descriptor is in blocking mode and a zero-timeout ppoll finds it not
/// ready. An error (bad number) means it would not block: the call fails.
pub fn would_block(fd: RawFd, events: i16) -> bool {
    // SAFETY: F_GETFL takes no argument; a raw syscall touches no memory.
    let flags = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL, 0) };
    if flags < 0 || flags & i64::from(libc::O_NONBLOCK) != 0 {
        return false;
    }
    poll_now(fd, events) == Some(0)
}

/// Whether `fd` has an error pending (a zero-timeout ppoll reports
/// POLLERR): the error its next send or receive will return. Polling does
/// not take the error, and a raw call is not seen by the interposer.
pub fn error_pending(fd: RawFd) -> bool {
    poll_now(fd, 0).is_some_and(|revents| revents & libc::POLLERR != 0)
}

/// A zero-timeout ppoll of `fd` for `events`: its `revents` (0 when
/// nothing is ready), or `None` if the call failed.
fn poll_now(fd: RawFd, events: i16) -> Option<i16> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `p` and `ts` are valid for the call; a null sigmask is allowed.
    let n = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            &mut p as *mut libc::pollfd,
            1,
            &ts as *const libc::timespec,
            std::ptr::null::<libc::sigset_t>(),
            8,
        )
    };
    (n >= 0).then_some(p.revents)
}

/// Whether a zero-timeout ppoll over the `n` pollfds at `fds` finds none
/// of them ready. Polls a copy: the caller's array is the caller's.
///
/// # Safety
/// `fds` points to `n` readable pollfds.
pub unsafe fn none_ready(fds: *const libc::pollfd, n: usize) -> bool {
    // SAFETY: the caller guarantees `n` readable pollfds at `fds`; they
    // are copied by value.
    let mut copy: Vec<libc::pollfd> = (0..n)
        .map(|i| unsafe { std::ptr::read(fds.add(i)) })
        .collect();
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `copy` holds `copy.len()` pollfds; `ts` is valid; null sigmask.
    let n = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            copy.as_mut_ptr(),
            copy.len(),
            &ts as *const libc::timespec,
            std::ptr::null::<libc::sigset_t>(),
            8,
        )
    };
    n == 0
}

/// A close-on-exec duplicate of `fd` numbered `min` or above, for the
/// harness's own long-lived descriptors: kept clear of the low numbers the
/// kernel hands to the sockets under test, so the harness never takes a
/// number a case has just freed.
pub fn dup_above(fd: RawFd, min: RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC takes an int and touches no memory; a bad
    // `fd` or `min` is an error return.
    let n = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, min) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just created descriptor `n`; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n as RawFd) })
}
