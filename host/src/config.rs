//! Configuration: one typed [`Config`] merged from defaults < a TOML file
//! (`--config FILE` / `$LLMA_SENTIMENT_CONFIG`) < environment variables
//! (`LLMA_SENTIMENT_<SECTION>_<KEY>`, plus the older names each key had) <
//! command-line flags. Each key is defined once: its type and default in
//! the model, its environment names, flag, range and help in [`KEYS`]; the
//! flags below are built from that table and only carry what was given on
//! the command line.

mod check;
mod inference;
mod ingest;
mod keys;
mod load;
mod model;
mod reference;
mod stores;

use std::marker::PhantomData;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use serde_json::{Map, Value};

pub use crate::secret::Secret;
pub use crate::worker::TemporalConfig;
pub use keys::{key, Flag, FlagKind, Group, Key, ENV_PREFIX, KEYS};
pub use load::{load, ConfigError, Sources, CONFIG_FILE_ENV};
pub use reference::reference;
#[cfg(feature = "fault-injection")]
pub use model::FaultsConfig;
pub use inference::{AggregationMode, EventSchema, LimitsConfig, PipelineConfig, PluginConfig, TruncationMode};
pub use model::{
    AdminConfig, BackfillConfig, Config, LogConfig, LogFormat, ProgressOptions, ServeConfig, WorkerConfig, WorkflowConfig,
    ACTIVITIES_PER_INSTANCE,
};
pub use stores::{CacheConfig, ClickHouseConfig, Validation};
pub use ingest::{BadTeam, KafkaConfig, KafkaProtocol, ScheduleConfig};

/// Flag values by section, as the flag layer of [`load`] takes them.
#[derive(Debug, Default)]
pub struct Flags(Map<String, Value>);

impl Flags {
    pub fn set(&mut self, key: &Key, value: Value) {
        let (section, field) = key.split();
        if let Value::Object(map) = self.0.entry(section.to_string()).or_insert_with(|| Value::Object(Map::new())) {
            map.insert(field.to_string(), value);
        }
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// The flag groups a command takes.
pub trait FlagGroups {
    const GROUPS: &'static [Group];
}

macro_rules! flag_groups {
    ($($(#[$doc:meta])* $name:ident => [$($group:ident),*]),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;
        impl FlagGroups for $name {
            const GROUPS: &'static [Group] = &[$(Group::$group),*];
        }
    )*};
}

flag_groups! {
    /// Flags of every subcommand.
    GlobalFlags => [Global],
    MigrateFlags => [ClickHouse],
    AnalyzeFlags => [ClickHouse, Backfill, Progress, Cache],
    WorkerFlags => [Temporal, ClickHouse, Worker, Cache],
    /// `config` takes every flag, to show what it would set.
    ConfigFlags => [Temporal, ClickHouse, Worker, Backfill, Progress, Admin, Cache, Schedule, Serve],
    ServeFlags => [ClickHouse, Serve, Cache],
    SubmitFlags => [Temporal, Progress],
    AdminFlags => [Admin],
    /// `schedule`: the events consumer.
    ScheduleFlags => [Temporal, Schedule],
}

/// The flags of some groups as given on the command line: `clap`
/// arguments built from [`KEYS`], so a flag, its help and its default are
/// never written twice. Values stay text; the typed model reads them.
pub struct FlagArgs<G> {
    given: Vec<(&'static Key, Value)>,
    group: PhantomData<G>,
}

impl<G> Clone for FlagArgs<G> {
    fn clone(&self) -> Self {
        FlagArgs { given: self.given.clone(), group: PhantomData }
    }
}

/// Values are not shown: one may be the ClickHouse password.
impl<G> std::fmt::Debug for FlagArgs<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.given.iter().map(|(k, _)| k.path)).finish()
    }
}

impl<G: FlagGroups> FlagArgs<G> {
    fn keys() -> impl Iterator<Item = (&'static Key, Flag)> {
        KEYS.iter().filter_map(|k| k.flag.filter(|f| G::GROUPS.contains(&f.group)).map(|f| (k, f)))
    }

    /// Adds the given flags to the flag layer.
    pub fn apply(&self, flags: &mut Flags) {
        for (key, value) in &self.given {
            flags.set(key, value.clone());
        }
    }
}

/// `[default: X]` for keys whose default is a plain value.
fn default_note(key: &Key) -> String {
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let (section, field) = key.split();
    match &defaults[section][field] {
        Value::String(s) => format!(" [default: {s}]"),
        Value::Number(n) => format!(" [default: {n}]"),
        _ => String::new(),
    }
}

impl<G: FlagGroups> Args for FlagArgs<G> {
    fn augment_args(mut cmd: Command) -> Command {
        for (key, flag) in Self::keys() {
            let arg = Arg::new(key.path).long(flag.long).global(flag.group == Group::Global);
            let arg = match flag.kind {
                FlagKind::Value => arg
                    .action(ArgAction::Set)
                    .value_parser(clap::value_parser!(String))
                    .help(format!("{}{}", key.help, default_note(key))),
                FlagKind::SetsFalse | FlagKind::SetsTrue => arg.action(ArgAction::SetTrue).help(key.help),
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<G: FlagGroups> FromArgMatches for FlagArgs<G> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for (key, flag) in Self::keys() {
            let value = match flag.kind {
                FlagKind::Value => matches.get_one::<String>(key.path).map(|v| Value::String(v.clone())),
                FlagKind::SetsFalse => matches.get_flag(key.path).then_some(Value::Bool(false)),
                FlagKind::SetsTrue => matches.get_flag(key.path).then_some(Value::Bool(true)),
            };
            if let Some(value) = value {
                given.push((key, value));
            }
        }
        Ok(FlagArgs { given, group: PhantomData })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        worker: FlagArgs<WorkerFlags>,
    }

    fn with_flags(args: &[&str]) -> Config {
        let w = Wrapper::parse_from(args);
        let mut flags = Flags::default();
        w.worker.apply(&mut flags);
        load(&Sources { flags: flags.into_map(), ..Default::default() }).unwrap()
    }

    #[test]
    fn sink_retries_fit_in_one_activity_attempt() {
        let config = with_flags(&["llma-sentiment"]);
        let worst = config.clickhouse.sink_config().max_request_duration();
        assert!(worst < crate::worker::START_TO_CLOSE, "{worst:?}");
    }

    #[test]
    fn activity_slots_default_to_a_multiple_of_the_instances() {
        let c = with_flags(&["llma-sentiment", "--instances", "3"]);
        assert_eq!((c.worker.instances(), c.worker.concurrency()), (3, 3 * crate::config::ACTIVITIES_PER_INSTANCE));
        let c = with_flags(&["llma-sentiment", "--instances", "2", "--max-concurrent-activities", "5"]);
        assert_eq!((c.worker.instances(), c.worker.concurrency()), (2, 5));
    }

    #[test]
    fn password_is_redacted_in_debug_output() {
        let args = Wrapper::parse_from(["llma-sentiment", "--clickhouse-password", "hunter2"]);
        let config = with_flags(&["llma-sentiment", "--clickhouse-password", "hunter2"]);
        let shown = format!("{:?} {:?} {:?}", args.worker, config, config.clickhouse.sink_config());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(config.clickhouse.password.as_deref(), Some("hunter2"));
    }
}
