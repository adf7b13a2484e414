//! Shared machinery of the loom models (`tests/loom_fdmutex.rs`,
//! `tests/loom_historical.rs`).
//!
//! How the real sources get checked: an integration test is its own crate
//! root, so each loom test mirrors netfd's module tree. It includes
//! `src/fdmutex.rs`, `src/poll/desc.rs`, `src/variants/shared.rs`,
//! `src/error.rs`, `src/probe.rs` (and `src/fd.rs`) with `#[path]`, and
//! supplies the modules those files name:
//! - `crate::sync` ([`sync`]): loom's atomics, mutex, condvar and thread
//!   handle under the names of `src/sync.rs`, plus the simulated clock;
//! - `crate::sys` ([`sys`]): the syscalls, answered by the simulated
//!   [`kernel`];
//! - `crate::poll` ([`poll`]): the real `PollDesc` plus a loom `Poller`.
//!
//! So `cargo test --workspace` checks the production protocol with no
//! `--cfg loom` and no second invocation.
//!
//! One [`World`] (kernel, poll server, clock) exists per loom execution: it is
//! a `loom::lazy_static`, rebuilt for every interleaving.
//!
//! Replaying a failure (every failing model prints these commands, filled
//! in, at its first panic):
//! 1. record it: `NETFD_LOOM_CHECKPOINT=/tmp/netfd-loom cargo test -p netfd
//!    --test <crate> -- --exact <model>` writes
//!    `/tmp/netfd-loom/<crate>-<model>.json`, loom's checkpoint of the
//!    failing interleaving (rewritten before every interleaving, hence only
//!    on request);
//! 2. replay only that interleaving with loom's log:
//!    `LOOM_CHECKPOINT_FILE=/tmp/netfd-loom/<crate>-<model>.json
//!    LOOM_MAX_PREEMPTIONS=<bound> LOOM_LOG=trace LOOM_LOCATION=1 cargo test
//!    -p netfd --test <crate> -- --exact <model> --nocapture` (no
//!    `LOOM_MAX_PREEMPTIONS` for an exhaustive model; add
//!    `NETFD_LOOM_EXPECTED_FAILURE_CHILD=1` for a `loom_historical` test).
//!
//! A recording run that finds a checkpoint file resumes from it, so a model
//! deletes its file when it passes; after changing the code, delete the
//! directory before recording again.

// Each loom test crate uses a different subset of this module.
#![allow(dead_code)]

pub mod kernel;
pub mod models;
pub mod poll;
pub mod sys;

use crate::probe::OwnerId;
use kernel::Kernel;
use loom::sync::atomic::{AtomicU64, Ordering};
use std::cell::RefCell;
use std::panic;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

/// `crate::sync` for the included sources: `src/sync.rs`'s names, loom's
/// types.
pub mod sync {
    // All of `src/sync.rs`'s names, whether or not this test crate includes
    // the file that uses them.
    #![allow(unused_imports)]
    pub use loom::sync::atomic::{AtomicU64, Ordering};
    pub use loom::sync::{Condvar, Mutex, MutexGuard};

    /// Production's parker (`src/poll/park.rs`: a futex word) has
    /// `loom::thread`'s park/unpark contract; the models use loom's.
    #[derive(Clone)]
    pub struct Thread(loom::thread::Thread);

    impl Thread {
        pub fn current() -> std::io::Result<Thread> {
            Ok(Thread(loom::thread::current()))
        }
        /// Only the thread `current` was called on parks.
        pub fn park(&self) {
            loom::thread::park();
        }
        pub fn unpark(&self) {
            self.0.unpark();
        }
    }

    /// The simulated clock (see [`World::now`](super::World::now)).
    pub fn now() -> std::time::Instant {
        super::world().now()
    }
}

/// The socket under test.
pub const SOCK: OwnerId = OwnerId(1);
/// The socket a third thread opens after Close, to get the number back.
pub const REOPENED: OwnerId = OwnerId(2);
/// The connection an Accept hands out.
pub const ACCEPTED: OwnerId = OwnerId(3);

/// Everything outside the process that the models share.
#[derive(Default)]
pub struct World {
    pub kernel: Kernel,
    pub server: poll::Server,
    /// Milliseconds since [`epoch`]. Moves only by [`World::advance_clock`].
    clock_ms: AtomicU64,
}

loom::lazy_static! {
    static ref WORLD: World = World::default();
}

/// The world of the current loom execution.
pub fn world() -> &'static World {
    &WORLD
}

/// Time zero of the simulated clock: fixed for the process, so every
/// execution sees the same instants.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// An instant `secs` after [`epoch`].
pub fn at(secs: u64) -> Instant {
    epoch() + Duration::from_secs(secs)
}

impl World {
    pub fn now(&self) -> Instant {
        epoch() + Duration::from_millis(self.clock_ms.load(Ordering::SeqCst))
    }

    /// Time reaches `t`: blocked polls re-check their timeouts. (Server
    /// timers fire in [`poll::Server::fire_due`], as the server thread
    /// fires them.)
    pub fn advance_clock(&self, t: Instant) {
        let ms = t.saturating_duration_since(epoch()).as_millis() as u64;
        self.kernel.tick(|| {
            self.clock_ms.fetch_max(ms, Ordering::SeqCst);
        });
    }
}

/// The test crate running (for the replay command).
const CRATE: &str = env!("CARGO_CRATE_NAME");

/// Set in the child process [`expect_violation`] runs a model in.
const CHILD_ENV: &str = "NETFD_LOOM_EXPECTED_FAILURE_CHILD";

/// A preemption bound: `Some(n)`, or `None` for an exhaustive search.
pub type Bound = Option<usize>;

/// No preemption bound: every interleaving.
pub const EXHAUSTIVE: Bound = None;

/// The bound in force: `bound`, unless `LOOM_MAX_PREEMPTIONS` overrides it
/// (to explore deeper, or to replay with the bound a failure was found at).
fn effective_bound(bound: Bound) -> Bound {
    match std::env::var("LOOM_MAX_PREEMPTIONS") {
        Ok(v) => Some(v.parse().expect("LOOM_MAX_PREEMPTIONS must be a number")),
        Err(_) => bound,
    }
}

fn show(bound: Bound) -> String {
    bound.map_or("none (exhaustive)".to_string(), |n| n.to_string())
}

fn checkpoint_file(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("NETFD_LOOM_CHECKPOINT")?);
    std::fs::create_dir_all(&dir).expect("create NETFD_LOOM_CHECKPOINT directory");
    let dir = dir.canonicalize().expect("NETFD_LOOM_CHECKPOINT directory");
    Some(dir.join(format!("{CRATE}-{name}.json")))
}

/// The commands that replay a failure of model `name` (run directly, or as
/// the child of [`expect_violation`]).
fn replay_help(name: &str, bound: Bound, ckpt: Option<&PathBuf>, child: bool) -> String {
    let path = ckpt.map_or_else(
        || format!("/tmp/netfd-loom/{CRATE}-{name}.json"),
        |p| p.display().to_string(),
    );
    let record = match ckpt {
        Some(_) => format!("  1. the failing interleaving is recorded in {path}\n"),
        None => format!(
            "  1. record it (loom's checkpoint of the failing interleaving):\n     \
             NETFD_LOOM_CHECKPOINT=/tmp/netfd-loom cargo test -p netfd --test {CRATE} \
             -- --exact {name}\n     (writes {path})\n"
        ),
    };
    let mut env = bound.map_or(String::new(), |n| format!("LOOM_MAX_PREEMPTIONS={n} "));
    if child {
        env += &format!("{CHILD_ENV}=1 ");
    }
    format!(
        "netfd-loom: model `{name}` (test crate {CRATE}, preemption bound {}) failed.\n\
         To replay the failing interleaving:\n{record}\
         \x20 2. replay only that interleaving, with loom's log:\n     \
         LOOM_CHECKPOINT_FILE={path} {env}LOOM_LOG=trace LOOM_LOCATION=1 \
         cargo test -p netfd --test {CRATE} -- --exact {name} --nocapture",
        show(bound)
    )
}

thread_local! {
    /// The replay help of the model running on this thread, until printed.
    static REPLAY_HELP: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Arm the replay help for the model about to run on this thread (not in
/// replay mode: with `LOOM_LOG` set the failure is being replayed already).
fn arm_replay_help(name: &str, bound: Bound, ckpt: Option<&PathBuf>, child: bool) {
    install_replay_hook();
    let help = std::env::var_os("LOOM_LOG")
        .is_none()
        .then(|| replay_help(name, bound, ckpt, child));
    REPLAY_HELP.with(|h| *h.borrow_mut() = help);
}

/// Print the running model's replay help at its first panic. A panic hook,
/// not a `catch_unwind`: a deadlock can make loom abort the process while
/// unwinding (a destructor that runs a loom operation after loom has
/// stopped scheduling), and the help must be out before that.
fn install_replay_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            default(info);
            let help = REPLAY_HELP
                .try_with(|h| h.try_borrow_mut().ok().and_then(|mut h| h.take()))
                .ok()
                .flatten();
            if let Some(help) = help {
                eprintln!("{help}");
            }
        }));
    });
}

/// Run `model` under loom. With `LOOM_LOG` set this is replay mode:
/// `loom::model` takes everything (checkpoint file, bound, log) from loom's
/// own environment variables.
fn run_loom<F>(bound: Bound, ckpt: Option<PathBuf>, model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    if std::env::var_os("LOOM_LOG").is_some() {
        return loom::model(model);
    }
    let mut b = loom::model::Builder::new();
    b.preemption_bound = bound;
    // One file per model (loom's own LOOM_CHECKPOINT_FILE would be shared by
    // every model of the crate), written before every interleaving so it
    // holds the failing one when a model panics or aborts.
    b.checkpoint_file = ckpt;
    if b.checkpoint_file.is_some() {
        b.checkpoint_interval = 1;
    }
    b.check(model);
}

/// Check every interleaving of `model` (up to `bound` preemptions; `name`
/// is the test's name); a violation fails the test after printing how to
/// replay it.
pub fn check<F>(name: &'static str, bound: Bound, model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let bound = effective_bound(bound);
    let ckpt = checkpoint_file(name);
    arm_replay_help(name, bound, ckpt.as_ref(), false);
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            model()
        }
    };
    let start = Instant::now();
    run_loom(bound, ckpt.clone(), counted);
    REPLAY_HELP.with(|h| h.borrow_mut().take());
    if let Some(p) = &ckpt {
        let _ = std::fs::remove_file(p);
    }
    eprintln!(
        "netfd-loom: {name}: clean, preemption bound {}, {} interleavings, {:.2?}",
        show(bound),
        runs.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed()
    );
}

/// Run `model`, which must FAIL: loom has to find an interleaving that
/// breaks it, with a failure message containing one of `expected`. `name`
/// must be the name of the calling test: the model runs in a child process
/// (this test binary, `--exact name`), because a model that deadlocks may
/// abort the process it runs in. A model that passes, or fails for another
/// reason, fails the test: the models have gone blind to the race they
/// exist to show. Returns the failure message.
pub fn expect_violation<F>(name: &'static str, bound: Bound, expected: &[&str], model: F) -> String
where
    F: Fn() + Sync + Send + 'static,
{
    let bound = effective_bound(bound);
    if std::env::var_os(CHILD_ENV).is_some() {
        let ckpt = checkpoint_file(name);
        arm_replay_help(name, bound, ckpt.as_ref(), true);
        run_loom(bound, ckpt, model);
        return String::new();
    }
    let start = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the model in a child process");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "netfd-loom: {name}: loom explored every interleaving (preemption bound {}) \
         and found no violation, but this historical protocol has the race {expected:?}: \
         the model has gone blind\n{text}",
        show(bound)
    );
    // The model's own failure: the first panic message.
    let msg = text
        .lines()
        .skip_while(|l| !l.contains("panicked at"))
        .nth(1)
        .unwrap_or("<no panic message>")
        .to_string();
    assert!(
        expected.iter().any(|e| msg.contains(e)),
        "netfd-loom: {name}: loom failed the model, but not with the expected race \
         {expected:?}: {msg}\n{text}"
    );
    eprintln!(
        "netfd-loom: {name}: violation found as expected (preemption bound {}, {:.2?}): {msg}",
        show(bound),
        start.elapsed()
    );
    // How to watch it happen, as the child printed it.
    let mut help = text
        .lines()
        .skip_while(|l| !l.starts_with("netfd-loom: model `"));
    for line in help.by_ref() {
        eprintln!("{line}");
        if line.contains("--nocapture") {
            break;
        }
    }
    msg
}
