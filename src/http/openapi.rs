//! The OpenAPI document as served at `/api/openapi.json`: what utoipa derives from the routes,
//! completed with what holds for whole classes of operations, so that the document says exactly
//! what the server does: the answers every authenticated, parameterised or body-taking operation
//! can give (401, 400, 404, 413, 415, 422, 503), the shape of every path id, and paging bounds.

use serde_json::{Map, Value, json};

use super::paging::MAX_LIMIT;

/// The served document.
pub fn document() -> Value {
    let mut document =
        serde_json::to_value(super::openapi()).expect("the OpenAPI document serialises");
    complete(&mut document);
    document
}

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// `prefix_` and 32 hex digits; integrations' ids hold a hyphenated UUID.
fn id_pattern(prefix: &str) -> String {
    if prefix == "int" {
        "^int_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$".to_owned()
    } else {
        format!("^{prefix}_[0-9a-f]{{32}}$")
    }
}

/// The id kind a list's `cursor` is (the id of the list's last item).
fn cursor_prefix(path: &str) -> Option<&'static str> {
    Some(match path {
        "/api/tokens" => "tok",
        "/api/webhooks/endpoints" => "wh",
        "/api/webhooks/endpoints/{id}/deliveries" => "dlv",
        "/api/inbound-deliveries" => "ind",
        "/api/v1/integrations" => "int",
        "/api/services" => "svc",
        "/api/services/{id}/commits" => "cmt",
        "/api/services/{id}/deploys" => "dep",
        "/api/services/{id}/pull-requests" => "pr",
        "/api/services/{id}/issues" => "iss",
        "/api/v1/integrations/{id}/pull-requests" => "pr",
        "/api/v1/integrations/{id}/issues" => "iss",
        "/api/deploys" => "dep",
        "/api/experiments" => "exp",
        "/api/experiments/{id}/activity" => "act",
        "/api/monitors" => "mon",
        "/api/monitors/{id}/checks" => "chk",
        "/api/incidents" => "inc",
        "/api/fix-proposals" => "fp",
        "/api/repos/{owner}/{repo}/hooks" => "hook",
        "/api/repos/{owner}/{repo}/hooks/{id}/deliveries" => "dlv",
        _ => return None,
    })
}

/// The schema of a path parameter, from its name or the `prefix_…` its description names.
fn path_parameter_schema(name: &str, description: &str) -> Option<Value> {
    match name {
        // A repository path segment: letters, digits, `.`, `-`, `_`, not `.` or `..`.
        "owner" | "repo" => Some(json!({
            "type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$"
        })),
        "sha" => Some(json!({"type": "string", "pattern": "^[0-9a-fA-F]{7,40}$"})),
        // A pull request's or an issue's number in its repository.
        "number" => Some(json!({"type": "string", "pattern": "^[1-9][0-9]{0,17}$"})),
        // A custom event type's name (built-in names follow the same rule).
        "name" => Some(json!({
            "type": "string", "maxLength": 128,
            "pattern": "^[a-z0-9_-]+(\\.[a-z0-9_-]+)*$"
        })),
        _ => {
            let prefix = description.split('`').nth(1)?.strip_suffix("_…")?;
            Some(json!({"type": "string", "pattern": id_pattern(prefix)}))
        }
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn add_response(operation: &mut Map<String, Value>, status: &str, description: &str) {
    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    responses
        .entry(status)
        .or_insert_with(|| error_response(description));
}

fn complete(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            complete_operation(path, operation);
        }
    }
}

fn complete_operation(path: &str, operation: &mut Map<String, Value>) {
    let secured = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|requirements| !requirements.is_empty());
    let has_body = operation.contains_key("requestBody");
    let mut in_path = false;
    let mut in_query = false;
    if let Some(parameters) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    {
        for parameter in parameters {
            let name = parameter["name"].as_str().unwrap_or_default().to_owned();
            match parameter["in"].as_str() {
                Some("path") => {
                    in_path = true;
                    let description = parameter["description"].as_str().unwrap_or_default();
                    if let Some(schema) = path_parameter_schema(&name, description) {
                        parameter["schema"] = schema;
                    }
                }
                Some("query") => {
                    in_query = true;
                    match name.as_str() {
                        "limit" => {
                            parameter["schema"]["minimum"] = json!(1);
                            parameter["schema"]["maximum"] = json!(MAX_LIMIT);
                        }
                        "cursor" => {
                            let prefix = cursor_prefix(path).unwrap_or_else(|| {
                                panic!("{path}: the id kind of its cursor is not listed")
                            });
                            parameter["schema"]["pattern"] = json!(id_pattern(prefix));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
    let served_by_hookline = path.starts_with("/api/") && path != "/api/openapi.json";
    if secured {
        add_response(operation, "401", "Missing, unknown or revoked token");
    }
    if in_path {
        add_response(operation, "400", "A malformed id in the path");
        add_response(operation, "404", "No such object in this tenant");
    }
    if in_query {
        add_response(operation, "400", "A query parameter out of its bounds");
    }
    if has_body {
        add_response(operation, "400", "Malformed JSON");
        add_response(operation, "413", "The body is larger than the limit");
        add_response(operation, "415", "The body is not JSON (Content-Type)");
        add_response(
            operation,
            "422",
            "The body does not follow the schema or its rules",
        );
    }
    if served_by_hookline {
        add_response(
            operation,
            "503",
            "The database is unavailable (code `database_unavailable`, with Retry-After)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_its_error_answers() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let responses = operation["responses"].as_object().unwrap();
                if operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty())
                {
                    assert!(responses.contains_key("401"), "{method} {path}: no 401");
                }
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    if parameter["in"] == "path" {
                        assert!(
                            parameter["schema"]["pattern"].is_string(),
                            "{method} {path}: path parameter {} has no pattern",
                            parameter["name"]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn path_ids_follow_their_prefix() {
        assert_eq!(
            path_parameter_schema("id", "Monitor id (`mon_…`)").unwrap()["pattern"],
            "^mon_[0-9a-f]{32}$"
        );
        let hyphenated = path_parameter_schema("id", "`int_…`").unwrap();
        assert!(
            hyphenated["pattern"]
                .as_str()
                .unwrap()
                .starts_with("^int_[0-9a-f]{8}-")
        );
    }
}
