//! The `harness` binary's exit codes, run as a user runs it: 0 clean, 1
//! violations found, 2 bad usage or bad input. Every bad input gets exactly
//! one line on stderr naming what is wrong and where, and leaves no report
//! (nor a temporary file) behind. Every report a run writes validates
//! against `reports/schema.json`.

use harness::report::{schema, Report};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_harness");

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A directory holding copies of the named scenario files.
fn scenario_set(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for n in names {
        let from = scenarios_dir().join(format!("{n}.json"));
        fs::copy(&from, dir.path().join(format!("{n}.json")))
            .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    dir
}

fn harness(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run harness")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The reports written directly in `dir`, each validated against the schema.
fn valid_reports(dir: &Path) -> Vec<Report> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .expect("report dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            schema::validate_report_file(p).unwrap_or_else(|e| panic!("{e}"));
            Report::read(p).expect("report parses")
        })
        .collect()
}

/// Exit code 2, exactly one line on stderr containing every `needle`, and
/// nothing written under `report_dir`.
fn assert_bad_input(out: &Output, report_dir: &Path, needles: &[&str]) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {err}\nstdout: {}",
        text(&out.stdout)
    );
    let line = err.strip_suffix('\n').unwrap_or(&err);
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "exactly one line on stderr, got:\n{err}"
    );
    for n in needles {
        assert!(line.contains(n), "{line:?} should contain {n:?}");
    }
    let left = files_under(report_dir);
    assert!(left.is_empty(), "left behind: {left:?}");
    line.to_string()
}

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn pos_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("needle present");
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

const ONE_THREAD: &str = r#"{
  "name": "bad",
  "description": "A bad scenario.",
  "transport": "tcp4",
  "connections": 1,
  "threads": [
    { "name": "user", "ops": [ @OP@ ] }
  ]
}
"#;

/// Write a scenario file with `op` as its only op.
fn bad_file(dir: &Path, op: &str) -> (PathBuf, String) {
    let body = ONE_THREAD.replace("@OP@", op);
    let path = dir.join("bad.json");
    fs::write(&path, &body).expect("write");
    (path, body)
}

#[test]
fn run_exits_0_on_a_clean_run_against_fdmutex_and_writes_one_valid_report() {
    let set = scenario_set(&["close_parked_read_tcp4", "double_close"]);
    let reports = tempfile::tempdir().expect("tempdir");
    let out = harness(&[
        "run",
        "--scenarios",
        set.path().to_str().unwrap(),
        "--report",
        reports.path().to_str().unwrap(),
        "--cases",
        "8",
        "--budget",
        "5s",
        "--seed",
        "11",
        "--generated",
        "40",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let rs = valid_reports(reports.path());
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!((r.variant.as_str(), r.seed), ("fdmutex", 11));
    assert!(r.summary.passed && r.summary.violations == 0);
    // The two files, then the generated cases.
    let names: Vec<&str> = r.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["close_parked_read_tcp4", "double_close", "generated"]
    );
    assert!(r
        .scenarios
        .iter()
        .all(|s| s.cases > 0 && s.syscalls_checked > 0));
    assert!(text(&out.stdout).contains("report: "));
    // Nothing but the report: no temporary files, no saved cases.
    assert_eq!(files_under(reports.path()).len(), 1);
}

#[test]
fn run_exits_1_when_naive_close_is_caught() {
    let set = scenario_set(&["close_with_fd_churn"]);
    let reports = tempfile::tempdir().expect("tempdir");
    let out = harness(&[
        "run",
        "--variant",
        "naive-close",
        "--scenarios",
        set.path().to_str().unwrap(),
        "--report",
        reports.path().to_str().unwrap(),
        "--cases",
        "20",
        "--budget",
        "5s",
        "--shrink-time",
        "2s",
        "--seed",
        "1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let rs = valid_reports(reports.path());
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!(r.variant, "naive-close");
    assert!(!r.summary.passed && r.summary.violations > 0);
    let kinds: Vec<&str> = r
        .scenarios
        .iter()
        .flat_map(|s| s.violations.iter().map(|v| v.kind.name()))
        .collect();
    assert!(
        kinds
            .iter()
            .any(|k| *k == "fd_reuse" || *k == "use_after_close"),
        "{kinds:?}"
    );
    // Each violation's replay command names a saved case that exists.
    for v in r.scenarios.iter().flat_map(|s| &s.violations) {
        let file = v
            .replay
            .split_whitespace()
            .find(|w| w.ends_with(".json"))
            .unwrap_or_else(|| panic!("replay names a file: {}", v.replay));
        assert!(Path::new(file).is_file(), "{}", v.replay);
    }
}

#[test]
fn fail_fast_stops_at_the_first_failing_scenario() {
    // Loaded in name order: both catch naive-close, so only the first runs,
    // and neither the generated cases nor the second wait path follow.
    let set = scenario_set(&["close_parked_read_tcp4", "close_with_fd_churn"]);
    let reports = tempfile::tempdir().expect("tempdir");
    let out = harness(&[
        "run",
        "--variant",
        "naive-close",
        "--wait",
        "both",
        "--fail-fast",
        "--scenarios",
        set.path().to_str().unwrap(),
        "--report",
        reports.path().to_str().unwrap(),
        "--cases",
        "50",
        "--generated",
        "50",
        "--budget",
        "20s",
        "--shrink-time",
        "2s",
        "--seed",
        "1",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(stdout.contains("--fail-fast: stopped"), "{stdout}");
    let rs = valid_reports(reports.path());
    assert_eq!(rs.len(), 1, "the second wait path ran");
    let names: Vec<&str> = rs[0].scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["close_parked_read_tcp4"],
        "ran past the first failure"
    );
    assert!(!rs[0].summary.passed);
}

#[test]
fn malformed_json_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = ONE_THREAD.replace("@OP@", r#"{ "op": "close", "conn": 0 }"#);
    // Cut the file inside the threads array.
    let cut = &body[..body.find("  ]\n}").expect("end")];
    let path = dir.path().join("cut.json");
    fs::write(&path, cut).expect("write");
    let reports = dir.path().join("reports");
    let out = harness(&[
        "run",
        "--scenarios",
        path.to_str().unwrap(),
        "--report",
        reports.to_str().unwrap(),
    ]);
    let end_line = cut.matches('\n').count() + 1;
    let line = assert_bad_input(
        &out,
        &reports,
        &[&format!("{}:{end_line}:", path.display()), "JSON"],
    );
    assert!(line.contains("EOF") || line.contains("end"), "{line}");
}

#[test]
fn unknown_op_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, body) = bad_file(dir.path(), r#"{ "op": "frobnicate", "conn": 0 }"#);
    let (l, c) = pos_of(&body, r#""frobnicate""#);
    let reports = dir.path().join("reports");
    let out = harness(&[
        "run",
        "--scenarios",
        path.to_str().unwrap(),
        "--report",
        reports.to_str().unwrap(),
    ]);
    assert_bad_input(
        &out,
        &reports,
        &[&format!("{}:{l}:{c}: ", path.display()), "frobnicate"],
    );
}

#[test]
fn conn_index_out_of_range_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, body) = bad_file(dir.path(), r#"{ "op": "close", "conn": 3 }"#);
    let reports = dir.path().join("reports");
    let out = harness(&[
        "run",
        "--scenarios",
        path.to_str().unwrap(),
        "--report",
        reports.to_str().unwrap(),
    ]);
    let line = assert_bad_input(&out, &reports, &["conn 3", "out of range"]);
    // Where: the `conn` member, at its key or its value.
    let at_key = pos_of(&body, r#""conn": 3"#);
    let at_value = pos_of(&body, "3 }");
    let names = |(l, c): (usize, usize)| line.contains(&format!("{}:{l}:{c}: ", path.display()));
    assert!(names(at_key) || names(at_value), "{line}");
}

#[test]
fn unknown_variant_exits_2_in_one_line() {
    let set = scenario_set(&["double_close"]);
    let reports = set.path().join("reports");
    let out = harness(&[
        "run",
        "--variant",
        "go1999-nothing",
        "--scenarios",
        set.path().to_str().unwrap(),
        "--report",
        reports.to_str().unwrap(),
    ]);
    assert_bad_input(&out, &reports, &["go1999-nothing", "--variant", "fdmutex"]);
}

#[test]
fn an_unknown_flag_exits_2_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = harness(&["run", "--frobnicate"]);
    assert_bad_input(&out, dir.path(), &["--frobnicate"]);
}

#[test]
fn unwritable_report_directory_exits_2_and_runs_nothing() {
    let set = scenario_set(&["double_close"]);
    // Tests run as root, so permission bits stop nothing: put the report
    // directory under a regular file instead.
    let blocker = set.path().join("not-a-dir");
    fs::write(&blocker, "x").expect("write");
    let reports = blocker.join("reports");
    let out = harness(&[
        "run",
        "--scenarios",
        set.path().join("double_close.json").to_str().unwrap(),
        "--report",
        reports.to_str().unwrap(),
    ]);
    assert_bad_input(
        &out,
        &reports,
        &[&reports.display().to_string(), "report directory"],
    );
    // Nothing was added next to the blocker either.
    let mut names: Vec<String> = fs::read_dir(set.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["double_close.json", "not-a-dir"]);
    assert_eq!(fs::read_to_string(&blocker).expect("read"), "x");
}

#[test]
fn a_descriptor_limit_too_low_for_the_scenario_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closes: Vec<String> = (0..40)
        .map(|i| format!(r#"{{ "op": "close", "conn": {i} }}"#))
        .collect();
    let body = ONE_THREAD
        .replace(r#""connections": 1"#, r#""connections": 40"#)
        .replace("@OP@", &closes.join(", "));
    let path = dir.path().join("forty.json");
    fs::write(&path, body).expect("write");
    let reports = dir.path().join("reports");
    // The limit applies to the harness only: the shell lowers it and execs.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(BIN)
        .args([
            "run",
            "--scenarios",
            path.to_str().unwrap(),
            "--report",
            reports.to_str().unwrap(),
        ])
        .output()
        .expect("run sh");
    assert_bad_input(
        &out,
        &reports,
        &[&path.display().to_string(), "descriptor limit is 64"],
    );
    // The same scenario with the limit this test runs under is accepted.
    let out = harness(&["list", "--scenarios", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn matrix_exits_0_when_fdmutex_is_clean_and_every_historical_variant_is_caught() {
    let set = scenario_set(&["close_with_fd_churn", "close_parked_read_tcp4"]);
    let reports = tempfile::tempdir().expect("tempdir");
    let out = harness(&[
        "matrix",
        "--scenarios",
        set.path().to_str().unwrap(),
        "--report",
        reports.path().to_str().unwrap(),
        "--budget",
        "8s",
        "--cases",
        "12",
        "--hang-bound",
        "300ms",
        "--seed",
        "5",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(stdout.contains("matrix: ok"), "{stdout}");
    let rs = valid_reports(reports.path());
    let mut variants: Vec<(&str, &str)> = rs
        .iter()
        .map(|r| (r.variant.as_str(), r.wait.map_or("none", |w| w.name())))
        .collect();
    variants.sort();
    // fdmutex on both wait paths, each historical variant on its own.
    assert_eq!(
        variants,
        [
            ("fdmutex", "direct"),
            ("fdmutex", "server"),
            ("go2009-closeack", "server"),
            ("go2009-refcount", "server"),
            ("naive-close", "server")
        ]
    );
    for r in &rs {
        assert_eq!(r.summary.passed, r.variant == "fdmutex", "{}", r.variant);
    }
}
