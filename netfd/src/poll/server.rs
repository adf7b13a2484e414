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
//! - Timers sit in a binary heap ordered by expiry; a timer carries the
//!   deadline sequence it was armed for, and a stale one wakes nobody.
//!   Cost per timer: O(log n) to arm and to fire.

use super::desc::{Dir, PollDesc};
use crate::probe::OwnerId;
use crate::sys;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    slot: u32,
    generation: u32,
    dir: u8,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    free: Vec<u32>,
    timers: BinaryHeap<Reverse<Timer>>,
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
            .spawn(|| SERVER.get().expect("set before spawn").run())
            .unwrap_or_else(|e| panic!("netfd: cannot start the poll server thread: {e}"));
        server
    })
}

/// The counters of the process's poll server (zero if it never started).
pub fn stats() -> PollStats {
    SERVER.get().map(Server::stats).unwrap_or_default()
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
            Token {
                slot,
                generation: entry.generation,
            }
        };
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
        }
    }

    /// Wake the waiter of `dir` at `at` unless the deadline changes first.
    pub fn add_timer(&self, at: Instant, token: Token, dir: Dir, seq: u64) {
        let earliest = {
            let mut inner = self.lock();
            let earliest = inner.timers.peek().is_none_or(|Reverse(t)| at < t.at);
            inner.timers.push(Reverse(Timer {
                at,
                slot: token.slot,
                generation: token.generation,
                dir: dir as u8,
                seq,
            }));
            earliest
        };
        if earliest {
            sys::eventfd_signal(self.wake);
        }
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

    fn lookup(&self, slot: u32, generation: u32) -> Option<Arc<PollDesc>> {
        let inner = self.lock();
        let entry = inner.slots.get(slot as usize)?;
        if entry.generation != generation {
            return None;
        }
        entry.pd.clone()
    }

    /// Hand one kernel event to its registration, or drop it as stale.
    pub(crate) fn dispatch(&self, data: u64, events: u32) {
        let token = Token::from_data(data);
        let Some(pd) = self.lookup(token.slot, token.generation) else {
            self.counters.stale_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
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
                    Some(Reverse(t)) if t.at > now => return Some(t.at - now),
                    Some(_) => inner.timers.pop().map(|Reverse(t)| t),
                }
            };
            let Some(t) = timer else { return None };
            let dir = if t.dir == Dir::Read as u8 {
                Dir::Read
            } else {
                Dir::Write
            };
            let woke = self
                .lookup(t.slot, t.generation)
                .is_some_and(|pd| pd.expire(dir, t.seq));
            let counter = if woke {
                &self.counters.timers_fired
            } else {
                &self.counters.timers_stale
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn run(&self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let timeout = self.fire_timers();
            let n = match sys::epoll_wait(self.epfd, &mut events, timeout) {
                Ok(n) => n,
                Err(e) => panic!("netfd: epoll_wait failed: {e}"),
            };
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
