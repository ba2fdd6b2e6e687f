//! Commit analysis: what each changed file is, how risky the change is and why, and a diagnosis.
//!
//! Analysers sit behind [`Analyzer`]: the built-in [`rules`] analyser (deterministic, always
//! available) and the optional [`model`] analyser (an OpenAI-compatible chat API), which falls
//! back to the rules, saying why, whenever its call or its answer fails. Jobs come from pushes
//! (auto-analyze), from the API by hand, and run durably in the [`worker`].

pub mod api;
pub mod model;
pub mod pages;
pub mod rules;
pub mod worker;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::store::analysis as jobs;
use crate::store::record;

/// What a changed file is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FileClass {
    Source,
    Test,
    Config,
    Dependency,
    Migration,
    Infrastructure,
    Ci,
    Docs,
    Asset,
    Generated,
}

impl FileClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FileClass::Source => "source",
            FileClass::Test => "test",
            FileClass::Config => "config",
            FileClass::Dependency => "dependency",
            FileClass::Migration => "migration",
            FileClass::Infrastructure => "infrastructure",
            FileClass::Ci => "ci",
            FileClass::Docs => "docs",
            FileClass::Asset => "asset",
            FileClass::Generated => "generated",
        }
    }
}

/// `low` < 30 ≤ `medium` < 60 ≤ `high` < 85 ≤ `critical`.
pub fn level_for(score: u32) -> &'static str {
    match score {
        0..30 => "low",
        30..60 => "medium",
        60..85 => "high",
        _ => "critical",
    }
}

/// One changed file as the push or the GitHub API describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangedFile {
    pub path: String,
    /// `added`, `removed`, `modified` (or GitHub's `renamed`…).
    pub status: String,
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
    /// The diff, when GitHub gave one (sent to the model analyser, never stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// What is analysed: one commit, or a range of them as one change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeSet {
    pub files: Vec<ChangedFile>,
    /// Commit messages, newest last.
    pub messages: Vec<String>,
    pub forced: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileReport {
    pub path: String,
    pub status: String,
    pub class: FileClass,
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
}

/// One reason for the risk score, with its share of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Factor {
    pub name: String,
    pub weight: u32,
    pub detail: String,
}

/// The result of an analysis, as stored with the commit and returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Analysis {
    /// `rules` or `model`.
    pub analyzer: String,
    pub files: Vec<FileReport>,
    /// 0 to 100.
    pub risk_score: u32,
    /// `low`, `medium`, `high` or `critical`.
    pub risk_level: String,
    pub factors: Vec<Factor>,
    /// What changed, what could go wrong, what to check.
    pub diagnosis: String,
    /// Why the model's answer was not used, when the rules answered in its place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// An analyser of change sets.
pub trait Analyzer {
    fn analyse(&self, change: &ChangeSet) -> impl std::future::Future<Output = Analysis> + Send;
}

/// The rules.
pub struct RuleAnalyzer;

impl Analyzer for RuleAnalyzer {
    async fn analyse(&self, change: &ChangeSet) -> Analysis {
        rules::analyse(change)
    }
}

/// The analyser configuration asks for: the model (falling back to the rules) or the rules.
pub enum Configured {
    Rules(RuleAnalyzer),
    Model(model::ModelAnalyzer),
}

impl Configured {
    pub fn new(config: &crate::config::AnalysisConfig) -> anyhow::Result<Configured> {
        Ok(match &config.model_url {
            Some(_) => Configured::Model(model::ModelAnalyzer::new(config)?),
            None => Configured::Rules(RuleAnalyzer),
        })
    }
}

impl Analyzer for Configured {
    async fn analyse(&self, change: &ChangeSet) -> Analysis {
        match self {
            Configured::Rules(rules) => rules.analyse(change).await,
            Configured::Model(model) => model.analyse(change).await,
        }
    }
}

/// A stored commit as the push described it: its message and its added, removed and modified
/// paths (no line counts).
pub fn push_change_set(commit: &crate::store::record::Commit) -> ChangeSet {
    let paths = |json: &str| serde_json::from_str::<Vec<String>>(json).unwrap_or_default();
    let mut files = Vec::new();
    for (status, list) in [
        ("added", &commit.added),
        ("removed", &commit.removed),
        ("modified", &commit.modified),
    ] {
        files.extend(paths(list).into_iter().map(|path| ChangedFile {
            path,
            status: status.to_owned(),
            additions: None,
            deletions: None,
            patch: None,
        }));
    }
    ChangeSet {
        files,
        messages: vec![commit.message.clone()],
        forced: commit.forced,
    }
}

/// An analysis asked for by hand, as the API answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedAnalysis {
    pub job_id: String,
    pub commit_sha: String,
    /// `queued` (or `running` when a job for this commit was already under way).
    pub status: String,
}

/// Queues an analysis of one commit of a service (by full SHA or a unique prefix of 7+ hex
/// digits), unless one is already waiting or under way: then that one is the answer.
pub async fn request(
    state: &AppState,
    tenant_id: &str,
    service_id: &str,
    sha: &str,
) -> ApiResult<QueuedAnalysis> {
    let service = crate::record::services::load(state, tenant_id, service_id).await?;
    let commit = crate::record::commits::get(state, &service, sha)
        .await?
        .commit;
    if let Some(job_id) = jobs::open_job_of(&state.store, &commit.id).await? {
        return Ok(QueuedAnalysis {
            job_id,
            commit_sha: commit.sha,
            status: "queued".to_owned(),
        });
    }
    let mut tx = state.store.begin().await?;
    let job_id = record::enqueue_analysis(&mut tx, tenant_id, &service.id, &commit.id).await?;
    tx.commit().await?;
    Ok(QueuedAnalysis {
        job_id,
        commit_sha: commit.sha,
        status: "queued".to_owned(),
    })
}
