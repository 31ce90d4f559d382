//! Rules of the server that utoipa's derived schemas cannot state (`if`/`then`, `oneOf` of
//! object shapes, `propertyNames`, array item patterns), written into the generated document so
//! that it says everything the server checks. Each rule names the validator it mirrors.

use serde_json::{Value, json};

use super::agents::MAX_LABELS;
use super::alerts::{MAX_COOLDOWN_SECONDS, MAX_RULE_CHANNELS};
use infrapilot_alerts::rules::MAX_WINDOW_SECONDS;

const UUID: &str = infrapilot_proxy::schema::UUID_PATTERN;

/// A string without control characters (what `char::is_control` refuses).
const NO_CONTROL_CHARACTERS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// Node labels (`agents::check_labels`): at most 20; keys 1–63 of `a-z 0-9 . _ / -` starting
/// with a letter or digit; values at most 63 characters, no control characters.
fn labels() -> Value {
    json!({
        "type": "object",
        "description": "Labels, e.g. `{\"env\": \"prod\"}`.",
        "maxProperties": MAX_LABELS,
        "propertyNames": {"pattern": "^[a-z0-9][a-z0-9._/-]{0,62}$"},
        "additionalProperties": {"type": "string", "maxLength": 63, "pattern": NO_CONTROL_CHARACTERS},
    })
}

/// A plugin grant (`infrapilot_plugin_types::Capabilities`, host patterns checked by
/// `check_host_pattern`): `*`, an IP address, or a host name with an optional `*.`.
fn grants() -> Value {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    let host = format!(
        "^(\\*|{}|(\\*\\.)?({label}\\.)*{label})$",
        infrapilot_proxy::schema::ipv6()
    );
    let flag = json!({"type": "boolean"});
    json!({
        "type": ["object", "null"],
        "description": "The operator's grant (same shape as the manifest's `capabilities`); absent: grant what the manifest requests.",
        "additionalProperties": false,
        "properties": {
            "log": flag, "mail": flag, "kv": flag, "config": flag, "secrets": flag,
            "clock": flag, "random": flag,
            "http": {
                "type": ["object", "null"], "required": ["hosts"], "additionalProperties": false,
                "properties": {"hosts": {"type": "array", "items": {
                    "type": "string", "pattern": host,
                    // A name is at most 253 characters, after an optional `*.`.
                    "anyOf": [{"maxLength": 253}, {"pattern": "^\\*\\.", "maxLength": 255}],
                }}},
            },
        },
    })
}

/// Rule parameters by kind (`infrapilot_alerts::rules::check_params`): each kind takes its own
/// parameters and no others; `cpu_high` and `memory_high` need a threshold.
fn rule_kinds() -> Value {
    let container = json!({"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$",
        "description": "Only containers with this exact name (all when absent)."});
    let duration = json!({"type": "integer", "minimum": 0, "maximum": MAX_WINDOW_SECONDS});
    let threshold = |max: f64| json!({"type": "number", "exclusiveMinimum": 0, "maximum": max});
    let kind = |name: &str, mut properties: Value, required: Value| {
        // A parameter left out and one given as null are the same to the server.
        if let Some(map) = properties.as_object_mut() {
            for (key, schema) in map.iter_mut() {
                if !required.as_array().is_some_and(|r| r.contains(&json!(key))) {
                    let t = schema["type"].clone();
                    schema["type"] = json!([t, "null"]);
                }
            }
        }
        let params = json!({"type": "object", "additionalProperties": false,
            "properties": properties, "required": required});
        let needs_params = required.as_array().is_some_and(|r| !r.is_empty());
        let params = if !needs_params {
            json!({"oneOf": [params, {"type": "null"}]})
        } else {
            params
        };
        let required = if needs_params {
            json!(["kind", "params"])
        } else {
            json!(["kind"])
        };
        json!({"required": required, "properties": {"kind": {"const": name}, "params": params}})
    };
    json!([
        kind(
            "container_crashed",
            json!({"container": container}),
            json!([])
        ),
        kind(
            "restart_loop",
            json!({"container": container,
            "restarts": {"type": "integer", "minimum": 2, "maximum": 1000},
            "window_seconds": {"type": "integer", "minimum": 10, "maximum": MAX_WINDOW_SECONDS}}),
            json!([])
        ),
        kind(
            "cpu_high",
            json!({"container": container, "threshold_percent": threshold(25_600.0),
            "duration_seconds": duration}),
            json!(["threshold_percent"])
        ),
        kind(
            "memory_high",
            json!({"container": container, "threshold_percent": threshold(100.0),
            "duration_seconds": duration}),
            json!(["threshold_percent"])
        ),
        kind("node_offline", json!({}), json!([])),
        kind(
            "certificate_expiring",
            json!({"days": {"type": "integer", "minimum": 1, "maximum": 3650}}),
            json!([])
        ),
        kind(
            "log_error_spike",
            json!({"container": container,
            "min_errors": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "factor": {"type": "number", "minimum": 1, "maximum": 1000},
            "baseline_minutes": {"type": "integer", "minimum": 5, "maximum": infrapilot_alerts::rules::MAX_BASELINE_MINUTES}}),
            json!([])
        ),
        kind(
            "proxy_error_rate",
            json!({"proxy_host": {"type": "string", "pattern": UUID, "minLength": 36, "maxLength": 36},
            "threshold_percent": threshold(100.0),
            "window_seconds": {"type": "integer", "minimum": 30, "maximum": infrapilot_alerts::rules::MAX_RATE_WINDOW_SECONDS},
            "min_requests": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}),
            json!([])
        ),
        kind(
            "policy_engine_failed",
            json!({"window_seconds": {"type": "integer", "minimum": 30, "maximum": infrapilot_alerts::rules::MAX_RATE_WINDOW_SECONDS}}),
            json!([])
        ),
    ])
}

/// The schema `name` of the document, which must exist (a renamed type must not leave a rule
/// silently unapplied).
fn schema<'a>(doc: &'a mut Value, name: &str) -> &'a mut Value {
    doc.pointer_mut(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("the OpenAPI document has no schema {name}"))
}

/// Writes the rules into the document (as JSON: utoipa's types cannot hold all of them).
/// Panics when a schema a rule is for is missing: the document tests then fail.
pub fn apply(doc: &mut Value) {
    for name in [
        "ProxySpec",
        "ProxyDto",
        "BTreeMap",
        "CreateRuleRequest",
        "EnableRequest",
    ] {
        schema(doc, name);
    }
    doc.pointer("/paths/~1api~1v1~1plugins/post/requestBody/content/application~1x-tar")
        .expect("the plugin upload takes application/x-tar");
    let schemas = &mut doc["components"]["schemas"];
    schemas["ProxySpec"] = infrapilot_proxy::schema::proxy_spec();
    // A proxy host as listed is the spec and more: composed with `allOf`, the spec may not
    // refuse the other properties.
    let mut listed_spec = infrapilot_proxy::schema::proxy_spec();
    if let Some(spec) = listed_spec.as_object_mut() {
        spec.remove("additionalProperties");
    }
    let parts = schemas["ProxyDto"]["allOf"]
        .as_array_mut()
        .expect("ProxyDto is the spec and more (allOf)");
    let spec_part = parts
        .iter_mut()
        .find(|p| p["$ref"] == "#/components/schemas/ProxySpec")
        .expect("ProxyDto's allOf names ProxySpec");
    *spec_part = listed_spec;
    // Every `BTreeMap` in the API is a label map: name it for what it is.
    if let Some(map) = schemas.as_object_mut() {
        map.remove("BTreeMap");
        map.insert("Labels".into(), labels());
    }
    rename_refs(
        doc,
        "#/components/schemas/BTreeMap",
        "#/components/schemas/Labels",
    );
    let schemas = &mut doc["components"]["schemas"];
    // Alert rules (`alerts::create_rule`): 1–20 channel ids, an optional node id.
    let rule = &mut schemas["CreateRuleRequest"]["properties"];
    rule["channel_ids"] = json!({
        "type": "array", "minItems": 1, "maxItems": MAX_RULE_CHANNELS,
        "description": "The channels to notify (ids of existing channels; repeats count once).",
        "items": {"type": "string", "pattern": UUID},
    });
    rule["agent_id"] = json!({"type": ["string", "null"], "pattern": UUID,
        "description": "Only this node (all nodes when absent)."});
    rule["cooldown_seconds"]["maximum"] = json!(MAX_COOLDOWN_SECONDS);
    // Which parameters a rule takes depends on its kind: the `oneOf` branches say.
    rule["params"] = json!({"description": "By kind, as the branches below say."});
    schemas["CreateRuleRequest"]["oneOf"] = rule_kinds();
    schemas["EnableRequest"]["properties"]["grants"] = grants();
    // A plugin bundle is bytes (a tar archive), not an array of numbers.
    let bundle = &mut doc["paths"]["/api/v1/plugins"]["post"]["requestBody"]["content"];
    bundle["application/x-tar"]["schema"] = json!({"type": "string", "format": "binary"});
}

fn rename_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref" && v == from {
                    *v = Value::String(to.to_owned());
                } else {
                    rename_refs(v, from, to);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, from, to)),
        _ => {}
    }
}
