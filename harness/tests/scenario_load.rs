//! The scenario files load, and bad input gets a one-line error that names
//! the file, the line and the column.

use std::fs;
use std::path::{Path, PathBuf};

use harness::scenario::{
    self, Direction, Op, Scenario, ScenarioError, ScenarioErrorKind, ThreadSpec, Transport,
};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A valid scenario with a placeholder `@OPS@` for the second thread's ops.
const TEMPLATE: &str = r#"{
  "name": "t",
  "description": "A test scenario.",
  "transport": "tcp4",
  "connections": 1,
  "threads": [
    { "name": "reader", "ops": [
      { "op": "read", "conn": 0, "bytes": 64 }
    ] },
    { "name": "closer", "ops": [
      { "op": "yield" },
      @OPS@
    ] }
  ]
}
"#;

/// Write `text` to a fresh file and load it; the error must be one line
/// that starts with `FILE:LINE:COLUMN: `.
fn load_err(text: &str) -> (ScenarioError, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("case.json");
    fs::write(&path, text).expect("write");
    let err = scenario::load_file(&path).expect_err("must be rejected");
    let line = err.to_string();
    assert!(!line.contains('\n'), "not one line: {line}");
    let prefix = format!("{}:{}:{}: ", path.display(), err.line, err.column);
    assert!(
        line.starts_with(&prefix),
        "{line:?} should start with {prefix:?}"
    );
    assert!(err.line > 0 && err.column > 0, "{line}");
    (err, line)
}

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn pos_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("needle present");
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[test]
fn every_scenario_file_loads_and_validates() {
    let loaded = scenario::load_dir(scenarios_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.len() >= 12, "only {} scenario files", loaded.len());
    for (path, s) in &loaded {
        s.validate()
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        assert_eq!(
            s.name,
            stem,
            "{}: name should match the file",
            path.display()
        );
        assert!(
            s.description.ends_with('.'),
            "{}: description is a sentence",
            s.name
        );
        // Round trip through the saver's format.
        let again = scenario::parse_str(&s.to_json_pretty(), path).expect("round trip");
        assert_eq!(&again, s);
    }
}

#[test]
fn scenario_files_cover_the_required_shapes() {
    let loaded = scenario::load_dir(scenarios_dir()).expect("load");
    let all: Vec<&Scenario> = loaded.iter().map(|(_, s)| s).collect();
    let has = |pred: &dyn Fn(&Scenario) -> bool| all.iter().any(|s| pred(s));
    let ops = |s: &Scenario| -> Vec<Op> { s.threads.iter().flat_map(|t| t.ops.clone()).collect() };
    let has_op = |s: &Scenario, name: &str| ops(s).iter().any(|o| o.name() == name);
    for t in [
        Transport::Tcp4,
        Transport::Tcp6,
        Transport::Udp4,
        Transport::Unix,
        Transport::Unixgram,
    ] {
        assert!(has(&|s| s.transport == t), "no {t} scenario");
    }
    assert!(has(
        &|s| s.transport == Transport::Unix && has_op(s, "accept")
    ));
    assert!(has(&|s| s.transport.is_datagram() && has_op(s, "read_from")));
    assert!(has(&|s| has_op(s, "rebind")));
    assert!(has(&|s| has_op(s, "open")));
    assert!(has(&|s| has_op(s, "set_deadline") && has_op(s, "close")));
    assert!(has(&|s| has_op(s, "peer_close")));
    assert!(has(&|s| s.connections >= 16));
    assert!(has(&|s| s.schedule.is_some()));
    assert!(has(&|s| ops(s).iter().any(
        |o| matches!(o, Op::Write { bytes, .. } if *bytes >= 4 << 20)
    )));
    assert!(has(&|s| {
        s.threads
            .iter()
            .filter(|t| t.ops.iter().any(|o| matches!(o, Op::Close { .. })))
            .count()
            >= 2
    }));
    for origin in ["Go #35367", "Go #10527", "Go #59545"] {
        assert!(
            has(&|s| s.origin.as_deref().is_some_and(|o| o.contains(origin))),
            "no scenario from {origin}"
        );
    }
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let text = TEMPLATE.replace("@OPS@", r#"{ "op": "close", "conn": 0 },"#);
    let (err, line) = load_err(&text);
    assert_eq!(err.kind, ScenarioErrorKind::Syntax);
    // The trailing comma is detected at the `]` that follows it.
    let (l, _) = pos_of(&text, "\"conn\": 0 },");
    assert!(err.line == l || err.line == l + 1, "{line}");

    let (err, line) = load_err("{\n  \"name\": \"t\",\n  \"transport\": tcp4\n}");
    assert_eq!(err.kind, ScenarioErrorKind::Syntax);
    assert_eq!((err.line, err.column), (3, 16), "{line}");

    let (err, line) = load_err("{\n  \"name\": \"t\"");
    assert_eq!(err.kind, ScenarioErrorKind::Syntax);
    assert!(line.contains("ends too early"), "{line}");
}

#[test]
fn unknown_top_level_field() {
    let text = TEMPLATE
        .replace("@OPS@", r#"{ "op": "close", "conn": 0 }"#)
        .replace(
            "\"connections\": 1,",
            "\"connections\": 1,\n  \"conections\": 2,",
        );
    let (err, line) = load_err(&text);
    assert_eq!(err.kind, ScenarioErrorKind::Format);
    assert_eq!(
        (err.line, err.column),
        pos_of(&text, "\"conections\""),
        "{line}"
    );
    assert!(line.contains("unknown field `conections`"), "{line}");
}

#[test]
fn unknown_field_in_an_op() {
    let text = TEMPLATE.replace("@OPS@", r#"{ "op": "close", "conn": 0, "force": true }"#);
    let (err, line) = load_err(&text);
    assert_eq!(err.kind, ScenarioErrorKind::Format);
    assert_eq!((err.line, err.column), pos_of(&text, "\"force\""), "{line}");
    assert!(line.contains("unknown field `force`"), "{line}");
    assert!(line.contains("thread 1 op 1"), "{line}");

    // A unit-like op takes no fields either.
    let text = TEMPLATE.replace("@OPS@", r#"{ "op": "yield", "ms": 3 }"#);
    let (_, line) = load_err(&text);
    assert!(line.contains("unknown field `ms`"), "{line}");
}

#[test]
fn unknown_op() {
    let text = TEMPLATE.replace("@OPS@", r#"{ "op": "shutdown", "conn": 0 }"#);
    let (err, line) = load_err(&text);
    assert_eq!(err.kind, ScenarioErrorKind::Format);
    assert_eq!(
        (err.line, err.column),
        pos_of(&text, "\"shutdown\""),
        "{line}"
    );
    assert!(line.contains("unknown op `shutdown`"), "{line}");
}

#[test]
fn missing_and_mistyped_fields() {
    let text = TEMPLATE.replace(
        "@OPS@",
        r#"{ "op": "set_deadline", "conn": 0, "dir": "read" }"#,
    );
    let (err, line) = load_err(&text);
    assert_eq!(err.kind, ScenarioErrorKind::Format);
    assert!(line.contains("missing field `in_ms`"), "{line}");
    assert_eq!(
        (err.line, err.column),
        pos_of(&text, "{ \"op\": \"set_deadline\""),
        "{line}"
    );

    let text = TEMPLATE.replace(
        "@OPS@",
        r#"{ "op": "set_deadline", "conn": 0, "dir": "sideways", "in_ms": 1 }"#,
    );
    let (err, line) = load_err(&text);
    assert_eq!(
        (err.line, err.column),
        pos_of(&text, "\"sideways\""),
        "{line}"
    );

    let text = TEMPLATE.replace("@OPS@", r#"{ "op": "close", "conn": -1 }"#);
    let (err, line) = load_err(&text);
    assert_eq!(err.kind, ScenarioErrorKind::Format);
    assert_eq!(err.line, pos_of(&text, "\"conn\": -1").0, "{line}");

    let text = TEMPLATE
        .replace("@OPS@", r#"{ "op": "close", "conn": 0 }"#)
        .replace("\"tcp4\"", "\"sctp\"");
    let (err, line) = load_err(&text);
    assert_eq!((err.line, err.column), pos_of(&text, "\"sctp\""), "{line}");
    assert!(line.contains("unknown value `sctp`"), "{line}");
}

#[test]
fn conn_index_out_of_range() {
    let text = TEMPLATE.replace("@OPS@", r#"{ "op": "close", "conn": 3 }"#);
    let (err, line) = load_err(&text);
    assert_eq!(err.kind, ScenarioErrorKind::Invalid);
    assert_eq!(
        (err.line, err.column),
        pos_of(&text, "\"conn\": 3"),
        "{line}"
    );
    assert!(line.contains("conn 3 out of range"), "{line}");
    assert!(line.contains("/threads/1/ops/1/conn"), "{line}");
    assert!(
        line.contains("thread 1 (\"closer\") op 1 (close)"),
        "{line}"
    );
}

#[test]
fn read_from_on_tcp() {
    let text = TEMPLATE.replace("@OPS@", r#"{ "op": "read_from", "conn": 0, "bytes": 16 }"#);
    let (err, line) = load_err(&text);
    assert_eq!(err.kind, ScenarioErrorKind::Invalid);
    assert_eq!(
        (err.line, err.column),
        pos_of(&text, "\"op\": \"read_from\""),
        "{line}"
    );
    assert!(
        line.contains("read_from needs a datagram transport (udp4, udp6, unixgram)"),
        "{line}"
    );
}

#[test]
fn semantic_rules() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{ "op": "accept", "listener": 0, "conn": 0 }"#,
            "listener 0 out of range",
        ),
        (
            r#"{ "op": "rebind", "listener": 0 }"#,
            "listener 0 out of range",
        ),
        (r#"{ "op": "write", "conn": 0, "bytes": 0 }"#, "bytes is 0"),
        (r#"{ "op": "open", "count": 100000 }"#, "count is 100000"),
        (r#"{ "op": "sleep", "ms": 3600000 }"#, "ms is 3600000"),
        (
            r#"{ "op": "set_deadline", "conn": 0, "dir": "both", "in_ms": 99999999 }"#,
            "in_ms is 99999999",
        ),
        (
            r#"{ "op": "write_to", "conn": 0, "bytes": 8 }"#,
            "needs a datagram transport (udp4, udp6, unixgram)",
        ),
    ];
    for (op, want) in cases {
        let text = TEMPLATE.replace("@OPS@", op);
        let (err, line) = load_err(&text);
        assert_eq!(err.kind, ScenarioErrorKind::Invalid, "{line}");
        assert!(line.contains(want), "{op}: {line}");
        assert_eq!(err.line, pos_of(&text, op).0, "{line}");
    }

    // Top-level rules point at their field.
    let text = TEMPLATE
        .replace("@OPS@", r#"{ "op": "close", "conn": 0 }"#)
        .replace("\"t\"", "\"Bad Name\"");
    let (err, line) = load_err(&text);
    assert_eq!(
        (err.line, err.column),
        pos_of(&text, "\"name\": \"Bad"),
        "{line}"
    );

    let text = TEMPLATE
        .replace("@OPS@", r#"{ "op": "close", "conn": 0 }"#)
        .replace("\"closer\"", "\"reader\"");
    let (_, line) = load_err(&text);
    assert!(line.contains("is used by another thread"), "{line}");

    let text = TEMPLATE
        .replace("@OPS@", r#"{ "op": "close", "conn": 0 }"#)
        .replace(
            "\"connections\": 1,",
            "\"connections\": 1,\n  \"slots\": 1,",
        );
    let (_, line) = load_err(&text);
    assert!(line.contains("slot 1 is never filled"), "{line}");

    let text = TEMPLATE
        .replace("@OPS@", r#"{ "op": "close", "conn": 0 }"#)
        .replace("\n  ]\n}", "\n  ],\n  \"schedule\": [0, 1, 3]\n}");
    let (err, line) = load_err(&text);
    assert!(line.contains("schedule entry 2 names thread 3"), "{line}");
    assert_eq!(err.line, pos_of(&text, "\"schedule\"").0, "{line}");

    // UDP: no slots, no dial; peer ops only on pre-established connections.
    let text = r#"{
  "name": "u", "description": "UDP.", "transport": "udp4", "connections": 1, "slots": 1,
  "threads": [ { "name": "a", "ops": [ { "op": "dial", "listener": 0, "conn": 1 } ] } ]
}"#;
    let (_, line) = load_err(text);
    assert!(line.contains("slots must be 0"), "{line}");

    // unixgram follows UDP's rules: no listeners, no dial, no slots; the
    // datagram ops are its own.
    let text = r#"{
  "name": "g", "description": "Unix datagram.", "transport": "unixgram", "listeners": 1,
  "connections": 1,
  "threads": [ { "name": "a", "ops": [ { "op": "close_listener", "listener": 0 } ] } ]
}"#;
    let (_, line) = load_err(text);
    assert!(
        line.contains("transport unixgram has no listeners"),
        "{line}"
    );
    let text = r#"{
  "name": "g", "description": "Unix datagram.", "transport": "unixgram", "connections": 1,
  "threads": [ { "name": "a", "ops": [ { "op": "dial", "listener": 0, "conn": 0 } ] } ]
}"#;
    let (_, line) = load_err(text);
    assert!(line.contains("dial needs a stream transport"), "{line}");
    let text = r#"{
  "name": "g", "description": "Unix datagram.", "transport": "unixgram", "connections": 1,
  "threads": [ { "name": "a", "ops": [
    { "op": "peer_write", "conn": 0, "bytes": 65507 },
    { "op": "read_from", "conn": 0, "bytes": 65507 },
    { "op": "write_to", "conn": 0, "bytes": 16 }
  ] } ]
}"#;
    let s = scenario::parse_str(text, "g.json").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.transport, Transport::Unixgram);
    let (_, line) = load_err(&text.replace(
        "65507 },
    { \"op\": \"read_from",
        "65508 },
    { \"op\": \"read_from",
    ));
    assert!(line.contains("bytes is 65508, must be 1..=65507"), "{line}");

    let text = r#"{
  "name": "s", "description": "Slots.", "transport": "tcp4", "listeners": 1, "slots": 1,
  "threads": [ { "name": "a", "ops": [
    { "op": "dial", "listener": 0, "conn": 0 },
    { "op": "peer_write", "conn": 0, "bytes": 4 }
  ] } ]
}"#;
    let (err, line) = load_err(text);
    assert!(line.contains("is a slot"), "{line}");
    assert_eq!(err.line, 5, "{line}");

    let text = r#"{
  "name": "r", "description": "Rebind.", "transport": "tcp4", "listeners": 1,
  "threads": [
    { "name": "a", "ops": [ { "op": "close_listener", "listener": 0 } ] },
    { "name": "b", "ops": [ { "op": "rebind", "listener": 0 } ] }
  ]
}"#;
    let (err, line) = load_err(text);
    assert!(line.contains("must follow a close_listener"), "{line}");
    assert_eq!(err.line, 5, "{line}");
}

#[test]
fn validate_lists_every_broken_rule() {
    let s = Scenario {
        name: "x".into(),
        description: "Many problems.".into(),
        origin: None,
        transport: Transport::Tcp4,
        listeners: 0,
        connections: 1,
        slots: 0,
        threads_exit: false,
        alone: false,
        threads: vec![ThreadSpec {
            name: "a".into(),
            ops: vec![
                Op::Close { conn: 5 },
                Op::ReadFrom { conn: 0, bytes: 1 },
                Op::Accept {
                    listener: 0,
                    conn: 0,
                },
            ],
        }],
        schedule: None,
        expect: None,
    };
    let errors = s.validate().expect_err("invalid");
    let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        [
            "/threads/0/ops/0/conn",
            "/threads/0/ops/1/op",
            "/threads/0/ops/2/listener",
            "/threads/0/ops/2/conn"
        ]
    );
    assert!(errors[0]
        .to_string()
        .starts_with("/threads/0/ops/0/conn: thread 0 (\"a\") op 0 (close)"));
}

#[test]
fn round_trip_save_and_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, original) = scenario::load_dir(scenarios_dir())
        .expect("load")
        .into_iter()
        .find(|(_, s)| s.name == "set_deadline_read_close")
        .expect("present");
    let with = original.clone().with_schedule(vec![2, 0, 1, 1, 0]);
    let path = dir.path().join("saved.json");
    with.save(&path).expect("save");
    let back = scenario::load_file(&path).expect("reload");
    assert_eq!(back, with);
    assert_eq!(back.schedule.as_deref(), Some(&[2, 0, 1, 1, 0][..]));
    // null deadlines survive the trip as explicit nulls.
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.contains("\"in_ms\": null"), "{text}");
    assert!(back.threads.iter().flat_map(|t| &t.ops).any(|o| matches!(
        o,
        Op::SetDeadline {
            dir: Direction::Read,
            in_ms: None,
            ..
        }
    )));

    // Saving an invalid scenario is refused and writes nothing.
    let bad = with.clone().with_schedule(vec![9]);
    let bad_path = dir.path().join("bad.json");
    let err = bad.save(&bad_path).expect_err("invalid");
    assert!(err.to_string().contains("schedule entry 0"), "{err}");
    assert!(!bad_path.exists());
    let names: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
    assert_eq!(names.len(), 1, "only saved.json remains");
}

#[test]
fn load_dir_and_paths_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = scenario::load_dir(dir.path()).expect_err("empty");
    assert_eq!(err.kind, ScenarioErrorKind::Io);
    assert!(err.to_string().contains("no *.json"), "{err}");

    let missing = dir.path().join("missing.json");
    let err = scenario::load_file(&missing).expect_err("missing");
    assert_eq!(err.kind, ScenarioErrorKind::Io);
    assert!(err
        .to_string()
        .starts_with(&format!("{}: cannot read", missing.display())));

    // Duplicate names across files point at the second file's name.
    let text = TEMPLATE.replace("@OPS@", r#"{ "op": "close", "conn": 0 }"#);
    fs::write(dir.path().join("a.json"), &text).expect("write");
    fs::write(dir.path().join("b.json"), &text).expect("write");
    let err = scenario::load_dir(dir.path()).expect_err("duplicate");
    assert_eq!(err.kind, ScenarioErrorKind::Duplicate);
    assert_eq!(err.file, dir.path().join("b.json"));
    assert_eq!((err.line, err.column), (2, 3), "{err}");

    // load_paths mixes files and directories and keeps order.
    fs::remove_file(dir.path().join("b.json")).expect("rm");
    let one = scenarios_dir().join("double_close.json");
    let got = scenario::load_paths(&[one.clone(), dir.path().to_path_buf()]).expect("load");
    let names: Vec<&str> = got.iter().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(names, ["double_close", "t"]);

    // Not UTF-8.
    fs::write(dir.path().join("a.json"), b"{\n \"name\": \"\xff\" }").expect("write");
    let err = scenario::load_file(dir.path().join("a.json")).expect_err("utf8");
    assert_eq!((err.line, err.column), (2, 11), "{err}");
}

#[test]
fn descriptor_budget_counts_everything() {
    let loaded = scenario::load_dir(scenarios_dir()).expect("load");
    let many = loaded
        .iter()
        .find(|(_, s)| s.name == "many_conns_closed_at_once")
        .map(|(_, s)| s)
        .expect("present");
    // 32 pairs, one churn batch of 32, plus the margin.
    assert_eq!(many.descriptors_needed(), 32 * 2 + 32 + 16);
}
