//! `harness run` with generated cases, end to end through the binary: the
//! report has a `generated` entry; against a historical variant the shrunk
//! case is saved next to the report, the one command that replays it is
//! printed, and `harness replay` with that command reproduces it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_harness");

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
        .display()
        .to_string()
}

fn harness(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run harness")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn report_in(dir: &Path) -> serde_json::Value {
    let file = std::fs::read_dir(dir)
        .expect("report dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a report was written");
    serde_json::from_str(&std::fs::read_to_string(file).expect("read report")).expect("json")
}

fn generated_entry(report: &serde_json::Value) -> Option<serde_json::Value> {
    report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .find(|s| s["name"] == "generated")
        .cloned()
}

#[test]
fn run_against_fdmutex_includes_clean_generated_cases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let reports = dir.path().display().to_string();
    let out = harness(&[
        "run",
        "--scenarios",
        &scenario("double_close.json"),
        "--cases",
        "5",
        "--generated",
        "60",
        "--seed",
        "11",
        "--report",
        &reports,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = report_in(dir.path());
    let generated = generated_entry(&report).expect("a generated entry");
    assert_eq!(generated["file"], "generated");
    assert_eq!(generated["cases"], 60);
    assert!(generated["syscalls_checked"].as_u64().unwrap_or(0) > 0);
    assert_eq!(report["seed"], 11);
}

#[test]
fn no_generated_leaves_them_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let reports = dir.path().display().to_string();
    let out = harness(&[
        "run",
        "--scenarios",
        &scenario("double_close.json"),
        "--cases",
        "3",
        "--no-generated",
        "--seed",
        "1",
        "--report",
        &reports,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(generated_entry(&report_in(dir.path())).is_none());
}

#[test]
fn a_failing_generated_case_is_shrunk_saved_and_replays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let reports = dir.path().display().to_string();
    let out = harness(&[
        "run",
        "--variant",
        "naive-close",
        "--scenarios",
        &scenario("peer_close_vs_local_close.json"),
        "--cases",
        "1",
        "--generated",
        "200",
        "--shrink-time",
        "5s",
        "--hang-bound",
        "300ms",
        "--seed",
        "7",
        "--report",
        &reports,
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let report = report_in(dir.path());
    let generated = generated_entry(&report).expect("a generated entry");
    let violations = generated["violations"].as_array().expect("violations");
    assert!(!violations.is_empty(), "{all}");
    // The printed command is the one the report carries.
    let replay = violations[0]["replay"].as_str().expect("replay").to_owned();
    let printed = all
        .lines()
        .find_map(|l| l.strip_prefix("replay it:"))
        .map(str::trim)
        .expect("the replay command is printed");
    assert_eq!(printed, replay);
    // `harness replay FILE --variant naive-close`
    let mut words = replay.split_whitespace();
    assert_eq!(words.next(), Some("harness"));
    let args: Vec<String> = words.map(str::to_owned).collect();
    assert_eq!(args[0], "replay");
    let file = PathBuf::from(&args[1]);
    assert!(
        file.starts_with(dir.path()),
        "saved next to the report: {}",
        file.display()
    );
    let saved = harness::scenario::load_file(&file).expect("the saved case loads");
    assert!(saved.schedule.is_some(), "the schedule is embedded");
    let mut replay_args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Exit 1 if any replay reproduces: a minimal case whose violation the
    // end-of-case Close provokes replays in most runs, not all
    // (docs/detection.md, "Replay and shrinking").
    replay_args.extend(["--hang-bound", "300ms", "--times", "20"]);
    let again = harness(&replay_args);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
}
