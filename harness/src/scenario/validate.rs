//! The semantic rules of the scenario format.

use std::collections::HashSet;
use std::fmt;

use super::{Op, Scenario};

/// Bounds the validator enforces. They keep a single case small enough to
/// run thousands of times, and a bad file from asking for absurd resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_name_len: usize,
    pub max_description_len: usize,
    pub max_threads: usize,
    pub max_ops_per_thread: usize,
    pub max_ops_total: usize,
    pub max_listeners: usize,
    /// Bound on `connections + slots`.
    pub max_conns: usize,
    /// Bound on `read`/`peer_write` sizes.
    pub max_stream_read: usize,
    /// Bound on `write` sizes (large writes fill the send buffer).
    pub max_stream_write: usize,
    /// Bound on datagram sizes (`read_from`, `write_to`, `peer_write` on a
    /// datagram transport).
    pub max_datagram: usize,
    pub max_open: usize,
    pub max_sleep_ms: u64,
    /// Bound on `|in_ms|` of `set_deadline`.
    pub max_deadline_ms: i64,
    pub max_schedule_len: usize,
}

/// The limits in force.
pub const LIMITS: Limits = Limits {
    max_name_len: 64,
    max_description_len: 300,
    max_threads: 4,
    max_ops_per_thread: 256,
    max_ops_total: 1024,
    max_listeners: 8,
    max_conns: 256,
    max_stream_read: 1 << 20,
    max_stream_write: 16 << 20,
    max_datagram: 65507,
    max_open: 256,
    max_sleep_ms: 10_000,
    max_deadline_ms: 60_000,
    max_schedule_len: 100_000,
};

/// One broken rule: where (a JSON pointer into the file) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// JSON pointer of the offending value, e.g. `/threads/1/ops/2/conn`.
    pub pointer: String,
    /// One line, naming the thread and op position when it is about an op.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

impl std::error::Error for Invalid {}

struct Checker<'a> {
    s: &'a Scenario,
    errors: Vec<Invalid>,
}

impl Checker<'_> {
    fn err(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Invalid {
            pointer: pointer.into(),
            message: message.into(),
        });
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn one_line_text(s: &str) -> bool {
    !s.trim().is_empty() && !s.contains(['\n', '\r'])
}

pub(super) fn validate(s: &Scenario) -> Result<(), Vec<Invalid>> {
    let mut c = Checker {
        s,
        errors: Vec::new(),
    };
    check_top(&mut c);
    check_threads(&mut c);
    check_slots_filled(&mut c);
    check_schedule(&mut c);
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors)
    }
}

fn check_top(c: &mut Checker<'_>) {
    let s = c.s;
    let l = LIMITS;
    if !is_identifier(&s.name) || s.name.len() > l.max_name_len {
        c.err(
            "/name",
            format!(
                "name {:?} must be 1 to {} characters of a-z, 0-9, '_' and '-'",
                s.name, l.max_name_len
            ),
        );
    }
    if !one_line_text(&s.description) || s.description.len() > l.max_description_len {
        c.err(
            "/description",
            format!(
                "description must be one non-empty line of at most {} characters",
                l.max_description_len
            ),
        );
    }
    if let Some(origin) = &s.origin {
        if !one_line_text(origin) {
            c.err(
                "/origin",
                "origin must be one non-empty line (or be left out)",
            );
        }
    }
    if let Some(expect) = &s.expect {
        if expect.trim().is_empty() {
            c.err("/expect", "expect must not be empty (or be left out)");
        }
    }
    if s.listeners > l.max_listeners {
        c.err(
            "/listeners",
            format!("listeners is {}, at most {}", s.listeners, l.max_listeners),
        );
    }
    if s.transport.is_datagram() && s.listeners > 0 {
        c.err(
            "/listeners",
            format!(
                "transport {} has no listeners; listeners must be 0",
                s.transport
            ),
        );
    }
    if s.transport.is_datagram() && s.slots > 0 {
        c.err(
            "/slots",
            format!(
                "transport {} cannot fill slots (no dial or accept); slots must be 0",
                s.transport
            ),
        );
    }
    if s.conn_count() > l.max_conns {
        c.err(
            "/connections",
            format!(
                "connections + slots is {}, at most {}",
                s.conn_count(),
                l.max_conns
            ),
        );
    }
    if s.listeners == 0 && s.conn_count() == 0 {
        c.err(
            "/connections",
            "the scenario has no socket under test: give it listeners or connections",
        );
    }
    if s.threads.is_empty() || s.threads.len() > l.max_threads {
        c.err(
            "/threads",
            format!(
                "{} threads; a scenario has 1 to {}",
                s.threads.len(),
                l.max_threads
            ),
        );
    }
    if s.op_count() > l.max_ops_total {
        c.err(
            "/threads",
            format!("{} ops in all; at most {}", s.op_count(), l.max_ops_total),
        );
    }
}

fn check_threads(c: &mut Checker<'_>) {
    let s = c.s;
    let mut names = HashSet::new();
    for (t, thread) in s.threads.iter().enumerate() {
        let tp = format!("/threads/{t}");
        if !is_identifier(&thread.name) || thread.name.len() > 32 {
            c.err(
                format!("{tp}/name"),
                format!(
                    "thread {t}: name {:?} must be 1 to 32 characters of a-z, 0-9, '_' and '-'",
                    thread.name
                ),
            );
        } else if !names.insert(thread.name.as_str()) {
            c.err(
                format!("{tp}/name"),
                format!(
                    "thread {t}: name {:?} is used by another thread",
                    thread.name
                ),
            );
        }
        if thread.ops.is_empty() || thread.ops.len() > LIMITS.max_ops_per_thread {
            c.err(
                format!("{tp}/ops"),
                format!(
                    "thread {t} ({:?}) has {} ops; a thread has 1 to {}",
                    thread.name,
                    thread.ops.len(),
                    LIMITS.max_ops_per_thread
                ),
            );
        }
        // Listener state as this thread's own ops leave it: for `rebind`.
        let mut closed_here: HashSet<usize> = HashSet::new();
        for (i, op) in thread.ops.iter().enumerate() {
            let at = OpAt {
                pointer: format!("{tp}/ops/{i}"),
                label: format!("thread {t} ({:?}) op {i} ({})", thread.name, op.name()),
            };
            check_op(c, &at, op, &mut closed_here);
        }
    }
}

struct OpAt {
    pointer: String,
    label: String,
}

fn check_op(c: &mut Checker<'_>, at: &OpAt, op: &Op, closed_here: &mut HashSet<usize>) {
    let s = c.s;
    let l = LIMITS;
    let transport = s.transport;
    if op.is_datagram_only() && !transport.is_datagram() {
        c.err(
            format!("{}/op", at.pointer),
            format!(
                "{}: {} needs a datagram transport (udp4, udp6, unixgram), this scenario is {transport}",
                at.label,
                op.name()
            ),
        );
        return;
    }
    if op.is_stream_only() && !transport.is_stream() {
        c.err(
            format!("{}/op", at.pointer),
            format!(
                "{}: {} needs a stream transport (tcp4, tcp6, unix), this scenario is {transport}",
                at.label,
                op.name()
            ),
        );
        return;
    }
    if let Some(listener) = op.listener() {
        if listener >= s.listeners {
            let have = match s.listeners {
                0 => "the scenario has no listeners".to_owned(),
                n => format!("valid: 0..={}", n - 1),
            };
            c.err(
                format!("{}/listener", at.pointer),
                format!("{}: listener {listener} out of range ({have})", at.label),
            );
        }
    }
    if let Some(conn) = op.conn() {
        if conn >= s.conn_count() {
            let have = match s.conn_count() {
                0 => "the scenario has no connections or slots".to_owned(),
                n => format!("valid: 0..={}", n - 1),
            };
            c.err(
                format!("{}/conn", at.pointer),
                format!("{}: conn {conn} out of range ({have})", at.label),
            );
            return;
        }
    }
    match *op {
        Op::Dial { conn, .. } | Op::Accept { conn, .. } if !s.is_slot(conn) => {
            c.err(
                format!("{}/conn", at.pointer),
                format!(
                    "{}: conn {conn} is a pre-established connection; {} fills a slot (valid: {}..={})",
                    at.label,
                    op.name(),
                    s.connections,
                    s.conn_count().saturating_sub(1)
                ),
            );
        }
        Op::PeerWrite { conn, .. } | Op::PeerRead { conn, .. } | Op::PeerClose { conn }
            if conn >= s.connections =>
        {
            let have = match s.connections {
                0 => "the scenario has no pre-established connections".to_owned(),
                n => format!("valid: 0..={}", n - 1),
            };
            c.err(
                format!("{}/conn", at.pointer),
                format!(
                    "{}: conn {conn} is a slot; the harness owns a peer end only for pre-established connections ({have})",
                    at.label
                ),
            );
        }
        _ => {}
    }
    let (size, max) = match *op {
        Op::Read { bytes, .. } => (Some(bytes), l.max_stream_read),
        Op::Write { bytes, .. } if transport.has_records() => (Some(bytes), l.max_datagram),
        Op::Write { bytes, .. } => (Some(bytes), l.max_stream_write),
        Op::ReadFrom { bytes, .. } | Op::WriteTo { bytes, .. } => (Some(bytes), l.max_datagram),
        Op::PeerWrite { bytes, .. } if transport.has_records() => (Some(bytes), l.max_datagram),
        Op::PeerWrite { bytes, .. } => (Some(bytes), l.max_stream_read),
        // As much as one write may send: enough to drain it whole.
        Op::PeerRead { bytes, .. } => (Some(bytes), l.max_stream_write),
        _ => (None, 0),
    };
    if let Some(bytes) = size {
        if bytes == 0 || bytes > max {
            c.err(
                format!("{}/bytes", at.pointer),
                format!("{}: bytes is {bytes}, must be 1..={max}", at.label),
            );
        }
    }
    match *op {
        Op::Open { count } if count == 0 || count > l.max_open => c.err(
            format!("{}/count", at.pointer),
            format!("{}: count is {count}, must be 1..={}", at.label, l.max_open),
        ),
        Op::Sleep { ms } if ms > l.max_sleep_ms => c.err(
            format!("{}/ms", at.pointer),
            format!("{}: ms is {ms}, at most {}", at.label, l.max_sleep_ms),
        ),
        Op::SetDeadline {
            in_ms: Some(ms), ..
        } if ms.unsigned_abs() > l.max_deadline_ms.unsigned_abs() => c.err(
            format!("{}/in_ms", at.pointer),
            format!(
                "{}: in_ms is {ms}, must be within -{m}..={m} (or null to clear)",
                at.label,
                m = l.max_deadline_ms
            ),
        ),
        Op::CloseListener { listener } => {
            closed_here.insert(listener);
        }
        Op::Rebind { listener } => {
            let follows_close = closed_here.remove(&listener);
            if !follows_close {
                c.err(
                    format!("{}/listener", at.pointer),
                    format!(
                        "{}: rebind of listener {listener} must follow a close_listener of it in the same thread",
                        at.label
                    ),
                );
            }
        }
        _ => {}
    }
}

/// Every slot must be filled by some `dial` or `accept`, else ops on it can
/// only ever be skipped.
fn check_slots_filled(c: &mut Checker<'_>) {
    let s = c.s;
    if s.transport.is_datagram() {
        return;
    }
    let filled: HashSet<usize> = s
        .threads
        .iter()
        .flat_map(|t| t.ops.iter())
        .filter_map(|op| match *op {
            Op::Dial { conn, .. } | Op::Accept { conn, .. } => Some(conn),
            _ => None,
        })
        .collect();
    for slot in s.connections..s.conn_count() {
        if !filled.contains(&slot) {
            c.err(
                "/slots",
                format!("slot {slot} is never filled by a dial or accept op"),
            );
        }
    }
}

fn check_schedule(c: &mut Checker<'_>) {
    let s = c.s;
    let Some(schedule) = &s.schedule else { return };
    if schedule.len() > LIMITS.max_schedule_len {
        c.err(
            "/schedule",
            format!(
                "schedule has {} entries, at most {}",
                schedule.len(),
                LIMITS.max_schedule_len
            ),
        );
    }
    if let Some((i, &t)) = schedule
        .iter()
        .enumerate()
        .find(|(_, &t)| t > s.threads.len())
    {
        c.err(
            format!("/schedule/{i}"),
            format!(
                "schedule entry {i} names thread {t}; the scenario has threads 0..={} and {} is the teardown closer",
                s.threads.len().saturating_sub(1),
                s.threads.len()
            ),
        );
    }
}
