//! Unified diffs, as an AI fix carries them: parsed per file and applied exactly (every context
//! and removed line must match where its hunk says), so a stale patch fails instead of landing
//! in the wrong place.

/// What a file patch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Modify,
    Add,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Context(String),
    Remove(String),
    Add(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Hunk {
    /// 1-based line of the original the hunk starts at (0 for an empty original).
    old_start: usize,
    lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    pub path: String,
    pub change: Change,
    hunks: Vec<Hunk>,
}

fn strip_side(path: &str) -> Option<String> {
    let path = path.split('\t').next().unwrap_or(path).trim();
    if path == "/dev/null" {
        return None;
    }
    Some(
        path.strip_prefix("a/")
            .or_else(|| path.strip_prefix("b/"))
            .unwrap_or(path)
            .to_owned(),
    )
}

/// Parses a unified diff (`git diff` output or plain `diff -u`).
pub fn parse(patch: &str) -> Result<Vec<FilePatch>, String> {
    let mut files: Vec<FilePatch> = Vec::new();
    let mut lines = patch.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(old) = line.strip_prefix("--- ") else {
            continue;
        };
        let new = lines
            .next()
            .and_then(|line| line.strip_prefix("+++ "))
            .ok_or("a `---` line must be followed by a `+++` line")?;
        let (old, new) = (strip_side(old), strip_side(new));
        let (path, change) = match (old, new) {
            (None, Some(new)) => (new, Change::Add),
            (Some(old), None) => (old, Change::Delete),
            (Some(_), Some(new)) => (new, Change::Modify),
            (None, None) => return Err("a file patch names no file".to_owned()),
        };
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
            return Err(format!("the patch names an unsafe path `{path}`"));
        }
        let mut hunks = Vec::new();
        while let Some(header) = lines.peek().and_then(|line| line.strip_prefix("@@ -")) {
            lines.next();
            let old_start: usize = header
                .split([',', ' '])
                .next()
                .and_then(|start| start.parse().ok())
                .ok_or_else(|| format!("malformed hunk header in the patch of `{path}`"))?;
            let mut hunk = Hunk {
                old_start,
                lines: Vec::new(),
            };
            while let Some(next) = lines.peek() {
                let parsed = if let Some(text) = next.strip_prefix(' ') {
                    Line::Context(text.to_owned())
                } else if let Some(text) = next.strip_prefix('-') {
                    if next.starts_with("--- ") {
                        break;
                    }
                    Line::Remove(text.to_owned())
                } else if let Some(text) = next.strip_prefix('+') {
                    Line::Add(text.to_owned())
                } else if next.starts_with('\\') {
                    lines.next();
                    continue;
                } else if next.is_empty() {
                    Line::Context(String::new())
                } else {
                    break;
                };
                hunk.lines.push(parsed);
                lines.next();
            }
            hunks.push(hunk);
        }
        if hunks.is_empty() && change != Change::Delete {
            return Err(format!("the patch of `{path}` has no hunks"));
        }
        files.push(FilePatch {
            path,
            change,
            hunks,
        });
    }
    if files.is_empty() {
        return Err("the patch changes no file (expected a unified diff)".to_owned());
    }
    Ok(files)
}

/// Applies a file's hunks to its current text; `None` when the file is deleted.
pub fn apply(original: &str, file: &FilePatch) -> Result<Option<String>, String> {
    if file.change == Change::Delete {
        return Ok(None);
    }
    let source: Vec<&str> = original.lines().collect();
    let mut output: Vec<String> = Vec::with_capacity(source.len() + 16);
    let mut next = 0usize;
    for hunk in &file.hunks {
        let start = hunk.old_start.saturating_sub(1);
        if start < next || start > source.len() {
            return Err(format!(
                "a hunk of `{}` starts at line {} which does not exist",
                file.path, hunk.old_start
            ));
        }
        output.extend(source[next..start].iter().map(|line| (*line).to_owned()));
        let mut at = start;
        for line in &hunk.lines {
            match line {
                Line::Context(expected) | Line::Remove(expected) => {
                    if source.get(at) != Some(&expected.as_str()) {
                        return Err(format!(
                            "the patch does not apply to `{}` at line {}",
                            file.path,
                            at + 1
                        ));
                    }
                    if let Line::Context(text) = line {
                        output.push(text.clone());
                    }
                    at += 1;
                }
                Line::Add(text) => output.push(text.clone()),
            }
        }
        next = at;
    }
    output.extend(source[next..].iter().map(|line| (*line).to_owned()));
    let mut text = output.join("\n");
    if !text.is_empty() && (original.ends_with('\n') || original.is_empty()) {
        text.push('\n');
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "diff --git a/src/pay.rs b/src/pay.rs
--- a/src/pay.rs
+++ b/src/pay.rs
@@ -1,4 +1,5 @@
 fn charge(amount: Option<u64>) {
-    let amount = amount.unwrap();
+    let Some(amount) = amount else { return };
+    log(amount);
     send(amount);
 }
--- /dev/null
+++ b/tests/pay.rs
@@ -0,0 +1,2 @@
+#[test]
+fn charges() {}
";

    #[test]
    fn patches_apply_exactly() {
        let files = parse(PATCH).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(
            (files[0].path.as_str(), files[0].change),
            ("src/pay.rs", Change::Modify)
        );
        assert_eq!(
            (files[1].path.as_str(), files[1].change),
            ("tests/pay.rs", Change::Add)
        );
        let original = "fn charge(amount: Option<u64>) {\n    let amount = amount.unwrap();\n    send(amount);\n}\n";
        let patched = apply(original, &files[0]).unwrap().unwrap();
        assert_eq!(
            patched,
            "fn charge(amount: Option<u64>) {\n    let Some(amount) = amount else { return };\n    log(amount);\n    send(amount);\n}\n"
        );
        assert_eq!(
            apply("", &files[1]).unwrap().unwrap(),
            "#[test]\nfn charges() {}\n"
        );
    }

    #[test]
    fn stale_or_unsafe_patches_are_refused() {
        let files = parse(PATCH).unwrap();
        let changed = "fn charge(amount: Option<u64>) {\n    let amount = amount.expect(\"x\");\n    send(amount);\n}\n";
        assert!(
            apply(changed, &files[0])
                .unwrap_err()
                .contains("does not apply")
        );
        assert!(parse("just words").is_err());
        assert!(parse("--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n").is_err());
        let deleted = parse("--- a/old.rs\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n").unwrap();
        assert_eq!(apply("gone\n", &deleted[0]).unwrap(), None);
    }
}
