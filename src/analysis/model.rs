//! The model analyser: asks an OpenAI-compatible `/v1/chat/completions` for a JSON analysis,
//! checks the answer, and falls back to the rules (recording why) when the call fails or the
//! answer does not hold up.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Analysis, Analyzer, ChangeSet, Factor, FileClass, FileReport, level_for, rules};
use crate::config::{AnalysisConfig, Secret};

/// Diff text sent per file at most, so one huge file cannot fill the prompt.
const MAX_PATCH_CHARS: usize = 4_000;

pub struct ModelAnalyzer {
    http: reqwest::Client,
    endpoint: String,
    model: String,
    api_key: Option<Secret>,
}

const SYSTEM_PROMPT: &str = "You review code changes for release risk. Answer with one JSON object: \
{\"files\": [{\"path\": string, \"class\": one of source|test|config|dependency|migration|\
infrastructure|ci|docs|asset|generated}], \"risk_score\": integer 0-100, \"factors\": [{\"name\": \
string, \"weight\": integer, \"detail\": string}], \"diagnosis\": string saying what changed, what \
could go wrong and what to check}. Classify every file given.";

#[derive(Deserialize)]
struct ModelFile {
    path: String,
    class: FileClass,
}

#[derive(Deserialize)]
struct ModelAnswer {
    files: Vec<ModelFile>,
    risk_score: u32,
    factors: Vec<Factor>,
    diagnosis: String,
}

impl ModelAnalyzer {
    pub fn new(config: &AnalysisConfig) -> anyhow::Result<ModelAnalyzer> {
        crate::outbound::client::install_crypto_provider();
        let base = config
            .model_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("analysis.model_url is not set"))?;
        Ok(ModelAnalyzer {
            http: reqwest::Client::builder()
                .user_agent(format!("Hookline/{}", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_millis(config.timeout_ms))
                .build()?,
            endpoint: format!("{}/v1/chat/completions", base.trim_end_matches('/')),
            model: config.model.clone(),
            api_key: config.api_key.clone(),
        })
    }

    fn prompt(change: &ChangeSet) -> String {
        let files: Vec<Value> = change
            .files
            .iter()
            .map(|file| {
                json!({
                    "path": file.path,
                    "status": file.status,
                    "additions": file.additions,
                    "deletions": file.deletions,
                    "patch": file.patch.as_deref().map(|patch| patch.chars().take(MAX_PATCH_CHARS).collect::<String>()),
                })
            })
            .collect();
        json!({"messages": change.messages, "forced_push": change.forced, "files": files})
            .to_string()
    }

    async fn ask(&self, change: &ChangeSet) -> Result<Analysis, String> {
        let mut request = self.http.post(&self.endpoint).json(&json!({
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": Self::prompt(change)},
            ],
        }));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                "the model call timed out".to_owned()
            } else {
                format!("the model could not be reached: {}", error.without_url())
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the model API answered {}", status.as_u16()));
        }
        let body: Value = response.json().await.map_err(|error| {
            format!("the model API answer is not JSON: {}", error.without_url())
        })?;
        let content = body
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or("the model API answer has no choices[0].message.content")?;
        let answer: ModelAnswer = serde_json::from_str(content)
            .map_err(|error| format!("the model's analysis is not the expected JSON: {error}"))?;
        validate(change, answer)
    }
}

/// Accepts a model answer only if it classifies exactly the changed files and keeps its numbers
/// in range.
fn validate(change: &ChangeSet, answer: ModelAnswer) -> Result<Analysis, String> {
    if answer.risk_score > 100 {
        return Err(format!("risk_score {} is over 100", answer.risk_score));
    }
    if answer.diagnosis.trim().is_empty() {
        return Err("the diagnosis is empty".to_owned());
    }
    if answer
        .factors
        .iter()
        .any(|factor| factor.weight > 100 || factor.name.trim().is_empty())
    {
        return Err("a factor has no name or a weight over 100".to_owned());
    }
    let classes: BTreeMap<String, FileClass> = answer
        .files
        .into_iter()
        .map(|file| (file.path, file.class))
        .collect();
    let mut files = Vec::with_capacity(change.files.len());
    for file in &change.files {
        let class = classes
            .get(&file.path)
            .copied()
            .ok_or_else(|| format!("the model did not classify `{}`", file.path))?;
        files.push(FileReport {
            path: file.path.clone(),
            status: file.status.clone(),
            class,
            additions: file.additions,
            deletions: file.deletions,
        });
    }
    Ok(Analysis {
        analyzer: "model".to_owned(),
        files,
        risk_score: answer.risk_score,
        risk_level: level_for(answer.risk_score).to_owned(),
        factors: answer.factors,
        diagnosis: answer.diagnosis,
        fallback_reason: None,
    })
}

impl Analyzer for ModelAnalyzer {
    async fn analyse(&self, change: &ChangeSet) -> Analysis {
        match self.ask(change).await {
            Ok(analysis) => analysis,
            Err(reason) => {
                tracing::warn!(%reason, "model analysis failed; the rules answer instead");
                let mut analysis = rules::analyse(change);
                analysis.fallback_reason = Some(reason);
                analysis
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::ChangedFile;

    fn change() -> ChangeSet {
        ChangeSet {
            files: vec![ChangedFile {
                path: "src/a.rs".to_owned(),
                status: "modified".to_owned(),
                additions: Some(3),
                deletions: Some(1),
                patch: None,
            }],
            messages: vec!["x".to_owned()],
            forced: false,
        }
    }

    fn answer(files: Vec<(&str, FileClass)>, score: u32) -> ModelAnswer {
        ModelAnswer {
            files: files
                .into_iter()
                .map(|(path, class)| ModelFile {
                    path: path.to_owned(),
                    class,
                })
                .collect(),
            risk_score: score,
            factors: vec![],
            diagnosis: "fine".to_owned(),
        }
    }

    #[test]
    fn answers_must_classify_every_file_and_stay_in_range() {
        let ok = validate(&change(), answer(vec![("src/a.rs", FileClass::Source)], 42)).unwrap();
        assert_eq!((ok.risk_score, ok.risk_level.as_str()), (42, "medium"));
        assert!(validate(&change(), answer(vec![], 42)).is_err());
        assert!(
            validate(
                &change(),
                answer(vec![("src/a.rs", FileClass::Source)], 101)
            )
            .is_err()
        );
    }
}
