//! The pages of fix proposals: the list by status, and a proposal's page with its diff (lines
//! added and removed marked by sign and by colour), confidence, risk, its pull request and the
//! pull request's state, and Approve / Reject with a reason. Deciding calls
//! [`super::proposals::approve`] and [`super::proposals::reject`], as the JSON API does.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::Deserialize;

use super::proposals::{self, STATUSES};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::incidents::pages::FixRow;
use crate::people::SignedIn;
use crate::store::deploys;
use crate::store::fixes::{self, FixProposal};
use crate::store::record;
use crate::web::{
    Chrome, CsrfForm, PageResult, Section, Viewer, redirect_with_flash, render, when,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/fix-proposals", get(list_page))
        .route("/fix-proposals/{id}", get(proposal_page))
        .route("/fix-proposals/{id}/approve", post(approve))
        .route("/fix-proposals/{id}/reject", post(reject))
}

crate::web::pages!(ListPage, ProposalPage);

fn chrome(viewer: &SignedIn, headers: &HeaderMap, title: impl Into<String>) -> Chrome {
    Chrome::new(viewer, headers, title, Section::FixProposals)
}

/// The badge class of a proposal's status.
pub fn status_class(status: &str) -> &'static str {
    match status {
        "ready" => "warn",
        "applied" | "pr_created" => "muted",
        "merged" => "merged",
        "rejected" | "failed" => "bad",
        _ => "muted",
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    status: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "fixes/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<FixRow>,
    next_cursor: Option<String>,
    status: String,
    statuses: [&'static str; 7],
}

async fn list_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let status = match query.status.as_deref().filter(|status| !status.is_empty()) {
        None => None,
        Some(status) => {
            Some(proposals::check_status(status).map_err(|_| ApiError::NotFound("page"))?)
        }
    };
    let page = PageQuery::new(None, query.cursor);
    let limit = page.limit()?;
    let rows = fixes::list(
        &state.store,
        &viewer.user.tenant_id,
        None,
        status,
        page.cursor(Kind::FixProposal)?.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok(render(&ListPage {
        chrome: chrome(&viewer, &headers, "Fix proposals"),
        rows: rows.iter().map(FixRow::of).collect(),
        next_cursor,
        status: status.unwrap_or("").to_owned(),
        statuses: STATUSES,
    }))
}

/// One line of a unified diff on the page.
pub struct DiffLine {
    /// `+`, `−`, a space, or `@` for a hunk or file header.
    pub sign: &'static str,
    pub text: String,
    pub class: &'static str,
}

/// The lines of a unified diff, each with its sign apart from its text.
pub fn diff_lines(patch: &str) -> Vec<DiffLine> {
    patch
        .lines()
        .map(|line| {
            let (sign, class, text) = if line.starts_with("+++") || line.starts_with("---") {
                ("", "file", line)
            } else if line.starts_with("@@") {
                ("", "hunk", line)
            } else if let Some(rest) = line.strip_prefix('+') {
                ("+", "add", rest)
            } else if let Some(rest) = line.strip_prefix('-') {
                ("−", "del", rest)
            } else {
                (" ", "ctx", line.strip_prefix(' ').unwrap_or(line))
            };
            DiffLine {
                sign,
                text: text.to_owned(),
                class,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "fixes/proposal.html")]
struct ProposalPage {
    chrome: Chrome,
    fix: FixProposal,
    row: FixRow,
    incident_title: String,
    diff: Vec<DiffLine>,
    additions: usize,
    deletions: usize,
    pr_state: String,
    can_decide: bool,
    updated: String,
}

async fn proposal_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let fix = proposals::load(&state, tenant_id, &id).await?;
    let incident_title = deploys::get_incident(&state.store, tenant_id, &fix.incident_id)
        .await
        .map(|incident| incident.title)
        .unwrap_or_default();
    let pr_state = match fix.pr_number {
        Some(number) => {
            match record::get_pull_request(&state.store, tenant_id, &fix.repository, number).await {
                Ok(pr) => crate::record::forge::pull_request_state(&pr).to_owned(),
                Err(_) => "open".to_owned(),
            }
        }
        None => String::new(),
    };
    let diff = fix.patch.as_deref().map(diff_lines).unwrap_or_default();
    Ok(render(&ProposalPage {
        chrome: chrome(&viewer, &headers, fix.summary.clone()),
        row: FixRow::of(&fix),
        additions: diff.iter().filter(|line| line.class == "add").count(),
        deletions: diff.iter().filter(|line| line.class == "del").count(),
        diff,
        incident_title,
        pr_state,
        can_decide: fix.status == "ready",
        updated: when(fix.updated_at),
        fix,
    }))
}

async fn decide(state: &AppState, viewer: &SignedIn, id: &str, reason: Option<&str>) -> PageResult {
    if !ids::is_valid(Kind::FixProposal, id) {
        return Err(ApiError::NotFound("fix proposal").into());
    }
    let page = format!("/fix-proposals/{id}");
    let tenant_id = &viewer.user.tenant_id;
    let decided = match reason {
        None => proposals::approve(state, tenant_id, id).await,
        Some(reason) => proposals::reject(state, tenant_id, id, Some(reason)).await,
    };
    match decided {
        Ok(fix) if fix.status == "applied" => Ok(redirect_with_flash(
            &page,
            "Approved: the pull request is being opened.",
        )),
        Ok(_) => Ok(redirect_with_flash(&page, "Rejected.")),
        Err(ApiError::Conflict(why) | ApiError::Unprocessable(why)) => Ok(redirect_with_flash(
            &page,
            &format!("Nothing changed: {why}."),
        )),
        Err(error) => Err(error.into()),
    }
}

async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    decide(&state, &viewer, &id, None).await
}

async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    decide(&state, &viewer, &id, Some(form.get("reason"))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_marks_each_line_by_its_sign() {
        let lines = diff_lines("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n keep\n-old\n+new\n");
        let signs: Vec<(&str, &str, &str)> = lines
            .iter()
            .map(|line| (line.sign, line.class, line.text.as_str()))
            .collect();
        assert_eq!(
            signs,
            [
                ("", "file", "--- a/x"),
                ("", "file", "+++ b/x"),
                ("", "hunk", "@@ -1,2 +1,2 @@"),
                (" ", "ctx", "keep"),
                ("−", "del", "old"),
                ("+", "add", "new"),
            ]
        );
    }
}
