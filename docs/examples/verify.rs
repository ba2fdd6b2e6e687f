//! Verifying a Hookline delivery in Rust, with the `hmac`, `sha2` and `hex` crates.
//!
//! ```toml
//! hmac = "0.12"
//! sha2 = "0.10"
//! hex = "0.4"
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far the signature's timestamp may be from the receiver's clock.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Checks `X-Hookline-Signature` (`sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`)
/// against the exact body bytes. `now` is the receiver's clock in Unix seconds.
pub fn verify(
    secret: &str,
    signature_header: &str,
    timestamp_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let timestamp: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| "malformed X-Hookline-Timestamp")?;
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err("timestamp outside the 5 minute tolerance");
    }
    // During a secret rotation the header holds two space-separated signatures.
    for candidate in signature_header.split_whitespace() {
        let Some(Ok(given)) = candidate.strip_prefix("sha256=").map(hex::decode) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // verify_slice compares in constant time.
        if mac.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err("signature mismatch")
}
