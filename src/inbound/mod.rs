//! Inbound webhooks: the GitHub and GitLab receivers. A request is checked for a signature,
//! read within the size cap, matched to the services (or the integration) it is for, verified in
//! constant time, stored once per tenant, and turned into records (commits, pull requests, issues,
//! experiment links) in the same transaction that keeps the delivery.
//!
//! Rejected requests (no signature, no secret that verifies) change nothing: they are counted and
//! logged without their body. Requests that pass the signature header check but cannot be used
//! (too large, wrong content type, malformed JSON or payload) are kept as failed deliveries.

pub mod api;
pub mod cache;
pub mod forge;
pub mod kept;
mod process;
pub mod writer;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::crypto::Cipher;
use crate::ids::{self, Kind};
use crate::store::inbound::{InboundDelivery, encode_body};
use crate::store::services::Service;

pub use process::{Applied, PushSummary, apply, push_rows};

/// Where an inbound delivery came in.
pub mod source {
    /// `POST /api/github/webhook`, matched to services by repository.
    pub const GITHUB: &str = "github";
    /// `POST /api/gitlab/webhook`, matched to services by project path.
    pub const GITLAB: &str = "gitlab";
    /// `POST /api/v1/integrations/{id}/webhook/github`.
    pub const INTEGRATION: &str = "github_integration";
}

/// The processing result kept with a delivery.
pub mod result {
    pub const PROCESSED: &str = "processed";
    /// Stored and acknowledged, not processed (an event Hookline does not record).
    pub const IGNORED: &str = "ignored";
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 3] = [PROCESSED, IGNORED, FAILED];
}

/// The verification result kept with a delivery.
pub mod verification {
    pub const VERIFIED: &str = "verified";
    /// The request failed before its signature could be checked (too large, unparsable…).
    pub const NOT_CHECKED: &str = "not_checked";
}

type HmacSha256 = Hmac<Sha256>;

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` keyed with `secret`. The MAC
/// comparison is constant-time.
pub fn hub_signature_matches(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(claimed) = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
    else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&claimed).is_ok()
}

/// `sha256=<hex>` of `body` keyed with `secret`, as GitHub and GitLab sign.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether a GitLab `X-Gitlab-Token` equals the secret, compared in constant time.
pub fn token_matches(secret: &[u8], token: &str) -> bool {
    secret.ct_eq(token.as_bytes()).into()
}

/// How a request proves it knows a secret.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// `X-Hub-Signature-256: sha256=<hex>` over the raw body.
    HubSignature(&'a str),
    /// GitLab's `X-Gitlab-Token`: the secret itself.
    Token(&'a str),
}

impl Proof<'_> {
    pub fn holds_for(&self, secret: &[u8], body: &[u8]) -> bool {
        match self {
            Proof::HubSignature(header) => hub_signature_matches(secret, body, header),
            Proof::Token(token) => token_matches(secret, token),
        }
    }
}

pub fn service_secret_context(service_id: &str) -> String {
    format!("services.webhook_secret:{service_id}")
}

pub fn service_previous_secret_context(service_id: &str) -> String {
    format!("services.previous_webhook_secret:{service_id}")
}

/// The push secrets that verify for a service now: the current one, and the replaced one while
/// its grace window lasts. A secret that cannot be opened is skipped (and logged).
pub fn service_secrets(cipher: &Cipher, service: &Service, now: i64) -> Vec<Vec<u8>> {
    let mut secrets = Vec::with_capacity(2);
    let mut open = |context: String, sealed: &[u8]| match cipher.open(&context, sealed) {
        Ok(secret) => secrets.push(secret),
        Err(error) => {
            tracing::error!(service_id = %service.id, %error, "a service webhook secret cannot be opened");
        }
    };
    if let Some(sealed) = &service.webhook_secret {
        open(service_secret_context(&service.id), sealed);
    }
    if let (Some(sealed), Some(until)) = (
        &service.previous_webhook_secret,
        service.previous_secret_until,
    ) && until > now
    {
        open(service_previous_secret_context(&service.id), sealed);
    }
    secrets
}

/// Header names whose values are secrets or signatures: kept as `[redacted]`.
const REDACTED_HEADERS: [&str; 8] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-gitlab-token",
    "webhook-signature",
    "x-hookline-signature",
];

/// The request headers as a JSON object, secrets redacted; repeated headers are joined with `, `.
pub fn redacted_headers(headers: &HeaderMap) -> String {
    use std::collections::btree_map::Entry;
    // Borrowed from the request where it can be: this runs for every delivery kept.
    let mut kept: BTreeMap<&str, Cow<'_, str>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let value = if REDACTED_HEADERS.contains(&name) {
            Cow::Borrowed("[redacted]")
        } else {
            String::from_utf8_lossy(value.as_bytes())
        };
        match kept.entry(name) {
            Entry::Occupied(mut existing) => {
                let existing = existing.get_mut().to_mut();
                existing.push_str(", ");
                existing.push_str(&value);
            }
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
    serde_json::to_string(&kept).expect("a string map serializes")
}

/// A request as a receiver got it.
pub struct Received {
    pub source: &'static str,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub received_at: i64,
    pub started: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    }

    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or("").to_owned()
    }

    /// A delivery row for this request, to be completed by the caller.
    pub fn delivery(&self, event: &str) -> InboundDelivery {
        // Compressed here, on the receiving task, not in the one writer all receivers share.
        let (body, body_encoding) = encode_body(&self.body);
        InboundDelivery {
            id: ids::new(Kind::InboundDelivery),
            tenant_id: None,
            source: self.source.to_owned(),
            targets: "[]".to_owned(),
            delivery_key: None,
            dedupe_key: None,
            event: event.to_owned(),
            action: None,
            repository: None,
            content_type: self.content_type(),
            headers: redacted_headers(&self.headers),
            body,
            body_encoding: body_encoding.to_owned(),
            body_size: i64::try_from(self.body.len()).unwrap_or(i64::MAX),
            verification: verification::NOT_CHECKED.to_owned(),
            result: result::FAILED.to_owned(),
            error: None,
            summary: "{}".to_owned(),
            received_at: self.received_at,
            duration_ms: 0,
            replays: 0,
        }
    }

    pub fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }
}

/// Why a body could not be turned into a JSON payload; each maps to a 4xx.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    #[error(
        "unsupported content type `{0}`: send application/json or application/x-www-form-urlencoded"
    )]
    UnsupportedType(String),
    #[error("form-encoded body has no `payload` field")]
    NoPayloadField,
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("the payload must be a JSON object")]
    NotAnObject,
}

/// A webhook body's JSON payload: the JSON text (the body itself, or the `payload` field of a
/// form-encoded body, GitHub's other content type) and what the receivers read before verifying.
/// The signature is always checked over the raw body, not this.
#[derive(Debug, PartialEq)]
pub struct Payload<'a> {
    pub json: Cow<'a, [u8]>,
    pub envelope: forge::Envelope,
    /// The payload read as a push, when asked for (see [`forge::read`]).
    pub push: Option<Result<forge::Push, forge::PayloadError>>,
}

/// The JSON text of a webhook body: the body itself, or the `payload` field of a form-encoded one.
pub fn json_of<'a>(content_type: &str, body: &'a [u8]) -> Result<Cow<'a, [u8]>, BodyError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(Cow::Borrowed(body))
    } else if mime == "application/x-www-form-urlencoded" {
        url::form_urlencoded::parse(body)
            .find(|(name, _)| name == "payload")
            .map(|(_, value)| Cow::Owned(value.into_owned().into_bytes()))
            .ok_or(BodyError::NoPayloadField)
    } else {
        Err(BodyError::UnsupportedType(
            content_type.chars().take(100).collect(),
        ))
    }
}

/// Checks that a body is a JSON object payload and reads its envelope (and, `with_push`, the
/// push it carries) in one pass, without building the whole document.
pub fn payload_of<'a>(
    content_type: &str,
    body: &'a [u8],
    with_push: bool,
) -> Result<Payload<'a>, BodyError> {
    let json = json_of(content_type, body)?;
    let is_object = json
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|&first| first == b'{');
    if !is_object {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(&json) {
                Ok(_) => BodyError::NotAnObject,
                Err(error) => BodyError::MalformedJson(error.to_string()),
            },
        );
    }
    let (envelope, push) = forge::read(&json, with_push)
        .map_err(|error| BodyError::MalformedJson(error.to_string()))?;
    Ok(Payload {
        json,
        envelope,
        push,
    })
}

/// Counts a request a receiver answered, by source and outcome.
pub fn count(source: &'static str, outcome: &'static str) {
    metrics::counter!("hookline_inbound_requests_total", "source" => source, "outcome" => outcome)
        .increment(1);
}

/// Logs a rejected request: never its body or secrets, only what identifies it.
pub fn log_rejection(received: &Received, reason: &'static str, repository: Option<&str>) {
    tracing::warn!(
        source = received.source,
        reason,
        repository = repository.unwrap_or("-"),
        delivery = received
            .header("x-github-delivery")
            .or_else(|| received.header("x-gitlab-event-uuid"))
            .unwrap_or("-"),
        body_bytes = received.body.len(),
        "inbound webhook rejected"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn hub_signatures_verify_only_with_the_right_secret_and_body() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let header = hub_signature(b"It's a Secret to Everybody", body);
        assert!(hub_signature_matches(
            b"It's a Secret to Everybody",
            body,
            &header
        ));
        assert!(!hub_signature_matches(b"another secret", body, &header));
        assert!(!hub_signature_matches(
            b"It's a Secret to Everybody",
            b"{}",
            &header
        ));
        assert!(!hub_signature_matches(
            b"It's a Secret to Everybody",
            body,
            "sha256=zz"
        ));
        assert!(!hub_signature_matches(
            b"It's a Secret to Everybody",
            body,
            &header.replace("sha256=", "sha1=")
        ));
    }

    #[test]
    fn github_published_example_signature_matches() {
        // The example from GitHub's "Validating webhook deliveries" page.
        assert!(hub_signature_matches(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        ));
    }

    #[test]
    fn gitlab_tokens_compare_exactly() {
        assert!(token_matches(b"s3cret-token", "s3cret-token"));
        assert!(!token_matches(b"s3cret-token", "s3cret-toke"));
        assert!(!token_matches(b"s3cret-token", "S3cret-token"));
    }

    #[test]
    fn payloads_come_from_json_or_the_form_field() {
        let json = payload_of(
            "application/json; charset=utf-8",
            br#"{"a":1,"repository":{"id":1,"full_name":"o/r"},"action":"opened"}"#,
            false,
        )
        .unwrap();
        assert_eq!(json.envelope.repository.as_deref(), Some("o/r"));
        assert_eq!(json.envelope.action.as_deref(), Some("opened"));
        let form = payload_of(
            "application/x-www-form-urlencoded",
            b"payload=%7B%22project%22%3A%7B%22path_with_namespace%22%3A%22g%2Fp%22%7D%7D",
            false,
        )
        .unwrap();
        assert_eq!(
            form.json.as_ref(),
            br#"{"project":{"path_with_namespace":"g/p"}}"#
        );
        assert_eq!(form.envelope.repository.as_deref(), Some("g/p"));
        // A repository that is not an object is no repository, not an error.
        let odd = payload_of("application/json", br#"{"repository":"o/r"}"#, false).unwrap();
        assert_eq!(odd.envelope.repository, None);
        assert_eq!(
            payload_of("application/x-www-form-urlencoded", b"other=1", false),
            Err(BodyError::NoPayloadField)
        );
        assert!(matches!(
            payload_of("text/plain", b"{}", false),
            Err(BodyError::UnsupportedType(_))
        ));
        assert!(matches!(
            payload_of("application/json", b"{nope", false),
            Err(BodyError::MalformedJson(_))
        ));
        assert!(matches!(
            payload_of("application/json", br#"{"a":1} trailing"#, false),
            Err(BodyError::MalformedJson(_))
        ));
        for not_an_object in [&b"[1]"[..], b" 7", b"\"x\"", b"null"] {
            assert_eq!(
                payload_of("application/json", not_an_object, false),
                Err(BodyError::NotAnObject)
            );
        }
    }

    #[test]
    fn a_push_is_read_with_its_envelope_and_keeps_its_errors_for_later() {
        let body = serde_json::json!({
            "ref": "refs/heads/main", "after": "b".repeat(40),
            "repository": {"full_name": "acme/api", "owner": {"login": "acme"}},
            "sender": {"login": "jane"},
            "commits": [{"id": "a".repeat(40), "message": "fix", "added": ["src/x.rs"]}],
        })
        .to_string();
        let payload = payload_of("application/json", body.as_bytes(), true).unwrap();
        assert_eq!(payload.envelope.repository.as_deref(), Some("acme/api"));
        let Some(Ok(push)) = &payload.push else {
            panic!("read as a push: {:?}", payload.push)
        };
        let forge::ForgeEvent::Push(alone) = forge::github("push", body.as_bytes()).unwrap() else {
            panic!("a push")
        };
        assert_eq!(push, &alone, "one pass reads what the push reader reads");
        assert_eq!(push.commits[0].added, ["src/x.rs"]);
        assert_eq!(
            payload_of("application/json", body.as_bytes(), false)
                .unwrap()
                .push,
            None
        );

        // A push that cannot be read still has an envelope: the receiver checks the signature
        // first and answers the push's error only for a verified request.
        let bad = br#"{"repository":{"full_name":"acme/api"},"ref":"refs/heads/x","commits":[{"id":"zz"}]}"#;
        let payload = payload_of("application/json", bad, true).unwrap();
        assert_eq!(payload.envelope.repository.as_deref(), Some("acme/api"));
        assert!(matches!(payload.push, Some(Err(_))), "{:?}", payload.push);
    }

    #[test]
    fn secrets_in_headers_are_redacted() {
        let mut headers = HeaderMap::new();
        headers.insert("x-hub-signature-256", "sha256=abc".parse().unwrap());
        headers.insert("x-gitlab-token", "tok".parse().unwrap());
        headers.insert("x-github-event", "push".parse().unwrap());
        let kept: Value = serde_json::from_str(&redacted_headers(&headers)).unwrap();
        assert_eq!(kept["x-hub-signature-256"], "[redacted]");
        assert_eq!(kept["x-gitlab-token"], "[redacted]");
        assert_eq!(kept["x-github-event"], "push");
    }
}
