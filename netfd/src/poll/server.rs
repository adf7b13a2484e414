//! The poll server: one epoll thread that turns readiness events and
//! deadline timers into wake-ups of parked operations (Go's `pollServer`,
//! later its netpoller).
//!
//! Invariants:
//! - Every registration lives in a slot of a slab and is tagged, in the
//!   kernel, with `slot | generation << 32`. Deregistering bumps the slot's
//!   generation, so an event the kernel queued for an old registration can
//!   never reach a new socket that got the same slot or the same descriptor
//!   number (Go #59545): it is counted as stale and dropped.
//! - Deregistration happens before the descriptor is closed, while the
//!   caller still owns the number.
//! - Timers sit in a binary heap ordered by expiry ([`timers`](super::timers)),
//!   at most one per registration and direction: re-arming moves it in
//!   place, so moved deadlines leave no stale entries behind. A timer still
//!   carries the deadline sequence it was armed for, and one that fires
//!   after its deadline changed (before the waiter re-armed) wakes nobody.
//!   Cost per timer: O(log n) to arm, move and fire.

use super::desc::{Dir, PollDesc};
use super::timers::{Timer, TimerHeap};
use super::trace;
use crate::probe::OwnerId;
use crate::sys;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// A registration: which slot, which generation of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    slot: u32,
    generation: u32,
}

impl Token {
    fn data(self) -> u64 {
        u64::from(self.slot) | (u64::from(self.generation) << 32)
    }
    fn from_data(data: u64) -> Token {
        Token {
            slot: data as u32,
            generation: (data >> 32) as u32,
        }
    }
}

/// Data value reserved for the server's own wake eventfd.
const WAKE_DATA: u64 = u64::MAX;

#[derive(Default)]
struct Slot {
    generation: u32,
    pd: Option<Arc<PollDesc>>,
    owner: OwnerId,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    free: Vec<u32>,
    timers: TimerHeap,
}

/// Counters, for tests and benches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Readiness events handed to a live registration.
    pub delivered: u64,
    /// Events for a registration that no longer exists, dropped.
    pub stale_dropped: u64,
    /// Timers that woke a waiter.
    pub timers_fired: u64,
    /// Timers that fired for a deadline that had since changed.
    pub timers_stale: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    stale_dropped: AtomicU64,
    timers_fired: AtomicU64,
    timers_stale: AtomicU64,
}

pub struct Server {
    epfd: RawFd,
    wake: RawFd,
    inner: Mutex<Inner>,
    counters: Counters,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The process's poll server, started on first use.
pub fn get() -> &'static Server {
    SERVER.get_or_init(|| {
        let server =
            Server::new().unwrap_or_else(|e| panic!("netfd: cannot start the poll server: {e}"));
        std::thread::Builder::new()
            .name("netfd-poll".into())
            // `get` blocks until this initialiser has returned and stored the
            // server; `SERVER.get()` here could run first and find nothing.
            .spawn(|| get().run())
            .unwrap_or_else(|e| panic!("netfd: cannot start the poll server thread: {e}"));
        server
    })
}

/// The poll server thread's kernel id, once it runs (0 before).
static THREAD_ID: AtomicI32 = AtomicI32::new(0);

/// The kernel id of the poll server's thread, once it runs: for a tool
/// that accounts for its scheduling (the harness discounts the time it
/// waited for a CPU when it judges how late a wake-up came).
pub fn thread_id() -> Option<i32> {
    let tid = THREAD_ID.load(Ordering::Acquire);
    (tid > 0).then_some(tid)
}

/// The counters of the process's poll server (zero if it never started).
pub fn stats() -> PollStats {
    SERVER.get().map(Server::stats).unwrap_or_default()
}

/// The owners of the poll server's live registrations (none if it never
/// started). A socket on the Server path is registered from its first wait
/// until its number is released: once its Close has returned, its owner is
/// not here (the harness's `leak` rule checks that).
pub fn registered_owners() -> Vec<OwnerId> {
    SERVER.get().map_or_else(Vec::new, |s| {
        s.lock()
            .slots
            .iter()
            .filter(|e| e.pd.is_some())
            .map(|e| e.owner)
            .collect()
    })
}

impl Server {
    fn new() -> io::Result<Server> {
        let epfd = sys::epoll_create()?;
        let wake = sys::eventfd()?;
        sys::epoll_add(epfd, wake, OwnerId::INTERNAL, WAKE_DATA)?;
        Ok(Server {
            epfd,
            wake,
            inner: Mutex::new(Inner::default()),
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watch `fd` for readiness on behalf of `pd`.
    pub fn register(&self, fd: RawFd, owner: OwnerId, pd: Arc<PollDesc>) -> io::Result<Token> {
        let token = {
            let mut inner = self.lock();
            let slot = match inner.free.pop() {
                Some(s) => s,
                None => {
                    inner.slots.push(Slot::default());
                    (inner.slots.len() - 1) as u32
                }
            };
            let entry = &mut inner.slots[slot as usize];
            entry.pd = Some(pd);
            entry.owner = owner;
            Token {
                slot,
                generation: entry.generation,
            }
        };
        trace::on_register(token.data(), owner);
        if let Err(e) = sys::epoll_add(self.epfd, fd, owner, token.data()) {
            self.release(token);
            return Err(e);
        }
        Ok(token)
    }

    /// Stop watching `fd`. Must be called while the caller still owns `fd`.
    pub fn deregister(&self, token: Token, fd: RawFd, owner: OwnerId) {
        // ENOENT/EBADF here would mean the number was already gone: the
        // caller broke the invariant, and the slot is released regardless.
        let _ = sys::epoll_del(self.epfd, fd, owner);
        self.release(token);
    }

    /// Free the slot without touching the kernel (the number was closed
    /// elsewhere, which drops the kernel's registration with it).
    pub fn release(&self, token: Token) {
        let mut inner = self.lock();
        let entry = &mut inner.slots[token.slot as usize];
        if entry.generation == token.generation && entry.pd.is_some() {
            entry.pd = None;
            entry.generation = entry.generation.wrapping_add(1);
            inner.free.push(token.slot);
            inner.timers.remove_slot(token.slot);
        }
    }

    /// Wake the waiter of `dir` at `at` unless the deadline changes first.
    /// Replaces the registration's earlier timer for `dir`, if any.
    pub fn add_timer(&self, at: Instant, token: Token, dir: Dir, seq: u64) {
        let earliest = {
            let mut inner = self.lock();
            let live = inner
                .slots
                .get(token.slot as usize)
                .is_some_and(|e| e.generation == token.generation && e.pd.is_some());
            if !live {
                // Only a caller that broke the ownership rule gets here; its
                // timer must not displace the slot's new registration's.
                drop(inner);
                self.counters.timers_stale.fetch_add(1, Ordering::Relaxed);
                return;
            }
            inner.timers.set(Timer {
                at,
                slot: token.slot,
                generation: token.generation,
                dir: dir as u8,
                seq,
            })
        };
        if earliest {
            sys::eventfd_signal(self.wake);
        }
    }

    /// Timers queued (for tests and benches: at most two per registration).
    pub fn timers_queued(&self) -> usize {
        self.lock().timers.len()
    }

    pub fn stats(&self) -> PollStats {
        let c = &self.counters;
        PollStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            stale_dropped: c.stale_dropped.load(Ordering::Relaxed),
            timers_fired: c.timers_fired.load(Ordering::Relaxed),
            timers_stale: c.timers_stale.load(Ordering::Relaxed),
        }
    }

    /// The live registration `slot` at `generation`, with its owner.
    fn lookup(&self, slot: u32, generation: u32) -> Option<(Arc<PollDesc>, OwnerId)> {
        let inner = self.lock();
        let entry = inner.slots.get(slot as usize)?;
        if entry.generation != generation {
            return None;
        }
        Some((entry.pd.clone()?, entry.owner))
    }

    /// Hand one kernel event to its registration, or drop it as stale.
    pub(crate) fn dispatch(&self, data: u64, events: u32) {
        let token = Token::from_data(data);
        let Some((pd, owner)) = self.lookup(token.slot, token.generation) else {
            self.counters.stale_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        trace::on_deliver(data, owner, events);
        let hup_or_err = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if events & ((libc::EPOLLIN | libc::EPOLLRDHUP) as u32 | hup_or_err) != 0 {
            pd.notify_ready(Dir::Read);
        }
        if events & (libc::EPOLLOUT as u32 | hup_or_err) != 0 {
            pd.notify_ready(Dir::Write);
        }
    }

    /// Fire due timers; returns the time until the next one.
    fn fire_timers(&self) -> Option<std::time::Duration> {
        loop {
            let now = Instant::now();
            let timer = {
                let mut inner = self.lock();
                match inner.timers.peek() {
                    None => return None,
                    Some(t) if t.at > now => return Some(t.at - now),
                    Some(_) => inner.timers.pop(),
                }
            };
            let t = timer?;
            let dir = if t.dir == Dir::Read as u8 {
                Dir::Read
            } else {
                Dir::Write
            };
            let woke = self
                .lookup(t.slot, t.generation)
                .is_some_and(|(pd, _)| pd.expire(dir, t.seq));
            let counter = if woke {
                &self.counters.timers_fired
            } else {
                &self.counters.timers_stale
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn run(&self) {
        THREAD_ID.store(sys::thread_id(), Ordering::Release);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let timeout = self.fire_timers();
            let n = match sys::epoll_wait(self.epfd, &mut events, timeout) {
                Ok(n) => n,
                Err(e) => panic!("netfd: epoll_wait failed: {e}"),
            };
            trace::on_harvest(events[..n].iter().map(|ev| ev.u64));
            for ev in &events[..n] {
                let (data, bits) = (ev.u64, ev.events);
                if data == WAKE_DATA {
                    sys::eventfd_drain(self.wake);
                } else {
                    self.dispatch(data, bits);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The generation check, driven by hand: a private server with no
    //! epoll thread, so every event and timer is one the test injects.

    use super::*;
    use crate::poll::desc::Waker;

    fn udp_socket() -> RawFd {
        sys::socket(libc::AF_INET, libc::SOCK_DGRAM, OwnerId(1)).unwrap()
    }

    fn shut(server: Server) {
        let _ = sys::close(server.epfd, OwnerId::INTERNAL);
        let _ = sys::close(server.wake, OwnerId::INTERNAL);
    }

    /// Register a socket, deregister and close it, and give the slot (and,
    /// the kernel's lowest-free rule permitting, the number) to a new one.
    fn old_and_new(server: &Server) -> (Token, Token, RawFd, Arc<PollDesc>) {
        let old_fd = udp_socket();
        let old = server
            .register(old_fd, OwnerId(1), Arc::new(PollDesc::new()))
            .unwrap();
        server.deregister(old, old_fd, OwnerId(1));
        sys::close(old_fd, OwnerId(1)).unwrap();
        let new_fd = udp_socket();
        let pd = Arc::new(PollDesc::new());
        let new = server.register(new_fd, OwnerId(2), pd.clone()).unwrap();
        assert_eq!(new.slot, old.slot, "the slot is reused");
        assert_ne!(new.generation, old.generation);
        (old, new, new_fd, pd)
    }

    /// The historical variants' Close releases the number elsewhere (the
    /// kernel drops its epoll registration with it) and then has the poller
    /// forget: that is all that frees the slot, the descriptor it holds and
    /// its timers. The process's own server, as those variants use it.
    #[test]
    fn a_poller_that_forgets_frees_its_registration() {
        use crate::poll::{Poller, WaitPath};
        let fd = udp_socket();
        let poller = Poller::new(WaitPath::Server, fd, OwnerId(1)).unwrap();
        let token = poller.token.expect("the server path registers");
        let server = get();
        server.add_timer(
            Instant::now() + std::time::Duration::from_secs(3600),
            token,
            Dir::Read,
            0,
        );
        assert!(server.lookup(token.slot, token.generation).is_some());
        sys::close(fd, OwnerId(1)).unwrap();
        poller.forget();
        assert!(
            server.lookup(token.slot, token.generation).is_none(),
            "the registration outlived forget"
        );
        let later_fd = udp_socket();
        let later = Poller::new(WaitPath::Server, later_fd, OwnerId(2)).unwrap();
        let reused = later.token.unwrap();
        if reused.slot == token.slot {
            assert_ne!(
                reused.generation, token.generation,
                "a freed slot is reused under a new generation"
            );
        }
        later.deregister(later_fd, OwnerId(2));
        sys::close(later_fd, OwnerId(2)).unwrap();
    }

    #[test]
    fn event_for_an_old_registration_is_dropped_not_delivered() {
        let server = Server::new().unwrap();
        let (old, new, fd, pd) = old_and_new(&server);
        assert!(pd
            .arm(
                Dir::Read,
                Waker::Thread(crate::sync::Thread::current().unwrap()),
                true
            )
            .unwrap()
            .is_some());

        let every = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        server.dispatch(old.data(), every);
        let st = server.stats();
        assert_eq!((st.stale_dropped, st.delivered), (1, 0));
        assert!(
            pd.is_armed(Dir::Read),
            "the stale event woke the new socket's reader"
        );
        assert!(!pd.ready_pending(Dir::Read) && !pd.ready_pending(Dir::Write));

        // The same event with the live token is delivered.
        server.dispatch(new.data(), libc::EPOLLIN as u32);
        let st = server.stats();
        assert_eq!((st.stale_dropped, st.delivered), (1, 1));
        assert!(
            !pd.is_armed(Dir::Read),
            "the live event must wake the reader"
        );

        server.deregister(new, fd, OwnerId(2));
        sys::close(fd, OwnerId(2)).unwrap();
        // After deregistration the live token is stale too.
        server.dispatch(new.data(), libc::EPOLLOUT as u32);
        assert_eq!(server.stats().stale_dropped, 2);
        assert!(!pd.ready_pending(Dir::Write));
        shut(server);
    }

    #[test]
    fn timer_for_an_old_registration_or_an_old_deadline_wakes_nobody() {
        let server = Server::new().unwrap();
        let (old, new, fd, pd) = old_and_new(&server);
        let past = Instant::now();
        let seq = pd.set_deadline(Dir::Read, Some(past + std::time::Duration::from_secs(600)));
        assert!(pd
            .arm(
                Dir::Read,
                Waker::Thread(crate::sync::Thread::current().unwrap()),
                true
            )
            .unwrap()
            .is_some());

        // A timer for the old registration is refused: it must not move
        // the new registration's timer of the same slot.
        server.add_timer(past, old, Dir::Read, seq);
        assert_eq!(server.timers_queued(), 0);
        // A timer armed for an older deadline fires and wakes nobody.
        server.add_timer(past, new, Dir::Read, seq - 1);
        server.fire_timers();
        let st = server.stats();
        assert_eq!((st.timers_stale, st.timers_fired), (2, 0));
        assert!(
            pd.is_armed(Dir::Read),
            "a stale timer woke the new socket's reader"
        );

        let far = past + std::time::Duration::from_secs(3600);
        server.add_timer(far, new, Dir::Read, seq);
        assert!(
            server.fire_timers().is_some(),
            "the future timer stays queued"
        );
        assert!(pd.is_armed(Dir::Read));
        // Re-arming moves the registration's timer in place: one entry.
        server.add_timer(past, new, Dir::Read, seq);
        assert_eq!(server.timers_queued(), 1);
        server.fire_timers();
        assert_eq!(server.stats().timers_fired, 1);
        assert!(!pd.is_armed(Dir::Read));

        // Releasing the registration drops its timers.
        server.add_timer(far, new, Dir::Write, seq);
        assert_eq!(server.timers_queued(), 1);
        server.deregister(new, fd, OwnerId(2));
        assert_eq!(server.timers_queued(), 0);
        sys::close(fd, OwnerId(2)).unwrap();
        shut(server);
    }

    #[test]
    fn a_reused_slot_never_repeats_a_token() {
        let server = Server::new().unwrap();
        let fd = udp_socket();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let t = server
                .register(fd, OwnerId(1), Arc::new(PollDesc::new()))
                .unwrap();
            assert!(seen.insert(t.data()), "token {t:?} handed out twice");
            server.deregister(t, fd, OwnerId(1));
        }
        assert_eq!(server.lock().slots.len(), 1);
        sys::close(fd, OwnerId(1)).unwrap();
        shut(server);
    }
}
