//! ClickHouse sink: writes `$ai_sentiment` events to an events table.
//!
//! * [`ClickHouseSink::connect`] builds a client (TCP_NODELAY connector,
//!   credentials from [`SinkConfig`]), asks the server for its version and turns
//!   the crate's schema validation on for modern servers (24.1+) only, unless
//!   the config forces it.
//! * [`ClickHouseSink::migrate`] creates the database and the
//!   `ReplacingMergeTree(created_at) ORDER BY (team_id, uuid)` table if missing
//!   and checks the column types of an existing one: ours, or a modern
//!   PostHog-shaped table (`DateTime64`, a non-nullable `person_id`), whose
//!   layout the rows are then encoded for (see `layout`).
//! * [`ClickHouseSink::insert`] writes events in INSERTs of at most
//!   `max_buffer_rows` rows and returns once the server acknowledged every row.
//!   Retryable failures (server down, 5xx, timeouts) are retried with
//!   exponential backoff, `attempts` times per chunk, each attempt cut
//!   off after `connect_timeout + request_timeout`: the worst case is
//!   [`SinkConfig::max_request_duration`] per chunk. A retried chunk may have
//!   been written already (ack lost): on servers from 22.2 each INSERT carries
//!   an `insert_deduplication_token` (a digest of its rows' content), so a
//!   table that remembers tokens (the one `migrate` creates there, any
//!   replicated table) drops the repeat; elsewhere the rows have the same
//!   (team_id, uuid) and the engine collapses them; read with FINAL, as the
//!   read helpers do.
//!
//! Works with ClickHouse 18.16 (Debian) and current servers; the table
//! `migrate` creates uses only types that 18.16 knows (`DateTime`, second
//! precision).

mod classify;
mod client;
mod config;
mod error;
mod layout;
mod read;
mod schema;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;


use crate::secret::redact_url;
pub use client::SinkStats;
pub use config::{
    validate_identifier, SinkConfig, DEFAULT_DATABASE, DEFAULT_TABLE, DEFAULT_URL, DEFAULT_USER,
};
pub use error::{ConfigProblem, ErrorKind, SinkError, SinkField};
pub use schema::{
    create_database_sql, create_table_sql, table_ref, ServerVersion, StoredEvent, DEDUPLICATION_TOKEN_MIN_VERSION,
    DEDUPLICATION_WINDOW, READ_COLUMNS, VALIDATION_MIN_VERSION,
};
pub use crate::event::sentiment_uuid_for;

use crate::event::{EventTime, SentimentEvent};
use client::{build_client, with_retry, Counters};
use error::Failure;
use layout::TableLayout;
use schema::{EventRow, WAIT_FOR_ASYNC_INSERT_MIN_VERSION};

/// A connection to one events table. Cheap to clone; clones share the HTTP
/// pool and the counters.
#[derive(Clone)]
pub struct ClickHouseSink {
    inner: Arc<Inner>,
}

struct Inner {
    config: SinkConfig,
    client: clickhouse::Client,
    version: ServerVersion,
    validation: bool,
    /// `` `db`.`table` ``
    table: String,
    /// Known once the table was seen (a check, or the first insert).
    layout: tokio::sync::OnceCell<TableLayout>,
    counters: Counters,
}

impl fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseSink")
            .field("config", &self.inner.config)
            .field("server_version", &self.inner.version.raw)
            .field("validation", &self.inner.validation)
            .finish()
    }
}

impl ClickHouseSink {
    /// Validates `config`, connects, reads the server version (retrying like
    /// any request) and picks the validation mode.
    pub async fn connect(config: SinkConfig) -> Result<ClickHouseSink, SinkError> {
        config.validate()?;
        let table = table_ref(&config.database, &config.table)?;
        let base = build_client(&config)?;
        let counters = Counters::default();
        // Plain RowBinary: understood by every server version.
        let probe = base.clone().with_validation(false);
        let raw: String = with_retry(&config, config.attempts, &counters, "version", 0, |_| {
            let q = probe.query_raw("SELECT version()");
            async move { q.fetch_one::<String>().await }
        })
        .await?;
        let version = ServerVersion::parse(&raw).unwrap_or_else(|| {
            tracing::warn!(version = %raw, "unrecognised ClickHouse version; treating it as old");
            ServerVersion { raw: raw.trim().to_string(), major: 0, minor: 0, patch: 0 }
        });
        let validation = config.validation.unwrap_or_else(|| version.supports_validation());
        tracing::info!(
            url = %redact_url(&config.url),
            user = %config.user,
            table = %table,
            server_version = %version,
            validation,
            "connected to ClickHouse"
        );
        let client = base.with_validation(validation);
        Ok(ClickHouseSink {
            inner: Arc::new(Inner { config, client, version, validation, table, layout: Default::default(), counters }),
        })
    }

    /// One `SELECT 1`, one attempt: Ok when the server answers queries.
    pub async fn ping(&self) -> Result<(), SinkError> {
        let client = self.probe();
        self.retry_n(1, "ping", 0, |_| {
            let q = client.query_raw("SELECT 1");
            async move { q.fetch_one::<u8>().await.map(drop) }
        })
        .await
    }

    pub fn server_version(&self) -> &ServerVersion {
        &self.inner.version
    }

    /// Whether inserts and reads use the crate's schema validation.
    pub fn validation(&self) -> bool {
        self.inner.validation
    }

    pub fn config(&self) -> &SinkConfig {
        &self.inner.config
    }

    /// The target table, `` `db`.`table` ``.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The underlying client (validation mode applied, no default database),
    /// for ad-hoc queries.
    pub fn client(&self) -> &clickhouse::Client {
        &self.inner.client
    }

    pub fn stats(&self) -> SinkStats {
        self.inner.counters.snapshot()
    }

    /// Creates the database and table if missing (idempotent, safe to run
    /// concurrently) and checks that the table has the expected column types.
    pub async fn migrate(&self) -> Result<(), SinkError> {
        let config = &self.inner.config;
        // Check first: a user allowed to write but not to create still passes
        // when the database and table exist. Names are validated identifiers.
        let db_exists = self
            .scalar_u64(&format!("SELECT count() FROM system.databases WHERE name = '{}'", config.database))
            .await?
            > 0;
        if !db_exists {
            self.execute("migrate", create_database_sql(&config.database)?).await?;
        }
        let table_exists = self
            .scalar_u64(&format!(
                "SELECT count() FROM system.tables WHERE database = '{}' AND name = '{}'",
                config.database, config.table
            ))
            .await?
            > 0;
        if !table_exists {
            let window = self.inner.version.at_least(DEDUPLICATION_TOKEN_MIN_VERSION);
            self.execute("migrate", create_table_sql(&config.database, &config.table, window)?).await?;
        }
        // The crate caches DESCRIBE results for validation; the table may be new.
        self.inner.client.clear_cached_metadata().await;
        self.check_schema().await
    }

    /// Checks that the table exists with columns of compatible types (extra
    /// columns are allowed) and learns its layout. A mismatch is a final
    /// `Schema` error naming each column that does not fit.
    pub async fn check_schema(&self) -> Result<(), SinkError> {
        match self.read_layout().await? {
            Some(_) => {}
            None => {
                let message = format!("table {} does not exist", self.inner.table);
                return Err(Failure { kind: ErrorKind::Schema, code: None, message }.into_error("check_schema", 1, 1));
            }
        }
        let config = &self.inner.config;
        // Retried writes are only collapsed by a *ReplacingMergeTree ordered by
        // (team_id, uuid). Other engines (a Distributed table in front of such
        // tables, say) still work, so this is a warning, not an error.
        let sql = format!(
            "SELECT engine, sorting_key FROM system.tables WHERE database = '{}' AND name = '{}'",
            config.database, config.table
        );
        let client = self.probe();
        let (engine, sorting_key): (String, String) = self
            .retry("check_schema", 0, |_| {
                let q = client.query_raw(&sql);
                async move { q.fetch_one::<(String, String)>().await }
            })
            .await?;
        if !engine.ends_with("ReplacingMergeTree") || sorting_key.replace(' ', "") != "team_id,uuid" {
            tracing::warn!(
                table = %self.inner.table,
                engine = %engine,
                sorting_key = %sorting_key,
                "events table is not a ReplacingMergeTree ordered by (team_id, uuid): retried inserts may leave duplicates"
            );
        }
        Ok(())
    }

    /// Writes `events` and returns once the server acknowledged every row.
    ///
    /// Every row is built first (the events' times were range-checked when
    /// they were made, see `EventTime`): one that cannot be built fails the
    /// call with `InvalidEvent` before anything is sent. Rows go out in
    /// INSERTs of at most `max_buffer_rows` rows; each INSERT is retried on
    /// retryable failures (see the module docs). On error, earlier chunks may
    /// be written: calling again with the same events is safe (same uuids,
    /// collapsed by the engine).
    pub async fn insert(&self, events: &[SentimentEvent]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let inner = &*self.inner;
        let created_at = EventTime::now();
        // A table not there yet: the server's own error says so at the insert.
        let layout = self.read_layout().await?.unwrap_or(TableLayout::CREATED);
        let all_rows =
            events.iter().map(|e| EventRow::from_event(e, created_at, &layout)).collect::<Result<Vec<_>, _>>()?;
        let wait_for_async = inner.version.at_least(WAIT_FOR_ASYNC_INSERT_MIN_VERSION);
        let with_token = inner.version.at_least(DEDUPLICATION_TOKEN_MIN_VERSION);
        // The layout check compared every column type already; the client's
        // own validation would also refuse a table with extra columns that
        // have no DEFAULT (PostHog's), which an INSERT naming its columns
        // fills with the type's default.
        let client = &self.probe();
        for rows in all_rows.chunks(inner.config.max_buffer_rows) {
            let table = inner.table.as_str();
            let timeout = inner.config.request_timeout;
            let token = with_token.then(|| deduplication_token(rows));
            let token = token.as_deref();
            self.retry("insert", rows.len(), |_| async move {
                let mut insert =
                    client.insert_unescaped::<EventRow>(table).await?.with_timeouts(Some(timeout), Some(timeout));
                if wait_for_async {
                    insert = insert.with_setting("wait_for_async_insert", "1");
                }
                if let Some(token) = token {
                    insert = insert.with_setting("insert_deduplication_token", token);
                }
                for row in rows {
                    insert.write(row).await?;
                }
                insert.end().await
            })
            .await
            .inspect_err(|_| crate::metrics::record_insert_error())?;
            crate::metrics::record_insert_rows(rows.len());
            inner.counters.rows_written.fetch_add(rows.len() as u64, Ordering::Relaxed);
            inner.counters.chunks_written.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The table's layout: `None` while the table does not exist; an
    /// incompatible table is a final `Schema` error. Learnt once.
    async fn read_layout(&self) -> Result<Option<TableLayout>, SinkError> {
        if let Some(layout) = self.inner.layout.get() {
            return Ok(Some(*layout));
        }
        let config = &self.inner.config;
        let sql = format!(
            "SELECT name, type FROM system.columns WHERE database = '{}' AND table = '{}'",
            config.database, config.table
        );
        let columns: Vec<(String, String)> = self.fetch_all("check_schema", &self.probe(), &sql).await?;
        if columns.is_empty() {
            return Ok(None);
        }
        let layout = TableLayout::from_columns(&columns).map_err(|problems| {
            let message = format!("table {}: {}", self.inner.table, problems.join("; "));
            Failure { kind: ErrorKind::Schema, code: None, message }.into_error("check_schema", 1, 1)
        })?;
        Ok(Some(*self.inner.layout.get_or_init(|| async { layout }).await))
    }

    /// Every row `sql` returns on `client`, retried as the sink retries.
    async fn fetch_all<T>(&self, op: &'static str, client: &clickhouse::Client, sql: &str) -> Result<Vec<T>, SinkError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.retry(op, 0, |_| {
            let q = client.query_raw(sql);
            async move { q.fetch_all::<T>().await }
        })
        .await
    }

    /// Runs a query returning one UInt64 (a `count()`).
    async fn scalar_u64(&self, sql: &str) -> Result<u64, SinkError> {
        let client = self.probe();
        self.retry("query", 0, |_| {
            let q = client.query_raw(sql);
            async move { q.fetch_one::<u64>().await }
        })
        .await
    }

    async fn execute(&self, op: &'static str, sql: String) -> Result<(), SinkError> {
        let client = self.probe();
        self.retry(op, 0, |_| {
            let q = client.query_raw(&sql);
            async move { q.execute().await }
        })
        .await
    }

    /// The client without validation, for statements with untyped results.
    fn probe(&self) -> clickhouse::Client {
        self.inner.client.clone().with_validation(false)
    }

    async fn retry<T, F, Fut>(&self, op: &'static str, rows: usize, attempt: F) -> Result<T, SinkError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, clickhouse::error::Error>>,
    {
        self.retry_n(self.inner.config.attempts, op, rows, attempt).await
    }

    async fn retry_n<T, F, Fut>(&self, attempts: u32, op: &'static str, rows: usize, attempt: F) -> Result<T, SinkError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, clickhouse::error::Error>>,
    {
        with_retry(&self.inner.config, attempts, &self.inner.counters, op, rows, attempt).await
    }
}

/// The INSERT's deduplication token: a SHA-256 of its rows' content (not
/// of `created_at`, which a retry sets anew), so a repeat of the same rows
/// is recognised and a changed row (a re-classification) is not.
fn deduplication_token(rows: &[EventRow]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for row in rows {
        row.content_digest(&mut hasher);
    }
    hex::encode(hasher.finalize())
}
