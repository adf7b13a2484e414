//! The late-deadline rule judges an op by the deadlines set on the socket
//! it ran on, not on its slot. In the case below (found by a 4-job
//! generated run against fdmutex, in about 1 of 40,000 cases) a dial (t0)
//! and an accept (t1) both fill slot 1; t0's read parks on the dialled
//! socket, t2 sets a 1 ms read deadline on slot 1 after the accept has put
//! the accepted socket there, and reads from that one. t0's read has no
//! deadline at all and rightly waits until teardown's Close; the rule used
//! to take t2's deadline for it and report a `late_deadline` in 4 of 10
//! free-mode replays.

use harness::exec::{self, CaseConfig};
use harness::report::{Mode, ViolationKind};
use harness::scenario;
use harness::target::{NetfdTarget, Target};
use netfd::Variant;
use std::sync::Arc;
use std::time::Duration;

const CASE: &str = r#"{
  "name": "deadline_on_a_refilled_slot",
  "description": "A dial and an accept fill one slot: the read parked on the dialled socket gets no deadline from a SetDeadline made on the accepted one.",
  "transport": "tcp4",
  "listeners": 1,
  "connections": 1,
  "slots": 1,
  "threads": [
    {
      "name": "t0",
      "ops": [
        {
          "op": "dial",
          "listener": 0,
          "conn": 1
        },
        {
          "op": "read",
          "conn": 1,
          "bytes": 4
        }
      ]
    },
    {
      "name": "t1",
      "ops": [
        {
          "op": "accept",
          "listener": 0,
          "conn": 1
        },
        {
          "op": "read",
          "conn": 0,
          "bytes": 56
        },
        {
          "op": "yield"
        },
        {
          "op": "peer_write",
          "conn": 0,
          "bytes": 12
        },
        {
          "op": "peer_write",
          "conn": 0,
          "bytes": 29
        }
      ]
    },
    {
      "name": "t2",
      "ops": [
        {
          "op": "close",
          "conn": 0
        },
        {
          "op": "open",
          "count": 3
        },
        {
          "op": "set_deadline",
          "conn": 1,
          "dir": "read",
          "in_ms": 1
        },
        {
          "op": "read",
          "conn": 1,
          "bytes": 64
        }
      ]
    }
  ],
  "expect": "Every op completes or returns the closed error; no syscall reaches a released or reused number."
}"#;

#[test]
fn a_deadline_set_on_a_slots_new_socket_is_not_the_old_sockets() {
    let s = scenario::parse_str(CASE, "deadline_on_a_refilled_slot.json").expect("the case loads");
    let target: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::FdMutex));
    for mode in [Mode::Free, Mode::Controlled] {
        for i in 0..20 {
            let mut cc = CaseConfig::new(mode, i);
            cc.hang_bound = Duration::from_secs(2);
            let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
            let late: Vec<_> = o
                .found
                .iter()
                .filter(|f| f.kind == ViolationKind::LateDeadline)
                .map(|f| f.message.clone())
                .collect();
            assert!(late.is_empty(), "{mode:?} run {i}: {late:?}");
        }
    }
}
