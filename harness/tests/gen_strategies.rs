//! The generation strategies without running anything: every drawn case and
//! every value shrinking passes through is a valid, bounded scenario; the
//! draws are biased toward close races as `harness::gen` says; and a case of
//! a run is decided by the run's seed and its index alone.

use harness::gen::{case_rng, case_strategy, proptest_config, Bounds, GenCase, GenConfig};
use harness::report::Mode;
use harness::scenario::{self, Op, Scenario, LIMITS};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

const DRAWS: u64 = 3000;

fn draw(seed: u64, i: u64) -> GenCase {
    let cfg = GenConfig::new(Mode::Controlled, seed, 1);
    let mut runner = TestRunner::new_with_rng(proptest_config(&cfg), case_rng(seed, i));
    case_strategy(Bounds::default())
        .new_tree(&mut runner)
        .expect("the strategy never rejects")
        .current()
}

/// Everything the format and the bounds promise, or a message saying what
/// broke.
fn check(c: &GenCase) -> Result<(), String> {
    let s = &c.scenario;
    s.validate().map_err(|e| {
        format!(
            "invalid: {}\n{}",
            e.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; "),
            s.to_json_pretty()
        )
    })?;
    let b = Bounds::default();
    if !(2..=b.max_threads).contains(&s.threads.len()) {
        return Err(format!("{} threads", s.threads.len()));
    }
    // A raw op expands to at most two scenario ops.
    if let Some(t) = s
        .threads
        .iter()
        .find(|t| t.ops.is_empty() || t.ops.len() > 2 * b.max_ops_per_thread)
    {
        return Err(format!("thread {} has {} ops", t.name, t.ops.len()));
    }
    if s.descriptors_needed() > 64 {
        return Err(format!("needs {} descriptors", s.descriptors_needed()));
    }
    if s.listeners > 2 || s.connections > b.max_connections || s.slots > b.max_slots {
        return Err(format!(
            "{} listeners, {} connections, {} slots",
            s.listeners, s.connections, s.slots
        ));
    }
    if c.schedule.is_empty()
        || c.schedule.len() > LIMITS.max_schedule_len.min(256)
        || c.schedule.iter().any(|&t| t >= s.threads.len())
    {
        return Err(format!("bad schedule {:?}", c.schedule));
    }
    // Saved with its schedule, the case loads again as it was.
    let saved = s.clone().with_schedule(c.schedule.clone());
    let again = scenario::parse_str(&saved.to_json_pretty(), "generated.json")
        .map_err(|e| format!("does not load again: {e}"))?;
    if again != saved {
        return Err("round trip changed the scenario".into());
    }
    Ok(())
}

#[test]
fn every_drawn_case_is_valid_and_bounded() {
    for i in 0..DRAWS {
        let c = draw(11, i);
        if let Err(e) = check(&c) {
            panic!("case {i}: {e}");
        }
    }
}

#[test]
fn every_value_shrinking_visits_is_valid() {
    // Walk each tree as the runner does when every simplification still
    // fails (simplify) or alternately passes (complicate), checking every
    // value on the way.
    let cfg = GenConfig::new(Mode::Controlled, 5, 1);
    let strategy = case_strategy(Bounds::default());
    for i in 0..150 {
        let mut runner = TestRunner::new_with_rng(proptest_config(&cfg), case_rng(5, i));
        let mut tree = strategy.new_tree(&mut runner).expect("tree");
        let mut steps = 0;
        loop {
            if let Err(e) = check(&tree.current()) {
                panic!("case {i} after {steps} shrink steps: {e}");
            }
            steps += 1;
            let moved = if steps % 3 == 0 {
                tree.complicate()
            } else {
                tree.simplify()
            };
            if !moved && !tree.simplify() || steps > 400 {
                break;
            }
        }
        assert!(steps > 1, "case {i} cannot shrink at all");
    }
}

/// A close of connection `c` by one thread while another thread does a
/// socket op on `c`.
fn close_races_an_op(s: &Scenario) -> bool {
    s.threads.iter().enumerate().any(|(t, th)| {
        th.ops.iter().any(|op| match op {
            Op::Close { conn } => s.threads.iter().enumerate().any(|(u, other)| {
                u != t
                    && other
                        .ops
                        .iter()
                        .any(|o| o.is_socket_op() && o.conn() == Some(*conn))
            }),
            _ => false,
        })
    })
}

/// A close immediately followed by descriptor churn in the same thread.
fn churn_right_after_close(s: &Scenario) -> bool {
    s.threads.iter().any(|th| {
        th.ops
            .windows(2)
            .any(|w| matches!((&w[0], &w[1]), (Op::Close { .. }, Op::Open { .. })))
    })
}

/// A deadline at most 3 ms away (or past) on a connection another thread
/// closes.
fn deadline_near_close(s: &Scenario) -> bool {
    let closed: Vec<usize> = s
        .threads
        .iter()
        .flat_map(|t| t.ops.iter())
        .filter_map(|op| match op {
            Op::Close { conn } => Some(*conn),
            _ => None,
        })
        .collect();
    s.threads.iter().flat_map(|t| t.ops.iter()).any(|op| {
        matches!(op, Op::SetDeadline { conn, in_ms: Some(ms), .. } if *ms <= 3 && closed.contains(conn))
    })
}

#[test]
fn draws_are_biased_toward_close_races() {
    let cases: Vec<Scenario> = (0..DRAWS).map(|i| draw(3, i).scenario).collect();
    let share = |f: &dyn Fn(&Scenario) -> bool| {
        cases.iter().filter(|s| f(s)).count() as f64 / cases.len() as f64
    };
    let racing = share(&close_races_an_op);
    let churn = share(&churn_right_after_close);
    let deadline = share(&deadline_near_close);
    let transports: std::collections::HashSet<_> = cases.iter().map(|s| s.transport).collect();
    let listeners = share(&|s: &Scenario| s.listeners > 0);
    eprintln!(
        "close racing another thread's op: {racing:.2}; churn right after close: {churn:.2}; deadline near close: {deadline:.2}; listeners: {listeners:.2}"
    );
    assert!(racing >= 0.6, "only {racing:.2} of cases race a close");
    assert!(churn >= 0.3, "only {churn:.2} of cases churn after a close");
    assert!(
        deadline >= 0.15,
        "only {deadline:.2} of cases set a deadline near a close"
    );
    assert!(
        listeners >= 0.1,
        "only {listeners:.2} of cases use listeners"
    );
    assert_eq!(
        transports.len(),
        harness::scenario::Transport::ALL.len(),
        "every transport is drawn"
    );
}

#[test]
fn a_case_depends_on_the_run_seed_and_its_index_only() {
    for i in 0..50 {
        assert_eq!(draw(42, i), draw(42, i), "case {i} of seed 42 drawn twice");
    }
    let same_seed = (0..50).filter(|&i| draw(42, i) == draw(42, i + 1)).count();
    let other_seed = (0..50).filter(|&i| draw(42, i) == draw(43, i)).count();
    assert!(same_seed < 5, "{same_seed} neighbouring cases are equal");
    assert!(other_seed < 5, "{other_seed} cases equal across seeds");
}

#[test]
fn shrinking_reaches_a_small_case_for_a_deterministic_failure() {
    // A stand-in for a race: "fails" when some thread closes a connection
    // another thread also uses. Shrinking must strip everything else.
    let cfg = GenConfig::new(Mode::Controlled, 9, 1);
    let strategy = case_strategy(Bounds::default());
    let fails = |c: GenCase| close_races_an_op(&c.scenario);
    let mut shrunk = 0;
    for i in 0..40 {
        let mut runner = TestRunner::new_with_rng(proptest_config(&cfg), case_rng(9, i));
        let tree = strategy.new_tree(&mut runner).expect("tree");
        let Some(minimal) = harness::gen::shrink(tree, &fails, 2000) else {
            continue;
        };
        shrunk += 1;
        assert!(
            close_races_an_op(&minimal.scenario),
            "case {i}: the minimal case must still fail"
        );
        check(&minimal).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let (threads, ops) = minimal.size();
        assert_eq!(
            threads,
            2,
            "case {i}: {}",
            minimal.scenario.to_json_pretty()
        );
        assert!(
            ops <= 4,
            "case {i}: {ops} ops left: {}",
            minimal.scenario.to_json_pretty()
        );
    }
    assert!(
        shrunk >= 20,
        "only {shrunk} of 40 draws failed the predicate"
    );
}
