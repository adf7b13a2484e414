//! Evidence of what the poll server delivers, for tests (Go #59545).
//!
//! The property the poll server owes (contract point 6): an event the
//! kernel queued for one registration is handed only to that registration,
//! never to a later one that got the same slot or descriptor number. The
//! server's own counters cannot show that, since the generation check that
//! enforces it is also what decides what to count. This module records two
//! independent facts per delivery instead:
//! - `harvested_for`: whom the kernel event was meant for, looked up from
//!   the token the kernel returned, in a table written when the token was
//!   issued (so it still names the old socket after its slot is reused);
//! - `delivered_to`: whose poll descriptor the server woke.
//!
//! A delivery where the two differ is the bug. Nothing here is compiled out,
//! but with tracing off every hook costs one relaxed load.
//!
//! [`Hold`] makes the race window deterministic: the poll thread keeps the
//! first batch of events that contains one for a chosen socket harvested but
//! undispatched until the test releases it, so a test can close that socket
//! and open its successor in between.

use crate::probe::OwnerId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One readiness event handed to a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The socket whose registration the kernel event carried.
    pub harvested_for: OwnerId,
    /// The socket whose poll descriptor was notified.
    pub delivered_to: OwnerId,
    /// The epoll event bits.
    pub events: u32,
}

impl Delivery {
    /// Whether an event meant for one socket reached another.
    pub fn misdelivered(&self) -> bool {
        self.harvested_for != self.delivered_to
    }
}

#[derive(Default)]
struct Trace {
    /// Every token issued while tracing, and the socket it was issued for.
    issued: HashMap<u64, OwnerId>,
    deliveries: Vec<Delivery>,
    /// Hold the first harvested batch with an event for this socket.
    hold_for: Option<OwnerId>,
    holding: bool,
}

static ON: AtomicBool = AtomicBool::new(false);
static HOLD_ARMED: AtomicBool = AtomicBool::new(false);
static TRACE: Mutex<Option<Trace>> = Mutex::new(None);
static CHANGED: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Option<Trace>> {
    TRACE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start recording (clears what an earlier [`start`] recorded). Tokens
/// issued before this are unknown to the trace: start it before the sockets
/// a test looks at are created.
pub fn start() {
    *lock() = Some(Trace::default());
    ON.store(true, Ordering::Release);
}

/// Stop recording and return the deliveries made since [`start`].
pub fn stop() -> Vec<Delivery> {
    ON.store(false, Ordering::Release);
    HOLD_ARMED.store(false, Ordering::Release);
    let trace = lock().take();
    CHANGED.notify_all();
    trace.map(|t| t.deliveries).unwrap_or_default()
}

/// The deliveries recorded so far.
pub fn deliveries() -> Vec<Delivery> {
    lock()
        .as_ref()
        .map(|t| t.deliveries.clone())
        .unwrap_or_default()
}

#[inline]
pub(super) fn on_register(data: u64, owner: OwnerId) {
    if ON.load(Ordering::Relaxed) {
        if let Some(t) = lock().as_mut() {
            t.issued.insert(data, owner);
        }
    }
}

#[inline]
pub(super) fn on_deliver(data: u64, delivered_to: OwnerId, events: u32) {
    if ON.load(Ordering::Relaxed) {
        if let Some(t) = lock().as_mut() {
            // A token issued before tracing started is named NONE, so its
            // delivery shows up as misdelivered rather than hiding.
            let harvested_for = t.issued.get(&data).copied().unwrap_or(OwnerId::NONE);
            t.deliveries.push(Delivery {
                harvested_for,
                delivered_to,
                events,
            });
        }
    }
}

/// Called by the poll thread with each batch it harvested, before it
/// dispatches any of it: blocks while a [`Hold`] keeps the batch.
#[inline]
pub(super) fn on_harvest(mut tokens: impl Iterator<Item = u64>) {
    if !HOLD_ARMED.load(Ordering::Relaxed) {
        return;
    }
    let mut guard = lock();
    let Some(t) = guard.as_mut() else { return };
    let Some(target) = t.hold_for else { return };
    let issued = &t.issued;
    if !tokens.any(|d| issued.get(&d) == Some(&target)) {
        return;
    }
    t.hold_for = None;
    t.holding = true;
    HOLD_ARMED.store(false, Ordering::Relaxed);
    CHANGED.notify_all();
    while guard.as_ref().is_some_and(|t| t.holding) {
        guard = CHANGED.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
}

/// Keeps the poll thread from dispatching a harvested batch; see the module
/// docs. Released by [`Hold::release`] or on drop.
pub struct Hold(());

impl Hold {
    /// Hold the first batch the poll thread harvests that has an event for
    /// `owner`'s registration. Tracing must be on ([`start`]).
    pub fn first_batch_for(owner: OwnerId) -> Hold {
        let mut guard = lock();
        let t = guard
            .as_mut()
            .expect("poll::trace::Hold needs tracing on (poll::trace::start)");
        t.hold_for = Some(owner);
        t.holding = false;
        HOLD_ARMED.store(true, Ordering::Release);
        Hold(())
    }

    /// Wait until the poll thread holds such a batch; false on timeout.
    pub fn wait_held(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut guard = lock();
        loop {
            if guard.as_ref().is_some_and(|t| t.holding) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            guard = CHANGED
                .wait_timeout(guard, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Let the poll thread dispatch the batch.
    pub fn release(self) {}
}

impl Drop for Hold {
    fn drop(&mut self) {
        HOLD_ARMED.store(false, Ordering::Release);
        if let Some(t) = lock().as_mut() {
            t.hold_for = None;
            t.holding = false;
        }
        CHANGED.notify_all();
    }
}
