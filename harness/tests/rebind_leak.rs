//! The `leak` rule's rebind half: listening again on a listener's port
//! right after this thread's Close of it succeeded must not fail with
//! "address in use" because the old socket still listens. A listener whose
//! Close returns without releasing its number is reported; a port that
//! another socket took in between (here, on purpose, inside Close) is not
//! the target's fault and is not reported: the harness looks in the
//! kernel's TCP table for the old socket's inode still listening.

use harness::exec::{self, CaseConfig};
use harness::report::{Mode, ViolationKind};
use harness::scenario;
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::OwnerId;
use netfd::Variant;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const CASE: &str = r#"{
  "name": "close_then_rebind",
  "description": "A listener is closed and its address listened on again by the same thread.",
  "transport": "tcp4",
  "listeners": 1,
  "threads": [
    { "name": "relistener", "ops": [
      { "op": "close_listener", "listener": 0 },
      { "op": "rebind", "listener": 0 }
    ] }
  ],
  "expect": "The rebind succeeds."
}"#;

#[derive(Clone, Copy)]
enum Fault {
    /// Close answers Ok and keeps the socket listening (until the test
    /// process ends: a deliberate leak).
    CloseKeepsListening,
    /// Close releases the socket, then another socket takes its port.
    PortTakenAfterClose,
}

struct Relisten {
    inner: NetfdTarget,
    fault: Fault,
    /// The sockets that took a closed listener's port, until the case ends.
    thieves: Arc<Mutex<Vec<std::net::TcpListener>>>,
}

struct RelistenListener {
    inner: Box<dyn Listener>,
    fault: Fault,
    thieves: Arc<Mutex<Vec<std::net::TcpListener>>>,
}

impl Listener for RelistenListener {
    fn owner(&self) -> OwnerId {
        self.inner.owner()
    }
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        self.inner.accept()
    }
    fn close(&self) -> io::Result<()> {
        match self.fault {
            Fault::CloseKeepsListening => Ok(()),
            Fault::PortTakenAfterClose => {
                let Addr::Inet(addr) = self.inner.local_addr()? else {
                    return Err(io::ErrorKind::Unsupported.into());
                };
                self.inner.close()?;
                // std sets SO_REUSEADDR too; a second listener on the port
                // makes the harness's rebind fail with "address in use".
                let thief = std::net::TcpListener::bind(addr)?;
                self.thieves.lock().unwrap().push(thief);
                Ok(())
            }
        }
    }
    fn local_addr(&self) -> io::Result<Addr> {
        self.inner.local_addr()
    }
}

impl Target for Relisten {
    fn name(&self) -> String {
        "custom:relisten".into()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(RelistenListener {
            inner: self.inner.listen(addr)?,
            fault: self.fault,
            thieves: self.thieves.clone(),
        }))
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        self.inner.dial(addr)
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        self.inner.bind_datagram(local, peer)
    }
    fn reports_syscalls(&self) -> bool {
        true
    }
}

fn leaks(fault: Fault) -> Vec<String> {
    let s = scenario::parse_str(CASE, "close_then_rebind.json").expect("the case loads");
    let target = Arc::new(Relisten {
        inner: NetfdTarget::new(Variant::FdMutex),
        fault,
        thieves: Arc::new(Mutex::new(Vec::new())),
    });
    let o = exec::run_case(target.clone(), &s, &CaseConfig::new(Mode::Controlled, 1))
        .expect("case set up");
    target.thieves.lock().unwrap().clear();
    o.found
        .iter()
        .filter(|f| f.kind == ViolationKind::Leak && f.message.contains("address in use"))
        .map(|f| f.message.clone())
        .collect()
}

#[test]
fn a_close_that_keeps_listening_fails_the_rebind_and_is_a_leak() {
    let found = leaks(Fault::CloseKeepsListening);
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn a_port_another_socket_took_after_close_is_not_the_targets_leak() {
    let found = leaks(Fault::PortTakenAfterClose);
    assert!(found.is_empty(), "{found:?}");
}
