//! Fresh databases for tests: a temp SQLite file, or a PostgreSQL schema of its own dropped when
//! the test ends.

use sqlx::Connection;

/// Where PostgreSQL tests connect; a schema per test keeps them apart.
pub const POSTGRES_URL_VAR: &str = "HOOKLINE_TEST_POSTGRES_URL";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1/test";
/// Set to `1` to skip PostgreSQL tests on a machine without it. Refused under CI.
pub const SKIP_POSTGRES_VAR: &str = "HOOKLINE_TEST_SKIP_POSTGRES";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

impl Backend {
    /// `Some(Postgres)` when PostgreSQL answers. When it does not, the test fails with a clear
    /// message, unless the developer opted out with HOOKLINE_TEST_SKIP_POSTGRES=1 outside CI.
    pub async fn postgres_or_skip() -> Option<Backend> {
        let url = postgres_url();
        match sqlx::PgConnection::connect(&url).await {
            Ok(connection) => {
                let _ = connection.close().await;
                Some(Backend::Postgres)
            }
            Err(error) => {
                let opted_out = std::env::var(SKIP_POSTGRES_VAR).is_ok_and(|v| v == "1");
                let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
                if opted_out && !in_ci {
                    eprintln!("PostgreSQL at {url} unreachable; skipped ({SKIP_POSTGRES_VAR}=1)");
                    None
                } else {
                    panic!(
                        "PostgreSQL is not reachable at {url} ({error}). Start it, point \
                         {POSTGRES_URL_VAR} at one, or (outside CI only) set {SKIP_POSTGRES_VAR}=1"
                    )
                }
            }
        }
    }
}

/// One test's database. Dropping it removes the SQLite directory or the PostgreSQL schema.
pub struct TestDb {
    url: String,
    master_key: String,
    /// The SQLite file's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        let master_key = hookline::crypto::generate_key();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("hookline.db").display());
                TestDb {
                    url,
                    master_key,
                    _dir: Some(dir),
                    schema: None,
                }
            }
            Backend::Postgres => {
                let schema = format!("hl_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(&postgres_url())
                    .await
                    .expect("PostgreSQL is reachable");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut admin)
                    .await
                    .expect("test schema created");
                let _ = admin.close().await;
                let base = postgres_url();
                let separator = if base.contains('?') { '&' } else { '?' };
                TestDb {
                    url: format!("{base}{separator}options[search_path]={schema}"),
                    master_key,
                    _dir: None,
                    schema: Some(schema),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn master_key(&self) -> &str {
        &self.master_key
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived thread
        // with its own runtime removes the schema.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_url()).await {
                    let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
