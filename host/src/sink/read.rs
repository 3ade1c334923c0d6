//! The read side of the sink: counts (deduplicated and raw), rows by uuid,
//! by generation and by team, and which uuids a retried attempt finds
//! stored already. Rows are read with `FINAL` (the latest per uuid) except
//! where the raw count is the point.

use std::collections::HashSet;

use uuid::Uuid;

use super::error::Failure;
use super::schema::ReadRow;
use super::{sentiment_uuid_for, ClickHouseSink, ErrorKind, SinkError, StoredEvent, READ_COLUMNS};

/// Most uuids per `IN (...)` list of a read.
const READ_BATCH: usize = 1000;

impl ClickHouseSink {
    /// Rows after deduplication (`FINAL`), optionally of one team.
    pub async fn count_final(&self, team_id: Option<i64>) -> Result<u64, SinkError> {
        let filter = team_id.map(|t| format!(" WHERE team_id = {t}")).unwrap_or_default();
        self.scalar_u64(&format!("SELECT count() FROM {} FINAL{filter}", self.inner.table)).await
    }

    /// Physical rows, before deduplication (no `FINAL`): more than
    /// `count_final` while duplicates are not merged yet.
    pub async fn count_raw(&self, team_id: Option<i64>) -> Result<u64, SinkError> {
        let filter = team_id.map(|t| format!(" WHERE team_id = {t}")).unwrap_or_default();
        self.scalar_u64(&format!("SELECT count() FROM {}{filter}", self.inner.table)).await
    }

    /// The rows with these uuids (`FINAL`), ordered by (team_id, uuid).
    pub async fn fetch_final(&self, uuids: &[Uuid]) -> Result<Vec<StoredEvent>, SinkError> {
        let mut out = Vec::with_capacity(uuids.len());
        for batch in uuids.chunks(READ_BATCH) {
            out.extend(self.fetch_where(&format!("uuid IN ({})", uuid_list(batch)), None).await?);
        }
        out.sort_by_key(|e| (e.team_id, e.uuid));
        Ok(out)
    }

    /// Which of `uuids` the table holds already (merged or not): what a
    /// retried attempt must not insert a second time.
    pub async fn stored(&self, uuids: &[Uuid]) -> Result<HashSet<Uuid>, SinkError> {
        let mut out = HashSet::new();
        for batch in uuids.chunks(READ_BATCH) {
            let sql = format!("SELECT DISTINCT toString(uuid) FROM {} WHERE uuid IN ({})", self.inner.table, uuid_list(batch));
            let found: Vec<String> = self.fetch_all("select", &self.probe(), &sql).await?;
            out.extend(found.iter().filter_map(|u| Uuid::parse_str(u).ok()));
        }
        Ok(out)
    }

    /// The sentiment event written for a generation (its uuid is the UUIDv5 of
    /// the generation uuid), if any.
    pub async fn fetch_by_generation(&self, generation_uuid: Uuid) -> Result<Option<StoredEvent>, SinkError> {
        Ok(self.fetch_final(&[sentiment_uuid_for(generation_uuid)]).await?.pop())
    }

    /// Up to `limit` rows of a team (`FINAL`), newest `timestamp` first.
    pub async fn fetch_team(&self, team_id: i64, limit: u64) -> Result<Vec<StoredEvent>, SinkError> {
        self.fetch_where(&format!("team_id = {team_id}"), Some(("timestamp DESC, uuid", limit))).await
    }

    async fn fetch_where(&self, filter: &str, order_limit: Option<(&str, u64)>) -> Result<Vec<StoredEvent>, SinkError> {
        let tail = match order_limit {
            Some((order, limit)) => format!(" ORDER BY {order} LIMIT {limit}"),
            None => String::new(),
        };
        let sql = format!("SELECT {READ_COLUMNS} FROM {} FINAL WHERE {filter}{tail}", self.inner.table);
        let rows: Vec<ReadRow> = self.fetch_all("select", &self.inner.client, &sql).await?;
        rows.into_iter()
            .map(|r| {
                StoredEvent::from_row(r).map_err(|message| {
                    Failure { kind: ErrorKind::InvalidData, code: None, message }.into_error("select", 1, 1)
                })
            })
            .collect()
    }
}

/// `toUUID('...'), ...` for an `IN` list (uuids are hex and hyphens only).
fn uuid_list(uuids: &[Uuid]) -> String {
    uuids.iter().map(|u| format!("toUUID('{}')", u.hyphenated())).collect::<Vec<_>>().join(", ")
}
