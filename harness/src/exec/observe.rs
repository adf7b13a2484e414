//! Observing a target that reports nothing: its objects are wrapped so
//! every call into them runs in an [`intercept::Scope`], and the case probe
//! is also the interposer's [`intercept::Observer`].
//!
//! Attribution rules:
//! - Every object a target returns (listener, connection, datagram socket)
//!   gets an id before the op that makes it runs; numbers created during
//!   that op (`socket`, `accept4`, `dup`, `fcntl(F_DUPFD)`, `pipe2`, ...)
//!   belong to it. The first is recorded under the object's own id, later
//!   ones under fresh ids (an object may hold several numbers: a clone, a
//!   wake pipe).
//! - A call a thread makes while running an op on object X, naming number
//!   N, is a call for N among the numbers the op is creating (an accept's
//!   new connection), else for X's number N (the latest X got); the
//!   ledger's rules then apply as to netfd.
//!   A number X never had is recorded in the trace and not judged.
//! - Numbers created during an op on X that returns nothing new (a read
//!   that opens a wake pipe) belong to X.
//! - Calls outside a target op — the harness's peers, evidence look-ups,
//!   report writing — and calls on threads the case did not start or hand
//!   its observer to are not seen at all: with cases running in parallel
//!   in one process, no number says which case such a thread works for.
//! - Calls netfd's probe already reports are passed through (the probe
//!   names their owner precisely); a target that reports all its calls says
//!   so with [`Target::reports_syscalls`] and is not wrapped.
//! - Every judged call is a switch point for the controlled scheduler; one
//!   that would block (see [`intercept`]) gives up the turn as `BeforePark`
//!   does and queues for it again when the kernel returns, as `AfterWake`.

use super::ops::CaseProbe;
use crate::intercept::{self, Call, Kind, Observer, Scope};
use crate::scenario::Direction;
use crate::target::{Addr, Conn, Listener, Target};
use netfd::probe::{OwnerId, SyncPoint, SysOp, Syscall};
use std::collections::HashMap;
use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which object holds which numbers, for one case.
#[derive(Default)]
pub(super) struct Attribution {
    objects: Mutex<HashMap<OwnerId, Vec<(RawFd, OwnerId)>>>,
}

impl Attribution {
    /// The owner a call in `scope` naming `fd` is for.
    pub(super) fn owner_for(&self, scope: Scope, fd: RawFd) -> Option<OwnerId> {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        // The numbers being created first: one the op's object had and
        // released may have just been handed out again to them.
        [scope.creates_for, scope.object]
            .into_iter()
            .filter(|o| *o != OwnerId::NONE)
            .find_map(|o| {
                objects
                    .get(&o)?
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == fd)
                    .map(|(_, owner)| *owner)
            })
    }

    /// `fd` was created for `object`: the owner the ledger records it under.
    pub(super) fn add(&self, object: OwnerId, fd: RawFd) -> OwnerId {
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let numbers = objects.entry(object).or_default();
        let owner = if numbers.is_empty() {
            object
        } else {
            OwnerId::next()
        };
        numbers.push((fd, owner));
        owner
    }
}

fn sys_op(kind: Kind) -> SysOp {
    match kind {
        Kind::Read => SysOp::Read,
        Kind::Write => SysOp::Write,
        Kind::Close => SysOp::Close,
        Kind::Accept => SysOp::Poll,
        Kind::Use | Kind::Create => SysOp::GetSockOpt,
    }
}

impl Observer for CaseProbe {
    fn before(&self, call: &Call, scope: Scope) -> bool {
        if scope == Scope::default() {
            return false;
        }
        self.touch();
        self.schedule(SyncPoint::BeforeSyscall);
        let case = &self.case;
        for &fd in call.fds {
            match case.attribution.owner_for(scope, fd) {
                Some(owner) => case.ledger.before_named(
                    self.thread,
                    &Syscall {
                        op: sys_op(call.kind),
                        fd,
                        owner,
                        new_owner: OwnerId::NONE,
                    },
                    call.name,
                ),
                None => case.ledger.note(
                    self.thread,
                    scope.object,
                    format!("{}({fd}): a number {} never had", call.name, scope.object),
                    None,
                ),
            }
        }
        true
    }

    fn parking(&self) {
        self.schedule(SyncPoint::BeforePark);
    }

    fn after(
        &self,
        call: &Call,
        scope: Scope,
        ret: i64,
        errno: i32,
        created: &[RawFd],
        parked: bool,
    ) {
        self.touch();
        let case = &self.case;
        let result = if ret < 0 { Err(errno) } else { Ok(ret) };
        for &fd in call.fds {
            if let Some(owner) = case.attribution.owner_for(scope, fd) {
                case.ledger.after_named(
                    self.thread,
                    &Syscall {
                        op: sys_op(call.kind),
                        fd,
                        owner,
                        new_owner: OwnerId::NONE,
                    },
                    call.name,
                    result,
                );
            }
        }
        let object = if scope.creates_for != OwnerId::NONE {
            scope.creates_for
        } else {
            scope.object
        };
        for &fd in created {
            let owner = case.attribution.add(object, fd);
            case.ledger.created(self.thread, fd, owner, call.name);
        }
        if parked {
            self.schedule(SyncPoint::AfterWake);
        }
    }
}

/// Runs `f` with this thread's calls attributed to `object` (and the numbers
/// it creates to `creates_for`).
fn within<T>(object: OwnerId, creates_for: OwnerId, f: impl FnOnce() -> T) -> T {
    let _scope = intercept::scope(Scope {
        object,
        creates_for,
    });
    f()
}

/// A target whose objects are observed through the interposer.
pub(super) struct ObservedTarget(pub(super) Arc<dyn Target>);

struct ObservedConn {
    inner: ManuallyDrop<Box<dyn Conn>>,
    key: OwnerId,
}

struct ObservedListener {
    inner: ManuallyDrop<Box<dyn Listener>>,
    key: OwnerId,
}

fn conn(key: OwnerId, inner: Box<dyn Conn>) -> Box<dyn Conn> {
    Box::new(ObservedConn {
        inner: ManuallyDrop::new(inner),
        key,
    })
}

impl Target for ObservedTarget {
    fn name(&self) -> String {
        self.0.name()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        let key = OwnerId::next();
        let inner = within(key, OwnerId::NONE, || self.0.listen(addr))?;
        Ok(Box::new(ObservedListener {
            inner: ManuallyDrop::new(inner),
            key,
        }))
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let key = OwnerId::next();
        let inner = within(key, OwnerId::NONE, || self.0.dial(addr))?;
        Ok(conn(key, inner))
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        let key = OwnerId::next();
        let inner = within(key, OwnerId::NONE, || self.0.bind_datagram(local, peer))?;
        Ok(conn(key, inner))
    }
    fn bind_unix_datagram(
        &self,
        local: &std::path::Path,
        peer: &std::path::Path,
    ) -> io::Result<Box<dyn Conn>> {
        let key = OwnerId::next();
        let inner = within(key, OwnerId::NONE, || {
            self.0.bind_unix_datagram(local, peer)
        })?;
        Ok(conn(key, inner))
    }
    fn has_unix_datagram(&self) -> bool {
        self.0.has_unix_datagram()
    }
    fn has_unix_seqpacket(&self) -> bool {
        self.0.has_unix_seqpacket()
    }
    fn reports_syscalls(&self) -> bool {
        self.0.reports_syscalls()
    }
}

impl Conn for ObservedConn {
    fn owner(&self) -> OwnerId {
        match self.inner.owner() {
            OwnerId::NONE => self.key,
            own => own,
        }
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        within(self.key, OwnerId::NONE, || self.inner.read(buf))
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        within(self.key, OwnerId::NONE, || self.inner.write(buf))
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        within(self.key, OwnerId::NONE, || self.inner.set_deadline(dir, at))
    }
    fn close(&self) -> io::Result<()> {
        within(self.key, OwnerId::NONE, || self.inner.close())
    }
    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        within(self.key, OwnerId::NONE, || self.inner.local_addr())
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        self.inner.is_closed_error(e)
    }
}

impl Drop for ObservedConn {
    fn drop(&mut self) {
        // SAFETY: `inner` is taken once, here, and never used again.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        within(self.key, OwnerId::NONE, || drop(inner));
    }
}

impl Listener for ObservedListener {
    fn owner(&self) -> OwnerId {
        match self.inner.owner() {
            OwnerId::NONE => self.key,
            own => own,
        }
    }
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        let key = OwnerId::next();
        let inner = within(self.key, key, || self.inner.accept())?;
        Ok(conn(key, inner))
    }
    fn close(&self) -> io::Result<()> {
        within(self.key, OwnerId::NONE, || self.inner.close())
    }
    fn local_addr(&self) -> io::Result<Addr> {
        within(self.key, OwnerId::NONE, || self.inner.local_addr())
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        self.inner.is_closed_error(e)
    }
}

impl Drop for ObservedListener {
    fn drop(&mut self) {
        // SAFETY: `inner` is taken once, here, and never used again.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        within(self.key, OwnerId::NONE, || drop(inner));
    }
}
