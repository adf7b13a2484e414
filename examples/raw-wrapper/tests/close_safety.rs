//! `harness::check` on the wrapper of this crate: the adapter (what a user
//! writes once), then one call per test.

use harness::report::ViolationKind;
use harness::scenario::Direction;
use harness::target::{Addr, Capabilities, Conn, Listener, Target};
use raw_wrapper::{is_closed, RawSocket};
use std::io;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::time::Instant;

// ---- The adapter ----------------------------------------------------------

struct RawTarget {
    guarded: bool,
}
/// The socket, and its address if it is a datagram socket.
struct RawConn(RawSocket, Option<SocketAddr>);
struct RawListener(RawSocket, Addr, bool);

impl Conn for RawConn {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn set_deadline(&self, _dir: Direction, _at: Option<Instant>) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into()) // declared in capabilities()
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        Ok(self.1)
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        is_closed(e)
    }
}

impl Listener for RawListener {
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(RawConn(
            RawSocket::new(self.0.accept()?, self.2),
            None,
        )))
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn local_addr(&self) -> io::Result<Addr> {
        Ok(self.1.clone())
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        is_closed(e)
    }
}

impl Target for RawTarget {
    fn name(&self) -> String {
        format!("custom:raw-{}", if self.guarded { "fixed" } else { "racy" })
    }
    /// TCP and UDP over IPv4 and IPv6; no deadlines, no Unix sockets.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            deadlines: false,
            unix_stream: false,
            unix_datagram: false,
            unix_seqpacket: false,
            ..Capabilities::ALL
        }
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        let Addr::Inet(a) = addr else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let l = std::net::TcpListener::bind(a)?;
        let at = Addr::Inet(l.local_addr()?);
        let sock = RawSocket::new(l.into_raw_fd(), self.guarded);
        Ok(Box::new(RawListener(sock, at, self.guarded)))
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let Addr::Inet(a) = addr else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let s = std::net::TcpStream::connect(a)?;
        let sock = RawSocket::new(s.into_raw_fd(), self.guarded);
        Ok(Box::new(RawConn(sock, None)))
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        let s = std::net::UdpSocket::bind(local)?;
        s.connect(peer)?;
        let at = s.local_addr()?;
        let sock = RawSocket::new(s.into_raw_fd(), self.guarded);
        Ok(Box::new(RawConn(sock, Some(at))))
    }
}

// ---- The checks -----------------------------------------------------------

/// The fixed twin: every shipped scenario it can run and generated cases,
/// in both modes, in worker processes.
#[test]
fn fixed_wrapper_is_close_safe() {
    harness::check(RawTarget { guarded: true })
        .cases(40)
        .generated(100)
        .run();
}

/// The racy one fails with `fd_reuse` (on the scenario where another socket
/// takes the freed number; over every scenario it fails first with
/// `close_in_flight`), and the line the failure prints replays it. (A real test would be `harness::check(..).run()` and fail;
/// this one keeps its regression in a temporary directory so the example
/// stays green.)
#[test]
fn racy_wrapper_is_caught_with_fd_reuse() {
    let regressions = tempfile::tempdir().unwrap();
    let failure = harness::check(RawTarget { guarded: false })
        .only(&["close_with_fd_churn"])
        .cases(300)
        .regressions(regressions.path())
        .try_run()
        .unwrap_err();
    assert!(failure.kinds.contains(&ViolationKind::FdReuse), "{failure}");
    let saved = failure.saved.as_ref().expect("the minimal case is saved");
    assert!(
        failure.replay.starts_with("HARNESS_REPLAY=")
            && failure
                .replay
                .contains("racy_wrapper_is_caught_with_fd_reuse"),
        "{failure}"
    );
    assert!(failure.message.contains(&failure.replay), "{failure}");
    // What that line does: replay the saved case, on its schedule.
    let replayed = harness::replay(RawTarget { guarded: false }, saved);
    assert!(replayed.reproduced, "{failure}");
}
