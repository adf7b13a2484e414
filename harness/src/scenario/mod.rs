//! Scenarios: the JSON description of one close-race shape.
//!
//! A scenario names a transport, how many listeners and connected pairs the
//! harness sets up before the threads start, and for each of 1 to 4 threads
//! the list of operations it performs on the sockets under test. The format
//! is documented completely in `scenarios/README.md`; this module is its
//! single implementation.
//!
//! Loading is strict: unknown fields and unknown ops are rejected, and every
//! error is one line that names the file, the line and the column
//! ([`ScenarioError`]). After the JSON has been decoded,
//! [`Scenario::validate`] checks the semantic rules (indices in range, ops
//! that the transport supports, bounds), and the loader maps each rule
//! violation back to the line and column of the offending value.
//!
//! ```
//! use harness::scenario::{self, Op, Transport};
//!
//! let text = r#"{
//!   "name": "close_parked_read",
//!   "description": "Close races a Read that is parked waiting for data.",
//!   "transport": "tcp4",
//!   "connections": 1,
//!   "threads": [
//!     { "name": "reader", "ops": [ { "op": "read", "conn": 0, "bytes": 64 } ] },
//!     { "name": "closer", "ops": [ { "op": "sleep", "ms": 5 }, { "op": "close", "conn": 0 } ] }
//!   ]
//! }"#;
//! let s = scenario::parse_str(text, "example.json").expect("valid scenario");
//! assert_eq!(s.transport, Transport::Tcp4);
//! assert_eq!(s.threads[1].ops[1], Op::Close { conn: 0 });
//! // Saving produces a file the loader accepts again.
//! let again = scenario::parse_str(&s.to_json_pretty(), "again.json").expect("round trip");
//! assert_eq!(s, again);
//! ```

mod load;
mod span;
mod validate;

use std::fmt;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use load::{load_dir, load_file, load_paths, parse_str, ScenarioError, ScenarioErrorKind};
pub use validate::{Invalid, Limits, LIMITS};

/// One scenario file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Identifier: `[a-z0-9_-]`, at most 64 characters, unique within a run.
    pub name: String,
    /// One sentence: which race this scenario stands for.
    pub description: String,
    /// The public bug it comes from, if any (for example `"Go #10527"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Socket family and type of every socket under test.
    pub transport: Transport,
    /// Number of listeners under test, created before the threads start.
    #[serde(default)]
    pub listeners: usize,
    /// Number of connected pairs set up before the threads start. The local
    /// end (connection index `i`) is the socket under test; the peer end is
    /// owned by the harness (`peer_write`, `peer_close`).
    #[serde(default)]
    pub connections: usize,
    /// Extra connection slots, with indices `connections..connections+slots`,
    /// filled at run time by `dial` or `accept`.
    #[serde(default)]
    pub slots: usize,
    /// The threads (1 to 4), each with its ops in program order.
    pub threads: Vec<ThreadSpec>,
    /// Controlled mode: the index of the thread to run at each switch; the
    /// index one past the last thread is the harness's teardown closer,
    /// which joins the schedule when the case is torn down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Vec<usize>>,
    /// Free text: what a correct implementation does in this scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// The threads run on OS threads of their own that exit when their ops
    /// are done, and are joined before the end-of-case Close, instead of
    /// on the harness's pooled threads, which live on: what a thread's
    /// exit leaves behind (a waker left in a socket's slot that the Close
    /// then signals, a wake-up eventfd not closed) becomes visible.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub threads_exit: bool,
    /// The case runs with no other case of its process in flight, so the
    /// poll server (one per process) sees only its sockets and timers: a
    /// server that fails to wake itself is not woken on time by a
    /// neighbour's events (`exec::alone`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alone: bool,
}

/// The transport of every socket in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// TCP over 127.0.0.1.
    Tcp4,
    /// TCP over ::1.
    Tcp6,
    /// UDP over 127.0.0.1; the pairs are connected datagram sockets.
    Udp4,
    /// UDP over ::1.
    Udp6,
    /// Unix-domain stream sockets.
    Unix,
    /// Unix-domain datagram sockets, each bound to its own path in the
    /// case's private directory and connected to a harness-owned peer bound
    /// beside it. Datagram rules, as UDP's: no listeners, no slots.
    Unixgram,
    /// Unix-domain sequenced-packet sockets (`SOCK_SEQPACKET`, Go's
    /// `unixpacket`): connection-oriented like `unix` (listeners, dial,
    /// accept), with record boundaries, so each write is one record and
    /// must fit the socket's send buffer (at most 65,507 bytes here, as a
    /// datagram).
    Unixpacket,
}

impl Transport {
    /// Every transport, in the order of the documentation.
    pub const ALL: [Transport; 7] = [
        Transport::Tcp4,
        Transport::Tcp6,
        Transport::Udp4,
        Transport::Udp6,
        Transport::Unix,
        Transport::Unixgram,
        Transport::Unixpacket,
    ];

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp4 => "tcp4",
            Transport::Tcp6 => "tcp6",
            Transport::Udp4 => "udp4",
            Transport::Udp6 => "udp6",
            Transport::Unix => "unix",
            Transport::Unixgram => "unixgram",
            Transport::Unixpacket => "unixpacket",
        }
    }

    /// Datagram transports: `read_from`/`write_to`, no listeners.
    pub fn is_datagram(self) -> bool {
        matches!(
            self,
            Transport::Udp4 | Transport::Udp6 | Transport::Unixgram
        )
    }

    /// Unix-domain transports: their sockets live in a private directory.
    pub fn is_unix(self) -> bool {
        matches!(
            self,
            Transport::Unix | Transport::Unixgram | Transport::Unixpacket
        )
    }

    /// Record transports: every write is one record, which must fit a
    /// send buffer (`unixpacket`, and the datagram transports).
    pub fn has_records(self) -> bool {
        self.is_datagram() || self == Transport::Unixpacket
    }

    /// Connection transports: listeners, `dial`, `accept`.
    pub fn is_stream(self) -> bool {
        !self.is_datagram()
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thread of a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadSpec {
    /// Unique within the scenario; shown in reports and traces.
    pub name: String,
    /// The ops, run in order.
    pub ops: Vec<Op>,
}

/// Which deadline `set_deadline` sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The read deadline (Read, ReadFrom).
    Read,
    /// The write deadline (Write, WriteTo).
    Write,
    /// Both deadlines.
    Both,
}

impl Direction {
    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
            Direction::Both => "both",
        }
    }

    /// Whether this sets the read deadline.
    pub fn includes_read(self) -> bool {
        matches!(self, Direction::Read | Direction::Both)
    }

    /// Whether this sets the write deadline.
    pub fn includes_write(self) -> bool {
        matches!(self, Direction::Write | Direction::Both)
    }
}

/// One operation of a thread. In files: `{"op": "<name>", ...fields}`.
///
/// `conn` indexes the connections (`0..connections`, set up by the harness)
/// followed by the slots (`connections..connections+slots`, filled by `dial`
/// and `accept`); `listener` indexes the listeners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Dial listener `listener` with a socket under test; the new connection
    /// fills slot `conn`.
    Dial { listener: usize, conn: usize },
    /// Accept one connection from listener `listener` into slot `conn`.
    Accept { listener: usize, conn: usize },
    /// Read up to `bytes` bytes (stream or connected datagram).
    Read { conn: usize, bytes: usize },
    /// Write `bytes` tagged bytes, all of them (parks while the send buffer
    /// is full).
    Write { conn: usize, bytes: usize },
    /// Receive one datagram of at most `bytes` bytes (datagram transports).
    ReadFrom { conn: usize, bytes: usize },
    /// Send one tagged datagram of `bytes` bytes to the peer (datagram
    /// transports).
    WriteTo { conn: usize, bytes: usize },
    /// Close connection `conn`.
    Close { conn: usize },
    /// Close listener `listener`.
    CloseListener { listener: usize },
    /// Listen again, on the address listener `listener` had, with a fresh
    /// listener under test that takes its index. Must follow a
    /// `close_listener` of the same listener in the same thread. Failing
    /// with "address in use" means Close returned before the descriptor was
    /// released (Go #10527, #21856).
    Rebind { listener: usize },
    /// Set (or clear, with `in_ms: null`) the deadline of `conn`, `in_ms`
    /// milliseconds after the op runs; zero or negative is already past.
    SetDeadline {
        conn: usize,
        dir: Direction,
        #[serde(deserialize_with = "Option::deserialize")]
        in_ms: Option<i64>,
    },
    /// Descriptor churn: open `count` fresh sockets, then close them all, so
    /// that numbers released by a racing close are handed out again.
    Open { count: usize },
    /// Sleep `ms` milliseconds (free mode); a switch point in controlled mode.
    Sleep { ms: u64 },
    /// Give other threads a chance to run: a switch point.
    Yield {},
    /// The harness-owned peer end of connection `conn` sends `bytes` tagged
    /// bytes (stream) or one tagged datagram (datagram transports).
    PeerWrite { conn: usize, bytes: usize },
    /// The harness-owned peer end of connection `conn` takes in what the
    /// local end sent, until it has `bytes` bytes or none has come for the
    /// wake-up tolerance (500 ms): it frees the space a parked write waits
    /// for.
    PeerRead { conn: usize, bytes: usize },
    /// The harness-owned peer end of connection `conn` closes.
    PeerClose { conn: usize },
}

impl Op {
    /// Every op name, in the order of the documentation.
    pub const NAMES: [&'static str; 16] = [
        "dial",
        "accept",
        "read",
        "write",
        "read_from",
        "write_to",
        "close",
        "close_listener",
        "rebind",
        "set_deadline",
        "open",
        "sleep",
        "yield",
        "peer_write",
        "peer_read",
        "peer_close",
    ];

    /// The op's name as written in files.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Dial { .. } => "dial",
            Op::Accept { .. } => "accept",
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::ReadFrom { .. } => "read_from",
            Op::WriteTo { .. } => "write_to",
            Op::Close { .. } => "close",
            Op::CloseListener { .. } => "close_listener",
            Op::Rebind { .. } => "rebind",
            Op::SetDeadline { .. } => "set_deadline",
            Op::Open { .. } => "open",
            Op::Sleep { .. } => "sleep",
            Op::Yield {} => "yield",
            Op::PeerWrite { .. } => "peer_write",
            Op::PeerRead { .. } => "peer_read",
            Op::PeerClose { .. } => "peer_close",
        }
    }

    /// The connection index the op uses, if any.
    pub fn conn(&self) -> Option<usize> {
        match *self {
            Op::Dial { conn, .. }
            | Op::Accept { conn, .. }
            | Op::Read { conn, .. }
            | Op::Write { conn, .. }
            | Op::ReadFrom { conn, .. }
            | Op::WriteTo { conn, .. }
            | Op::Close { conn }
            | Op::SetDeadline { conn, .. }
            | Op::PeerWrite { conn, .. }
            | Op::PeerRead { conn, .. }
            | Op::PeerClose { conn } => Some(conn),
            Op::CloseListener { .. }
            | Op::Rebind { .. }
            | Op::Open { .. }
            | Op::Sleep { .. }
            | Op::Yield {} => None,
        }
    }

    /// The listener index the op uses, if any.
    pub fn listener(&self) -> Option<usize> {
        match *self {
            Op::Dial { listener, .. }
            | Op::Accept { listener, .. }
            | Op::CloseListener { listener }
            | Op::Rebind { listener } => Some(listener),
            _ => None,
        }
    }

    /// Ops that act on a socket under test (as opposed to the harness-owned
    /// peer, churn, or pure scheduling ops).
    pub fn is_socket_op(&self) -> bool {
        !matches!(
            self,
            Op::Open { .. }
                | Op::Sleep { .. }
                | Op::Yield {}
                | Op::PeerWrite { .. }
                | Op::PeerRead { .. }
                | Op::PeerClose { .. }
        )
    }

    /// Ops that only datagram transports support.
    pub fn is_datagram_only(&self) -> bool {
        matches!(self, Op::ReadFrom { .. } | Op::WriteTo { .. })
    }

    /// Ops that only stream transports support.
    pub fn is_stream_only(&self) -> bool {
        matches!(
            self,
            Op::Dial { .. } | Op::Accept { .. } | Op::CloseListener { .. } | Op::Rebind { .. }
        )
    }
}

impl fmt::Display for Op {
    /// Compact form for traces and summaries: `read conn=0 bytes=64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Op::Dial { listener, conn } | Op::Accept { listener, conn } => {
                write!(f, " listener={listener} conn={conn}")
            }
            Op::Read { conn, bytes }
            | Op::Write { conn, bytes }
            | Op::ReadFrom { conn, bytes }
            | Op::WriteTo { conn, bytes }
            | Op::PeerWrite { conn, bytes }
            | Op::PeerRead { conn, bytes } => write!(f, " conn={conn} bytes={bytes}"),
            Op::Close { conn } | Op::PeerClose { conn } => write!(f, " conn={conn}"),
            Op::CloseListener { listener } | Op::Rebind { listener } => {
                write!(f, " listener={listener}")
            }
            Op::SetDeadline { conn, dir, in_ms } => match in_ms {
                Some(ms) => write!(f, " conn={conn} dir={} in_ms={ms}", dir.name()),
                None => write!(f, " conn={conn} dir={} in_ms=null", dir.name()),
            },
            Op::Open { count } => write!(f, " count={count}"),
            Op::Sleep { ms } => write!(f, " ms={ms}"),
            Op::Yield {} => Ok(()),
        }
    }
}

impl Scenario {
    /// Number of connection indices: pre-established connections plus slots.
    pub fn conn_count(&self) -> usize {
        self.connections.saturating_add(self.slots)
    }

    /// Whether `conn` is a slot (filled at run time by `dial`/`accept`).
    pub fn is_slot(&self, conn: usize) -> bool {
        conn >= self.connections && conn < self.conn_count()
    }

    /// Total number of ops over all threads.
    pub fn op_count(&self) -> usize {
        self.threads.iter().map(|t| t.ops.len()).sum()
    }

    /// An upper bound on the descriptors one case of this scenario holds at
    /// once: listeners (and their rebinds), both ends of every connection and
    /// slot, every thread's largest churn batch at the same time, and a
    /// margin for the poll server's own descriptors. Compare it with the
    /// process's descriptor limit before running.
    pub fn descriptors_needed(&self) -> u64 {
        let churn: u64 = self
            .threads
            .iter()
            .map(|t| {
                t.ops
                    .iter()
                    .map(|op| match op {
                        Op::Open { count } => *count as u64,
                        _ => 0,
                    })
                    .max()
                    .unwrap_or(0)
            })
            .sum();
        let listeners = self.listeners as u64 * 2;
        let pairs = self.conn_count() as u64 * 2;
        listeners + pairs + churn + 16
    }

    /// Check the semantic rules of the format (see `scenarios/README.md`).
    /// Each error names the JSON pointer of the offending value and, for an
    /// op, the thread and op position.
    pub fn validate(&self) -> Result<(), Vec<Invalid>> {
        validate::validate(self)
    }

    /// This scenario with `schedule` embedded (controlled mode replays it).
    pub fn with_schedule(mut self, schedule: Vec<usize>) -> Scenario {
        self.schedule = Some(schedule);
        self
    }

    /// Pretty JSON that [`load_file`]/[`parse_str`] accept again, with a
    /// trailing newline.
    pub fn to_json_pretty(&self) -> String {
        // Serializing these plain types cannot fail: every map key is a
        // string and every value is representable in JSON.
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("a Scenario always serializes: {e}"));
        text.push('\n');
        text
    }

    /// Write this scenario to `path` atomically (temporary file in the same
    /// directory, fsync, rename), replacing any existing file. Refuses to
    /// save a scenario that does not validate, so what is saved loads again.
    pub fn save(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        if let Err(errors) = self.validate() {
            let first = errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "invalid scenario".to_owned());
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: refusing to save an invalid scenario: {first}",
                    path.display()
                ),
            ));
        }
        crate::report::atomic::write_file(path, self.to_json_pretty().as_bytes())
    }
}
