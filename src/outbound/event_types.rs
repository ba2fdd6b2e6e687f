//! Event types: the eight built-in ones with the JSON Schema of their `data`, and the tenant's own
//! custom types. Every published event's `data` is validated against its type's schema.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Value, json};

/// A built-in event type: emitted by Hookline's own features.
pub struct BuiltIn {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: fn() -> Value,
    /// A realistic `data`, as the catalog shows it (the source documents' own examples).
    pub example: fn() -> Value,
}

fn example_service() -> Value {
    json!({"id": "svc_01a2b3c4d5e6f708192a3b4c5d6e7f80", "name": "Payments API"})
}

fn example_incident(status: &str) -> Value {
    let mut data = json!({
        "incident_id": "inc_01a2b3c4d5e6f708192a3b4c5d6e7f81",
        "title": "payments-api health check failing",
        "severity": "critical", "type": "availability", "status": status,
        "started_at": "2026-03-21T14:28:00.000Z", "service": example_service(),
        "monitor": {"id": "mon_01a2b3c4d5e6f708192a3b4c5d6e7f82", "name": "Health Check",
                    "url": "https://api.example.com/health"}
    });
    if status == "resolved" {
        data["resolved_at"] = json!("2026-03-21T14:58:00.000Z");
        data["duration_seconds"] = json!(1800);
    }
    data
}

fn nullable(schema: Value) -> Value {
    json!({"oneOf": [{"type": "null"}, schema]})
}

fn timestamp() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn incident_schema(status: &str, resolved: bool) -> Value {
    let mut properties = json!({
        "incident_id": {"type": "string"},
        "title": {"type": "string"},
        "severity": {"enum": ["critical", "error", "warning", "info"]},
        "type": {"enum": ["availability", "latency"]},
        "status": {"const": status},
        "started_at": timestamp(),
        "service": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
            "additionalProperties": false
        },
        "monitor": nullable(json!({
            "type": "object",
            "required": ["id", "name", "url"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "url": {"type": "string"}
            },
            "additionalProperties": false
        }))
    });
    let mut required = vec![
        "incident_id",
        "title",
        "severity",
        "type",
        "status",
        "started_at",
        "service",
        "monitor",
    ];
    if resolved {
        properties["resolved_at"] = timestamp();
        properties["duration_seconds"] = json!({"type": "number", "minimum": 0});
        required.extend(["resolved_at", "duration_seconds"]);
    }
    object_schema(properties, &required)
}

fn object_schema(properties: Value, required: &[&str]) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": false
    })
}

fn fix_type() -> Value {
    json!({"enum": ["revert", "ai_fix"]})
}

/// The built-in types, in the order the documentation lists them.
pub const BUILT_IN: &[BuiltIn] = &[
    BuiltIn {
        name: "incident.opened",
        description: "A new incident has been created",
        schema: || incident_schema("open", false),
        example: || example_incident("open"),
    },
    BuiltIn {
        name: "incident.acknowledged",
        description: "An incident has been acknowledged",
        schema: || incident_schema("acknowledged", false),
        example: || example_incident("acknowledged"),
    },
    BuiltIn {
        name: "incident.resolved",
        description: "An incident has been resolved",
        schema: || incident_schema("resolved", true),
        example: || example_incident("resolved"),
    },
    BuiltIn {
        name: "deploy.ingested",
        description: "A new deploy has been recorded",
        schema: || {
            let text_or_null = || nullable(json!({"type": "string"}));
            object_schema(
                json!({
                    "deploy_id": {"type": "string"},
                    "commit_sha": {"type": "string"},
                    "branch": text_or_null(),
                    "environment": text_or_null(),
                    "deployed_by": text_or_null()
                }),
                &[
                    "deploy_id",
                    "commit_sha",
                    "branch",
                    "environment",
                    "deployed_by",
                ],
            )
        },
        example: || {
            json!({"deploy_id": "dep_01a2b3c4d5e6f708192a3b4c5d6e7f83",
                   "commit_sha": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0", "branch": "main",
                   "environment": "production", "deployed_by": "jane"})
        },
    },
    BuiltIn {
        name: "fix_proposal.generated",
        description: "A fix proposal has been generated and is ready for review",
        schema: || {
            object_schema(
                json!({
                    "proposal_id": {"type": "string"},
                    "incident_id": {"type": "string"},
                    "fix_type": fix_type(),
                    "status": {"enum": ["ready", "pr_created"]},
                    "confidence_score": nullable(json!({"type": "number", "minimum": 0, "maximum": 100})),
                    "risk_assessment": nullable(json!({"enum": ["low", "medium", "high"]})),
                    "summary": {"type": "string"}
                }),
                &[
                    "proposal_id",
                    "incident_id",
                    "fix_type",
                    "status",
                    "confidence_score",
                    "risk_assessment",
                    "summary",
                ],
            )
        },
        example: || {
            json!({"proposal_id": "fp_01a2b3c4d5e6f708192a3b4c5d6e7f84",
                   "incident_id": "inc_01a2b3c4d5e6f708192a3b4c5d6e7f81", "fix_type": "ai_fix",
                   "status": "ready", "confidence_score": 78, "risk_assessment": "medium",
                   "summary": "Fix null pointer in payment handler by adding null check"})
        },
    },
    BuiltIn {
        name: "fix_proposal.applied",
        description: "A fix proposal has been approved and a PR is being created",
        schema: || {
            object_schema(
                json!({
                    "proposal_id": {"type": "string"},
                    "incident_id": {"type": "string"},
                    "fix_type": fix_type()
                }),
                &["proposal_id", "incident_id", "fix_type"],
            )
        },
        example: || {
            json!({"proposal_id": "fp_01a2b3c4d5e6f708192a3b4c5d6e7f84",
                   "incident_id": "inc_01a2b3c4d5e6f708192a3b4c5d6e7f81", "fix_type": "ai_fix"})
        },
    },
    BuiltIn {
        name: "fix_proposal.rejected",
        description: "A fix proposal has been rejected",
        schema: || {
            object_schema(
                json!({
                    "proposal_id": {"type": "string"},
                    "incident_id": {"type": "string"},
                    "fix_type": fix_type(),
                    "reason": nullable(json!({"type": "string"}))
                }),
                &["proposal_id", "incident_id", "fix_type", "reason"],
            )
        },
        example: || {
            json!({"proposal_id": "fp_01a2b3c4d5e6f708192a3b4c5d6e7f84",
                   "incident_id": "inc_01a2b3c4d5e6f708192a3b4c5d6e7f81", "fix_type": "ai_fix",
                   "reason": "Fix does not address the root cause"})
        },
    },
    BuiltIn {
        name: "test.ping",
        description: "Test event for endpoint verification",
        schema: || {
            object_schema(
                json!({
                    "message": {"type": "string"},
                    "endpoint_id": {"type": "string"}
                }),
                &["message", "endpoint_id"],
            )
        },
        example: || {
            json!({"message": "Webhook endpoint test",
                   "endpoint_id": "wh_01a2b3c4d5e6f708192a3b4c5d6e7f85"})
        },
    },
];

pub fn built_in(name: &str) -> Option<&'static BuiltIn> {
    BUILT_IN.iter().find(|kind| kind.name == name)
}

/// The schema a custom type gets when none is given: any JSON object.
pub fn default_custom_schema() -> Value {
    json!({"type": "object"})
}

/// Checks a custom type's name: dot-separated segments of `a-z`, `0-9`, `_` and `-`, at most 128
/// characters, not a built-in name.
pub fn validate_custom_name(name: &str) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name.len() <= 128
        && name.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    if !well_formed {
        return Err(format!(
            "event type name `{}` must be dot-separated segments of a-z, 0-9, `_` and `-` \
             (e.g. `invoice.paid`), at most 128 characters",
            name.chars().take(140).collect::<String>()
        ));
    }
    Ok(())
}

type Compiled = Arc<jsonschema::Validator>;

fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|error| format!("invalid JSON Schema: {error}"))
}

/// Checks that a schema compiles (for custom types, at creation).
pub fn check_schema(schema: &Value) -> Result<(), String> {
    if !schema.is_object() {
        return Err("schema must be a JSON Schema object".to_owned());
    }
    compile(schema).map(drop)
}

static BUILT_IN_VALIDATORS: LazyLock<HashMap<&'static str, Compiled>> = LazyLock::new(|| {
    BUILT_IN
        .iter()
        .map(|kind| {
            let validator = compile(&(kind.schema)()).expect("built-in schemas compile");
            (kind.name, Arc::new(validator))
        })
        .collect()
});

/// Compiled schemas of custom types, keyed by the schema text so an edited type recompiles.
#[derive(Default)]
pub struct SchemaCache {
    compiled: Mutex<HashMap<String, Compiled>>,
}

impl SchemaCache {
    fn validator_for(&self, schema_text: &str) -> Result<Compiled, String> {
        if let Some(found) = self.compiled.lock().expect("cache lock").get(schema_text) {
            return Ok(found.clone());
        }
        let schema: Value =
            serde_json::from_str(schema_text).map_err(|error| format!("stored schema: {error}"))?;
        let compiled = Arc::new(compile(&schema)?);
        let mut cache = self.compiled.lock().expect("cache lock");
        if cache.len() > 1_000 {
            cache.clear();
        }
        cache.insert(schema_text.to_owned(), compiled.clone());
        Ok(compiled)
    }
}

/// Where validation of `data` failed: the JSON pointer of the first error and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "data at `{path}`: {}", self.message)
    }
}

fn first_error(validator: &jsonschema::Validator, data: &Value) -> Result<(), DataError> {
    validator.validate(data).map_err(|error| DataError {
        path: error.instance_path().to_string(),
        message: error.to_string(),
    })
}

/// Validates `data` of a built-in type.
pub fn validate_built_in(name: &str, data: &Value) -> Option<Result<(), DataError>> {
    BUILT_IN_VALIDATORS
        .get(name)
        .map(|validator| first_error(validator, data))
}

/// Validates `data` against a custom type's stored schema.
pub fn validate_custom(
    cache: &SchemaCache,
    schema_text: &str,
    data: &Value,
) -> Result<(), DataError> {
    let validator = cache
        .validator_for(schema_text)
        .map_err(|message| DataError {
            path: String::new(),
            message,
        })?;
    first_error(&validator, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_examples_validate() {
        let monitor = json!({"id": "mon_123456", "name": "Health Check", "url": "https://api.example.com/health"});
        let service = json!({"id": "svc_abcdef", "name": "Payments API"});
        let opened = json!({
            "incident_id": "inc_1234567890", "title": "payments-api health check failing",
            "severity": "critical", "type": "availability", "status": "open",
            "started_at": "2026-03-21T14:28:00.000Z", "service": service, "monitor": monitor
        });
        let mut resolved = opened.clone();
        resolved["status"] = json!("resolved");
        resolved["resolved_at"] = json!("2026-03-21T14:58:00.000Z");
        resolved["duration_seconds"] = json!(1800);
        let mut manual = opened.clone();
        manual["monitor"] = Value::Null;
        let examples = [
            ("incident.opened", opened.clone()),
            ("incident.opened", manual),
            ("incident.resolved", resolved),
            (
                "deploy.ingested",
                json!({"deploy_id": "dep_abcdef123456", "commit_sha": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0", "branch": "main", "environment": "production", "deployed_by": "jane"}),
            ),
            (
                "deploy.ingested",
                json!({"deploy_id": "dep_1", "commit_sha": "a1b2", "branch": null, "environment": null, "deployed_by": null}),
            ),
            (
                "fix_proposal.generated",
                json!({"proposal_id": "fp_abcdef123456", "incident_id": "inc_1234567890", "fix_type": "ai_fix", "status": "ready", "confidence_score": 78, "risk_assessment": "medium", "summary": "Fix null pointer in payment handler by adding null check"}),
            ),
            (
                "fix_proposal.generated",
                json!({"proposal_id": "fp_1", "incident_id": "inc_1", "fix_type": "revert", "status": "pr_created", "confidence_score": null, "risk_assessment": null, "summary": "Revert a1b2"}),
            ),
            (
                "fix_proposal.applied",
                json!({"proposal_id": "fp_abcdef123456", "incident_id": "inc_1234567890", "fix_type": "ai_fix"}),
            ),
            (
                "fix_proposal.rejected",
                json!({"proposal_id": "fp_abcdef123456", "incident_id": "inc_1234567890", "fix_type": "ai_fix", "reason": "Fix does not address the root cause"}),
            ),
            (
                "test.ping",
                json!({"message": "Webhook endpoint test", "endpoint_id": "wh_abcdef123456"}),
            ),
        ];
        for (name, data) in examples {
            assert_eq!(
                validate_built_in(name, &data),
                Some(Ok(())),
                "{name}: {data}"
            );
        }
        assert_eq!(BUILT_IN.len(), 8);
    }

    #[test]
    fn wrong_data_names_the_first_failing_path() {
        let bad = json!({"message": "hi", "endpoint_id": 7});
        let error = validate_built_in("test.ping", &bad).unwrap().unwrap_err();
        assert_eq!(error.path, "/endpoint_id");
        let missing = json!({"message": "hi"});
        assert!(validate_built_in("test.ping", &missing).unwrap().is_err());
        let extra = json!({"message": "hi", "endpoint_id": "wh_1", "more": 1});
        assert!(validate_built_in("test.ping", &extra).unwrap().is_err());
        let bad_time = json!({
            "incident_id": "inc_1", "title": "t", "severity": "critical", "type": "latency",
            "status": "open", "started_at": "yesterday", "service": {"id": "s", "name": "n"}, "monitor": null
        });
        let error = validate_built_in("incident.opened", &bad_time)
            .unwrap()
            .unwrap_err();
        assert_eq!(error.path, "/started_at");
        assert_eq!(validate_built_in("no.such", &bad), None);
    }

    #[test]
    fn custom_names_and_schemas_are_checked() {
        assert!(validate_custom_name("invoice.paid").is_ok());
        assert!(validate_custom_name("user_v2.signed-up").is_ok());
        for bad in [
            "",
            "Invoice.Paid",
            "invoice..paid",
            ".x",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(validate_custom_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_schema(&json!({"type": "object"})).is_ok());
        assert!(check_schema(&json!({"type": 12})).is_err());
        assert!(check_schema(&json!("object")).is_err());

        let cache = SchemaCache::default();
        let schema =
            r#"{"type":"object","required":["amount"],"properties":{"amount":{"type":"integer"}}}"#;
        assert_eq!(
            validate_custom(&cache, schema, &json!({"amount": 3})),
            Ok(())
        );
        let error = validate_custom(&cache, schema, &json!({"amount": "3"})).unwrap_err();
        assert_eq!(error.path, "/amount");
    }
}

/// A plausible value for `schema`, for the catalog's example payloads: the first enum value or
/// `oneOf` branch that is not null, typed placeholders otherwise.
pub fn example_for(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
    {
        return first.clone();
    }
    if let Some(constant) = schema.get("const") {
        return constant.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let branch = branches
                .iter()
                .find(|branch| branch.get("type").and_then(Value::as_str) != Some("null"))
                .or(branches.first());
            if let Some(branch) = branch {
                return example_for(branch);
            }
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    };
    match kind {
        "object" => Value::Object(
            schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|properties| {
                    properties
                        .iter()
                        .map(|(name, property)| (name.clone(), example_for(property)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "array" => Value::Array(
            schema
                .get("items")
                .map(|items| vec![example_for(items)])
                .unwrap_or_default(),
        ),
        "string" => match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2026-03-21T14:30:00.000Z"),
            Some("uri") => json!("https://example.com/"),
            _ => json!("string"),
        },
        "integer" => json!(schema.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        "number" => json!(1.5),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}

/// A realistic `data` for an event type: a built-in type's documented example, the first of a
/// custom schema's own `examples`, or one made from the schema.
pub fn example_data(name: &str, schema: &Value) -> Value {
    if let Some(built_in) = BUILT_IN.iter().find(|kind| kind.name == name) {
        return (built_in.example)();
    }
    schema
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|examples| examples.first())
        .cloned()
        .unwrap_or_else(|| example_for(schema))
}

/// The whole body an endpoint receives for an event of `name` whose data fits `schema`.
pub fn example_envelope(tenant_id: &str, name: &str, schema: &Value) -> Value {
    json!({
        "id": "evt_0192f0c1-a2b3-7c4d-8e9f-0a1b2c3d4e5f",
        "type": name,
        "version": super::ENVELOPE_VERSION,
        "created_at": "2026-03-21T14:30:00.000Z",
        "tenant_id": tenant_id,
        "data": example_data(name, schema),
    })
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn examples_fit_their_built_in_schemas() {
        for kind in BUILT_IN {
            let example = (kind.example)();
            assert!(
                validate_built_in(kind.name, &example).is_some_and(|verdict| verdict.is_ok()),
                "the documented example for {} does not fit its schema: {example}",
                kind.name
            );
            assert!(
                !example.to_string().contains("\"string\""),
                "{}: a realistic example",
                kind.name
            );
            let example = example_for(&(kind.schema)());
            assert!(
                validate_built_in(kind.name, &example).is_some_and(|verdict| verdict.is_ok()),
                "the example for {} does not fit its schema: {example}",
                kind.name
            );
        }
    }
}

/// An event type as the catalog lists it.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub name: String,
    pub description: String,
    /// JSON Schema of the event's `data`.
    pub schema: Value,
    /// Emitted by Hookline itself; cannot be deleted.
    pub built_in: bool,
    /// When the tenant registered it (custom types only).
    pub created_at: Option<i64>,
}

impl From<&BuiltIn> for CatalogEntry {
    fn from(kind: &BuiltIn) -> Self {
        CatalogEntry {
            name: kind.name.to_owned(),
            description: kind.description.to_owned(),
            schema: (kind.schema)(),
            built_in: true,
            created_at: None,
        }
    }
}

impl From<crate::store::outbound::EventType> for CatalogEntry {
    fn from(kind: crate::store::outbound::EventType) -> Self {
        CatalogEntry {
            schema: serde_json::from_str(&kind.schema).unwrap_or(Value::Null),
            name: kind.name,
            description: kind.description,
            built_in: false,
            created_at: Some(kind.created_at),
        }
    }
}

/// Every event type a tenant may publish and subscribe to: the built-in ones, then its own.
pub async fn catalog(
    store: &crate::store::Store,
    tenant_id: &str,
) -> crate::store::StoreResult<Vec<CatalogEntry>> {
    let mut entries: Vec<CatalogEntry> = BUILT_IN.iter().map(CatalogEntry::from).collect();
    entries.extend(
        crate::store::outbound::list_event_types(store, tenant_id)
            .await?
            .into_iter()
            .map(CatalogEntry::from),
    );
    Ok(entries)
}
