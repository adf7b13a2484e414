//! Generated cases against `fdmutex`, the production protocol: thousands of
//! them, controlled and free, and not one violation.
//!
//! Each test is a proptest property run by a [`TestRunner`] seeded from a
//! fixed seed (override: `HARNESS_GEN_SEED`; size: `HARNESS_GEN_CASES`), so
//! CI runs the same cases every time. A failure is shrunk, its seed is
//! persisted the proptest way in `proptest-regressions/gen_fdmutex.txt`
//! (re-run first by every later run), and the minimal case is saved as a
//! scenario with its schedule for `harness replay`.
//!
//! Sized for the CI machine (2 shared cores): controlled mode runs about 60
//! generated cases per second there and free mode about 120 (`harness
//! measure throughput`), and the two tests run in parallel.

use harness::gen::{self, case_strategy, Bounds, GenCase, GenConfig};
use harness::report::{self, Mode};
use harness::run;
use harness::target::{NetfdTarget, Target};
use netfd::Variant;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use std::sync::{Arc, Mutex};

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/gen_fdmutex.txt"
);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cfg: &GenConfig, cases: u32, salt: u8) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        source_file: Some(file!()),
        ..gen::proptest_config(cfg)
    };
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&cfg.seed.to_le_bytes());
    seed[8] = salt;
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

/// Run `cases` generated cases in `mode` against fdmutex; panic with the
/// saved minimal case and its replay command if any fails.
fn zero_violations(mode: Mode, cases: u64, salt: u8) {
    let target: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::FdMutex));
    let mut cfg = GenConfig::new(mode, env_u64("HARNESS_GEN_SEED", 20_261_127), cases);
    cfg.max_shrink_time = std::time::Duration::from_secs(20);
    let mut runner = runner(&cfg, cases as u32, salt);
    let last_failure: Mutex<Option<(GenCase, Vec<usize>, String)>> = Mutex::new(None);
    let ran = Mutex::new(0u64);
    let result = runner.run(&case_strategy(Bounds::default()), |case| {
        *ran.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let outcome = gen::run_one_case(&target, &cfg, &case)
            .map_err(|e| TestCaseError::fail(format!("setup: {e}")))?;
        if outcome.found.is_empty() {
            return Ok(());
        }
        let what: Vec<String> = outcome
            .found
            .iter()
            .map(|f| format!("{} ({}): {}", f.kind, f.op, f.message))
            .collect();
        let what = what.join("; ");
        *last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((case, outcome.schedule, what.clone()));
        Err(TestCaseError::fail(what))
    });
    let ran = *ran.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(()) => {
            assert!(ran >= cases, "only {ran} of {cases} cases ran");
            eprintln!("{mode}: {ran} generated cases against fdmutex, no violation");
        }
        Err(TestError::Fail(why, minimal)) => {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gen_fdmutex");
            let schedule = match last_failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some((c, taken, _)) if c == minimal && !taken.is_empty() => taken,
                _ => minimal.schedule.clone(),
            };
            let saved = run::save_case(&dir, &minimal.scenario, 0, &schedule)
                .map(|p| report::replay_command(&p, "fdmutex"))
                .unwrap_or_else(|e| format!("(could not save the case: {e})"));
            panic!(
                "a generated case found a violation in fdmutex ({mode}): {why}\nminimal case: {}\nreplay: {saved}{}",
                minimal.scenario.to_json_pretty(),
                if mode == Mode::Free { " --mode free" } else { "" }
            );
        }
        Err(TestError::Abort(why)) => panic!("proptest aborted: {why}"),
    }
}

#[test]
fn generated_cases_controlled_find_nothing_in_fdmutex() {
    zero_violations(Mode::Controlled, env_u64("HARNESS_GEN_CASES", 2000), 1);
}

#[test]
fn generated_cases_free_find_nothing_in_fdmutex() {
    zero_violations(Mode::Free, env_u64("HARNESS_GEN_CASES", 2000) / 2, 2);
}
