//! The forge payload reader: a webhook body (JSON, or form-encoded with a `payload` field) as
//! GitHub or GitLab would send it, read for its envelope and push, then as the named event.
//! The first byte picks the content type, the forge and the event.
#![no_main]

use hookline::inbound::{forge, payload_of};
use libfuzzer_sys::fuzz_target;

const GITHUB_EVENTS: [&str; 8] = [
    "push",
    "pull_request",
    "issues",
    "issue_comment",
    "pull_request_review_comment",
    "workflow_run",
    "check_suite",
    "ping",
];
const GITLAB_EVENTS: [&str; 6] = [
    "Push Hook",
    "Tag Push Hook",
    "Merge Request Hook",
    "Issue Hook",
    "Note Hook",
    "Pipeline Hook",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = if selector & 1 == 0 {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    let gitlab = selector & 2 != 0;
    let pick = usize::from(selector >> 2);
    if let Ok(payload) = payload_of(content_type, body, true) {
        if gitlab {
            let event = forge::gitlab_event_name(GITLAB_EVENTS[pick % GITLAB_EVENTS.len()]);
            let _ = forge::gitlab(&event, &payload.json);
        } else {
            let _ = forge::github(GITHUB_EVENTS[pick % GITHUB_EVENTS.len()], &payload.json);
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = forge::experiment_keys(text);
    }
});
