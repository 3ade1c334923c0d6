//! The plugin's model path run natively against the generated bundles:
//! raw logits versus ONNX Runtime, both CumSum forms, truncation.

use std::path::PathBuf;

use llma_sentiment_plugin::model::{Classifier, ModelError};
use llma_sentiment_plugin::types::Label;

fn env_path(var: &str) -> PathBuf {
    let p = PathBuf::from(std::env::var_os(var).unwrap_or_else(|| panic!("{var} is not set: run `make test`")));
    assert!(p.exists(), "{} does not exist: run `make build`", p.display());
    p
}

fn model(name: &str) -> PathBuf {
    env_path("LLMA_TEST_MODELS").join(name)
}

fn ort_logits(model: &PathBuf, texts: &[String], batch: bool) -> Vec<(Vec<u32>, Vec<f32>)> {
    let (python, repo) = (env_path("LLMA_TEST_PYTHON"), env_path("LLMA_TEST_REPO"));
    let rows = llma_fuzz_harness::ort::reference(&python, &repo, model, texts, batch);
    rows.into_iter().map(|r| (r.ids, r.logits.into_iter().map(|l| l as f32).collect())).collect()
}

fn texts() -> Vec<String> {
    let mut t: Vec<String> =
        ["I love this, thank you!", "this is broken and I hate it", "what time is the meeting", "naïve café ☕ 🙂", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    t.push("word ".repeat(3000));
    t
}

fn check_parity(name: &str) {
    let dir = model(name);
    let classifier = Classifier::load_dir(&dir).expect("bundle loads");
    let texts = texts();
    for (text, (ids, want)) in texts.iter().zip(ort_logits(&dir, &texts, false)) {
        let got_ids = classifier.tokenize(text).unwrap();
        assert_eq!(got_ids, ids, "token ids differ from python tokenizers");
        assert!(got_ids.len() <= classifier.config.max_tokens);
        let got = classifier.logits(&[got_ids]).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{name}: logits {got:?} vs ORT {want:?}");
        }
    }
    // Padded batch against ORT's own padded batch.
    let all_ids: Vec<Vec<u32>> = texts.iter().map(|t| classifier.tokenize(t).unwrap()).collect();
    let got = classifier.logits(&all_ids).unwrap();
    for (row, (_, want)) in ort_logits(&dir, &texts, true).iter().enumerate() {
        for (g, w) in got[row * 3..row * 3 + 3].iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{name} batch row {row}: {g} vs {w}");
        }
    }
}

#[test]
fn roberta_tiny_int64_cumsum_matches_ort() {
    check_parity("roberta-tiny");
}

#[test]
fn roberta_tiny_int32_cumsum_matches_ort() {
    check_parity("roberta-tiny-i32");
}

#[test]
fn default_bundle_matches_ort() {
    check_parity("default");
}

#[test]
fn the_int64_fixture_really_has_the_failing_pattern() {
    // Without the CumSum override tract fails on this graph: the fixture
    // keeps the real export's Cast(int64) -> CumSum.
    let bytes = std::fs::read(model("roberta-tiny").join("model.onnx")).unwrap();
    let plain = tract_onnx::prelude::Framework::model_for_read(&tract_onnx::onnx(), &mut std::io::Cursor::new(bytes));
    let failed = plain.and_then(|mut m| {
        use tract_onnx::prelude::*;
        let b = m.symbols.sym("batch");
        let s = m.symbols.sym("sequence");
        for ix in 0..m.inputs.len() {
            m.set_input_fact(ix, InferenceFact::dt_shape(i64::datum_type(), tvec![b.to_dim(), s.to_dim()]))?;
        }
        let plan = m.into_optimized()?.into_runnable()?;
        let t = || Tensor::from_shape(&[1usize, 3], &[0i64, 5, 2]).unwrap().into_tvalue();
        plan.run(tvec![t(), t()])
    });
    let err = failed.expect_err("plain tract-onnx should fail on Cast(int64) -> CumSum");
    assert!(format!("{err:#}").contains("TDim"), "{err:#}");
}

#[test]
fn bad_bundles_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    match Classifier::load_dir(dir.path()) {
        Err(ModelError::Load(m)) => assert!(m.contains("config.json"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    let src = model("default");
    for f in ["tokenizer.json", "config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("model.onnx"), b"not a model").unwrap();
    assert!(matches!(Classifier::load_dir(dir.path()), Err(ModelError::Load(_))));
}

#[test]
fn empty_and_oversized_batches_are_refused() {
    let c = Classifier::load_dir(&model("default")).unwrap();
    assert!(matches!(c.classify(&[]), Err(ModelError::InvalidArgument(_))));
    let many = vec!["hi".to_string(); llma_sentiment_plugin::batch::MAX_BATCH + 1];
    assert!(matches!(c.classify(&many), Err(ModelError::InvalidArgument(_))));
    let ok = c.classify(&["I love it".to_string()]).unwrap();
    assert_eq!(ok[0].label, Label::Positive);
}
