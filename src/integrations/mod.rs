//! GitHub integrations (`/api/v1/integrations`): a GitHub token for calls Hookline makes on the
//! tenant's behalf and a webhook secret for the integration's own receiver. Both are sealed at
//! rest; the token is never returned and the secret only masked.

pub mod api;

use crate::crypto::{Cipher, CryptoError};
use crate::store::integrations::Integration;

/// The only integration type so far.
pub const GITHUB: &str = "GITHUB";

pub fn token_context(id: &str) -> String {
    format!("integrations.token:{id}")
}

pub fn webhook_secret_context(id: &str) -> String {
    format!("integrations.webhook_secret:{id}")
}

pub fn webhook_secret_of(
    cipher: &Cipher,
    integration: &Integration,
) -> Result<String, CryptoError> {
    cipher.open_str(
        &webhook_secret_context(&integration.id),
        &integration.webhook_secret,
    )
}

pub fn token_of(cipher: &Cipher, integration: &Integration) -> Result<String, CryptoError> {
    cipher.open_str(&token_context(&integration.id), &integration.token)
}

/// How a secret is shown: its last four characters behind a fixed mask (nothing of a short one).
pub fn mask(secret: &str) -> String {
    let count = secret.chars().count();
    if count < 12 {
        return "********".to_owned();
    }
    let tail: String = secret.chars().skip(count - 4).collect();
    format!("********{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_show_at_most_the_last_four_characters() {
        assert_eq!(
            mask("a-strong-random-secret-at-least-32-chars"),
            "********hars"
        );
        assert_eq!(mask("short"), "********");
    }
}
