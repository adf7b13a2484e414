//! Cases that run alone in their process.
//!
//! netfd's poll server is one per process, so cases that run at once share
//! it: one case's readiness events and timers wake the server for all. That
//! hides a server that fails to wake itself — one that sleeps through a
//! timer added earlier than the one it sleeps for is woken on time anyway by
//! a neighbour's event, the more surely the busier the run. A scenario that
//! sets `alone` (`Scenario::alone`) is run with no other case in flight:
//! the server then sees only that case's sockets and timers.
//!
//! Protocol: every case holds [`IN_FLIGHT`] while it runs, shared; an
//! `alone` case holds it exclusively, so it starts once the cases in flight
//! have ended, and the cases after it wait for it. std's lock does not let
//! a waiting writer starve behind new readers. Nothing else in a case takes
//! the lock, so it cannot deadlock. Only the wall time of the cases beside
//! it changes; what a run reports does not (`parallel` keeps results in case
//! order whatever ran at once).

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static IN_FLIGHT: RwLock<()> = RwLock::new(());

/// A case's hold on the process while it runs.
pub(super) enum Hold {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// Wait until a case may run: beside others, or (`alone`) by itself.
pub(super) fn enter(alone: bool) -> Hold {
    // A case that panicked while holding the lock poisoned nothing that the
    // lock guards (it guards no data).
    if alone {
        Hold::Alone(IN_FLIGHT.write().unwrap_or_else(|e| e.into_inner()))
    } else {
        Hold::Shared(IN_FLIGHT.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// While an alone hold is taken no shared one is, and the reverse.
    #[test]
    fn an_alone_case_never_overlaps_another() {
        let running = AtomicUsize::new(0);
        let overlapped = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..8 {
                let (running, overlapped) = (&running, &overlapped);
                s.spawn(move || {
                    for round in 0..20 {
                        let alone = (i + round) % 4 == 0;
                        let _hold = enter(alone);
                        let before = running.fetch_add(1, Ordering::SeqCst);
                        if alone && before != 0 {
                            overlapped.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::sleep(Duration::from_micros(200));
                        let now = running.load(Ordering::SeqCst);
                        if alone && now != 1 {
                            overlapped.fetch_add(1, Ordering::SeqCst);
                        }
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(overlapped.load(Ordering::SeqCst), 0);
    }
}
