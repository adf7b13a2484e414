//! Reports: every field written, validated against `reports/schema.json`
//! with a real JSON Schema validator; atomic writing; JUnit XML parsed back;
//! shard merging; the terminal summary.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use harness::report::{
    self, junit, schema, summary, time, Event, Host, Mode, Report, ScenarioReport, Violation,
    ViolationKind,
};

/// A report with every field populated, including optional ones.
fn full_report(variant: &str, start_ms: u64) -> Report {
    let mut r = Report::started_at(variant, Mode::Controlled, 42, time::from_unix_ms(start_ms));
    r.host = Host {
        os: "Linux".into(),
        kernel: "6.1.0-test".into(),
        cpus: 2,
        fd_limit: Some(20000),
    };

    let mut clean = ScenarioReport::new(
        "close_parked_read_tcp4",
        "scenarios/close_parked_read_tcp4.json",
    );
    clean.cases = 100;
    clean.syscalls_checked = 2400;
    for k in ViolationKind::ALL {
        clean.record_checks(k, 100);
    }

    let mut dirty = ScenarioReport::new("double_close", "scenarios/double_close.json");
    dirty.cases = 50;
    dirty.syscalls_checked = 900;
    for k in ViolationKind::ALL {
        dirty.record_checks(k, 50);
    }
    let mut v = Violation::new(
        ViolationKind::FdReuse,
        7,
        12,
        "read conn=0 bytes=64",
        "reader",
        17,
        0xdead_beef,
    );
    v.holder = Some(15);
    v.schedule = vec![0, 1, 1, 0, 2];
    v.trace = vec![
        Event {
            seq: 1,
            thread: "reader".into(),
            owner: 12,
            fd: None,
            what: "after_closed_check".into(),
            result: None,
        },
        Event {
            seq: 2,
            thread: "closer".into(),
            owner: 12,
            fd: Some(7),
            what: "close".into(),
            result: Some("ok 0".into()),
        },
        Event {
            seq: 3,
            thread: "churner".into(),
            owner: 15,
            fd: Some(7),
            what: "socket".into(),
            result: Some("ok 7".into()),
        },
        Event {
            seq: 4,
            thread: "reader".into(),
            owner: 12,
            fd: Some(7),
            what: "read".into(),
            result: Some("EAGAIN".into()),
        },
    ];
    v.replay = report::replay_command(Path::new("reports/cases/double close <1>.json"), variant);
    v.message = "read(7) for #12 reached #15's socket: <&> \"quoted\" 'single' \u{7}bell".into();
    v.evidence = Some("inode 1001 (owner #12) vs inode 1002 (now #15)".into());
    dirty.add_violation(v);
    let mut hang = Violation::new(
        ViolationKind::Hang,
        -1,
        12,
        "read conn=0 bytes=64",
        "reader",
        18,
        7,
    );
    hang.message = "read did not return within 2s after Close".into();
    hang.replay = "harness replay x.json".into();
    dirty.add_violation(hang);

    r.scenarios = vec![clean, dirty];
    r.finish(Duration::from_millis(1234));
    r
}

#[test]
fn full_report_validates_against_the_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = full_report("naive-close", 1_714_567_890_123);
    assert_eq!(r.summary.cases, 150);
    assert_eq!(r.summary.syscalls_checked, 3300);
    assert_eq!(r.summary.violations, 2);
    assert!(!r.summary.passed);

    let path = r.write_atomic(dir.path()).expect("write");
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some("20240501T125130.123Z-naive-close.json")
    );
    schema::validate_report_file(&path).unwrap_or_else(|e| panic!("{e}"));

    // The file is exactly the report, and it carries every field.
    let back = Report::read(&path).expect("read");
    assert_eq!(back, r);
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("read")).expect("json");
    let viol = &v["scenarios"][1]["violations"][0];
    for key in [
        "kind", "fd", "owner", "holder", "op", "thread", "case", "seed", "schedule", "trace",
        "replay", "message", "evidence",
    ] {
        assert!(viol.get(key).is_some(), "violation lacks {key}");
    }
    assert_eq!(viol["kind"], "fd_reuse");
    assert_eq!(viol["trace"][0]["fd"], serde_json::Value::Null);
    assert_eq!(
        v["scenarios"][1]["assertions"]["no_fd_reuse"]["passed"],
        false
    );
    assert_eq!(v["scenarios"][1]["assertions"]["no_hang"]["passed"], false);
    assert_eq!(v["scenarios"][1]["assertions"]["no_leak"]["passed"], true);
    assert_eq!(v["scenarios"][1]["assertions"]["no_leak"]["count"], 50);
    assert_eq!(v["schema"], report::SCHEMA_VERSION);

    // A freshly detected host and a clean report validate too.
    let mut clean = Report::new("fdmutex", Mode::Free, u64::MAX);
    clean.finish(Duration::ZERO);
    assert!(clean.summary.passed);
    let p = clean.write_atomic(dir.path()).expect("write");
    schema::validate_report_file(&p).unwrap_or_else(|e| panic!("{e}"));
    let custom = Report::new("custom:racy-wrapper", Mode::Free, 1);
    schema::validate_report_file(custom.write_atomic(dir.path()).expect("write"))
        .expect("custom variant");
}

#[test]
fn schema_is_strict() {
    let good = serde_json::to_value(full_report("fdmutex", 0)).expect("value");
    schema::validate_report_value(&good).expect("valid");

    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "unknown top-level field",
            Box::new(|v| v["extra"] = 1.into()),
        ),
        (
            "missing summary",
            Box::new(|v| {
                v.as_object_mut().map(|o| o.remove("summary"));
            }),
        ),
        ("bad mode", Box::new(|v| v["mode"] = "turbo".into())),
        ("bad variant", Box::new(|v| v["variant"] = "mystery".into())),
        (
            "bad schema version",
            Box::new(|v| v["schema"] = "netfd-harness/0".into()),
        ),
        (
            "bad started_at",
            Box::new(|v| v["started_at"] = "yesterday".into()),
        ),
        ("negative seed", Box::new(|v| v["seed"] = (-1).into())),
        (
            "bad kind",
            Box::new(|v| v["scenarios"][1]["violations"][0]["kind"] = "oops".into()),
        ),
        (
            "violation without replay",
            Box::new(|v| {
                v["scenarios"][1]["violations"][0]
                    .as_object_mut()
                    .map(|o| o.remove("replay"));
            }),
        ),
        (
            "unknown assertion",
            Box::new(|v| {
                v["scenarios"][0]["assertions"]["no_gremlins"] =
                    serde_json::json!({"passed": true, "count": 0})
            }),
        ),
        (
            "unknown event field",
            Box::new(|v| v["scenarios"][1]["violations"][0]["trace"][0]["color"] = "red".into()),
        ),
        ("zero cpus", Box::new(|v| v["host"]["cpus"] = 0.into())),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        let err = schema::validate_report_value(&bad).expect_err(what);
        assert!(!err.contains('\n'), "{what}: {err}");
    }
    // The one-line error names the failing location.
    let mut bad = good.clone();
    bad["scenarios"][1]["violations"][0]["kind"] = "oops".into();
    let err = schema::validate_report_value(&bad).expect_err("bad kind");
    assert!(err.contains("/scenarios/1/violations/0/kind"), "{err}");

    // validate_report_file names the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("r.json");
    fs::write(&p, bad.to_string()).expect("write");
    let err = schema::validate_report_file(&p).expect_err("bad");
    assert!(err.starts_with(&p.display().to_string()), "{err}");
}

#[test]
fn write_atomic_never_clobbers_and_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = full_report("fdmutex", 1_000);
    let a = r.write_atomic(dir.path()).expect("first");
    let b = r.write_atomic(dir.path()).expect("second");
    assert_ne!(a, b);
    assert!(
        b.to_string_lossy().ends_with("-fdmutex-1.json"),
        "{}",
        b.display()
    );
    let names: Vec<String> = fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary files remain: {names:?}");

    // Missing directories are created.
    let nested = dir.path().join("x").join("y");
    let p = r.write_atomic(&nested).expect("nested");
    assert!(p.starts_with(&nested));

    // A directory that cannot exist (its parent is a file): a one-line error
    // that names it, and nothing written.
    let file = dir.path().join("plain-file");
    fs::write(&file, b"").expect("file");
    let err = r
        .write_atomic(file.join("reports"))
        .expect_err("cannot create");
    let msg = err.to_string();
    assert!(msg.contains("plain-file") && !msg.contains('\n'), "{msg}");
    assert_eq!(fs::read(&file).expect("read"), b"");
}

/// Parse the XML with quick-xml, checking it is well formed, and collect
/// per-testcase failures as (classname, name) -> [(type, message, body)].
#[allow(clippy::type_complexity)]
fn parse_junit(
    xml: &str,
) -> (
    HashMap<(String, String), Vec<(String, String, String)>>,
    usize,
) {
    use quick_xml::events::Event as X;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut cases: HashMap<(String, String), Vec<(String, String, String)>> = HashMap::new();
    let mut current: Option<(String, String)> = None;
    let mut failure: Option<(String, String, String)> = None;
    let mut suites = 0;
    let attrs = |e: &quick_xml::events::BytesStart<'_>| -> HashMap<String, String> {
        e.attributes()
            .map(|a| {
                let a = a.expect("attribute");
                (
                    String::from_utf8(a.key.as_ref().to_vec()).expect("utf8"),
                    a.unescape_value().expect("unescape").into_owned(),
                )
            })
            .collect()
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            X::Start(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf8");
                let a = attrs(&e);
                match name.as_str() {
                    "testsuite" => suites += 1,
                    "testcase" => {
                        let key = (a["classname"].clone(), a["name"].clone());
                        cases.entry(key.clone()).or_default();
                        current = Some(key);
                    }
                    "failure" => {
                        failure = Some((a["type"].clone(), a["message"].clone(), String::new()))
                    }
                    _ => {}
                }
                stack.push(name);
            }
            X::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf8");
                let a = attrs(&e);
                if name == "testcase" {
                    cases
                        .entry((a["classname"].clone(), a["name"].clone()))
                        .or_default();
                }
            }
            X::Text(t) => {
                if let Some(f) = failure.as_mut() {
                    f.2.push_str(&t.unescape().expect("text"));
                }
            }
            X::End(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf8");
                assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "balanced tags");
                if name == "failure" {
                    let f = failure.take().expect("open failure");
                    let key = current.clone().expect("inside a testcase");
                    cases.entry(key).or_default().push(f);
                }
            }
            X::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    (cases, suites)
}

#[test]
fn junit_is_well_formed_and_carries_replay_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = vec![full_report("fdmutex", 0), full_report("naive-close", 5)];
    let path = dir.path().join("junit.xml");
    junit::write(&reports, &path).expect("write");
    let xml = fs::read_to_string(&path).expect("read");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    let (cases, suites) = parse_junit(&xml);
    assert_eq!(suites, 2);
    // One testcase per scenario x variant.
    assert_eq!(cases.len(), 4);
    let failures = &cases[&(
        "netfd-harness.naive-close.controlled".to_owned(),
        "double_close".to_owned(),
    )];
    assert_eq!(failures.len(), 2, "one failure per violation");
    let (kind, message, body) = &failures[0];
    assert_eq!(kind, "fd_reuse");
    // Escaped characters come back intact; the control character is shown.
    assert!(
        message.contains("<&> \"quoted\" 'single' \\u{7}bell"),
        "{message}"
    );
    let replay = report::replay_command(
        Path::new("reports/cases/double close <1>.json"),
        "naive-close",
    );
    assert!(message.contains(&replay), "{message}");
    assert!(body.contains(&format!("replay: {replay}")), "{body}");
    assert!(body.contains("holder: #15"), "{body}");
    assert!(body.contains("schedule: [0,1,1,0,2]"), "{body}");
    assert!(body.contains("after_closed_check"), "{body}");
    assert!(cases[&(
        "netfd-harness.fdmutex.controlled".to_owned(),
        "close_parked_read_tcp4".to_owned()
    )]
        .is_empty());
    // Rewriting replaces the file atomically.
    junit::write(&reports[..1], &path).expect("rewrite");
    let (cases, _) = parse_junit(&fs::read_to_string(&path).expect("read"));
    assert_eq!(cases.len(), 2);
    assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
}

#[test]
fn merge_sums_shards() {
    let a = full_report("naive-close", 10_000);
    let mut b = full_report("naive-close", 11_000);
    b.scenarios[0].cases = 7;
    b.scenarios
        .push(ScenarioReport::new("only_in_b", "scenarios/only_in_b.json"));
    b.recompute_summary();
    let merged = Report::merge(vec![b.clone(), a.clone()]).expect("merge");

    assert_eq!(merged.started_at, a.started_at, "earliest start");
    // Shard a: 10.000 + 1.234; shard b: 11.000 + 1.234 -> span 2.234 s.
    assert_eq!(merged.duration_ms, 2234);
    assert_eq!(merged.scenarios.len(), 3);
    assert_eq!(merged.scenarios[0].cases, 107);
    assert_eq!(merged.scenarios[1].cases, 100);
    assert_eq!(merged.scenarios[1].violations.len(), 4);
    assert_eq!(merged.scenarios[1].assertions.no_leak.count, 100);
    assert!(merged.scenarios[1].assertions.no_leak.passed);
    assert!(!merged.scenarios[1].assertions.no_fd_reuse.passed);
    assert_eq!(merged.summary.cases, a.summary.cases + b.summary.cases);
    assert_eq!(
        merged.summary.syscalls_checked,
        a.summary.syscalls_checked + b.summary.syscalls_checked
    );
    assert_eq!(merged.summary.violations, 4);
    assert!(!merged.summary.passed);
    schema::validate_report_value(&serde_json::to_value(&merged).expect("value")).expect("schema");

    // Merging is only for shards of one run.
    let other = full_report("fdmutex", 0);
    let err = Report::merge(vec![a.clone(), other]).expect_err("variant");
    assert!(err.to_string().contains("different variant"), "{err}");
    let mut free = a.clone();
    free.mode = Mode::Free;
    let err = Report::merge(vec![a.clone(), free]).expect_err("mode");
    assert!(err.to_string().contains("different mode"), "{err}");
    assert!(Report::merge(Vec::new()).is_err());
    assert_eq!(Report::merge(vec![a.clone()]).expect("one"), a);
}

#[test]
fn summary_reads_at_a_glance() {
    let r = full_report("naive-close", 0);
    let text = summary::render(&r, false);
    assert!(!text.contains('\x1b'), "no colour when asked for none");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("naive-close")
            && lines[0].contains("controlled")
            && lines[0].contains("seed 42")
    );
    assert!(
        lines[1].contains("PASS")
            && lines[1].contains("close_parked_read_tcp4")
            && lines[1].contains("100 cases")
    );
    assert!(
        lines[2].contains("FAIL")
            && lines[2].contains("double_close")
            && lines[2].contains("2 violations")
    );
    assert!(lines[2].contains("fd_reuse") && lines[2].contains("hang"));
    assert!(text.contains("fd_reuse  double_close  fd 7  owner #12  holder #15  op read conn=0 bytes=64  thread reader"));
    assert!(text.contains(
        "replay: harness replay 'reports/cases/double close <1>.json' --variant naive-close"
    ));
    let last = lines.last().expect("totals");
    assert!(
        last.starts_with("FAIL")
            && last.contains("150 cases")
            && last.contains("2 violations in 1 of 2 scenarios")
    );

    // Control characters from recorded text are shown escaped.
    assert!(text.contains("'single' \\u{7}bell") && !text.contains('\u{7}'));
    assert!(text.contains("fd -  owner #12"), "negative fd shown as -");

    let coloured = summary::render(&r, true);
    assert!(coloured.contains("\x1b[1;31mFAIL\x1b[0m"));
    assert!(coloured.contains("\x1b[1;32mPASS\x1b[0m"));

    // Long lists are cut, with the rest counted.
    let mut many = r.clone();
    let v = many.scenarios[1].violations[0].clone();
    for _ in 0..30 {
        many.scenarios[1].add_violation(v.clone());
    }
    many.recompute_summary();
    let text = summary::render(&many, false);
    assert!(text.contains(&format!(
        "... and {} more in the JSON report",
        32 - summary::MAX_LISTED
    )));
}
