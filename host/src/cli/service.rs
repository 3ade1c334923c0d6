//! Commands that talk to Temporal and ClickHouse.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{ClickHouseConfig, Config, TemporalConfig};
use crate::engine::{Fallback, InstanceStart, SnapshotPolicy};
use crate::pool::InstancePool;
use crate::registry::Registry;
use crate::sink::ClickHouseSink;
use crate::worker::{self, SubmitOptions, WorkerSetup};


pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

pub fn migrate(clickhouse: &ClickHouseConfig) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let sink = ClickHouseSink::connect(clickhouse.sink_config()).await?;
        sink.migrate().await?;
        println!("{} is ready (ClickHouse {})", sink.table(), sink.server_version());
        Ok(())
    })
}

pub fn worker(config: &Config) -> anyhow::Result<()> {
    let (temporal, clickhouse, args) = (&config.temporal, &config.clickhouse, &config.worker);
    // Before anything slow: an endpoint that may not start stops the worker at once.
    let admin = crate::admin::AdminSettings::from_config(config).context("the admin endpoint may not start")?;
    // Also before anything slow: a `rediss://` tier whose handshake fails stops the start.
    let cache = Arc::new(config.result_cache()?);
    crate::metrics::init();
    // Fixed before any workflow task runs: workflow code reads it, never the config.
    crate::worker::set_activity_timeouts(config.workflow.timeouts());
    let worst_insert = clickhouse.sink_config().max_request_duration();
    if worst_insert >= config.workflow.timeouts().start_to_close {
        tracing::warn!(
            worst_insert_secs = worst_insert.as_secs(),
            start_to_close_secs = config.workflow.start_to_close_secs,
            "an insert that rides out a ClickHouse outage may outlast the activity's start-to-close timeout"
        );
    }
    let mut source = config.plugin.source().context("plugin.trusted_keys")?;
    warn_if_untrusted(config, admin.is_some());
    let record_file =
        crate::active_version::file_for(&source.secure_cache_dir()?, &temporal.address, &temporal.namespace, &temporal.task_queue);
    pick_start_version(config, &mut source, &record_file)?;
    let engine = Arc::new(source.engine(config.limits.limits(), config.plugin.snapshots)?);
    let loaded = source.load(&engine)?;
    let registry = Arc::new(
        Registry::starting(
            engine.clone(),
            loaded,
            source.plugin.clone(),
            config.plugin.rollback_grace(),
            config.pipeline.plugin_options(),
            config.plugin.force_canaries,
        )
            .context("the plugin failed its validation")?
            .with_activation_nice(config.plugin.activation_nice)
            .with_trusted_keys(source.trusted_keys.clone())
            .with_record(record_file),
    );
    let instances = instances_that_fit(args, &registry);
    let pool = Arc::new(InstancePool::for_registry(instances, &registry));
    let gate: Arc<dyn crate::registry::InstanceGate> = pool.clone();
    registry.set_instance_gate(Arc::downgrade(&gate));
    let concurrency = args.concurrency_for(instances);
    // Load the model into every instance before taking work.
    pool.warm(&registry.current(), instances).context("loading the model into the plugin instances")?;
    if cache.shared().is_some() {
        // The shared scope digests the model files: once, before taking work.
        let current = registry.current();
        crate::cache::CacheScope::of(&current.plugin, &current.info);
    }
    tracing::info!(
        instances,
        activity_slots = concurrency,
        result_cache_mb = config.pipeline.result_cache_mb,
        redis = config.cache.redis_url.as_deref().map(crate::secret::redact_url).unwrap_or_else(|| "off".into()),
        version = %registry.current().label(),
        model = %registry.current().info.model_name,
        from_snapshot = registry.current().plugin.from_snapshot(),
        "plugin instances ready"
    );
    if matches!(registry.current().plugin.instance_start, InstanceStart::Load(Fallback::NotCached)) {
        snapshot_in_background(source.clone(), config.limits.limits(), config.plugin.activation_nice);
    }
    let rt = runtime()?;
    let outcome = rt.block_on(async {
        let sink = Arc::new(ClickHouseSink::connect(clickhouse.sink_config()).await?);
        sink.check_schema().await.context("the events table is not usable: run `llma-sentiment migrate`")?;
        let mut servers = Vec::new();
        if let Some(settings) = admin {
            let addr = settings.addr;
            let server = crate::admin::serve(settings, registry.clone())
                .await
                .with_context(|| format!("binding the admin endpoint {addr}"))?;
            servers.push(server);
        }
        let watchdog = crate::worker::Watchdog::new(concurrency, config.workflow.timeouts().heartbeat);
        watchdog.spawn(temporal.clone(), args.exit_when_stuck);
        pool.sample_metrics(std::time::Duration::from_secs(1));
        if let Some(addr) = args.metrics_addr {
            let readiness = crate::ops_server::ReadinessProbe::new(registry.clone(), sink.clone(), temporal.clone(), watchdog.clone());
            let server = crate::ops_server::serve(addr, readiness)
                .await
                .with_context(|| format!("binding the metrics endpoint {addr}"))?;
            servers.push(server);
        }
        let (rescan_tx, rescan_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(dir) = config.plugin.dir.clone() {
            crate::watcher::spawn(dir, registry.clone(), config.plugin.poll_interval(), rescan_rx);
            tokio::spawn(async move {
                let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: rescanning the plugin directory");
                    let _ = rescan_tx.send(());
                }
            });
        }
        let faults = worker::Faults {
            #[cfg(feature = "fault-injection")]
            fail_first_attempt_after_insert: config.faults.fail_first_attempt_after_insert,
        };
        let stop = worker::Stop::new(args.grace_period());
        let activities = worker::activities(registry, pool, sink, config.pipeline.options(), cache, watchdog, stop.clone(), faults);
        let setup = WorkerSetup { activities, concurrency, stop, identity: args.identity() };
        let outcome = worker::run(temporal, setup).await;
        // Probes and admin calls in flight get their answer before the process ends.
        futures::future::join_all(servers.into_iter().map(|s| s.shutdown(worker::stop::ENDPOINTS_SHUTDOWN))).await;
        outcome
    });
    // A plugin call or an activation still running on a blocking thread is
    // not waited for: the process ends, Temporal retries what it held.
    rt.shutdown_timeout(worker::stop::RUNTIME_SHUTDOWN);
    outcome
}

/// Says loudly that whoever can write to `plugin.dir` or holds the admin
/// token chooses the code the worker runs when no key is trusted.
fn warn_if_untrusted(config: &Config, admin_on: bool) {
    if !config.plugin.trusted_keys.is_empty() {
        return;
    }
    if let Some(dir) = &config.plugin.dir {
        tracing::warn!(
            dir = %dir.display(),
            "plugin.dir is set without plugin.trusted_keys: anyone who can write a *.wasm there chooses the code this worker runs; sign plugins (`llma-sentiment plugin sign`) and set plugin.trusted_keys"
        );
    }
    if admin_on {
        tracing::warn!(
            "the admin endpoint is on without plugin.trusted_keys: anyone holding its token activates any plugin file it may read; sign plugins (`llma-sentiment plugin sign`) and set plugin.trusted_keys"
        );
    }
}

/// `worker.instances`; else one per core, but no more than fit in the
/// memory budget (see `memory_budget`), said in the log.
fn instances_that_fit(args: &crate::config::WorkerConfig, registry: &Registry) -> usize {
    let wanted = args.instances();
    if args.instances.is_some() {
        return wanted;
    }
    let Some((budget, from)) = crate::memory_budget::budget(args.memory_budget_mb) else { return wanted };
    let texts: Vec<String> = crate::registry::CANARY_TEXTS.iter().map(|t| t.to_string()).collect();
    match crate::memory_budget::measure_instance(&registry.current().plugin, &texts) {
        Ok(per_instance) => {
            let resident = llma_proc_stats::Proportional::of(llma_proc_stats::Proc::This).pss;
            let n = crate::memory_budget::instances_that_fit(wanted, budget, resident, per_instance);
            tracing::info!(
                instances = n,
                wanted,
                budget_mb = budget >> 20,
                budget_from = from,
                per_instance_mb = per_instance >> 20,
                resident_mb = resident >> 20,
                "plugin instances that fit in the memory budget"
            );
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, wanted, "cannot measure what an instance costs: not bounding the instances by the memory budget");
            wanted
        }
    }
}

/// Makes the snapshot nobody prepared (`plugin.snapshots = use-existing`,
/// no `plugin prepare`) on threads below the serving ones, while the
/// instances that loaded the model serve: the next start maps it. A stop
/// abandons it (its temporary file goes at a later start).
fn snapshot_in_background(source: crate::source::PluginSource, limits: crate::engine::Limits, nice: u8) {
    let spawned = std::thread::Builder::new().name("llma-snapshot".into()).spawn(move || {
        crate::engine::background::below_serving(nice, || {
            let made = source.engine(limits, SnapshotPolicy::Create).and_then(|engine| source.load(&engine));
            match made.as_ref().map(|plugin| &plugin.instance_start) {
                Ok(InstanceStart::Snapshot { path, took, .. }) => tracing::info!(
                    file = %path.display(),
                    secs = took.as_secs_f64(),
                    "snapshot made in the background: the next start maps it"
                ),
                Ok(InstanceStart::Load(why)) => tracing::warn!(%why, "no snapshot made in the background"),
                Err(e) => tracing::warn!(error = %e, "no snapshot made in the background"),
            }
        })
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start making the snapshot in the background");
    }
}

/// `schedule`: the Kafka consumer that starts workflows.
pub fn schedule(config: &Config) -> anyhow::Result<()> {
    let rt = runtime()?;
    let outcome = rt.block_on(crate::schedule::run(config));
    rt.shutdown_timeout(worker::stop::RUNTIME_SHUTDOWN);
    Ok(outcome?)
}

/// Which version the worker starts with, said in the log with why: a plugin
/// given explicitly (`plugin.path`); else the version active before the restart
/// (recorded at every switch, while its files are unchanged); else the
/// newest `*.wasm` of `plugin.dir`; else the embedded default.
fn pick_start_version(config: &Config, source: &mut crate::source::PluginSource, record_file: &Path) -> anyhow::Result<()> {
    if config.plugin.path.is_some() {
        tracing::info!(plugin = ?source.plugin, model_dir = ?source.model_dir, "starting with the plugin given explicitly");
        return Ok(());
    }
    match crate::active_version::ActiveRecord::load(record_file) {
        Ok(Some(record)) => {
            tracing::info!(plugin = ?record.plugin, model_dir = %record.model_dir.display(), file = %record_file.display(), "starting with the version active before the restart");
            source.plugin = record.plugin;
            source.model_dir = Some(record.model_dir);
            return Ok(());
        }
        Ok(None) => {}
        Err(why) => tracing::warn!(file = %record_file.display(), %why, "not starting with the recorded version"),
    }
    if let Some(dir) = &config.plugin.dir {
        match crate::watcher::newest_plugin(dir).with_context(|| format!("reading the plugin directory {}", dir.display()))? {
            Some(newest) => {
                tracing::info!(plugin = %newest.display(), "starting with the newest plugin of the plugin directory");
                source.plugin = Some(newest);
            }
            None => tracing::warn!(dir = %dir.display(), "no *.wasm in the plugin directory yet: starting with the embedded default"),
        }
    }
    Ok(())
}

/// Opens FILE, or stdin for `None` / `-`.
fn open_input(file: Option<&Path>) -> anyhow::Result<Box<dyn std::io::BufRead + Send>> {
    Ok(match file {
        Some(p) if p != Path::new("-") => {
            Box::new(BufReader::new(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?))
        }
        _ => Box::new(BufReader::new(std::io::stdin())),
    })
}

pub fn submit_dry_run(file: Option<&Path>, options: &SubmitOptions) -> anyhow::Result<()> {
    let report = worker::dry_run(open_input(file)?, options, std::io::stdout().lock())?;
    eprintln!(
        "dry run: {} would start, {} not in the {}% rollout, {} unreadable",
        report.started, report.not_in_rollout, options.rollout_percent, report.start_errors
    );
    Ok(())
}

pub fn submit(
    temporal: &TemporalConfig,
    file: Option<&Path>,
    options: SubmitOptions,
    progress: &crate::progress::ProgressConfig,
) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = worker::connect(temporal).await?;
        let report = worker::submit(&client, open_input(file)?, &options, std::io::stdout().lock(), progress).await?;
        eprintln!(
            "submitted: {} started, {} not started, {} completed, {} failed, {} not in the rollout",
            report.started, report.start_errors, report.completed, report.failed, report.not_in_rollout
        );
        Ok(())
    })
}

/// Validates a plugin offline; with `snapshot` (also `plugin prepare`) it
/// makes the pre-initialised snapshot a worker on this machine will reuse,
/// and the self-test runs on an instance made from it.
pub fn plugin_check(config: &Config, file: Option<&Path>, snapshot: bool) -> anyhow::Result<()> {
    let mut source = config.plugin.source().context("plugin.trusted_keys")?;
    if let Some(file) = file {
        source.plugin = Some(file.to_path_buf());
    }
    let policy = if snapshot { SnapshotPolicy::Create } else { SnapshotPolicy::UseExisting };
    let engine = Arc::new(source.engine(config.limits.limits(), policy)?);
    let loaded = source.load(&engine)?;
    let registry =
        Registry::with_options(engine, loaded, source.plugin.clone(), std::time::Duration::ZERO, config.pipeline.plugin_options())?;
    let status = crate::registry::VersionStatus::from(&*registry.current());
    let info = &registry.current().info;
    let out = serde_json::json!({
        "ok": true,
        "version": status,
        "interface_version": info.interface_version,
        "labels": info.labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        "max_tokens": info.limits.max_tokens,
        "max_batch": info.limits.max_batch,
        "snapshot": status.snapshot,
    });
    println!("{out}");
    Ok(())
}

pub fn plugin_admin(
    config: &Config,
    admin: &str,
    method: hyper::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let token = crate::admin::token(&config.worker).context("the admin endpoint needs the worker's token")?;
    runtime()?.block_on(async {
        let (status, value) = crate::admin::call(admin, &token, config.admin.tls_ca.as_deref(), method, path, body)
            .await
            .with_context(|| format!("calling the worker's admin endpoint at {admin}"))?;
        println!("{value}");
        if !status.is_success() {
            anyhow::bail!("{status}: {}", value.get("error").and_then(|e| e.as_str()).unwrap_or("request failed"));
        }
        Ok(())
    })
}
