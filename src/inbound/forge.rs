//! What a forge webhook says, in one shape for GitHub and GitLab: the parsers turn each sender's
//! payload into a [`ForgeEvent`] the record understands.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::clock;

/// A webhook's meaning, whichever forge sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum ForgeEvent {
    Ping,
    Push(Push),
    PullRequest(PullRequestChange),
    Issue(IssueChange),
    /// Stored and acknowledged, not processed (notes, pipelines, stars…).
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub git_ref: String,
    /// `Some` for a branch push (`refs/heads/…`).
    pub branch: Option<String>,
    /// `Some` for a tag push (`refs/tags/…`).
    pub tag: Option<String>,
    /// The ref was deleted: no commits to record.
    pub deleted: bool,
    pub forced: bool,
    pub commits: Vec<PushedCommit>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PushedCommit {
    pub sha: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    pub timestamp: Option<i64>,
    pub url: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PullRequestChange {
    pub action: String,
    pub number: i64,
    pub title: String,
    pub url: String,
    /// `open` or `closed` (a merged pull request is closed and merged).
    pub state: String,
    pub merged: bool,
    pub merged_at: Option<i64>,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub base_sha: String,
    pub body: String,
    pub author: String,
    pub created_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IssueChange {
    pub action: String,
    pub number: i64,
    pub title: String,
    pub url: String,
    /// `open` or `closed`.
    pub state: String,
    pub labels: Vec<String>,
    pub body: String,
}

/// Why a payload could not be understood; answered as 422 and kept with the delivery.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// The all-zero SHA forges use for "no commit" (a created or deleted ref).
const NULL_SHA: &str = "0000000000000000000000000000000000000000";

fn text(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => String::new(),
    }
}

fn opt_text(value: &Value, pointer: &str) -> Option<String> {
    Some(text(value, pointer)).filter(|text| !text.is_empty())
}

fn number(value: &Value, pointers: &[&str]) -> Option<i64> {
    pointers
        .iter()
        .find_map(|pointer| value.pointer(pointer).and_then(Value::as_i64))
}

fn time_at(value: &Value, pointer: &str) -> Option<i64> {
    opt_text(value, pointer).and_then(|text| {
        clock::parse_rfc3339_ms(&text)
            // GitLab writes some times as `2026-03-02 10:00:00 UTC`.
            .or_else(|| {
                let trimmed = text.strip_suffix(" UTC")?;
                clock::parse_rfc3339_ms(&format!("{}Z", trimmed.replacen(' ', "T", 1)))
            })
    })
}

/// What the receivers read before a payload is verified: which repository it is about (GitHub
/// `repository.full_name`, GitLab `project.path_with_namespace`), GitLab's `object_kind`, and the
/// action. Read without building the whole document: the rest of the payload is only skipped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Envelope {
    pub repository: Option<String>,
    pub object_kind: Option<String>,
    pub action: Option<String>,
}

/// A JSON value left unparsed, borrowed from the body.
type Raw<'a> = Option<&'a RawValue>;

/// The top-level fields the receivers read: the envelope's, and a push's. Everything else is
/// skipped; the nested objects are read in the same pass, and the other fields are kept as their
/// unparsed JSON text until they are needed.
#[derive(Deserialize)]
struct WirePayload<'a> {
    #[serde(borrow, default)]
    repository: WireNested<'a>,
    #[serde(borrow, default)]
    project: WireNested<'a>,
    #[serde(borrow, default)]
    object_kind: Raw<'a>,
    #[serde(borrow, default)]
    action: Raw<'a>,
    #[serde(borrow, default)]
    object_attributes: WireNested<'a>,
    #[serde(rename = "ref", borrow, default)]
    git_ref: Raw<'a>,
    #[serde(borrow, default)]
    after: Raw<'a>,
    #[serde(borrow, default)]
    deleted: Raw<'a>,
    #[serde(borrow, default)]
    forced: Raw<'a>,
    #[serde(borrow, default)]
    commits: Raw<'a>,
}

/// The fields read from the envelope's nested objects (`repository`, `project`,
/// `object_attributes`); the rest of those objects is skipped, and a value that is not an object
/// gives nothing. A GitHub repository object is most of a push's bytes: it is read once, not
/// kept as text and parsed again.
#[derive(Default)]
struct WireNested<'a> {
    full_name: Raw<'a>,
    path_with_namespace: Raw<'a>,
    action: Raw<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for WireNested<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            FullName,
            PathWithNamespace,
            Action,
            #[serde(other)]
            Other,
        }

        struct Nested<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Nested<'a> {
            type Value = WireNested<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut nested = WireNested::default();
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::FullName => nested.full_name = map.next_value()?,
                        Field::PathWithNamespace => {
                            nested.path_with_namespace = map.next_value()?
                        }
                        Field::Action => nested.action = map.next_value()?,
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(nested)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(WireNested::default())
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(WireNested::default())
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(WireNested::default())
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(WireNested::default())
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(WireNested::default())
            }

            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(WireNested::default())
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(WireNested::default())
            }
        }

        deserializer.deserialize_any(Nested(std::marker::PhantomData))
    }
}

/// A string (or number) value as text, `None` for anything else or an empty string.
fn raw_text(raw: Raw<'_>) -> Option<String> {
    let raw = raw?.get();
    serde_json::from_str::<String>(raw)
        .ok()
        .or_else(|| {
            serde_json::from_str::<serde_json::Number>(raw)
                .ok()
                .map(|n| n.to_string())
        })
        .filter(|text| !text.is_empty())
}

fn raw_bool(raw: Raw<'_>) -> Option<bool> {
    serde_json::from_str(raw?.get()).ok()
}

/// Reads the [`Envelope`] of a JSON object payload and, when `with_push`, the payload as a push,
/// in one pass over the JSON text. Fails only on malformed JSON or a payload that is not an
/// object. The push's own errors are kept for later: the envelope is read before the
/// signature is checked, the push only counts after.
pub fn read(
    json: &[u8],
    with_push: bool,
) -> Result<(Envelope, Option<Result<Push, PayloadError>>), serde_json::Error> {
    let wire: WirePayload = serde_json::from_slice(json)?;
    let envelope = Envelope {
        repository: raw_text(wire.repository.full_name)
            .or_else(|| raw_text(wire.project.path_with_namespace)),
        object_kind: raw_text(wire.object_kind),
        action: raw_text(wire.action).or_else(|| raw_text(wire.object_attributes.action)),
    };
    Ok((envelope, with_push.then(|| wire.push())))
}

/// The payload as a JSON tree, for the events read field by field (not pushes, the hot path).
fn tree(json: &[u8]) -> Result<Value, PayloadError> {
    serde_json::from_slice(json).map_err(|error| PayloadError(format!("malformed JSON: {error}")))
}

#[derive(Debug, Deserialize)]
struct CommitAuthor {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
}

#[derive(Debug, Deserialize)]
struct WireCommit {
    id: String,
    #[serde(default)]
    message: String,
    timestamp: Option<String>,
    #[serde(default)]
    url: String,
    author: Option<CommitAuthor>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

/// Commits as both forges list them in a push: `id`, `message`, `timestamp`, `url`, `author`,
/// and the changed paths.
fn pushed_commits(list: Raw<'_>) -> Result<Vec<PushedCommit>, PayloadError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let wire: Vec<WireCommit> = serde_json::from_str(list.get())
        .map_err(|error| PayloadError(format!("push `commits` is malformed: {error}")))?;
    wire.into_iter()
        .map(|commit| {
            let sha = commit.id.trim().to_ascii_lowercase();
            if !is_sha(&sha) {
                return Err(PayloadError(format!(
                    "commit id `{}` is not a hex SHA",
                    commit.id.chars().take(80).collect::<String>()
                )));
            }
            let author = commit.author.unwrap_or(CommitAuthor {
                name: String::new(),
                email: String::new(),
            });
            Ok(PushedCommit {
                sha,
                message: commit.message,
                author_name: author.name,
                author_email: author.email,
                timestamp: commit
                    .timestamp
                    .as_deref()
                    .and_then(clock::parse_rfc3339_ms),
                url: commit.url,
                added: commit.added,
                removed: commit.removed,
                modified: commit.modified,
            })
        })
        .collect()
}

/// A full or abbreviated Git object id: 4 to 64 hex digits (SHA-1 or SHA-256 repositories).
pub fn is_sha(candidate: &str) -> bool {
    (4..=64).contains(&candidate.len()) && candidate.bytes().all(|b| b.is_ascii_hexdigit())
}

fn push(json: &[u8]) -> Result<Push, PayloadError> {
    let wire: WirePayload = serde_json::from_slice(json)
        .map_err(|error| PayloadError(format!("malformed push payload: {error}")))?;
    wire.push()
}

impl WirePayload<'_> {
    fn push(&self) -> Result<Push, PayloadError> {
        let git_ref = raw_text(self.git_ref)
            .ok_or_else(|| PayloadError("push payload has no `ref`".to_owned()))?;
        let branch = git_ref.strip_prefix("refs/heads/").map(str::to_owned);
        let tag = git_ref.strip_prefix("refs/tags/").map(str::to_owned);
        let deleted = raw_bool(self.deleted)
            .unwrap_or_else(|| raw_text(self.after).as_deref() == Some(NULL_SHA));
        Ok(Push {
            git_ref,
            branch,
            tag,
            deleted,
            forced: raw_bool(self.forced).unwrap_or(false),
            commits: if deleted {
                Vec::new()
            } else {
                pushed_commits(self.commits)?
            },
        })
    }
}

/// Whether `event` (GitHub's `X-GitHub-Event`, or GitLab's event name) is a push, whose
/// payload [`read`] can take in the same pass as the envelope.
pub fn is_push(gitlab: bool, event: &str) -> bool {
    match gitlab {
        false => event == "push",
        true => matches!(event, "push" | "tag_push"),
    }
}

/// GitHub: `X-GitHub-Event` and the JSON payload.
pub fn github(event: &str, json: &[u8]) -> Result<ForgeEvent, PayloadError> {
    match event {
        "ping" => Ok(ForgeEvent::Ping),
        "push" => push(json).map(ForgeEvent::Push),
        "pull_request" => github_pull_request(&tree(json)?).map(ForgeEvent::PullRequest),
        "issues" => github_issue(&tree(json)?).map(ForgeEvent::Issue),
        _ => Ok(ForgeEvent::Other),
    }
}

fn github_pull_request(payload: &Value) -> Result<PullRequestChange, PayloadError> {
    let pr = payload
        .get("pull_request")
        .filter(|pr| pr.is_object())
        .ok_or_else(|| PayloadError("pull_request payload has no `pull_request`".to_owned()))?;
    let action = text(payload, "/action");
    let number = number(payload, &["/number", "/pull_request/number"])
        .ok_or_else(|| PayloadError("pull_request payload has no `number`".to_owned()))?;
    let merged = pr.get("merged").and_then(Value::as_bool).unwrap_or(false)
        || pr.get("merged_at").is_some_and(|at| !at.is_null());
    let state = match opt_text(pr, "/state") {
        Some(state) => state,
        None if action == "closed" || merged => "closed".to_owned(),
        None => "open".to_owned(),
    };
    Ok(PullRequestChange {
        action,
        number,
        title: text(pr, "/title"),
        url: text(pr, "/html_url"),
        state,
        merged,
        merged_at: time_at(pr, "/merged_at"),
        head_ref: text(pr, "/head/ref"),
        head_sha: text(pr, "/head/sha"),
        base_ref: text(pr, "/base/ref"),
        base_sha: text(pr, "/base/sha"),
        body: text(pr, "/body"),
        author: text(pr, "/user/login"),
        created_at: time_at(pr, "/created_at"),
    })
}

fn github_issue(payload: &Value) -> Result<IssueChange, PayloadError> {
    let issue = payload
        .get("issue")
        .filter(|issue| issue.is_object())
        .ok_or_else(|| PayloadError("issues payload has no `issue`".to_owned()))?;
    let number = number(issue, &["/number"])
        .ok_or_else(|| PayloadError("issues payload has no `issue.number`".to_owned()))?;
    let labels = issue
        .get("labels")
        .and_then(Value::as_array)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|label| {
                    label
                        .get("name")
                        .and_then(Value::as_str)
                        .or_else(|| label.as_str())
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(IssueChange {
        action: text(payload, "/action"),
        number,
        title: text(issue, "/title"),
        url: text(issue, "/html_url"),
        state: opt_text(issue, "/state").unwrap_or_else(|| "open".to_owned()),
        labels,
        body: text(issue, "/body"),
    })
}

/// The short name Hookline keeps for a GitLab `X-Gitlab-Event` (`Push Hook` → `push`).
pub fn gitlab_event_name(header: &str) -> String {
    match header {
        "Push Hook" => "push",
        "Tag Push Hook" => "tag_push",
        "Merge Request Hook" => "merge_request",
        "Issue Hook" | "Confidential Issue Hook" => "issue",
        "Note Hook" | "Confidential Note Hook" => "note",
        "Pipeline Hook" => "pipeline",
        other => {
            return other
                .trim()
                .trim_end_matches(" Hook")
                .to_lowercase()
                .replace(' ', "_");
        }
    }
    .to_owned()
}

/// GitLab: the short event name (see [`gitlab_event_name`]) and the JSON payload.
pub fn gitlab(event: &str, json: &[u8]) -> Result<ForgeEvent, PayloadError> {
    match event {
        "push" | "tag_push" => push(json).map(ForgeEvent::Push),
        "merge_request" => gitlab_merge_request(&tree(json)?).map(ForgeEvent::PullRequest),
        "issue" => gitlab_issue(&tree(json)?).map(ForgeEvent::Issue),
        _ => Ok(ForgeEvent::Other),
    }
}

fn gitlab_merge_request(payload: &Value) -> Result<PullRequestChange, PayloadError> {
    let attributes = payload
        .get("object_attributes")
        .filter(|attributes| attributes.is_object())
        .ok_or_else(|| PayloadError("merge request payload has no `object_attributes`".into()))?;
    let number = number(attributes, &["/iid"]).ok_or_else(|| {
        PayloadError("merge request payload has no `object_attributes.iid`".into())
    })?;
    let gitlab_state = text(attributes, "/state");
    let merged = gitlab_state == "merged";
    let state = match gitlab_state.as_str() {
        "opened" | "locked" | "" => "open",
        _ => "closed",
    };
    Ok(PullRequestChange {
        action: text(attributes, "/action"),
        number,
        title: text(attributes, "/title"),
        url: text(attributes, "/url"),
        state: state.to_owned(),
        merged,
        merged_at: if merged {
            time_at(attributes, "/merged_at").or_else(|| time_at(attributes, "/updated_at"))
        } else {
            None
        },
        head_ref: text(attributes, "/source_branch"),
        head_sha: text(attributes, "/last_commit/id"),
        base_ref: text(attributes, "/target_branch"),
        base_sha: String::new(),
        body: text(attributes, "/description"),
        author: text(payload, "/user/username"),
        created_at: time_at(attributes, "/created_at"),
    })
}

fn gitlab_issue(payload: &Value) -> Result<IssueChange, PayloadError> {
    let attributes = payload
        .get("object_attributes")
        .filter(|attributes| attributes.is_object())
        .ok_or_else(|| PayloadError("issue payload has no `object_attributes`".to_owned()))?;
    let number = number(attributes, &["/iid"])
        .ok_or_else(|| PayloadError("issue payload has no `object_attributes.iid`".to_owned()))?;
    let labels = payload
        .get("labels")
        .or_else(|| attributes.get("labels"))
        .and_then(Value::as_array)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|label| label.get("title").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let state = match text(attributes, "/state").as_str() {
        "closed" => "closed",
        _ => "open",
    };
    Ok(IssueChange {
        action: text(attributes, "/action"),
        number,
        title: text(attributes, "/title"),
        url: text(attributes, "/url"),
        state: state.to_owned(),
        labels,
        body: text(attributes, "/description"),
    })
}

/// The experiment keys a pull request body names, one per `experiment_key: <key>` line (the name
/// compared without case, spaces around either part ignored).
pub fn experiment_keys(body: &str) -> Vec<String> {
    let mut keys: Vec<String> = body
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            (name.trim().eq_ignore_ascii_case("experiment_key") && !value.is_empty())
                .then(|| value.to_owned())
        })
        .collect();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn github(event: &str, payload: &Value) -> Result<ForgeEvent, PayloadError> {
        super::github(event, payload.to_string().as_bytes())
    }

    fn gitlab(event: &str, payload: &Value) -> Result<ForgeEvent, PayloadError> {
        super::gitlab(event, payload.to_string().as_bytes())
    }

    fn repository_of(payload: &Value) -> Option<String> {
        read(payload.to_string().as_bytes(), false)
            .unwrap()
            .0
            .repository
    }

    #[test]
    fn a_branch_push_lists_its_commits() {
        let payload = json!({
            "ref": "refs/heads/main", "after": "b".repeat(40), "deleted": false, "forced": false,
            "repository": {"full_name": "acme/api"},
            "commits": [{
                "id": "A".repeat(40), "message": "fix: x", "timestamp": "2026-03-02T11:00:00+01:00",
                "url": "https://github.com/acme/api/commit/a",
                "author": {"name": "Jane", "email": "jane@example.com", "username": "jane"},
                "added": ["src/new.rs"], "removed": [], "modified": ["Cargo.toml"]
            }]
        });
        let ForgeEvent::Push(push) = github("push", &payload).unwrap() else {
            panic!("not a push")
        };
        assert_eq!(push.branch.as_deref(), Some("main"));
        assert_eq!(push.tag, None);
        assert_eq!(push.commits.len(), 1);
        let commit = &push.commits[0];
        assert_eq!(commit.sha, "a".repeat(40));
        assert_eq!(
            commit.timestamp,
            clock::parse_rfc3339_ms("2026-03-02T10:00:00Z")
        );
        assert_eq!(commit.added, vec!["src/new.rs"]);
        assert_eq!(repository_of(&payload).as_deref(), Some("acme/api"));
    }

    #[test]
    fn the_envelope_reads_nested_objects_and_ignores_other_shapes() {
        let read_text = |text: &str| read(text.as_bytes(), false).map(|(envelope, _)| envelope);
        // An escaped key is the same key; the first of GitHub's and GitLab's names wins.
        let envelope = read_text(
            r#"{"repository": {"id": 1, "owner": {"full_name": "not/this"}, "full\u005fname": "acme/api",
                "topics": ["a", {"b": [1, 2.5, null, true]}]},
                "project": {"path_with_namespace": "group/app"},
                "object_attributes": {"action": "open"}}"#,
        )
        .unwrap();
        assert_eq!(envelope.repository.as_deref(), Some("acme/api"));
        assert_eq!(envelope.action.as_deref(), Some("open"));
        // A repository that is not an object names nothing, and is no error.
        for other in [r#""acme/api""#, "null", "[1, 2]", "42", "true"] {
            let envelope =
                read_text(&format!(r#"{{"repository": {other}, "action": "closed"}}"#)).unwrap();
            assert_eq!(
                (envelope.repository, envelope.action.as_deref()),
                (None, Some("closed"))
            );
        }
        // Broken JSON inside a nested object is still broken JSON.
        assert!(read_text(r#"{"repository": {"full_name": "acme/api", "x": [}}"#).is_err());
    }

    #[test]
    fn deleted_refs_and_tags_are_pushes_without_branch_commits() {
        let deleted = json!({"ref": "refs/heads/old", "after": NULL_SHA, "deleted": true,
                             "commits": []});
        let ForgeEvent::Push(push) = github("push", &deleted).unwrap() else {
            panic!()
        };
        assert!(push.deleted && push.commits.is_empty());
        let tag = json!({"ref": "refs/tags/v1.0.0", "after": "c".repeat(40), "commits": []});
        let ForgeEvent::Push(push) = github("push", &tag).unwrap() else {
            panic!()
        };
        assert_eq!((push.branch, push.tag.as_deref()), (None, Some("v1.0.0")));
    }

    #[test]
    fn malformed_pushes_say_what_is_wrong() {
        assert!(github("push", &json!({"commits": []})).is_err());
        let bad_sha = json!({"ref": "refs/heads/x", "commits": [{"id": "not-a-sha"}]});
        assert!(
            github("push", &bad_sha)
                .unwrap_err()
                .0
                .contains("not a hex SHA")
        );
        let bad_list = json!({"ref": "refs/heads/x", "commits": "nope"});
        assert!(
            github("push", &bad_list)
                .unwrap_err()
                .0
                .contains("push `commits` is malformed")
        );
        let null_list = json!({"ref": "refs/heads/x", "commits": null, "deleted": "odd"});
        let ForgeEvent::Push(push) = github("push", &null_list).unwrap() else {
            panic!()
        };
        assert!(push.commits.is_empty() && !push.deleted);
    }

    #[test]
    fn pull_requests_follow_the_seed_shape_and_the_full_one() {
        let seed = json!({
            "action": "opened", "number": 42,
            "pull_request": {"title": "t", "html_url": "u", "head": {"ref": "f", "sha": "abc123"},
                             "base": {"ref": "main"}, "body": "experiment_key: checkout-flow-v2"},
            "repository": {"full_name": "o/r"}
        });
        let ForgeEvent::PullRequest(pr) = github("pull_request", &seed).unwrap() else {
            panic!()
        };
        assert_eq!(
            (pr.number, pr.state.as_str(), pr.merged),
            (42, "open", false)
        );
        let merged = json!({
            "action": "closed", "number": 7,
            "pull_request": {"number": 7, "state": "closed", "merged": true,
                             "merged_at": "2026-03-02T10:00:00Z", "body": null,
                             "head": {"ref": "f", "sha": "d"}, "base": {"ref": "main", "sha": "e"}}
        });
        let ForgeEvent::PullRequest(pr) = github("pull_request", &merged).unwrap() else {
            panic!()
        };
        assert!(pr.merged && pr.state == "closed" && pr.body.is_empty());
        assert_eq!(
            pr.merged_at,
            clock::parse_rfc3339_ms("2026-03-02T10:00:00Z")
        );
    }

    #[test]
    fn gitlab_merge_requests_map_to_pull_requests() {
        let payload = json!({
            "object_kind": "merge_request", "user": {"username": "root"},
            "project": {"path_with_namespace": "group/sub/app"},
            "object_attributes": {"iid": 3, "title": "MR", "url": "https://gitlab.example/mr/3",
                "state": "merged", "action": "merge", "source_branch": "feat", "target_branch": "main",
                "last_commit": {"id": "f".repeat(40)}, "description": "experiment_key: exp-1",
                "updated_at": "2026-03-02 10:00:00 UTC"}
        });
        let ForgeEvent::PullRequest(pr) = gitlab("merge_request", &payload).unwrap() else {
            panic!()
        };
        assert_eq!(
            (pr.number, pr.state.as_str(), pr.merged),
            (3, "closed", true)
        );
        assert_eq!(
            pr.merged_at,
            clock::parse_rfc3339_ms("2026-03-02T10:00:00Z")
        );
        assert_eq!(repository_of(&payload).as_deref(), Some("group/sub/app"));
        assert_eq!(gitlab_event_name("Merge Request Hook"), "merge_request");
        assert_eq!(gitlab_event_name("Deployment Hook"), "deployment");
    }

    #[test]
    fn experiment_keys_are_read_from_their_own_lines() {
        let body = "Intro\n  Experiment_Key :  checkout-flow-v2  \nexperiment_key:\nnot experiment_key: x y";
        assert_eq!(experiment_keys(body), vec!["checkout-flow-v2"]);
        assert!(experiment_keys("experiment_key checkout").is_empty());
    }
}
