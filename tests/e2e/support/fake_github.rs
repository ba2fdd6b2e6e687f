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
    /// Every Git Data and pull request call: method, path, body.
    calls: Vec<(String, String, Value)>,
    next_pull: i64,
    merged_pulls: Vec<i64>,
}

/// The head of every branch in the fake repository.
pub const HEAD_SHA: &str = "1111111111111111111111111111111111111111";
/// The parent of every commit the fake describes.
pub const PARENT_SHA: &str = "2222222222222222222222222222222222222222";
/// `src/pay.rs` as it is on the fake's branches.
pub const PAY_RS: &str =
    "fn charge(amount: Option<u64>) {\n    let amount = amount.unwrap();\n    send(amount);\n}\n";

#[derive(Clone)]
pub struct FakeGithub {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let inner = Arc::new(Mutex::new(Inner {
            next_number: 100,
            next_pull: 700,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/repos/{owner}/{repo}/issues", post(create_issue))
            .route("/repos/{owner}/{repo}/commits/{sha}", get(commit_detail))
            .route(
                "/repos/{owner}/{repo}/git/ref/heads/{*branch}",
                get(branch_head),
            )
            .route("/repos/{owner}/{repo}/git/commits/{sha}", get(git_commit))
            .route("/repos/{owner}/{repo}/contents/{*path}", get(contents))
            .route("/repos/{owner}/{repo}/git/trees", post(record_call))
            .route("/repos/{owner}/{repo}/git/commits", post(record_call))
            .route("/repos/{owner}/{repo}/git/refs", post(record_call))
            .route("/repos/{owner}/{repo}/pulls", post(create_pull))
            .route("/repos/{owner}/{repo}/pulls/{number}", get(get_pull))
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

    /// Every Git Data and pull request call so far: method, path, body.
    pub fn calls(&self) -> Vec<(String, String, Value)> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// From now on the fake reports pull request `number` as merged.
    pub fn merge_pull(&self, number: i64) {
        self.inner.lock().unwrap().merged_pulls.push(number);
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
        "parents": [{"sha": PARENT_SHA}],
        "files": [
            {"filename": "migrations/0009_sessions.sql", "status": "added", "additions": 40,
             "deletions": 0, "changes": 40, "sha": "b10b0000000000000000000000000000000000a1",
             "patch": "@@ -0,0 +1,40 @@\n+CREATE TABLE sessions (...);"},
            {"filename": "src/auth/login.rs", "status": "modified", "additions": 10,
             "deletions": 2, "changes": 12, "sha": "b10b0000000000000000000000000000000000a2",
             "patch": "@@ -1,2 +1,10 @@"}
        ]
    }))
    .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(format!("Bearer {GOOD_TOKEN}").as_str())
}

fn bad_credentials() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "Bad credentials"})),
    )
        .into_response()
}

async fn branch_head(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return bad_credentials();
    }
    Json(json!({"ref": "refs/heads/main", "object": {"type": "commit", "sha": HEAD_SHA}}))
        .into_response()
}

async fn git_commit(
    Path((_, _, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return bad_credentials();
    }
    Json(json!({"sha": sha, "tree": {"sha": format!("tree-of-{sha}")}})).into_response()
}

#[derive(serde::Deserialize)]
struct RefQuery {
    #[serde(rename = "ref")]
    at: String,
}

/// Files of the fake repository: at the branch head the commit's files are as it left them and
/// `src/pay.rs` holds [`PAY_RS`]; at the parent the migration does not exist yet.
async fn contents(
    Path((_, _, path)): Path<(String, String, String)>,
    axum::extract::Query(query): axum::extract::Query<RefQuery>,
    headers: HeaderMap,
) -> Response {
    use base64::Engine;
    if !authorized(&headers) {
        return bad_credentials();
    }
    let blob = |sha: &str, text: &str| {
        Json(
            json!({"type": "file", "path": path, "sha": sha, "encoding": "base64",
                    "content": base64::engine::general_purpose::STANDARD.encode(text)}),
        )
        .into_response()
    };
    match (path.as_str(), query.at == PARENT_SHA) {
        ("migrations/0009_sessions.sql", false) => blob(
            "b10b0000000000000000000000000000000000a1",
            "CREATE TABLE sessions ();\n",
        ),
        ("src/auth/login.rs", false) => blob(
            "b10b0000000000000000000000000000000000a2",
            "fn login() {}\n",
        ),
        ("src/auth/login.rs", true) => blob(
            "b10b0000000000000000000000000000000000b2",
            "fn login() { old() }\n",
        ),
        ("src/pay.rs", _) => blob("b10b0000000000000000000000000000000000c1", PAY_RS),
        _ => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

async fn record_call(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return bad_credentials();
    }
    let path = uri.path().to_owned();
    inner
        .lock()
        .unwrap()
        .calls
        .push(("POST".to_owned(), path.clone(), body));
    let sha = if path.ends_with("/git/trees") {
        "3333333333333333333333333333333333333333"
    } else {
        "4444444444444444444444444444444444444444"
    };
    (
        StatusCode::CREATED,
        Json(json!({"sha": sha, "ref": "refs/heads/x", "object": {"sha": sha}})),
    )
        .into_response()
}

async fn create_pull(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, repo)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return bad_credentials();
    }
    let mut inner = inner.lock().unwrap();
    inner
        .calls
        .push(("POST".to_owned(), uri.path().to_owned(), body));
    inner.next_pull += 1;
    let number = inner.next_pull;
    (
        StatusCode::CREATED,
        Json(json!({"number": number, "state": "open", "merged": false,
                    "html_url": format!("https://github.com/{owner}/{repo}/pull/{number}")})),
    )
        .into_response()
}

async fn get_pull(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, repo, number)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return bad_credentials();
    }
    let merged = inner.lock().unwrap().merged_pulls.contains(&number);
    Json(
        json!({"number": number, "state": if merged { "closed" } else { "open" }, "merged": merged,
                "html_url": format!("https://github.com/{owner}/{repo}/pull/{number}")}),
    )
    .into_response()
}
