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

pub mod pool;
pub mod sched;

use crate::ledger::{Ledger, LedgerViolation};
use crate::report::{Mode, ViolationKind};
use crate::scenario::{Op, Scenario, Transport};
use crate::target::{Addr, Conn, Listener, Target};
use netfd::probe::{self, OwnerId, Probe, SyncPoint, SysResult, Syscall};
use sched::Scheduler;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything that decides a case besides the scenario.
#[derive(Clone, Debug)]
pub struct CaseConfig {
    pub mode: Mode,
    pub seed: u64,
    /// Controlled mode: thread index at each decision. Empty: derived from
    /// the seed.
    pub schedule: Vec<usize>,
    /// How long an op may take to return after Close or its deadline.
    pub hang_bound: Duration,
}

impl CaseConfig {
    pub fn new(mode: Mode, seed: u64) -> CaseConfig {
        CaseConfig {
            mode,
            seed,
            schedule: Vec::new(),
            hang_bound: Duration::from_secs(1),
        }
    }
}

/// A violation found in a case, before it is placed in a report.
#[derive(Clone, Debug)]
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
#[derive(Clone, Debug, Default)]
pub struct CaseOutcome {
    pub found: Vec<Found>,
    /// The schedule actually followed (controlled mode).
    pub schedule: Vec<usize>,
    pub syscalls_checked: u64,
    /// Checks made per violation kind (assertion counts).
    pub checks: Vec<(ViolationKind, u64)>,
    /// Some thread hung and was left behind.
    pub hung: bool,
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

/// The byte every payload of one (connection, direction) is made of. Values
/// are distinct within a case and shifted by the seed across cases, so a
/// byte read on the wrong connection names the connection it came from.
#[derive(Clone, Copy, Debug)]
struct Tags {
    base: u8,
}

impl Tags {
    /// Bytes the peer sends to local end `conn`.
    fn sent_to_local(self, conn: usize) -> u8 {
        self.byte(2 * conn)
    }
    /// Bytes local end `conn` sends.
    fn sent_by_local(self, conn: usize) -> u8 {
        self.byte(2 * conn + 1)
    }
    fn byte(self, k: usize) -> u8 {
        ((usize::from(self.base) + k) % 255 + 1) as u8
    }
    /// Which (conn, direction) a byte stands for.
    fn decode(self, b: u8, conns: usize) -> Option<(usize, bool)> {
        (0..2 * conns)
            .find(|&k| self.byte(k) == b)
            .map(|k| (k / 2, k % 2 == 0))
    }
}

enum Peer {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
    Udp(std::net::UdpSocket, SocketAddr),
}

impl Peer {
    fn send(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Peer::Tcp(s) => (&*s).write_all(buf),
            Peer::Unix(s) => (&*s).write_all(buf),
            Peer::Udp(s, to) => s.send_to(buf, to).map(drop),
        }
    }
    /// Everything the local end sent that is waiting here.
    fn drain(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let _ = self.set_nonblocking(true);
        loop {
            let r = match self {
                Peer::Tcp(s) => (&*s).read(&mut buf),
                Peer::Unix(s) => (&*s).read(&mut buf),
                Peer::Udp(s, _) => s.recv(&mut buf),
            };
            match r {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if out.len() > 64 << 20 {
                break;
            }
        }
        out
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Peer::Tcp(s) => s.set_nonblocking(on),
            Peer::Unix(s) => s.set_nonblocking(on),
            Peer::Udp(s, _) => s.set_nonblocking(on),
        }
    }
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
}

/// One `set_deadline` on a connection, for judging timeouts. Concurrent
/// SetDeadlines may take effect in any order, so which one is in effect is
/// known only once one of them has completed strictly after another began.
#[derive(Clone, Copy, Debug)]
struct DeadlineSet {
    /// When the op began (before calling the target).
    start: Instant,
    /// When the target's call returned; `None` while it is in progress.
    end: Option<Instant>,
    at: Option<Instant>,
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
    /// Per thread: ran all its ops.
    done: Vec<AtomicBool>,
    /// Per thread: (op index, started) of the op in progress.
    current_op: Vec<Mutex<Option<(usize, Instant)>>>,
    last_event: AtomicU64,
    epoch: Instant,
    checks: Mutex<Vec<(ViolationKind, u64)>>,
    /// Microseconds since `epoch` when an op last returned.
    last_op_end: AtomicU64,
    /// The supervisor has started closing everything: a socket an op
    /// creates from now on is closed by that op, since the sweep may have
    /// passed its slot already.
    tearing_down: AtomicBool,
}

impl Case {
    fn listeners(&self) -> &[ListenerSlot] {
        self.listeners.get().map_or(&[], |v| v.as_slice())
    }
}

/// Thread index the ledger records for the harness's own calls.
const HARNESS_THREAD: usize = usize::MAX;

/// The probe installed on each thread of a case.
struct CaseProbe {
    case: Arc<Case>,
    thread: usize,
    jitter: Mutex<Rng>,
}

impl CaseProbe {
    fn touch(&self) {
        let ms = self.case.epoch.elapsed().as_micros() as u64;
        self.case.last_event.store(ms, Ordering::Relaxed);
    }
}

impl Probe for CaseProbe {
    fn before_syscall(&self, call: &Syscall) {
        self.touch();
        self.case.ledger.before_syscall(self.thread, call);
    }

    fn after_syscall(&self, call: &Syscall, result: SysResult) {
        self.touch();
        self.case.ledger.after_syscall(self.thread, call, result);
    }

    fn sync_point(&self, point: SyncPoint, owner: OwnerId) {
        self.touch();
        self.case
            .ledger
            .note(self.thread, owner, point.name(), None);
        if self.thread == HARNESS_THREAD {
            return;
        }
        let parked = &self.case.parked[self.thread];
        match point {
            SyncPoint::BeforePark => parked.store(true, Ordering::Release),
            SyncPoint::AfterWake => parked.store(false, Ordering::Release),
            _ => {}
        }
        match self.case.mode {
            Mode::Controlled => match point {
                SyncPoint::BeforePark => self.case.sched.park(self.thread),
                SyncPoint::AfterWake => self.case.sched.unpark(self.thread),
                _ => self.case.sched.switch(self.thread),
            },
            Mode::Free => {
                let r = self
                    .jitter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .below(100);
                match r {
                    0..=49 => {}
                    50..=84 => std::thread::yield_now(),
                    _ => std::thread::sleep(Duration::from_micros(r - 80)),
                }
            }
        }
    }
}

fn loopback(transport: Transport) -> IpAddr {
    match transport {
        Transport::Tcp6 | Transport::Udp6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

fn setup_err(what: &str, e: impl std::fmt::Display) -> SetupError {
    SetupError(format!("case setup: {what}: {e}"))
}

/// Run one case. `Err` means the harness could not set the case up.
pub fn run_case(
    target: Arc<dyn Target>,
    scenario: &Scenario,
    cfg: &CaseConfig,
) -> Result<CaseOutcome, SetupError> {
    let threads = scenario.threads.len();
    let mut rng = Rng::new(cfg.seed);
    let choices = if cfg.schedule.is_empty() {
        random_schedule(cfg.seed, threads, 64)
    } else {
        cfg.schedule.clone()
    };
    let tmp = if scenario.transport == Transport::Unix {
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
    let case = Arc::new(Case {
        scenario: scenario.clone(),
        mode: cfg.mode,
        target: target.clone(),
        ledger: Ledger::new(),
        sched: Scheduler::new(threads, choices),
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
        done: (0..threads).map(|_| AtomicBool::new(false)).collect(),
        current_op: (0..threads).map(|_| Mutex::new(None)).collect(),
        last_event: AtomicU64::new(0),
        epoch: Instant::now(),
        checks: Mutex::new(Vec::new()),
        last_op_end: AtomicU64::new(0),
        tearing_down: AtomicBool::new(false),
    });
    // Set up on this thread, observed by the ledger as "harness".
    let harness_probe: Arc<dyn Probe> = Arc::new(CaseProbe {
        case: case.clone(),
        thread: HARNESS_THREAD,
        jitter: Mutex::new(Rng::new(0)),
    });
    let _guard = probe::install(harness_probe);
    let listeners = setup_listeners(&case, scenario, ip, tmp.as_ref().map(|t| t.path()))?;
    let _ = case.listeners.set(listeners);
    setup_connections(&case, scenario, ip, tmp.as_ref().map(|t| t.path()))?;

    let mut handles = Vec::new();
    for t in 0..threads {
        let case = case.clone();
        let seed = cfg.seed ^ ((t as u64 + 1) << 32);
        let h =
            pool::spawn(move || worker(case, t, seed)).map_err(|e| setup_err("spawn thread", e))?;
        handles.push(h);
    }
    if cfg.mode == Mode::Controlled {
        case.sched.begin();
    }
    let hung = supervise(&case, cfg.hang_bound);
    for (t, h) in handles.into_iter().enumerate() {
        if !hung.contains(&t) {
            h.join();
        }
    }
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
    Ok(CaseOutcome {
        found,
        schedule: case.sched.taken(),
        syscalls_checked: counts.syscalls_checked,
        checks,
        hung: !hung.is_empty(),
    })
}

fn ledger_found(case: &Case, vs: Vec<LedgerViolation>) -> Vec<Found> {
    vs.into_iter()
        .map(|v| Found {
            kind: v.kind,
            fd: v.fd,
            owner: v.owner.0,
            holder: v.holder.map(|h| h.0),
            op: v.op.name().to_string(),
            thread: thread_name(case, v.thread),
            message: v.message,
            evidence: v.evidence,
            trace: case.ledger.trace(v.event, &case.thread_names),
        })
        .collect()
}

fn thread_name(case: &Case, t: usize) -> String {
    case.thread_names
        .get(t)
        .cloned()
        .unwrap_or_else(|| "harness".into())
}

fn setup_listeners(
    case: &Case,
    scenario: &Scenario,
    ip: IpAddr,
    dir: Option<&std::path::Path>,
) -> Result<Vec<ListenerSlot>, SetupError> {
    (0..scenario.listeners)
        .map(|i| {
            let addr = match dir {
                Some(d) => Addr::Unix(d.join(format!("l{i}.sock"))),
                None => Addr::Inet(SocketAddr::new(ip, 0)),
            };
            let l = case
                .target
                .listen(&addr)
                .map_err(|e| setup_err(&format!("listen on {addr}"), e))?;
            let addr = l
                .local_addr()
                .map_err(|e| setup_err("listener address", e))?;
            Ok(ListenerSlot {
                listener: Mutex::new(Some(Arc::from(l))),
                addr,
                closed: AtomicBool::new(false),
                closed_ok_by: Mutex::new(None),
                generation: AtomicU64::new(0),
                rebinding: Mutex::new(()),
            })
        })
        .collect()
}

fn setup_connections(
    case: &Case,
    scenario: &Scenario,
    ip: IpAddr,
    dir: Option<&std::path::Path>,
) -> Result<(), SetupError> {
    if scenario.connections == 0 {
        return Ok(());
    }
    match scenario.transport {
        Transport::Tcp4 | Transport::Tcp6 => {
            let helper = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
                .map_err(|e| setup_err("helper listener", e))?;
            let addr = helper
                .local_addr()
                .map_err(|e| setup_err("helper address", e))?;
            for i in 0..scenario.connections {
                let conn = case
                    .target
                    .dial(&Addr::Inet(addr))
                    .map_err(|e| setup_err("dial", e))?;
                let (peer, _) = helper.accept().map_err(|e| setup_err("accept", e))?;
                fill(case, i, conn, Peer::Tcp(peer));
            }
        }
        Transport::Unix => {
            let path = dir
                .ok_or_else(|| SetupError("no temp dir".into()))?
                .join("peer.sock");
            let helper = std::os::unix::net::UnixListener::bind(&path)
                .map_err(|e| setup_err("helper listener", e))?;
            for i in 0..scenario.connections {
                let conn = case
                    .target
                    .dial(&Addr::Unix(path.clone()))
                    .map_err(|e| setup_err("dial", e))?;
                let (peer, _) = helper.accept().map_err(|e| setup_err("accept", e))?;
                fill(case, i, conn, Peer::Unix(peer));
            }
        }
        Transport::Udp4 | Transport::Udp6 => {
            for i in 0..scenario.connections {
                let peer = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
                    .map_err(|e| setup_err("peer socket", e))?;
                let peer_addr = peer
                    .local_addr()
                    .map_err(|e| setup_err("peer address", e))?;
                let conn = case
                    .target
                    .bind_datagram(SocketAddr::new(ip, 0), peer_addr)
                    .map_err(|e| setup_err("bind datagram", e))?;
                let local = conn.local_addr().ok().flatten().ok_or_else(|| {
                    SetupError("case setup: datagram socket has no address".into())
                })?;
                fill(case, i, conn, Peer::Udp(peer, local));
            }
        }
    }
    Ok(())
}

fn fill(case: &Case, i: usize, conn: Box<dyn Conn>, peer: Peer) {
    *case.conns[i].conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(conn));
    *case.conns[i].peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
}

fn record(case: &Case, f: Found) {
    case.found.lock().unwrap_or_else(|e| e.into_inner()).push(f);
}

fn count_check(case: &Case, kind: ViolationKind) {
    let mut c = case.checks.lock().unwrap_or_else(|e| e.into_inner());
    match c.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += 1,
        None => c.push((kind, 1)),
    }
}

fn worker(case: Arc<Case>, me: usize, seed: u64) {
    let probe: Arc<dyn Probe> = Arc::new(CaseProbe {
        case: case.clone(),
        thread: me,
        jitter: Mutex::new(Rng::new(seed)),
    });
    let _guard = probe::install(probe);
    if case.mode == Mode::Controlled {
        case.sched.arrive(me);
    }
    let ops = case.scenario.threads[me].ops.clone();
    for (i, op) in ops.iter().enumerate() {
        if case.mode == Mode::Controlled {
            case.sched.switch(me);
        }
        *case.current_op[me]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((i, Instant::now()));
        case.ledger
            .note(me, OwnerId::NONE, format!("op {op}"), None);
        run_op(&case, me, op);
        let now = case.epoch.elapsed().as_micros() as u64;
        case.last_op_end.store(now, Ordering::Relaxed);
        *case.current_op[me]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
    if case.mode == Mode::Controlled {
        case.sched.done(me);
    }
    case.done[me].store(true, Ordering::Release);
    case.finished.fetch_add(1, Ordering::AcqRel);
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

/// The op's outcome, judged.
fn run_op(case: &Case, me: usize, op: &Op) {
    let started = Instant::now();
    match *op {
        Op::Read { conn, bytes } | Op::ReadFrom { conn, bytes } => {
            let Some(c) = conn_of(case, conn) else { return };
            let mut buf = vec![0u8; bytes.max(1)];
            let r = c.read(&mut buf);
            match r {
                Ok(n) => check_bytes(case, me, op, conn, c.owner(), &buf[..n]),
                Err(e) => judge_error(case, me, op, conn, c.owner(), Some((0, started)), &e),
            }
        }
        Op::Write { conn, bytes } | Op::WriteTo { conn, bytes } => {
            let Some(c) = conn_of(case, conn) else { return };
            let buf = vec![case.tags.sent_by_local(conn); bytes.max(1)];
            if let Err(e) = c.write(&buf) {
                judge_error(case, me, op, conn, c.owner(), Some((1, started)), &e);
            }
        }
        Op::Close { conn } => {
            let Some(c) = conn_of(case, conn) else { return };
            case.conns[conn].closed.store(true, Ordering::Release);
            if let Err(e) = c.close() {
                judge_error(case, me, op, conn, c.owner(), None, &e);
            }
        }
        Op::CloseListener { listener } => {
            let slot = &case.listeners()[listener];
            // The listener and the rebind generation it belongs to, together.
            let (l, generation) = {
                let g = slot.listener.lock().unwrap_or_else(|e| e.into_inner());
                (g.clone(), slot.generation.load(Ordering::Acquire))
            };
            let Some(l) = l else { return };
            slot.closed.store(true, Ordering::Release);
            match l.close() {
                Ok(()) => {
                    *slot.closed_ok_by.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((me, generation))
                }
                Err(e) => judge_listener_error(case, me, op, l.owner(), &e),
            }
        }
        Op::Rebind { listener } => {
            let slot = &case.listeners()[listener];
            // Rebinds of one listener are serialised, so one that finds the
            // port taken sees the generation of any rebind that took it.
            let _serial = slot.rebinding.lock().unwrap_or_else(|e| e.into_inner());
            match case.target.listen(&slot.addr) {
                Ok(l) => {
                    let l: Arc<dyn Listener> = Arc::from(l);
                    slot.closed.store(false, Ordering::Release);
                    {
                        let mut g = slot.listener.lock().unwrap_or_else(|e| e.into_inner());
                        *g = Some(l.clone());
                        slot.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    if case.tearing_down.load(Ordering::SeqCst) {
                        slot.closed.store(true, Ordering::Release);
                        let _ = l.close();
                    }
                }
                // Only a Close that succeeded, on this thread, of the
                // listener that still held the port, promises it is free.
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        && *slot.closed_ok_by.lock().unwrap_or_else(|e| e.into_inner())
                            == Some((me, slot.generation.load(Ordering::Acquire))) =>
                {
                    let owner = listener_of(case, listener).map_or(0, |l| l.owner().0);
                    record(case, Found {
                        kind: ViolationKind::Leak,
                        fd: -1,
                        owner,
                        holder: None,
                        op: op.to_string(),
                        thread: thread_name(case, me),
                        message: format!("listening again on {} failed: address in use: Close returned before the descriptor was released", slot.addr),
                        evidence: None,
                        trace: case.ledger.trace(case.ledger.event_count().saturating_sub(1), &case.thread_names),
                    });
                }
                Err(_) => {}
            }
        }
        Op::Accept { listener, conn } => {
            let Some(l) = listener_of(case, listener) else {
                return;
            };
            match l.accept() {
                Ok(c) => install_conn(case, conn, c),
                Err(e) => judge_listener_error(case, me, op, l.owner(), &e),
            }
        }
        Op::Dial { listener, conn } => {
            let addr = case.listeners()[listener].addr.clone();
            if let Ok(c) = case.target.dial(&addr) {
                install_conn(case, conn, c);
            }
        }
        Op::SetDeadline { conn, dir, in_ms } => {
            let Some(c) = conn_of(case, conn) else { return };
            let now = Instant::now();
            let at = in_ms.map(|ms| {
                if ms <= 0 {
                    now.checked_sub(Duration::from_millis(ms.unsigned_abs()))
                        .unwrap_or(now)
                } else {
                    now + Duration::from_millis(ms as u64)
                }
            });
            let dirs = [dir.includes_read(), dir.includes_write()];
            let mut at_index = [0usize; 2];
            {
                let mut d = case.conns[conn]
                    .deadlines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for k in (0..2).filter(|&k| dirs[k]) {
                    at_index[k] = d[k].len();
                    d[k].push(DeadlineSet {
                        start: now,
                        end: None,
                        at,
                    });
                }
            }
            let r = c.set_deadline(dir, at);
            {
                let end = Instant::now();
                let mut d = case.conns[conn]
                    .deadlines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for k in (0..2).filter(|&k| dirs[k]) {
                    d[k][at_index[k]].end = Some(end);
                }
            }
            if let Err(e) = r {
                judge_error(case, me, op, conn, c.owner(), None, &e);
            }
        }
        Op::Open { count } => {
            let ip = loopback(case.scenario.transport);
            let any = SocketAddr::new(ip, 0);
            let opened: Vec<Box<dyn Conn>> = (0..count)
                .filter_map(|_| case.target.bind_datagram(any, SocketAddr::new(ip, 9)).ok())
                .collect();
            for c in opened {
                let _ = c.close();
            }
        }
        Op::Sleep { ms } => {
            if case.mode == Mode::Free {
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
        Op::Yield {} => std::thread::yield_now(),
        Op::PeerWrite { conn, bytes } => {
            let peer = case.conns[conn]
                .peer
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(p) = peer.as_ref() {
                let _ = p.send(&vec![case.tags.sent_to_local(conn); bytes.max(1)]);
            }
        }
        Op::PeerClose { conn } => {
            let slot = &case.conns[conn];
            let peer = slot.peer.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(p) = peer {
                check_drained(case, conn, &p);
                slot.peer_closed.store(true, Ordering::Release);
                drop(p);
            }
        }
    }
}

/// Put a dialled or accepted connection in its slot (closing it at once if
/// the teardown sweep may have passed the slot).
fn install_conn(case: &Case, conn: usize, c: Box<dyn Conn>) {
    let c: Arc<dyn Conn> = Arc::from(c);
    *case.conns[conn]
        .conn
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
    if case.tearing_down.load(Ordering::SeqCst) {
        case.conns[conn].closed.store(true, Ordering::Release);
        let _ = c.close();
    }
}

fn found_here(
    case: &Case,
    me: usize,
    kind: ViolationKind,
    op: &Op,
    owner: OwnerId,
    message: String,
) -> Found {
    Found {
        kind,
        fd: -1,
        owner: owner.0,
        holder: None,
        op: op.to_string(),
        thread: thread_name(case, me),
        message,
        evidence: None,
        trace: case.ledger.trace(
            case.ledger.event_count().saturating_sub(1),
            &case.thread_names,
        ),
    }
}

/// Bytes read on `conn` must all be the tag of data sent to it.
fn check_bytes(case: &Case, me: usize, op: &Op, conn: usize, owner: OwnerId, got: &[u8]) {
    count_check(case, ViolationKind::Crosstalk);
    let slot_conn = case.scenario.is_slot(conn);
    let allowed = |b: u8| {
        if slot_conn {
            // A slot's remote end is another slot of this case.
            (case.scenario.connections..case.scenario.conn_count())
                .any(|c| case.tags.sent_by_local(c) == b)
        } else {
            b == case.tags.sent_to_local(conn)
        }
    };
    if let Some(&bad) = got.iter().find(|&&b| !allowed(b)) {
        let from = match case.tags.decode(bad, case.scenario.conn_count()) {
            Some((c, true)) => format!("data sent to connection {c}"),
            Some((c, false)) => format!("data written by connection {c}"),
            None => format!("byte {bad:#04x}, from outside this case"),
        };
        record(
            case,
            found_here(
                case,
                me,
                ViolationKind::Crosstalk,
                op,
                owner,
                format!("{op} on connection {conn} got {from}"),
            ),
        );
    }
}

/// Bytes the peer of `conn` received must all be `conn`'s writes.
fn check_drained(case: &Case, conn: usize, peer: &Peer) {
    let got = peer.drain();
    count_check(case, ViolationKind::Crosstalk);
    let want = case.tags.sent_by_local(conn);
    if let Some(&bad) = got.iter().find(|&&b| b != want) {
        let from = match case.tags.decode(bad, case.scenario.conn_count()) {
            Some((c, false)) => format!("bytes written by connection {c}"),
            Some((c, true)) => format!("bytes meant for connection {c}"),
            None => format!("byte {bad:#04x} from outside this case"),
        };
        let owner = conn_of(case, conn).map_or(0, |c| c.owner().0);
        record(
            case,
            Found {
                kind: ViolationKind::Crosstalk,
                fd: -1,
                owner,
                holder: None,
                op: format!("peer of connection {conn} read"),
                thread: "harness".into(),
                message: format!("the peer of connection {conn} received {from}"),
                evidence: None,
                trace: case.ledger.trace(
                    case.ledger.event_count().saturating_sub(1),
                    &case.thread_names,
                ),
            },
        );
    }
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ECONNREFUSED)
    )
}

/// An error from an op on `conn`: the closed error, a due timeout, or a
/// peer-gone error after the peer closed are results; anything else is not.
fn judge_error(
    case: &Case,
    me: usize,
    op: &Op,
    conn: usize,
    owner: OwnerId,
    timed: Option<(usize, Instant)>,
    e: &io::Error,
) {
    count_check(case, ViolationKind::BadError);
    let slot = &case.conns[conn];
    if netfd::is_closed(e) {
        return;
    }
    if netfd::is_timeout(e) {
        if let Some((dir, started)) = timed {
            count_check(case, ViolationKind::EarlyDeadline);
            let now = Instant::now();
            let d = slot.deadlines.lock().unwrap_or_else(|e| e.into_inner());
            // The earliest deadline that may have been in effect at some
            // moment of the op: every one set before it timed out, except
            // those surely replaced before it started (another SetDeadline
            // began after it returned, and returned before the op began).
            let replaced = |e: &DeadlineSet| {
                e.end.is_some_and(|end| {
                    d[dir]
                        .iter()
                        .any(|f| f.start > end && f.end.is_some_and(|fe| fe <= started))
                })
            };
            let earliest = d[dir]
                .iter()
                .filter(|e| e.start <= now && !replaced(e))
                .filter_map(|e| e.at)
                .min();
            match earliest {
                Some(at) if now < at => record(
                    case,
                    found_here(
                        case,
                        me,
                        ViolationKind::EarlyDeadline,
                        op,
                        owner,
                        format!("{op} timed out {:?} before its deadline", at - now),
                    ),
                ),
                Some(_) => {}
                None => record(
                    case,
                    found_here(
                        case,
                        me,
                        ViolationKind::BadError,
                        op,
                        owner,
                        format!("{op} timed out with no deadline set"),
                    ),
                ),
            }
            return;
        }
    }
    if (slot.peer_closed.load(Ordering::Acquire) || case.scenario.is_slot(conn)) && is_peer_gone(e)
    {
        return;
    }
    let when = if slot.closed.load(Ordering::Acquire) {
        "racing or after Close"
    } else {
        "with no Close"
    };
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::BadError,
            op,
            owner,
            format!("{op} {when} returned \"{e}\" instead of its result or the closed error"),
        ),
    );
}

fn judge_listener_error(case: &Case, me: usize, op: &Op, owner: OwnerId, e: &io::Error) {
    count_check(case, ViolationKind::BadError);
    if netfd::is_closed(e) {
        return;
    }
    record(
        case,
        found_here(
            case,
            me,
            ViolationKind::BadError,
            op,
            owner,
            format!("{op} returned \"{e}\" instead of its result or the closed error"),
        ),
    );
}

/// How long a case may go without any event before the supervisor takes
/// it as stuck (a thread blocked where no sync point says so, such as a
/// lock wait inside the protocol) and starts closing everything. Longer
/// than any sleep a scenario file uses; each case that hits it pays it in
/// full, so it sets the pace of generated cases.
const STUCK_QUIET: Duration = Duration::from_millis(50);

/// Wait for the threads; when all are done or blocked, close everything and
/// wait `bound` for the blocked ones. Returns the threads that hung.
fn supervise(case: &Arc<Case>, bound: Duration) -> HashSet<usize> {
    let threads = case.scenario.threads.len();
    let all_done = || case.finished.load(Ordering::Acquire) == threads;
    let quiet_for = |d: Duration| {
        let last = Duration::from_micros(case.last_event.load(Ordering::Relaxed));
        case.epoch.elapsed().saturating_sub(last) >= d
    };
    // Parked in the kernel or finished; a thread waiting for its turn in
    // the scheduler, or between ops, is still running.
    let all_blocked = || {
        (0..threads)
            .all(|t| case.parked[t].load(Ordering::Acquire) || case.done[t].load(Ordering::Acquire))
    };
    // No op finished for this long, with every thread inside one: nothing
    // but a Close can move the case on (a busy loop that never blocks, or
    // a read nobody will ever feed).
    let stuck_for = |d: Duration| {
        let last = Duration::from_micros(case.last_op_end.load(Ordering::Relaxed));
        case.epoch.elapsed().saturating_sub(last) >= d
    };
    // Phase 1: run until done, or until everyone left is blocked.
    let phase1_limit = Instant::now() + Duration::from_secs(10) + bound;
    while !all_done() && Instant::now() < phase1_limit {
        // A parked op whose deadline is near must be left to time out:
        // closing it first would never exercise deadline expiry.
        if all_blocked() && quiet_for(Duration::from_millis(2)) && !deadline_pending(case, bound) {
            break;
        }
        if quiet_for(STUCK_QUIET) || stuck_for(bound) {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Phase 2: close everything still open; blocked ops must return. The
    // schedule stops here, and the closes run on their own thread so a
    // Close that never returns is a hang, not a stuck harness.
    case.tearing_down.store(true, Ordering::SeqCst);
    case.sched.release_all();
    let closed_at = Instant::now();
    let closer = {
        let case = case.clone();
        let probe = probe::current();
        std::thread::Builder::new()
            .name("case-teardown".into())
            .spawn(move || {
                let _guard = probe.map(probe::install);
                close_all(&case);
            })
    };
    if let Ok(h) = closer {
        while !h.is_finished() && closed_at.elapsed() < bound {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    while !all_done() && closed_at.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut hung = HashSet::new();
    if !all_done() {
        for t in 0..threads {
            let cur = *case.current_op[t].lock().unwrap_or_else(|e| e.into_inner());
            if let Some((i, started)) = cur {
                hung.insert(t);
                let op = &case.scenario.threads[t].ops[i];
                record(
                    case,
                    Found {
                        kind: ViolationKind::Hang,
                        fd: -1,
                        // The socket the op waits on: its connection, or
                        // the listener of an accept.
                        owner: op
                            .conn()
                            .and_then(|c| conn_of(case, c))
                            .map(|c| c.owner().0)
                            .or_else(|| {
                                op.listener()
                                    .and_then(|l| listener_of(case, l))
                                    .map(|l| l.owner().0)
                            })
                            .unwrap_or(0),
                        holder: None,
                        op: op.to_string(),
                        thread: thread_name(case, t),
                        message: format!(
                            "{op} did not return {:?} after Close (running for {:?})",
                            bound,
                            started.elapsed()
                        ),
                        evidence: None,
                        trace: case.ledger.trace(
                            case.ledger.event_count().saturating_sub(1),
                            &case.thread_names,
                        ),
                    },
                );
            }
        }
    }
    hung
}

/// Whether some connection's current deadline is still ahead, and due
/// within `within`.
fn deadline_pending(case: &Case, within: Duration) -> bool {
    let now = Instant::now();
    case.conns.iter().any(|c| {
        let d = c.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        d.iter().any(|dir| {
            dir.last()
                .and_then(|d| d.at)
                .is_some_and(|at| at > now && at <= now + within)
        })
    })
}

/// Close every listener and connection the case's slots hold now.
fn close_all(case: &Case) {
    for l in case.listeners() {
        let x = l.listener.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(x) = x {
            l.closed.store(true, Ordering::Release);
            let _ = x.close();
        }
    }
    for c in &case.conns {
        let x = c.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(x) = x {
            c.closed.store(true, Ordering::Release);
            let _ = x.close();
        }
    }
}

/// Check what the peers received, then close them.
fn teardown_peers(case: &Case) {
    for (i, slot) in case.conns.iter().enumerate() {
        let peer = slot.peer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = peer {
            check_drained(case, i, &p);
        }
    }
}

/// The case's seed, from the run's seed, the scenario and the case index.
pub fn case_seed(run_seed: u64, scenario: &str, case: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in scenario.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    Rng::new(run_seed ^ h ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}
