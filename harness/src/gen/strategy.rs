//! The strategies: raw cases, and their normalisation into scenarios.
//!
//! A [`RawCase`] is what proptest draws and shrinks; [`normalize`] is the
//! only way from it to a [`GenCase`], and it cannot produce an invalid
//! scenario (see the invariants in the parent module).

use crate::scenario::{Direction, Op, Scenario, ThreadSpec, Transport};
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet};

/// Longest schedule a generated case carries.
pub const MAX_SCHEDULE_LEN: usize = 256;

/// A write this large parks on a full send buffer of a peer that does not
/// read (loopback buffers are a few MiB at most).
const PARKING_WRITE: u32 = 8 << 20;

/// Datagrams stay under the loopback MTU.
const MAX_GEN_DATAGRAM: usize = 1400;

/// Peer writes on a stream stay small: the peer's send buffer never fills.
const MAX_GEN_PEER_WRITE: usize = 64 << 10;

/// A record on a sequenced-packet connection is one write; it must fit
/// the send buffer, so it stays within a datagram's size.
const MAX_GEN_RECORD: usize = 65507;

/// Of the draws of `unix`, the share whose case seed is a multiple of this
/// runs on `unixpacket` (Unix sequenced-packet sockets) instead. Splitting
/// an existing draw, rather than adding a weight to the transport's, keeps
/// every other seed's case what it was.
const UNIXPACKET_ONE_IN: u64 = 3;

/// The share of generated cases (by case seed, bits apart from
/// [`UNIXPACKET_ONE_IN`]'s) whose threads exit when done
/// (`Scenario::threads_exit`): the ops are the draw's as before.
const THREADS_EXIT_ONE_IN: u64 = 8;

/// How large generated cases may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Threads per case, 2 to this (at most 4, the format's limit).
    pub max_threads: usize,
    /// Raw ops per thread, 1 to this.
    pub max_ops_per_thread: usize,
    /// Pre-established connections, 1 to this.
    pub max_connections: usize,
    /// Distinct slots that `dial`/`accept` may fill.
    pub max_slots: usize,
    /// Largest churn batch (`open.count`).
    pub max_open: usize,
    /// Runs (or single choices) in a schedule.
    pub max_schedule_runs: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            max_threads: 4,
            max_ops_per_thread: 5,
            max_connections: 3,
            max_slots: 2,
            max_open: 8,
            max_schedule_runs: 96,
        }
    }
}

impl Bounds {
    fn clamped(self) -> Bounds {
        Bounds {
            max_threads: self.max_threads.clamp(2, 4),
            max_ops_per_thread: self.max_ops_per_thread.clamp(1, 64),
            max_connections: self.max_connections.clamp(1, 16),
            max_slots: self.max_slots.clamp(1, 8),
            max_open: self.max_open.clamp(1, 64),
            max_schedule_runs: self.max_schedule_runs.clamp(1, MAX_SCHEDULE_LEN),
        }
    }
}

/// One generated case: a scenario (without an embedded schedule), the
/// controlled-mode schedule to run it with, and the case's execution seed
/// (payload tags, free-mode jitter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenCase {
    pub scenario: Scenario,
    pub schedule: Vec<usize>,
    pub seed: u64,
}

impl GenCase {
    /// Threads and ops: the size a shrunk case is measured by.
    pub fn size(&self) -> (usize, usize) {
        (self.scenario.threads.len(), self.scenario.op_count())
    }
}

/// A raw op. Index fields are small numbers taken modulo what exists when
/// the case is normalised. Variants are in shrinking order: proptest moves a
/// failing op toward earlier alternatives, the simplest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawOp {
    Yield,
    Sleep {
        ms: u8,
    },
    Read {
        conn: u8,
        bytes: u32,
    },
    Write {
        conn: u8,
        bytes: u32,
    },
    Close {
        conn: u8,
    },
    Open {
        count: u8,
    },
    SetDeadline {
        conn: u8,
        dir: Direction,
        in_ms: Option<i16>,
    },
    PeerWrite {
        conn: u8,
        bytes: u32,
    },
    PeerClose {
        conn: u8,
    },
    Dial {
        listener: u8,
        slot: u8,
    },
    Accept {
        listener: u8,
        slot: u8,
    },
    CloseListener {
        listener: u8,
    },
    Rebind {
        listener: u8,
    },
    /// `close` then, at once, `open`: the released number is handed out
    /// again while a racing op may still hold it.
    CloseThenChurn {
        conn: u8,
        count: u8,
    },
    /// A short (often past) read deadline, then a read: expiry near a close.
    DeadlineThenRead {
        conn: u8,
        in_ms: i16,
    },
}

/// A raw schedule: runs of one thread, or one choice per switch point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawSchedule {
    /// `(thread, length)`: run `thread` for `length` switch points.
    Runs(Vec<(u8, u8)>),
    /// The thread at each switch point.
    Uniform(Vec<u8>),
}

/// What proptest draws and shrinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCase {
    pub transport: Transport,
    pub connections: usize,
    pub threads: Vec<Vec<RawOp>>,
    pub schedule: RawSchedule,
    pub seed: u64,
}

fn transport() -> BoxedStrategy<Transport> {
    prop_oneof![
        6 => Just(Transport::Tcp4),
        2 => Just(Transport::Unix),
        2 => Just(Transport::Udp4),
        1 => Just(Transport::Tcp6),
        1 => Just(Transport::Udp6),
        1 => Just(Transport::Unixgram),
    ]
    .boxed()
}

/// Connection 0 most of the time: threads meet on one socket.
fn conn_index() -> BoxedStrategy<u8> {
    prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)].boxed()
}

fn small_index() -> BoxedStrategy<u8> {
    prop_oneof![4 => Just(0u8), 1 => Just(1u8)].boxed()
}

fn read_bytes() -> BoxedStrategy<u32> {
    prop_oneof![6 => 1u32..=64, 1 => Just(65536u32)].boxed()
}

/// Mostly small writes; sometimes one that parks on a full send buffer.
fn write_bytes() -> BoxedStrategy<u32> {
    prop_oneof![6 => 1u32..=64, 1 => Just(PARKING_WRITE)].boxed()
}

/// Deadlines within a few milliseconds of now (or past, or cleared): they
/// expire while a close is near.
fn deadline_ms() -> BoxedStrategy<Option<i16>> {
    prop_oneof![
        6 => (-1i16..=3).prop_map(Some),
        1 => Just(None),
        1 => (4i16..=30).prop_map(Some),
    ]
    .boxed()
}

fn direction() -> BoxedStrategy<Direction> {
    prop_oneof![
        3 => Just(Direction::Read),
        1 => Just(Direction::Write),
        1 => Just(Direction::Both),
    ]
    .boxed()
}

fn raw_op(b: Bounds) -> BoxedStrategy<RawOp> {
    let open = 1..=b.max_open as u8;
    let slot = 0..b.max_slots as u8;
    prop_oneof![
        1 => Just(RawOp::Yield),
        1 => (0u8..=2).prop_map(|ms| RawOp::Sleep { ms }),
        5 => (conn_index(), read_bytes()).prop_map(|(conn, bytes)| RawOp::Read { conn, bytes }),
        4 => (conn_index(), write_bytes()).prop_map(|(conn, bytes)| RawOp::Write { conn, bytes }),
        4 => conn_index().prop_map(|conn| RawOp::Close { conn }),
        2 => open.clone().prop_map(|count| RawOp::Open { count }),
        2 => (conn_index(), direction(), deadline_ms())
            .prop_map(|(conn, dir, in_ms)| RawOp::SetDeadline { conn, dir, in_ms }),
        2 => (conn_index(), 1u32..=64).prop_map(|(conn, bytes)| RawOp::PeerWrite { conn, bytes }),
        1 => conn_index().prop_map(|conn| RawOp::PeerClose { conn }),
        1 => (small_index(), slot.clone()).prop_map(|(listener, slot)| RawOp::Dial { listener, slot }),
        1 => (small_index(), slot).prop_map(|(listener, slot)| RawOp::Accept { listener, slot }),
        1 => small_index().prop_map(|listener| RawOp::CloseListener { listener }),
        1 => small_index().prop_map(|listener| RawOp::Rebind { listener }),
        3 => (conn_index(), open).prop_map(|(conn, count)| RawOp::CloseThenChurn { conn, count }),
        2 => (conn_index(), -1i16..=3).prop_map(|(conn, in_ms)| RawOp::DeadlineThenRead { conn, in_ms }),
    ]
    .boxed()
}

/// Schedules: entries are taken modulo the case's thread count when
/// normalised. Mostly runs of 1 to 5 switch points of one thread, up to
/// `max_runs` of them: a random walk over the threads that still leaves a
/// thread paused at one sync point while others run a few steps. (Measured
/// against longer runs with few preemptions, this finds the fd-reuse race of
/// `naive-close` several times sooner: see `harness measure first`.)
pub fn schedule_strategy(max_runs: usize) -> BoxedStrategy<RawSchedule> {
    let max_runs = max_runs.clamp(1, MAX_SCHEDULE_LEN);
    prop_oneof![
        3 => vec((0u8..4, 1u8..=5), 1..=max_runs).prop_map(RawSchedule::Runs),
        1 => vec(0u8..4, 1..=MAX_SCHEDULE_LEN).prop_map(RawSchedule::Uniform),
    ]
    .boxed()
}

/// Raw cases within `bounds`.
pub fn raw_case_strategy(bounds: Bounds) -> BoxedStrategy<RawCase> {
    let b = bounds.clamped();
    (
        transport(),
        1..=b.max_connections,
        vec(vec(raw_op(b), 1..=b.max_ops_per_thread), 2..=b.max_threads),
        schedule_strategy(b.max_schedule_runs),
        any::<u64>().no_shrink(),
    )
        .prop_map(
            |(transport, connections, threads, schedule, seed)| RawCase {
                transport: match transport {
                    Transport::Unix if seed % UNIXPACKET_ONE_IN == 0 => Transport::Unixpacket,
                    t => t,
                },
                connections,
                threads,
                schedule,
                seed,
            },
        )
        .boxed()
}

/// What a target may lack ([`crate::target::Capabilities`]): the socket
/// kinds and deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetKinds {
    pub unix_datagram: bool,
    pub unix_seqpacket: bool,
    pub unix_stream: bool,
    pub udp: bool,
    pub ipv6: bool,
    pub deadlines: bool,
}

impl TargetKinds {
    /// Every kind: netfd's.
    pub const ALL: TargetKinds = TargetKinds {
        unix_datagram: true,
        unix_seqpacket: true,
        unix_stream: true,
        udp: true,
        ipv6: true,
        deadlines: true,
    };

    pub fn of(target: &dyn crate::target::Target) -> TargetKinds {
        TargetKinds::from(target.capabilities())
    }
}

impl From<crate::target::Capabilities> for TargetKinds {
    fn from(c: crate::target::Capabilities) -> TargetKinds {
        TargetKinds {
            unix_datagram: c.unix_datagram,
            unix_seqpacket: c.unix_seqpacket,
            unix_stream: c.unix_stream,
            udp: c.udp,
            ipv6: c.ipv6,
            deadlines: c.deadlines,
        }
    }
}

/// The transport a draw of `t` runs on for a target with only `kinds`: the
/// nearest one it has (`unixgram` on `udp4`, `unixpacket` on `unix`, IPv6 on
/// IPv4, and anything else on `tcp4`).
fn transport_for(t: Transport, kinds: TargetKinds) -> Transport {
    let dgram = if kinds.udp {
        Transport::Udp4
    } else {
        Transport::Tcp4
    };
    match t {
        Transport::Unixgram if !kinds.unix_datagram => dgram,
        Transport::Unixpacket if !kinds.unix_seqpacket && kinds.unix_stream => Transport::Unix,
        Transport::Unixpacket if !kinds.unix_seqpacket => Transport::Tcp4,
        Transport::Unix if !kinds.unix_stream => Transport::Tcp4,
        Transport::Udp4 | Transport::Udp6 if !kinds.udp => Transport::Tcp4,
        Transport::Udp6 if !kinds.ipv6 => Transport::Udp4,
        Transport::Tcp6 if !kinds.ipv6 => Transport::Tcp4,
        t => t,
    }
}

/// As [`case_strategy`], for a target with only `kinds`: a draw of a
/// transport it lacks runs on the nearest it has ([`transport_for`]), and
/// for a target without deadlines a `set_deadline` is a `yield` (a deadline
/// then read, the read alone), so every other draw is the one
/// `case_strategy` gives for the same seed and no op it lacks is drawn.
pub fn case_strategy_for(bounds: Bounds, kinds: TargetKinds) -> BoxedStrategy<GenCase> {
    raw_case_strategy(bounds)
        .prop_map(move |mut r| {
            r.transport = transport_for(r.transport, kinds);
            if !kinds.deadlines {
                for op in r.threads.iter_mut().flatten() {
                    *op = match *op {
                        RawOp::SetDeadline { .. } => RawOp::Yield,
                        RawOp::DeadlineThenRead { conn, .. } => RawOp::Read { conn, bytes: 64 },
                        ref o => o.clone(),
                    };
                }
            }
            normalize(&r)
        })
        .boxed()
}

/// Generated cases within `bounds`: raw cases, normalised.
pub fn case_strategy(bounds: Bounds) -> BoxedStrategy<GenCase> {
    raw_case_strategy(bounds)
        .prop_map(|r| normalize(&r))
        .boxed()
}

/// As [`case_strategy`], for a target without Unix datagram sockets
/// ([`crate::target::Target::has_unix_datagram`]): a `unixgram` draw runs on
/// `udp4`, the datagram transport with the same rules, so every other draw
/// is the one `case_strategy` gives for the same seed.
pub fn case_strategy_without_unixgram(bounds: Bounds) -> BoxedStrategy<GenCase> {
    case_strategy_for(
        bounds,
        TargetKinds {
            unix_datagram: false,
            ..TargetKinds::ALL
        },
    )
}

/// Generated scenarios alone (the schedule and seed dropped).
pub fn scenario_strategy(bounds: Bounds) -> BoxedStrategy<Scenario> {
    case_strategy(bounds).prop_map(|c| c.scenario).boxed()
}

/// Index maps from raw ids to dense scenario indices.
struct Layout {
    stream: bool,
    /// Each write is one record (`unixpacket`): sizes stay within one.
    records: bool,
    rebind_ok: bool,
    connections: usize,
    slots: Vec<u8>,
    listeners: Vec<u8>,
}

impl Layout {
    fn of(raw: &RawCase) -> Layout {
        let stream = raw.transport.is_stream();
        let mut slots = BTreeSet::new();
        let mut listeners = BTreeSet::new();
        if stream {
            for op in raw.threads.iter().flatten() {
                match *op {
                    RawOp::Dial { listener, slot } | RawOp::Accept { listener, slot } => {
                        slots.insert(slot);
                        listeners.insert(listener);
                    }
                    RawOp::CloseListener { listener } | RawOp::Rebind { listener } => {
                        listeners.insert(listener);
                    }
                    _ => {}
                }
            }
        }
        Layout {
            stream,
            records: raw.transport == Transport::Unixpacket,
            // A Unix listener's path outlives its socket: listening on it
            // again fails whatever the protocol does.
            rebind_ok: matches!(raw.transport, Transport::Tcp4 | Transport::Tcp6),
            connections: raw.connections.max(1),
            slots: slots.into_iter().collect(),
            listeners: listeners.into_iter().collect(),
        }
    }

    fn total(&self) -> usize {
        self.connections + self.slots.len()
    }

    fn conn(&self, raw: u8) -> usize {
        usize::from(raw) % self.total()
    }

    fn peer_conn(&self, raw: u8) -> usize {
        usize::from(raw) % self.connections
    }

    fn slot(&self, raw: u8) -> usize {
        self.connections + self.slots.iter().position(|&s| s == raw).unwrap_or(0)
    }

    fn listener(&self, raw: u8) -> usize {
        self.listeners.iter().position(|&l| l == raw).unwrap_or(0)
    }

    fn read(&self, conn: usize, bytes: u32) -> Op {
        let bytes = (bytes as usize).max(1);
        if self.stream {
            Op::Read { conn, bytes }
        } else {
            Op::ReadFrom {
                conn,
                bytes: bytes.min(MAX_GEN_DATAGRAM),
            }
        }
    }

    fn write(&self, conn: usize, bytes: u32) -> Op {
        let bytes = (bytes as usize).max(1);
        if self.records {
            Op::Write {
                conn,
                bytes: bytes.min(MAX_GEN_RECORD),
            }
        } else if self.stream {
            Op::Write { conn, bytes }
        } else {
            Op::WriteTo {
                conn,
                bytes: bytes.min(MAX_GEN_DATAGRAM),
            }
        }
    }
}

/// The scenario ops for one thread's raw ops.
fn thread_ops(l: &Layout, raw: &[RawOp]) -> Vec<Op> {
    let mut ops = Vec::with_capacity(raw.len() * 2);
    // Listeners this thread has closed and not yet rebound: `rebind` needs
    // one (see the format's rules).
    let mut closed_here: HashSet<usize> = HashSet::new();
    for op in raw {
        match *op {
            RawOp::Yield => ops.push(Op::Yield {}),
            RawOp::Sleep { ms } => ops.push(Op::Sleep { ms: u64::from(ms) }),
            RawOp::Read { conn, bytes } => ops.push(l.read(l.conn(conn), bytes)),
            RawOp::Write { conn, bytes } => ops.push(l.write(l.conn(conn), bytes)),
            RawOp::Close { conn } => ops.push(Op::Close { conn: l.conn(conn) }),
            RawOp::Open { count } => ops.push(Op::Open {
                count: usize::from(count).max(1),
            }),
            RawOp::SetDeadline { conn, dir, in_ms } => ops.push(Op::SetDeadline {
                conn: l.conn(conn),
                dir,
                in_ms: in_ms.map(i64::from),
            }),
            RawOp::PeerWrite { conn, bytes } => {
                let cap = if l.records {
                    MAX_GEN_PEER_WRITE.min(MAX_GEN_RECORD)
                } else if l.stream {
                    MAX_GEN_PEER_WRITE
                } else {
                    MAX_GEN_DATAGRAM
                };
                ops.push(Op::PeerWrite {
                    conn: l.peer_conn(conn),
                    bytes: (bytes as usize).clamp(1, cap),
                });
            }
            RawOp::PeerClose { conn } => ops.push(Op::PeerClose {
                conn: l.peer_conn(conn),
            }),
            RawOp::Dial { listener, slot } if l.stream => ops.push(Op::Dial {
                listener: l.listener(listener),
                conn: l.slot(slot),
            }),
            RawOp::Accept { listener, slot } if l.stream => ops.push(Op::Accept {
                listener: l.listener(listener),
                conn: l.slot(slot),
            }),
            RawOp::CloseListener { listener } if l.stream => {
                let i = l.listener(listener);
                closed_here.insert(i);
                ops.push(Op::CloseListener { listener: i });
            }
            RawOp::Rebind { listener } if l.stream => {
                let i = l.listener(listener);
                if !closed_here.contains(&i) {
                    ops.push(Op::CloseListener { listener: i });
                }
                if l.rebind_ok {
                    closed_here.remove(&i);
                    ops.push(Op::Rebind { listener: i });
                } else {
                    closed_here.insert(i);
                }
            }
            // Datagram transports have no listeners: the listener ops
            // become the nearest datagram ops.
            RawOp::Dial { slot, .. } => ops.push(l.write(l.conn(slot), 64)),
            RawOp::Accept { slot, .. } => ops.push(l.read(l.conn(slot), 64)),
            RawOp::CloseListener { listener } => ops.push(Op::Close {
                conn: l.conn(listener),
            }),
            RawOp::Rebind { .. } => ops.push(Op::Open { count: 4 }),
            RawOp::CloseThenChurn { conn, count } => {
                ops.push(Op::Close { conn: l.conn(conn) });
                ops.push(Op::Open {
                    count: usize::from(count).max(1),
                });
            }
            RawOp::DeadlineThenRead { conn, in_ms } => {
                let conn = l.conn(conn);
                ops.push(Op::SetDeadline {
                    conn,
                    dir: Direction::Read,
                    in_ms: Some(i64::from(in_ms)),
                });
                ops.push(l.read(conn, 64));
            }
        }
    }
    ops
}

fn expand_schedule(raw: &RawSchedule, threads: usize) -> Vec<usize> {
    let n = threads.max(1);
    let mut out: Vec<usize> = match raw {
        RawSchedule::Runs(runs) => runs
            .iter()
            .flat_map(|&(t, len)| std::iter::repeat_n(usize::from(t) % n, usize::from(len).max(1)))
            .collect(),
        RawSchedule::Uniform(v) => v.iter().map(|&t| usize::from(t) % n).collect(),
    };
    out.truncate(MAX_SCHEDULE_LEN);
    if out.is_empty() {
        // An empty schedule would make the executor draw one from the seed.
        out.push(0);
    }
    out
}

/// The well-formed case a raw case stands for.
pub fn normalize(raw: &RawCase) -> GenCase {
    let l = Layout::of(raw);
    let threads: Vec<ThreadSpec> = raw
        .threads
        .iter()
        .enumerate()
        .map(|(i, ops)| {
            let mut ops = thread_ops(&l, ops);
            if ops.is_empty() {
                ops.push(Op::Yield {});
            }
            ThreadSpec {
                name: format!("t{i}"),
                ops,
            }
        })
        .collect();
    let scenario = Scenario {
        name: "generated".to_owned(),
        description: format!(
            "Generated close race over {}: {} threads, {} ops.",
            raw.transport,
            threads.len(),
            threads.iter().map(|t| t.ops.len()).sum::<usize>()
        ),
        origin: None,
        transport: raw.transport,
        listeners: l.listeners.len(),
        connections: l.connections,
        slots: l.slots.len(),
        schedule: None,
        threads_exit: (raw.seed >> 8) % THREADS_EXIT_ONE_IN == 0,
        alone: false,
        expect: Some(
            "Every op completes or returns the closed error; no syscall reaches a released or reused number."
                .to_owned(),
        ),
        threads,
    };
    let schedule = expand_schedule(&raw.schedule, scenario.threads.len());
    GenCase {
        scenario,
        schedule,
        seed: raw.seed,
    }
}
