//! The readiness rule, both directions.
//!
//! **Late wake-up** (`no_late_wakeup`, kind `late_wakeup`): a Read/ReadFrom
//! that is running when the peer's bytes arrive returns within
//! [`TOLERANCE`] of their arrival, unless the connection's Close came
//! first. Data waiting in the socket must end a parked read: one that is
//! left parked until a later Close or deadline ends it has lost a
//! readiness notification (a poll server that drops read events, a
//! registration that forgets a direction, a wake-up sent to the wrong
//! waiter). Which result the op returned does not matter: the closed error
//! or a timeout long after the bytes came is as late as the bytes.
//!
//! Protocol. For a read on connection `c` that began at `start` and
//! returned at `end` on socket `s`:
//! - only bytes for `s` count: the peer a case sets up is connected to the
//!   socket the slot got in setup, and a slot refilled by dial or accept
//!   holds a socket that peer does not feed;
//! - only a peer write that *returned successfully* counts, at its return:
//!   by then its bytes are in the local end's receive queue on loopback
//!   (stream) or the datagram is queued (a datagram the kernel dropped,
//!   a full unixgram queue, is a failed send and does not count);
//! - only a write that *began* at or after `start` counts: bytes of one
//!   that began earlier may have arrived before the op began and been
//!   taken by an earlier read, even if the write returned later, and the
//!   op then rightly parks;
//! - only a connection that a single scenario thread reads is judged: with
//!   two readers, the other may have taken the bytes, and this one rightly
//!   stays parked;
//! - on unixgram, not once the peer has closed: the local end's next send
//!   to the dead peer makes the kernel drop every datagram waiting for it
//!   (`unix_dgram_disconnected`: "messages are lost"), and a read then
//!   rightly parks again (found by a 50,000-case soak: a read woken by the
//!   peer's datagram found them gone after a racing write_to);
//! - late: with `arrived` the first such write's return, `end > arrived +
//!   TOLERANCE`, and no Close of the connection began by `arrived +
//!   TOLERANCE`.
//!
//! The supervisor keeps a case running while a read has had bytes waiting
//! for less than the tolerance ([`wakeup_pending`]), as it does for a
//! deadline that just passed: otherwise teardown's Close would end a read
//! that readiness failed to wake, and the miss would go unseen.
//!
//! **The write side** (same rule and kind): a Write/WriteTo parked on a
//! full send buffer must go on when the peer frees the space. A
//! `peer_read` takes in the local end's bytes until it has what it asked
//! for or none has come for [`TOLERANCE`]; if it stops on that wait while
//! a write on the connection, on the socket the peer is connected to and
//! begun before the last byte came, still runs, and no Close of the
//! connection began by then, the write was not woken: everything it had
//! sent was taken in and it sent nothing more for the whole tolerance.
//! Only a peer_read that began while such a write ran is judged, and only
//! one that asks for no more than the write sends stops on a wait with a
//! correct target (it gets all of it), so a scenario asks for exactly the
//! write's size.
//!
//! **The error side** (same rule and kind): a socket error ends a parked
//! read as bytes do. The case: a connected UDP socket whose peer's port
//! is closed; a local send draws an ICMP port unreachable, the kernel sets
//! the socket's error (ECONNREFUSED) and reports it as EPOLLERR/POLLERR
//! alone, with no EPOLLIN, and the next receive returns it. A poll server
//! that wakes readers on EPOLLIN only leaves such a read parked. The
//! witness is the kernel's: while a read runs on a udp4/udp6 connection
//! that one scenario thread reads, the supervisor polls the socket for
//! POLLERR ([`error_pending`]; polling does not take the error). The
//! number comes from the ledger and is trusted only if the connection's
//! Close has not begun and the socket's identity (device, inode) is the
//! ledger's before and after the poll, so a number the kernel gave to
//! another socket meanwhile is never polled as this one. The read is
//! late if it returns more than the tolerance after the first sighting,
//! unless a Close of the connection began by then, or a local send on the
//! connection ran at or after the sighting and before the read returned:
//! a send takes the pending error too, and the read is then right to stay
//! parked. A sighting is only possible with the error pending, so an ICMP
//! error the kernel never sent (its global rate limit) judges nothing;
//! a correct target's read takes the error within microseconds, so it is
//! rarely sighted at all, and never judged late. The supervisor keeps a
//! case running for the tolerance after a sighting, as for bytes.
//!
//! The tolerance is the late-deadline rule's, for the same reason: a woken
//! thread on a loaded 2-core machine may wait tens of ms for a CPU, and in
//! controlled mode for its turn as well; a correct target's reader is back
//! within microseconds of the bytes on an idle machine.
//!
//! **Load.** What is held to the tolerance is the time that counts
//! ([`runqueue`]): the wall time from the arrival (or the sighting) to the
//! read's return, less how long the case's threads and netfd's poll server
//! waited for a CPU from the read's start on (earlier than the arrival: a
//! discount too big, if anything); a Close excuses the read if it began by
//! the arrival plus the tolerance plus that discount. On the write side,
//! the peer_read's wait for more bytes is counted the same way from each
//! byte it got, so it stops on a wait only after the tolerance of time
//! that counts. Why load cannot make the rule fire on a correct target:
//! once the bytes (the error, the freed space) are there, a correct
//! target's op is woken by the kernel (Direct) or by the poll server
//! (Server) and returns after microseconds of CPU; everything else between
//! the event and the return is a wait for a CPU — the server's, the op
//! thread's, and in controlled mode that of whoever holds the turn — and
//! comes off. While the time that counts is short of the tolerance the
//! supervisor keeps the case running ([`wakeup_pending`],
//! [`error_pending`]), so teardown does not close a read that load holds
//! up, for at most [`runqueue::MOST_STRETCH`] windows of wall time. An
//! unreadable figure judges nothing. What it still catches: an op that
//! lost its wake-up is asleep, and sleeping is not waiting for a CPU, so
//! its lateness is not taken off.

use super::deadline::TOLERANCE;
use super::judge::{count_check, found_here, record};
use super::runqueue;
use super::Case;
use crate::intercept::raw;
use crate::report::ViolationKind;
use crate::scenario::{Op, Transport};
use crate::target::Conn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Judge one read on `conn`, on `socket`, that ran from `start` to `end`.
pub(super) fn judge_late_wakeup(
    case: &Case,
    me: usize,
    op: &Op,
    conn: usize,
    socket: &Arc<dyn Conn>,
    start: Instant,
    end: Instant,
) {
    let Some(arrived) = bytes_arrived(case, conn, socket, start) else {
        return;
    };
    if arrived >= end {
        return;
    }
    count_check(case, ViolationKind::LateWakeup);
    if end <= arrived + TOLERANCE {
        return;
    }
    // Late by the time that counts: the case's threads' (and the poll
    // server's) waits for a CPU come off; unknown, nothing is judged.
    let Some(queued) = runqueue::since_op_start(case, me) else {
        return;
    };
    let late = end.saturating_duration_since(arrived);
    if runqueue::counted(late, Some(queued)).is_none_or(|c| c <= TOLERANCE) {
        return;
    }
    if case.conns[conn].close_began_by(arrived + TOLERANCE + queued) {
        return;
    }
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::LateWakeup,
            op,
            socket.owner(),
            format!(
                "{op} was running when the peer's bytes arrived ({:?} into the op) and returned {late:?} after them ({:?} of it the case's threads waiting for a CPU), more than the {TOLERANCE:?} allowed, with no Close before: readiness did not wake it",
                arrived.saturating_duration_since(start),
                queued
            ),
        ),
    );
}

/// When bytes for a read on `socket` (connection `conn`) that began at
/// `start` first arrived, if the rule judges that read (see the module
/// docs).
fn bytes_arrived(
    case: &Case,
    conn: usize,
    socket: &Arc<dyn Conn>,
    start: Instant,
) -> Option<Instant> {
    if !read_by_one_thread(case, conn) {
        return None;
    }
    if case.scenario.transport == Transport::Unixgram
        && case.conns[conn].peer_closed.load(Ordering::Acquire)
    {
        return None;
    }
    if !is_peered(case, conn, socket) {
        return None;
    }
    let writes = case.conns[conn]
        .peer_writes
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    writes
        .iter()
        .filter(|&&(began, _)| began >= start)
        .map(|&(_, returned)| returned)
        .min()
}

/// Whether at most one scenario thread reads connection `conn`.
fn read_by_one_thread(case: &Case, conn: usize) -> bool {
    let readers = case
        .scenario
        .threads
        .iter()
        .filter(|t| {
            t.ops.iter().any(|op| {
                matches!(op, Op::Read { conn: c, .. } | Op::ReadFrom { conn: c, .. } if *c == conn)
            })
        })
        .count();
    readers <= 1
}

/// Whether a thread is inside a read whose bytes arrived less than
/// [`TOLERANCE`] (plus a margin) ago: the supervisor then keeps the case
/// running, so that such a read is either back by then or is closed late
/// by teardown and judged late.
pub(super) fn wakeup_pending(case: &Case) -> bool {
    let window = TOLERANCE + Duration::from_millis(100);
    super::io_in_progress(case).any(|io| {
        io.dir == 0
            && bytes_arrived(case, io.conn, &io.socket, io.started)
                .is_some_and(|at| runqueue::still_within(case, io.thread, at, window))
    })
}

/// Look for a pending error on every running read the error side judges,
/// noting the first sighting of each; whether one was sighted less than
/// [`TOLERANCE`] (plus a margin) ago and its read still runs: the
/// supervisor then keeps the case running (see the module docs).
pub(super) fn error_pending(case: &Case) -> bool {
    if !matches!(case.scenario.transport, Transport::Udp4 | Transport::Udp6) {
        return false;
    }
    let window = TOLERANCE + Duration::from_millis(100);
    let mut pending = false;
    for io in super::io_in_progress(case) {
        if io.dir != 0
            || !read_by_one_thread(case, io.conn)
            || !is_peered(case, io.conn, &io.socket)
        {
            continue;
        }
        let slot = &case.conns[io.conn];
        let seen = match error_seen(case, io.conn, io.started) {
            Some(at) => Some(at),
            None if socket_error_pending(case, io.conn, &io.socket) => {
                let now = Instant::now();
                slot.errors_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((io.started, now));
                Some(now)
            }
            None => None,
        };
        pending |= seen.is_some_and(|at| runqueue::still_within(case, io.thread, at, window));
    }
    pending
}

/// When the supervisor first saw an error pending while the read of
/// connection `conn` stamped `started` ran.
fn error_seen(case: &Case, conn: usize, started: Instant) -> Option<Instant> {
    case.conns[conn]
        .errors_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|&&(read, _)| read == started)
        .map(|&(_, seen)| seen)
}

/// Whether `socket` (connection `conn`, not closed) has an error pending,
/// polled on its number only while that number is known to be it.
fn socket_error_pending(case: &Case, conn: usize, socket: &Arc<dyn Conn>) -> bool {
    let slot = &case.conns[conn];
    if slot.closed.load(Ordering::Acquire) {
        return false;
    }
    let Some((fd, Some(identity))) = case.ledger.open_number(socket.owner()) else {
        return false;
    };
    if netfd::sys::file_identity(fd) != Some(identity) {
        return false;
    }
    let pending = raw::error_pending(fd);
    // A Close that began after the first check may have freed the number
    // before the poll; the identity check after it catches a reuse.
    pending
        && netfd::sys::file_identity(fd) == Some(identity)
        && !slot.closed.load(Ordering::Acquire)
}

/// Judge the error side for the read on `conn`, on `socket`, that case
/// thread `me` is finishing at `end` (its `current_op` stamp is still set).
pub(super) fn judge_error_wakeup(
    case: &Case,
    me: usize,
    op: &Op,
    conn: usize,
    socket: &Arc<dyn Conn>,
    end: Instant,
) {
    let Some((_, started)) = *case.current_op[me]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
    else {
        return;
    };
    let Some(seen) = error_seen(case, conn, started) else {
        return;
    };
    count_check(case, ViolationKind::LateWakeup);
    if end <= seen + TOLERANCE {
        return;
    }
    let Some(queued) = runqueue::since_op_start(case, me) else {
        return;
    };
    let late = end.saturating_duration_since(seen);
    if runqueue::counted(late, Some(queued)).is_none_or(|c| c <= TOLERANCE) {
        return;
    }
    let slot = &case.conns[conn];
    if slot.close_began_by(seen + TOLERANCE + queued) {
        return;
    }
    let sent_since = slot
        .local_sends
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|&(began, returned)| returned >= seen && began <= end);
    let sending = super::io_in_progress(case).any(|io| io.dir == 1 && io.conn == conn);
    if sent_since || sending {
        return;
    }
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::LateWakeup,
            op,
            socket.owner(),
            format!(
                "{op} was running when an error was pending on its socket ({:?} into the op) and returned {late:?} after it was seen ({queued:?} of it the case's threads waiting for a CPU), more than the {TOLERANCE:?} allowed, with no Close or send before: the error did not wake it",
                seen.saturating_duration_since(started),
            ),
        ),
    );
}

/// Whether a Write/WriteTo on `conn`, on the socket its peer is connected
/// to, is running (the write side of the rule judges only a peer_read that
/// began during one).
pub(super) fn write_running(case: &Case, conn: usize) -> bool {
    let running = super::io_in_progress(case)
        .any(|io| io.dir == 1 && io.conn == conn && is_peered(case, conn, &io.socket));
    if running {
        count_check(case, ViolationKind::LateWakeup);
    }
    running
}

/// Judge the writes on `conn` after its peer, taking in their bytes
/// (`op`, on case thread `me`), got its last byte at `since` and then
/// nothing for the tolerance.
pub(super) fn judge_stalled_write(case: &Case, me: usize, op: &Op, conn: usize, since: Instant) {
    let now = Instant::now();
    if case.conns[conn].close_began_by(now) {
        return;
    }
    let parked = super::io_in_progress(case).find(|io| {
        io.dir == 1 && io.conn == conn && io.started < since && is_peered(case, conn, &io.socket)
    });
    let Some(io) = parked else { return };
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::LateWakeup,
            op,
            io.socket.owner(),
            format!(
                "a write on connection {conn} ({:?} in) was parked when the peer took in what it had sent; the peer then waited {:?} with nothing more and the write still running, with no Close: freed space did not wake it",
                since.saturating_duration_since(io.started),
                now.saturating_duration_since(since)
            ),
        ),
    );
}

/// Whether `socket` is the one the peer of `conn` was connected to in
/// setup.
fn is_peered(case: &Case, conn: usize, socket: &Arc<dyn Conn>) -> bool {
    case.conns[conn]
        .peered_socket
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|p| std::ptr::addr_eq(p.as_ptr(), Arc::as_ptr(socket)))
}
