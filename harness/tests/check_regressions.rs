//! `harness::check` in a user's test: a failing case it finds is saved to
//! the regressions directory and re-run first by the next check; with
//! `HARNESS_REPLAY` set, the check replays that one file instead.

mod uninstrumented_wrapper;

use harness::check::{Check, REPLAY_ENV};
use harness::report::{Mode, ViolationKind};
use harness::target::Capability;
use std::path::Path;
use std::process::Command;
use uninstrumented_wrapper::{RawTarget, CLOSE_VS_READ};

/// The racy wrapper on its close-vs-read scenario alone, controlled mode:
/// caught within 300 cases (`tests/uninstrumented_racy.rs`).
fn racy_check(regressions: &Path) -> Check {
    harness::check(RawTarget { guarded: false })
        .without(Capability::Deadlines)
        .only(&[])
        .scenario(CLOSE_VS_READ)
        .generated(0)
        .cases(300)
        .modes(&[Mode::Controlled])
        .regressions(regressions)
}

fn saved_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_failing_case_is_saved_and_re_run_first_by_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let first = racy_check(dir.path()).try_run().unwrap_err();
    assert!(!first.regression, "{first}");
    assert!(first.kinds.contains(&ViolationKind::FdReuse), "{first}");
    let saved = first.saved.clone().expect("saved");
    assert_eq!(saved_files(dir.path()), vec![saved.clone()]);
    assert!(
        first.replay.contains(&*saved.display().to_string()) || first.replay.contains(REPLAY_ENV)
    );

    // The next check runs the saved case first, on its schedule, and stops
    // there: one report (the regressions'), naming the saved file.
    let second = racy_check(dir.path()).try_run().unwrap_err();
    assert!(second.regression, "{second}");
    assert_eq!(second.reports.len(), 1, "{second}");
    assert_eq!(second.reports[0].scenarios.len(), 1);
    assert_eq!(
        Path::new(&second.reports[0].scenarios[0].file),
        saved.as_path()
    );
    assert!(second.message.contains("a saved regression"), "{second}");
    // Nothing new was saved.
    assert_eq!(saved_files(dir.path()), vec![saved]);
}

/// Run by `harness_replay_makes_the_check_replay_one_file` with
/// `HARNESS_REPLAY` set.
#[test]
#[ignore = "run with HARNESS_REPLAY by harness_replay_makes_the_check_replay_one_file"]
fn replay_child() {
    let path = std::env::var(REPLAY_ENV).expect("HARNESS_REPLAY");
    let empty = tempfile::tempdir().unwrap();
    let f = racy_check(empty.path()).try_run().unwrap_err();
    assert!(f.regression, "{f}");
    assert_eq!(f.reports.len(), 1);
    assert_eq!(f.reports[0].scenarios[0].file, path);
    assert!(f.kinds.contains(&ViolationKind::FdReuse), "{f}");
    println!("replayed {path}: {:?}", f.kinds);
}

#[test]
fn harness_replay_makes_the_check_replay_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let found = racy_check(dir.path()).try_run().unwrap_err();
    let saved = found.saved.expect("saved");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "replay_child", "--nocapture"])
        .env(REPLAY_ENV, &saved)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// At most three cases are kept per scenario: with three already there
/// (passing ones, under the scenario's name), a new failing case is
/// counted, not saved.
#[test]
fn at_most_three_cases_are_kept_per_scenario() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let text = CLOSE_VS_READ
            .replace(
                "raw_close_vs_read_with_churn",
                &format!("raw_close_vs_read_with_churn-r{i}"),
            )
            .replace(r#"{ "op": "close", "conn": 0 }"#, r#"{ "op": "yield" }"#)
            .replace(
                r#"{ "op": "read", "conn": 0, "bytes": 16 },
      { "op": "read", "conn": 0, "bytes": 16 },"#,
                "",
            );
        let s = harness::scenario::parse_str(&text, "kept.json").unwrap();
        s.save(dir.path().join(format!("{}.json", s.name))).unwrap();
    }
    let before = saved_files(dir.path());
    let f = racy_check(dir.path()).try_run().unwrap_err();
    assert!(!f.regression, "{f}");
    assert!(f.saved.is_none(), "{f}");
    assert!(f.unsaved >= 1, "{f}");
    assert!(
        f.message.contains("not saved (at most 3 per scenario)"),
        "{f}"
    );
    assert_eq!(saved_files(dir.path()), before);
}

/// The scenarios compiled into the library are exactly the files of
/// `scenarios/`, and every one parses.
#[test]
fn every_scenario_file_is_compiled_in() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let compiled: Vec<String> = harness::check::SHIPPED
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(compiled, on_disk);
    assert_eq!(harness::check::shipped().len(), on_disk.len());
}
