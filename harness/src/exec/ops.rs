//! Running a case's threads: each worker runs its scenario thread's ops in
//! order, under the case's probe, which feeds the ledger and hands sync
//! points to the controlled scheduler (or jitters them in free mode).

use super::judge::{
    check_bytes, check_drained, check_peer_bytes, judge_error, judge_listener_error, record,
    still_listening,
};
use super::setup::loopback;
use super::{conn_of, listener_of, thread_name, Case, DeadlineSet, Found, Rng};
use crate::report::{Mode, ViolationKind};
use crate::scenario::Op;
use crate::target::{Addr, Conn, Listener};
use netfd::probe::{self, OwnerId, Probe, SyncPoint, SysResult, Syscall};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Thread index the ledger records for the harness's own calls.
pub(super) const HARNESS_THREAD: usize = usize::MAX;

/// The probe installed on each thread of a case.
pub(super) struct CaseProbe {
    pub(super) case: Arc<Case>,
    pub(super) thread: usize,
    pub(super) jitter: Mutex<Rng>,
    /// The teardown closer's index in the controlled schedule (its ledger
    /// thread is [`HARNESS_THREAD`]; the harness's other calls, setup and
    /// the final sweep, are not scheduled).
    pub(super) closer: Option<usize>,
}

impl CaseProbe {
    pub(super) fn new(case: Arc<Case>, thread: usize, seed: u64) -> CaseProbe {
        CaseProbe {
            case,
            thread,
            jitter: Mutex::new(Rng::new(seed)),
            closer: None,
        }
    }

    /// The probe of the teardown closer, scheduled as thread `slot`.
    pub(super) fn closer(case: Arc<Case>, slot: Option<usize>) -> CaseProbe {
        CaseProbe {
            closer: slot,
            ..CaseProbe::new(case, HARNESS_THREAD, 0)
        }
    }

    pub(super) fn touch(&self) {
        let ms = self.case.epoch.elapsed().as_micros() as u64;
        self.case.last_event.store(ms, Ordering::Relaxed);
    }

    /// What `point` means for the schedule: a switch, giving up the turn
    /// before blocking, queueing for it after waking; jitter in free mode.
    pub(super) fn schedule(&self, point: SyncPoint) {
        if self.thread == HARNESS_THREAD {
            if let Some(me) = self.closer {
                match point {
                    SyncPoint::BeforePark => self.case.sched.park(me),
                    SyncPoint::AfterWake => self.case.sched.unpark(me),
                    _ => self.case.sched.switch_at(me, Some(point)),
                }
            }
            return;
        }
        let parked = &self.case.parked[self.thread];
        match point {
            SyncPoint::BeforePark => {
                parked.store(true, Ordering::Release);
                self.case.parks[self.thread].fetch_add(1, Ordering::Relaxed);
            }
            SyncPoint::AfterWake => parked.store(false, Ordering::Release),
            _ => {}
        }
        if matches!(point, SyncPoint::BeforePark | SyncPoint::AfterWake) {
            self.case.events.pulse();
        }
        match self.case.mode {
            Mode::Controlled => match point {
                SyncPoint::BeforePark => self.case.sched.park(self.thread),
                SyncPoint::AfterWake => self.case.sched.unpark(self.thread),
                _ => self.case.sched.switch_at(self.thread, Some(point)),
            },
            Mode::Free => {
                let r = self
                    .jitter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .below(100);
                match r {
                    0..=49 => {}
                    50..=84 => std::thread::yield_now(),
                    _ => std::thread::sleep(Duration::from_micros(r - 80)),
                }
            }
        }
    }
}

impl Probe for CaseProbe {
    fn before_syscall(&self, call: &Syscall) {
        self.touch();
        self.case.ledger.before_syscall(self.thread, call);
        // The call netfd reports comes next: the interposer lets it pass.
        crate::intercept::set_reported(true);
    }

    fn after_syscall(&self, call: &Syscall, result: SysResult) {
        crate::intercept::set_reported(false);
        self.touch();
        self.case.ledger.after_syscall(self.thread, call, result);
    }

    fn sync_point(&self, point: SyncPoint, owner: OwnerId) {
        self.touch();
        self.case
            .ledger
            .note(self.thread, owner, point.name(), None);
        self.schedule(point);
    }
}

pub(super) fn worker(case: Arc<Case>, me: usize, seed: u64) {
    let probe = Arc::new(CaseProbe::new(case.clone(), me, seed));
    let _guard = probe::install(probe.clone());
    let _observer = case.observe.then(|| crate::intercept::install(&*probe));
    case.events.register(me);
    case.waits.register(me, case.events.tid(me));
    if case.mode == Mode::Controlled {
        case.sched.arrive(me);
    }
    let ops = case.scenario.threads[me].ops.clone();
    for (i, op) in ops.iter().enumerate() {
        if case.mode == Mode::Controlled {
            case.sched.switch(me);
        }
        // The base the timing rules discount from (runqueue.rs), taken
        // before the op's start is stamped, so it is never late.
        if matches!(
            op,
            Op::Read { .. } | Op::ReadFrom { .. } | Op::Write { .. } | Op::WriteTo { .. }
        ) {
            case.waits.op_begins(me, super::runqueue::total(&case));
        }
        *case.current_op[me]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((i, Instant::now()));
        case.ledger
            .note(me, OwnerId::NONE, format!("op {op}"), None);
        let clock = super::busy::OpClock::start(&case, me);
        run_op(&case, me, op);
        super::busy::judge_busy_wait(&case, me, op, clock);
        let now = case.epoch.elapsed().as_micros() as u64;
        case.last_op_end.store(now, Ordering::Relaxed);
        *case.current_op[me]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        case.events.pulse();
    }
    case.waits.finish(me, case.events.tid(me));
    if case.mode == Mode::Controlled {
        case.sched.done(me);
    }
    case.done[me].store(true, Ordering::Release);
    case.finished.fetch_add(1, Ordering::AcqRel);
    case.events.pulse();
}

/// The op's outcome, judged.
pub(super) fn run_op(case: &Case, me: usize, op: &Op) {
    let started = Instant::now();
    match *op {
        Op::Read { conn, bytes } | Op::ReadFrom { conn, bytes } => {
            let Some(c) = conn_of(case, conn) else { return };
            let mut buf = vec![0u8; bytes.max(1)];
            let r = c.read(&mut buf);
            let ended = Instant::now();
            super::deadline::judge_late(case, me, op, conn, &c, 0, started, ended);
            super::deadline::judge_ignored(case, me, op, conn, &c, 0, started, ended, r.is_ok());
            super::wakeup::judge_late_wakeup(case, me, op, conn, &c, started, ended);
            super::wakeup::judge_error_wakeup(case, me, op, conn, &c, ended);
            match r {
                Ok(n) => check_bytes(case, me, op, conn, c.owner(), &buf[..n]),
                Err(e) => judge_error(case, me, op, conn, &*c, Some((0, started)), &e),
            }
        }
        Op::Write { conn, bytes } | Op::WriteTo { conn, bytes } => {
            let Some(c) = conn_of(case, conn) else { return };
            let buf = vec![case.tags.sent_by_local(conn); bytes.max(1)];
            let r = c.write(&buf);
            let ended = Instant::now();
            case.conns[conn].note_local_send(started);
            super::deadline::judge_late(case, me, op, conn, &c, 1, started, ended);
            super::deadline::judge_ignored(case, me, op, conn, &c, 1, started, ended, r.is_ok());
            if let Err(e) = r {
                judge_error(case, me, op, conn, &*c, Some((1, started)), &e);
            }
        }
        Op::Close { conn } => {
            let Some(c) = conn_of(case, conn) else { return };
            case.conns[conn].mark_closed();
            if let Err(e) = c.close() {
                judge_error(case, me, op, conn, &*c, None, &e);
            }
        }
        Op::CloseListener { listener } => {
            let slot = &case.listeners()[listener];
            // The listener and the rebind generation it belongs to, together.
            let (l, generation) = {
                let g = slot.listener.lock().unwrap_or_else(|e| e.into_inner());
                (g.clone(), slot.generation.load(Ordering::Acquire))
            };
            let Some(l) = l else { return };
            slot.closed.store(true, Ordering::Release);
            match l.close() {
                Ok(()) => {
                    *slot.closed_ok_by.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((me, generation))
                }
                Err(e) => judge_listener_error(case, me, op, &*l, &e),
            }
        }
        Op::Rebind { listener } => {
            let slot = &case.listeners()[listener];
            // Rebinds of one listener are serialised, so one that finds the
            // port taken sees the generation of any rebind that took it.
            let _serial = slot.rebinding.lock().unwrap_or_else(|e| e.into_inner());
            match case.target.listen(&slot.addr) {
                Ok(l) => {
                    let l: Arc<dyn Listener> = Arc::from(l);
                    slot.closed.store(false, Ordering::Release);
                    {
                        let mut g = slot.listener.lock().unwrap_or_else(|e| e.into_inner());
                        *g = Some(l.clone());
                        slot.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    if case.tearing_down.load(Ordering::SeqCst) {
                        slot.closed.store(true, Ordering::Release);
                        let _ = l.close();
                    }
                }
                // Only a Close that succeeded, on this thread, of the
                // listener that still held the port, promises it is free.
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        && *slot.closed_ok_by.lock().unwrap_or_else(|e| e.into_inner())
                            == Some((me, slot.generation.load(Ordering::Acquire)))
                        && port_kept_by_closed_listener(case, listener) =>
                {
                    let owner = listener_of(case, listener).map_or(0, |l| l.owner().0);
                    record(case, Found {
                        kind: ViolationKind::Leak,
                        fd: -1,
                        owner,
                        holder: None,
                        op: op.to_string(),
                        thread: thread_name(case, me),
                        message: format!("listening again on {} failed: address in use: Close returned before the descriptor was released", slot.addr),
                        evidence: None,
                        trace: case.ledger.trace(case.ledger.event_count().saturating_sub(1), &case.thread_names),
                    });
                }
                Err(_) => {}
            }
        }
        Op::Accept { listener, conn } => {
            let Some(l) = listener_of(case, listener) else {
                return;
            };
            match l.accept() {
                Ok(c) => install_conn(case, conn, c),
                Err(e) => judge_listener_error(case, me, op, &*l, &e),
            }
        }
        Op::Dial { listener, conn } => {
            let addr = case.listeners()[listener].addr.clone();
            let r = case.target.dial(&addr);
            if super::supervise::is_tcp_dial(case, op) {
                let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                case.slowest_dial_us.fetch_max(took, Ordering::Relaxed);
            }
            if let Ok(c) = r {
                install_conn(case, conn, c);
            }
        }
        Op::SetDeadline { conn, dir, in_ms } => {
            let Some(c) = conn_of(case, conn) else { return };
            let now = Instant::now();
            let at = in_ms.map(|ms| {
                if ms <= 0 {
                    now.checked_sub(Duration::from_millis(ms.unsigned_abs()))
                        .unwrap_or(now)
                } else {
                    now + Duration::from_millis(ms as u64)
                }
            });
            let dirs = [dir.includes_read(), dir.includes_write()];
            let mut at_index = [0usize; 2];
            {
                let mut d = case.conns[conn]
                    .deadlines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for k in (0..2).filter(|&k| dirs[k]) {
                    at_index[k] = d[k].len();
                    d[k].push(DeadlineSet {
                        start: now,
                        end: None,
                        at,
                        failed: false,
                        socket: Arc::downgrade(&c),
                    });
                }
            }
            let r = c.set_deadline(dir, at);
            {
                let end = Instant::now();
                let mut d = case.conns[conn]
                    .deadlines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for k in (0..2).filter(|&k| dirs[k]) {
                    d[k][at_index[k]].end = Some(end);
                    d[k][at_index[k]].failed = r.is_err();
                }
            }
            if let Err(e) = r {
                judge_error(case, me, op, conn, &*c, None, &e);
            }
        }
        Op::Open { count } => {
            let ip = loopback(case.scenario.transport);
            let any = SocketAddr::new(ip, 0);
            let opened: Vec<Box<dyn Conn>> = (0..count)
                .filter_map(|_| case.target.bind_datagram(any, SocketAddr::new(ip, 9)).ok())
                .collect();
            for c in opened {
                let _ = c.close();
            }
        }
        Op::Sleep { ms } => {
            if case.mode == Mode::Free {
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
        Op::Yield {} => std::thread::yield_now(),
        Op::PeerWrite { conn, bytes } => {
            let began = Instant::now();
            case.conns[conn].note_peer_event();
            let peer = case.conns[conn]
                .peer
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(p) = peer.as_ref() {
                if p.send(&vec![case.tags.sent_to_local(conn); bytes.max(1)])
                    .is_ok()
                {
                    case.conns[conn].note_peer_write(began);
                }
            }
        }
        Op::PeerRead { conn, bytes } => {
            let slot = &case.conns[conn];
            case.peer_reads.fetch_add(1, Ordering::AcqRel);
            slot.note_peer_event();
            let peer = slot.peer.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = peer.as_ref() {
                let writing = super::wakeup::write_running(case, conn);
                let queued = || super::runqueue::total(case);
                let (got, stalled) = p.take_in(bytes, super::deadline::TOLERANCE, &queued);
                check_peer_bytes(case, conn, &got);
                if let Some(since) = stalled.filter(|_| writing) {
                    super::wakeup::judge_stalled_write(case, me, op, conn, since);
                }
            }
            drop(peer);
            case.peer_reads.fetch_sub(1, Ordering::AcqRel);
        }
        Op::PeerClose { conn } => {
            let slot = &case.conns[conn];
            slot.note_peer_event();
            let peer = slot.peer.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(p) = peer {
                check_drained(case, conn, &p);
                slot.peer_closed.store(true, Ordering::Release);
                drop(p);
            }
        }
    }
}

/// Whether the port a Rebind found taken is still the closed listener's:
/// for TCP, only if that socket still listens on it (another socket may
/// have taken the freed port: see [`still_listening`]); for a Unix path,
/// or when the kernel's tables or the socket's inode are unknown, the
/// failed listen itself is the evidence.
fn port_kept_by_closed_listener(case: &Case, listener: usize) -> bool {
    let Addr::Inet(addr) = &case.listeners()[listener].addr else {
        return true;
    };
    let Some(l) = listener_of(case, listener) else {
        return true;
    };
    let Some((_, inode)) = case.ledger.identity(l.owner()) else {
        return true;
    };
    still_listening(addr.port(), inode).unwrap_or(true)
}

/// Put a dialled or accepted connection in its slot (closing it at once if
/// the teardown sweep may have passed the slot).
pub(super) fn install_conn(case: &Case, conn: usize, c: Box<dyn Conn>) {
    let c: Arc<dyn Conn> = Arc::from(c);
    let old = case.conns[conn]
        .conn
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(c.clone());
    if let Some(old) = old {
        case.conns[conn]
            .displaced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&old));
    }
    if case.tearing_down.load(Ordering::SeqCst) {
        case.conns[conn].closed.store(true, Ordering::Release);
        let _ = c.close();
    }
}
