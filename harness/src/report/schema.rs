//! Validation of report files against `reports/schema.json`.
//!
//! The schema is compiled into the crate, so validation works from any
//! working directory. Tests validate every report they write with
//! [`validate_report_file`].

use std::path::Path;

use serde_json::Value;

/// The text of `reports/schema.json` (JSON Schema draft 2020-12).
pub const SCHEMA_JSON: &str = include_str!("../../../reports/schema.json");

const SCHEMA_URL: &str = "urn:netfd-harness:report-schema";

/// Validate a JSON value against the report schema. The error is one line
/// listing each failing location and why.
pub fn validate_report_value(instance: &Value) -> Result<(), String> {
    let schema: Value = serde_json::from_str(SCHEMA_JSON)
        .map_err(|e| format!("reports/schema.json is not JSON: {e}"))?;
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V2020_12);
    compiler
        .add_resource(SCHEMA_URL, schema)
        .map_err(|e| format!("reports/schema.json: {e}"))?;
    let index = compiler
        .compile(SCHEMA_URL, &mut schemas)
        .map_err(|e| format!("reports/schema.json does not compile: {e:#}"))?;
    match schemas.validate(instance, index) {
        Ok(()) => Ok(()),
        Err(e) => {
            let mut leaves = Vec::new();
            collect_leaves(&e, &mut leaves);
            Err(leaves.join("; "))
        }
    }
}

fn collect_leaves(e: &boon::ValidationError<'_, '_>, out: &mut Vec<String>) {
    if e.causes.is_empty() {
        let at = e.instance_location.to_string();
        let at = if at.is_empty() { "/".to_owned() } else { at };
        out.push(format!("at {at}: {}", e.kind).replace('\n', " "));
    } else {
        for c in &e.causes {
            collect_leaves(c, out);
        }
    }
}

/// Validate JSON text against the report schema.
pub fn validate_report_str(text: &str) -> Result<(), String> {
    let instance: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    validate_report_value(&instance)
}

/// Validate a report file against the report schema. The error is one line
/// that starts with the file name.
pub fn validate_report_file(path: impl AsRef<Path>) -> Result<(), String> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    validate_report_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_compiles_and_rejects_garbage() {
        let err = validate_report_value(&serde_json::json!({"schema": 1})).expect_err("invalid");
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("at /"), "{err}");
    }
}
