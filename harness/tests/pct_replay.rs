//! PCT schedules keep replay exact: a failure found under PCT priorities is
//! saved with the decisions it took (the same schedule format as every
//! saved case) and reproduces 100 of 100 replays; a schedule saved before
//! PCT existed loads and runs as before.

use harness::exec::{self, CaseConfig};
use harness::gen::{self, GenConfig};
use harness::report::Mode;
use harness::run;
use harness::scenario;
use harness::target::{NetfdTarget, Target};
use netfd::Variant;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The tests of this file run one at a time: a historical variant closes
/// numbers it no longer owns (naive-close's double close), and in one
/// process such a stray Close can hit another test's sockets.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_pct_failure_replays_100_of_100() {
    let _alone = alone();
    let naive: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::NaiveClose));
    let mut cfg = GenConfig::new(Mode::Controlled, 3, 600);
    cfg.pct = true;
    cfg.jobs = 1;
    cfg.hang_bound = Duration::from_millis(300);
    cfg.max_shrink_time = Duration::from_secs(15);
    cfg.confirm = 2;
    let failure = gen::run_generated(naive.clone(), &cfg, &|_| {})
        .expect("generated run")
        .failure
        .expect("naive-close fails within 600 PCT cases");
    assert!(
        !failure.minimal_outcome.schedule.is_empty(),
        "a PCT case records its decisions"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = run::minimal_scenario(&failure, "naive-close", 3);
    let path =
        run::save_case(dir.path(), &saved, failure.case, &failure.replay_schedule()).expect("save");
    let case = scenario::load_file(&path).expect("load saved case");
    for i in 0..100 {
        let mut cc = CaseConfig::new(Mode::Controlled, i);
        cc.hang_bound = Duration::from_millis(300);
        cc.schedule = case.schedule.clone().unwrap_or_default();
        let o = exec::run_case(naive.clone(), &case, &cc).expect("replay");
        assert!(
            !o.found.is_empty(),
            "replay {i} of the saved PCT case did not fail"
        );
    }
}

#[test]
fn a_schedule_saved_before_pct_loads_and_runs() {
    let _alone = alone();
    // scenarios/close_before_op_starts.json embeds a schedule in the format
    // that predates PCT.
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/close_before_op_starts.json");
    let s = scenario::load_file(&file).expect("loads");
    let schedule = s.schedule.clone().expect("the file embeds a schedule");
    let fdmutex: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::FdMutex));
    let mut cc = CaseConfig::new(Mode::Controlled, 1);
    cc.schedule = schedule.clone();
    let o = exec::run_case(fdmutex, &s, &cc).expect("runs");
    assert!(o.found.is_empty(), "fdmutex is clean: {:?}", o.found);
    // The first decision is the schedule's (thread indices are in range,
    // so the named thread runs first).
    assert_eq!(
        o.schedule.first(),
        schedule.first().map(|t| t % s.threads.len()).as_ref()
    );
}
