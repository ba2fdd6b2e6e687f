//! Typed configuration: defaults, then `hookline.toml`, then `HOOKLINE_*` environment variables,
//! then command-line flags, validated once at start.
//!
//! Nested keys use `__` in the environment (`HOOKLINE_LOG__FORMAT=json` sets `log.format`).
//! Secrets (master keys, the database password) never show in `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The configuration file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "hookline.toml";

/// Every setting of a Hookline node.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// `sqlite://path` (embedded, the default) or `postgres://…` (shared by many nodes).
    pub database_url: DatabaseUrl,
    /// What this node runs: the HTTP API, the background workers, or both.
    pub role: Role,
    /// Base64 of 32 bytes: the key that encrypts secrets at rest.
    pub master_key: Option<Secret>,
    /// A file holding the master key (base64). On SQLite with no key configured, Hookline creates
    /// `<database file>.key` on first start.
    pub master_key_file: Option<PathBuf>,
    /// Keys retired by a rotation: still tried for decryption, never used to encrypt.
    pub previous_master_keys: Vec<Secret>,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub delivery: DeliveryConfig,
    pub ssrf: SsrfConfig,
    pub inbound: InboundConfig,
    pub github: GithubConfig,
    pub analysis: AnalysisConfig,
    pub monitors: MonitorsConfig,
    pub fix_proposals: FixProposalsConfig,
    pub web: WebConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: DatabaseUrl("sqlite://hookline.db".to_owned()),
            role: Role::All,
            master_key: None,
            master_key_file: None,
            previous_master_keys: Vec::new(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            delivery: DeliveryConfig::default(),
            ssrf: SsrfConfig::default(),
            inbound: InboundConfig::default(),
            github: GithubConfig::default(),
            analysis: AnalysisConfig::default(),
            monitors: MonitorsConfig::default(),
            fix_proposals: FixProposalsConfig::default(),
            web: WebConfig::default(),
        }
    }
}

/// The forge webhook receivers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// The largest webhook body accepted, in bytes (GitHub's own cap is 25 MiB).
    pub max_body_bytes: usize,
    /// How long the receivers may reuse the services linked to a repository, in milliseconds.
    /// A node sees its own changes at once; other nodes on the same PostgreSQL within this time.
    /// 0 reads the database for every webhook.
    pub service_cache_ms: u64,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            max_body_bytes: 25 * 1024 * 1024,
            service_cache_ms: 1_000,
        }
    }
}

/// Commit analysis: the rule analyser always; a model behind an OpenAI-compatible chat API when
/// `model_url` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Base URL of an OpenAI-compatible API (`…/v1/chat/completions` is appended).
    pub model_url: Option<String>,
    /// The model to ask.
    pub model: String,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<Secret>,
    /// Timeout of one model call, in milliseconds.
    pub timeout_ms: u64,
    /// How often the analysis worker looks for queued jobs when nothing wakes it, in milliseconds.
    pub poll_interval_ms: u64,
    /// Attempts before a job is given up as failed.
    pub max_attempts: u32,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            model_url: None,
            model: "gpt-4o-mini".to_owned(),
            api_key: None,
            timeout_ms: 30_000,
            poll_interval_ms: 1_000,
            max_attempts: 5,
        }
    }
}

/// HTTP monitors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorsConfig {
    /// Failed checks in a row that open an incident.
    pub failure_threshold: u32,
    /// How often worker nodes look for monitors that are due, in milliseconds.
    pub tick_ms: u64,
    /// The shortest interval a monitor may have, in seconds (10; tests use less).
    pub min_interval_seconds: u64,
}

impl Default for MonitorsConfig {
    fn default() -> Self {
        MonitorsConfig {
            failure_threshold: 2,
            tick_ms: 1_000,
            min_interval_seconds: 10,
        }
    }
}

/// The web UI: where people reach it, and how long their sessions live.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// The address people open, e.g. `https://hookline.example.com`: used in the links Hookline
    /// prints (setup, invitations) and the webhook URL it tells GitHub. An `https://` address also
    /// marks the session cookie `Secure`. Unset: `http://<listen>`.
    pub public_url: Option<String>,
    pub session: SessionConfig,
}

/// Lifetimes of a signed-in session.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// A session unused for this long ends, in minutes.
    pub idle_minutes: u64,
    /// A session ends this long after sign-in whatever its use, in hours.
    pub absolute_hours: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_minutes: 8 * 60,
            absolute_hours: 7 * 24,
        }
    }
}

impl WebConfig {
    /// The public base URL without a trailing slash.
    pub fn base_url(&self, listen: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{listen}"),
        }
    }

    /// Whether the session cookie must only travel over HTTPS.
    pub fn secure_cookie(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }
}

/// Fix proposals: their PR-creation jobs and the poll of their pull requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixProposalsConfig {
    /// How often worker nodes look for PR-creation jobs, in milliseconds.
    pub tick_ms: u64,
    /// How often open fix pull requests are checked on GitHub, in seconds (webhooks usually
    /// tell first).
    pub poll_seconds: u64,
}

impl Default for FixProposalsConfig {
    fn default() -> Self {
        FixProposalsConfig {
            tick_ms: 1_000,
            poll_seconds: 900,
        }
    }
}

/// Calls Hookline makes to the GitHub REST API (issues, pull requests, commit details).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubConfig {
    /// The API base URL: `https://api.github.com`, or a GitHub Enterprise `https://host/api/v3`.
    pub api_url: String,
    /// Timeout of one API call, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: "https://api.github.com".to_owned(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,hookline=debug`. `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body the API accepts, in bytes (webhook receivers set their own cap).
    pub max_body_bytes: usize,
    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    pub shutdown_grace_seconds: u64,
    /// A connection that does not send a whole request head within this time (a new one, or an
    /// idle kept-alive one) is closed, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// A request body that sends nothing for this long is cut off (408), in milliseconds: a
    /// stalled upload, not a slow one.
    pub body_idle_timeout_ms: u64,
    /// The longest a whole request body may take, in milliseconds (25 MiB at about 90 KiB/s by
    /// default).
    pub body_read_timeout_ms: u64,
    /// How long a node reuses its answer for an API token, in milliseconds, instead of reading
    /// the database for every request. A revocation holds at once on the node that made it, on
    /// other nodes sharing a PostgreSQL database within this time. 0 reads it for every request.
    pub token_cache_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 1024 * 1024,
            shutdown_grace_seconds: 20,
            header_read_timeout_ms: 30_000,
            max_connections: 10_000,
            body_idle_timeout_ms: 30_000,
            body_read_timeout_ms: 300_000,
            token_cache_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection pool size.
    pub max_connections: u32,
    /// How long SQLite waits for a lock before giving up, in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
    /// Run pending schema migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// How long a request waits for a PostgreSQL connection before it is answered 503 (database
    /// unavailable), in milliseconds.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 16,
            sqlite_busy_timeout_ms: 5_000,
            migrate_on_start: true,
            acquire_timeout_ms: 2_000,
        }
    }
}

/// Outbound webhook delivery: timeouts, retries, fairness, retention.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Timeout of one attempt (connect, send, response headers and body), in milliseconds.
    pub timeout_ms: u64,
    /// Delay before each retry after the first attempt, in milliseconds; its length is the number
    /// of retries. Each delay gets up to `jitter_percent` of random jitter either way.
    pub retry_schedule_ms: Vec<u64>,
    pub jitter_percent: u8,
    /// An endpoint whose deliveries fail this many times in a row is disabled.
    pub disable_after_failures: u32,
    /// Attempts in flight at once to one endpoint, per node.
    pub endpoint_concurrency: u32,
    /// Attempts in flight at once on a node.
    pub max_in_flight: u32,
    /// Deliveries claimed per queue query.
    pub batch_size: u32,
    /// How long a claimed delivery stays reserved for the node that claimed it, in seconds. The
    /// node renews it every third of that while it holds the delivery, so this is how long a
    /// crashed node's deliveries wait before another node takes them.
    pub lease_seconds: u64,
    /// The fallback poll of the queue when no wake-up arrives, in milliseconds.
    pub poll_interval_ms: u64,
    /// How long a rotated-out endpoint secret keeps signing beside the new one, in seconds.
    pub rotation_overlap_seconds: u64,
    /// Finished deliveries, their attempts and events are deleted after this many days.
    pub retention_days: u32,
    /// Accept `http://` endpoint URLs (otherwise only `https://`).
    pub allow_http: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout_ms: 10_000,
            retry_schedule_ms: vec![30_000, 120_000, 600_000, 3_600_000, 14_400_000],
            jitter_percent: 20,
            disable_after_failures: 10,
            endpoint_concurrency: 8,
            max_in_flight: 512,
            batch_size: 256,
            lease_seconds: 10,
            poll_interval_ms: 1_000,
            rotation_overlap_seconds: 86_400,
            retention_days: 30,
            allow_http: false,
        }
    }
}

/// Server-side request forgery guard for every outbound request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsrfConfig {
    /// CIDRs (`10.1.0.0/16`, `127.0.0.1/32`) and host names (`hooks.internal`) that may be reached
    /// although the guard would forbid them.
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// HTTP API and web UI only.
    Api,
    /// Background workers (deliveries, monitors, jobs) plus health and metrics endpoints.
    Worker,
    /// Both, in one process.
    All,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }

    pub fn runs_workers(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A secret string: readable through [`Secret::expose`], redacted in `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A database URL whose password never shows in `Debug` or `Display`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

/// Which storage engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn backend(&self) -> Option<Backend> {
        if self.0.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if self.0.starts_with("postgres://") || self.0.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// The database file of an `sqlite:` URL (`sqlite://hookline.db`, `sqlite:data/h.db?mode=rwc`).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.0.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        Some(PathBuf::from(path))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(mut parsed) = url::Url::parse(&self.0) else {
            // Unparsable (e.g. an unescaped character in the password): show only the scheme.
            let scheme = self.0.split(':').next().unwrap_or_default();
            return write!(f, "{scheme}://[unparsable URL hidden]");
        };
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("redacted"));
        }
        if parsed.query_pairs().any(|(key, _)| key == "password") {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        "redacted".into()
                    } else {
                        value
                    };
                    (key.into_owned(), value.into_owned())
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        f.write_str(parsed.as_str())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
}

impl From<Box<figment::Error>> for ConfigError {
    fn from(error: Box<figment::Error>) -> Self {
        ConfigError::Parse(error)
    }
}

impl Config {
    /// Layers defaults, the config file, the environment and `overrides`, then validates.
    ///
    /// `file` is an explicit `--config` path (it must exist); without it `hookline.toml` in the
    /// working directory is read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Self::load_from(file, overrides, Env::prefixed("HOOKLINE_"))
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file(DEFAULT_CONFIG_FILE)),
        }
        // HOOKLINE_TEST_* variables configure the test suite, not the server.
        let env = env
            .split("__")
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"));
        let config: Config = figment
            .merge(env)
            .merge(Serialized::globals(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot say; every message names the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let Some(backend) = self.database_url.backend() else {
            return invalid(format!(
                "database_url `{}` must start with sqlite: or postgres://",
                self.database_url
            ));
        };
        if let Some(key) = &self.master_key
            && let Err(why) = crate::crypto::decode_key(key.expose())
        {
            return invalid(format!("master_key {why}"));
        }
        for (index, key) in self.previous_master_keys.iter().enumerate() {
            if let Err(why) = crate::crypto::decode_key(key.expose()) {
                return invalid(format!("previous_master_keys[{index}] {why}"));
            }
        }
        if backend == Backend::Postgres
            && self.master_key.is_none()
            && self.master_key_file.is_none()
        {
            return invalid(
                "a PostgreSQL database needs master_key (HOOKLINE_MASTER_KEY) or master_key_file, \
                 the same on every node"
                    .to_owned(),
            );
        }
        if let Some(url) = &self.web.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(format!(
                "web.public_url `{url}` must start with http:// or https://"
            ));
        }
        if self.web.session.idle_minutes == 0 || self.web.session.absolute_hours == 0 {
            return invalid(
                "web.session.idle_minutes and web.session.absolute_hours must be positive"
                    .to_owned(),
            );
        }
        if backend == Backend::Sqlite && self.database_url.sqlite_path().is_none() {
            return invalid(
                "database_url must name a SQLite file (sqlite://path); in-memory databases are not supported"
                    .to_owned(),
            );
        }
        if let Err(why) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return invalid(format!("log.level `{}`: {why}", self.log.level));
        }
        if self.http.max_body_bytes == 0 {
            return invalid("http.max_body_bytes must be at least 1".to_owned());
        }
        if self.inbound.max_body_bytes == 0 {
            return invalid("inbound.max_body_bytes must be at least 1".to_owned());
        }
        match url::Url::parse(&self.github.api_url) {
            Ok(api) if matches!(api.scheme(), "http" | "https") && api.host().is_some() => {}
            _ => {
                return invalid(format!(
                    "github.api_url `{}` must be an http(s) URL",
                    self.github.api_url
                ));
            }
        }
        if let Some(model_url) = &self.analysis.model_url
            && !matches!(url::Url::parse(model_url), Ok(url) if matches!(url.scheme(), "http" | "https"))
        {
            return invalid(format!(
                "analysis.model_url `{model_url}` must be an http(s) URL"
            ));
        }
        if self.analysis.timeout_ms == 0 || self.analysis.poll_interval_ms == 0 {
            return invalid(
                "analysis.timeout_ms and analysis.poll_interval_ms must be at least 1".to_owned(),
            );
        }
        if self.analysis.max_attempts == 0 {
            return invalid("analysis.max_attempts must be at least 1".to_owned());
        }
        if self.monitors.failure_threshold == 0 || self.monitors.tick_ms == 0 {
            return invalid(
                "monitors.failure_threshold and monitors.tick_ms must be at least 1".to_owned(),
            );
        }
        if self.fix_proposals.tick_ms == 0 || self.fix_proposals.poll_seconds == 0 {
            return invalid(
                "fix_proposals.tick_ms and fix_proposals.poll_seconds must be at least 1"
                    .to_owned(),
            );
        }
        if self.github.timeout_ms == 0 {
            return invalid("github.timeout_ms must be at least 1".to_owned());
        }
        for (name, value) in [
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms,
            ),
            ("http.body_idle_timeout_ms", self.http.body_idle_timeout_ms),
            ("http.body_read_timeout_ms", self.http.body_read_timeout_ms),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be at least 1"));
            }
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1".to_owned());
        }
        let delivery = &self.delivery;
        if delivery.timeout_ms == 0 {
            return invalid("delivery.timeout_ms must be at least 1".to_owned());
        }
        if delivery.jitter_percent > 100 {
            return invalid("delivery.jitter_percent must be at most 100".to_owned());
        }
        for (name, value) in [
            (
                "delivery.endpoint_concurrency",
                delivery.endpoint_concurrency,
            ),
            ("delivery.max_in_flight", delivery.max_in_flight),
            ("delivery.batch_size", delivery.batch_size),
            (
                "delivery.disable_after_failures",
                delivery.disable_after_failures,
            ),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be at least 1"));
            }
        }
        if delivery.lease_seconds == 0 || delivery.lease_seconds > 86_400 {
            return invalid("delivery.lease_seconds must be between 1 and 86400".to_owned());
        }
        if let Err(why) = crate::outbound::ssrf::Policy::new(&self.ssrf.allow) {
            return invalid(format!("ssrf.allow: {why}"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment's Jail closures return figment::Error"
)]
mod tests {
    use super::*;
    use figment::Jail;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_from(None, overrides, Env::prefixed("HOOKLINE_"))
    }

    #[test]
    fn the_web_section_reads_from_the_environment_and_decides_the_cookie() {
        Jail::expect_with(|jail| {
            jail.set_env("HOOKLINE_WEB__PUBLIC_URL", "https://hooks.example.com/");
            jail.set_env("HOOKLINE_WEB__SESSION__IDLE_MINUTES", "30");
            let config = load(&Overrides::default()).expect("valid");
            assert_eq!(config.web.session.idle_minutes, 30);
            assert_eq!(config.web.session.absolute_hours, 168);
            assert!(config.web.secure_cookie());
            assert_eq!(
                config.web.base_url(config.listen),
                "https://hooks.example.com"
            );
            jail.set_env("HOOKLINE_WEB__PUBLIC_URL", "hooks.example.com");
            let error = load(&Overrides::default()).expect_err("no scheme");
            assert!(error.to_string().contains("web.public_url"), "{error}");
            Ok(())
        });
        let plain = WebConfig::default();
        assert!(!plain.secure_cookie());
        assert_eq!(
            plain.base_url("127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn defaults_are_sqlite_on_loopback() {
        Jail::expect_with(|_| {
            let config = load(&Overrides::default()).expect("defaults load");
            assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(config.database_url.backend(), Some(Backend::Sqlite));
            assert_eq!(config.role, Role::All);
            assert_eq!(config.log.format, LogFormat::Pretty);
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                r#"
                    listen = "127.0.0.1:9000"
                    role = "api"
                    [log]
                    format = "json"
                    level = "debug"
                "#,
            )?;
            jail.set_env("HOOKLINE_ROLE", "worker");
            jail.set_env("HOOKLINE_LOG__LEVEL", "warn");
            jail.set_env("HOOKLINE_TEST_POSTGRES_URL", "ignored");
            let config = load(&Overrides::default()).expect("layers load");
            assert_eq!(config.listen.port(), 9000, "file sets listen");
            assert_eq!(config.role, Role::Worker, "env beats file");
            assert_eq!(config.log.format, LogFormat::Json, "file sets nested key");
            assert_eq!(config.log.level, "warn", "env sets nested key");

            let flags = Overrides {
                role: Some(Role::Api),
                ..Overrides::default()
            };
            assert_eq!(
                load(&flags).expect("flags load").role,
                Role::Api,
                "flags beat env"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        Jail::expect_with(|jail| {
            jail.create_file(DEFAULT_CONFIG_FILE, "lisen = \"127.0.0.1:1\"")?;
            let error = load(&Overrides::default()).unwrap_err().to_string();
            assert!(error.contains("lisen"), "{error}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("HOOKLINE_MASTER_KEY", "too-short");
            let error = load(&Overrides::default()).unwrap_err().to_string();
            assert!(error.contains("master_key"), "{error}");
            assert!(!error.contains("too-short"), "secret echoed: {error}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("HOOKLINE_DATABASE_URL", "mysql://localhost/x");
            let error = load(&Overrides::default()).unwrap_err().to_string();
            assert!(error.contains("database_url"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn postgres_requires_an_explicit_master_key() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "HOOKLINE_DATABASE_URL",
                "postgres://postgres@127.0.0.1/test",
            );
            let error = load(&Overrides::default()).unwrap_err().to_string();
            assert!(error.contains("master_key"), "{error}");
            jail.set_env("HOOKLINE_MASTER_KEY", KEY);
            load(&Overrides::default()).expect("with a key it loads");
            Ok(())
        });
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = Config {
            master_key: Some(Secret::new(KEY)),
            database_url: DatabaseUrl::new("postgres://app:hunter2@db.internal/hookline"),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains(KEY), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal"), "{shown}");
        for url in [
            "postgres://app@db/h?password=hunter2&sslmode=require",
            "postgres://app:hun/ter2@db/h",
        ] {
            let shown = DatabaseUrl::new(url).to_string();
            assert!(
                !shown.contains("hunter2") && !shown.contains("ter2"),
                "{shown}"
            );
        }
    }

    #[test]
    fn sqlite_paths_come_out_of_urls() {
        let path = |url: &str| DatabaseUrl::new(url).sqlite_path();
        assert_eq!(
            path("sqlite://hookline.db"),
            Some(PathBuf::from("hookline.db"))
        );
        assert_eq!(
            path("sqlite:///var/lib/h.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/h.db"))
        );
        assert_eq!(path("sqlite::memory:"), None);
    }
}
