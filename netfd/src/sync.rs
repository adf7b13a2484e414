//! The one place that names the synchronisation primitives the lifetime
//! protocols use. The loom models compile `fdmutex.rs` and the poll
//! descriptor against loom's types under these same names (see
//! `netfd/tests/loom_*.rs`), so the code checked is the code that runs.

pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
pub(crate) use std::thread::Thread;
