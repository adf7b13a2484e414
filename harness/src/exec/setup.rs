//! Setting a case up: the listeners and connected pairs the scenario names,
//! the peer ends the harness owns, and the byte tags that mark every
//! payload with the connection it belongs to.

use super::{ports, runqueue, Case, ListenerSlot, SetupError};
use crate::scenario::{Scenario, Transport};
use crate::target::{Addr, Conn};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The byte every payload of one (connection, direction) is made of. Values
/// are distinct within a case and shifted by the seed across cases, so a
/// byte read on the wrong connection names the connection it came from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tags {
    pub(super) base: u8,
}

impl Tags {
    /// Bytes the peer sends to local end `conn`.
    pub(super) fn sent_to_local(self, conn: usize) -> u8 {
        self.byte(2 * conn)
    }
    /// Bytes local end `conn` sends.
    pub(super) fn sent_by_local(self, conn: usize) -> u8 {
        self.byte(2 * conn + 1)
    }
    fn byte(self, k: usize) -> u8 {
        ((usize::from(self.base) + k) % 255 + 1) as u8
    }
    /// Which (conn, direction) a byte stands for.
    pub(super) fn decode(self, b: u8, conns: usize) -> Option<(usize, bool)> {
        (0..2 * conns)
            .find(|&k| self.byte(k) == b)
            .map(|k| (k / 2, k % 2 == 0))
    }
}

pub(super) enum Peer {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
    Udp(std::net::UdpSocket, SocketAddr),
    /// The peer socket, bound in the case's directory, and the path of the
    /// local end it sends to.
    UnixDatagram(std::os::unix::net::UnixDatagram, std::path::PathBuf),
}

impl Peer {
    pub(super) fn send(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Peer::Tcp(s) => (&*s).write_all(buf),
            Peer::Unix(s) => (&*s).write_all(buf),
            Peer::Udp(s, to) => s.send_to(buf, to).map(drop),
            Peer::UnixDatagram(s, to) => s.send_to(buf, to).map(drop),
        }
    }
    /// Everything the local end sent that is waiting here.
    pub(super) fn drain(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let _ = self.set_nonblocking(true);
        loop {
            let r = match self {
                Peer::Tcp(s) => (&*s).read(&mut buf),
                Peer::Unix(s) => (&*s).read(&mut buf),
                Peer::Udp(s, _) => s.recv(&mut buf),
                Peer::UnixDatagram(s, _) => s.recv(&mut buf),
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
    /// Take in up to `limit` bytes of what the local end sent, blocking
    /// for each; stop early at end of stream, on an error, or when none
    /// came for `idle` of the time that counts: the wall time less how far
    /// `queued` (the case's run-queue clock, runqueue.rs) moved meanwhile.
    /// The bytes, and in the last case when the last of them came (or the
    /// wait began, if none did). A wait whose discount cannot be read, or
    /// that lasts [`runqueue::MOST_STRETCH`] times `idle` of wall time
    /// without reaching `idle` that counts, ends without a stall.
    pub(super) fn take_in(
        &self,
        limit: usize,
        idle: Duration,
        queued: &dyn Fn() -> Option<Duration>,
    ) -> (Vec<u8>, Option<Instant>) {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut last = Instant::now();
        let mut base = queued();
        let _ = self.set_nonblocking(false);
        let _ = self.set_read_timeout(Some(idle));
        let mut stalled = None;
        while out.len() < limit {
            let want = (limit - out.len()).min(buf.len());
            let r = match self {
                Peer::Tcp(s) => (&*s).read(&mut buf[..want]),
                Peer::Unix(s) => (&*s).read(&mut buf[..want]),
                Peer::Udp(s, _) => s.recv(&mut buf[..want]),
                Peer::UnixDatagram(s, _) => s.recv(&mut buf[..want]),
            };
            match r {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    base = queued();
                    last = Instant::now();
                    let _ = self.set_read_timeout(Some(idle));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let wall = last.elapsed();
                    match runqueue::counted(wall, runqueue::moved(base, queued())) {
                        Some(c) if c >= idle => {
                            stalled = Some(last);
                            break;
                        }
                        // Threads waited for a CPU meanwhile: wait on for
                        // the rest of `idle` that counts.
                        Some(c) if wall < idle * runqueue::MOST_STRETCH => {
                            let rest = (idle - c).max(Duration::from_millis(1));
                            let _ = self.set_read_timeout(Some(rest));
                        }
                        _ => break,
                    }
                }
                Err(_) => break,
            }
        }
        let _ = self.set_read_timeout(None);
        (out, stalled)
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Peer::Tcp(s) => s.set_read_timeout(t),
            Peer::Unix(s) => s.set_read_timeout(t),
            Peer::Udp(s, _) => s.set_read_timeout(t),
            Peer::UnixDatagram(s, _) => s.set_read_timeout(t),
        }
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Peer::Tcp(s) => s.set_nonblocking(on),
            Peer::Unix(s) => s.set_nonblocking(on),
            Peer::Udp(s, _) => s.set_nonblocking(on),
            Peer::UnixDatagram(s, _) => s.set_nonblocking(on),
        }
    }
}

pub(super) fn loopback(transport: Transport) -> IpAddr {
    match transport {
        Transport::Tcp6 | Transport::Udp6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

pub(super) fn setup_err(what: &str, e: impl std::fmt::Display) -> SetupError {
    SetupError(format!("case setup: {what}: {e}"))
}

/// How long a case's setup (its listeners and pre-established connections)
/// may take before the target is judged hung in it: generous, as a setup on
/// a loaded machine is slow, and a setup that blocks (a listen or dial that
/// never returns, e.g. a failed connect whose Close waits forever) is a
/// hang of the target however long the bound.
pub(super) fn setup_bound(hang_bound: std::time::Duration) -> std::time::Duration {
    (hang_bound * 10).max(std::time::Duration::from_secs(10))
}

/// Set up `case`'s listeners and connections on a pool thread that `probe`
/// observes (the ledger's "harness" thread), waiting at most `bound`.
/// `Ok(false)` if setup did not return by then: the thread is left behind,
/// as a hung case's threads are, and the caller reports the hang.
pub(super) fn set_up_within(
    case: &Arc<Case>,
    probe: Arc<super::CaseProbe>,
    ip: IpAddr,
    dir: Option<std::path::PathBuf>,
    bound: std::time::Duration,
) -> Result<bool, SetupError> {
    use std::sync::mpsc::{channel, RecvTimeoutError};
    let (tx, rx) = channel();
    let c = case.clone();
    let _running = super::pool::spawn(move || {
        let _guard = netfd::probe::install(probe.clone());
        let _observer = c.observe.then(|| crate::intercept::install(&*probe));
        let dir = dir.as_deref();
        let r = setup_listeners(&c, &c.scenario, ip, dir).and_then(|listeners| {
            let _ = c.listeners.set(listeners);
            setup_connections(&c, &c.scenario, ip, dir)
        });
        let _ = tx.send(r);
    })
    .map_err(|e| setup_err("spawn thread", e))?;
    match rx.recv_timeout(bound) {
        Ok(r) => r.map(|()| true),
        Err(RecvTimeoutError::Timeout) => Ok(false),
        Err(RecvTimeoutError::Disconnected) => {
            Err(SetupError("case setup: the setup thread panicked".into()))
        }
    }
}

pub(super) fn setup_listeners(
    case: &Case,
    scenario: &Scenario,
    ip: IpAddr,
    dir: Option<&std::path::Path>,
) -> Result<Vec<ListenerSlot>, SetupError> {
    (0..scenario.listeners)
        .map(|i| {
            let listen = |addr: Addr| {
                case.target
                    .listen(&addr)
                    .map_err(|e| setup_err(&format!("listen on {addr}"), e))
            };
            let l = match dir {
                Some(d) if scenario.transport == Transport::Unixpacket => {
                    listen(Addr::UnixPacket(d.join(format!("l{i}.sock"))))?
                }
                Some(d) => listen(Addr::Unix(d.join(format!("l{i}.sock"))))?,
                None => ports::bind_in_turn(ip, |a| case.target.listen(&Addr::Inet(a)))
                    .map_err(|e| setup_err(&format!("listen on {ip}"), e))?,
            };
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

pub(super) fn setup_connections(
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
            let helper = ports::bind_in_turn(ip, std::net::TcpListener::bind)
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
        Transport::Unixpacket => {
            let path = dir
                .ok_or_else(|| SetupError("no temp dir".into()))?
                .join("peer.sock");
            let helper = seqpacket_listener(&path).map_err(|e| setup_err("helper listener", e))?;
            for i in 0..scenario.connections {
                let conn = case
                    .target
                    .dial(&Addr::UnixPacket(path.clone()))
                    .map_err(|e| setup_err("dial", e))?;
                let (peer, _) = helper.accept().map_err(|e| setup_err("accept", e))?;
                fill(case, i, conn, Peer::Unix(seqpacket_peer(peer)));
            }
        }
        Transport::Udp4 | Transport::Udp6 => {
            for i in 0..scenario.connections {
                let peer = ports::bind_in_turn(ip, std::net::UdpSocket::bind)
                    .map_err(|e| setup_err("peer socket", e))?;
                let peer_addr = peer
                    .local_addr()
                    .map_err(|e| setup_err("peer address", e))?;
                let conn = ports::bind_in_turn(ip, |a| case.target.bind_datagram(a, peer_addr))
                    .map_err(|e| setup_err("bind datagram", e))?;
                let local = conn.local_addr().ok().flatten().ok_or_else(|| {
                    SetupError("case setup: datagram socket has no address".into())
                })?;
                fill(case, i, conn, Peer::Udp(peer, local));
            }
        }
        Transport::Unixgram => {
            let dir = dir.ok_or_else(|| SetupError("no temp dir".into()))?;
            for i in 0..scenario.connections {
                // The peer is bound first: the local end connects to it.
                let peer_path = dir.join(format!("p{i}.sock"));
                let local_path = dir.join(format!("g{i}.sock"));
                let peer = std::os::unix::net::UnixDatagram::bind(&peer_path)
                    .map_err(|e| setup_err("peer socket", e))?;
                // A Unix datagram send blocks on a full receive queue (UDP
                // drops): a `peer_write` to a local end that does not read
                // must fail at once instead of stalling the harness.
                peer.set_nonblocking(true)
                    .map_err(|e| setup_err("peer socket", e))?;
                let conn = case
                    .target
                    .bind_unix_datagram(&local_path, &peer_path)
                    .map_err(|e| setup_err("bind unix datagram", e))?;
                fill(case, i, conn, Peer::UnixDatagram(peer, local_path));
            }
        }
    }
    Ok(())
}

/// The harness's listening end of the `unixpacket` transport.
fn seqpacket_listener(path: &std::path::Path) -> io::Result<socket2::Socket> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
    s.bind(&SockAddr::unix(path)?)?;
    s.listen(128)?;
    Ok(s)
}

/// A harness-owned peer end of a `unixpacket` connection, as a
/// `UnixStream`: read(2) and write(2) on a sequenced-packet socket move one
/// record each, so the stream peer's code (send, drain, drop) serves as is.
fn seqpacket_peer(s: socket2::Socket) -> std::os::unix::net::UnixStream {
    std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(s))
}

pub(super) fn fill(case: &Case, i: usize, conn: Box<dyn Conn>, peer: Peer) {
    let conn: Arc<dyn Conn> = Arc::from(conn);
    *case.conns[i]
        .peered_socket
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&conn));
    *case.conns[i].conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
    *case.conns[i].peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
}
