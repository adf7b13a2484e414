//! `crate::poll` for the models: the real poll descriptor (`src/poll/desc.rs`,
//! included at the crate root of each loom test) plus a [`Poller`] and a
//! poll [`Server`] that stand in for `src/poll/mod.rs` and
//! `src/poll/server.rs`, which make real syscalls (the futex parker, the
//! direct path's eventfd) and run an epoll thread, and so cannot be
//! compiled against loom.
//!
//! [`Poller`]'s methods (the two wait loops, the direct path's poll-first
//! hint) are line-for-line copies of production's, with `Instant::now()`
//! replaced by the simulated clock and the hint's std atomics by loom's
//! (`crate::sync::Thread` is loom's thread handle here). Keep them in step with
//! `src/poll/mod.rs` (see the report for the refactor that would remove the
//! copy).
//!
//! The server keeps production's invariants: registrations are per socket
//! (tagged by the never-reused owner, as production tags them by generation),
//! deregistration touches the number while the caller still owns it, and a
//! timer carries the `seq` it was armed for, so [`PollDesc::expire`] ignores
//! a stale one.

use super::world;
use crate::desc::Waker;
pub use crate::desc::{Dir, PollDesc};
use crate::probe::{self, OwnerId, SyncPoint};
use crate::sys::{self, Interest};
use loom::sync::atomic::{AtomicBool, Ordering};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WaitPath {
    #[default]
    Direct,
    Server,
}

/// A registration with the simulated poll server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token(usize);

struct Registration {
    owner: OwnerId,
    pd: Option<Arc<PollDesc>>,
}

struct Timer {
    at: Instant,
    token: Token,
    dir: Dir,
    seq: u64,
}

#[derive(Default)]
struct ServerState {
    regs: Vec<Registration>,
    timers: Vec<Timer>,
}

/// The poll server's bookkeeping; its thread's two jobs (deliver readiness,
/// fire due timers) are done by model threads: [`Server::dispatch`] and
/// [`Server::fire_due`].
///
/// The bookkeeping sits behind a *std* mutex on purpose: no loom operation
/// runs while it is held, so loom never switches threads inside it and it is
/// never contended, and a thread never blocks on it. A loom mutex here would
/// trip a loom limitation: `Thread::unpark` (the poll descriptor's wake-up)
/// makes a thread that is blocked on a loom mutex runnable, and loom then
/// asserts "expected to be able to acquire lock" (tokio-rs/loom#422). In
/// production the waiter takes the server's lock between arming and parking
/// exactly so (`add_timer`), and an unpark there is harmless.
#[derive(Default)]
pub struct Server {
    st: std::sync::Mutex<ServerState>,
}

impl Server {
    fn lock(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, fd: RawFd, owner: OwnerId, pd: Arc<PollDesc>) -> io::Result<Token> {
        let token = {
            let mut st = self.lock();
            st.regs.push(Registration {
                owner,
                pd: Some(pd),
            });
            Token(st.regs.len() - 1)
        };
        world().kernel.touch("epoll_ctl", fd, owner)?;
        Ok(token)
    }

    pub fn deregister(&self, token: Token, fd: RawFd, owner: OwnerId) {
        // As production: the slot is released whatever epoll_ctl says.
        let _ = world().kernel.touch("epoll_ctl", fd, owner);
        self.release(token);
    }

    /// As production: releasing a registration drops its timers.
    pub fn release(&self, token: Token) {
        let mut st = self.lock();
        st.regs[token.0].pd = None;
        st.timers.retain(|t| t.token != token);
    }

    /// Production signals the server thread, which fires the timer once it
    /// is due; a timer that is due already fires at the server's next turn,
    /// which here is right away. As production (`src/poll/timers.rs`), a
    /// registration has at most one timer per direction: a new one replaces
    /// it (moves it in place), so a moved deadline leaves no stale timer.
    pub fn add_timer(&self, at: Instant, token: Token, dir: Dir, seq: u64) {
        {
            let mut st = self.lock();
            if st.regs[token.0].pd.is_none() {
                return;
            }
            st.timers.retain(|t| !(t.token == token && t.dir == dir));
            st.timers.push(Timer {
                at,
                token,
                dir,
                seq,
            });
        }
        self.fire_due();
    }

    /// The epoll thread delivers an event for `owner`'s registration, if it
    /// still has one (an event for a deregistered socket is stale).
    pub fn dispatch(&self, owner: OwnerId, dir: Dir) {
        let pd = {
            let st = self.lock();
            st.regs
                .iter()
                .find(|r| r.owner == owner)
                .and_then(|r| r.pd.clone())
        };
        if let Some(pd) = pd {
            pd.notify_ready(dir);
        }
    }

    /// The server thread's timer pass: fire every timer that is due on the
    /// simulated clock, each once, through [`PollDesc::expire`] (which
    /// ignores a timer armed for an older deadline).
    pub fn fire_due(&self) {
        loop {
            let now = world().now();
            let due = {
                let mut st = self.lock();
                let i = st.timers.iter().position(|t| t.at <= now);
                i.map(|i| {
                    let t = st.timers.swap_remove(i);
                    (st.regs[t.token.0].pd.clone(), t.dir, t.seq)
                })
            };
            match due {
                Some((Some(pd), dir, seq)) => {
                    pd.expire(dir, seq);
                }
                Some((None, _, _)) => {}
                None => return,
            }
        }
    }
}

/// One socket's poll state and, on the server path, its registration.
pub struct Poller {
    pd: Arc<PollDesc>,
    token: Option<Token>,
    /// Production's poll-first hint, per direction (a relaxed std atomic
    /// there; a loom one here, so loom also tries its stale values).
    expect_wait: [AtomicBool; 2],
    /// Production's `set_nonblocking` flag. No model turns it on, so a std
    /// atomic: it adds no state for loom to explore.
    nonblocking: std::sync::atomic::AtomicBool,
}

impl Poller {
    pub fn new(path: WaitPath, fd: RawFd, owner: OwnerId) -> io::Result<Poller> {
        let pd = Arc::new(PollDesc::new());
        let token = match path {
            WaitPath::Direct => None,
            WaitPath::Server => Some(world().server.register(fd, owner, pd.clone())?),
        };
        Ok(Poller {
            pd,
            token,
            expect_wait: [AtomicBool::new(false), AtomicBool::new(false)],
            nonblocking: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn expects_wait(&self, dir: Dir) -> bool {
        self.token.is_none()
            && self.expect_wait[dir as usize].load(Ordering::Relaxed)
            && !self.is_nonblocking()
    }

    #[allow(dead_code)]
    pub fn set_nonblocking(&self, on: bool) {
        self.nonblocking
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_expects_wait(&self, dir: Dir, expect: bool) {
        let flag = &self.expect_wait[dir as usize];
        if flag.load(Ordering::Relaxed) != expect {
            flag.store(expect, Ordering::Relaxed);
        }
    }

    /// Production judges "the poll returned at once" by real elapsed time;
    /// here by the simulated clock, which only a model's timer moves, so
    /// the judgement is the same in every replay of an interleaving.
    pub fn wait_before_trying(&self, dir: Dir, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        const BLOCKED: std::time::Duration = std::time::Duration::from_micros(5);
        let started = world().now();
        self.wait(dir, fd, owner)?;
        if world().now().saturating_duration_since(started) < BLOCKED {
            self.set_expects_wait(dir, false);
        }
        Ok(())
    }

    pub fn desc(&self) -> &PollDesc {
        &self.pd
    }

    pub fn wait(&self, dir: Dir, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        if self.is_nonblocking() {
            self.pd.check(dir)?;
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        match self.token {
            None => self.wait_direct(dir, fd, owner),
            Some(token) => self.wait_server(dir, token, owner),
        }
    }

    fn wait_direct(&self, dir: Dir, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        let wake = thread_wake_fd()?;
        let armed = self
            .pd
            .arm(dir, Waker::Fd(wake), false)?
            .expect("direct waiters never consume readiness");
        probe::sync_point(SyncPoint::BeforePark, owner);
        let timeout = armed
            .deadline
            .map(|d| d.saturating_duration_since(world().now()));
        let interest = match dir {
            Dir::Read => Interest::Read,
            Dir::Write => Interest::Write,
        };
        let outcome = sys::poll_with_wake(fd, owner, interest, wake, timeout);
        self.pd.disarm(dir);
        if matches!(outcome, Ok(o) if o.woken) {
            sys::eventfd_drain(wake);
        }
        probe::sync_point(SyncPoint::AfterWake, owner);
        outcome?;
        self.pd.check(dir)
    }

    fn wait_server(&self, dir: Dir, token: Token, owner: OwnerId) -> io::Result<()> {
        let me = crate::sync::Thread::current()?;
        let Some(armed) = self.pd.arm(dir, Waker::Thread(me.clone()), true)? else {
            return Ok(());
        };
        if let Some(at) = armed.deadline {
            world().server.add_timer(at, token, dir, armed.seq);
        }
        probe::sync_point(SyncPoint::BeforePark, owner);
        while self.pd.is_armed(dir) {
            me.park();
        }
        probe::sync_point(SyncPoint::AfterWake, owner);
        self.pd.check(dir)
    }

    pub fn deregister(&self, fd: RawFd, owner: OwnerId) {
        if let Some(token) = self.token {
            world().server.deregister(token, fd, owner);
        }
    }

    /// Forget the registration without a syscall (the number is already
    /// gone, and the kernel dropped its registration with it).
    pub fn forget(&self) {
        if let Some(token) = self.token {
            world().server.release(token);
        }
    }
}

loom::thread_local! {
    static WAKE: std::cell::Cell<Option<RawFd>> = std::cell::Cell::new(None);
}

/// This thread's wake eventfd, created on first park; like production's it
/// lives as long as the thread (the kernel's leak check exempts it).
fn thread_wake_fd() -> io::Result<RawFd> {
    if let Some(fd) = WAKE.with(|w| w.get()) {
        return Ok(fd);
    }
    let fd = sys::eventfd()?;
    WAKE.with(|w| w.set(Some(fd)));
    Ok(fd)
}
