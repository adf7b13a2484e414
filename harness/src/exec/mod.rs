//! Running one case: a scenario, under one target, in one mode, from one
//! seed, on real threads and real sockets.
//!
//! A case:
//! 1. sets up listeners and connected pairs (the local end is the target's
//!    socket under test, the peer end a plain `std` socket the harness owns),
//!    with a fresh [`Ledger`] installed as the probe of every thread that
//!    touches the target;
//! 2. runs the scenario's threads — one at a time under the [controlled
//!    scheduler](sched) or freely with seeded jitter at every sync point —
//!    checking each op's result: bytes read carry their connection's tag
//!    (`crosstalk`), errors after or racing Close are the closed error
//!    (`bad_error`), timeouts come no earlier than their deadline
//!    (`early_deadline`);
//! 3. once every thread has finished or is blocked, closes everything still
//!    open; a thread that does not return within the bound is a `hang`;
//!    once all have returned, closes again what the slots hold (a woken
//!    thread may have gone on to accept, dial or rebind);
//! 4. drains the peers (a write that landed on another connection shows
//!    there) and checks that every descriptor the case opened was released
//!    (`leak`).
//!
//! Threads that hang are left behind (a thread cannot be killed); the caller
//! stops running a scenario after its first hang.
//!
//! One file per job: [`setup`] (listeners, pairs, peers, tags; the inet
//! ports they bind come from [`ports`], so no case reaches another), [`ops`]
//! (the workers and the case probe), [`judge`] (results and findings),
//! [`supervise`] (waiting, teardown, hangs); this file holds the case's
//! shared state and [`run_case`].

mod alone;
pub mod busy;
mod deadline;
mod events;
mod exits;
mod judge;
mod observe;
mod ops;
pub mod parallel;
pub mod pct;
pub mod pool;
mod ports;
mod runqueue;
pub mod sched;
mod setup;
mod supervise;
mod taskfiles;
mod timings;
mod wakeup;

use crate::ledger::Ledger;
use crate::report::{Mode, ViolationKind};
use crate::scenario::{self, Scenario};
use crate::target::{Addr, Conn, Listener, Target};
use judge::{ledger_found, record};
use netfd::probe;
use ops::{worker, CaseProbe, HARNESS_THREAD};
use sched::Scheduler;
use serde::{Deserialize, Serialize};
use setup::{loopback, setup_err, Peer, Tags};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use supervise::{close_all, supervise, teardown_peers};
pub use timings::CaseTimings;

/// Everything that decides a case besides the scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseConfig {
    pub mode: Mode,
    pub seed: u64,
    /// Controlled mode: thread index at each decision. Empty: derived from
    /// the seed.
    pub schedule: Vec<usize>,
    /// How long an op may take to return after Close or its deadline.
    pub hang_bound: Duration,
    /// Controlled mode: past `schedule`, decide by PCT priorities of this
    /// bug depth, drawn from the seed (`None`: the running thread keeps
    /// the turn; an empty schedule is then drawn from the seed).
    pub pct_depth: Option<usize>,
}

impl CaseConfig {
    pub fn new(mode: Mode, seed: u64) -> CaseConfig {
        CaseConfig {
            mode,
            seed,
            schedule: Vec::new(),
            hang_bound: Duration::from_secs(1),
            pct_depth: None,
        }
    }
}

/// A violation found in a case, before it is placed in a report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Found {
    pub kind: ViolationKind,
    pub fd: i32,
    pub owner: u64,
    pub holder: Option<u64>,
    pub op: String,
    pub thread: String,
    pub message: String,
    pub evidence: Option<String>,
    pub trace: Vec<crate::report::Event>,
}

/// What a case produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaseOutcome {
    pub found: Vec<Found>,
    /// The schedule actually followed (controlled mode).
    pub schedule: Vec<usize>,
    pub syscalls_checked: u64,
    /// Checks made per violation kind (assertion counts).
    pub checks: Vec<(ViolationKind, u64)>,
    /// Some thread hung and was left behind.
    pub hung: bool,
    /// Where the case's time went.
    pub timings: CaseTimings,
}

/// The harness could not run the case (not a verdict on the target).
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Small deterministic generator (splitmix64) for schedules, jitter, tags.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// A schedule of `len` decisions over `threads` threads, from `seed`.
pub fn random_schedule(seed: u64, threads: usize, len: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ 0x5CED_u64);
    (0..len)
        .map(|_| rng.below(threads as u64) as usize)
        .collect()
}

/// Per connection: the socket under test, its peer, and what happened to it.
#[derive(Default)]
struct ConnSlot {
    conn: Mutex<Option<Arc<dyn Conn>>>,
    peer: Mutex<Option<Peer>>,
    closed: AtomicBool,
    peer_closed: AtomicBool,
    /// Deadlines set, per direction.
    deadlines: Mutex<[Vec<DeadlineSet>; 2]>,
    /// When the first Close of this connection began (ops or teardown).
    closed_at: Mutex<Option<Instant>>,
    /// When each peer_write / peer_close began: readiness for a parked op.
    peer_events: Mutex<Vec<Instant>>,
    /// The socket the peer was connected to in setup (the one its writes
    /// feed), weak so that it is not kept open.
    peered_socket: Mutex<Option<std::sync::Weak<dyn Conn>>>,
    /// Each peer_write that succeeded: when it began, and when it returned
    /// (its bytes are then waiting for `peered_socket`).
    peer_writes: Mutex<Vec<(Instant, Instant)>>,
    /// Each local Write/WriteTo, failed or not: when it began and returned
    /// (a send takes a pending socket error, see `wakeup.rs`).
    local_sends: Mutex<Vec<(Instant, Instant)>>,
    /// Reads the supervisor saw running with an error pending on the
    /// socket: when the read began (its `current_op` stamp) and when the
    /// error was first seen.
    errors_seen: Mutex<Vec<(Instant, Instant)>>,
    /// Sockets a dial or accept pushed out of this slot. Weak, so that one
    /// nobody holds is dropped as before (a target's Drop is exercised);
    /// one an op still holds (parked in a read on it) is closed by the
    /// teardown like the slot's own: no one else would, and the op would
    /// hang (a soak's false `hang`: two reads parked on a pair both ends of
    /// which had been pushed out of their slot by later dials).
    displaced: Mutex<Vec<std::sync::Weak<dyn Conn>>>,
}

impl ConnSlot {
    /// Mark the connection closed, noting when the first Close began.
    fn mark_closed(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.closed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
    }

    fn note_peer_event(&self) {
        self.peer_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Instant::now());
    }

    /// Whether the first Close of this connection (`closed_at`) began by `t`.
    fn close_began_by(&self, t: Instant) -> bool {
        self.closed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|c| c <= t)
    }

    fn note_local_send(&self, began: Instant) {
        self.local_sends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((began, Instant::now()));
    }

    fn note_peer_write(&self, began: Instant) {
        self.peer_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((began, Instant::now()));
    }
}

/// One `set_deadline` on a connection, for judging timeouts. Concurrent
/// SetDeadlines may take effect in any order, so which one is in effect is
/// known only once one of them has completed strictly after another began.
#[derive(Clone)]
struct DeadlineSet {
    /// When the op began (before calling the target).
    start: Instant,
    /// When the target's call returned; `None` while it is in progress.
    end: Option<Instant>,
    at: Option<Instant>,
    /// The target refused it (e.g. a target without deadlines): nothing
    /// changed, and the deadline rules do not take it as in force.
    failed: bool,
    /// The socket it was set on. A slot's socket can be replaced while an
    /// op runs on the old one (a dial and an accept filling one slot): a
    /// deadline set on the new socket is not the old one's. Weak, so the
    /// socket is not kept open, and its address is not reused meanwhile.
    socket: std::sync::Weak<dyn Conn>,
}

impl DeadlineSet {
    fn set_on(&self, socket: &Arc<dyn Conn>) -> bool {
        std::ptr::addr_eq(self.socket.as_ptr(), Arc::as_ptr(socket))
    }
}

struct ListenerSlot {
    listener: Mutex<Option<Arc<dyn Listener>>>,
    addr: Addr,
    closed: AtomicBool,
    /// The thread whose Close of the listener last succeeded, and the
    /// generation of the listener it closed: only that thread, and only
    /// while no rebind has replaced that listener, may expect the port to be
    /// free (a Close that lost to another returns at once, before the
    /// release).
    closed_ok_by: Mutex<Option<(usize, u64)>>,
    /// Successful rebinds so far (changed under `listener`'s lock).
    generation: AtomicU64,
    /// Held across a rebind's listen and its bookkeeping.
    rebinding: Mutex<()>,
}

/// What the case's threads share.
struct Case {
    scenario: Scenario,
    mode: Mode,
    target: Arc<dyn Target>,
    ledger: Ledger,
    sched: Scheduler,
    tags: Tags,
    conns: Vec<ConnSlot>,
    listeners: std::sync::OnceLock<Vec<ListenerSlot>>,
    found: Mutex<Vec<Found>>,
    thread_names: Vec<String>,
    finished: AtomicUsize,
    /// Per thread: parked in the kernel.
    parked: Vec<AtomicBool>,
    /// Per thread: how many times it has parked (`BeforePark`), for the
    /// busy-wait rule's laps trigger ([`busy`]).
    parks: Vec<AtomicU64>,
    /// The most times one op of the case parked.
    most_parks: AtomicU64,
    /// Per thread: ran all its ops.
    done: Vec<AtomicBool>,
    /// Per thread: (op index, started) of the op in progress.
    current_op: Vec<Mutex<Option<(usize, Instant)>>>,
    last_event: AtomicU64,
    epoch: Instant,
    checks: Mutex<Vec<(ViolationKind, u64)>>,
    /// Microseconds since `epoch` when an op last returned.
    last_op_end: AtomicU64,
    /// `peer_read` ops running now: the supervisor lets each finish (it
    /// ends by itself within the wake-up tolerance of its last byte).
    peer_reads: AtomicUsize,
    /// The target reports no syscalls: its objects are observed through
    /// the interposer ([`observe`]).
    observe: bool,
    attribution: observe::Attribution,
    /// The supervisor has started closing everything: a socket an op
    /// creates from now on is closed by that op, since the sweep may have
    /// passed its slot already.
    tearing_down: AtomicBool,
    /// Pulses the supervisor waits on, and the threads' kernel ids.
    events: events::Events,
    /// The longest a TCP dial of the case took, in microseconds.
    slowest_dial_us: AtomicU64,
    /// The OS threads of a `threads_exit` case ([`exits`]).
    exits: exits::Exits,
    /// How long its threads waited for a CPU ([`runqueue`]).
    waits: runqueue::CaseWaits,
}

impl Case {
    fn listeners(&self) -> &[ListenerSlot] {
        self.listeners.get().map_or(&[], |v| v.as_slice())
    }
}

/// Run one case. `Err` means the harness could not set the case up.
pub fn run_case(
    target: Arc<dyn Target>,
    scenario: &Scenario,
    cfg: &CaseConfig,
) -> Result<CaseOutcome, SetupError> {
    let _hold = alone::enter(scenario.alone);
    let case_started = Instant::now();
    let mut timings = CaseTimings::default();
    let threads = scenario.threads.len();
    let mut rng = Rng::new(cfg.seed);
    let choices = if cfg.schedule.is_empty() && cfg.pct_depth.is_none() {
        random_schedule(cfg.seed, threads, 64)
    } else {
        cfg.schedule.clone()
    };
    let tmp = if scenario.transport.is_unix() {
        Some(
            tempfile::Builder::new()
                .prefix("harness-")
                .tempdir()
                .map_err(|e| setup_err("temp dir", e))?,
        )
    } else {
        None
    };
    let ip = loopback(scenario.transport);
    let observe = !target.reports_syscalls();
    let case = Arc::new(Case {
        scenario: scenario.clone(),
        mode: cfg.mode,
        target: if observe {
            Arc::new(observe::ObservedTarget(target.clone()))
        } else {
            target.clone()
        },
        observe,
        attribution: observe::Attribution::default(),
        ledger: Ledger::new(),
        sched: Scheduler::new(threads, choices).with_pct(
            cfg.pct_depth
                .map(|d| pct::Pct::new(cfg.seed, threads, d, pct::horizon(scenario.op_count()))),
        ),
        tags: Tags {
            base: rng.below(255) as u8,
        },
        conns: (0..scenario.conn_count())
            .map(|_| ConnSlot::default())
            .collect(),
        listeners: std::sync::OnceLock::new(),
        found: Mutex::new(Vec::new()),
        thread_names: scenario.threads.iter().map(|t| t.name.clone()).collect(),
        finished: AtomicUsize::new(0),
        parked: (0..threads).map(|_| AtomicBool::new(false)).collect(),
        parks: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        most_parks: AtomicU64::new(0),
        done: (0..threads).map(|_| AtomicBool::new(false)).collect(),
        current_op: (0..threads).map(|_| Mutex::new(None)).collect(),
        last_event: AtomicU64::new(0),
        epoch: Instant::now(),
        checks: Mutex::new(Vec::new()),
        last_op_end: AtomicU64::new(0),
        peer_reads: AtomicUsize::new(0),
        tearing_down: AtomicBool::new(false),
        events: events::Events::new(threads),
        slowest_dial_us: AtomicU64::new(0),
        exits: exits::Exits::default(),
        waits: runqueue::CaseWaits::new(threads),
    });
    // Set up on a pool thread, observed by the ledger as "harness", and
    // bounded: a target that blocks in listen or dial is hung, not the
    // harness. Supervision and teardown run on this thread, as "harness".
    let harness_probe = Arc::new(CaseProbe::new(case.clone(), HARNESS_THREAD, 0));
    let bound = setup::setup_bound(cfg.hang_bound);
    let dir = tmp.as_ref().map(|t| t.path().to_path_buf());
    if !setup::set_up_within(&case, harness_probe.clone(), ip, dir, bound)? {
        return Ok(setup_hung(&case, bound, case_started));
    }
    let _guard = probe::install(harness_probe.clone());
    let _observer = observe.then(|| crate::intercept::install(&*harness_probe));

    let mut handles = Vec::new();
    for t in 0..threads {
        let case = case.clone();
        let seed = cfg.seed ^ ((t as u64 + 1) << 32);
        if scenario.threads_exit {
            exits::spawn(&case, t, seed).map_err(|e| setup_err("spawn thread", e))?;
            handles.push(None);
        } else {
            let h = pool::spawn(move || worker(case, t, seed))
                .map_err(|e| setup_err("spawn thread", e))?;
            handles.push(Some(h));
        }
    }
    timings.setup = case_started.elapsed();
    if cfg.mode == Mode::Controlled {
        case.sched.begin();
    }
    let hung = supervise(&case, cfg.hang_bound, &mut timings);
    let finish_started = Instant::now();
    for (t, h) in handles.into_iter().enumerate() {
        if let Some(h) = h.filter(|_| !hung.contains(&t)) {
            h.join();
        }
    }
    exits::join_finished(&case, cfg.hang_bound);
    if hung.is_empty() {
        // Threads woken by the supervisor's Close may have gone on to open
        // sockets (accept, dial, rebind) that nobody closed: close what the
        // slots hold now, so only a Close that releases nothing is a leak.
        close_all(&case);
    }
    teardown_peers(&case);
    if hung.is_empty() {
        for (owner, fd) in case.ledger.unreleased() {
            record(
                &case,
                Found {
                    kind: ViolationKind::Leak,
                    fd,
                    owner: owner.0,
                    holder: None,
                    op: "end of case".into(),
                    thread: "harness".into(),
                    message: format!(
                        "descriptor {fd} of {owner} still open after Close and the end of the case"
                    ),
                    evidence: netfd::sys::file_identity(fd)
                        .map(|(_, ino)| format!("fd {fd} is still inode {ino}")),
                    trace: case.ledger.trace(
                        case.ledger.event_count().saturating_sub(1),
                        &case.thread_names,
                    ),
                },
            );
        }
    }
    if hung.is_empty() {
        registrations_left(&case);
    }
    exits::wake_fds_left(&case);
    let mut found = case.found.lock().unwrap_or_else(|e| e.into_inner()).clone();
    found.extend(ledger_found(&case, case.ledger.violations()));
    let counts = case.ledger.counts();
    let mut checks = case
        .checks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    checks.push((ViolationKind::FdReuse, counts.syscalls_checked));
    checks.push((ViolationKind::UseAfterClose, counts.syscalls_checked));
    checks.push((ViolationKind::CloseInFlight, counts.closes_checked));
    checks.push((ViolationKind::DoubleClose, counts.closes_checked));
    checks.push((ViolationKind::Leak, 1));
    checks.push((ViolationKind::Hang, threads as u64));
    case.sched.record_timings(&mut timings);
    timings.slowest_dial = Duration::from_micros(
        case.slowest_dial_us
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    timings.slow_dials = u64::from(timings.slowest_dial > cfg.hang_bound);
    timings.most_parks = case.most_parks.load(std::sync::atomic::Ordering::Relaxed);
    timings.finish = finish_started.elapsed();
    Ok(CaseOutcome {
        found,
        schedule: case.sched.taken(),
        syscalls_checked: counts.syscalls_checked,
        checks,
        hung: !hung.is_empty(),
        timings,
    })
}

/// The outcome of a case whose setup did not return within `bound`: one
/// `hang`, no ops run, the setup thread left behind.
fn setup_hung(case: &Case, bound: Duration, started: Instant) -> CaseOutcome {
    let f = Found {
        kind: ViolationKind::Hang,
        fd: -1,
        owner: 0,
        holder: None,
        op: "case setup".into(),
        thread: "harness".into(),
        message: format!(
            "the target's listen, dial, accept or bind did not return within {bound:?} while the case was set up (nothing else had run)"
        ),
        evidence: None,
        trace: case
            .ledger
            .trace(case.ledger.event_count().saturating_sub(1), &case.thread_names),
    };
    CaseOutcome {
        found: vec![f],
        schedule: Vec::new(),
        syscalls_checked: case.ledger.counts().syscalls_checked,
        checks: vec![(ViolationKind::Hang, 1)],
        hung: true,
        timings: CaseTimings {
            setup: started.elapsed(),
            ..CaseTimings::default()
        },
    }
}

fn thread_name(case: &Case, t: usize) -> String {
    case.thread_names
        .get(t)
        .cloned()
        .unwrap_or_else(|| "harness".into())
}

/// `leak`: a socket of the case whose descriptor was released but whose
/// registration the target's readiness machinery still holds (netfd's poll
/// server on the Server path: a Close that closed the number without
/// leaving the poll server). Owners are unique in the process, so other
/// cases' sockets, in this process at the same time, are not confused with
/// this case's.
fn registrations_left(case: &Case) {
    let Some(live) = case.target.live_registrations() else {
        return;
    };
    let released = case.ledger.released();
    for owner in live
        .into_iter()
        .filter(|o| released.binary_search(o).is_ok())
    {
        record(
            case,
            Found {
                kind: ViolationKind::Leak,
                fd: -1,
                owner: owner.0,
                holder: None,
                op: "end of case".into(),
                thread: "harness".into(),
                message: format!(
                    "{owner}'s descriptor was released, but its poll-server registration is still live after the end of the case"
                ),
                evidence: None,
                trace: case
                    .ledger
                    .trace(case.ledger.event_count().saturating_sub(1), &case.thread_names),
            },
        );
    }
}

/// A read or write a case's thread is inside now.
struct IoInProgress {
    /// The case thread it runs on.
    thread: usize,
    /// 0 read, 1 write.
    dir: usize,
    conn: usize,
    /// The slot's socket now: the op's own, unless the slot was refilled
    /// while it runs.
    socket: Arc<dyn Conn>,
    started: Instant,
}

/// The reads and writes the case's threads are inside now (for the
/// supervisor's waits on ops the timing rules still have to judge).
fn io_in_progress(case: &Case) -> impl Iterator<Item = IoInProgress> + '_ {
    (0..case.scenario.threads.len()).filter_map(|t| {
        let (i, started) = (*case.current_op[t].lock().unwrap_or_else(|e| e.into_inner()))?;
        let op = &case.scenario.threads[t].ops[i];
        let dir = match op {
            scenario::Op::Read { .. } | scenario::Op::ReadFrom { .. } => 0,
            scenario::Op::Write { .. } | scenario::Op::WriteTo { .. } => 1,
            _ => return None,
        };
        let conn = op.conn()?;
        let socket = conn_of(case, conn)?;
        Some(IoInProgress {
            thread: t,
            dir,
            conn,
            socket,
            started,
        })
    })
}

fn conn_of(case: &Case, i: usize) -> Option<Arc<dyn Conn>> {
    case.conns
        .get(i)?
        .conn
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn listener_of(case: &Case, i: usize) -> Option<Arc<dyn Listener>> {
    case.listeners()
        .get(i)?
        .listener
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The case's seed, from the run's seed, the scenario and the case index.
pub fn case_seed(run_seed: u64, scenario: &str, case: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in scenario.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    Rng::new(run_seed ^ h ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}
