//! WIT glue: converts between the generated bindings and the plain types.

use std::cell::RefCell;
use std::path::Path;

use crate::batch::MAX_BATCH;
use crate::model::{Classifier, ModelError, Precision};
use crate::types;

wit_bindgen::generate!({
    world: "preinit-plugin",
    path: "../wit/sentiment.wit",
});

use exports::llma::sentiment::sentiment as wit;

/// Where `wizer-initialize` finds the model (the host preopens it there).
const PREINIT_MODEL_DIR: &str = "/model";

thread_local! {
    static LOADED: RefCell<Option<Classifier>> = const { RefCell::new(None) };
    /// Why `wizer-initialize` could not load the model; `info` answers it.
    static INIT_ERROR: RefCell<Option<wit::Error>> = const { RefCell::new(None) };
}

struct Component;

export!(Component);

fn label(l: types::Label) -> wit::Label {
    match l {
        types::Label::Negative => wit::Label::Negative,
        types::Label::Neutral => wit::Label::Neutral,
        types::Label::Positive => wit::Label::Positive,
    }
}

fn from_label(l: wit::Label) -> types::Label {
    match l {
        wit::Label::Negative => types::Label::Negative,
        wit::Label::Neutral => types::Label::Neutral,
        wit::Label::Positive => types::Label::Positive,
    }
}

fn scores(s: types::Scores) -> wit::Scores {
    wit::Scores { negative: s.negative, neutral: s.neutral, positive: s.positive }
}

fn message_result(m: types::MessageResult) -> wit::MessageResult {
    wit::MessageResult { label: label(m.label), score: m.score, scores: scores(m.scores) }
}

fn model_error(e: ModelError) -> wit::Error {
    match e {
        ModelError::Load(m) => wit::Error::ModelLoad(m),
        ModelError::InvalidArgument(m) => wit::Error::InvalidArgument(m),
        ModelError::Tokenize(m) => wit::Error::Tokenize(m),
        ModelError::Inference(m) => wit::Error::Inference(m),
    }
}

fn info_of(c: &Classifier) -> wit::PluginInfo {
    wit::PluginInfo {
        name: env!("CARGO_PKG_NAME").to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        interface_version: crate::INTERFACE_VERSION.to_string(),
        // The events name the model they came from; an int8 bundle's
        // scores are not its f32 export's, so its name says so.
        model_name: match c.config.precision {
            Precision::F32 => c.config.name.clone(),
            p => format!("{} ({})", c.config.name, p.name()),
        },
        labels: c.config.labels.iter().map(|l| label(*l)).collect(),
        limits: wit::Limits { max_tokens: c.config.max_tokens as u32, max_batch: MAX_BATCH as u32 },
    }
}

fn load_into_state(model_dir: &str) -> Result<wit::PluginInfo, wit::Error> {
    // The old model goes first, so two never sit in memory at once.
    LOADED.with(|l| *l.borrow_mut() = None);
    let classifier = Classifier::load_dir(Path::new(model_dir)).map_err(model_error)?;
    let info = info_of(&classifier);
    LOADED.with(|l| *l.borrow_mut() = Some(classifier));
    Ok(info)
}

impl Guest for Component {
    fn wizer_initialize() {
        let outcome = crate::preinit::init(|| load_into_state(PREINIT_MODEL_DIR));
        INIT_ERROR.with(|e| *e.borrow_mut() = outcome.err());
    }
}

impl wit::Guest for Component {
    fn load(model_dir: String) -> Result<wit::PluginInfo, wit::Error> {
        INIT_ERROR.with(|e| *e.borrow_mut() = None);
        load_into_state(&model_dir)
    }

    fn info() -> Result<wit::PluginInfo, wit::Error> {
        if let Some(e) = INIT_ERROR.with(|e| e.borrow().clone()) {
            return Err(e);
        }
        LOADED.with(|l| l.borrow().as_ref().map(info_of).ok_or(wit::Error::ModelNotLoaded))
    }

    fn extract(ai_input_json: String, options: wit::ExtractOptions) -> Result<Vec<wit::UserMessage>, wit::Error> {
        let options = types::ExtractOptions { max_messages: options.max_messages, max_chars: options.max_chars, truncation: types::Truncation::Tail };
        extract(&ai_input_json, options)
    }

    fn extract_with(ai_input_json: String, options: wit::Extraction) -> Result<Vec<wit::UserMessage>, wit::Error> {
        let truncation = match options.truncation {
            wit::Truncation::Tail => types::Truncation::Tail,
            wit::Truncation::HeadTail(head_chars) => types::Truncation::HeadTail { head_chars },
        };
        extract(&ai_input_json, types::ExtractOptions { max_messages: options.max_messages, max_chars: options.max_chars, truncation })
    }

    fn classify(texts: Vec<String>) -> Result<Vec<wit::MessageResult>, wit::Error> {
        LOADED.with(|l| {
            let loaded = l.borrow();
            let classifier = loaded.as_ref().ok_or(wit::Error::ModelNotLoaded)?;
            let results = classifier.classify(&texts).map_err(model_error)?;
            Ok(results.into_iter().map(message_result).collect())
        })
    }

    fn aggregate(results: Vec<wit::MessageResult>) -> Option<wit::OverallResult> {
        let plain: Vec<types::MessageResult> = results
            .iter()
            .map(|m| types::MessageResult { label: from_label(m.label), score: m.score, scores: from_scores(m.scores) })
            .collect();
        crate::aggregate::aggregate(&plain).map(overall_result)
    }

    fn aggregate_with(scores: Vec<wit::Scores>, options: wit::Labelling) -> Result<Option<wit::OverallResult>, wit::Error> {
        let rule = match options.rule {
            wit::AggregationRule::Worst => types::AggregationRule::Worst,
            wit::AggregationRule::Mean => types::AggregationRule::Mean,
        };
        let plain: Vec<types::Scores> = scores.into_iter().map(from_scores).collect();
        crate::aggregate::aggregate_with(&plain, types::Labelling { neutral_margin: options.neutral_margin, rule })
            .map(|o| o.map(overall_result))
            .map_err(|e| wit::Error::InvalidArgument(e.to_string()))
    }
}

fn extract(ai_input_json: &str, options: types::ExtractOptions) -> Result<Vec<wit::UserMessage>, wit::Error> {
    use crate::extract::ExtractError;
    crate::extract::extract_json(ai_input_json, options)
        .map(|ms| ms.into_iter().map(|m| wit::UserMessage { index: m.index, text: m.text }).collect())
        .map_err(|e| match e {
            ExtractError::NotJson(_) => wit::Error::InvalidInput(e.to_string()),
            ExtractError::InvalidOptions(_) => wit::Error::InvalidArgument(e.to_string()),
        })
}

fn from_scores(s: wit::Scores) -> types::Scores {
    types::Scores { negative: s.negative, neutral: s.neutral, positive: s.positive }
}

fn overall_result(o: types::OverallResult) -> wit::OverallResult {
    wit::OverallResult {
        label: label(o.label),
        score: o.score,
        scores: scores(o.scores),
        messages: o.messages.into_iter().map(message_result).collect(),
    }
}
