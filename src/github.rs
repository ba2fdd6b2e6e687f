//! Calls Hookline makes to the GitHub REST API with a tenant's token (creating issues now; pull
//! requests and commit details for the record later). The base URL is configuration: GitHub,
//! GitHub Enterprise, or a local fake in tests. GitHub's refusals come back as [`GithubError`]s
//! that say what to fix, never as opaque failures.

use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::GithubConfig;
use crate::http::error::ApiError;

/// The REST API version Hookline speaks.
const API_VERSION: &str = "2022-11-28";

#[derive(Clone)]
pub struct GithubClient {
    http: reqwest::Client,
    api_url: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GithubError {
    #[error("GitHub rejected the integration's token (401): {0}")]
    Unauthorized(String),
    #[error("GitHub refused the request (403): {0}")]
    Forbidden(String),
    #[error("GitHub repository")]
    NotFound,
    #[error("GitHub rejected the request (422): {0}")]
    Invalid(String),
    #[error("GitHub's rate limit is exhausted; retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("GitHub answered {status}: {message}")]
    Upstream { status: u16, message: String },
    #[error("GitHub could not be reached: {0}")]
    Unreachable(String),
    /// Not a GitHub `owner/name`: nothing was sent.
    #[error("{0}")]
    BadRepository(String),
}

impl From<GithubError> for ApiError {
    fn from(error: GithubError) -> Self {
        match error {
            GithubError::NotFound => {
                ApiError::NotFound("GitHub repository (or one the integration's token can see)")
            }
            GithubError::Invalid(_) | GithubError::BadRepository(_) => {
                ApiError::Unprocessable(error.to_string())
            }
            GithubError::RateLimited { .. } => ApiError::TooManyRequests(error.to_string()),
            other => ApiError::BadGateway(other.to_string()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct NewIssue<'a> {
    pub title: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub body: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub labels: &'a [String],
}

#[derive(Debug, Deserialize)]
pub struct CreatedIssue {
    pub number: i64,
    pub html_url: String,
    pub title: String,
    #[serde(default)]
    pub state: String,
}

/// A commit as `GET /repos/{owner}/{repo}/commits/{sha}` describes it.
#[derive(Debug, Deserialize)]
pub struct CommitDetail {
    pub commit: CommitMessage,
    #[serde(default)]
    pub files: Vec<CommitFile>,
    #[serde(default)]
    pub parents: Vec<ObjectRef>,
}

/// `{"sha": …}`, as GitHub names objects.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ObjectRef {
    pub sha: String,
}

/// A file's blob at a ref (`GET /repos/{o}/{r}/contents/{path}?ref=`).
#[derive(Debug, Deserialize)]
pub struct FileContent {
    pub sha: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub encoding: String,
}

/// One entry of a tree to create: a blob by `sha`, new `content`, or removal (`sha: null`).
#[derive(Debug, Serialize)]
pub struct TreeEntry {
    pub path: String,
    pub mode: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `Some(None)` serialises as `"sha": null`: the path is removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
pub struct PullRequestRef {
    pub number: i64,
    pub html_url: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub merged: bool,
}

#[derive(Debug, Deserialize)]
pub struct CommitMessage {
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub struct CommitFile {
    pub filename: String,
    /// The file's blob after the commit.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub status: String,
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
    pub patch: Option<String>,
}

impl GithubClient {
    /// `GET /repos/{owner}/{repo}/commits/{sha}`: the commit's files with line counts and diffs.
    pub async fn commit(
        &self,
        token: &str,
        repository: &str,
        sha: &str,
    ) -> Result<CommitDetail, GithubError> {
        let url = format!("{}/commits/{sha}", self.repo_url(repository)?);
        self.call(self.http.get(url), token).await
    }

    /// The commit a branch points at.
    pub async fn branch_head(
        &self,
        token: &str,
        repository: &str,
        branch: &str,
    ) -> Result<String, GithubError> {
        #[derive(Deserialize)]
        struct Ref {
            object: ObjectRef,
        }
        let url = format!("{}/git/ref/heads/{branch}", self.repo_url(repository)?);
        let found: Ref = self.call(self.http.get(url), token).await?;
        Ok(found.object.sha)
    }

    /// The tree of a commit.
    pub async fn commit_tree(
        &self,
        token: &str,
        repository: &str,
        sha: &str,
    ) -> Result<String, GithubError> {
        #[derive(Deserialize)]
        struct GitCommit {
            tree: ObjectRef,
        }
        let url = format!("{}/git/commits/{sha}", self.repo_url(repository)?);
        let found: GitCommit = self.call(self.http.get(url), token).await?;
        Ok(found.tree.sha)
    }

    /// A file at a ref; `None` when it does not exist there.
    pub async fn file_at(
        &self,
        token: &str,
        repository: &str,
        path: &str,
        at: &str,
    ) -> Result<Option<FileContent>, GithubError> {
        // `at` is a commit SHA: nothing in it needs escaping.
        let url = format!("{}/contents/{path}?ref={at}", self.repo_url(repository)?);
        match self.call(self.http.get(url), token).await {
            Ok(content) => Ok(Some(content)),
            Err(GithubError::NotFound) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Creates a tree on top of `base_tree`; returns its SHA.
    pub async fn create_tree(
        &self,
        token: &str,
        repository: &str,
        base_tree: &str,
        entries: &[TreeEntry],
    ) -> Result<String, GithubError> {
        let url = format!("{}/git/trees", self.repo_url(repository)?);
        let body = serde_json::json!({"base_tree": base_tree, "tree": entries});
        let created: ObjectRef = self.call(self.http.post(url).json(&body), token).await?;
        Ok(created.sha)
    }

    /// Creates a commit; returns its SHA.
    pub async fn create_commit(
        &self,
        token: &str,
        repository: &str,
        message: &str,
        tree: &str,
        parent: &str,
    ) -> Result<String, GithubError> {
        let url = format!("{}/git/commits", self.repo_url(repository)?);
        let body = serde_json::json!({"message": message, "tree": tree, "parents": [parent]});
        let created: ObjectRef = self.call(self.http.post(url).json(&body), token).await?;
        Ok(created.sha)
    }

    /// Creates branch `branch` at `sha`.
    pub async fn create_branch(
        &self,
        token: &str,
        repository: &str,
        branch: &str,
        sha: &str,
    ) -> Result<(), GithubError> {
        let url = format!("{}/git/refs", self.repo_url(repository)?);
        let body = serde_json::json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
        let _: Value = self.call(self.http.post(url).json(&body), token).await?;
        Ok(())
    }

    /// Opens a pull request from `head` into `base`.
    pub async fn create_pull(
        &self,
        token: &str,
        repository: &str,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
    ) -> Result<PullRequestRef, GithubError> {
        let url = format!("{}/pulls", self.repo_url(repository)?);
        let request = serde_json::json!({"title": title, "head": head, "base": base, "body": body});
        self.call(self.http.post(url).json(&request), token).await
    }

    /// A pull request's state.
    pub async fn pull(
        &self,
        token: &str,
        repository: &str,
        number: i64,
    ) -> Result<PullRequestRef, GithubError> {
        let url = format!("{}/pulls/{number}", self.repo_url(repository)?);
        self.call(self.http.get(url), token).await
    }

    /// Sends a request with the token and GitHub's API headers; a success is parsed as `T`, a
    /// refusal becomes the matching [`GithubError`].
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        token: &str,
    ) -> Result<T, GithubError> {
        let response = request
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .send()
            .await
            .map_err(|error| GithubError::Unreachable(without_url(&error)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|error| GithubError::Upstream {
                status: status.as_u16(),
                message: format!("unexpected answer: {error}"),
            });
        }
        Err(refusal(status, &headers, &body))
    }

    pub fn new(config: &GithubConfig) -> anyhow::Result<GithubClient> {
        crate::outbound::client::install_crypto_provider();
        let timeout = Duration::from_millis(config.timeout_ms);
        let http = reqwest::Client::builder()
            .user_agent(format!("Hookline/{}", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(GithubClient {
            http,
            api_url: config.api_url.trim_end_matches('/').to_owned(),
        })
    }

    /// `{api}/repos/{owner}/{name}` for a repository that follows GitHub's naming rules; anything
    /// else (a GitLab path, a stray `?`, `#` or `..`) never reaches a URL.
    fn repo_url(&self, repository: &str) -> Result<String, GithubError> {
        check_repository(repository).map_err(GithubError::BadRepository)?;
        Ok(format!("{}/repos/{repository}", self.api_url))
    }

    /// `POST /repos/{owner}/{repo}/issues`.
    pub async fn create_issue(
        &self,
        token: &str,
        repository: &str,
        issue: &NewIssue<'_>,
    ) -> Result<CreatedIssue, GithubError> {
        let url = format!("{}/issues", self.repo_url(repository)?);
        self.call(self.http.post(url).json(issue), token).await
    }
}

/// GitHub's rules for `owner/name`: an owner (user or organisation login) of 1 to 39 letters,
/// digits and inner single hyphens; a name of 1 to 100 letters, digits, `.`, `-` and `_`, other
/// than `.` and `..`.
pub fn check_repository(repository: &str) -> Result<(), String> {
    let refuse = || {
        Err(format!(
            "repository `{}` is not a GitHub owner/name (owner: 1–39 letters, digits or inner \
             hyphens; name: 1–100 letters, digits, `.`, `-` or `_`)",
            repository.chars().take(80).collect::<String>()
        ))
    };
    let Some((owner, name)) = repository.split_once('/') else {
        return refuse();
    };
    let owner_ok = (1..=39).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && !owner.contains("--");
    let name_ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && name != "."
        && name != "..";
    if owner_ok && name_ok {
        Ok(())
    } else {
        refuse()
    }
}

/// A GitHub token as given: 1 to 1000 visible ASCII characters (`ghp_…`, `github_pat_…`), nothing
/// around it. `field` names it in the error.
pub fn check_token(field: &str, token: &str) -> Result<(), String> {
    if (1..=1_000).contains(&token.len()) && token.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be 1 to 1000 visible ASCII characters, without spaces or line breaks"
        ))
    }
}

/// reqwest's errors name the URL; keep the message to the cause.
fn without_url(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(&format!(" for url ({url})"), "");
    }
    if error.is_timeout() {
        "the call timed out".to_owned()
    } else {
        message
    }
}

/// GitHub's own words from an error body: `message`, and the first entry of `errors`.
fn github_message(body: &[u8]) -> String {
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return String::from_utf8_lossy(body).chars().take(200).collect();
    };
    let mut message = parsed
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_owned();
    if let Some(first) = parsed
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    {
        let detail = first
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                let field = first.get("field").and_then(Value::as_str)?;
                let code = first
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("invalid");
                Some(format!("{field} is {code}"))
            });
        if let Some(detail) = detail {
            message = format!("{message}: {detail}");
        }
    }
    message
}

fn refusal(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &[u8]) -> GithubError {
    let header_number = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    let message = github_message(body);
    let exhausted = header_number("x-ratelimit-remaining") == Some(0)
        || message.to_ascii_lowercase().contains("rate limit");
    if status == StatusCode::TOO_MANY_REQUESTS || (status == StatusCode::FORBIDDEN && exhausted) {
        let now = u64::try_from(crate::clock::now_ms() / 1_000).unwrap_or(0);
        let retry_after_seconds = header_number("retry-after")
            .or_else(|| header_number("x-ratelimit-reset").map(|reset| reset.saturating_sub(now)))
            .unwrap_or(60);
        return GithubError::RateLimited {
            retry_after_seconds,
        };
    }
    match status {
        StatusCode::UNAUTHORIZED => GithubError::Unauthorized(message),
        StatusCode::FORBIDDEN => GithubError::Forbidden(message),
        StatusCode::NOT_FOUND => GithubError::NotFound,
        StatusCode::UNPROCESSABLE_ENTITY => GithubError::Invalid(message),
        other => GithubError::Upstream {
            status: other.as_u16(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn repositories_follow_githubs_naming_rules() {
        for good in [
            "acme/checkout",
            "a/b",
            "Acme-Corp/api.v2_x",
            &format!("{}/r", "o".repeat(39)),
        ] {
            assert!(check_repository(good).is_ok(), "{good} refused");
        }
        for bad in [
            "acme",
            "acme/",
            "/api",
            "group/sub/project",
            "-acme/api",
            "acme-/api",
            "ac--me/api",
            "acme/..",
            "acme/.",
            "acme/api?x=1",
            "acme/api#x",
            "ac me/api",
            "acme/a%2fb",
            &format!("{}/r", "o".repeat(40)),
            &format!("o/{}", "r".repeat(101)),
        ] {
            assert!(check_repository(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn refusals_say_what_github_said() {
        let none = HeaderMap::new();
        let invalid = br#"{"message":"Validation Failed","errors":[{"resource":"Issue","field":"title","code":"missing_field"}]}"#;
        assert_eq!(
            refusal(StatusCode::UNPROCESSABLE_ENTITY, &none, invalid),
            GithubError::Invalid("Validation Failed: title is missing_field".to_owned())
        );
        assert_eq!(
            refusal(
                StatusCode::UNAUTHORIZED,
                &none,
                br#"{"message":"Bad credentials"}"#
            ),
            GithubError::Unauthorized("Bad credentials".to_owned())
        );
        assert_eq!(
            refusal(StatusCode::NOT_FOUND, &none, b"{}"),
            GithubError::NotFound
        );
        let mut limited = HeaderMap::new();
        limited.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        limited.insert("retry-after", HeaderValue::from_static("30"));
        assert_eq!(
            refusal(
                StatusCode::FORBIDDEN,
                &limited,
                br#"{"message":"API rate limit exceeded"}"#
            ),
            GithubError::RateLimited {
                retry_after_seconds: 30
            }
        );
        assert!(matches!(
            refusal(
                StatusCode::FORBIDDEN,
                &none,
                br#"{"message":"Resource not accessible"}"#
            ),
            GithubError::Forbidden(_)
        ));
    }
}
