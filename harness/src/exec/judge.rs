//! Judging results: bytes must carry their connection's tag, errors must be
//! a result or the closed error, timeouts must not come early; and turning
//! ledger violations into findings.

use super::setup::Peer;
use super::{conn_of, thread_name, Case, DeadlineSet, Found};
use crate::ledger::LedgerViolation;
use crate::report::ViolationKind;
use crate::scenario::{Op, Transport};
use crate::target::{Conn, Listener};
use netfd::probe::OwnerId;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(super) fn ledger_found(case: &Case, vs: Vec<LedgerViolation>) -> Vec<Found> {
    vs.into_iter()
        .map(|v| Found {
            kind: v.kind,
            fd: v.fd,
            owner: v.owner.0,
            holder: v.holder.map(|h| h.0),
            op: v.call.to_string(),
            thread: thread_name(case, v.thread),
            message: v.message,
            evidence: v.evidence,
            trace: case.ledger.trace(v.event, &case.thread_names),
        })
        .collect()
}

pub(super) fn record(case: &Case, f: Found) {
    case.found.lock().unwrap_or_else(|e| e.into_inner()).push(f);
}

pub(super) fn count_check(case: &Case, kind: ViolationKind) {
    let mut c = case.checks.lock().unwrap_or_else(|e| e.into_inner());
    match c.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += 1,
        None => c.push((kind, 1)),
    }
}

pub(super) fn found_here(
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
pub(super) fn check_bytes(
    case: &Case,
    me: usize,
    op: &Op,
    conn: usize,
    owner: OwnerId,
    got: &[u8],
) {
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
pub(super) fn check_drained(case: &Case, conn: usize, peer: &Peer) {
    check_peer_bytes(case, conn, &peer.drain());
}

/// Bytes the peer of `conn` received must all be the tag of data its
/// local end sent.
pub(super) fn check_peer_bytes(case: &Case, conn: usize, got: &[u8]) {
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

/// What an op returns once the peer of `transport`'s socket is gone. A
/// connected Unix datagram socket is disconnected by the kernel at the first
/// send that finds its peer dead (`ECONNREFUSED`); later sends, having no
/// peer, return `ENOTCONN`.
pub(super) fn is_peer_gone(e: &io::Error, transport: Transport) -> bool {
    match e.raw_os_error() {
        Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ECONNREFUSED) => true,
        Some(libc::ENOTCONN) => transport == Transport::Unixgram,
        _ => false,
    }
}

/// An error from an op on `conn`: the closed error, a due timeout, or a
/// peer-gone error after the peer closed are results; anything else is not.
pub(super) fn judge_error(
    case: &Case,
    me: usize,
    op: &Op,
    conn: usize,
    c: &dyn Conn,
    timed: Option<(usize, Instant)>,
    e: &io::Error,
) {
    count_check(case, ViolationKind::BadError);
    let owner = c.owner();
    let slot = &case.conns[conn];
    if c.is_closed_error(e) {
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
    if (slot.peer_closed.load(Ordering::Acquire) || case.scenario.is_slot(conn))
        && is_peer_gone(e, case.scenario.transport)
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

pub(super) fn judge_listener_error(
    case: &Case,
    me: usize,
    op: &Op,
    l: &dyn Listener,
    e: &io::Error,
) {
    count_check(case, ViolationKind::BadError);
    let owner = l.owner();
    if l.is_closed_error(e) {
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

/// Whether the socket with inode `inode` still listens on TCP port `port`
/// (`/proc/net/tcp` and `tcp6`, state LISTEN), or `None` if the kernel's
/// tables cannot be read. A listen on a just-closed listener's port can
/// fail with "address in use" because another socket took the port in
/// between (any socket of this process or another: a client's ephemeral
/// port, a listener bound to port 0); only the old socket still listening
/// shows that Close returned before the release.
pub(super) fn still_listening(port: u16, inode: u64) -> Option<bool> {
    let mut any_table = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        any_table = true;
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && f[9].parse::<u64>().ok() == Some(inode) {
                return Some(true);
            }
        }
    }
    any_table.then_some(false)
}
