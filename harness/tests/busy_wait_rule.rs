//! The busy-wait rule (`no_busy_wait`, `harness/src/exec/busy.rs`): an op
//! that waits sleeps until what it waits for happens. fdmutex keeps it on
//! both wait paths and in both modes; a target whose reads poll breaks it,
//! though every result it returns is right: one that spins on the CPU
//! between tries (the CPU trigger), one whose tries park for 1 ms each
//! (the laps trigger, both modes: hundreds of parks in one wait), and one
//! that sleeps 20 µs between tries that do not park (the sleeps trigger,
//! free mode: thousands of wake-ups in one wait, little CPU).

mod polling;

use harness::exec::{self, CaseConfig};
use harness::report::{Mode, ViolationKind};
use harness::target::{NetfdTarget, Target};
use netfd::{Variant, WaitPath};
use polling::{waits, Between, Polling};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn fdmutex_sleeps_while_it_waits_on_both_wait_paths() {
    let s = waits();
    for wait in [WaitPath::Direct, WaitPath::Server] {
        let target: Arc<dyn Target> =
            Arc::new(NetfdTarget::with_wait(Variant::FdMutex, Some(wait)));
        for mode in [Mode::Free, Mode::Controlled] {
            for i in 0..3 {
                let mut cc = CaseConfig::new(mode, i);
                cc.hang_bound = Duration::from_secs(3);
                let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
                assert!(
                    o.found.is_empty(),
                    "{wait:?} {mode:?} case {i}: {:?}",
                    o.found
                        .iter()
                        .map(|f| (f.kind, f.message.clone()))
                        .collect::<Vec<_>>()
                );
                // The rule looked at the reads, the set_deadline and the Close.
                let judged = o
                    .checks
                    .iter()
                    .find(|(k, _)| *k == ViolationKind::BusyWait)
                    .map_or(0, |&(_, n)| n);
                assert!(
                    judged >= 4,
                    "{wait:?} {mode:?} case {i}: {judged} ops judged"
                );
            }
        }
    }
}

/// The polling tests run one at a time, so that they do not load each
/// other. The verdicts no longer depend on it (the rule takes a thread's
/// waits for a CPU off its wall time, and the planted reads count their
/// laps), but three spinners at once on this 2-core machine would slow the
/// other tests of the binary for nothing.
static ONE_SPINNER: Mutex<()> = Mutex::new(());

fn polling_is_busy(between: Between, says: &str, modes: &[Mode]) {
    let _one = ONE_SPINNER.lock().unwrap_or_else(|e| e.into_inner());
    let s = waits();
    let target: Arc<dyn Target> = Arc::new(Polling(NetfdTarget::new(Variant::FdMutex), between));
    for &mode in modes {
        for i in 0..3 {
            let mut cc = CaseConfig::new(mode, i);
            cc.hang_bound = Duration::from_secs(3);
            let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
            let busy: Vec<_> = o
                .found
                .iter()
                .filter(|f| f.kind == ViolationKind::BusyWait)
                .collect();
            assert!(
                busy.len() == o.found.len(),
                "{mode:?} case {i}: only busy_wait expected, got {:?}",
                o.found
                    .iter()
                    .map(|f| (f.kind, f.message.clone()))
                    .collect::<Vec<_>>()
            );
            // The deadline read polls its laps in every schedule and on any
            // load (polling/mod.rs); the second read waits for the Close
            // too, unless the closer came first and that read found the
            // socket closed: the controlled schedule may run it first, and
            // in free mode a loaded machine may stretch the first read's
            // laps past the closer's 500 ms sleep.
            assert!(
                (1..=2).contains(&busy.len())
                    && busy[0].op.contains("conn=0")
                    && busy.iter().all(|f| f.message.contains(says)),
                "{mode:?} case {i}: {:?}",
                busy.iter().map(|f| &f.message).collect::<Vec<_>>()
            );
            assert!(busy.iter().all(|f| f.op.starts_with("read")));
        }
    }
}

#[test]
fn a_reader_that_spins_between_tries_is_a_busy_wait() {
    polling_is_busy(
        Between::ParkThenSpin {
            park: Duration::from_micros(100),
            spin: Duration::from_millis(4),
        },
        "on a CPU",
        &[Mode::Free, Mode::Controlled],
    );
}

#[test]
fn a_reader_that_parks_1_ms_at_a_time_is_a_busy_wait_in_both_modes() {
    // What a poll server that fires timers early does to a correct waiter:
    // woken, it finds nothing, tries, parks again. The count is the
    // target's own parks, so the controlled scheduler's turns do not blur
    // it and both modes judge it.
    polling_is_busy(
        Between::ParkThenSpin {
            park: Duration::from_millis(1),
            spin: Duration::ZERO,
        },
        "parked",
        &[Mode::Free, Mode::Controlled],
    );
}

#[test]
fn a_reader_that_sleeps_20_us_between_tries_is_a_busy_wait() {
    // Its tries never park (their deadline has passed), so only the
    // thread's wake-ups show the laps. Free mode only: in controlled mode
    // every turn handed out wakes a thread that waits for one, so the rule
    // does not count sleeps there.
    polling_is_busy(
        Between::Sleep(Duration::from_micros(20)),
        "woken",
        &[Mode::Free],
    );
}
