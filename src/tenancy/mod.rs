//! Tenancy and access: tenants, API tokens (issued once, kept only as a hash), the first-start
//! bootstrap, and authentication of bearer tokens.

pub mod api;
pub mod pages;

use crate::clock;
use crate::crypto;
use crate::store::tenants::{self, NewToken, Tenant, Token};
use crate::store::{Store, StoreResult, Tx};
use crate::ttl_cache::TtlCache;

/// Every API token starts with this, so secret scanners and people can recognise one.
pub const TOKEN_PREFIX: &str = "hkl_";
/// How many leading characters of a token are kept to tell tokens apart in listings.
const DISPLAY_PREFIX_LEN: usize = TOKEN_PREFIX.len() + 8;
/// `last_used_at` is refreshed at most this often, so authentication is not a write per request.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// An authenticated caller: which tenant, through which token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: String,
    pub token_id: String,
}

/// A token just created, with its secret: the only moment the secret exists outside the caller.
pub struct IssuedToken {
    pub token: Token,
    pub secret: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &self.token)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What a first start on an empty database created.
#[derive(Debug)]
pub struct Bootstrap {
    pub tenant: Tenant,
    pub admin_token: IssuedToken,
    /// Where the first person creates the first admin of the web UI.
    pub setup_link: crate::people::IssuedLink,
}

/// Checks a token name: 1 to 100 characters once trimmed.
pub fn validate_token_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".to_owned());
    }
    match name.chars().count() {
        0 => Err("name must not be empty".to_owned()),
        1..=100 => Ok(name),
        _ => Err("name must be at most 100 characters".to_owned()),
    }
}

/// Checks a tenant name: 1 to 64 characters of letters, digits, `-`, `_` and `.`.
pub fn validate_tenant_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err("tenant name must be 1 to 64 characters".to_owned());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("tenant name may hold only letters, digits, `-`, `_` and `.`".to_owned());
    }
    Ok(name)
}

/// Creates a token for `tenant_id` inside `tx`; the secret is returned once and stored as a hash.
pub async fn issue_token(tx: &mut Tx<'_>, tenant_id: &str, name: &str) -> StoreResult<IssuedToken> {
    let secret = crypto::random_token(TOKEN_PREFIX);
    let token = tenants::insert_token(
        tx,
        NewToken {
            tenant_id,
            name,
            prefix: &secret[..DISPLAY_PREFIX_LEN],
            token_hash: &crypto::sha256_hex(&secret),
        },
    )
    .await?;
    Ok(IssuedToken { token, secret })
}

/// Creates a named API token for the tenant (from the API or the UI); the secret is returned once.
pub async fn create_token(
    store: &Store,
    tenant_id: &str,
    name: &str,
) -> Result<IssuedToken, crate::http::error::ApiError> {
    let name = validate_token_name(name).map_err(crate::http::error::ApiError::Unprocessable)?;
    let mut tx = store.begin().await?;
    let issued = issue_token(&mut tx, tenant_id, name).await?;
    tx.commit().await?;
    tracing::info!(token_id = %issued.token.id, "API token created");
    Ok(issued)
}

/// One page of the tenant's tokens, newest first.
pub async fn list_tokens(
    store: &Store,
    tenant_id: &str,
    page: &crate::http::paging::PageQuery,
) -> Result<(Vec<Token>, Option<String>), crate::http::error::ApiError> {
    let limit = page.limit()?;
    let cursor = page.cursor(crate::ids::Kind::Token)?;
    let rows = tenants::list_tokens(store, tenant_id, cursor.as_deref(), limit + 1).await?;
    Ok(crate::http::paging::next_cursor(rows, limit, |token| {
        token.id.clone()
    }))
}

/// Revokes a token of the tenant (revoking again changes nothing); requests with it get 401.
pub async fn revoke_token(
    store: &Store,
    tokens: &TokenCache,
    tenant_id: &str,
    id: &str,
) -> Result<Token, crate::http::error::ApiError> {
    let id = crate::http::extract::parse_id(crate::ids::Kind::Token, id)?;
    let token = tenants::revoke_token(store, tenant_id, &id)
        .await
        .map_err(|error| api::not_found_as(error, "API token"))?;
    tokens.clear();
    tracing::info!(token_id = %token.id, "API token revoked");
    Ok(token)
}

/// On a database with no tenant: creates the `default` tenant and an `admin` token, atomically.
pub async fn bootstrap(store: &Store) -> StoreResult<Option<Bootstrap>> {
    let mut tx = store.begin().await?;
    let Some(tenant) = tenants::create_default_tenant_if_none(&mut tx).await? else {
        return Ok(None);
    };
    let admin_token = issue_token(&mut tx, &tenant.id, "admin").await?;
    let setup_link = crate::people::issue_setup_link_in(&mut tx, &tenant.id).await?;
    tx.commit().await?;
    Ok(Some(Bootstrap {
        tenant,
        admin_token,
        setup_link,
    }))
}

/// The caller behind `presented`, or `None` when the token is unknown or revoked.
pub async fn authenticate(store: &Store, presented: &str) -> StoreResult<Option<Principal>> {
    if !presented.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    authenticate_hash(store, &crypto::sha256_hex(presented)).await
}

/// Tokens this node authenticated lately, by the hash of the token (never the token): the answer
/// for a token is reused for `http.token_cache_ms`. A revocation on this node clears it, so here
/// it holds at once; on other nodes sharing a PostgreSQL database within that time.
pub type TokenCache = TtlCache<Option<Principal>>;

/// Like [`authenticate`], reusing a recent answer for the same token from `tokens`: a request
/// then makes no round trip to the database for its token.
pub async fn authenticate_cached(
    store: &Store,
    tokens: &TokenCache,
    presented: &str,
) -> StoreResult<Option<Principal>> {
    if !presented.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let hash = crypto::sha256_hex(presented);
    tokens
        .get_or_load(hash.clone(), || async move {
            authenticate_hash(store, &hash).await
        })
        .await
}

async fn authenticate_hash(store: &Store, hash: &str) -> StoreResult<Option<Principal>> {
    let Some(token) = tenants::find_token_by_hash(store, hash).await? else {
        return Ok(None);
    };
    if token.revoked_at.is_some() {
        return Ok(None);
    }
    let now = clock::now_ms();
    if token
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_RESOLUTION_MS)
    {
        tenants::touch_token(store, &token.id, now).await?;
    }
    Ok(Some(Principal {
        tenant_id: token.tenant_id,
        token_id: token.id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names_are_trimmed_and_bounded() {
        assert_eq!(validate_token_name("  ci  "), Ok("ci"));
        assert!(validate_token_name("   ").is_err());
        assert!(validate_token_name(&"x".repeat(101)).is_err());
        assert!(validate_token_name(&"é".repeat(100)).is_ok());
        assert!(validate_token_name("ci\u{0}").is_err());
    }

    #[test]
    fn tenant_names_are_slugs() {
        assert_eq!(validate_tenant_name("acme-prod"), Ok("acme-prod"));
        assert!(validate_tenant_name("acme prod").is_err());
        assert!(validate_tenant_name("").is_err());
        assert!(validate_tenant_name(&"a".repeat(65)).is_err());
    }
}
