//! The deadline rules.
//!
//! **Late** (`no_late_deadline`, kind `late_deadline`): an operation parked
//! when its deadline passes returns within [`TOLERANCE`] of the deadline,
//! unless Close or readiness came first.
//!
//! **Ignored** (`no_ignored_deadline`, kind `ignored_deadline`): an
//! operation begun after its deadline had passed fails with the timeout (or
//! the closed error); it does not read or write, even when data or buffer
//! space is there. A deadline is an absolute instant after which I/O fails
//! instead of blocking (Go's contract, and netfd's: the check comes before
//! the syscall), so a read that returns data after it is a deadline that
//! was not looked at. No tolerance is needed: the op's start is taken
//! before the target is called, so a target checking its deadline at any
//! moment of the op sees it passed too.
//!
//! Protocol. For a Read/ReadFrom (read direction) or Write/WriteTo (write
//! direction) on connection `c` that began at `start` and returned at `end`:
//! - only SetDeadlines made on the socket the op ran on count: a slot's
//!   socket may be replaced while the op runs (a dial and an accept filling
//!   one slot), and a deadline set on its successor is not the op's;
//! - a SetDeadline the target refused changed nothing and is not in force;
//! - late: the deadline that was surely in force is the last SetDeadline of
//!   that direction that completed before `end` with no other SetDeadline
//!   of the direction begun after it and before `end` (a racing pair may
//!   take effect in either order: then nothing is judged);
//! - ignored: the same, but completed before `start`: the deadline the op
//!   began under, and none changed it while the op ran;
//! - late: it is due at `due = max(at, its SetDeadline's return, start)`: a
//!   deadline set in the past while the op was parked is due when the set
//!   returned, as SetDeadline must wake the op to re-evaluate;
//! - late: if `end > due + TOLERANCE`, the op was late — unless something
//!   else that ends a parked op came first: the connection's Close, or a
//!   peer write or peer close (readiness) began before `due + TOLERANCE`.
//!   Which result the op returned does not matter: a read that got the
//!   closed error from teardown's Close, or data, long after its deadline,
//!   had to time out before.
//!
//! What they catch: a deadline change that is stored but does not wake the
//! parked op (the op then returns only when teardown closes it), a timer
//! that never fires, a poll timeout computed from a stale deadline (late);
//! an operation that tries its syscall before checking its deadline, or a
//! deadline check that forgets a direction (ignored).
//!
//! The late tolerance is generous on purpose: the rule must never flake on a
//! loaded 2-core machine, where a woken thread may wait tens of ms for a
//! CPU, and in controlled mode for its turn as well. 500 ms is half the
//! hang bound's default. The poll server's p99 lateness with 10,000 timers
//! under heavy load ranged 11–258 ms (docs/performance.md, "Poll server"),
//! so a late wake-up that is not a bug can exceed a tighter tolerance.
//!
//! **Load.** What is held to the tolerance is the time that counts
//! ([`runqueue`]): `end - due` less how long the case's threads and
//! netfd's poll server waited for a CPU from the op's start on (earlier
//! than `due`: a discount too big, if anything); the Close and readiness
//! excuses extend to `due + TOLERANCE` plus that discount. Why load cannot
//! make it fire on a correct target: a correct op's deadline is kept by a
//! timer that fires on time (the poll server's, or the waiter's own timed
//! wait on the Direct path); from then to the return the op needs only
//! microseconds of CPU, and every wait for one — the server's, the op
//! thread's, the turn-holder's in controlled mode — comes off. The
//! supervisor keeps the case running on the same time
//! ([`overdue_op_running`]), for at most [`runqueue::MOST_STRETCH`]
//! windows of wall time; an unreadable figure judges nothing. An op whose
//! deadline nobody honours sleeps, which is not taken off. The ignored
//! rule compares instants taken before and after the op, not a duration:
//! load does not enter it.

use super::judge::{count_check, found_here, record};
use super::runqueue;
use super::Case;
use crate::report::ViolationKind;
use crate::scenario::Op;
use crate::target::Conn;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How late after its deadline a parked op may return.
pub const TOLERANCE: Duration = Duration::from_millis(500);

/// Judge one op on `conn` in direction `dir` (0 read, 1 write) that ran
/// from `start` to `end`.
#[allow(clippy::too_many_arguments)]
pub(super) fn judge_late(
    case: &Case,
    me: usize,
    op: &Op,
    conn: usize,
    socket: &Arc<dyn Conn>,
    dir: usize,
    start: Instant,
    end: Instant,
) {
    let slot = &case.conns[conn];
    let Some(due) = due(case, conn, socket, dir, start, end) else {
        return;
    };
    count_check(case, ViolationKind::LateDeadline);
    if end <= due + TOLERANCE {
        return;
    }
    // Late by the time that counts (runqueue.rs); unknown, not judged.
    let Some(queued) = runqueue::since_op_start(case, me) else {
        return;
    };
    let late = end.saturating_duration_since(due);
    if runqueue::counted(late, Some(queued)).is_none_or(|c| c <= TOLERANCE) {
        return;
    }
    let limit = due + TOLERANCE + queued;
    let peer_events = slot.peer_events.lock().unwrap_or_else(|e| e.into_inner());
    let excused =
        slot.close_began_by(limit) || peer_events.iter().any(|&t| t >= start && t <= limit);
    if excused {
        return;
    }
    let owner = socket.owner();
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::LateDeadline,
            op,
            owner,
            format!(
                "{op} was parked when its deadline passed ({:?} into the op) and returned {late:?} after it ({queued:?} of it the case's threads waiting for a CPU), more than the {TOLERANCE:?} allowed, with no Close or readiness before",
                due.saturating_duration_since(start),
            ),
        ),
    );
}

/// Judge one op on `conn` in direction `dir` that began at `start`,
/// returned at `end`, and succeeded (`ok`): if the deadline it began under
/// had already passed, it had to fail.
#[allow(clippy::too_many_arguments)]
pub(super) fn judge_ignored(
    case: &Case,
    me: usize,
    op: &Op,
    conn: usize,
    socket: &Arc<dyn Conn>,
    dir: usize,
    start: Instant,
    end: Instant,
    ok: bool,
) {
    let Some(at) = passed_at_start(case, conn, socket, dir, start, end) else {
        return;
    };
    count_check(case, ViolationKind::IgnoredDeadline);
    if !ok {
        return;
    }
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::IgnoredDeadline,
            op,
            socket.owner(),
            format!(
                "{op} began {:?} after its deadline had passed and succeeded: it had to fail with the timeout",
                start.saturating_duration_since(at)
            ),
        ),
    );
}

/// The deadline an op on `socket` that ran from `start` to `end` began
/// under, if it had passed by `start` and surely stayed in force until
/// `end` (see the module docs).
fn passed_at_start(
    case: &Case,
    conn: usize,
    socket: &Arc<dyn Conn>,
    dir: usize,
    start: Instant,
    end: Instant,
) -> Option<Instant> {
    let d = case.conns[conn]
        .deadlines
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let sets: Vec<&super::DeadlineSet> = d[dir].iter().filter(|s| s.set_on(socket)).collect();
    let last = in_force(&sets, start, end)?;
    last.at.filter(|&at| at <= start)
}

/// The last of `sets` that completed by `by`, unless another overlaps it
/// or began after it before `until` (either could then be the one in
/// force), or the target refused it.
fn in_force<'a>(
    sets: &[&'a super::DeadlineSet],
    by: Instant,
    until: Instant,
) -> Option<&'a super::DeadlineSet> {
    let (i, last) = sets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.end.is_some_and(|e| e <= by))
        .map(|(i, s)| (i, *s))
        .max_by_key(|(_, s)| s.end)?;
    let raced = sets
        .iter()
        .enumerate()
        .any(|(j, &s)| j != i && s.start <= until && s.end.is_none_or(|e| e >= last.start));
    (!raced && !last.failed).then_some(last)
}

/// When the deadline surely in force for an op on `socket` (connection
/// `conn`) in `dir` that began at `start` is due, judged at `end` (see the
/// module docs); `None` when there is none or it is ambiguous.
fn due(
    case: &Case,
    conn: usize,
    socket: &Arc<dyn Conn>,
    dir: usize,
    start: Instant,
    end: Instant,
) -> Option<Instant> {
    let slot = &case.conns[conn];
    {
        let d = slot.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        // Only this socket's: a slot refilled by dial or accept keeps the
        // sets made on the one before, and may be refilled while the op
        // runs on the one before.
        let sets: Vec<&super::DeadlineSet> = d[dir].iter().filter(|s| s.set_on(socket)).collect();
        // The last set that completed before the op returned.
        let last = in_force(&sets, end, end)?;
        let at = last.at?;
        let set_end = last.end.unwrap_or(end);
        Some(at.max(set_end).max(start))
    }
}

/// Whether a thread is still inside a read or write whose deadline fell due
/// less than [`TOLERANCE`] (plus a margin) ago: the supervisor then keeps
/// the case running, so that such an op is either back by then or is
/// closed late by teardown and judged late, instead of being rescued by a
/// teardown Close right after its deadline.
pub(super) fn overdue_op_running(case: &Case) -> bool {
    let now = Instant::now();
    let window = TOLERANCE + Duration::from_millis(100);
    // An op whose slot was refilled meanwhile is judged by the new socket's
    // deadlines here, which are not its own: it is then not waited for, and
    // a teardown Close before its tolerance is over leaves it unjudged, not
    // misjudged.
    super::io_in_progress(case).any(|io| {
        due(case, io.conn, &io.socket, io.dir, io.started, now)
            .is_some_and(|d| d <= now && runqueue::still_within(case, io.thread, d, window))
    })
}
