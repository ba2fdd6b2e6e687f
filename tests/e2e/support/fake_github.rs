//! A local fake of the GitHub REST API: checks the token and the request shape of issue creation,
//! records what it got, and can answer the ways GitHub refuses (bad token, unknown repository,
//! validation failure, rate limit).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The token the fake accepts.
pub const GOOD_TOKEN: &str = "ghp_fakeTokenForTests0123456789abcdefABCD";

#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub path: String,
    pub authorization: String,
    pub accept: String,
    pub api_version: String,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    requests: Vec<IssueRequest>,
    rate_limited: bool,
    next_number: i64,
}

#[derive(Clone)]
pub struct FakeGithub {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let inner = Arc::new(Mutex::new(Inner {
            next_number: 100,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/repos/{owner}/{repo}/issues", post(create_issue))
            .route("/repos/{owner}/{repo}/commits/{sha}", get(commit_detail))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGithub { addr, inner }
    }

    /// The API base URL to configure as `github.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<IssueRequest> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn rate_limit(&self, on: bool) {
        self.inner.lock().unwrap().rate_limited = on;
    }
}

async fn create_issue(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut inner = inner.lock().unwrap();
    inner.requests.push(IssueRequest {
        path: format!("/repos/{owner}/{repo}/issues"),
        authorization: header("authorization"),
        accept: header("accept"),
        api_version: header("x-github-api-version"),
        body: parsed.clone(),
    });
    if inner.rate_limited {
        return (
            StatusCode::FORBIDDEN,
            [("x-ratelimit-remaining", "0"), ("retry-after", "42")],
            Json(json!({"message": "API rate limit exceeded for user ID 1."})),
        )
            .into_response();
    }
    if header("authorization") != format!("Bearer {GOOD_TOKEN}") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    if repo == "missing" {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    }
    let title = parsed.get("title").and_then(Value::as_str).unwrap_or("");
    if title == "reject me" {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed",
                        "errors": [{"resource": "Issue", "field": "labels", "code": "invalid"}]})),
        )
            .into_response();
    }
    inner.next_number += 1;
    let number = inner.next_number;
    (
        StatusCode::CREATED,
        Json(json!({
            "id": 9000 + number,
            "number": number,
            "title": title,
            "state": "open",
            "html_url": format!("https://github.com/{owner}/{repo}/issues/{number}"),
            "labels": parsed.get("labels").cloned().unwrap_or(json!([])),
        })),
    )
        .into_response()
}

/// `GET /repos/{owner}/{repo}/commits/{sha}`: any SHA has a migration and an auth change.
async fn commit_detail(
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(format!("Bearer {GOOD_TOKEN}").as_str());
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    Json(json!({
        "sha": sha,
        "html_url": format!("https://github.com/{owner}/{repo}/commit/{sha}"),
        "commit": {"message": "Add sessions table", "author": {"name": "Jane Doe"}},
        "stats": {"additions": 50, "deletions": 2, "total": 52},
        "files": [
            {"filename": "migrations/0009_sessions.sql", "status": "added", "additions": 40,
             "deletions": 0, "changes": 40, "patch": "@@ -0,0 +1,40 @@\n+CREATE TABLE sessions (...);"},
            {"filename": "src/auth/login.rs", "status": "modified", "additions": 10,
             "deletions": 2, "changes": 12, "patch": "@@ -1,2 +1,10 @@"}
        ]
    }))
    .into_response()
}
