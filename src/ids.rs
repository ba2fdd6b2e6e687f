//! Prefixed, time-ordered object IDs (`tn_…`, `tok_…`, …).
//!
//! IDs are UUIDv7 in simple hex form behind a type prefix, so they sort by creation time: list
//! endpoints page with an ID cursor and no separate sort key.

use uuid::Uuid;

/// The kinds of object Hookline names, with their prefixes from the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tenant,
    Token,
    Endpoint,
    Delivery,
    Attempt,
    Service,
    Commit,
    PullRequest,
    ForgeIssue,
    InboundDelivery,
    Integration,
    Experiment,
    Activity,
    AnalysisJob,
    RangeAnalysis,
    Deploy,
    Incident,
    Monitor,
    MonitorCheck,
    FixProposal,
    User,
    RepositoryHook,
}

impl Kind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Tenant => "tn",
            Kind::Token => "tok",
            Kind::Endpoint => "wh",
            Kind::Delivery => "dlv",
            Kind::Attempt => "att",
            Kind::Service => "svc",
            Kind::Commit => "cmt",
            Kind::PullRequest => "pr",
            Kind::ForgeIssue => "iss",
            Kind::InboundDelivery => "ind",
            Kind::Integration => "int",
            Kind::Experiment => "exp",
            Kind::Activity => "act",
            Kind::AnalysisJob => "job",
            Kind::RangeAnalysis => "rng",
            Kind::Deploy => "dep",
            Kind::Incident => "inc",
            Kind::Monitor => "mon",
            Kind::MonitorCheck => "chk",
            Kind::FixProposal => "fp",
            Kind::User => "usr",
            Kind::RepositoryHook => "hook",
        }
    }

    /// What a person calls this kind of object, for error messages.
    pub const fn noun(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant",
            Kind::Token => "API token",
            Kind::Endpoint => "webhook endpoint",
            Kind::Delivery => "delivery",
            Kind::Attempt => "delivery attempt",
            Kind::Service => "service",
            Kind::Commit => "commit",
            Kind::PullRequest => "pull request",
            Kind::ForgeIssue => "issue",
            Kind::InboundDelivery => "inbound delivery",
            Kind::Integration => "integration",
            Kind::Experiment => "experiment",
            Kind::Activity => "activity entry",
            Kind::AnalysisJob => "analysis job",
            Kind::RangeAnalysis => "range analysis",
            Kind::Deploy => "deploy",
            Kind::Incident => "incident",
            Kind::Monitor => "monitor",
            Kind::MonitorCheck => "monitor check",
            Kind::FixProposal => "fix proposal",
            Kind::User => "user",
            Kind::RepositoryHook => "repository hook",
        }
    }

    /// Integrations carry a hyphenated UUID (`int_0190…-…`), as the spec's integration API shows;
    /// every other kind uses 32 plain hex digits.
    const fn hyphenated(self) -> bool {
        matches!(self, Kind::Integration)
    }
}

/// A fresh ID of the given kind.
pub fn new(kind: Kind) -> String {
    let uuid = Uuid::now_v7();
    if kind.hyphenated() {
        format!("{}_{}", kind.prefix(), uuid.hyphenated())
    } else {
        format!("{}_{}", kind.prefix(), uuid.simple())
    }
}

/// The smallest ID of `kind` made at or after `at_ms` (Unix ms): IDs sort by creation, so
/// `id >= first_at(kind, t)` selects the objects made since `t` through an index of IDs.
pub fn first_at(kind: Kind, at_ms: i64) -> String {
    // UUIDv7: 48 bits of milliseconds, the version (7), then the variant (binary 10) and random
    // bits, here all zero.
    let millis = u64::try_from(at_ms).unwrap_or(0) & 0xffff_ffff_ffff;
    let uuid = Uuid::from_u128((u128::from(millis) << 80) | (0x7 << 76) | (0b10 << 62));
    if kind.hyphenated() {
        format!("{}_{}", kind.prefix(), uuid.hyphenated())
    } else {
        format!("{}_{}", kind.prefix(), uuid.simple())
    }
}

/// Whether `candidate` has the shape of an ID of `kind` (prefix and 32 lowercase hex digits).
pub fn is_valid(kind: Kind, candidate: &str) -> bool {
    candidate
        .strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| {
            if kind.hyphenated() {
                rest.len() == 36
                    && rest.bytes().enumerate().all(|(at, b)| match at {
                        8 | 13 | 18 | 23 => b == b'-',
                        _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
                    })
            } else {
                rest.len() == 32
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    #[test]
    fn new_ids_have_their_prefix_and_validate() {
        let id = new(Kind::Tenant);
        assert!(id.starts_with("tn_"), "{id}");
        assert!(is_valid(Kind::Tenant, &id));
        assert!(!is_valid(Kind::Token, &id));
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "tn_",
            "tn",
            "tn_xyz",
            "tn_0123456789abcdef0123456789ABCDEF",
            "tn_0123456789abcdef0123456789abcdef0",
            "tok_0123456789abcdef0123456789abcdef",
            "tn-0123456789abcdef0123456789abcdef",
        ] {
            assert!(!is_valid(Kind::Tenant, bad), "{bad:?} accepted");
        }
        assert!(is_valid(
            Kind::Tenant,
            "tn_0123456789abcdef0123456789abcdef"
        ));
    }

    #[test]
    fn integrations_use_hyphenated_uuids() {
        let id = new(Kind::Integration);
        assert_eq!(id.len(), "int_".len() + 36, "{id}");
        assert!(is_valid(Kind::Integration, &id));
        assert!(!is_valid(
            Kind::Integration,
            "int_0123456789abcdef0123456789abcdef"
        ));
        assert!(!is_valid(Kind::Service, &id.replace("int_", "svc_")));
    }

    #[test]
    fn the_first_id_at_a_time_bounds_the_ids_made_since() {
        let before = clock::now_ms();
        let id = new(Kind::Delivery);
        assert!(is_valid(Kind::Delivery, &first_at(Kind::Delivery, before)));
        assert!(first_at(Kind::Delivery, before) <= id);
        assert!(first_at(Kind::Delivery, clock::now_ms() + 1) > id);
        assert!(first_at(Kind::Delivery, before - 1) < first_at(Kind::Delivery, before));
    }

    #[test]
    fn ids_sort_by_creation() {
        let first = new(Kind::Token);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new(Kind::Token);
        assert!(first < second);
    }
}
