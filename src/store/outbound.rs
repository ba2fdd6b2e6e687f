//! Outbound webhooks in the store: custom event types, endpoints, events, the delivery queue with
//! leases, attempt history, and idempotency keys.
//!
//! The queue: a claim stamps a due delivery with the claimer's `lease_owner` and the end of its
//! lease, `lease_until`; a result is written only where that stamp is still in place, and a lease
//! that runs out simply makes the delivery due again. The lease lives in columns no index holds,
//! so a claim's scan of the due index steps over the deliveries in flight, whose
//! `next_attempt_at` stays where it was.
//!
//! On SQLite the queue state is columns of `deliveries`. On PostgreSQL it is a table of its own,
//! `delivery_queue`: one narrow row per unfinished delivery, deleted when it finishes, with its
//! due time (NULL while held for an inactive endpoint) and its lease. `deliveries` then has no
//! index on anything a claim or a result changes, so a claim rewrites only the narrow row and a
//! result is a HOT update of the delivery (no index entries); with the queue state in the history
//! row, every result wrote a new version into each of its indexes (migration 0016).
//! `delivery_view` shows a delivery with its next attempt on both backends.
//!
//! BOTH_KEYS: the hot statements that go from queue rows to their deliveries (a claim's answer, a
//! result's update) join on `endpoint_id` and `id` together. Planned from statistics of a small
//! `deliveries` (or none: nothing analyses it), PostgreSQL picked `deliveries_by_endpoint`
//! (endpoint_id, id) for a lookup by `id` alone, which walks that whole index for every row: a
//! batch of 256 results took 39 ms, 35 of them there. With both columns named, either index is a
//! point lookup, whatever the statistics.

use std::sync::LazyLock;

use sqlx::FromRow;

use super::{Store, StoreError, StoreResult, Tx, dispatch, dispatch_tx, dispatch_write};
use crate::clock;

/// Delivery states.
pub mod status {
    /// Waiting for its next attempt (or being attempted under a lease).
    pub const PENDING: &str = "pending";
    /// Waiting for its endpoint to be activated again.
    pub const PAUSED: &str = "paused";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 4] = [PENDING, PAUSED, SUCCEEDED, FAILED];
}

#[derive(Debug, Clone, FromRow)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub schema: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct Endpoint {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub name: String,
    pub description: String,
    /// JSON array of event type names; `None` means every type.
    pub event_types: Option<String>,
    pub active: bool,
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<i64>,
    pub consecutive_failures: i64,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// [`KIND_WEBHOOK`] or [`KIND_REPOSITORY_HOOK`].
    pub kind: String,
    /// A repository hook's repository, lowercased `owner/name`.
    pub repository_key: Option<String>,
    /// A repository hook's payload format: `gitlab` or `original`.
    pub payload_format: Option<String>,
    /// A repository hook temporarily disabled after failures waits until then.
    pub disabled_until: Option<i64>,
    /// At most this many attempts per second to this endpoint, across every node.
    pub rate_limit_per_second: Option<i64>,
}

/// An endpoint registered through the webhooks API.
pub const KIND_WEBHOOK: &str = "webhook";
/// A repository hook: forge events relayed GitLab-style.
pub const KIND_REPOSITORY_HOOK: &str = "repository_hook";

impl Endpoint {
    pub fn is_repository_hook(&self) -> bool {
        self.kind == KIND_REPOSITORY_HOOK
    }

    /// The event types this endpoint subscribes to; `None` for all.
    pub fn event_type_filter(&self) -> Option<Vec<String>> {
        self.event_types
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
    }

    pub fn wants(&self, event_type: &str) -> bool {
        self.event_type_filter()
            .is_none_or(|types| types.iter().any(|wanted| wanted == event_type))
    }
}

macro_rules! endpoint_columns {
    () => {
        "id, tenant_id, url, name, description, event_types, active, secret, previous_secret, \
         previous_secret_until, consecutive_failures, disabled_reason, disabled_at, created_at, \
         updated_at, kind, repository_key, payload_format, disabled_until, rate_limit_per_second"
    };
}
pub(crate) use endpoint_columns;

/// The columns of `delivery_view`, a delivery as the API shows it (its next attempt is the end of
/// its lease while it is in flight).
macro_rules! delivery_columns {
    () => {
        "id, tenant_id, endpoint_id, event_id, event_type, status, attempt_count, round_attempts, \
         next_attempt_at, last_status_code, last_error_kind, created_at, updated_at, completed_at"
    };
}

macro_rules! attempt_columns {
    () => {
        "id, delivery_id, attempt_number, started_at, duration_ms, url, request_headers, \
         response_status, response_headers, response_body, error_kind, error_message, succeeded"
    };
}

/// Pauses the pending deliveries, not in flight (no lease, or one that ran out), of the endpoints
/// `endpoint_id` followed by the given test selects (`$1`: now). Deactivation, the recorder's
/// disable and the sweep for inactive endpoints all hold deliveries this one way. On PostgreSQL
/// the queue row loses its due time (held) and the delivery shows `paused`.
macro_rules! pause_pending {
    (sqlite, $endpoints:literal) => {
        concat!(
            "UPDATE deliveries SET status = 'paused', lease_owner = NULL, lease_until = NULL, \
             updated_at = $1 WHERE status = 'pending' \
             AND (lease_until IS NULL OR lease_until <= $1) AND endpoint_id ",
            $endpoints
        )
    };
    (postgres, $endpoints:literal) => {
        concat!(
            "WITH held AS (UPDATE delivery_queue SET next_attempt_at = NULL, lease_owner = NULL, \
               lease_until = NULL WHERE next_attempt_at IS NOT NULL \
               AND (lease_until IS NULL OR lease_until <= $1) AND endpoint_id ",
            $endpoints,
            " RETURNING delivery_id) \
             UPDATE deliveries SET status = 'paused', updated_at = $1 \
             WHERE id IN (SELECT delivery_id FROM held)"
        )
    };
}

/// Holds the pending deliveries (not in flight) of one endpoint: see [`pause_pending!`].
async fn pause_pending_of(tx: &mut Tx<'_>, endpoint_id: &str, now: i64) -> StoreResult<()> {
    match tx {
        Tx::Sqlite(tx) => {
            sqlx::query(pause_pending!(sqlite, "= $2"))
                .bind(now)
                .bind(endpoint_id)
                .execute(&mut **tx)
                .await?;
        }
        Tx::Postgres(tx) => {
            sqlx::query(pause_pending!(postgres, "= $2"))
                .bind(now)
                .bind(endpoint_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempt_count: i64,
    pub round_attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error_kind: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct Attempt {
    pub id: String,
    pub delivery_id: String,
    pub attempt_number: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub url: String,
    /// JSON object of the headers sent.
    pub request_headers: String,
    pub response_status: Option<i64>,
    /// JSON object of the headers received.
    pub response_headers: Option<String>,
    /// The first 64 KiB of the response body (lossy UTF-8).
    pub response_body: Option<String>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub succeeded: bool,
}

/// A delivery taken from the queue under a lease.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt_count: i64,
    pub round_attempts: i64,
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    RetryAt(i64),
    /// No retry left (or the receiver answered 410 Gone, `gone`).
    Failed {
        gone: bool,
    },
}

/// One attempt's result, to be written if the lease is still held.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub claimed: Claimed,
    pub lease_owner: String,
    pub attempt: Attempt,
    pub next: Next,
}

/// An endpoint the recorder just disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    pub endpoint_id: String,
    pub tenant_id: String,
    pub reason: String,
}

/// How a batch of results was written.
#[derive(Debug, Default)]
pub struct Recorded {
    pub written: usize,
    pub lease_lost: usize,
    pub disabled: Vec<Disabled>,
}

// ---- event types ----------------------------------------------------------------------------

pub async fn insert_event_type(
    store: &Store,
    tenant_id: &str,
    name: &str,
    description: &str,
    schema: &str,
) -> StoreResult<EventType> {
    let created_at = clock::now_ms();
    dispatch_write!(store, pool => {
        sqlx::query(
            "INSERT INTO event_types (tenant_id, name, description, schema, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(description)
        .bind(schema)
        .bind(created_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })
    .map_err(|error| match StoreError::from(error) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("event type `{name}` already exists"))
        }
        other => other,
    })?;
    Ok(EventType {
        name: name.to_owned(),
        description: description.to_owned(),
        schema: schema.to_owned(),
        created_at,
    })
}

pub async fn list_event_types(store: &Store, tenant_id: &str) -> StoreResult<Vec<EventType>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, EventType>(
            "SELECT name, description, schema, created_at FROM event_types \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(pool)
        .await?
    }))
}

pub async fn get_event_type(
    store: &Store,
    tenant_id: &str,
    name: &str,
) -> StoreResult<Option<EventType>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, EventType>(
            "SELECT name, description, schema, created_at FROM event_types \
             WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(pool)
        .await?
    }))
}

pub async fn delete_event_type(store: &Store, tenant_id: &str, name: &str) -> StoreResult<bool> {
    let deleted = dispatch_write!(store, pool => {
        sqlx::query("DELETE FROM event_types WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(deleted == 1)
}

// ---- endpoints ------------------------------------------------------------------------------

pub async fn insert_endpoint(store: &Store, endpoint: &Endpoint) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query(concat!(
            "INSERT INTO endpoints (", endpoint_columns!(), ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20)"
        ))
        .bind(&endpoint.id)
        .bind(&endpoint.tenant_id)
        .bind(&endpoint.url)
        .bind(&endpoint.name)
        .bind(&endpoint.description)
        .bind(&endpoint.event_types)
        .bind(endpoint.active)
        .bind(&endpoint.secret)
        .bind(&endpoint.previous_secret)
        .bind(endpoint.previous_secret_until)
        .bind(endpoint.consecutive_failures)
        .bind(&endpoint.disabled_reason)
        .bind(endpoint.disabled_at)
        .bind(endpoint.created_at)
        .bind(endpoint.updated_at)
        .bind(&endpoint.kind)
        .bind(&endpoint.repository_key)
        .bind(&endpoint.payload_format)
        .bind(endpoint.disabled_until)
        .bind(endpoint.rate_limit_per_second)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Writes an endpoint's URL, name, description, filter and rate limit. Secrets are left alone: they change
/// only through [`rotate_endpoint_secret`], so an edit cannot undo a rotation.
pub async fn update_endpoint(store: &Store, endpoint: &Endpoint) -> StoreResult<()> {
    let updated = dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE endpoints SET url = $3, name = $4, description = $5, event_types = $6, \
             updated_at = $7, payload_format = $8, rate_limit_per_second = $9 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&endpoint.tenant_id)
        .bind(&endpoint.id)
        .bind(&endpoint.url)
        .bind(&endpoint.name)
        .bind(&endpoint.description)
        .bind(&endpoint.event_types)
        .bind(clock::now_ms())
        .bind(&endpoint.payload_format)
        .bind(endpoint.rate_limit_per_second)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Replaces an endpoint's secret, keeping the current one as the previous secret until `until`.
/// Only applies while the stored secret is still `current` (a concurrent rotation is a conflict).
pub async fn rotate_endpoint_secret(
    store: &Store,
    endpoint: &Endpoint,
    new_secret: &[u8],
    previous_secret: &[u8],
    until: i64,
) -> StoreResult<()> {
    let updated = dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE endpoints SET secret = $4, previous_secret = $5, previous_secret_until = $6, \
             updated_at = $7 WHERE tenant_id = $1 AND id = $2 AND secret = $3",
        )
        .bind(&endpoint.tenant_id)
        .bind(&endpoint.id)
        .bind(&endpoint.secret)
        .bind(new_secret)
        .bind(previous_secret)
        .bind(until)
        .bind(clock::now_ms())
        .execute(pool)
        .await?
        .rows_affected()
    });
    if updated == 0 {
        return Err(StoreError::Conflict(
            "the secret was rotated concurrently; rotate again if needed".to_owned(),
        ));
    }
    Ok(())
}

pub async fn get_endpoint(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Endpoint> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Endpoint>(concat!(
            "SELECT ", endpoint_columns!(), " FROM endpoints WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

pub async fn list_endpoints(
    store: &Store,
    tenant_id: &str,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Endpoint>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Endpoint>(concat!(
            "SELECT ", endpoint_columns!(), " FROM endpoints \
             WHERE tenant_id = $1 AND kind = 'webhook' AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

/// Deletes an endpoint with its deliveries and their history.
pub async fn delete_endpoint(store: &Store, tenant_id: &str, id: &str) -> StoreResult<()> {
    let mut tx = store.begin().await?;
    if let Tx::Postgres(tx) = &mut tx {
        // The endpoint first, as a result batch locks it before its deliveries' queue rows:
        // deleting the deliveries first (and their queue rows with them) deadlocked with a batch
        // recording a result of this endpoint.
        let found =
            sqlx::query("SELECT 1 FROM endpoints WHERE id = $1 AND tenant_id = $2 FOR UPDATE")
                .bind(id)
                .bind(tenant_id)
                .fetch_optional(&mut **tx)
                .await?;
        if found.is_none() {
            return Err(StoreError::NotFound);
        }
    }
    let deleted = dispatch_tx!(&mut tx, conn => {
        sqlx::query("DELETE FROM delivery_attempts WHERE delivery_id IN \
                     (SELECT id FROM deliveries WHERE endpoint_id = $1 AND tenant_id = $2)")
            .bind(id)
            .bind(tenant_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM deliveries WHERE endpoint_id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM endpoints WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    });
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await
}

/// Activates or deactivates an endpoint. Activation clears the failure count and the disable
/// reason and releases paused deliveries; deactivation pauses pending ones.
pub async fn set_endpoint_active(
    store: &Store,
    tenant_id: &str,
    id: &str,
    active: bool,
) -> StoreResult<Endpoint> {
    let now = clock::now_ms();
    let mut tx = store.begin().await?;
    let changed = dispatch_tx!(&mut tx, conn => {
        sqlx::query(
            "UPDATE endpoints SET active = $3, updated_at = $4, \
             consecutive_failures = CASE WHEN $3 THEN 0 ELSE consecutive_failures END, \
             disabled_reason = CASE WHEN $3 THEN NULL ELSE disabled_reason END, \
             disabled_at = CASE WHEN $3 THEN NULL ELSE disabled_at END, \
             disabled_until = CASE WHEN $3 THEN NULL ELSE disabled_until END \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(active)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    if active {
        resume_paused(&mut tx, id, now).await?;
    } else {
        // Deliveries in flight (leased) keep their lease: their results are recorded, and a
        // retry of one of them is paused then.
        pause_pending_of(&mut tx, id, now).await?;
    }
    tx.commit().await?;
    get_endpoint(store, tenant_id, id).await
}

/// Makes an endpoint's held deliveries due now.
async fn resume_paused(tx: &mut Tx<'_>, endpoint_id: &str, now: i64) -> StoreResult<()> {
    match tx {
        Tx::Sqlite(tx) => {
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $2 \
                 WHERE endpoint_id = $1 AND status = 'paused'",
            )
            .bind(endpoint_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Tx::Postgres(tx) => {
            sqlx::query(
                "WITH resumed AS (UPDATE delivery_queue SET next_attempt_at = $2 \
                   WHERE endpoint_id = $1 AND next_attempt_at IS NULL RETURNING delivery_id) \
                 UPDATE deliveries SET status = 'pending', updated_at = $2 \
                 WHERE id IN (SELECT delivery_id FROM resumed)",
            )
            .bind(endpoint_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

const WEBHOOK_ENDPOINTS: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    " FROM endpoints WHERE tenant_id = $1 AND kind = 'webhook'"
);

/// What a publish reads, in one statement: the tenant's publish version, its registration of the
/// event type (the schema only on the first row, so a large schema is not repeated per endpoint),
/// then its webhook endpoints, active or not, one per row (none: one row without an endpoint).
/// The version is read by an uncorrelated subquery, once, in the statement's snapshot.
const PUBLISH_PLAN: &str = concat!(
    "SELECT (SELECT publish_version FROM tenants WHERE id = $1) AS plan_version, \
       t.name AS type_name, t.description AS type_description, \
       CASE WHEN ROW_NUMBER() OVER () = 1 THEN t.schema END AS type_schema, \
       t.created_at AS type_created_at, e.* \
     FROM (SELECT 1 AS one) AS o \
     LEFT JOIN event_types t ON t.tenant_id = $1 AND t.name = $2 \
     LEFT JOIN (SELECT ",
    endpoint_columns!(),
    " FROM endpoints WHERE tenant_id = $1 AND kind = 'webhook') AS e ON true"
);

/// What publishing an event type for a tenant is planned from, as read together.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// The tenant's publish version this was read at (migration 0017): a write planned from it
    /// is refused once the version moved on.
    pub version: i64,
    /// The tenant's registration of the type; `None` when it registered none by that name, as
    /// for a built-in type.
    pub registered: Option<EventType>,
    /// The tenant's webhook endpoints, active or not.
    pub endpoints: Vec<Endpoint>,
}

/// What publishing `event_type` for a tenant needs, in one round trip ([`PublishPlan`]). A
/// tenant that is gone is [`StoreError::NotFound`].
pub async fn publish_plan(
    store: &Store,
    tenant_id: &str,
    event_type: &str,
) -> StoreResult<PublishPlan> {
    use sqlx::Row;
    dispatch!(store, pool => {
        let mut version = None;
        let mut registered = None;
        let mut endpoints = Vec::new();
        let rows = sqlx::query(PUBLISH_PLAN)
            .bind(tenant_id)
            .bind(event_type)
            .fetch_all(pool)
            .await?;
        for row in &rows {
            version = version.or(row.try_get::<Option<i64>, _>("plan_version")?);
            if let (Some(name), Some(schema)) = (
                row.try_get::<Option<String>, _>("type_name")?,
                row.try_get::<Option<String>, _>("type_schema")?,
            ) {
                registered = Some(EventType {
                    name,
                    description: row.try_get("type_description")?,
                    schema,
                    created_at: row.try_get("type_created_at")?,
                });
            }
            if row.try_get::<Option<String>, _>("id")?.is_some() {
                endpoints.push(Endpoint::from_row(row)?);
            }
        }
        Ok(PublishPlan {
            version: version.ok_or(StoreError::NotFound)?,
            registered,
            endpoints,
        })
    })
}

/// The tenant's webhook endpoints, for fan-out inside a publishing transaction: active or not,
/// as an inactive one holds its deliveries paused.
pub async fn webhook_endpoints_in(tx: &mut Tx<'_>, tenant_id: &str) -> StoreResult<Vec<Endpoint>> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, Endpoint>(WEBHOOK_ENDPOINTS)
        .bind(tenant_id)
        .fetch_all(conn)
        .await?
    }))
}

/// One endpoint of a tenant inside a transaction.
pub async fn endpoint_in(tx: &mut Tx<'_>, tenant_id: &str, id: &str) -> StoreResult<Endpoint> {
    dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, Endpoint>(concat!(
            "SELECT ", endpoint_columns!(), " FROM endpoints WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(conn)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

/// Endpoints by id, for the delivery worker.
pub async fn endpoints_by_ids(store: &Store, ids: &[String]) -> StoreResult<Vec<Endpoint>> {
    Ok(match store {
        Store::Sqlite(sqlite) => {
            let pool = &sqlite.reader;
            sqlx::query_as::<_, Endpoint>(concat!(
                "SELECT ",
                endpoint_columns!(),
                " FROM endpoints WHERE id IN (SELECT value FROM json_each($1))"
            ))
            .bind(serde_json::to_string(ids).expect("strings serialise"))
            .fetch_all(pool)
            .await?
        }
        Store::Postgres(pool) => {
            sqlx::query_as::<_, Endpoint>(concat!(
                "SELECT ",
                endpoint_columns!(),
                " FROM endpoints WHERE id = ANY($1)"
            ))
            .bind(ids)
            .fetch_all(pool)
            .await?
        }
    })
}

// ---- events and deliveries ------------------------------------------------------------------

pub async fn insert_event(
    tx: &mut Tx<'_>,
    id: &str,
    tenant_id: &str,
    event_type: &str,
    payload: &str,
    created_at: i64,
) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO events (id, tenant_id, event_type, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(event_type)
        .bind(payload)
        .bind(created_at)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Like [`insert_event`] for an id that may exist already (a relay done before): false then,
/// and nothing is written.
pub async fn insert_event_once(
    tx: &mut Tx<'_>,
    id: &str,
    tenant_id: &str,
    event_type: &str,
    payload: &str,
    created_at: i64,
) -> StoreResult<bool> {
    let inserted = dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO events (id, tenant_id, event_type, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(event_type)
        .bind(payload)
        .bind(created_at)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(inserted == 1)
}

/// Why a write of deliveries was refused: one of their endpoints is gone.
const ENDPOINT_DELETED: &str = "an endpoint was deleted";

/// On PostgreSQL, which has no foreign key from a delivery to its endpoint (migration 0016): a
/// CTE `missing` with one row, `n`, the number of endpoint ids in the array `$ids` that name no
/// endpoint. The statement that writes deliveries in a caller's transaction writes nothing unless
/// it is 0 (a publish on its own checks its plan's version instead).
macro_rules! missing_endpoints {
    ($ids:literal) => {
        concat!(
            "missing AS MATERIALIZED (SELECT count(*) AS n FROM UNNEST(",
            $ids,
            "::text[]) AS m(endpoint_id) \
             WHERE NOT EXISTS (SELECT 1 FROM endpoints e WHERE e.id = m.endpoint_id))"
        )
    };
}

/// A delivery to queue: its id and endpoint.
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub endpoint_id: &'a str,
    /// Held (paused) until its inactive endpoint is activated again.
    pub paused: bool,
    /// Written already leased to a worker of this node, which attempts it without a claim.
    pub lease: Option<Lease<'a>>,
}

/// A lease a delivery is written with: whose, and until when (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub until: i64,
}

/// Queues deliveries of `event_id`, due at once, in one statement.
pub async fn insert_deliveries(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    event_id: &str,
    event_type: &str,
    deliveries: &[NewDelivery<'_>],
    now: i64,
) -> StoreResult<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    if let Tx::Postgres(tx) = tx {
        // The endpoints are checked here, not by a foreign key (migration 0016).
        let missing: i64 = sqlx::query_scalar(concat!(
            "WITH ",
            missing_endpoints!("$6"),
            ", delivery AS (INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, \
               event_type, status, attempt_count, round_attempts, created_at, updated_at) \
               SELECT d.id, $1, d.endpoint_id, $2, $3, d.status, 0, 0, $4, $4 \
               FROM UNNEST($5::text[], $6::text[], $7::text[]) AS d(id, endpoint_id, status) \
               WHERE (SELECT n FROM missing) = 0), \
             queued AS (INSERT INTO delivery_queue (delivery_id, endpoint_id, next_attempt_at, \
               lease_owner, lease_until, created_at) \
               SELECT q.id, q.endpoint_id, CASE WHEN q.status = 'pending' THEN $4 END, \
                 q.lease_owner, q.lease_until, $4 \
               FROM UNNEST($5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[]) \
                 AS q(id, endpoint_id, status, lease_owner, lease_until) \
               WHERE (SELECT n FROM missing) = 0) \
             SELECT n FROM missing"
        ))
        .bind(tenant_id)
        .bind(event_id)
        .bind(event_type)
        .bind(now)
        .bind(deliveries.iter().map(|d| d.id).collect::<Vec<_>>())
        .bind(deliveries.iter().map(|d| d.endpoint_id).collect::<Vec<_>>())
        .bind(
            deliveries
                .iter()
                .map(|d| held_or_pending(d.paused))
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|d| d.lease.map(|l| l.owner))
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|d| d.lease.map(|l| l.until))
                .collect::<Vec<_>>(),
        )
        .fetch_one(&mut **tx)
        .await?;
        if missing > 0 {
            return Err(StoreError::Conflict(ENDPOINT_DELETED.to_owned()));
        }
        return Ok(());
    }
    dispatch_tx!(tx, conn => {
        for chunk in deliveries.chunks(500) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, event_type, status, \
                 attempt_count, round_attempts, next_attempt_at, created_at, updated_at, \
                 lease_owner, lease_until) ",
            );
            insert.push_values(chunk, |mut row, delivery| {
                row.push_bind(delivery.id)
                    .push_bind(tenant_id)
                    .push_bind(delivery.endpoint_id)
                    .push_bind(event_id)
                    .push_bind(event_type)
                    .push_bind(held_or_pending(delivery.paused))
                    .push_bind(0_i64)
                    .push_bind(0_i64)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(delivery.lease.map(|lease| lease.owner))
                    .push_bind(delivery.lease.map(|lease| lease.until));
            });
            insert.build().execute(&mut *conn).await?;
        }
    });
    Ok(())
}

/// A new delivery's status: held for an inactive endpoint, or pending.
fn held_or_pending(paused: bool) -> &'static str {
    if paused {
        status::PAUSED
    } else {
        status::PENDING
    }
}

/// An event with its deliveries, to be written on its own (not in a caller's transaction) by
/// [`insert_events_with_deliveries`].
#[derive(Debug, Clone)]
pub struct EventToPublish {
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    /// The envelope as it will be sent.
    pub payload: String,
    pub created_at: i64,
    pub deliveries: Vec<DeliveryToQueue>,
    /// The tenant's publish version the deliveries were planned at ([`PublishPlan::version`]).
    pub plan_version: i64,
}

/// A delivery of an [`EventToPublish`], due at once.
#[derive(Debug, Clone)]
pub struct DeliveryToQueue {
    pub id: String,
    pub endpoint_id: String,
    /// Held (paused) until its inactive endpoint is activated again.
    pub paused: bool,
    /// Written leased to this node's worker, `(owner, until)`: see [`Lease`].
    pub lease: Option<(String, i64)>,
}

impl From<&NewDelivery<'_>> for DeliveryToQueue {
    fn from(delivery: &NewDelivery<'_>) -> DeliveryToQueue {
        DeliveryToQueue {
            id: delivery.id.to_owned(),
            endpoint_id: delivery.endpoint_id.to_owned(),
            paused: delivery.paused,
            lease: delivery
                .lease
                .map(|lease| (lease.owner.to_owned(), lease.until)),
        }
    }
}

impl<'a> From<&'a DeliveryToQueue> for NewDelivery<'a> {
    fn from(delivery: &'a DeliveryToQueue) -> NewDelivery<'a> {
        NewDelivery {
            id: &delivery.id,
            endpoint_id: &delivery.endpoint_id,
            paused: delivery.paused,
            lease: delivery.lease.as_ref().map(|(owner, until)| Lease {
                owner,
                until: *until,
            }),
        }
    }
}

/// Why a publish's write was refused: its plan is no longer current.
const PLAN_STALE: &str = "the endpoints or event types changed while publishing";

/// Whether `version` is still the tenant's publish version, inside a transaction (SQLite's
/// writer holds its lock, so it stays current until the commit).
async fn plan_is_current(tx: &mut Tx<'_>, tenant_id: &str, version: i64) -> StoreResult<bool> {
    let current: Option<i64> = dispatch_tx!(tx, conn => {
        sqlx::query_scalar("SELECT publish_version FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(conn)
            .await?
    });
    Ok(current == Some(version))
}

/// Writes events and their deliveries together, outside any caller transaction: on PostgreSQL
/// in one statement (one round trip, no explicit transaction; with `announce`, it also notifies
/// the other nodes), on SQLite in one transaction of the writer. When an event's plan is no
/// longer current (its tenant's publish version moved on: an endpoint or event type changed
/// since it was read), nothing is written and the answer is [`StoreError::Conflict`], so the
/// caller can plan again.
pub async fn insert_events_with_deliveries(
    store: &Store,
    events: &[&EventToPublish],
    announce: bool,
) -> StoreResult<()> {
    let written = match store {
        Store::Postgres(pool) => {
            let deliveries = || {
                events.iter().enumerate().flat_map(|(n, event)| {
                    event
                        .deliveries
                        .iter()
                        .map(move |delivery| (n as i64 + 1, delivery))
                })
            };
            sqlx::query_scalar::<_, i64>(
                // The NOTIFY, when asked for, is evaluated once before any row (a one-time
                // filter) and delivered with this statement's commit. A delivery names its
                // event by its place in the arrays (from 1). Nothing is written when an event
                // was planned at a publish version that is no longer its tenant's (an endpoint
                // deleted since bumped it: there is no foreign key to the endpoint, migration
                // 0016).
                "WITH stale AS MATERIALIZED (SELECT count(*) AS n \
                       FROM UNNEST($2::text[], $13::bigint[]) AS p(tenant_id, version) \
                       WHERE NOT EXISTS (SELECT 1 FROM tenants t \
                         WHERE t.id = p.tenant_id AND t.publish_version = p.version)), \
                     event AS (INSERT INTO events (id, tenant_id, event_type, payload, \
                       created_at) \
                       SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                         $5::bigint[]) WHERE (SELECT n FROM stale) = 0), \
                     announced AS MATERIALIZED (SELECT pg_notify('hookline_deliveries', '') \
                       WHERE $10 AND (SELECT n FROM stale) = 0), \
                     delivery AS (INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, \
                       event_type, status, attempt_count, round_attempts, created_at, updated_at) \
                       SELECT d.id, e.tenant_id, d.endpoint_id, e.id, e.event_type, d.status, 0, 0, \
                         e.created_at, e.created_at \
                       FROM UNNEST($6::bigint[], $7::text[], $8::text[], $9::text[]) \
                         AS d(event_no, id, endpoint_id, status) \
                       JOIN UNNEST($1::text[], $2::text[], $3::text[], $5::bigint[]) \
                         WITH ORDINALITY AS e(id, tenant_id, event_type, created_at, no) \
                         ON e.no = d.event_no \
                       WHERE (SELECT count(*) FROM announced) >= 0 \
                         AND (SELECT n FROM stale) = 0), \
                     queued AS (INSERT INTO delivery_queue (delivery_id, endpoint_id, \
                       next_attempt_at, lease_owner, lease_until, created_at) \
                       SELECT d.id, d.endpoint_id, \
                         CASE WHEN d.status = 'pending' THEN e.created_at END, \
                         d.lease_owner, d.lease_until, e.created_at \
                       FROM UNNEST($6::bigint[], $7::text[], $8::text[], $9::text[], $11::text[], \
                         $12::bigint[]) \
                         AS d(event_no, id, endpoint_id, status, lease_owner, lease_until) \
                       JOIN UNNEST($5::bigint[]) WITH ORDINALITY AS e(created_at, no) \
                         ON e.no = d.event_no \
                       WHERE (SELECT n FROM stale) = 0) \
                 SELECT n FROM stale",
            )
            .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.tenant_id.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.created_at).collect::<Vec<_>>())
            .bind(deliveries().map(|(n, _)| n).collect::<Vec<_>>())
            .bind(deliveries().map(|(_, d)| d.id.as_str()).collect::<Vec<_>>())
            .bind(deliveries().map(|(_, d)| d.endpoint_id.as_str()).collect::<Vec<_>>())
            .bind(
                deliveries()
                    .map(|(_, d)| held_or_pending(d.paused))
                    .collect::<Vec<_>>(),
            )
            .bind(announce)
            .bind(
                deliveries()
                    .map(|(_, d)| d.lease.as_ref().map(|(owner, _)| owner.as_str()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                deliveries()
                    .map(|(_, d)| d.lease.as_ref().map(|(_, until)| *until))
                    .collect::<Vec<_>>(),
            )
            .bind(events.iter().map(|e| e.plan_version).collect::<Vec<_>>())
            .fetch_one(pool)
            .await
            .map(|stale| stale == 0)
        }
        Store::Sqlite(_) => {
            let mut tx = store.begin().await?;
            // Most events of a batch share their tenant and plan: each pair is checked once.
            let mut current: Vec<(&str, i64)> = Vec::new();
            for event in events {
                let plan = (event.tenant_id.as_str(), event.plan_version);
                if !current.contains(&plan) {
                    if !plan_is_current(&mut tx, plan.0, plan.1).await? {
                        return Err(StoreError::Conflict(PLAN_STALE.to_owned()));
                    }
                    current.push(plan);
                }
                insert_event(
                    &mut tx,
                    &event.id,
                    &event.tenant_id,
                    &event.event_type,
                    &event.payload,
                    event.created_at,
                )
                .await?;
                let deliveries: Vec<NewDelivery<'_>> =
                    event.deliveries.iter().map(NewDelivery::from).collect();
                let inserted = insert_deliveries(
                    &mut tx,
                    &event.tenant_id,
                    &event.id,
                    &event.event_type,
                    &deliveries,
                    event.created_at,
                )
                .await;
                match inserted {
                    Err(StoreError::Database(sqlx::Error::Database(db)))
                        if db.is_foreign_key_violation() =>
                    {
                        return Err(StoreError::Conflict(ENDPOINT_DELETED.to_owned()));
                    }
                    other => other?,
                }
            }
            return tx.commit().await;
        }
    };
    match written {
        Ok(true) => Ok(()),
        Ok(false) => Err(StoreError::Conflict(PLAN_STALE.to_owned())),
        Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
            Err(StoreError::Conflict(ENDPOINT_DELETED.to_owned()))
        }
        Err(other) => Err(StoreError::from(other)),
    }
}

/// Tells every node listening that deliveries were queued (PostgreSQL; nothing on SQLite, whose
/// one node wakes in-process).
pub async fn announce_queued(store: &Store) -> StoreResult<()> {
    if let Store::Postgres(pool) = store {
        sqlx::query("SELECT pg_notify('hookline_deliveries', '')")
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The stored envelope bodies of events, by id.
pub async fn event_payloads(store: &Store, ids: &[String]) -> StoreResult<Vec<(String, String)>> {
    Ok(match store {
        Store::Sqlite(sqlite) => {
            let pool = &sqlite.reader;
            sqlx::query_as::<_, (String, String)>(
                "SELECT id, payload FROM events WHERE id IN (SELECT value FROM json_each($1))",
            )
            .bind(serde_json::to_string(ids).expect("strings serialise"))
            .fetch_all(pool)
            .await?
        }
        Store::Postgres(pool) => {
            sqlx::query_as::<_, (String, String)>(
                "SELECT id, payload FROM events WHERE id = ANY($1)",
            )
            .bind(ids)
            .fetch_all(pool)
            .await?
        }
    })
}

/// How to claim: when, for whom, how many.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub now: i64,
    pub lease_until: i64,
    pub owner: &'a str,
    /// The most to claim; the oldest-first pass may fill it for a single endpoint.
    pub limit: u32,
    /// The most the endpoint-by-endpoint pass takes for one endpoint.
    pub per_endpoint: u32,
    /// How many of the oldest due deliveries the first pass looks at.
    pub window: u32,
}

/// How both PostgreSQL claims end, after a CTE `due` of the queue rows they took and locked:
/// the rows are leased (`$2` until, `$3` owner) by a commit that does not wait for the WAL flush
/// (a claim lost in a crash only leaves its rows unleased), and each is answered with its
/// delivery, joined by endpoint and id (BOTH_KEYS in the module's notes).
macro_rules! lease_due {
    () => {
        "unhurried AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)), \
         leased AS (UPDATE delivery_queue q SET lease_until = $2, lease_owner = $3 \
           FROM due WHERE q.delivery_id = due.delivery_id \
           AND (SELECT count(*) FROM unhurried) = 1 \
           RETURNING q.delivery_id, q.endpoint_id) \
         SELECT d.id, d.tenant_id, d.endpoint_id, d.event_id, d.event_type, \
         d.attempt_count, d.round_attempts FROM leased JOIN deliveries d \
         ON d.endpoint_id = leased.endpoint_id AND d.id = leased.delivery_id"
    };
}

/// Claims up to `limit` due deliveries, oldest first, skipping the endpoints in `excluded` (those
/// at their concurrency cap on this node). The first pass looks only at the oldest `window` due
/// deliveries, so its cost does not grow with the queue. When it comes back short because
/// excluded endpoints fill that window, a second pass takes due deliveries endpoint by endpoint,
/// so a slow endpoint's backlog never hides the others' work.
///
/// On PostgreSQL a claim commits without waiting for its WAL to reach the disk
/// (`synchronous_commit = off` for that transaction alone): a claim lost in a database crash only
/// leaves its rows unleased, to be claimed again, and an attempt repeated after a crash is what
/// at-least-once delivery allows anyway. The result that follows is committed durably, and its
/// flush covers the claim's. This takes a disk flush out of every delivery's path.
pub async fn claim_due(
    store: &Store,
    claim: Claim<'_>,
    excluded: &[String],
) -> StoreResult<Vec<Claimed>> {
    let mut claimed = claim_oldest(store, claim, excluded).await?;
    let short = claim.limit as usize - claimed.len();
    if short > 0 && !excluded.is_empty() {
        let rest = Claim {
            limit: short as u32,
            ..claim
        };
        claimed.extend(claim_per_endpoint(store, rest, excluded).await?);
    }
    Ok(claimed)
}

async fn claim_oldest(
    store: &Store,
    claim: Claim<'_>,
    excluded: &[String],
) -> StoreResult<Vec<Claimed>> {
    Ok(match store {
        Store::Sqlite(sqlite) => {
            sqlx::query_as::<_, Claimed>(
                "UPDATE deliveries SET lease_until = $2, lease_owner = $3, updated_at = $1 \
                 WHERE id IN (SELECT id FROM (SELECT id, endpoint_id, next_attempt_at \
                     FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
                     AND (lease_until IS NULL OR lease_until <= $1) \
                     ORDER BY next_attempt_at LIMIT $6) \
                   WHERE endpoint_id NOT IN (SELECT value FROM json_each($5)) \
                   AND endpoint_id IN (SELECT id FROM endpoints WHERE active) \
                   ORDER BY next_attempt_at LIMIT $4) \
                 RETURNING id, tenant_id, endpoint_id, event_id, event_type, attempt_count, \
                 round_attempts",
            )
            .bind(claim.now)
            .bind(claim.lease_until)
            .bind(claim.owner)
            .bind(i64::from(claim.limit))
            .bind(serde_json::to_string(excluded).expect("strings serialise"))
            .bind(i64::from(claim.window))
            .fetch_all(&sqlite.writer)
            .await?
        }
        Store::Postgres(pool) => {
            sqlx::query_as::<_, Claimed>(
                // The candidate ids come from an InitPlan array, and the queue rows are then
                // fetched and locked by primary key. The commit does not wait for the WAL flush
                // (see above).
                concat!(
                "WITH due AS (SELECT delivery_id FROM delivery_queue WHERE delivery_id = ANY(ARRAY( \
                     SELECT c.delivery_id FROM (SELECT delivery_id, endpoint_id, next_attempt_at \
                         FROM delivery_queue WHERE next_attempt_at <= $1 \
                         AND (lease_until IS NULL OR lease_until <= $1) \
                         ORDER BY next_attempt_at LIMIT $6) c \
                     WHERE NOT (c.endpoint_id = ANY($5)) \
                     AND EXISTS (SELECT 1 FROM endpoints e WHERE e.id = c.endpoint_id AND e.active) \
                     ORDER BY c.next_attempt_at LIMIT $4)) \
                   AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
                   FOR UPDATE SKIP LOCKED), ",
                lease_due!()),
            )
            .bind(claim.now)
            .bind(claim.lease_until)
            .bind(claim.owner)
            .bind(i64::from(claim.limit))
            .bind(excluded)
            .bind(i64::from(claim.window))
            .fetch_all(pool)
            .await?
        }
    })
}

async fn claim_per_endpoint(
    store: &Store,
    claim: Claim<'_>,
    excluded: &[String],
) -> StoreResult<Vec<Claimed>> {
    Ok(match store {
        Store::Sqlite(sqlite) => {
            sqlx::query_as::<_, Claimed>(
                "UPDATE deliveries SET lease_until = $2, lease_owner = $3, updated_at = $1 \
                 WHERE id IN (SELECT d.id FROM endpoints e JOIN deliveries d ON d.id IN \
                     (SELECT x.id FROM deliveries x WHERE x.endpoint_id = e.id \
                      AND x.status = 'pending' AND x.next_attempt_at <= $1 \
                      AND (x.lease_until IS NULL OR x.lease_until <= $1) \
                      ORDER BY x.next_attempt_at LIMIT $6) \
                   WHERE e.active AND e.id NOT IN (SELECT value FROM json_each($5)) LIMIT $4) \
                 RETURNING id, tenant_id, endpoint_id, event_id, event_type, attempt_count, \
                 round_attempts",
            )
            .bind(claim.now)
            .bind(claim.lease_until)
            .bind(claim.owner)
            .bind(i64::from(claim.limit))
            .bind(serde_json::to_string(excluded).expect("strings serialise"))
            .bind(i64::from(claim.per_endpoint))
            .fetch_all(&sqlite.writer)
            .await?
        }
        Store::Postgres(pool) => {
            sqlx::query_as::<_, Claimed>(
                // Endpoint by endpoint, each through the queue's per-endpoint index. The commit
                // does not wait for the WAL flush.
                concat!(
                    "WITH due AS (SELECT d.delivery_id FROM endpoints e CROSS JOIN LATERAL \
                     (SELECT x.delivery_id FROM delivery_queue x WHERE x.endpoint_id = e.id \
                      AND x.next_attempt_at <= $1 \
                      AND (x.lease_until IS NULL OR x.lease_until <= $1) \
                      ORDER BY x.next_attempt_at LIMIT $6 FOR UPDATE SKIP LOCKED) d \
                   WHERE e.active AND NOT (e.id = ANY($5)) LIMIT $4), ",
                    lease_due!()
                ),
            )
            .bind(claim.now)
            .bind(claim.lease_until)
            .bind(claim.owner)
            .bind(i64::from(claim.limit))
            .bind(excluded)
            .bind(i64::from(claim.per_endpoint))
            .fetch_all(pool)
            .await?
        }
    })
}

/// Gives claimed deliveries back to the queue, due again after `delay_ms` (0 for a node shutting
/// down; longer for one that cannot be attempted now, so it does not spin).
pub async fn release(
    store: &Store,
    ids: &[String],
    owner: &str,
    delay_ms: i64,
) -> StoreResult<u64> {
    let now = clock::now_ms();
    Ok(match store {
        Store::Sqlite(sqlite) => sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $3, lease_owner = NULL, lease_until = NULL, \
             updated_at = $4 \
             WHERE id IN (SELECT value FROM json_each($1)) AND lease_owner = $2 \
             AND status = 'pending'",
        )
        .bind(serde_json::to_string(ids).expect("strings serialise"))
        .bind(owner)
        .bind(now + delay_ms)
        .bind(now)
        .execute(&sqlite.writer)
        .await?
        .rows_affected(),
        Store::Postgres(pool) => sqlx::query(
            "UPDATE delivery_queue SET next_attempt_at = $3, lease_owner = NULL, \
             lease_until = NULL WHERE delivery_id = ANY($1) AND lease_owner = $2",
        )
        .bind(ids)
        .bind(owner)
        .bind(now + delay_ms)
        .execute(pool)
        .await?
        .rows_affected(),
    })
}

/// Extends the leases of deliveries still held under one of `owners` (a node's claims) to
/// `until`. Rows claimed since by another node, or already recorded, are left alone.
pub async fn renew_leases(
    store: &Store,
    ids: &[String],
    owners: &[String],
    until: i64,
) -> StoreResult<u64> {
    Ok(match store {
        Store::Sqlite(sqlite) => sqlx::query(
            "UPDATE deliveries SET lease_until = $3 \
             WHERE id IN (SELECT value FROM json_each($1)) \
             AND lease_owner IN (SELECT value FROM json_each($2)) \
             AND status = 'pending' AND lease_until < $3",
        )
        .bind(serde_json::to_string(ids).expect("strings serialise"))
        .bind(serde_json::to_string(owners).expect("strings serialise"))
        .bind(until)
        .execute(&sqlite.writer)
        .await?
        .rows_affected(),
        Store::Postgres(pool) => sqlx::query(
            // Rows locked right now are skipped: the recorder is writing them (their lease ends
            // with that), and waiting for them while holding others deadlocked with it.
            "UPDATE delivery_queue SET lease_until = $3 WHERE delivery_id IN \
               (SELECT delivery_id FROM delivery_queue WHERE delivery_id = ANY($1) \
                AND lease_owner = ANY($2) AND lease_until < $3 FOR UPDATE SKIP LOCKED)",
        )
        .bind(ids)
        .bind(owners)
        .bind(until)
        .execute(pool)
        .await?
        .rows_affected(),
    })
}

/// Reserves the next sending slot of a rate-limited endpoint: slots are `interval_us` apart and
/// shared by every node, and "now" is the database's clock when the statement runs (one clock
/// for every node, and no stale reading when the round trip is slow). Returns when the slot
/// begins (µs since the epoch), or `None` when the next free slot is more than `max_wait_us`
/// away (nothing is reserved then).
pub async fn reserve_rate_slot(
    store: &Store,
    endpoint_id: &str,
    interval_us: i64,
    max_wait_us: i64,
) -> StoreResult<Option<i64>> {
    let next_at: Option<i64> = match store {
        Store::Sqlite(sqlite) => {
            sqlx::query_scalar(
                "INSERT INTO endpoint_rate_slots (endpoint_id, next_at_us) \
                 SELECT $1, now.us + $2 FROM (SELECT CAST((julianday('now') - 2440587.5) \
                   * 86400000000.0 AS INTEGER) AS us) AS now WHERE true \
                 ON CONFLICT (endpoint_id) DO UPDATE \
                   SET next_at_us = max(endpoint_rate_slots.next_at_us, \
                     CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)) + $2 \
                   WHERE endpoint_rate_slots.next_at_us <= \
                     CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) + $3 \
                 RETURNING next_at_us",
            )
            .bind(endpoint_id)
            .bind(interval_us)
            .bind(max_wait_us)
            .fetch_optional(&sqlite.writer)
            .await?
        }
        Store::Postgres(pool) => {
            sqlx::query_scalar(
                "INSERT INTO endpoint_rate_slots AS slots (endpoint_id, next_at_us) \
                 VALUES ($1, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::int8 + $2) \
                 ON CONFLICT (endpoint_id) DO UPDATE \
                   SET next_at_us = GREATEST(slots.next_at_us, \
                     (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::int8) + $2 \
                   WHERE slots.next_at_us <= \
                     (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::int8 + $3 \
                 RETURNING next_at_us",
            )
            .bind(endpoint_id)
            .bind(interval_us)
            .bind(max_wait_us)
            .fetch_optional(pool)
            .await?
        }
    };
    Ok(next_at.map(|next| next - interval_us))
}

/// How one endpoint's failure count moves with a batch of results.
#[derive(Debug, Default)]
struct EndpointTally {
    tenant_id: String,
    /// A success in the batch resets the count to the failures after the last success.
    reset: bool,
    failures_after_last_success: i64,
    /// Failed attempts (not deliveries) after the last success: repository hooks count these.
    failed_attempts_after_last_success: i64,
    /// A 4xx other than 429 answered to a repository hook.
    client_error: Option<i64>,
    gone: bool,
}

/// The failure tallies of a batch's results, by endpoint, in endpoint id order (the order every
/// writer locks endpoints in).
fn tallies_of<'a>(
    results: impl Iterator<Item = &'a AttemptResult>,
) -> Vec<(&'a str, EndpointTally)> {
    let mut tallies: Vec<(&str, EndpointTally)> = Vec::new();
    for result in results {
        let endpoint_id = result.claimed.endpoint_id.as_str();
        let at = match tallies.iter().position(|(id, _)| *id == endpoint_id) {
            Some(at) => at,
            None => {
                tallies.push((
                    endpoint_id,
                    EndpointTally {
                        tenant_id: result.claimed.tenant_id.clone(),
                        ..EndpointTally::default()
                    },
                ));
                tallies.len() - 1
            }
        };
        let tally = &mut tallies[at].1;
        match result.next {
            Next::Succeeded => {
                tally.reset = true;
                tally.failures_after_last_success = 0;
                tally.failed_attempts_after_last_success = 0;
                tally.client_error = None;
            }
            Next::RetryAt(_) => tally.failed_attempts_after_last_success += 1,
            Next::Failed { gone } => {
                tally.failures_after_last_success += 1;
                tally.failed_attempts_after_last_success += 1;
                tally.gone |= gone;
            }
        }
        if let Some(status @ 400..=499) = result.attempt.response_status
            && status != 429
        {
            tally.client_error = Some(status);
        }
    }
    tallies.sort_by(|a, b| a.0.cmp(b.0));
    tallies
}

/// How an endpoint's failure count moves with its tally: `{reset}`, `{failures}`, `{attempts}`
/// and `{limit}` stand for the tally's values and `disable_after`. Webhooks count failed
/// deliveries, up to the limit that disables them and no further; repository hooks count failed
/// attempts, and one already temporarily disabled counts one more per batch (its attempts in
/// flight and held deliveries fail together, and each should not double the wait again). A
/// success resets the count and ends a hook's temporary disable. Nothing counts once disabled.
/// Returns the endpoint's new count, whether it is active, and its kind.
const TALLY_UPDATE: &str = "UPDATE endpoints SET consecutive_failures = CASE \
       WHEN {reset} THEN CASE WHEN kind = 'repository_hook' THEN {attempts} ELSE {failures} END \
       WHEN kind = 'repository_hook' AND consecutive_failures >= 4 THEN consecutive_failures + 1 \
       WHEN kind = 'repository_hook' THEN consecutive_failures + {attempts} \
       WHEN consecutive_failures + {failures} > {limit} THEN {limit} \
       ELSE consecutive_failures + {failures} END, \
     disabled_until = CASE WHEN {reset} THEN NULL ELSE disabled_until END, \
     disabled_reason = CASE WHEN {reset} AND kind = 'repository_hook' AND active THEN NULL \
       ELSE disabled_reason END, \
     disabled_at = CASE WHEN {reset} AND kind = 'repository_hook' AND active THEN NULL \
       ELSE disabled_at END \
   {from} WHERE {matches} AND CASE WHEN {reset} \
     THEN (consecutive_failures <> CASE WHEN kind = 'repository_hook' THEN {attempts} \
       ELSE {failures} END OR disabled_until IS NOT NULL) \
     ELSE (active AND CASE WHEN kind = 'repository_hook' THEN {attempts} ELSE {failures} END > 0) \
     END \
   RETURNING endpoints.id, consecutive_failures, active, kind";

fn tally_update(
    reset: &str,
    failures: &str,
    attempts: &str,
    limit: &str,
    from: &str,
    matches: &str,
) -> String {
    TALLY_UPDATE
        .replace("{reset}", reset)
        .replace("{failures}", failures)
        .replace("{attempts}", attempts)
        .replace("{limit}", limit)
        .replace("{from}", from)
        .replace("{matches}", matches)
}

/// One endpoint's tally applied on SQLite.
static SQLITE_TALLY_UPDATE: LazyLock<String> =
    LazyLock::new(|| tally_update("$2", "$3", "$4", "$5", "", "endpoints.id = $1"));

/// A batch's tallies applied on PostgreSQL, in one statement (`$1`–`$4`: the tallies' arrays,
/// `$5`: `disable_after`).
static POSTGRES_TALLY_UPDATE: LazyLock<String> = LazyLock::new(|| {
    tally_update(
        "t.reset",
        "t.failures",
        "t.attempts",
        "$5",
        "FROM UNNEST($1::text[], $2::bool[], $3::int8[], $4::int8[]) \
           AS t(endpoint_id, reset, failures, attempts)",
        "endpoints.id = t.endpoint_id",
    )
});

/// A batch of results recorded on PostgreSQL in one statement, so one round trip and no
/// explicit transaction: the endpoints are locked first, in id order as deactivation does (no
/// lock-order deadlock with it or another node's recorder); the queue rows whose lease still
/// holds are deleted (finished) or given their retry time (held instead when the endpoint was
/// deactivated meanwhile: `active` is read from the locked rows, the latest committed versions,
/// not from the statement's snapshot, which predates a deactivation that committed while the
/// statement waited for the lock); those deliveries are updated (no indexed column changes, so
/// each is a HOT update), their attempts inserted, and, when every result was written, the endpoints' tallies applied
/// (`$18`–`$21`, `$22`: `disable_after`, `$23`: how many results). Returns the written ids and
/// the tallied endpoints. The deliveries' new values come through the queue rows' `RETURNING`,
/// not from `v` again: PostgreSQL takes an `UNNEST` for 10 rows, and joined `v` to each updated
/// delivery by scanning all of it (a batch of 130 spent 10 of its 14 ms there).
static POSTGRES_RECORD: LazyLock<String> = LazyLock::new(|| {
    let tallies = tally_update(
        "t.reset",
        "t.failures",
        "t.attempts",
        "$22",
        "FROM UNNEST($18::text[], $19::bool[], $20::int8[], $21::int8[]) \
           AS t(endpoint_id, reset, failures, attempts)",
        "endpoints.id = t.endpoint_id AND (SELECT count(*) FROM written) = $23",
    );
    format!(
        "WITH locked AS MATERIALIZED (SELECT id, active FROM endpoints \
             WHERE id = ANY($18) ORDER BY id FOR NO KEY UPDATE), \
         v AS MATERIALIZED (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], \
             $5::int8[], $6::text[], $7::int8[], $8::text[], $9::int8[], $10::int8[], $11::int8[], \
             $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::bool[]) \
           AS v(id, owner, status, next_at, code, kind, completed_at, attempt_id, attempt_number, \
             started_at, duration_ms, url, request_headers, response_headers, response_body, \
             error_message, succeeded)), \
         finished AS (DELETE FROM delivery_queue q USING v \
             WHERE (SELECT count(*) FROM locked) >= 0 AND q.delivery_id = ANY($1) \
               AND q.delivery_id = v.id AND q.lease_owner = v.owner AND v.status <> 'pending' \
             RETURNING q.delivery_id, q.endpoint_id, false AS held, v.status, v.code, v.kind, \
               v.completed_at), \
         retried AS (UPDATE delivery_queue q SET \
               next_attempt_at = CASE WHEN (SELECT l.active FROM locked l \
                 WHERE l.id = q.endpoint_id) IS FALSE THEN NULL ELSE v.next_at END, \
               lease_owner = NULL, lease_until = NULL \
             FROM v WHERE (SELECT count(*) FROM locked) >= 0 AND q.delivery_id = ANY($1) \
               AND q.delivery_id = v.id AND q.lease_owner = v.owner AND v.status = 'pending' \
             RETURNING q.delivery_id, q.endpoint_id, q.next_attempt_at IS NULL AS held, \
               v.status, v.code, v.kind, v.completed_at), \
         written AS (UPDATE deliveries d SET \
               status = CASE WHEN w.held THEN 'paused' ELSE w.status END, \
               attempt_count = d.attempt_count + 1, round_attempts = d.round_attempts + 1, \
               last_status_code = w.code, last_error_kind = w.kind, updated_at = $24, \
               completed_at = w.completed_at \
             FROM (SELECT * FROM finished UNION ALL SELECT * FROM retried) w \
             WHERE d.endpoint_id = w.endpoint_id AND d.id = w.delivery_id \
             RETURNING d.id), \
         attempts AS (INSERT INTO delivery_attempts ({columns}) \
             SELECT v.attempt_id, v.id, v.attempt_number, v.started_at, v.duration_ms, v.url, \
               v.request_headers, v.code, v.response_headers, v.response_body, v.kind, \
               v.error_message, v.succeeded \
             FROM v WHERE v.id IN (SELECT id FROM written)), \
         counted AS ({tallies}) \
         SELECT (SELECT array_agg(id) FROM written), c.id, c.consecutive_failures, c.active, \
           c.kind FROM (SELECT 1) AS one LEFT JOIN counted c ON true",
        columns = attempt_columns!(),
    )
});

/// An endpoint's failure count after a batch: (endpoint id, count, active, kind).
type Counted = (String, i64, bool, String);

/// A row of [`POSTGRES_RECORD`]: the written delivery ids (on every row), then one tallied
/// endpoint's [`Counted`] columns, or none.
type RecordedRow = (
    Option<Vec<String>>,
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<String>,
);

/// Writes a batch of attempt results, each only where its lease still holds: the deliveries, their
/// attempts and their endpoints' failure counts together. Failed deliveries count against their
/// endpoint; at `disable_after` in a row (or on 410 Gone) the endpoint is disabled and its
/// pending deliveries paused.
pub async fn record_results(
    store: &Store,
    results: &[AttemptResult],
    disable_after: i64,
) -> StoreResult<Recorded> {
    let now = clock::now_ms();
    // On SQLite the health changes go in the results' transaction; on PostgreSQL, whose results
    // were one statement, in a transaction of their own, and only when there are any.
    let (health_tx, written, counted, tallies) = match store {
        Store::Postgres(pool) => {
            let (written, counted, tallies) =
                record_on_postgres(pool, results, disable_after, now).await?;
            let tx = if needs_health_change(&counted, &tallies, disable_after, now) {
                Some(store.begin().await?)
            } else {
                None
            };
            (tx, written, counted, tallies)
        }
        Store::Sqlite(_) => {
            let mut tx = store.begin().await?;
            let (written, counted, tallies) =
                record_on_sqlite(&mut tx, results, disable_after, now).await?;
            (Some(tx), written, counted, tallies)
        }
    };
    let mut recorded = Recorded {
        written,
        lease_lost: results.len() - written,
        disabled: Vec::new(),
    };
    if let Some(mut tx) = health_tx {
        apply_health(
            &mut tx,
            &counted,
            &tallies,
            disable_after,
            now,
            &mut recorded,
        )
        .await?;
        tx.commit().await?;
    }
    Ok(recorded)
}

/// The one-statement write on PostgreSQL (see [`POSTGRES_RECORD`]); when some results lost
/// their lease, the tallies of the written ones follow in a second statement.
async fn record_on_postgres<'a>(
    pool: &sqlx::PgPool,
    results: &'a [AttemptResult],
    disable_after: i64,
    now: i64,
) -> StoreResult<(usize, Vec<Counted>, Vec<(&'a str, EndpointTally)>)> {
    let tallies = tallies_of(results.iter());
    let columns = TallyColumns::of(&tallies);
    let rows: Vec<RecordedRow> = sqlx::query_as(sqlx::AssertSqlSafe(POSTGRES_RECORD.as_str()))
        .bind(each(results, |r| r.claimed.id.as_str()))
        .bind(each(results, |r| r.lease_owner.as_str()))
        .bind(each(results, |r| next_status(r.next)))
        .bind(each(results, |r| match r.next {
            Next::RetryAt(at) => Some(at),
            _ => None,
        }))
        .bind(each(results, |r| r.attempt.response_status))
        .bind(each(results, |r| r.attempt.error_kind.as_deref()))
        .bind(each(results, |r| completed_at(r.next, now)))
        .bind(each(results, |r| r.attempt.id.as_str()))
        .bind(each(results, |r| r.attempt.attempt_number))
        .bind(each(results, |r| r.attempt.started_at))
        .bind(each(results, |r| r.attempt.duration_ms))
        .bind(each(results, |r| r.attempt.url.as_str()))
        .bind(each(results, |r| r.attempt.request_headers.as_str()))
        .bind(each(results, |r| r.attempt.response_headers.as_deref()))
        .bind(each(results, |r| r.attempt.response_body.as_deref()))
        .bind(each(results, |r| r.attempt.error_message.as_deref()))
        .bind(each(results, |r| r.attempt.succeeded))
        .bind(columns.ids)
        .bind(columns.reset)
        .bind(columns.failures)
        .bind(columns.attempts)
        .bind(disable_after)
        .bind(i64::try_from(results.len()).unwrap_or(i64::MAX))
        .bind(now)
        .fetch_all(pool)
        .await?;
    let written: std::collections::HashSet<String> = rows
        .first()
        .and_then(|row| row.0.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut counted: Vec<Counted> = rows
        .into_iter()
        .filter_map(|(_, id, failures, active, kind)| Some((id?, failures?, active?, kind?)))
        .collect();
    if written.len() == results.len() {
        return Ok((written.len(), counted, tallies));
    }
    // Rare: some leases passed to another claim. Count only what was written.
    let tallies = tallies_of(results.iter().filter(|r| written.contains(&r.claimed.id)));
    if !tallies.is_empty() {
        let columns = TallyColumns::of(&tallies);
        counted = sqlx::query_as(sqlx::AssertSqlSafe(POSTGRES_TALLY_UPDATE.as_str()))
            .bind(columns.ids)
            .bind(columns.reset)
            .bind(columns.failures)
            .bind(columns.attempts)
            .bind(disable_after)
            .fetch_all(pool)
            .await?;
    }
    Ok((written.len(), counted, tallies))
}

/// One value per result, in order: a column of the arrays PostgreSQL unnests.
fn each<'a, T>(results: &'a [AttemptResult], value: impl Fn(&'a AttemptResult) -> T) -> Vec<T> {
    results.iter().map(value).collect()
}

/// A batch's tallies as the arrays [`TALLY_UPDATE`] reads on PostgreSQL.
struct TallyColumns<'a> {
    ids: Vec<&'a str>,
    reset: Vec<bool>,
    failures: Vec<i64>,
    attempts: Vec<i64>,
}

impl<'a> TallyColumns<'a> {
    fn of(tallies: &[(&'a str, EndpointTally)]) -> TallyColumns<'a> {
        TallyColumns {
            ids: tallies.iter().map(|(id, _)| *id).collect(),
            reset: tallies.iter().map(|(_, t)| t.reset).collect(),
            failures: tallies
                .iter()
                .map(|(_, t)| t.failures_after_last_success)
                .collect(),
            attempts: tallies
                .iter()
                .map(|(_, t)| t.failed_attempts_after_last_success)
                .collect(),
        }
    }
}

fn next_status(next: Next) -> &'static str {
    match next {
        Next::Succeeded => status::SUCCEEDED,
        Next::RetryAt(_) => status::PENDING,
        Next::Failed { .. } => status::FAILED,
    }
}

fn completed_at(next: Next, now: i64) -> Option<i64> {
    match next {
        Next::RetryAt(_) => None,
        Next::Succeeded | Next::Failed { .. } => Some(now),
    }
}

/// The columns of a delivery after an attempt, as SQLite reads them from JSON.
#[derive(Debug, serde::Serialize)]
struct DeliveryUpdate<'a> {
    id: &'a str,
    owner: &'a str,
    status: &'static str,
    next_at: Option<i64>,
    code: Option<i64>,
    kind: Option<&'a str>,
    completed_at: Option<i64>,
}

/// The write on SQLite, inside the caller's transaction (the one writer: no lock order to keep).
async fn record_on_sqlite<'a>(
    tx: &mut Tx<'_>,
    results: &'a [AttemptResult],
    disable_after: i64,
    now: i64,
) -> StoreResult<(usize, Vec<Counted>, Vec<(&'a str, EndpointTally)>)> {
    let Tx::Sqlite(tx) = tx else {
        unreachable!("record_on_sqlite runs in a SQLite transaction");
    };
    let updates: Vec<DeliveryUpdate<'_>> = results
        .iter()
        .map(|result| DeliveryUpdate {
            id: &result.claimed.id,
            owner: &result.lease_owner,
            status: next_status(result.next),
            next_at: match result.next {
                Next::RetryAt(at) => Some(at),
                _ => None,
            },
            code: result.attempt.response_status,
            kind: result.attempt.error_kind.as_deref(),
            completed_at: completed_at(result.next, now),
        })
        .collect();
    // A retry of a delivery whose endpoint was deactivated meanwhile waits paused.
    let written: std::collections::HashSet<String> = sqlx::query_scalar::<_, String>(
        "UPDATE deliveries SET \
           status = CASE WHEN v.status = 'pending' AND NOT (SELECT active FROM endpoints \
             WHERE endpoints.id = deliveries.endpoint_id) THEN 'paused' ELSE v.status END, \
           attempt_count = attempt_count + 1, round_attempts = round_attempts + 1, \
           next_attempt_at = v.next_at, lease_owner = NULL, lease_until = NULL, \
           last_status_code = v.code, last_error_kind = v.kind, updated_at = $2, \
           completed_at = v.completed_at \
         FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.owner') AS owner, \
                 json_extract(value, '$.status') AS status, json_extract(value, '$.next_at') AS next_at, \
                 json_extract(value, '$.code') AS code, json_extract(value, '$.kind') AS kind, \
                 json_extract(value, '$.completed_at') AS completed_at \
               FROM json_each($1)) AS v \
         WHERE deliveries.id = v.id AND deliveries.lease_owner = v.owner \
           AND deliveries.status = 'pending' \
         RETURNING deliveries.id",
    )
    .bind(serde_json::to_string(&updates).expect("updates serialise"))
    .bind(now)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();

    let kept: Vec<&AttemptResult> = results
        .iter()
        .filter(|result| written.contains(&result.claimed.id))
        .collect();
    for chunk in kept.chunks(200) {
        let mut insert = sqlx::QueryBuilder::new(concat!(
            "INSERT INTO delivery_attempts (",
            attempt_columns!(),
            ") "
        ));
        insert.push_values(chunk, |mut row, result| {
            let attempt = &result.attempt;
            row.push_bind(&attempt.id)
                .push_bind(&attempt.delivery_id)
                .push_bind(attempt.attempt_number)
                .push_bind(attempt.started_at)
                .push_bind(attempt.duration_ms)
                .push_bind(&attempt.url)
                .push_bind(&attempt.request_headers)
                .push_bind(attempt.response_status)
                .push_bind(&attempt.response_headers)
                .push_bind(&attempt.response_body)
                .push_bind(&attempt.error_kind)
                .push_bind(&attempt.error_message)
                .push_bind(attempt.succeeded);
        });
        insert.build().execute(&mut **tx).await?;
    }
    let tallies = tallies_of(kept.into_iter());
    let mut counted = Vec::new();
    for (endpoint_id, tally) in &tallies {
        let row: Option<Counted> =
            sqlx::query_as(sqlx::AssertSqlSafe(SQLITE_TALLY_UPDATE.as_str()))
                .bind(endpoint_id)
                .bind(tally.reset)
                .bind(tally.failures_after_last_success)
                .bind(tally.failed_attempts_after_last_success)
                .bind(disable_after)
                .fetch_optional(&mut **tx)
                .await?;
        counted.extend(row);
    }
    Ok((written.len(), counted, tallies))
}

/// What a tallied endpoint's health becomes: disabled (with the reason), temporarily disabled
/// until a time (repository hooks), or unchanged.
enum HealthChange {
    Disable(String),
    DisableUntil(i64, String),
}

fn health_change(
    counted: Option<&Counted>,
    tally: &EndpointTally,
    disable_after: i64,
    now: i64,
) -> Option<HealthChange> {
    match counted {
        Some((_, failures, true, kind)) if kind == KIND_REPOSITORY_HOOK => {
            match crate::hooks::health_after(*failures, tally.client_error, now) {
                crate::hooks::Health::Healthy => None,
                crate::hooks::Health::Disabled { reason } => Some(HealthChange::Disable(reason)),
                crate::hooks::Health::TemporarilyDisabled { until, reason } => {
                    Some(HealthChange::DisableUntil(until, reason))
                }
            }
        }
        _ if tally.gone => Some(HealthChange::Disable(
            "the receiver answered 410 Gone".to_owned(),
        )),
        Some((_, failures, true, _)) if *failures >= disable_after => Some(HealthChange::Disable(
            format!("{disable_after} consecutive deliveries failed"),
        )),
        _ => None,
    }
}

fn counted_for<'c>(counted: &'c [Counted], endpoint_id: &str) -> Option<&'c Counted> {
    counted.iter().find(|row| row.0 == endpoint_id)
}

fn needs_health_change(
    counted: &[Counted],
    tallies: &[(&str, EndpointTally)],
    disable_after: i64,
    now: i64,
) -> bool {
    tallies.iter().any(|(endpoint_id, tally)| {
        health_change(counted_for(counted, endpoint_id), tally, disable_after, now).is_some()
    })
}

/// Disables (or temporarily disables) the endpoints their tallies call for, pausing a disabled
/// endpoint's pending deliveries, and notes them in `recorded`.
async fn apply_health(
    tx: &mut Tx<'_>,
    counted: &[Counted],
    tallies: &[(&str, EndpointTally)],
    disable_after: i64,
    now: i64,
    recorded: &mut Recorded,
) -> StoreResult<()> {
    for (endpoint_id, tally) in tallies {
        let change = health_change(counted_for(counted, endpoint_id), tally, disable_after, now);
        let reason = match change {
            None => continue,
            Some(HealthChange::DisableUntil(until, reason)) => {
                dispatch_tx!(&mut *tx, conn => {
                    sqlx::query(
                        "UPDATE endpoints SET disabled_until = $2, disabled_reason = $3, \
                         disabled_at = $4 WHERE id = $1",
                    )
                    .bind(endpoint_id)
                    .bind(until)
                    .bind(&reason)
                    .bind(now)
                    .execute(conn)
                    .await?;
                });
                continue;
            }
            Some(HealthChange::Disable(reason)) => reason,
        };
        let disabled = dispatch_tx!(&mut *tx, conn => {
            sqlx::query(
                "UPDATE endpoints SET active = FALSE, disabled_reason = $2, disabled_at = $3, \
                 updated_at = $3 WHERE id = $1 AND active",
            )
            .bind(endpoint_id)
            .bind(&reason)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected()
        });
        if disabled == 0 {
            continue;
        }
        pause_pending_of(tx, endpoint_id, now).await?;
        recorded.disabled.push(Disabled {
            endpoint_id: (*endpoint_id).to_owned(),
            tenant_id: tally.tenant_id.clone(),
            reason,
        });
    }
    Ok(())
}

/// Parks claimed deliveries whose endpoint was disabled meanwhile: they wait (`paused`) for
/// the endpoint to be activated again.
pub async fn pause_claimed(store: &Store, ids: &[String], owner: &str) -> StoreResult<()> {
    let now = clock::now_ms();
    match store {
        Store::Sqlite(sqlite) => {
            for id in ids {
                sqlx::query(
                    "UPDATE deliveries SET status = 'paused', lease_owner = NULL, \
                     lease_until = NULL, updated_at = $3 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
                )
                .bind(id)
                .bind(owner)
                .bind(now)
                .execute(&sqlite.writer)
                .await?;
            }
        }
        Store::Postgres(pool) => {
            sqlx::query(
                "WITH held AS (UPDATE delivery_queue SET next_attempt_at = NULL, \
                   lease_owner = NULL, lease_until = NULL \
                   WHERE delivery_id = ANY($1) AND lease_owner = $2 \
                   AND next_attempt_at IS NOT NULL RETURNING delivery_id) \
                 UPDATE deliveries SET status = 'paused', updated_at = $3 \
                 WHERE id IN (SELECT delivery_id FROM held)",
            )
            .bind(ids)
            .bind(owner)
            .bind(now)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// Pauses the pending deliveries, not in flight, of endpoints that are inactive. Deactivation
/// pauses what is pending at that moment, and a result for an inactive endpoint is written
/// paused, but a publish that read its endpoints just before a deactivation committed still
/// writes its deliveries pending; no claim takes those while the endpoint is inactive, so without
/// this they would wait uncounted among the held ones, and be left out when held ones are
/// discarded. Returns how many were paused.
pub async fn pause_for_inactive_endpoints(store: &Store) -> StoreResult<u64> {
    let now = clock::now_ms();
    Ok(match store {
        Store::Sqlite(sqlite) => sqlx::query(pause_pending!(
            sqlite,
            "IN (SELECT id FROM endpoints WHERE NOT active)"
        ))
        .bind(now)
        .execute(&sqlite.writer)
        .await?
        .rows_affected(),
        Store::Postgres(pool) => sqlx::query(pause_pending!(
            postgres,
            "IN (SELECT id FROM endpoints WHERE NOT active)"
        ))
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected(),
    })
}

/// Filters of a delivery listing.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<i64>,
    pub before_id: Option<String>,
}

pub async fn list_deliveries(
    store: &Store,
    tenant_id: &str,
    endpoint_id: &str,
    filter: &DeliveryFilter,
    limit: u32,
) -> StoreResult<Vec<Delivery>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Delivery>(concat!(
            "SELECT ", delivery_columns!(), " FROM delivery_view \
             WHERE tenant_id = $1 AND endpoint_id = $2 \
             AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR event_type = $4) \
             AND ($5 IS NULL OR created_at >= $5) AND ($6 IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7"
        ))
        .bind(tenant_id)
        .bind(endpoint_id)
        .bind(&filter.status)
        .bind(&filter.event_type)
        .bind(filter.since)
        .bind(&filter.before_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

pub async fn get_delivery(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Delivery> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Delivery>(concat!(
            "SELECT ", delivery_columns!(), " FROM delivery_view WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

pub async fn attempts_of(store: &Store, delivery_id: &str) -> StoreResult<Vec<Attempt>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Attempt>(concat!(
            "SELECT ", attempt_columns!(), " FROM delivery_attempts \
             WHERE delivery_id = $1 ORDER BY attempt_number"
        ))
        .bind(delivery_id)
        .fetch_all(pool)
        .await?
    }))
}

/// The stored envelope of one event.
pub async fn event_payload(store: &Store, event_id: &str) -> StoreResult<String> {
    dispatch!(store, pool => {
        sqlx::query_scalar::<_, String>("SELECT payload FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_optional(pool)
            .await?
    })
    .ok_or(StoreError::NotFound)
}

/// The statement that queues again the finished deliveries `filter` (a condition on
/// `deliveries`) selects: due at `now` (a parameter) with a fresh retry budget, or held when the
/// endpoint is inactive; on PostgreSQL the deliveries so updated get their queue rows.
fn queue_again_sql(store: &Store, filter: &str, now: &str) -> String {
    let status = "status = CASE WHEN (SELECT active FROM endpoints \
                  WHERE endpoints.id = deliveries.endpoint_id) THEN 'pending' ELSE 'paused' END, \
                  round_attempts = 0";
    match store {
        Store::Sqlite(_) => format!(
            "UPDATE deliveries SET {status}, next_attempt_at = {now}, lease_owner = NULL, \
             lease_until = NULL, updated_at = {now}, completed_at = NULL WHERE {filter}"
        ),
        Store::Postgres(_) => format!(
            "WITH again AS (UPDATE deliveries SET {status}, updated_at = {now}, \
               completed_at = NULL WHERE {filter} \
               RETURNING id, endpoint_id, status, created_at) \
             INSERT INTO delivery_queue (delivery_id, endpoint_id, next_attempt_at, created_at) \
             SELECT id, endpoint_id, CASE WHEN status = 'pending' THEN {now}::int8 END, \
               created_at FROM again"
        ),
    }
}

/// Queues a finished delivery again with a fresh retry budget. A pending one is a conflict.
pub async fn redeliver(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Delivery> {
    let now = clock::now_ms();
    let sql = queue_again_sql(
        store,
        "tenant_id = $1 AND id = $2 AND status IN ('succeeded', 'failed')",
        "$3",
    );
    let changed = dispatch_write!(store, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id)
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
    });
    let delivery = get_delivery(store, tenant_id, id).await?;
    if changed == 0 {
        let why = if delivery.status == status::PAUSED {
            "paused: it is sent when its endpoint is activated"
        } else {
            "still pending: it will be attempted anyway"
        };
        return Err(StoreError::Conflict(format!("delivery {id} is {why}")));
    }
    Ok(delivery)
}

/// Queues again every failed delivery of an endpoint created at or after `since`.
pub async fn recover(
    store: &Store,
    tenant_id: &str,
    endpoint_id: &str,
    since: i64,
) -> StoreResult<u64> {
    let now = clock::now_ms();
    let sql = queue_again_sql(
        store,
        "tenant_id = $1 AND endpoint_id = $2 AND status = 'failed' AND created_at >= $3",
        "$4",
    );
    Ok(dispatch_write!(store, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id)
            .bind(endpoint_id)
            .bind(since)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}

/// Below this many rows changed, the queue's statistics are never refreshed by Hookline: each
/// analysis reads up to 30,000 rows (tens of milliseconds of the database's time).
const STATISTICS_MIN_CHANGES: i64 = 10_000;
/// Nodes refreshing the queue's statistics take turns on this advisory lock.
const STATISTICS_LOCK: i64 = 0x686b_6c5f_7374_6174;

/// On PostgreSQL, analyses the queue table (`delivery_queue`) when it has grown to twice the
/// rows its statistics describe (plus [`STATISTICS_MIN_CHANGES`]: a burst of publishes), so the
/// planner does not take a backlog for a handful of rows. Churn alone does not count: every row
/// of a queue is inserted, leased and deleted, and its due times are read from the index's ends,
/// not from the statistics. One node at a time; the others skip. Returns whether it analysed.
/// Nothing on SQLite, whose claims follow the queue index whatever its statistics.
pub async fn refresh_queue_statistics(store: &Store) -> StoreResult<bool> {
    let Store::Postgres(pool) = store else {
        return Ok(false);
    };
    let counts: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT s.n_mod_since_analyze, s.n_live_tup, c.reltuples::int8 \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.relid = 'delivery_queue'::regclass",
    )
    .fetch_optional(pool)
    .await?;
    let Some((changed, live, described)) = counts else {
        return Ok(false);
    };
    // `reltuples` is -1 before the first analysis.
    let grew = live >= 2 * described.max(0) + STATISTICS_MIN_CHANGES;
    if changed < STATISTICS_MIN_CHANGES || !grew {
        return Ok(false);
    }
    let mut tx = pool.begin().await?;
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(STATISTICS_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if ours {
        sqlx::query("ANALYZE delivery_queue")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(ours)
}

/// Pending deliveries, and the due time of the oldest one that is due.
pub async fn queue_stats(store: &Store, now: i64) -> StoreResult<(i64, Option<i64>)> {
    // Held deliveries have no due time (PostgreSQL) or are `paused` (SQLite).
    let pending = match store {
        Store::Sqlite(_) => "FROM deliveries WHERE status = 'pending'",
        Store::Postgres(_) => "FROM delivery_queue WHERE next_attempt_at IS NOT NULL",
    };
    let sql = format!(
        "SELECT COUNT(*), MIN(CASE WHEN COALESCE(lease_until, next_attempt_at) <= $1 \
           THEN COALESCE(lease_until, next_attempt_at) END) {pending}"
    );
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, (i64, Option<i64>)>(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(now)
        .fetch_one(pool)
        .await?
    }))
}

/// Deletes finished deliveries (with their attempts) and orphaned events older than `cutoff`, and
/// queued deliveries of deleted endpoints, a chunk at a time so no transaction grows large;
/// returns how many deliveries went.
pub async fn prune(store: &Store, cutoff: i64) -> StoreResult<u64> {
    let mut total = 0;
    // Deliveries held for an endpoint that stayed inactive past the retention period go too.
    let held = match store {
        Store::Sqlite(_) => "SELECT id FROM deliveries WHERE status = 'paused' AND created_at < $1",
        Store::Postgres(_) => {
            "SELECT delivery_id FROM delivery_queue WHERE next_attempt_at IS NULL \
             AND created_at < $1"
        }
    };
    let prune_held = format!("DELETE FROM deliveries WHERE id IN ({held} LIMIT 5000)");
    loop {
        let deleted = dispatch_write!(store, pool => {
            sqlx::query(sqlx::AssertSqlSafe(prune_held.as_str()))
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected()
        });
        total += deleted;
        if deleted < 5000 {
            break;
        }
    }
    // PostgreSQL has no index on `completed_at` (a result would then be no HOT update): it finds
    // old finished deliveries through their events, which are never younger than them.
    let finished = match store {
        Store::Sqlite(_) => {
            "SELECT id FROM deliveries WHERE completed_at IS NOT NULL AND completed_at < $1"
        }
        Store::Postgres(_) => {
            "SELECT d.id FROM events e JOIN deliveries d ON d.event_id = e.id \
             WHERE e.created_at < $1 AND d.completed_at < $1"
        }
    };
    let prune_finished = format!("DELETE FROM deliveries WHERE id IN ({finished} LIMIT 5000)");
    loop {
        let deleted = dispatch_write!(store, pool => {
            sqlx::query(sqlx::AssertSqlSafe(prune_finished.as_str()))
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected()
        });
        total += deleted;
        if deleted < 5000 {
            break;
        }
    }
    if let Store::Postgres(pool) = store {
        // Deliveries a publish wrote while their endpoint's deletion was committing (PostgreSQL
        // checks endpoints in the publish statement, not by a foreign key: migration 0016). No
        // claim takes them; they go here.
        loop {
            let deleted = sqlx::query(
                "DELETE FROM deliveries WHERE id IN (SELECT q.delivery_id FROM delivery_queue q \
                 WHERE NOT EXISTS (SELECT 1 FROM endpoints e WHERE e.id = q.endpoint_id) \
                 LIMIT 5000)",
            )
            .execute(pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < 5000 {
                break;
            }
        }
    }
    dispatch_write!(store, pool => {
        sqlx::query(
            "DELETE FROM delivery_attempts WHERE NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.id = delivery_attempts.delivery_id)",
        )
        .execute(pool)
        .await?
        .rows_affected()
    });
    dispatch_write!(store, pool => {
        sqlx::query(
            "DELETE FROM events WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
        )
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(total)
}

// ---- idempotency ----------------------------------------------------------------------------

/// A stored answer to a publish request.
#[derive(Debug, Clone, FromRow)]
pub struct IdempotentAnswer {
    pub request_hash: String,
    pub response_status: i64,
    pub response_body: String,
}

pub async fn idempotent_answer(
    store: &Store,
    tenant_id: &str,
    key: &str,
    not_before: i64,
) -> StoreResult<Option<IdempotentAnswer>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, IdempotentAnswer>(
            "SELECT request_hash, response_status, response_body FROM idempotency_keys \
             WHERE tenant_id = $1 AND idempotency_key = $2 AND created_at >= $3",
        )
        .bind(tenant_id)
        .bind(key)
        .bind(not_before)
        .fetch_optional(pool)
        .await?
    }))
}

/// Stores the answer to a keyed request in the transaction that made it; an expired entry for the
/// same key is replaced. A concurrent request with the same key makes this a conflict.
pub async fn save_idempotent_answer(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    key: &str,
    answer: &IdempotentAnswer,
    not_before: i64,
) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "DELETE FROM idempotency_keys \
             WHERE tenant_id = $1 AND idempotency_key = $2 AND created_at < $3",
        )
        .bind(tenant_id)
        .bind(key)
        .bind(not_before)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, \
             response_status, response_body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant_id)
        .bind(key)
        .bind(&answer.request_hash)
        .bind(answer.response_status)
        .bind(&answer.response_body)
        .bind(clock::now_ms())
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn prune_idempotency_keys(store: &Store, cutoff: i64) -> StoreResult<u64> {
    Ok(dispatch_write!(store, pool => {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}

/// How many deliveries an endpoint holds while inactive.
pub async fn count_paused(store: &Store, endpoint_id: &str) -> StoreResult<i64> {
    let sql = match store {
        Store::Sqlite(_) => {
            "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = $1 \
                             AND status = 'paused'"
        }
        Store::Postgres(_) => {
            "SELECT COUNT(*) FROM delivery_queue WHERE endpoint_id = $1 \
                               AND next_attempt_at IS NULL"
        }
    };
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(sql)
        .bind(endpoint_id)
        .fetch_one(pool)
        .await?
    }))
}

/// Drops the deliveries an inactive endpoint held (the person chose not to send them).
pub async fn discard_paused(store: &Store, tenant_id: &str, endpoint_id: &str) -> StoreResult<u64> {
    let sql = match store {
        Store::Sqlite(_) => {
            "DELETE FROM deliveries WHERE tenant_id = $1 AND endpoint_id = $2 \
                             AND status = 'paused'"
        }
        Store::Postgres(_) => {
            "DELETE FROM deliveries WHERE tenant_id = $1 AND id IN \
                               (SELECT delivery_id FROM delivery_queue WHERE endpoint_id = $2 \
                                AND next_attempt_at IS NULL)"
        }
    };
    Ok(dispatch_write!(store, pool => {
        sqlx::query(sql)
        .bind(tenant_id)
        .bind(endpoint_id)
        .execute(pool)
        .await?
        .rows_affected()
    }))
}

/// The latest attempted delivery of an endpoint, for the endpoint list.
#[derive(Debug, Clone, FromRow)]
pub struct LastResult {
    pub endpoint_id: String,
    pub status: String,
    pub last_status_code: Option<i64>,
    pub last_error_kind: Option<String>,
    pub updated_at: i64,
}

/// Deliveries of one endpoint finished in one hour (`hour` = Unix ms / 3,600,000).
#[derive(Debug, Clone, FromRow)]
pub struct HourTally {
    pub endpoint_id: String,
    pub hour: i64,
    pub succeeded: i64,
    pub total: i64,
}

/// `$first, $first+1, …` for `count` values.
fn numbered_placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// For a page of endpoints, in two queries whatever the page's size: each endpoint's latest
/// attempted delivery, and its finished deliveries per hour since `since`, among those created
/// since `created_since` (no delivery takes longer to finish than its retry schedule: this bound
/// lets the count read an endpoint's recent deliveries by id instead of its whole history).
pub async fn endpoint_health(
    store: &Store,
    tenant_id: &str,
    endpoint_ids: &[String],
    since: i64,
    created_since: i64,
) -> StoreResult<(Vec<LastResult>, Vec<HourTally>)> {
    if endpoint_ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let last_sql = format!(
        "SELECT d.endpoint_id, d.status, d.last_status_code, d.last_error_kind, d.updated_at \
         FROM deliveries d WHERE d.id IN (\
           SELECT (SELECT x.id FROM deliveries x WHERE x.endpoint_id = e.id \
                   AND x.attempt_count > 0 ORDER BY x.id DESC LIMIT 1) \
           FROM endpoints e WHERE e.tenant_id = $1 AND e.id IN ({}))",
        numbered_placeholders(2, endpoint_ids.len())
    );
    let tally_sql = format!(
        "SELECT endpoint_id, completed_at / 3600000 AS hour, \
         SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded, COUNT(*) AS total \
         FROM deliveries WHERE tenant_id = $1 AND completed_at >= $2 AND id >= $3 \
         AND endpoint_id IN ({}) GROUP BY endpoint_id, completed_at / 3600000",
        numbered_placeholders(4, endpoint_ids.len())
    );
    let first_id = crate::ids::first_at(crate::ids::Kind::Delivery, created_since);
    Ok(dispatch!(store, pool => {
        let mut last = sqlx::query_as::<_, LastResult>(sqlx::AssertSqlSafe(last_sql.as_str())).bind(tenant_id);
        for id in endpoint_ids {
            last = last.bind(id);
        }
        let mut tally = sqlx::query_as::<_, HourTally>(sqlx::AssertSqlSafe(tally_sql.as_str())).bind(tenant_id).bind(since).bind(&first_id);
        for id in endpoint_ids {
            tally = tally.bind(id);
        }
        (last.fetch_all(pool).await?, tally.fetch_all(pool).await?)
    }))
}
