//! Experiments (`/api/experiments`): a key pull requests name in their body to link themselves,
//! an activity feed (pull requests linked and merged, issues created), and GitHub issues created
//! through an integration.

pub mod api;

/// Statuses an experiment can have.
pub const STATUSES: [&str; 5] = ["draft", "active", "paused", "completed", "archived"];
pub const DEFAULT_STATUS: &str = "active";

/// Checks an experiment key: 1 to 100 letters, digits, `.`, `-` and `_` (it is matched from a
/// line of a pull request body, so no spaces).
pub fn validate_key(key: &str) -> Result<&str, String> {
    let key = key.trim();
    if key.is_empty() || key.len() > 100 {
        return Err("key must be 1 to 100 characters".to_owned());
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err("key may contain only letters, digits, `.`, `-` and `_`".to_owned());
    }
    Ok(key)
}

pub fn validate_status(status: &str) -> Result<&str, String> {
    if STATUSES.contains(&status) {
        Ok(status)
    } else {
        Err(format!("status must be one of {}", STATUSES.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_single_tokens() {
        assert_eq!(validate_key(" checkout-flow-v2 "), Ok("checkout-flow-v2"));
        assert!(validate_key("two words").is_err());
        assert!(validate_key("").is_err());
        assert!(validate_status("active").is_ok());
        assert!(validate_status("running").is_err());
    }
}
