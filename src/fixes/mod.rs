//! Fix proposals for incidents.
//!
//! - A **revert** opens its pull request at once through GitHub's Git Data API: a tree on top of
//!   the base branch where every file the commit touched is put back as its parent had it (a file
//!   changed again since is a conflict), a commit, a branch, and the pull request. It is
//!   `pr_created` and emitted as `fix_proposal.generated`.
//! - An **AI fix** (summary, unified diff, confidence, risk) is `ready` and waits. Approving it
//!   emits `fix_proposal.applied` and queues a durable PR-creation job (the [`worker`]) that
//!   applies the diff exactly and opens the pull request; rejecting it emits
//!   `fix_proposal.rejected`.
//! - The pull request's fate follows `pull_request` webhooks, and a poll of the GitHub API as a
//!   fallback: `merged` or `closed`.

pub mod api;
pub mod pages;
pub mod patch;
pub mod proposals;
pub mod worker;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::github::{GithubClient, GithubError, TreeEntry};
use crate::store::fixes::FixProposal;

/// Why a pull request could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FixError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Patch(String),
}

/// A pull request just opened.
#[derive(Debug, Clone)]
pub struct Opened {
    pub number: i64,
    pub url: String,
    pub branch: String,
}

/// The `data` of `fix_proposal.generated`.
pub fn generated_data(fix: &FixProposal) -> Value {
    json!({
        "proposal_id": fix.id,
        "incident_id": fix.incident_id,
        "fix_type": fix.fix_type,
        "status": fix.status,
        "confidence_score": fix.confidence_score,
        "risk_assessment": fix.risk_assessment,
        "summary": fix.summary,
    })
}

/// The `data` of `fix_proposal.applied`.
pub fn applied_data(fix: &FixProposal) -> Value {
    json!({"proposal_id": fix.id, "incident_id": fix.incident_id, "fix_type": fix.fix_type})
}

/// The `data` of `fix_proposal.rejected`.
pub fn rejected_data(fix: &FixProposal) -> Value {
    json!({
        "proposal_id": fix.id,
        "incident_id": fix.incident_id,
        "fix_type": fix.fix_type,
        "reason": fix.rejection_reason,
    })
}

fn file_entry(path: &str, sha: Option<String>) -> TreeEntry {
    TreeEntry {
        path: path.to_owned(),
        mode: "100644",
        kind: "blob",
        content: None,
        sha: Some(sha),
    }
}

/// Commits `entries` on top of `base`'s head as branch `branch` and opens the pull request.
#[expect(
    clippy::too_many_arguments,
    reason = "the Git Data calls need every one of them"
)]
async fn commit_and_open(
    github: &GithubClient,
    token: &str,
    repository: &str,
    base: &str,
    head: &str,
    entries: &[TreeEntry],
    branch: &str,
    message: &str,
    body: &str,
) -> Result<Opened, FixError> {
    let head_tree = github.commit_tree(token, repository, head).await?;
    let tree = github
        .create_tree(token, repository, &head_tree, entries)
        .await?;
    let commit = github
        .create_commit(token, repository, message, &tree, head)
        .await?;
    github
        .create_branch(token, repository, branch, &commit)
        .await?;
    let title = message.lines().next().unwrap_or(message);
    let pull = github
        .create_pull(token, repository, title, branch, base, body)
        .await?;
    Ok(Opened {
        number: pull.number,
        url: pull.html_url,
        branch: branch.to_owned(),
    })
}

/// Opens a pull request reverting `sha` on `base`.
pub async fn open_revert(
    github: &GithubClient,
    token: &str,
    repository: &str,
    base: &str,
    sha: &str,
    proposal_id: &str,
) -> Result<Opened, FixError> {
    let commit = github.commit(token, repository, sha).await?;
    let parent = commit
        .parents
        .first()
        .map(|parent| parent.sha.clone())
        .ok_or_else(|| FixError::Conflict("a root commit cannot be reverted".to_owned()))?;
    let head = github.branch_head(token, repository, base).await?;
    let mut entries = Vec::with_capacity(commit.files.len());
    for file in &commit.files {
        let now = github
            .file_at(token, repository, &file.filename, &head)
            .await?;
        let after_commit = file.sha.clone().filter(|_| file.status != "removed");
        if now.as_ref().map(|content| content.sha.clone()) != after_commit {
            return Err(FixError::Conflict(format!(
                "`{}` changed on {base} after {}; revert it by hand",
                file.filename,
                &sha[..sha.len().min(12)]
            )));
        }
        let before = github
            .file_at(token, repository, &file.filename, &parent)
            .await?;
        entries.push(file_entry(
            &file.filename,
            before.map(|content| content.sha),
        ));
    }
    let subject = commit
        .commit
        .message
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let message = format!("Revert \"{subject}\"\n\nThis reverts commit {sha}.");
    let branch = format!(
        "hookline/revert-{}-{}",
        &sha[..sha.len().min(7)],
        short(proposal_id)
    );
    let body = format!("Opened by Hookline for fix proposal `{proposal_id}`: reverts {sha}.");
    commit_and_open(
        github, token, repository, base, &head, &entries, &branch, &message, &body,
    )
    .await
}

/// Opens a pull request applying an AI fix's unified diff on `base`.
pub async fn open_patch(
    github: &GithubClient,
    token: &str,
    repository: &str,
    base: &str,
    fix: &FixProposal,
) -> Result<Opened, FixError> {
    let files = patch::parse(fix.patch.as_deref().unwrap_or("")).map_err(FixError::Patch)?;
    let head = github.branch_head(token, repository, base).await?;
    let mut entries = Vec::with_capacity(files.len());
    for file in &files {
        let current = github.file_at(token, repository, &file.path, &head).await?;
        let text = match &current {
            Some(content) => decode(content)?,
            None if file.change == patch::Change::Add => String::new(),
            None => {
                return Err(FixError::Patch(format!(
                    "`{}` does not exist on {base}",
                    file.path
                )));
            }
        };
        match patch::apply(&text, file).map_err(FixError::Patch)? {
            Some(new_text) => entries.push(TreeEntry {
                path: file.path.clone(),
                mode: "100644",
                kind: "blob",
                content: Some(new_text),
                sha: None,
            }),
            None => entries.push(file_entry(&file.path, None)),
        }
    }
    let message = format!(
        "{}\n\nFix proposal {} for incident {}.",
        fix.summary, fix.id, fix.incident_id
    );
    let branch = format!("hookline/fix-{}", short(&fix.id));
    let body = format!(
        "Opened by Hookline for fix proposal `{}` (confidence {}%, risk {}).",
        fix.id,
        fix.confidence_score.unwrap_or(0),
        fix.risk_assessment.as_deref().unwrap_or("unknown")
    );
    commit_and_open(
        github, token, repository, base, &head, &entries, &branch, &message, &body,
    )
    .await
}

fn decode(content: &crate::github::FileContent) -> Result<String, FixError> {
    if content.encoding != "base64" {
        return Err(FixError::Patch(format!(
            "unexpected content encoding `{}`",
            content.encoding
        )));
    }
    let cleaned: String = content.content.split_whitespace().collect();
    let bytes = STANDARD
        .decode(cleaned)
        .map_err(|error| FixError::Patch(format!("undecodable file content: {error}")))?;
    String::from_utf8(bytes).map_err(|_| FixError::Patch("the file is not UTF-8 text".to_owned()))
}

/// The last eight characters of an id, for branch names.
fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}
