//! Observation and sync points.
//!
//! netfd calls a [`Probe`] (1) around every syscall that passes a descriptor
//! number to the kernel, naming the operation, the number and the owning
//! socket's never-reused [`OwnerId`], and (2) at named [`SyncPoint`]s inside
//! the lifetime protocols, where a close race can open.
//!
//! Probes are installed per thread ([`install`]), so tests that share one
//! process (and one descriptor table) each see only their own threads. A thread
//! that spawns helpers passes [`current`] on to them.
//!
//! Cost when nothing is installed anywhere in the process: one relaxed load of
//! a global counter per call ([`ACTIVE`]); the thread-local is not touched.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Identity of one socket object for its whole life. Never reused within a
/// process, unlike the descriptor number the kernel gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OwnerId(pub u64);

impl OwnerId {
    /// No owner: a syscall that creates a descriptor before it has one.
    pub const NONE: OwnerId = OwnerId(0);
    /// netfd's own descriptors (epoll, eventfd wake descriptors).
    pub const INTERNAL: OwnerId = OwnerId(u64::MAX);

    /// A fresh id, never returned before in this process.
    pub fn next() -> OwnerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        OwnerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OwnerId::INTERNAL => f.write_str("netfd-internal"),
            OwnerId(n) => write!(f, "#{n}"),
        }
    }
}

/// The syscalls netfd makes on descriptor numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SysOp {
    Socket,
    Accept,
    Connect,
    Bind,
    Listen,
    Read,
    Write,
    RecvFrom,
    SendTo,
    Shutdown,
    Close,
    SetSockOpt,
    GetSockOpt,
    GetSockName,
    GetPeerName,
    Poll,
    EventFd,
    EpollCtl,
}

impl SysOp {
    pub fn name(self) -> &'static str {
        match self {
            SysOp::Socket => "socket",
            SysOp::Accept => "accept",
            SysOp::Connect => "connect",
            SysOp::Bind => "bind",
            SysOp::Listen => "listen",
            SysOp::Read => "read",
            SysOp::Write => "write",
            SysOp::RecvFrom => "recvfrom",
            SysOp::SendTo => "sendto",
            SysOp::Shutdown => "shutdown",
            SysOp::Close => "close",
            SysOp::SetSockOpt => "setsockopt",
            SysOp::GetSockOpt => "getsockopt",
            SysOp::GetSockName => "getsockname",
            SysOp::GetPeerName => "getpeername",
            SysOp::Poll => "poll",
            SysOp::EventFd => "eventfd",
            SysOp::EpollCtl => "epoll_ctl",
        }
    }

    /// Operations whose success hands out a new descriptor number.
    pub fn creates_descriptor(self) -> bool {
        matches!(self, SysOp::Socket | SysOp::Accept | SysOp::EventFd)
    }
}

impl fmt::Display for SysOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One syscall on a descriptor number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    pub op: SysOp,
    /// The number passed to the kernel; -1 for `socket`/`eventfd`.
    pub fd: RawFd,
    /// The socket on whose behalf the call is made.
    pub owner: OwnerId,
    /// For descriptor-creating calls: the owner the new number will belong to.
    pub new_owner: OwnerId,
}

/// The result of a syscall as the kernel gave it: the non-negative return
/// value, or the errno.
pub type SysResult = Result<i64, i32>;

/// Named places inside the lifetime protocols. The same name means the same
/// place in every variant (see the crate docs for the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncPoint {
    /// An operation has checked that the socket is not closed, and has not
    /// yet taken its reference.
    AfterClosedCheck,
    /// An operation holds its reference (or lock) on the socket.
    AfterIncref,
    /// The descriptor number has been loaded; the syscall comes next.
    BeforeSyscall,
    /// An operation is about to wait for readiness, its deadline or close.
    BeforePark,
    /// A parked operation has woken and will re-evaluate.
    AfterWake,
    /// Close has marked the socket closed and has not yet woken waiters.
    BeforeEvict,
    /// Close has called shutdown(2).
    AfterShutdown,
    /// close(2) has released the number; the field still holds it.
    AfterCloseSyscall,
    /// The last reference is gone; close(2) of the number comes next.
    BeforeFinalClose,
    /// A deadline was stored; waiters have not been told yet.
    AfterSetDeadline,
    /// Close is about to return to its caller.
    BeforeCloseReturn,
}

impl SyncPoint {
    pub const ALL: [SyncPoint; 11] = [
        SyncPoint::AfterClosedCheck,
        SyncPoint::AfterIncref,
        SyncPoint::BeforeSyscall,
        SyncPoint::BeforePark,
        SyncPoint::AfterWake,
        SyncPoint::BeforeEvict,
        SyncPoint::AfterShutdown,
        SyncPoint::AfterCloseSyscall,
        SyncPoint::BeforeFinalClose,
        SyncPoint::AfterSetDeadline,
        SyncPoint::BeforeCloseReturn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SyncPoint::AfterClosedCheck => "after_closed_check",
            SyncPoint::AfterIncref => "after_incref",
            SyncPoint::BeforeSyscall => "before_syscall",
            SyncPoint::BeforePark => "before_park",
            SyncPoint::AfterWake => "after_wake",
            SyncPoint::BeforeEvict => "before_evict",
            SyncPoint::AfterShutdown => "after_shutdown",
            SyncPoint::AfterCloseSyscall => "after_close_syscall",
            SyncPoint::BeforeFinalClose => "before_final_close",
            SyncPoint::AfterSetDeadline => "after_set_deadline",
            SyncPoint::BeforeCloseReturn => "before_close_return",
        }
    }

    pub fn from_name(name: &str) -> Option<SyncPoint> {
        SyncPoint::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for SyncPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an observer implements. Every method has an empty default.
///
/// Methods run on the thread that makes the call, inside netfd's protocols:
/// a probe may block (that is how a controlled scheduler holds a thread at a
/// sync point) but must not call back into the socket it is observing.
pub trait Probe: Send + Sync {
    /// Right before the kernel sees `call`.
    fn before_syscall(&self, call: &Syscall) {
        let _ = call;
    }
    /// Right after the kernel answered `call`.
    fn after_syscall(&self, call: &Syscall, result: SysResult) {
        let _ = (call, result);
    }
    /// A named place in a lifetime protocol, on behalf of `owner`.
    fn sync_point(&self, point: SyncPoint, owner: OwnerId) {
        let _ = (point, owner);
    }
}

/// Number of threads that currently have a probe installed. The fast path
/// reads only this.
pub static ACTIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static CURRENT: RefCell<Option<Arc<dyn Probe>>> = const { RefCell::new(None) };
}

/// Keeps a probe installed on this thread; dropping it restores the previous one.
#[must_use = "the probe is uninstalled when the guard drops"]
pub struct ProbeGuard {
    previous: Option<Arc<dyn Probe>>,
    // The guard belongs to the thread it was made on.
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Install `probe` on the calling thread until the guard drops.
pub fn install(probe: Arc<dyn Probe>) -> ProbeGuard {
    let previous = CURRENT.with(|c| c.borrow_mut().replace(probe));
    if previous.is_none() {
        ACTIVE.fetch_add(1, Ordering::Relaxed);
    }
    ProbeGuard {
        previous,
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let restored_none = previous.is_none();
        CURRENT.with(|c| *c.borrow_mut() = previous);
        if restored_none {
            ACTIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The probe installed on this thread, to pass on to threads it spawns.
pub fn current() -> Option<Arc<dyn Probe>> {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

#[inline]
fn with_probe(f: impl FnOnce(&dyn Probe)) {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    with_probe_slow(f)
}

#[cold]
fn with_probe_slow(f: impl FnOnce(&dyn Probe)) {
    // Clone out of the cell so a probe that blocks or re-enters cannot
    // hold the RefCell borrow.
    if let Some(p) = CURRENT.try_with(|c| c.borrow().clone()).ok().flatten() {
        f(&*p)
    }
}

#[inline]
/// Report that `call` is about to reach the kernel (for targets that make
/// their own syscalls).
pub fn before_syscall(call: &Syscall) {
    with_probe(|p| p.before_syscall(call))
}

#[inline]
/// Report what the kernel answered to `call`.
pub fn after_syscall(call: &Syscall, result: SysResult) {
    with_probe(|p| p.after_syscall(call, result))
}

/// Report reaching `point` on behalf of `owner`.
#[inline]
pub fn sync_point(point: SyncPoint, owner: OwnerId) {
    with_probe(|p| p.sync_point(point, owner))
}
