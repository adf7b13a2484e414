//! Cases whose threads exit (`threads_exit`): what a thread's exit leaves
//! behind is judged (`exec/exits.rs`). Two wrappers of netfd's target plant
//! netfd's own thread-exit mistakes outside netfd — each read makes its
//! thread a wake-up eventfd the way netfd does (`netfd::sys::eventfd`, once
//! per thread):
//! - `StaleWaker` keeps the reading thread's eventfd in the socket and
//!   signals it at Close (a waker left in its slot, as `PollDesc::disarm`
//!   that does not take it out would);
//! - `LeakyExit` never closes the eventfd when the thread exits (as a
//!   `WakeFd` without its `Drop` would).
//!
//! On the harness's pooled threads, which outlive the case, both are clean:
//! the thread and its eventfd are still there. With `threads_exit` the
//! first is `use_after_close` or `fd_reuse` at the Close and the second a
//! `leak`; and netfd itself is clean either way.

use harness::report::{Mode, Report, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario;
use harness::scenario::Direction;
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::OwnerId;
use netfd::{Variant, WaitPath};
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Plant {
    None,
    StaleWaker,
    LeakyExit,
}

/// This thread's eventfd, made on first use; closed when the thread exits
/// unless `leak`.
fn thread_eventfd(leak: bool) -> RawFd {
    struct Closes(RawFd, bool);
    impl Drop for Closes {
        fn drop(&mut self) {
            if !self.1 {
                let _ = netfd::sys::close(self.0, OwnerId::INTERNAL);
            }
        }
    }
    thread_local! {
        static FD: std::cell::OnceCell<Closes> = const { std::cell::OnceCell::new() };
    }
    FD.with(|c| {
        c.get_or_init(|| Closes(netfd::sys::eventfd().expect("eventfd"), leak))
            .0
    })
}

struct Wrapper {
    inner: NetfdTarget,
    plant: Plant,
}

struct WrappedConn {
    inner: Box<dyn Conn>,
    plant: Plant,
    waker: Mutex<Option<RawFd>>,
}

impl Conn for WrappedConn {
    fn owner(&self) -> OwnerId {
        self.inner.owner()
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.plant != Plant::None {
            let fd = thread_eventfd(self.plant == Plant::LeakyExit);
            if self.plant == Plant::StaleWaker {
                *self.waker.lock().unwrap() = Some(fd);
            }
        }
        self.inner.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        self.inner.set_deadline(dir, at)
    }
    fn close(&self) -> io::Result<()> {
        if let Some(fd) = self.waker.lock().unwrap().take() {
            netfd::sys::eventfd_signal(fd);
        }
        self.inner.close()
    }
    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.inner.local_addr()
    }
}

impl Target for Wrapper {
    fn name(&self) -> String {
        "custom:thread-exit".into()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        self.inner.listen(addr)
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        self.inner.dial(addr)
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(WrappedConn {
            inner: self.inner.bind_datagram(local, peer)?,
            plant: self.plant,
            waker: Mutex::new(None),
        }))
    }
    fn reports_syscalls(&self) -> bool {
        true
    }
    fn wait_path(&self) -> Option<WaitPath> {
        self.inner.wait_path()
    }
}

fn scenario_text(threads_exit: bool) -> String {
    format!(
        r#"{{ "name": "read_then_exit", "description": "a read that ends at its deadline, then the thread's end",
             "transport": "udp4", "connections": 1, "threads_exit": {threads_exit},
             "threads": [ {{ "name": "reader", "ops": [
               {{ "op": "set_deadline", "conn": 0, "dir": "read", "in_ms": 5 }},
               {{ "op": "read_from", "conn": 0, "bytes": 64 }} ] }} ] }}"#
    )
}

fn run_with(plant: Plant, threads_exit: bool, mode: Mode, wait: WaitPath) -> Report {
    harness::intercept::link();
    let target: Arc<dyn Target> = Arc::new(Wrapper {
        inner: NetfdTarget::with_wait(Variant::FdMutex, Some(wait)),
        plant,
    });
    let text = scenario_text(threads_exit);
    let sources = [Source {
        scenario: scenario::parse_str(&text, "exit.json").unwrap_or_else(|e| panic!("{e}")),
        file: "exit.json".into(),
    }];
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode,
        seed: 9,
        cases: 40,
        budget: Duration::from_secs(60),
        case_dir: Some(dir.path().join("cases")),
        hang_bound: Duration::from_secs(1),
        // One case at a time: a planted stale waker writes into whatever
        // holds its old number, and a neighbouring case's socket would be
        // charged with crosstalk (nextest keeps the other tests away).
        jobs: 1,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    run::run(target, &sources, &cfg, &|_, _| {}).expect("run")
}

fn kinds(r: &Report) -> Vec<ViolationKind> {
    r.violations().map(|(_, v)| v.kind).collect()
}

#[test]
fn netfd_is_clean_when_its_threads_exit() {
    for mode in [Mode::Controlled, Mode::Free] {
        for wait in [WaitPath::Direct, WaitPath::Server] {
            let r = run_with(Plant::None, true, mode, wait);
            assert!(r.summary.passed, "{mode} {wait:?}: {:?}", kinds(&r));
            assert_eq!(r.summary.cases, 40);
        }
    }
}

#[test]
fn a_waker_left_for_an_exited_thread_is_caught_at_the_close() {
    for mode in [Mode::Controlled, Mode::Free] {
        let pooled = run_with(Plant::StaleWaker, false, mode, WaitPath::Direct);
        assert!(
            pooled.summary.passed,
            "{mode}: on a thread that lives on, the eventfd is still there: {:?}",
            kinds(&pooled)
        );
        let exited = run_with(Plant::StaleWaker, true, mode, WaitPath::Direct);
        let found = kinds(&exited);
        assert!(
            !found.is_empty()
                && found
                    .iter()
                    .all(|k| matches!(k, ViolationKind::UseAfterClose | ViolationKind::FdReuse)),
            "{mode}: {found:?}"
        );
        let v = exited.violations().next().unwrap().1;
        assert!(v.message.contains("netfd's wake-up write"), "{}", v.message);
    }
}

#[test]
fn a_wake_up_eventfd_an_exited_thread_left_open_is_a_leak() {
    for mode in [Mode::Controlled, Mode::Free] {
        let pooled = run_with(Plant::LeakyExit, false, mode, WaitPath::Direct);
        assert!(pooled.summary.passed, "{mode}: {:?}", kinds(&pooled));
        let exited = run_with(Plant::LeakyExit, true, mode, WaitPath::Direct);
        let found = kinds(&exited);
        assert!(
            !found.is_empty() && found.iter().all(|k| *k == ViolationKind::Leak),
            "{mode}: {found:?}"
        );
        let v = exited.violations().next().unwrap().1;
        assert!(
            v.message.contains("still open after the thread exited") && v.thread == "reader",
            "{}",
            v.message
        );
    }
}
