//! The loopback ports a case's inet sockets bind.
//!
//! A case must not be reachable from another case. With bind(2) to port 0
//! it is: the kernel may hand the port one case's listener freed a moment
//! ago to the next case's listener (or UDP socket), and a dial or datagram
//! of the first case still on its way to the old port lands in the new
//! case. The new case then reads bytes "from outside this case", a
//! `crosstalk` no target caused (seen in CI: a dial racing the Close of its
//! listener, in `raw_close_listener_vs_accept`).
//!
//! So the harness chooses the ports its cases bind, under two rules:
//! - **Round robin.** Ports are handed out in turn over a range, from a
//!   start drawn per process, so a port comes back to this process only
//!   after every other port of the range was handed out (about 30,000: many
//!   seconds of cases, far longer than any case's stragglers).
//! - **Outside the kernel's ephemeral range**
//!   (`/proc/sys/net/ipv4/ip_local_port_range`). The ports the kernel
//!   chooses (a client's local port, a bind to port 0 by a target or by
//!   another program) never collide with the harness's.
//!
//! A port something else holds is skipped: the bind fails with
//! `AddrInUse` and the next port is tried. Two harness processes at once
//! start at different places in the range and move at similar speeds, so
//! they rarely meet; they are not coordinated. Where the ephemeral range
//! leaves too few ports outside it, binds fall back to port 0.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Ports tried before a bind falls back to port 0.
const ATTEMPTS: u32 = 64;

/// Fewer candidate ports than this and the allocator stands aside: a short
/// round comes back to a port too soon to keep cases apart.
const MIN_RANGE: u32 = 1024;

struct Range {
    first: u32,
    len: u32,
    next: AtomicU32,
}

fn range() -> Option<&'static Range> {
    static RANGE: OnceLock<Option<Range>> = OnceLock::new();
    RANGE
        .get_or_init(|| {
            let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
            let (lo, hi) = text
                .as_deref()
                .and_then(parse_ephemeral)
                .unwrap_or((32768, 60999));
            let (first, len) = outside_ephemeral(lo, hi)?;
            Some(Range {
                first,
                len,
                next: AtomicU32::new(process_start(len)),
            })
        })
        .as_ref()
}

/// `ip_local_port_range`'s two numbers.
fn parse_ephemeral(text: &str) -> Option<(u32, u32)> {
    let mut it = text.split_whitespace().map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi && hi <= 65535 => Some((lo, hi)),
        _ => None,
    }
}

/// The larger of the unprivileged ranges below and above `lo..=hi`, as
/// (first port, count); `None` if it holds fewer than [`MIN_RANGE`].
fn outside_ephemeral(lo: u32, hi: u32) -> Option<(u32, u32)> {
    let below = (1024, lo.saturating_sub(1024));
    let above = (hi + 1, 65535 - hi);
    let best = if below.1 >= above.1 { below } else { above };
    (best.1 >= MIN_RANGE).then_some(best)
}

/// Where this process starts in the range: drawn from the pid and the
/// clock, so processes started together start apart.
fn process_start(len: u32) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = (u64::from(std::process::id()) << 32) ^ u64::from(nanos);
    // splitmix64's finaliser: a well-mixed draw from two correlated inputs.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x % u64::from(len)) as u32
}

/// The next port of this process's round.
fn next_port(r: &Range) -> u16 {
    let k = r.next.fetch_add(1, Ordering::Relaxed) % r.len;
    (r.first + k) as u16
}

/// Run `bind` on an address of `ip` with a port of the round, moving on to
/// the next port while the port is taken; port 0 when the round is not
/// available or every attempt found its port taken. Other errors are
/// `bind`'s own and returned as they are.
pub(super) fn bind_in_turn<T>(
    ip: IpAddr,
    mut bind: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    if let Some(r) = range() {
        for _ in 0..ATTEMPTS {
            match bind(SocketAddr::new(ip, next_port(r))) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                other => return other,
            }
        }
    }
    bind(SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn the_range_is_the_larger_side_of_the_ephemeral_range() {
        assert_eq!(parse_ephemeral("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_ephemeral("60999 32768"), None);
        assert_eq!(parse_ephemeral("x"), None);
        assert_eq!(outside_ephemeral(32768, 60999), Some((1024, 31744)));
        assert_eq!(outside_ephemeral(1024, 20000), Some((20001, 45535)));
        assert_eq!(outside_ephemeral(1024, 65000), None);
    }

    #[test]
    fn ports_come_back_only_after_a_whole_round_and_outside_the_ephemeral_range() {
        let r = Range {
            first: 1024,
            len: 31744,
            next: AtomicU32::new(31740),
        };
        let ports: Vec<u16> = (0..8).map(|_| next_port(&r)).collect();
        assert_eq!(ports, [32764, 32765, 32766, 32767, 1024, 1025, 1026, 1027]);
        let mut seen = std::collections::HashSet::new();
        assert!((0..31744).all(|_| seen.insert(next_port(&r))));
        assert!(!seen.insert(next_port(&r)), "the round wraps");
    }

    #[test]
    fn a_taken_port_is_skipped() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = bind_in_turn(ip, TcpListener::bind).unwrap();
        let taken = first.local_addr().unwrap().port();
        let mut tried = Vec::new();
        let second = bind_in_turn(ip, |a| {
            tried.push(a.port());
            // The first try meets the taken port, as another program's
            // listener would be met.
            if tried.len() == 1 {
                TcpListener::bind(SocketAddr::new(ip, taken))
            } else {
                TcpListener::bind(a)
            }
        })
        .unwrap();
        assert_eq!(tried.len(), 2, "one retry: {tried:?}");
        assert_eq!(second.local_addr().unwrap().port(), tried[1]);
        if range().is_some() {
            let (lo, hi) = parse_ephemeral(
                &std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap(),
            )
            .unwrap();
            assert!(!(lo..=hi).contains(&u32::from(taken)));
        }
    }
}
