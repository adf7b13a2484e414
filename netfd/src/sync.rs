//! The one place that names the synchronisation primitives the lifetime
//! protocols use. The loom models compile `fdmutex.rs` and the poll
//! descriptor against loom's types under these same names (see
//! `netfd/tests/loom_*.rs`), so the code checked is the code that runs.

/// A parked server-path waiter's handle: `current()`, `park()`, `unpark()`
/// (the loom twin wraps `loom::thread`).
pub(crate) use crate::poll::park::Thread;
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// The clock deadlines are judged by. It lives here so the loom models can
/// substitute a simulated clock that only moves when a model says so: a
/// deadline then passes at a chosen point of an interleaving, and every
/// interleaving is reproducible.
#[inline]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}
