//! The pages of a service's commits: the list with its filters and risk badges, and a commit's
//! page with its files by class, the risk score with every factor, the diagnosis, and
//! Analyze / Re-analyze (in place with htmx, a plain form without it). Listing goes through
//! [`crate::record::commits`] and analysing through [`super::request`], as the JSON API does.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Analysis, FileReport, rules};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::paging::PageQuery;
use crate::people::SignedIn;
use crate::record::commits::{self, Filter, RISK_LEVELS, WithBranches};
use crate::record::services;
use crate::store::services::Service;
use crate::web::{
    Chrome, CsrfForm, FormErrors, PageError, PageResult, Section, Viewer, redirect_with_flash,
    render, when,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/services/{id}/commits", get(list_page))
        .route("/services/{id}/commits/{sha}", get(commit_page))
        .route("/services/{id}/commits/{sha}/analysis", get(analysis_part))
        .route("/services/{id}/commits/{sha}/analyze", post(analyze))
}

crate::web::pages!(ListPage, CommitPage, AnalysisPart);

/// The CSS class of a risk level's badge.
pub fn risk_class(level: &str) -> &'static str {
    match level {
        "low" => "ok",
        "medium" => "warn",
        "high" => "bad",
        "critical" => "critical",
        _ => "muted",
    }
}

/// A commit's first line, for lists.
pub fn subject(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(99).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// A commit as a row of a list.
pub struct CommitRow {
    pub sha: String,
    pub short_sha: String,
    pub subject: String,
    pub author: String,
    pub committed: String,
    pub branches: Vec<String>,
    pub risk_level: String,
    pub risk_score: String,
    pub risk_class: &'static str,
    pub status: String,
}

impl CommitRow {
    pub fn of(commit: &crate::store::record::Commit, branches: Vec<String>) -> CommitRow {
        let level = commit.risk_level.clone().unwrap_or_default();
        CommitRow {
            short_sha: commit.sha.chars().take(7).collect(),
            subject: subject(&commit.message),
            author: commit.author_name.clone(),
            committed: commit.committed_at.map(when).unwrap_or_default(),
            branches,
            risk_score: commit
                .risk_score
                .map(|score| score.to_string())
                .unwrap_or_default(),
            risk_class: risk_class(&level),
            risk_level: level,
            status: commit.analysis_status.clone().unwrap_or_default(),
            sha: commit.sha.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    branch: Option<String>,
    author: Option<String>,
    /// `YYYY-MM-DD` (from a date field) or RFC 3339.
    since: Option<String>,
    until: Option<String>,
    risk: Option<String>,
    cursor: Option<String>,
}

/// A date field's day as the RFC 3339 time it stands for: its first or its last second.
fn day_bound(value: &Option<String>, end_of_day: bool) -> Option<String> {
    let value = value
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())?;
    let is_day = value.len() == 10
        && value.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    Some(match (is_day, end_of_day) {
        (true, false) => format!("{value}T00:00:00Z"),
        (true, true) => format!("{value}T23:59:59.999Z"),
        (false, _) => value.to_owned(),
    })
}

#[derive(Template)]
#[template(path = "analysis/commits.html")]
struct ListPage {
    chrome: Chrome,
    service: Service,
    tab: &'static str,
    rows: Vec<CommitRow>,
    next_cursor: Option<String>,
    /// The filters as typed, for the form and the next page's link.
    branch: String,
    author: String,
    since: String,
    until: String,
    risk: String,
    risk_levels: [&'static str; 4],
    filtered: bool,
    query_string: String,
    errors: FormErrors,
}

async fn list_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let service = services::load(&state, &viewer.user.tenant_id, &id).await?;
    let filter = Filter {
        branch: query.branch.clone(),
        author: query.author.clone(),
        since: day_bound(&query.since, false),
        until: day_bound(&query.until, true),
        risk: query.risk.clone(),
    };
    let text = |value: &Option<String>| value.as_deref().unwrap_or("").trim().to_owned();
    let mut errors = FormErrors::default();
    let (rows, next_cursor) = match commits::list(
        &state,
        &service,
        &filter,
        &PageQuery::new(None, query.cursor),
    )
    .await
    {
        Ok(found) => found,
        Err(error @ ApiError::BadRequest(_)) => {
            errors = FormErrors::from_api(error, &["since", "until", "risk", "cursor"])?;
            (Vec::new(), None)
        }
        Err(error) => return Err(error.into()),
    };
    let pairs = [
        ("branch", text(&query.branch)),
        ("author", text(&query.author)),
        ("since", text(&query.since)),
        ("until", text(&query.until)),
        ("risk", text(&query.risk)),
    ];
    let query_string: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, value)| !value.is_empty()))
        .finish();
    Ok(render(&ListPage {
        chrome: Chrome::new(
            &viewer,
            &headers,
            format!("Commits · {}", service.name),
            Section::Services,
        ),
        rows: rows
            .into_iter()
            .map(|found| CommitRow::of(&found.commit, found.branches))
            .collect(),
        next_cursor,
        filtered: pairs.iter().any(|(_, value)| !value.is_empty()),
        branch: text(&query.branch),
        author: text(&query.author),
        since: text(&query.since),
        until: text(&query.until),
        risk: text(&query.risk),
        risk_levels: RISK_LEVELS,
        query_string,
        errors,
        service,
        tab: "commits",
    }))
}

/// Files of one class, for the commit page.
pub struct FileGroup {
    pub class: &'static str,
    pub files: Vec<FileReport>,
}

/// The analysis section of a commit page, and the fragment htmx swaps in.
pub struct AnalysisView {
    pub service_id: String,
    pub sha: String,
    /// `not analysed`, `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// An analysis waits or runs: the fragment asks again shortly.
    pub pending: bool,
    pub analysis: Option<Analysis>,
    pub risk_class: &'static str,
    pub analyzed: String,
    pub groups: Vec<FileGroup>,
    /// The diagnosis in its parts (what changed, what could go wrong, what to check).
    pub diagnosis: Vec<String>,
}

fn group_files(files: Vec<FileReport>) -> Vec<FileGroup> {
    let mut groups: Vec<FileGroup> = Vec::new();
    let mut files = files;
    files.sort_by(|a, b| (a.class, &a.path).cmp(&(b.class, &b.path)));
    for file in files {
        match groups.last_mut() {
            Some(group) if group.class == file.class.as_str() => group.files.push(file),
            _ => groups.push(FileGroup {
                class: file.class.as_str(),
                files: vec![file],
            }),
        }
    }
    groups
}

impl AnalysisView {
    fn of(found: &WithBranches) -> AnalysisView {
        let commit = &found.commit;
        let analysis: Option<Analysis> = commit
            .analysis
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        let status = match commit.analysis_status.as_deref() {
            Some(status) => status.to_owned(),
            None if analysis.is_some() => "done".to_owned(),
            None => "not analysed".to_owned(),
        };
        // Before an analysis, the push's file list classified by the same rules.
        let files = match &analysis {
            Some(analysis) => analysis.files.clone(),
            None => super::push_change_set(commit)
                .files
                .into_iter()
                .map(|file| FileReport {
                    class: rules::classify(&file.path),
                    path: file.path,
                    status: file.status,
                    additions: None,
                    deletions: None,
                })
                .collect(),
        };
        AnalysisView {
            service_id: commit.service_id.clone(),
            sha: commit.sha.clone(),
            pending: matches!(status.as_str(), "queued" | "running"),
            status,
            risk_class: analysis
                .as_ref()
                .map(|analysis| risk_class(&analysis.risk_level))
                .unwrap_or("muted"),
            diagnosis: analysis
                .as_ref()
                .map(|analysis| split_diagnosis(&analysis.diagnosis))
                .unwrap_or_default(),
            analysis,
            analyzed: commit.analyzed_at.map(when).unwrap_or_default(),
            groups: group_files(files),
        }
    }
}

/// The diagnosis's sentences that begin a part ("What changed:", "What could go wrong:", "What
/// to check:") start a paragraph of their own.
fn split_diagnosis(text: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut rest = text.trim();
    let starts = ["What could go wrong", "What to check"];
    loop {
        let next = starts
            .iter()
            .filter_map(|start| rest[1.min(rest.len())..].find(start).map(|at| at + 1))
            .min();
        match next {
            Some(at) if rest.is_char_boundary(at) => {
                parts.push(rest[..at].trim().to_owned());
                rest = rest[at..].trim_start();
            }
            _ => {
                if !rest.is_empty() {
                    parts.push(rest.to_owned());
                }
                return parts;
            }
        }
    }
}

#[derive(Template)]
#[template(path = "analysis/commit.html")]
struct CommitPage {
    chrome: Chrome,
    service: Service,
    row: CommitRow,
    message: String,
    author_email: String,
    url: String,
    forced: bool,
    ingested: String,
    view: AnalysisView,
}

async fn find(
    state: &AppState,
    viewer: &SignedIn,
    id: &str,
    sha: &str,
) -> PageResult<(Service, WithBranches)> {
    let service = services::load(state, &viewer.user.tenant_id, id).await?;
    let found = match commits::get(state, &service, sha).await {
        Ok(found) => found,
        Err(ApiError::BadRequest(_)) => return Err(ApiError::NotFound("commit").into()),
        Err(error) => return Err(error.into()),
    };
    Ok((service, found))
}

async fn commit_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path((id, sha)): Path<(String, String)>,
) -> PageResult {
    let (service, found) = find(&state, &viewer, &id, &sha).await?;
    let row = CommitRow::of(&found.commit, found.branches.clone());
    Ok(render(&CommitPage {
        chrome: Chrome::new(
            &viewer,
            &headers,
            format!("Commit {} · {}", row.short_sha, service.name),
            Section::Services,
        ),
        view: AnalysisView::of(&found),
        message: found.commit.message.clone(),
        author_email: found.commit.author_email.clone(),
        url: found.commit.url.clone(),
        forced: found.commit.forced,
        ingested: when(found.commit.created_at),
        row,
        service,
    }))
}

#[derive(Template)]
#[template(path = "analysis/analysis_part.html")]
struct AnalysisPart {
    chrome: Chrome,
    view: AnalysisView,
}

async fn analysis_part(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path((id, sha)): Path<(String, String)>,
) -> PageResult {
    let (_, found) = find(&state, &viewer, &id, &sha).await?;
    Ok(render(&AnalysisPart {
        chrome: Chrome::new(&viewer, &headers, "Analysis", Section::Services),
        view: AnalysisView::of(&found),
    }))
}

async fn analyze(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, sha)): Path<(String, String)>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    let page = format!("/services/{id}/commits/{sha}");
    let queued = match super::request(&state, &viewer.user.tenant_id, &id, &sha).await {
        Ok(queued) => queued,
        Err(ApiError::BadRequest(_)) => return Err(ApiError::NotFound("commit").into()),
        Err(error) => return Err(PageError::from(error)),
    };
    if headers.contains_key("hx-request") {
        let (_, found) = find(&state, &viewer, &id, &queued.commit_sha).await?;
        return Ok(render(&AnalysisPart {
            chrome: Chrome::new(&viewer, &headers, "Analysis", Section::Services),
            view: AnalysisView::of(&found),
        })
        .into_response());
    }
    Ok(redirect_with_flash(
        &page,
        "Analysis queued: the result appears here when it is done.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_from_a_date_field_covers_the_whole_day() {
        assert_eq!(
            day_bound(&Some("2026-03-02".into()), false).as_deref(),
            Some("2026-03-02T00:00:00Z")
        );
        assert_eq!(
            day_bound(&Some("2026-03-02".into()), true).as_deref(),
            Some("2026-03-02T23:59:59.999Z")
        );
        assert_eq!(
            day_bound(&Some("2026-03-02T10:00:00Z".into()), true).as_deref(),
            Some("2026-03-02T10:00:00Z")
        );
        assert_eq!(day_bound(&Some(" ".into()), true), None);
    }

    #[test]
    fn the_diagnosis_reads_in_its_parts() {
        let parts = split_diagnosis(
            "What changed: 2 file(s). What could go wrong: the migration can lock. What to check: run it.",
        );
        assert_eq!(
            parts,
            [
                "What changed: 2 file(s).",
                "What could go wrong: the migration can lock.",
                "What to check: run it."
            ]
        );
        assert_eq!(split_diagnosis("Plain."), ["Plain."]);
    }
}
