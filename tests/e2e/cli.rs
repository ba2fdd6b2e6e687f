//! The `hookline` binary as an operator runs it: help, serve (token printed once, SIGTERM stops it
//! cleanly), token and tenant commands, and configuration errors.

use crate::support::process::{hookline, run, serve, status_with};
use crate::support::{Backend, TestDb};

#[tokio::test]
async fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["token", "--help"],
        vec!["token", "create", "--help"],
        vec!["token", "list", "--help"],
        vec!["token", "revoke", "--help"],
        vec!["tenant", "--help"],
        vec!["tenant", "create", "--help"],
        vec!["tenant", "list", "--help"],
        vec!["verify", "--help"],
        vec!["user", "--help"],
        vec!["user", "create", "--help"],
        vec!["user", "reset-password", "--help"],
    ] {
        let (ok, stdout, _) = run(hookline(dir.path()).args(&args)).await;
        assert!(ok, "{args:?}");
        assert!(stdout.contains("Usage: hookline"), "{args:?}: {stdout}");
    }
    let (_, stdout, _) = run(hookline(dir.path()).args(["serve", "--help"])).await;
    assert!(
        stdout.contains("--role") && stdout.contains("worker"),
        "{stdout}"
    );
}

#[tokio::test]
async fn serve_token_and_tenant_commands_work_together_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("h.db").display());
    let mut command = hookline(dir.path());
    command
        .args(["--database-url", &db_url])
        .env("RUST_LOG", "debug");
    let served = serve(command).await;
    let admin = served
        .token
        .clone()
        .expect("the first start prints an admin token");
    // Another invocation of the binary on the same database.
    let with_db = |args: &[&str]| {
        let mut command = hookline(dir.path());
        command.arg("--database-url").arg(&db_url).args(args);
        command
    };
    let client = crate::support::http_client();
    let tenant_url = format!("{}/api/tenant", served.base_url);
    assert_eq!(status_with(&client, &tenant_url, &admin).await, 200);

    // `token create` prints only the secret on stdout; it works against the running server.
    let (ok, stdout, stderr) = run(&mut with_db(&["token", "create", "--name", "ci"])).await;
    assert!(ok, "{stderr}");
    let ci_token = stdout.trim().to_owned();
    assert!(ci_token.starts_with("hkl_"), "{stdout}");
    assert!(stderr.contains("shown only this once"), "{stderr}");
    assert_eq!(status_with(&client, &tenant_url, &ci_token).await, 200);

    let (ok, listing, _) = run(&mut with_db(&["token", "list"])).await;
    assert!(ok);
    assert!(
        listing.contains("admin") && listing.contains("ci"),
        "{listing}"
    );
    assert!(
        !listing.contains(&ci_token) && !listing.contains(&admin),
        "{listing}"
    );
    let ci_id = listing
        .lines()
        .find(|line| line.contains(" ci "))
        .and_then(|line| line.split_whitespace().next())
        .expect("the ci token is listed")
        .to_owned();

    let (ok, stdout, stderr) = run(&mut with_db(&["token", "revoke", &ci_id])).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Revoked"), "{stdout}");
    // The server may answer from its token cache for `http.token_cache_ms` (1 s): the
    // revocation, made by another process, holds once that has passed.
    let revoked_at = std::time::Instant::now();
    let deadline = revoked_at + std::time::Duration::from_secs(10);
    while status_with(&client, &tenant_url, &ci_token).await != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "a token revoked by the CLI is still accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        revoked_at.elapsed() < std::time::Duration::from_millis(1_900),
        "accepted for {:?} after its revocation",
        revoked_at.elapsed()
    );
    let (ok, _, stderr) = run(&mut with_db(&[
        "token",
        "revoke",
        "tok_0123456789abcdef0123456789abcdef",
    ]))
    .await;
    assert!(!ok);
    assert!(stderr.contains("no API token"), "{stderr}");

    let (ok, stdout, _) = run(&mut with_db(&["tenant", "create", "acme"])).await;
    assert!(ok);
    assert!(stdout.trim().starts_with("tn_"), "{stdout}");
    let (ok, _, stderr) = run(&mut with_db(&["tenant", "create", "acme"])).await;
    assert!(!ok);
    assert!(stderr.contains("already exists"), "{stderr}");
    let (_, tenants, _) = run(&mut with_db(&["tenant", "list"])).await;
    assert!(
        tenants.contains("acme") && tenants.contains("default"),
        "{tenants}"
    );
    let (ok, listing, _) = run(&mut with_db(&["token", "list", "--tenant", "acme"])).await;
    assert!(ok);
    assert!(
        !listing.contains("admin"),
        "acme has no token yet: {listing}"
    );
    let (ok, _, stderr) = run(&mut with_db(&["token", "list", "--tenant", "nobody"])).await;
    assert!(!ok);
    assert!(stderr.contains("no tenant"), "{stderr}");

    let (clean_exit, log) = served.terminate().await;
    assert!(clean_exit, "SIGTERM ends serve with success: {log}");
    assert!(log.contains("Hookline stopped"), "{log}");
    assert!(!log.contains(&admin), "the admin token leaked into the log");
    assert!(!log.contains(&ci_token), "a token leaked into the log");

    // A restart on the same database prints no new token.
    let mut command = hookline(dir.path());
    command.args(["--database-url", &db_url]);
    let again = serve(command).await;
    assert_eq!(again.token, None);
    assert!(
        again.setup_link.is_some(),
        "nobody has an account yet: each start offers a setup link"
    );
    let (clean_exit, log) = again.terminate().await;
    assert!(
        clean_exit,
        "SIGTERM right after the listening line ends serve with success: {log}"
    );
}

#[tokio::test]
async fn user_commands_print_one_time_links_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("h.db").display());
    let mut command = hookline(dir.path());
    command.args(["--database-url", &db_url]);
    let served = serve(command).await;
    let client = crate::support::http_client();
    let code_of = |link: &str| link.trim().rsplit('/').next().unwrap().to_owned();
    let page = |code: String| {
        let client = client.clone();
        let url = format!("{}/setup/{code}", served.base_url);
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    // The first start printed the first admin's setup link.
    let setup = served
        .setup_link
        .clone()
        .expect("a setup link on first start");
    assert!(
        setup.starts_with(&format!("{}/setup/", served.base_url)),
        "{setup}"
    );
    let (status, html) = page(code_of(&setup)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Create the first admin"));

    let with_db = |args: &[&str]| {
        let mut command = hookline(dir.path());
        command.arg("--database-url").arg(&db_url).args(args);
        command
    };
    let (ok, stdout, stderr) = run(&mut with_db(&[
        "user",
        "create",
        "--email",
        "Bob@Example.com",
        "--admin",
    ]))
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("bob@example.com") && stderr.contains("admin"),
        "{stderr}"
    );
    assert!(
        stdout.trim().contains("/setup/"),
        "only the link on stdout: {stdout}"
    );
    let (status, html) = page(code_of(&stdout)).await;
    assert_eq!(status, 200);
    assert!(html.contains("bob@example.com") && html.contains("Choose your password"));

    let (ok, _, stderr) = run(&mut with_db(&[
        "user",
        "create",
        "--email",
        "bob@example.com",
    ]))
    .await;
    assert!(!ok);
    assert!(stderr.contains("already exists"), "{stderr}");
    let (ok, _, stderr) = run(&mut with_db(&["user", "create", "--email", "not-an-email"])).await;
    assert!(!ok);
    assert!(stderr.contains("email"), "{stderr}");

    let (ok, reset, stderr) =
        run(&mut with_db(&["user", "reset-password", "bob@example.com"])).await;
    assert!(ok, "{stderr}");
    assert_ne!(code_of(&reset), code_of(&stdout));
    assert_eq!(page(code_of(&reset)).await.0, 200);
    assert_eq!(
        page(code_of(&stdout)).await.0,
        404,
        "a new link replaces the user's earlier one"
    );
    let (ok, _, stderr) = run(&mut with_db(&["user", "reset-password", "eve@example.com"])).await;
    assert!(!ok);
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(served.terminate().await.0);
}

#[tokio::test]
async fn serve_runs_on_postgres_with_a_configured_key() {
    let Some(backend) = Backend::postgres_or_skip().await else {
        return;
    };
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = hookline(dir.path());
    command
        .args(["--database-url", db.url()])
        .env("HOOKLINE_MASTER_KEY", db.master_key());
    let served = serve(command).await;
    let token = served.token.clone().expect("admin token printed");
    let client = crate::support::http_client();
    let url = format!("{}/api/tenant", served.base_url);
    assert_eq!(status_with(&client, &url, &token).await, 200);
    assert!(served.terminate().await.0);
}

#[tokio::test]
async fn configuration_errors_are_clear_and_fail_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run(hookline(dir.path())
        .env("HOOKLINE_DATABASE_URL", "mysql://localhost/x")
        .arg("migrate"))
    .await;
    assert!(!ok);
    assert!(stderr.contains("database_url"), "{stderr}");

    let (ok, _, stderr) = run(hookline(dir.path())
        .env("HOOKLINE_LISTEN", "not-an-address")
        .arg("migrate"))
    .await;
    assert!(!ok);
    assert!(stderr.to_lowercase().contains("listen"), "{stderr}");

    let (ok, _, stderr) = run(hookline(dir.path())
        .env(
            "HOOKLINE_DATABASE_URL",
            "postgres://postgres@127.0.0.1/test",
        )
        .arg("migrate"))
    .await;
    assert!(!ok);
    assert!(stderr.contains("master_key"), "{stderr}");

    let (ok, _, stderr) =
        run(hookline(dir.path()).args(["--config", "missing.toml", "migrate"])).await;
    assert!(!ok);
    assert!(stderr.contains("missing.toml"), "{stderr}");

    std::fs::write(
        dir.path().join("hookline.toml"),
        "[log]\nformat = \"xml\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = run(hookline(dir.path()).arg("migrate")).await;
    assert!(!ok);
    assert!(stderr.contains("format"), "{stderr}");
}

#[tokio::test]
async fn migrate_says_how_many_migrations_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("m.db").display());
    let all = hookline::store::Store::migrations(hookline::config::Backend::Sqlite).len();
    let (ok, stdout, stderr) =
        run(hookline(dir.path()).args(["--database-url", &db_url, "migrate"])).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!("{all} migration(s) applied")),
        "{stdout}"
    );
    let (ok, stdout, _) =
        run(hookline(dir.path()).args(["--database-url", &db_url, "migrate"])).await;
    assert!(ok);
    assert!(stdout.starts_with("0 migration(s) applied"), "{stdout}");
}
