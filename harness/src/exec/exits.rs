//! Case threads that exit (a scenario's `threads_exit`).
//!
//! Pooled threads outlive every case, so nothing netfd ties to a thread
//! (its wake-up eventfd, closed by a thread-local destructor when the
//! thread exits; a waker for that eventfd left in a socket's slot) is ever
//! seen to outlive its thread. In a case with `threads_exit` each scenario
//! thread runs on an OS thread of its own, and:
//! - **the exit comes before the Close.** The supervisor joins every
//!   finished thread before the end-of-case Close ([`join_finished`]), so
//!   the Close meets what the exits left: a waker still in a slot is
//!   signalled at a number the exit closed, and the ledger's wake-up rule
//!   reports it (`use_after_close`, or `fd_reuse` once a socket has the
//!   number).
//! - **the wake-up eventfd goes with its thread.** Just before it exits, a
//!   thread pins each eventfd the ledger saw it create with a duplicate,
//!   which keeps that eventfd — and its kernel id — alive. After the join
//!   the number must no longer be that eventfd (`eventfd-id` in
//!   `/proc/self/fdinfo`; every eventfd shares one anonymous inode): else
//!   `leak` ([`wake_fds_left`]). The pin is what makes this sound: while it
//!   lives no other eventfd can be given the same id, so an eventfd that
//!   took the freed number is never mistaken for the old one.
//!
//! A thread still in an op when the case ends (a hang) is not joined.

use super::judge::record;
use super::ops::worker;
use super::{thread_name, Case, Found};
use crate::ledger::eventfd_id;
use crate::report::ViolationKind;
use netfd::probe::OwnerId;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The lowest number a pin is given (above the case's sockets).
const PIN_FD_MIN: RawFd = 512;

/// A wake-up eventfd's number, and the duplicate that pins the eventfd.
type Pins = Vec<(RawFd, OwnedFd)>;

/// Per scenario thread: its OS thread until joined, and the wake-up
/// eventfds it pinned before exiting.
#[derive(Default)]
pub(super) struct Exits {
    threads: Mutex<Vec<Option<JoinHandle<Pins>>>>,
    joined: Mutex<Vec<(usize, Pins)>>,
}

/// Run scenario thread `me` of `case` on an OS thread of its own.
pub(super) fn spawn(case: &Arc<Case>, me: usize, seed: u64) -> io::Result<()> {
    let c = case.clone();
    let h = std::thread::Builder::new()
        .name("harness-exits".into())
        .stack_size(256 << 10)
        .spawn(move || {
            worker(c.clone(), me, seed);
            // The probe is gone with the worker, and the pins sit at high
            // numbers, as the scheduler's status files do: they are not
            // the case's descriptors, and they do not take a number the
            // case's other threads are about to be given.
            let _own = crate::intercept::reported();
            c.ledger
                .wake_fds()
                .into_iter()
                .filter(|&(t, _)| t == me)
                .filter_map(|(_, fd)| {
                    crate::intercept::raw::dup_above(fd, PIN_FD_MIN)
                        .ok()
                        .map(|pin| (fd, pin))
                })
                .collect()
        })?;
    let mut threads = case.exits.threads.lock().unwrap_or_else(|e| e.into_inner());
    if threads.len() <= me {
        threads.resize_with(me + 1, || None);
    }
    threads[me] = Some(h);
    Ok(())
}

/// Join every thread that has finished its ops, waiting at most `bound`
/// for each to be gone (its thread-local destructors run as it exits).
pub(super) fn join_finished(case: &Case, bound: Duration) {
    let mut threads = case.exits.threads.lock().unwrap_or_else(|e| e.into_inner());
    for (t, slot) in threads.iter_mut().enumerate() {
        if !case.done[t].load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let Some(h) = slot.take() else { continue };
        let until = Instant::now() + bound;
        while !h.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(100));
        }
        if !h.is_finished() {
            // An exit that does not end: left behind, like a hung thread.
            *slot = Some(h);
            continue;
        }
        if let Some(tid) = case.events.tid(t) {
            super::events::forget_sampling(tid);
        }
        if let Ok(pins) = h.join() {
            case.exits
                .joined
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((t, pins));
        }
    }
}

/// After the case: a wake-up eventfd of a thread that exited must be
/// closed.
pub(super) fn wake_fds_left(case: &Case) {
    // The pins' reads and closes are the harness's own, not the case's
    // (the interposer must not take them for the target's).
    let _own = crate::intercept::reported();
    let joined = std::mem::take(&mut *case.exits.joined.lock().unwrap_or_else(|e| e.into_inner()));
    for (t, pins) in joined {
        for (fd, pin) in pins {
            let id = eventfd_id(pin.as_raw_fd());
            if id.is_some() && eventfd_id(fd) == id {
                record(
                    case,
                    Found {
                        kind: ViolationKind::Leak,
                        fd,
                        owner: OwnerId::INTERNAL.0,
                        holder: None,
                        op: "thread exit".into(),
                        thread: thread_name(case, t),
                        message: format!(
                            "netfd's wake-up eventfd {fd} of thread {} is still open after the thread exited",
                            thread_name(case, t)
                        ),
                        evidence: id.map(|id| format!("fd {fd} is still eventfd-id {id}")),
                        trace: case.ledger.trace(
                            case.ledger.event_count().saturating_sub(1),
                            &case.thread_names,
                        ),
                    },
                );
            }
        }
    }
}
