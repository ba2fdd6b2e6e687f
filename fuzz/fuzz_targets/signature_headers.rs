//! The signature header parsers: `X-Hub-Signature-256` (inbound), `X-Hookline-Signature` and
//! Standard Webhooks' `webhook-signature` (outbound, as `hookline verify` checks them). The input
//! is `signature\ntimestamp\nbody`.
#![no_main]

use hookline::inbound::hub_signature_matches;
use hookline::outbound::signing::{verify_hookline, verify_request, verify_standard};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&byte| byte == b'\n');
    let signature = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let timestamp = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();

    let _ = hub_signature_matches(SECRET.as_bytes(), body, &signature);
    let _ = verify_hookline(SECRET, &signature, &timestamp, body, NOW, 300);
    let _ = verify_standard(SECRET, "msg_1", &signature, &timestamp, body, NOW, 300);
    let headers = vec![
        ("X-Hookline-Signature".to_owned(), signature.clone()),
        ("X-Hookline-Timestamp".to_owned(), timestamp.clone()),
        ("webhook-id".to_owned(), "msg_1".to_owned()),
        ("webhook-signature".to_owned(), signature),
        ("webhook-timestamp".to_owned(), timestamp),
    ];
    let _ = verify_request(SECRET, &headers, body, NOW, 300);
    // Any secret, too: the key decoding of `whsec_…` secrets.
    if let Ok(secret) = std::str::from_utf8(body) {
        let _ = verify_request(secret, &headers, b"{}", NOW, 300);
    }
});
