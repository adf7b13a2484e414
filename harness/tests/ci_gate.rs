//! The CI gate's verdict: `harness verdict` (the logic, in
//! `harness::report::verdict`) and `ci/gate --verdict-only` (the script
//! around it) fail, with one line naming the regression, on a matrix in
//! which a historical variant escaped and on a run report with a violation
//! against fdmutex; they pass clean reports; they treat a missing variant or
//! a report without cases as a regression (a blind harness fails the gate).
//! All reports here are crafted, so each rule is provoked on purpose.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use harness::report::verdict::{self, Input, Problem};
use harness::report::{
    schema, time, Event, Mode, Report, ScenarioReport, ShardRef, Violation, ViolationKind, WaitPath,
};

const HARNESS: &str = env!("CARGO_BIN_EXE_harness");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A finished report for `variant` over two scenarios, 10 cases each, with
/// `violation` (kind, scenario index) if given.
fn report(variant: &str, start_ms: u64, violation: Option<(ViolationKind, usize)>) -> Report {
    let mut r = Report::started_at(variant, Mode::Controlled, 77, time::from_unix_ms(start_ms));
    for (i, name) in ["close_parked_read_tcp4", "double_close"]
        .iter()
        .enumerate()
    {
        let mut s = ScenarioReport::new(*name, format!("scenarios/{name}.json"));
        s.cases = 10;
        s.syscalls_checked = 200;
        for k in ViolationKind::ALL {
            s.record_checks(k, 10);
        }
        if let Some((kind, at)) = violation {
            if at == i {
                let mut v = Violation::new(kind, 7, 12, "read conn=0 bytes=64", "reader", 3, 99);
                v.holder = Some(15);
                v.message = "read(7) for #12 reached #15's socket".into();
                v.replay =
                    format!("harness replay reports/cases/{name}-case3.json --variant {variant}");
                v.schedule = vec![0, 1, 0];
                v.trace = vec![Event {
                    seq: 1,
                    thread: "reader".into(),
                    owner: 12,
                    fd: Some(7),
                    what: "read".into(),
                    result: Some("ok 64".into()),
                }];
                s.add_violation(v);
            }
        }
        r.scenarios.push(s);
    }
    r.finish(Duration::from_millis(500));
    r
}

/// Write `reports` into `dir` (created), checking each against the schema.
fn write_all(dir: &Path, reports: &[Report]) {
    for r in reports {
        let p = r.write_atomic(dir).expect("write report");
        schema::validate_report_file(&p).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn inputs(reports: &[Report]) -> Vec<Input> {
    reports
        .iter()
        .enumerate()
        .map(|(i, r)| Input {
            path: PathBuf::from(format!("crafted-{i}.json")),
            report: r.clone(),
        })
        .collect()
}

/// The five matrix reports (fdmutex on both wait paths, the historical
/// variants on the server path), with `escaped` (if any) showing no
/// violation.
fn matrix(escaped: Option<&str>) -> Vec<Report> {
    let mut t = 1_700_000_000_000;
    [
        ("fdmutex", WaitPath::Direct),
        ("fdmutex", WaitPath::Server),
        ("go2009-refcount", WaitPath::Server),
        ("go2009-closeack", WaitPath::Server),
        ("naive-close", WaitPath::Server),
    ]
    .iter()
    .map(|(v, w)| {
        t += 1000;
        let caught = *v != "fdmutex" && Some(*v) != escaped;
        let mut r = report(v, t, caught.then_some((ViolationKind::UseAfterClose, 1)));
        r.wait = Some(*w);
        r
    })
    .collect()
}

fn verdict_cmd(args: &[&str]) -> Output {
    Command::new(HARNESS)
        .args(["verdict"])
        .args(args)
        .output()
        .expect("run harness verdict")
}

fn gate_verdict_only(dir: &Path) -> Output {
    Command::new("bash")
        .arg(repo_root().join("ci/gate"))
        .arg("--verdict-only")
        .arg(dir)
        .env("HARNESS_BIN", HARNESS)
        .output()
        .expect("run ci/gate")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The last non-empty line of `out`.
fn last_line(out: &[u8]) -> String {
    text(out)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned()
}

/// The verdict binary failed with exactly one line on stderr containing
/// every one of `needles`; returns that line.
fn assert_one_line_failure(out: &Output, needles: &[&str]) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be one line: {err:?}");
    assert!(lines[0].starts_with("verdict: FAIL: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {:?}", lines[0]);
    }
    lines[0].to_owned()
}

#[test]
fn a_historical_variant_that_escaped_the_matrix_fails_the_gate() {
    // The logic.
    let reports = matrix(Some("go2009-closeack"));
    let v = verdict::judge(&inputs(&reports), &[]).expect("judge");
    assert!(!v.passed());
    assert!(
        matches!(&v.problems[..], [Problem::Escaped { variant, cases: 20, .. }] if variant == "go2009-closeack"),
        "{:?}",
        v.problems
    );
    let reason = v.reason();
    assert!(!reason.contains('\n'), "{reason}");
    assert!(
        reason.contains("historical variant go2009-closeack escaped the matrix"),
        "{reason}"
    );

    // The command, on report files.
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("matrix");
    write_all(&m, &reports);
    let out = verdict_cmd(&["--matrix", m.to_str().expect("utf-8")]);
    assert_one_line_failure(
        &out,
        &["go2009-closeack escaped", "no violation in 20 cases"],
    );
    // The table on stdout names the culprit too.
    assert!(text(&out.stdout).contains("regression: historical variant go2009-closeack"));

    // The gate script: exit 1, the reason as its last line.
    let out = gate_verdict_only(dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let last = last_line(&out.stdout);
    assert!(
        last.starts_with(
            "gate: FAIL (verdict): historical variant go2009-closeack escaped the matrix"
        ),
        "{last}"
    );
}

#[test]
fn a_violation_against_fdmutex_in_a_run_report_fails_the_gate() {
    let run = report(
        "fdmutex",
        1_700_000_100_000,
        Some((ViolationKind::FdReuse, 0)),
    );
    let v = verdict::judge(&[], &inputs(std::slice::from_ref(&run))).expect("judge");
    assert!(!v.passed());
    let reason = v.reason();
    assert!(!reason.contains('\n'), "{reason}");
    for needle in [
        "fdmutex is not clean in the run report",
        "fd_reuse in close_parked_read_tcp4 (no_fd_reuse)",
        "reached #15's socket",
        "replay: harness replay reports/cases/close_parked_read_tcp4-case3.json --variant fdmutex",
    ] {
        assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let fixed = dir.path().join("run-fixed");
    let random = dir.path().join("run-random");
    write_all(&fixed, &[report("fdmutex", 1_700_000_000_000, None)]);
    write_all(&random, &[run]);
    let out = verdict_cmd(&[
        "--run",
        fixed.to_str().expect("utf-8"),
        "--run",
        random.to_str().expect("utf-8"),
    ]);
    assert_one_line_failure(
        &out,
        &["fdmutex is not clean", "fd_reuse", "replay: harness replay"],
    );

    // Clean matrix plus the dirty run: the gate still fails, on the run.
    write_all(&dir.path().join("matrix"), &matrix(None));
    let out = gate_verdict_only(dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let last = last_line(&out.stdout);
    assert!(
        last.starts_with("gate: FAIL (verdict): fdmutex is not clean in the run report"),
        "{last}"
    );
    assert!(last.contains("--variant fdmutex"), "{last}");
}

#[test]
fn clean_reports_pass_the_gate() {
    let m = matrix(None);
    let runs = [
        report("fdmutex", 1_700_000_100_000, None),
        report("fdmutex", 1_700_000_200_000, None),
    ];
    let v = verdict::judge(&inputs(&m), &inputs(&runs)).expect("judge");
    assert!(v.passed(), "{:?}", v.problems);
    assert!(
        v.reason()
            .starts_with("ok: 7 reports, 140 cases; clean fdmutex; caught go2009-refcount"),
        "{}",
        v.reason()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    write_all(&dir.path().join("matrix"), &m);
    write_all(&dir.path().join("run-fixed"), &runs[..1]);
    write_all(&dir.path().join("run-random"), &runs[1..]);
    let out = gate_verdict_only(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        last_line(&out.stdout).starts_with("gate: PASS"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_blind_matrix_fails_missing_variants_and_empty_reports() {
    // naive-close did not run at all.
    let mut m = matrix(None);
    m.pop();
    let v = verdict::judge(&inputs(&m), &[]).expect("judge");
    assert_eq!(
        v.problems,
        vec![Problem::Missing {
            variant: "naive-close".into()
        }]
    );
    assert!(v
        .reason()
        .contains("the matrix has no report for naive-close"));

    // An fdmutex run that ran nothing proves nothing.
    let mut empty = Report::started_at(
        "fdmutex",
        Mode::Free,
        1,
        time::from_unix_ms(1_700_000_000_000),
    );
    empty.finish(Duration::from_millis(3));
    let v = verdict::judge(&[], &inputs(&[empty])).expect("judge");
    assert!(
        matches!(&v.problems[..], [Problem::Empty { .. }]),
        "{:?}",
        v.problems
    );
    assert!(v.reason().contains("ran no cases"), "{}", v.reason());

    // Several regressions: still one line, counting the rest.
    let mut m = matrix(Some("go2009-refcount"));
    m.remove(0);
    let v = verdict::judge(&inputs(&m), &[]).expect("judge");
    assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
    assert!(
        v.reason().ends_with("(and 1 more regression)"),
        "{}",
        v.reason()
    );
    assert!(!v.reason().contains('\n'));
}

#[test]
fn fdmutex_must_be_checked_on_both_wait_paths() {
    // The matrix ran fdmutex on the direct path only.
    let m: Vec<Report> = matrix(None)
        .into_iter()
        .filter(|r| !(r.variant == "fdmutex" && r.wait == Some(WaitPath::Server)))
        .collect();
    let v = verdict::judge(&inputs(&m), &[]).expect("judge");
    assert_eq!(
        v.problems,
        vec![Problem::MissingWaitPath {
            variant: "fdmutex".into(),
            wait: WaitPath::Server
        }]
    );
    assert!(
        v.reason()
            .contains("the matrix has no report for fdmutex on the server wait path"),
        "{}",
        v.reason()
    );
    // A violation on the server path is judged like any other, and the
    // table names the path.
    let mut m = matrix(None);
    m[1] = report(
        "fdmutex",
        1_700_000_002_000,
        Some((ViolationKind::FdReuse, 0)),
    );
    m[1].wait = Some(WaitPath::Server);
    let v = verdict::judge(&inputs(&m), &[]).expect("judge");
    assert!(
        matches!(&v.problems[..], [Problem::Violated { variant, .. }] if variant == "fdmutex"),
        "{:?}",
        v.problems
    );
    assert!(
        v.details().contains("fdmutex            server"),
        "{}",
        v.details()
    );
}

#[test]
fn sharded_run_reports_must_be_complete() {
    let shard = |i: u32, t: u64| {
        let mut r = report("fdmutex", t, None);
        r.wait = Some(WaitPath::Direct);
        r.shard = Some(ShardRef { index: i, count: 3 });
        for s in &mut r.scenarios {
            s.name.push_str(&format!("_{i}"));
        }
        r
    };
    let all = [
        shard(1, 1_700_000_000_000),
        shard(2, 1_700_000_001_000),
        shard(3, 1_700_000_002_000),
    ];
    let v = verdict::judge(&[], &inputs(&all)).expect("judge");
    assert!(v.passed(), "{:?}", v.problems);
    assert_eq!(v.rows.len(), 1, "the three shards are judged as one run");

    let v = verdict::judge(&[], &inputs(&[all[0].clone(), all[2].clone()])).expect("judge");
    assert!(
        matches!(&v.problems[..], [Problem::Incomplete { what, .. }] if what == "shard 2/3 missing"),
        "{:?}",
        v.problems
    );
    assert!(
        v.reason().contains("incomplete: shard 2/3 missing"),
        "{}",
        v.reason()
    );

    // A shard given twice is bad input, not a verdict.
    let twice = [
        all[0].clone(),
        all[1].clone(),
        all[1].clone(),
        all[2].clone(),
    ];
    let e = verdict::judge(&[], &inputs(&twice)).expect_err("duplicate");
    assert!(
        e.contains("shard 2/3 of fdmutex controlled direct is given twice"),
        "{e}"
    );
}

#[test]
fn matrix_shards_are_merged_before_judging() {
    // Two shards of one matrix: closeack is caught only in the second.
    let mut shard1 = matrix(Some("go2009-closeack"));
    let shard2: Vec<Report> = matrix(None)
        .into_iter()
        .map(|mut r| {
            for s in &mut r.scenarios {
                s.name.push_str("_b");
            }
            r
        })
        .collect();
    let mut shard2_clean_closeack = shard2.clone();
    for r in &mut shard2_clean_closeack {
        if r.variant == "go2009-closeack" {
            *r = report("go2009-closeack", 1_700_000_900_000, None);
            r.wait = Some(WaitPath::Server);
        }
    }
    shard1.extend(shard2);
    let v = verdict::judge(&inputs(&shard1), &[]).expect("judge");
    assert!(v.passed(), "{:?}", v.problems);
    assert_eq!(v.rows.len(), 5);
    assert!(v.rows.iter().all(|r| r.cases == 40), "{:?}", v.rows);

    let mut both_blind = matrix(Some("go2009-closeack"));
    both_blind.extend(shard2_clean_closeack);
    let v = verdict::judge(&inputs(&both_blind), &[]).expect("judge");
    assert!(
        matches!(&v.problems[..], [Problem::Escaped { variant, .. }] if variant == "go2009-closeack"),
        "{:?}",
        v.problems
    );
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bogus = dir.path().join("bogus.json");
    std::fs::write(&bogus, "{\"schema\": \"netfd-harness/1\"}\n").expect("write");
    let out = verdict_cmd(&["--run", bogus.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bogus.json") && err.contains("not a harness report"),
        "{err}"
    );

    let out = verdict_cmd(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--matrix PATH and/or --run PATH"));

    let out = verdict_cmd(&[
        "--matrix",
        dir.path().join("nowhere").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no such file or directory"));
}
