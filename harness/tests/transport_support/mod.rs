//! What the transport test files share: the shipped scenarios of one
//! transport, a run of them, and generated cases on one transport alone.

use harness::gen::{self, case_rng, proptest_config, Bounds, GenConfig};
use harness::report::{Mode, Report};
use harness::run::{self, RunConfig, Source};
use harness::scenario;
use harness::scenario::Transport;
use harness::target::{NetfdTarget, Target};
use netfd::{Variant, WaitPath};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::sync::Arc;
use std::time::Duration;

/// Every shipped scenario file on `transport`.
pub fn shipped_on(transport: Transport) -> Vec<Source> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    scenario::load_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|(_, s)| s.transport == transport)
        .map(|(path, scenario)| Source {
            scenario,
            file: path.display().to_string(),
        })
        .collect()
}

/// `sources` against `target`, `cases` per file in `mode`, seed 12.
pub fn run_on(target: Arc<dyn Target>, sources: &[Source], cases: u64, mode: Mode) -> Report {
    harness::intercept::link();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode,
        seed: 12,
        cases,
        budget: Duration::from_secs(120),
        case_dir: Some(dir.path().join("cases")),
        hang_bound: Duration::from_secs(1),
        jobs: 0,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    run::run(target, sources, &cfg, &|_, _| {}).expect("run")
}

/// Cases per path and mode: `env` if set (a soak), else `default`.
pub fn cases_from_env(env: &str, default: u64) -> u64 {
    std::env::var(env)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Generated cases drawn on `transport` (the other draws skipped), `per_run`
/// of them against fdmutex on each wait path in each mode: every one clean,
/// and the ledger checked their calls.
pub fn fdmutex_is_clean_on_generated(transport: Transport, seed: u64, per_run: u64) {
    harness::intercept::link();
    let strategy = gen::case_strategy(Bounds::default());
    for mode in [Mode::Controlled, Mode::Free] {
        for wait in [WaitPath::Direct, WaitPath::Server] {
            let target: Arc<dyn Target> =
                Arc::new(NetfdTarget::with_wait(Variant::FdMutex, Some(wait)));
            let cfg = GenConfig::new(mode, seed, per_run);
            let config = proptest_config(&cfg);
            let (mut ran, mut syscalls) = (0u64, 0u64);
            let mut i = 0u64;
            while ran < per_run {
                let mut runner = TestRunner::new_with_rng(config.clone(), case_rng(cfg.seed, i));
                i += 1;
                let case = strategy.new_tree(&mut runner).expect("draw").current();
                if case.scenario.transport != transport {
                    continue;
                }
                let o = gen::run_one_case(&target, &cfg, &case)
                    .unwrap_or_else(|e| panic!("case {}: {}", i - 1, e.0));
                assert!(
                    o.found.is_empty() && !o.hung,
                    "{mode} {}: case {} {:#?}\n{}",
                    wait.name(),
                    i - 1,
                    o.found,
                    case.scenario.to_json_pretty()
                );
                ran += 1;
                syscalls += o.syscalls_checked;
            }
            eprintln!(
                "fdmutex {mode} {}: {ran} generated {transport} cases clean ({syscalls} syscalls checked)",
                wait.name()
            );
            assert!(syscalls > ran, "the ledger checked the cases' calls");
        }
    }
}
