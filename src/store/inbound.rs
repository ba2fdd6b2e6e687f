//! Inbound deliveries: every webhook request a receiver kept, with its verification and
//! processing result.

use sqlx::FromRow;

use super::{StoreError, StoreResult, Tx, dispatch, dispatch_tx};
use crate::store::Store;

#[derive(Debug, Clone, FromRow)]
pub struct InboundDelivery {
    pub id: String,
    pub tenant_id: Option<String>,
    /// `github`, `gitlab` or `github_integration`.
    pub source: String,
    /// JSON array of the service or integration ids the delivery was verified for.
    pub targets: String,
    /// The sender's delivery id (`X-GitHub-Delivery`, GitLab's idempotency key or event UUID).
    pub delivery_key: Option<String>,
    pub dedupe_key: Option<String>,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub content_type: String,
    /// JSON object of the request headers, secrets redacted.
    pub headers: String,
    pub body: Vec<u8>,
    pub body_size: i64,
    /// `verified`, or why not.
    pub verification: String,
    /// `processed`, `ignored` or `failed`.
    pub result: String,
    pub error: Option<String>,
    /// JSON object: what processing did (commits stored, pull request updated…).
    pub summary: String,
    pub received_at: i64,
    pub duration_ms: i64,
    pub replays: i64,
}

macro_rules! delivery_columns {
    () => {
        "id, tenant_id, source, targets, delivery_key, dedupe_key, event, action, repository, \
         content_type, headers, body, body_size, verification, result, error, summary, \
         received_at, duration_ms, replays"
    };
}

/// Writes many deliveries in one statement; those whose source, tenant and dedupe key are already
/// stored (or appear earlier in `deliveries`) are skipped. Returns the ids written.
pub async fn insert_many_in(
    tx: &mut Tx,
    deliveries: &[&InboundDelivery],
) -> StoreResult<Vec<String>> {
    let mut written = Vec::with_capacity(deliveries.len());
    // 20 columns a row: 500 rows stay far below both engines' parameter limits.
    for chunk in deliveries.chunks(500) {
        let placeholders = super::values_placeholders(tx.backend(), chunk.len(), 20);
        let sql = format!(
            concat!(
                "INSERT INTO inbound_deliveries (",
                delivery_columns!(),
                ") VALUES {} \
                 ON CONFLICT (source, tenant_id, dedupe_key) DO NOTHING RETURNING id"
            ),
            placeholders
        );
        let ids: Vec<String> = dispatch_tx!(tx, conn => {
            // Only generated placeholders are interpolated; every value is bound.
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()));
            for delivery in chunk {
                query = query
                    .bind(&delivery.id)
                    .bind(&delivery.tenant_id)
                    .bind(&delivery.source)
                    .bind(&delivery.targets)
                    .bind(&delivery.delivery_key)
                    .bind(&delivery.dedupe_key)
                    .bind(&delivery.event)
                    .bind(&delivery.action)
                    .bind(&delivery.repository)
                    .bind(&delivery.content_type)
                    .bind(&delivery.headers)
                    .bind(&delivery.body)
                    .bind(delivery.body_size)
                    .bind(&delivery.verification)
                    .bind(&delivery.result)
                    .bind(&delivery.error)
                    .bind(&delivery.summary)
                    .bind(delivery.received_at)
                    .bind(delivery.duration_ms)
                    .bind(delivery.replays);
            }
            query.fetch_all(&mut *conn).await?
        });
        written.extend(ids);
    }
    Ok(written)
}

/// Writes a delivery that was not processed (a failure before or during processing). Its
/// dedupe key is unset, so it never conflicts.
pub async fn insert(store: &Store, delivery: &InboundDelivery) -> StoreResult<()> {
    let mut tx = store.begin().await?;
    insert_many_in(&mut tx, &[delivery]).await?;
    tx.commit().await
}

/// Records the outcome of a replay inside the transaction that re-ran the processing; an earlier
/// failure's error is cleared.
pub async fn record_replay(tx: &mut Tx, id: &str, result: &str, summary: &str) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE inbound_deliveries SET result = $2, error = NULL, summary = $3, \
             replays = replays + 1 WHERE id = $1",
        )
        .bind(id)
        .bind(result)
        .bind(summary)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Sets the result and summary of a delivery written earlier in the same transaction.
pub async fn set_outcome_in(tx: &mut Tx, id: &str, result: &str, summary: &str) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query("UPDATE inbound_deliveries SET result = $2, summary = $3 WHERE id = $1")
            .bind(id)
            .bind(result)
            .bind(summary)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

#[derive(Debug, Default)]
pub struct InboundFilter<'a> {
    pub source: Option<&'a str>,
    pub event: Option<&'a str>,
    pub result: Option<&'a str>,
    /// A service or integration id the delivery was verified for.
    pub target: Option<&'a str>,
}

pub async fn list(
    store: &Store,
    tenant_id: &str,
    filter: &InboundFilter<'_>,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<InboundDelivery>> {
    let target = filter.target.map(|id| format!("%\"{id}\"%"));
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, InboundDelivery>(concat!(
            "SELECT ", delivery_columns!(), " FROM inbound_deliveries \
             WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) AND ($3 IS NULL OR source = $3) \
             AND ($4 IS NULL OR event = $4) AND ($5 IS NULL OR result = $5) \
             AND ($6 IS NULL OR targets LIKE $6) \
             ORDER BY id DESC LIMIT $7"
        ))
        .bind(tenant_id)
        .bind(before_id)
        .bind(filter.source)
        .bind(filter.event)
        .bind(filter.result)
        .bind(target.as_deref())
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<InboundDelivery> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, InboundDelivery>(concat!(
            "SELECT ", delivery_columns!(), " FROM inbound_deliveries WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}
