//! The engineering record: services (a repository Hookline keeps a record for, with its push
//! secret) and the commits their pushes bring in.

pub mod api;
pub mod commits;
pub mod deploys;
pub mod forge;
pub mod pages;
pub mod services;

use crate::crypto::random_bytes;

/// The associated data a service's GitHub token is sealed under.
pub fn github_token_context(service_id: &str) -> String {
    format!("services.github_token:{service_id}")
}

/// Longest repository path accepted (`group/subgroup/…/project` on GitLab).
const MAX_REPOSITORY_LEN: usize = 255;

/// Checks a repository path: `owner/name` (GitLab: `group/sub/project`), each part letters,
/// digits, `.`, `-` and `_`, not `.` or `..`. Returns it trimmed, slashes at the ends removed.
pub fn validate_repository(repository: &str) -> Result<String, String> {
    let repository = repository.trim().trim_matches('/');
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "repository must be at most {MAX_REPOSITORY_LEN} characters"
        ));
    }
    let parts: Vec<&str> = repository.split('/').collect();
    let valid_part = |part: &&str| {
        !part.is_empty()
            && *part != "."
            && *part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if parts.len() < 2 || !parts.iter().all(valid_part) {
        return Err(format!(
            "repository `{}` must look like owner/name",
            repository.chars().take(80).collect::<String>()
        ));
    }
    Ok(repository.to_owned())
}

/// A fresh push secret: 32 random bytes as 64 hex digits (GitHub takes any string as a secret).
pub fn generate_push_secret() -> String {
    hex::encode(random_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_owner_slash_name() {
        assert_eq!(validate_repository(" acme/api ").unwrap(), "acme/api");
        assert_eq!(
            validate_repository("group/sub/app.js").unwrap(),
            "group/sub/app.js"
        );
        for bad in [
            "acme",
            "acme/",
            "/api",
            "acme/a pi",
            "acme/../x",
            "a//b",
            "",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn push_secrets_are_long_and_fresh() {
        let (first, second) = (generate_push_secret(), generate_push_secret());
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
    }
}
