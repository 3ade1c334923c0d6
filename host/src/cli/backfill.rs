//! `analyze --output clickhouse`: `$ai_sentiment` events written straight to
//! the events table in batched INSERTs, for backfills without Temporal.
//!
//! Re-running a backfill is safe: each event's uuid is the UUIDv5 of its
//! generation and the table is a ReplacingMergeTree on (team_id, uuid), so a
//! row written twice reads once with FINAL.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::ClickHouseConfig;
use crate::event::SentimentEvent;
use crate::sink::ClickHouseSink;

pub struct ClickHouseOutput {
    runtime: tokio::runtime::Runtime,
    sink: ClickHouseSink,
    pending: Vec<SentimentEvent>,
    batch_size: usize,
    flush_interval: Duration,
    last_flush: Instant,
}

impl ClickHouseOutput {
    /// Connects and checks the table, so that a wrong URL or a missing table
    /// fails before any classification work.
    pub fn connect(args: &ClickHouseConfig, batch_size: usize, flush_interval: Duration) -> anyhow::Result<ClickHouseOutput> {
        let batch_size = batch_size.max(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        // One INSERT per batch, so that the rows written are known exactly
        // when one fails.
        let config = crate::sink::SinkConfig { max_buffer_rows: batch_size, ..args.sink_config() };
        let url = crate::secret::redact_url(&config.url);
        let sink = runtime
            .block_on(ClickHouseSink::connect(config))
            .with_context(|| format!("connecting to ClickHouse at {url} (0 rows written)"))?;
        runtime
            .block_on(sink.check_schema())
            .with_context(|| format!("{} is not usable: run `llma-sentiment migrate` (0 rows written)", sink.table()))?;
        Ok(ClickHouseOutput {
            runtime,
            sink,
            pending: Vec::with_capacity(batch_size),
            batch_size,
            flush_interval,
            last_flush: Instant::now(),
        })
    }

    pub fn table(&self) -> &str {
        self.sink.table()
    }

    /// Rows the server acknowledged so far.
    pub fn written(&self) -> u64 {
        self.sink.stats().rows_written
    }

    /// Queues one event; writes the batch when it is full or when the flush
    /// interval has passed since the last write.
    pub fn push(&mut self, event: SentimentEvent) -> anyhow::Result<()> {
        self.pending.push(event);
        if self.pending.len() >= self.batch_size || self.last_flush.elapsed() >= self.flush_interval {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is queued; on failure says how much was written before.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.runtime.block_on(self.sink.insert(&self.pending)) {
            Ok(()) => {
                tracing::debug!(rows = self.pending.len(), table = %self.sink.table(), "batch written");
                self.pending.clear();
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "writing to {} failed: {} rows were written before the failure, {} classified rows were not; \
                 re-running the backfill is safe (rows already written are replaced, not duplicated)",
                self.sink.table(),
                self.written(),
                self.pending.len()
            ))),
        }
    }
}
