//! The built-in rule analyser: deterministic, no network. Every changed file gets a class from
//! its path; the change gets a risk score from explained, weighted factors, and a diagnosis.

use std::collections::BTreeMap;

use super::{Analysis, ChangeSet, Factor, FileClass, FileReport, level_for};

/// Classifies a path by the conventions of real repositories. Order matters: a workflow file is
/// CI before it is YAML config, a lockfile is a dependency before it is generated, a test under
/// `src/` is a test before it is source.
pub fn classify(path: &str) -> FileClass {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let segments: Vec<&str> = lower.split('/').collect();
    let dirs = &segments[..segments.len().saturating_sub(1)];
    let in_dir = |wanted: &[&str]| dirs.iter().any(|dir| wanted.contains(dir));
    let extension = name.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");

    const DEPENDENCY_FILES: [&str; 24] = [
        "cargo.lock",
        "cargo.toml",
        "package.json",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "go.mod",
        "go.sum",
        "pipfile",
        "pipfile.lock",
        "poetry.lock",
        "pyproject.toml",
        "gemfile",
        "gemfile.lock",
        "composer.json",
        "composer.lock",
        "pom.xml",
        "build.gradle",
        "build.gradle.kts",
        "gradle.lockfile",
        "mix.lock",
        "podfile.lock",
    ];
    if DEPENDENCY_FILES.contains(&name)
        || (name.starts_with("requirements") && extension == "txt")
        || name == "uv.lock"
        || name == "packages.lock.json"
    {
        return FileClass::Dependency;
    }
    if name.contains(".min.")
        || extension == "map"
        || name.ends_with(".pb.go")
        || name.ends_with("_pb2.py")
        || name.contains(".generated.")
        || name.ends_with(".g.dart")
        || in_dir(&[
            "__generated__",
            "generated",
            "dist",
            "vendor",
            "node_modules",
        ])
    {
        return FileClass::Generated;
    }
    if lower.starts_with(".github/workflows/")
        || lower.starts_with(".circleci/")
        || lower.starts_with(".buildkite/")
        || matches!(
            name,
            ".gitlab-ci.yml"
                | "jenkinsfile"
                | ".travis.yml"
                | "azure-pipelines.yml"
                | "bitbucket-pipelines.yml"
                | ".drone.yml"
                | "cloudbuild.yaml"
        )
    {
        return FileClass::Ci;
    }
    if in_dir(&[
        "migrations",
        "migration",
        "migrate",
        "alembic",
        "flyway",
        "liquibase",
    ]) || extension == "sql"
    {
        return FileClass::Migration;
    }
    if name.starts_with("dockerfile")
        || name.starts_with("docker-compose")
        || name.starts_with("compose.")
        || matches!(extension, "tf" | "tfvars" | "hcl")
        || in_dir(&[
            "terraform",
            "k8s",
            "kubernetes",
            "helm",
            "charts",
            "ansible",
            "deploy",
            "deployment",
            "manifests",
            "infra",
            "infrastructure",
            ".aws",
        ])
        || matches!(
            name,
            "procfile" | "serverless.yml" | "nginx.conf" | "fly.toml" | "app.yaml"
        )
    {
        return FileClass::Infrastructure;
    }
    let stem = name.rsplit_once('.').map(|(stem, _)| stem).unwrap_or(name);
    if in_dir(&[
        "tests",
        "test",
        "__tests__",
        "spec",
        "specs",
        "testdata",
        "e2e",
        "__mocks__",
    ]) || stem.ends_with("_test")
        || stem.ends_with(".test")
        || stem.ends_with(".spec")
        || stem.ends_with("_spec")
        || stem.starts_with("test_")
        || (stem.ends_with("test") && extension == "java")
        || (stem.ends_with("tests") && matches!(extension, "java" | "cs"))
        || extension == "snap"
    {
        return FileClass::Test;
    }
    if in_dir(&["docs", "doc", "documentation"])
        || matches!(extension, "md" | "markdown" | "rst" | "adoc" | "txt")
        || matches!(
            name,
            "license" | "licence" | "authors" | "codeowners" | "changelog"
        )
    {
        return FileClass::Docs;
    }
    if matches!(
        extension,
        "png"
            | "jpg"
            | "jpeg"
            | "gif"
            | "svg"
            | "ico"
            | "webp"
            | "avif"
            | "bmp"
            | "woff"
            | "woff2"
            | "ttf"
            | "otf"
            | "eot"
            | "mp3"
            | "mp4"
            | "webm"
            | "wav"
            | "pdf"
    ) {
        return FileClass::Asset;
    }
    if matches!(
        extension,
        "yml"
            | "yaml"
            | "json"
            | "toml"
            | "ini"
            | "cfg"
            | "conf"
            | "properties"
            | "env"
            | "xml"
            | "plist"
    ) || name.starts_with(".env")
        || name.starts_with('.')
        || in_dir(&["config", "configs", "settings", ".config"])
    {
        return FileClass::Config;
    }
    FileClass::Source
}

/// Path fragments that mark authentication, authorization or secrets handling.
const SENSITIVE: [&str; 14] = [
    "auth",
    "login",
    "session",
    "token",
    "password",
    "passwd",
    "crypto",
    "security",
    "permission",
    "acl",
    "oauth",
    "jwt",
    "secret",
    "rbac",
];

fn is_sensitive(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    SENSITIVE.iter().any(|fragment| lower.contains(fragment))
}

/// Analyses a change set by the rules.
pub fn analyse(change: &ChangeSet) -> Analysis {
    let files: Vec<FileReport> = change
        .files
        .iter()
        .map(|file| FileReport {
            path: file.path.clone(),
            status: file.status.clone(),
            class: classify(&file.path),
            additions: file.additions,
            deletions: file.deletions,
        })
        .collect();
    let mut counts: BTreeMap<FileClass, usize> = BTreeMap::new();
    for file in &files {
        *counts.entry(file.class).or_default() += 1;
    }
    let count = |class: FileClass| counts.get(&class).copied().unwrap_or(0);
    let paths_of = |class: FileClass| -> Vec<&str> {
        files
            .iter()
            .filter(|file| file.class == class)
            .map(|file| file.path.as_str())
            .take(3)
            .collect()
    };
    let mut factors = Vec::new();
    let mut add = |name: &str, weight: u32, detail: String| {
        factors.push(Factor {
            name: name.to_owned(),
            weight,
            detail,
        });
    };
    if count(FileClass::Migration) > 0 {
        add(
            "migration",
            25,
            format!(
                "schema migration changed: {}",
                paths_of(FileClass::Migration).join(", ")
            ),
        );
    }
    let sensitive: Vec<&str> = files
        .iter()
        .filter(|file| {
            matches!(file.class, FileClass::Source | FileClass::Config) && is_sensitive(&file.path)
        })
        .map(|file| file.path.as_str())
        .take(3)
        .collect();
    if !sensitive.is_empty() {
        add(
            "auth_security",
            20,
            format!(
                "authentication or security code changed: {}",
                sensitive.join(", ")
            ),
        );
    }
    if count(FileClass::Infrastructure) > 0 {
        add(
            "infrastructure",
            15,
            format!(
                "infrastructure changed: {}",
                paths_of(FileClass::Infrastructure).join(", ")
            ),
        );
    }
    if count(FileClass::Dependency) > 0 {
        add(
            "dependencies",
            12,
            format!(
                "dependencies changed: {}",
                paths_of(FileClass::Dependency).join(", ")
            ),
        );
    }
    if count(FileClass::Config) > 0 {
        add(
            "configuration",
            10,
            format!(
                "configuration changed: {}",
                paths_of(FileClass::Config).join(", ")
            ),
        );
    }
    if count(FileClass::Ci) > 0 {
        add(
            "ci",
            8,
            format!(
                "CI pipeline changed: {}",
                paths_of(FileClass::Ci).join(", ")
            ),
        );
    }
    if count(FileClass::Source) > 0 && count(FileClass::Test) == 0 {
        add(
            "untested_source",
            15,
            format!(
                "{} source file(s) changed without any test change",
                count(FileClass::Source)
            ),
        );
    }
    let lines: Option<u64> = files
        .iter()
        .map(|file| Some(file.additions? + file.deletions?))
        .sum();
    match lines {
        Some(lines) if lines > 500 => add("size", 20, format!("large change: {lines} lines")),
        Some(lines) if lines > 200 => add("size", 12, format!("sizeable change: {lines} lines")),
        Some(lines) if lines > 50 => add("size", 5, format!("{lines} lines changed")),
        Some(_) => {}
        None if files.len() > 20 => add("size", 12, format!("{} files changed", files.len())),
        None if files.len() > 10 => add("size", 5, format!("{} files changed", files.len())),
        None => {}
    }
    let removed = files.iter().filter(|file| file.status == "removed").count();
    let deleted_lines: u64 = files.iter().filter_map(|file| file.deletions).sum();
    if removed > 0 {
        let weight = u32::try_from(removed * 4).unwrap_or(u32::MAX).min(15);
        add("deletions", weight, format!("{removed} file(s) removed"));
    } else if deleted_lines > 100 {
        add("deletions", 8, format!("{deleted_lines} lines deleted"));
    }
    if change.forced {
        add(
            "force_push",
            15,
            "arrived in a force push: history was rewritten".to_owned(),
        );
    }
    let message = change.messages.join("\n").to_ascii_lowercase();
    if ["revert", "hotfix", "wip", "hack", "temporary", "quick fix"]
        .iter()
        .any(|hint| message.contains(hint))
    {
        add(
            "message",
            5,
            "the message suggests an urgent or unfinished change".to_owned(),
        );
    }
    let score = factors
        .iter()
        .map(|factor| factor.weight)
        .sum::<u32>()
        .min(100);
    let diagnosis = diagnose(change, &files, &counts, &factors);
    Analysis {
        analyzer: "rules".to_owned(),
        files,
        risk_score: score,
        risk_level: level_for(score).to_owned(),
        factors,
        diagnosis,
        fallback_reason: None,
    }
}

fn diagnose(
    change: &ChangeSet,
    files: &[FileReport],
    counts: &BTreeMap<FileClass, usize>,
    factors: &[Factor],
) -> String {
    let summary = counts
        .iter()
        .map(|(class, count)| format!("{count} {}", class.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let subject = change
        .messages
        .first()
        .and_then(|message| message.lines().next())
        .unwrap_or("")
        .trim();
    let mut text = if files.is_empty() {
        "What changed: no file list is available for this change.".to_owned()
    } else {
        format!(
            "What changed: {} file(s) ({summary}){}.",
            files.len(),
            if subject.is_empty() {
                String::new()
            } else {
                format!(" — \"{subject}\"")
            }
        )
    };
    let risks: Vec<&str> = factors
        .iter()
        .filter_map(|factor| match factor.name.as_str() {
            "migration" => {
                Some("the migration can lock tables, fail on existing data or be irreversible")
            }
            "auth_security" => Some(
                "a mistake in authentication or secrets handling can lock users out or expose data",
            ),
            "infrastructure" => {
                Some("infrastructure changes can take the service down at deploy time")
            }
            "dependencies" => {
                Some("new dependency versions can change behaviour or break the build")
            }
            "configuration" => {
                Some("a configuration change can behave differently per environment")
            }
            "ci" => Some("a pipeline change can skip checks or deploy unintentionally"),
            "untested_source" => Some("the changed code has no accompanying test changes"),
            "size" => Some("a large change is harder to review and to roll back"),
            "deletions" => Some("removed code or files may still be referenced"),
            "force_push" => Some("rewritten history can drop commits others depended on"),
            _ => None,
        })
        .collect();
    if risks.is_empty() {
        text.push_str(" What could go wrong: little — no risky area is touched.");
    } else {
        text.push_str(&format!(" What could go wrong: {}.", risks.join("; ")));
    }
    let checks: Vec<&str> = factors
        .iter()
        .filter_map(|factor| match factor.name.as_str() {
            "migration" => Some("run the migration against a copy of production data and time it"),
            "auth_security" => {
                Some("have the security-sensitive paths reviewed and test login and permissions")
            }
            "infrastructure" => {
                Some("plan or dry-run the infrastructure change before applying it")
            }
            "dependencies" => {
                Some("read the changelogs of upgraded packages and run the full test suite")
            }
            "configuration" => Some("compare the configuration across environments"),
            "ci" => Some("confirm the pipeline still runs every check"),
            "untested_source" => Some("add or run tests covering the changed code"),
            "deletions" => Some("search for remaining references to removed code"),
            _ => None,
        })
        .collect();
    if checks.is_empty() {
        text.push_str(" What to check: a normal review is enough.");
    } else {
        text.push_str(&format!(" What to check: {}.", checks.join("; ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::ChangedFile;

    #[test]
    fn real_world_layouts_are_classified() {
        let table = [
            ("migrations/0004_inbound.sql", FileClass::Migration),
            ("db/migrate/20260302_add_users.rb", FileClass::Migration),
            ("schema/update.sql", FileClass::Migration),
            ("alembic/versions/3f2a_add_index.py", FileClass::Migration),
            ("Cargo.lock", FileClass::Dependency),
            ("Cargo.toml", FileClass::Dependency),
            ("web/package-lock.json", FileClass::Dependency),
            ("package.json", FileClass::Dependency),
            ("go.sum", FileClass::Dependency),
            ("requirements-dev.txt", FileClass::Dependency),
            ("Dockerfile", FileClass::Infrastructure),
            ("docker/Dockerfile.worker", FileClass::Infrastructure),
            ("infra/main.tf", FileClass::Infrastructure),
            ("charts/api/values.yaml", FileClass::Infrastructure),
            ("docker-compose.yml", FileClass::Infrastructure),
            (".github/workflows/ci.yml", FileClass::Ci),
            (".gitlab-ci.yml", FileClass::Ci),
            ("Jenkinsfile", FileClass::Ci),
            ("pkg/server/handler_test.go", FileClass::Test),
            ("tests/e2e/inbound.rs", FileClass::Test),
            ("src/__tests__/cart.tsx", FileClass::Test),
            ("web/src/cart.spec.ts", FileClass::Test),
            ("app/models/user.test.js", FileClass::Test),
            ("tests/test_models.py", FileClass::Test),
            (
                "src/test/java/com/acme/UserServiceTest.java",
                FileClass::Test,
            ),
            ("docs/operations.md", FileClass::Docs),
            ("README.md", FileClass::Docs),
            ("CHANGELOG", FileClass::Docs),
            ("static/logo.svg", FileClass::Asset),
            ("public/fonts/inter.woff2", FileClass::Asset),
            ("public/app.min.js", FileClass::Generated),
            ("static/app.js.map", FileClass::Generated),
            ("api/v1/user.pb.go", FileClass::Generated),
            ("config/production.yml", FileClass::Config),
            (".env.example", FileClass::Config),
            ("tsconfig.json", FileClass::Config),
            ("src/pay/retry.rs", FileClass::Source),
            ("cmd/server/main.go", FileClass::Source),
            ("app/controllers/sessions_controller.rb", FileClass::Source),
        ];
        for (path, class) in table {
            assert_eq!(classify(path), class, "{path}");
        }
    }

    fn change(paths: &[(&str, &str)]) -> ChangeSet {
        ChangeSet {
            files: paths
                .iter()
                .map(|(path, status)| ChangedFile {
                    path: (*path).to_owned(),
                    status: (*status).to_owned(),
                    additions: None,
                    deletions: None,
                    patch: None,
                })
                .collect(),
            messages: vec!["Add payment retries".to_owned()],
            forced: false,
        }
    }

    #[test]
    fn a_docs_change_is_low_risk() {
        let analysis = analyse(&change(&[("docs/guide.md", "modified")]));
        assert_eq!(
            (analysis.risk_score, analysis.risk_level.as_str()),
            (0, "low")
        );
        assert!(
            analysis.diagnosis.contains("1 docs"),
            "{}",
            analysis.diagnosis
        );
    }

    #[test]
    fn risky_areas_add_their_weights_and_explain_them() {
        let analysis = analyse(&change(&[
            ("migrations/0005_users.sql", "added"),
            ("src/auth/session.rs", "modified"),
            ("Cargo.lock", "modified"),
        ]));
        let names: Vec<&str> = analysis.factors.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "migration",
                "auth_security",
                "dependencies",
                "untested_source"
            ]
        );
        assert_eq!(analysis.risk_score, 25 + 20 + 12 + 15);
        assert_eq!(analysis.risk_level, "high");
        assert!(analysis.diagnosis.contains("What to check"));
        let with_tests = analyse(&change(&[
            ("src/pay/retry.rs", "modified"),
            ("tests/retry.rs", "added"),
        ]));
        assert_eq!(with_tests.risk_score, 0, "{:?}", with_tests.factors);
    }

    #[test]
    fn size_deletions_and_force_pushes_count() {
        let mut big = change(&[("src/a.rs", "removed"), ("src/b.rs", "modified")]);
        big.files[1].additions = Some(400);
        big.files[1].deletions = Some(150);
        big.files[0].additions = Some(0);
        big.files[0].deletions = Some(80);
        big.forced = true;
        let analysis = analyse(&big);
        let weight = |name: &str| {
            analysis
                .factors
                .iter()
                .find(|factor| factor.name == name)
                .map(|factor| factor.weight)
        };
        assert_eq!(weight("size"), Some(20));
        assert_eq!(weight("deletions"), Some(4));
        assert_eq!(weight("force_push"), Some(15));
        assert_eq!(analysis.risk_level, level_for(analysis.risk_score));
    }

    #[test]
    fn levels_follow_the_thresholds() {
        assert_eq!(level_for(0), "low");
        assert_eq!(level_for(29), "low");
        assert_eq!(level_for(30), "medium");
        assert_eq!(level_for(59), "medium");
        assert_eq!(level_for(60), "high");
        assert_eq!(level_for(84), "high");
        assert_eq!(level_for(85), "critical");
        assert_eq!(level_for(100), "critical");
    }
}
