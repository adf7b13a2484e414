use harness::gen::{self, case_rng, case_strategy, Bounds, GenConfig};
use harness::report::Mode;
use harness::target::{NetfdTarget, Target};
use netfd::Variant;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::sync::Arc;
use std::time::Instant;

#[test]
#[ignore]
fn scratch_timing() {
    let mode = if std::env::var("FREE").is_ok() { Mode::Free } else { Mode::Controlled };
    let t: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::FdMutex));
    let cfg = GenConfig::new(mode, 1, 1);
    let strat = case_strategy(Bounds::default());
    let mut rows = Vec::new();
    for i in 0..300u64 {
        let mut runner = TestRunner::new_with_rng(gen::proptest_config(&cfg), case_rng(1, i));
        let c = strat.new_tree(&mut runner).unwrap().current();
        let st = Instant::now();
        let o = gen::run_one_case(&t, &cfg, &c).unwrap();
        let ms = st.elapsed().as_secs_f64() * 1e3;
        rows.push((ms, i, c, o.found.len()));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = rows.iter().map(|r| r.0).sum();
    eprintln!("total {total:.0} ms, mean {:.1}", total / rows.len() as f64);
    for (ms, i, c, f) in rows.iter().take(12) {
        eprintln!("{ms:.1} ms case {i} found {f} {} {:?}", c.scenario.transport, c.scenario.threads.iter().map(|t| t.ops.iter().map(|o| o.to_string()).collect::<Vec<_>>()).collect::<Vec<_>>());
    }
    let mut hist = [0usize; 8];
    for r in &rows { let b = match r.0 { x if x < 2.0 => 0, x if x < 5.0 => 1, x if x < 10.0 => 2, x if x < 20.0 => 3, x if x < 50.0 => 4, x if x < 100.0 => 5, x if x < 500.0 => 6, _ => 7 }; hist[b] += 1; }
    eprintln!("<2 <5 <10 <20 <50 <100 <500 more: {hist:?}");
}
