//! The `hookline` command line: one binary, a subcommand per job, `--help` on each.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::{Application, shutdown_signal};
use crate::clock::rfc3339_ms;
use crate::config::{Config, Overrides, Role};
use crate::store::tenants::{self, Tenant};
use crate::store::{Store, StoreError};
use crate::telemetry;
use crate::tenancy::{self, validate_tenant_name, validate_token_name};

#[derive(Debug, Parser)]
#[command(
    name = "hookline",
    version,
    about = "Self-hosted webhook hub: verified inbound forge webhooks, signed durable outbound \
             webhooks, and the engineering record between them",
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./hookline.toml when it exists.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Database URL: sqlite://path (default sqlite://hookline.db) or postgres://…
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP API, web UI and background workers.
    Serve(ServeArgs),
    /// Apply pending schema migrations and exit.
    Migrate,
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage tenants (organizations).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage the people who sign in to the web UI.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the signature of a saved webhook request, as a receiver would.
    Verify(VerifyArgs),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print the one-time link (24 h) where they choose a password.
    Create {
        /// Tenant id or name (default: the only tenant, or the one named `default`).
        #[arg(long)]
        tenant: Option<String>,
        /// The address they sign in with.
        #[arg(long)]
        email: String,
        /// Make them an admin (manages users and API tokens).
        #[arg(long)]
        admin: bool,
    },
    /// Print a one-time link (24 h) where the user sets a new password.
    ResetPassword {
        /// The user's email.
        email: String,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["request", "body"])))]
#[command(group(clap::ArgGroup::new("key").required(true).args(["secret", "secret_file"])))]
pub struct VerifyArgs {
    /// The endpoint secret (`whsec_…`). Prefer --secret-file: arguments show in process lists.
    #[arg(long)]
    pub secret: Option<String>,
    /// A file holding the endpoint secret.
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// A raw HTTP request as received: request line, headers, blank line, body.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["body", "headers"])]
    pub request: Option<PathBuf>,
    /// The exact body bytes, with --headers and/or --header.
    #[arg(long, value_name = "PATH")]
    pub body: Option<PathBuf>,
    /// A file of `Name: value` header lines (as `curl -D` writes them).
    #[arg(long, value_name = "PATH")]
    pub headers: Option<PathBuf>,
    /// One header, `Name: value`; repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub header: Vec<String>,
    /// Accepted distance between the signature's timestamp and now, in seconds.
    #[arg(long, default_value_t = crate::outbound::signing::DEFAULT_TOLERANCE_SECONDS)]
    pub tolerance: i64,
    /// Check as if now were this Unix time (for requests saved earlier).
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<i64>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// What this node runs.
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Address to listen on, e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (shown only this once).
    Create {
        /// What the token is for.
        #[arg(long)]
        name: String,
        /// Tenant id or name (default: the only tenant, or the one named `default`).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List a tenant's tokens (never their secrets).
    List {
        /// Tenant id or name (default: the only tenant, or the one named `default`).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token: requests with it get 401 from now on.
    Revoke {
        /// The token's id (`tok_…`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id.
    Create {
        /// A short name: letters, digits, `-`, `_`, `.`.
        name: String,
    },
    /// List tenants.
    List,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        let mut overrides = Overrides {
            database_url: self.database_url.clone(),
            ..Overrides::default()
        };
        if let Command::Serve(args) = &self.command {
            overrides.listen = args.listen;
            overrides.role = args.role;
        }
        overrides
    }
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Verify(args) = &cli.command {
        // Verification is a receiver's tool: it needs no configuration or database.
        return verify(args);
    }
    let config = Config::load(cli.config.as_deref(), &cli.overrides())?;
    telemetry::init_logging(&config.log);
    match cli.command {
        Command::Serve(_) => serve(config).await,
        Command::Migrate => {
            // Not `connect`: it migrates too, and this command reports what it applied.
            let store = Store::connect(&config.database_url, &config.database)
                .await
                .with_context(|| format!("connecting to {}", config.database_url))?;
            let applied = store
                .migrate()
                .await
                .context("applying schema migrations")?;
            println!("{applied} migration(s) applied; the schema is up to date.");
            Ok(())
        }
        Command::Token(command) => token(config, command).await,
        Command::Tenant(command) => tenant(config, command).await,
        Command::User(command) => user(config, command).await,
        Command::Verify(_) => unreachable!("handled before configuration is loaded"),
    }
}

/// A saved request's headers (name, value) and its body.
pub type SavedRequest<'a> = (Vec<(String, String)>, &'a [u8]);

/// A saved HTTP request (`curl -v` output, a capture): its headers, and the body after the first
/// blank line (CRLF or LF).
pub fn read_saved_request(raw: &[u8]) -> Result<SavedRequest<'_>, &'static str> {
    let (at, gap) = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| {
            raw.windows(2)
                .position(|window| window == b"\n\n")
                .map(|at| (at, 2))
        })
        .ok_or("the request has no blank line between headers and body")?;
    let head = String::from_utf8_lossy(&raw[..at]);
    Ok((parse_header_lines(&head), &raw[at + gap..]))
}

/// Splits `Name: value` lines into headers, skipping a request or status line.
fn parse_header_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (!name.is_empty() && !name.contains(' '))
                .then(|| (name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    use crate::outbound::signing::verify_request;

    let secret = match (&args.secret, &args.secret_file) {
        (Some(secret), _) => secret.trim().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!("give --secret or --secret-file"),
    };
    let (mut headers, body) = if let Some(path) = &args.request {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (headers, body) = read_saved_request(&raw).map_err(anyhow::Error::msg)?;
        (headers, body.to_vec())
    } else {
        let path = args.body.as_ref().context("give --request or --body")?;
        let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let headers = match &args.headers {
            Some(path) => parse_header_lines(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => Vec::new(),
        };
        (headers, body)
    };
    for line in &args.header {
        let parsed = parse_header_lines(line);
        anyhow::ensure!(!parsed.is_empty(), "--header `{line}` is not `Name: value`");
        headers.extend(parsed);
    }
    let now = args.now.unwrap_or_else(|| crate::clock::now_ms() / 1000);
    let checks = verify_request(&secret, &headers, &body, now, args.tolerance);
    anyhow::ensure!(
        !checks.is_empty(),
        "invalid: the request has neither X-Hookline-Signature nor webhook-signature"
    );
    let mut all_valid = true;
    for (scheme, verdict) in &checks {
        match verdict {
            Ok(()) => println!("valid: {scheme} matches"),
            Err(why) => {
                all_valid = false;
                println!("invalid: {scheme}: {why}");
            }
        }
    }
    anyhow::ensure!(all_valid, "the request did not verify");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    if let Some(bootstrap) = app.bootstrap() {
        println!(
            "Created tenant `{}` ({}) and an admin API token. It is shown only this once:\n\n    {}\n",
            bootstrap.tenant.name, bootstrap.tenant.id, bootstrap.admin_token.secret
        );
        println!(
            "Create the first admin of the web UI here (single use, valid 24 hours):\n\n    {}\n",
            bootstrap
                .setup_link
                .url(&app.config().web.base_url(app.local_addr()))
        );
    }
    if let Some(link) = app.setup_link() {
        println!(
            "Nobody can sign in to the web UI yet. Create the first admin here (single use, valid 24 hours):\n\n    {}\n",
            link.url(&app.config().web.base_url(app.local_addr()))
        );
    }
    let signalled = shutdown_signal()?;
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        signalled.await;
        shutdown.cancel();
    });
    println!(
        "Open {}/ in a browser to sign in.",
        app.config().web.base_url(app.local_addr())
    );
    // The last line printed: scripts and tests read up to it and may stop reading.
    println!("Hookline listening on http://{}", app.local_addr());
    app.run_until_stopped().await
}

async fn connect(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database_url, &config.database)
        .await
        .with_context(|| format!("connecting to {}", config.database_url))?;
    store
        .migrate()
        .await
        .context("applying schema migrations")?;
    Ok(store)
}

/// The tenant a command acts on: the one named, else the only one, else the one named `default`.
async fn pick_tenant(store: &Store, wanted: Option<&str>) -> anyhow::Result<Tenant> {
    if let Some(wanted) = wanted {
        return match tenants::find_tenant(store, wanted).await {
            Err(StoreError::NotFound) => anyhow::bail!("no tenant with id or name `{wanted}`"),
            other => Ok(other?),
        };
    }
    let all = tenants::list_tenants(store).await?;
    match all.as_slice() {
        [] => anyhow::bail!(
            "the database has no tenant yet: start `hookline serve` once, or run `hookline tenant create <name>`"
        ),
        [only] => Ok(only.clone()),
        many => many
            .iter()
            .find(|tenant| tenant.name == tenants::DEFAULT_TENANT_NAME)
            .cloned()
            .context("several tenants exist: choose one with --tenant"),
    }
}

async fn token(config: Config, command: TokenCommand) -> anyhow::Result<()> {
    let store = connect(&config).await?;
    match command {
        TokenCommand::Create { name, tenant } => {
            let name = validate_token_name(&name).map_err(anyhow::Error::msg)?;
            let tenant = pick_tenant(&store, tenant.as_deref()).await?;
            let mut tx = store.begin().await?;
            let issued = tenancy::issue_token(&mut tx, &tenant.id, name).await?;
            tx.commit().await?;
            eprintln!(
                "Created token {} (`{}`) for tenant `{}`. It is shown only this once:",
                issued.token.id, issued.token.name, tenant.name
            );
            println!("{}", issued.secret);
        }
        TokenCommand::List { tenant } => {
            let tenant = pick_tenant(&store, tenant.as_deref()).await?;
            println!(
                "{:<36}  {:<24}  {:<12}  {:<24}  {:<24}  STATUS",
                "ID", "NAME", "PREFIX", "CREATED", "LAST USED"
            );
            let mut cursor: Option<String> = None;
            loop {
                let page = tenants::list_tokens(&store, &tenant.id, cursor.as_deref(), 200).await?;
                for token in &page {
                    println!(
                        "{:<36}  {:<24}  {:<12}  {:<24}  {:<24}  {}",
                        token.id,
                        token.name,
                        token.prefix,
                        rfc3339_ms(token.created_at),
                        token
                            .last_used_at
                            .map(rfc3339_ms)
                            .unwrap_or_else(|| "never".into()),
                        if token.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
                match page.last() {
                    Some(last) if page.len() == 200 => cursor = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let token = tenants::find_token(&store, &id)
                .await?
                .with_context(|| format!("no API token with id `{id}`"))?;
            let token = tenants::revoke_token(&store, &token.tenant_id, &token.id).await?;
            println!("Revoked {} (`{}`).", token.id, token.name);
        }
    }
    Ok(())
}

async fn tenant(config: Config, command: TenantCommand) -> anyhow::Result<()> {
    let store = connect(&config).await?;
    match command {
        TenantCommand::Create { name } => {
            let name = validate_tenant_name(&name).map_err(anyhow::Error::msg)?;
            let mut tx = store.begin().await?;
            let tenant = tenants::create_tenant(&mut tx, name).await?;
            tx.commit().await?;
            eprintln!("Created tenant `{}`. Give it a token with:", tenant.name);
            eprintln!(
                "    hookline token create --tenant {} --name admin",
                tenant.name
            );
            println!("{}", tenant.id);
        }
        TenantCommand::List => {
            println!("{:<35}  {:<24}  CREATED", "ID", "NAME");
            for tenant in tenants::list_tenants(&store).await? {
                println!(
                    "{:<35}  {:<24}  {}",
                    tenant.id,
                    tenant.name,
                    rfc3339_ms(tenant.created_at)
                );
            }
        }
    }
    Ok(())
}

async fn user(config: Config, command: UserCommand) -> anyhow::Result<()> {
    let store = connect(&config).await?;
    let (user, link, verb) = match command {
        UserCommand::Create {
            tenant,
            email,
            admin,
        } => {
            let tenant = pick_tenant(&store, tenant.as_deref()).await?;
            let role = if admin {
                crate::people::Role::Admin
            } else {
                crate::people::Role::Member
            };
            let (user, link) = crate::people::invite(&store, &tenant.id, &email, role)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            (user, link, "Created")
        }
        UserCommand::ResetPassword { email } => {
            let (user, link) = crate::people::reset_link(&store, &email)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            (user, link, "Reset link for")
        }
    };
    eprintln!(
        "{verb} {} ({}, {}). Their one-time link, valid until {}:",
        user.email,
        user.id,
        user.role,
        rfc3339_ms(link.expires_at)
    );
    println!("{}", link.url(&config.web.base_url(config.listen)));
    Ok(())
}
