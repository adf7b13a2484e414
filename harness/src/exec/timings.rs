//! Where a case's wall time goes, phase by phase, for `harness measure
//! throughput`. Recorded on every case (a few `Instant::now()` calls), so
//! the figures describe exactly the cases a run ran.
//!
//! Phases, in order, add up to the case's wall time:
//! - `setup`: listeners, connected pairs, peers, threads handed out;
//! - `run`: from the first turn until every thread is done, blocked or
//!   taken as stuck (inside it: `deadline_wait`, the supervisor waiting for
//!   a deadline the case set to expire; `settle_wait`, confirming that the
//!   threads left are blocked before closing under them; and the
//!   scheduler's take-overs of a turn held by a thread blocked where no
//!   sync point says so);
//! - `teardown`: closing everything still open and waiting for the blocked
//!   ops to return;
//! - `finish`: joining, closing what the slots hold, draining the peers,
//!   the leak check.

use serde::{Deserialize, Serialize};
use std::ops::AddAssign;
use std::time::Duration;

/// One case's (or, summed, a run's) time per phase and the waits inside.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseTimings {
    pub setup: Duration,
    pub run: Duration,
    pub teardown: Duration,
    pub finish: Duration,
    /// Supervisor: waiting for a deadline a parked op will expire on.
    pub deadline_wait: Duration,
    /// Supervisor: every thread left is blocked; confirming it before
    /// closing under them.
    pub settle_wait: Duration,
    /// Supervisor: gave up on a case with no event for its quiet limit
    /// (the fallback for a thread blocked where nobody can see it).
    pub stuck_fallbacks: u64,
    /// Supervisor: the kernel showed every thread left asleep while some
    /// were not parked (blocked where no sync point says so): closed at once.
    pub stuck_seen: u64,
    /// Scheduler: a turn taken from a thread the kernel reports asleep
    /// (blocked where no sync point says so), and the time it took to see.
    pub blocked_takeovers: u64,
    pub blocked_wait: Duration,
    /// Scheduler: a turn taken after the full stall timeout (the fallback),
    /// and the time waited for it.
    pub stall_fallbacks: u64,
    pub stall_wait: Duration,
    /// TCP dials that took longer than the hang bound but returned within
    /// the kernel's SYN retransmissions (`supervise::SYN_RETRANSMITS`), and
    /// the slowest TCP dial of all.
    pub slow_dials: u64,
    pub slowest_dial: Duration,
    /// The most times one op parked (slept in the target to wait).
    pub most_parks: u64,
}

impl CaseTimings {
    /// Setup + run + teardown + finish.
    pub fn total(&self) -> Duration {
        self.setup + self.run + self.teardown + self.finish
    }
}

impl AddAssign for CaseTimings {
    fn add_assign(&mut self, o: CaseTimings) {
        self.setup += o.setup;
        self.run += o.run;
        self.teardown += o.teardown;
        self.finish += o.finish;
        self.deadline_wait += o.deadline_wait;
        self.settle_wait += o.settle_wait;
        self.stuck_fallbacks += o.stuck_fallbacks;
        self.stuck_seen += o.stuck_seen;
        self.blocked_takeovers += o.blocked_takeovers;
        self.blocked_wait += o.blocked_wait;
        self.stall_fallbacks += o.stall_fallbacks;
        self.stall_wait += o.stall_wait;
        self.slow_dials += o.slow_dials;
        self.slowest_dial = self.slowest_dial.max(o.slowest_dial);
        self.most_parks = self.most_parks.max(o.most_parks);
    }
}
