//! Which minor version of the `llma:sentiment/sentiment` interface a
//! component exports, and the calls of each. A 1.0 plugin keeps loading and
//! serves the seed's rules; asking it for a 1.1 option is an error (at
//! activation, see `PluginOptions::check`), never a silent fallback.

use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store};

use super::bindings::{
    self, v1_0, Extraction, Labelling, MessageResult, OverallResult, PluginError, PluginInfo, Scores, Truncation, UserMessage,
};
use super::{EngineError, HostState};

/// The interface a component exports: the prefix of its export name.
const INTERFACE: &str = "llma:sentiment/sentiment@";

/// A minor version of the contract this host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Contract {
    /// `wit/v1.0/sentiment.wit`: extract, classify, aggregate (the seed's rules).
    V1_0,
    /// `wit/sentiment.wit`: adds `extract-with` and `aggregate-with`.
    V1_1,
}

impl Contract {
    pub const NEWEST: Contract = Contract::V1_1;

    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V1_0 => "1.0",
            Contract::V1_1 => "1.1",
        }
    }

    /// Reads the version from the component's export name. A newer minor
    /// (1.2, ...) is served as 1.1, which semver says it contains; another
    /// major is refused.
    pub fn of(component: &Component, engine: &Engine) -> Result<Contract, EngineError> {
        let names: Vec<String> = component.component_type().exports(engine).map(|(name, _)| name.to_string()).collect();
        let Some(version) = names.iter().find_map(|n| n.strip_prefix(INTERFACE)) else {
            return Err(EngineError::WrongWorld(format!("no {INTERFACE}* export (exports: {})", names.join(", "))));
        };
        let mut parts = version.split('.').map(str::parse::<u64>);
        match (parts.next(), parts.next()) {
            (Some(Ok(1)), Some(Ok(0))) => Ok(Contract::V1_0),
            (Some(Ok(1)), Some(Ok(_))) => Ok(Contract::V1_1),
            _ => Err(EngineError::WrongWorld(format!(
                "exports {INTERFACE}{version}; this host speaks 1.0 and {}",
                Contract::NEWEST.as_str()
            ))),
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the pipeline asks of the plugin beyond classifying: passed through
/// as they are, the plugin applies them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PluginOptions {
    pub extraction: Extraction,
    pub labelling: Labelling,
}

impl PluginOptions {
    /// Why `contract` cannot honour these options (`None`: it can).
    pub fn unsupported_by(&self, contract: Contract) -> Option<String> {
        if contract >= Contract::V1_1 {
            return None;
        }
        let seed = Labelling::default();
        let mut needs = Vec::new();
        if let Truncation::HeadTail(head) = self.extraction.truncation {
            if head > 0 {
                needs.push(format!("truncation head-tail (head_chars {head})"));
            }
        }
        if self.labelling.neutral_margin != seed.neutral_margin {
            needs.push(format!("neutral_margin {}", self.labelling.neutral_margin));
        }
        if self.labelling.rule != seed.rule {
            needs.push("aggregation rule mean".to_string());
        }
        (!needs.is_empty()).then(|| format!("{} need(s) interface 1.1; the plugin exports {contract}", needs.join(", ")))
    }

    /// `unsupported_by` as the error a call gets.
    pub fn check(&self, contract: Contract) -> Result<(), EngineError> {
        match self.unsupported_by(contract) {
            Some(reason) => Err(EngineError::Unsupported(reason)),
            None => Ok(()),
        }
    }
}

/// A component linked against the version it exports.
pub(super) enum ContractPre {
    V1_0(v1_0::PluginPre<HostState>),
    V1_1(bindings::PluginPreV1_1<HostState>),
}

impl ContractPre {
    pub fn new(contract: Contract, pre: InstancePre<HostState>) -> Result<Self, EngineError> {
        let wrong = |e: wasmtime::Error| EngineError::WrongWorld(format!("{e:#}"));
        Ok(match contract {
            Contract::V1_0 => ContractPre::V1_0(v1_0::PluginPre::new(pre).map_err(wrong)?),
            Contract::V1_1 => ContractPre::V1_1(bindings::PluginPreV1_1::new(pre).map_err(wrong)?),
        })
    }

    pub fn engine(&self) -> &Engine {
        match self {
            ContractPre::V1_0(p) => p.engine(),
            ContractPre::V1_1(p) => p.engine(),
        }
    }

    pub fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<ContractBindings> {
        Ok(match self {
            ContractPre::V1_0(p) => ContractBindings::V1_0(p.instantiate(store)?),
            ContractPre::V1_1(p) => ContractBindings::V1_1(p.instantiate(store)?),
        })
    }
}

/// The calls of one live instance, in the current version's types.
pub(super) enum ContractBindings {
    V1_0(v1_0::Plugin),
    V1_1(bindings::PluginV1_1),
}

type Call<T> = wasmtime::Result<Result<T, PluginError>>;

impl ContractBindings {
    pub fn contract(&self) -> Contract {
        match self {
            ContractBindings::V1_0(_) => Contract::V1_0,
            ContractBindings::V1_1(_) => Contract::V1_1,
        }
    }

    pub async fn load(&self, store: &mut Store<HostState>, model_dir: &str) -> Call<PluginInfo> {
        match self {
            ContractBindings::V1_0(b) => Ok(b.llma_sentiment_sentiment().call_load(store, model_dir).await?.map(Into::into).map_err(Into::into)),
            ContractBindings::V1_1(b) => b.llma_sentiment_sentiment().call_load(store, model_dir).await,
        }
    }

    /// A snapshot instance's model is already in its memory: it only answers `info`.
    pub async fn info(&self, store: &mut Store<HostState>) -> Call<PluginInfo> {
        match self {
            ContractBindings::V1_0(b) => Ok(b.llma_sentiment_sentiment().call_info(store).await?.map(Into::into).map_err(Into::into)),
            ContractBindings::V1_1(b) => b.llma_sentiment_sentiment().call_info(store).await,
        }
    }

    /// The bindings of an instance made without a pre-instance (the snapshot step).
    pub fn of_instance(
        contract: Contract,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<ContractBindings> {
        Ok(match contract {
            Contract::V1_0 => ContractBindings::V1_0(v1_0::Plugin::new(store, instance)?),
            Contract::V1_1 => ContractBindings::V1_1(bindings::PluginV1_1::new(store, instance)?),
        })
    }

    /// 1.0 has no truncation mode: the caller checked that `tail` is asked.
    pub async fn extract(&self, store: &mut Store<HostState>, ai_input_json: &str, options: Extraction) -> Call<Vec<UserMessage>> {
        match self {
            ContractBindings::V1_0(b) => {
                let options = v1_0::api::ExtractOptions { max_messages: options.max_messages, max_chars: options.max_chars };
                let messages = b.llma_sentiment_sentiment().call_extract(store, ai_input_json, options).await?;
                Ok(messages.map(|ms| ms.into_iter().map(Into::into).collect()).map_err(Into::into))
            }
            ContractBindings::V1_1(b) => b.llma_sentiment_sentiment().call_extract_with(store, ai_input_json, options).await,
        }
    }

    pub async fn classify(&self, store: &mut Store<HostState>, texts: &[String]) -> Call<Vec<MessageResult>> {
        match self {
            ContractBindings::V1_0(b) => {
                let results = b.llma_sentiment_sentiment().call_classify(store, texts).await?;
                Ok(results.map(|rs| rs.into_iter().map(Into::into).collect()).map_err(Into::into))
            }
            ContractBindings::V1_1(b) => b.llma_sentiment_sentiment().call_classify(store, texts).await,
        }
    }

    /// 1.0 has only the seed's rules: the caller checked that they are asked.
    pub async fn aggregate(&self, store: &mut Store<HostState>, results: &[MessageResult], labelling: Labelling) -> Call<Option<OverallResult>> {
        match self {
            ContractBindings::V1_0(b) => {
                let old: Vec<v1_0::api::MessageResult> = results.iter().map(|r| (*r).into()).collect();
                Ok(Ok(b.llma_sentiment_sentiment().call_aggregate(store, &old).await?.map(Into::into)))
            }
            ContractBindings::V1_1(b) => {
                let scores: Vec<Scores> = results.iter().map(|r| r.scores).collect();
                b.llma_sentiment_sentiment().call_aggregate_with(store, &scores, labelling).await
            }
        }
    }

    /// 1.0 only aggregates results it labelled itself (the caller checks).
    pub async fn aggregate_scores(&self, store: &mut Store<HostState>, scores: &[Scores], labelling: Labelling) -> Call<Option<OverallResult>> {
        match self {
            ContractBindings::V1_0(_) => Ok(Err(PluginError::InvalidArgument("interface 1.0 has no aggregate-with".into()))),
            ContractBindings::V1_1(b) => b.llma_sentiment_sentiment().call_aggregate_with(store, scores, labelling).await,
        }
    }
}
