//! In-process syscall interposition: the harness library defines the libc
//! entry points that take or create descriptor numbers (`read`, `close`,
//! `accept4`, `fcntl`, ...; the full list is in [`entry`]), so socket code
//! that was never instrumented — std, the `libc` crate, socket2, mio, a
//! user's wrapper — is observed by the ledger when it runs inside a case.
//!
//! Protocol:
//! - Every entry point first loads [`ACTIVE`] (relaxed): the number of
//!   threads with an [`Observer`] installed. Zero — no case observing — and
//!   the call goes straight to the kernel as a raw `syscall(2)`: no
//!   thread-local is touched, so this is safe before `main` and during
//!   thread-local teardown.
//! - Otherwise the thread-locals (const-initialised `Cell`s without
//!   destructors, so always accessible) say whether this thread has an
//!   observer, whether the call is already reported by netfd's probe
//!   ([`ReportedGuard`]: netfd's own calls are not counted twice), and
//!   whether the thread is already inside the observer (its own calls —
//!   the ledger's fstat, the scheduler's futex, allocation — go straight
//!   through).
//! - A call the observer judges is: [`Observer::before`] (a switch point
//!   for the controlled scheduler, then the ledger's check), then, if the
//!   call would block (a blocking descriptor that a zero-timeout `ppoll`
//!   finds not ready), [`Observer::parking`] (gives up the turn like
//!   `BeforePark`), the raw call, [`Observer::after`] with the result and
//!   any numbers the call created. errno is saved after the raw call and
//!   restored before returning.
//! - Which call is for which object is the observer's business; this layer
//!   only carries the thread's [`Scope`] (the object whose op is running on
//!   this thread, and the object the numbers it creates will belong to).
//!
//! Which binaries get the interposer: a `#[no_mangle]` function only
//! replaces libc's in a binary whose link includes the object file that
//! defines it. Rust 1.95 links x86_64 Linux binaries with rust-lld, which
//! takes an archive member when any undefined reference names a symbol in it
//! (in any order); the references std and `libc` make to `read`, `close`, ...
//! are such references, and since the executable's own definition wins over
//! libc.so's, every binary that links this library gets the interposer: the
//! `harness` binary and every test binary of this package (checked by
//! `tests/uninstrumented.rs`, which fails if a plain `std` read is not seen).
//! A user's binary that depends on `harness` should still call [`link`] once
//! (for example at the top of the test that runs its target): it costs
//! nothing and keeps the member in the link under any linker and any
//! archive order, such as GNU ld's one-pass scan.
//!
//! What is not seen: numbers passed over Unix sockets (SCM_RIGHTS), calls on
//! threads that have no observer installed (see `exec::observe` for the
//! attribution rule), raw `syscall(2)` calls, and calls made through other
//! libc entry points (`epoll_wait`, `select`, `io_uring`).

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub mod entry;
pub mod measure;
pub mod raw;

use std::cell::Cell;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use netfd::probe::OwnerId;

/// Threads that have an observer installed. The fast path reads only this.
pub static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// The object an op running on this thread is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// The object the op is on (its calls are calls for it); NONE: none.
    pub object: OwnerId,
    /// The object the numbers the op creates will belong to (the one a
    /// listen, dial or accept returns); NONE: numbers created now belong to
    /// `object`.
    pub creates_for: OwnerId,
}

/// One interposed call, as the observer sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// The libc name (`recv`, `close`, ...).
    pub name: &'static str,
    pub kind: Kind,
    /// The numbers the call names (empty for `socket`, `open`, ...).
    pub fds: &'a [RawFd],
}

/// What a call does to the numbers it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    /// Any other use: options, names, readiness, shutdown, epoll.
    Use,
    Accept,
    Close,
    /// Creates numbers without naming one (`socket`, `open`, ...), or
    /// names one and creates another (`dup`, `fcntl(F_DUPFD)`).
    Create,
}

/// What a case installs on each of its threads.
pub trait Observer: Sync {
    /// Before the kernel sees `call`, made on this thread in `scope`.
    /// Returns whether the call is judged; only then are `parking` and
    /// `after` called.
    fn before(&self, call: &Call, scope: Scope) -> bool;
    /// The judged call is about to block in the kernel.
    fn parking(&self);
    /// The kernel answered: `ret` (-1 with `errno` on failure), and the
    /// numbers the call created.
    fn after(
        &self,
        call: &Call,
        scope: Scope,
        ret: i64,
        errno: i32,
        created: &[RawFd],
        parked: bool,
    );
}

thread_local! {
    static OBSERVER: Cell<Option<NonNull<dyn Observer>>> = const { Cell::new(None) };
    static SCOPE: Cell<Scope> = const { Cell::new(Scope { object: OwnerId::NONE, creates_for: OwnerId::NONE }) };
    /// Inside the observer, or inside a call netfd's probe reports.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Keeps an observer installed on this thread; dropping it restores the
/// previous one.
#[must_use = "the observer is uninstalled when the guard drops"]
pub struct ObserverGuard<'a> {
    previous: Option<NonNull<dyn Observer>>,
    _borrow: std::marker::PhantomData<&'a dyn Observer>,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Install `observer` on the calling thread while the guard lives. The
/// guard borrows it, so it outlives every use the entry points make.
pub fn install<'a>(observer: &'a (dyn Observer + 'a)) -> ObserverGuard<'a> {
    let ptr: NonNull<dyn Observer + 'a> = NonNull::from(observer);
    // SAFETY: only the lifetime bound changes (same layout). The pointer is
    // dereferenced only while this guard, which borrows `observer` for
    // 'a, is alive: Drop restores the previous pointer before 'a can end,
    // and the guard cannot leave this thread.
    let ptr: NonNull<dyn Observer> = unsafe { std::mem::transmute(ptr) };
    let previous = OBSERVER.with(|c| c.replace(Some(ptr)));
    if previous.is_none() {
        ACTIVE.fetch_add(1, Ordering::Relaxed);
    }
    ObserverGuard {
        previous,
        _borrow: std::marker::PhantomData,
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for ObserverGuard<'_> {
    fn drop(&mut self) {
        OBSERVER.with(|c| c.set(self.previous));
        if self.previous.is_none() {
            ACTIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Sets this thread's scope while it lives (nested scopes restore).
#[must_use = "the scope ends when the guard drops"]
pub struct ScopeGuard {
    previous: Scope,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Calls this thread makes from now on are for `scope`.
pub fn scope(scope: Scope) -> ScopeGuard {
    ScopeGuard {
        previous: SCOPE.with(|c| c.replace(scope)),
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        SCOPE.with(|c| c.set(self.previous));
    }
}

/// Marks the calls this thread makes while it lives as reported already
/// (netfd's probe reports them with their real owner): the entry points
/// pass them straight through.
#[must_use = "the mark ends when the guard drops"]
pub struct ReportedGuard {
    previous: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

pub fn reported() -> ReportedGuard {
    ReportedGuard {
        previous: BUSY.with(|c| c.replace(true)),
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for ReportedGuard {
    fn drop(&mut self) {
        BUSY.with(|c| c.set(self.previous));
    }
}

/// Set or clear the "already reported" mark without a guard (netfd's probe
/// reports before and after a call in two separate callbacks).
pub fn set_reported(on: bool) {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let _ = BUSY.try_with(|c| c.set(on));
}

/// Keeps this library's entry points in a binary's link. Call it once from
/// a binary that depends on `harness` and runs uninstrumented targets.
#[inline(never)]
pub fn link() -> usize {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        entry::ENTRY_POINTS.len()
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        0
    }
}

/// What the slow path found for this thread.
pub(crate) struct Active {
    observer: NonNull<dyn Observer>,
    scope: Scope,
}

/// The observer that should see a call on this thread now, if any. Marks
/// the thread busy until [`leave`].
#[inline]
pub(crate) fn enter() -> Option<Active> {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    enter_slow()
}

#[cold]
fn enter_slow() -> Option<Active> {
    let observer = OBSERVER.try_with(|c| c.get()).ok().flatten()?;
    let busy = BUSY.try_with(|c| c.replace(true)).unwrap_or(true);
    if busy {
        return None;
    }
    let scope = SCOPE.try_with(|c| c.get()).unwrap_or_default();
    Some(Active { observer, scope })
}

impl Active {
    pub(crate) fn observer(&self) -> &dyn Observer {
        // SAFETY: the pointer was installed by `install`, whose guard keeps
        // the observer borrowed, on this thread, until it restores the
        // previous pointer; `enter` read it on this thread while installed,
        // and `Active` does not leave this call.
        unsafe { self.observer.as_ref() }
    }
    pub(crate) fn scope(&self) -> Scope {
        self.scope
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let _ = BUSY.try_with(|c| c.set(false));
    }
}
