//! Supervising a running case: waiting until its threads are done or
//! blocked, closing everything still open, naming the ops that hang, and
//! closing the peers.

use super::judge::{check_drained, record};
use super::{conn_of, listener_of, thread_name, Case, Found};
use crate::report::ViolationKind;
use netfd::probe;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a case may go without any event before the supervisor takes
/// it as stuck (a thread blocked where no sync point says so, such as a
/// lock wait inside the protocol) and starts closing everything. Longer
/// than any sleep a scenario file uses; each case that hits it pays it in
/// full, so it sets the pace of generated cases.
pub(super) const STUCK_QUIET: Duration = Duration::from_millis(50);

/// Wait for the threads; when all are done or blocked, close everything and
/// wait `bound` for the blocked ones. Returns the threads that hung.
pub(super) fn supervise(case: &Arc<Case>, bound: Duration) -> HashSet<usize> {
    let threads = case.scenario.threads.len();
    let all_done = || case.finished.load(Ordering::Acquire) == threads;
    let quiet_for = |d: Duration| {
        let last = Duration::from_micros(case.last_event.load(Ordering::Relaxed));
        case.epoch.elapsed().saturating_sub(last) >= d
    };
    // Parked in the kernel or finished; a thread waiting for its turn in
    // the scheduler, or between ops, is still running.
    let all_blocked = || {
        (0..threads)
            .all(|t| case.parked[t].load(Ordering::Acquire) || case.done[t].load(Ordering::Acquire))
    };
    // No op finished for this long, with every thread inside one: nothing
    // but a Close can move the case on (a busy loop that never blocks, or
    // a read nobody will ever feed).
    let stuck_for = |d: Duration| {
        let last = Duration::from_micros(case.last_op_end.load(Ordering::Relaxed));
        case.epoch.elapsed().saturating_sub(last) >= d
    };
    // Phase 1: run until done, or until everyone left is blocked.
    let phase1_limit = Instant::now() + Duration::from_secs(10) + bound;
    while !all_done() && Instant::now() < phase1_limit {
        // A parked op whose deadline is near must be left to time out:
        // closing it first would never exercise deadline expiry.
        // Nor one whose deadline just passed: it must come back by itself
        // within the late-deadline tolerance (see `deadline.rs`).
        let overdue = super::deadline::overdue_op_running(case);
        if all_blocked()
            && quiet_for(Duration::from_millis(2))
            && !deadline_pending(case, bound)
            && !overdue
        {
            break;
        }
        if !overdue && (quiet_for(STUCK_QUIET) || stuck_for(bound)) {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Phase 2: close everything still open; blocked ops must return. The
    // schedule stops here, and the closes run on their own thread so a
    // Close that never returns is a hang, not a stuck harness.
    case.tearing_down.store(true, Ordering::SeqCst);
    case.sched.release_all();
    let closed_at = Instant::now();
    let closer = {
        let case = case.clone();
        let probe = probe::current();
        std::thread::Builder::new()
            .name("case-teardown".into())
            .spawn(move || {
                let _guard = probe.map(probe::install);
                close_all(&case);
            })
    };
    if let Ok(h) = closer {
        while !h.is_finished() && closed_at.elapsed() < bound {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    while !all_done() && closed_at.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut hung = HashSet::new();
    if !all_done() {
        for t in 0..threads {
            let cur = *case.current_op[t].lock().unwrap_or_else(|e| e.into_inner());
            if let Some((i, started)) = cur {
                hung.insert(t);
                let op = &case.scenario.threads[t].ops[i];
                record(
                    case,
                    Found {
                        kind: ViolationKind::Hang,
                        fd: -1,
                        // The socket the op waits on: its connection, or
                        // the listener of an accept.
                        owner: op
                            .conn()
                            .and_then(|c| conn_of(case, c))
                            .map(|c| c.owner().0)
                            .or_else(|| {
                                op.listener()
                                    .and_then(|l| listener_of(case, l))
                                    .map(|l| l.owner().0)
                            })
                            .unwrap_or(0),
                        holder: None,
                        op: op.to_string(),
                        thread: thread_name(case, t),
                        message: format!(
                            "{op} did not return {:?} after Close (running for {:?})",
                            bound,
                            started.elapsed()
                        ),
                        evidence: None,
                        trace: case.ledger.trace(
                            case.ledger.event_count().saturating_sub(1),
                            &case.thread_names,
                        ),
                    },
                );
            }
        }
    }
    hung
}

/// Whether some connection's current deadline is still ahead, and due
/// within `within`.
pub(super) fn deadline_pending(case: &Case, within: Duration) -> bool {
    let now = Instant::now();
    case.conns.iter().any(|c| {
        let d = c.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        d.iter().any(|dir| {
            dir.last()
                .and_then(|d| d.at)
                .is_some_and(|at| at > now && at <= now + within)
        })
    })
}

/// Close every listener and connection the case's slots hold now.
pub(super) fn close_all(case: &Case) {
    for l in case.listeners() {
        let x = l.listener.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(x) = x {
            l.closed.store(true, Ordering::Release);
            let _ = x.close();
        }
    }
    for c in &case.conns {
        let x = c.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(x) = x {
            // Not `mark_closed`: teardown's Close does not excuse an op
            // that overstayed its deadline (deadline.rs).
            c.closed.store(true, Ordering::Release);
            let _ = x.close();
        }
    }
}

/// Check what the peers received, then close them.
pub(super) fn teardown_peers(case: &Case) {
    for (i, slot) in case.conns.iter().enumerate() {
        let peer = slot.peer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = peer {
            check_drained(case, i, &p);
        }
    }
}
