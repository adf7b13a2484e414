//! Cases run at once give the verdicts they give one after another.
//!
//! - The scenario files and generated cases against `fdmutex`, controlled,
//!   one seed: the sequential run (`jobs` 1) and the parallel one (`jobs`
//!   4) count the same cases per scenario, in the same order, and both are
//!   clean: nothing another case does beside a case makes it fail.
//! - A historical variant is caught by both.
//! - A saved failing case (shrunk from a generated naive-close failure)
//!   reproduces its violation in at least 90 of 100 replays alone and 32 of
//!   40 while other cases run beside it (see the test for why not all).

use harness::exec::{self, parallel, CaseConfig};
use harness::gen::{self, GenConfig};
use harness::report::{Mode, Report};
use harness::run::{self, GenPlan, RunConfig, Source};
use harness::scenario::{self, Scenario};
use harness::target::{NetfdTarget, Target};
use netfd::Variant;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The tests of this file run one at a time: a historical variant's stale
/// calls land on whatever socket got the number, also another test's (that
/// is the bug it is caught for), so a clean run must not share the process
/// with one.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn sources() -> Vec<Source> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    scenario::load_dir(&dir)
        .expect("scenarios load")
        .into_iter()
        .map(|(p, s)| Source {
            scenario: s,
            file: p.display().to_string(),
        })
        .collect()
}

fn run_with(variant: Variant, jobs: usize, cases: u64, generated: u64) -> Report {
    let cfg = RunConfig {
        mode: Mode::Controlled,
        seed: 4242,
        cases,
        // Generous: the counts, not the clock, end these runs.
        budget: Duration::from_secs(600),
        case_dir: None,
        hang_bound: Duration::from_secs(1),
        jobs,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let target: Arc<dyn Target> = Arc::new(NetfdTarget::new(variant));
    let plan = GenPlan::new(generated);
    run::run_with_generated(target, &sources(), &cfg, Some(&plan), &|_, _| {})
        .expect("run")
        .0
}

#[test]
fn fdmutex_parallel_and_sequential_runs_agree() {
    let _alone = alone();
    let seq = run_with(Variant::FdMutex, 1, 6, 120);
    let par = run_with(Variant::FdMutex, 4, 6, 120);
    let shape = |r: &Report| -> Vec<(String, u64, bool)> {
        r.scenarios
            .iter()
            .map(|s| (s.name.clone(), s.cases, s.violations.is_empty()))
            .collect()
    };
    let found = |r: &Report| -> Vec<String> {
        r.violations()
            .map(|(s, v)| format!("{}: {} {}", s.name, v.kind, v.message))
            .collect()
    };
    assert_eq!(
        shape(&seq),
        shape(&par),
        "same cases, same verdicts; sequential found {:?}, parallel found {:?}",
        found(&seq),
        found(&par)
    );
    for r in [&seq, &par] {
        assert!(
            !run::caught(r),
            "fdmutex must be clean: {:?}",
            run::kinds_found(r)
        );
    }
    // Every case ran: 6 per file and 120 generated.
    let total: u64 = par.scenarios.iter().map(|s| s.cases).sum();
    assert_eq!(total, 6 * (par.scenarios.len() as u64 - 1) + 120);
}

#[test]
fn historical_variant_caught_in_parallel_as_sequentially() {
    let _alone = alone();
    for jobs in [1, 4] {
        let r = run_with(Variant::NaiveClose, jobs, 4, 40);
        assert!(run::caught(&r), "naive-close escaped with jobs={jobs}");
    }
}

/// What a replay must repeat: that it fails (the decisions it took are
/// shown when it does not).
fn interleaving(o: &exec::CaseOutcome) -> (bool, Vec<usize>) {
    (!o.found.is_empty(), o.schedule.clone())
}

#[test]
fn saved_case_replays_alone_and_beside_others() {
    let _alone = alone();
    // A minimal failing case with its schedule, as `harness run` saves it.
    let naive: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::NaiveClose));
    let mut cfg = GenConfig::new(Mode::Controlled, 7, 400);
    cfg.hang_bound = Duration::from_millis(300);
    cfg.max_shrink_time = Duration::from_secs(15);
    cfg.confirm = 2;
    let failure = gen::run_generated(naive.clone(), &cfg, &|_| {})
        .expect("generated run")
        .failure
        .expect("naive-close fails within 400 generated cases");
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = run::minimal_scenario(&failure, "naive-close", 7);
    let path =
        run::save_case(dir.path(), &saved, failure.case, &failure.replay_schedule()).expect("save");
    let case: Scenario = scenario::load_file(&path).expect("load saved case");
    let replay = |i: u64| {
        let mut cc = CaseConfig::new(Mode::Controlled, i);
        cc.hang_bound = Duration::from_millis(300);
        cc.schedule = case.schedule.clone().unwrap_or_default();
        exec::run_case(naive.clone(), &case, &cc)
    };
    // Not 100 of 100: a minimal naive-close case whose violation the
    // end-of-case Close provokes races that Close outside the schedule
    // (docs/detection.md, "Replay and shrinking"); seen missing 1–2
    // replays in 100, and 11 in 100 once under the whole suite's load
    // (2026-12-03: the case's 0 and 1 ms deadlines expire at other points
    // of the schedule on a busy CPU). The bound is generous so it measures replay, not luck.
    let alone: Vec<_> = (0..100)
        .map(|i| interleaving(&replay(i).expect("replay alone")))
        .collect();
    let expected = alone.iter().find(|got| got.0).cloned().unwrap_or_default();
    let missed_alone = alone.iter().filter(|got| !got.0).count();
    eprintln!(
        "the saved case reproduced in {} of 100 replays alone",
        100 - missed_alone
    );
    assert!(
        missed_alone <= 20,
        "{missed_alone} of 100 replays alone did not fail, e.g. {:?}; a failing one: {expected:?}",
        alone.iter().find(|got| !got.0)
    );
    // Beside others: every fourth job is the saved case, the rest fdmutex
    // generated cases (not judged: the saved case's stale calls may land on
    // their sockets, even close their listeners before the case has set
    // up). A replay that could not be set up beside the others (naive-close's
    // stray Close of another replay's number) gets one more try alone, as
    // `harness run --jobs` does (gen/runner.rs).
    let fdmutex: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::FdMutex));
    let neighbours = GenConfig::new(Mode::Controlled, 99, 1);
    let job = |k: usize| {
        if k % 4 == 0 {
            return Some(replay(k as u64).map(|o| interleaving(&o)));
        }
        let drawn = draw(k as u64);
        let _ = gen::run_one_case(&fdmutex, &neighbours, &drawn);
        None
    };
    let results = parallel::run_ordered(4, 160, &|_| true, &job, &|_| false);
    assert_eq!(results.len(), 160);
    let replays: Vec<_> = results
        .into_iter()
        .enumerate()
        .filter_map(|(k, r)| Some((k, r?)))
        .map(|(k, r)| r.unwrap_or_else(|_| interleaving(&replay(k as u64).expect("replay alone"))))
        .collect();
    assert_eq!(replays.len(), 40);
    // Beside other cases the neighbours' load shifts what the schedule does
    // not control (the end-of-case Close's race, a blocked take-over's
    // timing) further: a saved case whose violation that Close provokes
    // was seen reproducing 33 of 40 times beside others while it reproduced
    // 92 of 100 alone (load 6). Most saved cases reproduce 100 of 100.
    let missed: Vec<_> = replays.iter().filter(|got| !got.0).collect();
    assert!(
        missed.len() <= 8,
        "{} of 40 replays beside other cases did not fail: {missed:?}, alone {expected:?}",
        missed.len()
    );
}

fn draw(i: u64) -> gen::GenCase {
    use proptest::strategy::{Strategy, ValueTree};
    let cfg = GenConfig::new(Mode::Controlled, 99, 1);
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        gen::proptest_config(&cfg),
        gen::case_rng(99, i),
    );
    gen::case_strategy(gen::Bounds::default())
        .new_tree(&mut runner)
        .expect("draw")
        .current()
}
