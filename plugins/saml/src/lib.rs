//! Single sign-on with SAML 2.0. Everything that needs a key or an XML signature is the host's
//! (`saml` capability: the provider's own service-provider key signs the AuthnRequest; xmlsec
//! checks the response against the identity provider's metadata, its audience, recipient,
//! request, time window and replay). This plugin holds the metadata and the presets: which
//! attributes carry the email, the name and the groups at Okta, Keycloak, Entra ID or any IdP.

use infrapilot_plugin_sdk::sso::saml::{self, AuthnRequest, SamlError};
use infrapilot_plugin_sdk::sso::{
    Identity, LoginCallback, LoginError, LoginMethod, LoginRequest, LoginStart, PluginError,
    SsoProvider, config,
};
use serde::Deserialize;

const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
/// Entra ID's list of the methods the person signed in with (`…/multipleauthn` after MFA).
const AUTHN_METHODS: &str = "http://schemas.microsoft.com/claims/authnmethodsreferences";

#[derive(Deserialize)]
struct Settings {
    #[serde(default = "generic")]
    preset: String,
    idp_metadata: String,
    email_attribute: Option<String>,
    name_attribute: Option<String>,
    groups_attribute: Option<String>,
    #[serde(default)]
    emails_verified: bool,
    #[serde(default)]
    force_authn: bool,
}

fn generic() -> String {
    "generic".into()
}

/// Attribute names per preset, tried in order (a setting, when given, comes first).
struct Names {
    email: &'static [&'static str],
    name: &'static [&'static str],
    groups: &'static [&'static str],
}

const GENERIC: Names = Names {
    email: &[
        "email",
        "mail",
        "urn:oid:0.9.2342.19200300.100.1.3",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ],
    name: &[
        "displayName",
        "name",
        "urn:oid:2.16.840.1.113730.3.1.241",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    ],
    groups: &[
        "groups",
        "memberOf",
        "Role",
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
    ],
};

const ENTRA: Names = Names {
    email: &[
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    ],
    name: &["http://schemas.microsoft.com/identity/claims/displayname"],
    groups: &["http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"],
};

impl Settings {
    fn load() -> Result<Settings, String> {
        let settings: Settings =
            serde_json::from_str(&config::settings()).map_err(|e| format!("settings: {e}"))?;
        if !matches!(
            settings.preset.as_str(),
            "generic" | "okta" | "keycloak" | "entra"
        ) {
            return Err(format!(
                "preset: {:?} is not generic, okta, keycloak or entra",
                settings.preset
            ));
        }
        if settings.idp_metadata.trim().is_empty() {
            return Err("idp_metadata: the identity provider's metadata (XML)".into());
        }
        Ok(settings)
    }

    fn names(&self) -> &'static Names {
        if self.preset == "entra" {
            &ENTRA
        } else {
            &GENERIC
        }
    }
}

fn first_value<'a>(
    attributes: &'a [(String, Vec<String>)],
    setting: Option<&str>,
    defaults: &[&str],
) -> Option<&'a str> {
    let wanted: Vec<&str> = setting
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .into_iter()
        .chain(defaults.iter().copied())
        .collect();
    wanted.iter().find_map(|name| {
        attributes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.iter().map(|s| s.trim()).find(|s| !s.is_empty()))
    })
}

fn all_values(
    attributes: &[(String, Vec<String>)],
    setting: Option<&str>,
    defaults: &[&str],
) -> Vec<String> {
    let wanted: Vec<&str> = match setting.map(str::trim).filter(|s| !s.is_empty()) {
        Some(one) => vec![one],
        None => defaults.to_vec(),
    };
    let mut values: Vec<String> = attributes
        .iter()
        .filter(|(n, _)| wanted.contains(&n.as_str()))
        .flat_map(|(_, v)| v.iter().map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .collect();
    values.sort();
    values.dedup();
    values
}

fn from_saml(e: SamlError) -> LoginError {
    match e {
        SamlError::Rejected(m) => LoginError::Rejected(m),
        SamlError::InvalidMetadata(m) => LoginError::InvalidSettings(format!("idp_metadata: {m}")),
        SamlError::Denied(m) => LoginError::Unavailable(m),
    }
}

struct SamlProvider;

impl SsoProvider for SamlProvider {
    fn validate() -> Result<(), PluginError> {
        let settings = Settings::load().map_err(PluginError::InvalidSettings)?;
        // The host checks the metadata (a signing certificate, an SSO endpoint, no DTD) by
        // signing a request for it.
        saml::begin(&AuthnRequest {
            idp_metadata: settings.idp_metadata.clone(),
            relay_state: "validate".into(),
            force_authn: false,
        })
        .map(|_| ())
        .map_err(|e| match from_saml(e) {
            LoginError::InvalidSettings(m) => PluginError::InvalidSettings(m),
            other => PluginError::Failed(format!("{other:?}")),
        })
    }

    fn begin_login(request: LoginRequest) -> Result<LoginStart, LoginError> {
        let settings = Settings::load().map_err(LoginError::InvalidSettings)?;
        let start = saml::begin(&AuthnRequest {
            idp_metadata: settings.idp_metadata,
            relay_state: request.state,
            force_authn: settings.force_authn,
        })
        .map_err(from_saml)?;
        Ok(LoginStart {
            method: LoginMethod::Redirect(start.redirect_url),
            // The response must answer this request; the host keeps it sealed with the login.
            context: Some(start.request_id),
        })
    }

    fn complete_login(callback: LoginCallback) -> Result<Identity, LoginError> {
        let settings = Settings::load().map_err(LoginError::InvalidSettings)?;
        let response = callback
            .params
            .iter()
            .find(|(k, _)| k == "SAMLResponse")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| LoginError::Rejected("the answer carries no SAMLResponse".into()))?;
        let request_id = callback.context.clone().unwrap_or_default();
        let assertion = saml::validate_response(&settings.idp_metadata, &response, &request_id)
            .map_err(from_saml)?;
        if assertion.name_id_format.as_deref() == Some(TRANSIENT) {
            return Err(LoginError::InvalidSettings(
                "idp_metadata: the identity provider sends a transient NameID, which names no one for long; configure a persistent NameID or the email".into(),
            ));
        }
        let names = settings.names();
        let mut email = first_value(
            &assertion.attributes,
            settings.email_attribute.as_deref(),
            names.email,
        )
        .map(str::to_owned);
        if email.is_none() && assertion.name_id_format.as_deref() == Some(EMAIL_FORMAT) {
            email = Some(assertion.name_id.clone());
        }
        let name = first_value(
            &assertion.attributes,
            settings.name_attribute.as_deref(),
            names.name,
        )
        .map(str::to_owned);
        let groups = all_values(
            &assertion.attributes,
            settings.groups_attribute.as_deref(),
            names.groups,
        );
        let mut attributes = Vec::new();
        if let Some(index) = assertion.session_index {
            attributes.push(("session_index".to_owned(), index));
        }
        // How the person signed in, for the host's MFA policy: the authentication context
        // class as `acr`, and the methods Entra ID lists (`authnmethodsreferences`) as `amr`.
        if let Some(class) = assertion.authn_context {
            attributes.push(("acr".to_owned(), class));
        }
        let methods = all_values(&assertion.attributes, Some(AUTHN_METHODS), &[]);
        if !methods.is_empty() {
            attributes.push((
                "amr".to_owned(),
                infrapilot_plugin_sdk::json::to_string(&methods).unwrap_or_default(),
            ));
        }
        Ok(Identity {
            subject: assertion.name_id,
            issuer: assertion.issuer,
            email,
            email_verified: settings.emails_verified,
            name,
            groups,
            attributes,
        })
    }

    fn check_password(_username: String, _password: String) -> Result<Identity, LoginError> {
        Err(LoginError::Unsupported)
    }
}

infrapilot_plugin_sdk::export_sso_provider!(SamlProvider);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_by_setting_then_by_preset_names() {
        let attrs = vec![
            ("mail".to_owned(), vec!["a@x.test".to_owned()]),
            (
                "groups".to_owned(),
                vec!["b".to_owned(), "a".to_owned(), "a".to_owned()],
            ),
            ("custom".to_owned(), vec!["c@x.test".to_owned()]),
        ];
        assert_eq!(first_value(&attrs, None, GENERIC.email), Some("a@x.test"));
        assert_eq!(
            first_value(&attrs, Some("custom"), GENERIC.email),
            Some("c@x.test")
        );
        assert_eq!(all_values(&attrs, None, GENERIC.groups), vec!["a", "b"]);
        assert!(all_values(&attrs, Some("nothing"), GENERIC.groups).is_empty());
    }
}
