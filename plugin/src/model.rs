//! A model bundle (standard HF ONNX export layout) loaded into tract.

use std::path::Path;

use serde_json::Value;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use tract_onnx::prelude::*;

use crate::batch::{passes, MAX_BATCH, PASS_TOKENS};
use crate::types::{Label, MessageResult, Scores};

/// RoBERTa's limit; used when the bundle does not say.
const DEFAULT_MAX_TOKENS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model bundle: {0}")]
    Load(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("inference: {0}")]
    Inference(String),
}

fn load_err(what: impl std::fmt::Display) -> ModelError {
    ModelError::Load(what.to_string())
}

/// What `config.json` (and `tokenizer_config.json`) tell us.
#[derive(Debug, Clone)]
pub struct BundleConfig {
    pub name: String,
    /// `labels[i]` is the label of logit `i`, from `id2label`.
    pub labels: [Label; 3],
    pub pad_id: i64,
    pub max_tokens: usize,
    pub precision: Precision,
}

/// How the bundle's matrix products with constant weights run: what its
/// config.json says under `llma_precision` (`"f32"` when absent, as in an
/// HF export; `"int8"`: quantised when the bundle loads, `crate::int8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl BundleConfig {
    pub fn parse(config_json: &str, tokenizer_config_json: Option<&str>, fallback_name: &str) -> Result<Self, ModelError> {
        let config: Value = serde_json::from_str(config_json).map_err(|e| load_err(format!("config.json: {e}")))?;
        let name = ["_name_or_path", "name_or_path", "name"]
            .iter()
            .find_map(|k| config.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .unwrap_or(fallback_name)
            .to_string();
        let id2label = config
            .get("id2label")
            .and_then(Value::as_object)
            .ok_or_else(|| load_err("config.json has no id2label object"))?;
        if id2label.len() != 3 {
            return Err(load_err(format!("id2label must have 3 classes, has {}", id2label.len())));
        }
        let mut slots: [Option<Label>; 3] = [None; 3];
        for (id, name) in id2label {
            let i: usize = id.parse().map_err(|_| load_err(format!("id2label key {id:?} is not an index")))?;
            let name = name.as_str().ok_or_else(|| load_err(format!("id2label[{id}] is not a string")))?;
            let label = Label::from_model_name(name)
                .ok_or_else(|| load_err(format!("id2label[{id}] = {name:?} is not negative/neutral/positive")))?;
            let slot = slots.get_mut(i).ok_or_else(|| load_err(format!("id2label index {i} out of range")))?;
            *slot = Some(label);
        }
        let labels = [slots[0], slots[1], slots[2]];
        let labels = match labels {
            [Some(a), Some(b), Some(c)] if a != b && b != c && a != c => [a, b, c],
            _ => return Err(load_err("id2label must name negative, neutral and positive once each")),
        };
        let pad_id = config.get("pad_token_id").and_then(Value::as_i64).unwrap_or(1);
        // RoBERTa reserves pad_id + 1 positions, hence 514 -> 512.
        let from_positions = config
            .get("max_position_embeddings")
            .and_then(Value::as_u64)
            .map(|p| if config.get("model_type").and_then(Value::as_str) == Some("roberta") { p.saturating_sub(2) } else { p });
        // HF writes a huge sentinel when the tokenizer has no limit of its own.
        let from_tokenizer = tokenizer_config_json
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .and_then(|t| t.get("model_max_length").and_then(Value::as_u64))
            .filter(|n| *n > 0 && *n <= 1 << 20);
        let max_tokens = match (from_tokenizer, from_positions) {
            (Some(t), Some(p)) => t.min(p),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => DEFAULT_MAX_TOKENS as u64,
        } as usize;
        if max_tokens < 2 {
            return Err(load_err(format!("max tokens {max_tokens} is too small")));
        }
        let precision = match config.get("llma_precision") {
            None => Precision::F32,
            Some(Value::String(p)) if p == "f32" => Precision::F32,
            Some(Value::String(p)) if p == "int8" => Precision::Int8,
            Some(other) => return Err(load_err(format!("llma_precision {other} is not \"f32\" or \"int8\""))),
        };
        Ok(BundleConfig { name, labels, pad_id, max_tokens, precision })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputRole {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

pub struct Classifier {
    pub config: BundleConfig,
    tokenizer: Tokenizer,
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<InputRole>,
    logits_output: usize,
}

impl Classifier {
    /// Loads `model.onnx`, `tokenizer.json`, `config.json` from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Classifier, ModelError> {
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| load_err(format!("{}: {e}", dir.join(name).display())));
        let config = String::from_utf8(read("config.json")?).map_err(|_| load_err("config.json is not UTF-8"))?;
        let tok_config = read("tokenizer_config.json").ok().and_then(|b| String::from_utf8(b).ok());
        let fallback = dir.file_name().and_then(|n| n.to_str()).unwrap_or("model");
        let config = BundleConfig::parse(&config, tok_config.as_deref(), fallback)?;
        Classifier::from_parts(config, &read("tokenizer.json")?, &read("model.onnx")?)
    }

    pub fn from_parts(config: BundleConfig, tokenizer_json: &[u8], onnx: &[u8]) -> Result<Classifier, ModelError> {
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json).map_err(|e| load_err(format!("tokenizer.json: {e}")))?;
        // Like the HF pipeline: keep the head of over-long texts, within the model's limit.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                direction: TruncationDirection::Right,
                stride: 0,
            }))
            .map_err(|e| load_err(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);

        let mut onnx_framework = tract_onnx::onnx();
        crate::cumsum::register(&mut onnx_framework);
        let mut model = onnx_framework
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .map_err(|e| load_err(format!("model.onnx: {e:#}")))?;

        let mut inputs = Vec::new();
        for (ix, outlet) in model.input_outlets().map_err(|e| load_err(e))?.to_vec().into_iter().enumerate() {
            let name = model.node(outlet.node).name.clone();
            let role = match name.as_str() {
                "input_ids" => InputRole::InputIds,
                "attention_mask" => InputRole::AttentionMask,
                "token_type_ids" => InputRole::TokenTypeIds,
                other => return Err(load_err(format!("model input {other:?} is not input_ids/attention_mask/token_type_ids"))),
            };
            inputs.push(role);
            let batch = model.symbols.sym("batch");
            let seq = model.symbols.sym("sequence");
            let fact = InferenceFact::dt_shape(i64::datum_type(), tvec![batch.to_dim(), seq.to_dim()]);
            model.set_input_fact(ix, fact).map_err(|e| load_err(format!("input {name}: {e:#}")))?;
        }
        if !inputs.contains(&InputRole::InputIds) {
            return Err(load_err("model has no input_ids input"));
        }
        let outputs = model.output_outlets().map_err(load_err)?.to_vec();
        let logits_output = outputs
            .iter()
            .position(|o| model.outlet_label(*o).unwrap_or(&model.node(o.node).name) == "logits")
            .unwrap_or(0);
        // tract picks its kernels while optimising: the plugin's GEMM
        // kernel must be linked in by then.
        #[cfg(all(feature = "plugin-gemm", target_arch = "wasm32", target_feature = "simd128"))]
        std::hint::black_box(crate::kernel::gemm_name());
        let plan = model
            .into_typed()
            .and_then(|m| match config.precision {
                Precision::F32 => Ok(m),
                Precision::Int8 => {
                    let mut m = m.into_decluttered()?;
                    crate::plan_ops::int8_linear::install(&mut m)?;
                    Ok(m)
                }
            })
            .and_then(|m| m.into_optimized())
            .and_then(|mut m| {
                crate::plan_ops::binary::install(&mut m)?;
                crate::plan_ops::gelu::install(&mut m)?;
                m.into_runnable()
            })
            .map_err(|e| load_err(format!("model.onnx does not run in tract: {e:#}")))?;
        Ok(Classifier { config, tokenizer, plan, inputs, logits_output })
    }

    /// Token ids of `text`, special tokens added, truncated to the model limit.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| ModelError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Classifies `texts` in order, in passes of at most `PASS_TOKENS`
    /// padded positions, each padded to its longest text.
    pub fn classify(&self, texts: &[String]) -> Result<Vec<MessageResult>, ModelError> {
        if texts.is_empty() {
            return Err(ModelError::InvalidArgument("empty batch".into()));
        }
        if texts.len() > MAX_BATCH {
            return Err(ModelError::InvalidArgument(format!("batch of {} exceeds {MAX_BATCH}", texts.len())));
        }
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t)).collect::<Result<_, _>>()?;
        let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
        let mut results = Vec::with_capacity(texts.len());
        for pass in passes(&lens, PASS_TOKENS) {
            let logits = self.logits(&ids[pass])?;
            results.extend(
                logits.chunks(3).map(|row| MessageResult::from_scores(Scores::from_logits(row, &self.config.labels))),
            );
        }
        Ok(results)
    }

    /// Raw logits, `[batch * 3]`, for already tokenized sequences.
    pub fn logits(&self, ids: &[Vec<u32>]) -> Result<Vec<f32>, ModelError> {
        let batch = ids.len();
        // An empty encoding (tokenizer without special tokens) still needs one position.
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut input_ids = vec![self.config.pad_id; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        for (row, seq_ids) in ids.iter().enumerate() {
            for (col, id) in seq_ids.iter().enumerate() {
                input_ids[row * seq + col] = *id as i64;
                mask[row * seq + col] = 1;
            }
        }
        let tensor = |data: Vec<i64>| -> Result<TValue, ModelError> {
            Tensor::from_shape(&[batch, seq], &data).map(|t| t.into_tvalue()).map_err(|e| ModelError::Inference(e.to_string()))
        };
        let mut feed = TVec::new();
        for role in &self.inputs {
            feed.push(match role {
                InputRole::InputIds => tensor(input_ids.clone())?,
                InputRole::AttentionMask => tensor(mask.clone())?,
                InputRole::TokenTypeIds => tensor(vec![0; batch * seq])?,
            });
        }
        let outputs = self.plan.run(feed).map_err(|e| ModelError::Inference(format!("{e:#}")))?;
        let out = outputs.get(self.logits_output).ok_or_else(|| ModelError::Inference("model produced no logits".into()))?;
        let out = out.cast_to::<f32>().map_err(|e| ModelError::Inference(e.to_string()))?;
        let view = out.to_plain_array_view::<f32>().map_err(|e| ModelError::Inference(e.to_string()))?;
        if view.shape() != [batch, 3] {
            return Err(ModelError::Inference(format!("logits have shape {:?}, expected [{batch}, 3]", view.shape())));
        }
        let logits: Vec<f32> = view.iter().copied().collect();
        if logits.iter().any(|l| !l.is_finite()) {
            return Err(ModelError::Inference("model produced non-finite logits".into()));
        }
        Ok(logits)
    }
}
