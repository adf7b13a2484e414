//! Strict loading: decode, validate, and name file:line:column on error.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::span::{self, Node};
use super::Scenario;

/// Scenario files larger than this are refused before parsing.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// What went wrong, broadly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioErrorKind {
    /// The file or directory could not be read.
    Io,
    /// Not JSON.
    Syntax,
    /// JSON, but not a scenario: unknown field or op, missing field, wrong type.
    Format,
    /// A scenario that breaks a semantic rule ([`Scenario::validate`]).
    Invalid,
    /// Two files in one run use the same scenario name.
    Duplicate,
}

/// A scenario that could not be loaded. Its `Display` is one line:
/// `FILE:LINE:COLUMN: what` (or `FILE: what` when there is no position, as
/// for an unreadable file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    /// 1-based, in characters; 0 when the error is about the file as a whole.
    pub column: usize,
    pub kind: ScenarioErrorKind,
    /// One line, without the position prefix.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ScenarioError {}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl ScenarioError {
    fn new(file: &Path, kind: ScenarioErrorKind, message: impl AsRef<str>) -> ScenarioError {
        ScenarioError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            kind,
            message: one_line(message.as_ref()),
        }
    }

    fn at(
        file: &Path,
        text: &str,
        offset: usize,
        kind: ScenarioErrorKind,
        message: impl AsRef<str>,
    ) -> ScenarioError {
        let (line, column) = span::line_col(text, offset);
        ScenarioError {
            line,
            column,
            ..ScenarioError::new(file, kind, message)
        }
    }
}

/// Load and validate one scenario file.
pub fn load_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
    let path = path.as_ref();
    let meta = fs::metadata(path).map_err(|e| {
        ScenarioError::new(path, ScenarioErrorKind::Io, format!("cannot read: {e}"))
    })?;
    if !meta.is_file() {
        return Err(ScenarioError::new(
            path,
            ScenarioErrorKind::Io,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ScenarioError::new(
            path,
            ScenarioErrorKind::Io,
            format!(
                "file is {} bytes; scenario files are at most {MAX_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    let bytes = fs::read(path).map_err(|e| {
        ScenarioError::new(path, ScenarioErrorKind::Io, format!("cannot read: {e}"))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(e.as_bytes());
        ScenarioError::at(
            path,
            &text,
            offset,
            ScenarioErrorKind::Syntax,
            "file is not UTF-8",
        )
    })?;
    parse_str(&text, path)
}

/// Load every `*.json` file directly inside `dir` (not recursively), in file
/// name order. Stops at the first bad file: nothing is run from a directory
/// with a bad file in it. Scenario names must be unique.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
    let dir = dir.as_ref();
    let files = json_files(dir)?;
    if files.is_empty() {
        return Err(ScenarioError::new(
            dir,
            ScenarioErrorKind::Io,
            "no *.json scenario files in this directory",
        ));
    }
    load_all(files)
}

/// Load scenarios from files and directories (directories as [`load_dir`]),
/// in the order given. Scenario names must be unique over all of them.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
    let mut files = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            let found = json_files(p)?;
            if found.is_empty() {
                return Err(ScenarioError::new(
                    p,
                    ScenarioErrorKind::Io,
                    "no *.json scenario files in this directory",
                ));
            }
            files.extend(found);
        } else {
            files.push(p.to_path_buf());
        }
    }
    load_all(files)
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let io_err = |e: std::io::Error| {
        ScenarioError::new(
            dir,
            ScenarioErrorKind::Io,
            format!("cannot list directory: {e}"),
        )
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_all(files: Vec<PathBuf>) -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let scenario = load_file(&file)?;
        if let Some(first) = seen.get(&scenario.name) {
            // Point at the name in the second file.
            let text = fs::read_to_string(&file).unwrap_or_default();
            let offset = span::parse(&text).map_or(0, |root| root.locate("/name"));
            return Err(ScenarioError::at(
                &file,
                &text,
                offset,
                ScenarioErrorKind::Duplicate,
                format!(
                    "scenario name {:?} is already used by {}",
                    scenario.name,
                    first.display()
                ),
            ));
        }
        seen.insert(scenario.name.clone(), file.clone());
        out.push((file, scenario));
    }
    Ok(out)
}

/// Decode and validate scenario text; `file` is only used in errors.
pub fn parse_str(text: &str, file: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
    let file = file.as_ref();
    let scenario: Scenario = match serde_json::from_str(text) {
        Ok(s) => s,
        Err(e) => return Err(decode_error(file, text, &e)),
    };
    if let Err(errors) = scenario.validate() {
        let root = span::parse(text);
        // Report the error that comes first in the file.
        let located = errors.into_iter().map(|inv| {
            let offset = root.as_ref().map_or(0, |r| r.locate(&inv.pointer));
            (offset, inv)
        });
        if let Some((offset, inv)) = located.min_by_key(|(o, _)| *o) {
            return Err(ScenarioError::at(
                file,
                text,
                offset,
                ScenarioErrorKind::Invalid,
                format!("{} ({})", inv.message, inv.pointer),
            ));
        }
    }
    Ok(scenario)
}

/// serde_json's message without its " at line L column C" tail.
fn bare_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&tail).unwrap_or(&full).to_owned()
}

/// The name between the first pair of backticks in a serde message.
fn quoted(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn decode_error(file: &Path, text: &str, e: &serde_json::Error) -> ScenarioError {
    use serde_json::error::Category;
    let message = bare_message(e);
    match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => {
            let (line, column) = (e.line(), e.column().max(1));
            let offset = span::offset_of(text, line, column);
            let message = if matches!(e.classify(), Category::Eof) {
                format!("invalid JSON: {message} (the file ends too early)")
            } else {
                format!("invalid JSON: {message}")
            };
            ScenarioError::at(file, text, offset, ScenarioErrorKind::Syntax, message)
        }
        Category::Data => {
            // serde names enum values "variants"; here they are ops or values.
            let message = match message.strip_prefix("unknown variant ") {
                Some(rest) if rest.contains("`dial`") => format!("unknown op {rest}"),
                Some(rest) => format!("unknown value {rest}"),
                None => message,
            };
            let root = span::parse(text);
            // serde_json's position, when it has one. Errors raised inside a
            // tagged op (which serde buffers) have none, or point past the op.
            let reported = (e.line() > 0).then(|| span::offset_of(text, e.line(), e.column()));
            let offset = match &root {
                Some(root) => match first_bad_op(root, text) {
                    Some(op) if reported.is_none_or(|at| op.start <= at) => {
                        refine(op, op.start, &message).unwrap_or(op.start)
                    }
                    _ => reported
                        .map(|at| refine(root, at, &message).unwrap_or(at))
                        .unwrap_or(root.start),
                },
                None => reported.unwrap_or(0),
            };
            let pointer = root
                .as_ref()
                .and_then(|r| op_label(r, offset))
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            ScenarioError::at(
                file,
                text,
                offset,
                ScenarioErrorKind::Format,
                format!("{message}{pointer}"),
            )
        }
    }
}

/// Narrow an error position to the key or op value the message names.
fn refine(root: &Node, at: usize, message: &str) -> Option<usize> {
    let obj = root.innermost_object(at)?;
    if let Some(field) = quoted(message, "unknown field ") {
        return obj.member(&field).map(|m| m.key_start);
    }
    let unknown = quoted(message, "unknown op ").or_else(|| quoted(message, "unknown value "));
    if let Some(variant) = unknown {
        // The string value that names it: an op, a transport, a direction.
        let span::Value::Object(members) = &obj.value else {
            return None;
        };
        return members.iter().find_map(|m| match &m.node.value {
            span::Value::String(s) if *s == variant => Some(m.node.start),
            _ => None,
        });
    }
    if message.starts_with("missing field ") {
        return Some(obj.start);
    }
    None
}

/// The first op (in file order) that does not decode on its own.
fn first_bad_op<'a>(root: &'a Node, text: &str) -> Option<&'a Node> {
    let span::Value::Array(threads) = &root.member("threads")?.node.value else {
        return None;
    };
    threads
        .iter()
        .filter_map(|thread| match &thread.member("ops")?.node.value {
            span::Value::Array(ops) => Some(ops),
            _ => None,
        })
        .flatten()
        .find(|op| {
            text.get(op.start..op.end)
                .is_some_and(|slice| serde_json::from_str::<super::Op>(slice).is_err())
        })
}

/// `thread T op I` for an offset inside an op, for error messages.
fn op_label(root: &Node, offset: usize) -> Option<String> {
    let span::Value::Array(threads) = &root.member("threads")?.node.value else {
        return None;
    };
    for (t, thread) in threads.iter().enumerate() {
        let Some(ops) = thread.member("ops") else {
            continue;
        };
        let span::Value::Array(ops) = &ops.node.value else {
            continue;
        };
        for (i, op) in ops.iter().enumerate() {
            if (op.start..op.end).contains(&offset) {
                return Some(format!("thread {t} op {i}, /threads/{t}/ops/{i}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = ScenarioError::new(Path::new("a.json"), ScenarioErrorKind::Io, "x\n  y\r\nz");
        assert_eq!(e.to_string(), "a.json: x y z");
    }

    #[test]
    fn quoted_names() {
        assert_eq!(
            quoted("unknown field `zz`, expected `conn`", "unknown field ").as_deref(),
            Some("zz")
        );
        assert_eq!(quoted("missing field `op`", "unknown field "), None);
    }
}
