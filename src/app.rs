//! The application: builds every part from a [`Config`] (store, keys, router, workers) and runs it
//! until a shutdown signal. Tests build and run it the same way the binary does.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Backend, Config};
use crate::crypto::{self, Cipher};
use crate::outbound::{self, Outbound};
use crate::store::{Store, settings};
use crate::tenancy::{self, Bootstrap};
use crate::{http, telemetry};

/// What every handler and worker shares.
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub cipher: Cipher,
    pub outbound: Outbound,
    pub github: crate::github::GithubClient,
    pub inbound: crate::inbound::writer::InboundWriter,
    /// Writes published events with others published at the same moment.
    pub publisher: crate::outbound::publisher::PublishWriter,
    pub service_cache: crate::inbound::cache::ServiceCache,
    /// Whether a tenant's repository has enabled repository hooks, by `tenant/owner/name`.
    pub hook_cache: crate::inbound::cache::TtlCache<bool>,
    /// API tokens this node authenticated lately.
    pub token_cache: crate::tenancy::TokenCache,
    pub analyzer: Arc<crate::analysis::Configured>,
    pub metrics: PrometheusHandle,
    pub openapi_json: Bytes,
}

/// Cheap to clone: one `Arc` around [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// A built, bound, not yet running Hookline node.
pub struct Application {
    state: AppState,
    listener: TcpListener,
    local_addr: SocketAddr,
    bootstrap: Option<Bootstrap>,
    /// A setup link for the first admin when the database has tenants but nobody who can sign in.
    setup_link: Option<crate::people::IssuedLink>,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects the store, applies migrations, loads the master key, creates the default tenant
    /// on an empty database, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let store = open_store(&config).await?;
        if config.database.migrate_on_start {
            let applied = store
                .migrate()
                .await
                .context("applying schema migrations")?;
            if applied > 0 {
                tracing::info!(applied, "schema migrations applied");
            }
        }
        let cipher = load_cipher(&config)?;
        ensure_master_key_matches(&store, &cipher).await?;
        let bootstrap = tenancy::bootstrap(&store)
            .await
            .context("creating the default tenant")?;
        let setup_link = match &bootstrap {
            Some(_) => None,
            None => crate::people::setup_link_if_nobody_signs_in(&store)
                .await
                .context("issuing a setup link for the first admin")?,
        };

        let outbound = Outbound::new(&config)?;
        let github = crate::github::GithubClient::new(&config.github)?;
        // SQLite has one writer connection: one writer task batches for it. PostgreSQL takes a
        // few batches at once.
        let inbound_writers = match store.backend() {
            crate::config::Backend::Sqlite => 1,
            crate::config::Backend::Postgres => 4,
        };
        let inbound = crate::inbound::writer::InboundWriter::start(store.clone(), inbound_writers)
            .context("starting the inbound writer thread")?;
        let publisher = crate::outbound::publisher::PublishWriter::start(store.clone())
            .context("starting the publish writer thread")?;
        let token_cache =
            crate::tenancy::TokenCache::new(Duration::from_millis(config.http.token_cache_ms));
        let analyzer = Arc::new(crate::analysis::Configured::new(&config.analysis)?);
        let service_cache = crate::inbound::cache::ServiceCache::new(Duration::from_millis(
            config.inbound.service_cache_ms,
        ));
        let hook_cache = crate::inbound::cache::TtlCache::new(Duration::from_millis(
            config.inbound.service_cache_ms,
        ));
        let openapi_json = serde_json::to_vec_pretty(&http::openapi::document())
            .context("serialising the OpenAPI document")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        let state = AppState(Arc::new(Shared {
            config,
            store,
            cipher,
            outbound,
            github,
            inbound,
            publisher,
            service_cache,
            hook_cache,
            token_cache,
            analyzer,
            metrics: telemetry::metrics_handle(),
            openapi_json: Bytes::from(openapi_json),
        }));
        Ok(Application {
            state,
            listener,
            local_addr,
            bootstrap,
            setup_link,
            shutdown: CancellationToken::new(),
        })
    }

    /// The address the server listens on (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What this start created on an empty database: the default tenant and its admin token.
    pub fn bootstrap(&self) -> Option<&Bootstrap> {
        self.bootstrap.as_ref()
    }

    /// On a database that has tenants but no user yet: the link where the first admin is made.
    pub fn setup_link(&self) -> Option<&crate::people::IssuedLink> {
        self.setup_link.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.state.config
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops taking requests, lets in-flight
    /// ones finish (up to `http.shutdown_grace_seconds`), stops the workers and closes the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            state,
            listener,
            shutdown,
            ..
        } = self;
        let config = &state.config;
        let workers = TaskTracker::new();
        spawn_maintenance(&state, &workers, &shutdown);
        outbound::worker::spawn_announcer(&state, &workers, &shutdown);
        if config.role.runs_workers() {
            outbound::worker::spawn(&state, &workers, &shutdown);
            crate::analysis::worker::spawn(&state, state.analyzer.clone(), &workers, &shutdown);
            crate::monitors::spawn(&state, &workers, &shutdown);
            crate::fixes::worker::spawn(&state, &workers, &shutdown);
        }
        let router = http::router(state.clone(), config.role);
        let grace = Duration::from_secs(config.http.shutdown_grace_seconds);
        tracing::info!(
            addr = %listener.local_addr()?,
            role = ?config.role,
            backend = ?state.store.backend(),
            "Hookline is listening"
        );
        let server = http::serve::serve(listener, router, &config.http, shutdown.clone());
        tokio::select! {
            () = server => {},
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests outlived the shutdown grace period");
            }
        }
        workers.close();
        if tokio::time::timeout(grace, workers.wait()).await.is_err() {
            tracing::warn!("background workers outlived the shutdown grace period");
        }
        state.store.close().await;
        tracing::info!("Hookline stopped");
        Ok(())
    }
}

/// Housekeeping every node runs, whatever its role. Each loop watches `shutdown` and ends on its own.
fn spawn_maintenance(state: &AppState, workers: &TaskTracker, shutdown: &CancellationToken) {
    let store = state.store.clone();
    let stop = shutdown.clone();
    // The SQLite writer leaves checkpoints to this loop, so the write-ahead log stays short
    // without the writer paying for it.
    workers.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(error) = store.checkpoint().await {
                        tracing::warn!(%error, "WAL checkpoint failed");
                    }
                }
            }
        }
    });
    let pruned = state.clone();
    let stop = shutdown.clone();
    // Ended sessions, used links and old failed sign-ins are removed in the background; every
    // read also checks lifetimes, so this only keeps the tables small.
    workers.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(error) = crate::people::prune(&pruned.store, &pruned.config).await {
                        tracing::warn!(%error, "pruning web sessions failed");
                    }
                }
            }
        }
    });
    let metrics = state.metrics.clone();
    let stop = shutdown.clone();
    // Histograms keep raw samples until upkeep folds them in; without it memory grows between
    // scrapes.
    workers.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => metrics.run_upkeep(),
            }
        }
    });
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    if let Some(path) = config.database_url.sqlite_path()
        && let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database directory {}", dir.display()))?;
    }
    Store::connect(&config.database_url, &config.database)
        .await
        .with_context(|| format!("connecting to {}", config.database_url))
}

/// The keyring from configuration. With nothing configured on a SQLite file, the key lives in
/// `<database file>.key`, created (mode 0600) on first start.
pub fn load_cipher(config: &Config) -> anyhow::Result<Cipher> {
    let current = if let Some(key) = &config.master_key {
        crypto::decode_key(key.expose()).map_err(|why| anyhow::anyhow!("master_key {why}"))?
    } else if let Some(path) = &config.master_key_file {
        crypto::load_or_create_key_file(path, false)?.0
    } else {
        let Some(db) = config.database_url.sqlite_path() else {
            anyhow::bail!("no master key configured (master_key or master_key_file)");
        };
        debug_assert_eq!(config.database_url.backend(), Some(Backend::Sqlite));
        let mut path = db.into_os_string();
        path.push(".key");
        let path = std::path::PathBuf::from(path);
        let (key, created) = crypto::load_or_create_key_file(&path, true)?;
        if created {
            tracing::warn!(
                path = %path.display(),
                "generated a new master key for secrets at rest; back it up with the database"
            );
        }
        key
    };
    let retired = config
        .previous_master_keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            crypto::decode_key(key.expose())
                .map_err(|why| anyhow::anyhow!("previous_master_keys[{index}] {why}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Cipher::new(current, &retired))
}

const KEY_CHECK_SETTING: &str = "master_key_check";
const KEY_CHECK_CONTEXT: &str = "server_settings.value:master_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"hookline master key check";

/// Refuses to start with a master key other than the one the database's secrets were sealed with,
/// instead of failing later on the first secret it cannot open.
async fn ensure_master_key_matches(store: &Store, cipher: &Cipher) -> anyhow::Result<()> {
    let sealed = match settings::get(store, KEY_CHECK_SETTING).await? {
        Some(sealed) => sealed,
        None => {
            let fresh = cipher.seal(KEY_CHECK_CONTEXT, KEY_CHECK_PLAINTEXT);
            settings::insert_if_absent(store, KEY_CHECK_SETTING, &fresh).await?
        }
    };
    match cipher.open(KEY_CHECK_CONTEXT, &sealed) {
        Ok(plaintext) if plaintext == KEY_CHECK_PLAINTEXT => Ok(()),
        Ok(_) => anyhow::bail!("the master key check in the database is corrupt"),
        Err(why) => anyhow::bail!(
            "the configured master key (id {}) does not match this database: {why}. \
             Configure the key the database was created with (master_key, master_key_file, \
             or the .key file beside the SQLite database); retired keys go in \
             previous_master_keys",
            cipher.current_key_id()
        ),
    }
}

/// Installs the Ctrl-C and SIGTERM handlers now and returns a future that resolves on either.
///
/// Installing happens before the caller announces that it is listening: a signal that arrives
/// between the announcement and the first poll must start a graceful shutdown, not kill the
/// process with the default action.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutdown signal received");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received");
        })
    }
}
