//! ONNX Runtime as the numerical reference (`models/ort_reference.py`), for
//! the parity tests of the component (host) and of native inference (plugin).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One text as ONNX Runtime saw it: the bundle tokenizer's ids and the logits.
#[derive(Debug, Clone)]
pub struct Row {
    pub ids: Vec<u32>,
    pub logits: Vec<f64>,
}

/// ONNX Runtime's result for each of `texts` on the bundle in `model`, run
/// by `python` (the project's venv) from the repository at `repo`; `batch`
/// runs them as one padded batch instead of one at a time. Panics with the
/// script's stderr when it fails: a test without its reference cannot pass.
pub fn reference(python: &Path, repo: &Path, model: &Path, texts: &[String], batch: bool) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("a temp dir for the texts");
    let file = dir.path().join("texts.json");
    std::fs::write(&file, serde_json::to_string(texts).expect("texts as JSON")).expect("writing the texts");
    let mut cmd = Command::new(python);
    cmd.arg(repo.join("models/ort_reference.py")).arg("--model").arg(model).arg("--texts-file").arg(&file);
    if batch {
        cmd.arg("--batch");
    }
    let out = cmd.output().expect("running the ORT reference");
    assert!(out.status.success(), "ort_reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("reference JSON");
    let numbers = |v: &Value| -> Vec<f64> { v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect() };
    rows.iter().map(|r| Row { ids: numbers(&r["ids"]).into_iter().map(|i| i as u32).collect(), logits: numbers(&r["logits"]) }).collect()
}
