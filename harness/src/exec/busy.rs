//! The sleeping rule.
//!
//! **Busy wait** (`no_busy_wait`, kind `busy_wait`): an op that waits — for
//! bytes, for buffer space, for a connection, for its deadline, for the
//! last reference to go — sleeps in the kernel until what it waits for
//! happens. Two ways of not doing so are judged:
//!
//! - *spinning on a CPU*: the op's thread was on a CPU for more than
//!   [`CPU_FLOOR`] *and* for more than [`CPU_SHARE`] of the op's wall time
//!   (a parker that returns at once, a waiter slot that reads as empty);
//! - *parking in laps* (both modes): the op parked — gave up its thread
//!   to wait in the target, at netfd's `BeforePark` or, for a target
//!   without probe calls, at a blocking call the interposer sees would
//!   block — more than [`PARKS_FLOOR`] times. A correct waiter parks once
//!   per thing that wakes it (readiness, its deadline, a deadline moved,
//!   Close); a poll server that fires a timer before it is due wakes the
//!   waiter, which finds its deadline not passed, tries its syscall, gets
//!   EAGAIN and parks again, hundreds of times in a few ms. The count is
//!   the target's own, so the controlled scheduler's turns do not add to
//!   it and a loaded machine only slows the laps: it does not hide them
//!   the way it lowers CPU time (the `fire_timers` mutants were caught by
//!   the sleeps trigger at load 1.4 and missed at load 4 before this one).
//! - *spinning through the kernel* (free mode only): the thread went to
//!   sleep and was woken more than [`SLEEPS_FLOOR`] times in one op (a
//!   timer that fires before it is due, a waiter that re-checks and
//!   re-arms it: each lap sleeps for µs, so the CPU share stays low while
//!   the poll server and the waiter wake each other thousands of times a
//!   second). In controlled mode a thread that waits for its turn is woken
//!   at every turn the scheduler hands out, so its count says nothing
//!   about the target: a soak found a correct Close that waited 500 ms for
//!   the last reference woken 1,282 times that way.
//!
//! The results can all be right — the op still returns what it should,
//! when it should — and the machine loses a core for as long as the wait
//! lasts, which no result-based rule sees.
//!
//! Protocol. The op's thread reads its own CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`, [`thread_cpu_time`]) and its count of
//! voluntary context switches ([`thread_sleeps`]) before and after the op,
//! and the case counts the thread's parks (`Case::parks`, bumped at every
//! `BeforePark` the thread reaches), so only that thread counts (never
//! the poll server, the peer or the supervisor), and every op that calls the target is judged; the
//! harness's own ops (`open`, `sleep`, `yield`, `peer_*`) are not, nor is
//! `rebind`, whose time is mostly the harness's own check of
//! `/proc/net/tcp` for the closed listener (tens of ms with many sockets in
//! TIME_WAIT) and which never waits in the target. Waiting for the
//! controlled scheduler's turn is a condition-variable sleep: it costs no
//! CPU (so the CPU trigger holds in both modes), but it is woken at every
//! turn (so the sleeps trigger is free mode's).
//!
//! Why these bounds never flake. They are far above what any op of a
//! scenario or a generated case costs a correct target: in a 60 s run of
//! every scenario and the generated cases on both wait paths, in each mode
//! (fdmutex, about 38,000 cases, load ~2), the most CPU any op used was
//! 16.5 ms (a read, 30% of its wall time; an 8 MiB write: 11 ms, but a
//! later free-mode soak saw one at 51 ms, all of it on a CPU, hence the
//! allowance per byte moved, [`CPU_PER_BYTE`]) and the
//! most sleeps 149 (a Close in controlled mode, one per turn handed back);
//! an op of a correct target sleeps once per wait (a later soak found the
//! controlled-mode exception above). A loaded machine mostly lowers the
//! CPU a thread gets, so load hides a spin more often than it makes one
//! up; the exception is the kernel's network work charged to the thread
//! that happens to run it (the receiving side of loopback, softirqs of
//! other sockets), which grows with the bytes an op moves. The mutants they were set against: a parker that returns at
//! once used ~100% of a core for the whole wait; a poll server that fires
//! every timer at once woke its waiter 2,800–13,000 times in a 1 s wait,
//! and parked 101 times in 7 ms (`fire_timers`' `>` → `==`, free mode,
//! server path). The most parks of one op of a correct target: 4, in
//! 110,000 generated cases (each mode on each wait path, load 2–6) and
//! every scenario; the floor is 25 times that.
//!
//! **Load.** The CPU trigger's share is taken of the op's wall time less
//! its own thread's waits for a CPU over the op ([`runqueue`]; the wall
//! time if the figure cannot be read), i.e. of the time the thread was
//! either on a CPU or asleep: a spinner fills that time with CPU and a
//! waiter with sleep, whatever the load. Why load cannot make a trigger
//! fire on a correct op: its CPU clock counts only its own running, which
//! load does not raise (the kernel's network work charged to it grows
//! with the bytes, hence the allowance per byte), and the CPU floor holds
//! before any share is looked at; the sleeps and parks are counts of the
//! thread's own blocking and the target's own parks, once per thing a
//! correct op waits for, however long it waits for a CPU in between (a
//! lock whose holder is preempted can add a few, far below the floors).
//! Why load does not make them miss a spin: the share is no longer watered
//! down by the time a spinner spends queued. What load can still do is
//! hand a spin bounded by wall time too little CPU, or too few laps, to
//! pass a floor: it can hide a short spin, never make one up. The planted
//! spinners of `tests/busy_wait_rule.rs` therefore count their laps (on
//! the thread's CPU clock, in parks they saw, in tries), so the verdict
//! there is the code's.

use super::events::{thread_cpu_time, thread_sleeps};
use super::judge::{count_check, found_here, record};
use super::runqueue;
use super::Case;
use crate::report::{Mode, ViolationKind};
use crate::scenario::Op;
use netfd::probe::OwnerId;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// CPU time below which no op is judged busy.
pub const CPU_FLOOR: Duration = Duration::from_millis(50);

/// The share of its wall time an op may spend on a CPU (above the floor).
pub const CPU_SHARE: f64 = 0.5;

/// Sleeps (voluntary context switches) one op may take.
pub const SLEEPS_FLOOR: u64 = 1000;

/// CPU an op may use per byte it asks to move, on top of [`CPU_FLOOR`]:
/// moving bytes is work, not waiting. On loopback the sender's thread also
/// runs the receiving side's protocol processing (and, as a softirq, other
/// sockets' too), so an 8 MiB write that never waits is on a CPU
/// throughout: a soak saw 51 ms (~6 ns a byte, free mode, eight cases at
/// once); this allows four times that.
pub const CPU_PER_BYTE: Duration = Duration::from_nanos(25);

/// Times one op may park (sleep in the target to wait for its socket).
pub const PARKS_FLOOR: u64 = 100;

/// Where the op began, for [`judge_busy_wait`].
pub(super) struct OpClock {
    began: Instant,
    cpu: Option<Duration>,
    sleeps: Option<u64>,
    parks: u64,
    /// The thread's run-queue wait so far ([`runqueue`]).
    queued: Option<Duration>,
}

impl OpClock {
    /// Read the clocks just before case thread `me` runs an op.
    pub(super) fn start(case: &Case, me: usize) -> OpClock {
        OpClock {
            cpu: thread_cpu_time(),
            sleeps: thread_sleeps(),
            parks: case.parks[me].load(Ordering::Relaxed),
            queued: case.events.tid(me).and_then(runqueue::waited),
            began: Instant::now(),
        }
    }
}

/// Judge `op`, just returned on the calling thread (case thread `me`),
/// that began at `clock`.
pub(super) fn judge_busy_wait(case: &Case, me: usize, op: &Op, clock: OpClock) {
    let cpu = clock
        .cpu
        .zip(thread_cpu_time())
        .map(|(before, after)| after.saturating_sub(before));
    let sleeps = clock
        .sleeps
        .zip(thread_sleeps())
        .map(|(before, after)| after.saturating_sub(before));
    let parks = case.parks[me].load(Ordering::Relaxed) - clock.parks;
    case.most_parks.fetch_max(parks, Ordering::Relaxed);
    if !calls_the_target(op) {
        return;
    }
    count_check(case, ViolationKind::BusyWait);
    let wall = clock.began.elapsed();
    // The time the thread could have used a CPU: on one, or asleep. Its
    // waits for a CPU come off, so that load does not water a spin down;
    // unknown, the wall time stands (a smaller share: never a spin made up).
    let queued = runqueue::moved(clock.queued, case.events.tid(me).and_then(runqueue::waited));
    let own = runqueue::counted(wall, queued).unwrap_or(wall);
    let (cpu_floor, sleeps_floor) = floors(op);
    let message = if parks > PARKS_FLOOR {
        format!(
            "{op} ran {wall:?} and parked {parks} times (over {PARKS_FLOOR} is a spin through the kernel): each wake-up found nothing to do and it parked again; a waiting op must be woken when what it waits for happens, not to look again"
        )
    } else if let Some(cpu) =
        cpu.filter(|c| *c > cpu_floor && c.as_secs_f64() > CPU_SHARE * own.as_secs_f64())
    {
        format!(
            "{op} ran {wall:?} ({own:?} not counting its waits for a CPU) and its thread was on a CPU for {cpu:?} of it ({:.0}%; over {cpu_floor:?} and {:.0}% is a spin): a waiting op must sleep, not poll",
            100.0 * cpu.as_secs_f64() / own.as_secs_f64().max(1e-9),
            100.0 * CPU_SHARE
        )
    } else if let Some(n) = sleeps.filter(|&n| n > sleeps_floor && case.mode == Mode::Free) {
        format!(
            "{op} ran {wall:?} and its thread went to sleep and was woken {n} times (over {sleeps_floor} is a spin through the kernel): a waiting op must sleep until what it waits for happens, not be woken to look again"
        )
    } else {
        return;
    };
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::BusyWait,
            op,
            OwnerId::NONE,
            message,
        ),
    );
}

/// The CPU time and the sleeps above which `op` is busy: the floors, plus
/// the CPU moving the bytes it asks for may take. Sleeps get no such
/// allowance: a write bigger than the send buffer sleeps each time the
/// buffer fills, but the kernel wakes it only once a third or more of the
/// buffer is free, so even 8 MiB takes far fewer than [`SLEEPS_FLOOR`]
/// (with an allowance of one sleep per 4 KiB, the mutation detector missed
/// a poll server that fires timers early, `fire_timers`' `>` → `==`).
pub fn floors(op: &Op) -> (Duration, u64) {
    let bytes = match *op {
        Op::Read { bytes, .. }
        | Op::ReadFrom { bytes, .. }
        | Op::Write { bytes, .. }
        | Op::WriteTo { bytes, .. } => bytes as u64,
        _ => 0,
    };
    (
        CPU_FLOOR + CPU_PER_BYTE * u32::try_from(bytes).unwrap_or(u32::MAX),
        SLEEPS_FLOOR,
    )
}

/// Whether `op` is judged: the ops on a socket under test, but `rebind`.
fn calls_the_target(op: &Op) -> bool {
    op.is_socket_op() && !matches!(op, Op::Rebind { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_moved_raise_the_floors_and_waiting_ops_keep_them() {
        let small = Op::Read { conn: 0, bytes: 8 };
        assert_eq!(floors(&small), (CPU_FLOOR + CPU_PER_BYTE * 8, SLEEPS_FLOOR));
        assert_eq!(floors(&Op::Close { conn: 0 }), (CPU_FLOOR, SLEEPS_FLOOR));
        // The 8 MiB write a soak saw on a CPU for 51 ms throughout is
        // within its floor; a 1 s spin of it is not.
        let (cpu, sleeps) = floors(&Op::Write {
            conn: 0,
            bytes: 8 << 20,
        });
        assert!(cpu > Duration::from_millis(200) && cpu < Duration::from_millis(300));
        assert_eq!(sleeps, SLEEPS_FLOOR);
    }
}
