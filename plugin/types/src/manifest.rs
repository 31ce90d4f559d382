//! The plugin manifest (`manifest.json` in a bundle).

use serde::{Deserialize, Serialize};

use crate::SUPPORTED_WIT_VERSIONS;
use crate::capabilities::{Capabilities, check_host_pattern};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    AlertChannel,
    ProxyBackend,
    /// Single sign-on (from contract 0.2.0).
    SsoProvider,
    /// A store for log lines (from contract 0.2.0).
    LogSink,
    /// Policies: which actions break which policies (from contract 0.2.0).
    PolicyEngine,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::AlertChannel => "alert-channel",
            World::ProxyBackend => "proxy-backend",
            World::SsoProvider => "sso-provider",
            World::LogSink => "log-sink",
            World::PolicyEngine => "policy-engine",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edition {
    Community,
    Enterprise,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `publisher.name`: lowercase letters, digits, `.` and `-`.
    pub id: String,
    pub name: String,
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub publisher: String,
    pub world: World,
    /// The WIT package version the component was built against.
    pub wit_version: String,
    pub edition: Edition,
    /// The licence feature an enterprise plugin needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// JSON Schema (an object schema) of the settings; `writeOnly` properties are secrets.
    pub settings_schema: serde_json::Value,
    /// How a sign-in provider's login runs (world `sso-provider` only; `redirect` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_login: Option<SsoLogin>,
}

/// How people sign in through a provider: sent to the identity provider and back, or with a
/// username and password the provider checks (a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SsoLogin {
    Redirect,
    Password,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("manifest.{field}: {message}")]
pub struct ManifestError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ManifestError {
    ManifestError {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl Manifest {
    /// Parses and checks a manifest; errors name the field.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| invalid("json", format!("not a valid manifest: {e}")))?;
        manifest.check()?;
        Ok(manifest)
    }

    pub fn check(&self) -> Result<(), ManifestError> {
        let id_ok = (3..=64).contains(&self.id.len())
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && self.id.as_bytes()[0].is_ascii_lowercase();
        if !id_ok {
            return Err(invalid(
                "id",
                "3–64 characters: lowercase letters, digits, '.' and '-', starting with a letter",
            ));
        }
        if self.name.trim().is_empty()
            || self.name.len() > 80
            || self.name.chars().any(char::is_control)
        {
            return Err(invalid("name", "1–80 characters, no control characters"));
        }
        let semver = self.version.split('.').collect::<Vec<_>>();
        if semver.len() != 3
            || semver
                .iter()
                .any(|p| p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("version", "must be MAJOR.MINOR.PATCH"));
        }
        if self.description.len() > 500 {
            return Err(invalid("description", "at most 500 characters"));
        }
        if !SUPPORTED_WIT_VERSIONS.contains(&self.wit_version.as_str()) {
            return Err(invalid(
                "wit_version",
                format!(
                    "{} is not supported by this host (supported: {})",
                    self.wit_version,
                    SUPPORTED_WIT_VERSIONS.join(", ")
                ),
            ));
        }
        match (&self.edition, &self.feature) {
            (Edition::Enterprise, None) => {
                return Err(invalid(
                    "feature",
                    "an enterprise plugin names its licence feature",
                ));
            }
            (_, Some(f))
                if f.is_empty()
                    || f.len() > 64
                    || !f.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    }) =>
            {
                return Err(invalid("feature", "lowercase letters, digits, '-' and '_'"));
            }
            _ => {}
        }
        for (name, hosts) in [
            ("http", &self.capabilities.http),
            ("ldap", &self.capabilities.ldap),
        ] {
            let Some(hosts) = hosts else { continue };
            if hosts.hosts.is_empty() || hosts.hosts.len() > 50 {
                return Err(invalid(
                    &format!("capabilities.{name}.hosts"),
                    "1–50 host patterns",
                ));
            }
            for (i, host) in hosts.hosts.iter().enumerate() {
                check_host_pattern(host)
                    .map_err(|m| invalid(&format!("capabilities.{name}.hosts.{i}"), m))?;
            }
        }
        if self.sso_login.is_some() && self.world != World::SsoProvider {
            return Err(invalid(
                "sso_login",
                "only sign-in providers (world sso-provider) say how their sign-in works",
            ));
        }
        if !self.settings_schema.is_object()
            || self.settings_schema.get("type").and_then(|t| t.as_str()) != Some("object")
        {
            return Err(invalid(
                "settings_schema",
                "must be a JSON Schema with \"type\": \"object\"",
            ));
        }
        Ok(())
    }

    /// Names of the top-level settings that are secrets: marked `"writeOnly": true` themselves,
    /// or holding a `writeOnly` schema anywhere inside (a nested secret makes its whole
    /// top-level setting secret, so it is sealed and never returned).
    pub fn secret_fields(&self) -> Vec<String> {
        self.settings_schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|props| {
                props
                    .iter()
                    .filter(|(_, s)| holds_write_only(s))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Whether a schema is `writeOnly` or has a `writeOnly` schema anywhere below it.
fn holds_write_only(schema: &serde_json::Value) -> bool {
    match schema {
        serde_json::Value::Object(map) => {
            map.get("writeOnly").and_then(|w| w.as_bool()) == Some(true)
                || map.values().any(holds_write_only)
        }
        serde_json::Value::Array(items) => items.iter().any(holds_write_only),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "id": "acme.pager", "name": "Pager", "version": "1.2.3", "world": "alert-channel",
            "wit_version": "0.1.0", "edition": "community",
            "capabilities": {"log": true, "http": {"hosts": ["api.acme.example"]}},
            "settings_schema": {"type": "object", "properties": {"key": {"type": "string", "writeOnly": true}, "room": {"type": "string"}}}
        })
    }

    fn parse(v: serde_json::Value) -> Result<Manifest, ManifestError> {
        Manifest::parse(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn a_good_manifest_parses_and_names_its_secrets() {
        let m = parse(base()).unwrap();
        assert_eq!(m.world, World::AlertChannel);
        assert_eq!(m.secret_fields(), vec!["key".to_owned()]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            ("id", serde_json::json!("Bad Id")),
            ("version", serde_json::json!("1.2")),
            ("wit_version", serde_json::json!("9.9.9")),
            ("settings_schema", serde_json::json!({"type": "string"})),
            ("name", serde_json::json!("")),
        ];
        for (field, value) in cases {
            let mut m = base();
            m[field] = value;
            assert_eq!(parse(m).unwrap_err().field, field);
        }
        let mut m = base();
        m["edition"] = serde_json::json!("enterprise");
        assert_eq!(parse(m).unwrap_err().field, "feature");
        let mut m = base();
        m["capabilities"]["http"]["hosts"] = serde_json::json!(["ok.example", "bad host"]);
        assert_eq!(parse(m).unwrap_err().field, "capabilities.http.hosts.1");
        let mut m = base();
        m["capabilities"]["shell"] = serde_json::json!(true);
        assert_eq!(parse(m).unwrap_err().field, "json");
    }

    #[test]
    fn a_nested_write_only_setting_makes_its_top_level_setting_secret() {
        let mut v = base();
        v["settings_schema"]["properties"]["auth"] = serde_json::json!({
            "type": "object",
            "properties": {"user": {"type": "string"}, "password": {"type": "string", "writeOnly": true}}
        });
        v["settings_schema"]["properties"]["headers"] = serde_json::json!({
            "type": "object", "additionalProperties": {"type": "string", "writeOnly": true}
        });
        let mut secrets = parse(v).unwrap().secret_fields();
        secrets.sort();
        assert_eq!(secrets, ["auth", "headers", "key"]);
    }
}
