//! Commands that talk to Temporal and ClickHouse.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::PluginArgs;
use crate::config::{ClickHouseArgs, TemporalArgs, WorkerArgs};
use crate::engine::Limits;
use crate::pool::InstancePool;
use crate::sink::ClickHouseSink;
use crate::worker::{self, SubmitOptions, WorkerSetup};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

pub fn migrate(clickhouse: &ClickHouseArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let sink = ClickHouseSink::connect(clickhouse.sink_config()).await?;
        sink.migrate().await?;
        println!("{} is ready (ClickHouse {})", sink.table(), sink.server_version());
        Ok(())
    })
}

pub fn worker(
    plugin: &PluginArgs,
    temporal: &TemporalArgs,
    clickhouse: &ClickHouseArgs,
    args: &WorkerArgs,
    fail_first_attempt_after_insert: bool,
) -> anyhow::Result<()> {
    let source = plugin.source();
    let engine = source.engine(Limits::default())?;
    let loaded = source.load(&engine)?;
    let pool = Arc::new(InstancePool::new(loaded));
    let concurrency = args.concurrency();
    // Load the model into every instance before taking work.
    pool.warm(concurrency).context("loading the model into the plugin instances")?;
    tracing::info!(instances = concurrency, "plugin instances ready");
    runtime()?.block_on(async {
        let sink = Arc::new(ClickHouseSink::connect(clickhouse.sink_config()).await?);
        sink.check_schema().await.context("the events table is not usable: run `llma-sentiment migrate`")?;
        let activities = worker::activities(pool, sink, plugin.pipeline(), fail_first_attempt_after_insert);
        let setup = WorkerSetup { activities, concurrency, grace_period: args.grace_period() };
        worker::run(temporal, setup).await
    })
}

pub fn submit(temporal: &TemporalArgs, file: Option<&Path>, options: SubmitOptions) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = worker::connect(temporal).await?;
        let stdout = std::io::stdout();
        let report = match file {
            Some(p) if p != Path::new("-") => {
                let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                worker::submit(&client, BufReader::new(f), &options, stdout.lock()).await?
            }
            _ => worker::submit(&client, std::io::stdin().lock(), &options, stdout.lock()).await?,
        };
        eprintln!(
            "submitted: {} started, {} not started, {} completed, {} failed",
            report.started, report.start_errors, report.completed, report.failed
        );
        Ok(())
    })
}
