//! Licences: a JSON payload signed with Ed25519, verified offline against the vendor's public key
//! (`licenses/infrapilot-license.pub`). No phone-home.
//!
//! File format (what `infrapilot license issue` writes):
//! `{"format": "infrapilot-license/v1", "payload": "<base64 JSON>", "signature": "<base64>"}`,
//! the signature being over the decoded payload bytes.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use infrapilot_plugin_types::bundle::{BundleError, PublicKey, SigningKey};

const FORMAT: &str = "infrapilot-license/v1";

/// What the host runs as. `saas` enables every feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostEdition {
    Community,
    Enterprise,
    Saas,
}

impl std::str::FromStr for HostEdition {
    type Err = String;

    fn from_str(s: &str) -> Result<HostEdition, String> {
        match s {
            "community" => Ok(HostEdition::Community),
            "enterprise" => Ok(HostEdition::Enterprise),
            "saas" => Ok(HostEdition::Saas),
            other => Err(format!(
                "{other:?} is not an edition (community, enterprise or saas)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct License {
    pub id: String,
    pub licensee: String,
    /// `enterprise` (a licence for `community` would unlock nothing).
    pub edition: String,
    pub features: Vec<String>,
    /// Numeric limits, e.g. `{"nodes": 50}`.
    #[serde(default)]
    pub limits: std::collections::BTreeMap<String, u64>,
    /// RFC 3339.
    pub issued_at: String,
    pub expires_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseFile {
    format: String,
    payload: String,
    signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LicenseError {
    #[error("license: not a licence file ({0})")]
    Format(String),
    #[error("license: the signature does not match (tampered, or issued with another key)")]
    BadSignature,
    #[error("license: {field}: {message}")]
    Field { field: String, message: String },
}

fn field(name: &str, message: impl Into<String>) -> LicenseError {
    LicenseError::Field {
        field: name.to_owned(),
        message: message.into(),
    }
}

fn parse_time(name: &str, value: &str) -> Result<time::OffsetDateTime, LicenseError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| field(name, "must be an RFC 3339 time"))
}

impl License {
    fn check(&self) -> Result<(), LicenseError> {
        if self.licensee.trim().is_empty() || self.licensee.len() > 200 {
            return Err(field("licensee", "1–200 characters"));
        }
        if self.edition != "enterprise" {
            return Err(field("edition", "must be enterprise"));
        }
        for (i, f) in self.features.iter().enumerate() {
            if f.is_empty()
                || f.len() > 64
                || !f
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(field(
                    &format!("features.{i}"),
                    "lowercase letters, digits, '-' and '_'",
                ));
            }
        }
        let issued = parse_time("issued_at", &self.issued_at)?;
        let expires = parse_time("expires_at", &self.expires_at)?;
        if expires <= issued {
            return Err(field("expires_at", "must be after issued_at"));
        }
        Ok(())
    }

    /// Signs the licence: the text of a licence file.
    pub fn issue(&self, key: &SigningKey) -> Result<String, LicenseError> {
        self.check()?;
        let payload = serde_json::to_vec(self).map_err(|e| LicenseError::Format(e.to_string()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let file = LicenseFile {
            format: FORMAT.into(),
            payload: b64.encode(&payload),
            signature: b64.encode(key.sign(&payload)),
        };
        let mut text =
            serde_json::to_string_pretty(&file).map_err(|e| LicenseError::Format(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }

    /// Verifies the signature and the fields (not the expiry: see [`License::is_expired`]).
    pub fn verify(text: &str, key: &PublicKey) -> Result<License, LicenseError> {
        let file: LicenseFile =
            serde_json::from_str(text.trim()).map_err(|e| LicenseError::Format(e.to_string()))?;
        if file.format != FORMAT {
            return Err(LicenseError::Format(format!(
                "format {:?} is not {FORMAT}",
                file.format
            )));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = b64
            .decode(&file.payload)
            .map_err(|_| LicenseError::Format("payload is not base64".into()))?;
        let signature = b64
            .decode(&file.signature)
            .map_err(|_| LicenseError::Format("signature is not base64".into()))?;
        if !key.verify(&payload, &signature) {
            return Err(LicenseError::BadSignature);
        }
        let license: License =
            serde_json::from_slice(&payload).map_err(|e| LicenseError::Format(e.to_string()))?;
        license.check()?;
        Ok(license)
    }

    /// Issued in the future (beyond 10 minutes of clock skew): not valid yet.
    pub fn is_not_yet_valid(&self, now: time::OffsetDateTime) -> bool {
        parse_time("issued_at", &self.issued_at)
            .map_or(true, |issued| issued > now + time::Duration::minutes(10))
    }

    pub fn is_expired(&self, now: time::OffsetDateTime) -> bool {
        parse_time("expires_at", &self.expires_at).map_or(true, |expiry| now >= expiry)
    }
}

/// What the host may load: the edition it runs as and the licence it holds.
#[derive(Debug, Clone)]
pub struct Entitlements {
    pub edition: HostEdition,
    pub license: Option<License>,
}

impl Entitlements {
    /// Whether a plugin needing `feature` may load now.
    pub fn allows_feature(&self, feature: &str, now: time::OffsetDateTime) -> Result<(), String> {
        match self.edition {
            HostEdition::Saas => Ok(()),
            HostEdition::Community => Err(format!(
                "feature {feature} needs the enterprise edition (INFRAPILOT_EDITION=enterprise and a licence)"
            )),
            HostEdition::Enterprise => match &self.license {
                None => Err(format!(
                    "feature {feature} needs a licence; none is installed"
                )),
                Some(l) if l.is_expired(now) => Err(format!(
                    "feature {feature}: the licence of {} expired at {}",
                    l.licensee, l.expires_at
                )),
                Some(l) if l.is_not_yet_valid(now) => Err(format!(
                    "feature {feature}: the licence of {} is dated {}, in the future",
                    l.licensee, l.issued_at
                )),
                Some(l) if !l.features.iter().any(|f| f == feature) => Err(format!(
                    "feature {feature} is not in the licence of {}",
                    l.licensee
                )),
                Some(_) => Ok(()),
            },
        }
    }
}

impl From<BundleError> for LicenseError {
    fn from(e: BundleError) -> LicenseError {
        LicenseError::Format(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(expires_at: &str) -> License {
        License {
            id: "lic-1".into(),
            licensee: "Acme Corp".into(),
            edition: "enterprise".into(),
            features: vec!["sso".into(), "pager".into()],
            limits: [("nodes".to_owned(), 50)].into(),
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: expires_at.into(),
        }
    }

    #[test]
    fn a_licence_verifies_offline_and_tampering_breaks_it() {
        let key = SigningKey::generate().unwrap();
        let text = license("2027-01-01T00:00:00Z").issue(&key).unwrap();
        let parsed = License::verify(&text, &key.public_key()).unwrap();
        assert_eq!(parsed.licensee, "Acme Corp");

        let other = SigningKey::generate().unwrap();
        assert_eq!(
            License::verify(&text, &other.public_key()),
            Err(LicenseError::BadSignature)
        );

        // Swap in a payload that grants more: the signature no longer matches.
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut more = license("2099-01-01T00:00:00Z");
        more.features.push("everything".into());
        file["payload"] = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&more).unwrap())
            .into();
        assert_eq!(
            License::verify(&file.to_string(), &key.public_key()),
            Err(LicenseError::BadSignature)
        );
        assert!(matches!(
            License::verify("{}", &key.public_key()),
            Err(LicenseError::Format(_))
        ));
    }

    #[test]
    fn entitlements_follow_edition_licence_and_expiry() {
        let now = time::macros::datetime!(2026-06-01 00:00 UTC);
        let valid = Entitlements {
            edition: HostEdition::Enterprise,
            license: Some(license("2027-01-01T00:00:00Z")),
        };
        assert!(valid.allows_feature("sso", now).is_ok());
        assert!(
            valid
                .allows_feature("billing", now)
                .unwrap_err()
                .contains("not in the licence")
        );
        let expired = Entitlements {
            edition: HostEdition::Enterprise,
            license: Some(license("2026-05-01T00:00:00Z")),
        };
        assert!(
            expired
                .allows_feature("sso", now)
                .unwrap_err()
                .contains("expired")
        );
        let none = Entitlements {
            edition: HostEdition::Enterprise,
            license: None,
        };
        assert!(none.allows_feature("sso", now).is_err());
        let community = Entitlements {
            edition: HostEdition::Community,
            license: Some(license("2027-01-01T00:00:00Z")),
        };
        assert!(community.allows_feature("sso", now).is_err());
        let saas = Entitlements {
            edition: HostEdition::Saas,
            license: None,
        };
        assert!(saas.allows_feature("anything", now).is_ok());
    }

    #[test]
    fn bad_fields_are_named() {
        let key = SigningKey::generate().unwrap();
        let mut l = license("2027-01-01T00:00:00Z");
        l.expires_at = "tomorrow".into();
        assert_eq!(
            l.issue(&key).unwrap_err(),
            field("expires_at", "must be an RFC 3339 time")
        );
        let mut l = license("2025-01-01T00:00:00Z");
        assert!(
            matches!(l.issue(&key), Err(LicenseError::Field { field, .. }) if field == "expires_at")
        );
        l.expires_at = "2027-01-01T00:00:00Z".into();
        l.features = vec!["Bad Feature".into()];
        assert!(
            matches!(l.issue(&key), Err(LicenseError::Field { field, .. }) if field == "features.0")
        );
    }
}
