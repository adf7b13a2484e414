//! `crate::sys` for the models: the same function names and signatures as
//! `netfd/src/sys`, answered by the simulated [`Kernel`](super::kernel::Kernel)
//! of the current loom execution. Only what the included sources call (plus
//! `socket`/`shutdown` for the historical protocols) is here; a new syscall
//! in `fd.rs` or `poll/desc.rs` shows up as a compile error in the loom
//! tests, which is the point.

use super::world;
use crate::probe::OwnerId;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Addresses carry no meaning in the models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockAddr;

pub fn is_would_block(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN))
}

pub fn is_interrupted(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EINTR))
}

pub fn read(fd: RawFd, owner: OwnerId, buf: &mut [u8]) -> io::Result<usize> {
    world().kernel.read(fd, owner, buf)
}

pub fn write(fd: RawFd, owner: OwnerId, buf: &[u8]) -> io::Result<usize> {
    world().kernel.write(fd, owner, buf)
}

pub fn recv_from(fd: RawFd, owner: OwnerId, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    world().kernel.read(fd, owner, buf).map(|n| (n, SockAddr))
}

pub fn send_to(fd: RawFd, owner: OwnerId, buf: &[u8], _addr: &SockAddr) -> io::Result<usize> {
    world().kernel.write(fd, owner, buf)
}

pub fn accept(fd: RawFd, owner: OwnerId, new_owner: OwnerId) -> io::Result<(RawFd, SockAddr)> {
    world()
        .kernel
        .accept(fd, owner, new_owner)
        .map(|n| (n, SockAddr))
}

pub fn connect(fd: RawFd, owner: OwnerId, _addr: &SockAddr) -> io::Result<()> {
    world().kernel.touch("connect", fd, owner)
}

pub fn getsockopt_int(fd: RawFd, owner: OwnerId, _level: i32, _name: i32) -> io::Result<i32> {
    world().kernel.touch("getsockopt", fd, owner).map(|()| 0)
}

pub fn getpeername(fd: RawFd, owner: OwnerId) -> io::Result<SockAddr> {
    world()
        .kernel
        .touch("getpeername", fd, owner)
        .map(|()| SockAddr)
}

/// The stream reads EOF from now on, and the poll server sees the hang-up:
/// the socket's registration (if any) is told it is ready both ways, as the
/// epoll thread would tell it.
pub fn shutdown(fd: RawFd, owner: OwnerId, _how: std::net::Shutdown) -> io::Result<()> {
    let w = world();
    w.kernel.shutdown(fd, owner)?;
    w.server.dispatch(owner, super::poll::Dir::Read);
    w.server.dispatch(owner, super::poll::Dir::Write);
    Ok(())
}

/// Release the number. A call on a number that is not the caller's fails
/// the model instead of returning EBADF.
pub fn close(fd: RawFd, owner: OwnerId) -> io::Result<()> {
    world().kernel.close(fd, owner)
}

pub fn eventfd() -> io::Result<RawFd> {
    Ok(world().kernel.open(
        OwnerId::INTERNAL,
        super::kernel::File::EventFd { signaled: false },
    ))
}

pub fn eventfd_signal(fd: RawFd) {
    world().kernel.eventfd_signal(fd)
}

pub fn eventfd_drain(fd: RawFd) {
    world().kernel.eventfd_drain(fd)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    pub ready: bool,
    pub woken: bool,
}

/// ppoll(2) on `fd` and `wake`; the timeout runs on the simulated clock.
pub fn poll_with_wake(
    fd: RawFd,
    owner: OwnerId,
    interest: Interest,
    wake: RawFd,
    timeout: Option<Duration>,
) -> io::Result<PollOutcome> {
    let w = world();
    let until = timeout.map(|d| w.now() + d);
    let (ready, woken) = w
        .kernel
        .poll(fd, owner, interest == Interest::Read, wake, || {
            until.is_some_and(|u| w.now() >= u)
        });
    Ok(PollOutcome { ready, woken })
}
