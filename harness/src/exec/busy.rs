//! The sleeping rule.
//!
//! **Busy wait** (`no_busy_wait`, kind `busy_wait`): an op that waits — for
//! bytes, for buffer space, for a connection, for its deadline, for the
//! last reference to go — sleeps in the kernel while it waits. An op whose
//! thread was on a CPU for more than [`CPU_FLOOR`] *and* for more than
//! [`CPU_SHARE`] of the op's wall time has spun instead: a parker that
//! returns at once, a waiter slot that reads as empty, a timer that fires
//! before it is due and is re-armed, a permit left behind for a lock
//! waiter. The results can all be right — the op still returns what it
//! should, when it should — and the machine loses a core for as long as
//! the wait lasts, which no result-based rule sees.
//!
//! Protocol. The op's thread reads its own CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`, [`thread_cpu_time`]) before and after the
//! op, so only that thread's time counts (never the poll server's, the
//! peer's or the supervisor's), and every op that calls the target is
//! judged; the harness's own ops (`open`, `sleep`, `yield`, `peer_*`) are
//! not, nor is `rebind`, whose time is mostly the harness's own check of
//! `/proc/net/tcp` for the closed listener (tens of ms with many sockets in
//! TIME_WAIT) and which never waits in the target. Waiting for the controlled scheduler's turn is a condition-variable
//! sleep and costs nothing.
//!
//! Why these bounds never flake. The floor is far above what any op of a
//! scenario or a generated case costs a correct target: in a run of every
//! scenario and 5,400 generated cases on both wait paths in both modes
//! (fdmutex, load ~2) the most any op used was 16.5 ms (a read, 30% of its
//! wall time) and an 8 MiB write 11 ms (the buffer filled in memory, a few
//! MiB copied into the socket, then parked); most ops use µs. A loaded
//! machine only lowers the share a thread gets, so load can hide a spin
//! but never make one up. A spinning waiter on this 2-core machine gets
//! about a core for the whole wait: a wait of 100 ms or more (a deadline,
//! a parked read until teardown's Close) shows it at once.

use super::events::thread_cpu_time;
use super::judge::{count_check, found_here, record};
use super::Case;
use crate::report::ViolationKind;
use crate::scenario::Op;
use netfd::probe::OwnerId;
use std::time::{Duration, Instant};

/// CPU time below which no op is judged busy.
pub const CPU_FLOOR: Duration = Duration::from_millis(50);

/// The share of its wall time an op may spend on a CPU (above the floor).
pub const CPU_SHARE: f64 = 0.5;

/// Where the op began, for [`judge_busy_wait`].
pub(super) struct OpClock {
    began: Instant,
    cpu: Option<Duration>,
}

impl OpClock {
    /// Read the clocks just before the op runs.
    pub(super) fn start() -> OpClock {
        OpClock {
            cpu: thread_cpu_time(),
            began: Instant::now(),
        }
    }
}

/// Judge `op`, just returned on the calling thread (case thread `me`),
/// that began at `clock`.
pub(super) fn judge_busy_wait(case: &Case, me: usize, op: &Op, clock: OpClock) {
    let (Some(before), Some(after)) = (clock.cpu, thread_cpu_time()) else {
        return;
    };
    if !calls_the_target(op) {
        return;
    }
    count_check(case, ViolationKind::BusyWait);
    let cpu = after.saturating_sub(before);
    let wall = clock.began.elapsed();
    if cpu <= CPU_FLOOR || cpu.as_secs_f64() <= CPU_SHARE * wall.as_secs_f64() {
        return;
    }
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::BusyWait,
            op,
            OwnerId::NONE,
            format!(
                "{op} ran {wall:?} and its thread was on a CPU for {cpu:?} of it ({:.0}%; over {CPU_FLOOR:?} and {:.0}% is a spin): a waiting op must sleep, not poll",
                100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                100.0 * CPU_SHARE
            ),
        ),
    );
}

/// Whether `op` calls the target (the rest are the harness's own).
fn calls_the_target(op: &Op) -> bool {
    !matches!(
        op,
        Op::Open { .. }
            | Op::Rebind { .. }
            | Op::Sleep { .. }
            | Op::Yield {}
            | Op::PeerWrite { .. }
            | Op::PeerRead { .. }
            | Op::PeerClose { .. }
    )
}
