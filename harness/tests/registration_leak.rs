//! The `leak` rule's poll-server half: at the end of a case, a socket whose
//! descriptor was released must hold no poll-server registration. fdmutex
//! leaves the poll server before it releases the number (`fd.rs`), so it is
//! clean on the Server path; go2009-closeack (Go's 2009 WaitCloseAck) closes
//! the number in Close and frees its registration only when the socket
//! value drops, so its Close returns with the registration still live.

use harness::exec::{self, CaseConfig};
use harness::report::{Mode, ViolationKind};
use harness::scenario;
use harness::target::{NetfdTarget, Target};
use netfd::{Variant, WaitPath};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn registrations_left(variant: Variant, cases: u64) -> (usize, u64) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/close_parked_read_tcp4.json");
    let s = scenario::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let target: Arc<dyn Target> = Arc::new(NetfdTarget::with_wait(variant, Some(WaitPath::Server)));
    let mut left = 0;
    let mut ran = 0;
    for i in 0..cases {
        let mut cc = CaseConfig::new(Mode::Controlled, i);
        cc.hang_bound = Duration::from_secs(2);
        let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
        if o.hung {
            continue;
        }
        ran += 1;
        left += o
            .found
            .iter()
            .filter(|f| {
                f.kind == ViolationKind::Leak && f.message.contains("poll-server registration")
            })
            .count();
    }
    (left, ran)
}

#[test]
fn fdmutex_leaves_the_poll_server_before_its_close_returns() {
    let (left, ran) = registrations_left(Variant::FdMutex, 40);
    assert_eq!(ran, 40, "every fdmutex case ran to its end");
    assert_eq!(left, 0, "registrations left behind by fdmutex");
}

#[test]
fn a_close_that_keeps_its_registration_is_a_leak() {
    let (left, ran) = registrations_left(Variant::Go2009CloseAck, 10);
    assert!(ran > 0, "no go2009-closeack case ran to its end");
    assert!(
        left > 0,
        "go2009-closeack's live registrations after Close were not reported ({ran} cases)"
    );
}
