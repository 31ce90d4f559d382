//! A plugin instance's settings: checked against the JSON Schema of the plugin's manifest, and
//! split into the plain part (stored as is) and the secret part (the schema's `writeOnly` fields,
//! sealed at rest and never returned by the API).

use serde_json::{Map, Value};

/// A settings problem, naming the field as a dotted path under `settings`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: String,
    pub message: String,
}

/// Settings split by the schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitSettings {
    pub plain: Map<String, Value>,
    pub secrets: Map<String, Value>,
}

/// Validates `settings` (an object) against `schema`; the first error names its field. The
/// message never quotes the value of a `writeOnly` (secret) property.
pub fn validate(schema: &Value, settings: &Value) -> Result<(), SettingsError> {
    let validator = jsonschema::validator_for(schema).map_err(|e| SettingsError {
        field: "settings_schema".into(),
        message: format!("the plugin's settings schema is not valid: {e}"),
    })?;
    if let Some(error) = validator.iter_errors(settings).next() {
        let pointer = error.instance_path().to_string();
        let mut field = String::from("settings");
        for part in pointer.split('/').filter(|p| !p.is_empty()) {
            field.push('.');
            field.push_str(part);
        }
        // A missing required property is reported at the object; name the property instead.
        if let jsonschema::error::ValidationErrorKind::Required { property } = error.kind()
            && let Some(name) = property.as_str()
        {
            field.push('.');
            field.push_str(name);
        }
        let top = field.split('.').nth(1).unwrap_or("");
        let secret = schema["properties"][top]["writeOnly"] == Value::Bool(true);
        let message = if secret {
            format!("{field}: the value does not satisfy the plugin's schema (not shown: secret)")
        } else {
            error.to_string()
        };
        return Err(SettingsError { field, message });
    }
    Ok(())
}

/// Splits validated settings into plain and secret fields (`secret_fields` from the manifest).
pub fn split(settings: &Value, secret_fields: &[String]) -> SplitSettings {
    let mut out = SplitSettings::default();
    if let Some(object) = settings.as_object() {
        for (k, v) in object {
            if secret_fields.iter().any(|s| s == k) {
                out.secrets.insert(k.clone(), v.clone());
            } else {
                out.plain.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "maxLength": 20},
                "secret": {"type": "string", "writeOnly": true},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        })
    }

    #[test]
    fn errors_name_the_field() {
        assert!(validate(&schema(), &json!({"url": "https://x"})).is_ok());
        assert_eq!(
            validate(&schema(), &json!({})).unwrap_err().field,
            "settings.url"
        );
        assert_eq!(
            validate(&schema(), &json!({"url": 3})).unwrap_err().field,
            "settings.url"
        );
        assert_eq!(
            validate(&schema(), &json!({"url": "x", "headers": {"a": 1}}))
                .unwrap_err()
                .field,
            "settings.headers.a"
        );
        let unknown = validate(&schema(), &json!({"url": "x", "bogus": 1})).unwrap_err();
        assert_eq!(unknown.field, "settings");
        assert!(unknown.message.contains("bogus"), "{}", unknown.message);
    }

    #[test]
    fn a_secret_value_is_never_quoted() {
        let e = validate(&schema(), &json!({"url": "x", "secret": 12345678})).unwrap_err();
        assert_eq!(e.field, "settings.secret");
        assert!(!e.message.contains("12345678"), "{}", e.message);
    }

    #[test]
    fn secrets_are_split_off() {
        let s = split(&json!({"url": "u", "secret": "s"}), &["secret".to_owned()]);
        assert_eq!(s.plain, json!({"url": "u"}).as_object().unwrap().clone());
        assert_eq!(
            s.secrets,
            json!({"secret": "s"}).as_object().unwrap().clone()
        );
    }
}
