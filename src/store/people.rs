//! People who sign in to the web UI: users, their one-time links, their sessions, and the failed
//! sign-ins that throttle guessing. Codes and session ids arrive here already hashed.

use sqlx::FromRow;

use super::{Store, StoreError, StoreResult, Tx, dispatch, dispatch_tx, dispatch_write};

#[derive(Clone, PartialEq, Eq, FromRow)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub role: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// A one-time link as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Link {
    pub code_hash: String,
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub role: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A live session with the user it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SessionRow {
    pub id_hash: String,
    pub session_created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    #[sqlx(flatten)]
    pub user: User,
}

macro_rules! user_columns {
    () => {
        "users.id, users.tenant_id, users.email, users.display_name, users.password_hash, \
         users.role, users.created_at, users.updated_at"
    };
}

pub async fn insert_user(tx: &mut Tx<'_>, user: &User) -> StoreResult<()> {
    let inserted = dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO users (id, tenant_id, email, display_name, password_hash, role, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&user.id)
        .bind(&user.tenant_id)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(&user.role)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    });
    match inserted.map_err(StoreError::from) {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
            "a user with the email {} already exists",
            user.email
        ))),
        Err(other) => Err(other),
    }
}

/// Whether any user of any tenant exists.
pub async fn any_user(store: &Store) -> StoreResult<bool> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM (SELECT 1 FROM users LIMIT 1) AS found")
            .fetch_one(pool)
            .await?
    }) > 0)
}

/// The tenant a first admin belongs to when nobody can sign in yet: `default`, else the oldest.
pub async fn first_tenant(store: &Store) -> StoreResult<Option<String>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM tenants ORDER BY CASE WHEN name = 'default' THEN 0 ELSE 1 END, id LIMIT 1",
        )
        .fetch_optional(pool)
        .await?
    }))
}

pub async fn user_by_email(store: &Store, email: &str) -> StoreResult<Option<User>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, User>(concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(pool)
            .await?
    }))
}

/// A user of `tenant_id`; another tenant's user is not found.
pub async fn get_user(store: &Store, tenant_id: &str, id: &str) -> StoreResult<User> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, User>(concat!(
            "SELECT ", user_columns!(), " FROM users WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

/// One page of a tenant's users, newest first.
pub async fn list_users(
    store: &Store,
    tenant_id: &str,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<User>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, User>(concat!(
            "SELECT ", user_columns!(), " FROM users WHERE tenant_id = $1 \
             AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

/// Deletes a user unless they are the tenant's last admin who can sign in (checked in the same
/// statement, so two admins removing each other cannot both succeed on SQLite). `Ok(false)` when
/// the last admin was kept.
pub async fn delete_user(store: &Store, tenant_id: &str, id: &str) -> StoreResult<bool> {
    let deleted = dispatch_write!(store, pool => {
        sqlx::query(
            "DELETE FROM users WHERE tenant_id = $1 AND id = $2 AND (role <> 'admin' \
             OR password_hash IS NULL OR (SELECT COUNT(*) FROM users other WHERE \
             other.tenant_id = $1 AND other.role = 'admin' AND other.password_hash IS NOT NULL) > 1)",
        )
        .bind(tenant_id)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(deleted == 1)
}

/// Sets a user's password (and display name) and ends every session of theirs except `keep`.
pub async fn set_password_in(
    tx: &mut Tx<'_>,
    user_id: &str,
    display_name: &str,
    password_hash: &str,
    keep_session: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE users SET password_hash = $2, display_name = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(user_id)
        .bind(password_hash)
        .bind(display_name)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM web_sessions WHERE user_id = $1 AND ($2 IS NULL OR id_hash <> $2)")
            .bind(user_id)
            .bind(keep_session)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

// ---- one-time links ---------------------------------------------------------------------------

pub async fn insert_link(tx: &mut Tx<'_>, link: &Link) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO user_links (code_hash, tenant_id, user_id, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&link.code_hash)
        .bind(&link.tenant_id)
        .bind(&link.user_id)
        .bind(&link.role)
        .bind(link.created_at)
        .bind(link.expires_at)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Ends every unused link of a user: a new link, a used one or a new password replaces them.
pub async fn expire_links_of_user_in(tx: &mut Tx<'_>, user_id: &str, now: i64) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query("UPDATE user_links SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
            .bind(user_id)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// An unused, unexpired link.
pub async fn live_link(store: &Store, code_hash: &str, now: i64) -> StoreResult<Option<Link>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Link>(
            "SELECT code_hash, tenant_id, user_id, role, created_at, expires_at, used_at \
             FROM user_links WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(code_hash)
        .bind(now)
        .fetch_optional(pool)
        .await?
    }))
}

/// Marks a link used; false when another request used it first (it stays single use).
pub async fn use_link_in(tx: &mut Tx<'_>, code_hash: &str, now: i64) -> StoreResult<bool> {
    let used = dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE user_links SET used_at = $2 \
             WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(code_hash)
        .bind(now)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(used == 1)
}

// ---- sessions ---------------------------------------------------------------------------------

pub async fn insert_session(
    store: &Store,
    id_hash: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, user_id, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $3, $4)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// The session and its user, if the session exists (expiry is the caller's rule).
pub async fn session(store: &Store, id_hash: &str) -> StoreResult<Option<SessionRow>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT web_sessions.id_hash, web_sessions.created_at AS session_created_at, web_sessions.last_seen_at, \
             web_sessions.expires_at, ", user_columns!(),
            " FROM web_sessions JOIN users ON users.id = web_sessions.user_id \
             WHERE web_sessions.id_hash = $1"
        ))
        .bind(id_hash)
        .fetch_optional(pool)
        .await?
    }))
}

pub async fn touch_session(store: &Store, id_hash: &str, now: i64) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query("UPDATE web_sessions SET last_seen_at = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

pub async fn delete_session(store: &Store, id_hash: &str) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Removes sessions past their absolute or idle lifetime, and used or expired links.
pub async fn prune(store: &Store, now: i64, idle_before: i64) -> StoreResult<u64> {
    Ok(dispatch_write!(store, pool => {
        let sessions = sqlx::query(
            "DELETE FROM web_sessions WHERE expires_at <= $1 OR last_seen_at < $2",
        )
        .bind(now)
        .bind(idle_before)
        .execute(pool)
        .await?
        .rows_affected();
        let links = sqlx::query("DELETE FROM user_links WHERE used_at IS NOT NULL OR expires_at <= $1")
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
        let failures = sqlx::query("DELETE FROM sign_in_failures WHERE failed_at < $1")
            .bind(now - 24 * 3_600_000)
            .execute(pool)
            .await?
            .rows_affected();
        sessions + links + failures
    }))
}

// ---- failed sign-ins --------------------------------------------------------------------------

pub async fn record_failure(store: &Store, email: &str, now: i64) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query("INSERT INTO sign_in_failures (email, failed_at) VALUES ($1, $2)")
            .bind(email)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Failures for `email` since `since`, and the oldest of them (when the window frees up).
pub async fn failures_since(
    store: &Store,
    email: &str,
    since: i64,
) -> StoreResult<(i64, Option<i64>)> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, (i64, Option<i64>)>(
            "SELECT COUNT(*), MIN(failed_at) FROM sign_in_failures \
             WHERE email = $1 AND failed_at >= $2",
        )
        .bind(email)
        .bind(since)
        .fetch_one(pool)
        .await?
    }))
}

pub async fn clear_failures(store: &Store, email: &str) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query("DELETE FROM sign_in_failures WHERE email = $1")
            .bind(email)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}
