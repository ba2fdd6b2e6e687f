//! Inbound deliveries: every webhook request a receiver kept, with its verification and
//! processing result.

use std::borrow::Cow;
use std::collections::HashSet;

use sqlx::FromRow;

use super::direct::{Binder, DirectSqlite};
use super::record::{PushRows, bind_push_statement, push_statements, write_push_rows_direct};
use super::{HeldConnection, StoreError, StoreResult, Tx, dispatch, dispatch_tx};
use crate::clock;
use crate::config::Backend;
use crate::store::Store;

/// How a kept body is stored: as received.
pub const BODY_IDENTITY: &str = "identity";
/// How a kept body is stored: an LZ4 block after the body's length (4 bytes, little-endian).
/// Webhook JSON shrinks to about a third, which is most of what a verified push writes.
pub const BODY_LZ4: &str = "lz4";

/// Bodies shorter than this are kept as received: compressing them saves next to nothing.
const COMPRESS_FROM_BYTES: usize = 512;

/// The stored form of a received body and its encoding: LZ4 when that is smaller.
pub fn encode_body(raw: &[u8]) -> (Vec<u8>, &'static str) {
    if raw.len() >= COMPRESS_FROM_BYTES && u32::try_from(raw.len()).is_ok() {
        let packed = lz4_flex::block::compress_prepend_size(raw);
        if packed.len() < raw.len() {
            return (packed, BODY_LZ4);
        }
    }
    (raw.to_vec(), BODY_IDENTITY)
}

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
    /// The body in its stored form; [`InboundDelivery::raw_body`] gives it back as received.
    pub body: Vec<u8>,
    /// [`BODY_IDENTITY`] or [`BODY_LZ4`].
    pub body_encoding: String,
    /// The length of the body as received.
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

impl InboundDelivery {
    /// The body exactly as it was received.
    pub fn raw_body(&self) -> StoreResult<Cow<'_, [u8]>> {
        let corrupt =
            |why: String| StoreError::Corrupt(format!("inbound delivery {}: {why}", self.id));
        match self.body_encoding.as_str() {
            BODY_IDENTITY => Ok(Cow::Borrowed(&self.body)),
            BODY_LZ4 => {
                // The length prefix is checked against the kept size before anything is allocated.
                let (prefix, block) = self
                    .body
                    .split_first_chunk::<4>()
                    .ok_or_else(|| corrupt("the compressed body is truncated".to_owned()))?;
                let size = u32::from_le_bytes(*prefix) as usize;
                if i64::try_from(size).ok() != Some(self.body_size) {
                    return Err(corrupt(
                        "the compressed body's length does not match".to_owned(),
                    ));
                }
                lz4_flex::block::decompress(block, size)
                    .map(Cow::Owned)
                    .map_err(|error| corrupt(format!("the body cannot be decompressed: {error}")))
            }
            other => Err(corrupt(format!("unknown body encoding `{other}`"))),
        }
    }
}

macro_rules! delivery_columns {
    () => {
        "id, tenant_id, source, targets, delivery_key, dedupe_key, event, action, repository, \
         content_type, headers, body, body_encoding, body_size, verification, result, error, summary, \
         received_at, duration_ms, replays"
    };
}

/// Binds deliveries' columns, in [`delivery_columns`] order, onto a query of either backend.
macro_rules! bind_deliveries {
    ($query:expr, $deliveries:expr) => {{
        let mut query = $query;
        for delivery in $deliveries {
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
                .bind(&delivery.body_encoding)
                .bind(delivery.body_size)
                .bind(&delivery.verification)
                .bind(&delivery.result)
                .bind(&delivery.error)
                .bind(&delivery.summary)
                .bind(delivery.received_at)
                .bind(delivery.duration_ms)
                .bind(delivery.replays);
        }
        query
    }};
}

/// Deliveries per statement: 21 bound values each, far below both engines' parameter limits.
const DELIVERIES_PER_STATEMENT: usize = 500;

fn insert_sql(backend: Backend, rows: usize) -> String {
    format!(
        concat!(
            "INSERT INTO inbound_deliveries (",
            delivery_columns!(),
            ") VALUES {} ON CONFLICT (source, tenant_id, dedupe_key) DO NOTHING RETURNING id"
        ),
        super::values_placeholders(backend, rows, 21)
    )
}

/// Writes many deliveries and what their pushes record. A delivery whose source, tenant and
/// dedupe key are stored already (or appear earlier in `deliveries`) is skipped, and so are its
/// push rows. Returns the ids of the deliveries written.
///
/// On SQLite, whose one writer connection every receiver waits for, all the statements go to
/// the database as one multi-statement query: one round trip to the connection's thread instead
/// of one per statement (`?` placeholders are bound in order across the statements).
pub async fn insert_many_in(
    tx: &mut Tx<'_>,
    deliveries: &[&InboundDelivery],
    pushes: &[&PushRows],
) -> StoreResult<Vec<String>> {
    let tx = match tx {
        Tx::Sqlite(tx) => return Ok(sqlite_batch(tx, deliveries, pushes).await?),
        Tx::Postgres(tx) => tx,
    };
    let now = clock::now_ms();
    let mut written = Vec::with_capacity(deliveries.len());
    for chunk in deliveries.chunks(DELIVERIES_PER_STATEMENT) {
        let sql = insert_sql(Backend::Postgres, chunk.len());
        let query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        written.extend(
            bind_deliveries!(query, chunk.iter())
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    for statement in &push_statements(Backend::Postgres, pushes) {
        let query = sqlx::query(sqlx::AssertSqlSafe(statement.sql()));
        bind_push_statement!(query, statement, now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(written)
}

/// The SQLite statements of [`insert_many_in`] as one multi-statement query, inside the
/// caller's transaction; returns the ids of the deliveries written.
async fn sqlite_batch(
    conn: &mut sqlx::SqliteConnection,
    deliveries: &[&InboundDelivery],
    pushes: &[&PushRows],
) -> Result<Vec<String>, sqlx::Error> {
    let chunks: Vec<&[&InboundDelivery]> = deliveries.chunks(DELIVERIES_PER_STATEMENT).collect();
    let statements = push_statements(Backend::Sqlite, pushes);
    if chunks.is_empty() && statements.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::new();
    for chunk in &chunks {
        sql.push_str(&insert_sql(Backend::Sqlite, chunk.len()));
        sql.push_str(";\n");
    }
    for statement in &statements {
        sql.push_str(statement.sql());
        sql.push_str(";\n");
    }
    let now = clock::now_ms();
    // Only generated placeholders are interpolated; every value is bound.
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
    for chunk in &chunks {
        query = bind_deliveries!(query, chunk.iter());
    }
    for statement in &statements {
        query = bind_push_statement!(query, statement, now);
    }
    query.fetch_all(conn).await
}

/// [`insert_many_in`] in a transaction of its own on a held connection. On SQLite, with the
/// writer's own connection at hand, it runs there, on the caller's thread ([`direct`]).
pub async fn insert_many_alone(
    held: &mut HeldConnection,
    direct: Option<&mut DirectSqlite>,
    deliveries: &[&InboundDelivery],
    pushes: &[&PushRows],
) -> StoreResult<Vec<String>> {
    if let (HeldConnection::Sqlite(_), Some(direct)) = (&*held, direct) {
        return Ok(insert_many_direct(direct, deliveries, pushes)?);
    }
    let mut tx = held.begin().await?;
    let written = insert_many_in(&mut tx, deliveries, pushes).await?;
    tx.commit().await?;
    Ok(written)
}

/// [`insert_many_in`] on the direct connection, in one transaction, with single-row
/// statements: each delivery, then the push rows of those written
/// ([`super::record::write_push_rows_direct`]). Nothing here uses `RETURNING` or
/// `INSERT … SELECT`: either makes SQLite keep a statement journal, a copy of every page the
/// statement touches, which row by row cost more than the rows themselves.
fn insert_many_direct(
    direct: &mut DirectSqlite,
    deliveries: &[&InboundDelivery],
    pushes: &[&PushRows],
) -> rusqlite::Result<Vec<String>> {
    static INSERT_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            concat!(
                "INSERT INTO inbound_deliveries (",
                delivery_columns!(),
                ") VALUES {} ON CONFLICT (source, tenant_id, dedupe_key) DO NOTHING"
            ),
            super::values_placeholders(Backend::Sqlite, 1, 21)
        )
    });
    let now = clock::now_ms();
    direct.transaction(|conn| {
        let mut stored: HashSet<&str> = HashSet::with_capacity(deliveries.len());
        let mut insert = conn.prepare_cached(&INSERT_ONE)?;
        for delivery in deliveries {
            bind_deliveries!(Binder::new(&mut insert), [delivery]).finish()?;
            if insert.raw_execute()? == 1 {
                stored.insert(&delivery.id);
            }
        }
        for push in pushes {
            if stored.contains(push.delivery_id.as_str()) {
                write_push_rows_direct(conn, push, now)?;
            }
        }
        // In the order given, as the other paths answer.
        Ok(deliveries
            .iter()
            .filter(|delivery| stored.contains(delivery.id.as_str()))
            .map(|delivery| delivery.id.clone())
            .collect())
    })
}

/// Writes a delivery that was not processed (a failure before or during processing). Its
/// dedupe key is unset, so it never conflicts.
pub async fn insert(store: &Store, delivery: &InboundDelivery) -> StoreResult<()> {
    let mut tx = store.begin().await?;
    insert_many_in(&mut tx, &[delivery], &[]).await?;
    tx.commit().await
}

/// Records the outcome of a replay inside the transaction that re-ran the processing; an earlier
/// failure's error is cleared.
pub async fn record_replay(
    tx: &mut Tx<'_>,
    id: &str,
    result: &str,
    summary: &str,
) -> StoreResult<()> {
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
pub async fn set_outcome_in(
    tx: &mut Tx<'_>,
    id: &str,
    result: &str,
    summary: &str,
) -> StoreResult<()> {
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

/// The deliveries kept for a service or integration since `since` (ms), counted by hour (as
/// hours since the epoch) and result.
pub async fn hourly_results(
    store: &Store,
    tenant_id: &str,
    target: &str,
    since: i64,
) -> StoreResult<Vec<(i64, String, i64)>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, (i64, String, i64)>(
            "SELECT received_at / 3600000 AS hour, result, COUNT(*) AS deliveries \
             FROM inbound_deliveries WHERE tenant_id = $1 AND id >= $2 AND targets LIKE $3 \
             GROUP BY 1, 2",
        )
        .bind(tenant_id)
        .bind(crate::ids::first_at(crate::ids::Kind::InboundDelivery, since))
        .bind(format!("%\"{target}\"%"))
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

/// The newest verified push the tenant received for `repository_key` (any case), if any.
pub async fn latest_push(
    store: &Store,
    tenant_id: &str,
    repository_key: &str,
) -> StoreResult<Option<InboundDelivery>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, InboundDelivery>(concat!(
            "SELECT ", delivery_columns!(), " FROM inbound_deliveries \
             WHERE tenant_id = $1 AND lower(repository) = $2 AND event = 'push' \
             AND verification = 'verified' ORDER BY id DESC LIMIT 1"
        ))
        .bind(tenant_id)
        .bind(repository_key)
        .fetch_optional(pool)
        .await?
    }))
}

/// Whether the tenant received a verified delivery through an integration for `repository_key`.
pub async fn integration_knows(
    store: &Store,
    tenant_id: &str,
    repository_key: &str,
) -> StoreResult<bool> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM (SELECT 1 FROM inbound_deliveries WHERE tenant_id = $1 \
             AND source = 'github_integration' AND lower(repository) = $2 LIMIT 1) AS found",
        )
        .bind(tenant_id)
        .bind(repository_key)
        .fetch_one(pool)
        .await?
    }) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(body: Vec<u8>, body_encoding: &str, body_size: i64) -> InboundDelivery {
        InboundDelivery {
            id: "ind_test".to_owned(),
            tenant_id: None,
            source: "github".to_owned(),
            targets: "[]".to_owned(),
            delivery_key: None,
            dedupe_key: None,
            event: "push".to_owned(),
            action: None,
            repository: None,
            content_type: "application/json".to_owned(),
            headers: "{}".to_owned(),
            body,
            body_encoding: body_encoding.to_owned(),
            body_size,
            verification: "verified".to_owned(),
            result: "processed".to_owned(),
            error: None,
            summary: "{}".to_owned(),
            received_at: 0,
            duration_ms: 0,
            replays: 0,
        }
    }

    #[test]
    fn large_bodies_are_kept_compressed_and_come_back_exactly() {
        let raw = include_bytes!("../../tests/e2e/fixtures/github/push_new_branch.json");
        let (stored, encoding) = encode_body(raw);
        assert_eq!(encoding, BODY_LZ4);
        assert!(stored.len() * 2 < raw.len(), "{} bytes", stored.len());
        let delivery = kept(stored, encoding, raw.len() as i64);
        assert_eq!(delivery.raw_body().unwrap().as_ref(), raw);
    }

    #[test]
    fn small_or_incompressible_bodies_are_kept_as_received() {
        let (stored, encoding) = encode_body(br#"{"zen":"Keep it logically awesome."}"#);
        assert_eq!(
            (stored.as_slice(), encoding),
            (
                &br#"{"zen":"Keep it logically awesome."}"#[..],
                BODY_IDENTITY
            )
        );
        // 4 KiB of pseudo-random bytes (xorshift): LZ4 would only add to them.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let (stored, encoding) = encode_body(&noise);
        assert_eq!(encoding, BODY_IDENTITY);
        assert!(stored == noise, "kept as received");
    }

    #[test]
    fn damaged_bodies_are_an_error_not_a_panic() {
        let raw = vec![b'a'; 4096];
        let (stored, encoding) = encode_body(&raw);
        let wrong_size = kept(stored.clone(), encoding, 4095);
        assert!(matches!(wrong_size.raw_body(), Err(StoreError::Corrupt(_))));
        let truncated = kept(stored[..stored.len() - 3].to_vec(), encoding, 4096);
        assert!(matches!(truncated.raw_body(), Err(StoreError::Corrupt(_))));
        let short = kept(vec![1, 2], encoding, 4096);
        assert!(matches!(short.raw_body(), Err(StoreError::Corrupt(_))));
        let unknown = kept(raw.clone(), "gzip", 4096);
        assert!(matches!(unknown.raw_body(), Err(StoreError::Corrupt(_))));
    }
}
