//! GitHub events as GitLab's webhooks carry them, field for field as GitLab documents its push,
//! tag push, merge request, note, issue and pipeline hooks. GitHub has no numeric project ids,
//! user display names in pushes, or GitLab's internal fields: those come out as GitLab sends them
//! when it has no value (`null`, `0`, `[]`, `{}`), and the documentation's mapping table says which.

use serde_json::{Value, json};

/// The all-zero SHA GitLab (and GitHub) use for "no commit": a created or deleted ref.
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Commits a GitLab push hook lists at most.
const MAX_COMMITS: usize = 20;

/// A hook payload: its `object_kind` and the body.
pub struct HookPayload {
    /// `push`, `tag_push`, `merge_request`, `note`, `issue` or `pipeline`.
    pub object_kind: &'static str,
    pub body: Value,
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn owned(value: &Value, pointer: &str) -> Value {
    value.pointer(pointer).cloned().unwrap_or(Value::Null)
}

/// GitLab's `2026-03-02 11:00:00 UTC` for an RFC 3339 time; `null` stays `null`.
fn gitlab_time(value: &Value) -> Value {
    match value.as_str().and_then(crate::clock::parse_rfc3339_ms) {
        Some(ms) => {
            let text = crate::clock::rfc3339_ms(ms);
            json!(format!("{} {} UTC", &text[..10], &text[11..19]))
        }
        None => Value::Null,
    }
}

/// GitLab's visibility levels: 0 private, 10 internal, 20 public.
fn visibility_level(repository: &Value) -> i64 {
    match text(repository, "/visibility") {
        Some("public") => 20,
        Some("internal") => 10,
        Some(_) => 0,
        None if repository["private"].as_bool() == Some(false) => 20,
        None => 0,
    }
}

fn project(repository: &Value) -> Value {
    let web_url = owned(repository, "/html_url");
    json!({
        "id": owned(repository, "/id"),
        "name": owned(repository, "/name"),
        "description": owned(repository, "/description"),
        "web_url": web_url,
        "avatar_url": Value::Null,
        "git_ssh_url": owned(repository, "/ssh_url"),
        "git_http_url": owned(repository, "/clone_url"),
        "namespace": owned(repository, "/owner/login"),
        "visibility_level": visibility_level(repository),
        "path_with_namespace": owned(repository, "/full_name"),
        "default_branch": owned(repository, "/default_branch"),
        "ci_config_path": "",
        "homepage": web_url,
        "url": owned(repository, "/ssh_url"),
        "ssh_url": owned(repository, "/ssh_url"),
        "http_url": owned(repository, "/clone_url"),
    })
}

fn repository(repository: &Value) -> Value {
    json!({
        "name": owned(repository, "/name"),
        "url": owned(repository, "/ssh_url"),
        "description": owned(repository, "/description"),
        "homepage": owned(repository, "/html_url"),
        "git_http_url": owned(repository, "/clone_url"),
        "git_ssh_url": owned(repository, "/ssh_url"),
        "visibility_level": visibility_level(repository),
    })
}

/// GitLab's `user` object from a GitHub account (`sender`, a PR's `user`).
fn user(account: &Value) -> Value {
    json!({
        "id": owned(account, "/id"),
        "name": account.get("name").filter(|name| name.is_string()).cloned()
            .unwrap_or_else(|| owned(account, "/login")),
        "username": owned(account, "/login"),
        "avatar_url": owned(account, "/avatar_url"),
        "email": account.get("email").filter(|email| email.is_string()).cloned()
            .unwrap_or_else(|| json!("[REDACTED]")),
    })
}

fn commit(github: &Value) -> Value {
    let message = text(github, "/message").unwrap_or_default();
    json!({
        "id": owned(github, "/id"),
        "message": message,
        "title": message.lines().next().unwrap_or_default(),
        "timestamp": owned(github, "/timestamp"),
        "url": owned(github, "/url"),
        "author": {
            "name": owned(github, "/author/name"),
            "email": owned(github, "/author/email"),
        },
        "added": github.get("added").cloned().unwrap_or_else(|| json!([])),
        "modified": github.get("modified").cloned().unwrap_or_else(|| json!([])),
        "removed": github.get("removed").cloned().unwrap_or_else(|| json!([])),
    })
}

/// A GitHub push as GitLab's push hook, or its tag push hook for `refs/tags/…`. A deleted ref has
/// `after` all zeros, `checkout_sha` null and no commits, as GitLab sends it.
pub fn push(github: &Value) -> HookPayload {
    let reference = text(github, "/ref").unwrap_or_default();
    let object_kind = if reference.starts_with("refs/tags/") {
        "tag_push"
    } else {
        "push"
    };
    let deleted =
        github["deleted"].as_bool().unwrap_or(false) || text(github, "/after") == Some(ZERO_SHA);
    let all_commits = github["commits"].as_array().map_or(0, Vec::len);
    // GitLab lists at most 20 commits (the newest) and counts them all in total_commits_count.
    let commits: Vec<Value> = github["commits"]
        .as_array()
        .map(|commits| {
            commits
                .iter()
                .skip(commits.len().saturating_sub(MAX_COMMITS))
                .map(commit)
                .collect()
        })
        .unwrap_or_default();
    let head = &github["head_commit"];
    let checkout_sha = if deleted {
        Value::Null
    } else {
        head.get("id")
            .cloned()
            .unwrap_or_else(|| owned(github, "/after"))
    };
    let sender = &github["sender"];
    let repo = &github["repository"];
    let body = json!({
        "object_kind": object_kind,
        "event_name": object_kind,
        "before": owned(github, "/before"),
        "after": owned(github, "/after"),
        "ref": reference,
        "ref_protected": false,
        "checkout_sha": checkout_sha,
        "message": Value::Null,
        "user_id": owned(sender, "/id"),
        // A push names its pusher by login only; the head commit's author is the person.
        "user_name": head.pointer("/author/name").cloned()
            .unwrap_or_else(|| owned(github, "/pusher/name")),
        "user_username": sender.get("login").cloned()
            .unwrap_or_else(|| owned(github, "/pusher/name")),
        "user_email": owned(github, "/pusher/email"),
        "user_avatar": owned(sender, "/avatar_url"),
        "project_id": owned(repo, "/id"),
        "project": project(repo),
        "commits": commits,
        "total_commits_count": all_commits,
        "push_options": {},
        "repository": repository(repo),
    });
    HookPayload { object_kind, body }
}

fn merge_request_state(pull: &Value) -> &'static str {
    match (
        text(pull, "/state"),
        pull["merged"].as_bool().unwrap_or(false),
    ) {
        (Some("open"), _) => "opened",
        (_, true) => "merged",
        _ => "closed",
    }
}

fn merge_request_attributes(pull: &Value, action: Option<&str>) -> Value {
    let repo = &pull["base"]["repo"];
    let mut attributes = json!({
        "id": owned(pull, "/id"),
        "iid": owned(pull, "/number"),
        "title": owned(pull, "/title"),
        "description": pull.get("body").cloned().unwrap_or(Value::Null),
        "state": merge_request_state(pull),
        "source_branch": owned(pull, "/head/ref"),
        "target_branch": owned(pull, "/base/ref"),
        "source_project_id": owned(pull, "/head/repo/id"),
        "target_project_id": owned(repo, "/id"),
        "author_id": owned(pull, "/user/id"),
        "assignee_id": owned(pull, "/assignee/id"),
        "created_at": gitlab_time(&pull["created_at"]),
        "updated_at": gitlab_time(&pull["updated_at"]),
        "merge_commit_sha": owned(pull, "/merge_commit_sha"),
        "merge_status": "unchecked",
        "draft": pull["draft"].as_bool().unwrap_or(false),
        "work_in_progress": pull["draft"].as_bool().unwrap_or(false),
        "url": owned(pull, "/html_url"),
        "source": project(&pull["head"]["repo"]),
        "target": project(repo),
        "last_commit": {
            "id": owned(pull, "/head/sha"),
            "message": "",
            "title": "",
            "timestamp": owned(pull, "/updated_at"),
            "url": format!("{}/commit/{}", text(repo, "/html_url").unwrap_or_default(),
                text(pull, "/head/sha").unwrap_or_default()),
            "author": {"name": owned(pull, "/user/login"), "email": "[REDACTED]"},
        },
        "labels": labels(&pull["labels"]),
    });
    if let Some(action) = action
        && let Some(object) = attributes.as_object_mut()
    {
        object.insert("action".to_owned(), json!(action));
    }
    attributes
}

fn labels(github: &Value) -> Value {
    Value::Array(
        github
            .as_array()
            .map(|labels| {
                labels
                    .iter()
                    .map(|label| {
                        json!({
                            "id": owned(label, "/id"),
                            "title": owned(label, "/name"),
                            "color": format!("#{}", text(label, "/color").unwrap_or("cccccc")),
                            "description": owned(label, "/description"),
                            "type": "ProjectLabel",
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// GitLab's merge request action for a GitHub pull request action.
fn merge_request_action(github: &Value) -> &'static str {
    match (
        text(github, "/action"),
        github["pull_request"]["merged"].as_bool().unwrap_or(false),
    ) {
        (Some("opened"), _) => "open",
        (Some("closed"), true) => "merge",
        (Some("closed"), false) => "close",
        (Some("reopened"), _) => "reopen",
        _ => "update",
    }
}

fn merge_request(github: &Value) -> HookPayload {
    let pull = &github["pull_request"];
    let repo = &github["repository"];
    let body = json!({
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": user(&github["sender"]),
        "project": project(repo),
        "object_attributes": merge_request_attributes(pull, Some(merge_request_action(github))),
        "labels": labels(&pull["labels"]),
        "changes": {},
        "repository": repository(repo),
    });
    HookPayload {
        object_kind: "merge_request",
        body,
    }
}

fn issue_state(issue: &Value) -> &'static str {
    if text(issue, "/state") == Some("open") {
        "opened"
    } else {
        "closed"
    }
}

fn issue_attributes(issue: &Value, project_id: &Value, action: Option<&str>) -> Value {
    let mut attributes = json!({
        "id": owned(issue, "/id"),
        "iid": owned(issue, "/number"),
        "title": owned(issue, "/title"),
        "description": issue.get("body").cloned().unwrap_or(Value::Null),
        "state": issue_state(issue),
        "author_id": owned(issue, "/user/id"),
        "assignee_id": owned(issue, "/assignee/id"),
        "project_id": project_id,
        "created_at": gitlab_time(&issue["created_at"]),
        "updated_at": gitlab_time(&issue["updated_at"]),
        "closed_at": gitlab_time(&issue["closed_at"]),
        "confidential": false,
        "type": "Issue",
        "url": owned(issue, "/html_url"),
        "labels": labels(&issue["labels"]),
    });
    if let Some(action) = action
        && let Some(object) = attributes.as_object_mut()
    {
        object.insert("action".to_owned(), json!(action));
    }
    attributes
}

fn issue(github: &Value) -> HookPayload {
    let issue = &github["issue"];
    let repo = &github["repository"];
    let action = match text(github, "/action") {
        Some("opened") => "open",
        Some("closed") => "close",
        Some("reopened") => "reopen",
        _ => "update",
    };
    let assignees: Vec<Value> = issue["assignees"]
        .as_array()
        .map(|people| people.iter().map(user).collect())
        .unwrap_or_default();
    let body = json!({
        "object_kind": "issue",
        "event_type": "issue",
        "user": user(&github["sender"]),
        "project": project(repo),
        "object_attributes": issue_attributes(issue, &owned(repo, "/id"), Some(action)),
        "repository": repository(repo),
        "assignees": assignees,
        "labels": labels(&issue["labels"]),
        "changes": {},
    });
    HookPayload {
        object_kind: "issue",
        body,
    }
}

/// A comment on an issue or pull request (`issue_comment`), or on a pull request's diff
/// (`pull_request_review_comment`), as GitLab's note hook.
fn note(github: &Value) -> HookPayload {
    let comment = &github["comment"];
    let repo = &github["repository"];
    let on_pull =
        github.get("pull_request").is_some() || github.pointer("/issue/pull_request").is_some();
    let action = match text(github, "/action") {
        Some("created") => "create",
        _ => "update",
    };
    let noteable = if github.get("pull_request").is_some() {
        &github["pull_request"]
    } else {
        &github["issue"]
    };
    let mut body = json!({
        "object_kind": "note",
        "event_type": "note",
        "user": user(&github["sender"]),
        "project_id": owned(repo, "/id"),
        "project": project(repo),
        "object_attributes": {
            "id": owned(comment, "/id"),
            "note": owned(comment, "/body"),
            "description": owned(comment, "/body"),
            "noteable_type": if on_pull { "MergeRequest" } else { "Issue" },
            "noteable_id": owned(noteable, "/id"),
            "author_id": owned(comment, "/user/id"),
            "project_id": owned(repo, "/id"),
            "commit_id": owned(comment, "/commit_id"),
            "line_code": Value::Null,
            "position": Value::Null,
            "system": false,
            "type": if github.get("pull_request").is_some() { json!("DiffNote") } else { Value::Null },
            "created_at": gitlab_time(&comment["created_at"]),
            "updated_at": gitlab_time(&comment["updated_at"]),
            "url": owned(comment, "/html_url"),
            "action": action,
        },
        "repository": repository(repo),
    });
    let (key, attributes) = if on_pull && github.get("pull_request").is_some() {
        ("merge_request", merge_request_attributes(noteable, None))
    } else if on_pull {
        // An issue comment on a pull request carries the pull request as an issue.
        (
            "merge_request",
            issue_attributes(noteable, &owned(repo, "/id"), None),
        )
    } else {
        (
            "issue",
            issue_attributes(noteable, &owned(repo, "/id"), None),
        )
    };
    if let Some(object) = body.as_object_mut() {
        object.insert(key.to_owned(), attributes);
    }
    HookPayload {
        object_kind: "note",
        body,
    }
}

/// GitLab's pipeline status for a GitHub run's status and conclusion.
fn pipeline_status(run: &Value) -> &'static str {
    match (text(run, "/status"), text(run, "/conclusion")) {
        (Some("queued" | "requested" | "waiting" | "pending"), _) => "pending",
        (Some("in_progress"), _) => "running",
        (_, Some("success")) => "success",
        (_, Some("cancelled")) => "canceled",
        (_, Some("skipped" | "neutral")) => "skipped",
        (_, Some(_)) => "failed",
        _ => "created",
    }
}

/// A `workflow_run` or `check_suite` as GitLab's pipeline hook.
fn pipeline(github: &Value) -> HookPayload {
    let run = github
        .get("workflow_run")
        .or_else(|| github.get("check_suite"))
        .unwrap_or(&Value::Null);
    let repo = &github["repository"];
    let status = pipeline_status(run);
    let detailed = match status {
        "success" => "passed",
        other => other,
    };
    let head = &run["head_commit"];
    let created = &run["created_at"];
    let finished = if matches!(status, "pending" | "running" | "created") {
        Value::Null
    } else {
        gitlab_time(&run["updated_at"])
    };
    let duration = match (
        text(run, "/run_started_at")
            .or_else(|| text(run, "/created_at"))
            .and_then(crate::clock::parse_rfc3339_ms),
        text(run, "/updated_at").and_then(crate::clock::parse_rfc3339_ms),
    ) {
        (Some(start), Some(end)) if !finished.is_null() => json!((end - start).max(0) / 1000),
        _ => Value::Null,
    };
    let body = json!({
        "object_kind": "pipeline",
        "object_attributes": {
            "id": owned(run, "/id"),
            "iid": run.get("run_number").cloned().unwrap_or(Value::Null),
            "name": run.get("name").cloned().unwrap_or(Value::Null),
            "ref": owned(run, "/head_branch"),
            "tag": false,
            "sha": owned(run, "/head_sha"),
            "before_sha": run.get("before").cloned().unwrap_or_else(|| json!(ZERO_SHA)),
            "source": run.get("event").cloned().unwrap_or_else(|| json!("push")),
            "status": status,
            "detailed_status": detailed,
            "stages": [],
            "created_at": gitlab_time(created),
            "finished_at": finished,
            "duration": duration,
            "queued_duration": Value::Null,
            "variables": [],
            "url": run.get("html_url").cloned().unwrap_or_else(|| owned(run, "/url")),
        },
        "merge_request": Value::Null,
        "user": user(&github["sender"]),
        "project": project(repo),
        "commit": {
            "id": owned(run, "/head_sha"),
            "message": owned(head, "/message"),
            "title": text(head, "/message").and_then(|m| m.lines().next()).unwrap_or_default(),
            "timestamp": owned(head, "/timestamp"),
            "url": format!("{}/commit/{}", text(repo, "/html_url").unwrap_or_default(),
                text(run, "/head_sha").unwrap_or_default()),
            "author": {
                "name": owned(head, "/author/name"),
                "email": owned(head, "/author/email"),
            },
        },
        "builds": [],
    });
    HookPayload {
        object_kind: "pipeline",
        body,
    }
}

/// The GitLab-format payload of a GitHub event, for the events hooks relay; `None` for others.
pub fn from_github(event: &str, payload: &Value) -> Option<HookPayload> {
    match event {
        "push" => Some(push(payload)),
        "pull_request" => Some(merge_request(payload)),
        // GitLab sends no note hook for a deleted comment.
        "issue_comment" | "pull_request_review_comment"
            if text(payload, "/action") == Some("deleted") =>
        {
            None
        }
        "issue_comment" | "pull_request_review_comment" => Some(note(payload)),
        "issues" => Some(issue(payload)),
        // GitHub Actions reports one run as a workflow run and as a check suite: its workflow
        // run is the pipeline, so hooks get it once.
        "check_suite" if text(payload, "/check_suite/app/slug") == Some("github-actions") => None,
        "workflow_run" | "check_suite" => Some(pipeline(payload)),
        _ => None,
    }
}

/// `object_kind` of a GitLab payload (GitLab events relay one to one).
pub fn object_kind_of(payload: &Value) -> Option<&'static str> {
    match payload.get("object_kind").and_then(Value::as_str)? {
        "push" => Some("push"),
        "tag_push" => Some("tag_push"),
        "merge_request" => Some("merge_request"),
        "note" => Some("note"),
        "issue" | "work_item" => Some("issue"),
        "pipeline" => Some("pipeline"),
        _ => None,
    }
}
