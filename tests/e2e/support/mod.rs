//! The end-to-end harness: a real Hookline server on a random loopback port over a fresh database
//! (a temp SQLite file, or a fresh PostgreSQL schema), an HTTP client for it, and local receivers
//! that record what they are sent.

pub mod browser;
pub mod db;
pub mod fake_github;
pub mod own_postgres;
pub mod process;
pub mod receiver;

use std::time::Duration;

use hookline::config::{DatabaseUrl, Secret};
use hookline::store::Store;
use hookline::{Application, Config};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use db::{Backend, TestDb};

/// Generates one `#[tokio::test]` per backend for each named `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(backend) = $crate::support::Backend::postgres_or_skip().await {
                        super::$name(backend).await
                    }
                }
            }
        )*
    };
}

/// A running server and a client that talks to it as the bootstrap admin.
pub struct TestApp {
    pub base_url: String,
    /// The admin token printed on first start.
    pub token: String,
    pub tenant_id: String,
    /// The code of the one-time link that creates the first admin of the web UI.
    pub setup_code: String,
    pub client: reqwest::Client,
    pub store: Store,
    /// The configuration the server runs with.
    pub config: Config,
    /// Kept so the database lives as long as the server.
    db: Option<TestDb>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The configuration every test server starts from.
pub fn test_config(db: &TestDb) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: DatabaseUrl::new(db.url()),
        master_key: Some(Secret::new(db.master_key())),
        ..Config::default()
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts a server after `adjust` has changed the test configuration.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::create(backend).await;
        let mut config = test_config(&db);
        adjust(&mut config);
        Self::start(db, config).await
    }

    pub async fn start(db: TestDb, config: Config) -> TestApp {
        let app = Application::build(config.clone())
            .await
            .expect("the application builds");
        let bootstrap = app.bootstrap().expect("a fresh database is bootstrapped");
        let token = bootstrap.admin_token.secret.clone();
        let tenant_id = bootstrap.tenant.id.clone();
        let setup_code = bootstrap.setup_link.code.clone();
        let mut app = Self::serve(app, db, config, token, tenant_id);
        app.setup_code = setup_code;
        app
    }

    /// Stops this server and starts another on the same database, with `adjust` applied to the
    /// configuration; the admin token stays valid.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = self.db.take().expect("the database");
        let (token, tenant_id) = (self.token.clone(), self.tenant_id.clone());
        let setup_code = std::mem::take(&mut self.setup_code);
        let mut config = self.config.clone();
        self.stop().await;
        adjust(&mut config);
        let app = Application::build(config.clone())
            .await
            .expect("the application builds again");
        let mut app = Self::serve(app, db, config, token, tenant_id);
        app.setup_code = setup_code;
        app
    }

    fn serve(
        app: Application,
        db: TestDb,
        config: Config,
        token: String,
        tenant_id: String,
    ) -> TestApp {
        let base_url = format!("http://{}", app.local_addr());
        let store = app.state().store.clone();
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run_until_stopped());
        TestApp {
            base_url,
            token,
            tenant_id,
            setup_code: String::new(),
            client: http_client(),
            store,
            config,
            db: Some(db),
            shutdown,
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A request carrying the admin token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(&self.token, method, path)
    }

    /// A request carrying `token`.
    pub fn request_as(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task did not panic")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP client for tests: no proxy, a generous timeout, TLS ready.
pub fn http_client() -> reqwest::Client {
    hookline::outbound::client::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Status and JSON body of a response.
pub async fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text}"));
    (status, body)
}

/// Polls `probe` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
