//! Commit analysis end to end: jobs from pushes and by hand, the rule analyser, file details from
//! a fake GitHub, the model analyser against a fake OpenAI-compatible server (and its fallback),
//! and range analysis, on both backends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::inbound::{GithubDelivery, fixture, service_with_secret};
use crate::on_both_backends;
use crate::support::fake_github::{FakeGithub, GOOD_TOKEN};
use crate::support::{Backend, TestApp, eventually, json_of};

const SHA_A: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const SHA_B: &str = "7638417db6d59f3c431d3e1f261cc637155684cd";
const SHA_C: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const WAIT: Duration = Duration::from_secs(30);

async fn analysis_app(backend: Backend, adjust: impl FnOnce(&mut hookline::Config)) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        config.analysis.poll_interval_ms = 20;
        adjust(config);
    })
    .await
}

async fn push(app: &TestApp, secret: &str, file: &str, delivery: &str) {
    let (status, body, _) = GithubDelivery::new("push", delivery, fixture(file), secret)
        .send(app, "/api/github/webhook")
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The commit once its analysis is stored.
async fn analysed(app: &TestApp, service: &str, sha: &str) -> Value {
    eventually(WAIT, "the analysis", || async {
        let (_, commit) = json_of(
            app.get(&format!("/api/services/{service}/commits/{sha}"))
                .await,
        )
        .await;
        commit["analysis"].is_object().then_some(commit)
    })
    .await
}

fn classes(analysis: &Value) -> Vec<(String, String)> {
    analysis["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            (
                file["path"].as_str().unwrap().to_owned(),
                file["class"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

on_both_backends!(
    pushed_commits_are_analysed_by_the_rules,
    commits_are_analysed_by_hand_with_github_file_details,
    ranges_are_analysed_as_one_change,
);

async fn pushed_commits_are_analysed_by_the_rules(backend: Backend) {
    let app = analysis_app(backend, |_| {}).await;
    let (service, secret) = service_with_secret(&app, "checkout", "acme/checkout", true).await;
    push(&app, &secret, "github/push_new_branch.json", "a-1").await;

    let commit = analysed(&app, &service, SHA_A).await;
    assert_eq!(commit["analysis_status"], "done");
    let analysis = &commit["analysis"];
    assert_eq!(analysis["analyzer"], "rules");
    assert_eq!(
        classes(analysis),
        [
            ("src/pay/retry.rs".to_owned(), "source".to_owned()),
            ("src/pay/mod.rs".to_owned(), "source".to_owned()),
            ("Cargo.toml".to_owned(), "dependency".to_owned()),
        ]
    );
    let factors: Vec<&str> = analysis["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|factor| factor["name"].as_str().unwrap())
        .collect();
    assert_eq!(factors, ["dependencies", "untested_source"]);
    assert_eq!(analysis["risk_score"], 27);
    assert_eq!(analysis["risk_level"], "low");
    assert_eq!(commit["risk_score"], 27);
    assert_eq!(commit["risk_level"], "low");
    assert!(
        analysis["diagnosis"]
            .as_str()
            .unwrap()
            .starts_with("What changed: 3 file(s)")
    );

    let tests_only = analysed(&app, &service, SHA_B).await;
    assert_eq!(tests_only["analysis"]["risk_score"], 0);
    let (_, low) = json_of(
        app.get(&format!("/api/services/{service}/commits?risk=low"))
            .await,
    )
    .await;
    assert_eq!(low["data"].as_array().unwrap().len(), 2);
    let (_, high) = json_of(
        app.get(&format!("/api/services/{service}/commits?risk=high"))
            .await,
    )
    .await;
    assert!(high["data"].as_array().unwrap().is_empty());
}

async fn commits_are_analysed_by_hand_with_github_file_details(backend: Backend) {
    let github = FakeGithub::start().await;
    let api_url = github.api_url();
    let app = analysis_app(backend, |config| config.github.api_url = api_url).await;
    let (status, service) = json_of(
        app.post_json(
            "/api/services",
            &json!({"name": "checkout", "repository": "acme/checkout", "github_token": GOOD_TOKEN}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(service["github_token_configured"], true);
    assert!(!service.to_string().contains(GOOD_TOKEN));
    let service = service["id"].as_str().unwrap().to_owned();
    let (_, secret) = json_of(
        app.post_json(
            &format!("/api/services/{service}/webhook-secret"),
            &json!({}),
        )
        .await,
    )
    .await;
    push(
        &app,
        secret["secret"].as_str().unwrap(),
        "github/push_main.json",
        "m-1",
    )
    .await;
    let (_, commit) = json_of(
        app.get(&format!("/api/services/{service}/commits/{SHA_C}"))
            .await,
    )
    .await;
    assert_eq!(commit["analysis"], Value::Null, "auto-analyze is off");
    assert_eq!(commit["analysis_status"], Value::Null);

    let (status, queued) = json_of(
        app.post_json(
            &format!("/api/services/{service}/commits/{}/analyze", &SHA_C[..10]),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["commit_sha"], SHA_C);
    assert!(queued["job_id"].as_str().unwrap().starts_with("job_"));

    let commit = analysed(&app, &service, SHA_C).await;
    let analysis = &commit["analysis"];
    assert_eq!(
        classes(analysis),
        [
            (
                "migrations/0009_sessions.sql".to_owned(),
                "migration".to_owned()
            ),
            ("src/auth/login.rs".to_owned(), "source".to_owned()),
        ],
        "the files come from GitHub, not from the push"
    );
    assert_eq!(analysis["files"][0]["additions"], 40);
    assert_eq!(analysis["risk_score"], 25 + 20 + 15 + 5, "{analysis}");
    assert_eq!(analysis["risk_level"], "high");

    for (path, expected) in [
        (format!("/api/services/{service}/commits/zz/analyze"), 400),
        (
            format!("/api/services/{service}/commits/{}/analyze", "e".repeat(40)),
            404,
        ),
    ] {
        assert_eq!(
            app.post_json(&path, &json!({})).await.status(),
            expected,
            "{path}"
        );
    }
}

async fn ranges_are_analysed_as_one_change(backend: Backend) {
    let app = analysis_app(backend, |_| {}).await;
    let (service, secret) = service_with_secret(&app, "checkout", "acme/checkout", false).await;
    push(&app, &secret, "github/push_new_branch.json", "r-1").await;
    push(&app, &secret, "github/push_main.json", "r-2").await;

    let path = format!("/api/services/{service}/analyze-range");
    let (status, range) = json_of(
        app.post_json(&path, &json!({"base": SHA_A, "head": SHA_C}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{range}");
    assert_eq!(range["commits"], json!([SHA_B, SHA_C]));
    let analysis = &range["analysis"];
    let paths: Vec<String> = classes(analysis)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        paths,
        ["CHANGELOG.md", "docs/old.md", "tests/retry.rs"],
        "both commits' files, each once"
    );
    let (status, again) = json_of(
        app.get(&format!(
            "/api/services/{service}/range-analyses/{}",
            range["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["analysis"], range["analysis"]);

    let (status, _) = json_of(
        app.post_json(&path, &json!({"base": SHA_C, "head": SHA_A}))
            .await,
    )
    .await;
    assert_eq!(status, 422, "head before base");
    let (status, _) = json_of(
        app.post_json(&path, &json!({"base": "e".repeat(40), "head": SHA_C}))
            .await,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = json_of(app.post_json(&path, &json!({"base": SHA_A})).await).await;
    assert_eq!(status, 422);
}

/// A fake OpenAI-compatible server answering with `content` and recording requests.
async fn fake_model(content: String) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = (content, seen.clone());
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(
                |State((content, seen)): State<(String, Arc<Mutex<Vec<Value>>>)>,
                 headers: axum::http::HeaderMap,
                 Json(request): Json<Value>| async move {
                    let mut request = request;
                    request["authorization"] = json!(headers
                        .get("authorization")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or(""));
                    seen.lock().unwrap().push(request);
                    Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}))
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_analyser_is_used_and_falls_back_to_the_rules() {
    let good = json!({
        "files": [
            {"path": "src/pay/retry.rs", "class": "source"},
            {"path": "src/pay/mod.rs", "class": "source"},
            {"path": "Cargo.toml", "class": "dependency"}
        ],
        "risk_score": 64,
        "factors": [{"name": "retries", "weight": 64, "detail": "retry logic touches payments"}],
        "diagnosis": "Adds payment retries; double charges are possible; check idempotency keys."
    })
    .to_string();
    let (model_url, seen) = fake_model(good).await;
    let app = analysis_app(Backend::Sqlite, |config| {
        config.analysis.model_url = Some(model_url);
        config.analysis.api_key = Some(hookline::config::Secret::new("sk-test-key"));
    })
    .await;
    let (service, secret) = service_with_secret(&app, "checkout", "acme/checkout", true).await;
    push(&app, &secret, "github/push_new_branch.json", "model-1").await;
    let commit = analysed(&app, &service, SHA_A).await;
    assert_eq!(commit["analysis"]["analyzer"], "model");
    assert_eq!(commit["analysis"]["risk_score"], 64);
    assert_eq!(commit["analysis"]["risk_level"], "high");
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty());
    assert_eq!(requests[0]["authorization"], "Bearer sk-test-key");
    assert_eq!(requests[0]["response_format"]["type"], "json_object");
    assert!(
        requests[0]["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("src/pay/retry.rs")
    );

    // An answer that leaves a file out is refused: the rules answer, saying why.
    let (bad_url, _) = fake_model(
        json!({"files": [], "risk_score": 5, "factors": [], "diagnosis": "ok"}).to_string(),
    )
    .await;
    let app = analysis_app(Backend::Sqlite, |config| {
        config.analysis.model_url = Some(bad_url)
    })
    .await;
    let (service, secret) = service_with_secret(&app, "checkout", "acme/checkout", true).await;
    push(&app, &secret, "github/push_new_branch.json", "model-2").await;
    let commit = analysed(&app, &service, SHA_A).await;
    assert_eq!(commit["analysis"]["analyzer"], "rules");
    assert!(
        commit["analysis"]["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("did not classify"),
        "{}",
        commit["analysis"]
    );

    // A model that cannot be reached: the rules answer too.
    let app = analysis_app(Backend::Sqlite, |config| {
        config.analysis.model_url = Some("http://127.0.0.1:9".to_owned());
        config.analysis.timeout_ms = 2_000;
    })
    .await;
    let (service, secret) = service_with_secret(&app, "checkout", "acme/checkout", true).await;
    push(&app, &secret, "github/push_new_branch.json", "model-3").await;
    let commit = analysed(&app, &service, SHA_A).await;
    assert_eq!(commit["analysis"]["analyzer"], "rules");
    assert!(
        commit["analysis"]["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("could not be reached")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_from_a_force_push_carry_the_factor() {
    let app = analysis_app(Backend::Sqlite, |_| {}).await;
    let (service, secret) = service_with_secret(&app, "checkout", "acme/checkout", true).await;
    let forced = String::from_utf8(fixture("github/push_new_branch.json"))
        .unwrap()
        .replace("\"forced\": false", "\"forced\": true");
    let (status, _, _) = GithubDelivery::new("push", "forced-1", forced.into_bytes(), &secret)
        .send(&app, "/api/github/webhook")
        .await;
    assert_eq!(status, 200);
    let commit = analysed(&app, &service, SHA_A).await;
    let factor = commit["analysis"]["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|factor| factor["name"] == "force_push")
        .cloned();
    assert_eq!(
        factor.map(|factor| factor["weight"].clone()),
        Some(json!(15))
    );
    assert_eq!(commit["analysis"]["risk_score"], 27 + 15);
}
