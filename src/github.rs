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
}

impl From<GithubError> for ApiError {
    fn from(error: GithubError) -> Self {
        match error {
            GithubError::NotFound => {
                ApiError::NotFound("GitHub repository (or one the integration's token can see)")
            }
            GithubError::Invalid(_) => ApiError::Unprocessable(error.to_string()),
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
}

#[derive(Debug, Deserialize)]
pub struct CommitMessage {
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub struct CommitFile {
    pub filename: String,
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
        let url = format!("{}/repos/{repository}/commits/{sha}", self.api_url);
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

    /// `POST /repos/{owner}/{repo}/issues`.
    pub async fn create_issue(
        &self,
        token: &str,
        repository: &str,
        issue: &NewIssue<'_>,
    ) -> Result<CreatedIssue, GithubError> {
        let url = format!("{}/repos/{repository}/issues", self.api_url);
        self.call(self.http.post(url).json(issue), token).await
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
