//! Signatures on outbound deliveries, and their verification (used by `hookline verify` and by
//! receivers' reference code in docs/).
//!
//! Two schemes ride on every delivery:
//! - Hookline's own: `X-Hookline-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`,
//!   keyed with the endpoint secret string exactly as shown (`whsec_…`);
//! - Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`,
//!   keyed with the base64-decoded part of the secret after `whsec_`.
//!
//! During a secret rotation both the new and the previous secret sign: the values are separated by
//! a space, and a receiver accepts the request when any one matches.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";
/// How far a receiver lets a signature's timestamp stray from its clock.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// A fresh endpoint secret: `whsec_` and base64 of 32 random bytes.
pub fn generate_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(crate::crypto::random_bytes::<32>())
    )
}

/// The Standard Webhooks key of a secret: the base64-decoded part after `whsec_` (a secret that is
/// not of that form is used as raw bytes, as the Standard Webhooks libraries do).
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The MAC of Hookline's scheme: `"<timestamp>.<body>"` keyed with the secret string.
fn hookline_mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    mac(
        secret.as_bytes(),
        &[timestamp.to_string().as_bytes(), b".", body],
    )
}

/// The MAC of Standard Webhooks: `"<id>.<timestamp>.<body>"` keyed with the decoded secret.
fn standard_mac(key: &[u8], message_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    mac(
        key,
        &[
            message_id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    )
}

/// `sha256=<hex>` over `"<timestamp>.<body>"` with the secret string as key.
pub fn hookline_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = hookline_mac(secret, timestamp, body)
        .finalize()
        .into_bytes();
    format!("sha256={}", hex::encode(digest))
}

/// `v1,<base64>` over `"<id>.<timestamp>.<body>"` with the decoded secret as key.
pub fn standard_signature(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = standard_mac(&standard_key(secret), message_id, timestamp, body)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(digest))
}

/// Whether any space-separated `<prefix><encoded digest>` in `header` matches `expected`
/// (constant-time comparison of each decoded digest).
fn any_signature_matches(
    header: &str,
    prefix: &str,
    decode: impl Fn(&str) -> Option<Vec<u8>>,
    expected: impl Fn() -> HmacSha256,
) -> Result<(), VerifyError> {
    let matched = header.split_whitespace().any(|candidate| {
        candidate
            .strip_prefix(prefix)
            .and_then(&decode)
            .is_some_and(|digest| expected().verify_slice(&digest).is_ok())
    });
    matched.then_some(()).ok_or(VerifyError::BadSignature)
}

/// The signature headers of one attempt, for every secret that signs (current first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub hookline: String,
    pub standard: String,
}

pub fn sign(secrets: &[&str], message_id: &str, timestamp: i64, body: &[u8]) -> SignatureHeaders {
    let hookline = secrets
        .iter()
        .map(|secret| hookline_signature(secret, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    let standard = secrets
        .iter()
        .map(|secret| standard_signature(secret, message_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    SignatureHeaders { hookline, standard }
}

/// Why a request did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed timestamp `{0}`")]
    BadTimestamp(String),
    #[error("timestamp is {age_seconds} s away from now (tolerance {tolerance_seconds} s)")]
    TimestampOutOfTolerance {
        age_seconds: i64,
        tolerance_seconds: i64,
    },
    #[error("no signature matches: wrong secret, or the body was altered")]
    BadSignature,
}

fn check_timestamp(raw: &str, now: i64, tolerance: i64) -> Result<i64, VerifyError> {
    let timestamp: i64 = raw
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(raw.to_owned()))?;
    let age = now - timestamp;
    if age.abs() > tolerance {
        return Err(VerifyError::TimestampOutOfTolerance {
            age_seconds: age,
            tolerance_seconds: tolerance,
        });
    }
    Ok(timestamp)
}

/// Verifies `X-Hookline-Signature` / `X-Hookline-Timestamp` (constant-time comparison).
pub fn verify_hookline(
    secret: &str,
    signature_header: &str,
    timestamp_header: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), VerifyError> {
    let timestamp = check_timestamp(timestamp_header, now, tolerance)?;
    any_signature_matches(
        signature_header,
        "sha256=",
        |digest| hex::decode(digest).ok(),
        || hookline_mac(secret, timestamp, body),
    )
}

/// Verifies the Standard Webhooks headers (constant-time comparison).
pub fn verify_standard(
    secret: &str,
    id_header: &str,
    signature_header: &str,
    timestamp_header: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), VerifyError> {
    let timestamp = check_timestamp(timestamp_header, now, tolerance)?;
    let key = standard_key(secret);
    any_signature_matches(
        signature_header,
        "v1,",
        |digest| STANDARD.decode(digest).ok(),
        || standard_mac(&key, id_header, timestamp, body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example published in the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_standard_webhooks_example_vector() {
        assert_eq!(
            standard_signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        assert_eq!(
            verify_standard(
                SPEC_SECRET,
                SPEC_ID,
                SPEC_SIGNATURE,
                &SPEC_TIMESTAMP.to_string(),
                SPEC_BODY,
                SPEC_TIMESTAMP + 10,
                DEFAULT_TOLERANCE_SECONDS,
            ),
            Ok(())
        );
    }

    #[test]
    fn hookline_signature_is_hmac_of_timestamp_dot_body() {
        // HMAC-SHA256("whsec_test", "1700000000.{}"), computed independently with openssl.
        assert_eq!(
            hookline_signature("whsec_test", 1_700_000_000, b"{}"),
            "sha256=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn rotation_signs_with_both_and_either_verifies() {
        let (new, old) = (generate_secret(), generate_secret());
        let headers = sign(&[&new, &old], "evt_1", 1_700_000_000, b"{}");
        assert_eq!(headers.hookline.split(' ').count(), 2);
        assert_eq!(headers.standard.split(' ').count(), 2);
        for secret in [&new, &old] {
            verify_hookline(
                secret,
                &headers.hookline,
                "1700000000",
                b"{}",
                1_700_000_001,
                300,
            )
            .unwrap();
            verify_standard(
                secret,
                "evt_1",
                &headers.standard,
                "1700000000",
                b"{}",
                1_700_000_001,
                300,
            )
            .unwrap();
        }
        let stranger = generate_secret();
        assert_eq!(
            verify_hookline(
                &stranger,
                &headers.hookline,
                "1700000000",
                b"{}",
                1_700_000_001,
                300
            ),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn altered_bodies_and_stale_timestamps_fail() {
        let secret = generate_secret();
        let headers = sign(&[&secret], "evt_1", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify_hookline(
                &secret,
                &headers.hookline,
                "1700000000",
                b"{\"a\":2}",
                1_700_000_000,
                300
            ),
            Err(VerifyError::BadSignature)
        );
        assert!(matches!(
            verify_hookline(
                &secret,
                &headers.hookline,
                "1700000000",
                b"{\"a\":1}",
                1_700_000_301,
                300
            ),
            Err(VerifyError::TimestampOutOfTolerance {
                age_seconds: 301,
                ..
            })
        ));
        assert!(matches!(
            verify_hookline(&secret, &headers.hookline, "soon", b"{}", 0, 300),
            Err(VerifyError::BadTimestamp(_))
        ));
    }

    #[test]
    fn secrets_have_the_documented_shape() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(standard_key(&secret).len(), 32);
    }
}

/// Which signature scheme a check was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Hookline,
    StandardWebhooks,
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheme::Hookline => "X-Hookline-Signature",
            Scheme::StandardWebhooks => "webhook-signature (Standard Webhooks)",
        })
    }
}

/// Verifies a saved request: every signature scheme whose headers are present must verify.
/// `headers` are looked up case-insensitively. An empty answer means no signature headers at all.
pub fn verify_request(
    secret: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Vec<(Scheme, Result<(), VerifyError>)> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    };
    let mut checks = Vec::new();
    if let Some(signature) = header("x-hookline-signature") {
        let verdict = match header("x-hookline-timestamp") {
            Some(timestamp) => verify_hookline(secret, signature, timestamp, body, now, tolerance),
            None => Err(VerifyError::MissingHeader("X-Hookline-Timestamp")),
        };
        checks.push((Scheme::Hookline, verdict));
    }
    if let Some(signature) = header("webhook-signature") {
        let verdict = match (header("webhook-id"), header("webhook-timestamp")) {
            (Some(id), Some(timestamp)) => {
                verify_standard(secret, id, signature, timestamp, body, now, tolerance)
            }
            (None, _) => Err(VerifyError::MissingHeader("webhook-id")),
            (_, None) => Err(VerifyError::MissingHeader("webhook-timestamp")),
        };
        checks.push((Scheme::StandardWebhooks, verdict));
    }
    checks
}

#[cfg(test)]
mod request_tests {
    use super::*;

    #[test]
    fn a_saved_request_is_checked_by_every_scheme_present() {
        let secret = generate_secret();
        let body = br#"{"id":"evt_1"}"#;
        let signed = sign(&[&secret], "evt_1", 1_700_000_000, body);
        let headers = vec![
            ("X-Hookline-Signature".to_owned(), signed.hookline.clone()),
            ("x-hookline-timestamp".to_owned(), "1700000000".to_owned()),
            ("Webhook-Id".to_owned(), "evt_1".to_owned()),
            ("webhook-timestamp".to_owned(), "1700000000".to_owned()),
            ("webhook-signature".to_owned(), signed.standard.clone()),
        ];
        let checks = verify_request(&secret, &headers, body, 1_700_000_100, 300);
        assert_eq!(checks.len(), 2);
        assert!(
            checks.iter().all(|(_, verdict)| verdict.is_ok()),
            "{checks:?}"
        );

        let checks = verify_request(&secret, &headers[..1], body, 1_700_000_100, 300);
        assert_eq!(
            checks,
            [(
                Scheme::Hookline,
                Err(VerifyError::MissingHeader("X-Hookline-Timestamp"))
            )]
        );
        assert!(verify_request(&secret, &[], body, 0, 300).is_empty());
    }
}
