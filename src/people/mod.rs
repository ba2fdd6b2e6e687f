//! People: the users who sign in to the web UI, their roles, the one-time links that let them set
//! a password (the first admin's setup link, invitations, resets), signing in with its throttle,
//! and server-side sessions. Codes and session ids leave this module once and are kept only as
//! hashes; passwords only as Argon2id hashes.

pub mod pages;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::clock;
use crate::config::Config;
use crate::crypto;
use crate::http::error::ApiError;
use crate::ids::{self, Kind};
use crate::store::people::{self, Link, SessionRow, User};
use crate::store::{Store, StoreError};

/// One-time links last this long.
pub const LINK_LIFETIME_MS: i64 = 24 * 3_600_000;
/// Failed sign-ins for one email within [`THROTTLE_WINDOW_MS`] that close it for the rest of the
/// window.
pub const THROTTLE_FAILURES: i64 = 5;
pub const THROTTLE_WINDOW_MS: i64 = 15 * 60_000;
/// `last_seen_at` of a session is refreshed at most this often.
const SESSION_TOUCH_MS: i64 = 60_000;
const MIN_PASSWORD_CHARS: usize = 10;
const MAX_PASSWORD_CHARS: usize = 200;

/// What a user may do: admins also manage users and API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Role {
        if text == "admin" {
            Role::Admin
        } else {
            Role::Member
        }
    }
}

/// A link just made: the code exists only here, and in the URL given to the person.
pub struct IssuedLink {
    pub code: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for IssuedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedLink")
            .field("code", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl IssuedLink {
    /// The address a person opens, under the server's public base URL.
    pub fn url(&self, base_url: &str) -> String {
        format!("{base_url}/setup/{}", self.code)
    }
}

/// A signed-in person, as every page sees them.
#[derive(Clone)]
pub struct SignedIn {
    pub user: User,
    pub role: Role,
    /// The hash of the session id (which names the session in the store).
    pub session_hash: String,
    /// The per-session token every state-changing form carries.
    pub csrf_token: String,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("user", &self.user)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A session just started: the cookie value exists only here.
pub struct NewSession {
    pub cookie_value: String,
    pub max_age_seconds: i64,
}

/// Why a sign-in was refused; both kinds of wrong credentials look the same to the person.
#[derive(Debug)]
pub enum SignInError {
    WrongCredentials,
    Throttled { retry_after_seconds: i64 },
    Store(StoreError),
}

impl From<StoreError> for SignInError {
    fn from(error: StoreError) -> Self {
        SignInError::Store(error)
    }
}

/// Lowercases and checks an email address (a simple shape check; the link proves ownership).
pub fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(ApiError::Unprocessable(
            "email must be an address such as ada@example.com".to_owned(),
        ))
    }
}

fn check_display_name(name: &str) -> Result<String, ApiError> {
    crate::http::extract::required_text("display_name", name, 100)
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if length > MAX_PASSWORD_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "password must be at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// Argon2 runs at most this many at once (each takes 19 MiB and a core for tens of
/// milliseconds): a flood of sign-ins queues here instead of exhausting memory.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), off the async threads.
async fn hash_password(password: &str) -> Result<String, ApiError> {
    let password = password.to_owned();
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| ApiError::internal(anyhow::anyhow!("hashing a password: {error}")))
    })
    .await
    .map_err(ApiError::internal)?
}

/// A valid hash of a password nobody has, so an unknown email costs what a wrong password does.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(&crypto::random_bytes::<32>())
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

async fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let real = hash.is_some();
    let hash = hash.map(str::to_owned);
    let password = password.to_owned();
    let Ok(_slot) = hashing_slots().acquire().await else {
        return false;
    };
    let matches = tokio::task::spawn_blocking(move || {
        // The decoy is made here, off the async threads, the first time it is needed.
        let hash = hash.as_deref().unwrap_or_else(|| decoy_hash());
        PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    real && matches
}

async fn issue_link(
    tx: &mut crate::store::Tx<'_>,
    tenant_id: &str,
    user_id: Option<&str>,
    role: Role,
) -> Result<IssuedLink, StoreError> {
    let code = crypto::random_token("");
    let now = clock::now_ms();
    if let Some(user_id) = user_id {
        people::expire_links_of_user_in(tx, user_id, now).await?;
    }
    let link = Link {
        code_hash: crypto::sha256_hex(&code),
        tenant_id: tenant_id.to_owned(),
        user_id: user_id.map(str::to_owned),
        role: role.as_str().to_owned(),
        created_at: now,
        expires_at: now + LINK_LIFETIME_MS,
        used_at: None,
    };
    people::insert_link(tx, &link).await?;
    Ok(IssuedLink {
        code,
        expires_at: link.expires_at,
    })
}

/// The link that lets the first person of a fresh install create the first admin.
pub async fn issue_setup_link_in(
    tx: &mut crate::store::Tx<'_>,
    tenant_id: &str,
) -> Result<IssuedLink, StoreError> {
    issue_link(tx, tenant_id, None, Role::Admin).await
}

/// On a database where nobody can sign in yet (one created before the web UI existed), a setup
/// link for the first admin; `None` once anyone has an account.
pub async fn setup_link_if_nobody_signs_in(
    store: &Store,
) -> Result<Option<IssuedLink>, StoreError> {
    if people::any_user(store).await? {
        return Ok(None);
    }
    let Some(tenant_id) = people::first_tenant(store).await? else {
        return Ok(None);
    };
    let mut tx = store.begin().await?;
    let link = issue_setup_link_in(&mut tx, &tenant_id).await?;
    tx.commit().await?;
    Ok(Some(link))
}

/// Creates a user without a password and the link where they set one (an invitation, from the
/// UI or `hookline user create`).
pub async fn invite(
    store: &Store,
    tenant_id: &str,
    email: &str,
    role: Role,
) -> Result<(User, IssuedLink), ApiError> {
    let email = normalize_email(email)?;
    let now = clock::now_ms();
    let display_name = email.split('@').next().unwrap_or_default().to_owned();
    let user = User {
        id: ids::new(Kind::User),
        tenant_id: tenant_id.to_owned(),
        email,
        display_name,
        password_hash: None,
        role: role.as_str().to_owned(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = store.begin().await?;
    people::insert_user(&mut tx, &user).await?;
    let link = issue_link(&mut tx, tenant_id, Some(&user.id), role).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, role = role.as_str(), "user invited");
    Ok((user, link))
}

/// A fresh link for an existing user to set a new password (`hookline user reset-password`).
pub async fn reset_link(store: &Store, email: &str) -> Result<(User, IssuedLink), ApiError> {
    let email = normalize_email(email)?;
    let user = people::user_by_email(store, &email)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let mut tx = store.begin().await?;
    let link = issue_link(
        &mut tx,
        &user.tenant_id,
        Some(&user.id),
        Role::parse(&user.role),
    )
    .await?;
    tx.commit().await?;
    Ok((user, link))
}

/// What a link page shows before the person fills it in.
pub enum LinkTarget {
    /// Creates a new admin: the person chooses their email.
    NewAdmin,
    /// Sets the password of this user (an invitation or a reset).
    Existing(User),
}

/// The live link behind `code`, or `None` when it is unknown, used or expired.
pub async fn open_link(store: &Store, code: &str) -> Result<Option<(Link, LinkTarget)>, ApiError> {
    let Some(link) = people::live_link(store, &crypto::sha256_hex(code), clock::now_ms()).await?
    else {
        return Ok(None);
    };
    let target = match &link.user_id {
        None => LinkTarget::NewAdmin,
        Some(user_id) => match people::get_user(store, &link.tenant_id, user_id).await {
            Ok(user) => LinkTarget::Existing(user),
            Err(StoreError::NotFound) => return Ok(None),
            Err(other) => return Err(other.into()),
        },
    };
    Ok(Some((link, target)))
}

/// What the person typed on a link's page.
pub struct LinkForm<'a> {
    /// Only for a link that creates a new admin.
    pub email: Option<&'a str>,
    pub display_name: &'a str,
    pub password: &'a str,
}

/// Uses a link once: creates the admin or sets the user's password (ending their sessions).
/// Returns the user, ready to be signed in.
pub async fn complete_link(
    store: &Store,
    code: &str,
    form: LinkForm<'_>,
) -> Result<User, ApiError> {
    let Some((link, target)) = open_link(store, code).await? else {
        return Err(ApiError::NotFound("link"));
    };
    let display_name = check_display_name(form.display_name)?;
    check_password(form.password)?;
    let hash = hash_password(form.password).await?;
    let now = clock::now_ms();
    let mut tx = store.begin().await?;
    if !people::use_link_in(&mut tx, &link.code_hash, now).await? {
        return Err(ApiError::NotFound("link"));
    }
    let user = match target {
        LinkTarget::NewAdmin => {
            let email = normalize_email(form.email.unwrap_or_default())?;
            let user = User {
                id: ids::new(Kind::User),
                tenant_id: link.tenant_id.clone(),
                email,
                display_name,
                password_hash: Some(hash),
                role: link.role.clone(),
                created_at: now,
                updated_at: now,
            };
            people::insert_user(&mut tx, &user).await?;
            user
        }
        LinkTarget::Existing(mut user) => {
            people::set_password_in(&mut tx, &user.id, &display_name, &hash, None, now).await?;
            people::expire_links_of_user_in(&mut tx, &user.id, now).await?;
            user.display_name = display_name;
            user.password_hash = Some(hash);
            user
        }
    };
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "user set a password through a one-time link");
    Ok(user)
}

/// Checks an email and password. Five failures for one email within 15 minutes close it until
/// the oldest of them leaves the window; an unknown email costs the same hashing as a known one.
pub async fn sign_in(store: &Store, email: &str, password: &str) -> Result<User, SignInError> {
    let email = email.trim().to_lowercase();
    // One attempt per email at a time on this node: parallel guesses cannot all pass the count
    // before the first failure is recorded.
    let lock = email_lock(&email);
    let _held = lock.lock().await;
    let outcome = check_credentials(store, &email, password).await;
    drop(_held);
    release_email_lock(&email, lock);
    outcome
}

type EmailLocks =
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>;

fn email_locks() -> &'static EmailLocks {
    static LOCKS: std::sync::OnceLock<EmailLocks> = std::sync::OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

fn email_lock(email: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    email_locks()
        .lock()
        .expect("email locks")
        .entry(email.to_owned())
        .or_default()
        .clone()
}

/// Forgets an email's lock once nobody else holds or waits for it.
fn release_email_lock(email: &str, lock: std::sync::Arc<tokio::sync::Mutex<()>>) {
    let mut locks = email_locks().lock().expect("email locks");
    drop(lock);
    if locks
        .get(email)
        .is_some_and(|held| std::sync::Arc::strong_count(held) == 1)
    {
        locks.remove(email);
    }
}

async fn check_credentials(
    store: &Store,
    email: &str,
    password: &str,
) -> Result<User, SignInError> {
    let email = email.to_owned();
    let now = clock::now_ms();
    let (failures, oldest) =
        people::failures_since(store, &email, now - THROTTLE_WINDOW_MS).await?;
    if failures >= THROTTLE_FAILURES {
        let reopens = oldest.unwrap_or(now) + THROTTLE_WINDOW_MS;
        return Err(SignInError::Throttled {
            retry_after_seconds: ((reopens - now) / 1000).max(1),
        });
    }
    let user = people::user_by_email(store, &email).await?;
    let hash = user.as_ref().and_then(|user| user.password_hash.as_deref());
    if verify_password(password, hash).await
        && let Some(user) = user
    {
        people::clear_failures(store, &email).await?;
        return Ok(user);
    }
    people::record_failure(store, &email, now).await?;
    tracing::info!("sign-in refused");
    Err(SignInError::WrongCredentials)
}

/// Starts a session for `user`; the cookie value is returned once and stored as a hash.
pub async fn start_session(
    store: &Store,
    config: &Config,
    user: &User,
) -> Result<NewSession, StoreError> {
    let raw = crypto::random_token("");
    let now = clock::now_ms();
    let absolute_ms =
        i64::try_from(config.web.session.absolute_hours * 3_600_000).unwrap_or(i64::MAX / 2);
    people::insert_session(
        store,
        &crypto::sha256_hex(&raw),
        &user.id,
        now,
        now + absolute_ms,
    )
    .await?;
    tracing::info!(user_id = %user.id, "signed in");
    Ok(NewSession {
        cookie_value: raw,
        max_age_seconds: absolute_ms / 1000,
    })
}

/// The person behind a session cookie, if the session is alive (within both lifetimes).
pub async fn resume_session(
    store: &Store,
    config: &Config,
    cookie_value: &str,
) -> Result<Option<SignedIn>, StoreError> {
    let session_hash = crypto::sha256_hex(cookie_value);
    let Some(row) = people::session(store, &session_hash).await? else {
        return Ok(None);
    };
    let now = clock::now_ms();
    let idle_ms = i64::try_from(config.web.session.idle_minutes * 60_000).unwrap_or(i64::MAX / 2);
    if row.expires_at <= now || row.last_seen_at + idle_ms <= now {
        people::delete_session(store, &session_hash).await?;
        return Ok(None);
    }
    if now - row.last_seen_at >= SESSION_TOUCH_MS {
        people::touch_session(store, &session_hash, now).await?;
    }
    let SessionRow { user, .. } = row;
    Ok(Some(SignedIn {
        role: Role::parse(&user.role),
        csrf_token: csrf_token_for(cookie_value),
        user,
        session_hash,
    }))
}

/// The CSRF token of a session: derived from its secret id, so it needs no storage and differs
/// for every session.
fn csrf_token_for(cookie_value: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(cookie_value.as_bytes())
            .expect("HMAC takes any key length");
    mac.update(b"hookline csrf v1");
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `presented` is this session's CSRF token, compared in constant time.
pub fn csrf_matches(signed_in: &SignedIn, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(signed_in.csrf_token.as_bytes().ct_eq(presented.as_bytes()))
}

pub async fn sign_out(store: &Store, signed_in: &SignedIn) -> Result<(), StoreError> {
    people::delete_session(store, &signed_in.session_hash).await
}

/// Changes the signed-in person's password after checking the current one; every other session
/// of theirs ends.
pub async fn change_password(
    store: &Store,
    signed_in: &SignedIn,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    if !verify_password(current, signed_in.user.password_hash.as_deref()).await {
        return Err(ApiError::Unprocessable(
            "current_password is not your current password".to_owned(),
        ));
    }
    check_password(new).map_err(|error| match error {
        ApiError::Unprocessable(message) => {
            ApiError::Unprocessable(message.replacen("password", "new_password", 1))
        }
        other => other,
    })?;
    let hash = hash_password(new).await?;
    let mut tx = store.begin().await?;
    people::set_password_in(
        &mut tx,
        &signed_in.user.id,
        &signed_in.user.display_name,
        &hash,
        Some(&signed_in.session_hash),
        clock::now_ms(),
    )
    .await?;
    people::expire_links_of_user_in(&mut tx, &signed_in.user.id, clock::now_ms()).await?;
    tx.commit().await?;
    tracing::info!(user_id = %signed_in.user.id, "password changed; other sessions ended");
    Ok(())
}

/// Removes a user of the tenant (their sessions end with them). Nobody removes themselves, and
/// the last admin who can sign in stays.
pub async fn remove_user(
    store: &Store,
    signed_in: &SignedIn,
    user_id: &str,
) -> Result<User, ApiError> {
    let tenant_id = &signed_in.user.tenant_id;
    let user = people::get_user(store, tenant_id, user_id)
        .await
        .map_err(|error| crate::tenancy::api::not_found_as(error, "user"))?;
    if user.id == signed_in.user.id {
        return Err(ApiError::Conflict("you cannot remove yourself".to_owned()));
    }
    if !people::delete_user(store, tenant_id, &user.id).await? {
        return Err(ApiError::Conflict(
            "the last admin cannot be removed".to_owned(),
        ));
    }
    tracing::info!(user_id = %user.id, "user removed");
    Ok(user)
}

/// Drops ended sessions, used or expired links and old failed sign-ins.
pub async fn prune(store: &Store, config: &Config) -> Result<u64, StoreError> {
    let now = clock::now_ms();
    let idle_ms = i64::try_from(config.web.session.idle_minutes * 60_000).unwrap_or(i64::MAX / 2);
    people::prune(store, now, now - idle_ms).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            normalize_email(" Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a da@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let one = csrf_token_for("session-one");
        assert_eq!(one, csrf_token_for("session-one"));
        assert_ne!(one, csrf_token_for("session-two"));
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", Some(&hash)).await);
        assert!(!verify_password("wrong horse battery", Some(&hash)).await);
        assert!(!verify_password("correct horse battery", None).await);
    }
}
