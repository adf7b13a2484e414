//! Supervising a running case: waiting until its threads are done or
//! blocked, closing everything still open, naming the ops that hang, and
//! closing the peers.
//!
//! Every wait here is a wait for an event (see [`events`](super::events)):
//! the threads pulse when an op returns, a thread parks, wakes or finishes,
//! and the teardown's closes return; a case whose threads are all parked
//! waits for the nearest deadline one of them waits on, else is settled
//! once the kernel shows every thread left asleep throughout a
//! [`CONFIRM`]. The quiet limits below remain as fallbacks for when the
//! kernel cannot say, and are counted when they end a case.
//!
//! **The hang bounds and load.** After the end-of-case Close begins, every
//! op must be back within the bound (a TCP dial: the bound plus
//! [`SYN_RETRANSMITS`]), and the teardown's own Close within the bound.
//! Both are held to the time that counts since the Close began
//! ([`runqueue`]): the wall time less how long the case's threads, netfd's
//! poll server and the closer waited for a CPU meanwhile. Why load cannot
//! make them fire on a correct target: the Close wakes every parked op and
//! each then needs only CPU time to return, so all that load adds is
//! waiting for a CPU, which comes off; a dial's SYN retransmission is the
//! kernel's timer (asleep, not taken off: hence its own allowance). An op
//! not back within [`runqueue::MOST_STRETCH`] bounds of wall time is a
//! hang whatever the figures say (a thread starved that long is not held
//! up by load alone), and where the kernel has no figures that is the
//! bound. A hung op sleeps, or spins on a CPU, neither of which is taken
//! off. The fallbacks of phase 1 (quiet and stuck limits) end phase 1
//! early and judge nothing; they already ask the kernel whether a thread
//! is runnable before taking it as stuck.

use super::events::{self, KernelSample, CONFIRM};
use super::judge::{check_drained, record};
use super::ops::CaseProbe;
use super::{conn_of, listener_of, runqueue, thread_name, Case, CaseTimings, Found};
use crate::report::{Mode, ViolationKind};
use crate::scenario::{Op, Transport};
use netfd::probe;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a case may go without any event before the supervisor takes
/// it as stuck (a thread blocked where no sync point says so, such as a
/// lock wait inside the protocol) and starts closing everything, when the
/// kernel cannot tell (see [`Settle`]). Longer than any sleep a scenario
/// file uses.
pub(super) const STUCK_QUIET: Duration = Duration::from_millis(50);

/// How much longer than other ops a TCP dial may take to return after
/// Close before it is a hang. The kernel can drop a SYN (soaks saw dials
/// racing a Close of their listener come back 1.0 s later, under load,
/// with no fault in the target: every such dial returned); the client
/// sends it again after the initial retransmission timeout, 1 s, and
/// again 2 s after that. A connect that returns by then is slow, not
/// hung; `slow_dials` in the case timings counts them.
pub(super) const SYN_RETRANSMITS: Duration = Duration::from_secs(3);

/// In the set [`supervise`] returns: the teardown's own Close hung (no
/// thread of the case has this index).
pub(super) const TEARDOWN_HUNG: usize = usize::MAX;

/// Wait for the threads; when all are done or blocked, close everything and
/// wait `bound` for the blocked ones. Returns the threads that hung; the
/// run and teardown phases and the waits inside go into `timings`.
pub(super) fn supervise(
    case: &Arc<Case>,
    bound: Duration,
    timings: &mut CaseTimings,
) -> HashSet<usize> {
    let run_started = Instant::now();
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
    // Phase 1: run until done, or until everyone left is blocked. Woken by
    // the threads' pulses (op returned, park, wake, done), by a deadline
    // a parked op waits for, or every CONFIRM to ask the kernel.
    let phase1_limit = Instant::now() + Duration::from_secs(10) + bound;
    let mut settle = Settle::default();
    loop {
        let seen = case.events.seq();
        if all_done() || Instant::now() >= phase1_limit {
            break;
        }
        let blocked = all_blocked();
        // A parked op whose deadline is near must be left to time out:
        // closing it first would never exercise deadline expiry.
        // Nor one whose deadline just passed: it must come back by itself
        // within the late-deadline tolerance (see `deadline.rs`).
        // Likewise a read whose peer's bytes just arrived: it must come back
        // by itself within the wake-up tolerance (see `wakeup.rs`); and a
        // peer taking in a parked write's bytes, which must see more of
        // them within it; or a read with an error pending on its socket.
        // Sampled on every pass, so that a sighting is never put off.
        let error_pending = super::wakeup::error_pending(case);
        if error_pending
            || super::deadline::overdue_op_running(case)
            || super::wakeup::wakeup_pending(case)
            || case.peer_reads.load(Ordering::Acquire) > 0
        {
            let t = Instant::now();
            case.events.wait(seen, t + CONFIRM);
            timings.deadline_wait += t.elapsed();
            settle = Settle::default();
            continue;
        }
        if blocked {
            if let Some(at) = next_parked_deadline(case, bound) {
                let t = Instant::now();
                case.events.wait(seen, at);
                timings.deadline_wait += t.elapsed();
                settle = Settle::default();
                continue;
            }
        }
        if settle.look(case, seen) {
            if !blocked {
                timings.stuck_seen += 1;
            }
            break;
        }
        // Fallbacks for when the kernel cannot say. A thread the kernel
        // shows runnable is not stuck, only waiting for a CPU (a loaded
        // machine): closing under it would cut the case short.
        let runnable = any_runnable(case);
        if blocked && quiet_for(Duration::from_millis(2)) && !runnable {
            break;
        }
        if (quiet_for(STUCK_QUIET) && !runnable) || stuck_for(bound) {
            timings.stuck_fallbacks += 1;
            break;
        }
        let t = Instant::now();
        case.events.wait(seen, t + CONFIRM);
        if blocked {
            timings.settle_wait += t.elapsed();
        }
    }
    timings.run = run_started.elapsed();
    // The threads of a `threads_exit` case that are done exit before the
    // Close, so that it meets what their exits left behind (exits.rs).
    super::exits::join_finished(case, bound);
    // Phase 2: close everything still open; blocked ops must return. The
    // closes run on their own thread, so a Close that never returns is a
    // hang, not a stuck harness; in controlled mode that thread joins the
    // schedule (sched.rs), so a replay repeats teardown too.
    case.tearing_down.store(true, Ordering::SeqCst);
    // The base of the hang bounds' discount (runqueue.rs), read before the
    // bounds start.
    let queued_at_close = runqueue::total(case);
    let closed_at = Instant::now();
    let closed = Arc::new(AtomicBool::new(false));
    // The closer's kernel id and run-queue wait as it began (it is a pool
    // thread: it outlives the case, so its file can be read after).
    let closer_queued: Arc<Mutex<Option<(i32, Duration)>>> = Arc::new(Mutex::new(None));
    let closer = {
        let case = case.clone();
        let closed = closed.clone();
        let closer_queued = closer_queued.clone();
        super::pool::spawn(move || {
            // Waiters sample the closer like any running thread: its status
            // file is opened now, at a high number, not at their first look.
            if let Some(tid) = events::current_tid() {
                events::prepare_sampling(tid);
                *closer_queued.lock().unwrap_or_else(|e| e.into_inner()) =
                    runqueue::waited(tid).map(|w| (tid, w));
            }
            let slot = (case.mode == Mode::Controlled).then(|| case.sched.enter_closer());
            let probe = Arc::new(CaseProbe::closer(case.clone(), slot));
            let _guard = probe::install(probe.clone());
            let _observer = case.observe.then(|| crate::intercept::install(&*probe));
            close_all(&case);
            if let Some(me) = slot {
                case.sched.closer_done(me, closed_at + bound / 2);
            }
            closed.store(true, Ordering::Release);
            case.events.pulse();
        })
    };
    // The time that counts since the Close began: the wall time less the
    // case's threads' and the poll server's waits for a CPU, and the
    // closer's (before it had recorded its base, all of its wait since the
    // Close is unknown: its base is read after, so the discount is short
    // by at most that; it is taken before the closer does anything).
    let queued = || {
        let mut queued = runqueue::moved(queued_at_close, runqueue::total(case))?;
        if let Some((tid, base)) = *closer_queued.lock().unwrap_or_else(|e| e.into_inner()) {
            queued += runqueue::waited(tid)?.saturating_sub(base);
        }
        Some(queued)
    };
    let counted = || runqueue::counted(closed_at.elapsed(), queued());
    let mut hung = HashSet::new();
    if closer.is_ok() {
        if !wait_counted(
            case,
            || closed.load(Ordering::Acquire),
            closed_at,
            &|| bound,
            &counted,
        ) {
            // A teardown Close that never returns is a hang of its own; and
            // nothing else may close now (a Close on this thread would hang
            // the harness): the caller skips the final sweep.
            hung.insert(TEARDOWN_HUNG);
            record(
                case,
                Found {
                    kind: ViolationKind::Hang,
                    fd: -1,
                    owner: 0,
                    holder: None,
                    op: "close (teardown)".into(),
                    thread: "harness".into(),
                    message: format!(
                        "the end-of-case Close of what the case left open did not return within {bound:?}"
                    ),
                    evidence: None,
                    trace: case.ledger.trace(
                        case.ledger.event_count().saturating_sub(1),
                        &case.thread_names,
                    ),
                },
            );
            case.sched.release_all();
        }
    } else {
        case.sched.release_all();
    }
    wait_ops(case, closed_at, bound, &queued);
    timings.teardown = closed_at.elapsed();
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
                        message: if started > closed_at {
                            format!(
                                "{op}, begun after the Close, did not return within {:?} (running for {:?})",
                                allowed(case, op, bound),
                                started.elapsed()
                            )
                        } else {
                            format!(
                                "{op} did not return {:?} after Close (running for {:?})",
                                allowed(case, op, bound),
                                started.elapsed()
                            )
                        },
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

/// Wait until `done()` holds (woken by pulses), or until the time that
/// counts since `from` (`counted`: the wall time less the waits for a CPU
/// of the threads that could be holding it up, runqueue.rs) reaches
/// `allowed()`; whether it holds. The wall time decides when the discount
/// cannot be read, and past [`runqueue::MOST_STRETCH`] times `allowed()`:
/// a thread back in neither is not held up by load alone, and without
/// the kernel's figures the bounds are these longer ones.
fn wait_counted(
    case: &Case,
    done: impl Fn() -> bool,
    from: Instant,
    allowed: &dyn Fn() -> Duration,
    counted: &dyn Fn() -> Option<Duration>,
) -> bool {
    loop {
        let allowed = allowed();
        let most = from + allowed * runqueue::MOST_STRETCH;
        let until = match counted() {
            // Short of the bound by what is left of it: not sooner back.
            Some(c) if c < allowed => (Instant::now() + (allowed - c)).min(most),
            Some(_) => return done(),
            None => most,
        };
        if case.events.wait_for(&done, until) {
            return true;
        }
        if Instant::now() >= most {
            return done();
        }
    }
}

/// Wait until every thread of the case is done, or one's current op is
/// overdue: it has run longer than it is allowed ([`allowed`]) since the
/// Close, or since its own start if it began after the Close (a thread
/// that still had ops to run when teardown began runs them now; each
/// returns, and the next is a new op, not one the Close left hanging: a
/// churner's three `open`s of 16 sockets each, begun before and run after
/// the Close at load 20, were a false `hang` when the bound ran from the
/// Close for all of them). Time that counts, as in [`wait_counted`]:
/// `queued` is the waits for a CPU since the Close (taking off those
/// before a later op's start too: a discount too big, if anything).
fn wait_ops(
    case: &Case,
    closed_at: Instant,
    bound: Duration,
    queued: &dyn Fn() -> Option<Duration>,
) {
    let threads = case.scenario.threads.len();
    let all_done = || case.finished.load(Ordering::Acquire) == threads;
    let most = closed_at + (bound + SYN_RETRANSMITS) * runqueue::MOST_STRETCH;
    loop {
        let seen = case.events.seq();
        if all_done() {
            return;
        }
        let now = Instant::now();
        if now >= most {
            return;
        }
        let queued = queued();
        // An op that begins raises no pulse: look again within a bound.
        let mut until = (now + bound).min(most);
        for t in 0..threads {
            let cur = *case.current_op[t].lock().unwrap_or_else(|e| e.into_inner());
            let Some((i, started)) = cur else { continue };
            let op = &case.scenario.threads[t].ops[i];
            let allowed = allowed(case, op, bound);
            let since = started.max(closed_at);
            let op_most = since + allowed * runqueue::MOST_STRETCH;
            if now >= op_most {
                return;
            }
            match runqueue::counted(now.saturating_duration_since(since), queued) {
                Some(c) if c >= allowed => return,
                Some(c) => until = until.min(now + (allowed - c)),
                None => until = until.min(op_most),
            }
        }
        case.events.wait(seen, until);
    }
}

/// A dial over TCP: the op [`SYN_RETRANSMITS`] is for.
pub(super) fn is_tcp_dial(case: &Case, op: &Op) -> bool {
    matches!(op, Op::Dial { .. })
        && matches!(case.scenario.transport, Transport::Tcp4 | Transport::Tcp6)
}

/// How long after Close `op` may take to return.
fn allowed(case: &Case, op: &Op, bound: Duration) -> Duration {
    if is_tcp_dial(case, op) {
        bound + SYN_RETRANSMITS
    } else {
        bound
    }
}

/// The earliest deadline still ahead, due within `within`, in the
/// direction of an op parked on its connection: the one thing besides a
/// Close that will move a case whose threads are all parked.
pub(super) fn next_parked_deadline(case: &Case, within: Duration) -> Option<Instant> {
    let now = Instant::now();
    let threads = case.scenario.threads.len();
    (0..threads)
        .filter(|&t| case.parked[t].load(Ordering::Acquire))
        .filter_map(|t| {
            let (i, _) = (*case.current_op[t].lock().unwrap_or_else(|e| e.into_inner()))?;
            let op = case.scenario.threads[t].ops.get(i)?;
            let dir = match op {
                Op::Read { .. } | Op::ReadFrom { .. } => 0,
                Op::Write { .. } | Op::WriteTo { .. } => 1,
                _ => return None,
            };
            let d = case
                .conns
                .get(op.conn()?)?
                .deadlines
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            d[dir].last().and_then(|d| d.at)
        })
        .filter(|&at| at > now && at <= now + within)
        .min()
}

/// Whether the kernel shows some unfinished thread of the case runnable.
fn any_runnable(case: &Case) -> bool {
    (0..case.scenario.threads.len()).any(|t| {
        !case.done[t].load(Ordering::Acquire)
            && case
                .events
                .tid(t)
                .and_then(events::sample)
                .is_some_and(|s| !s.asleep)
    })
}

/// Whether every unfinished thread of the case is asleep in the kernel and
/// stayed so, with no pulse, between two looks a [`CONFIRM`] apart (see
/// [`events`](super::events)). A thread running a `sleep` op is not
/// settled: the scenario orders by that sleep.
#[derive(Default)]
struct Settle {
    /// Pulse count and per-thread samples at the last look, and when.
    last: Option<(u64, Vec<Option<KernelSample>>, Instant)>,
}

impl Settle {
    fn look(&mut self, case: &Case, seq: u64) -> bool {
        let now = Instant::now();
        if self
            .last
            .as_ref()
            .is_some_and(|(_, _, at)| now.duration_since(*at) < CONFIRM)
        {
            return false;
        }
        let threads = case.scenario.threads.len();
        let mut samples = Vec::with_capacity(threads);
        for t in 0..threads {
            if case.done[t].load(Ordering::Acquire) {
                samples.push(None);
                continue;
            }
            let sleeping_op = case.current_op[t]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .and_then(|(i, _)| case.scenario.threads[t].ops.get(i).cloned())
                .is_some_and(|op| matches!(op, Op::Sleep { .. }));
            let Some(s) = case.events.tid(t).and_then(events::sample) else {
                self.last = None;
                return false;
            };
            if sleeping_op || !s.asleep {
                self.last = None;
                return false;
            }
            samples.push(Some(s));
        }
        let settled = match &self.last {
            Some((seen, before, _)) if *seen == seq => {
                before.iter().zip(&samples).all(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => events::slept_throughout(*a, *b),
                    (None, None) => true,
                    _ => false,
                })
            }
            _ => false,
        };
        self.last = Some((seq, samples, now));
        settled
    }
}

/// Close every listener and connection the case's slots hold now, and
/// the connections pushed out of them that are still alive.
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
        // What a dial or accept pushed out of the slot while an op still
        // holds it.
        let displaced = c
            .displaced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for x in displaced.iter().filter_map(std::sync::Weak::upgrade) {
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
