//! The ledger: the oracle that checks every syscall against who owns which
//! descriptor number.
//!
//! One ledger per case. It is fed by the case's probe (installed only on the
//! case's threads, so parallel cases in one process — one descriptor table —
//! never see each other's calls) and keeps, for every number, the owner the
//! kernel gave it to, and for every owner, its number, the kernel's identity
//! of the file behind it (device, inode) and whether it has been released.
//!
//! Rules, checked as each call is about to reach the kernel:
//! - `double_close`: close(2) for an owner whose number was already released,
//!   or while another thread's close(2) for the same owner is in flight.
//! - `fd_reuse`: any other call for a released owner, when the number is
//!   open again as a different file (the kernel's identity differs from the
//!   one the owner had): the call reached somebody else's socket. The
//!   evidence names both inodes.
//! - `use_after_close`: a call for a released owner when the number is not
//!   open (or is still the same file: released by a close the owner made).
//! - `close_in_flight`: close(2) of a number while another thread's call on
//!   it is in flight, or a call on a number while another thread's close(2)
//!   of it is in flight: the race is possible even if no reuse happened now.
//! - `leak` is checked at the end of a case ([`Ledger::unreleased`]).
//! - netfd's own wake-ups (`netfd-internal` reads and writes: signalling
//!   and draining a parked thread's eventfd) must reach an eventfd: one that
//!   reaches another kind of file is `fd_reuse` (the wake descriptor was
//!   closed while a waker still held it, and its number went to a socket,
//!   which now receives 8 stray bytes), one that reaches a number not open
//!   is `use_after_close`. The kernel says what the number is
//!   (`/proc/self/fd/N`). netfd's protocol promises this (`poll/desc.rs`: a
//!   wake descriptor in a slot stays open while it is there).
//!
//! A close(2) that succeeds releases the number for whoever the ledger says
//! holds it: when a stale close reached another owner's number, that owner
//! has lost it (its own close later is a `double_close`, not a `leak`).
//!
//! Owners the ledger never saw created (another case's sockets, or the
//! harness's own helpers) are not checked: their events belong elsewhere.

use crate::report::{Event, ViolationKind};
use netfd::probe::{OwnerId, SysOp, SysResult, Syscall};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// The name close(2) is recorded under, whoever reports it.
const CLOSE: &str = "close";

/// How many events of the case's history a violation carries.
const TRACE_LEN: usize = 64;

/// A violation the ledger raised.
/// What `fd` is when netfd's wake-up reaches it, if not an eventfd: the
/// violation kind and the kernel's name for it.
fn not_a_wake_fd(fd: RawFd) -> Option<(ViolationKind, String)> {
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(p) if p.as_os_str() == "anon_inode:[eventfd]" => None,
        Ok(p) => Some((ViolationKind::FdReuse, p.display().to_string())),
        Err(_) => Some((
            ViolationKind::UseAfterClose,
            "a number that is not open".into(),
        )),
    }
}

/// The kernel's id of the eventfd `fd` is now (`eventfd-id` in
/// `/proc/self/fdinfo`), or `None` if `fd` is not an open eventfd: tells one
/// eventfd from another that took its number, which the shared anonymous
/// inode cannot.
pub fn eventfd_id(fd: RawFd) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("eventfd-id:"))
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Clone, Debug)]
pub struct LedgerViolation {
    pub kind: ViolationKind,
    pub fd: RawFd,
    pub owner: OwnerId,
    pub holder: Option<OwnerId>,
    pub op: SysOp,
    /// The name of the call (`read`, or the libc name of an interposed
    /// call such as `recv`).
    pub call: &'static str,
    pub thread: usize,
    pub message: String,
    pub evidence: Option<String>,
    /// Index of the violating event in the case's event list.
    pub event: usize,
}

#[derive(Clone, Debug)]
struct OwnerRec {
    fd: RawFd,
    identity: Option<(u64, u64)>,
    released: bool,
}

#[derive(Default)]
struct State {
    /// Number → owner the kernel gave it to (owners this ledger knows).
    numbers: HashMap<RawFd, OwnerId>,
    owners: HashMap<OwnerId, OwnerRec>,
    /// Number → (thread, owner, op, generation) of calls in flight on it.
    in_flight: HashMap<RawFd, Vec<(usize, OwnerId, &'static str, u64)>>,
    /// Number → how many times the kernel has handed it out. A call in
    /// flight from an earlier generation finished in the kernel before the
    /// number was handed out again; only its report is late.
    generation: HashMap<RawFd, u64>,
    events: Vec<RawEvent>,
    violations: Vec<LedgerViolation>,
    /// netfd's wake-up eventfds created in this case: (thread, number).
    wake_fds: Vec<(usize, RawFd)>,
    syscalls_checked: u64,
    closes_checked: u64,
}

/// Record that the kernel handed `fd` to `new_owner`.
fn created(st: &mut State, fd: RawFd, new_owner: OwnerId) {
    *st.generation.entry(fd).or_default() += 1;
    // A number we thought open was released outside our view.
    if let Some(old) = st.numbers.insert(fd, new_owner) {
        if let Some(rec) = st.owners.get_mut(&old) {
            if rec.fd == fd {
                rec.released = true;
            }
        }
    }
    st.owners.insert(
        new_owner,
        OwnerRec {
            fd,
            identity: netfd::sys::file_identity(fd),
            released: false,
        },
    );
}

/// One event as recorded; turned into a report [`Event`] on demand.
#[derive(Clone, Debug)]
pub struct RawEvent {
    pub thread: usize,
    pub owner: OwnerId,
    pub fd: Option<RawFd>,
    pub what: String,
    pub result: Option<String>,
}

/// See the module docs.
#[derive(Default)]
pub struct Ledger {
    state: Mutex<State>,
}

/// Counts of checks made, for the report's assertions.
#[derive(Clone, Copy, Debug, Default)]
pub struct LedgerCounts {
    pub syscalls_checked: u64,
    pub closes_checked: u64,
}

fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EBADF => "EBADF",
        libc::EINVAL => "EINVAL",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EAGAIN => "EAGAIN",
        libc::EINTR => "EINTR",
        libc::EPIPE => "EPIPE",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTCONN => "ENOTCONN",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ENOENT => "ENOENT",
        libc::EMFILE => "EMFILE",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

fn result_text(result: SysResult) -> String {
    match result {
        Ok(v) => format!("ok {v}"),
        Err(e) => errno_name(e),
    }
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record an event that is not a syscall (a sync point, an op boundary).
    pub fn note(
        &self,
        thread: usize,
        owner: OwnerId,
        what: impl Into<String>,
        result: Option<String>,
    ) {
        self.lock().events.push(RawEvent {
            thread,
            owner,
            fd: None,
            what: what.into(),
            result,
        });
    }

    /// Adopt a number created outside the probe (the harness's own setup).
    pub fn adopt(&self, fd: RawFd, owner: OwnerId) {
        let mut st = self.lock();
        st.numbers.insert(fd, owner);
        st.owners.insert(
            owner,
            OwnerRec {
                fd,
                identity: netfd::sys::file_identity(fd),
                released: false,
            },
        );
    }

    pub fn before_syscall(&self, thread: usize, call: &Syscall) {
        self.before_named(thread, call, call.op.name())
    }

    /// [`before_syscall`](Ledger::before_syscall) for a call whose name is
    /// not `call.op`'s (an interposed libc call: `recv` checked as a read).
    pub fn before_named(&self, thread: usize, call: &Syscall, name: &'static str) {
        let mut st = self.lock();
        let event = st.events.len();
        st.events.push(RawEvent {
            thread,
            owner: call.owner,
            fd: (call.fd >= 0).then_some(call.fd),
            what: name.to_string(),
            result: None,
        });
        if call.fd >= 0
            && call.owner == OwnerId::INTERNAL
            && matches!(call.op, SysOp::Read | SysOp::Write)
        {
            st.syscalls_checked += 1;
            if let Some((kind, what)) = not_a_wake_fd(call.fd) {
                st.violations.push(LedgerViolation {
                    kind,
                    fd: call.fd,
                    owner: call.owner,
                    holder: None,
                    op: call.op,
                    call: name,
                    thread,
                    message: format!(
                        "netfd's wake-up {name} on fd {} reached {what}, not its eventfd",
                        call.fd
                    ),
                    evidence: Some(format!("fd {} is {what}", call.fd)),
                    event,
                });
            }
        }
        if call.fd < 0 || call.owner == OwnerId::INTERNAL {
            return;
        }
        let Some(rec) = st.owners.get(&call.owner).cloned() else {
            return;
        };
        st.syscalls_checked += 1;
        let holder = st
            .numbers
            .get(&call.fd)
            .copied()
            .filter(|h| *h != call.owner);
        let raise = |st: &mut State, kind, message: String, evidence| {
            st.violations.push(LedgerViolation {
                kind,
                fd: call.fd,
                owner: call.owner,
                holder,
                op: call.op,
                call: name,
                thread,
                message,
                evidence,
                event,
            });
        };
        let generation = st.generation.get(&call.fd).copied().unwrap_or(0);
        let others: Vec<(usize, OwnerId, &'static str, u64)> = st
            .in_flight
            .get(&call.fd)
            .map(|v| {
                v.iter()
                    .filter(|(t, _, _, g)| *t != thread && *g == generation)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if call.op == SysOp::Close {
            st.closes_checked += 1;
            let same_owner_close = others
                .iter()
                .find(|(_, o, op, _)| *op == CLOSE && *o == call.owner);
            if let Some((t, _, _, _)) = same_owner_close {
                raise(
                    &mut st,
                    ViolationKind::DoubleClose,
                    format!(
                        "close({}) for {} while another close of it on thread {} was in flight",
                        call.fd, call.owner, t
                    ),
                    None,
                );
            } else if let Some((t, o, op, _)) = others.first() {
                raise(
                    &mut st,
                    ViolationKind::CloseInFlight,
                    format!(
                        "close({}) for {} while {} for {} on thread {} was in flight",
                        call.fd, call.owner, op, o, t
                    ),
                    None,
                );
            }
        } else if let Some((t, o, _, _)) = others.iter().find(|(_, _, op, _)| *op == CLOSE) {
            // The same race seen from the other side: whichever the kernel
            // runs first, this call may meet a released number.
            raise(
                &mut st,
                ViolationKind::CloseInFlight,
                format!(
                    "{}({}) for {} while close for {} on thread {} was in flight",
                    name, call.fd, call.owner, o, t
                ),
                None,
            );
        }
        if rec.released {
            let now = netfd::sys::file_identity(call.fd);
            let reused = now.is_some() && now != rec.identity;
            let evidence = reused.then(|| {
                format!(
                    "fd {} was inode {} when {} owned it; it is inode {} now",
                    call.fd,
                    rec.identity.map_or("?".into(), |(_, i)| i.to_string()),
                    call.owner,
                    now.map_or("?".into(), |(_, i)| i.to_string()),
                )
            });
            if call.op == SysOp::Close {
                let whose = match holder {
                    Some(h) => format!(", now owned by {h}"),
                    None if reused => ", now open as another file".to_string(),
                    None => String::new(),
                };
                raise(
                    &mut st,
                    ViolationKind::DoubleClose,
                    format!(
                        "close({}) for {} after it was released{whose}",
                        call.fd, call.owner
                    ),
                    evidence,
                );
            } else if reused {
                let whose = holder.map_or("another socket".to_string(), |h| h.to_string());
                raise(
                    &mut st,
                    ViolationKind::FdReuse,
                    format!(
                        "{}({}) for {} reached {whose}: the number was closed and handed out again",
                        name, call.fd, call.owner
                    ),
                    evidence,
                );
            } else {
                raise(
                    &mut st,
                    ViolationKind::UseAfterClose,
                    format!(
                        "{}({}) for {} after its descriptor was released",
                        name, call.fd, call.owner
                    ),
                    None,
                );
            }
        } else if rec.fd != call.fd {
            raise(
                &mut st,
                ViolationKind::FdReuse,
                format!(
                    "{}({}) for {} whose descriptor is {}",
                    name, call.fd, call.owner, rec.fd
                ),
                None,
            );
        }
        st.in_flight
            .entry(call.fd)
            .or_default()
            .push((thread, call.owner, name, generation));
    }

    pub fn after_syscall(&self, thread: usize, call: &Syscall, result: SysResult) {
        self.after_named(thread, call, call.op.name(), result)
    }

    /// [`after_syscall`](Ledger::after_syscall) under another name.
    pub fn after_named(
        &self,
        thread: usize,
        call: &Syscall,
        name: &'static str,
        result: SysResult,
    ) {
        let mut st = self.lock();
        st.events.push(RawEvent {
            thread,
            owner: call.owner,
            fd: (call.fd >= 0).then_some(call.fd),
            what: format!("{name} returned"),
            result: Some(result_text(result)),
        });
        let mut started_in = None;
        if let Some(v) = st.in_flight.get_mut(&call.fd) {
            if let Some(i) = v
                .iter()
                .position(|(t, o, op, _)| *t == thread && *o == call.owner && *op == name)
            {
                started_in = Some(v.swap_remove(i).3);
            }
        }
        if call.op.creates_descriptor() {
            if let Ok(n) = result {
                created(&mut st, n as RawFd, call.new_owner);
                if call.op == SysOp::EventFd {
                    st.wake_fds.push((thread, n as RawFd));
                }
            }
            return;
        }
        if call.op == SysOp::Close && result != Err(libc::EBADF) {
            // Linux releases the number whatever else close reports, for
            // whoever holds it: a stale close took it from its new owner.
            // A close reported after the number was handed out again
            // released it before that: the new holder keeps it.
            let now = st.generation.get(&call.fd).copied().unwrap_or(0);
            match st.numbers.get(&call.fd).copied() {
                Some(h) if h == call.owner => {
                    st.numbers.remove(&call.fd);
                }
                Some(h) if started_in == Some(now) => {
                    st.numbers.remove(&call.fd);
                    if let Some(rec) = st.owners.get_mut(&h) {
                        if rec.fd == call.fd {
                            rec.released = true;
                        }
                    }
                }
                _ => {}
            }
            if let Some(rec) = st.owners.get_mut(&call.owner) {
                if rec.fd == call.fd {
                    rec.released = true;
                }
            }
        }
    }

    /// The kernel handed `fd` to `owner` (a number an interposed call such
    /// as `dup`, `pipe2` or `socketpair` created).
    pub fn created(&self, thread: usize, fd: RawFd, owner: OwnerId, name: &'static str) {
        let mut st = self.lock();
        st.events.push(RawEvent {
            thread,
            owner,
            fd: Some(fd),
            what: format!("{name} created"),
            result: None,
        });
        created(&mut st, fd, owner);
    }

    /// netfd's wake-up eventfds created in this case: (thread, number).
    pub fn wake_fds(&self) -> Vec<(usize, RawFd)> {
        self.lock().wake_fds.clone()
    }

    /// Owners created in this case whose number is still open (checked after
    /// the case closed everything it opened).
    pub fn unreleased(&self) -> Vec<(OwnerId, RawFd)> {
        let st = self.lock();
        let mut v: Vec<(OwnerId, RawFd)> = st
            .owners
            .iter()
            .filter(|(o, r)| !r.released && **o != OwnerId::INTERNAL)
            .map(|(o, r)| (*o, r.fd))
            .collect();
        v.sort();
        v
    }

    /// The owners whose descriptor was released (netfd's own excepted).
    pub fn released(&self) -> Vec<OwnerId> {
        let st = self.lock();
        let mut v: Vec<OwnerId> = st
            .owners
            .iter()
            .filter(|(o, r)| r.released && **o != OwnerId::INTERNAL)
            .map(|(o, _)| *o)
            .collect();
        v.sort();
        v
    }

    /// The (device, inode) of `owner`'s socket when it was created, if known.
    pub fn identity(&self, owner: OwnerId) -> Option<(u64, u64)> {
        self.lock().owners.get(&owner).and_then(|r| r.identity)
    }

    /// `owner`'s number and the kernel's identity of its socket, while the
    /// ledger has not seen it released.
    pub fn open_number(&self, owner: OwnerId) -> Option<(RawFd, Option<(u64, u64)>)> {
        let st = self.lock();
        let rec = st.owners.get(&owner)?;
        (!rec.released).then_some((rec.fd, rec.identity))
    }

    /// Whether `owner` is known and released.
    pub fn is_released(&self, owner: OwnerId) -> Option<bool> {
        self.lock().owners.get(&owner).map(|r| r.released)
    }

    pub fn violations(&self) -> Vec<LedgerViolation> {
        self.lock().violations.clone()
    }

    pub fn counts(&self) -> LedgerCounts {
        let st = self.lock();
        LedgerCounts {
            syscalls_checked: st.syscalls_checked,
            closes_checked: st.closes_checked,
        }
    }

    pub fn event_count(&self) -> usize {
        self.lock().events.len()
    }

    /// The events up to and including `upto`, at most [`TRACE_LEN`] of them,
    /// with thread names from `threads`.
    pub fn trace(&self, upto: usize, threads: &[String]) -> Vec<Event> {
        let st = self.lock();
        let end = (upto + 1).min(st.events.len());
        let start = end.saturating_sub(TRACE_LEN);
        st.events[start..end]
            .iter()
            .enumerate()
            .map(|(i, e)| Event {
                seq: (start + i) as u64,
                thread: threads
                    .get(e.thread)
                    .cloned()
                    .unwrap_or_else(|| "harness".to_string()),
                owner: e.owner.0,
                fd: e.fd,
                what: e.what.clone(),
                result: e.result.clone(),
            })
            .collect()
    }
}
